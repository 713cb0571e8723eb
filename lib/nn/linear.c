/* nn.Linear: y = x W^T + b. */
#include "mmchain/nn.h"

#include "nn/layer_internal.h"

mc_status mc_linear_init(mc_param_list *params, const char *prefix, int in_features,
                         int out_features, bool bias, mc_rng *rng, mc_linear_layer *out) {
    *out = (mc_linear_layer){0};
    if (in_features < 1 || out_features < 1)
        return mc_error(MC_ERR_ARG, "linear %s: %d -> %d features, both must be positive", prefix,
                        in_features, out_features);
    const int first = params->count;
    mc_status status = mc_layer_param(params, &out->weight, MC_SHAPE(out_features, in_features),
                                      true, prefix, "weight");
    if (status == MC_OK && bias)
        status = mc_layer_param(params, &out->bias, MC_SHAPE(out_features), true, prefix, "bias");
    if (status != MC_OK) {
        *out = (mc_linear_layer){0};
        return mc_layer_init_end(params, first, status);
    }
    if (rng) {
        /* reset_parameters(): kaiming_uniform_(a=sqrt(5)) for the weight,
         * which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound
         * for the bias. */
        mc_init_default_uniform(out->weight, in_features, rng);
        if (out->bias) mc_init_default_uniform(out->bias, in_features, rng);
    }
    return MC_OK;
}

void mc_linear_init_normal(mc_linear_layer *layer, float std, mc_rng *rng) {
    mc_tensor_normal(layer->weight, rng, 0.0f, std);
    if (layer->bias) mc_tensor_fill(layer->bias, 0.0f);
}

mc_status mc_linear_forward(mc_graph *g, const mc_linear_layer *layer, mc_tensor *x,
                            mc_tensor **out) {
    return mc_linear(g, x, layer->weight, layer->bias, out);
}

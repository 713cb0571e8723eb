/* nn.LayerNorm over the last dimension, with a gain and a bias. */
#include "mmchain/nn.h"

#include "nn/layer_internal.h"

mc_status mc_layer_norm_init(mc_param_list *params, const char *prefix, int width, float eps,
                             mc_layer_norm *out) {
    *out = (mc_layer_norm){.eps = eps};
    if (width < 1 || !(eps > 0.0f))
        return mc_error(MC_ERR_ARG, "layer norm %s: width %d and eps %g must be positive", prefix,
                        width, (double)eps);
    return mc_layer_norm_affine(params, prefix, width, &out->weight, &out->bias);
}

mc_status mc_layer_norm_forward(mc_graph *g, const mc_layer_norm *layer, mc_tensor *x,
                                mc_tensor **out) {
    return mc_layernorm(g, x, layer->weight, layer->bias, layer->eps, out);
}

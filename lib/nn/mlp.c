/* The transformer's feed-forward part: fc1 -> activation -> fc2. */
#include "mmchain/nn.h"

#include "nn/layer_internal.h"

mc_status mc_activation_forward(mc_graph *g, mc_activation activation, mc_tensor *x,
                                mc_tensor **out) {
    return mc_activate(g, activation, x, out);
}

mc_status mc_mlp_init(mc_param_list *params, const char *prefix, int in_features,
                      int hidden_features, int out_features, mc_activation activation,
                      mc_rng *rng, mc_mlp *out) {
    *out = (mc_mlp){.activation = activation};
    if (activation != MC_ACT_GELU && activation != MC_ACT_QUICK_GELU && activation != MC_ACT_RELU)
        return mc_error(MC_ERR_ARG, "mlp %s: activation %d is not one of gelu, quick_gelu, relu",
                        prefix, (int)activation);
    char name[MC_NAME_LEN];
    const int first = params->count;
    mc_status status = mc_linear_init(params, mc_layer_child(name, sizeof name, prefix, "fc1"),
                                      in_features, hidden_features, true, rng, &out->fc1);
    if (status == MC_OK)
        status = mc_linear_init(params, mc_layer_child(name, sizeof name, prefix, "fc2"),
                                hidden_features, out_features, true, rng, &out->fc2);
    if (status != MC_OK) *out = (mc_mlp){.activation = activation};
    return mc_layer_init_end(params, first, status);
}

mc_status mc_mlp_forward_residual(mc_graph *g, const mc_mlp *layer, mc_tensor *x,
                                  mc_tensor *residual, mc_tensor **out) {
    mc_tensor *activated;
    /* fc1 and the activation as one op: in inference, one tensor and one
     * pass fewer (mc_linear_activation). */
    MC_TRY(mc_linear_activation(g, x, layer->fc1.weight, layer->fc1.bias, layer->activation,
                                &activated));
    if (!residual) return mc_linear_forward(g, &layer->fc2, activated, out);
    return mc_linear_residual(g, activated, layer->fc2.weight, layer->fc2.bias, residual, out);
}

mc_status mc_mlp_forward(mc_graph *g, const mc_mlp *layer, mc_tensor *x, mc_tensor **out) {
    return mc_mlp_forward_residual(g, layer, x, NULL, out);
}

/* The transformer's feed-forward part: fc1 -> activation -> fc2. */
#include "mmchain/nn.h"

#include "nn/layer_internal.h"

mc_status mc_activation_forward(mc_graph *g, mc_activation activation, mc_tensor *x,
                                mc_tensor **out) {
    switch (activation) {
    case MC_ACT_GELU: return mc_gelu(g, x, out);
    case MC_ACT_QUICK_GELU: return mc_quick_gelu(g, x, out);
    case MC_ACT_RELU: return mc_relu(g, x, out);
    }
    return mc_error(MC_ERR_ARG, "activation %d is not one of gelu, quick_gelu, relu",
                    (int)activation);
}

mc_status mc_mlp_init(mc_param_list *params, const char *prefix, int in_features,
                      int hidden_features, int out_features, mc_activation activation,
                      mc_rng *rng, mc_mlp *out) {
    *out = (mc_mlp){.activation = activation};
    if (activation != MC_ACT_GELU && activation != MC_ACT_QUICK_GELU && activation != MC_ACT_RELU)
        return mc_error(MC_ERR_ARG, "mlp %s: activation %d is not one of gelu, quick_gelu, relu",
                        prefix, (int)activation);
    char name[MC_NAME_LEN];
    MC_TRY(mc_linear_init(params, mc_layer_child(name, sizeof name, prefix, "fc1"), in_features,
                          hidden_features, true, rng, &out->fc1));
    return mc_linear_init(params, mc_layer_child(name, sizeof name, prefix, "fc2"),
                          hidden_features, out_features, true, rng, &out->fc2);
}

mc_status mc_mlp_forward(mc_graph *g, const mc_mlp *layer, mc_tensor *x, mc_tensor **out) {
    mc_tensor *hidden, *activated;
    MC_TRY(mc_linear_forward(g, &layer->fc1, x, &hidden));
    MC_TRY(mc_activation_forward(g, layer->activation, hidden, &activated));
    return mc_linear_forward(g, &layer->fc2, activated, out);
}

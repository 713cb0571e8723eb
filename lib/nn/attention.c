/* Multi-head self-attention with separate query, key, value and output
 * projections (Vaswani et al., 2017; Hugging Face's CLIPAttention). The
 * scaled dot product itself is the op mc_attention (ops.h). */
#include "mmchain/nn.h"

#include "nn/layer_internal.h"

mc_status mc_self_attention_init(mc_param_list *params, const char *prefix, int width, int heads,
                                 bool causal, mc_rng *rng, mc_self_attention *out) {
    *out = (mc_self_attention){.heads = heads, .causal = causal};
    if (width < 1 || heads < 1 || width % heads)
        return mc_error(MC_ERR_ARG, "self-attention %s: width %d must be a positive multiple of "
                        "heads %d", prefix, width, heads);
    /* Hugging Face's order (and so its state_dict's): k, v, q, out. */
    char name[MC_NAME_LEN];
    const char *const leaves[4] = {"k_proj", "v_proj", "q_proj", "out_proj"};
    mc_linear_layer *const layers[4] = {&out->k_proj, &out->v_proj, &out->q_proj, &out->out_proj};
    const int first = params->count;
    mc_status status = MC_OK;
    for (int i = 0; i < 4 && status == MC_OK; i++)
        status = mc_linear_init(params, mc_layer_child(name, sizeof name, prefix, leaves[i]), width,
                                width, true, rng, layers[i]);
    if (status != MC_OK) *out = (mc_self_attention){.heads = heads, .causal = causal};
    return mc_layer_init_end(params, first, status);
}

mc_status mc_self_attention_forward_residual(mc_graph *g, const mc_self_attention *layer,
                                             mc_tensor *x, mc_tensor *residual, mc_tensor **out) {
    mc_tensor *q, *k, *v, *attended;
    MC_TRY(mc_linear_forward(g, &layer->q_proj, x, &q));
    MC_TRY(mc_linear_forward(g, &layer->k_proj, x, &k));
    MC_TRY(mc_linear_forward(g, &layer->v_proj, x, &v));
    MC_TRY(mc_attention(g, q, k, v, layer->heads, layer->causal, &attended));
    if (!residual) return mc_linear_forward(g, &layer->out_proj, attended, out);
    return mc_linear_residual(g, attended, layer->out_proj.weight, layer->out_proj.bias, residual,
                              out);
}

mc_status mc_self_attention_forward(mc_graph *g, const mc_self_attention *layer, mc_tensor *x,
                                    mc_tensor **out) {
    return mc_self_attention_forward_residual(g, layer, x, NULL, out);
}

/* The pre-norm residual block of CLIP's towers and of the Vision
 * Transformer, and a stack of them that releases each block's
 * intermediates in inference. */
#include "mmchain/nn.h"

#include "nn/layer_internal.h"

mc_status mc_transformer_block_init(mc_param_list *params, const char *prefix,
                                    const mc_transformer_config *config, mc_rng *rng,
                                    mc_transformer_block *out) {
    *out = (mc_transformer_block){0};
    const mc_transformer_config *c = config;
    if (c->width < 1 || c->heads < 1 || c->mlp_width < 1 || c->width % c->heads)
        return mc_error(MC_ERR_ARG, "transformer block %s: width %d, heads %d, mlp_width %d "
                        "(all positive, width a multiple of heads)",
                        prefix, c->width, c->heads, c->mlp_width);
    char name[MC_NAME_LEN];
    const int first = params->count;
    mc_status status =
        mc_self_attention_init(params, mc_layer_child(name, sizeof name, prefix, "self_attn"),
                               c->width, c->heads, c->causal, rng, &out->self_attn);
    if (status == MC_OK)
        status = mc_layer_norm_init(params, mc_layer_child(name, sizeof name, prefix, "layer_norm1"),
                                    c->width, c->eps, &out->layer_norm1);
    if (status == MC_OK)
        status = mc_mlp_init(params, mc_layer_child(name, sizeof name, prefix, "mlp"), c->width,
                             c->mlp_width, c->width, c->activation, rng, &out->mlp);
    if (status == MC_OK)
        status = mc_layer_norm_init(params, mc_layer_child(name, sizeof name, prefix, "layer_norm2"),
                                    c->width, c->eps, &out->layer_norm2);
    if (status != MC_OK) *out = (mc_transformer_block){0};
    return mc_layer_init_end(params, first, status);
}

mc_status mc_transformer_block_forward(mc_graph *g, const mc_transformer_block *block,
                                       mc_tensor *x, mc_tensor **out) {
    mc_tensor *normed, *after_attention;
    /* x + self_attn(layer_norm1(x)) */
    MC_TRY(mc_layer_norm_forward(g, &block->layer_norm1, x, &normed));
    MC_TRY(mc_self_attention_forward_residual(g, &block->self_attn, normed, x, &after_attention));
    /* ... + mlp(layer_norm2(...)) */
    MC_TRY(mc_layer_norm_forward(g, &block->layer_norm2, after_attention, &normed));
    return mc_mlp_forward_residual(g, &block->mlp, normed, after_attention, out);
}

mc_status mc_transformer_forward(mc_graph *g, const mc_transformer_block *blocks, int n,
                                 mc_tensor *x, mc_tensor **out) {
    mc_graph_mark mark = mc_graph_get_mark(g);
    for (int i = 0; i < n; i++) {
        MC_TRY(mc_transformer_block_forward(g, &blocks[i], x, &x));
        MC_TRY(mc_release_unrecorded(g, mark, &x));
    }
    *out = x;
    return MC_OK;
}

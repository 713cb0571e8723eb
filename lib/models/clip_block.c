/* The pre-norm transformer block both CLIP towers are made of. */
#include "models/clip_internal.h"

/* x + out_proj(MHA(LN1(x))); x: (B, T, W). */
static mc_status attention_branch(mc_graph *g, const mc_clip_block *b, mc_tensor *x, int heads,
                                  bool causal, float eps, mc_tensor **out) {
    mc_tensor *h, *q, *k, *v, *attended, *projected;
    MC_TRY(mc_layernorm(g, x, b->ln1_weight, b->ln1_bias, eps, &h));
    MC_TRY(mc_linear(g, h, b->q_weight, b->q_bias, &q));
    MC_TRY(mc_linear(g, h, b->k_weight, b->k_bias, &k));
    MC_TRY(mc_linear(g, h, b->v_weight, b->v_bias, &v));
    MC_TRY(mc_attention(g, q, k, v, heads, causal, &attended));
    MC_TRY(mc_linear(g, attended, b->out_weight, b->out_bias, &projected));
    return mc_add(g, x, projected, out);
}

/* x + fc2(quick_gelu(fc1(LN2(x)))); x: (B, T, W). */
static mc_status mlp_branch(mc_graph *g, const mc_clip_block *b, mc_tensor *x, float eps,
                            mc_tensor **out) {
    mc_tensor *h, *hidden, *activated, *projected;
    MC_TRY(mc_layernorm(g, x, b->ln2_weight, b->ln2_bias, eps, &h));
    MC_TRY(mc_linear(g, h, b->fc1_weight, b->fc1_bias, &hidden));
    MC_TRY(mc_quick_gelu(g, hidden, &activated));
    MC_TRY(mc_linear(g, activated, b->fc2_weight, b->fc2_bias, &projected));
    return mc_add(g, x, projected, out);
}

mc_status mc_clip_block_forward(mc_graph *g, const mc_clip_block *block, mc_tensor *x, int heads,
                                bool causal, float eps, mc_tensor **out) {
    mc_tensor *after_attention;
    MC_TRY(attention_branch(g, block, x, heads, causal, eps, &after_attention));
    return mlp_branch(g, block, after_attention, eps, out);
}

mc_status mc_clip_blocks_forward(mc_graph *g, const mc_clip_block *blocks, int layers, mc_tensor *x,
                                 int heads, bool causal, float eps, mc_tensor **out) {
    bool inference = !mc_graph_grad_enabled(g);
    for (int i = 0; i < layers; i++) {
        mc_graph_mark mark = mc_graph_get_mark(g);
        MC_TRY(mc_clip_block_forward(g, &blocks[i], x, heads, causal, eps, &x));
        if (inference) MC_TRY(mc_graph_release_keep(g, mark, &x));
    }
    *out = x;
    return MC_OK;
}

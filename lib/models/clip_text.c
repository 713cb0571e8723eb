/* CLIP's text tower: a causal transformer over BPE tokens; the sentence
 * feature is the one at the end-of-text token. */
#include "mmchain/clip.h"

/* Row r's end-of-text position: the largest id in the row (eot has the
 * largest id of the vocabulary), first occurrence, as torch.argmax. */
static int eot_position(const int32_t *row, int context) {
    int best = 0;
    for (int t = 1; t < context; t++)
        if (row[t] > row[best]) best = t;
    return best;
}

mc_status mc_clip_encode_text(mc_clip *clip, mc_graph *g, const int32_t *ids, int n_texts,
                              mc_tensor **out) {
    *out = NULL;
    const mc_clip_text_config *t = &clip->config.text;
    if (!clip->config.has_text) return mc_error(MC_ERR_ARG, "clip: this model has no text tower");
    if (n_texts < 1) return mc_error(MC_ERR_ARG, "clip text tower: %d texts, expected at least one", n_texts);
    mc_tensor *tokens, *x, *rows, *at_eot, *normed;
    MC_TRY(mc_embedding(g, clip->token_embedding, ids, MC_SHAPE(n_texts, t->context), &tokens));
    MC_TRY(mc_add(g, tokens, clip->text_positions, &x));
    MC_TRY(mc_transformer_forward(g, clip->text_blocks, t->layers, x, &x));
    /* Gather row (text, eot) of x viewed as (N*T, W): an embedding lookup
     * whose table is the activation (its backward scatters the gradient). */
    int32_t *picked;
    MC_TRY(mc_graph_alloc(g, (size_t)n_texts * sizeof *picked, (void **)&picked));
    for (int i = 0; i < n_texts; i++)
        picked[i] = i * t->context + eot_position(ids + (int64_t)i * t->context, t->context);
    MC_TRY(mc_reshape(g, x, MC_SHAPE((int64_t)n_texts * t->context, t->width), &rows));
    MC_TRY(mc_embedding(g, rows, picked, MC_SHAPE(n_texts), &at_eot));
    /* LayerNorm acts on each token alone, so normalising only the gathered
     * rows equals Hugging Face's final_layer_norm over all tokens. */
    MC_TRY(mc_layer_norm_forward(g, &clip->final_layer_norm, at_eot, &normed));
    return mc_linear(g, normed, clip->text_projection, NULL, out);
}

/* CLIP's text tower: a causal transformer over BPE tokens; the sentence
 * feature is the one at the end-of-text token. */
#include "mmchain/clip.h"

#include <string.h>

/* Row r's end-of-text position: the largest id in the row (eot has the
 * largest id of the vocabulary), first occurrence, as torch.argmax. */
static int eot_position(const int32_t *row, int context) {
    int best = 0;
    for (int t = 1; t < context; t++)
        if (row[t] > row[best]) best = t;
    return best;
}

/* Every id of every row, padding included, must be a token of the
 * vocabulary: the tower embeds only a prefix of each row, but a row with a
 * bad id past its end-of-text token is still a caller's mistake. */
static mc_status check_ids(const int32_t *ids, int n_texts, int context, int vocab) {
    for (int i = 0; i < n_texts; i++)
        for (int t = 0; t < context; t++) {
            int32_t id = ids[(int64_t)i * context + t];
            if (id < 0 || id >= vocab)
                return mc_error(MC_ERR_ARG, "clip text tower: id %ld at text %d, position %d is out of "
                                "range: expected 0 <= id < vocab = %d", (long)id, i, t, vocab);
        }
    return MC_OK;
}

mc_status mc_clip_encode_text(mc_clip *clip, mc_graph *g, const int32_t *ids, int n_texts,
                              mc_tensor **out) {
    *out = NULL;
    const mc_clip_text_config *t = &clip->config.text;
    if (!clip->config.has_text) return mc_error(MC_ERR_ARG, "clip: this model has no text tower");
    if (n_texts < 1) return mc_error(MC_ERR_ARG, "clip text tower: %d texts, expected at least one", n_texts);
    if (!ids) return mc_error(MC_ERR_ARG, "clip text tower: ids is NULL");
    MC_TRY(check_ids(ids, n_texts, t->context, t->vocab));

    /* WHY only a prefix of the context: the tower is causal and the
     * sentence feature is read at each row's end-of-text token, so a token
     * after it never reaches that feature (in the full computation its key
     * gets an exp(-inf) = 0 attention weight from every earlier query, and
     * its gradient into the parameters is exactly zero). Running positions
     * 0 .. used-1, used = 1 + the batch's last end-of-text position, is the
     * same math; prompts are ~10 of CLIP's 77 tokens, so the tower does a
     * fraction of the work. */
    int32_t *eot, *prefix_ids, *picked;
    MC_TRY(mc_graph_alloc(g, (size_t)n_texts * sizeof *eot, (void **)&eot));
    int used = 1;
    for (int i = 0; i < n_texts; i++) {
        eot[i] = eot_position(ids + (int64_t)i * t->context, t->context);
        if (eot[i] + 1 > used) used = eot[i] + 1;
    }
    /* A graph that records gradients (pretraining) runs the whole context:
     * a length that changes from batch to batch would give every step other
     * block sizes than the last, so the gradient memory planned from one
     * step (graph.c) would be mapped afresh in the next (measured: the
     * demo's CLIP pretraining 35 -> 50 s, its system time doubled). */
    if (mc_graph_grad_enabled(g)) used = t->context;
    MC_TRY(mc_graph_alloc(g, (size_t)n_texts * used * sizeof *prefix_ids, (void **)&prefix_ids));
    for (int i = 0; i < n_texts; i++)
        memcpy(prefix_ids + (int64_t)i * used, ids + (int64_t)i * t->context, (size_t)used * sizeof *prefix_ids);

    mc_tensor *tokens, *positions = clip->text_positions, *x, *rows, *at_eot, *normed;
    MC_TRY(mc_embedding(g, clip->token_embedding, prefix_ids, MC_SHAPE(n_texts, used), &tokens));
    /* The first `used` rows of the positional embedding (T, W); the slice's
     * backward adds their gradient into the whole parameter. */
    if (used < t->context) MC_TRY(mc_slice(g, clip->text_positions, 0, 0, used, &positions));
    MC_TRY(mc_add(g, tokens, positions, &x));
    MC_TRY(mc_transformer_forward(g, clip->text_blocks, t->layers, x, &x));
    /* Gather row (text, eot) of x viewed as (N*used, W): an embedding lookup
     * whose table is the activation (its backward scatters the gradient). */
    MC_TRY(mc_graph_alloc(g, (size_t)n_texts * sizeof *picked, (void **)&picked));
    for (int i = 0; i < n_texts; i++) picked[i] = i * used + eot[i];
    MC_TRY(mc_reshape(g, x, MC_SHAPE((int64_t)n_texts * used, t->width), &rows));
    MC_TRY(mc_embedding(g, rows, picked, MC_SHAPE(n_texts), &at_eot));
    /* LayerNorm acts on each token alone, so normalising only the gathered
     * rows equals Hugging Face's final_layer_norm over all tokens. */
    MC_TRY(mc_layer_norm_forward(g, &clip->final_layer_norm, at_eot, &normed));
    return mc_linear(g, normed, clip->text_projection, NULL, out);
}

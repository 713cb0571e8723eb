/* CLIP's image tower: a Vision Transformer (Dosovitskiy et al., 2021) with
 * CLIP's extra LayerNorm before the blocks ("pre_layrnorm"). */
#include "mmchain/clip.h"

#include "nn/layer_internal.h"

/* pixels (N, 3, S, S) -> patch rows (N, G*G, 3*P*P), each row ordered
 * (channel, row in patch, column in patch) like the flattened conv weight
 * (W, 3, P, P): the patch embedding is then a plain matrix product. */
static mc_status patchify(mc_graph *g, mc_tensor *pixels, int patch, mc_tensor **out) {
    int64_t n = pixels->shape.dim[0], c = pixels->shape.dim[1];
    int64_t grid = pixels->shape.dim[2] / patch;
    mc_tensor *split, *moved;
    MC_TRY(mc_reshape(g, pixels, MC_SHAPE(n, c, grid, patch, grid, patch), &split));
    const int perm[6] = {0, 2, 4, 1, 3, 5}; /* -> (N, G, G, C, P, P) */
    MC_TRY(mc_permute(g, split, perm, &moved));
    return mc_reshape(g, moved, MC_SHAPE(n, grid * grid, c * patch * patch), out);
}

/* [class token; patch embeddings] + positions: (N, G*G, W) -> (N, 1+G*G, W). */
static mc_status add_class_token_and_positions(mc_graph *g, mc_clip *clip, mc_tensor *patches,
                                               mc_tensor **out) {
    int64_t n = patches->shape.dim[0], width = patches->shape.dim[2];
    mc_tensor *zeros, *class_row, *class_tokens, *tokens;
    /* Broadcast the (W) class embedding to (N, 1, W) by adding it to zeros. */
    MC_TRY(mc_graph_tensor(g, MC_SHAPE(n, 1, width), "zeros", &zeros));
    MC_TRY(mc_reshape(g, clip->class_embedding, MC_SHAPE(1, 1, width), &class_row));
    MC_TRY(mc_add(g, zeros, class_row, &class_tokens));
    mc_tensor *parts[2] = {class_tokens, patches};
    MC_TRY(mc_concat(g, 2, parts, 1, &tokens));
    return mc_add(g, tokens, clip->vision_positions, out);
}

/* The last block for the class token alone: (N, T, W) -> (N, 1, W).
 * The tower's output is its class token, and after the attention a token's
 * row depends on no other row: the output projection, the residual, the
 * second layer norm and the MLP of the other T - 1 tokens are never read.
 * So the attention runs as in every block (all T queries, as
 * mc_self_attention_forward_residual does, so its rows are the same
 * floats), and everything after it on the class token's row only. For
 * ViT-B/32 at 224 that skips 49 of 50 rows of three of the last block's
 * products, 6 % of the tower's multiply-adds. Built from ops with
 * gradients (the slices pass theirs back), so training gets it too. */
static mc_status last_block_class_token(mc_graph *g, const mc_transformer_block *block,
                                        mc_tensor *x, mc_tensor **out) {
    const mc_self_attention *attn = &block->self_attn;
    mc_tensor *normed, *q, *k, *v, *attended, *attended_class, *x_class, *after_attention;
    MC_TRY(mc_layer_norm_forward(g, &block->layer_norm1, x, &normed));
    MC_TRY(mc_linear_forward(g, &attn->q_proj, normed, &q));
    MC_TRY(mc_linear_forward(g, &attn->k_proj, normed, &k));
    MC_TRY(mc_linear_forward(g, &attn->v_proj, normed, &v));
    MC_TRY(mc_attention(g, q, k, v, attn->heads, attn->causal, &attended)); /* (N, T, W) */
    MC_TRY(mc_slice(g, attended, 1, 0, 1, &attended_class));                /* (N, 1, W) */
    MC_TRY(mc_slice(g, x, 1, 0, 1, &x_class));
    MC_TRY(mc_linear_residual(g, attended_class, attn->out_proj.weight, attn->out_proj.bias, x_class,
                              &after_attention));
    MC_TRY(mc_layer_norm_forward(g, &block->layer_norm2, after_attention, &normed));
    return mc_mlp_forward_residual(g, &block->mlp, normed, after_attention, out);
}

mc_status mc_clip_encode_image(mc_clip *clip, mc_graph *g, mc_tensor *pixels, mc_tensor **out) {
    *out = NULL;
    const mc_clip_vision_config *v = &clip->config.vision;
    if (!clip->config.has_vision) return mc_error(MC_ERR_ARG, "clip: this model has no vision tower");
    if (!pixels) return mc_error(MC_ERR_ARG, "clip image tower: pixels is NULL");
    if (pixels->shape.ndim != 4 || pixels->shape.dim[1] != 3 || pixels->shape.dim[2] != v->image_size ||
        pixels->shape.dim[3] != v->image_size) {
        char s[128];
        return mc_error(MC_ERR_SHAPE, "clip image tower: input %s, expected (N, 3, %d, %d)",
                        mc_tensor_str(pixels, s, sizeof s), v->image_size, v->image_size);
    }
    int64_t n = pixels->shape.dim[0];
    mc_tensor *patches, *embedded, *x, *class_out, *class_flat, *pooled;
    MC_TRY(patchify(g, pixels, v->patch, &patches));
    /* The (W, 3, P, P) kernel taken as (W, 3 P P) by mc_linear itself, not
     * through a reshape: the parameter, not a view of it, reaches the
     * product, so a bf16 graph multiplies by its cached bf16 copy. */
    MC_TRY(mc_linear(g, patches, clip->patch_embedding, NULL, &embedded));
    MC_TRY(add_class_token_and_positions(g, clip, embedded, &x));
    MC_TRY(mc_layer_norm_forward(g, &clip->pre_layernorm, x, &x));
    if (v->layers > 0) {
        mc_graph_mark mark = mc_graph_get_mark(g);
        MC_TRY(mc_transformer_forward(g, clip->vision_blocks, v->layers - 1, x, &x));
        MC_TRY(last_block_class_token(g, &clip->vision_blocks[v->layers - 1], x, &class_out));
        MC_TRY(mc_release_unrecorded(g, mark, &class_out)); /* inference: the blocks' tensors go */
    } else {
        MC_TRY(mc_slice(g, x, 1, 0, 1, &class_out)); /* the class token: (N, 1, W) */
    }
    MC_TRY(mc_reshape(g, class_out, MC_SHAPE(n, v->width), &class_flat));
    MC_TRY(mc_layer_norm_forward(g, &clip->post_layernorm, class_flat, &pooled));
    return mc_linear(g, pooled, clip->visual_projection, NULL, out);
}

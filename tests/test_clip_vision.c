/* CLIP's image tower against its definition: every block on every token,
 * then the class token (what mc_clip_encode_image did before it ran the
 * last block's output projection and MLP on the class token alone). The
 * reference below builds that from the tower's parts with public ops; the
 * tower's embedding and its gradients must match it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* A small tower: 16x16 images in 8x8 patches (5 tokens), `layers` blocks. */
static mc_clip *small_vision_clip(int layers, uint64_t seed) {
    mc_clip_config c = {0};
    c.has_vision = true;
    c.embed_dim = 16;
    c.vision = (mc_clip_vision_config){.width = 64, .layers = layers, .heads = 2, .mlp_width = 96, .patch = 8,
                                       .image_size = 16};
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    mc_clip *clip;
    MC_CHECK_OK(mc_clip_new(&clip, &c, &rng));
    return clip;
}

/* The definition: patches -> linear -> [class; patches] + positions -> pre
 * layer norm -> all blocks on all tokens -> class token -> post layer norm
 * -> projection. pixels (N, 3, S, S) -> (N, E). */
static void reference_encode(mc_clip *clip, mc_graph *g, mc_tensor *pixels, mc_tensor **out) {
    const mc_clip_vision_config *v = &clip->config.vision;
    const int64_t n = pixels->shape.dim[0], grid = v->image_size / v->patch, width = v->width;
    mc_tensor *split, *moved, *patches, *embedded, *zeros, *class_row, *class_tokens, *tokens, *x, *class_out,
        *class_flat, *pooled;
    MC_CHECK_OK(mc_reshape(g, pixels, MC_SHAPE(n, 3, grid, v->patch, grid, v->patch), &split));
    const int perm[6] = {0, 2, 4, 1, 3, 5};
    MC_CHECK_OK(mc_permute(g, split, perm, &moved));
    MC_CHECK_OK(mc_reshape(g, moved, MC_SHAPE(n, grid * grid, 3 * v->patch * v->patch), &patches));
    MC_CHECK_OK(mc_linear(g, patches, clip->patch_embedding, NULL, &embedded));
    MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(n, 1, width), "zeros", &zeros));
    MC_CHECK_OK(mc_reshape(g, clip->class_embedding, MC_SHAPE(1, 1, width), &class_row));
    MC_CHECK_OK(mc_add(g, zeros, class_row, &class_tokens));
    mc_tensor *parts[2] = {class_tokens, embedded};
    MC_CHECK_OK(mc_concat(g, 2, parts, 1, &tokens));
    MC_CHECK_OK(mc_add(g, tokens, clip->vision_positions, &x));
    MC_CHECK_OK(mc_layer_norm_forward(g, &clip->pre_layernorm, x, &x));
    MC_CHECK_OK(mc_transformer_forward(g, clip->vision_blocks, v->layers, x, &x));
    MC_CHECK_OK(mc_slice(g, x, 1, 0, 1, &class_out));
    MC_CHECK_OK(mc_reshape(g, class_out, MC_SHAPE(n, width), &class_flat));
    MC_CHECK_OK(mc_layer_norm_forward(g, &clip->post_layernorm, class_flat, &pooled));
    MC_CHECK_OK(mc_linear(g, pooled, clip->visual_projection, NULL, out));
}

/* Embeddings without gradients: the tower and the reference, 1 to 3 blocks
 * (1: the last block is the first), batch 3. */
START_TEST(test_image_tower_matches_all_token_reference) {
    for (int layers = 1; layers <= 3; layers++) {
        mc_clip *clip = small_vision_clip(layers, 10 + (uint64_t)layers);
        mc_rng rng;
        mc_rng_seed(&rng, 7);
        mc_tensor *pixels;
        MC_CHECK_OK(mc_tensor_new(&pixels, MC_SHAPE(3, 3, 16, 16), "pixels"));
        mc_tensor_normal(pixels, &rng, 0.0f, 1.0f);
        mc_graph *g = mc_test_new_graph();
        mc_graph_set_grad_enabled(g, false);
        mc_tensor *ours, *expected;
        MC_CHECK_OK(mc_clip_encode_image(clip, g, pixels, &ours));
        float *got = mc_test_copy_floats(ours->data, ours->numel);
        reference_encode(clip, g, pixels, &expected);
        ck_assert_int_eq(ours->numel, expected->numel);
        /* The same ops on the class token's rows: the same floats up to
         * the products' rounding (in practice bit for bit). */
        mc_test_assert_close("image embedding vs all-token reference", got, expected->data, (long)expected->numel,
                             1e-5, 1e-6);
        free(got);
        mc_graph_free(g);
        mc_tensor_free(pixels);
        mc_clip_free(clip);
    }
}
END_TEST

/* sum(out * r) with a fixed r: a loss whose gradient reaches every output. */
static void weighted_sum(mc_graph *g, mc_tensor *out, mc_tensor **loss) {
    mc_tensor *r, *product;
    MC_CHECK_OK(mc_graph_tensor(g, out->shape, "r", &r));
    for (int64_t i = 0; i < r->numel; i++) r->data[i] = (float)((i * 37) % 11) / 11.0f - 0.4f;
    MC_CHECK_OK(mc_mul(g, out, r, &product));
    MC_CHECK_OK(mc_sum_all(g, product, loss));
}

/* Training: every parameter's gradient (and the pixels') equals the
 * reference's, so the tower trains as before. 2 blocks: the first block's
 * gradients come through the last block's key and value rows of every
 * token, its query rows only through the class token. */
START_TEST(test_image_tower_gradients_match_reference) {
    mc_clip *clip = small_vision_clip(2, 21);
    mc_rng rng;
    mc_rng_seed(&rng, 8);
    mc_tensor *pixels;
    MC_CHECK_OK(mc_tensor_new(&pixels, MC_SHAPE(2, 3, 16, 16), "pixels"));
    mc_tensor_normal(pixels, &rng, 0.0f, 1.0f);
    MC_CHECK_OK(mc_tensor_set_requires_grad(pixels, true));
    const int n_params = clip->params.count;
    float **reference_grads = calloc((size_t)n_params + 1, sizeof *reference_grads);
    ck_assert_ptr_nonnull(reference_grads);
    mc_graph *g = mc_test_new_graph();
    for (int pass = 0; pass < 2; pass++) { /* 0: the reference, 1: the tower */
        mc_graph_reset(g);
        mc_params_zero_grad(&clip->params);
        mc_tensor_zero_grad(pixels);
        mc_tensor *out, *loss;
        if (pass == 0) reference_encode(clip, g, pixels, &out);
        else MC_CHECK_OK(mc_clip_encode_image(clip, g, pixels, &out));
        weighted_sum(g, out, &loss);
        MC_CHECK_OK(mc_backward(g, loss));
        for (int i = 0; i <= n_params; i++) {
            const mc_tensor *t = i < n_params ? clip->params.items[i] : pixels;
            if (!t->grad) {
                ck_assert_msg(pass == 0 || !reference_grads[i], "%s: no gradient, the reference has one", t->name);
                continue;
            }
            if (pass == 0) {
                reference_grads[i] = mc_test_copy_floats(t->grad, t->numel);
                continue;
            }
            ck_assert_msg(reference_grads[i] != NULL, "%s: a gradient the reference does not have", t->name);
            mc_test_assert_close(t->name, t->grad, reference_grads[i], (long)t->numel, 1e-4, 1e-6);
        }
    }
    for (int i = 0; i <= n_params; i++) free(reference_grads[i]);
    free(reference_grads);
    mc_graph_free(g);
    mc_tensor_free(pixels);
    mc_clip_free(clip);
}
END_TEST

int main(void) {
    Suite *s = suite_create("clip_vision");
    const TTest *const tests[] = {test_image_tower_matches_all_token_reference,
                                  test_image_tower_gradients_match_reference, NULL};
    tcase_set_timeout(mc_test_add_case(s, "clip_vision", tests), 60);
    return mc_test_run_suite(s);
}

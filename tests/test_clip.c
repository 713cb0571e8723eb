/* CLIP towers: construction, saving and loading (whole, one tower, broken
 * files), input checks, zero-shot helpers, and training from scratch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "limited.h"
#include "testutil.h"

static mc_clip_config tiny_config(void) {
    mc_clip_config c = {0};
    c.has_vision = c.has_text = true;
    c.embed_dim = 16;
    c.vision = (mc_clip_vision_config){.width = 64, .layers = 1, .heads = 2, .mlp_width = 64, .patch = 8, .image_size = 16};
    c.text = (mc_clip_text_config){.width = 64, .layers = 1, .heads = 1, .mlp_width = 128, .context = 8, .vocab = 20};
    return c;
}

static void make_ids(int32_t *ids, int n, int context) {
    /* sot (18), a few words, eot (19, the largest id), zero padding. */
    for (int i = 0; i < n; i++) {
        int32_t *row = ids + i * context;
        memset(row, 0, sizeof *row * (size_t)context);
        row[0] = 18;
        row[1] = 1 + i % 17;
        row[2] = 1 + (3 * i) % 17;
        row[3] = 19;
    }
}

/* A tiny CLIP with weights drawn from `seed`. */
static mc_clip *tiny_clip(uint64_t seed) {
    mc_clip_config config = tiny_config();
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    mc_clip *clip;
    MC_CHECK_OK(mc_clip_new(&clip, &config, &rng));
    return clip;
}

START_TEST(test_save_and_load_round_trip) {
    mc_clip *clip = tiny_clip(3);
    mc_clip *loaded;
    char path[512];
    mc_test_dir_path("clip.safetensors", path, sizeof path);
    mc_metadata_entry meta[] = {{"format", "pt"}};
    MC_CHECK_OK(mc_clip_save(clip, path, 1, meta));
    MC_CHECK_OK(mc_clip_load(path, &loaded));
    /* Every size is derived from the tensors — except the head count, which
     * the loader takes as width / 64 (CLIP's convention). */
    ck_assert_int_eq(loaded->config.vision.image_size, 16);
    ck_assert_int_eq(loaded->config.vision.mlp_width, 64);
    ck_assert_int_eq(loaded->config.text.context, 8);
    ck_assert_int_eq(loaded->config.text.vocab, 20);
    ck_assert_int_eq(loaded->config.embed_dim, 16);
    mc_test_assert_same_params("loaded CLIP", &clip->params, &loaded->params);
    mc_clip_free(clip);
    mc_clip_free(loaded);
}
END_TEST

/* Write only the tensors whose name starts with one of the prefixes (and
 * logit_scale), leaving out `drop_exact`, adding `extra` (both may be NULL). */
static void write_subset(const mc_clip *clip, const char *path, const char *keep1, const char *keep2,
                         const char *drop_exact, mc_tensor *extra) {
    mc_tensor **list = malloc(sizeof *list * (size_t)(clip->params.count + 1));
    int n = 0;
    for (int i = 0; i < clip->params.count; i++) {
        const char *name = clip->params.items[i]->name;
        if (drop_exact && strcmp(name, drop_exact) == 0) continue;
        if ((keep1 && strncmp(name, keep1, strlen(keep1)) == 0) || (keep2 && strncmp(name, keep2, strlen(keep2)) == 0) ||
            strcmp(name, "logit_scale") == 0)
            list[n++] = clip->params.items[i];
    }
    if (extra) list[n++] = extra;
    MC_CHECK_OK(mc_safetensors_write(path, n, list, 0, NULL));
    free(list);
}

static mc_status load_and_free(void *path) {
    mc_clip *clip = NULL;
    mc_status status = mc_clip_load(path, &clip);
    mc_clip_free(clip);
    return status;
}

/* A text tower whose token embedding is stored transposed, (64, 49408)
 * instead of (49408, 64), declares a 49408-wide transformer (tens of
 * gigabytes). The other shapes refuse it within 256 MB and a few seconds,
 * before anything is built. */
START_TEST(test_transposed_token_embedding) {
    mc_clip *clip = tiny_clip(6);
    char path[512];
    mc_test_dir_path("transposed.safetensors", path, sizeof path);
    mc_tensor *transposed;
    MC_CHECK_OK(mc_tensor_new(&transposed, MC_SHAPE(64, 49408), "text_model.embeddings.token_embedding.weight"));
    write_subset(clip, path, "text_model.", "text_projection", "text_model.embeddings.token_embedding.weight",
                 transposed);
    mc_test_expect_fails_limited(load_and_free, path, 256u << 20, 20, MC_ERR_FORMAT,
                                 "needs tensor text_model.embeddings.position_embedding.weight (8, 49408), "
                                 "the file holds (8, 64)");
    mc_tensor_free(transposed);
    mc_clip_free(clip);
}
END_TEST

/* ---- batched inference and the fingerprint ---- */

/* The tower on all rows at once, with a fresh graph: the reference the
 * batched helpers must reproduce. */
static mc_tensor *encode_at_once(mc_clip *clip, mc_tensor *pixels, const int32_t *ids, int n) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *step, *copy;
    if (pixels) MC_CHECK_OK(mc_clip_encode_image(clip, g, pixels, &step));
    else MC_CHECK_OK(mc_clip_encode_text(clip, g, ids, n, &step));
    MC_CHECK_OK(mc_tensor_clone(&copy, step, "reference"));
    mc_graph_free(g);
    return copy;
}

START_TEST(test_embed_in_batches) {
    mc_clip *clip = tiny_clip(8);
    const int n = 5, context = clip->config.text.context, embed = clip->config.embed_dim;
    mc_rng rng;
    mc_rng_seed(&rng, 9);
    mc_tensor *rgb, *pixels, *out;
    MC_CHECK_OK(mc_tensor_new(&rgb, MC_SHAPE(n, 3, 20, 24), "rgb"));
    mc_tensor_uniform(rgb, &rng, 0.0f, 1.0f);
    MC_CHECK_OK(mc_clip_preprocess(rgb, 16, true, &pixels));
    int32_t ids[5 * 8];
    make_ids(ids, n, context);
    mc_tensor *want_images = encode_at_once(clip, pixels, NULL, n);
    mc_tensor *want_texts = encode_at_once(clip, NULL, ids, n);
    MC_CHECK_OK(mc_tensor_new(&out, MC_SHAPE(n, embed), "out"));
    const int batches[] = {1, 2, 5, 64};
    for (int b = 0; b < 4; b++) {
        mc_tensor_fill(out, 0.0f);
        MC_CHECK_OK(mc_clip_embed_images(clip, pixels, false, batches[b], out));
        mc_test_assert_close("images", out->data, want_images->data, out->numel, 1e-5, 1e-6);
        mc_tensor_fill(out, 0.0f);
        MC_CHECK_OK(mc_clip_embed_images(clip, rgb, true, batches[b], out)); /* preprocessed per batch */
        mc_test_assert_close("rgb images", out->data, want_images->data, out->numel, 1e-5, 1e-6);
        mc_tensor_fill(out, 0.0f);
        MC_CHECK_OK(mc_clip_embed_texts(clip, ids, n, batches[b], out));
        mc_test_assert_close("texts", out->data, want_texts->data, out->numel, 1e-5, 1e-6);
    }
    mc_tensor *wrong;
    MC_CHECK_OK(mc_tensor_new(&wrong, MC_SHAPE(n, embed + 1), "wrong"));
    MC_CHECK_FAILS(mc_clip_embed_images(clip, pixels, false, 2, wrong), MC_ERR_SHAPE, "expected (5, 16)");
    MC_CHECK_FAILS(mc_clip_embed_texts(clip, ids, n, 0, out), MC_ERR_ARG, "batch 0");
    MC_CHECK_FAILS(mc_clip_embed_images(clip, want_texts, false, 2, out), MC_ERR_SHAPE,
                   "expected (N, 3, H, W)");
    mc_tensor_free(wrong);
    mc_tensor_free(out), mc_tensor_free(want_images), mc_tensor_free(want_texts);
    mc_tensor_free(pixels), mc_tensor_free(rgb);
    mc_clip_free(clip);
}
END_TEST

START_TEST(test_vision_fingerprint) {
    mc_clip *a = tiny_clip(10), *b = tiny_clip(10);
    char fa[17], fb[17];
    mc_clip_vision_fingerprint(a, fa);
    mc_clip_vision_fingerprint(b, fb);
    ck_assert_int_eq((int)strlen(fa), 16);
    ck_assert_str_eq(fa, fb); /* same weights */
    b->token_embedding->data[0] += 1.0f; /* the text tower does not count */
    mc_clip_vision_fingerprint(b, fb);
    ck_assert_str_eq(fa, fb);
    b->visual_projection->data[3] += 1e-3f; /* every image-tower value does */
    mc_clip_vision_fingerprint(b, fb);
    ck_assert_str_ne(fa, fb);
    mc_clip_free(a);
    mc_clip_free(b);
}
END_TEST

START_TEST(test_one_tower_files) {
    mc_clip *clip = tiny_clip(4);
    mc_clip *vision_only;
    char path[512];
    mc_test_dir_path("vision.safetensors", path, sizeof path);
    write_subset(clip, path, "vision_model.", "visual_projection", NULL, NULL);
    MC_CHECK_OK(mc_clip_load(path, &vision_only));
    ck_assert(vision_only->config.has_vision);
    ck_assert(!vision_only->config.has_text);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    int32_t ids[8] = {18, 1, 19};
    mc_tensor *out;
    MC_CHECK_FAILS(mc_clip_encode_text(vision_only, g, ids, 1, &out), MC_ERR_ARG, "no text tower");
    mc_graph_free(g);
    mc_clip_free(vision_only);
    mc_clip_free(clip);
}
END_TEST

START_TEST(test_broken_files_name_the_tensor) {
    mc_clip *clip = tiny_clip(5);
    mc_clip *loaded = NULL;
    char path[512];
    /* A missing block tensor. */
    mc_test_dir_path("missing.safetensors", path, sizeof path);
    write_subset(clip, path, "vision_model.", "visual_projection", "vision_model.encoder.layers.0.mlp.fc2.bias", NULL);
    MC_CHECK_FAILS(mc_clip_load(path, &loaded), MC_ERR_FORMAT, "vision_model.encoder.layers.0.mlp.fc2.bias");
    ck_assert_ptr_null(loaded);
    /* An unexpected tensor. */
    mc_tensor *extra;
    MC_CHECK_OK(mc_tensor_new(&extra, MC_SHAPE(3), "vision_model.surprise"));
    mc_test_dir_path("unexpected.safetensors", path, sizeof path);
    write_subset(clip, path, "vision_model.", "visual_projection", NULL, extra);
    MC_CHECK_FAILS(mc_clip_load(path, &loaded), MC_ERR_FORMAT, "vision_model.surprise");
    /* Not a CLIP file at all. */
    mc_test_dir_path("other.safetensors", path, sizeof path);
    MC_CHECK_OK(mc_safetensors_write(path, 1, &extra, 0, NULL));
    MC_CHECK_FAILS(mc_clip_load(path, &loaded), MC_ERR_FORMAT, "not a CLIPModel file");
    MC_CHECK_FAILS(mc_clip_load("/nonexistent/clip.safetensors", &loaded), MC_ERR_IO, "/nonexistent/clip.safetensors");
    mc_tensor_free(extra);
    mc_clip_free(clip);
}
END_TEST

START_TEST(test_input_checks) {
    mc_clip *clip = tiny_clip(6);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *pixels, *out;
    MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(2, 3, 32, 32), "pixels", &pixels));
    MC_CHECK_FAILS(mc_clip_encode_image(clip, g, pixels, &out), MC_ERR_SHAPE, "expected (N, 3, 16, 16)");
    int32_t ids[8] = {18, 25, 19}; /* 25 is past the vocabulary of 20 */
    MC_CHECK_FAILS(mc_clip_encode_text(clip, g, ids, 1, &out), MC_ERR_ARG, "25");
    mc_clip_config bad = tiny_config();
    bad.vision.image_size = 20; /* not a multiple of the patch */
    mc_rng rng;
    mc_rng_seed(&rng, 6);
    mc_clip *none = NULL;
    MC_CHECK_FAILS(mc_clip_new(&none, &bad, &rng), MC_ERR_ARG, "patch");
    mc_graph_free(g);
    mc_clip_free(clip);
}
END_TEST

START_TEST(test_prompt_ensembling) {
    mc_clip *clip = tiny_clip(7);
    enum { CLASSES = 3, TEMPLATES = 2 };
    int32_t ids[CLASSES * TEMPLATES * 8];
    make_ids(ids, CLASSES * TEMPLATES, 8);
    mc_tensor *classes;
    MC_CHECK_OK(mc_clip_class_embeddings(clip, ids, CLASSES, TEMPLATES, &classes));
    /* Reference: embed all prompts at once, normalise, average per class,
     * renormalise — computed here in double. */
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *all;
    MC_CHECK_OK(mc_clip_encode_text(clip, g, ids, CLASSES * TEMPLATES, &all));
    for (int k = 0; k < CLASSES; k++) {
        double mean[16] = {0}, norm = 0;
        for (int t = 0; t < TEMPLATES; t++) {
            const float *row = all->data + (k * TEMPLATES + t) * 16;
            double n2 = 0;
            for (int e = 0; e < 16; e++) n2 += (double)row[e] * row[e];
            for (int e = 0; e < 16; e++) mean[e] += row[e] / sqrt(n2) / TEMPLATES;
        }
        for (int e = 0; e < 16; e++) norm += mean[e] * mean[e];
        for (int e = 0; e < 16; e++)
            ck_assert_double_eq_tol(classes->data[k * 16 + e], mean[e] / sqrt(norm), 1e-5);
    }
    /* Scoring: logits = exp(scale) * cosine. */
    mc_tensor *logits;
    MC_CHECK_OK(mc_clip_zero_shot_logits(all, classes, logf(10.0f), &logits));
    ck_assert_int_eq(logits->shape.dim[1], CLASSES);
    for (int i = 0; i < logits->numel; i++) ck_assert(fabsf(logits->data[i]) <= 10.0f + 1e-4f);
    mc_tensor_free(logits);
    mc_tensor_free(classes);
    mc_graph_free(g);
    mc_clip_free(clip);
}
END_TEST

/* The towers are trainable: a few Adam steps of symmetric InfoNCE on
 * fixed pairs lower the loss a lot. */
START_TEST(test_training_from_scratch_lowers_the_loss) {
    mc_clip_config config = tiny_config();
    mc_rng rng;
    mc_rng_seed(&rng, 8);
    mc_clip *clip;
    MC_CHECK_OK(mc_clip_new(&clip, &config, &rng));
    enum { N = 6 };
    mc_tensor *pixels;
    MC_CHECK_OK(mc_tensor_new(&pixels, MC_SHAPE(N, 3, 16, 16), "pixels"));
    mc_tensor_normal(pixels, &rng, 0.0f, 1.0f);
    int32_t ids[N * 8];
    make_ids(ids, N, 8);
    mc_adam_config adam = mc_adam_defaults();
    adam.lr = 1e-3f;
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &clip->params, adam));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    float first = 0, last = 0;
    for (int step = 0; step < 30; step++) {
        mc_graph_reset(g);
        mc_params_zero_grad(&clip->params);
        mc_tensor *image, *text, *loss;
        MC_CHECK_OK(mc_clip_encode_image(clip, g, pixels, &image));
        MC_CHECK_OK(mc_clip_encode_text(clip, g, ids, N, &text));
        MC_CHECK_OK(mc_infonce(g, image, text, clip->logit_scale, true, &loss));
        if (step == 0) first = loss->data[0];
        last = loss->data[0];
        MC_CHECK_OK(mc_backward(g, loss));
        MC_CHECK_OK(mc_optimizer_step(opt));
    }
    /* Chance is log(6) = 1.79; a memorised batch goes far below. */
    ck_assert_msg(last < 0.3f * first, "loss went from %g to %g", first, last);
    mc_graph_free(g);
    mc_optimizer_free(opt);
    mc_tensor_free(pixels);
    mc_clip_free(clip);
}
END_TEST

int main(void) {
    Suite *s = suite_create("clip");
    const TTest *const tests[] = {test_save_and_load_round_trip, test_one_tower_files,
                                  test_broken_files_name_the_tensor,
                                  test_transposed_token_embedding, test_embed_in_batches,
                                  test_vision_fingerprint, test_input_checks,
                                  test_prompt_ensembling,
                                  test_training_from_scratch_lowers_the_loss, NULL};
    tcase_set_timeout(mc_test_use_temp_dir(mc_test_add_case(s, "clip", tests)), 60);
    return mc_test_run_suite(s);
}

/* CLIP towers: construction, saving and loading (whole, one tower, broken
 * files), input checks, zero-shot helpers, and training from scratch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "limited.h"
#include <sys/stat.h>

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
    /* Every size is derived from the tensors (the head count, which they
     * do not show, from the file's metadata: test_heads_survive_a_save). */
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

/* A tiny CLIP of `config` drawn from `seed`, with make_ids's two rows in
 * ids, their text embeddings in *want and room for others in *got. */
static mc_clip *clip_with_text_embeddings(const mc_clip_config *config, uint64_t seed,
                                          int32_t ids[2 * 8], mc_tensor **want, mc_tensor **got) {
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    mc_clip *clip;
    MC_CHECK_OK(mc_clip_new(&clip, config, &rng));
    make_ids(ids, 2, 8);
    MC_CHECK_OK(mc_tensor_new(want, MC_SHAPE(2, 16), "want"));
    MC_CHECK_OK(mc_tensor_new(got, MC_SHAPE(2, 16), "got"));
    MC_CHECK_OK(mc_clip_embed_texts(clip, ids, 2, 2, *want));
    return clip;
}

/* clip's bare tensors, as Hugging Face lays them out (no metadata), in
 * <folder>/model.safetensors, folder a new one named `name` in the test
 * directory; its path in path (640 bytes), the folder's in folder (512). */
static void write_bare_tensors(const mc_clip *clip, const char *name, char *folder, char *path) {
    mc_test_dir_path(name, folder, 512);
    ck_assert_int_eq(mkdir(folder, 0755), 0);
    snprintf(path, 640, "%s/model.safetensors", folder);
    MC_CHECK_OK(mc_safetensors_write(path, clip->params.count, clip->params.items, 0, NULL));
}

/* mc_clip_load(path), then the text embeddings of make_ids's two rows
 * (ids) into got; returns the model, for its configuration. */
static mc_clip *load_and_embed_texts(const char *path, const int32_t *ids, mc_tensor *got) {
    mc_clip *loaded;
    MC_CHECK_OK(mc_clip_load(path, &loaded));
    MC_CHECK_OK(mc_clip_embed_texts(loaded, ids, 2, 2, got));
    return loaded;
}

static void assert_same_texts(const mc_tensor *got, const mc_tensor *want, const char *what) {
    ck_assert_msg(memcmp(got->data, want->data, 32 * sizeof(float)) == 0, "%s", what);
}

/* The attention heads, which no tensor shape shows: a tower of width 64
 * with 2 heads of 32 (not CLIP's one per 64 channels) comes back with 2
 * from the file's own record, and from a Hugging Face config.json beside a
 * file without it (LAION's ViT-H/14 has 16 heads of 80, not 20 of 64);
 * without either, width / 64. The embeddings show the count matters. */
START_TEST(test_heads_survive_a_save) {
    mc_clip_config config = tiny_config();
    config.vision.heads = config.text.heads = 2;
    int32_t ids[2 * 8];
    mc_tensor *want, *got;
    mc_clip *loaded, *clip = clip_with_text_embeddings(&config, 5, ids, &want, &got);
    char path[640], folder[512], config_json[640];
    mc_test_dir_path("heads.safetensors", path, sizeof path);
    MC_CHECK_OK(mc_clip_save(clip, path, 0, NULL));
    loaded = load_and_embed_texts(path, ids, got);
    ck_assert_int_eq(loaded->config.vision.heads, 2);
    ck_assert_int_eq(loaded->config.text.heads, 2);
    assert_same_texts(got, want, "text embeddings after a save");
    mc_clip_free(loaded);

    /* Hugging Face's layout: the bare tensors, the heads in config.json. */
    write_bare_tensors(clip, "hf", folder, path);
    loaded = load_and_embed_texts(path, ids, got); /* no config.json yet: width / 64 */
    ck_assert_int_eq(loaded->config.text.heads, 1);
    ck_assert_msg(mc_test_rel_error(got->data, want->data, 32) > 1e-3, "the head count changed nothing");
    mc_clip_free(loaded);
    snprintf(config_json, sizeof config_json, "%s/config.json", folder);
    mc_test_write_text(config_json, "{\"text_config\": {\"num_attention_heads\": 2, \"hidden_size\": 64},"
                                    " \"vision_config\": {\"num_attention_heads\": 2}}");
    loaded = load_and_embed_texts(path, ids, got);
    ck_assert_int_eq(loaded->config.vision.heads, 2);
    ck_assert_int_eq(loaded->config.text.heads, 2);
    assert_same_texts(got, want, "text embeddings from Hugging Face's layout");
    mc_clip_free(loaded);
    /* A count that does not divide the width is an error naming its source. */
    mc_test_write_text(config_json, "{\"text_config\": {\"num_attention_heads\": 3}}");
    MC_CHECK_FAILS(mc_clip_load(path, &loaded), MC_ERR_FORMAT,
                   "the config.json beside it gives the text tower 3 attention heads");
    mc_test_write_text(config_json, "{\"text_config\": {\"num_attention_heads\": 0}}");
    MC_CHECK_FAILS(mc_clip_load(path, &loaded), MC_ERR_FORMAT, "gives the text tower 0 attention heads");
    /* A config.json of something else (a run folder's) says nothing. */
    mc_test_write_text(config_json, "{\"command\": \"pretrain-clip\"}");
    MC_CHECK_OK(mc_clip_load(path, &loaded));
    ck_assert_int_eq(loaded->config.text.heads, 1);
    mc_clip_free(loaded);
    mc_tensor_free(want);
    mc_tensor_free(got);
    mc_clip_free(clip);
}
END_TEST

/* The MLP's activation, which no tensor shows either: OpenAI's CLIPs use
 * quick_gelu, open_clip's own (LAION's) the exact GELU. A text tower with
 * GELU comes back with it from the file's own record and from a config.json
 * beside bare tensors (a CLIPModel's <kind>_config, or a one-tower
 * config.json's top level); without either it loads as quick_gelu, and the
 * embeddings show that this matters. A name this library does not run is
 * an error naming it. */
START_TEST(test_activation_survives_a_save) {
    mc_clip_config config = tiny_config();
    config.text.activation = MC_CLIP_GELU;
    int32_t ids[2 * 8];
    mc_tensor *want, *got;
    mc_clip *loaded, *clip = clip_with_text_embeddings(&config, 6, ids, &want, &got);
    ck_assert_int_eq(clip->text_blocks[0].mlp.activation, MC_ACT_GELU);
    ck_assert_int_eq(clip->vision_blocks[0].mlp.activation, MC_ACT_QUICK_GELU);
    char path[640], folder[512], config_json[640];
    mc_test_dir_path("act.safetensors", path, sizeof path);
    MC_CHECK_OK(mc_clip_save(clip, path, 0, NULL));
    loaded = load_and_embed_texts(path, ids, got);
    ck_assert_int_eq(loaded->config.text.activation, MC_CLIP_GELU);
    ck_assert_int_eq(loaded->config.vision.activation, MC_CLIP_QUICK_GELU);
    assert_same_texts(got, want, "text embeddings after a save");
    mc_clip_free(loaded);

    /* Hugging Face's layout: the bare tensors, hidden_act in config.json. */
    write_bare_tensors(clip, "hf-act", folder, path);
    loaded = load_and_embed_texts(path, ids, got); /* no config.json yet: quick_gelu */
    ck_assert_int_eq(loaded->config.text.activation, MC_CLIP_QUICK_GELU);
    ck_assert_msg(mc_test_rel_error(got->data, want->data, 32) > 1e-4, "the activation changed nothing");
    mc_clip_free(loaded);
    snprintf(config_json, sizeof config_json, "%s/config.json", folder);
    mc_test_write_text(config_json, "{\"text_config\": {\"hidden_act\": \"gelu\"},"
                                    " \"vision_config\": {\"hidden_act\": \"quick_gelu\"}}");
    loaded = load_and_embed_texts(path, ids, got);
    ck_assert_int_eq(loaded->config.text.activation, MC_CLIP_GELU);
    ck_assert_int_eq(loaded->config.vision.activation, MC_CLIP_QUICK_GELU);
    assert_same_texts(got, want, "text embeddings from Hugging Face's layout");
    mc_clip_free(loaded);
    /* A CLIPTextModel's config.json: the same keys at its top level. */
    mc_test_write_text(config_json, "{\"model_type\": \"clip_text_model\", \"hidden_act\": \"gelu\"}");
    MC_CHECK_OK(mc_clip_load(path, &loaded));
    ck_assert_int_eq(loaded->config.text.activation, MC_CLIP_GELU);
    ck_assert_int_eq(loaded->config.vision.activation, MC_CLIP_QUICK_GELU);
    mc_clip_free(loaded);
    mc_test_write_text(config_json, "{\"text_config\": {\"hidden_act\": \"gelu_new\"}}");
    MC_CHECK_FAILS(mc_clip_load(path, &loaded), MC_ERR_FORMAT,
                   "the config.json beside it gives the text tower the activation \"gelu_new\"");
    mc_test_write_text(config_json, "{\"vision_config\": {\"hidden_act\": 1}}");
    MC_CHECK_FAILS(mc_clip_load(path, &loaded), MC_ERR_FORMAT, "vision tower's hidden_act as a number");
    /* And mc_clip_new refuses a value that is no activation. */
    config.vision.activation = (mc_clip_activation)7;
    mc_rng rng;
    mc_rng_seed(&rng, 6);
    MC_CHECK_FAILS(mc_clip_new(&loaded, &config, &rng), MC_ERR_ARG, "activation 7");
    mc_tensor_free(want);
    mc_tensor_free(got);
    mc_clip_free(clip);
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
    /* Hugging Face's one-tower models keep no logit_scale: the tower loads
     * and the scale keeps its initial value. A two-tower file needs it. */
    write_subset(clip, path, "vision_model.", "visual_projection", "logit_scale", NULL);
    MC_CHECK_OK(mc_clip_load(path, &vision_only));
    ck_assert(vision_only->config.has_vision && !vision_only->config.has_text);
    ck_assert_float_eq(vision_only->logit_scale->data[0], logf(1.0f / 0.07f));
    mc_clip_free(vision_only);
    write_subset(clip, path, "", NULL, "logit_scale", NULL); /* every tensor but it */
    MC_CHECK_FAILS(mc_clip_load(path, &vision_only), MC_ERR_FORMAT, "logit_scale");
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
    /* An empty position embedding of 2^40 rows: its grid squared (2^40) would
     * overflow an int before any other check; refused by its size. */
    static float patch[8 * 3 * 8 * 8];
    mc_test_dir_path("empty.safetensors", path, sizeof path);
    mc_test_write_safetensors(path,
                              "{\"vision_model.embeddings.patch_embedding.weight\": {\"dtype\": \"F32\", "
                              "\"shape\": [8, 3, 8, 8], \"data_offsets\": [0, 6144]}, "
                              "\"vision_model.embeddings.position_embedding.weight\": {\"dtype\": \"F32\", "
                              "\"shape\": [1099511627776, 0], \"data_offsets\": [6144, 6144]}}",
                              patch, sizeof patch, UINT64_MAX);
    MC_CHECK_FAILS(mc_clip_load(path, &loaded), MC_ERR_FORMAT,
                   "position_embedding.weight has a dimension of 1099511627776");
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
    /* A bad id after end-of-text: the tower does not embed it, but it is
     * still the caller's mistake. */
    int32_t after_eot[8] = {18, 3, 19, 0, -4};
    MC_CHECK_FAILS(mc_clip_encode_text(clip, g, after_eot, 1, &out), MC_ERR_ARG, "id -4 at text 0, position 4");
    mc_clip_config bad = tiny_config();
    bad.vision.image_size = 20; /* not a multiple of the patch */
    mc_rng rng;
    mc_rng_seed(&rng, 6);
    mc_clip *none = NULL;
    MC_CHECK_FAILS(mc_clip_new(&none, &bad, &rng), MC_ERR_ARG, "patch");
    /* 65,536 patches a side: 1 + G * G positions would overflow an int. */
    bad = tiny_config();
    bad.vision.image_size = 65536;
    bad.vision.patch = 1;
    MC_CHECK_FAILS(mc_clip_new(&none, &bad, &rng), MC_ERR_ARG, "65536 patches a side");
    /* NULL where a tensor belongs: an error, not a crash. */
    MC_CHECK_FAILS(mc_clip_encode_image(clip, g, NULL, &out), MC_ERR_ARG, "pixels is NULL");
    MC_CHECK_FAILS(mc_clip_zero_shot_logits(NULL, pixels, 1.0f, &out), MC_ERR_ARG,
                   "image embeddings are NULL");
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

/* ---- the text tower stops at the batch's last end-of-text token ---- */

enum { PREFIX_TEXTS = 6, PREFIX_CONTEXT = 16, PREFIX_VOCAB = 40 };

/* The text tower over all `context` positions, from public ops: what
 * mc_clip_encode_text computed before it stopped at the batch's last
 * end-of-text token, the reference that shortcut must reproduce. eot: each
 * row's end-of-text position. */
static mc_status encode_text_all_positions(mc_clip *clip, mc_graph *g, const int32_t *ids, const int *eot,
                                           mc_tensor **out) {
    const mc_clip_text_config *t = &clip->config.text;
    mc_tensor *tokens, *x, *rows, *features, *normed;
    MC_TRY(mc_embedding(g, clip->token_embedding, ids, MC_SHAPE(PREFIX_TEXTS, t->context), &tokens));
    MC_TRY(mc_add(g, tokens, clip->text_positions, &x));
    MC_TRY(mc_transformer_forward(g, clip->text_blocks, t->layers, x, &x));
    int32_t picked[PREFIX_TEXTS];
    for (int i = 0; i < PREFIX_TEXTS; i++) picked[i] = i * t->context + eot[i];
    MC_TRY(mc_reshape(g, x, MC_SHAPE(PREFIX_TEXTS * t->context, t->width), &rows));
    MC_TRY(mc_embedding(g, rows, picked, MC_SHAPE(PREFIX_TEXTS), &features));
    MC_TRY(mc_layer_norm_forward(g, &clip->final_layer_norm, features, &normed));
    return mc_linear(g, normed, clip->text_projection, NULL, out);
}

/* The text embeddings and pretraining's loss (symmetric InfoNCE against
 * fixed image embeddings) with every gradient, by mc_clip_encode_text
 * (all_positions false) or by the reference: embeds (N, E) and grads (the
 * trainable parameters' gradients one after the other) are filled. */
static void text_loss_and_gradients(mc_clip *clip, const int32_t *ids, const int *eot, const mc_tensor *images,
                                    bool all_positions, float *embeds, float *grads) {
    mc_graph *g = mc_test_new_graph();
    mc_params_zero_grad(&clip->params);
    mc_tensor *text, *loss, image_view = *images;
    if (all_positions) MC_CHECK_OK(encode_text_all_positions(clip, g, ids, eot, &text));
    else MC_CHECK_OK(mc_clip_encode_text(clip, g, ids, PREFIX_TEXTS, &text));
    memcpy(embeds, text->data, (size_t)text->numel * sizeof(float));
    MC_CHECK_OK(mc_infonce(g, &image_view, text, clip->logit_scale, true, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    for (int p = 0; p < clip->params.count; p++) {
        const mc_tensor *param = clip->params.items[p];
        if (!param->requires_grad) continue;
        ck_assert_msg(param->grad, "%s has no gradient", param->name);
        memcpy(grads, param->grad, (size_t)param->numel * sizeof(float));
        grads += param->numel;
    }
    mc_graph_free(g);
}

/* Rows of different lengths whose tokens after end-of-text are random
 * words, not padding (the causal tower never lets them reach the feature):
 * the embeddings, the loss's gradient of every text parameter (token and
 * position embeddings, every layer, final norm, projection, logit scale)
 * agree with the tower run over all 16 positions, and so do the embeddings
 * without gradients, where the tower stops at the batch's last end token:
 * with end-of-text at 1..9 it runs 10 positions; with one row ending at
 * the last position, all 16. */
START_TEST(test_text_tower_stops_at_the_last_end_token) {
    mc_clip_config config = {.has_text = true, .embed_dim = 16};
    config.text = (mc_clip_text_config){.width = 64, .layers = 2, .heads = 2, .mlp_width = 128,
                                        .context = PREFIX_CONTEXT, .vocab = PREFIX_VOCAB};
    mc_rng rng;
    mc_rng_seed(&rng, 12);
    mc_clip *clip;
    MC_CHECK_OK(mc_clip_new(&clip, &config, &rng));
    mc_tensor *images;
    MC_CHECK_OK(mc_tensor_new(&images, MC_SHAPE(PREFIX_TEXTS, 16), "images"));
    mc_tensor_normal(images, &rng, 0.0f, 1.0f);
    int64_t n_grads = mc_params_numel(&clip->params, false), n_embeds = PREFIX_TEXTS * 16;
    float *got = malloc((size_t)(n_embeds + n_grads) * sizeof(float));
    float *want = malloc((size_t)(n_embeds + n_grads) * sizeof(float));
    ck_assert(got && want);
    const int endings[2][PREFIX_TEXTS] = {{1, 4, 2, 9, 6, 3}, {5, PREFIX_CONTEXT - 1, 1, 7, 2, 3}};
    for (int batch = 0; batch < 2; batch++) {
        int32_t ids[PREFIX_TEXTS * PREFIX_CONTEXT];
        for (int i = 0; i < PREFIX_TEXTS; i++) {
            int32_t *row = ids + i * PREFIX_CONTEXT;
            row[0] = PREFIX_VOCAB - 2; /* sot */
            for (int t = 1; t < PREFIX_CONTEXT; t++) row[t] = (int32_t)mc_rng_below(&rng, PREFIX_VOCAB - 2);
            row[endings[batch][i]] = PREFIX_VOCAB - 1; /* eot, the largest id */
        }
        text_loss_and_gradients(clip, ids, endings[batch], images, false, got, got + n_embeds);
        text_loss_and_gradients(clip, ids, endings[batch], images, true, want, want + n_embeds);
        double embed_error = mc_test_rel_error(got, want, (long)n_embeds);
        ck_assert_msg(embed_error <= 1e-6, "batch %d: embeddings off by %g relative", batch, embed_error);
        /* Without gradients the tower stops at the batch's last end token
         * (10 positions in batch 0): the same embeddings. */
        mc_graph *no_grad = mc_test_new_graph();
        mc_graph_set_grad_enabled(no_grad, false);
        mc_tensor *short_text;
        MC_CHECK_OK(mc_clip_encode_text(clip, no_grad, ids, PREFIX_TEXTS, &short_text));
        double short_error = mc_test_rel_error(short_text->data, want, (long)n_embeds);
        ck_assert_msg(short_error <= 1e-6, "batch %d: embeddings without gradients off by %g relative", batch,
                      short_error);
        fprintf(stderr, "text tower prefix, batch %d, no gradients: %s\n", batch,
                memcmp(short_text->data, want, (size_t)n_embeds * sizeof(float)) == 0 ? "bitwise equal"
                                                                                       : "not bitwise equal");
        mc_graph_free(no_grad);
        /* Each gradient as a whole tensor, relative to its norm; the key
         * biases' gradients are zero in exact arithmetic (softmax ignores a
         * shift shared by all keys) and hold only rounding noise, hence the
         * absolute floor of 1e-6 of the largest gradient norm. */
        double worst = 0.0, largest = 0.0;
        const char *worst_name = "none";
        for (int pass = 0; pass < 2; pass++) {
            int64_t offset = n_embeds;
            for (int p = 0; p < clip->params.count; p++) {
                const mc_tensor *param = clip->params.items[p];
                if (!param->requires_grad) continue;
                long n = (long)param->numel;
                double norm = 0.0, diff = 0.0;
                for (long k = 0; k < n; k++) {
                    double d = (double)got[offset + k] - want[offset + k];
                    norm += (double)want[offset + k] * want[offset + k];
                    diff += d * d;
                }
                if (pass == 0 && sqrt(norm) > largest) largest = sqrt(norm);
                double error = sqrt(diff) / fmax(sqrt(norm), 1e-6 * largest);
                if (pass == 1 && error > worst) worst = error, worst_name = param->name;
                offset += n;
            }
        }
        ck_assert_msg(worst <= 1e-6, "batch %d: gradient of %s off by %g relative", batch, worst_name, worst);
        fprintf(stderr, "text tower prefix, batch %d: embeddings %.3g, worst gradient %.3g (%s), %s\n", batch,
                embed_error, worst, worst_name,
                memcmp(got, want, (size_t)(n_embeds + n_grads) * sizeof(float)) == 0 ? "bitwise equal"
                                                                                       : "not bitwise equal");
    }
    free(got), free(want);
    mc_tensor_free(images);
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
    const TTest *const tests[] = {test_save_and_load_round_trip, test_heads_survive_a_save,
                                test_activation_survives_a_save, test_one_tower_files,
                                  test_broken_files_name_the_tensor,
                                  test_transposed_token_embedding, test_embed_in_batches,
                                  test_vision_fingerprint, test_input_checks,
                                  test_prompt_ensembling, test_text_tower_stops_at_the_last_end_token,
                                  test_training_from_scratch_lowers_the_loss, NULL};
    tcase_set_timeout(mc_test_use_temp_dir(mc_test_add_case(s, "clip", tests)), 60);
    return mc_test_run_suite(s);
}

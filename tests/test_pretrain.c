/* Captions, scene attributes, contrastive CLIP pretraining and the CLIP
 * folder (include/mmchain/pretrain.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "mmchain/pretrain.h"
#include "testutil.h"

/* ---------------------------------------------------------------------------
 * scene attributes and captions
 * ------------------------------------------------------------------------- */

/* A uniform 4x4 tile with the given reflectance in every band (EuroSAT
 * order), then the listed bands overridden. */
static void uniform_tile(float *tile, float base, int n, const int *bands, const float *values) {
    for (int b = 0; b < MC_SYNTH_BANDS; b++)
        for (int p = 0; p < 16; p++) tile[b * 16 + p] = base;
    for (int i = 0; i < n; i++)
        for (int p = 0; p < 16; p++) tile[bands[i] * 16 + p] = values[i];
}

/* Assert a's caption phrases are `expected` (ending with NULL), in order. */
static void assert_phrases(const mc_scene_attributes *a, const char *const expected[]) {
    const char *phrases[8];
    int n = mc_caption_phrases(a, phrases, 8), n_expected = 0;
    while (expected[n_expected]) n_expected++;
    ck_assert_int_eq(n, n_expected);
    for (int i = 0; i < n; i++) ck_assert_str_eq(phrases[i], expected[i]);
}

START_TEST(test_attributes_of_a_green_hazy_tile) {
    /* B01 .14 (haze), B02 .06, B03 .08, B04 .05, B08 .5, B10 .003 (cirrus), B11 .2 */
    float tile[MC_SYNTH_BANDS * 16];
    const int bands[7] = {0, 1, 2, 3, 7, 9, 10};
    const float values[7] = {0.14f, 0.06f, 0.08f, 0.05f, 0.5f, 0.003f, 0.2f};
    uniform_tile(tile, 0.1f, 7, bands, values);
    mc_scene_attributes a;
    MC_CHECK_OK(mc_scene_attributes_from_tile(tile, 4, 4, &a));
    /* By hand: NDVI = (.5 - .05) / (.5 + .05) = .8182; brightness = mean of
     * 500, 800, 600 DN / 2740 = (.18248 + .29197 + .21898) / 3 = .23114;
     * no water (NIR .5 > green .08). */
    ck_assert_float_eq_tol(a.vegetation, 0.8182f, 1e-4f);
    ck_assert_float_eq_tol(a.brightness, 0.23114f, 1e-4f);
    ck_assert_float_eq(a.water, 0.0f);
    ck_assert_float_eq_tol(a.haze, 0.14f, 1e-6f);
    ck_assert_float_eq_tol(a.cirrus, 0.003f, 1e-6f);
    assert_phrases(&a, (const char *const[]){"hazy", "under thin cloud", "with lush green vegetation",
                                             "dark", NULL});
}
END_TEST

START_TEST(test_attributes_of_water) {
    /* Half the pixels water (NIR .02 < green .05, SWIR .01), half bright
     * flat soil (.25 in every band but B10, which only clouds reach). */
    float tile[MC_SYNTH_BANDS * 16];
    const int b10[1] = {9};
    const float clear[1] = {0.001f};
    uniform_tile(tile, 0.25f, 1, b10, clear);
    for (int p = 0; p < 8; p++) {
        tile[7 * 16 + p] = 0.02f;  /* B08 */
        tile[2 * 16 + p] = 0.05f;  /* B03 */
        tile[10 * 16 + p] = 0.01f; /* B11 */
        tile[0 * 16 + p] = 0.05f;  /* B01: the darkest pixel */
    }
    mc_scene_attributes a;
    MC_CHECK_OK(mc_scene_attributes_from_tile(tile, 4, 4, &a));
    ck_assert_float_eq_tol(a.water, 0.5f, 1e-6f);
    ck_assert_float_eq_tol(a.haze, 0.05f, 1e-6f);
    /* Brightness: soil pixels 2500 / 2740 = .91241 in R, G, B; water pixels
     * (.91241 + 500 / 2740 + .91241) / 3 = .66910; the mean .79076. */
    ck_assert_float_eq_tol(a.brightness, 0.79076f, 1e-4f);
    /* water .5 -> "with open water"; NDVI: water pixels (.02-.25)/(.27) =
     * -.852, soil 0 -> mean -.426: neither lush nor "little" (water). */
    assert_phrases(&a, (const char *const[]){"with open water", "bright", NULL});
}
END_TEST

START_TEST(test_attributes_of_rgb_images) {
    float rgb[3 * 4] = {1, 1, 1, 1, 0.5f, 0.5f, 0.5f, 0.5f, 0.9f, 0.9f, 0.9f, 0.9f};
    mc_scene_attributes a;
    MC_CHECK_OK(mc_scene_attributes_from_rgb(rgb, 2, 2, &a));
    ck_assert_float_eq_tol(a.brightness, 0.8f, 1e-6f); /* (1 + .5 + .9) / 3 */
    assert_phrases(&a, (const char *const[]){"bright", NULL}); /* only what RGB can tell */
    MC_CHECK_FAILS(mc_scene_attributes_from_rgb(rgb, 0, 2, &a), MC_ERR_ARG, "0x2");
}
END_TEST

/* True when caption = one template with "{}" -> [article] class, then
 * ", phrase" parts from the allowed list, then an optional ".". */
static bool caption_well_formed(const char *caption, const char *class_phrase, const char *const *allowed,
                                int n_allowed) {
    static const char *const articles[3] = {"", "a ", "the "};
    for (int t = 0; t < MC_CAPTION_NUM_TEMPLATES; t++)
        for (int a = 0; a < 3; a++) {
            char head[256];
            const char *template = mc_caption_templates[t], *slot = strstr(template, "{}");
            snprintf(head, sizeof head, "%.*s%s%s%s", (int)(slot - template), template, articles[a],
                     class_phrase, slot + 2);
            if (strncmp(caption, head, strlen(head)) != 0) continue;
            const char *rest = caption + strlen(head);
            while (strncmp(rest, ", ", 2) == 0) {
                rest += 2;
                bool known = false;
                for (int i = 0; i < n_allowed && !known; i++)
                    if (strncmp(rest, allowed[i], strlen(allowed[i])) == 0) {
                        rest += strlen(allowed[i]);
                        known = true;
                    }
                if (!known) return false;
            }
            if (strcmp(rest, "") == 0 || strcmp(rest, ".") == 0) return true;
        }
    return false;
}

START_TEST(test_captions_follow_templates) {
    mc_scene_attributes a = {.brightness = 0.7f, .vegetation = 0.0f, .water = 0.5f, .haze = 0.2f, .cirrus = 0.0f};
    const char *allowed[3] = {"hazy", "with open water", "bright"};
    mc_rng rng;
    mc_rng_seed(&rng, 3);
    int with_attribute = 0, with_period = 0;
    for (int i = 0; i < 200; i++) {
        char caption[256];
        MC_CHECK_OK(mc_caption_make("river", &a, &rng, caption, sizeof caption));
        ck_assert_msg(caption_well_formed(caption, "river", allowed, 3), "caption \"%s\"", caption);
        with_attribute += strstr(caption, ", ") != NULL;
        with_period += caption[strlen(caption) - 1] == '.';
    }
    /* Each of 3 phrases with probability 1/2: 7/8 of captions carry one;
     * a period half the time (binomial, 200 draws: far from the bounds). */
    ck_assert_int_gt(with_attribute, 150);
    ck_assert_int_gt(with_period, 70);
    ck_assert_int_lt(with_period, 130);
    char small[16];
    MC_CHECK_FAILS(mc_caption_make("residential buildings", &a, &rng, small, sizeof small), MC_ERR_ARG,
                   "does not fit in 16 bytes");
}
END_TEST

START_TEST(test_captions_for_a_set) {
    const char *phrases[2] = {"forest", "lake or sea"};
    const int labels[3] = {1, 0, 1};
    char **first, **second;
    MC_CHECK_OK(mc_captions_make(phrases, 2, labels, NULL, 3, 2, 9, &first));
    MC_CHECK_OK(mc_captions_make(phrases, 2, labels, NULL, 3, 2, 9, &second));
    for (int c = 0; c < 6; c++) {
        ck_assert_str_eq(first[c], second[c]); /* deterministic for a seed */
        ck_assert_msg(caption_well_formed(first[c], phrases[labels[c / 2]], NULL, 0), "\"%s\"", first[c]);
    }
    mc_chain_strings_free(first, 6);
    mc_chain_strings_free(second, 6);
    const int bad[1] = {2};
    MC_CHECK_FAILS(mc_captions_make(phrases, 2, bad, NULL, 1, 1, 0, &first), MC_ERR_ARG, "label 2, outside 0..1");
}
END_TEST

START_TEST(test_rgb_view_of_reflectance) {
    mc_tensor *tiles, *rgb;
    MC_CHECK_OK(mc_tensor_new(&tiles, MC_SHAPE(1, 13, 1, 2), "tiles"));
    MC_CHECK_OK(mc_tensor_new(&rgb, MC_SHAPE(1, 3, 1, 2), "rgb"));
    /* B04 (index 3) = .137, .3; B03 (2) = .0274, 0; B02 (1) = .1, -.01 */
    const int band[3] = {3, 2, 1};
    const float values[3][2] = {{0.137f, 0.3f}, {0.0274f, 0.0f}, {0.1f, -0.01f}};
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 2; p++) tiles->data[band[c] * 2 + p] = values[c][p];
    MC_CHECK_OK(mc_rgb_from_reflectance(tiles, rgb));
    /* DN / 2740 clipped: 1370 -> .5, 3000 -> 1; 274 -> .1, 0; 1000 -> .36496, -100 -> 0 */
    const float expected[6] = {0.5f, 1.0f, 0.1f, 0.0f, 1000.0f / 2740.0f, 0.0f};
    mc_test_assert_close("rgb", rgb->data, expected, 6, 1e-5, 1e-6);
    mc_tensor_free(rgb);
    MC_CHECK_OK(mc_tensor_new(&rgb, MC_SHAPE(1, 3, 2, 1), "rgb"));
    MC_CHECK_FAILS(mc_rgb_from_reflectance(tiles, rgb), MC_ERR_SHAPE, "(1, 13, 1, 2)");
    mc_tensor_free(rgb);
    mc_tensor_free(tiles);
}
END_TEST

/* ---------------------------------------------------------------------------
 * pretraining
 * ------------------------------------------------------------------------- */

/* A CLIP small enough to train in a second: ViT 16x16/8, width 16. */
static mc_clip *tiny_clip(int vocab, int context) {
    mc_clip_config config = {
        .has_vision = true, .has_text = true, .embed_dim = 16, .layernorm_eps = 1e-5f,
        .vision = {.width = 16, .layers = 1, .heads = 1, .mlp_width = 32, .patch = 8, .image_size = 16},
        .text = {.width = 16, .layers = 1, .heads = 1, .mlp_width = 32, .context = context, .vocab = vocab},
    };
    mc_rng rng;
    mc_rng_seed(&rng, 5);
    mc_clip *clip;
    MC_CHECK_OK(mc_clip_new(&clip, &config, &rng));
    return clip;
}

/* Three colours, n images each, noisy: (3n, 3, 16, 16) and labels. */
static mc_tensor *colour_images(int n, uint64_t seed, int *labels) {
    mc_tensor *images;
    MC_CHECK_OK(mc_tensor_new(&images, MC_SHAPE(3 * n, 3, 16, 16), "colours"));
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    for (int i = 0; i < 3 * n; i++) {
        labels[i] = i % 3;
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 256; p++)
                images->data[((int64_t)i * 3 + c) * 256 + p] =
                    (c == labels[i] ? 1.0f : -1.0f) + 0.5f * (float)mc_rng_normal(&rng);
    }
    return images;
}

typedef struct loss_log {
    double first_epoch, last_epoch;
    int epochs;
} loss_log;

static mc_status log_epoch(void *ctx, int epoch, double mean_loss, double seconds) {
    (void)seconds;
    loss_log *log = ctx;
    if (epoch == 0) log->first_epoch = mean_loss;
    log->last_epoch = mean_loss;
    log->epochs++;
    return MC_OK;
}

START_TEST(test_pretraining_learns_a_simple_pairing) {
    /* Captions "red" / "green" / "blue" for red, green and blue images: after
     * training, each held-out image is nearest its own colour's caption —
     * zero-shot accuracy 1 where chance is 1/3. */
    mc_tokenizer *tok;
    MC_CHECK_OK(mc_tokenizer_from_merges(NULL, 0, &tok)); /* bytes only */
    const int context = 8;
    const char *names[3] = {"red", "green", "blue"};
    int32_t class_ids[3 * 8];
    MC_CHECK_OK(mc_tokenizer_tokenize_batch(tok, names, 3, context, false, class_ids));
    int labels[60], test_labels[30];
    mc_tensor *images = colour_images(20, 1, labels), *test = colour_images(10, 2, test_labels);
    int32_t ids[60 * 8]; /* one caption per image */
    for (int i = 0; i < 60; i++) memcpy(ids + i * context, class_ids + labels[i] * context, sizeof(int32_t) * context);
    mc_clip *clip = tiny_clip(mc_tokenizer_vocab_size(tok), context);
    mc_clip_pretrain_config cfg = mc_clip_pretrain_defaults();
    cfg.epochs = 30;
    cfg.batch_size = 30;
    cfg.lr = 3e-3f;
    loss_log log = {0};
    mc_clip_pretrain_hooks hooks = {&log, NULL, log_epoch, NULL};
    mc_clip_pretrain_data data = {images, 1, ids, NULL};
    MC_CHECK_OK(mc_clip_pretrain(clip, &data, &cfg, &hooks));
    ck_assert_int_eq(log.epochs, 30);
    ck_assert_msg(log.last_epoch < 0.7 * log.first_epoch, "loss %.3f -> %.3f", log.first_epoch, log.last_epoch);
    mc_tensor *classes, *embeds, *logits;
    MC_CHECK_OK(mc_clip_class_embeddings(clip, class_ids, 3, 1, &classes));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_grad_enabled(g, false);
    MC_CHECK_OK(mc_clip_encode_image(clip, g, test, &embeds));
    MC_CHECK_OK(mc_clip_zero_shot_logits(embeds, classes, 0.0f, &logits));
    for (int i = 0; i < 30; i++) {
        const float *row = logits->data + i * 3;
        int best = row[1] > row[0] ? 1 : 0;
        if (row[2] > row[best]) best = 2;
        ck_assert_int_eq(best, test_labels[i]);
    }
    mc_tensor_free(logits);
    mc_graph_free(g);
    mc_tensor_free(classes);
    mc_tensor_free(test);
    mc_tensor_free(images);
    mc_clip_free(clip);
    mc_tokenizer_free(tok);
}
END_TEST

/* One step with the given settings on 4 images with 4 different captions. */
static void one_step(mc_clip *clip, float lr, float weight_decay) {
    int labels[6];
    mc_tensor *images = colour_images(2, 3, labels);
    int32_t ids[6 * 4] = {0};
    for (int i = 0; i < 6; i++) {
        ids[i * 4] = clip->config.text.vocab - 2;
        ids[i * 4 + 1] = 100 + i;
        ids[i * 4 + 2] = clip->config.text.vocab - 1;
    }
    mc_clip_pretrain_config cfg = mc_clip_pretrain_defaults();
    cfg.epochs = 1;
    cfg.batch_size = 6;
    cfg.lr = lr;
    cfg.weight_decay = weight_decay;
    cfg.warmup_fraction = 0.0f; /* the one step runs at the full lr */
    cfg.max_grad_norm = 0.0f;
    cfg.augment = false;
    mc_clip_pretrain_data data = {images, 1, ids, NULL};
    MC_CHECK_OK(mc_clip_pretrain(clip, &data, &cfg, NULL));
    mc_tensor_free(images);
}

START_TEST(test_weight_decay_spares_gains_biases_and_the_temperature) {
    mc_clip *clip = tiny_clip(514, 4);
    mc_tensor *fc1 = mc_params_find(&clip->params, "vision_model.encoder.layers.0.mlp.fc1.weight");
    mc_tensor *ln = mc_params_find(&clip->params, "vision_model.pre_layrnorm.weight");
    ck_assert_ptr_nonnull(fc1);
    ck_assert_ptr_nonnull(ln);
    mc_tensor *fc1_before;
    MC_CHECK_OK(mc_tensor_clone(&fc1_before, fc1, "before"));
    float scale_before = clip->logit_scale->data[0];
    /* AdamW's first step: p <- p (1 - lr wd) - lr * m/(sqrt(v) + eps) with
     * m/sqrt(v) = sign(g) (bias-corrected), so |change| <= lr = 0.01 from
     * the Adam part; decay with lr wd = 0.2 shrinks a decayed weight by 20 %.
     * A LayerNorm gain (1.0) and logit_scale must move by at most lr. */
    one_step(clip, 0.01f, 20.0f);
    for (int64_t i = 0; i < ln->numel; i++) ck_assert_float_le(fabsf(ln->data[i] - 1.0f), 0.0101f);
    ck_assert_float_le(fabsf(clip->logit_scale->data[0] - scale_before), 0.0101f);
    int shrunk = 0;
    for (int64_t i = 0; i < fc1->numel; i++) {
        float expected = 0.8f * fc1_before->data[i];
        ck_assert_float_le(fabsf(fc1->data[i] - expected), 0.0101f);
        shrunk += fabsf(fc1_before->data[i]) > 0.05f && fabsf(fc1->data[i]) < fabsf(fc1_before->data[i]);
    }
    ck_assert_int_gt(shrunk, 0);
    mc_tensor_free(fc1_before);
    mc_clip_free(clip);
}
END_TEST

START_TEST(test_logit_scale_is_clamped) {
    mc_clip *clip = tiny_clip(514, 4);
    clip->logit_scale->data[0] = 6.0f; /* exp(6) = 403 > CLIP's bound of 100 */
    one_step(clip, 1e-4f, 0.0f);
    ck_assert_float_eq_tol(clip->logit_scale->data[0], logf(100.0f), 1e-6f);
    mc_clip_free(clip);
}
END_TEST

START_TEST(test_pretraining_rejects_bad_input) {
    mc_clip *clip = tiny_clip(514, 4);
    int labels[6];
    mc_tensor *images = colour_images(2, 3, labels), *wrong;
    int32_t ids[6 * 4] = {0};
    mc_clip_pretrain_config cfg = mc_clip_pretrain_defaults();
    mc_clip_pretrain_data data = {images, 1, ids, NULL};
    ids[5] = 514;
    MC_CHECK_FAILS(mc_clip_pretrain(clip, &data, &cfg, NULL), MC_ERR_ARG, "token id 514 at 5");
    ids[5] = 0;
    MC_CHECK_OK(mc_tensor_new(&wrong, MC_SHAPE(6, 3, 32, 32), "wrong"));
    data.pixels = wrong;
    MC_CHECK_FAILS(mc_clip_pretrain(clip, &data, &cfg, NULL), MC_ERR_SHAPE, "expected (N, 3, 16, 16)");
    data.pixels = images;
    cfg.epochs = 0;
    MC_CHECK_FAILS(mc_clip_pretrain(clip, &data, &cfg, NULL), MC_ERR_ARG, "epochs 0");
    cfg = mc_clip_pretrain_defaults();
    data.captions_per_image = 0;
    MC_CHECK_FAILS(mc_clip_pretrain(clip, &data, &cfg, NULL), MC_ERR_ARG, "0 captions per image");
    mc_tensor_free(wrong);
    mc_tensor_free(images);
    mc_clip_free(clip);
}
END_TEST

/* ---------------------------------------------------------------------------
 * the recipe and the CLIP folder
 * ------------------------------------------------------------------------- */

static mc_clip_recipe tiny_recipe(void) {
    mc_clip_recipe r = mc_clip_recipe_defaults();
    r.image_size = 16;
    r.patch = 8;
    r.width = 16;
    r.layers = 1;
    r.text_width = 16;
    r.text_layers = 1;
    r.embed_dim = 16;
    r.merges = 40;
    r.captions_per_image = 2;
    r.train.epochs = 1;
    r.train.batch_size = 10;
    return r;
}

START_TEST(test_clip_folder_loads_like_a_real_one) {
    /* mc_clip_from_captions, then mc_clip_save_folder: mc_clip_load and
     * mc_tokenizer_load must give back the same model (every tensor bit for
     * bit) and the same token ids. */
    mc_synth_views views;
    MC_CHECK_OK(mc_synth_views_make(4, 0, 20, 16, NULL, NULL, true, &views));
    const char *names[MC_SYNTH_CLASSES];
    for (int k = 0; k < MC_SYNTH_CLASSES; k++) names[k] = mc_synth_class_name(k);
    char **phrases;
    MC_CHECK_OK(mc_chain_class_prompts(names, MC_SYNTH_CLASSES, &phrases));
    mc_clip_recipe recipe = tiny_recipe();
    mc_labelled_images images = {views.rgb, views.labels, views.attrs, MC_SYNTH_CLASSES,
                                 (const char *const *)phrases, NULL};
    mc_clip *clip, *loaded;
    mc_tokenizer *tok, *loaded_tok;
    MC_CHECK_OK(mc_clip_from_captions(&recipe, &images, NULL, &clip, &tok));
    ck_assert_int_eq(clip->config.text.vocab, mc_tokenizer_vocab_size(tok));
    char dir[4096], path[4200];
    mc_test_temp_dir(dir, sizeof dir);
    strcat(dir, "/clip");
    MC_CHECK_OK(mc_clip_save_folder(clip, tok, dir));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    MC_CHECK_OK(mc_clip_load(path, &loaded));
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    MC_CHECK_OK(mc_tokenizer_load(path, &loaded_tok));
    ck_assert_int_eq(loaded->params.count, clip->params.count);
    ck_assert_int_eq(loaded->config.text.context, clip->config.text.context);
    ck_assert_int_eq(loaded->config.vision.heads, clip->config.vision.heads);
    for (int i = 0; i < clip->params.count; i++) {
        const mc_tensor *a = clip->params.items[i], *b = mc_params_find(&loaded->params, a->name);
        ck_assert_msg(b != NULL, "%s missing after loading", a->name);
        ck_assert_int_eq(a->numel, b->numel);
        ck_assert_msg(memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0, "%s differs", a->name);
    }
    const char *text[1] = {"a centered satellite photo of permanent crop land."};
    int32_t ids[2][MC_CLIP_CONTEXT];
    MC_CHECK_OK(mc_tokenizer_tokenize_batch(tok, text, 1, MC_CLIP_CONTEXT, false, ids[0]));
    MC_CHECK_OK(mc_tokenizer_tokenize_batch(loaded_tok, text, 1, MC_CLIP_CONTEXT, false, ids[1]));
    ck_assert_int_eq(memcmp(ids[0], ids[1], sizeof ids[0]), 0);
    /* The zero-shot helper runs on what was loaded (its value after one
     * epoch is no claim). */
    double accuracy = -1.0;
    MC_CHECK_OK(mc_clip_zero_shot_accuracy(loaded, loaded_tok, views.rgb, views.labels,
                                           (const char *const *)phrases, MC_SYNTH_CLASSES, &accuracy));
    ck_assert(accuracy >= 0.0 && accuracy <= 1.0);
    mc_tokenizer_free(loaded_tok);
    mc_tokenizer_free(tok);
    mc_clip_free(loaded);
    mc_clip_free(clip);
    mc_chain_strings_free(phrases, MC_SYNTH_CLASSES);
    mc_synth_views_free(&views);
    dir[strlen(dir) - strlen("/clip")] = '\0';
    mc_test_remove_tree(dir);
}
END_TEST

/* ---------------------------------------------------------------------------
 * images a batch at a time
 * ------------------------------------------------------------------------- */

/* A folder of two class folders of 12 PNGs in every kind the readers give:
 * 8-bit RGB 20x20, grey 18x22, RGBA 20x20 and (image 11) 16-bit RGB, pixels
 * uniform noise. Returns the folder (in dir). */
static void write_png_folder(char *dir, size_t len) {
    mc_test_temp_dir(dir, len);
    mc_rng rng;
    mc_rng_seed(&rng, 12);
    for (int i = 0; i < 12; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, i % 2 ? "odd" : "even");
        mkdir(path, 0777);
        snprintf(path, sizeof path, "%s/%s/%02d.png", dir, i % 2 ? "odd" : "even", i);
        const int kind = i % 3, channels = kind == 0 ? 3 : kind == 1 ? 1 : 4;
        const int h = kind == 1 ? 18 : 20, w = kind == 1 ? 22 : 20;
        mc_tensor *image;
        MC_CHECK_OK(mc_tensor_new(&image, MC_SHAPE(channels, h, w), "png"));
        for (int64_t k = 0; k < image->numel; k++) image->data[k] = (float)mc_rng_uniform(&rng);
        MC_CHECK_OK(mc_png_write(path, image, i == 11 ? 16 : 8));
        mc_tensor_free(image);
    }
}

START_TEST(test_images_kept_as_bytes_read_as_decoded) {
    /* Images kept as bytes and read a batch at a time equal the floats
     * mc_image_folder_load decodes from the files, bit for bit: at their own
     * size and resized, grey repeated, alpha dropped, in any order; only the
     * 16-bit image keeps floats. */
    char dir[4096];
    write_png_folder(dir, sizeof dir);
    mc_image_folder folder;
    MC_CHECK_OK(mc_image_folder_open(dir, &folder));
    ck_assert_int_eq(folder.count, 12);
    mc_byte_images *bytes;
    MC_CHECK_OK(mc_byte_images_load(&folder, true, &bytes));
    /* files sorted: even/00 (RGB), 02 (RGBA), 04 (grey), ...; odd/01 (grey), ..., 11 (16-bit RGBA) */
    const int64_t rgb = 3 * 20 * 20, grey = 18 * 22;
    ck_assert_int_eq(mc_byte_images_size(bytes), 4 * rgb + 4 * grey + 3 * rgb + rgb * (int64_t)sizeof(float));
    const int order[12] = {5, 0, 11, 3, 3, 8, 1, 10, 2, 9, 4, 7};
    const int sizes[2][2] = {{20, 20}, {16, 12}};
    for (int s = 0; s < 2; s++) {
        const int h = sizes[s][0], w = sizes[s][1];
        mc_tensor *decoded, *read;
        MC_CHECK_OK(mc_tensor_new(&decoded, MC_SHAPE(12, 3, h, w), "decoded"));
        MC_CHECK_OK(mc_tensor_new(&read, MC_SHAPE(12, 3, h, w), "read"));
        MC_CHECK_OK(mc_image_folder_load(&folder, order, 12, true, decoded));
        mc_image_source source = mc_byte_images_source(bytes, h, w);
        ck_assert_int_eq(source.count, 12);
        MC_CHECK_OK(source.read(source.ctx, order, 12, read));
        ck_assert_mem_eq(read->data, decoded->data, (size_t)decoded->numel * sizeof(float));
        mc_tensor_free(decoded);
        mc_tensor_free(read);
    }
    mc_tensor *one;
    MC_CHECK_OK(mc_tensor_new(&one, MC_SHAPE(1, 3, 20, 20), "one"));
    mc_image_source source = mc_byte_images_source(bytes, 20, 20);
    const int outside[1] = {12};
    MC_CHECK_FAILS(source.read(source.ctx, outside, 1, one), MC_ERR_ARG, "index 12 outside 0..11");
    mc_tensor_free(one);
    mc_byte_images_free(bytes);
    mc_image_folder_free(&folder);
    mc_test_remove_tree(dir);
}
END_TEST

/* Losses of every step, in order. */
typedef struct step_losses {
    double loss[16];
    int count;
} step_losses;

static void record_step(void *ctx, const mc_clip_pretrain_step_info *info) {
    step_losses *log = ctx;
    if (log->count < 16) log->loss[log->count++] = info->loss;
}

/* A source of an RGB tensor's rows through mc_clip_preprocess, batch by
 * batch (the reference for preprocessing the whole set first). */
typedef struct preprocessed_rows {
    const mc_tensor *rgb;
    int size;
} preprocessed_rows;

static mc_status read_preprocessed(void *ctx, const int *indices, int n, mc_tensor *rows) {
    preprocessed_rows *p = ctx;
    mc_tensor *batch, *pixels;
    MC_TRY(mc_tensor_new(&batch, MC_SHAPE(n, 3, p->rgb->shape.dim[2], p->rgb->shape.dim[3]), "batch"));
    mc_image_source all = mc_image_source_of_tensor(p->rgb);
    mc_status status = all.read(all.ctx, indices, n, batch);
    if (status == MC_OK) status = mc_clip_preprocess(batch, p->size, true, &pixels);
    if (status == MC_OK) memcpy(rows->data, pixels->data, (size_t)pixels->numel * sizeof(float));
    if (status == MC_OK) mc_tensor_free(pixels);
    mc_tensor_free(batch);
    return status;
}

static void assert_same_params(const mc_clip *a, const mc_clip *b) {
    ck_assert_int_eq(a->params.count, b->params.count);
    for (int i = 0; i < a->params.count; i++) {
        const mc_tensor *x = a->params.items[i], *y = b->params.items[i];
        ck_assert_int_eq(x->numel, y->numel);
        ck_assert_msg(memcmp(x->data, y->data, (size_t)x->numel * sizeof(float)) == 0, "%s differs", x->name);
    }
}

START_TEST(test_pretraining_a_batch_at_a_time_matches_the_whole_set) {
    /* Training on images preprocessed a batch at a time (after the batch is
     * drawn, before it is augmented) takes the same steps as on the whole
     * set preprocessed first: the same loss at every step and the same
     * weights, bit for bit. 17 images of 24x24 resized to the tower's 16,
     * batches of 7 (the last one 3), two epochs, augmentation on. */
    mc_tensor *rgb;
    MC_CHECK_OK(mc_tensor_new(&rgb, MC_SHAPE(17, 3, 24, 24), "rgb"));
    mc_rng rng;
    mc_rng_seed(&rng, 17);
    for (int64_t k = 0; k < rgb->numel; k++) rgb->data[k] = (float)mc_rng_uniform(&rng);
    int32_t ids[17 * 2 * 4] = {0};
    mc_clip *whole = tiny_clip(300, 4), *batched = tiny_clip(300, 4);
    for (int i = 0; i < 17 * 2; i++) {
        ids[i * 4] = 298;
        ids[i * 4 + 1] = 100 + i;
        ids[i * 4 + 2] = 299;
    }
    mc_clip_pretrain_config cfg = mc_clip_pretrain_defaults();
    cfg.epochs = 2;
    cfg.batch_size = 7;
    mc_tensor *pixels;
    MC_CHECK_OK(mc_clip_preprocess(rgb, 16, true, &pixels));
    step_losses losses[2] = {{{0}, 0}, {{0}, 0}};
    mc_clip_pretrain_hooks hooks[2] = {{&losses[0], record_step, NULL, NULL}, {&losses[1], record_step, NULL, NULL}};
    mc_clip_pretrain_data data = {pixels, 2, ids, NULL};
    MC_CHECK_OK(mc_clip_pretrain(whole, &data, &cfg, &hooks[0]));
    preprocessed_rows rows = {rgb, 16};
    mc_image_source source = {17, 16, 16, &rows, read_preprocessed};
    mc_clip_pretrain_data by_batch = {NULL, 2, ids, &source};
    MC_CHECK_OK(mc_clip_pretrain(batched, &by_batch, &cfg, &hooks[1]));
    ck_assert_int_eq(losses[0].count, 6);
    ck_assert_int_eq(losses[1].count, 6);
    for (int i = 0; i < 6; i++) ck_assert_msg(losses[0].loss[i] == losses[1].loss[i], "step %d: %.9g vs %.9g",
                                              i + 1, losses[0].loss[i], losses[1].loss[i]);
    assert_same_params(whole, batched);
    /* A source of the wrong size is refused. */
    source.height = 24;
    MC_CHECK_FAILS(mc_clip_pretrain(batched, &by_batch, &cfg, NULL), MC_ERR_SHAPE, "read as 24x16");
    mc_clip_free(whole);
    mc_clip_free(batched);
    mc_tensor_free(pixels);
    mc_tensor_free(rgb);
}
END_TEST

START_TEST(test_recipe_on_bytes_matches_the_recipe_on_floats) {
    /* mc_clip_from_captions on images kept as bytes and read a batch at a
     * time makes the same CLIP as on the whole folder decoded to floats, and
     * the zero-shot accuracy on either is the same. */
    char dir[4096];
    write_png_folder(dir, sizeof dir);
    mc_image_folder folder;
    MC_CHECK_OK(mc_image_folder_open(dir, &folder));
    mc_byte_images *bytes;
    MC_CHECK_OK(mc_byte_images_load(&folder, true, &bytes));
    mc_tensor *decoded;
    MC_CHECK_OK(mc_tensor_new(&decoded, MC_SHAPE(12, 3, 20, 20), "decoded"));
    int all[12];
    for (int i = 0; i < 12; i++) all[i] = i;
    MC_CHECK_OK(mc_image_folder_load(&folder, all, 12, true, decoded));
    const char *phrases[2] = {"even", "odd"};
    mc_clip_recipe recipe = tiny_recipe();
    recipe.train.epochs = 2;
    recipe.train.batch_size = 5;
    mc_image_source source = mc_byte_images_source(bytes, 20, 20);
    mc_labelled_images floats = {decoded, folder.labels, NULL, 2, phrases, NULL};
    mc_labelled_images kept = {NULL, folder.labels, NULL, 2, phrases, &source};
    mc_clip *a, *b;
    mc_tokenizer *tok_a, *tok_b;
    MC_CHECK_OK(mc_clip_from_captions(&recipe, &floats, NULL, &a, &tok_a));
    MC_CHECK_OK(mc_clip_from_captions(&recipe, &kept, NULL, &b, &tok_b));
    assert_same_params(a, b);
    double accuracy[2] = {-1.0, -2.0};
    MC_CHECK_OK(mc_clip_zero_shot_accuracy(a, tok_a, decoded, folder.labels, phrases, 2, &accuracy[0]));
    MC_CHECK_OK(mc_clip_zero_shot_accuracy_source(b, tok_b, &source, folder.labels, phrases, 2, false,
                                                  &accuracy[1]));
    ck_assert(accuracy[0] >= 0.0 && accuracy[0] == accuracy[1]);
    mc_tokenizer_free(tok_a);
    mc_tokenizer_free(tok_b);
    mc_clip_free(a);
    mc_clip_free(b);
    mc_tensor_free(decoded);
    mc_byte_images_free(bytes);
    mc_image_folder_free(&folder);
    mc_test_remove_tree(dir);
}
END_TEST

START_TEST(test_recipe_rejects_a_short_context) {
    mc_synth_views views;
    MC_CHECK_OK(mc_synth_views_make(4, 0, 10, 16, NULL, NULL, true, &views));
    const char *phrases[MC_SYNTH_CLASSES];
    for (int k = 0; k < MC_SYNTH_CLASSES; k++) phrases[k] = mc_synth_class_name(k);
    mc_clip_recipe recipe = tiny_recipe();
    recipe.max_context = 5;
    mc_labelled_images images = {views.rgb, views.labels, views.attrs, MC_SYNTH_CLASSES, phrases, NULL};
    mc_clip *clip = (mc_clip *)1;
    mc_tokenizer *tok = (mc_tokenizer *)1;
    MC_CHECK_FAILS(mc_clip_from_captions(&recipe, &images, NULL, &clip, &tok), MC_ERR_ARG,
                   "the context is at most 5");
    ck_assert_ptr_null(clip);
    ck_assert_ptr_null(tok);
    mc_synth_views_free(&views);
}
END_TEST

START_TEST(test_synth_views) {
    /* The views of tiles 3..5 are the same whether made alone or as part of
     * a larger set (a tile is a pure function of seed, class, index), and
     * the spectral view is the normalised bands of mc_synth_batch's tiles. */
    mc_bands bands;
    MC_CHECK_OK(mc_bands_parse("B08,B11", &bands));
    mc_norm norm;
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_TORCHGEO));
    mc_synth_views all, part;
    MC_CHECK_OK(mc_synth_views_make(2, 0, 6, 64, &bands, &norm, false, &all));
    MC_CHECK_OK(mc_synth_views_make(2, 3, 3, 64, &bands, &norm, false, &part));
    const int64_t spectral = 2 * 64 * 64, rgb = 3 * 64 * 64;
    ck_assert_int_eq(memcmp(all.spectral->data + 3 * spectral, part.spectral->data, 3 * spectral * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(all.rgb->data + 3 * rgb, part.rgb->data, 3 * rgb * sizeof(float)), 0);
    ck_assert_int_eq(part.labels[0], 3); /* tile k of the world has label k % 10 */
    mc_tensor *tiles;
    MC_CHECK_OK(mc_tensor_new(&tiles, MC_SHAPE(1, 13, 64, 64), "tiles"));
    MC_CHECK_OK(mc_synth_batch(2, 3, tiles, NULL));
    const int b11 = 10, p = 1234;
    float expected = (tiles->data[b11 * 4096 + p] * 10000.0f - norm.mean[b11]) / norm.std[b11];
    ck_assert_float_eq_tol(part.spectral->data[4096 + p], expected, 1e-4f);
    ck_assert_ptr_null(part.attrs);
    MC_CHECK_FAILS(mc_synth_views_make(2, 0, 6, 64, &bands, NULL, false, &all), MC_ERR_ARG, "normalisation");
    mc_tensor_free(tiles);
    mc_synth_views_free(&part);
    mc_synth_views_free(&all);
}
END_TEST

/* ---------------------------------------------------------------------------
 * the command line
 * ------------------------------------------------------------------------- */

static int run_cli(const char *args, const char *log) {
    const char *cli = getenv("MMCHAIN_CLI");
    char command[20000];
    snprintf(command, sizeof command, "MMCHAIN_THREADS=1 '%s' %s > '%s' 2>&1", cli, args, log);
    int status = system(command);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(test_cli_pretrain_clip) {
    if (!getenv("MMCHAIN_CLI")) return; /* the library-only build has no program */
    char dir[2048], args[8192], log[4200], path[4200];
    mc_test_temp_dir(dir, sizeof dir);
    snprintf(log, sizeof log, "%s/log", dir);
    snprintf(args, sizeof args,
             "pretrain-clip --out '%s/clip' --synth 40 --image-size 16 --patch 8 --width 16 --layers 1 "
             "--text-width 16 --text-layers 1 --embed-dim 16 --merges 30 --captions 1 --epochs 1 "
             "--batch 20 --quiet", dir);
    ck_assert_int_eq(run_cli(args, log), 0);
    mc_clip *clip;
    mc_tokenizer *tok;
    snprintf(path, sizeof path, "%s/clip/model.safetensors", dir);
    MC_CHECK_OK(mc_clip_load(path, &clip));
    ck_assert_int_eq(clip->config.vision.image_size, 16);
    snprintf(path, sizeof path, "%s/clip/merges.txt", dir);
    MC_CHECK_OK(mc_tokenizer_load(path, &tok));
    ck_assert_int_eq(mc_tokenizer_vocab_size(tok), clip->config.text.vocab);
    snprintf(path, sizeof path, "%s/clip/report.html", dir);
    ck_assert(mc_test_file_exists(path));
    mc_tokenizer_free(tok);
    mc_clip_free(clip);
    /* Bad input: one line naming the problem, a non-zero exit. */
    snprintf(args, sizeof args, "pretrain-clip --out '%s/x' --image-size 20 --patch 8", dir);
    ck_assert_int_eq(run_cli(args, log), 1);
    char *text = mc_test_read_file(log, NULL);
    ck_assert_str_eq(text, "mmchain pretrain-clip: error: --image-size 20 is not a multiple of --patch 8\n");
    free(text);
    snprintf(args, sizeof args, "pretrain-clip --out '%s/x' --data '%s/absent'", dir, dir);
    ck_assert_int_eq(run_cli(args, log), 1);
    text = mc_test_read_file(log, NULL);
    const char *end = strchr(text, '\n');
    ck_assert_msg(strstr(text, "--data") && strstr(text, "absent") && end && end[1] == '\0',
                  "not one line naming --data: %s", text);
    free(text);
    mc_test_remove_tree(dir);
}
END_TEST

static Suite *pretrain_suite(void) {
    Suite *s = suite_create("pretrain");
    const TTest *const captions[] = {test_attributes_of_a_green_hazy_tile, test_attributes_of_water,
                                     test_attributes_of_rgb_images, test_captions_follow_templates,
                                     test_captions_for_a_set, test_rgb_view_of_reflectance, NULL};
    mc_test_add_case(s, "captions", captions);
    const TTest *const training[] = {test_pretraining_learns_a_simple_pairing,
                                     test_weight_decay_spares_gains_biases_and_the_temperature,
                                     test_logit_scale_is_clamped,
                                     test_pretraining_rejects_bad_input,
                                     test_clip_folder_loads_like_a_real_one,
                                     test_recipe_rejects_a_short_context, test_synth_views,
                                     test_images_kept_as_bytes_read_as_decoded,
                                     test_pretraining_a_batch_at_a_time_matches_the_whole_set,
                                     test_recipe_on_bytes_matches_the_recipe_on_floats,
                                     test_cli_pretrain_clip, NULL};
    tcase_set_timeout(mc_test_add_case(s, "training", training), 120);
    return s;
}

int main(void) {
    /* Tiny tensors: a second thread costs more in hand-offs than it brings. */
    mc_set_num_threads(1);
    return mc_test_run_suite(pretrain_suite());
}

/* The chain as a library (include/mmchain/chain.h): prompts, checkpoints,
 * targets, metrics, training, resume and NaN handling, with tiny models on
 * data made in the test (tests/chain_fixture.h). */
#define _XOPEN_SOURCE 700 /* setenv */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chain_fixture.h"
#include "testutil.h"

/* ---------------------------------------------------------------------------
 * prompts
 * ------------------------------------------------------------------------- */

START_TEST(prompts_match_folder_names_by_name) {
    /* CLIP's EuroSAT class names (OpenAI CLIP's published prompt list). */
    ck_assert_str_eq(mc_chain_eurosat_class_prompt("AnnualCrop"), "annual crop land");
    ck_assert_str_eq(mc_chain_eurosat_class_prompt("HerbaceousVegetation"), "brushland or shrubland");
    ck_assert_str_eq(mc_chain_eurosat_class_prompt("SeaLake"), "lake or sea");
    ck_assert_str_eq(mc_chain_eurosat_class_prompt("residential"),
                     "residential buildings or homes or apartments");
    ck_assert_ptr_null(mc_chain_eurosat_class_prompt("Glacier"));
    /* Order does not matter, unknown names are split into words. */
    const char *folders[] = {"SeaLake", "MixedForest", "Forest"};
    char **names;
    MC_CHECK_OK(mc_chain_class_prompts(folders, 3, &names));
    ck_assert_str_eq(names[0], "lake or sea");
    ck_assert_str_eq(names[1], "mixed forest");
    ck_assert_str_eq(names[2], "forest");
    mc_chain_strings_free(names, 3);
}
END_TEST

START_TEST(split_list_trims_and_rejects_empty_items) {
    char **items;
    int n;
    MC_CHECK_OK(mc_chain_split_list(" forest , lake or sea,river", ',', "--classes", &items, &n));
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(items[0], "forest");
    ck_assert_str_eq(items[1], "lake or sea");
    ck_assert_str_eq(items[2], "river");
    mc_chain_strings_free(items, n);
    MC_CHECK_FAILS(mc_chain_split_list("forest,,river", ',', "--classes", &items, &n), MC_ERR_ARG, "--classes");
    MC_CHECK_OK(mc_chain_split_list("a photo of {}, seen from space.|{}", '|', "--templates", &items, &n));
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(items[0], "a photo of {}, seen from space.");
    mc_chain_strings_free(items, n);
}
END_TEST

/* The classifier equals prompt ensembling over hand-written prompts. */
START_TEST(text_classifier_fills_the_templates) {
    chain_fixture f;
    MC_CHECK_OK(fixture_write(mc_test_dir, 1, &f));
    mc_clip *clip;
    mc_tokenizer *tok;
    MC_CHECK_OK(mc_clip_load(f.clip, &clip));
    MC_CHECK_OK(mc_tokenizer_load(f.vocab, &tok));
    const char *names[] = {"forest", "lake or sea"};
    const char *templates[] = {"a photo of {}.", "{} from above"};
    mc_tensor *classes, *expected;
    MC_CHECK_OK(mc_chain_text_classifier(clip, tok, names, 2, templates, 2, &classes));
    const char *texts[] = {"a photo of forest.", "forest from above", "a photo of lake or sea.",
                           "lake or sea from above"};
    int32_t ids[4 * 77];
    MC_CHECK_OK(mc_tokenizer_tokenize_batch(tok, texts, 4, 77, false, ids));
    MC_CHECK_OK(mc_clip_class_embeddings(clip, ids, 2, 2, &expected));
    ck_assert(memcmp(classes->data, expected->data, sizeof(float) * (size_t)classes->numel) == 0);
    const char *bad[] = {"no hole"};
    mc_tensor *none = NULL;
    MC_CHECK_FAILS(mc_chain_text_classifier(clip, tok, names, 2, bad, 1, &none), MC_ERR_ARG, "{}");
    mc_tensor_free(classes);
    mc_tensor_free(expected);
    mc_tokenizer_free(tok);
    mc_clip_free(clip);
}
END_TEST

/* ---------------------------------------------------------------------------
 * checkpoints
 * ------------------------------------------------------------------------- */

static mc_spectral_encoder *tiny_encoder(const char *bands_spec, uint64_t seed) {
    mc_bands bands;
    mc_norm norm;
    mc_resnet_config arch = fixture_arch();
    MC_CHECK_OK(mc_bands_parse(bands_spec, &bands));
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_TORCHGEO));
    mc_spectral_encoder *enc;
    MC_CHECK_OK(mc_spectral_encoder_new(&enc, &arch, &bands, &norm, 64, FIXTURE_EMBED, logf(1 / 0.07f),
                                        true, seed));
    return enc;
}

START_TEST(checkpoint_round_trip) {
    char path[600];
    mc_test_dir_path("enc.safetensors", path, sizeof path);
    mc_spectral_encoder *enc = tiny_encoder("B08,B11,B12,B8A", 3), *back;
    enc->norm.mean[7] = 1234.5f; /* numbers that only the metadata can carry */
    enc->norm.std[11] = 0.125f;
    mc_chain_state state = {.epoch = 2, .step_in_epoch = 5, .global_step = 45,
                            .best_metric = 0.3125, .best_epoch = 2};
    mc_rng_seed(&state.rng, 99);
    mc_rng_normal(&state.rng); /* leaves a spare normal in the state */
    MC_CHECK_OK(mc_spectral_encoder_save(enc, path, NULL, &state, 0, NULL));
    mc_chain_state loaded;
    MC_CHECK_OK(mc_spectral_encoder_load(path, &back, &loaded));
    mc_test_assert_same_params("checkpoint round trip", &enc->params, &back->params);
    ck_assert_int_eq(back->bands.count, 4);
    ck_assert_int_eq(back->bands.index[3], 12); /* B8A is the 13th file band */
    ck_assert(back->norm.mean[7] == 1234.5f && back->norm.std[11] == 0.125f);
    ck_assert_int_eq(back->image_size, 64);
    ck_assert(back->logit_scale->requires_grad);
    ck_assert_int_eq(loaded.epoch, 2);
    ck_assert_int_eq(loaded.step_in_epoch, 5);
    ck_assert_int_eq(loaded.global_step, 45);
    ck_assert(loaded.best_metric == 0.3125);
    ck_assert(memcmp(loaded.rng.s, state.rng.s, sizeof state.rng.s) == 0);
    ck_assert(loaded.rng.has_spare_normal == state.rng.has_spare_normal &&
              loaded.rng.spare_normal == state.rng.spare_normal);
    mc_spectral_encoder_free(back);
    /* A best_metric that is not a number is refused, not read as 0. */
    char damaged[640];
    mc_test_dir_path("damaged.safetensors", damaged, sizeof damaged);
    mc_test_copy_with_metadata(path, damaged, "best_metric", "x");
    MC_CHECK_FAILS(mc_spectral_encoder_load(damaged, &back, &loaded), MC_ERR_FORMAT,
                   "best_metric 'x' is not a number");
    mc_spectral_encoder_free(enc);
}
END_TEST

START_TEST(checkpoint_of_another_architecture_is_refused) {
    char path[600];
    mc_test_dir_path("enc.safetensors", path, sizeof path);
    mc_spectral_encoder *enc = tiny_encoder("B08,B11,B12", 1), *other;
    MC_CHECK_OK(mc_spectral_encoder_save(enc, path, NULL, NULL, 0, NULL));
    mc_resnet_config arch = fixture_arch();
    arch.base_width = 8;
    MC_CHECK_OK(mc_spectral_encoder_new(&other, &arch, &enc->bands, &enc->norm, 64, FIXTURE_EMBED, 0, false, 1));
    MC_CHECK_FAILS(mc_spectral_encoder_restore(other, path, NULL, NULL), MC_ERR_FORMAT, "width 4");
    mc_spectral_encoder_free(other);
    mc_spectral_encoder *rgb = tiny_encoder("rgb", 1);
    MC_CHECK_FAILS(mc_spectral_encoder_restore(rgb, path, NULL, NULL), MC_ERR_FORMAT, "bands B08,B11,B12");
    mc_spectral_encoder_free(rgb);
    /* The same network on other inputs: another normalisation, or the
     * same kind with other band statistics (--norm dataset on changed
     * data). */
    mc_spectral_encoder *renormed = tiny_encoder("B08,B11,B12", 1);
    MC_CHECK_OK(mc_norm_init(&renormed->norm, MC_NORM_NONE));
    MC_CHECK_FAILS(mc_spectral_encoder_restore(renormed, path, NULL, NULL), MC_ERR_FORMAT,
                   "was trained with the torchgeo normalisation; this run's differs");
    MC_CHECK_OK(mc_norm_init(&renormed->norm, MC_NORM_TORCHGEO));
    renormed->norm.mean[7] += 1.0f;
    MC_CHECK_FAILS(mc_spectral_encoder_restore(renormed, path, NULL, NULL), MC_ERR_FORMAT,
                   "normalisation of other band statistics");
    renormed->norm.mean[7] -= 1.0f;
    MC_CHECK_OK(mc_spectral_encoder_restore(renormed, path, NULL, NULL));
    mc_spectral_encoder_free(renormed);
    mc_spectral_encoder_free(enc);
}
END_TEST

/* ---------------------------------------------------------------------------
 * training on the fixture
 * ------------------------------------------------------------------------- */

typedef struct world {
    chain_fixture f;
    mc_eurosat *ds;
    mc_chain_data train, val;
    mc_clip *clip;
    mc_tensor *classes;
} world;

static void world_open(world *w, int per_class) {
    MC_CHECK_OK(fixture_write(mc_test_dir, per_class, &w->f));
    mc_eurosat_options options = mc_eurosat_default_options();
    options.seed = 4;
    MC_CHECK_OK(mc_eurosat_open(&w->ds, w->f.data, &options));
    mc_bands bands;
    mc_norm norm;
    MC_CHECK_OK(mc_bands_parse("B08,B11,B12", &bands));
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_TORCHGEO));
    MC_CHECK_OK(mc_chain_data_from_eurosat(&w->train, w->ds, MC_SPLIT_TRAIN, &bands, &norm));
    MC_CHECK_OK(mc_chain_data_from_eurosat(&w->val, w->ds, MC_SPLIT_VAL, &bands, &norm));
    MC_CHECK_OK(mc_clip_load(w->f.clip, &w->clip));
    mc_tokenizer *tok;
    MC_CHECK_OK(mc_tokenizer_load(w->f.vocab, &tok));
    char **names;
    MC_CHECK_OK(mc_chain_class_prompts(w->val.class_names, w->val.num_classes, &names));
    MC_CHECK_OK(mc_chain_text_classifier(w->clip, tok, (const char *const *)names, w->val.num_classes,
                                         mc_chain_eurosat_templates, MC_CHAIN_NUM_TEMPLATES, &w->classes));
    mc_chain_strings_free(names, w->val.num_classes);
    mc_tokenizer_free(tok);
}

static void world_close(world *w) {
    mc_tensor_free(w->classes);
    mc_clip_free(w->clip);
    mc_chain_data_free(&w->train);
    mc_chain_data_free(&w->val);
    mc_eurosat_free(w->ds);
}

static mc_chain_train_config small_config(const char *ckpt_dir) {
    mc_chain_train_config c = mc_chain_train_defaults();
    c.epochs = 2;
    c.batch_size = 8;
    c.val_batch_size = 6;
    c.lr = 1e-3f;
    c.seed = 7;
    c.checkpoint_every = 1;
    c.checkpoint_dir = ckpt_dir;
    c.clip_batch = 16;
    return c;
}

/* Train from scratch (stop_after = 0) or up to stop_after steps, then resume
 * a fresh encoder from `last` and finish. Returns the final encoder. */
static mc_spectral_encoder *train_run(world *w, mc_chain_train_config c, int64_t stop_after) {
    mc_spectral_encoder *enc = tiny_encoder("B08,B11,B12", 21);
    mc_chain_trainer *t;
    c.stop_after_steps = stop_after;
    MC_CHECK_OK(mc_chain_trainer_new(&t, &c, enc, w->clip, &w->train, &w->val, w->classes, NULL));
    MC_CHECK_OK(mc_chain_trainer_run(t));
    mc_chain_trainer_free(t);
    if (stop_after == 0) return enc;
    mc_spectral_encoder_free(enc); /* "killed": only the checkpoint survives */
    enc = tiny_encoder("B08,B11,B12", 999); /* other init: everything must come from the file */
    char last[1200];
    snprintf(last, sizeof last, "%s/last.safetensors", c.checkpoint_dir);
    c.stop_after_steps = 0;
    MC_CHECK_OK(mc_chain_trainer_new(&t, &c, enc, w->clip, &w->train, &w->val, w->classes, NULL));
    MC_CHECK_OK(mc_chain_trainer_resume(t, last));
    ck_assert_int_eq(mc_chain_trainer_state(t)->global_step, stop_after);
    MC_CHECK_OK(mc_chain_trainer_run(t));
    mc_chain_trainer_free(t);
    return enc;
}

static void check_resume_bit_identical(int target_crops, bool augment) {
    world w = {0};
    world_open(&w, 4); /* 40 tiles: 29 train (26:10 scaled), 11 val -> 4 steps an epoch */
    char a_dir[1200], b_dir[1200];
    snprintf(a_dir, sizeof a_dir, "%s/a", w.f.dir);
    snprintf(b_dir, sizeof b_dir, "%s/b", w.f.dir);
    ck_assert(fixture_mkdir(a_dir) == MC_OK && fixture_mkdir(b_dir) == MC_OK);
    mc_chain_train_config c = small_config(a_dir);
    c.target_crops = target_crops;
    c.augment = augment;
    c.learnable_temperature = true;
    mc_spectral_encoder *whole = train_run(&w, c, 0);
    c.checkpoint_dir = b_dir;
    mc_spectral_encoder *resumed = train_run(&w, c, 2); /* killed in the first epoch */
    mc_test_assert_same_params("after resuming", &whole->params, &resumed->params);
    /* Running BN statistics moved, and the temperature learned: the
     * comparison above covered state that changes. */
    ck_assert(whole->logit_scale->data[0] != logf(1 / 0.07f));
    mc_spectral_encoder_free(whole);
    mc_spectral_encoder_free(resumed);
    world_close(&w);
}

/* A checkpoint stopped further into its epoch than this run's epochs are
 * long (written with a smaller batch) is refused, and the encoder keeps
 * its own weights: nothing is restored before the check. */
START_TEST(resume_of_a_longer_epoch_changes_nothing) {
    world w = {0};
    world_open(&w, 4);
    char dir[1200], last[1300];
    snprintf(dir, sizeof dir, "%s/long", w.f.dir);
    ck_assert(fixture_mkdir(dir) == MC_OK);
    mc_chain_train_config c = small_config(dir);
    c.stop_after_steps = 2; /* of 4 steps an epoch at batch 8 */
    mc_spectral_encoder *enc = tiny_encoder("B08,B11,B12", 21);
    mc_chain_trainer *t;
    MC_CHECK_OK(mc_chain_trainer_new(&t, &c, enc, w.clip, &w.train, &w.val, w.classes, NULL));
    MC_CHECK_OK(mc_chain_trainer_run(t));
    mc_chain_trainer_free(t);
    mc_spectral_encoder_free(enc);

    c.batch_size = 29; /* one step an epoch */
    c.stop_after_steps = 0;
    enc = tiny_encoder("B08,B11,B12", 999);
    mc_spectral_encoder *before = tiny_encoder("B08,B11,B12", 999);
    snprintf(last, sizeof last, "%s/last.safetensors", dir);
    MC_CHECK_OK(mc_chain_trainer_new(&t, &c, enc, w.clip, &w.train, &w.val, w.classes, NULL));
    MC_CHECK_FAILS(mc_chain_trainer_resume(t, last), MC_ERR_FORMAT,
                   "stopped at step 2 of an epoch of 1 steps");
    mc_test_assert_same_params("after a refused resume", &before->params, &enc->params);
    ck_assert_int_eq(mc_chain_trainer_state(t)->global_step, 0);
    mc_chain_trainer_free(t);
    mc_spectral_encoder_free(enc);
    mc_spectral_encoder_free(before);
    world_close(&w);
}
END_TEST

START_TEST(resume_is_bit_identical_on_the_fly) { check_resume_bit_identical(0, true); }
END_TEST
START_TEST(resume_is_bit_identical_with_target_crops) { check_resume_bit_identical(3, true); }
END_TEST
START_TEST(resume_is_bit_identical_without_augmentation) { check_resume_bit_identical(0, false); }
END_TEST

/* The step `last` holds now (-1 when there is none yet). */
static int64_t last_checkpoint_step(const char *dir) {
    char path[1300], value[32];
    snprintf(path, sizeof path, "%s/last.safetensors", dir);
    if (!mc_test_file_exists(path)) return -1;
    MC_CHECK_OK(mc_checkpoint_metadata_get(path, "global_step", value, sizeof value));
    return strtoll(value, NULL, 10);
}

typedef struct hook_order {
    const char *dir;
    int steps, epochs;
} hook_order;

static void step_sees_no_newer_checkpoint(void *ctx, const mc_chain_step_info *info) {
    hook_order *o = ctx;
    o->steps++;
    ck_assert_msg(last_checkpoint_step(o->dir) < info->global_step,
                  "the checkpoint of step %lld was written before its step hook",
                  (long long)info->global_step);
}

static mc_status epoch_sees_no_newer_checkpoint(void *ctx, const mc_chain_epoch_info *info) {
    hook_order *o = ctx;
    o->epochs++;
    (void)info;
    char path[1300];
    snprintf(path, sizeof path, "%s/best.safetensors", o->dir);
    ck_assert_msg(o->epochs > 1 || !mc_test_file_exists(path), "best was written before the first epoch hook");
    ck_assert_msg(last_checkpoint_step(o->dir) < 4 * o->epochs, "the epoch's checkpoint came before its hook");
    return MC_OK;
}

/* The hooks run before the checkpoints of their step or epoch: a kill
 * between the two then resumes from an earlier checkpoint and the rows the
 * hooks write come again, where the other order loses them for good. */
START_TEST(hooks_run_before_their_checkpoints) {
    world w = {0};
    world_open(&w, 4); /* 4 steps an epoch */
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/order", w.f.dir);
    ck_assert(fixture_mkdir(dir) == MC_OK);
    mc_chain_train_config c = small_config(dir); /* a checkpoint every step */
    hook_order order = {dir, 0, 0};
    mc_chain_hooks hooks = {.ctx = &order, .on_step = step_sees_no_newer_checkpoint,
                            .on_epoch = epoch_sees_no_newer_checkpoint};
    mc_spectral_encoder *enc = tiny_encoder("B08,B11,B12", 21);
    mc_chain_trainer *t;
    MC_CHECK_OK(mc_chain_trainer_new(&t, &c, enc, w.clip, &w.train, &w.val, w.classes, &hooks));
    MC_CHECK_OK(mc_chain_trainer_run(t));
    ck_assert_int_eq(order.steps, 8);
    ck_assert_int_eq(order.epochs, 2);
    ck_assert_int_eq(last_checkpoint_step(dir), 8); /* and the checkpoints did come after */
    mc_chain_trainer_free(t);
    mc_spectral_encoder_free(enc);
    world_close(&w);
}
END_TEST

/* A subset (a capped validation set) refuses items it does not have, as
 * every source does, instead of reading past its table. */
START_TEST(subset_refuses_items_it_lacks) {
    world w = {0};
    world_open(&w, 2);
    mc_chain_data few;
    MC_CHECK_OK(mc_chain_data_subset(&few, &w.val, 2));
    int labels[1], items[1] = {1};
    MC_CHECK_OK(few.load(few.ctx, items, 1, NULL, NULL, labels));
    ck_assert_ptr_nonnull(few.tile_key(few.ctx, 1));
    items[0] = 2;
    MC_CHECK_FAILS(few.load(few.ctx, items, 1, NULL, NULL, labels), MC_ERR_ARG, "item 2 of 2 tiles");
    ck_assert_ptr_null(few.tile_key(few.ctx, 2));
    ck_assert_ptr_null(w.val.tile_key(w.val.ctx, w.val.count));
    few.release(few.ctx);
    world_close(&w);
}
END_TEST

/* The metrics against a recomputation with plain loops in the test. */
/* The wrapped source's load (ctx: the source), with the first label 99. */
static mc_status load_with_a_bad_label(void *ctx, const int *items, int n, mc_tensor *spectral,
                                       mc_tensor *rgb, int *labels) {
    const mc_chain_data *base = ctx;
    MC_TRY(base->load(base->ctx, items, n, spectral, rgb, labels));
    if (labels && n > 0) labels[0] = 99;
    return MC_OK;
}

START_TEST(evaluate_matches_a_direct_computation) {
    world w = {0};
    world_open(&w, 3);
    mc_spectral_encoder *enc = tiny_encoder("B08,B11,B12", 5);
    mc_tensor *targets;
    bool cached;
    MC_CHECK_OK(mc_chain_targets(w.clip, &w.val, NULL, 4, &targets, &cached));
    ck_assert(!cached);
    mc_chain_metrics m;
    int batch = 4;
    MC_CHECK_OK(mc_chain_evaluate(enc, &w.val, targets, w.classes, batch, false, &m));
    int n = w.val.count, e = FIXTURE_EMBED, k = w.val.num_classes;
    /* spectral embeddings of every tile, one at a time, eval mode */
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_grad_enabled(g, false);
    mc_resnet_set_training(enc->resnet, false);
    float *spec = malloc(sizeof(float) * n * e);
    int *labels = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) {
        mc_tensor *x, *y;
        MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(1, 3, 64, 64), "x", &x));
        MC_CHECK_OK(w.val.load(w.val.ctx, &i, 1, x, NULL, &labels[i]));
        MC_CHECK_OK(mc_spectral_encoder_forward(enc, g, x, &y));
        memcpy(spec + i * e, y->data, sizeof(float) * e);
        mc_graph_reset(g);
    }
    int spectral_right = 0, rgb_right = 0, matched = 0;
    for (int i = 0; i < n; i++) {
        int best_s = 0, best_r = 0;
        double top_s = -1e30, top_r = -1e30;
        for (int c = 0; c < k; c++) { /* argmax of the dot product = of the cosine */
            double ds = 0, dr = 0;
            for (int d = 0; d < e; d++) {
                ds += spec[i * e + d] * w.classes->data[c * e + d];
                dr += targets->data[i * e + d] * w.classes->data[c * e + d];
            }
            if (ds > top_s) top_s = ds, best_s = c;
            if (dr > top_r) top_r = dr, best_r = c;
        }
        spectral_right += best_s == labels[i];
        rgb_right += best_r == labels[i];
        ck_assert_int_eq(m.spectral_pred[i], best_s);
        /* in-batch matching: tile i's own RGB target is the closest */
        int first = i / batch * batch, last = first + batch < n ? first + batch : n, best_j = -1;
        double best_cos = -2;
        for (int j = first; j < last; j++) {
            double dot = 0, nb = 0;
            for (int d = 0; d < e; d++) {
                dot += spec[i * e + d] * targets->data[j * e + d];
                nb += targets->data[j * e + d] * targets->data[j * e + d];
            }
            if (dot / sqrt(nb) > best_cos) best_cos = dot / sqrt(nb), best_j = j;
        }
        matched += best_j == i;
    }
    ck_assert(fabs(m.spectral_text_acc - (double)spectral_right / n) < 1e-12);
    ck_assert(fabs(m.rgb_text_acc - (double)rgb_right / n) < 1e-12);
    ck_assert(fabs(m.match_acc - (double)matched / n) < 1e-12);
    int64_t total = 0;
    for (int i = 0; i < k * k; i++) total += m.spectral_confusion[i];
    ck_assert_int_eq(total, n);
    ck_assert(isfinite(m.loss) && m.loss > 0);
    free(spec);
    free(labels);
    mc_graph_free(g);
    mc_chain_metrics_free(&m);
    /* A batch larger than the tiles is one batch of them all: the same
     * metrics (and no int overflow in count + batch). */
    mc_chain_metrics whole, huge;
    MC_CHECK_OK(mc_chain_evaluate(enc, &w.val, targets, w.classes, n, false, &whole));
    MC_CHECK_OK(mc_chain_evaluate(enc, &w.val, targets, w.classes, INT_MAX, false, &huge));
    ck_assert(whole.spectral_text_acc == huge.spectral_text_acc && whole.loss == huge.loss);
    mc_chain_metrics_free(&whole);
    mc_chain_metrics_free(&huge);
    /* A source's label out of range is an error, not a write past the
     * confusion matrix. */
    mc_chain_data bad = w.val;
    bad.ctx = &w.val;
    bad.load = load_with_a_bad_label;
    MC_CHECK_FAILS(mc_chain_evaluate(enc, &bad, targets, w.classes, batch, false, &m), MC_ERR_ARG,
                   "has label 99");
    /* A diverged encoder (NaN weights) is an error, not every tile in class 0. */
    enc->params.items[0]->data[0] = NAN;
    MC_CHECK_FAILS(mc_chain_evaluate(enc, &w.val, targets, w.classes, batch, false, &m), MC_ERR_NUMERIC,
                   "is not finite");
    mc_tensor_free(targets);
    mc_spectral_encoder_free(enc);
    world_close(&w);
}
END_TEST

START_TEST(targets_are_cached_on_disk) {
    world w = {0};
    world_open(&w, 2);
    char cache[1200];
    snprintf(cache, sizeof cache, "%s/cache", w.f.dir);
    mc_tensor *first, *second, *direct;
    bool cached;
    MC_CHECK_OK(mc_chain_targets(w.clip, &w.train, cache, 5, &first, &cached));
    ck_assert(!cached);
    MC_CHECK_OK(mc_chain_targets(w.clip, &w.train, cache, 7, &second, &cached));
    ck_assert(cached);
    ck_assert(memcmp(first->data, second->data, sizeof(float) * first->numel) == 0);
    /* the same as embedding the RGB views directly */
    mc_tensor *rgb;
    MC_CHECK_OK(mc_tensor_new(&rgb, MC_SHAPE(w.train.count, 3, 64, 64), "rgb"));
    int *items = malloc(sizeof(int) * w.train.count);
    for (int i = 0; i < w.train.count; i++) items[i] = i;
    MC_CHECK_OK(w.train.load(w.train.ctx, items, w.train.count, NULL, rgb, NULL));
    MC_CHECK_OK(mc_tensor_new(&direct, first->shape, "direct"));
    MC_CHECK_OK(mc_chain_embed_rgb(w.clip, rgb, 1000, direct));
    mc_test_assert_close("targets", first->data, direct->data, first->numel, 1e-5, 1e-6);
    /* other CLIP weights: another key, recomputed */
    const float weight = w.clip->visual_projection->data[0];
    w.clip->visual_projection->data[0] += 1.0f;
    mc_tensor *third;
    MC_CHECK_OK(mc_chain_targets(w.clip, &w.train, cache, 5, &third, &cached));
    ck_assert(!cached);
    /* The same tiles with their RGB views from elsewhere (an RGB release,
     * --rgb): another key, though the tile keys (the .tif paths) are the
     * same. */
    w.clip->visual_projection->data[0] = weight;
    ck_assert_ptr_nonnull(strstr(w.train.rgb_source, "B04,B03,B02"));
    mc_tensor_free(third);
    MC_CHECK_OK(mc_chain_targets(w.clip, &w.train, cache, 5, &third, &cached));
    ck_assert(cached);
    const char *own_bands = w.train.rgb_source;
    w.train.rgb_source = "RGB release /elsewhere";
    mc_tensor_free(third);
    MC_CHECK_OK(mc_chain_targets(w.clip, &w.train, cache, 5, &third, &cached));
    ck_assert(!cached);
    w.train.rgb_source = own_bands;
    /* Other attention heads over the same tensors (a config.json read, or
     * not): another tower, another key. */
    const int heads = w.clip->config.vision.heads, width = w.clip->config.vision.width;
    w.clip->config.vision.heads = width % (2 * heads) == 0 ? 2 * heads : 1;
    ck_assert_int_ne(w.clip->config.vision.heads, heads);
    mc_tensor_free(third);
    MC_CHECK_OK(mc_chain_targets(w.clip, &w.train, cache, 5, &third, &cached));
    ck_assert(!cached);
    w.clip->config.vision.heads = heads;
    /* Another MLP activation (LAION's exact GELU, read from a config.json):
     * another key. quick_gelu's key is the one it always was: cached. */
    w.clip->config.vision.activation = MC_CLIP_GELU;
    mc_tensor_free(third);
    MC_CHECK_OK(mc_chain_targets(w.clip, &w.train, cache, 5, &third, &cached));
    ck_assert(!cached);
    w.clip->config.vision.activation = MC_CLIP_QUICK_GELU;
    mc_tensor_free(third);
    MC_CHECK_OK(mc_chain_targets(w.clip, &w.train, cache, 5, &third, &cached));
    ck_assert(cached);
    free(items);
    mc_tensor_free(rgb);
    mc_tensor_free(first);
    mc_tensor_free(second);
    mc_tensor_free(third);
    mc_tensor_free(direct);
    world_close(&w);
}
END_TEST

START_TEST(crop_params_are_a_function_of_seed_item_and_k) {
    mc_augment_config config = mc_chain_train_defaults().augment_config;
    mc_augment_params a, b, c;
    mc_chain_crop_params(5, 17, 2, &config, &a);
    mc_chain_crop_params(5, 17, 2, &config, &b);
    mc_chain_crop_params(5, 17, 3, &config, &c);
    ck_assert(a.y0 == b.y0 && a.x0 == b.x0 && a.h == b.h && a.w == b.w && a.hflip == b.hflip &&
              a.vflip == b.vflip && a.rot90 == b.rot90);
    ck_assert(a.y0 != c.y0 || a.x0 != c.x0 || a.h != c.h);
    ck_assert(a.h >= config.crop_min && a.h <= config.crop_max);
}
END_TEST

/* A NaN stops the run and leaves the last good checkpoint. */
START_TEST(nan_loss_stops_and_keeps_the_checkpoint) {
    world w = {0};
    world_open(&w, 2);
    char ckpt[1200], last[1300];
    snprintf(ckpt, sizeof ckpt, "%s/ck", w.f.dir);
    snprintf(last, sizeof last, "%s/last.safetensors", ckpt);
    ck_assert(fixture_mkdir(ckpt) == MC_OK);
    mc_chain_train_config c = small_config(ckpt);
    c.stop_after_steps = 1;
    c.augment = false;
    mc_spectral_encoder *enc = tiny_encoder("B08,B11,B12", 2);
    mc_chain_trainer *t;
    MC_CHECK_OK(mc_chain_trainer_new(&t, &c, enc, w.clip, &w.train, &w.val, w.classes, NULL));
    MC_CHECK_OK(mc_chain_trainer_run(t)); /* one good step, checkpointed */
    mc_tensor *fc = mc_params_find(&enc->resnet->params, "fc.weight");
    fc->data[0] = NAN;
    mc_chain_trainer_free(t);
    c.stop_after_steps = 0;
    MC_CHECK_OK(mc_chain_trainer_new(&t, &c, enc, w.clip, &w.train, &w.val, w.classes, NULL));
    MC_CHECK_FAILS(mc_chain_trainer_run(t), MC_ERR_NUMERIC, "the loss became nan");
    mc_chain_trainer_free(t);
    mc_spectral_encoder *back;
    mc_chain_state state;
    MC_CHECK_OK(mc_spectral_encoder_load(last, &back, &state));
    ck_assert_int_eq(state.global_step, 1);
    ck_assert(isfinite(mc_params_find(&back->resnet->params, "fc.weight")->data[0]));
    mc_spectral_encoder_free(back);
    mc_spectral_encoder_free(enc);
    world_close(&w);
}
END_TEST

START_TEST(data_without_the_bands_is_refused) {
    chain_fixture f;
    MC_CHECK_OK(fixture_write(mc_test_dir, 1, &f));
    mc_eurosat *ds;
    MC_CHECK_OK(mc_eurosat_open(&ds, f.data3, NULL));
    mc_bands bands;
    mc_norm norm;
    MC_CHECK_OK(mc_bands_parse("B08,B11,B12", &bands));
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_TORCHGEO));
    mc_chain_data data;
    MC_CHECK_FAILS(mc_chain_data_from_eurosat(&data, ds, MC_SPLIT_ALL, &bands, &norm), MC_ERR_ARG,
                   "band B08");
    mc_eurosat_free(ds);
}
END_TEST

int main(int argc, char **argv) {
    /* Passive OpenMP waiting: on a machine busier than its cores, spinning
     * threads burn the time slices their peers need (this suite: 40 s
     * instead of 2 s). libgomp reads the setting once at start-up, hence the
     * re-exec; results do not depend on it. */
    if (!getenv("OMP_WAIT_POLICY") && argc >= 1) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    Suite *s = suite_create("chain");
    const TTest *const tests[] = {prompts_match_folder_names_by_name,
                                  split_list_trims_and_rejects_empty_items,
                                  text_classifier_fills_the_templates, checkpoint_round_trip,
                                  checkpoint_of_another_architecture_is_refused,
                                  resume_is_bit_identical_on_the_fly, resume_of_a_longer_epoch_changes_nothing,
                                  resume_is_bit_identical_with_target_crops,
                                  resume_is_bit_identical_without_augmentation,
                                  hooks_run_before_their_checkpoints, subset_refuses_items_it_lacks,
                                  evaluate_matches_a_direct_computation, targets_are_cached_on_disk,
                                  crop_params_are_a_function_of_seed_item_and_k,
                                  nan_loss_stops_and_keeps_the_checkpoint,
                                  data_without_the_bands_is_refused, NULL};
    TCase *chain = mc_test_add_case(s, "chain", tests);
    mc_test_use_temp_dir(chain);
    tcase_set_timeout(chain, 120);
    return mc_test_run_suite(s);
}

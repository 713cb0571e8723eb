/* The demo: the whole method on the synthetic world, with no download.
 *
 *   1. the world: disjoint, class-balanced sets of synthetic tiles (synth.h)
 *      for CLIP, the encoder's training, its validation and the test;
 *   2. a CLIP of our own: captions from class names and scene attributes
 *      (lib/chain/captions.c), a BPE vocabulary learned from them (tokenizer.h), both
 *      towers trained contrastively on the RGB views (lib/chain/pretrain.c);
 *   3. the chain: a ResNet on three infrared bands learns to land where that
 *      CLIP puts the tile's RGB view (chain.h: the same trainer as `mmchain
 *      train`); it never sees a caption or a label;
 *   4. the negative control: the same encoder trained on shuffled pairs
 *      (each tile paired with another tile's RGB view) must stay near chance;
 *   5. zero-shot top-1 on the held-out test tiles, spectral -> text and
 *      RGB -> text, with CLIP's EuroSAT prompts;
 *   6. with hops = 2, a further hop: a student on other bands (the red edge)
 *      learns the trained encoder's embeddings of the same tiles, so it
 *      reaches text through two hops without ever seeing RGB; its control
 *      is the same student on shuffled pairs at the second hop.
 * With a run folder: config.json, log.txt, metrics.csv, the CLIP
 * (clip/model.safetensors + clip/merges.txt, loadable by `mmchain train`),
 * the encoder's checkpoints and report.html. */
#include "mmchain_app/demo.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmchain/image.h"
#include "mmchain/synth.h"
#include "mmchain_app/report.h"
#include "mmchain_app/run.h"

/* ---------------------------------------------------------------------------
 * sizes
 * ------------------------------------------------------------------------- */

/* Chosen by measurement (docs/method.md, "The demo"): the smallest models
 * that reach the targets with a margin on several seeds within the time
 * budget of 5 minutes on 2 cores. */
mc_demo_config mc_demo_defaults(void) {
    mc_demo_config c = {
        .seed = 1, .clip_tiles = 4000, .train_tiles = 2000, .val_tiles = 300, .test_tiles = 1000,
        .tile_size = 32, .clip = mc_clip_recipe_defaults(), .bands = "B08,B11,B12",
        .encoder = {.block = MC_RESNET_BASIC, .layers = {1, 1, 1, 1}, .base_width = 24},
        .train = mc_chain_train_defaults(), .control = true, .hops = 1, .hop2_bands = "B05,B06,B07",
        .out_dir = NULL, .quiet = false,
    };
    c.clip.train.epochs = 15;
    c.train.epochs = 20;
    c.train.lr = 5e-4f;
    /* A softer softmax than CLIP's 0.07: with 10 classes a batch holds ~10
     * tiles of each, and a sharp InfoNCE spends the encoder on telling
     * those apart rather than on the class (measured: 0.07 -> 91 %,
     * 0.2 -> 94 %, 0.3 -> 95 % spectral->text on seed 1). */
    c.train.temperature = 0.25f;
    /* Nadir views have no "up": flips and quarter turns on top of the crops. */
    c.train.augment_config.hflip = c.train.augment_config.vflip = c.train.augment_config.rot90 = true;
    c.train.val_batch_size = 500;
    return c;
}

mc_demo_config mc_demo_tiny(void) {
    mc_demo_config c = mc_demo_defaults();
    c.clip_tiles = 600;
    c.train_tiles = 400;
    c.val_tiles = 100;
    c.test_tiles = 200;
    c.tile_size = 16;
    c.clip = (mc_clip_recipe){
        .image_size = 16, .patch = 4, .width = 32, .layers = 1, .text_width = 32, .text_layers = 1,
        .max_context = MC_CLIP_CONTEXT, .embed_dim = 32, .merges = 300, .captions_per_image = 2,
        .train = mc_clip_pretrain_defaults(),
    };
    c.clip.train.epochs = 12;
    c.clip.train.batch_size = 100;
    c.encoder.base_width = 8;
    c.train.epochs = 6;
    c.train.lr = 1e-3f;
    return c;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------
 * the state of one demo run
 * ------------------------------------------------------------------------- */

/* One set of tiles, and (with a spectral view) its pairs for the chain. */
typedef struct demo_set {
    mc_synth_views views;
    mc_chain_data data;
} demo_set;

typedef struct demo {
    const mc_demo_config *cfg;
    mc_demo_result *result;
    mc_run *run;                  /* NULL without out_dir */
    mc_bands bands;
    mc_norm norm;                 /* of the spectral view (torchgeo's z-scores) */
    const char *class_names[MC_SYNTH_CLASSES]; /* folder names */
    char **class_prompts;         /* CLIP's EuroSAT names */
    demo_set clip_set, train_set, val_set, test_set;
    /* hops = 2: the same tiles through the student's bands, and the pairs
     * (student's bands, encoder's bands) the student learns from */
    mc_bands hop2_bands;
    demo_set hop2_train, hop2_val, hop2_tiles;
    mc_chain_data pair_train, pair_val, pair_test;
    mc_spectral_encoder *teacher; /* the trained encoder, kept for the second hop */
    mc_tensor *hop2_test_targets; /* (test, E): the teacher's embeddings of the test tiles */
    mc_chain_metrics hop2_test, hop2_control_test;
    mc_tokenizer *tok;
    mc_clip *clip;
    mc_tensor *class_embeds;      /* (K, E) */
    mc_tensor *test_targets;      /* (test, E) */
    mc_chain_metrics test, control_test;
    double started;               /* wall clock at the start, seconds */
} demo;

static void set_free(demo_set *s) {
    mc_chain_data_free(&s->data);
    mc_synth_views_free(&s->views);
}

static void demo_free(demo *d) {
    set_free(&d->clip_set);
    set_free(&d->train_set);
    set_free(&d->val_set);
    set_free(&d->test_set);
    mc_chain_data_free(&d->pair_train);
    mc_chain_data_free(&d->pair_val);
    mc_chain_data_free(&d->pair_test);
    set_free(&d->hop2_train);
    set_free(&d->hop2_val);
    set_free(&d->hop2_tiles);
    mc_spectral_encoder_free(d->teacher);
    mc_tensor_free(d->hop2_test_targets);
    mc_chain_metrics_free(&d->hop2_test);
    mc_chain_metrics_free(&d->hop2_control_test);
    mc_chain_strings_free(d->class_prompts, MC_SYNTH_CLASSES);
    mc_tokenizer_free(d->tok);
    mc_clip_free(d->clip);
    mc_tensor_free(d->class_embeds);
    mc_tensor_free(d->test_targets);
    mc_chain_metrics_free(&d->test);
    mc_chain_metrics_free(&d->control_test);
    mc_run_close(d->run);
}

/* A line in log.txt (and on stdout unless quiet); nothing without a run. */
#define DEMO_LOG(d, ...) \
    do {                                                   \
        if ((d)->run) MC_TRY(mc_run_log((d)->run, __VA_ARGS__)); \
    } while (0)

/* ---------------------------------------------------------------------------
 * 1. the world
 * ------------------------------------------------------------------------- */

/* Set i (1 training, 2 validation, 3 test) through the student's bands,
 * paired with the encoder's view of the same tiles. */
static mc_status make_hop2_set(demo *d, int i, int64_t first, int count) {
    demo_set *student[4] = {NULL, &d->hop2_train, &d->hop2_val, &d->hop2_tiles};
    const demo_set *teacher[4] = {NULL, &d->train_set, &d->val_set, &d->test_set};
    mc_chain_data *pairs[4] = {NULL, &d->pair_train, &d->pair_val, &d->pair_test};
    mc_synth_views *v = &student[i]->views;
    MC_TRY(mc_synth_views_make(d->cfg->seed, first, count, d->cfg->tile_size, &d->hop2_bands, &d->norm, false, v));
    MC_TRY(mc_chain_data_from_tensors(&student[i]->data, v->spectral, v->rgb, v->labels, MC_SYNTH_CLASSES,
                                      d->class_names));
    return mc_chain_data_with_teacher_view(pairs[i], &student[i]->data, &teacher[i]->data);
}

/* The four disjoint sets, one after the other in the world's sequence. */
static mc_status make_world(demo *d) {
    const mc_demo_config *c = d->cfg;
    demo_set *sets[4] = {&d->clip_set, &d->train_set, &d->val_set, &d->test_set};
    const int counts[4] = {c->clip_tiles, c->train_tiles, c->val_tiles, c->test_tiles};
    int64_t first = 0;
    for (int i = 0; i < 4; i++) {
        bool for_clip = i == 0; /* CLIP needs attributes and RGB; the chain needs both views */
        MC_TRY(mc_synth_views_make(c->seed, first, counts[i], c->tile_size, for_clip ? NULL : &d->bands,
                                   &d->norm, for_clip, &sets[i]->views));
        if (!for_clip)
            MC_TRY(mc_chain_data_from_tensors(&sets[i]->data, sets[i]->views.spectral, sets[i]->views.rgb,
                                              sets[i]->views.labels, MC_SYNTH_CLASSES, d->class_names));
        if (!for_clip && c->hops == 2) MC_TRY(make_hop2_set(d, i, first, counts[i]));
        first += counts[i];
    }
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * 2. the CLIP
 * ------------------------------------------------------------------------- */

typedef struct clip_progress {
    demo *d;
    mc_progress bar;
    bool started;
    int64_t items;
} clip_progress;

static void clip_on_step(void *ctx, const mc_clip_pretrain_step_info *info) {
    clip_progress *p = ctx;
    if (!p->started) mc_progress_begin(&p->bar, "clip", info->total_steps, p->d->cfg->quiet);
    p->started = true;
    p->items += info->batch_items;
    mc_progress_update(&p->bar, info->epoch + 1, info->step, info->loss, p->items);
    if (!p->d->run) return;
    const char *cols[3] = {"step", "clip_loss", "clip_logit_scale"};
    double vals[3] = {(double)info->step, info->loss, info->logit_scale};
    (void)mc_run_metrics_row(p->d->run, "step", cols, vals, 3); /* best effort, as a log */
}

static mc_status clip_on_epoch(void *ctx, int epoch, double mean_loss, double seconds) {
    clip_progress *p = ctx;
    if (!p->d->run) return MC_OK;
    const char *cols[2] = {"epoch", "clip_loss"};
    double vals[2] = {epoch + 1, mean_loss};
    MC_TRY(mc_run_metrics_row(p->d->run, "epoch", cols, vals, 2));
    return mc_run_log(p->d->run, "CLIP epoch %d/%d: loss %.4f (%.1f s)", epoch + 1,
                      p->d->cfg->clip.train.epochs, mean_loss, seconds);
}

static void clip_on_message(void *ctx, const char *line) {
    clip_progress *p = ctx;
    if (p->d->run) (void)mc_run_log(p->d->run, "CLIP: %s", line);
}

/* Captions, vocabulary, CLIP, pretraining; the CLIP saved in DIR/clip. */
static mc_status make_clip(demo *d) {
    mc_clip_recipe recipe = d->cfg->clip;
    recipe.train.seed = d->cfg->seed; /* one seed for the whole demo */
    const mc_clip_recipe *r = &recipe;
    DEMO_LOG(d, "CLIP: ViT %dx%d/%d, width %d x %d layers; text width %d x %d layers; joint space %d",
             r->image_size, r->image_size, r->patch, r->width, r->layers, r->text_width,
             r->text_layers, r->embed_dim);
    const mc_synth_views *v = &d->clip_set.views;
    mc_labelled_images images = {v->rgb, v->labels, v->attrs,
                                 MC_SYNTH_CLASSES, (const char *const *)d->class_prompts, NULL};
    clip_progress progress = {.d = d};
    mc_clip_pretrain_hooks hooks = {&progress, clip_on_step, clip_on_epoch, clip_on_message};
    mc_status status = mc_clip_from_captions(r, &images, &hooks, &d->clip, &d->tok);
    if (progress.started) mc_progress_end(&progress.bar, NULL);
    if (status != MC_OK || !d->run) return status;
    char dir[4096];
    MC_TRY(mc_run_path(d->run, "clip", dir, sizeof dir));
    MC_TRY(mc_clip_save_folder(d->clip, d->tok, dir));
    DEMO_LOG(d, "CLIP saved in %s (model.safetensors, merges.txt, vocab.json)", dir);
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * 3. and 4. the chain and the control
 * ------------------------------------------------------------------------- */

typedef struct encoder_progress {
    demo *d;
    const char *prefix; /* "encoder", "control", "student" or "student_control" */
    bool hop2;          /* the second view is the teacher's, not RGB */
    mc_progress bar;
    int64_t items;
} encoder_progress;

static void encoder_on_step(void *ctx, const mc_chain_step_info *info) {
    encoder_progress *p = ctx;
    p->items += info->batch_items;
    mc_progress_update(&p->bar, info->epoch + 1, info->global_step, info->loss, p->items);
    if (!p->d->run) return;
    char loss[64];
    snprintf(loss, sizeof loss, "%s_loss", p->prefix);
    const char *cols[2] = {"step", loss};
    double vals[2] = {(double)info->global_step, info->loss};
    (void)mc_run_metrics_row(p->d->run, "step", cols, vals, 2); /* best effort, as a log */
}

static mc_status encoder_on_epoch(void *ctx, const mc_chain_epoch_info *info) {
    encoder_progress *p = ctx;
    if (!p->d->run) return MC_OK;
    char names[4][64];
    snprintf(names[0], sizeof names[0], "%s_loss", p->prefix);
    snprintf(names[1], sizeof names[1], "%s_val_spectral_text_acc", p->prefix);
    snprintf(names[2], sizeof names[2], "%s_val_match_acc", p->prefix);
    snprintf(names[3], sizeof names[3], p->hop2 ? "val_teacher_text_acc" : "val_rgb_text_acc");
    const char *cols[5] = {"epoch", names[0], names[1], names[2], names[3]};
    double vals[5] = {info->epoch, info->train_loss, info->val->spectral_text_acc, info->val->match_acc,
                      info->val->rgb_text_acc};
    MC_TRY(mc_run_metrics_row(p->d->run, "epoch", cols, vals, 5));
    return mc_run_log(p->d->run, "%s epoch %d/%d: loss %.4f, validation spectral->text %.1f %%, "
                      "matching %.1f %% (%.1f s)", p->prefix, info->epoch, p->d->cfg->train.epochs,
                      info->train_loss, 100.0 * info->val->spectral_text_acc,
                      100.0 * info->val->match_acc, info->seconds);
}

static void encoder_on_message(void *ctx, const char *line) {
    encoder_progress *p = ctx;
    if (p->d->run) (void)mc_run_log(p->d->run, "%s: %s", p->prefix, line);
}

/* One encoder to train: the chain or the student of the second hop, each
 * on true or on shuffled pairs (the control). */
typedef struct encoder_job {
    const char *prefix;          /* names its metrics and log lines */
    const mc_bands *bands;       /* its input */
    const mc_chain_data *train, *val, *test;
    const mc_tensor *test_targets;
    mc_spectral_encoder *teacher; /* NULL: learn CLIP's image embeddings */
    bool control;                /* shuffled pairs */
    bool checkpoints;            /* write DIR/checkpoints (the chain's encoder) */
    uint64_t salt;               /* mixed into the seed for the initial weights */
} encoder_job;

/* Train one encoder and evaluate it on the test tiles; *keep (may be NULL)
 * receives the encoder instead of its being freed. */
static mc_status train_encoder(demo *d, const encoder_job *job, mc_chain_metrics *test,
                               mc_spectral_encoder **keep) {
    const mc_demo_config *c = d->cfg;
    mc_chain_train_config cfg = c->train;
    cfg.seed = c->seed;
    cfg.shuffle_pairs = job->control;
    cfg.teacher = job->teacher;
    char checkpoints[4096];
    cfg.checkpoint_dir = NULL;
    if (d->run && job->checkpoints) {
        MC_TRY(mc_run_path(d->run, "checkpoints", checkpoints, sizeof checkpoints));
        cfg.checkpoint_dir = checkpoints;
    }
    mc_spectral_encoder *enc;
    MC_TRY(mc_spectral_encoder_new(&enc, &c->encoder, job->bands, &d->norm, c->tile_size, c->clip.embed_dim,
                                   logf(1.0f / cfg.temperature), cfg.learnable_temperature, c->seed ^ job->salt));
    encoder_progress progress = {.d = d, .prefix = job->prefix, .hop2 = job->teacher != NULL};
    mc_chain_hooks hooks = {&progress, encoder_on_step, encoder_on_epoch, encoder_on_message};
    mc_chain_trainer *trainer = NULL;
    mc_status status = mc_chain_trainer_new(&trainer, &cfg, enc, d->clip, job->train, job->val, d->class_embeds,
                                            &hooks);
    if (status == MC_OK) {
        mc_progress_begin(&progress.bar, progress.prefix,
                          mc_chain_trainer_steps_per_epoch(trainer) * cfg.epochs, c->quiet);
        status = mc_chain_trainer_run(trainer);
        mc_progress_end(&progress.bar, NULL);
    }
    if (status == MC_OK)
        status = mc_chain_evaluate(enc, job->test, job->test_targets, d->class_embeds, cfg.val_batch_size,
                                   cfg.symmetric, test);
    mc_chain_trainer_free(trainer);
    if (status == MC_OK && keep) *keep = enc;
    else mc_spectral_encoder_free(enc);
    return status;
}

/* The chain's encoder on the infrared bands against CLIP, or its control. */
static mc_status train_chain(demo *d, bool control, mc_chain_metrics *test) {
    encoder_job job = {
        .prefix = control ? "control" : "encoder", .bands = &d->bands, .train = &d->train_set.data,
        .val = &d->val_set.data, .test = &d->test_set.data, .test_targets = d->test_targets,
        .control = control, .checkpoints = !control, .salt = 0x656e63ULL, /* "enc" */
    };
    return train_encoder(d, &job, test, control || d->cfg->hops < 2 ? NULL : &d->teacher);
}

/* The second hop: the student against the trained encoder, or its control. */
static mc_status train_student(demo *d, bool control, mc_chain_metrics *test) {
    if (!d->hop2_test_targets)
        MC_TRY(mc_chain_teacher_targets(d->teacher, &d->pair_test, NULL, d->cfg->train.clip_batch,
                                        &d->hop2_test_targets, NULL));
    encoder_job job = {
        .prefix = control ? "student_control" : "student", .bands = &d->hop2_bands, .train = &d->pair_train,
        .val = &d->pair_val, .test = &d->pair_test, .test_targets = d->hop2_test_targets,
        .teacher = d->teacher, .control = control, .salt = 0x73747564ULL, /* "stud" */
    };
    return train_encoder(d, &job, test, NULL);
}

/* The text classifier and the test set's CLIP targets, shared by both runs. */
static mc_status prepare_chain(demo *d) {
    MC_TRY(mc_chain_text_classifier(d->clip, d->tok, (const char *const *)d->class_prompts,
                                    MC_SYNTH_CLASSES, mc_chain_eurosat_templates,
                                    MC_CHAIN_NUM_TEMPLATES, &d->class_embeds));
    return mc_chain_targets(d->clip, &d->test_set.data, NULL, d->cfg->train.clip_batch, &d->test_targets,
                            NULL);
}

/* ---------------------------------------------------------------------------
 * 5. the report
 * ------------------------------------------------------------------------- */

#define SHEET_PER_CLASS 4

/* A contact sheet of test tiles (SHEET_PER_CLASS of each class) captioned
 * with the spectral encoder's prediction and the truth. */
static mc_status write_sheet(demo *d, const char *path) {
    const mc_synth_views *s = &d->test_set.views;
    const int size = d->cfg->tile_size;
    /* The first SHEET_PER_CLASS tiles of each class, class after class. */
    int picked[MC_SYNTH_CLASSES * SHEET_PER_CLASS], n = 0;
    for (int k = 0; k < MC_SYNTH_CLASSES; k++)
        for (int i = 0, taken = 0; i < s->count && taken < SHEET_PER_CLASS; i++)
            if (s->labels[i] == k) picked[n++] = i, taken++;
    if (n == 0) return MC_OK;
    mc_tensor *tiles;
    MC_TRY(mc_tensor_new(&tiles, MC_SHAPE(n, 3, size, size), "sheet"));
    char text[MC_SYNTH_CLASSES * SHEET_PER_CLASS][64];
    const char *captions[MC_SYNTH_CLASSES * SHEET_PER_CLASS];
    const int64_t image_floats = 3 * (int64_t)size * size;
    for (int k = 0; k < n; k++) {
        memcpy(tiles->data + k * image_floats, s->rgb->data + (int64_t)picked[k] * image_floats,
               (size_t)image_floats * sizeof(float));
        int pred = d->test.spectral_pred[picked[k]];
        int truth = s->labels[picked[k]];
        if (pred == truth) snprintf(text[k], sizeof text[k], "ok %s", d->class_names[pred]);
        else snprintf(text[k], sizeof text[k], "X %.9s/%.9s", d->class_names[pred], d->class_names[truth]);
        captions[k] = text[k];
    }
    int scale = size >= 64 ? 2 : 128 / size;
    mc_status status = mc_contact_sheet_write(path, tiles, captions, SHEET_PER_CLASS * 2, scale);
    mc_tensor_free(tiles);
    return status;
}

static mc_status write_report(demo *d) {
    if (!d->run) return MC_OK;
    const mc_demo_result *r = d->result;
    char sheet[4096];
    MC_TRY(mc_run_path(d->run, "test-tiles.png", sheet, sizeof sheet));
    MC_TRY(write_sheet(d, sheet));
    char values[6][64];
    mc_report_percent(r->rgb_text_acc, values[0], sizeof values[0]);
    mc_report_percent(r->spectral_text_acc, values[1], sizeof values[1]);
    mc_report_percent(r->control_text_acc, values[2], sizeof values[2]); /* "-" without a control */
    snprintf(values[3], sizeof values[3], "%.1f %%", 100.0 / r->num_classes);
    snprintf(values[4], sizeof values[4], "%d", r->test_tiles);
    snprintf(values[5], sizeof values[5], "%.0f s", now_seconds() - d->started);
    mc_metadata_entry summary[6] = {
        {"RGB -> text (CLIP, zero-shot)", values[0]}, {"spectral -> text (chained encoder)", values[1]},
        {"control (shuffled pairs) -> text", values[2]}, {"chance", values[3]},
        {"held-out test tiles", values[4]}, {"wall time", values[5]},
    };
    const char *const *names = d->class_names;
    mc_report_confusion confusions[2] = {
        {"spectral -> text (test tiles)", MC_SYNTH_CLASSES, names, d->test.spectral_confusion},
        {"RGB -> text (test tiles)", MC_SYNTH_CLASSES, names, d->test.rgb_confusion},
    };
    mc_report_bars bars[2] = {
        {"spectral -> text per class", MC_SYNTH_CLASSES, names, d->test.spectral_class_acc},
        {"RGB -> text per class", MC_SYNTH_CLASSES, names, d->test.rgb_class_acc},
    };
    mc_report_image image = {sheet, "Held-out test tiles (their RGB view), four of each class in label "
                                    "order (two classes a row: AnnualCrop, Forest, ..., SeaLake), "
                                    "captioned with the spectral encoder's zero-shot class (X predicted/true: wrong)"};
    /* hops = 2: the chain student -> encoder -> CLIP image -> CLIP text, each
     * arrow's test accuracy, and under each box its own zero-shot accuracy. */
    char student_box[96], teacher_box[96];
    snprintf(student_box, sizeof student_box, "student: %s", d->cfg->hop2_bands);
    snprintf(teacher_box, sizeof teacher_box, "encoder: %s", d->cfg->bands);
    const char *nodes[4] = {student_box, teacher_box, "CLIP image (RGB)", "CLIP text"};
    const char *links[3] = {"matching", "matching", "zero-shot"};
    const double link_acc[3] = {r->hop2_match_acc, r->match_acc, r->rgb_text_acc};
    const double text_acc[4] = {r->hop2_text_acc, r->spectral_text_acc, r->rgb_text_acc, NAN};
    mc_report_chain chain = {"two hops on the held-out test tiles: matching inside batches along each arrow "
                             "(zero-shot for CLIP's own hop), zero-shot top-1 under each box", 4, nodes, links,
                             link_acc, text_acc};
    mc_metadata_entry rows[9];
    memcpy(rows, summary, sizeof summary);
    char hop2[2][64];
    mc_report_percent(r->hop2_text_acc, hop2[0], sizeof hop2[0]);
    mc_report_percent(r->hop2_control_text_acc, hop2[1], sizeof hop2[1]);
    rows[6] = (mc_metadata_entry){"second hop: student -> text (through the encoder)", hop2[0]};
    rows[7] = (mc_metadata_entry){"second hop's control (shuffled pairs) -> text", hop2[1]};
    bool two = d->cfg->hops == 2;
    mc_report report = {
        .title = "mmchain demo: a spectral encoder chained to a CLIP of our own",
        .n_summary = two ? 8 : 6, .summary = rows, .n_confusions = 2, .confusions = confusions,
        .n_bars = 2, .bars = bars, .n_images = 1, .images = &image, .n_chains = two ? 1 : 0, .chains = &chain,
    };
    MC_TRY(mc_run_write_report(d->run, &report));
    return mc_run_path(d->run, "report.html", d->result->report_path, sizeof d->result->report_path);
}

/* ---------------------------------------------------------------------------
 * the run folder's config.json
 * ------------------------------------------------------------------------- */

static mc_status write_config(demo *d) {
    const mc_demo_config *c = d->cfg;
    char v[28][64];
    int n = 0;
#define NUM(fmt, value) (snprintf(v[n], sizeof v[n], fmt, value), v[n++])
    mc_metadata_entry kv[] = {
        {"command", "demo"},
        {"seed", NUM("%llu", (unsigned long long)c->seed)},
        {"clip_tiles", NUM("%d", c->clip_tiles)},
        {"train_tiles", NUM("%d", c->train_tiles)},
        {"val_tiles", NUM("%d", c->val_tiles)},
        {"test_tiles", NUM("%d", c->test_tiles)},
        {"tile_size", NUM("%d", c->tile_size)},
        {"clip_image_size", NUM("%d", c->clip.image_size)},
        {"clip_patch", NUM("%d", c->clip.patch)},
        {"clip_width", NUM("%d", c->clip.width)},
        {"clip_layers", NUM("%d", c->clip.layers)},
        {"text_width", NUM("%d", c->clip.text_width)},
        {"text_layers", NUM("%d", c->clip.text_layers)},
        {"embed_dim", NUM("%d", c->clip.embed_dim)},
        {"merges", NUM("%d", c->clip.merges)},
        {"captions_per_image", NUM("%d", c->clip.captions_per_image)},
        {"clip_epochs", NUM("%d", c->clip.train.epochs)},
        {"clip_batch", NUM("%d", c->clip.train.batch_size)},
        {"clip_lr", NUM("%g", (double)c->clip.train.lr)},
        {"bands", c->bands},
        {"encoder_base_width", NUM("%d", c->encoder.base_width)},
        {"encoder_epochs", NUM("%d", c->train.epochs)},
        {"encoder_batch", NUM("%d", c->train.batch_size)},
        {"encoder_lr", NUM("%g", (double)c->train.lr)},
        {"control", c->control ? "true" : "false"},
        {"hops", NUM("%d", c->hops)},
        {"hop2_bands", c->hop2_bands},
        /* Every graph of the demo is made with the default precision. */
        {"precision", mc_precision_name(mc_default_precision())},
    };
#undef NUM
    return mc_run_write_config(d->run, (int)(sizeof kv / sizeof kv[0]), kv);
}

/* ---------------------------------------------------------------------------
 * the whole demo
 * ------------------------------------------------------------------------- */

static mc_status check_config(const mc_demo_config *c) {
    if (c->hops < 1 || c->hops > 2)
        return mc_error(MC_ERR_ARG, "demo: %d hops (the chain has 1 or 2)", c->hops);
    if (c->clip_tiles < 2 || c->train_tiles < 2 || c->val_tiles < 1 || c->test_tiles < 1 ||
        c->tile_size < 8 || c->tile_size > MC_SYNTH_SIZE)
        return mc_error(MC_ERR_ARG,
                        "demo: %d CLIP, %d training, %d validation, %d test tiles of %d pixels "
                        "(expected >= 2, 2, 1, 1 tiles, a size in 8..%d)",
                        c->clip_tiles, c->train_tiles, c->val_tiles, c->test_tiles, c->tile_size,
                        MC_SYNTH_SIZE);
    return MC_OK;
}

/* Whether `dir` holds a run whose config.json says a demo wrote it: a
 * demo, re-made from its seed in minutes, is replaced without asking. */
static bool holds_demo_run(const char *dir) {
    mc_run *run;
    if (mc_run_open_readonly(&run, dir) != MC_OK) {
        mc_clear_error(); /* no run there: not an error of the demo's */
        return false;
    }
    char command[16];
    bool demo = false;
    if (mc_run_config_get(run, "command", command, sizeof command) == MC_OK)
        demo = strcmp(command, "demo") == 0;
    else
        mc_clear_error(); /* no command recorded: not a demo's run */
    mc_run_close(run);
    return demo;
}

mc_run_mode mc_demo_run_mode(const mc_demo_config *config) {
    return config->overwrite || (config->out_dir && holds_demo_run(config->out_dir)) ? MC_RUN_OVERWRITE
                                                                                     : MC_RUN_NEW;
}

static mc_status demo_setup(demo *d) {
    const mc_demo_config *c = d->cfg;
    MC_TRY(check_config(c));
    MC_TRY(mc_bands_parse(c->bands, &d->bands));
    if (c->hops == 2) MC_TRY(mc_bands_parse(c->hop2_bands, &d->hop2_bands));
    /* Z-scores with torchgeo's EuroSAT statistics, as `mmchain train`
     * defaults to: inputs of unit scale train the first convolution far
     * better than raw reflectance (~0.1) does (docs/method.md, the demo). */
    MC_TRY(mc_norm_init(&d->norm, MC_NORM_TORCHGEO));
    for (int k = 0; k < MC_SYNTH_CLASSES; k++) d->class_names[k] = mc_synth_class_name(k);
    MC_TRY(mc_chain_class_prompts(d->class_names, MC_SYNTH_CLASSES, &d->class_prompts));
    if (!c->out_dir) return MC_OK;
    MC_TRY(mc_run_open(&d->run, c->out_dir, mc_demo_run_mode(c)));
    mc_run_set_quiet(d->run, c->quiet);
    snprintf(d->result->run_dir, sizeof d->result->run_dir, "%s", mc_run_dir(d->run));
    return write_config(d);
}

/* hops = 2: the student and its control, then their test numbers. */
static mc_status second_hop(demo *d) {
    if (d->cfg->hops < 2) return MC_OK;
    mc_demo_result *r = d->result;
    double t = now_seconds();
    DEMO_LOG(d, "the second hop: the same ResNet on %s learns the encoder's embeddings (no RGB, no CLIP)",
             d->cfg->hop2_bands);
    MC_TRY(train_student(d, false, &d->hop2_test));
    r->hop2_text_acc = d->hop2_test.spectral_text_acc;
    r->hop2_match_acc = d->hop2_test.match_acc;
    if (d->cfg->control) {
        DEMO_LOG(d, "the second hop's control: the student on shuffled pairs");
        MC_TRY(train_student(d, true, &d->hop2_control_test));
        r->hop2_control_text_acc = d->hop2_control_test.spectral_text_acc;
    }
    r->seconds_hop2 = now_seconds() - t;
    DEMO_LOG(d, "second hop (test): student->text %.1f %%, its control %.1f %%, student->encoder matching %.1f %%",
             100.0 * r->hop2_text_acc, 100.0 * r->hop2_control_text_acc, 100.0 * r->hop2_match_acc);
    return MC_OK;
}

static mc_status demo_steps(demo *d) {
    const mc_demo_config *c = d->cfg;
    mc_demo_result *r = d->result;
    double t = now_seconds();
    MC_TRY(demo_setup(d));
    DEMO_LOG(d, "the synthetic world: %d + %d + %d + %d tiles (CLIP, encoder training, validation, "
             "test), %dx%d pixels", c->clip_tiles, c->train_tiles, c->val_tiles, c->test_tiles,
             c->tile_size, c->tile_size);
    MC_TRY(make_world(d));
    r->seconds_data = now_seconds() - t;
    t = now_seconds();
    MC_TRY(make_clip(d));
    MC_TRY(prepare_chain(d));
    r->seconds_clip = now_seconds() - t;
    t = now_seconds();
    DEMO_LOG(d, "the chain: ResNet (basic blocks %d-%d-%d-%d, width %d) on %s", c->encoder.layers[0],
             c->encoder.layers[1], c->encoder.layers[2], c->encoder.layers[3], c->encoder.base_width,
             c->bands);
    MC_TRY(train_chain(d, false, &d->test));
    r->seconds_encoder = now_seconds() - t;
    r->test_tiles = d->test.count;
    r->num_classes = d->test.num_classes;
    r->rgb_text_acc = d->test.rgb_text_acc;
    r->spectral_text_acc = d->test.spectral_text_acc;
    r->match_acc = d->test.match_acc;
    if (c->control) {
        t = now_seconds();
        DEMO_LOG(d, "the control: the same encoder on shuffled pairs");
        MC_TRY(train_chain(d, true, &d->control_test));
        r->seconds_control = now_seconds() - t;
        r->control_text_acc = d->control_test.spectral_text_acc;
    }
    MC_TRY(second_hop(d));
    DEMO_LOG(d, "test (%d held-out tiles): RGB->text %.1f %%, spectral->text %.1f %%, control %.1f %%",
             r->test_tiles, 100.0 * r->rgb_text_acc, 100.0 * r->spectral_text_acc,
             100.0 * r->control_text_acc);
    if (d->run) {
        const char *cols[7] = {"test_rgb_text_acc", "test_spectral_text_acc", "test_control_text_acc",
                               "test_match_acc", "test_hop2_text_acc", "test_hop2_control_text_acc",
                               "test_hop2_match_acc"};
        double vals[7] = {r->rgb_text_acc, r->spectral_text_acc, r->control_text_acc, r->match_acc,
                          r->hop2_text_acc, r->hop2_control_text_acc, r->hop2_match_acc};
        MC_TRY(mc_run_metrics_row(d->run, "test", cols, vals, c->hops == 2 ? 7 : 4));
    }
    return write_report(d);
}

mc_status mc_demo_run(const mc_demo_config *config, mc_demo_result *out) {
    if (!config || !out) return mc_error(MC_ERR_ARG, "demo: missing argument");
    memset(out, 0, sizeof *out);
    out->control_text_acc = out->hop2_text_acc = out->hop2_control_text_acc = out->hop2_match_acc = NAN;
    demo d = {.cfg = config, .result = out, .started = now_seconds()};
    mc_status status = demo_steps(&d);
    demo_free(&d);
    out->seconds_total = now_seconds() - d.started;
    return status;
}

/* ---------------------------------------------------------------------------
 * the band-set ablation
 * ------------------------------------------------------------------------- */

/* A set's spectral view through `bands`: channels of its 13-band view (in
 * file order, so a band's file index is its channel), normalised alike. */
static mc_status select_bands(const mc_tensor *all, const mc_bands *bands, mc_tensor **out) {
    const int64_t n = all->shape.dim[0], channels = all->shape.dim[1];
    const int64_t plane = all->shape.dim[2] * all->shape.dim[3];
    MC_TRY(mc_tensor_new(out, MC_SHAPE(n, bands->count, all->shape.dim[2], all->shape.dim[3]), "bands"));
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < bands->count; c++)
            memcpy((*out)->data + (i * bands->count + c) * plane,
                   all->data + (i * channels + bands->index[c]) * plane, (size_t)plane * sizeof(float));
    return MC_OK;
}

/* The encoder and its control on one band set; the world and the CLIP are
 * the seed's. */
static mc_status ablate_set(demo *d, const char *list, mc_ablate_row *row) {
    mc_bands bands;
    MC_TRY(mc_bands_parse(list, &bands));
    const demo_set *sets[3] = {&d->train_set, &d->val_set, &d->test_set};
    mc_tensor *spectral[3] = {NULL, NULL, NULL};
    mc_chain_data data[3];
    memset(data, 0, sizeof data);
    mc_chain_metrics test = {0}, control = {0};
    mc_status status = MC_OK;
    for (int k = 0; k < 3 && status == MC_OK; k++) {
        status = select_bands(sets[k]->views.spectral, &bands, &spectral[k]);
        if (status == MC_OK)
            status = mc_chain_data_from_tensors(&data[k], spectral[k], sets[k]->views.rgb, sets[k]->views.labels,
                                                MC_SYNTH_CLASSES, d->class_names);
    }
    encoder_job job = {
        .prefix = "encoder", .bands = &bands, .train = &data[0], .val = &data[1], .test = &data[2],
        .test_targets = d->test_targets, .salt = 0x656e63ULL, /* "enc", as the demo's chain */
    };
    if (status == MC_OK) status = train_encoder(d, &job, &test, NULL);
    job.prefix = "control";
    job.control = true;
    if (status == MC_OK && d->cfg->control) status = train_encoder(d, &job, &control, NULL);
    if (status == MC_OK) {
        snprintf(row->bands, sizeof row->bands, "%s", list); /* as the user wrote it ("all") */
        row->text_acc = test.spectral_text_acc;
        row->match_acc = test.match_acc;
        row->rgb_text_acc = test.rgb_text_acc;
        row->control_text_acc = d->cfg->control ? control.spectral_text_acc : NAN;
        row->num_classes = test.num_classes;
        for (int k = 0; k < test.num_classes && k < MC_EUROSAT_NUM_CLASSES; k++)
            row->class_acc[k] = test.spectral_class_acc[k];
    }
    mc_chain_metrics_free(&test);
    mc_chain_metrics_free(&control);
    for (int k = 0; k < 3; k++) {
        mc_chain_data_free(&data[k]);
        mc_tensor_free(spectral[k]);
    }
    return status;
}

mc_status mc_demo_ablate(const mc_demo_config *config, const char *const *sets, int n_sets, mc_ablate_row *rows) {
    if (!config || !sets || n_sets < 1 || !rows) return mc_error(MC_ERR_ARG, "ablate: missing argument");
    mc_demo_config c = *config;
    c.bands = "all"; /* the world once, with every band; each set picks its own */
    c.hops = 1;
    c.out_dir = NULL;
    mc_demo_result result;
    memset(&result, 0, sizeof result);
    demo d = {.cfg = &c, .result = &result, .started = now_seconds()};
    mc_status status = demo_setup(&d);
    if (status == MC_OK) status = make_world(&d);
    if (status == MC_OK) status = make_clip(&d);
    if (status == MC_OK) status = prepare_chain(&d);
    for (int i = 0; i < n_sets && status == MC_OK; i++) status = ablate_set(&d, sets[i], &rows[i]);
    demo_free(&d);
    return status;
}

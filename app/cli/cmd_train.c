/* mmchain train — the seed paper's method on EuroSAT-MS (docs/method.md).
 *
 *     mmchain train --data EuroSAT_MS --clip clip.safetensors --vocab merges.txt
 *                   [--resnet resnet50.safetensors] [--out runs/x] ...
 *     mmchain train --resume runs/x          (continues a killed run)
 *
 * The command is glue: options -> data sources, CLIP, the text classifier,
 * the encoder -> mc_chain_trainer (lib/chain/train.c) with hooks that drive
 * the progress line, metrics.csv, log.txt and report.html (mmchain_app/run.h, report.h).
 *
 * Under an MPI launcher (mpirun -np N mmchain train ...) every rank runs
 * this command: all build the same setup; rank 0 writes the run folder,
 * the others follow (docs/distributed.md). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chain_cli.h"
#include "mmchain/dist.h"

static const char *const COMMAND = "train";
static const char *const USAGE =
    "usage: mmchain train --data EUROSAT_MS_DIR --clip CLIP.safetensors --vocab VOCAB [options]\n"
    "       mmchain train --teacher RUN_DIR --bands B05,B06,B07 --data ... --clip ... --vocab ...\n"
    "       mmchain train --resume RUN_DIR [--epochs E] [--quiet]\n\n"
    "Trains a spectral encoder (ResNet) so that its embedding of a tile's bands matches the frozen\n"
    "CLIP image embedding of the tile's RGB view (InfoNCE), then classifies zero-shot with CLIP's\n"
    "text prompts. With --teacher the targets are a trained encoder's embeddings of the tile through\n"
    "its own bands instead (a further hop: the new encoder never sees RGB, text or labels). Writes\n"
    "RUN_DIR/{config.json, metrics.csv, log.txt, report.html, checkpoints/last.safetensors,\n"
    "checkpoints/best.safetensors}.";

typedef struct train_args {
    chain_data_args d; /* --data, --clip, --vocab, the split and prompt options */
    chain_encoder_args enc; /* --resnet, --depth, --width, --layers */
    mc_chain_train_config train; /* the trainer's options, bound by the option table */
    const char *bands, *norm, *out, *resume, *cache_dir, *select, *teacher;
    const char *precision;
    int log_every;
    uint64_t max_memory; /* bytes, 0: no limit (--max-memory, MMCHAIN_MAX_MEMORY) */
    bool quiet;
    bool recompute; /* --recompute: mc_resnet_set_recompute (results unchanged) */
    bool overwrite; /* --overwrite: a fresh run may replace the one in --out */
} train_args;

/* The defaults: the trainer's own (mc_chain_train_defaults) and the data
 * options' (mc_eurosat_default_options), so that the two cannot drift; the
 * architecture, bands, normalisation and run-folder settings are the
 * program's choices. */
static train_args default_args(void) {
    train_args a = {
        .d = chain_cli_data_defaults(), .enc = chain_cli_encoder_defaults(),
        .train = mc_chain_train_defaults(),
        .bands = "B08,B11,B12", /* three infrared bands, as the seed paper */
        .norm = "torchgeo", .out = "runs/train", .log_every = 10, .precision = "fp32",
    };
    a.train.checkpoint_every = 50;
    a.select = mc_chain_selection_name(a.train.selection);
    return a;
}

/* ---------------------------------------------------------------------------
 * resume: every option comes back from RUN_DIR/config.json
 * ------------------------------------------------------------------------- */

/* Options a resumed run may change without changing the result. */
static bool may_change_on_resume(const char *name) {
    return strcmp(name, "--resume") == 0 || strcmp(name, "--epochs") == 0 ||
           strcmp(name, "--quiet") == 0 || strcmp(name, "--stop-after-steps") == 0 ||
           strcmp(name, "--log-every") == 0 || strcmp(name, "--max-memory") == 0 ||
           strcmp(name, "--recompute") == 0;
}

/* Options that are not the run's but the invocation's: not in config.json. */
static bool not_stored(const char *name) {
    return strcmp(name, "--stop-after-steps") == 0 || strcmp(name, "--resume") == 0 ||
           strcmp(name, "--max-memory") == 0 || strcmp(name, "--recompute") == 0 ||
           strcmp(name, "--overwrite") == 0;
}

/* Strings read back must outlive the run: kept until the command ends. */
typedef struct string_store {
    char **items; /* room for one per option */
    int n;
} string_store;

static int restore_options(mc_run *run, cli_opt *opts, string_store *store) {
    store->items = calloc((size_t)cli_opts_count(opts), sizeof *store->items);
    if (!store->items) return cli_fail(COMMAND, "out of memory");
    for (cli_opt *o = opts; o->name; o++) {
        if (may_change_on_resume(o->name) && o->given) continue;
        if (o->given)
            return cli_fail(COMMAND, "%s cannot change when resuming (the run's value is in its config.json)",
                            o->name);
        if (not_stored(o->name)) continue;
        char value[4096];
        if (mc_run_config_get(run, o->name + 2, value, sizeof value) != MC_OK) continue;
        if (o->kind == CLI_STRING && value[0] == '\0') {
            *(const char **)o->value = NULL;
            continue;
        }
        char *copy = strdup(value);
        if (!copy) return cli_fail(COMMAND, "out of memory");
        store->items[store->n++] = copy;
        int code = cli_opt_set(COMMAND, o, copy);
        if (code) return code;
    }
    return 0;
}

static void free_store(string_store *store) {
    for (int i = 0; i < store->n; i++) free(store->items[i]);
    free(store->items);
}


/* ---------------------------------------------------------------------------
 * building the pieces
 * ------------------------------------------------------------------------- */

typedef struct train_setup {
    mc_eurosat *ds;
    mc_chain_data train, val;
    mc_clip *clip;
    mc_tensor *classes;
    char **prompt_names;
    int n_classes;
    mc_spectral_encoder *enc;
    mc_norm norm;
    mc_bands bands;
    /* --teacher: the trained encoder in CLIP's place, the tiles through its
     * bands with the (student view, teacher view) pairs the trainer learns
     * from, and the teacher's own hop (against CLIP) on the validation tiles. */
    mc_spectral_encoder *teacher;
    char teacher_path[4096];
    chain_teacher_view teacher_train, teacher_val;
    mc_chain_metrics teacher_hop;
} train_setup;

static void free_setup(train_setup *s) {
    mc_chain_metrics_free(&s->teacher_hop);
    chain_cli_teacher_view_free(&s->teacher_train);
    chain_cli_teacher_view_free(&s->teacher_val);
    mc_spectral_encoder_free(s->teacher);
    mc_spectral_encoder_free(s->enc);
    mc_chain_strings_free(s->prompt_names, s->n_classes);
    mc_tensor_free(s->classes);
    mc_clip_free(s->clip);
    mc_chain_data_free(&s->train);
    mc_chain_data_free(&s->val);
    mc_eurosat_free(s->ds);
}

static int open_data(const train_args *a, train_setup *s) {
    if (!a->d.data) return cli_fail(COMMAND, "--data EUROSAT_MS_DIR is required (see mmchain train --help)");
    mc_status st = mc_bands_parse(a->bands, &s->bands);
    if (st != MC_OK) return cli_fail(COMMAND, "--bands: %s", mc_last_error());
    mc_norm_kind kind;
    if (mc_norm_parse(a->norm, &kind) != MC_OK) return cli_fail(COMMAND, "--norm: %s", mc_last_error());
    int code = chain_cli_open_eurosat(COMMAND, &a->d, &s->ds);
    if (code) return code;
    if (kind == MC_NORM_DATASET) st = mc_eurosat_compute_norm(s->ds, MC_SPLIT_TRAIN, &s->norm);
    else st = mc_norm_init(&s->norm, kind);
    if (st == MC_OK) st = mc_chain_data_from_eurosat(&s->train, s->ds, MC_SPLIT_TRAIN, &s->bands, &s->norm);
    if (st == MC_OK) st = mc_chain_data_from_eurosat(&s->val, s->ds, MC_SPLIT_VAL, &s->bands, &s->norm);
    if (st != MC_OK) return cli_fail(COMMAND, "--data %s: %s", a->d.data, mc_last_error());
    if (s->train.height != s->train.width)
        return cli_fail(COMMAND, "--data %s: tiles are %dx%d, expected square tiles", a->d.data,
                        s->train.height, s->train.width);
    return 0;
}

static int build_encoder(const train_args *a, train_setup *s) {
    mc_resnet_config arch;
    int code = chain_cli_encoder_arch(COMMAND, &a->enc, &arch);
    if (code) return code;
    mc_status st = mc_spectral_encoder_new(&s->enc, &arch, &s->bands, &s->norm, s->train.height,
                                           s->clip->config.embed_dim, logf(1.0f / a->train.temperature),
                                           a->train.learnable_temperature, a->d.eurosat.seed);
    if (st != MC_OK) return cli_fail_status(COMMAND, st);
    mc_resnet_set_recompute(s->enc->resnet, a->recompute);
    char name[96];
    if (!a->enc.resnet && strcmp(mc_resnet_arch_name(&s->enc->resnet->config, name, sizeof name), "resnet50") == 0)
        fprintf(stderr, "mmchain %s: warning: training a ResNet-50 from random weights; the seed paper "
                        "starts from ImageNet weights (give --resnet FILE, see weights/README.md)\n",
                COMMAND);
    if (!a->enc.resnet) return 0;
    char report[1024];
    st = mc_spectral_encoder_load_imagenet(s->enc, a->enc.resnet, report, sizeof report);
    if (st != MC_OK) return cli_fail(COMMAND, "--resnet: %s", mc_last_error());
    return 0;
}

/* --teacher: the teacher, its views of the training and validation tiles
 * and the pairs; none of it without the option. */
static int build_teacher(const train_args *a, train_setup *s) {
    if (!a->teacher) return 0;
    int code = chain_cli_load_teacher(COMMAND, a->teacher, s->clip->config.embed_dim, &s->teacher, s->teacher_path,
                                      sizeof s->teacher_path);
    if (code) return code;
    mc_status st = chain_cli_teacher_view(s->teacher, s->ds, MC_SPLIT_TRAIN, &s->train, &s->teacher_train);
    if (st == MC_OK) st = chain_cli_teacher_view(s->teacher, s->ds, MC_SPLIT_VAL, &s->val, &s->teacher_val);
    if (st != MC_OK) return cli_fail(COMMAND, "--teacher %s: %s", a->teacher, mc_last_error());
    return 0;
}

/* What the trainer learns from: the tiles with their RGB views, or with
 * the teacher's views. */
static const mc_chain_data *train_pairs(const train_setup *s) { return s->teacher ? &s->teacher_train.pairs : &s->train; }
static const mc_chain_data *val_pairs(const train_setup *s) { return s->teacher ? &s->teacher_val.pairs : &s->val; }

/* --max-memory: the run's peak estimated from its sizes alone (the tiles,
 * the architecture, the CLIP file's tensor table) before anything large is
 * built. One process's share: under mpirun each rank holds the same. */
static int check_memory(const train_args *a, const train_setup *s) {
    if (a->max_memory == 0 || !a->d.clip) return 0; /* no --clip: refused next */
    /* The estimate models CLIP's image tower making the targets; a teacher
     * makes them instead, with its own weights, forward and band count. */
    if (a->teacher)
        return cli_fail(COMMAND, "--max-memory (or MMCHAIN_MAX_MEMORY) cannot estimate a run "
                        "with --teacher: the teacher's weights and forward are not modelled; run "
                        "without a limit (--max-memory 0 overrides the variable)");
    const mc_chain_train_config *t = &a->train;
    mc_chain_memory_plan plan = {
        .image_size = s->train.height, .rgb_size = s->train.rgb_height,
        .batch_size = t->batch_size, .val_batch_size = t->val_batch_size, .clip_batch = t->clip_batch,
        .train_tiles = s->train.count,
        .val_tiles = t->val_max_tiles > 0 && t->val_max_tiles < s->val.count ? t->val_max_tiles : s->val.count,
        .augment = t->augment, .target_crops = t->target_crops, .recompute = a->recompute,
    };
    int code = chain_cli_encoder_arch(COMMAND, &a->enc, &plan.arch);
    if (code) return code;
    mc_safetensors *f;
    mc_status st = mc_safetensors_open(a->d.clip, &f);
    if (st == MC_OK) {
        st = mc_chain_memory_plan_clip(f, &plan);
        mc_safetensors_close(f);
    }
    if (st != MC_OK) return cli_fail(COMMAND, "--clip %s: %s", a->d.clip, mc_last_error());
    plan.arch.in_channels = s->bands.count;
    plan.arch.fc_out = plan.embed_dim;
    return chain_cli_check_memory(COMMAND, a->max_memory, &plan);
}

static int build_setup(const train_args *a, train_setup *s) {
    mc_chain_selection selection;
    if (mc_chain_selection_parse(a->select, &selection) != MC_OK)
        return cli_fail(COMMAND, "--select %s", mc_last_error());
    int code = open_data(a, s);
    if (!code) code = check_memory(a, s);
    if (!code) code = chain_cli_load_clip(COMMAND, a->d.clip, &s->clip);
    if (!code && !s->clip->config.has_vision)
        code = cli_fail(COMMAND, "--clip %s has no image tower", a->d.clip);
    if (!code)
        code = chain_cli_classifier(COMMAND, s->clip, &a->d, s->val.class_names, s->val.num_classes,
                                    &s->classes, &s->prompt_names, &s->n_classes);
    if (!code) code = build_teacher(a, s);
    if (!code) code = build_encoder(a, s);
    return code;
}

/* ---------------------------------------------------------------------------
 * hooks: progress, metrics, log, report
 * ------------------------------------------------------------------------- */

typedef struct train_ui {
    const train_args *args;
    train_setup *setup;
    mc_run *run;
    mc_progress progress;
    int64_t items_done;
    mc_chain_trainer *trainer;
    double started;
    /* For the report: the selected epoch's label accuracy, and the epoch a
     * label-based selection would have picked (validations of this process). */
    double selected_acc, label_best_acc;
    int label_best_epoch;
} train_ui;

static void on_message(void *ctx, const char *line) {
    train_ui *ui = ctx;
    mc_run_log(ui->run, "%s", line);
}

static void on_step(void *ctx, const mc_chain_step_info *info) {
    train_ui *ui = ctx;
    ui->items_done += info->batch_items;
    mc_progress_update(&ui->progress, info->epoch + 1, info->global_step, info->loss, ui->items_done);
    if (info->global_step % ui->args->log_every != 0) return;
    const char *columns[] = {"epoch", "step", "loss", "step_seconds"};
    double values[] = {info->epoch + (double)info->step_in_epoch / (double)info->steps_per_epoch,
                       (double)info->global_step, info->loss, info->step_seconds};
    mc_run_metrics_row(ui->run, "step", columns, values, 4);
}

/* A contact sheet of the first validation tiles: RGB view, predicted / true. */
static mc_status write_contact_sheet(train_ui *ui, const mc_chain_metrics *m, const char *path) {
    const mc_chain_data *val = mc_chain_trainer_val_data(ui->trainer); /* the tiles m is about */
    if (ui->setup->teacher) { /* the second view is the teacher's bands: RGB from its source */
        if (val->count != ui->setup->teacher_val.view.count) /* a capped subset: its items differ */
            return mc_error(MC_ERR_ARG, "contact sheet: validation capped by --val-max");
        val = &ui->setup->teacher_val.view;
    }
    int n = m->count < 24 ? m->count : 24;
    int items[24];
    char captions[24][64];
    const char *caption_ptrs[24];
    for (int i = 0; i < n; i++) {
        items[i] = i;
        snprintf(captions[i], sizeof captions[i], "%s%.9s/%.9s", m->spectral_pred[i] == m->labels[i] ? "" : "X ",
                 val->class_names[m->spectral_pred[i]], val->class_names[m->labels[i]]);
        caption_ptrs[i] = captions[i];
    }
    mc_tensor *rgb;
    MC_TRY(mc_tensor_new(&rgb, MC_SHAPE(n, 3, val->rgb_height, val->rgb_width), "contact"));
    mc_status s = val->load(val->ctx, items, n, NULL, rgb, NULL);
    if (s == MC_OK) s = mc_contact_sheet_write(path, rgb, caption_ptrs, 6, 2);
    mc_tensor_free(rgb);
    return s;
}

static mc_status write_report(train_ui *ui, const mc_chain_metrics *m) {
    const train_setup *s = ui->setup;
    const mc_chain_state *state = mc_chain_trainer_state(ui->trainer);
    char best[160], best_acc[64], label_best[64], epochs[64], bands[96], arch[96], sheet[4096];
    mc_chain_selection selection = MC_SELECT_LOSS;
    mc_chain_selection_parse(ui->args->select, &selection);
    snprintf(best, sizeof best, "epoch %d, by %s: %.4g", state->best_epoch,
             mc_chain_selection_describe(selection), state->best_metric);
    if (isnan(ui->selected_acc)) snprintf(best_acc, sizeof best_acc, "- (validated before the resume)");
    else snprintf(best_acc, sizeof best_acc, "%.2f %%", 100.0 * ui->selected_acc);
    snprintf(label_best, sizeof label_best, "%.2f %% (epoch %d)", 100.0 * ui->label_best_acc,
             ui->label_best_epoch);
    snprintf(epochs, sizeof epochs, "%d of %d", state->epoch, ui->args->train.epochs);
    mc_bands_str(&s->bands, bands, sizeof bands);
    mc_resnet_arch_name(&s->enc->resnet->config, arch, sizeof arch);
    mc_metadata_entry summary[] = {
        {"data", ui->args->d.data}, {"CLIP", ui->args->d.clip}, {"encoder", arch}, {"bands", bands},
        {"epochs", epochs}, {"best checkpoint", best},
        {"spectral->text accuracy of best (validation)", best_acc},
        {"highest validation spectral->text accuracy (a label-based selection, for comparison)", label_best},
        {"test split", "mmchain eval --run RUN_DIR (the test split, when the data has one)"},
        {"teacher (a second hop: the targets are its embeddings, not CLIP's)", s->teacher_path},
    };
    bool hop2 = s->teacher != NULL; /* the second view: the teacher's, else CLIP's of RGB */
    mc_report_confusion confusions[2] = {
        {"spectral -> text (validation)", m->num_classes, s->val.class_names, m->spectral_confusion},
        {hop2 ? "teacher -> text (validation)" : "RGB -> text, CLIP itself (validation)", m->num_classes,
         s->val.class_names, m->rgb_confusion},
    };
    mc_report_bars bars[2] = {
        {"per-class accuracy, spectral -> text", m->num_classes, s->val.class_names, m->spectral_class_acc},
        {hop2 ? "per-class accuracy, teacher -> text" : "per-class accuracy, RGB -> text", m->num_classes,
         s->val.class_names, m->rgb_class_acc},
    };
    char student_box[128], teacher_box[128], teacher_bands[96] = "";
    if (hop2) mc_bands_str(&s->teacher->bands, teacher_bands, sizeof teacher_bands);
    snprintf(student_box, sizeof student_box, "student: %s", bands);
    snprintf(teacher_box, sizeof teacher_box, "teacher: %s", teacher_bands);
    const char *nodes[4] = {student_box, teacher_box, "CLIP image (RGB)", "CLIP text"};
    const char *links[3] = {"matching", "matching", "zero-shot"};
    const double link_acc[3] = {m->match_acc, s->teacher_hop.match_acc, s->teacher_hop.rgb_text_acc};
    const double text_acc[4] = {m->spectral_text_acc, m->rgb_text_acc, s->teacher_hop.rgb_text_acc, NAN};
    mc_report_chain chain = {"the chain on the validation tiles: each arrow's accuracy (matching inside "
                             "batches; zero-shot for CLIP's own hop) and, under each box, its zero-shot "
                             "accuracy against the class prompts", 4, nodes, links, link_acc, text_acc};
    MC_TRY(mc_run_path(ui->run, "contact_sheet.png", sheet, sizeof sheet));
    mc_report_image image = {sheet, "validation tiles (RGB view): predicted / true class from the "
                                    "spectral encoder; X marks a mistake"};
    bool have_sheet = write_contact_sheet(ui, m, sheet) == MC_OK;
    mc_report extra = {
        .title = "mmchain train", .n_summary = hop2 ? 10 : 9, .summary = summary, .n_confusions = 2,
        .confusions = confusions, .n_bars = 2, .bars = bars, .n_images = have_sheet ? 1 : 0,
        .images = &image, .n_chains = hop2 ? 1 : 0, .chains = &chain,
    };
    return mc_run_write_report(ui->run, &extra);
}

static mc_status on_epoch(void *ctx, const mc_chain_epoch_info *info) {
    train_ui *ui = ctx;
    const mc_chain_metrics *m = info->val;
    if (info->is_best) ui->selected_acc = m->spectral_text_acc;
    if (ui->label_best_epoch == 0 || m->spectral_text_acc > ui->label_best_acc) {
        ui->label_best_acc = m->spectral_text_acc;
        ui->label_best_epoch = info->epoch;
    }
    const char *columns[] = {"epoch", "step", "train_loss", "val_loss", "val_match_acc",
                             "spectral_text_acc", "rgb_text_acc", "epoch_seconds"};
    double values[] = {info->epoch, (double)mc_chain_trainer_state(ui->trainer)->global_step,
                       info->train_loss, m->loss, m->match_acc, m->spectral_text_acc,
                       m->rgb_text_acc, info->seconds};
    MC_TRY(mc_run_metrics_row(ui->run, "epoch", columns, values, 8));
    mc_progress_end(&ui->progress, NULL);
    mc_run_log(ui->run,
               "epoch %d: train loss %.4f, val loss %.4f, matching %.1f %%, spectral->text %.1f %%, "
               "%s->text %.1f %%%s (%.0f s)",
               info->epoch, info->train_loss, m->loss, 100 * m->match_acc, 100 * m->spectral_text_acc,
               ui->setup->teacher ? "teacher" : "RGB", 100 * m->rgb_text_acc, info->is_best ? ", best so far" : "",
               info->seconds);
    return write_report(ui, m);
}

/* ---------------------------------------------------------------------------
 * the command
 * ------------------------------------------------------------------------- */

/* The trainer's options as the table filled them, and what follows from
 * the others: the seed (--seed), the selection (--select), the folders and
 * whether the run is distributed. */
static mc_chain_train_config trainer_config(const train_args *a, const char *run_dir, char *ckpt_dir,
                                            size_t ckpt_len, char *cache, size_t cache_len) {
    mc_chain_train_config c = a->train;
    c.seed = a->d.eurosat.seed;
    mc_chain_selection_parse(a->select, &c.selection); /* checked in build_setup */
    c.distributed = mc_dist_world_size() > 1;
    snprintf(ckpt_dir, ckpt_len, "%s/checkpoints", run_dir);
    c.checkpoint_dir = ckpt_dir;
    if (a->cache_dir) snprintf(cache, cache_len, "%s", a->cache_dir);
    else snprintf(cache, cache_len, "%s/cache", run_dir);
    c.cache_dir = cache;
    return c;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Resume from checkpoints/last.safetensors when it exists. */
static mc_status maybe_resume(train_ui *ui) {
    char last[4096];
    MC_TRY(mc_run_path(ui->run, "checkpoints/last.safetensors", last, sizeof last));
    if (!mc_run_resumed(ui->run)) return MC_OK;
    if (!file_exists(last)) {
        /* The rows the stopped run logged are written again from step 1. */
        MC_TRY(mc_run_metrics_drop_after(ui->run, "step", 0.0));
        mc_run_log(ui->run, "no checkpoint yet in %s: starting from the beginning", mc_run_dir(ui->run));
        return MC_OK;
    }
    MC_TRY(mc_chain_trainer_resume(ui->trainer, last));
    const mc_chain_state *st = mc_chain_trainer_state(ui->trainer);
    MC_TRY(mc_run_metrics_drop_after(ui->run, "step", (double)st->global_step));
    mc_run_log(ui->run, "resumed from %s: epoch %d, step %" PRId64 " of the epoch (global step %" PRId64 ")",
               last, st->epoch + 1, st->step_in_epoch, st->global_step);
    return MC_OK;
}

static mc_status train(train_ui *ui) {
    const mc_chain_state *st = mc_chain_trainer_state(ui->trainer);
    int64_t per_epoch = mc_chain_trainer_steps_per_epoch(ui->trainer);
    mc_progress_begin(&ui->progress, "train", per_epoch * ui->args->train.epochs, ui->args->quiet);
    mc_status s = mc_chain_trainer_run(ui->trainer);
    mc_progress_end(&ui->progress, NULL);
    if (s != MC_OK) {
        mc_run_log(ui->run, "error: %s", mc_last_error());
        return s;
    }
    if (st->epoch < ui->args->train.epochs) {
        mc_run_log(ui->run, "stopped after step %" PRId64 " (--stop-after-steps)", st->global_step);
        return MC_OK;
    }
    char report[4096];
    mc_run_path(ui->run, "report.html", report, sizeof report);
    mc_chain_selection selection = MC_SELECT_LOSS;
    mc_chain_selection_parse(ui->args->select, &selection);
    mc_run_log(ui->run, "done: best checkpoint at epoch %d, chosen by %s %.4g; report %s", st->best_epoch,
               mc_chain_selection_describe(selection), st->best_metric, report);
    return MC_OK;
}

/* The first hop of a --teacher run, for the report: the teacher against
 * CLIP's image embeddings on the validation tiles (RGB->text, matching).
 * Every rank of a distributed run calls it: the embeddings and the metrics
 * are computed in shards (mc_chain_targets and
 * mc_chain_evaluate_distributed are collective); rank 0 reports them. */
static mc_status teacher_hop(const train_args *a, train_setup *s, const char *cache_dir) {
    if (!s->teacher) return MC_OK;
    mc_tensor *targets;
    MC_TRY(mc_chain_targets(s->clip, &s->teacher_val.view, cache_dir, a->train.clip_batch, &targets, NULL));
    mc_status st = mc_chain_evaluate_distributed(s->teacher, &s->teacher_val.view, targets, s->classes,
                                                 a->train.val_batch_size, a->train.symmetric, &s->teacher_hop);
    mc_tensor_free(targets);
    return st;
}

static int run_training(const train_args *a, const cli_opt *opts, mc_run *run, train_setup *setup) {
    train_ui ui = {.args = a, .setup = setup, .run = run, .selected_acc = NAN};
    /* A fresh run is one from its start (config.json makes the folder a
     * run: killed while its targets are made, it can be resumed). A
     * resumed one writes it once its checkpoint is in (below). */
    int code = a->resume ? 0 : chain_cli_write_config(COMMAND, run, opts, not_stored);
    if (code) return code;
    if (mc_default_precision() == MC_PRECISION_BF16)
        mc_run_log(run, "precision bf16: matrix products on bf16 operands with fp32 sums (%s)",
                   mc_gemm_bf16_kernel_name());
    char ckpt_dir[4096], cache[4096];
    mc_chain_train_config config = trainer_config(a, mc_run_dir(run), ckpt_dir, sizeof ckpt_dir, cache, sizeof cache);
    config.teacher = setup->teacher;
    mc_chain_hooks hooks = {.ctx = &ui, .on_step = on_step, .on_epoch = on_epoch, .on_message = on_message};
    mc_status s = teacher_hop(a, setup, config.cache_dir);
    if (s == MC_OK)
        s = mc_chain_trainer_new(&ui.trainer, &config, setup->enc, setup->clip, train_pairs(setup),
                                 val_pairs(setup), setup->classes, &hooks);
    if (s == MC_OK) s = maybe_resume(&ui);
    /* A resumed run's, once the checkpoint is in, so that a refused resume
     * (another architecture, an --epochs below the checkpoint's) changes
     * nothing: the options it may change (--epochs, --log-every) are the
     * run's from now on, or the next resume would go back to the old. */
    if (s == MC_OK && a->resume) code = chain_cli_write_config(COMMAND, run, opts, not_stored);
    if (s == MC_OK && !code) s = train(&ui);
    mc_chain_trainer_free(ui.trainer);
    if (code) return code;
    return s == MC_OK ? 0 : cli_fail_status(COMMAND, s);
}

/* A rank other than 0: the same trainer, in step with rank 0, writing
 * nothing (rank 0 writes config, metrics, log, checkpoints and report). A
 * resumed run reads rank 0's checkpoint, as rank 0 does. */
static int follow_training(const train_args *a, train_setup *setup) {
    char ckpt_dir[4096], cache[4096], last[4200];
    const char *run_dir = a->resume ? a->resume : a->out;
    mc_chain_train_config config = trainer_config(a, run_dir, ckpt_dir, sizeof ckpt_dir, cache, sizeof cache);
    config.teacher = setup->teacher;
    mc_chain_trainer *trainer;
    mc_status s = teacher_hop(a, setup, config.cache_dir); /* this rank's part in it; rank 0 reports it */
    if (s == MC_OK)
        s = mc_chain_trainer_new(&trainer, &config, setup->enc, setup->clip, train_pairs(setup), val_pairs(setup),
                                 setup->classes, NULL);
    if (s != MC_OK) return cli_fail_status(COMMAND, s);
    snprintf(last, sizeof last, "%s/last.safetensors", ckpt_dir);
    if (a->resume && file_exists(last)) s = mc_chain_trainer_resume(trainer, last);
    if (s == MC_OK) s = mc_chain_trainer_run(trainer);
    mc_chain_trainer_free(trainer);
    return s == MC_OK ? 0 : cli_fail_status(COMMAND, s);
}

/* Rank 0 opens (and locks) the run folder; the other ranks of a resumed
 * distributed run only read its options back. */
static int open_run(const train_args *a, const char *dir, mc_run **run) {
    const mc_run_mode mode = a->resume ? MC_RUN_RESUME : chain_cli_run_mode(a->overwrite);
    mc_status s = mc_dist_rank() == 0 ? mc_run_open(run, dir, mode) : mc_run_open_readonly(run, dir);
    if (s != MC_OK) return cli_fail(COMMAND, "%s %s: %s", a->resume ? "--resume" : "--out", dir, mc_last_error());
    mc_run_set_quiet(*run, a->quiet);
    return 0;
}

int cmd_train(int argc, char **argv) {
    train_args a = default_args();
    cli_opt opts[] = {
        CHAIN_CLI_DATA_OPTIONS(&a.d),
        CLI_STRING_OPT("--resnet", &a.enc.resnet, "FILE: ImageNet ResNet weights (default: random init)"),
        CLI_STRING_OPT("--teacher", &a.teacher, "RUN_DIR|FILE: learn a trained encoder's embeddings instead of CLIP's (a further hop)"),
        CLI_INT_OPT("--depth", &a.enc.depth, 18, 152, "N: ResNet depth 18/34/50/101/152"),
        CLI_INT_OPT("--width", &a.enc.width, 1, 4096, "W: ResNet base width (64 = torchvision)"),
        CLI_STRING_OPT("--layers", &a.enc.layers, "A,B,C,D: blocks per stage (default: the depth's)"),
        CLI_STRING_OPT("--bands", &a.bands, "LIST: input bands, e.g. B08,B11,B12, rgb or all"),
        CLI_STRING_OPT("--norm", &a.norm, "KIND: torchgeo, reflectance, dataset or none"),
        CLI_INT_OPT("--epochs", &a.train.epochs, 1, 100000, "E: epochs"),
        CLI_INT_OPT("--batch", &a.train.batch_size, 2, 100000, "B: training batch"),
        CLI_INT_OPT("--val-batch", &a.train.val_batch_size, 1, 100000, "B: validation batch (matching accuracy)"),
        CLI_FLOAT_OPT("--lr", &a.train.lr, 1e-12, 10, "LR: Adam learning rate"),
        CLI_FLAG_OPT("--symmetric", &a.train.symmetric, "symmetric InfoNCE (default: spectral -> RGB)"),
        CLI_FLAG_OPT("--learnable-temperature", &a.train.learnable_temperature, "learn the temperature"),
        CLI_FLOAT_OPT("--temperature", &a.train.temperature, 1e-4, 100, "T: InfoNCE temperature (initial)"),
        CLI_FLAG_OFF_OPT("--no-augment", &a.train.augment, "no random crops (cached targets only)"),
        CLI_FLOAT_OPT("--crop-min", &a.train.augment_config.crop_min, 0.05, 1, "F: smallest crop side (fraction)"),
        CLI_INT_OPT("--target-crops", &a.train.target_crops, 0, 1000, "K: precomputed CLIP crops per tile (0: on the fly)"),
        CLI_FLAG_OPT("--shuffle-pairs", &a.train.shuffle_pairs, "negative control: wrong pairs"),
        CLI_STRING_OPT("--select", &a.select, "HOW: best checkpoint by validation loss, matching (label-free) or labels (spectral->text accuracy)"),
        CLI_INT_OPT("--val-every", &a.train.val_every, 1, 100000, "N: validate every N epochs (and after the last)"),
        CLI_INT_OPT("--val-max", &a.train.val_max_tiles, 0, 100000000, "N: validate on N evenly spaced validation tiles (0: all)"),
        CLI_STRING_OPT("--out", &a.out, "DIR: run folder"),
        CLI_STRING_OPT("--resume", &a.resume, "DIR: continue the run in DIR from its last checkpoint"),
        CHAIN_CLI_OVERWRITE_OPT(&a.overwrite),
        CLI_STRING_OPT("--cache-dir", &a.cache_dir, "DIR: CLIP target cache (default RUN_DIR/cache)"),
        CLI_I64_OPT("--checkpoint-every", &a.train.checkpoint_every, 0, 100000000, "N: write last every N steps"),
        CLI_INT_OPT("--log-every", &a.log_every, 1, 100000000, "N: a metrics.csv step row every N steps"),
        CLI_INT_OPT("--clip-batch", &a.train.clip_batch, 1, 100000, "B: images per CLIP forward"),
        CLI_FLAG_OPT("--quiet", &a.quiet, "no progress line or log on stdout"),
        CLI_FLAG_OPT("--sync-bn", &a.train.sync_batchnorm, "under mpirun: batch norm over the global batch"),
        CLI_PRECISION_OPT(&a.precision),
        CLI_I64_OPT("--stop-after-steps", &a.train.stop_after_steps, 0, 1e9, "N: stop after N steps in total, as if killed (for tests)"),
        CLI_BYTES_OPT("--max-memory", &a.max_memory, CHAIN_CLI_MAX_MEMORY_HELP),
        CLI_FLAG_OPT("--recompute", &a.recompute, "keep each ResNet block's input only, run its forward again in backward: less memory, ~1/3 more time, same results"),
        CLI_END,
    };
    int code = cli_parse_options(COMMAND, USAGE, opts, argc, argv);
    if (code >= 0) return code;
    /* Without augmentation no crop is drawn, on the fly or precomputed:
     * the crop options would be recorded as if they had applied. */
    if (!a.train.augment && (a.train.target_crops > 0 || cli_opt_find(opts, "--crop-min")->given))
        return cli_fail(COMMAND, "%s cannot go with --no-augment (no crop is drawn without it)",
                        a.train.target_crops > 0 ? "--target-crops" : "--crop-min");
    code = chain_cli_memory_limit(COMMAND, cli_opt_find(opts, "--max-memory"), &a.max_memory);
    if (code) return code;
    code = chain_cli_dist_start(COMMAND);
    if (code) return code;
    string_store store = {0};
    mc_run *run = NULL;
    train_setup setup = {0};
    bool leader = mc_dist_rank() == 0;
    if (a.resume && a.overwrite)
        code = cli_fail(COMMAND, "--overwrite starts a run afresh: it cannot go with --resume");
    /* A fresh run checks every input before it creates its folder (first
     * that --out holds no run, before the loading); a resumed one needs the
     * folder first, to read its options back. */
    if (!code && !a.resume && leader) code = chain_cli_check_out(COMMAND, a.out, a.overwrite, true);
    if (!code && a.resume) code = open_run(&a, a.resume, &run);
    if (!code && a.resume) code = restore_options(run, opts, &store);
    if (!code && a.resume) mc_run_set_quiet(run, a.quiet); /* the run's own --quiet, read back */
    if (!code) code = cli_apply_precision(COMMAND, a.precision); /* a resumed run's own */
    if (!code) code = build_setup(&a, &setup);
    if (!code && !leader) code = follow_training(&a, &setup);
    if (!code && leader && !a.resume) code = open_run(&a, a.out, &run);
    if (!code && leader) code = run_training(&a, opts, run, &setup);
    free_setup(&setup);
    mc_run_close(run);
    free_store(&store);
    return chain_cli_dist_end(code);
}

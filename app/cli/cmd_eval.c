/* mmchain eval — every metric of a trained spectral encoder on a split.
 *
 *     mmchain eval --run RUN_DIR [--split test] [--which best|last]
 *     mmchain eval --checkpoint C --data DIR --clip CLIP --vocab V [--split test] ...
 *
 * The default split is the test split when the data has one: the
 * validation split chose the `best` checkpoint, so its numbers are not an
 * unbiased estimate. The output names the split and the checkpoint (its
 * epoch and how `best` was chosen).
 *
 * With --run, the data, CLIP, vocabulary, split settings, prompts and
 * precision come from the run's config.json (flags given here override them); the bands,
 * normalisation and architecture always come from the checkpoint.
 *
 * A run trained with --teacher (a further hop) is scored hop by hop: the
 * student against the teacher's embeddings (matching, and the teacher's own
 * zero-shot accuracy), the teacher against CLIP's image embeddings, CLIP's
 * RGB -> text, and the student -> text across the whole chain. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain_cli.h"

static const char *const COMMAND = "eval";
static const char *const USAGE =
    "usage: mmchain eval --run RUN_DIR [options]\n"
    "       mmchain eval --checkpoint C.safetensors --data DIR --clip CLIP --vocab V [options]\n\n"
    "Zero-shot spectral->text and RGB->text top-1 accuracy, spectral->RGB matching accuracy inside\n"
    "batches, the InfoNCE loss, per-class accuracy and the confusion matrices on a split. For an\n"
    "encoder trained with --teacher: the accuracy of every hop of the chain.";

typedef struct eval_args {
    chain_data_args d; /* --data, --clip, --vocab, the split and prompt options, as in train */
    const char *run, *checkpoint, *which, *split, *embeddings, *teacher, *precision;
    /* Scored as the trainer validates: --batch is its validation batch,
     * --symmetric its loss direction; its CLIP batch embeds the targets. */
    mc_chain_train_config train;
    bool json;
} eval_args;

/* Strings read from the run's config.json. */
typedef struct run_strings {
    char data[4096], rgb[4096], clip[4096], vocab[4096], splits[4096], classes[4096], templates[4096];
    char checkpoint[4096], teacher[4096], precision[16];
} run_strings;

/* A config.json string into *field unless the flag was given ("" = unset);
 * nonzero (the message printed) when the run's value is refused. */
static int from_config(mc_run *run, cli_opt *opts, const char *name, char *buf, size_t len) {
    cli_opt *o = cli_opt_find(opts, name);
    if (o->given || mc_run_config_get(run, name + 2, buf, len) != MC_OK || !buf[0]) return 0;
    return cli_opt_set(COMMAND, o, buf);
}

static int number_from_config(mc_run *run, cli_opt *opts, const char *name) {
    char buf[64];
    cli_opt *o = cli_opt_find(opts, name);
    if (o->given || mc_run_config_get(run, name + 2, buf, sizeof buf) != MC_OK) return 0;
    return cli_opt_set(COMMAND, o, buf);
}

static int read_run(eval_args *a, cli_opt *opts, run_strings *rs) {
    mc_run *run;
    /* read-only: no lock, nothing written, so a run still training can be
     * evaluated, and a run folder one may not write to */
    if (mc_run_open_readonly(&run, a->run) != MC_OK) return cli_fail(COMMAND, "--run %s: %s", a->run, mc_last_error());
    /* A value of the run that does not parse stops here: evaluating with
     * the default instead (another seed: another split) would be wrong. */
    int failed = from_config(run, opts, "--data", rs->data, sizeof rs->data) ||
                 from_config(run, opts, "--rgb", rs->rgb, sizeof rs->rgb) ||
                 from_config(run, opts, "--clip", rs->clip, sizeof rs->clip) ||
                 from_config(run, opts, "--vocab", rs->vocab, sizeof rs->vocab) ||
                 from_config(run, opts, "--splits", rs->splits, sizeof rs->splits) ||
                 from_config(run, opts, "--classes", rs->classes, sizeof rs->classes) ||
                 from_config(run, opts, "--templates", rs->templates, sizeof rs->templates) ||
                 from_config(run, opts, "--teacher", rs->teacher, sizeof rs->teacher) ||
                 from_config(run, opts, "--precision", rs->precision, sizeof rs->precision) ||
                 number_from_config(run, opts, "--train-size") ||
                 number_from_config(run, opts, "--val-size") ||
                 number_from_config(run, opts, "--seed");
    if (failed) {
        mc_run_close(run);
        return 1;
    }
    cli_opt *batch = cli_opt_find(opts, "--batch");
    char value[64];
    if (!batch->given && mc_run_config_get(run, "val-batch", value, sizeof value) == MC_OK)
        cli_opt_set(COMMAND, batch, value); /* the run's validation batch */
    if (!cli_opt_find(opts, "--symmetric")->given) {
        char buf[16];
        if (mc_run_config_get(run, "symmetric", buf, sizeof buf) == MC_OK) a->train.symmetric = strcmp(buf, "true") == 0;
    }
    if (!a->checkpoint) {
        chain_cli_run_checkpoint(run, a->which, NULL, rs->checkpoint, sizeof rs->checkpoint);
        a->checkpoint = rs->checkpoint;
    }
    mc_run_close(run);
    return 0;
}

static int parse_split(const char *name, mc_split *out) {
    static const mc_split all[] = {MC_SPLIT_TRAIN, MC_SPLIT_VAL, MC_SPLIT_TEST, MC_SPLIT_ALL};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, mc_split_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    return cli_fail(COMMAND, "--split '%s' is not one of train, val, test, all", name);
}

typedef struct eval_setup {
    mc_spectral_encoder *enc;
    mc_eurosat *ds;
    mc_chain_data data;
    mc_clip *clip;
    mc_tensor *classes, *targets;
    char **names;
    int n_names;
    mc_chain_metrics metrics;
    mc_chain_state state;  /* the checkpoint's training state */
    char selection[64];    /* how the run chose `best` ("" = not recorded) */
    /* --teacher: the teacher, the split through its bands, the pairs, and
     * the teacher's own hop against CLIP (metrics then holds the student's
     * hop against the teacher). */
    mc_spectral_encoder *teacher;
    char teacher_path[4096];
    chain_teacher_view teacher_view;
    mc_chain_metrics teacher_hop;
} eval_setup;

static void free_setup(eval_setup *s) {
    mc_chain_metrics_free(&s->teacher_hop);
    chain_cli_teacher_view_free(&s->teacher_view);
    mc_spectral_encoder_free(s->teacher);
    mc_chain_metrics_free(&s->metrics);
    mc_tensor_free(s->targets);
    mc_tensor_free(s->classes);
    mc_chain_strings_free(s->names, s->n_names);
    mc_clip_free(s->clip);
    mc_chain_data_free(&s->data);
    mc_eurosat_free(s->ds);
    mc_spectral_encoder_free(s->enc);
}

static int open_inputs(eval_args *a, eval_setup *s) {
    if (!a->checkpoint) return cli_fail(COMMAND, "give --run RUN_DIR or --checkpoint FILE (see mmchain eval --help)");
    if (!a->d.data) return cli_fail(COMMAND, "--data EUROSAT_MS_DIR is required");
    mc_split split = MC_SPLIT_VAL;
    int code = a->split ? parse_split(a->split, &split) : 0;
    if (code) return code;
    mc_status st = mc_spectral_encoder_load(a->checkpoint, &s->enc, &s->state);
    if (st != MC_OK) return cli_fail(COMMAND, "--checkpoint %s: %s", a->checkpoint, mc_last_error());
    if (mc_checkpoint_metadata_get(a->checkpoint, "selection", s->selection, sizeof s->selection) != MC_OK)
        s->selection[0] = '\0';
    code = chain_cli_open_eurosat(COMMAND, &a->d, &s->ds);
    if (code) return code;
    if (!a->split) { /* the test split when there is one */
        const int *indices;
        int test_count = 0;
        mc_eurosat_split(s->ds, MC_SPLIT_TEST, &indices, &test_count);
        split = test_count > 0 ? MC_SPLIT_TEST : MC_SPLIT_VAL;
        a->split = mc_split_name(split);
    }
    st = mc_chain_data_from_eurosat(&s->data, s->ds, split, &s->enc->bands, &s->enc->norm);
    if (st != MC_OK) return cli_fail(COMMAND, "--data %s: %s", a->d.data, mc_last_error());
    code = chain_cli_load_clip(COMMAND, a->d.clip, &s->clip);
    if (!code && s->clip->config.embed_dim != s->enc->embed_dim)
        code = cli_fail(COMMAND, "--checkpoint %s outputs %d values, the CLIP %s has a %d-d joint space",
                        a->checkpoint, s->enc->embed_dim, a->d.clip, s->clip->config.embed_dim);
    if (!code)
        code = chain_cli_classifier(COMMAND, s->clip, &a->d, s->data.class_names, s->data.num_classes,
                                    &s->classes, &s->names, &s->n_names);
    if (!code && a->teacher)
        code = chain_cli_load_teacher(COMMAND, a->teacher, s->clip->config.embed_dim, &s->teacher,
                                      s->teacher_path, sizeof s->teacher_path);
    if (!code && s->teacher) {
        st = chain_cli_teacher_view(s->teacher, s->ds, split, &s->data, &s->teacher_view);
        if (st != MC_OK) code = cli_fail(COMMAND, "--teacher %s: %s", a->teacher, mc_last_error());
    }
    return code;
}

/* Every metric: against CLIP's image embeddings of the RGB views, or (a
 * further hop) the student against the teacher and the teacher against CLIP. */
static mc_status evaluate(const eval_args *a, eval_setup *s) {
    const int batch = a->train.val_batch_size, clip_batch = a->train.clip_batch;
    const bool symmetric = a->train.symmetric;
    if (!s->teacher) {
        MC_TRY(mc_chain_targets(s->clip, &s->data, NULL, clip_batch, &s->targets, NULL));
        return mc_chain_evaluate(s->enc, &s->data, s->targets, s->classes, batch, symmetric, &s->metrics);
    }
    MC_TRY(mc_chain_targets(s->clip, &s->teacher_view.view, NULL, clip_batch, &s->targets, NULL));
    MC_TRY(mc_chain_evaluate(s->teacher, &s->teacher_view.view, s->targets, s->classes, batch, symmetric,
                             &s->teacher_hop));
    mc_tensor_free(s->targets);
    s->targets = NULL;
    MC_TRY(mc_chain_teacher_targets(s->teacher, &s->teacher_view.pairs, NULL, clip_batch, &s->targets, NULL));
    return mc_chain_evaluate(s->enc, &s->teacher_view.pairs, s->targets, s->classes, batch, symmetric,
                             &s->metrics);
}

/* The share of the previous hop's accuracy a hop keeps. */
static double kept(double after, double before) { return before > 0 ? after / before : NAN; }

static void print_hops(const eval_args *a, const eval_setup *s) {
    const mc_chain_metrics *m = &s->metrics, *h = &s->teacher_hop;
    char student[96], teacher[96];
    mc_bands_str(&s->enc->bands, student, sizeof student);
    mc_bands_str(&s->teacher->bands, teacher, sizeof teacher);
    printf("the chain, student (%s) -> teacher (%s) -> CLIP image -> text; teacher %s\n", student, teacher,
           s->teacher_path);
    printf("  hop 2: student -> teacher matching   %6.2f %% (inside batches of %d)\n", 100 * m->match_acc, a->train.val_batch_size);
    printf("  hop 1: teacher -> CLIP image matching %6.2f %%\n", 100 * h->match_acc);
    printf("  zero-shot top-1: student -> text     %6.2f %%\n", 100 * m->spectral_text_acc);
    printf("                   teacher -> text     %6.2f %%\n", 100 * h->spectral_text_acc);
    printf("                   RGB -> text (CLIP)  %6.2f %%\n", 100 * h->rgb_text_acc);
    printf("  kept by hop 1 (teacher / RGB)        %6.2f %%\n", 100 * kept(h->spectral_text_acc, h->rgb_text_acc));
    printf("  kept by hop 2 (student / teacher)    %6.2f %%\n\n", 100 * kept(m->spectral_text_acc, h->spectral_text_acc));
}

/* "after epoch 5; the run's best is epoch 4 by validation InfoNCE loss (label-free)" */
static void describe_checkpoint(const eval_setup *s, char *buf, size_t len) {
    mc_chain_selection selection;
    if (mc_chain_selection_parse(s->selection, &selection) == MC_OK)
        snprintf(buf, len, "after epoch %d; the run's best is epoch %d by %s", s->state.epoch,
                 s->state.best_epoch, mc_chain_selection_describe(selection));
    else
        snprintf(buf, len, "after epoch %d; the run's best is epoch %d, selection not recorded",
                 s->state.epoch, s->state.best_epoch);
}

static void print_text(const eval_args *a, const eval_setup *s) {
    const mc_chain_metrics *m = &s->metrics;
    char about[256];
    describe_checkpoint(s, about, sizeof about);
    printf("checkpoint %s (%s)\n", a->checkpoint, about);
    printf("%s split: %d tiles, %d classes\n", a->split, m->count, m->num_classes);
    printf("  spectral -> text top-1   %6.2f %%\n", 100 * m->spectral_text_acc);
    printf("  %-24s %6.2f %%\n", s->teacher ? "teacher -> text top-1" : "RGB -> text top-1 (CLIP)",
           100 * m->rgb_text_acc);
    printf(s->teacher ? "  spectral -> teacher matching %6.2f %% (inside batches of %d)\n"
                      : "  spectral -> RGB matching %6.2f %% (inside batches of %d)\n",
           100 * m->match_acc, a->train.val_batch_size);
    printf("  InfoNCE loss             %8.4f\n\n", m->loss);
    if (s->teacher) print_hops(a, s);
    chain_cli_print_confusion("spectral -> text", m->spectral_confusion, m->spectral_class_acc,
                              m->num_classes, s->data.class_names);
    printf("\n");
    chain_cli_print_confusion(s->teacher ? "teacher -> text" : "RGB -> text", m->rgb_confusion, m->rgb_class_acc,
                              m->num_classes, s->data.class_names);
}

static void print_json_number(double v) {
    if (isfinite(v)) printf("%.6g", v);
    else printf("null");
}

static void print_json(const eval_args *a, const eval_setup *s) {
    const mc_chain_metrics *m = &s->metrics;
    printf("{\"checkpoint\": ");
    chain_cli_print_json_string(a->checkpoint);
    printf(", \"epoch\": %d, \"best_epoch\": %d, \"selection\": ", s->state.epoch,
           s->state.best_epoch);
    chain_cli_print_json_string(s->selection); /* from the checkpoint's metadata */
    printf(", \"split\": ");
    chain_cli_print_json_string(a->split);
    printf(", \"count\": %d, \"spectral_text_acc\": ", m->count);
    print_json_number(m->spectral_text_acc);
    printf(", \"rgb_text_acc\": ");
    print_json_number(m->rgb_text_acc);
    printf(", \"match_acc\": ");
    print_json_number(m->match_acc);
    printf(", \"loss\": ");
    print_json_number(m->loss);
    if (s->teacher) { /* every hop; rgb_text_acc and match_acc above are then the teacher's */
        const mc_chain_metrics *h = &s->teacher_hop;
        printf(", \"teacher\": ");
        chain_cli_print_json_string(s->teacher_path);
        const char *names[5] = {"student_text_acc", "teacher_text_acc", "rgb_text_acc",
                                "student_teacher_match_acc", "teacher_clip_match_acc"};
        const double values[5] = {m->spectral_text_acc, h->spectral_text_acc, h->rgb_text_acc, m->match_acc,
                                  h->match_acc};
        printf(", \"hops\": {");
        for (int i = 0; i < 5; i++) {
            printf("%s\"%s\": ", i ? ", " : "", names[i]);
            print_json_number(values[i]);
        }
        printf("}");
    }
    printf(", \"classes\": [");
    for (int k = 0; k < m->num_classes; k++) {
        /* (class names are folder names: any character may be in them) */
        printf("%s{\"name\": ", k ? ", " : "");
        chain_cli_print_json_string(s->data.class_names[k]);
        printf(", \"spectral_acc\": ");
        print_json_number(m->spectral_class_acc[k]);
        printf(", \"rgb_acc\": ");
        print_json_number(m->rgb_class_acc[k]);
        printf(", \"confusion\": [");
        for (int p = 0; p < m->num_classes; p++)
            printf("%s%lld", p ? ", " : "", (long long)m->spectral_confusion[k * m->num_classes + p]);
        printf("]}");
    }
    printf("]}\n");
}

/* The spectral embeddings the metrics came from, with the tile paths. */
static int write_embeddings(const eval_args *a, const eval_setup *s) {
    const mc_chain_metrics *m = &s->metrics;
    const char **paths = malloc((size_t)m->count * sizeof *paths);
    if (!paths) return cli_fail(COMMAND, "out of memory");
    for (int i = 0; i < m->count; i++) paths[i] = s->data.tile_key(s->data.ctx, i);
    mc_status st = chain_cli_write_embeddings(a->embeddings, m->spectral_embeds, m->count, m->embed_dim,
                                              paths, a->checkpoint, &s->enc->bands);
    free(paths);
    if (st != MC_OK) return cli_fail(COMMAND, "--embeddings %s: %s", a->embeddings, mc_last_error());
    return 0;
}

int cmd_eval(int argc, char **argv) {
    /* The trainer's defaults and the data options', as `mmchain train` takes them. */
    eval_args a = {.d = chain_cli_data_defaults(), .train = mc_chain_train_defaults(), .which = "best",
                   .split = NULL, .precision = "fp32"};
    cli_opt opts[] = {
        CLI_STRING_OPT("--run", &a.run, "DIR: a run folder of mmchain train"),
        CLI_STRING_OPT("--which", &a.which, "best|last: the run's checkpoint to evaluate"),
        CLI_STRING_OPT("--checkpoint", &a.checkpoint, "FILE: an encoder checkpoint"),
        CLI_STRING_OPT("--split", &a.split, "train|val|test|all (default: test when the data has one, else val)"),
        CLI_INT_OPT("--batch", &a.train.val_batch_size, 1, 100000, "B: evaluation batch (matching accuracy)"),
        CLI_FLAG_OPT("--symmetric", &a.train.symmetric, "symmetric InfoNCE for the loss"),
        CLI_FLAG_OPT("--json", &a.json, "print the metrics as JSON"),
        CLI_STRING_OPT("--teacher", &a.teacher, "RUN_DIR|FILE: the teacher of an encoder trained with --teacher (default: the run's)"),
        CLI_STRING_OPT("--embeddings", &a.embeddings, "OUT: also write the split's spectral embeddings (safetensors, as mmchain embed --checkpoint)"),
        CHAIN_CLI_DATA_OPTIONS(&a.d),
        CLI_PRECISION_OPT(&a.precision),
        CLI_END,
    };
    int code = cli_parse_options(COMMAND, USAGE, opts, argc, argv);
    if (code >= 0) return code;
    if (chain_cli_check_which(COMMAND, a.which, cli_opt_find(opts, "--which")->given, a.checkpoint))
        return 1;
    run_strings *rs = calloc(1, sizeof *rs);
    if (!rs) return cli_fail(COMMAND, "out of memory");
    eval_setup s = {0};
    code = a.run ? read_run(&a, opts, rs) : 0;
    if (!code) code = cli_apply_precision(COMMAND, a.precision);
    if (!code) code = open_inputs(&a, &s);
    if (!code) {
        mc_status st = evaluate(&a, &s);
        if (st != MC_OK) code = cli_fail_status(COMMAND, st);
    }
    if (!code && a.embeddings) code = write_embeddings(&a, &s);
    if (!code) {
        if (a.json) print_json(&a, &s);
        else print_text(&a, &s);
    }
    free_setup(&s);
    free(rs);
    return code;
}

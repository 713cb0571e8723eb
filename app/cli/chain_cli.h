/* What `mmchain train`, `eval` and `classify` share: the data, CLIP and
 * prompt options (one definition, help line and validation of each flag)
 * and the zero-shot set-up (CLIP, vocabulary, class prompts -> the text
 * classifier). */
#ifndef MMCHAIN_CHAIN_CLI_H
#define MMCHAIN_CHAIN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

/* The data, CLIP, prompt and split options that train and eval share: one
 * definition of each flag (range, help line) and one way to the EuroSAT
 * options, so that eval reads a run's data exactly as train did. */
typedef struct chain_data_args {
    const char *data, *clip, *vocab, *classes, *templates;
    mc_eurosat_options eurosat; /* --rgb, --splits, --seed, --train-size, --val-size */
} chain_data_args;

/* No data given yet; the EuroSAT options at the library's defaults. */
chain_data_args chain_cli_data_defaults(void);

/* The table entries of those options, bound to d (a chain_data_args *):
 * one definition of each flag for every command's table. */
#define CHAIN_CLI_DATA_OPTIONS(d)                                                                     \
    CLI_STRING_OPT("--data", &(d)->data, "DIR: EuroSAT-MS folder of class folders of .tif"),        \
    CLI_STRING_OPT("--rgb", &(d)->eurosat.rgb_dir, "DIR: EuroSAT RGB release (default: RGB from B04,B03,B02)"), \
    CLI_STRING_OPT("--clip", &(d)->clip, "FILE: CLIP (Hugging Face CLIPModel safetensors)"),        \
    CLI_STRING_OPT("--vocab", &(d)->vocab, "FILE: CLIP's merges.txt or bpe_simple_vocab_16e6.txt.gz"), \
    CLI_STRING_OPT("--splits", &(d)->eurosat.split_dir, "DIR: torchgeo's eurosat-{train,val,test}.txt"), \
    CLI_INT_OPT("--train-size", &(d)->eurosat.train_size, 0, 100000000, "N: training tiles (0 = 2600 or scaled)"), \
    CLI_INT_OPT("--val-size", &(d)->eurosat.val_size, 0, 100000000, "N: validation tiles (0 = 1000 or scaled)"),   \
    CLI_U64_OPT("--seed", &(d)->eurosat.seed, "S: the split's seed (train: also order, augmentation, init)"),      \
    CLI_STRING_OPT("--classes", &(d)->classes, "LIST: prompt names, one per class folder, commas"),        \
    CLI_STRING_OPT("--templates", &(d)->templates, "LIST: prompt templates with {}, '|'-separated")

/* The spectral encoder's architecture options that train and ablate share
 * (--resnet, --depth, --width, --layers; each command has its own help
 * lines). */
typedef struct chain_encoder_args {
    const char *resnet, *layers; /* NULL: random init; the depth's blocks per stage */
    int depth, width;
} chain_encoder_args;

/* A ResNet-50 of torchvision's width (64), as the seed paper. */
chain_encoder_args chain_cli_encoder_defaults(void);

/* The ResNet of --depth, --width and --layers, checked; in_channels and
 * fc_out are 1 (the encoder sets them from the bands and the joint space).
 * Returns 0 or the exit code after an error naming the flag. */
int chain_cli_encoder_arch(const char *command, const chain_encoder_args *e, mc_resnet_config *arch);

/* mc_eurosat_open of d->data with d->eurosat (the --rgb, --splits, --seed
 * and --train-size / --val-size options); returns 0 or the exit code after
 * an error that names --data. */
int chain_cli_open_eurosat(const char *command, const chain_data_args *d, mc_eurosat **ds);

/* The zero-shot classifier for a CLIP and d->vocab: class prompt names
 * come from d->classes (comma-separated, must have n_folders items when
 * n_folders > 0) or else from the folder names (CLIP's EuroSAT names by
 * name); templates from d->templates ('|'-separated) or CLIP's EuroSAT
 * templates. *names (malloc'd, mc_chain_strings_free) and *n_names are the
 * prompt names. Returns 0 or the exit code after printing the error. */
int chain_cli_classifier(const char *command, mc_clip *clip, const chain_data_args *d,
                         const char *const *folder_names, int n_folders, mc_tensor **classes,
                         char ***names, int *n_names);

/* --teacher (a further hop): a run folder of mmchain train (its
 * checkpoints/best.safetensors) or an encoder checkpoint file -> *teacher,
 * the file's path into path. The teacher must embed into embed_dim values
 * (the CLIP's joint space). Returns 0 or the exit code after one error line
 * naming --teacher. */
int chain_cli_load_teacher(const char *command, const char *given, int embed_dim,
                           mc_spectral_encoder **teacher, char *path, size_t len);

/* One split as a --teacher run sees it: the tiles through the teacher's
 * bands and normalisation (view), and the pairs of the student's tiles with
 * that view in place of RGB (pairs; it borrows view: keep the struct in
 * place). */
typedef struct chain_teacher_view {
    mc_chain_data view, pairs;
} chain_teacher_view;

/* The teacher's view of `split` of ds, paired with `student` (the same
 * split through the student's bands). */
mc_status chain_cli_teacher_view(const mc_spectral_encoder *teacher, const mc_eurosat *ds, mc_split split,
                                 const mc_chain_data *student, chain_teacher_view *tv);
void chain_cli_teacher_view_free(chain_teacher_view *tv);

/* A CLIP tower's width given by `flag`: its attention has width / 64 heads
 * (one below 64), which must divide the width. Checked before anything
 * runs (the model would refuse it later, after the run folder was
 * opened, without naming the flag); returns 0 or the exit code after the
 * error. */
int chain_cli_check_tower_width(const char *command, const char *flag, int width);

/* ---- --overwrite ----
 * A command that starts a run in --out refuses a folder that holds one
 * already (mc_run_open, MC_RUN_NEW) unless --overwrite is given, which
 * deletes that run's checkpoints (MC_RUN_OVERWRITE). */
#define CHAIN_CLI_OVERWRITE_OPT(ptr)                                                              \
    CLI_FLAG_OPT("--overwrite", ptr,                                                              \
                 "start afresh in --out even if it holds a run (the old run's config, "            \
                 "checkpoints and models are deleted)")
/* The mode to open --out with. */
static inline mc_run_mode chain_cli_run_mode(bool overwrite) {
    return overwrite ? MC_RUN_OVERWRITE : MC_RUN_NEW;
}
/* Before a command loads what it needs: when `out` holds a run and
 * `overwrite` is false, the error that opening it would give later, naming
 * --out and the ways out (--resume too when the command has it). Returns 0
 * or the exit code after the error. */
int chain_cli_check_out(const char *command, const char *out, bool overwrite, bool has_resume);

/* --which: "best" or "last" (a run's checkpoint), and not given together
 * with --checkpoint (`checkpoint` not NULL), which names another file and
 * would leave it unused; returns 0 or the exit code after the error. */
int chain_cli_check_which(const char *command, const char *which, bool which_given,
                          const char *checkpoint);
/* The encoder checkpoint a command reads: `given` (--checkpoint) when not
 * NULL, else the run's checkpoints/<which>.safetensors. */
void chain_cli_run_checkpoint(const mc_run *run, const char *which, const char *given, char *path, size_t len);

/* ---- --max-memory (and MMCHAIN_MAX_MEMORY) ----
 * The limit a run is held to: --max-memory when given, else the
 * environment variable MMCHAIN_MAX_MEMORY (the same sizes: 512M, 2G), else
 * none (0). Returns 0 or the exit code after an error naming the variable. */
int chain_cli_memory_limit(const char *command, const cli_opt *flag, uint64_t *limit);
/* The help line of --max-memory, for every command that takes it. */
#define CHAIN_CLI_MAX_MEMORY_HELP                                                                 \
    "SIZE: refuse to start when the estimated peak exceeds it, e.g. 2G (default: "               \
    "MMCHAIN_MAX_MEMORY, else no limit)"
/* With a limit: the estimate for `plan` (mc_chain_estimate_memory) printed
 * with its parts; when it exceeds `limit`, an error saying so (exit 1).
 * Without one (0): nothing. Returns 0 or the exit code. */
int chain_cli_check_memory(const char *command, uint64_t limit, const mc_chain_memory_plan *plan);

/* config.json of a run: every option of the table by its name without
 * "--" and its value as text (cli_opt_format, which reads back the same),
 * except those for which not_stored(name) is true (not_stored may be NULL).
 * Returns 0 or the exit code after the error. */
int chain_cli_write_config(const char *command, mc_run *run, const cli_opt *opts,
                           bool (*not_stored)(const char *name));

/* mc_clip_load with a message that names the flag. */
int chain_cli_load_clip(const char *command, const char *path, mc_clip **clip);

/* Distributed commands (docs/distributed.md). Under an MPI launcher, join
 * the other ranks (mc_dist_init); a build without MPI refuses to run as N
 * copies. Returns 0 or the exit code after printing the error. Then
 * mc_dist_rank() == 0 is the rank that writes. */
int chain_cli_dist_start(const char *command);
/* At the end: a rank that failed (code != 0) ends the whole job, since the
 * others may wait for it in a collective; otherwise leave MPI. Returns code. */
int chain_cli_dist_end(int code);

/* Print a confusion matrix and per-class accuracies to stdout. */
void chain_cli_print_confusion(const char *title, const int64_t *confusion, const double *class_acc,
                               int k, const char *const *names);

/* A JSON string literal of s (quotes, backslashes and control characters
 * escaped) to stdout. */
void chain_cli_print_json_string(const char *s);

/* Spectral embeddings to a safetensors file: the float32 tensor "output"
 * (n, E), projected, not normalised, and metadata model "spectral",
 * checkpoint, bands, normalized "false" and tiles (the n paths, one per
 * line). Written atomically. */
mc_status chain_cli_write_embeddings(const char *path, const float *embeds, int n, int e,
                                     const char *const *tiles, const char *checkpoint,
                                     const mc_bands *bands);

#endif

/* What `mmchain train`, `eval` and `classify` share: a table-driven option
 * parser (so every flag has one definition, one help line, one validation
 * and one way back out as text for config.json), and the zero-shot set-up
 * (CLIP, vocabulary, class prompts -> the text classifier). */
#ifndef MMCHAIN_CHAIN_CLI_H
#define MMCHAIN_CHAIN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

typedef enum cli_opt_kind {
    CLI_FLAG,   /* bool: present = true */
    CLI_STRING, /* const char * */
    CLI_INT,    /* int within [min, max] */
    CLI_FLOAT,  /* float within [min, max] */
    CLI_U64     /* uint64_t (seeds) */
} cli_opt_kind;

typedef struct cli_opt {
    const char *name;  /* "--epochs" */
    cli_opt_kind kind;
    void *value;       /* bool *, const char **, int *, float *, uint64_t * */
    double min, max;   /* CLI_INT / CLI_FLOAT */
    const char *help;  /* one line; "VALUE: what" */
    bool given;        /* set by the parser */
} cli_opt;

/* Append one option to an option table: table[count++] = {name, kind, value,
 * min, max, help}. Each command's table builder aliases it as OPT. */
#define CLI_OPT(table, count, name_, kind_, ptr_, lo_, hi_, help_) \
    ((table)[(count)++] = (cli_opt){name_, kind_, ptr_, lo_, hi_, help_, false})

/* Parse argv[1..argc) against the NULL-name-terminated table. Arguments not
 * starting with "--" go to positional (may be NULL: then they are an error).
 * Returns -1 to go on, or the exit code (0 after --help). */
int cli_opts_parse(const char *command, const char *usage, cli_opt *opts, int argc, char **argv,
                   const char ***positional, int *n_positional);
/* Set one option from text (validated as on the command line); returns 0 or
 * the exit code after printing the error. */
int cli_opt_set(const char *command, cli_opt *opt, const char *text);
/* The option's value as text ("" for an unset string). */
void cli_opt_format(const cli_opt *opt, char *buf, size_t len);
cli_opt *cli_opt_find(cli_opt *opts, const char *name);
void cli_opts_help(const char *usage, const cli_opt *opts);

/* The data, CLIP, prompt and split options that train and eval share: one
 * definition of each flag (range, help line) and one way to the EuroSAT
 * options, so that eval reads a run's data exactly as train did. */
typedef struct chain_data_args {
    const char *data, *rgb, *clip, *vocab, *splits, *classes, *templates;
    int train_size, val_size;
    uint64_t seed;
} chain_data_args;

/* How many options chain_cli_data_options adds. */
enum { CHAIN_CLI_N_DATA_OPTS = 10 };

/* Write the shared options into opts[*n ...], bound to d; advances *n. */
void chain_cli_data_options(chain_data_args *d, cli_opt *opts, int *n);

/* mc_eurosat_open of d->data with the --rgb, --splits, --seed and
 * --train-size / --val-size options; returns 0 or the exit code after an
 * error that names --data. */
int chain_cli_open_eurosat(const char *command, const chain_data_args *d, mc_eurosat **ds);

/* The zero-shot classifier for a CLIP + vocabulary: class prompt names come
 * from `classes_list` (comma-separated, must have n_folders items when
 * n_folders > 0) or else from the folder names (CLIP's EuroSAT names by
 * name); templates from `templates_list` ('|'-separated) or CLIP's EuroSAT
 * templates. *names (malloc'd, mc_chain_strings_free) and *n_names are the
 * prompt names. Returns 0 or the exit code after printing the error. */
int chain_cli_classifier(const char *command, mc_clip *clip, const char *vocab_path,
                         const char *classes_list, const char *templates_list,
                         const char *const *folder_names, int n_folders, mc_tensor **classes,
                         char ***names, int *n_names);

/* mc_clip_load with a message that names the flag. */
int chain_cli_load_clip(const char *command, const char *path, mc_clip **clip);

/* Print a confusion matrix and per-class accuracies to stdout. */
void chain_cli_print_confusion(const char *title, const int64_t *confusion, const double *class_acc,
                               int k, const char *const *names);

#endif

/* The mmchain program: one file per subcommand (cmd_<name>.c), each with
 * an entry point of this shape, listed in main.c's command table, and the
 * one option parser they all use (options.c). */
#ifndef MMCHAIN_CLI_H
#define MMCHAIN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmchain/mmchain.h"
#include "mmchain_app/demo.h"
#include "mmchain_app/report.h"
#include "mmchain_app/run.h"

/* argv[0] is the subcommand's name. Returns the process exit code. */
typedef int (*cli_command_fn)(int argc, char **argv);

/* Print "mmchain <command>: error: <message>" to stderr and return 1. */
int cli_fail(const char *command, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* cli_fail with mmchain's last error message. */
int cli_fail_status(const char *command, mc_status status);

/* ---- options (options.c) ------------------------------------------------
 * Every command describes its options in one table, an array that ends with
 * CLI_END, built with the CLI_*_OPT macros below (each checks the type of
 * the variable it binds), e.g.
 *
 *     cli_opt opts[] = {
 *         CLI_STRING_OPT("--out", &a.out, "DIR: run folder"),
 *         CLI_INT_OPT("--epochs", &a.epochs, 1, 100000, "E: epochs"),
 *         CLI_FLAG_OPT("--quiet", &a.quiet, "no progress line"),
 *         CLI_END,
 *     };
 *     int code = cli_parse_options(COMMAND, USAGE, opts, argc, argv);
 *     if (code >= 0) return code;      (0 after --help, else the error's code)
 *
 * The variables hold the defaults before parsing: `--help` prints them.
 * Where a library function takes a config struct, the options bind its
 * fields (&a.train.epochs) and the struct starts as the library's
 * *_defaults(): the command keeps no copy of the library's defaults. */

typedef enum cli_opt_kind {
    CLI_FLAG,     /* bool: present = true */
    CLI_FLAG_OFF, /* bool: present = false (--no-X of a setting that is on by default) */
    CLI_STRING,   /* const char * */
    CLI_INT,      /* int within [min, max] */
    CLI_I64,      /* int64_t within [min, max] (step counts) */
    CLI_FLOAT,    /* float within [min, max] */
    CLI_U64,      /* uint64_t (seeds) */
    CLI_BYTES,    /* uint64_t: a size in bytes, "512M", "2G" (powers of 1024), 0 = none */
    CLI_LIST      /* cli_list: a repeatable option, every value in order */
} cli_opt_kind;

/* The values of a repeatable option; items has room for argc pointers. */
typedef struct cli_list {
    const char **items;
    int n;
} cli_list;

typedef struct cli_opt {
    const char *name;  /* "--epochs" */
    cli_opt_kind kind;
    void *value;       /* bool * (FLAG, FLAG_OFF), const char **, int *, int64_t *, float *,
                        * uint64_t * (U64, BYTES), cli_list * */
    double min, max;   /* CLI_INT / CLI_I64 / CLI_FLOAT */
    const char *help;  /* one line of the generated help, "VALUE: what"; NULL: the
                        * command's own help text documents the option */
    bool given;        /* set by the parser */
} cli_opt;

/* `ptr` as a void *, and a compiler warning unless it is a `type *`. */
#define CLI_BIND(type, ptr) ((void *)(1 ? (ptr) : (type *)0))
#define CLI_FLAG_OPT(name, ptr, help) {name, CLI_FLAG, CLI_BIND(bool, ptr), 0, 0, help, false}
#define CLI_FLAG_OFF_OPT(name, ptr, help) {name, CLI_FLAG_OFF, CLI_BIND(bool, ptr), 0, 0, help, false}
#define CLI_STRING_OPT(name, ptr, help) {name, CLI_STRING, CLI_BIND(const char *, ptr), 0, 0, help, false}
#define CLI_INT_OPT(name, ptr, lo, hi, help) {name, CLI_INT, CLI_BIND(int, ptr), lo, hi, help, false}
#define CLI_I64_OPT(name, ptr, lo, hi, help) {name, CLI_I64, CLI_BIND(int64_t, ptr), lo, hi, help, false}
#define CLI_FLOAT_OPT(name, ptr, lo, hi, help) {name, CLI_FLOAT, CLI_BIND(float, ptr), lo, hi, help, false}
#define CLI_U64_OPT(name, ptr, help) {name, CLI_U64, CLI_BIND(uint64_t, ptr), 0, 0, help, false}
#define CLI_BYTES_OPT(name, ptr, help) {name, CLI_BYTES, CLI_BIND(uint64_t, ptr), 0, 0, help, false}
#define CLI_LIST_OPT(name, ptr, help) {name, CLI_LIST, CLI_BIND(cli_list, ptr), 0, 0, help, false}
#define CLI_END {NULL, CLI_FLAG, NULL, 0, 0, NULL, false}

/* What a command accepts besides its options: arguments that do not start
 * with '-' ("-" alone counts as one) are operands. */
typedef enum cli_operands {
    CLI_NO_OPERANDS,   /* an operand is an error */
    CLI_OPERANDS,      /* operands anywhere among the options (file lists) */
    CLI_OPERANDS_LAST  /* the first operand, or "--", ends the options: the
                        * rest are operands even if they start with '-' (texts) */
} cli_operands;

typedef struct cli_parser {
    const char *command;     /* "train" */
    const char *usage;       /* --help prints it, a blank line, then one line per
                              * option that has a help line */
    void (*print_help)(void); /* or, when not NULL, this hand-written help */
    cli_opt *opts;           /* ends with CLI_END */
    cli_operands operands;
} cli_parser;

/* Parse argv[1..argc). Operands go to operands[] (room for argc pointers;
 * may be NULL with CLI_NO_OPERANDS), their count to *n_operands. Returns
 * -1 to go on, or the exit code: 0 after --help, 1 after an error (one line
 * on stderr naming the option). */
int cli_parse(const cli_parser *parser, int argc, char **argv, const char **operands, int *n_operands);
/* cli_parse of a command that takes no operands and has a generated help. */
int cli_parse_options(const char *command, const char *usage, cli_opt *opts, int argc, char **argv);
/* Set one option from text (validated as on the command line); returns 0 or
 * the exit code after printing the error. */
int cli_opt_set(const char *command, cli_opt *opt, const char *text);
/* A size as CLI_BYTES reads it: digits, then optionally K, M, G or T
 * (times 1024, 1024^2, ...; "KB"/"KiB" and so on read the same). Returns
 * false for anything else or a size past 2^64 - 1. */
bool cli_parse_bytes(const char *text, uint64_t *bytes);
/* The option's value as text ("" for an unset string). */
void cli_opt_format(const cli_opt *opt, char *buf, size_t len);
cli_opt *cli_opt_find(cli_opt *opts, const char *name);

/* --precision, on every command that runs a model: one table entry, bound
 * to a const char * holding "fp32" (the default) or "bf16". */
#define CLI_PRECISION_OPT(ptr) \
    CLI_STRING_OPT("--precision", ptr, "P: fp32, or bf16 (matrix products on bf16 operands, fp32 sums)")
/* Puts --precision's value in force for the graphs made from now on
 * (mc_set_default_precision, the library's one call for it). Returns 0, or
 * 1 after a one-line error for a value other than fp32 or bf16. Notes on
 * stderr when bf16 products cannot run here and fall back to fp32. */
int cli_apply_precision(const char *command, const char *text);
/* Options in a table, CLI_END not counted. */
int cli_opts_count(const cli_opt *opts);

#endif

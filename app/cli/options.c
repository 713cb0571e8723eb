/* The one option parser of the mmchain program (cli.h): every command's
 * options are a table; this file reads argv against it, checks each value
 * against its kind and range, prints --help, and writes values back as text
 * (config.json of a run). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Every error of every command ends here: one line on stderr, exit code 1. */
int cli_fail(const char *command, const char *fmt, ...) {
    fprintf(stderr, "mmchain %s: error: ", command);
    va_list args;
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fputc('\n', stderr);
    return 1;
}

int cli_fail_status(const char *command, mc_status status) {
    (void)status;
    return cli_fail(command, "%s", mc_last_error());
}

cli_opt *cli_opt_find(cli_opt *opts, const char *name) {
    for (cli_opt *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) return o;
    return NULL;
}

int cli_opts_count(const cli_opt *opts) {
    int n = 0;
    while (opts[n].name) n++;
    return n;
}

/* The multipliers of CLI_BYTES's suffixes, largest first. */
static const struct {
    char suffix;
    int shift;
} byte_units[] = {{'T', 40}, {'G', 30}, {'M', 20}, {'K', 10}};

bool cli_parse_bytes(const char *text, uint64_t *bytes) {
    if (text[0] < '0' || text[0] > '9') return false; /* no sign, no space */
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno) return false;
    int shift = 0;
    if (*end) {
        for (size_t i = 0; i < sizeof byte_units / sizeof byte_units[0] && !shift; i++)
            if (*end == byte_units[i].suffix || *end == byte_units[i].suffix + ('a' - 'A'))
                shift = byte_units[i].shift;
        if (!shift) return false;
        end++;
        if (strcmp(end, "B") == 0 || strcmp(end, "iB") == 0) end += strlen(end);
        if (*end) return false;
    }
    if (shift && value > (UINT64_MAX >> shift)) return false;
    *bytes = (uint64_t)value << shift;
    return true;
}

int cli_opt_set(const char *command, cli_opt *o, const char *text) {
    char *end;
    errno = 0;
    switch (o->kind) {
    case CLI_FLAG:
    case CLI_FLAG_OFF: { /* the text says whether the option is in force: "--no-augment true" */
        bool present;
        if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0) present = true;
        else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0) present = false;
        else return cli_fail(command, "%s: '%s' is not true or false", o->name, text);
        *(bool *)o->value = o->kind == CLI_FLAG ? present : !present;
        return 0;
    }
    case CLI_STRING:
        *(const char **)o->value = text;
        return 0;
    case CLI_LIST: {
        cli_list *list = o->value;
        list->items[list->n++] = text;
        return 0;
    }
    case CLI_INT:
    case CLI_I64: {
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end || v < o->min || v > o->max)
            return cli_fail(command, "%s must be a whole number from %.0f to %.0f, not '%s'", o->name,
                            o->min, o->max, text);
        if (o->kind == CLI_INT) *(int *)o->value = (int)v;
        else *(int64_t *)o->value = (int64_t)v;
        return 0;
    }
    case CLI_FLOAT: {
        double v = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(v) || v < o->min || v > o->max)
            return cli_fail(command, "%s must be a number from %g to %g, not '%s'", o->name, o->min,
                            o->max, text);
        *(float *)o->value = (float)v;
        return 0;
    }
    case CLI_U64: {
        /* digits only: strtoull would skip leading blanks and negate a '-' */
        unsigned long long v = strtoull(text, &end, 10);
        if (errno || end == text || *end || !(text[0] >= '0' && text[0] <= '9'))
            return cli_fail(command, "%s must be a whole number >= 0, not '%s'", o->name, text);
        *(uint64_t *)o->value = (uint64_t)v;
        return 0;
    }
    case CLI_BYTES:
        if (!cli_parse_bytes(text, (uint64_t *)o->value))
            return cli_fail(command, "%s must be a size like 512M or 2G (K, M, G, T: powers of 1024; 0: no limit), not '%s'",
                            o->name, text);
        return 0;
    }
    return cli_fail(command, "%s: unknown option kind", o->name);
}

void cli_opt_format(const cli_opt *o, char *buf, size_t len) {
    switch (o->kind) {
    case CLI_FLAG: snprintf(buf, len, "%s", *(const bool *)o->value ? "true" : "false"); break;
    case CLI_FLAG_OFF: snprintf(buf, len, "%s", *(const bool *)o->value ? "false" : "true"); break;
    case CLI_STRING: {
        const char *s = *(const char *const *)o->value;
        snprintf(buf, len, "%s", s ? s : "");
        break;
    }
    case CLI_LIST: snprintf(buf, len, "%d values", ((const cli_list *)o->value)->n); break;
    case CLI_INT: snprintf(buf, len, "%d", *(const int *)o->value); break;
    case CLI_I64: snprintf(buf, len, "%" PRId64, *(const int64_t *)o->value); break;
    case CLI_FLOAT: { /* the shortest text that reads back as the same float */
        float v = *(const float *)o->value;
        for (int digits = 6; digits <= 9; digits++) {
            snprintf(buf, len, "%.*g", digits, (double)v);
            if (strtof(buf, NULL) == v) break;
        }
        break;
    }
    case CLI_U64: snprintf(buf, len, "%" PRIu64, *(const uint64_t *)o->value); break;
    case CLI_BYTES: { /* the largest suffix that writes it exactly: reads back the same */
        uint64_t v = *(const uint64_t *)o->value;
        size_t i = 0;
        while (i < sizeof byte_units / sizeof byte_units[0] &&
               (v == 0 || (v & ((UINT64_C(1) << byte_units[i].shift) - 1)) != 0))
            i++;
        if (i < sizeof byte_units / sizeof byte_units[0])
            snprintf(buf, len, "%" PRIu64 "%c", v >> byte_units[i].shift, byte_units[i].suffix);
        else
            snprintf(buf, len, "%" PRIu64, v);
        break;
    }
    }
}

/* The usage text, then "  --name  help (default value)" for each option
 * that has a help line. */
static void print_generated_help(const char *usage, const cli_opt *opts) {
    printf("%s\n\n", usage);
    for (const cli_opt *o = opts; o->name; o++) {
        if (!o->help) continue;
        char value[256] = "";
        if (o->kind != CLI_FLAG && o->kind != CLI_FLAG_OFF && o->kind != CLI_LIST)
            cli_opt_format(o, value, sizeof value);
        printf("  %-22s %s%s%s%s\n", o->name, o->help, value[0] ? " (default " : "", value,
               value[0] ? ")" : "");
    }
}

int cli_parse(const cli_parser *p, int argc, char **argv, const char **operands, int *n_operands) {
    if (n_operands) *n_operands = 0;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && p->operands == CLI_OPERANDS_LAST && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || arg[0] != '-' || arg[1] == '\0') { /* "-" alone is an operand */
            if (p->operands == CLI_NO_OPERANDS)
                return cli_fail(p->command, "unexpected argument '%s' (see mmchain %s --help)", arg, p->command);
            operands[(*n_operands)++] = arg;
            if (p->operands == CLI_OPERANDS_LAST) options_done = true;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            if (p->print_help) p->print_help();
            else print_generated_help(p->usage, p->opts);
            return 0;
        }
        cli_opt *o = cli_opt_find(p->opts, arg);
        if (!o) return cli_fail(p->command, "unknown option '%s' (see mmchain %s --help)", arg, p->command);
        o->given = true;
        if (o->kind == CLI_FLAG || o->kind == CLI_FLAG_OFF) {
            *(bool *)o->value = o->kind == CLI_FLAG;
            continue;
        }
        if (i + 1 >= argc) return cli_fail(p->command, "option %s needs a value", arg);
        int code = cli_opt_set(p->command, o, argv[++i]);
        if (code) return code;
    }
    return -1;
}

int cli_parse_options(const char *command, const char *usage, cli_opt *opts, int argc, char **argv) {
    const cli_parser parser = {command, usage, NULL, opts, CLI_NO_OPERANDS};
    return cli_parse(&parser, argc, argv, NULL, NULL);
}

int cli_apply_precision(const char *command, const char *text) {
    mc_precision precision;
    if (mc_precision_parse(text, &precision) != MC_OK)
        return cli_fail(command, "--precision '%s' is not fp32 or bf16", text ? text : "");
    /* "fp32 (OpenBLAS)" is the one fallback mc_gemm_bf16_kernel_name names. */
    if (precision == MC_PRECISION_BF16 && strncmp(mc_gemm_bf16_kernel_name(), "fp32", 4) == 0)
        fprintf(stderr, "mmchain %s: note: --precision bf16 needs mmchain's AVX-512 GEMM; the "
                        "products run in fp32 on %s\n", command, mc_gemm_kernel_name());
    mc_set_default_precision(precision);
    return 0;
}

/* mmchain tokenize — CLIP token ids for texts.
 *
 *     mmchain tokenize --vocab PATH [--context 77] [--truncate] [--] TEXT...
 *
 * Prints one line per text: the `context` ids (sot, the text's ids, eot,
 * zero padding) separated by spaces. PATH is bpe_simple_vocab_16e6.txt.gz,
 * a Hugging Face merges.txt or vocab.json, or a folder holding them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const COMMAND = "tokenize";

static void print_help(void) {
    printf("usage: mmchain tokenize --vocab PATH [--context N] [--truncate] [--] TEXT...\n\n"
           "Prints CLIP's token ids for each TEXT, one line each: <|startoftext|> (49406), the\n"
           "text's BPE ids, <|endoftext|> (49407), then zeros up to the context length.\n\n"
           "  --vocab PATH   bpe_simple_vocab_16e6.txt.gz, merges.txt, vocab.json (the merges.txt\n"
           "                 beside it is read) or a folder holding them\n"
           "  --context N    ids per line (default %d)\n"
           "  --truncate     cut texts that do not fit, keeping <|endoftext|> last\n"
           "                 (without it a text that does not fit is an error)\n"
           "  --             end of options: what follows are texts, even if they start with '-'\n",
           MC_CLIP_CONTEXT);
}

typedef struct tokenize_options {
    const char *vocab;
    int context;
    bool truncate;
    int first_text; /* index in argv of the first text */
} tokenize_options;

/* A whole decimal number in [lo, hi]. */
static bool parse_int(const char *text, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end || value < lo || value > hi) return false;
    *out = (int)value;
    return true;
}

/* Returns -1 to go on, otherwise the exit code. */
static int parse_options(int argc, char **argv, tokenize_options *o) {
    *o = (tokenize_options){NULL, MC_CLIP_CONTEXT, false, argc};
    int i = 1;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            i++;
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0') break; /* the first text ("-" alone is a text) */
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help();
            return 0;
        } else if (strcmp(arg, "--truncate") == 0) {
            o->truncate = true;
        } else if (strcmp(arg, "--vocab") == 0 || strcmp(arg, "--context") == 0) {
            if (i + 1 >= argc) return cli_fail(COMMAND, "option %s needs a value", arg);
            const char *value = argv[++i];
            if (strcmp(arg, "--vocab") == 0) o->vocab = value;
            else if (!parse_int(value, 2, 1 << 20, &o->context))
                return cli_fail(COMMAND, "--context must be a whole number from 2 to %d, not '%s'",
                                1 << 20, value);
        } else {
            return cli_fail(COMMAND, "unknown option '%s' (see mmchain tokenize --help; put texts "
                            "that start with '-' after --)", arg);
        }
    }
    o->first_text = i;
    if (!o->vocab)
        return cli_fail(COMMAND, "--vocab PATH is required (bpe_simple_vocab_16e6.txt.gz, merges.txt "
                        "or their folder)");
    if (o->first_text >= argc) return cli_fail(COMMAND, "no TEXT given (see mmchain tokenize --help)");
    return -1;
}

static void print_ids(const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
}

int cmd_tokenize(int argc, char **argv) {
    tokenize_options o;
    int done = parse_options(argc, argv, &o);
    if (done >= 0) return done;

    mc_tokenizer *tok;
    mc_status s = mc_tokenizer_load(o.vocab, &tok);
    if (s != MC_OK) return cli_fail_status(COMMAND, s);
    int32_t *ids = malloc((size_t)o.context * sizeof *ids);
    if (!ids) {
        mc_tokenizer_free(tok);
        return cli_fail(COMMAND, "out of memory for %d ids", o.context);
    }
    int code = 0;
    for (int i = o.first_text; i < argc && code == 0; i++) {
        s = mc_tokenizer_tokenize(tok, argv[i], o.context, o.truncate, ids);
        if (s != MC_OK) code = cli_fail_status(COMMAND, s);
        else print_ids(ids, o.context);
    }
    free(ids);
    mc_tokenizer_free(tok);
    if (code == 0 && fflush(stdout) != 0) code = cli_fail(COMMAND, "cannot write the ids: %s", strerror(errno));
    return code;
}

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
    const char **texts; /* the operands: room for argc pointers */
    int n_texts;
} tokenize_options;

/* Returns -1 to go on, otherwise the exit code. */
static int parse_options(int argc, char **argv, tokenize_options *o) {
    cli_opt opts[] = { /* documented by print_help */
        CLI_STRING_OPT("--vocab", &o->vocab, NULL),
        CLI_INT_OPT("--context", &o->context, 2, 1 << 20, NULL),
        CLI_FLAG_OPT("--truncate", &o->truncate, NULL),
        CLI_END,
    };
    const cli_parser parser = {COMMAND, NULL, print_help, opts, CLI_OPERANDS_LAST};
    int code = cli_parse(&parser, argc, argv, o->texts, &o->n_texts);
    if (code >= 0) return code;
    if (!o->vocab)
        return cli_fail(COMMAND, "--vocab PATH is required (bpe_simple_vocab_16e6.txt.gz, merges.txt "
                        "or their folder)");
    if (o->n_texts == 0) return cli_fail(COMMAND, "no TEXT given (see mmchain tokenize --help)");
    return -1;
}

static void print_ids(const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    putchar('\n');
}

/* One line of ids per text. */
static int tokenize_texts(const tokenize_options *o) {
    mc_tokenizer *tok;
    mc_status s = mc_tokenizer_load(o->vocab, &tok);
    if (s != MC_OK) return cli_fail_status(COMMAND, s);
    int32_t *ids = malloc((size_t)o->context * sizeof *ids);
    if (!ids) {
        mc_tokenizer_free(tok);
        return cli_fail(COMMAND, "out of memory for %d ids", o->context);
    }
    int code = 0;
    for (int i = 0; i < o->n_texts && code == 0; i++) {
        s = mc_tokenizer_tokenize(tok, o->texts[i], o->context, o->truncate, ids);
        if (s != MC_OK) code = cli_fail_status(COMMAND, s);
        else print_ids(ids, o->context);
    }
    free(ids);
    mc_tokenizer_free(tok);
    if (code == 0 && fflush(stdout) != 0) code = cli_fail(COMMAND, "cannot write the ids: %s", strerror(errno));
    return code;
}

int cmd_tokenize(int argc, char **argv) {
    tokenize_options o = {.context = MC_CLIP_CONTEXT};
    o.texts = malloc((size_t)argc * sizeof *o.texts);
    if (!o.texts) return cli_fail(COMMAND, "out of memory");
    int code = parse_options(argc, argv, &o);
    if (code < 0) code = tokenize_texts(&o);
    free(o.texts);
    return code;
}

/* The command-line option parser every command uses (app/cli/options.c):
 * the input, split at NUL bytes, is argv[1..]; the table has an option of
 * every kind, and the first byte picks how operands are taken. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fuzz_common.h"

enum { MAX_ARGS = 64 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    cli_operands operands_mode = (cli_operands)(data[0] % 3);
    char *text = malloc(size); /* data[1..] plus a final NUL */
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    char *argv[MAX_ARGS + 2] = {"fuzz"};
    int argc = 1;
    for (char *p = text; p < text + size && argc <= MAX_ARGS; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;

    bool flag = false, on = true;
    const char *string = NULL;
    int count = 3;
    float rate = 0.5f;
    uint64_t seed = 0, memory = 0;
    int64_t steps = 0;
    const char *items[MAX_ARGS + 2];
    cli_list list = {items, 0};
    cli_opt opts[] = {
        CLI_FLAG_OPT("--quiet", &flag, "no output"),
        CLI_FLAG_OFF_OPT("--no-augment", &on, "no augmentation"),
        CLI_STRING_OPT("--out", &string, "DIR: output folder"),
        CLI_INT_OPT("--epochs", &count, 1, 100000, "E: epochs"),
        CLI_I64_OPT("--stop-after-steps", &steps, 0, 1e12, "N: steps"),
        CLI_FLOAT_OPT("--lr", &rate, 1e-12, 10, "LR: learning rate"),
        CLI_U64_OPT("--seed", &seed, "S: seed"),
        CLI_BYTES_OPT("--max-memory", &memory, "SIZE: memory limit"),
        CLI_LIST_OPT("--text", &list, "T: a text (repeatable)"),
        CLI_END,
    };
    const cli_parser parser = {"fuzz", "usage: fuzz [options]", NULL, opts, operands_mode};
    const char *operands[MAX_ARGS + 2];
    int n_operands = 0;
    int code = cli_parse(&parser, argc, argv, operands_mode == CLI_NO_OPERANDS ? NULL : operands, &n_operands);
    if (code < 0) {
        char shown[256];
        for (cli_opt *o = opts; o->name; o++) cli_opt_format(o, shown, sizeof shown);
        /* A size written back (config.json) must read back the same. */
        uint64_t again = 0;
        cli_opt_format(cli_opt_find(opts, "--max-memory"), shown, sizeof shown);
        if (!cli_parse_bytes(shown, &again) || again != memory) abort();
        /* So must a --no-X flag and a step count. */
        const bool was_on = on;
        const int64_t were = steps;
        cli_opt_format(cli_opt_find(opts, "--no-augment"), shown, sizeof shown);
        if (cli_opt_set("fuzz", cli_opt_find(opts, "--no-augment"), shown) != 0 || on != was_on) abort();
        cli_opt_format(cli_opt_find(opts, "--stop-after-steps"), shown, sizeof shown);
        if (cli_opt_set("fuzz", cli_opt_find(opts, "--stop-after-steps"), shown) != 0 || steps != were) abort();
        for (int i = 0; i < n_operands; i++) (void)strlen(operands[i]);
        for (int i = 0; i < list.n; i++) (void)strlen(list.items[i]);
    }
    free(text);
    return 0;
}

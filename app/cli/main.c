/* mmchain — the command-line program. Dispatches to one subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* ---- subcommands (each in cmd_<name>.c) ---- */
/* COMMAND DECLARATIONS (one line each) */
int cmd_demo(int argc, char **argv);
int cmd_pretrain_clip(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_ablate(int argc, char **argv);
int cmd_search(int argc, char **argv);

typedef struct cli_command {
    const char *name;
    cli_command_fn run;
    const char *summary;
} cli_command;

static const cli_command commands[] = {
    /* COMMAND TABLE (one line each) */
    {"demo", cmd_demo, "the whole method on the synthetic world, no download (a few minutes)"},
    {"pretrain-clip", cmd_pretrain_clip, "train a small CLIP from scratch on labelled images with generated captions"},
    {"embed", cmd_embed, "run a tower (ResNet, ...) on a tensor file: IN.safetensors -> OUT.safetensors"},
    {"show", cmd_show, "contact sheet PNG of multispectral tiles (true colour, false colour, SWIR)"},
    {"synth", cmd_synth, "write the synthetic multispectral world (EuroSAT-MS layout)"},
    {"tokenize", cmd_tokenize, "CLIP token ids for texts"},
    {"train", cmd_train, "train a spectral encoder against CLIP on EuroSAT-MS (the seed paper's method)"},
    {"eval", cmd_eval, "zero-shot and matching accuracy, confusion matrices of a trained encoder"},
    {"classify", cmd_classify, "top-k zero-shot classes of .tif tiles with a trained encoder"},
    {"search", cmd_search, "rank tiles by a text query in the joint space (text -> tile retrieval)"},
    {"ablate", cmd_ablate, "the same encoder on several band sets: which bands carry the signal"},
    {NULL, NULL, NULL},
};

static void print_usage(FILE *to) {
    fprintf(to, "mmchain %s — multi-modal chaining from scratch in C\n\n", mc_version());
    fprintf(to, "usage: mmchain <command> [options]   (mmchain <command> --help for its options)\n\n");
    for (const cli_command *c = commands; c->name; c++) fprintf(to, "  %-14s %s\n", c->name, c->summary);
    fprintf(to, "\nExit status: 0 on success, 1 on any error (a bad option or file included).\n");
    fprintf(to, "Threads: MMCHAIN_THREADS=N (default: all processors).\n");
    fprintf(to, "Matrix products: MMCHAIN_GEMM=auto|avx512|openblas (default auto: our AVX-512\n"
                "kernel where the CPU has AVX-512F, else OpenBLAS; --version names the one in use).\n");
}

int main(int argc, char **argv) {
    mc_threads_reexec_with_passive_wait(argv); /* see threads.h */
    mc_threads_init_from_env();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("mmchain %s (GEMM: %s; OpenBLAS core %s)\n", mc_version(), mc_gemm_kernel_name(),
               mc_blas_core_name());
        return 0;
    }
    for (const cli_command *c = commands; c->name; c++)
        if (strcmp(argv[1], c->name) == 0) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "mmchain: error: unknown command '%s' (see mmchain --help)\n", argv[1]);
    return 1;
}

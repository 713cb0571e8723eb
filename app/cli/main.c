/* mmchain — the command-line program. Dispatches to one subcommand. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "mmchain/dist.h"

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

/* How a command takes an MPI launcher (mpirun -np N mmchain COMMAND ...). */
typedef enum cli_ranks {
    ONE_PROCESS, /* it refuses N > 1 ranks, which would run N copies writing the same files */
    RANKS        /* data parallel: every rank runs it, rank 0 writes (docs/distributed.md) */
} cli_ranks;

typedef struct cli_command {
    const char *name;
    cli_command_fn run;
    const char *summary;
    cli_ranks ranks;
} cli_command;

static const cli_command commands[] = {
    /* COMMAND TABLE (one line each) */
    {"demo", cmd_demo, "the whole method on the synthetic world, no download (a few minutes)", ONE_PROCESS},
    {"pretrain-clip", cmd_pretrain_clip, "train a small CLIP from scratch on labelled images with generated captions", RANKS},
    {"embed", cmd_embed, "run a tower (ResNet, ...) on a tensor file: IN.safetensors -> OUT.safetensors", ONE_PROCESS},
    {"show", cmd_show, "contact sheet PNG of multispectral tiles (true colour, false colour, SWIR)", ONE_PROCESS},
    {"synth", cmd_synth, "write the synthetic multispectral world (EuroSAT-MS layout)", ONE_PROCESS},
    {"tokenize", cmd_tokenize, "CLIP token ids for texts", ONE_PROCESS},
    {"train", cmd_train, "train a spectral encoder against CLIP on EuroSAT-MS (the seed paper's method)", RANKS},
    {"eval", cmd_eval, "zero-shot and matching accuracy, confusion matrices of a trained encoder", ONE_PROCESS},
    {"classify", cmd_classify, "top-k zero-shot classes of .tif tiles with a trained encoder", ONE_PROCESS},
    {"search", cmd_search, "rank tiles by a text query in the joint space (text -> tile retrieval)", ONE_PROCESS},
    {"ablate", cmd_ablate, "the same encoder on several band sets: which bands carry the signal", ONE_PROCESS},
    {NULL, NULL, NULL, ONE_PROCESS},
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

/* A one-process command started by an MPI launcher: refused on every rank
 * when there are several (rank 0 says why), run as usual in a world of one.
 * A build without MPI cannot count the ranks, so it refuses. 0: run it. */
static int refuse_ranks(const cli_command *c) {
    if (c->ranks == RANKS || !mc_dist_launched()) return 0;
    if (!mc_dist_built_with_mpi())
        return cli_fail(c->name, "%s runs in one process; start it without mpirun (this mmchain was built "
                        "without MPI and cannot tell how many ranks were started)", c->name);
    if (mc_dist_init(NULL, NULL) != MC_OK) return cli_fail(c->name, "%s", mc_last_error());
    int ranks = mc_dist_world_size(), code = 0;
    if (ranks > 1) {
        if (mc_dist_rank() == 0)
            cli_fail(c->name, "%s runs in one process; start it without mpirun (%d ranks)", c->name, ranks);
        code = 1;
    }
    mc_dist_finalize(); /* one rank: the command runs as without a launcher */
    return code;
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
        if (strcmp(argv[1], c->name) == 0) {
            int code = refuse_ranks(c);
            if (!code) code = c->run(argc - 1, argv + 1);
            /* What a command printed (classify's scores, eval's JSON) may
             * sit in stdout's buffer still: written out now, a full disk or
             * a closed pipe is an error, not a truncated result and 0. */
            if (fflush(stdout) != 0 || ferror(stdout))
                return code ? code : cli_fail(c->name, "cannot write to standard output: %s",
                                              strerror(errno));
            return code;
        }
    fprintf(stderr, "mmchain: error: unknown command '%s' (see mmchain --help)\n", argv[1]);
    return 1;
}

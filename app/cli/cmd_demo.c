/* mmchain demo — the whole method on the synthetic world, no download.
 *
 *     mmchain demo [--out runs/demo] [--seed S] [--quiet] [--no-control] [...sizes]
 *
 * Glue around mc_demo_run (app/demo.c): the options fill an mc_demo_config,
 * then the three numbers and where the run folder and report are. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain_cli.h"
#include "mmchain_app/demo.h"

static const char *const COMMAND = "demo";
static const char *const USAGE =
    "usage: mmchain demo [--out DIR] [--seed S] [--quiet] [--no-control] [options]\n\n"
    "The whole method on the synthetic multispectral world, with no download: pretrains a small\n"
    "CLIP on the RGB views of synthetic tiles with generated captions, trains a spectral encoder\n"
    "(a ResNet) on three infrared bands to match that CLIP's image embeddings (it never sees a\n"
    "caption or a label), trains the same encoder on shuffled pairs as a negative control, and\n"
    "reports zero-shot spectral->text and RGB->text accuracy on held-out tiles. Writes DIR/\n"
    "{config.json, log.txt, metrics.csv, report.html, test-tiles.png, clip/, checkpoints/}.\n"
    "The defaults take a few minutes on 2 cores (MMCHAIN_THREADS sets the threads).";

typedef struct demo_args {
    mc_demo_config config; /* bound by the option table */
    const char *precision;
    bool tiny;
} demo_args;

/* The library's sizes (or the tiny ones), so that --help shows them; the
 * run folder is the program's choice. */
static demo_args default_args(bool tiny) {
    demo_args a = {.config = tiny ? mc_demo_tiny() : mc_demo_defaults(), .precision = "fp32", .tiny = tiny};
    a.config.out_dir = "runs/demo";
    return a;
}

static void print_results(const mc_demo_config *c, const mc_demo_result *r) {
    printf("\nmmchain demo: zero-shot top-1 on %d held-out synthetic tiles (chance %.1f %%)\n",
           r->test_tiles, 100.0 / r->num_classes);
    printf("  RGB -> text       %5.1f %%   our CLIP's image tower\n", 100.0 * r->rgb_text_acc);
    printf("  spectral -> text  %5.1f %%   the encoder on %s, chained to that CLIP\n",
           100.0 * r->spectral_text_acc, c->bands);
    if (!isnan(r->control_text_acc))
        printf("  control           %5.1f %%   the same encoder trained on shuffled pairs\n",
               100.0 * r->control_text_acc);
    if (c->hops == 2) {
        printf("  second hop        %5.1f %%   a student on %s chained to the encoder (no RGB, no CLIP)\n",
               100.0 * r->hop2_text_acc, c->hop2_bands);
        if (!isnan(r->hop2_control_text_acc))
            printf("  second control    %5.1f %%   the student trained on shuffled pairs\n",
                   100.0 * r->hop2_control_text_acc);
    }
    printf("time: %.0f s (world %.0f s, CLIP %.0f s, encoder %.0f s, control %.0f s", r->seconds_total,
           r->seconds_data, r->seconds_clip, r->seconds_encoder, r->seconds_control);
    if (c->hops == 2) printf(", second hop %.0f s", r->seconds_hop2);
    printf(")\n");
    if (r->run_dir[0]) printf("run folder: %s\nreport:     %s\n", r->run_dir, r->report_path);
}

int cmd_demo(int argc, char **argv) {
    demo_args a = default_args(false);
    mc_demo_config *c = &a.config;
    cli_opt opts[] = {
        CLI_STRING_OPT("--out", &c->out_dir, "DIR: run folder (a demo's earlier run there is replaced)"),
        CLI_FLAG_OPT("--overwrite", &c->overwrite, "replace a run of another command in --out (its checkpoints are deleted)"),
        CLI_U64_OPT("--seed", &c->seed, "S: the world, the weights, the data order"),
        CLI_FLAG_OPT("--quiet", &c->quiet, "no progress lines or log, only the results"),
        CLI_FLAG_OFF_OPT("--no-control", &c->control, "skip the shuffled-pairs control"),
        CLI_FLAG_OPT("--tiny", &a.tiny, "the test suite's tiny sizes (seconds; low accuracy)"),
        CLI_INT_OPT("--clip-tiles", &c->clip_tiles, 2, 1000000, "N: tiles CLIP learns from"),
        CLI_INT_OPT("--train-tiles", &c->train_tiles, 2, 1000000, "N: tiles the encoder learns from"),
        CLI_INT_OPT("--test-tiles", &c->test_tiles, 1, 1000000, "N: held-out test tiles"),
        CLI_INT_OPT("--tile-size", &c->tile_size, 8, 64, "T: both views resampled to TxT"),
        CLI_INT_OPT("--clip-epochs", &c->clip.train.epochs, 1, 100000, "E: CLIP pretraining epochs"),
        CLI_INT_OPT("--clip-width", &c->clip.width, 8, 4096, "W: CLIP image tower width"),
        CLI_INT_OPT("--clip-layers", &c->clip.layers, 1, 64, "L: CLIP image tower blocks"),
        CLI_INT_OPT("--clip-patch", &c->clip.patch, 1, 64, "P: ViT patch size"),
        CLI_INT_OPT("--text-width", &c->clip.text_width, 8, 4096, "W: CLIP text tower width"),
        CLI_INT_OPT("--merges", &c->clip.merges, 0, 48894, "K: BPE merges learned from the captions"),
        CLI_FLOAT_OPT("--clip-lr", &c->clip.train.lr, 1e-8, 1, "LR: CLIP's peak learning rate (AdamW)"),
        CLI_STRING_OPT("--bands", &c->bands, "LIST: the encoder's bands"),
        CLI_INT_OPT("--encoder-epochs", &c->train.epochs, 1, 100000, "E: spectral encoder epochs"),
        CLI_INT_OPT("--encoder-width", &c->encoder.base_width, 1, 4096, "W: ResNet base width"),
        CLI_FLOAT_OPT("--encoder-lr", &c->train.lr, 1e-8, 1, "LR: the encoder's Adam learning rate"),
        CLI_INT_OPT("--hops", &c->hops, 1, 2, "H: 2 adds a student on --hop2-bands chained to the encoder"),
        CLI_STRING_OPT("--hop2-bands", &c->hop2_bands, "LIST: the second hop's bands"),
        CLI_PRECISION_OPT(&a.precision),
        CLI_END,
    };
    int code = cli_parse_options(COMMAND, USAGE, opts, argc, argv);
    if (code >= 0) return code;
    if (a.tiny) { /* the tiny sizes are the base the other options change: read them again over it */
        a = default_args(true);
        code = cli_parse_options(COMMAND, USAGE, opts, argc, argv);
        if (code >= 0) return code;
    }
    if (cli_apply_precision(COMMAND, a.precision)) return 1;
    if (c->hops == 1 && cli_opt_find(opts, "--hop2-bands")->given)
        return cli_fail(COMMAND, "--hop2-bands are the second hop's: they need --hops 2");
    if (chain_cli_check_tower_width(COMMAND, "--clip-width", c->clip.width) ||
        chain_cli_check_tower_width(COMMAND, "--text-width", c->clip.text_width))
        return 1;
    /* The CLIP looks at whole tiles: its patches must tile them (checked
     * here, before the run folder and the world are made). */
    if (c->clip.patch > c->tile_size || c->tile_size % c->clip.patch != 0)
        return cli_fail(COMMAND, "--tile-size %d is not a multiple of --clip-patch %d", c->tile_size,
                        c->clip.patch);
    if (c->out_dir && mc_demo_run_mode(c) == MC_RUN_NEW &&
        chain_cli_check_out(COMMAND, c->out_dir, false, false))
        return 1;
    c->clip.image_size = c->tile_size; /* the CLIP looks at the tiles at their own resolution */
    mc_demo_result result;
    mc_status status = mc_demo_run(c, &result);
    if (status != MC_OK) return cli_fail_status(COMMAND, status);
    print_results(c, &result);
    return 0;
}

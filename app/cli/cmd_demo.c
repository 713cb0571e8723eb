/* mmchain demo — the whole method on the synthetic world, no download.
 *
 *     mmchain demo [--out runs/demo] [--seed S] [--quiet] [--no-control] [...sizes]
 *
 * Glue around mc_demo_run (app/demo.c): options -> mc_demo_config,
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
    int clip_tiles, train_tiles, test_tiles, tile_size;
    int clip_epochs, clip_width, clip_layers, clip_patch, text_width, merges;
    int encoder_epochs, encoder_width;
    float clip_lr, encoder_lr;
    const char *out, *bands, *hop2_bands, *precision;
    int hops;
    bool quiet, no_control, tiny;
    uint64_t seed;
} demo_args;

/* The options the user gave, over the defaults (or the tiny sizes). */
static mc_demo_config make_config(const demo_args *a, const cli_opt *opts) {
    mc_demo_config c = a->tiny ? mc_demo_tiny() : mc_demo_defaults();
    c.out_dir = a->out;
    c.quiet = a->quiet;
    c.control = !a->no_control;
#define GIVEN(name) (cli_opt_find((cli_opt *)opts, name)->given)
    if (GIVEN("--seed")) c.seed = a->seed;
    if (GIVEN("--clip-tiles")) c.clip_tiles = a->clip_tiles;
    if (GIVEN("--train-tiles")) c.train_tiles = a->train_tiles;
    if (GIVEN("--test-tiles")) c.test_tiles = a->test_tiles;
    if (GIVEN("--tile-size")) c.tile_size = a->tile_size;
    if (GIVEN("--clip-epochs")) c.clip.train.epochs = a->clip_epochs;
    if (GIVEN("--clip-width")) c.clip.width = a->clip_width;
    if (GIVEN("--clip-layers")) c.clip.layers = a->clip_layers;
    if (GIVEN("--clip-patch")) c.clip.patch = a->clip_patch;
    if (GIVEN("--text-width")) c.clip.text_width = a->text_width;
    if (GIVEN("--merges")) c.clip.merges = a->merges;
    if (GIVEN("--clip-lr")) c.clip.train.lr = a->clip_lr;
    if (GIVEN("--bands")) c.bands = a->bands;
    if (GIVEN("--encoder-epochs")) c.train.epochs = a->encoder_epochs;
    if (GIVEN("--encoder-width")) c.encoder.base_width = a->encoder_width;
    if (GIVEN("--encoder-lr")) c.train.lr = a->encoder_lr;
    if (GIVEN("--hops")) c.hops = a->hops;
    if (GIVEN("--hop2-bands")) c.hop2_bands = a->hop2_bands;
#undef GIVEN
    /* The CLIP looks at the tiles at their own resolution. */
    c.clip.image_size = c.tile_size;
    return c;
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

/* The defaults as option values, so that --help shows them. */
static demo_args default_args(void) {
    mc_demo_config c = mc_demo_defaults();
    return (demo_args){
        .clip_tiles = c.clip_tiles, .train_tiles = c.train_tiles, .test_tiles = c.test_tiles,
        .tile_size = c.tile_size, .clip_epochs = c.clip.train.epochs, .clip_width = c.clip.width,
        .clip_layers = c.clip.layers, .clip_patch = c.clip.patch, .text_width = c.clip.text_width,
        .merges = c.clip.merges, .encoder_epochs = c.train.epochs, .encoder_width = c.encoder.base_width,
        .clip_lr = c.clip.train.lr, .encoder_lr = c.train.lr, .out = "runs/demo", .bands = c.bands,
        .seed = c.seed, .quiet = c.quiet, .no_control = !c.control, .hops = c.hops, .hop2_bands = c.hop2_bands, .precision = "fp32",
    };
}

int cmd_demo(int argc, char **argv) {
    demo_args a = default_args();
    cli_opt opts[] = {
        CLI_STRING_OPT("--out", &a.out, "DIR: run folder"),
        CLI_U64_OPT("--seed", &a.seed, "S: the world, the weights, the data order"),
        CLI_FLAG_OPT("--quiet", &a.quiet, "no progress lines or log, only the results"),
        CLI_FLAG_OPT("--no-control", &a.no_control, "skip the shuffled-pairs control"),
        CLI_FLAG_OPT("--tiny", &a.tiny, "the test suite's tiny sizes (seconds; low accuracy)"),
        CLI_INT_OPT("--clip-tiles", &a.clip_tiles, 2, 1000000, "N: tiles CLIP learns from"),
        CLI_INT_OPT("--train-tiles", &a.train_tiles, 2, 1000000, "N: tiles the encoder learns from"),
        CLI_INT_OPT("--test-tiles", &a.test_tiles, 1, 1000000, "N: held-out test tiles"),
        CLI_INT_OPT("--tile-size", &a.tile_size, 8, 64, "T: both views resampled to TxT"),
        CLI_INT_OPT("--clip-epochs", &a.clip_epochs, 1, 100000, "E: CLIP pretraining epochs"),
        CLI_INT_OPT("--clip-width", &a.clip_width, 8, 4096, "W: CLIP image tower width"),
        CLI_INT_OPT("--clip-layers", &a.clip_layers, 1, 64, "L: CLIP image tower blocks"),
        CLI_INT_OPT("--clip-patch", &a.clip_patch, 1, 64, "P: ViT patch size"),
        CLI_INT_OPT("--text-width", &a.text_width, 8, 4096, "W: CLIP text tower width"),
        CLI_INT_OPT("--merges", &a.merges, 0, 48894, "K: BPE merges learned from the captions"),
        CLI_FLOAT_OPT("--clip-lr", &a.clip_lr, 1e-8, 1, "LR: CLIP's peak learning rate (AdamW)"),
        CLI_STRING_OPT("--bands", &a.bands, "LIST: the encoder's bands"),
        CLI_INT_OPT("--encoder-epochs", &a.encoder_epochs, 1, 100000, "E: spectral encoder epochs"),
        CLI_INT_OPT("--encoder-width", &a.encoder_width, 1, 4096, "W: ResNet base width"),
        CLI_FLOAT_OPT("--encoder-lr", &a.encoder_lr, 1e-8, 1, "LR: the encoder's Adam learning rate"),
        CLI_INT_OPT("--hops", &a.hops, 1, 2, "H: 2 adds a student on --hop2-bands chained to the encoder"),
        CLI_STRING_OPT("--hop2-bands", &a.hop2_bands, "LIST: the second hop's bands"),
        CLI_PRECISION_OPT(&a.precision),
        CLI_END,
    };
    const cli_parser parser = {COMMAND, USAGE, NULL, opts, CLI_NO_OPERANDS};
    int code = cli_parse(&parser, argc, argv, NULL, NULL);
    if (code >= 0) return code;
    if (cli_apply_precision(COMMAND, a.precision)) return 1;
    mc_demo_config config = make_config(&a, opts);
    mc_demo_result result;
    mc_status status = mc_demo_run(&config, &result);
    if (status != MC_OK) return cli_fail_status(COMMAND, status);
    print_results(&config, &result);
    return 0;
}

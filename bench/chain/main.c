/* bench_chain — the real recipe's costs, mmchain next to PyTorch in one run.
 *
 *     bench_chain [--threads N] [--steps S] [--no-peer]
 *
 * What `mmchain train` runs with the README's settings, on synthetic tiles
 * (mmchain synth's world; speed does not depend on the content): a CLIP
 * ViT-B/32 of the real shape with random weights embeds the RGB views at
 * 224x224 (bicubic from 64x64, CLIP normalisation, batches of 64), and a
 * ResNet-50 on three bands (B08, B11, B12) at 64x64 with the 2048 -> 512
 * head trains against them (InfoNCE, Adam, batch 100), through the library's
 * own trainer (chain.h). Measured:
 *   target_tile_s  the target cache: one un-augmented RGB view embedded,
 *                  seconds per tile (mc_chain_trainer_new without
 *                  augmentation embeds every training tile once)
 *   crops_tile_s   --target-crops 4: the 4 crops of one tile embedded,
 *                  seconds per tile (mc_chain_crop_targets)
 *   step_cached_s  a training step with precomputed targets (median of S
 *                  after one warm-up; --target-crops adds only the crop of
 *                  the spectral view to it)
 *   step_fly_s     a training step with on-the-fly targets: both views
 *                  cropped with one box and the RGB crop embedded (median)
 * and from them the real experiment (3,600 tiles cached, 2,600 training
 * tiles = 26 steps per epoch, 10 epochs; validation passes not included),
 * EXTRAPOLATED from these few steps. The PyTorch peer
 * (bench/peer/torch_chain.py: torchvision's resnet50 and a ViT-B/32 built
 * in torch as tests/golden/gen_clip.py writes CLIP) times the same four
 * things with the same shapes and threads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common.h"
#include "mmchain/mmchain.h"

enum { BATCH = 100, CROPS = 4, CROP_TILES = 25, SIZE = 64 };
/* The README's real experiment. */
enum { REAL_CACHED_TILES = 3600, REAL_TRAIN_TILES = 2600, REAL_EPOCHS = 10 };

static void die(const char *what) {
    fprintf(stderr, "bench_chain: %s: %s\n", what, mc_last_error());
    exit(1);
}

/* Median seconds of `steps` training steps after one warm-up. */
static double median_step_seconds(mc_chain_trainer *t, int steps) {
    double loss, times[64];
    if (steps > 63) steps = 63;
    CHECK(mc_chain_trainer_step(t, &loss));
    for (int i = 0; i < steps; i++) {
        double start = bench_now_seconds();
        CHECK(mc_chain_trainer_step(t, &loss));
        times[i] = bench_now_seconds() - start;
    }
    return bench_median(times, steps);
}

typedef struct setup {
    mc_clip *clip;
    mc_chain_data train, val;
    mc_synth_views views;
    mc_tensor *class_embeds;
    mc_bands bands;
    mc_norm norm;
    const char *class_names[MC_SYNTH_CLASSES];
} setup;

/* A fresh encoder and a trainer over s's tiles; *seconds: its construction
 * (the targets it embeds). */
static mc_chain_trainer *new_trainer(setup *s, bool augment, int target_crops,
                                     mc_spectral_encoder **enc, double *seconds) {
    mc_resnet_config arch;
    CHECK(mc_resnet_config_for_depth(50, &arch));
    CHECK(mc_spectral_encoder_new(enc, &arch, &s->bands, &s->norm, SIZE, s->clip->config.embed_dim,
                                  logf(1.0f / 0.07f), false, 7));
    mc_chain_train_config cfg = mc_chain_train_defaults();
    cfg.batch_size = BATCH;
    cfg.augment = augment;
    cfg.target_crops = target_crops;
    mc_chain_trainer *t;
    double start = bench_now_seconds();
    CHECK(mc_chain_trainer_new(&t, &cfg, *enc, s->clip, &s->train, &s->val, s->class_embeds, NULL));
    *seconds = bench_now_seconds() - start;
    return t;
}

static void make_setup(setup *s, int tiles) {
    mc_clip_config config = bench_clip_vit_b32();
    mc_rng rng;
    mc_rng_seed(&rng, 0);
    CHECK(mc_clip_new(&s->clip, &config, &rng));
    CHECK(mc_bands_parse("B08,B11,B12", &s->bands));
    CHECK(mc_norm_init(&s->norm, MC_NORM_TORCHGEO));
    CHECK(mc_synth_views_make(1, 0, tiles, SIZE, &s->bands, &s->norm, false, &s->views));
    for (int k = 0; k < MC_SYNTH_CLASSES; k++) s->class_names[k] = mc_synth_class_name(k);
    CHECK(mc_chain_data_from_tensors(&s->train, s->views.spectral, s->views.rgb, s->views.labels,
                                     MC_SYNTH_CLASSES, s->class_names));
    /* Validation never runs here; the trainer embeds its 2 tiles once. */
    CHECK(mc_chain_data_subset(&s->val, &s->train, 2));
    CHECK(mc_tensor_new(&s->class_embeds, MC_SHAPE(MC_SYNTH_CLASSES, config.embed_dim), "classes"));
    mc_tensor_normal(s->class_embeds, &rng, 0.0f, 1.0f);
}

static void free_setup(setup *s) {
    mc_tensor_free(s->class_embeds);
    mc_chain_data_free(&s->val);
    mc_chain_data_free(&s->train);
    mc_synth_views_free(&s->views);
    mc_clip_free(s->clip);
}

/* The four measurements, in the order of `names`. */
static const char *const names[4] = {"target_tile_s", "crops_tile_s", "step_cached_s", "step_fly_s"};

static void measure(int steps, double out[4]) {
    setup s = {0};
    make_setup(&s, BATCH * (steps + 1)); /* every step a new batch, within one epoch */
    mc_spectral_encoder *enc;
    double seconds;
    /* Without augmentation the trainer embeds every training tile once:
     * the target cache (and the validation subset's 2 tiles). */
    mc_chain_trainer *t = new_trainer(&s, false, 0, &enc, &seconds);
    out[0] = seconds / (s.train.count + s.val.count);
    out[2] = median_step_seconds(t, steps);
    mc_chain_trainer_free(t);
    mc_spectral_encoder_free(enc);

    mc_chain_data few;
    CHECK(mc_chain_data_subset(&few, &s.train, CROP_TILES));
    mc_chain_train_config defaults = mc_chain_train_defaults();
    mc_tensor *crops;
    double start = bench_now_seconds();
    CHECK(mc_chain_crop_targets(s.clip, &few, NULL, defaults.clip_batch, CROPS, 0,
                                &defaults.augment_config, &crops, NULL));
    out[1] = (bench_now_seconds() - start) / CROP_TILES;
    mc_tensor_free(crops);
    mc_chain_data_free(&few);

    t = new_trainer(&s, true, 0, &enc, &seconds);
    out[3] = median_step_seconds(t, steps);
    mc_chain_trainer_free(t);
    mc_spectral_encoder_free(enc);
    free_setup(&s);
}

/* Minutes of the real experiment from per-tile and per-step seconds. */
typedef struct recipe {
    double cache_min, fly_epoch_min, crops_once_min, crops_epoch_min, fly_total_h, crops_total_h;
} recipe;

static recipe extrapolate(const double m[4]) {
    double steps = ceil((double)REAL_TRAIN_TILES / BATCH);
    recipe r;
    r.cache_min = REAL_CACHED_TILES * m[0] / 60.0;
    r.fly_epoch_min = steps * m[3] / 60.0;
    r.crops_once_min = REAL_TRAIN_TILES * m[1] / 60.0;
    r.crops_epoch_min = steps * m[2] / 60.0;
    r.fly_total_h = (r.cache_min + REAL_EPOCHS * r.fly_epoch_min) / 60.0;
    r.crops_total_h = (r.cache_min + r.crops_once_min + REAL_EPOCHS * r.crops_epoch_min) / 60.0;
    return r;
}

static void print_row(const char *row, double ours, double theirs, bool time_like) {
    /* time: ratio = PyTorch / mmchain (> 1: mmchain faster), as the other benchmarks */
    double ratio = ours > 0 && theirs > 0 ? (time_like ? theirs / ours : ours / theirs) : NAN;
    printf("| %s | %.4g | %.4g | %.2f |\n", row, ours, theirs, ratio);
}

int main(int argc, char **argv) {
    mc_threads_reexec_with_passive_wait(argv); /* for us and the peer, which inherits it */
    int threads = 2, steps = 2;
    bool peer = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-peer")) peer = false;
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_chain [--threads N] [--steps S] [--no-peer]\n");
            return 2;
        }
    }
    if (threads < 1 || steps < 1) {
        fprintf(stderr, "bench_chain: --threads and --steps must be at least 1\n");
        return 2;
    }
    mc_set_num_threads(threads);
    double ours[4], theirs[4] = {0};
    measure(steps, ours);
    double our_peak_mib = (double)mc_peak_rss_bytes() / (1024.0 * 1024.0);

    bench_peer_row rows[8];
    char version[256] = "";
    int n_rows = 0;
    if (peer) {
        const char *source = getenv("MMCHAIN_SOURCE_DIR");
        char command[1200];
        snprintf(command, sizeof command,
                 "/usr/bin/python3 '%s/bench/peer/torch_chain.py' --threads %d --steps %d",
                 source ? source : ".", threads, steps);
        n_rows = bench_run_peer(command, rows, 8, version, sizeof version);
        for (int k = 0; k < 4; k++) theirs[k] = bench_peer_value(rows, n_rows, names[k]);
    }

    printf("# mmchain %s, GEMM %s, %d thread(s), %d timed steps after a warm-up; %s\n",
           mc_version(), mc_gemm_kernel_name(), threads, steps, version[0] ? version : "no peer");
    printf("| row | mmchain | PyTorch | ratio (> 1: mmchain faster or smaller) |\n|---|---:|---:|---:|\n");
    const char *labels[4] = {"CLIP target cache, s per tile", "--target-crops 4, s per tile (4 crops)",
                             "training step, precomputed targets, s", "training step, on-the-fly targets, s"};
    for (int k = 0; k < 4; k++) print_row(labels[k], ours[k], theirs[k], true);
    recipe a = extrapolate(ours), b = extrapolate(theirs);
    printf("| *extrapolated:* cache of %d tiles, min | %.1f | %.1f | %.2f |\n", REAL_CACHED_TILES,
           a.cache_min, b.cache_min, b.cache_min / a.cache_min);
    print_row("*extrapolated:* epoch on the fly (26 steps), min", a.fly_epoch_min, b.fly_epoch_min, true);
    print_row("*extrapolated:* --target-crops 4, crops once, min", a.crops_once_min, b.crops_once_min, true);
    print_row("*extrapolated:* --target-crops 4, epoch, min", a.crops_epoch_min, b.crops_epoch_min, true);
    print_row("*extrapolated:* 10 epochs on the fly with the cache, h", a.fly_total_h, b.fly_total_h, true);
    print_row("*extrapolated:* 10 epochs --target-crops 4 with the cache, h", a.crops_total_h,
              b.crops_total_h, true);
    double their_peak_mib = bench_peer_value(rows, n_rows, "peak_mib");
    print_row("peak resident memory, MiB", our_peak_mib, their_peak_mib, true);
    return 0;
}

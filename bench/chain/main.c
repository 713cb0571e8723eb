/* bench_chain — the real recipe's costs, mmchain next to PyTorch in one run.
 *
 *     bench_chain [--threads N] [--steps S] [--precision fp32|bf16|both] [--no-peer]
 *                 [--peer-keep-heap]
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
 *                  seconds per tile (mc_chain_crop_targets over 64 tiles,
 *                  the trainer's CLIP batch)
 *   step_cached_s  a training step with precomputed targets (median of S
 *                  after one warm-up; --target-crops adds only the crop of
 *                  the spectral view to it)
 *   step_fly_s     a training step with on-the-fly targets: both views
 *                  cropped with one box and the RGB crop embedded (median)
 * and from them the real experiment, EXTRAPOLATED from these few steps:
 * 2,600 training tiles (26 steps of 100 per epoch), 1,000 validation tiles,
 * 10 epochs. The trainer embeds the validation tiles once per run (its
 * target cache); on the fly (the default) it embeds each step's RGB crops,
 * with --target-crops 4 it embeds 4 crops of every training tile once;
 * without augmentation it caches all 3,600 un-augmented views. The
 * validation passes (the encoder's forward over the 1,000 tiles each epoch)
 * are not included.
 *
 * --precision bf16 runs our side as `mmchain train --precision bf16` does
 * (mc_set_default_precision: every graph the trainer and CLIP make runs its
 * products on bf16 operands with fp32 sums) and the peer's CLIP embedding
 * and ResNet forward (so its backward) under torch.autocast("cpu",
 * dtype=torch.bfloat16). --precision both measures both and prints them
 * side by side with the ratios bf16 / fp32 (ours) and ours bf16 / PyTorch
 * autocast. Each precision of each side runs in its own process (ours:
 * this program again with --side ours), so every peak memory is its own.
 * The PyTorch peer (bench/peer/torch_chain.py: torchvision's resnet50 and a
 * ViT-B/32 built in torch as tests/golden/gen_clip.py writes CLIP) times the
 * same four things with the same shapes and threads. --peer-keep-heap runs
 * it with --keep-heap: glibc's malloc then keeps freed memory instead of
 * unmapping its large blocks, which at the CLIP batch of 64 otherwise costs
 * PyTorch's ViT fresh, faulted-in pages for every MLP activation (the
 * peer's docstring and bench/README.md measure this). Run from the source
 * tree root or set MMCHAIN_SOURCE_DIR. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common.h"
#include "mmchain/mmchain.h"

/* CROP_TILES: one batch of the trainer's CLIP batch (64), as the real run
 * embeds its crops. */
enum { BATCH = 100, CROPS = 4, CROP_TILES = 64, SIZE = 64 };
/* The README's real experiment: the method's 2,600 training and 1,000
 * validation tiles, 10 epochs. */
enum { REAL_TRAIN_TILES = 2600, REAL_VAL_TILES = 1000, REAL_EPOCHS = 10 };

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
enum { N_MEASURED = 4 };
static const char *const names[N_MEASURED] = {"target_tile_s", "crops_tile_s", "step_cached_s",
                                              "step_fly_s"};

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
    double val_cache_min, fly_epoch_min, crops_once_min, crops_epoch_min, fly_total_h,
        crops_total_h, all_cache_min;
} recipe;

static recipe extrapolate(const double m[N_MEASURED]) {
    double steps = ceil((double)REAL_TRAIN_TILES / BATCH);
    recipe r;
    r.val_cache_min = REAL_VAL_TILES * m[0] / 60.0;
    r.all_cache_min = (REAL_TRAIN_TILES + REAL_VAL_TILES) * m[0] / 60.0;
    r.fly_epoch_min = steps * m[3] / 60.0;
    r.crops_once_min = REAL_TRAIN_TILES * m[1] / 60.0;
    r.crops_epoch_min = steps * m[2] / 60.0;
    r.fly_total_h = (r.val_cache_min + REAL_EPOCHS * r.fly_epoch_min) / 60.0;
    r.crops_total_h = (r.val_cache_min + r.crops_once_min + REAL_EPOCHS * r.crops_epoch_min) / 60.0;
    return r;
}

/* One side's results in one precision; measured = false: it did not run. */
typedef struct side {
    bool measured;
    double m[N_MEASURED], peak_mib, cpu_s;
    recipe r;
} side;

/* Time-like values: the ratio a / b with b the slower-is-larger reference
 * (PyTorch / ours: > 1 means ours is faster or smaller), NAN when either is
 * missing. */
static double ratio(double numerator, double denominator) {
    return numerator > 0 && denominator > 0 ? numerator / denominator : NAN;
}

/* The table's rows: label and value of a side. */
enum { N_ROWS = 13 };
static double row_value(const side *s, int row) {
    const double v[N_ROWS] = {s->m[0], s->m[1], s->m[2], s->m[3], s->r.val_cache_min,
                              s->r.fly_epoch_min, s->r.crops_once_min, s->r.crops_epoch_min,
                              s->r.fly_total_h, s->r.crops_total_h, s->r.all_cache_min, s->peak_mib,
                              s->cpu_s};
    return s->measured ? v[row] : 0.0;
}

static const char *row_label(int row, char *buf, size_t len) {
    switch (row) {
    case 0: return "CLIP target cache, s per tile";
    case 1: return "--target-crops 4, s per tile (4 crops)";
    case 2: return "training step, precomputed targets, s";
    case 3: return "training step, on-the-fly targets, s";
    case 4: snprintf(buf, len, "*extrapolated:* validation targets (%d tiles, every run), min", REAL_VAL_TILES); return buf;
    case 5: snprintf(buf, len, "*extrapolated:* epoch on the fly (%d steps), min", (REAL_TRAIN_TILES + BATCH - 1) / BATCH); return buf;
    case 6: snprintf(buf, len, "*extrapolated:* --target-crops 4, crops of %d tiles once, min", REAL_TRAIN_TILES); return buf;
    case 7: return "*extrapolated:* --target-crops 4, epoch, min";
    case 8: snprintf(buf, len, "*extrapolated:* %d epochs on the fly, with validation targets, h", REAL_EPOCHS); return buf;
    case 9: snprintf(buf, len, "*extrapolated:* %d epochs --target-crops 4, with all targets, h", REAL_EPOCHS); return buf;
    case 10: snprintf(buf, len, "*extrapolated:* without augmentation: cache of %d tiles, min", REAL_TRAIN_TILES + REAL_VAL_TILES); return buf;
    case 11: return "peak resident memory, MiB";
    default: return "CPU time of the whole process, s";
    }
}

/* Run one side in one precision as a child process and read its "row
 * value" lines (bench_run_peer's format; ours: this program with --side
 * ours) and the peer's "torch ..." line into version. */
static side run_side(const char *command, char *version, size_t version_len) {
    bench_peer_row rows[16];
    side s = {0};
    int n = bench_run_peer(command, rows, 16, version, version_len);
    for (int k = 0; k < N_MEASURED; k++) s.m[k] = bench_peer_value(rows, n, names[k]);
    s.peak_mib = bench_peer_value(rows, n, "peak_mib");
    s.cpu_s = bench_peer_value(rows, n, "cpu_s");
    s.measured = n > 0 && s.m[0] > 0 && s.m[3] > 0;
    s.r = extrapolate(s.m);
    return s;
}

static void print_conditions(int threads, int steps, const char *precision, const char *peer_version) {
    char cpu[512], commit[128];
    bench_cpu_model(cpu, sizeof cpu);
    bench_commit(commit, sizeof commit);
    const char *coretype = getenv("OPENBLAS_CORETYPE"), *wait = getenv("OMP_WAIT_POLICY");
    printf("# mmchain %s (commit %s), GEMM %s, bf16 products on %s, OpenBLAS core %s "
           "(OPENBLAS_CORETYPE=%s), %d thread(s), OMP_WAIT_POLICY=%s for both sides, precision %s, "
           "%d timed step(s) after a warm-up\n",
           mc_version(), commit, mc_gemm_kernel_name(), mc_gemm_bf16_kernel_name(), mc_blas_core_name(),
           coretype ? coretype : "(unset)", threads, wait ? wait : "(unset)", precision, steps);
    printf("# CPU: %s, %ld processors; peer: %s\n", cpu, sysconf(_SC_NPROCESSORS_ONLN),
           peer_version[0] ? peer_version : "none");
}

static void print_one(const side *ours, const side *theirs) {
    printf("| row | mmchain | PyTorch | ratio (PyTorch / mmchain: > 1, mmchain faster or smaller) |\n"
           "|---|---:|---:|---:|\n");
    char buf[128];
    for (int k = 0; k < N_ROWS; k++) {
        double a = row_value(ours, k), b = row_value(theirs, k);
        printf("| %s | %.4g | %.4g | %.2f |\n", row_label(k, buf, sizeof buf), a, b, ratio(b, a));
    }
}

/* --precision both: [0] fp32, [1] bf16 of each side. */
static void print_both(const side ours[2], const side theirs[2]) {
    printf("| row | mmchain fp32 | mmchain bf16 | bf16 speed-up (fp32 / bf16) | PyTorch fp32 | "
           "PyTorch autocast | PyTorch / mmchain, fp32 | autocast / mmchain bf16 |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    char buf[128];
    for (int k = 0; k < N_ROWS; k++) {
        double a32 = row_value(&ours[0], k), a16 = row_value(&ours[1], k);
        double b32 = row_value(&theirs[0], k), b16 = row_value(&theirs[1], k);
        printf("| %s | %.4g | %.4g | %.2f | %.4g | %.4g | %.2f | %.2f |\n", row_label(k, buf, sizeof buf),
               a32, a16, ratio(a32, a16), b32, b16, ratio(b32, a32), ratio(b16, a16));
    }
}

static int usage(void) {
    fprintf(stderr, "usage: bench_chain [--threads N] [--steps S] [--precision fp32|bf16|both] [--no-peer]"
                    " [--peer-keep-heap]\n");
    return 2;
}

int main(int argc, char **argv) {
    mc_threads_reexec_with_passive_wait(argv); /* for us and the peer, which inherit it */
    int threads = 2, steps = 2;
    bool peer = true, both = false, child = false, peer_keep_heap = false;
    mc_precision precision = MC_PRECISION_FP32;
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--no-peer")) peer = false;
        else if (!strcmp(argv[i], "--peer-keep-heap")) peer_keep_heap = true;
        else if (!value) return usage();
        else if (!strcmp(argv[i], "--threads")) threads = atoi(value), i++;
        else if (!strcmp(argv[i], "--steps")) steps = atoi(value), i++;
        else if (!strcmp(argv[i], "--side") && !strcmp(value, "ours")) child = true, i++;
        else if (!strcmp(argv[i], "--precision") && !strcmp(value, "both")) both = true, i++;
        else if (!strcmp(argv[i], "--precision") && mc_precision_parse(value, &precision) == MC_OK) i++;
        else return usage();
    }
    if (threads < 1 || steps < 1) {
        fprintf(stderr, "bench_chain: --threads and --steps must be at least 1\n");
        return 2;
    }
    if (child) { /* one side, one precision: "row value" lines for the driver */
        mc_set_num_threads(threads);
        mc_set_default_precision(precision); /* as `mmchain train --precision` does */
        double m[N_MEASURED];
        measure(steps, m);
        for (int k = 0; k < N_MEASURED; k++) printf("%s %.6f\n", names[k], m[k]);
        printf("peak_mib %.1f\n", (double)mc_peak_rss_bytes() / (1024.0 * 1024.0));
        printf("cpu_s %.3f\n", bench_clock_seconds(CLOCK_PROCESS_CPUTIME_ID));
        return 0;
    }

    char self[1024];
    if (!bench_self_path("bench_chain", self, sizeof self)) return 1;
    const char *source = getenv("MMCHAIN_SOURCE_DIR");
    side ours[2] = {{0}}, theirs[2] = {{0}};
    char version[256] = "";
    for (int p = 0; p < 2; p++) {
        mc_precision which = both ? (p ? MC_PRECISION_BF16 : MC_PRECISION_FP32) : precision;
        if (!both && p == 1) break;
        char command[1400];
        snprintf(command, sizeof command, "'%s' --side ours --threads %d --steps %d --precision %s", self,
                 threads, steps, mc_precision_name(which));
        char none[8];
        ours[p] = run_side(command, none, sizeof none);
        if (!ours[p].measured) {
            fprintf(stderr, "bench_chain: our side failed in %s\n", mc_precision_name(which));
            return 1;
        }
        if (!peer) continue;
        snprintf(command, sizeof command,
                 "/usr/bin/python3 '%s/bench/peer/torch_chain.py' --threads %d --steps %d --precision %s%s",
                 source ? source : ".", threads, steps, mc_precision_name(which),
                 peer_keep_heap ? " --keep-heap" : "");
        theirs[p] = run_side(command, version, sizeof version);
    }
    print_conditions(threads, steps, both ? "fp32 and bf16" : mc_precision_name(precision), version);
    if (both) print_both(ours, theirs);
    else print_one(&ours[0], &theirs[0]);
    return 0;
}

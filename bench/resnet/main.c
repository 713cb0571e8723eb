/* bench_resnet — ResNet-50 in mmchain and in PyTorch, side by side.
 *
 *     bench_resnet [--threads 1,2] [--rows eval32,train32,train100,eval224]
 *                  [--min-seconds S] [--peer PATH] [--no-peer] [--precision fp32|bf16|both]
 *
 * For every thread count and row, runs this program's own row in a fresh
 * process (`bench_resnet --row ROW --threads N`) and then the PyTorch peer
 * (/usr/bin/python3 bench/peer/torch_resnet.py, same row, same threads, same
 * shapes), so each side's peak resident memory is its own. Prints one table
 * row per measurement with images/s, the ratio mmchain/PyTorch, and peak
 * memory. Rows:
 *   eval32    eval forward, batch 32, 3x64x64 (no gradients)
 *   train32   one training step, batch 32, 3x64x64: forward with fc =
 *             Linear(2048, 512), InfoNCE against fixed targets, backward, Adam
 *   train100  the same at batch 100 (the method's batch)
 *   train100r train100 with recomputation (mc_resnet_set_recompute: each
 *             block's forward runs again in backward); PyTorch runs
 *             train100, without checkpointing
 *   eval224   eval forward, batch 8, 3x224x224
 * --precision bf16: mmchain's graph runs its products with bf16 operands
 * (mc_graph_set_precision) and the peer runs under
 * torch.autocast("cpu", dtype=torch.bfloat16). --precision both: each row
 * in both precisions on both sides, printed as one line per row with the
 * ratios bf16 / fp32 (ours), ours bf16 / PyTorch autocast, and our peak
 * memory in each precision.
 * Every row also prints, for each side, the fraction of the CPU's fp32 peak
 * its rate is: GFLOP per image (resnet_gflop: the convolutions and fc of
 * the layer shapes; ResNet-50 at 64x64 is 0.66 forward, 1.97 for a training
 * step) x images/s / (threads x bench_peak_gflops_per_thread()).
 * train100r counts the work of train100 (its recomputed forward is extra
 * work, not counted: the fraction says how close the row gets to the
 * CPU's limit on the step's useful work).
 * Both children get the same environment. Unless OMP_WAIT_POLICY is set, it
 * is set to PASSIVE for both: libgomp's default spinning starves OpenBLAS's
 * threads (see bench/resnet/README.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mmchain/mmchain.h"
#include "mmchain/models.h"
#include "mmchain/optim.h"

#include "../common.h"

typedef struct row_spec {
    const char *name;
    bool train;
    int batch, size;
    bool recompute;       /* mc_resnet_set_recompute */
    const char *peer_row; /* the row PyTorch runs, when not `name` */
} row_spec;

static const row_spec ROWS[] = {
    {"eval32", false, 32, 64, false, NULL},
    {"train32", true, 32, 64, false, NULL},
    {"train100", true, 100, 64, false, NULL},
    {"eval224", false, 8, 224, false, NULL},
    {"train100r", true, 100, 64, true, "train100"},
};
enum { N_ROWS = sizeof ROWS / sizeof ROWS[0] };

/* CPU time of the whole process (all threads): other tenants of a shared
 * machine cannot inflate it, so with one thread it is the cleanest measure
 * of the work a step needs. */
static double cpu_seconds(void) { return bench_clock_seconds(CLOCK_PROCESS_CPUTIME_ID); }

static void die(const char *what) {
    fprintf(stderr, "bench_resnet: %s: %s\n", what, mc_last_error());
    exit(1);
}

/* ---- one row of mmchain (the child process) ---- */

typedef struct bench_state {
    const row_spec *row;
    mc_resnet *model;
    mc_graph *g;
    mc_optimizer *adam;
    mc_tensor *x, *targets, *log_scale;
} bench_state;

static void bench_step(bench_state *s) {
    mc_tensor *out;
    if (!s->row->train) {
        CHECK(mc_resnet_forward(s->model, s->g, s->x, &out));
        mc_graph_reset(s->g);
        return;
    }
    mc_tensor *loss;
    mc_optimizer_zero_grad(s->adam);
    CHECK(mc_resnet_forward(s->model, s->g, s->x, &out));
    CHECK(mc_infonce(s->g, out, s->targets, s->log_scale, false, &loss));
    CHECK(mc_backward(s->g, loss));
    CHECK(mc_optimizer_step(s->adam));
    mc_graph_reset(s->g);
}

static int run_row(const row_spec *row, int threads, double min_seconds, mc_precision precision) {
    mc_set_num_threads(threads);
    bench_state s = {.row = row};
    mc_resnet_config config;
    CHECK(mc_resnet_config_for_depth(50, &config));
    config.fc_out = row->train ? 512 : 1000;
    CHECK(mc_resnet_new(&s.model, &config, 0));
    mc_resnet_set_training(s.model, row->train);
    mc_resnet_set_recompute(s.model, row->recompute);
    CHECK(mc_graph_new(&s.g));
    mc_graph_set_grad_enabled(s.g, row->train);
    mc_graph_set_precision(s.g, precision);
    mc_rng rng;
    mc_rng_seed(&rng, 1);
    CHECK(mc_tensor_new(&s.x, MC_SHAPE(row->batch, 3, row->size, row->size), "x"));
    mc_tensor_normal(s.x, &rng, 0.0f, 1.0f);
    if (row->train) {
        mc_adam_config adam = mc_adam_defaults();
        adam.lr = 1e-4f;
        CHECK(mc_optimizer_adam(&s.adam, &s.model->params, adam));
        CHECK(mc_tensor_new(&s.targets, MC_SHAPE(row->batch, 512), "targets"));
        mc_tensor_normal(s.targets, &rng, 0.0f, 1.0f);
        CHECK(mc_tensor_new(&s.log_scale, MC_SHAPE(1), "log_scale"));
        s.log_scale->data[0] = logf(1.0f / 0.07f);
    }

    /* Warm-up, two steps: the first grows the arena chunk by chunk and
     * creates the Adam state and thread pools; at its reset the graph lays
     * the arena and the gradient blocks out anew, one region each, and the
     * second step touches those pages for the first time (~200,000 page
     * faults at batch 100, counted with getrusage). From the third step on
     * a step faults no page. */
    bench_step(&s);
    bench_step(&s);
    /* MMCHAIN_PROFILE=1: report the measured steps only (the warm-up's
     * first-touch page faults would dominate some rows). */
    mc_profile_reset();
    double times[50], cpu_times[50];
    int n = 0;
    double start = bench_now_seconds();
    while (n < 3 || (bench_now_seconds() - start < min_seconds && n < 50)) {
        double t0 = bench_now_seconds(), c0 = cpu_seconds();
        bench_step(&s);
        times[n] = bench_now_seconds() - t0;
        cpu_times[n++] = cpu_seconds() - c0;
    }
    double median = bench_median(times, n), cpu_median = bench_median(cpu_times, n);
    printf("row=%s threads=%d images_per_s=%.3f seconds_per_iter=%.4f cpu_seconds_per_iter=%.4f "
           "images_per_cpu_s=%.3f iters=%d peak_rss_mb=%.1f\n",
           row->name, threads, row->batch / median, median, cpu_median, row->batch / cpu_median, n,
           (double)mc_peak_rss_bytes() / (1024.0 * 1024.0));
    mc_optimizer_free(s.adam);
    mc_tensor_free(s.x);
    mc_tensor_free(s.targets);
    mc_tensor_free(s.log_scale);
    mc_graph_free(s.g);
    mc_resnet_free(s.model);
    return 0;
}

/* ---- the work a row needs ---- */

/* Multiply-adds of a k x k convolution from cin to cout channels whose output
 * is out x out, per image. */
static double conv_macs(double k, double cin, double cout, double out) { return k * k * cin * cout * out * out; }

/* GFLOP (2 per multiply-add) per image of one row: the convolutions and the
 * fc layer of `config`'s layer shapes at size x size (torchvision's
 * layout: 7x7 stride-2 stem, 3x3 stride-2 max pool, stride on the 3x3 conv
 * of a stage's first block, 1x1 stride-s projection where the shape
 * changes). Batch norm, ReLU, pooling and the loss are left out (about 1 %).
 * A training step runs each product three times (forward, input gradient,
 * weight gradient) except the stem's input gradient, which nobody needs. */
static double resnet_gflop(const mc_resnet_config *config, int size, bool train) {
    bool bottleneck = config->block == MC_RESNET_BOTTLENECK;
    int expansion = bottleneck ? 4 : 1;
    double side = (size + 2 * 3 - 7) / 2 + 1; /* the stem's output */
    double stem = conv_macs(7, config->in_channels, config->base_width, side), body = 0.0;
    side = floor((side + 2 - 3) / 2) + 1; /* the max pool */
    double in = config->base_width;
    for (int stage = 0; stage < 4; stage++) {
        double width = config->base_width << stage, out = width * expansion;
        for (int b = 0; b < config->layers[stage]; b++) {
            int stride = stage > 0 && b == 0 ? 2 : 1;
            double next = floor((side + 2 - 3) / stride) + 1;
            if (bottleneck)
                body += conv_macs(1, in, width, side) + conv_macs(3, width, width, next) +
                        conv_macs(1, width, out, next);
            else
                body += conv_macs(3, in, width, next) + conv_macs(3, width, out, next);
            if (stride != 1 || in != out) body += conv_macs(1, in, out, next);
            in = out;
            side = next;
        }
    }
    body += in * (config->fc_out > 0 ? config->fc_out : 0);
    double macs = train ? 3.0 * (stem + body) - stem : stem + body;
    return 2.0 * macs * 1e-9;
}

/* Percent of `threads` cores' fp32 peak that images_per_s of `row` is. */
static double percent_of_peak(const row_spec *row, int threads, double images_per_s) {
    mc_resnet_config config;
    if (mc_resnet_config_for_depth(50, &config) != MC_OK) return NAN;
    config.fc_out = row->train ? 512 : 1000;
    return 100.0 * resnet_gflop(&config, row->size, row->train) * images_per_s /
           (threads * bench_peak_gflops_per_thread());
}

/* ---- the driver ---- */

typedef struct result {
    bool ok;
    double images_per_s, images_per_cpu_s, peak_mb;
} result;

/* Run `command`, parse its "images_per_s=... peak_rss_mb=..." line. */
static result run_child(const char *command) {
    result r = {0};
    FILE *pipe = popen(command, "r");
    if (!pipe) return r;
    char line[512];
    while (fgets(line, sizeof line, pipe)) {
        const char *ips = strstr(line, "images_per_s="), *rss = strstr(line, "peak_rss_mb=");
        if (ips && rss) {
            r.images_per_s = atof(ips + strlen("images_per_s="));
            const char *cpu = strstr(line, "images_per_cpu_s=");
            r.images_per_cpu_s = cpu ? atof(cpu + strlen("images_per_cpu_s=")) : NAN;
            r.peak_mb = atof(rss + strlen("peak_rss_mb="));
            r.ok = true;
        } else {
            fputs(line, stderr);
        }
    }
    if (pclose(pipe) != 0) r.ok = false;
    return r;
}

/* One row on both sides in `precision` (the peer only when `peer`). */
static const row_spec *find_row(const char *name);

static void measure(const char *self, const char *peer_path, bool peer, const char *name,
                    int threads, double min_seconds, mc_precision precision, result *ours,
                    result *theirs) {
    char command[2600];
    snprintf(command, sizeof command, "'%s' --row %s --threads %d --min-seconds %g --precision %s",
             self, name, threads, min_seconds, mc_precision_name(precision));
    *ours = run_child(command);
    *theirs = (result){0};
    if (!peer) return;
    snprintf(command, sizeof command,
             "/usr/bin/python3 '%s' --row %s --threads %d --min-seconds %g --precision %s",
             peer_path, find_row(name)->peer_row ? find_row(name)->peer_row : name, threads,
             min_seconds, mc_precision_name(precision));
    *theirs = run_child(command);
}

static double ratio(result a, result b, bool cpu) {
    if (!a.ok || !b.ok) return NAN;
    return cpu ? a.images_per_cpu_s / b.images_per_cpu_s : a.images_per_s / b.images_per_s;
}

static void print_one_header(mc_precision precision) {
    printf("precision %s (mmchain bf16 products on %s; PyTorch %s)\n\n", mc_precision_name(precision),
           mc_gemm_bf16_kernel_name(),
           precision == MC_PRECISION_BF16 ? "torch.autocast bfloat16" : "float32");
    printf("| row | threads | mmchain img/s | PyTorch img/s | ratio | mmchain img/CPU-s | PyTorch "
           "img/CPU-s | CPU ratio | mmchain peak MB | PyTorch peak MB | memory ratio | mmchain %% of "
           "fp32 peak | PyTorch %% of fp32 peak |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
}

/* --precision both: one line per row, fp32 and bf16 side by side. */
static void print_both_header(void) {
    printf("precision fp32 and bf16 (mmchain bf16 products on %s; PyTorch float32 and "
           "torch.autocast bfloat16)\n\n", mc_gemm_bf16_kernel_name());
    printf("| row | threads | mmchain fp32 img/s | mmchain bf16 img/s | bf16 / fp32 | PyTorch fp32 "
           "img/s | PyTorch autocast img/s | mmchain bf16 / autocast | bf16 / fp32, CPU-s | "
           "bf16 / autocast, CPU-s | mmchain fp32 peak MB | mmchain bf16 peak MB | mmchain fp32, %% of peak | "
           "mmchain bf16, %% of fp32 peak | PyTorch fp32, %% of peak | PyTorch autocast, %% of fp32 peak |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
}

static void print_both_row(const row_spec *row, int threads, const result ours[2], const result theirs[2]) {
    printf("| %s | %d | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.2f | %.2f | %.0f | %.0f | %.1f | %.1f "
           "| %.1f | %.1f |\n", row->name,
           threads, ours[0].images_per_s, ours[1].images_per_s, ratio(ours[1], ours[0], false),
           theirs[0].images_per_s, theirs[1].images_per_s, ratio(ours[1], theirs[1], false),
           ratio(ours[1], ours[0], true), ratio(ours[1], theirs[1], true), ours[0].peak_mb,
           ours[1].peak_mb, percent_of_peak(row, threads, ours[0].images_per_s),
           percent_of_peak(row, threads, ours[1].images_per_s),
           percent_of_peak(row, threads, theirs[0].images_per_s),
           percent_of_peak(row, threads, theirs[1].images_per_s));
}

static const row_spec *find_row(const char *name) {
    for (int i = 0; i < N_ROWS; i++)
        if (strcmp(ROWS[i].name, name) == 0) return &ROWS[i];
    return NULL;
}

static void print_environment(void) {
    char cpu[512], commit[128];
    bench_cpu_model(cpu, sizeof cpu);
    bench_commit(commit, sizeof commit);
    const char *coretype = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("# mmchain %s (commit %s), ResNet-50, OpenBLAS core %s (OPENBLAS_CORETYPE=%s, "
           "OPENBLAS_L2_SIZE=%s)\n",
           mc_version(), commit, mc_blas_core_name(), coretype ? coretype : "(unset)", l2 ? l2 : "(unset)");
    printf("# CPU: %s, %ld processors; OMP_WAIT_POLICY=%s for both sides; fp32 peak %.0f GFLOP/s "
           "per thread\n", cpu, sysconf(_SC_NPROCESSORS_ONLN), getenv("OMP_WAIT_POLICY"),
           bench_peak_gflops_per_thread());
}

int main(int argc, char **argv) {
    const char *threads_list = "1,2", *rows_list = "eval32,train32,train100,eval224";
    const char *one_row = NULL;
    double min_seconds = 4.0;
    int row_threads = 1;
    bool peer = true, both = false;
    mc_precision precision = MC_PRECISION_FP32;
    char peer_path[1200];
    /* The peer script lives at ../peer/ from this file (an absolute path
     * under CMake). */
    snprintf(peer_path, sizeof peer_path, "%s", __FILE__);
    char *slash = strrchr(peer_path, '/');
    if (slash) snprintf(slash, sizeof peer_path - (size_t)(slash - peer_path), "/../peer/torch_resnet.py");
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "--no-peer")) peer = false;
        else if (!value) {
            fprintf(stderr, "usage: see the comment at the top of bench/resnet/main.c\n");
            return 2;
        } else if (!strcmp(arg, "--threads")) threads_list = value, row_threads = atoi(value), i++;
        else if (!strcmp(arg, "--rows")) rows_list = value, i++;
        else if (!strcmp(arg, "--row")) one_row = value, i++;
        else if (!strcmp(arg, "--min-seconds")) min_seconds = atof(value), i++;
        else if (!strcmp(arg, "--precision") && (!strcmp(value, "fp32") || !strcmp(value, "bf16")))
            precision = strcmp(value, "bf16") ? MC_PRECISION_FP32 : MC_PRECISION_BF16, i++;
        else if (!strcmp(arg, "--precision") && !strcmp(value, "both")) both = true, i++;
        else if (!strcmp(arg, "--peer")) snprintf(peer_path, sizeof peer_path, "%s", value), i++;
        else {
            fprintf(stderr, "bench_resnet: unknown option %s\n", arg);
            return 2;
        }
    }
    if (one_row) {
        const row_spec *row = find_row(one_row);
        if (!row || row_threads < 1) {
            fprintf(stderr, "bench_resnet: unknown row %s\n", one_row);
            return 2;
        }
        return run_row(row, row_threads, min_seconds, precision);
    }

    setenv("OMP_WAIT_POLICY", getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "PASSIVE", 1);
    char self[1024];
    if (!bench_self_path("bench_resnet", self, sizeof self)) return 1;
    print_environment();
    if (both) print_both_header();
    else print_one_header(precision);
    fflush(stdout);
    char threads_copy[128];
    snprintf(threads_copy, sizeof threads_copy, "%s", threads_list);
    for (char *t = strtok(threads_copy, ","); t; t = strtok(NULL, ",")) {
        int threads = atoi(t);
        char rows_copy[256], *save = NULL;
        snprintf(rows_copy, sizeof rows_copy, "%s", rows_list);
        for (char *name = strtok_r(rows_copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
            if (!find_row(name)) {
                fprintf(stderr, "bench_resnet: unknown row %s\n", name);
                return 2;
            }
            if (both) {
                result ours[2], theirs[2];
                for (int p = 0; p < 2; p++)
                    measure(self, peer_path, peer, name, threads, min_seconds,
                            p ? MC_PRECISION_BF16 : MC_PRECISION_FP32, &ours[p], &theirs[p]);
                print_both_row(find_row(name), threads, ours, theirs);
                fflush(stdout);
                continue;
            }
            result ours, theirs;
            measure(self, peer_path, peer, name, threads, min_seconds, precision, &ours, &theirs);
            bool measured = theirs.ok && ours.ok;
            printf("| %s | %d | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.0f | %.0f | %.2f | %.1f | %.1f |\n",
                   name, threads, ours.images_per_s, theirs.images_per_s, ratio(ours, theirs, false),
                   ours.images_per_cpu_s, theirs.images_per_cpu_s, ratio(ours, theirs, true),
                   ours.peak_mb, theirs.peak_mb, measured ? ours.peak_mb / theirs.peak_mb : NAN,
                   percent_of_peak(find_row(name), threads, ours.images_per_s),
                   percent_of_peak(find_row(name), threads, theirs.images_per_s));
            fflush(stdout);
        }
    }
    return 0;
}

/* bench_conv: how close mc_conv2d comes to the GEMM it is built on.
 *
 * For every distinct convolution of ResNet-50 (torchvision topology: the
 * bottleneck's stride on its 3x3 conv) at two input sizes, it times
 *   forward       out = conv(x, w)                GEMM (rows x OC x K)
 *   input grad    dx  (recorded with x only)      GEMM (rows x K x OC)
 *   weight grad   dw  (recorded with w only)      GEMM (OC x K x rows)
 * with rows = N*OH*OW and K = KH*KW*C, and next to each the rate of a bare
 * mc_sgemm (the GEMM the conv itself calls: our AVX-512 kernel or OpenBLAS,
 * see the header line) of exactly that shape and transpose, in the same run.
 * Every number is the median of --reps repetitions after one warm-up.
 * Then it times one whole training step of a small convnet.
 *
 * Output is Markdown, ready for bench/README.md.
 *
 *   bench_conv [--reps N] [--size 64|224] [--no-step] [--cpu-time] [--column-budget MiB]
 *   MMCHAIN_THREADS=1 bench_conv */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mmchain/mmchain.h"
/* conv.c's kernels, to time them without the tape around them */
#include "../../lib/ops/conv_internal.h"
#include "../common.h"

/* ---- timing ---- */

/* Wall-clock time by default. --cpu-time switches to the process's CPU
 * time, which a shared machine's other tenants cannot inflate (for one
 * thread it measures the same work; with several it sums their CPU
 * seconds, so it is no measure of parallel speed-up). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now_seconds(void) { return bench_clock_seconds(bench_clock); }

enum { MAX_REPS = 64 };

/* ---- the convolutions of ResNet-50 ---- */

typedef struct conv_shape {
    const char *where; /* which layer(s) of ResNet-50 */
    int c, oc, kernel, stride;
    int scale;         /* input side = image side / scale */
    int count;         /* how many convs of this shape the network has */
} conv_shape;

static const conv_shape resnet50_convs[] = {
    {"conv1 7x7/2", 3, 64, 7, 2, 1, 1},
    {"layer1 1x1 64>64", 64, 64, 1, 1, 4, 1},
    {"layer1 3x3 64", 64, 64, 3, 1, 4, 3},
    {"layer1 1x1 64>256 (+ds)", 64, 256, 1, 1, 4, 4},
    {"layer1 1x1 256>64", 256, 64, 1, 1, 4, 2},
    {"layer2 1x1 256>128", 256, 128, 1, 1, 4, 1},
    {"layer2 3x3/2 128", 128, 128, 3, 2, 4, 1},
    {"layer2 1x1 128>512", 128, 512, 1, 1, 8, 4},
    {"layer2 ds 1x1/2 256>512", 256, 512, 1, 2, 4, 1},
    {"layer2 1x1 512>128", 512, 128, 1, 1, 8, 3},
    {"layer2 3x3 128", 128, 128, 3, 1, 8, 3},
    {"layer3 1x1 512>256", 512, 256, 1, 1, 8, 1},
    {"layer3 3x3/2 256", 256, 256, 3, 2, 8, 1},
    {"layer3 1x1 256>1024", 256, 1024, 1, 1, 16, 6},
    {"layer3 ds 1x1/2 512>1024", 512, 1024, 1, 2, 8, 1},
    {"layer3 1x1 1024>256", 1024, 256, 1, 1, 16, 5},
    {"layer3 3x3 256", 256, 256, 3, 1, 16, 5},
    {"layer4 1x1 1024>512", 1024, 512, 1, 1, 16, 1},
    {"layer4 3x3/2 512", 512, 512, 3, 2, 16, 1},
    {"layer4 1x1 512>2048", 512, 2048, 1, 1, 32, 3},
    {"layer4 ds 1x1/2 1024>2048", 1024, 2048, 1, 2, 16, 1},
    {"layer4 1x1 2048>512", 2048, 512, 1, 1, 32, 2},
    {"layer4 3x3 512", 512, 512, 3, 1, 32, 2},
};
enum { N_SHAPES = sizeof resnet50_convs / sizeof resnet50_convs[0] };

/* Three buffers that hold any of the GEMMs of one conv: rows x K (columns),
 * rows x OC (output), OC x K (weight). */
typedef struct gemm_buffers {
    float *columns, *output, *weight;
} gemm_buffers;

static void fill_pattern(float *a, long n) {
    for (long i = 0; i < n; i++) a[i] = (float)(i % 7) * 0.1f - 0.3f;
}

static mc_status gemm_buffers_new(gemm_buffers *b, long rows, long oc, long k) {
    b->columns = malloc((size_t)(rows * k) * sizeof(float));
    b->output = malloc((size_t)(rows * oc) * sizeof(float));
    b->weight = malloc((size_t)(oc * k) * sizeof(float));
    if (!b->columns || !b->output || !b->weight) {
        free(b->columns), free(b->output), free(b->weight);
        b->columns = b->output = b->weight = NULL;
        return mc_error(MC_ERR_NOMEM, "bench: out of memory");
    }
    fill_pattern(b->columns, rows * k);
    fill_pattern(b->output, rows * oc);
    fill_pattern(b->weight, oc * k);
    return MC_OK;
}

static void gemm_buffers_free(gemm_buffers *b) {
    free(b->columns), free(b->output), free(b->weight);
}

typedef enum {
    MEASURE_FORWARD,
    MEASURE_INPUT_GRAD,
    MEASURE_WEIGHT_GRAD,
    MEASURE_FORWARD_OP /* mc_conv2d: the kernel + its zero-filled arena output */
} measure_kind;

/* Seconds of the bare GEMM that `kind` of a conv performs:
 *   forward      output[rows, OC]  = columns[rows, K] @ weight[OC, K]^T
 *   input grad   columns[rows, K]  = output[rows, OC] @ weight[OC, K]
 *   weight grad  weight[OC, K]     = output[rows, OC]^T @ columns[rows, K] */
static double time_sgemm(measure_kind kind, gemm_buffers *b, int rows, int oc, int k) {
    double t0 = now_seconds();
    if (kind == MEASURE_FORWARD)
        mc_sgemm(false, true, rows, oc, k, 1.0f, b->columns, k, b->weight, k, 0.0f, b->output, oc);
    else if (kind == MEASURE_INPUT_GRAD)
        mc_sgemm(false, false, rows, k, oc, 1.0f, b->output, oc, b->weight, k, 0.0f, b->columns, k);
    else
        mc_sgemm(true, false, oc, k, rows, 1.0f, b->output, oc, b->columns, k, 0.0f, b->weight, k);
    return now_seconds() - t0;
}

/* The conv under test, with preallocated buffers for its outputs. */
typedef struct conv_case {
    mc_conv2d_geometry geo;
    mc_tensor *x, *w;
    mc_conv2d_params p;
    float *out, *dout, *dx, *dw; /* (rows, OC), (rows, OC), x's size, w's size */
} conv_case;

/* Seconds of one run of `kind` through conv.c's kernels (what the op and
 * its backward node run), or, for the op column, of mc_conv2d itself. */
static mc_status time_conv_once(mc_graph *g, conv_case *cc, measure_kind kind, double *seconds) {
    const float *x = cc->x->data, *w = cc->w->data;
    double t0 = now_seconds();
    if (kind == MEASURE_FORWARD) {
        MC_TRY(mc_conv2d_forward_kernel(&cc->geo, x, w, NULL, cc->out));
    } else if (kind == MEASURE_INPUT_GRAD) {
        MC_TRY(mc_conv2d_backward_kernel(&cc->geo, x, w, cc->dout, cc->dx, NULL));
    } else if (kind == MEASURE_WEIGHT_GRAD) {
        MC_TRY(mc_conv2d_backward_kernel(&cc->geo, x, w, cc->dout, NULL, cc->dw));
    } else {
        mc_graph_reset(g);
        mc_tensor *y;
        t0 = now_seconds();
        MC_TRY(mc_conv2d(g, cc->x, cc->w, NULL, cc->p, &y));
    }
    *seconds = now_seconds() - t0;
    return MC_OK;
}

typedef struct rate_pair {
    double conv_seconds, gemm_seconds;
} rate_pair;

/* Median seconds of the conv and of its GEMM, measured alternately (one
 * warm-up each) so that both see the same machine load. */
static mc_status time_pair(mc_graph *g, conv_case *cc, measure_kind kind, gemm_buffers *b, int reps,
                           rate_pair *out) {
    double conv_times[MAX_REPS], gemm_times[MAX_REPS];
    int rows = (int)cc->geo.rows, oc = (int)cc->geo.oc, k = (int)cc->geo.k_total;
    for (int r = -1; r < reps; r++) {
        double conv_seconds, gemm_seconds = 0;
        MC_TRY(time_conv_once(g, cc, kind, &conv_seconds));
        if (kind != MEASURE_FORWARD_OP) gemm_seconds = time_sgemm(kind, b, rows, oc, k);
        if (r >= 0) conv_times[r] = conv_seconds, gemm_times[r] = gemm_seconds;
    }
    out->conv_seconds = bench_median(conv_times, reps);
    out->gemm_seconds = bench_median(gemm_times, reps);
    return MC_OK;
}

static double gflops(double flops, double seconds) { return flops / seconds * 1e-9; }

/* Totals over the whole network (each shape weighted by its count). */
typedef struct totals {
    double flops, conv_seconds[4], gemm_seconds[4];
} totals;

static void conv_case_free(conv_case *cc) {
    mc_tensor_free(cc->x), mc_tensor_free(cc->w);
    free(cc->out), free(cc->dout), free(cc->dx), free(cc->dw);
}

static mc_status conv_case_new(conv_case *cc, const conv_shape *cs, int image, int batch) {
    memset(cc, 0, sizeof *cc);
    int side = image / cs->scale;
    cc->p = mc_conv2d_simple(cs->stride, cs->kernel / 2);
    MC_TRY(mc_tensor_new(&cc->x, MC_SHAPE(batch, side, side, cs->c), "x"));
    MC_TRY(mc_tensor_new(&cc->w, MC_SHAPE(cs->oc, cs->c, cs->kernel, cs->kernel), "weight"));
    MC_TRY(mc_conv2d_geometry_of(cc->x, cc->w, NULL, cc->p, &cc->geo));
    mc_rng rng;
    mc_rng_seed(&rng, 1);
    mc_tensor_uniform(cc->x, &rng, -1.0f, 1.0f);
    mc_tensor_uniform(cc->w, &rng, -0.1f, 0.1f);
    size_t out_floats = (size_t)(cc->geo.rows * cc->geo.oc);
    cc->out = calloc(out_floats, sizeof(float));
    cc->dout = calloc(out_floats, sizeof(float));
    cc->dx = calloc((size_t)cc->x->numel, sizeof(float));
    cc->dw = calloc((size_t)cc->w->numel, sizeof(float));
    if (!cc->out || !cc->dout || !cc->dx || !cc->dw) return mc_error(MC_ERR_NOMEM, "bench: out of memory");
    for (size_t i = 0; i < out_floats; i++) cc->dout[i] = (float)(i % 3) - 1.0f;
    return MC_OK;
}

static mc_status bench_shape(mc_graph *g, const conv_shape *cs, int image, int batch, int reps,
                             totals *sum) {
    conv_case cc;
    gemm_buffers buffers = {0};
    rate_pair r[4];
    mc_status status = conv_case_new(&cc, cs, image, batch);
    if (status == MC_OK) status = gemm_buffers_new(&buffers, cc.geo.rows, cc.geo.oc, cc.geo.k_total);
    for (int kind = 0; kind < 4 && status == MC_OK; kind++)
        status = time_pair(g, &cc, (measure_kind)kind, &buffers, reps, &r[kind]);
    if (status == MC_OK) {
        double flops = 2.0 * cc.geo.rows * (double)cc.geo.oc * cc.geo.k_total;
        printf("| %-26s | %3lldx%-3lld | %6lld x %4lld x %4lld |", cs->where, (long long)cc.geo.h,
               (long long)cc.geo.w, (long long)cc.geo.rows, (long long)cc.geo.oc,
               (long long)cc.geo.k_total);
        for (int kind = 0; kind < 3; kind++) {
            double conv = gflops(flops, r[kind].conv_seconds), gemm = gflops(flops, r[kind].gemm_seconds);
            printf(" %6.1f | %6.1f | %4.0f%% |", conv, gemm, 100.0 * conv / gemm);
        }
        printf(" %6.1f |\n", gflops(flops, r[MEASURE_FORWARD_OP].conv_seconds));
        fflush(stdout);
        for (int kind = 0; kind < 4; kind++) {
            sum->conv_seconds[kind] += cs->count * r[kind].conv_seconds;
            sum->gemm_seconds[kind] += cs->count * r[kind].gemm_seconds;
        }
        sum->flops += cs->count * flops;
    }
    gemm_buffers_free(&buffers);
    conv_case_free(&cc);
    return status;
}

static mc_status bench_resnet50_convs(int image, int batch, int reps) {
    printf("\n### ResNet-50 convolutions, %dx%d input, batch %d (GFLOP/s, median of %d)\n\n",
           image, image, batch, reps);
    printf("| conv | input | GEMM M x N x K (fwd) | fwd | sgemm | fwd/sgemm | dX | sgemm | dX/sgemm "
           "| dW | sgemm | dW/sgemm | fwd via mc_conv2d |\n");
    printf("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    mc_graph *g;
    MC_TRY(mc_graph_new(&g));
    totals sum = {0};
    mc_status status = MC_OK;
    for (int i = 0; i < N_SHAPES && status == MC_OK; i++)
        status = bench_shape(g, &resnet50_convs[i], image, batch, reps, &sum);
    if (status == MC_OK) {
        printf("| **all 53 convs, weighted** | | |");
        for (int i = 0; i < 3; i++) {
            double conv = gflops(sum.flops, sum.conv_seconds[i]);
            double gemm = gflops(sum.flops, sum.gemm_seconds[i]);
            printf(" **%.1f** | %.1f | **%.0f%%** |", conv, gemm, 100.0 * conv / gemm);
        }
        printf(" **%.1f** |\n", gflops(sum.flops, sum.conv_seconds[MEASURE_FORWARD_OP]));
    }
    mc_graph_free(g);
    return status;
}

/* ---- a whole training step of a small convnet ----
 * x (32, 64, 64, 3) -> [conv3x3 -> bn -> relu -> maxpool2] x 2 (32, 64 ch)
 * -> conv3x3/2 128 -> bn -> relu -> global avgpool -> linear 10
 * -> cross-entropy; backward; a plain SGD update. */

typedef struct small_convnet {
    mc_param_list params;
    mc_tensor *conv_w[3], *bn_w[3], *bn_b[3], *bn_mean[3], *bn_var[3], *fc_w, *fc_b;
} small_convnet;

static const int convnet_widths[4] = {3, 32, 64, 128};

static mc_status convnet_init(small_convnet *net, mc_rng *rng) {
    memset(net, 0, sizeof *net);
    for (int i = 0; i < 3; i++) {
        int c = convnet_widths[i], oc = convnet_widths[i + 1];
        MC_TRY(mc_params_new(&net->params, &net->conv_w[i], MC_SHAPE(oc, c, 3, 3), true, "conv%d.weight", i));
        mc_init_default_uniform(net->conv_w[i], 9 * c, rng);
        MC_TRY(mc_params_new(&net->params, &net->bn_w[i], MC_SHAPE(oc), true, "bn%d.weight", i));
        mc_tensor_fill(net->bn_w[i], 1.0f);
        MC_TRY(mc_params_new(&net->params, &net->bn_b[i], MC_SHAPE(oc), true, "bn%d.bias", i));
        MC_TRY(mc_params_new(&net->params, &net->bn_mean[i], MC_SHAPE(oc), false, "bn%d.running_mean", i));
        MC_TRY(mc_params_new(&net->params, &net->bn_var[i], MC_SHAPE(oc), false, "bn%d.running_var", i));
        mc_tensor_fill(net->bn_var[i], 1.0f);
    }
    MC_TRY(mc_params_new(&net->params, &net->fc_w, MC_SHAPE(10, 128), true, "fc.weight"));
    mc_init_default_uniform(net->fc_w, 128, rng);
    MC_TRY(mc_params_new(&net->params, &net->fc_b, MC_SHAPE(10), true, "fc.bias"));
    return MC_OK;
}

static mc_status convnet_step(mc_graph *g, small_convnet *net, mc_tensor *x, const int32_t *labels,
                              float *loss_value) {
    mc_graph_reset(g);
    mc_params_zero_grad(&net->params);
    mc_tensor *h = x;
    for (int i = 0; i < 3; i++) {
        MC_TRY(mc_conv2d(g, h, net->conv_w[i], NULL, mc_conv2d_simple(i == 2 ? 2 : 1, 1), &h));
        MC_TRY(mc_batchnorm2d(g, h, net->bn_w[i], net->bn_b[i], net->bn_mean[i], net->bn_var[i],
                              true, 0.1f, 1e-5f, &h));
        MC_TRY(mc_relu(g, h, &h));
        if (i < 2) MC_TRY(mc_maxpool2d(g, h, 2, 2, 0, &h));
    }
    mc_tensor *pooled, *logits, *loss;
    MC_TRY(mc_global_avgpool(g, h, &pooled));
    MC_TRY(mc_linear(g, pooled, net->fc_w, net->fc_b, &logits));
    MC_TRY(mc_cross_entropy(g, logits, labels, 0.0f, &loss));
    MC_TRY(mc_backward(g, loss));
    for (int i = 0; i < net->params.count; i++) {
        mc_tensor *t = net->params.items[i];
        if (!t->requires_grad || !t->grad) continue;
        for (int64_t j = 0; j < t->numel; j++) t->data[j] -= 0.05f * t->grad[j];
    }
    *loss_value = loss->data[0];
    return MC_OK;
}

static mc_status bench_convnet_step(int reps) {
    enum { BATCH = 32, SIDE = 64 };
    mc_rng rng;
    mc_rng_seed(&rng, 7);
    small_convnet net;
    mc_graph *g = NULL;
    mc_tensor *x = NULL;
    int32_t labels[BATCH];
    for (int i = 0; i < BATCH; i++) labels[i] = i % 10;
    mc_status status = convnet_init(&net, &rng);
    if (status == MC_OK) status = mc_graph_new(&g);
    if (status == MC_OK) status = mc_tensor_new(&x, MC_SHAPE(BATCH, SIDE, SIDE, 3), "x");
    if (status != MC_OK) goto done;
    mc_tensor_uniform(x, &rng, -1.0f, 1.0f);
    double times[MAX_REPS];
    float first_loss = 0, loss = 0;
    for (int r = -1; r < reps && status == MC_OK; r++) {
        double t0 = now_seconds();
        status = convnet_step(g, &net, x, labels, &loss);
        if (r == -1) first_loss = loss;
        if (r >= 0) times[r] = now_seconds() - t0;
    }
    if (status != MC_OK) goto done;
    /* conv FLOPs: forward + input grad + weight grad = 3x the forward
     * (the first conv's input grad is not needed: 2x for it). */
    double conv_flops = 0;
    int side = SIDE;
    for (int i = 0; i < 3; i++) {
        int out_side = i == 2 ? side / 2 : side;
        double fwd = 2.0 * BATCH * out_side * out_side * convnet_widths[i + 1] * 9.0 * convnet_widths[i];
        conv_flops += fwd * (i == 0 ? 2 : 3);
        side = out_side / 2;
    }
    double step = bench_median(times, reps);
    printf("\n### Small convnet training step (batch %d, %dx%dx3, 3 conv+bn+relu, pools, linear, "
           "cross-entropy, SGD)\n\n",
           BATCH, SIDE, SIDE);
    printf("| step (ms) | images/s | conv GFLOP per step | conv GFLOP/s over the whole step | arena "
           "peak (MB) | loss first -> last |\n|---:|---:|---:|---:|---:|---|\n");
    printf("| %.1f | %.0f | %.2f | %.1f | %.1f | %.4f -> %.4f |\n", 1e3 * step, BATCH / step,
           conv_flops * 1e-9, gflops(conv_flops, step), mc_graph_arena_peak_bytes(g) / 1048576.0,
           first_loss, loss);
done:
    mc_tensor_free(x);
    mc_graph_free(g);
    mc_params_free(&net.params);
    return status;
}

int main(int argc, char **argv) {
    int reps = 5, only_size = 0, step = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) only_size = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-step") == 0) step = 0;
        else if (strcmp(argv[i], "--cpu-time") == 0) bench_clock = CLOCK_PROCESS_CPUTIME_ID;
        else if (strcmp(argv[i], "--column-budget") == 0 && i + 1 < argc)
            mc_conv2d_set_column_budget((size_t)(atof(argv[++i]) * 1048576.0));
        else {
            fprintf(stderr, "usage: bench_conv [--reps N] [--size 64|224] [--no-step] [--cpu-time]\n"
                            "       [--column-budget MiB]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "bench_conv: --reps must be 1..%d\n", MAX_REPS);
        return 2;
    }
    mc_threads_init_from_env();
    const char *coretype = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("## bench_conv: GEMM %s, OpenBLAS core %s, %d thread(s) (OPENBLAS_CORETYPE=%s, "
           "OPENBLAS_L2_SIZE=%s), %s\n",
           mc_gemm_kernel_name(), mc_blas_core_name(), mc_get_num_threads(), coretype ? coretype : "(unset)",
           l2 ? l2 : "(unset)", bench_clock == CLOCK_MONOTONIC ? "wall-clock time" : "process CPU time");
    mc_status status = MC_OK;
    if (!only_size || only_size == 64) status = bench_resnet50_convs(64, 32, reps);
    if (status == MC_OK && (!only_size || only_size == 224)) status = bench_resnet50_convs(224, 8, reps);
    if (status == MC_OK && step) status = bench_convnet_step(reps);
    if (status != MC_OK) {
        fprintf(stderr, "bench_conv: error: %s\n", mc_last_error());
        return 1;
    }
    return 0;
}

/* bench_gemm: mc_sgemm's two kernels side by side on the shapes the models
 * actually multiply: our packed AVX-512 kernel and OpenBLAS's cblas_sgemm
 * (whichever core OpenBLAS picked: see the header line), and our kernel
 * with bf16 operands (mc_gemm's MC_PRECISION_BF16; the header line says
 * whether it runs on vdpbf16ps or the emulation).
 *
 * Shapes (M x N x K, transposes as the callers pass them):
 *   ResNet-50 at 64x64, batch 32: a 1x1 conv, a 3x3 conv and a layer4 conv,
 *     each as forward (NT), input gradient (NN) and weight gradient (TN);
 *   ResNet-50 at 64x64, batch 100: the forward of layer1's and layer2's
 *     expanding 1x1 convs (small K, large C: the train100 step's), and
 *     layer1's input and weight gradients of its 64 > 256 conv and the
 *     input gradient of its 256 > 64 one (operands of 6.5 to 26 MB, little
 *     work per value);
 *   CLIP ViT-B/32 at batch 16: the MLP's first linear (50 tokens x 16);
 *   CLIP ViT-B/32 at batch 64, the recipe's CLIP batch: the MLP's two
 *     linears (3200 tokens: C of 39 MB, larger than the L3 cache);
 *   CLIP text, 10 prompts: the attention projection (770 tokens);
 *   one attention head (T = 77, head 64).
 * Every number is the median of --reps timed repetitions after a warm-up.
 *
 *   bench_gemm [--reps N] [--only TEXT] [--cold]     MMCHAIN_THREADS=1 bench_gemm
 * (--only: just the products whose name contains TEXT; --cold: each
 * product timed multiplies the next of several copies of the operands, at
 * least COLD_BYTES of them in all, so that they come from memory as a
 * training step's activations do, not from the cache) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmchain/mmchain.h"
#include "../common.h"

typedef struct gemm_shape {
    const char *what;
    bool trans_a, trans_b;
    int64_t M, N, K;
} gemm_shape;

static const gemm_shape shapes[] = {
    {"resnet layer1 1x1 256>64 fwd", false, true, 8192, 64, 256},
    {"resnet layer1 1x1 256>64 dx", false, false, 8192, 256, 64},
    {"resnet layer1 1x1 256>64 dw", true, false, 64, 256, 8192},
    {"resnet layer1 1x1 64>256 fwd b100", false, true, 25600, 256, 64},
    {"resnet layer1 1x1 64>256 dx b100", false, false, 25600, 64, 256},
    {"resnet layer1 1x1 64>256 dw b100", true, false, 256, 64, 25600},
    {"resnet layer1 1x1 256>64 dx b100", false, false, 25600, 256, 64},
    {"resnet layer2 1x1 128>512 fwd b100", false, true, 6400, 512, 128},
    {"resnet layer2 3x3 128 fwd", false, true, 2048, 128, 1152},
    {"resnet layer2 3x3 128 dx", false, false, 2048, 1152, 128},
    {"resnet layer2 3x3 128 dw", true, false, 128, 1152, 2048},
    {"resnet layer4 3x3 512 fwd", false, true, 128, 512, 4608},
    {"resnet layer4 3x3 512 dx", false, false, 128, 4608, 512},
    {"resnet layer4 3x3 512 dw", true, false, 512, 4608, 128},
    {"resnet conv1 7x7 fwd", false, true, 32768, 64, 147},
    {"clip vit mlp fc1", false, true, 800, 3072, 768},
    {"clip vit b64 mlp fc1", false, true, 3200, 3072, 768},
    {"clip vit b64 mlp fc2", false, true, 3200, 768, 3072},
    {"clip text qkv proj", false, true, 770, 512, 512},
    {"clip text mlp fc2 dx", false, false, 770, 2048, 512},
    {"attention head QK^T", false, true, 77, 77, 64},
    {"attention head PV", false, false, 77, 64, 77},
};

enum { MAX_REPS = 101 };
/* --cold: the operands' copies fill at least this much, 4x the L3 cache of
 * the machine the tables were measured on */
static const double COLD_BYTES = 128.0 * 1024 * 1024;

static float *random_floats(int64_t n, uint64_t seed) {
    float *v = malloc((size_t)n * sizeof(float));
    if (!v) return NULL;
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((seed >> 40) & 0xFFFF) / 32768.0f - 1.0f;
    }
    return v;
}

/* `copies` copies of one product's operands, one after another in A, B
 * and C (one copy: the same operands every time). */
typedef struct operands {
    float *A, *B, *C;
    int64_t copies;
} operands;

/* Median seconds of one product with the current kernel, operands in
 * `precision`; each product (repetition, and product within a batch of
 * tiny ones) takes the next copy of the operands. */
static double time_gemm(mc_precision precision, const gemm_shape *s, const operands *o, int reps) {
    int64_t lda = s->trans_a ? s->M : s->K, ldb = s->trans_b ? s->K : s->N;
    double times[MAX_REPS];
    /* Tiny products are timed in batches so the clock's resolution does not matter. */
    int inner = (int)(2e7 / (double)(s->M * s->N * s->K) + 1);
    int64_t next = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: the warm-up */
        double t0 = bench_now_seconds();
        for (int i = 0; i < inner; i++, next = (next + 1) % o->copies)
            mc_gemm(precision, s->trans_a, s->trans_b, s->M, s->N, s->K, 1.0f,
                    o->A + next * s->M * s->K, lda, o->B + next * s->K * s->N, ldb, 0.0f,
                    o->C + next * s->M * s->N, s->N);
        if (r >= 0) times[r] = (bench_now_seconds() - t0) / inner;
    }
    return bench_median(times, reps);
}

int main(int argc, char **argv) {
    int reps = 9;
    const char *only = NULL;
    bool cold = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--cold") == 0) cold = true;
        else {
            fprintf(stderr, "usage: bench_gemm [--reps N] [--only TEXT] [--cold]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS) reps = 9;
    if (mc_gemm_set_kernel(MC_GEMM_AVX512) != MC_OK) {
        fprintf(stderr, "bench_gemm: %s\n", mc_last_error());
        return 1;
    }
    printf("threads %d, OpenBLAS core %s, bf16 on %s, median of %d, operands %s\n\n",
           mc_get_num_threads(), mc_blas_core_name(), mc_gemm_bf16_kernel_name(), reps,
           cold ? "from memory (--cold)" : "in the cache as they stay");
    (void)mc_gemm_set_kernel(MC_GEMM_OPENBLAS);
    printf("| product | M x N x K | ours GFLOP/s | OpenBLAS GFLOP/s | ratio | ours bf16 GFLOP/s "
           "| bf16 / fp32 |\n");
    printf("|---|---|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const gemm_shape *s = &shapes[i];
        if (only && !strstr(s->what, only)) continue;
        const double bytes = 4.0 * (double)(s->M * s->K + s->K * s->N + s->M * s->N);
        operands o = {NULL, NULL, NULL, cold ? (int64_t)(COLD_BYTES / bytes) + 1 : 1};
        o.A = random_floats(o.copies * s->M * s->K, 1);
        o.B = random_floats(o.copies * s->K * s->N, 2);
        o.C = random_floats(o.copies * s->M * s->N, 3); /* written: no first-touch faults timed */
        if (!o.A || !o.B || !o.C) {
            free(o.A), free(o.B), free(o.C);
            fprintf(stderr, "bench_gemm: out of memory\n");
            return 1;
        }
        double flops = 2.0 * (double)s->M * (double)s->N * (double)s->K;
        (void)mc_gemm_set_kernel(MC_GEMM_AVX512);
        double ours = time_gemm(MC_PRECISION_FP32, s, &o, reps);
        double bf16 = time_gemm(MC_PRECISION_BF16, s, &o, reps);
        (void)mc_gemm_set_kernel(MC_GEMM_OPENBLAS);
        double blas = time_gemm(MC_PRECISION_FP32, s, &o, reps);
        printf("| %s (%c%c) | %lld x %lld x %lld | %.1f | %.1f | %.2f | %.1f | %.2f |\n", s->what,
               s->trans_a ? 'T' : 'N', s->trans_b ? 'T' : 'N', (long long)s->M, (long long)s->N,
               (long long)s->K, flops / ours * 1e-9, flops / blas * 1e-9, blas / ours,
               flops / bf16 * 1e-9, ours / bf16);
        fflush(stdout);
        free(o.A), free(o.B), free(o.C);
    }
    return 0;
}

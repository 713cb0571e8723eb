/* mc_sgemm: the matrix product under matmul, linear, conv, attention and
 * InfoNCE. It chooses a kernel once (see gemm_internal.h for why there are
 * two) and hands every call to it; mc_sgemm_naive is the definition the
 * kernels are tested against. */
#include "mmchain/ops.h"
#include "mmchain/threads.h"
#include "ops/gemm_internal.h"
#include "core/profile.h"
#include "ops/naive.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the reference ---- */

void mc_sgemm_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                    int64_t ldc) {
    // A: (M, K) or (K, M) when trans_a; B: (K, N) or (N, K) when trans_b; C: (M, N)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++) {
                float a = trans_a ? A[k * lda + i] : A[i * lda + k];
                float b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
                acc += (double)a * (double)b;
            }
            double old = beta == 0.0f ? 0.0 : (double)beta * C[i * ldc + j];
            C[i * ldc + j] = (float)(alpha * acc + old);
        }
}

/* mc_sgemm's product with both operands rounded to bf16 first (each
 * element by mc_bf16_round), accumulated in double: the definition
 * MC_PRECISION_BF16 products are tested against. */
void mc_sgemm_bf16_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc) {
    // A: (M, K) or (K, M) when trans_a; B: (K, N) or (N, K) when trans_b; C: (M, N)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++) {
                float a = mc_bf16_round(trans_a ? A[k * lda + i] : A[i * lda + k]);
                float b = mc_bf16_round(trans_b ? B[j * ldb + k] : B[k * ldb + j]);
                acc += (double)a * (double)b;
            }
            double old = beta == 0.0f ? 0.0 : (double)beta * C[i * ldc + j];
            C[i * ldc + j] = (float)(alpha * acc + old);
        }
}

float mc_bf16_round(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if (isnan(x)) bits |= 0x00400000u; /* NaN: quiet, never rounded into infinity */
    else bits += 0x7FFFu + ((bits >> 16) & 1u); /* ties to even */
    bits &= 0xFFFF0000u;
    float rounded;
    memcpy(&rounded, &bits, sizeof rounded);
    return rounded;
}

const char *mc_precision_name(mc_precision precision) {
    return precision == MC_PRECISION_BF16 ? "bf16" : "fp32";
}

mc_status mc_precision_parse(const char *text, mc_precision *out) {
    if (text && strcmp(text, "fp32") == 0) *out = MC_PRECISION_FP32;
    else if (text && strcmp(text, "bf16") == 0) *out = MC_PRECISION_BF16;
    else return mc_error(MC_ERR_ARG, "precision '%s' is not fp32 or bf16", text ? text : "");
    return MC_OK;
}

/* ---- choosing the kernel ---- */

/* The kernel in use (an mc_gemm_kernel; atomic: mc_gemm_set_kernel may run
 * while other threads multiply). */
static atomic_int chosen = MC_GEMM_AUTO;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static mc_gemm_kernel resolve(mc_gemm_kernel wanted) {
    if (wanted == MC_GEMM_OPENBLAS) return MC_GEMM_OPENBLAS;
    return mc_gemm_avx512_available() ? MC_GEMM_AVX512 : MC_GEMM_OPENBLAS;
}

/* MMCHAIN_GEMM=auto|openblas|avx512; anything else (or avx512 on a CPU
 * without it) is reported once on stderr and auto is used: a library cannot
 * fail at its first matrix product over an environment variable. */
static void read_env(void) {
    const char *env = getenv("MMCHAIN_GEMM");
    mc_gemm_kernel wanted = MC_GEMM_AUTO;
    if (env && strcmp(env, "openblas") == 0) wanted = MC_GEMM_OPENBLAS;
    else if (env && strcmp(env, "avx512") == 0) wanted = MC_GEMM_AVX512;
    else if (env && *env && strcmp(env, "auto") != 0)
        fprintf(stderr, "mmchain: MMCHAIN_GEMM=%s: expected auto, openblas or avx512; using auto\n",
                env);
    if (wanted == MC_GEMM_AVX512 && !mc_gemm_avx512_available())
        fprintf(stderr, "mmchain: MMCHAIN_GEMM=avx512: this CPU has no AVX-512F; using OpenBLAS\n");
    atomic_store(&chosen, (int)resolve(wanted));
}

static mc_gemm_kernel current_kernel(void) {
    pthread_once(&env_once, read_env);
    return (mc_gemm_kernel)atomic_load(&chosen);
}

mc_status mc_gemm_set_kernel(mc_gemm_kernel kernel) {
    pthread_once(&env_once, read_env);
    if (kernel == MC_GEMM_AVX512 && !mc_gemm_avx512_available())
        return mc_error(MC_ERR_UNSUPPORTED, "mc_gemm_set_kernel: this CPU has no AVX-512F");
    atomic_store(&chosen, (int)resolve(kernel));
    return MC_OK;
}

bool mc_gemm_is_ours(void) { return current_kernel() == MC_GEMM_AVX512; }

const char *mc_gemm_kernel_name(void) {
    static char name[96];
    if (current_kernel() == MC_GEMM_AVX512) return "mmchain AVX-512 (12x32 micro-kernel)";
    snprintf(name, sizeof name, "OpenBLAS %s", mc_blas_core_name());
    return name;
}

const char *mc_gemm_bf16_kernel_name(void) {
    if (current_kernel() != MC_GEMM_AVX512) return "fp32 (OpenBLAS)";
    return mc_gemm_bf16_is_native() ? "AVX512_BF16 (vdpbf16ps)"
                                    : "emulated (fp32 FMA; no AVX512_BF16)";
}

bool mc_gemm_bf16_runs(void) { return current_kernel() == MC_GEMM_AVX512; }

/* ---- the product ---- */

static void openblas_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                           const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                           float *C, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K, alpha, A, (int)lda, B,
                (int)ldb, beta, C, (int)ldc);
}

/* The products below, untimed: the public functions time them when
 * MMCHAIN_PROFILE is set (core/profile.h), each call once. */
static void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc) {
    // A: (M, K) or (K, M) when trans_a; B: (K, N) or (N, K) when trans_b; C: (M, N)
    if (M <= 0 || N <= 0) return;
    if (current_kernel() == MC_GEMM_AVX512 &&
        mc_sgemm_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        return;
    /* OpenBLAS takes int sizes; the callers check theirs (matmul.c). */
    openblas_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void sgemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          float alpha, const float *A, int64_t lda, int64_t stride_a,
                          const float *B, int64_t ldb, int64_t stride_b, float beta, float *C,
                          int64_t ldc, int64_t stride_c, int64_t batch) {
    // item b: A + b*stride_a, B + b*stride_b, C + b*stride_c, each as in mc_sgemm
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (current_kernel() == MC_GEMM_AVX512 &&
        mc_sgemm_batched_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb,
                                stride_b, beta, C, ldc, stride_c, batch))
        return;
    /* OpenBLAS threads each product itself. */
    for (int64_t b = 0; b < batch; b++)
        openblas_sgemm(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b,
                       ldb, beta, C + b * stride_c, ldc);
}

static void gemm(mc_precision precision, bool trans_a, bool trans_b, int64_t M, int64_t N,
                 int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, float *C, int64_t ldc) {
    // A: (M, K) or (K, M) when trans_a; B: (K, N) or (N, K) when trans_b; C: (M, N)
    if (M <= 0 || N <= 0) return;
    /* bf16 needs our kernel; otherwise (or if its packing space cannot be
     * had) the product runs in fp32. */
    if (precision == MC_PRECISION_BF16 && current_kernel() == MC_GEMM_AVX512 &&
        mc_sgemm_bf16_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc))
        return;
    sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void gemm_batched(mc_precision precision, bool trans_a, bool trans_b, int64_t M,
                         int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                         int64_t stride_a, const float *B, int64_t ldb, int64_t stride_b,
                         float beta, float *C, int64_t ldc, int64_t stride_c, int64_t batch) {
    // item b: A + b*stride_a, B + b*stride_b, C + b*stride_c, each as in mc_gemm
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (precision == MC_PRECISION_BF16 && current_kernel() == MC_GEMM_AVX512 &&
        mc_sgemm_batched_bf16_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb,
                                     stride_b, beta, C, ldc, stride_c, batch))
        return;
    sgemm_batched(trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C,
                  ldc, stride_c, batch);
}

/* ---- the public entry points: the products above, timed when profiling ---- */

void mc_gemm_batched(mc_precision precision, bool trans_a, bool trans_b, int64_t M, int64_t N,
                     int64_t K, float alpha, const float *A, int64_t lda, int64_t stride_a,
                     const float *B, int64_t ldb, int64_t stride_b, float beta, float *C,
                     int64_t ldc, int64_t stride_c, int64_t batch) {
    int64_t start = mc_profile_enabled ? mc_profile_now_ns() : 0;
    gemm_batched(precision, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb, stride_b,
                 beta, C, ldc, stride_c, batch);
    if (mc_profile_enabled)
        mc_profile_gemm(trans_a, trans_b, M, N, K, batch, mc_precision_name(precision),
                        mc_profile_now_ns() - start);
}

void mc_sgemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb,
                      int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c,
                      int64_t batch) {
    mc_gemm_batched(MC_PRECISION_FP32, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B, ldb,
                    stride_b, beta, C, ldc, stride_c, batch);
}

void mc_gemm(mc_precision precision, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
             float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
             float *C, int64_t ldc) {
    int64_t start = mc_profile_enabled ? mc_profile_now_ns() : 0;
    gemm(precision, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (mc_profile_enabled)
        mc_profile_gemm(trans_a, trans_b, M, N, K, 1, mc_precision_name(precision),
                        mc_profile_now_ns() - start);
}

void mc_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
    mc_gemm(MC_PRECISION_FP32, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* mc_gemm_bf16_b, mc_gemm_bf16_ab and mc_gemm_bf16_panels: A in floats or
 * bf16 values, B in bf16 or in panels (b_form), timed when profiling. */
enum { GIVEN_B_BF16, GIVEN_A_B_BF16, GIVEN_B_PANELS };
static mc_status gemm_bf16_given(const char *name, int b_form, bool trans_a, bool trans_b,
                                 int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                                 int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C,
                                 int64_t ldc) {
    // A: (M, K) or (K, M) when trans_a; B: (K, N) or (N, K) bf16 when trans_b; C: (M, N)
    if (M <= 0 || N <= 0) return MC_OK;
    if (!mc_gemm_bf16_runs())
        return mc_error(MC_ERR_STATE, "%s: bf16 products do not run on this kernel", name);
    int64_t start = mc_profile_enabled ? mc_profile_now_ns() : 0;
    const bool done =
        b_form == GIVEN_A_B_BF16
            ? mc_sgemm_bf16_ab_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
        : b_form == GIVEN_B_BF16
            ? mc_sgemm_bf16_b_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
            : mc_sgemm_bf16_panels_avx512(trans_a, M, N, K, alpha, A, lda, (const float *)B, beta,
                                          C, ldc);
    if (!done)
        return mc_error(MC_ERR_NOMEM, "GEMM: no memory for the packing space");
    if (mc_profile_enabled)
        mc_profile_gemm(trans_a, trans_b, M, N, K, 1, "bf16", mc_profile_now_ns() - start);
    return MC_OK;
}

mc_status mc_gemm_bf16_b(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                         float alpha, const float *A, int64_t lda, const uint16_t *B, int64_t ldb,
                         float beta, float *C, int64_t ldc) {
    return gemm_bf16_given("mc_gemm_bf16_b", GIVEN_B_BF16, trans_a, trans_b, M, N, K, alpha, A, lda, B,
                           ldb, beta, C, ldc);
}

mc_status mc_gemm_bf16_ab(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          float alpha, const uint16_t *A, int64_t lda, const uint16_t *B,
                          int64_t ldb, float beta, float *C, int64_t ldc) {
    return gemm_bf16_given("mc_gemm_bf16_ab", GIVEN_A_B_BF16, trans_a, trans_b, M, N, K, alpha, A, lda, B,
                           ldb, beta, C, ldc);
}

mc_status mc_gemm_bf16_panels(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha,
                              const float *A, int64_t lda, const float *panels, float beta,
                              float *C, int64_t ldc) {
    return gemm_bf16_given("mc_gemm_bf16_panels", GIVEN_B_PANELS, trans_a, true, M, N, K, alpha,
                           A, lda, (const uint16_t *)panels, 0, beta, C, ldc);
}

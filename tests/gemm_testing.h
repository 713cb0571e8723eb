/* What the GEMM suites (test_gemm.c, test_gemm_bf16.c) share: a product's
 * shape, deterministic operands, and the fixture of the cases that test our
 * AVX-512 kernels. */
#ifndef MMCHAIN_TESTS_GEMM_TESTING_H
#define MMCHAIN_TESTS_GEMM_TESTING_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct shape {
    int64_t M, N, K;
} shape;

/* Uniform values in [-1, 1) from a small LCG (deterministic). */
static inline void fill_random(float *v, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((seed >> 40) & 0xFFFF) / 32768.0f - 1.0f;
    }
}

static inline float *alloc_floats(int64_t n) {
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(v);
    return v;
}

/* ---- a Check fixture: every test of the case runs on our AVX-512 kernel;
 * afterwards the automatic choice and the thread count are restored ---- */
static int gemm_threads_before;

static inline void gemm_choose_avx512(void) {
    gemm_threads_before = mc_get_num_threads();
    MC_CHECK_OK(mc_gemm_set_kernel(MC_GEMM_AVX512));
}

static inline void gemm_restore_choice(void) {
    mc_set_num_threads(gemm_threads_before);
    MC_CHECK_OK(mc_gemm_set_kernel(MC_GEMM_AUTO));
}

/* Returns tc. */
static inline TCase *gemm_use_avx512(TCase *tc) {
    tcase_add_checked_fixture(tc, gemm_choose_avx512, gemm_restore_choice);
    return tc;
}

/* The padding after row i of C (columns N..ldc-1) still holds what it held
 * before the product (`before`, same layout): a kernel never writes there. */
static inline void assert_padding_untouched(const char *kernel, const float *C, const float *before,
                                            int64_t i, int64_t N, int64_t ldc) {
    for (int64_t j = N; j < ldc; j++)
        ck_assert_msg(memcmp(&C[i * ldc + j], &before[i * ldc + j], sizeof(float)) == 0,
                      "%s wrote into C's padding", kernel);
}

#endif

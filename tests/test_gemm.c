/* mc_sgemm against its definition (mc_sgemm_naive), for both kernels:
 * OpenBLAS, and our packed AVX-512 kernel where the CPU has AVX-512F (where
 * it has not, those cases do not run and the suite exits as skipped after
 * the rest has passed).
 *
 * The shapes straddle every blocking edge of the AVX-512 kernel (MR = 12
 * rows, NR = 32 columns, KC_FP32 = 768 deep, MC = 144 rows, NC = 3072
 * columns), each with all four transposes, padded leading dimensions,
 * several alpha/beta pairs, on one and two threads and from inside an
 * OpenMP parallel region. */
#include <float.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm_testing.h"

#include "../lib/ops/naive.h"

static const shape shapes[] = {
    {1, 1, 1},      {12, 32, 768},  {13, 33, 769}, {11, 31, 767}, {5, 70, 3},
    {100, 1, 50},   {1, 100, 50},   {37, 45, 600}, {150, 40, 30}, {145, 97, 17},
    {200, 300, 520}, {24, 64, 16},
};

/* One product with padded leading dimensions, checked against the naive
 * definition. C starts as NaN when beta == 0 (it must not be read). */
static void check_product(const char *kernel, bool ta, bool tb, shape s, float alpha, float beta) {
    const int64_t pad = 3;
    const int64_t a_rows = ta ? s.K : s.M, a_cols = ta ? s.M : s.K;
    const int64_t b_rows = tb ? s.N : s.K, b_cols = tb ? s.K : s.N;
    const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = s.N + pad;
    float *A = alloc_floats(a_rows * lda), *B = alloc_floats(b_rows * ldb);
    float *C = alloc_floats(s.M * ldc), *expected = alloc_floats(s.M * ldc);
    fill_random(A, a_rows * lda, 1 + (uint64_t)s.M);
    fill_random(B, b_rows * ldb, 2 + (uint64_t)s.N);
    fill_random(C, s.M * ldc, 3 + (uint64_t)s.K);
    if (beta == 0.0f)
        for (int64_t i = 0; i < s.M * ldc; i++) C[i] = NAN;
    memcpy(expected, C, (size_t)(s.M * ldc) * sizeof(float));
    mc_sgemm(ta, tb, s.M, s.N, s.K, alpha, A, lda, B, ldb, beta, C, ldc);
    mc_sgemm_naive(ta, tb, s.M, s.N, s.K, alpha, A, lda, B, ldb, beta, expected, ldc);
    /* float32 sums of K products of values in [-1, 1): error ~ K * eps. */
    const double atol = 2e-6 * (double)(s.K + 1) * fabs(alpha) + 1e-6;
    for (int64_t i = 0; i < s.M; i++) {
        long worst = -1;
        double violation = mc_test_max_violation(C + i * ldc, expected + i * ldc, (long)s.N,
                                                 1e-5, atol, &worst);
        ck_assert_msg(violation <= 1.0,
                      "%s %c%c %lldx%lldx%lld alpha %g beta %g: C[%lld][%ld] = %g, expected %g",
                      kernel, ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)s.M, (long long)s.N,
                      (long long)s.K, alpha, beta, (long long)i, worst, C[i * ldc + worst],
                      expected[i * ldc + worst]);
        assert_padding_untouched(kernel, C, expected, i, s.N, ldc);
    }
    free(A), free(B), free(C), free(expected);
}

static void check_all_shapes(const char *kernel) {
    const float alphas[] = {1.0f, 0.5f, -2.0f}, betas[] = {0.0f, 1.0f, 0.25f};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int t = 0; t < 4; t++)
            for (int ab = 0; ab < 3; ab++)
                check_product(kernel, t & 1, t & 2, shapes[i], alphas[ab], betas[ab]);
}

/* C = beta C when K == 0 or alpha == 0 (BLAS's rule); beta 0 gives zeros
 * even over NaN. */
static void check_degenerate(void) {
    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 1, 1, 1, 1, 1};
    float C[4] = {1, 2, 3, 4};
    mc_sgemm(false, false, 2, 2, 0, 1.0f, A, 1, B, 2, 2.0f, C, 2);
    ck_assert(C[0] == 2.0f && C[3] == 8.0f);
    mc_sgemm(false, false, 2, 2, 3, 0.0f, A, 3, B, 2, 0.5f, C, 2);
    ck_assert(C[0] == 1.0f && C[3] == 4.0f);
    float D[4] = {NAN, NAN, NAN, NAN};
    mc_sgemm(false, false, 2, 2, 0, 1.0f, A, 1, B, 2, 0.0f, D, 2);
    for (int i = 0; i < 4; i++) ck_assert(D[i] == 0.0f);
    mc_sgemm(false, false, 0, 2, 3, 1.0f, A, 3, B, 2, 0.0f, D, 2); /* M = 0: nothing */
}

/* mc_sgemm_batched against the definition item by item: B shared by every
 * item (stride 0), padded leading dimensions, 1 item (each product split
 * over the threads), 16 items (the threads take whole items). */
static void check_batched(const char *kernel) {
    const int64_t M = 37, N = 45, K = 1000, lda = K + 1, ldc = N + 2; /* K: two slices */
    const int64_t counts[] = {1, 3, 16};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        const int64_t batch = counts[c], stride_a = M * lda + 5, stride_c = M * ldc + 3;
        float *A = alloc_floats(batch * stride_a), *B = alloc_floats(K * N);
        float *C = alloc_floats(batch * stride_c), *expected = alloc_floats(batch * stride_c);
        fill_random(A, batch * stride_a, 21);
        fill_random(B, K * N, 22);
        fill_random(C, batch * stride_c, 23);
        memcpy(expected, C, (size_t)(batch * stride_c) * sizeof(float));
        mc_sgemm_batched(false, false, M, N, K, 1.5f, A, lda, stride_a, B, N, 0, 0.5f, C, ldc,
                         stride_c, batch);
        for (int64_t b = 0; b < batch; b++)
            mc_sgemm_naive(false, false, M, N, K, 1.5f, A + b * stride_a, lda, B, N, 0.5f,
                           expected + b * stride_c, ldc);
        long worst = -1;
        double violation = mc_test_max_violation(C, expected, (long)(batch * stride_c), 1e-5,
                                                 3e-6 * (double)K, &worst);
        ck_assert_msg(violation <= 1.0, "%s batched (%lld items): element %ld = %g, expected %g",
                      kernel, (long long)batch, worst, C[worst], expected[worst]);
        free(A), free(B), free(C), free(expected);
    }
}

/* ---- OpenBLAS ---- */

START_TEST(test_openblas_matches_definition) {
    MC_CHECK_OK(mc_gemm_set_kernel(MC_GEMM_OPENBLAS));
    ck_assert_ptr_nonnull(strstr(mc_gemm_kernel_name(), "OpenBLAS"));
    check_all_shapes("OpenBLAS");
    check_degenerate();
    check_batched("OpenBLAS");
    MC_CHECK_OK(mc_gemm_set_kernel(MC_GEMM_AUTO));
}
END_TEST

/* ---- AVX-512 (the case's fixture chooses the kernel: gemm_use_avx512) ---- */

START_TEST(test_avx512_matches_definition_one_thread) {
    ck_assert_ptr_nonnull(strstr(mc_gemm_kernel_name(), "AVX-512"));
    mc_set_num_threads(1);
    check_all_shapes("AVX-512 (1 thread)");
    check_degenerate();
    check_batched("AVX-512 (1 thread)");
}
END_TEST

START_TEST(test_avx512_matches_definition_two_threads) {
    mc_set_num_threads(2);
    check_all_shapes("AVX-512 (2 threads)");
    check_batched("AVX-512 (2 threads)");
    /* Products big enough to be split, cut along rows and along columns
     * (K over two slices, each thread packing the operand it shares), and
     * one wider than a packed B block (NC = 3072). */
    const shape big[] = {{700, 64, 1000}, {40, 900, 1000}, {30, 3100, 20}, {97, 3200, 130}};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        for (int t = 0; t < 4; t++)
            check_product("AVX-512 (2 threads)", t & 1, t & 2, big[i], 1.0f, 0.5f);
}
END_TEST

/* The same product on 1 and on 2 threads, bit for bit. */
static void check_same_on_one_thread(bool ta, bool tb, shape s) {
    const int64_t lda = (ta ? s.M : s.K) + 1, ldb = (tb ? s.K : s.N) + 2, ldc = s.N + 3;
    const int64_t a_floats = (ta ? s.K : s.M) * lda, b_floats = (tb ? s.N : s.K) * ldb;
    float *A = alloc_floats(a_floats), *B = alloc_floats(b_floats);
    float *one = alloc_floats(s.M * ldc), *two = alloc_floats(s.M * ldc);
    fill_random(A, a_floats, 31);
    fill_random(B, b_floats, 32);
    fill_random(one, s.M * ldc, 33);
    memcpy(two, one, (size_t)(s.M * ldc) * sizeof(float));
    mc_set_num_threads(1);
    mc_sgemm(ta, tb, s.M, s.N, s.K, 1.0f, A, lda, B, ldb, 0.5f, one, ldc);
    mc_set_num_threads(2);
    mc_sgemm(ta, tb, s.M, s.N, s.K, 1.0f, A, lda, B, ldb, 0.5f, two, ldc);
    ck_assert_msg(memcmp(one, two, (size_t)(s.M * ldc) * sizeof(float)) == 0,
                  "%c%c %lldx%lldx%lld: 2 threads differ from 1", ta ? 'T' : 'N', tb ? 'T' : 'N',
                  (long long)s.M, (long long)s.N, (long long)s.K);
    free(A), free(B), free(one), free(two);
}

/* Products whose shared operand (op(B) when the threads cut the rows of C,
 * op(A) when they cut its columns) is large enough for the threads to pack
 * it together: K over several slices with a short last one, panels with
 * a short last one, the threads' parts of the packing meeting inside a
 * slice (and, for op(A), between two panels: the spill past a panel's
 * end), and one product whose threads each take more columns than a packed
 * B block. Against the definition, and bit for bit against one thread. */
START_TEST(test_avx512_shared_packing_two_threads) {
    mc_set_num_threads(2);
    /* 3 slices x 5 panels of op(B), 3 x 11 of op(A), 5 x 4 of op(A): at
     * 2 threads the parts meet at item 7, 16 and 10, inside a slice */
    const shape shared[] = {{300, 130, 2000}, {125, 400, 2000}, {40, 6500, 3300}};
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++)
        for (int t = 0; t < 4; t++) {
            check_product("AVX-512 (2 threads, shared packing)", t & 1, t & 2, shared[i], 1.0f,
                          0.5f);
            check_same_on_one_thread(t & 1, t & 2, shared[i]);
        }
}
END_TEST

/* Called from inside a parallel region (as attention does per head), each
 * thread's product runs on that thread with its own packing space. */
START_TEST(test_avx512_inside_parallel_region) {
    enum { ITEMS = 8, M = 77, N = 64, K = 77 };
    float *A = alloc_floats(ITEMS * M * K), *B = alloc_floats(ITEMS * K * N);
    float *C = alloc_floats(ITEMS * M * N), *expected = alloc_floats(ITEMS * M * N);
    fill_random(A, ITEMS * M * K, 11);
    fill_random(B, ITEMS * K * N, 12);
#pragma omp parallel for num_threads(2) schedule(static, 1)
    for (int item = 0; item < ITEMS; item++)
        mc_sgemm(false, false, M, N, K, 1.0f, A + item * M * K, K, B + item * K * N, N, 0.0f,
                 C + item * M * N, N);
    for (int item = 0; item < ITEMS; item++)
        mc_sgemm_naive(false, false, M, N, K, 1.0f, A + item * M * K, K, B + item * K * N, N, 0.0f,
                       expected + item * M * N, N);
    mc_test_assert_close("per-item products", C, expected, ITEMS * M * N, 1e-5, 2e-4);
    free(A), free(B), free(C), free(expected);
}
END_TEST

START_TEST(test_avx512_unavailable_is_an_error) {
    /* Only registered where the CPU lacks AVX-512F. */
    MC_CHECK_FAILS(mc_gemm_set_kernel(MC_GEMM_AVX512), MC_ERR_UNSUPPORTED, "AVX-512");
    ck_assert_ptr_nonnull(strstr(mc_gemm_kernel_name(), "OpenBLAS"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemm");
    const TTest *const blas[] = {test_openblas_matches_definition, NULL};
    mc_test_add_case(s, "openblas", blas);
    const bool avx512 = mc_gemm_set_kernel(MC_GEMM_AVX512) == MC_OK;
    (void)mc_gemm_set_kernel(MC_GEMM_AUTO);
    TCase *packed = tcase_create("avx512");
    if (avx512) {
        gemm_use_avx512(packed);
        tcase_add_test(packed, test_avx512_matches_definition_one_thread);
        tcase_add_test(packed, test_avx512_matches_definition_two_threads);
        tcase_add_test(packed, test_avx512_shared_packing_two_threads);
        tcase_add_test(packed, test_avx512_inside_parallel_region);
    } else {
        tcase_add_test(packed, test_avx512_unavailable_is_an_error);
    }
    suite_add_tcase(s, packed);
    if (mc_test_run_suite(s) != 0) return EXIT_FAILURE;
    if (!avx512) return mc_test_skip("the AVX-512 kernel's cases (this CPU has no AVX-512F)");
    return EXIT_SUCCESS;
}

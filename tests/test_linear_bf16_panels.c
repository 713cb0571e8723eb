/* A linear layer's weight kept in the bf16 GEMM's panel order
 * (mc_weight_bf16_panels, mc_gemm_bf16_panels): what inference on a bf16
 * graph multiplies by.
 *
 * The panels hold the same bf16 values the plain cached copy holds, and the
 * product reads them where the packing would have written them, so every
 * result must equal, bit for bit, the product that packs the plain copy
 * (mc_gemm_bf16_b, itself tested against the naive bf16 reference in
 * test_gemm_bf16.c): on every shape (slices of K, odd K, N not a multiple
 * of the panel width or wider than one block, K split into chunks), beta
 * 0 and 1, 1 and 2
 * threads, on vdpbf16ps and on its emulation. Then the linear ops: an
 * unrecorded op (panels) equals the recorded op (plain copy), and the
 * panels follow a change of the weight. Both forms are rounded as the
 * packing rounds, subnormal weights included. Without AVX-512F bf16 products run
 * in fp32 and the suite is skipped. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "../lib/ops/gemm_internal.h"
#include "../lib/ops/weight_bf16.h"

static float *random_floats(int64_t n, uint64_t seed) {
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)mc_rng_uniform(&rng) * 2.0f - 1.0f;
    return v;
}

/* M, N, K: one slice and several, odd K (a lone last slot), N past NC. */
static const int64_t shapes[][3] = {
    {1, 1, 1}, {13, 33, 7}, {50, 64, 513}, {37, 100, 1031}, {12, 32, 512},
    {29, 3100, 40}, {200, 96, 768}, {3, 250, 1025},
    {16, 100, 4100}, /* K split into chunks (mc_gemm_bf16_k_chunks) */
};

START_TEST(test_panels_equal_packing_the_copy) {
    const int64_t M = shapes[_i][0], N = shapes[_i][1], K = shapes[_i][2];
    if (K == 4100) ck_assert_int_gt(mc_gemm_bf16_k_chunks(M, N, K), 1); /* the split is tested */
    mc_tensor *w;
    MC_CHECK_OK(mc_tensor_new(&w, MC_SHAPE(N, K), "w"));
    float *values = random_floats(N * K, 7 + (uint64_t)_i);
    memcpy(w->data, values, (size_t)(N * K) * sizeof(float));
    free(values);
    float *A = random_floats(M * K, 11), *C0 = random_floats(M * N, 13);
    float *expected = malloc((size_t)(M * N) * sizeof(float)),
          *actual = malloc((size_t)(M * N) * sizeof(float));
    ck_assert_ptr_nonnull(expected);
    ck_assert_ptr_nonnull(actual);
    for (int form = 0; form < 2; form++)
        for (int emulated = 0; emulated < 1 + mc_gemm_bf16_native_available(); emulated++)
            for (int threads = 1; threads <= 2; threads++)
                for (int with_beta = 0; with_beta < 2; with_beta++) {
                    mc_gemm_bf16_force_emulation(emulated);
                    mc_set_num_threads(threads);
                    const float beta = with_beta ? 1.0f : 0.0f, alpha = 0.75f;
                    /* The plain copy, then the panels (the tensor keeps one). */
                    const uint16_t *plain;
                    MC_CHECK_OK(mc_weight_bf16(w, NULL, NULL, &plain));
                    ck_assert_ptr_nonnull(plain);
                    memcpy(expected, C0, (size_t)(M * N) * sizeof(float));
                    MC_CHECK_OK(mc_gemm_bf16_b(false, true, M, N, K, alpha, A, K, plain, K, beta,
                                               expected, N));
                    const float *panels;
                    MC_CHECK_OK(mc_weight_bf16_panels(w, N, K, &panels));
                    ck_assert_ptr_nonnull(panels);
                    ck_assert_int_eq((uintptr_t)panels % 64, 0);
                    memcpy(actual, C0, (size_t)(M * N) * sizeof(float));
                    /* form 1: A given transposed, (K, M) */
                    float *At = NULL;
                    if (form) {
                        At = malloc((size_t)(M * K) * sizeof(float));
                        ck_assert_ptr_nonnull(At);
                        for (int64_t i = 0; i < M; i++)
                            for (int64_t k = 0; k < K; k++) At[k * M + i] = A[i * K + k];
                    }
                    MC_CHECK_OK(mc_gemm_bf16_panels(form, M, N, K, alpha, form ? At : A,
                                                    form ? M : K, panels, beta, actual, N));
                    free(At);
                    for (int64_t i = 0; i < M * N; i++)
                        ck_assert_msg(memcmp(&actual[i], &expected[i], sizeof(float)) == 0,
                                      "%lld x %lld x %lld, A%s, %s, %d thread(s), beta %g: "
                                      "element %lld is %.9g, packing the copy gives %.9g",
                                      (long long)M, (long long)N, (long long)K,
                                      form ? " transposed" : "", emulated ? "emulated" : "native",
                                      threads, (double)beta, (long long)i, (double)actual[i],
                                      (double)expected[i]);
                }
    mc_gemm_bf16_force_emulation(false);
    mc_set_num_threads(1);
    free(A), free(C0), free(expected), free(actual);
    mc_tensor_free(w);
}
END_TEST

static float float_of(uint32_t word) {
    float f;
    memcpy(&f, &word, sizeof f);
    return f;
}

/* The copy and the panels are rounded as the packing rounds, for every
 * value: the largest subnormal floats, which mc_bf16_round takes up to
 * 2^-126 and vcvtne2ps2bf16 (the packing on vdpbf16ps) to zero, multiply
 * as packing the fp32 weight multiplies them (times 4, a product that
 * stays normal), on vdpbf16ps and on the emulation, switching between the
 * two with the weight unchanged (the forms follow the rounding). */
START_TEST(test_forms_round_as_the_packing) {
    enum { M = 2, N = 4, K = 3 };
    const float weight[N * K] = {
        float_of(0x007FFFFFu), float_of(0x007F8000u), float_of(0x807FC000u),
        float_of(0x807FFFFFu), 1.0f, float_of(0x007FFFFFu),
        0.5f, float_of(0x00400000u), -2.0f,
        float_of(0x007F8001u), float_of(0x007FFFFFu), float_of(0x007FFFFFu),
    };
    float A[M * K];
    for (int i = 0; i < M * K; i++) A[i] = i % 2 ? -4.0f : 4.0f;
    mc_tensor *w;
    MC_CHECK_OK(mc_tensor_new(&w, MC_SHAPE(N, K), "w"));
    memcpy(w->data, weight, sizeof weight);
    for (int pass = 0; pass < 3; pass++) {
        const bool emulated = pass == 1 || !mc_gemm_bf16_native_available();
        mc_gemm_bf16_force_emulation(emulated);
        float packing[M * N], copy[M * N], panels[M * N];
        mc_gemm(MC_PRECISION_BF16, false, true, M, N, K, 1.0f, A, K, w->data, K, 0.0f, packing,
                N);
        const uint16_t *plain;
        const float *packed;
        MC_CHECK_OK(mc_weight_bf16(w, NULL, NULL, &plain));
        MC_CHECK_OK(mc_weight_bf16_panels(w, N, K, &packed));
        ck_assert_ptr_nonnull(plain);
        ck_assert_ptr_nonnull(packed);
        MC_CHECK_OK(mc_gemm_bf16_b(false, true, M, N, K, 1.0f, A, K, plain, K, 0.0f, copy, N));
        MC_CHECK_OK(mc_gemm_bf16_panels(false, M, N, K, 1.0f, A, K, packed, 0.0f, panels, N));
        for (int i = 0; i < M * N; i++) {
            ck_assert_msg(memcmp(&copy[i], &packing[i], sizeof(float)) == 0,
                          "%s, pass %d, element %d: the copy gives %a, packing the weight %a",
                          emulated ? "emulated" : "native", pass, i, (double)copy[i],
                          (double)packing[i]);
            ck_assert_msg(memcmp(&panels[i], &packing[i], sizeof(float)) == 0,
                          "%s, pass %d, element %d: the panels give %a, packing the weight %a",
                          emulated ? "emulated" : "native", pass, i, (double)panels[i],
                          (double)packing[i]);
        }
        /* the subnormals count on the emulation: a test that can fail */
        if (emulated) ck_assert(packing[0] != 0.0f);
    }
    mc_gemm_bf16_force_emulation(false);
    mc_tensor_free(w);
}
END_TEST

/* The three linear ops on a bf16 graph, recorded (x requires a gradient:
 * the plain copy) or not (gradients disabled: the panels). */
enum { ROWS = 21, IN = 70, OUT = 45 };

static float *linear_ops(mc_tensor *x, mc_tensor *w, mc_tensor *b, mc_tensor *residual,
                         int which, bool recorded) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_precision(g, MC_PRECISION_BF16);
    mc_graph_set_grad_enabled(g, recorded);
    x->requires_grad = recorded;
    mc_tensor *y;
    if (which == 0) MC_CHECK_OK(mc_linear(g, x, w, b, &y));
    else if (which == 1) MC_CHECK_OK(mc_linear_activation(g, x, w, b, MC_ACT_QUICK_GELU, &y));
    else MC_CHECK_OK(mc_linear_residual(g, x, w, b, residual, &y));
    float *out = mc_test_copy_floats(y->data, y->numel);
    mc_graph_free(g);
    x->requires_grad = false;
    return out;
}

START_TEST(test_unrecorded_linear_ops_equal_recorded) {
    mc_tensor *x, *w, *b, *residual;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(3, 7, IN), "x"));
    MC_CHECK_OK(mc_tensor_new(&w, MC_SHAPE(OUT, IN), "w"));
    MC_CHECK_OK(mc_tensor_new(&b, MC_SHAPE(OUT), "b"));
    MC_CHECK_OK(mc_tensor_new(&residual, MC_SHAPE(3, 7, OUT), "residual"));
    mc_rng rng;
    mc_rng_seed(&rng, 5);
    mc_tensor_normal(x, &rng, 0.0f, 1.0f), mc_tensor_normal(w, &rng, 0.0f, 0.2f);
    mc_tensor_normal(b, &rng, 0.0f, 0.2f), mc_tensor_normal(residual, &rng, 0.0f, 1.0f);
    for (int which = 0; which < 3; which++) {
        float *before = NULL;
        for (int change = 0; change < 2; change++) {
            /* unrecorded first (panels made), then recorded (plain copy),
             * then unrecorded again (the same panels) */
            float *panels = linear_ops(x, w, b, residual, which, false);
            const struct mc_tensor_bf16 *made = w->bf16_panels;
            ck_assert_msg(made != NULL, "op %d: the unrecorded op kept no panels", which);
            float *plain = linear_ops(x, w, b, residual, which, true);
            /* each form in its own slot: the plain copy leaves the panels
             * where a graph still reading them would find them */
            ck_assert_msg(w->bf16 != NULL, "op %d: the recorded op kept no copy", which);
            ck_assert_msg(w->bf16_panels == made, "op %d: the copy displaced the panels", which);
            float *again = linear_ops(x, w, b, residual, which, false);
            ck_assert_msg(memcmp(panels, plain, ROWS * OUT * sizeof(float)) == 0,
                          "op %d, change %d: panels differ from the plain copy", which, change);
            ck_assert_msg(memcmp(panels, again, ROWS * OUT * sizeof(float)) == 0,
                          "op %d, change %d: the second unrecorded run differs", which, change);
            if (before)
                ck_assert_msg(memcmp(before, panels, ROWS * OUT * sizeof(float)) != 0,
                              "op %d: the output did not follow the weight", which);
            free(before), free(plain), free(again);
            before = panels;
            /* a write announced by mc_tensor_touch: the panels are stale */
            for (int64_t i = 0; i < w->numel; i += 5) w->data[i] *= -0.5f;
            mc_tensor_touch(w);
        }
        free(before);
    }
    mc_tensor_free(x), mc_tensor_free(w), mc_tensor_free(b), mc_tensor_free(residual);
}
END_TEST

int main(void) {
    if (!mc_gemm_avx512_available())
        return mc_test_skip("bf16 panels (this CPU has no AVX-512F: products stay fp32)");
    if (mc_gemm_set_kernel(MC_GEMM_AVX512) != MC_OK) return EXIT_FAILURE;
    Suite *s = suite_create("linear_bf16_panels");
    TCase *tc = tcase_create("panels");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_panels_equal_packing_the_copy, 0,
                        (int)(sizeof shapes / sizeof shapes[0]));
    tcase_add_test(tc, test_unrecorded_linear_ops_equal_recorded);
    tcase_add_test(tc, test_forms_round_as_the_packing);
    suite_add_tcase(s, tc);
    if (mc_test_run_suite(s) != 0) return EXIT_FAILURE;
    if (!mc_gemm_bf16_native_available()) /* vdpbf16ps's rounding went untested */
        return mc_test_skip("the vdpbf16ps passes (this CPU has no AVX512_BF16)");
    return EXIT_SUCCESS;
}

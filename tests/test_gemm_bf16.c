/* mc_gemm with MC_PRECISION_BF16 against its definition,
 * mc_sgemm_bf16_naive (operands rounded by mc_bf16_round, products summed
 * in double), on both bf16 micro-kernels: vdpbf16ps where the CPU has
 * AVX512_BF16 (else those cases do not run and the suite exits as skipped
 * after the rest has passed) and the fp32-FMA emulation (any AVX-512F CPU).
 *
 * THE BOUND: the kernel sums exact products in fp32, so it differs from the
 * double-accumulated definition only by its fp32 roundings: the standard
 * bound for n additions, |error| <= n * u * (|alpha| sum_k |a_k b_k| +
 * |beta c|), u = 2^-24, where n counts the K additions plus, per slice of
 * 512 k, the scaling by alpha and the addition into C (to first order; a
 * factor of 1.01 covers the rest). Where K is split (mc_gemm_bf16_k_chunks:
 * long K, small C), each chunk is summed alone and the partial sums are
 * added: one more addition per chunk after the first, and at most one more
 * slice edge each. sum_k |a_k b_k| is computed by the
 * definition on |A| and |B|. Where both kernels exist they must agree bit
 * for bit (the emulation follows vdpbf16ps's order). */
#include <float.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm_testing.h"

#include "../lib/ops/gemm_internal.h"
#include "../lib/ops/naive.h"

/* Across the edges of the packing: MR = 12 rows, NR = 32 columns, a slice
 * of 512 k (256 bf16 pairs), MC = 144 rows; odd K (a half-filled pair). */
static const shape shapes[] = {
    {1, 1, 1},     {12, 32, 512},  {13, 33, 513}, {11, 31, 511}, {5, 70, 3},   {100, 1, 50},
    {1, 100, 51},  {37, 45, 1100}, {150, 40, 31}, {145, 97, 17}, {24, 64, 16}, {3, 17, 2},
};

static float *absolute_copy(const float *v, int64_t n) {
    float *copy = alloc_floats(n);
    for (int64_t i = 0; i < n; i++) copy[i] = fabsf(v[i]);
    return copy;
}

/* The operands and results of one checked product. */
typedef struct product {
    bool ta, tb;
    shape s;
    float alpha, beta;
    int64_t lda, ldb, ldc, a_size, b_size, c_size;
    float *A, *B, *C0;
} product;

static product make_product(bool ta, bool tb, shape s, float alpha, float beta, uint64_t seed) {
    const int64_t pad = 3;
    product p = {.ta = ta, .tb = tb, .s = s, .alpha = alpha, .beta = beta};
    const int64_t a_rows = ta ? s.K : s.M, b_rows = tb ? s.N : s.K;
    p.lda = (ta ? s.M : s.K) + pad, p.ldb = (tb ? s.K : s.N) + pad, p.ldc = s.N + pad;
    p.a_size = a_rows * p.lda, p.b_size = b_rows * p.ldb, p.c_size = s.M * p.ldc;
    p.A = alloc_floats(p.a_size), p.B = alloc_floats(p.b_size), p.C0 = alloc_floats(p.c_size);
    fill_random(p.A, p.a_size, seed + 1);
    fill_random(p.B, p.b_size, seed + 2);
    fill_random(p.C0, p.c_size, seed + 3);
    if (beta == 0.0f)
        for (int64_t i = 0; i < p.c_size; i++) p.C0[i] = NAN; /* must not be read */
    return p;
}

static void free_product(product *p) { free(p->A), free(p->B), free(p->C0); }

/* mc_gemm's bf16 result for p (a fresh copy of C0 it overwrites). */
static float *run_bf16(const product *p) {
    float *C = alloc_floats(p->c_size);
    memcpy(C, p->C0, (size_t)p->c_size * sizeof(float));
    mc_gemm(MC_PRECISION_BF16, p->ta, p->tb, p->s.M, p->s.N, p->s.K, p->alpha, p->A, p->lda, p->B,
            p->ldb, p->beta, C, p->ldc);
    return C;
}

/* C against the definition within the bound above; the padding between
 * rows untouched. */
static void check_against_definition(const char *kernel, const product *p, const float *C) {
    const shape s = p->s;
    float *expected = alloc_floats(p->c_size), *magnitude = alloc_floats(p->c_size);
    memcpy(expected, p->C0, (size_t)p->c_size * sizeof(float));
    mc_sgemm_bf16_naive(p->ta, p->tb, s.M, s.N, s.K, p->alpha, p->A, p->lda, p->B, p->ldb,
                        p->beta, expected, p->ldc);
    float *abs_a = absolute_copy(p->A, p->a_size), *abs_b = absolute_copy(p->B, p->b_size);
    mc_sgemm_bf16_naive(p->ta, p->tb, s.M, s.N, s.K, 1.0f, abs_a, p->lda, abs_b, p->ldb, 0.0f,
                        magnitude, p->ldc);
    const double chunks = (double)mc_gemm_bf16_k_chunks(s.M, s.N, s.K);
    const double slices = (double)((s.K + 511) / 512) + (chunks - 1.0);
    const double n = (double)s.K + 2.0 * slices + 2.0 + (chunks - 1.0);
    for (int64_t i = 0; i < s.M; i++) {
        for (int64_t j = 0; j < s.N; j++) {
            const int64_t at = i * p->ldc + j;
            const double old = p->beta == 0.0f ? 0.0 : fabs((double)p->beta * p->C0[at]);
            const double bound =
                1.01 * n * ldexp(1.0, -24) * (fabs(p->alpha) * magnitude[at] + old) + 1e-30;
            ck_assert_msg(fabs((double)C[at] - expected[at]) <= bound,
                          "%s %c%c %lldx%lldx%lld alpha %g beta %g: C[%lld][%lld] = %.9g, "
                          "definition %.9g, bound %.3g",
                          kernel, p->ta ? 'T' : 'N', p->tb ? 'T' : 'N', (long long)s.M,
                          (long long)s.N, (long long)s.K, p->alpha, p->beta, (long long)i,
                          (long long)j, C[at], expected[at], bound);
        }
        assert_padding_untouched(kernel, C, p->C0, i, s.N, p->ldc);
    }
    free(expected), free(magnitude), free(abs_a), free(abs_b);
}

static void check_all_shapes(const char *kernel) {
    const float alphas[] = {1.0f, 0.5f, -2.0f}, betas[] = {0.0f, 1.0f, 0.25f};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int t = 0; t < 4; t++)
            for (int ab = 0; ab < 3; ab++) {
                product p = make_product(t & 1, t & 2, shapes[i], alphas[ab], betas[ab], i);
                float *C = run_bf16(&p);
                check_against_definition(kernel, &p, C);
                free(C), free_product(&p);
            }
}

/* The packing rounds exactly as mc_bf16_round does: A times the identity
 * (1 is a bf16; one nonzero product per sum, so no sum rounds) gives the
 * rounded A, bit for bit, in every layout, and so does the identity times
 * A (A packed as B). The values include exact ties (midpoints of
 * neighbouring bf16 values, made from random bf16 bits), which must go to
 * the even neighbour. */
static void check_rounding_in_packing(const char *kernel) {
    enum { M = 29, K = 45 };
    float A[M * K], I[K * K], C[M * K], I_M[M * M];
    uint64_t seed = 7;
    for (int64_t i = 0; i < M * K; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        /* Normal and finite (vdpbf16ps reads subnormals as zero): exponent
         * from 0x01 to 0x7F. */
        uint32_t bits = (uint32_t)(seed >> 32) & 0xBFFFFFFFu;
        if ((bits & 0x7F800000u) == 0) bits |= 0x00800000u;
        if (i % 3 == 0) bits = (bits & 0xFFFF0000u) | 0x8000u; /* a tie */
        memcpy(&A[i], &bits, sizeof bits);
    }
    for (int64_t k = 0; k < K * K; k++) I[k] = k / K == k % K ? 1.0f : 0.0f;
    for (int64_t i = 0; i < M * M; i++) I_M[i] = i / M == i % M ? 1.0f : 0.0f;
    for (int t = 0; t < 2; t++) {
        const bool ta = t == 1;
        float stored[M * K]; /* A, or its transpose for trans_a */
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++) stored[ta ? k * M + i : i * K + k] = A[i * K + k];
        for (int tb = 0; tb < 2; tb++) {
            mc_gemm(MC_PRECISION_BF16, ta, tb, M, K, K, 1.0f, stored, ta ? M : K, I, K, 0.0f, C,
                    K);
            for (int64_t i = 0; i < M * K; i++) {
                const float rounded = mc_bf16_round(A[i]);
                ck_assert_msg(memcmp(&C[i], &rounded, sizeof(float)) == 0,
                              "%s %c%c: bf16(%a) packed as %a, mc_bf16_round gives %a", kernel,
                              ta ? 'T' : 'N', tb ? 'T' : 'N', (double)A[i], (double)C[i],
                              (double)rounded);
            }
        }
        /* I_M @ A, A packed as B: stored as (M, K), or as its transpose
         * (K, M) read with trans_b. */
        mc_gemm(MC_PRECISION_BF16, false, ta, M, K, M, 1.0f, I_M, M, stored, ta ? M : K, 0.0f, C,
                K);
        for (int64_t i = 0; i < M * K; i++) {
            const float rounded = mc_bf16_round(A[i]);
            ck_assert_msg(memcmp(&C[i], &rounded, sizeof(float)) == 0,
                          "%s B%c: bf16(%a) packed as %a, mc_bf16_round gives %a", kernel,
                          ta ? 'T' : 'N', (double)A[i], (double)C[i], (double)rounded);
        }
    }
}

/* mc_gemm_batched, item by item against the definition: B shared by
 * every item (stride 0), padded strides, 1 item (split over the threads)
 * and 16 (whole items per thread). */
static void check_batched(const char *kernel) {
    const int64_t counts[] = {1, 3, 16};
    const shape s = {37, 45, 301};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        const int64_t batch = counts[c];
        product p = make_product(false, true, s, 1.5f, 0.5f, 40 + c);
        const int64_t stride_a = p.a_size + 5, stride_c = p.c_size + 3;
        float *A = alloc_floats(batch * stride_a), *C = alloc_floats(batch * stride_c);
        for (int64_t b = 0; b < batch; b++) {
            fill_random(A + b * stride_a, stride_a, 50 + (uint64_t)b);
            memcpy(C + b * stride_c, p.C0, (size_t)p.c_size * sizeof(float));
        }
        mc_gemm_batched(MC_PRECISION_BF16, false, true, s.M, s.N, s.K, p.alpha, A, p.lda, stride_a,
                        p.B, p.ldb, 0, p.beta, C, p.ldc, stride_c, batch);
        for (int64_t b = 0; b < batch; b++) {
            memcpy(p.A, A + b * stride_a, (size_t)p.a_size * sizeof(float));
            check_against_definition(kernel, &p, C + b * stride_c);
        }
        free(A), free(C), free_product(&p);
    }
}

/* C = beta C when K == 0 or alpha == 0, as for mc_sgemm. */
static void check_degenerate(void) {
    float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 1, 1, 1, 1, 1};
    float C[4] = {1, 2, 3, 4};
    mc_gemm(MC_PRECISION_BF16, false, false, 2, 2, 0, 1.0f, A, 1, B, 2, 2.0f, C, 2);
    ck_assert(C[0] == 2.0f && C[3] == 8.0f);
    mc_gemm(MC_PRECISION_BF16, false, false, 2, 2, 3, 0.0f, A, 3, B, 2, 0.5f, C, 2);
    ck_assert(C[0] == 1.0f && C[3] == 4.0f);
}

/* ---- mc_bf16_round by its definition ---- */

static uint32_t bits_of(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}
static float float_of(uint32_t bits) {
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* For random finite x: the result is a bf16 (low 16 bits zero), one of the
 * two bf16 values around x, the nearer one, and on a tie the one with an
 * even last bit. Infinities and NaN stay what they are. */
START_TEST(test_bf16_round_is_nearest_even) {
    uint64_t seed = 3;
    for (int n = 0; n < 50000; n++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t bits = (uint32_t)(seed >> 32);
        if (n % 4 == 0) bits = (bits & 0xFFFF0000u) | 0x8000u; /* ties */
        const float x = float_of(bits);
        if (!isfinite(x)) continue;
        const float r = mc_bf16_round(x);
        ck_assert_msg((bits_of(r) & 0xFFFFu) == 0, "%a rounds to a non-bf16 %a", (double)x,
                      (double)r);
        const float below = float_of(bits & 0xFFFF0000u); /* toward zero */
        const float above = float_of((bits & 0xFFFF0000u) + 0x10000u); /* away from zero */
        /* Past the largest bf16, "above" is infinity, standing for 2^128. */
        const double above_value = isinf(above) ? copysign(ldexp(1.0, 128), above) : above;
        const double d_below = fabs((double)x - below), d_above = fabs((double)x - above_value);
        if (isinf(r)) {
            ck_assert_msg(isinf(above) && d_above <= d_below, "%a overflows", (double)x);
            continue;
        }
        ck_assert_msg(r == below || r == above, "%a rounds to %a", (double)x, (double)r);
        if (d_below != d_above)
            ck_assert_msg(r == (d_below < d_above ? below : above), "%a: not the nearest",
                          (double)x);
        else
            ck_assert_msg((bits_of(r) & 0x10000u) == 0, "%a: tie not to even", (double)x);
    }
    ck_assert(isinf(mc_bf16_round(INFINITY)) && mc_bf16_round(-INFINITY) < 0.0f);
    ck_assert(isnan(mc_bf16_round(NAN)));
    ck_assert(isinf(mc_bf16_round(FLT_MAX))); /* past the largest bf16's half-way */
}
END_TEST

/* The emulation's rounding of an array (mc_bf16_bits_of_products while the
 * emulation runs) gives mc_bf16_round's top halves for every value: random
 * bits, ties, infinities, NaN, FLT_MAX and subnormals, at lengths that
 * leave every tail of 16. */
START_TEST(test_array_rounding_is_bf16_round) {
    enum { N = 4000 };
    mc_gemm_bf16_force_emulation(true);
    const mc_bf16_bits_fn round = mc_bf16_bits_of_products();
    mc_gemm_bf16_force_emulation(false);
    ck_assert_ptr_nonnull(round);
    float *values = malloc(N * sizeof *values);
    uint16_t *bits = malloc(N * sizeof *bits);
    uint64_t seed = 5;
    for (int i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t word = (uint32_t)(seed >> 32);
        if (i % 4 == 0) word = (word & 0xFFFF0000u) | 0x8000u; /* ties */
        if (i % 7 == 0) word &= 0x807FFFFFu;                   /* subnormals */
        values[i] = float_of(word);
    }
    const float special[] = {INFINITY, -INFINITY, NAN, -NAN, FLT_MAX, -FLT_MAX, 0.0f, -0.0f};
    memcpy(values, special, sizeof special);
    for (int64_t n = 0; n <= 33; n++) {
        const int64_t length = n == 33 ? N : n;
        memset(bits, 0xAB, N * sizeof *bits);
        round(values, length, bits);
        for (int64_t i = 0; i < length; i++) {
            const uint16_t expected = (uint16_t)(bits_of(mc_bf16_round(values[i])) >> 16);
            if (isnan(values[i])) /* any quiet NaN of the same sign */
                ck_assert_msg(isnan(float_of((uint32_t)bits[i] << 16)) &&
                                  (bits[i] & 0x8000u) == (expected & 0x8000u),
                              "value %lld: NaN", (long long)i);
            else
                ck_assert_msg(bits[i] == expected, "value %lld (%a): %#x, not %#x", (long long)i,
                              (double)values[i], bits[i], expected);
        }
        if (length < N) ck_assert_uint_eq(bits[length], 0xABABu); /* nothing past n */
    }
    free(values), free(bits);
}
END_TEST

/* ---- the kernels ---- */

static void check_kernel(const char *kernel) {
    int threads = mc_get_num_threads();
    mc_set_num_threads(1);
    check_all_shapes(kernel);
    check_rounding_in_packing(kernel);
    check_degenerate();
    check_batched(kernel);
    mc_set_num_threads(2);
    check_batched(kernel);
    /* Split over threads, by rows and by columns, and wider than NC. */
    const shape big[] = {{700, 64, 300}, {40, 900, 301}, {30, 3100, 20}};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        for (int t = 0; t < 4; t++) {
            product p = make_product(t & 1, t & 2, big[i], 1.0f, 0.5f, 90 + i);
            float *C = run_bf16(&p);
            check_against_definition(kernel, &p, C);
            free(C), free_product(&p);
        }
    mc_set_num_threads(threads);
}

START_TEST(test_emulation_matches_definition) {
    mc_gemm_bf16_force_emulation(true);
    ck_assert_ptr_nonnull(strstr(mc_gemm_bf16_kernel_name(), "emulated"));
    check_kernel("emulated bf16");
    mc_gemm_bf16_force_emulation(false);
}
END_TEST

START_TEST(test_vdpbf16ps_matches_definition) {
    ck_assert_ptr_nonnull(strstr(mc_gemm_bf16_kernel_name(), "vdpbf16ps"));
    check_kernel("vdpbf16ps");
}
END_TEST

/* The emulation gives vdpbf16ps's numbers bit for bit on normal values (so
 * a CPU without AVX512_BF16 trains the same model), and the one documented
 * difference: vdpbf16ps flushes a subnormal result to zero. */
START_TEST(test_emulation_is_vdpbf16ps_bit_for_bit) {
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int t = 0; t < 4; t++) {
            product p = make_product(t & 1, t & 2, shapes[i], 0.75f, 0.5f, 70 + i);
            float *native = run_bf16(&p);
            mc_gemm_bf16_force_emulation(true);
            float *emulated = run_bf16(&p);
            mc_gemm_bf16_force_emulation(false);
            for (int64_t at = 0; at < p.c_size; at++)
                ck_assert_msg(memcmp(&native[at], &emulated[at], sizeof(float)) == 0,
                              "%c%c %lldx%lldx%lld: element %lld: vdpbf16ps %a, emulated %a",
                              t & 1 ? 'T' : 'N', t & 2 ? 'T' : 'N', (long long)p.s.M,
                              (long long)p.s.N, (long long)p.s.K, (long long)at,
                              (double)native[at], (double)emulated[at]);
            free(native), free(emulated), free_product(&p);
        }
    /* 2^-70 * 2^-70 = 2^-140: below fp32's smallest normal (2^-126). */
    const float tiny = ldexpf(1.0f, -70);
    float native = 1.0f, emulated = 1.0f;
    mc_gemm(MC_PRECISION_BF16, false, false, 1, 1, 1, 1.0f, &tiny, 1, &tiny, 1, 0.0f, &native, 1);
    mc_gemm_bf16_force_emulation(true);
    mc_gemm(MC_PRECISION_BF16, false, false, 1, 1, 1, 1.0f, &tiny, 1, &tiny, 1, 0.0f, &emulated,
            1);
    mc_gemm_bf16_force_emulation(false);
    ck_assert_msg(native == 0.0f, "vdpbf16ps kept the subnormal %a", (double)native);
    ck_assert_msg(emulated == ldexpf(1.0f, -140), "the emulation gave %a", (double)emulated);
}
END_TEST

/* The native packing rounds with vcvtne2ps2bf16, which reads a subnormal
 * float as zero; bf16_bits (the emulation's packing) rounds it, and the
 * emulation keeps subnormal bf16 values. So a subnormal operand times 1
 * gives 0 natively (as vdpbf16ps would give for the rounded subnormal
 * anyway), the subnormal's rounding emulated; and the largest subnormal,
 * which rounds up to 2^-126 (a normal bf16), is the one value whose native
 * product differs from that of its mc_bf16_round. Both operands go through
 * either packing: each is tried as A and as B. */
START_TEST(test_native_packing_reads_subnormals_as_zero) {
    const float subnormals[] = {ldexpf(1.0f, -130), float_of(0x007FFFFFu),
                                -ldexpf(1.0f, -131)};
    const float one = 1.0f;
    for (size_t i = 0; i < sizeof subnormals / sizeof subnormals[0]; i++)
        for (int as_b = 0; as_b < 2; as_b++) {
            const float *a = as_b ? &one : &subnormals[i], *b = as_b ? &subnormals[i] : &one;
            float native = 1.0f, emulated = 1.0f;
            mc_gemm(MC_PRECISION_BF16, false, false, 1, 1, 1, 1.0f, a, 1, b, 1, 0.0f, &native, 1);
            mc_gemm_bf16_force_emulation(true);
            mc_gemm(MC_PRECISION_BF16, false, false, 1, 1, 1, 1.0f, a, 1, b, 1, 0.0f, &emulated,
                    1);
            mc_gemm_bf16_force_emulation(false);
            ck_assert_msg(native == 0.0f, "vdpbf16ps packing kept %a as %a",
                          (double)subnormals[i], (double)native);
            const float rounded = mc_bf16_round(subnormals[i]);
            ck_assert_msg(emulated == rounded, "the emulation gave %a for %a, not %a", (double)emulated,
                          (double)subnormals[i], (double)rounded);
        }
}
END_TEST

/* The bf16 bits of values[0..n), rounded as the packing in use rounds
 * (mc_bf16_bits_of_products), as a weight's copy and a convolution's bf16
 * columns are. */
static uint16_t *bf16_copy(const float *values, int64_t n) {
    uint16_t *bits = malloc((size_t)(n > 0 ? n : 1) * sizeof *bits);
    ck_assert_ptr_nonnull(bits);
    const mc_bf16_bits_fn round = mc_bf16_bits_of_products();
    ck_assert_ptr_nonnull(round);
    round(values, n, bits);
    return bits;
}

/* B given in bf16 (a weight's cached copy), and A too when a_too (a
 * convolution's columns gathered in bf16): the same result, bit for bit,
 * as rounding the fp32 operands where they are packed, on every shape,
 * transposition and thread split, on both micro-kernels. */
static void check_bf16_given(bool a_too) {
    /* 20 x 40 x 4700: K split in two (mc_gemm_bf16_k_chunks); the last
     * two: shared packing */
    const shape more[] = {{700, 64, 300},   {40, 900, 301}, {30, 3100, 20}, {20, 40, 4700},
                          {300, 130, 1030}, {125, 400, 1100}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0] + sizeof more / sizeof more[0]; i++)
        for (int t = 0; t < 4; t++) {
            const shape s = i < sizeof shapes / sizeof shapes[0] ? shapes[i] : more[i - sizeof shapes / sizeof shapes[0]];
            product p = make_product(t & 1, t & 2, s, 0.75f, 0.5f, 110 + i);
            uint16_t *A16 = bf16_copy(p.A, p.a_size), *B16 = bf16_copy(p.B, p.b_size);
            float *expected = run_bf16(&p), *C = alloc_floats(p.c_size);
            memcpy(C, p.C0, (size_t)p.c_size * sizeof(float));
            if (a_too)
                MC_CHECK_OK(mc_gemm_bf16_ab(p.ta, p.tb, s.M, s.N, s.K, p.alpha, A16, p.lda, B16,
                                            p.ldb, p.beta, C, p.ldc));
            else
                MC_CHECK_OK(mc_gemm_bf16_b(p.ta, p.tb, s.M, s.N, s.K, p.alpha, p.A, p.lda, B16,
                                           p.ldb, p.beta, C, p.ldc));
            ck_assert_msg(memcmp(C, expected, (size_t)p.c_size * sizeof(float)) == 0,
                          "%c%c %lldx%lldx%lld: bf16 %s differs from rounding in the packing",
                          t & 1 ? 'T' : 'N', t & 2 ? 'T' : 'N', (long long)s.M, (long long)s.N,
                          (long long)s.K, a_too ? "A and B" : "B");
            free(A16), free(B16), free(expected), free(C), free_product(&p);
        }
}

START_TEST(test_bf16_b_is_rounding_in_packing) {
    for (int threads = 1; threads <= 2; threads++) {
        mc_set_num_threads(threads);
        for (int a_too = 0; a_too < 2; a_too++) {
            check_bf16_given(a_too);
            mc_gemm_bf16_force_emulation(true);
            check_bf16_given(a_too);
            mc_gemm_bf16_force_emulation(false);
        }
    }
}
END_TEST

/* K split into chunks (a weight gradient's long K and small C): each
 * chunk summed alone and the partial sums added in order, so the result is
 * the same, bit for bit, at 1, 2 and 3 threads (the cut depends on the
 * shape only), and within the bound above; on both micro-kernels, every
 * transposition, with and without beta. */
static void check_split_k(const char *kernel) {
    const shape split[] = {{64, 96, 8200}, {37, 45, 5001}};
    const int threads = mc_get_num_threads();
    for (size_t i = 0; i < sizeof split / sizeof split[0]; i++) {
        ck_assert_int_gt(mc_gemm_bf16_k_chunks(split[i].M, split[i].N, split[i].K), 1);
        for (int t = 0; t < 4; t++)
            for (int ab = 0; ab < 2; ab++) {
                product p = make_product(t & 1, t & 2, split[i], ab ? 0.75f : 1.0f,
                                         ab ? 0.5f : 0.0f, 130 + i);
                mc_set_num_threads(1);
                float *one = run_bf16(&p);
                check_against_definition(kernel, &p, one);
                for (int n = 2; n <= 3; n++) {
                    mc_set_num_threads(n);
                    float *more = run_bf16(&p);
                    ck_assert_msg(memcmp(one, more, (size_t)p.c_size * sizeof(float)) == 0,
                                  "%s %c%c %lldx%lldx%lld: %d threads differ from 1", kernel,
                                  t & 1 ? 'T' : 'N', t & 2 ? 'T' : 'N', (long long)p.s.M,
                                  (long long)p.s.N, (long long)p.s.K, n);
                    free(more);
                }
                free(one), free_product(&p);
            }
    }
    mc_set_num_threads(threads);
}

/* Products whose shared operand (op(B) when the threads cut the rows of C,
 * op(A) when they cut its columns) is large enough for 2 threads to pack
 * it together (K x its extent >= 2^17 values, K not split): K over several
 * slices with a short last one, the threads' parts meeting inside a slice
 * and between two A panels (the spill past a panel's end), a transposed A
 * packed by blocks (pack_a_block). Against the definition, and bit for bit
 * against one thread, which packs everything itself. */
static void check_shared_packing(const char *kernel) {
    /* odd K too: the last pair of a bf16 panel holds one value and a zero */
    const shape shared[] = {{300, 130, 1030}, {125, 400, 1100}, {40, 6500, 3300},
                            {300, 130, 1031}, {125, 400, 1101}};
    const int threads = mc_get_num_threads();
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++) {
        ck_assert_int_eq(mc_gemm_bf16_k_chunks(shared[i].M, shared[i].N, shared[i].K), 1);
        for (int t = 0; t < 4; t++) {
            product p = make_product(t & 1, t & 2, shared[i], 1.0f, 0.5f, 150 + i);
            mc_set_num_threads(2);
            float *two = run_bf16(&p);
            check_against_definition(kernel, &p, two);
            mc_set_num_threads(1);
            float *one = run_bf16(&p);
            ck_assert_msg(memcmp(one, two, (size_t)p.c_size * sizeof(float)) == 0,
                          "%s %c%c %lldx%lldx%lld: 2 threads differ from 1", kernel,
                          t & 1 ? 'T' : 'N', t & 2 ? 'T' : 'N', (long long)p.s.M, (long long)p.s.N,
                          (long long)p.s.K);
            free(one), free(two), free_product(&p);
        }
    }
    mc_set_num_threads(threads);
}

START_TEST(test_shared_packing_two_threads) {
    if (mc_gemm_bf16_native_available()) check_shared_packing("vdpbf16ps");
    mc_gemm_bf16_force_emulation(true);
    check_shared_packing("emulated bf16");
    mc_gemm_bf16_force_emulation(false);
}
END_TEST

START_TEST(test_split_k_is_thread_independent) {
    if (mc_gemm_bf16_native_available()) check_split_k("vdpbf16ps");
    mc_gemm_bf16_force_emulation(true);
    check_split_k("emulated bf16");
    mc_gemm_bf16_force_emulation(false);
}
END_TEST

/* mc_bf16_bits_of_products rounds as the packing in use: mc_bf16_round's
 * bits on the emulation; natively the same except that a subnormal float
 * becomes zero (vcvtne2ps2bf16). Every length up to 70 (the masked tails),
 * nothing written past n. */
static void check_bits_of_products(bool native) {
    enum { N = 70 };
    float values[N];
    uint16_t bits[N + 1];
    uint32_t seed = 7;
    for (int i = 0; i < N; i++) {
        seed = seed * 1664525u + 1013904223u;
        values[i] = float_of(seed); /* any bits: NaNs, infinities, subnormals */
    }
    values[3] = ldexpf(1.0f, -130), values[4] = float_of(0x007FFFFFu); /* subnormals */
    mc_bf16_bits_fn round = mc_bf16_bits_of_products();
    ck_assert_ptr_nonnull(round);
    for (int length = 0; length <= N; length++) {
        memset(bits, 0xAB, sizeof bits);
        round(values, length, bits);
        for (int i = 0; i < length; i++) {
            const bool subnormal = fpclassify(values[i]) == FP_SUBNORMAL;
            const uint16_t expected =
                native && subnormal ? (uint16_t)(bits_of(values[i]) >> 31 << 15)
                                    : (uint16_t)(bits_of(mc_bf16_round(values[i])) >> 16);
            ck_assert_msg(bits[i] == expected, "%s, n %d, value %d (%a): %04x, expected %04x",
                          native ? "native" : "emulated", length, i, (double)values[i], bits[i],
                          expected);
        }
        ck_assert_uint_eq(bits[length], 0xABABu);
    }
}

START_TEST(test_bits_of_products_round_as_the_packing) {
    if (mc_gemm_bf16_native_available()) check_bits_of_products(true);
    mc_gemm_bf16_force_emulation(true);
    check_bits_of_products(false);
    mc_gemm_bf16_force_emulation(false);
}
END_TEST

/* With OpenBLAS, bf16 products run in fp32: mc_sgemm's result exactly. */
START_TEST(test_openblas_runs_bf16_in_fp32) {
    MC_CHECK_OK(mc_gemm_set_kernel(MC_GEMM_OPENBLAS));
    ck_assert_str_eq(mc_gemm_bf16_kernel_name(), "fp32 (OpenBLAS)");
    product p = make_product(false, true, (shape){37, 45, 301}, 1.0f, 0.5f, 5);
    float *bf16 = run_bf16(&p), *fp32 = alloc_floats(p.c_size);
    memcpy(fp32, p.C0, (size_t)p.c_size * sizeof(float));
    mc_sgemm(false, true, p.s.M, p.s.N, p.s.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta, fp32,
             p.ldc);
    ck_assert(memcmp(bf16, fp32, (size_t)p.c_size * sizeof(float)) == 0);
    free(bf16), free(fp32), free_product(&p);
    MC_CHECK_OK(mc_gemm_set_kernel(MC_GEMM_AUTO));
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemm_bf16");
    const TTest *const rounding[] = {test_bf16_round_is_nearest_even,
                                     test_openblas_runs_bf16_in_fp32, NULL};
    mc_test_add_case(s, "rounding", rounding);
    const bool avx512 = mc_gemm_avx512_available();
    const bool native = mc_gemm_bf16_native_available();
    TCase *kernels = gemm_use_avx512(tcase_create("kernels"));
    if (avx512) tcase_add_test(kernels, test_emulation_matches_definition);
    if (avx512) tcase_add_test(kernels, test_bf16_b_is_rounding_in_packing);
    if (avx512) tcase_add_test(kernels, test_bits_of_products_round_as_the_packing);
    if (avx512) tcase_add_test(kernels, test_split_k_is_thread_independent);
    if (avx512) tcase_add_test(kernels, test_shared_packing_two_threads);
    if (avx512) tcase_add_test(kernels, test_array_rounding_is_bf16_round);
    if (native) {
        tcase_add_test(kernels, test_vdpbf16ps_matches_definition);
        tcase_add_test(kernels, test_emulation_is_vdpbf16ps_bit_for_bit);
        tcase_add_test(kernels, test_native_packing_reads_subnormals_as_zero);
    }
    suite_add_tcase(s, kernels);
    if (mc_test_run_suite(s) != 0) return EXIT_FAILURE;
    if (!avx512) return mc_test_skip("the bf16 kernels' cases (this CPU has no AVX-512F)");
    if (!native) return mc_test_skip("the vdpbf16ps cases (this CPU has no AVX512_BF16)");
    return EXIT_SUCCESS;
}

/* The pieces of the packed AVX-512 GEMM (gemm_avx512.c) that its bf16
 * variant (gemm_avx512_bf16.c) shares: the blocking constants, register
 * helpers, the micro-kernel's epilogue, and the blocked loops themselves,
 * which take the packing routines and the micro-kernel of one precision
 * (internal, not installed). */
#ifndef MMCHAIN_OPS_GEMM_AVX512_INTERNAL_H
#define MMCHAIN_OPS_GEMM_AVX512_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

/* One precision's packing and micro-kernel, for the blocked loops.
 * Packed panels are arrays of 4-byte slots: one float (fp32), or a pair of
 * bf16 values from two consecutive k (bf16); k_per_slot says which. A
 * slice of K holds slice_slots slots (KC_FP32 or KC_BF16), i.e.
 * slice_slots * k_per_slot values of k. */
typedef struct mc_gemm_avx512_variant {
    int k_per_slot;
    int slice_slots;
    /* The panel of op(A) rows [i0, i0+rows), rows <= MR, columns
     * [k0, k0+kc): ceil(kc / k_per_slot) slots of MR, zero beyond rows; 16
     * slots of room past its end. A: (M, K) or (K, M) when trans_a, of
     * floats, or of bf16 values for the variant that takes A in bf16 (a
     * convolution's columns, gathered straight into bf16). */
    void (*pack_a_panel)(bool trans_a, const void *A, int64_t lda, int64_t i0, int64_t rows,
                         int64_t k0, int64_t kc, float *panel);
    /* The block of op(B) rows [k0, k0+kc), columns [j0, j0+nc), as panels
     * of NR columns, each ceil(kc / k_per_slot) slots of NR, zero beyond nc.
     * B: (K, N) or (N, K) when trans_b, of floats, or of bf16 values for
     * the variant that takes B in bf16 (a weight's cached copy). */
    void (*pack_b_block)(bool trans_b, const void *B, int64_t ldb, int64_t k0, int64_t kc,
                         int64_t j0, int64_t nc, float *packed);
    /* C[rows, cols] = alpha * (a_panel @ b_panel)[rows, cols] + beta * C over
     * `slots` slots of both panels. beta == 0: C is not read. */
    void (*micro_kernel)(int64_t slots, const float *a_panel, const float *b_panel, float *C,
                         int64_t ldc, int64_t rows, int64_t cols, float alpha, float beta);
    /* Optional: the panels of op(A) rows [i0, i0+rows), rows <= MC, all
     * at once (ceil(rows / MR) panels one after another, each as
     * pack_a_panel makes it), for a layout where one panel at a time
     * reads memory badly. NULL: pack_a_panel per panel. */
    void (*pack_a_block)(bool trans_a, const void *A, int64_t lda, int64_t i0, int64_t rows,
                         int64_t k0, int64_t kc, float *packed_a);
    /* Optional, for a B given packed already (a weight kept in panel
     * order): where the block pack_b_block would make lies in B, read in
     * place instead of copied. ldb: the panels' row of columns (N rounded
     * up to NR). NULL: pack_b_block packs. */
    const float *(*packed_b_block)(const void *B, int64_t ldb, int64_t k0, int64_t kc,
                                   int64_t j0);
    /* The size of one value of A and of B as the packing reads them (4:
     * floats, 2: bf16), for fetching the next blocks ahead (gemm_block). */
    int a_bytes, b_bytes;
} mc_gemm_avx512_variant;

/* mc_sgemm's contract (ops.h) with one variant's packing and micro-kernel;
 * false, C untouched, when the packing space cannot be allocated. */
bool mc_gemm_avx512_run(const mc_gemm_avx512_variant *variant, bool trans_a, bool trans_b,
                        int64_t M, int64_t N, int64_t K, float alpha, const void *A, int64_t lda,
                        const void *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* mc_sgemm_batched's contract, the same way. */
bool mc_gemm_avx512_run_batched(const mc_gemm_avx512_variant *variant, bool trans_a,
                                bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                const float *A, int64_t lda, int64_t stride_a, const float *B,
                                int64_t ldb, int64_t stride_b, float beta, float *C, int64_t ldc,
                                int64_t stride_c, int64_t batch);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

enum {
    MR = 12,   /* rows of C per micro-kernel (broadcast operand) */
    NR = 32,   /* columns of C per micro-kernel (two zmm vectors) */
    /* Slots in one packed slice of K (KC), per precision. C is read and
     * written once per slice, so a deeper slice does so less often: at
     * 768 the fp32 B panel (KC*NR*4 = 96 KiB) no longer fits the 48 KiB
     * L1 and is read from L2, yet CLIP's MLP products at batch 64 (K =
     * 768, 3072; C of 39 MB, larger than L3) ran 5-14 % faster than at
     * 256 and ResNet-50's step no slower (bench/README.md, "Slice
     * depth"). The bf16 kernel gained nothing from deeper slices
     * (its slot holds two k: 256 slots are already 512 k, a B panel of
     * 32 KiB), and its weights' prepacked panels and K-split are laid out
     * by this slice, so it stays at 256. The depth decides where C's
     * partial sums are rounded, so it is part of every product's result. */
    KC_FP32 = 768,
    KC_BF16 = 256,
    MC = 144,  /* rows of one packed A block: MC*KC*4 = 432 KiB fp32, 144 KiB bf16 (L2) */
    NC = 3072, /* columns of one packed B block: KC*NC*4 = 9 MiB fp32, 3 MiB bf16 (L3) */
};

/* The first n of 16 lanes. */
AVX512 static inline __mmask16 first_lanes(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* The first n floats at p (all 16 when n >= 16), zeros past n; nothing is
 * read past n. A plain load where all 16 lanes are wanted: on AMD Zen 5 a
 * masked load or store costs more than a plain one even with every lane
 * set (measured: rounding an array of floats to bf16 ran 1.4-1.9x faster
 * with plain loads and stores for its whole vectors), and the packing
 * loads one vector at a time. */
AVX512 static inline __m512 load_first(const float *p, int64_t n) {
    return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(first_lanes(n), p);
}

/* A hint to fetch the line holding `base + offset` floats. The address may
 * lie past the matrix (a prefetch never faults), so it is computed as an
 * integer: a pointer past its object would be undefined behaviour in C. */
static inline void prefetch(const float *base, int64_t offset) {
    _mm_prefetch((const char *)((uintptr_t)base + (uintptr_t)(offset * (int64_t)sizeof(float))),
                 _MM_HINT_T0);
}

/* The low (even) or high (odd) 64-bit halves of each pair of a and b. */
AVX512 static inline __m512 unpack_lo_pairs(__m512 a, __m512 b) {
    return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}
AVX512 static inline __m512 unpack_hi_pairs(__m512 a, __m512 b) {
    return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

/* In registers: r[k] lane i becomes the old r[i] lane k. Four rounds of
 * shuffles, each interleaving pairs at twice the previous width: 32-bit
 * elements, 64-bit pairs, then 128-bit quarters twice. */
AVX512 static inline __attribute__((always_inline)) void transpose_16x16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = unpack_lo_pairs(t[i], t[i + 2]);
        r[i + 1] = unpack_hi_pairs(t[i], t[i + 2]);
        r[i + 2] = unpack_lo_pairs(t[i + 1], t[i + 3]);
        r[i + 3] = unpack_hi_pairs(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 16; i += 8)
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
        }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
}

/* The micro-kernel's first step: acc (a 12 x 32 block) zeroed, and C's
 * rows, needed only at the end, fetched meanwhile. */
AVX512 static inline __attribute__((always_inline)) void start_tile(__m512 acc[MR][2],
                                                                    const float *C, int64_t ldc) {
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        prefetch(C, i * ldc);
        prefetch(C, i * ldc + 16);
    }
}

/* The micro-kernel's last step, the same for every precision:
 * C[rows, cols] = alpha * acc + beta * C, acc holding a 12 x 32 block in
 * 24 registers (always inlined, with constant i, so it stays there).
 * beta == 0: C is not read. */
AVX512 static inline __attribute__((always_inline)) void store_tile(__m512 acc[MR][2], float *C,
                                                                    int64_t ldc, int64_t rows,
                                                                    int64_t cols, float alpha,
                                                                    float beta) {
    const __mmask16 mask0 = first_lanes(cols), mask1 = first_lanes(cols - 16);
    const __m512 alpha_v = _mm512_set1_ps(alpha), beta_v = _mm512_set1_ps(beta);
    /* Whole rows use plain loads and stores (masked stores are slow on
     * some CPUs). */
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        if (i >= rows) break;
        float *row = C + i * ldc;
        __m512 v0 = _mm512_mul_ps(alpha_v, acc[i][0]), v1 = _mm512_mul_ps(alpha_v, acc[i][1]);
        if (cols == NR) {
            if (beta != 0.0f) {
                v0 = _mm512_fmadd_ps(beta_v, _mm512_loadu_ps(row), v0);
                v1 = _mm512_fmadd_ps(beta_v, _mm512_loadu_ps(row + 16), v1);
            }
            _mm512_storeu_ps(row, v0);
            _mm512_storeu_ps(row + 16, v1);
        } else {
            if (beta != 0.0f) {
                v0 = _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(mask0, row), v0);
                v1 = _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(mask1, row + 16), v1);
            }
            _mm512_mask_storeu_ps(row, mask0, v0);
            _mm512_mask_storeu_ps(row + 16, mask1, v1);
        }
    }
}

#endif
#endif

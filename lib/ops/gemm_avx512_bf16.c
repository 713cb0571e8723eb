/* The bf16 variant of the packed AVX-512 GEMM (gemm_avx512.c): the same
 * blocked loops, threads and 12 x 32 block of C, with both operands rounded
 * to bf16 as they are packed and multiplied by vdpbf16ps, which accumulates
 * in fp32.
 *
 * bf16 is the top half of an fp32 (sign, the same 8 exponent bits, 7
 * mantissa bits): the range of fp32 at about 3 significant digits. The
 * product of two bf16 values (8-bit significands) is exact in fp32 (24),
 * so the only roundings are the operands' (once each, to nearest even) and
 * the fp32 sums: the result is "the fp32 product of the bf16-rounded
 * operands", which is how mc_sgemm_bf16_naive defines it.
 *
 * WHY PAIRS: vdpbf16ps (Intel's AVX512_BF16, Cooper Lake and later; AMD Zen
 * 4 and later) takes, in each 32-bit lane j, a PAIR of bf16 values from
 * each source and does
 *     acc[j] += a[2j+1] * b[2j+1];  acc[j] += a[2j] * b[2j]
 * (the Intel SDM's order, each step rounded to fp32), i.e. two steps of k
 * per instruction, 32 multiply-adds per zmm where an fp32 FMA does 16. So
 * the packed panels hold one 4-byte SLOT per pair of consecutive k, the
 * even k in the low half:
 *     B panel: slot (s, j) = { B[2s][j], B[2s+1][j] }    (kc/2 slots of NR)
 *     A panel: slot (s, i) = { A[i][2s], A[i][2s+1] }    (kc/2 slots of MR)
 * and the micro-kernel, for each s, loads two zmm of B slots (32 columns)
 * and broadcasts one A slot (a pair of one row) per row: the fp32 kernel's
 * loop with k stepping by two. An odd kc is padded with a zero pair half
 * in both operands (0 * 0 adds nothing). A slice of K is KC_BF16 slots,
 * 2 * KC_BF16 values of k (gemm_avx512_internal.h says why bf16 keeps
 * shallower slices than fp32).
 *
 * Rounding happens in the packing, where each operand is read once per
 * slice anyway (activations converted where they are packed; see
 * bf16_bits for the rounding). With AVX512_BF16 the packing rounds with
 * vcvtne2ps2bf16 (32 floats to 32 bf16 in one instruction, where
 * bf16_bits takes about eight per 16): the same nearest-even rounding and
 * quiet NaN, except that it reads a subnormal float as zero. vdpbf16ps
 * reads subnormal bf16 as zero anyway, so the only values that differ are
 * the subnormal floats within half a bf16 step of 2^-126, which
 * bf16_bits rounds up to that smallest normal; no product of this library
 * meets them in practice (tested: both roundings agree on every other
 * value).
 *
 * EMULATION: on a CPU with AVX-512F but not AVX512_BF16 the same packed
 * panels go to a micro-kernel that widens each bf16 back to fp32 (a shift)
 * and does the two steps as two fp32 FMAs in vdpbf16ps's order. The
 * products being exact, an FMA rounds exactly as vdpbf16ps's add does, so
 * the two kernels agree bit for bit, except that vdpbf16ps flushes
 * subnormal inputs and results to zero (the emulation keeps them) —
 * tested both ways in tests/test_gemm_bf16.c. It is about as fast as the
 * fp32 kernel (twice the FMAs on half the bytes), so it exists for
 * correctness and portability, not speed. On a CPU without AVX-512F the
 * products run in fp32 (gemm.c). */
#include "core/scratch.h"
#include "mmchain/threads.h"
#include "ops/gemm_avx512_internal.h"
#include "ops/gemm_internal.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- splitting K (the shape rule; the run is below) ----
 *
 * WHY: a product with a long K and a small C (a convolution's weight
 * gradient: K = batch x output pixels, 25,600 in ResNet-50's layer1 at
 * batch 100, C = its 64 x 256 weight) gives each thread a thin strip of C,
 * and every thread packs the whole of the operand the strips share: at 2
 * threads the work of a 64 x 64 x 25,600 product grew 3x, 64 x 256 x
 * 25,600 1.5x (CPU time). bf16 halves the arithmetic, not the packing, so
 * it suffers most. Cut K instead and every thread packs only its own part
 * of both operands.
 *
 * DETERMINISM: the cut depends on the shape only, never on the threads:
 * each chunk of K is summed into its own fp32 partial C (as one product,
 * whose result does not depend on the threads either), and the partials
 * are added in chunk order, so 1 and 2 threads give the same bits. The
 * price is chunks - 1 more fp32 roundings per element (and one more slice
 * edge per chunk) than the unsplit product: tests/test_gemm_bf16.c's bound
 * counts them. */
enum {
    KSPLIT_MIN_CHUNK = 2048, /* k per chunk at least: 4 slices of 512 */
    KSPLIT_MAX_CHUNKS = 8,   /* 8 x 64 KiB partials for a 64 x 256 C */
};
/* C larger than this (floats) is cut well by the threads already. */
static const double KSPLIT_MAX_C = 1 << 18;

int64_t mc_gemm_bf16_k_chunks(int64_t M, int64_t N, int64_t K) {
    if ((double)M * (double)N > KSPLIT_MAX_C) return 1;
    int64_t chunks = 1; /* a power of two: an even share for 2, 4 or 8 threads */
    while (chunks < KSPLIT_MAX_CHUNKS && K / (2 * chunks) >= KSPLIT_MIN_CHUNK) chunks *= 2;
    return chunks;
}

#if defined(__x86_64__) && defined(__GNUC__)

#define AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

bool mc_gemm_bf16_native_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
}

/* ---- rounding to bf16 ---- */

/* The bf16 nearest to each of 16 floats (ties to even), as the low 16 bits
 * of each 32-bit lane: add 0x7FFF plus the lowest kept bit, then drop the
 * low 16 bits (the carry rounds up, into the exponent where it must, so
 * the largest finite values round to infinity as they should). NaN would
 * carry into the sign or become infinity, so it is kept as a quiet NaN
 * instead. The same as mc_bf16_round (gemm.c), and as vcvtneps2bf16
 * except on subnormal floats (see the top of the file). */
AVX512 static inline __m512i bf16_bits(__m512 x) {
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i kept_lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_srli_epi32(
        _mm512_add_epi32(bits, _mm512_add_epi32(kept_lsb, _mm512_set1_epi32(0x7FFF))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40));
    return _mm512_mask_mov_epi32(rounded, nan, quiet);
}

/* 32 consecutive floats (lo: k .. k+15, hi: k+16 .. k+31) as 16 slots:
 * slot s = { bf16(x[2s]), bf16(x[2s+1]) }, the even one in the low half.
 * That is the 32 bf16 values in order: each vpmovdw narrows 16 of them. */
AVX512 static inline __m512i slots_of_consecutive(__m512 lo, __m512 hi) {
    const __m256i first = _mm512_cvtepi32_epi16(bf16_bits(lo));
    const __m256i second = _mm512_cvtepi32_epi16(bf16_bits(hi));
    return _mm512_inserti64x4(_mm512_castsi256_si512(first), second, 1);
}

/* The same with vcvtne2ps2bf16, which writes its second source's 16 values
 * to the low half (see the top of the file for its one difference). */
AVX512_BF16 static inline __m512i slots_of_consecutive_native(__m512 lo, __m512 hi) {
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

/* One of the two above: the packing below is written once and takes the
 * rounding as a constant argument (always inlined, so the call inlines). */
typedef __m512i (*slots_of_consecutive_fn)(__m512 lo, __m512 hi);

/* Two rows of 16 floats (k even and k + 1) as 16 slots: slot j =
 * { bf16(even[j]), bf16(odd[j]) }. The first n lanes are read; odd may be
 * NULL (k + 1 past the slice: zeros). */
AVX512 static inline __m512i slots_of_two_rows(const float *even, const float *odd, int64_t n) {
    const __m512i low = bf16_bits(load_first(even, n));
    if (!odd) return low;
    const __m512i high = bf16_bits(load_first(odd, n));
    return _mm512_or_si512(low, _mm512_slli_epi32(high, 16));
}

/* The same with vcvtne2ps2bf16: the 16 even values then the 16 odd ones,
 * interleaved by one vpermw. */
AVX512_BF16 static inline __m512i slots_of_two_rows_native(const float *even, const float *odd,
                                                           int64_t n) {
    const __m512 low = load_first(even, n);
    const __m512 high = odd ? load_first(odd, n) : _mm512_setzero_ps();
    /* word 2j <- word j (even[j]), word 2j + 1 <- word 16 + j (odd[j]) */
    const __m512i interleave = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
        19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(high, low));
}

/* The bf16 bits of values[0..n) into bits, 16 at a time (the last n % 16
 * under a mask): bf16_bits narrowed to 16 bits per lane.
 * values, bits: (n). */
AVX512 static void bf16_bits_of_array(const float *values, int64_t n, uint16_t *bits) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mask = first_lanes(n - i);
        _mm512_mask_cvtepi32_storeu_epi16(bits + i, mask,
                                          bf16_bits(_mm512_maskz_loadu_ps(mask, values + i)));
    }
}

/* ---- packing ---- */

/* Slots of a (lines, kc) piece of a row-major matrix whose rows run along
 * k: out[s * out_stride + i] = { src[i][2s], src[i][2s+1] } for i < 16 (a
 * zero slot for lines <= i), s < ceil(kc / 2). src: (lines, kc) with row
 * stride ld; out: (ceil(kc / 2), out_stride) slots with room for 16 -
 * out_stride past its end. 32 k at a time: each line's 32 floats become 16
 * slots in a register, and a 16 x 16 transpose turns lines into lanes.
 * Full 16-lane stores that spill forwards, as gemm_avx512.c's
 * pack_transposed does (and why). */
AVX512 static inline __attribute__((always_inline)) void
pack_slots_transposed(slots_of_consecutive_fn slots_of_consecutive, const float *src, int64_t ld,
                      int64_t lines, int64_t kc, float *out, int64_t out_stride) {
    for (int64_t k0 = 0; k0 < kc; k0 += 32) {
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i < lines) {
                const float *line = src + i * ld + k0;
                prefetch(line, 64);
                r[i] = _mm512_castsi512_ps(slots_of_consecutive(
                    load_first(line, kc - k0), load_first(line + 16, kc - k0 - 16)));
            } else {
                r[i] = _mm512_setzero_ps();
            }
        }
        transpose_16x16(r);
        const int64_t slots = kc - k0 >= 32 ? 16 : (kc - k0 + 1) / 2;
        if (slots == 16) {
#pragma GCC unroll 16
            for (int s = 0; s < 16; s++) _mm512_storeu_ps(out + (k0 / 2 + s) * out_stride, r[s]);
        } else {
            for (int64_t s = 0; s < slots; s++)
                _mm512_storeu_ps(out + (k0 / 2 + s) * out_stride, r[s]);
        }
    }
}

/* 16 slots from rows k (even) and k + 1 (odd, NULL past the slice) of a
 * matrix, their first n columns (zero slots past n; nothing read when
 * n <= 0): one for rows of floats, one for rows of bf16 values. */
typedef __m512i (*slots_of_rows_fn)(const void *even, const void *odd, int64_t n);

/* The rows of slots of a (kc, nc) piece of a row-major matrix whose rows
 * run along n (B not transposed): rows k0 + 2s and k0 + 2s + 1 read in
 * order make row s of slots, even values low. B: (K, N) with row stride
 * ldb, of value_bytes-byte values (4: floats, 2: bf16), `slots` the maker
 * for that type (a constant at each call, so it inlines).
 * packed: (ceil(nc / NR), ceil(kc / 2), NR) slots. */
AVX512 static inline __attribute__((always_inline)) void
pack_rows_as_slots(slots_of_rows_fn slots_of_rows, const void *B, size_t value_bytes, int64_t ldb,
                   int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *packed) {
    const int64_t slots = (kc + 1) / 2;
    const char *values = B;
    for (int64_t s = 0; s < slots; s++) {
        const char *even = values + (size_t)((k0 + 2 * s) * ldb + j0) * value_bytes;
        const char *odd = 2 * s + 1 < kc ? even + (size_t)ldb * value_bytes : NULL;
        for (int64_t j = 0; j < nc; j += NR)
            for (int64_t half = 0; half < NR; half += 16) {
                const size_t at = (size_t)(j + half) * value_bytes;
                _mm512_store_si512(packed + j * slots + s * NR + half,
                                   slots_of_rows(even + at, odd ? odd + at : NULL, nc - j - half));
            }
    }
}

AVX512 static inline __m512i slots_of_float_rows(const void *even, const void *odd, int64_t n) {
    return slots_of_two_rows(even, odd, n);
}
AVX512_BF16 static inline __m512i slots_of_float_rows_native(const void *even, const void *odd,
                                                             int64_t n) {
    return slots_of_two_rows_native(even, odd, n);
}

/* mc_gemm_avx512_variant.pack_b_block for bf16 slots, with one rounding
 * (two makers of the same slots: rows of B, consecutive floats).
 * B: (K, N) with row stride ldb, or (N, K) when trans_b.
 * packed: (ceil(nc / NR), ceil(kc / 2), NR) slots. */
AVX512 static inline __attribute__((always_inline)) void
pack_b_block_rounding(slots_of_rows_fn slots_of_rows, slots_of_consecutive_fn slots_of_consecutive,
                      bool trans_b, const float *B, int64_t ldb, int64_t k0, int64_t kc, int64_t j0,
                      int64_t nc, float *packed) {
    const int64_t slots = (kc + 1) / 2;
    if (!trans_b) {
        pack_rows_as_slots(slots_of_rows, B, sizeof(float), ldb, k0, kc, j0, nc, packed);
    } else {
        /* op(B)[k][j] = B[j][k]: each row of B runs along k. */
        for (int64_t j = 0; j < nc; j += NR)
            for (int64_t half = 0; half < NR; half += 16)
                pack_slots_transposed(slots_of_consecutive, B + (j0 + j + half) * ldb + k0, ldb,
                                      nc - j - half, kc, packed + j * slots + half, NR);
    }
}

AVX512 static void pack_b_block_bf16(bool trans_b, const void *B, int64_t ldb, int64_t k0,
                                     int64_t kc, int64_t j0, int64_t nc, float *packed) {
    pack_b_block_rounding(slots_of_float_rows, slots_of_consecutive, trans_b, B, ldb, k0, kc, j0,
                          nc, packed);
}
AVX512_BF16 static void pack_b_block_bf16_native(bool trans_b, const void *B, int64_t ldb,
                                                 int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                                                 float *packed) {
    pack_b_block_rounding(slots_of_float_rows_native, slots_of_consecutive_native, trans_b, B, ldb,
                          k0, kc, j0, nc, packed);
}

/* ---- packing B given in bf16 (a weight's cached copy, weight_bf16.c) ----
 * The same panels from bf16 values: nothing to round, half the bytes to
 * read. */

/* The first n (at most 16) bf16 values at p, each in the low half of a
 * 32-bit lane (zero lanes past n; nothing read when n <= 0). */
AVX512 static inline __m512i widen_bf16(const uint16_t *p, int64_t n) {
    if (n >= 16) return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    uint16_t part[16] = {0};
    if (n > 0) memcpy(part, p, (size_t)n * sizeof *p);
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)part));
}

/* slots_of_rows_fn for rows of bf16 values: a pair is a slot already. */
AVX512 static inline __m512i slots_of_bf16_rows(const void *even, const void *odd, int64_t n) {
    const __m512i low = widen_bf16(even, n);
    return odd ? _mm512_or_si512(low, _mm512_slli_epi32(widen_bf16(odd, n), 16)) : low;
}

/* Slots of a (lines, kc) piece of a bf16 matrix whose rows run along k:
 * out[s * out_stride + i] = { src[i][2s], src[i][2s+1] }, as
 * pack_slots_transposed makes from floats. A pair of consecutive bf16 is
 * one 32-bit slot already, so this is a 16 x 16 transpose of slots; the
 * last slot of an odd kc takes its even value alone (its odd one is the
 * next slice's, or past the row). */
AVX512 static void pack_bf16_slots_transposed(const uint16_t *src, int64_t ld, int64_t lines,
                                              int64_t kc, float *out, int64_t out_stride) {
    const int64_t slots = (kc + 1) / 2, whole_pairs = kc / 2;
    for (int64_t s0 = 0; s0 < slots; s0 += 16) {
        const int64_t lone = kc % 2 && whole_pairs - s0 < 16 ? whole_pairs - s0 : -1;
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i < lines) {
                const uint16_t *line = src + i * ld + 2 * s0;
                /* the whole pairs, 4 bytes each, read as floats */
                __m512i v = _mm512_castps_si512(load_first((const float *)line, whole_pairs - s0));
                if (lone >= 0) v = _mm512_mask_set1_epi32(v, (__mmask16)(1u << lone), line[2 * lone]);
                r[i] = _mm512_castsi512_ps(v);
            } else {
                r[i] = _mm512_setzero_ps();
            }
        }
        transpose_16x16(r);
        const int64_t count = slots - s0 >= 16 ? 16 : slots - s0;
        for (int64_t s = 0; s < count; s++) _mm512_storeu_ps(out + (s0 + s) * out_stride, r[s]);
    }
}

/* mc_gemm_avx512_variant.pack_b_block for bf16 slots from a bf16 B.
 * B: (K, N) bf16 values with row stride ldb, or (N, K) when trans_b.
 * packed: (ceil(nc / NR), ceil(kc / 2), NR) slots. */
AVX512 static void pack_b_block_from_bf16(bool trans_b, const void *B_bf16, int64_t ldb,
                                          int64_t k0, int64_t kc, int64_t j0, int64_t nc,
                                          float *packed) {
    const uint16_t *B = B_bf16;
    const int64_t slots = (kc + 1) / 2;
    if (!trans_b) {
        pack_rows_as_slots(slots_of_bf16_rows, B, sizeof(uint16_t), ldb, k0, kc, j0, nc, packed);
    } else {
        for (int64_t j = 0; j < nc; j += NR)
            for (int64_t half = 0; half < NR; half += 16)
                pack_bf16_slots_transposed(B + (j0 + j + half) * ldb + k0, ldb, nc - j - half, kc,
                                           packed + j * slots + half, NR);
    }
}

/* mc_gemm_avx512_variant.pack_a_panel for bf16 slots from a bf16 A (a
 * convolution's columns, rounded where they were gathered): the same
 * panels as pack_a_panel_bf16_native makes from the floats they were
 * rounded from, with nothing to round. A: (M, K) bf16 values with row
 * stride lda, or (K, M) when trans_a.
 * panel: (ceil(kc / 2), MR) slots, with room for 16 - MR past its end. */
AVX512 static void pack_a_panel_from_bf16(bool trans_a, const void *A_bf16, int64_t lda,
                                          int64_t i0, int64_t rows, int64_t k0, int64_t kc,
                                          float *panel) {
    const uint16_t *A = A_bf16;
    if (trans_a) {
        /* Rows k and k + 1 of the stored A make one row of slots (full
         * stores, spilling forwards). */
        for (int64_t s = 0; s < (kc + 1) / 2; s++) {
            const uint16_t *even = A + (k0 + 2 * s) * lda + i0;
            _mm512_storeu_si512(panel + s * MR,
                                slots_of_bf16_rows(even, 2 * s + 1 < kc ? even + lda : NULL, rows));
        }
    } else {
        pack_bf16_slots_transposed(A + i0 * lda + k0, lda, rows, kc, panel, MR);
    }
}

/* mc_gemm_avx512_variant.pack_a_panel for bf16 slots, with one rounding
 * (as pack_b_block_rounding).
 * A: (M, K) with row stride lda, or (K, M) when trans_a.
 * panel: (ceil(kc / 2), MR) slots, with room for 16 - MR past its end. */
AVX512 static inline __attribute__((always_inline)) void
pack_a_panel_rounding(slots_of_rows_fn slots_of_rows, slots_of_consecutive_fn slots_of_consecutive,
                      bool trans_a, const void *A_floats, int64_t lda, int64_t i0, int64_t rows,
                      int64_t k0, int64_t kc, float *panel) {
    const float *A = A_floats;
    if (trans_a) {
        /* Rows k and k + 1 of the stored A make one row of slots (full
         * stores, spilling forwards). */
        for (int64_t s = 0; s < (kc + 1) / 2; s++) {
            const float *even = A + (k0 + 2 * s) * lda + i0;
            const float *odd = 2 * s + 1 < kc ? even + lda : NULL;
            _mm512_storeu_si512(panel + s * MR, slots_of_rows(even, odd, rows));
        }
    } else {
        pack_slots_transposed(slots_of_consecutive, A + i0 * lda + k0, lda, rows, kc, panel, MR);
    }
}

AVX512 static void pack_a_panel_bf16(bool trans_a, const void *A, int64_t lda, int64_t i0,
                                     int64_t rows, int64_t k0, int64_t kc, float *panel) {
    pack_a_panel_rounding(slots_of_float_rows, slots_of_consecutive, trans_a, A, lda, i0, rows, k0,
                          kc, panel);
}
AVX512_BF16 static void pack_a_panel_bf16_native(bool trans_a, const void *A, int64_t lda,
                                                 int64_t i0, int64_t rows, int64_t k0, int64_t kc,
                                                 float *panel) {
    pack_a_panel_rounding(slots_of_float_rows_native, slots_of_consecutive_native, trans_a, A, lda,
                          i0, rows, k0, kc, panel);
}

/* mc_gemm_avx512_variant.pack_a_block for bf16 slots: with trans_a, each
 * stored row k runs along i, and a panel at a time would read 12 floats
 * (part of a cache line) from each of 2 * kc rows, then come back for the
 * next 12; here each pair of rows is read once, straight through the
 * block's `rows` floats, and its slots go to every panel in turn (12-lane
 * stores: a full store would spill into the next panel's first slot,
 * written already). The same panels as pack_a_panel_bf16_native, which
 * packs the other layout (rows along k) a panel at a time as before.
 * A: (K, M) with row stride lda when trans_a, else (M, K).
 * packed_a: ceil(rows / MR) panels of (ceil(kc / 2), MR) slots. */
AVX512_BF16 static void pack_a_block_bf16_native(bool trans_a, const void *A, int64_t lda,
                                                 int64_t i0, int64_t rows, int64_t k0, int64_t kc,
                                                 float *packed_a) {
    const int64_t slots = (kc + 1) / 2;
    const float *A_floats = A;
    if (!trans_a) {
        for (int64_t ir = 0; ir < rows; ir += MR)
            pack_a_panel_bf16_native(false, A, lda, i0 + ir, rows - ir < MR ? rows - ir : MR, k0,
                                     kc, packed_a + ir * slots);
        return;
    }
    const __mmask16 panel_lanes = first_lanes(MR);
    for (int64_t s = 0; s < slots; s++) {
        const float *even = A_floats + (k0 + 2 * s) * lda + i0;
        const float *odd = 2 * s + 1 < kc ? even + lda : NULL;
        if (2 * s + 2 < kc) { /* the next pair of rows, while this one is packed */
            for (int64_t i = 0; i < rows; i += 16) {
                prefetch(even, 2 * lda + i);
                prefetch(even, 3 * lda + i);
            }
        }
        for (int64_t ir = 0; ir < rows; ir += MR)
            _mm512_mask_storeu_epi32(packed_a + ir * slots + s * MR, panel_lanes,
                                     slots_of_two_rows_native(even + ir, odd ? odd + ir : NULL,
                                                              rows - ir < MR ? rows - ir : MR));
    }
}

/* ---- rounding an array ---- */

/* The bits of values[0..n) with vcvtne2ps2bf16, 32 at a time (the last
 * n % 32 under masks): the native packing's rounding. values, bits: (n). */
AVX512_BF16 static void bf16_bits_of_array_native(const float *values, int64_t n,
                                                  uint16_t *bits) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm512_storeu_si512(bits + i,
                            slots_of_consecutive_native(_mm512_loadu_ps(values + i),
                                                        _mm512_loadu_ps(values + i + 16)));
    if (i < n) {
        const __mmask16 lo = first_lanes(n - i), hi = first_lanes(n - i - 16);
        const __m512i both = slots_of_consecutive_native(_mm512_maskz_loadu_ps(lo, values + i),
                                                         _mm512_maskz_loadu_ps(hi, values + i + 16));
        _mm512_mask_storeu_epi16(bits + i, (__mmask32)lo | (__mmask32)hi << 16, both);
    }
}

mc_bf16_bits_fn mc_bf16_bits_of_products(void) {
    if (!mc_gemm_avx512_available()) return NULL;
    return mc_gemm_bf16_is_native() ? bf16_bits_of_array_native : bf16_bits_of_array;
}

/* ---- the micro-kernels ---- */

/* mc_gemm_avx512_variant.micro_kernel on vdpbf16ps: C[rows, cols] =
 * alpha * (a_panel @ b_panel) + beta * C. a_panel: (slots, MR),
 * b_panel: (slots, NR), each slot a pair of bf16. */
AVX512_BF16 static void micro_kernel_dpbf16(int64_t slots, const float *a_panel,
                                            const float *b_panel, float *C, int64_t ldc,
                                            int64_t rows, int64_t cols, float alpha, float beta) {
    __m512 acc[MR][2];
    start_tile(acc, C, ldc);
    for (int64_t s = 0; s < slots; s++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(b_panel);
        const __m512bh b1 = (__m512bh)_mm512_load_si512(b_panel + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            /* One row's pair, in every lane (a 4-byte broadcast: the bits
             * pass through a float register unchanged). */
            const __m512bh a = (__m512bh)_mm512_castps_si512(_mm512_set1_ps(a_panel[i]));
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], a, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], a, b1);
        }
        a_panel += MR;
        b_panel += NR;
    }
    store_tile(acc, C, ldc, rows, cols, alpha, beta);
}

/* The bf16 values of 16 slots as floats: the even k (low halves, shifted
 * up) or the odd k (high halves, in place). */
AVX512 static inline __m512 even_halves(__m512i slots) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(slots, 16));
}
AVX512 static inline __m512 odd_halves(__m512i slots) {
    return _mm512_castsi512_ps(_mm512_and_si512(slots, _mm512_set1_epi32((int)0xFFFF0000u)));
}

/* The same product with fp32 FMAs, in vdpbf16ps's order (odd k, then even
 * k, per slot): for CPUs without AVX512_BF16. */
AVX512 static void micro_kernel_emulated(int64_t slots, const float *a_panel,
                                         const float *b_panel, float *C, int64_t ldc, int64_t rows,
                                         int64_t cols, float alpha, float beta) {
    __m512 acc[MR][2];
    start_tile(acc, C, ldc);
    for (int64_t s = 0; s < slots; s++) {
        const __m512i b0 = _mm512_load_si512(b_panel), b1 = _mm512_load_si512(b_panel + 16);
        const __m512 b0_even = even_halves(b0), b0_odd = odd_halves(b0);
        const __m512 b1_even = even_halves(b1), b1_odd = odd_halves(b1);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            const __m512i a = _mm512_castps_si512(_mm512_set1_ps(a_panel[i]));
            const __m512 a_even = even_halves(a), a_odd = odd_halves(a);
            acc[i][0] = _mm512_fmadd_ps(a_even, b0_even, _mm512_fmadd_ps(a_odd, b0_odd, acc[i][0]));
            acc[i][1] = _mm512_fmadd_ps(a_even, b1_even, _mm512_fmadd_ps(a_odd, b1_odd, acc[i][1]));
        }
        a_panel += MR;
        b_panel += NR;
    }
    store_tile(acc, C, ldc, rows, cols, alpha, beta);
}

/* ---- choosing the micro-kernel ---- */

/* Every bf16 variant slices K by KC_BF16 slots, SLICE_K values of k:
 * k_chunk_start and the prepacked panels (mc_bf16_pack_panels,
 * panels_block) are laid out by that depth and read the constant, not the
 * variant. */
enum { SLICE_K = 2 * KC_BF16 };
static const mc_gemm_avx512_variant native = {2, KC_BF16, pack_a_panel_bf16_native,
                                              pack_b_block_bf16_native, micro_kernel_dpbf16,
                                              pack_a_block_bf16_native, NULL, 4, 4};
static const mc_gemm_avx512_variant emulated = {2, KC_BF16, pack_a_panel_bf16, pack_b_block_bf16,
                                                micro_kernel_emulated, NULL, NULL, 4, 4};
/* The same with B already in bf16. */
static const mc_gemm_avx512_variant native_bf16_b = {2, KC_BF16, pack_a_panel_bf16_native,
                                                     pack_b_block_from_bf16, micro_kernel_dpbf16,
                                                     pack_a_block_bf16_native, NULL, 4, 2};
static const mc_gemm_avx512_variant emulated_bf16_b = {2, KC_BF16, pack_a_panel_bf16,
                                                       pack_b_block_from_bf16,
                                                       micro_kernel_emulated, NULL, NULL, 4, 2};
/* The same with both operands in bf16. */
static const mc_gemm_avx512_variant native_bf16_ab = {2, KC_BF16, pack_a_panel_from_bf16,
                                                      pack_b_block_from_bf16, micro_kernel_dpbf16,
                                                      NULL, NULL, 2, 2};
static const mc_gemm_avx512_variant emulated_bf16_ab = {2, KC_BF16, pack_a_panel_from_bf16,
                                                        pack_b_block_from_bf16,
                                                        micro_kernel_emulated, NULL, NULL, 2, 2};

/* ---- the product, with K split where mc_gemm_bf16_k_chunks says ---- */

/* The partial sums of the calling thread's split products, kept between
 * calls as the packing space is. */
static _Thread_local mc_scratch partial_space;

/* C[M, N] = alpha * (partials[0] + partials[1] + ...) + beta * C, the
 * partials added in order. partials: `chunks` blocks of (M, N), packed;
 * C: (M, N) with row stride ldc, not read when beta == 0. */
AVX512 static void add_partials(int64_t chunks, const float *partials, int64_t M, int64_t N,
                                float alpha, float beta, float *C, int64_t ldc) {
    const int64_t block = M * N;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j += 16) {
            const __mmask16 mask = first_lanes(N - j);
            const float *at = partials + i * N + j;
            __m512 sum = _mm512_maskz_loadu_ps(mask, at);
            for (int64_t p = 1; p < chunks; p++)
                sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(mask, at + p * block));
            sum = _mm512_mul_ps(_mm512_set1_ps(alpha), sum);
            float *c = C + i * ldc + j;
            if (beta != 0.0f)
                sum = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, c), sum);
            _mm512_mask_storeu_ps(c, mask, sum);
        }
}

/* Where chunk p of `chunks` starts in 0..K: at the slice edge (SLICE_K k)
 * nearest to an even share, so that the chunks together hold no more
 * slices than the whole K (a slice costs a pass over C and a packing
 * start whatever its depth); K for p == chunks. */
static int64_t k_chunk_start(int64_t K, int64_t chunks, int64_t p) {
    const int64_t slice = SLICE_K, at = (K * p / chunks + slice / 2) / slice * slice;
    return p == chunks || at > K ? K : at;
}

/* mc_gemm_avx512_run with variant v, K cut into mc_gemm_bf16_k_chunks
 * chunks (one product when 1), the chunks shared among the threads.
 * A chunk's start is found with the size of one value of A and of B that
 * v reads (v->a_bytes, v->b_bytes). A: (M, K) or (K, M) when trans_a; B:
 * (K, N) or (N, K) when trans_b; C: (M, N). */
static bool run_split_k(const mc_gemm_avx512_variant *v, bool trans_a, bool trans_b, int64_t M,
                        int64_t N, int64_t K, float alpha, const void *A, int64_t lda,
                        const void *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    const int64_t chunks = mc_gemm_bf16_k_chunks(M, N, K);
    if (chunks == 1 || alpha == 0.0f || M <= 0 || N <= 0)
        return mc_gemm_avx512_run(v, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                                  ldc);
    float *partials;
    if (mc_scratch_reserve(&partial_space, chunks * M * N, "bf16 GEMM partial sums",
                           &partials) != MC_OK)
        return false;
    int threads = 1;
#ifdef _OPENMP
    if (!omp_in_parallel()) threads = mc_get_num_threads();
#endif
    if (threads > chunks) threads = (int)chunks;
    /* Each chunk is one product on one thread (inside the parallel region
     * mc_gemm_avx512_run does not split it further). */
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1) reduction(| : failed)
    for (int64_t p = 0; p < chunks; p++) {
        const int64_t k0 = k_chunk_start(K, chunks, p), k1 = k_chunk_start(K, chunks, p + 1);
        const char *a = (const char *)A + (size_t)(trans_a ? k0 * lda : k0) * (size_t)v->a_bytes;
        const char *b = (const char *)B + (size_t)(trans_b ? k0 : k0 * ldb) * (size_t)v->b_bytes;
        if (!mc_gemm_avx512_run(v, trans_a, trans_b, M, N, k1 - k0, 1.0f, a, lda, b, ldb, 0.0f,
                                partials + p * M * N, N))
            failed = 1;
    }
    if (failed) return false;
    add_partials(chunks, partials, M, N, alpha, beta, C, ldc);
    return true;
}

/* Whether the emulation is forced (tests, and benchmarks of it). */
static atomic_bool force_emulation = false;

void mc_gemm_bf16_force_emulation(bool force) { atomic_store(&force_emulation, force); }

bool mc_gemm_bf16_is_native(void) {
    return !atomic_load(&force_emulation) && mc_gemm_bf16_native_available();
}

static const mc_gemm_avx512_variant *bf16_variant(void) {
    return mc_gemm_bf16_is_native() ? &native : &emulated;
}

bool mc_sgemm_bf16_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                          float beta, float *C, int64_t ldc) {
    return run_split_k(bf16_variant(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                       ldc);
}

bool mc_sgemm_batched_bf16_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                  float alpha, const float *A, int64_t lda, int64_t stride_a,
                                  const float *B, int64_t ldb, int64_t stride_b, float beta,
                                  float *C, int64_t ldc, int64_t stride_c, int64_t batch) {
    return mc_gemm_avx512_run_batched(bf16_variant(), trans_a, trans_b, M, N, K, alpha, A, lda,
                                      stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch);
}

bool mc_sgemm_bf16_b_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, const uint16_t *B,
                            int64_t ldb, float beta, float *C, int64_t ldc) {
    return run_split_k(mc_gemm_bf16_is_native() ? &native_bf16_b : &emulated_bf16_b, trans_a,
                       trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

bool mc_sgemm_bf16_ab_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                             float alpha, const uint16_t *A, int64_t lda, const uint16_t *B,
                             int64_t ldb, float beta, float *C, int64_t ldc) {
    return run_split_k(mc_gemm_bf16_is_native() ? &native_bf16_ab : &emulated_bf16_ab, trans_a,
                       trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ---- B kept in the micro-kernel's panel order ----
 * A weight multiplies as op(B) in every forward product; packing it again
 * each time (a 16 x 16 transpose per 16 columns and slots) is about 7 % of
 * such a product. Packed once, in the order gemm_block reads its blocks,
 * the product reads its panels in place: for each slice of K (KC_BF16 slots,
 * the last one shorter), the panels of all N columns, each
 * (slots of the slice, NR), one after another:
 *     panels + round_up(N, NR) * (k0 / 2) + j * slots   is the panel of
 * columns [j, j + NR) of the slice starting at k0 (j a multiple of NR).
 * The slices before k0 are whole (KC_BF16 slots each), so the slots before it
 * are k0 / 2. */

int64_t mc_bf16_panels_slots(int64_t N, int64_t K) { return (N + NR - 1) / NR * NR * ((K + 1) / 2); }

void mc_bf16_pack_panels(const uint16_t *B, int64_t N, int64_t K, float *panels) {
    // B: (N, K) bf16 values, row-major (used as op(B) = B^T); panels: mc_bf16_panels_slots(N, K)
    const int64_t slice = SLICE_K, width = (N + NR - 1) / NR * NR;
    for (int64_t k0 = 0; k0 < K; k0 += slice) {
        const int64_t kc = K - k0 < slice ? K - k0 : slice;
        pack_b_block_from_bf16(true, B, K, k0, kc, 0, N, panels + width * (k0 / 2));
    }
}

/* mc_gemm_avx512_variant.packed_b_block: the block of columns from j0 of
 * the slice at k0, in panels laid out as mc_bf16_pack_panels writes them
 * (width: N rounded up to NR). */
static const float *panels_block(const void *panels, int64_t width, int64_t k0, int64_t kc,
                                 int64_t j0) {
    return (const float *)panels + width * (k0 / 2) + j0 * ((kc + 1) / 2);
}

static const mc_gemm_avx512_variant native_panels = {
    2, KC_BF16, pack_a_panel_bf16_native, NULL, micro_kernel_dpbf16, pack_a_block_bf16_native,
    panels_block, 4, 2};
static const mc_gemm_avx512_variant emulated_panels = {
    2, KC_BF16, pack_a_panel_bf16, NULL, micro_kernel_emulated, NULL, panels_block, 4, 2};

bool mc_sgemm_bf16_panels_avx512(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha,
                                 const float *A, int64_t lda, const float *panels, float beta,
                                 float *C, int64_t ldc) {
    /* K split as for a B packed each call, so that the bits are the same.
     * A chunk starts at a multiple of the slice, where the panels of the
     * remaining k begin k0 / 2 rows of `width` slots in: what run_split_k
     * finds for a B "not transposed" of 2-byte values (b_bytes) with
     * ldb = width. */
    const int64_t width = (N + NR - 1) / NR * NR;
    return run_split_k(mc_gemm_bf16_is_native() ? &native_panels : &emulated_panels, trans_a,
                       false, M, N, K, alpha, A, lda, panels, width, beta, C, ldc);
}

#else /* not x86-64 with GCC or clang: the products run in fp32 (gemm.c) */

mc_bf16_bits_fn mc_bf16_bits_of_products(void) { return NULL; }

bool mc_sgemm_bf16_ab_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                             float alpha, const uint16_t *A, int64_t lda, const uint16_t *B,
                             int64_t ldb, float beta, float *C, int64_t ldc) {
    (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda;
    (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
    return false;
}

bool mc_sgemm_bf16_b_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, const uint16_t *B,
                            int64_t ldb, float beta, float *C, int64_t ldc) {
    (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda;
    (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
    return false;
}

bool mc_gemm_bf16_native_available(void) { return false; }
void mc_gemm_bf16_force_emulation(bool force) { (void)force; }
bool mc_gemm_bf16_is_native(void) { return false; }

bool mc_sgemm_bf16_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                          float beta, float *C, int64_t ldc) {
    (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda;
    (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
    return false;
}

bool mc_sgemm_batched_bf16_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                  float alpha, const float *A, int64_t lda, int64_t stride_a,
                                  const float *B, int64_t ldb, int64_t stride_b, float beta,
                                  float *C, int64_t ldc, int64_t stride_c, int64_t batch) {
    (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda;
    (void)stride_a, (void)B, (void)ldb, (void)stride_b, (void)beta, (void)C, (void)ldc;
    (void)stride_c, (void)batch;
    return false;
}

int64_t mc_bf16_panels_slots(int64_t N, int64_t K) {
    (void)N, (void)K;
    return 0;
}
void mc_bf16_pack_panels(const uint16_t *B, int64_t N, int64_t K, float *panels) {
    (void)B, (void)N, (void)K, (void)panels;
}
bool mc_sgemm_bf16_panels_avx512(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha,
                                 const float *A, int64_t lda, const float *panels, float beta,
                                 float *C, int64_t ldc) {
    (void)trans_a, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)panels;
    (void)beta, (void)C, (void)ldc;
    return false;
}

#endif

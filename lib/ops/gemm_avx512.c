/* A packed single-precision GEMM for AVX-512F, after the layered scheme of
 * Goto & van de Geijn ("Anatomy of high-performance matrix multiplication",
 * ACM TOMS 2008) as BLIS structures it (Van Zee & van de Geijn, 2015).
 * Each thread runs these loops over its own part of C (gemm_block):
 *
 *   for each KC-deep slice of K (KC_FP32, KC_BF16):       (pc loop)
 *     for each NC-wide block of columns:                  (jc loop)
 *       pack op(B)[pc:pc+KC, jc:jc+NC] into NR-wide panels     -> L3
 *       for each MC-high block of rows:                   (ic loop)
 *         pack op(A)[ic:ic+MC, pc:pc+KC] into MR-high panels   -> L2
 *         for each B panel:                               (jr loop; panel in L1/L2)
 *           for each A panel:                             (ir loop)
 *             micro-kernel: C[MR, NR] += A panel (MR, KC) x B panel (KC, NR)
 *
 * The micro-kernel keeps a 12 x 32 block of C in 24 of the 32 zmm registers
 * and, for each k, loads one row of the B panel (two zmm) and broadcasts
 * the 12 values of one column of the A panel: 24 fused multiply-adds per 14
 * loads. Packing puts both operands in the order the kernel reads them
 * (transposing 16 x 16 blocks in registers where the stored layout is the
 * other one) and pads the edges with zeros, so the kernel never branches
 * inside its loop; only the store of an edge block is masked.
 *
 * With several threads, op(B) or op(A) (the operand the threads share) may
 * instead be packed once, all of K, by the threads together, before the
 * loops (shared_operand; mc_gemm_avx512_run says when).
 *
 * Everything here is compiled for AVX-512F by function attributes (the rest
 * of the library stays baseline x86-64) and only called after a CPUID check
 * (gemm.c). */
#include "core/profile.h"
#include "core/scratch.h"
#include "mmchain/threads.h"
#include "ops/gemm_avx512_internal.h"
#include "ops/gemm_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* Below this many multiply-adds one thread is faster than waking a team. */
static const double PARALLEL_MIN_MACS = 1 << 21;

bool mc_gemm_avx512_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- packing ---- */

/* Packs the transpose of a (lines, kc) piece of a row-major matrix:
 * out[k * out_stride + i] = src[i * ld + k] for i < width (zero for
 * lines <= i < width), k < kc. src: (lines, kc) with row stride ld;
 * out: (kc, out_stride), with room for 16 - width floats past its end.
 * WHY FULL STORES: each k stores all 16 lanes, the lanes past width
 * spilling into the start of k + 1's slot, which the next store (k runs
 * upwards) overwrites. Masked stores would be exact but are several times
 * slower on some CPUs (AMD Zen 4 and 5). */
AVX512 static void pack_transposed(const float *src, int64_t ld, int64_t lines, int64_t kc,
                                   float *out, int64_t out_stride) {
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            if (i < lines) prefetch(src, i * ld + k0 + 64); /* the next 4 lines of the row */
            r[i] = i < lines ? load_first(src + i * ld + k0, kc - k0) : _mm512_setzero_ps();
        }
        transpose_16x16(r);
        if (kc - k0 >= 16) {
            /* Unrolled (constant indices) so that r stays in registers. */
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++) _mm512_storeu_ps(out + (k0 + k) * out_stride, r[k]);
        } else {
            for (int64_t k = 0; k < kc - k0; k++)
                _mm512_storeu_ps(out + (k0 + k) * out_stride, r[k]);
        }
    }
}

/* The block of op(B) rows [k0, k0+kc), columns [j0, j0+nc), as panels of
 * NR columns, each kc rows of NR floats, zero beyond nc.
 * B: (K, N) with row stride ldb, or (N, K) when trans_b.
 * packed: (ceil(nc / NR), kc, NR). */
AVX512 static void pack_b_block(bool trans_b, const void *B_floats, int64_t ldb, int64_t k0,
                                int64_t kc, int64_t j0, int64_t nc, float *packed) {
    const float *B = B_floats;
    if (!trans_b) {
        /* Row by row of B, so that memory is read in order (a panel at a
         * time would read 128 bytes from each of kc rows). */
        for (int64_t k = 0; k < kc; k++) {
            const float *row = B + (k0 + k) * ldb + j0;
            for (int64_t j = 0; j < nc; j += NR) {
                float *to = packed + j * kc + k * NR;
                if (nc - j >= NR) {
                    _mm512_store_ps(to, _mm512_loadu_ps(row + j));
                    _mm512_store_ps(to + 16, _mm512_loadu_ps(row + j + 16));
                } else {
                    _mm512_store_ps(to, load_first(row + j, nc - j));
                    _mm512_store_ps(to + 16, load_first(row + j + 16, nc - j - 16));
                }
            }
        }
    } else {
        /* op(B)[k][j] = B[j][k]: 16 x 16 blocks of B, transposed in registers. */
        for (int64_t j = 0; j < nc; j += NR)
            for (int64_t half = 0; half < NR; half += 16)
                pack_transposed(B + (j0 + j + half) * ldb + k0, ldb, nc - j - half, kc,
                                packed + j * kc + half, NR);
    }
}

/* The panel of op(A) rows [i0, i0+rows), rows <= MR, columns [k0, k0+kc),
 * as kc columns of MR floats, zero beyond rows.
 * A: (M, K) with row stride lda, or (K, M) when trans_a.  panel: (kc, MR),
 * with room for 16 - MR floats past its end. */
AVX512 static void pack_a_panel(bool trans_a, const void *A_floats, int64_t lda, int64_t i0,
                                int64_t rows, int64_t k0, int64_t kc, float *panel) {
    const float *A = A_floats;
    if (trans_a) {
        /* Column k of the panel is a piece of row k of the stored A (full
         * stores, spilling forwards as in pack_transposed). */
        const __mmask16 mask = first_lanes(rows);
        for (int64_t k = 0; k < kc; k++)
            _mm512_storeu_ps(panel + k * MR, _mm512_maskz_loadu_ps(mask, A + (k0 + k) * lda + i0));
    } else {
        /* op(A)[i][k] = A[i][k], wanted by columns: transposed in registers. */
        pack_transposed(A + i0 * lda + k0, lda, rows, kc, panel, MR);
    }
}

/* ---- the micro-kernel ---- */

/* C[rows, cols] = alpha * (a_panel @ b_panel)[rows, cols] + beta * C.
 * a_panel: (kc, MR), b_panel: (kc, NR), C: (rows <= MR, cols <= NR) with
 * row stride ldc. beta == 0: C is not read. */
AVX512 static void micro_kernel(int64_t kc, const float *a_panel, const float *b_panel, float *C,
                                int64_t ldc, int64_t rows, int64_t cols, float alpha, float beta) {
    __m512 acc[MR][2];
    start_tile(acc, C, ldc);
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(b_panel), b1 = _mm512_load_ps(b_panel + 16);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            const __m512 a = _mm512_set1_ps(a_panel[i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
        a_panel += MR;
        b_panel += NR;
    }
    store_tile(acc, C, ldc, rows, cols, alpha, beta);
}

/* ---- the blocked loops ---- */

/* One call's sizes and operands. */
typedef struct gemm_job {
    const mc_gemm_avx512_variant *variant;
    bool trans_a, trans_b;
    int64_t M, N, K;
    float alpha, beta;
    const void *A, *B; /* floats, or bf16 values (the variant's packing reads them) */
    int64_t lda, ldb, ldc;
    float *C;
    /* Whether gemm_block fetches the next blocks ahead (FETCH_AHEAD_MIN_BYTES) */
    bool fetch_ahead;
} gemm_job;

/* One operand packed in full, all of K, in memory every thread reads: the
 * operand that mc_gemm_avx512_run's threads share (op(B) when they cut the
 * rows of C, op(A) when they cut its columns), packed once by all of them
 * together instead of whole by each (see mc_gemm_avx512_run for when).
 * Slice s (k from s * slice_slots * k_per_slot) starts at panels + s *
 * slice_floats;
 * within it, the panel of rows or columns [p * width, (p + 1) * width) at
 * p * width * slots, as the per-thread packing lays out a block. */
typedef struct shared_operand {
    float *panels; /* NULL: each thread packs the operand itself */
    int64_t slice_floats;
} shared_operand;

/* ---- fetching the next blocks ahead ----
 *
 * WHY: the packing reads A (and B), and the micro-kernels read and write C,
 * a block at a time; where a block is not in the cache, they stall on
 * memory's latency line after line, which neither the out-of-order core
 * nor the hardware's prefetchers hide (the packing reads a dozen rows a
 * line at a time). Products with large operands and little work per value
 * suffer most: ResNet-50's layer1 at batch 100 (25,600 pixels by 64 or 256
 * channels) ran its bf16 input gradient at 106-116 GFLOP/s on one thread,
 * its operands in memory, against about 190 on a tenth of the rows, whose
 * operands stay in the cache. So while the micro-kernels work on one
 * block, before each of them a share of the lines of the next block's A,
 * B (where the next block starts a new one) and C is asked for into the
 * L2 cache: that product went to 158-163 GFLOP/s on one thread, and at 2
 * threads from 244 to 317-338 in bf16 and from 163 to 181-187 in fp32,
 * operands from memory; the train100 step 2.6 % faster in bf16 and 1.4 %
 * in fp32 (bench/README.md, "Fetching ahead"). */

/* WHEN, in short: in products whose A, B and C hold at least
 * FETCH_AHEAD_MIN_BYTES, not in the items of a batched product dealt out
 * to the threads, and by no block whose next block exceeds
 * FETCH_AHEAD_MAX_BYTES. Why: fetching ahead pays only where the operands
 * are not in the cache; where they are, the prefetches cost 2-8 %
 * (bench_gemm's in-cache products). So a product fetches ahead only when
 * its A, B and C together hold at least the L2 caches of two cores (1 MiB
 * each where measured): ResNet-50's train100 products gained as much with
 * a bound of 4 MiB as with none, and less with 16 MiB. (A chunk of a bf16
 * product split along K counts alone: layer1's weight gradient, 25,600
 * deep, in chunks of 4 MiB, gains 11 %.) The items of a batched product
 * dealt out to the threads (Winograd's 16, attention's heads), a few
 * hundred KiB each in these models, never do. And a block fetches nothing
 * when the next block's A, B and C come to more than half of the L2 cache:
 * they would push out the packed block being multiplied (CLIP's image
 * embedding at batch 16, whose MLP and attention projections would fetch
 * 700-900 KiB a block, ran 3 % slower in bf16 with those fetched). */
static const double FETCH_AHEAD_MIN_BYTES = 2 << 20;
static const double FETCH_AHEAD_MAX_BYTES = 512 << 10;

/* `rows` runs of `bytes` bytes, `stride` bytes apart from `base`. */
typedef struct strided_region {
    const char *base;
    int64_t rows, bytes, stride;
} strided_region;

/* The cache lines fetched for a run: one more than its bytes fill, for a
 * run that does not start on a line (one too many for one that does). */
static int64_t lines_per_run(const strided_region *r) { return (r->bytes + 63) / 64 + 1; }

/* A hint to fetch the line at `address` into the L2 cache. An asm
 * statement, not _mm_prefetch: GCC 12 deletes a loop whose only effect is
 * __builtin_prefetch as a loop without side effects (at -O1 and above).
 * The address may lie past the matrix (a prefetch never faults), so it is
 * passed as an integer. */
static inline void prefetch_l2(uintptr_t address) {
    __asm__ volatile("prefetcht1 (%0)" : : "r"(address));
}

/* Part `part` of `parts` of the cache lines of r (none when r has no
 * rows), walked run by run (divisions once per call, none per line). */
static void prefetch_part(const strided_region *r, int64_t part, int64_t parts) {
    if (r->rows <= 0) return;
    const int64_t per_run = lines_per_run(r), lines = r->rows * per_run;
    const int64_t first = lines * part / parts, count = lines * (part + 1) / parts - first;
    int64_t run = first / per_run, line = first % per_run;
    for (int64_t n = 0; n < count; n++) {
        prefetch_l2((uintptr_t)r->base + (uintptr_t)(run * r->stride + line * 64));
        if (++line == per_run) line = 0, run++;
    }
}

/* Where the packing reads a block of an operand: `count` rows of op(A)
 * (or columns of op(B)) from `first`, and k [k0, k0+kc), of a matrix of
 * `size`-byte values with row stride ld, whose stored rows run along k
 * (A not transposed, B transposed) or along those rows of op(A) (or
 * columns of op(B)) (otherwise). */
static strided_region block_region(const void *matrix, int64_t size, int64_t ld,
                                   bool rows_along_k, int64_t first, int64_t count, int64_t k0,
                                   int64_t kc) {
    const char *m = matrix;
    if (rows_along_k) /* `count` stored rows, from column k0 */
        return (strided_region){m + (first * ld + k0) * size, count, kc * size, ld * size};
    return (strided_region){m + (k0 * ld + first) * size, kc, count * size, ld * size};
}

/* ahead[0..2]: where the block after (pc, jc, ic) in gemm_block's loops
 * over C[i_begin:i_end, j_begin:j_end] is read: its A and B by their
 * packing (A where a_packed_here, B where b_packed_here and that block
 * starts a new one), its C by the micro-kernels. All empty (no rows) where
 * the product does not fetch ahead, after its last block, or where the
 * three together exceed FETCH_AHEAD_MAX_BYTES. */
static void next_block_regions(const gemm_job *job, int64_t i_begin, int64_t i_end,
                               int64_t j_begin, int64_t j_end, int64_t pc, int64_t jc, int64_t ic,
                               bool a_packed_here, bool b_packed_here, strided_region ahead[3]) {
    const mc_gemm_avx512_variant *v = job->variant;
    const int64_t slice = (int64_t)v->slice_slots * v->k_per_slot;
    for (int r = 0; r < 3; r++) ahead[r] = (strided_region){NULL, 0, 0, 0};
    if (!job->fetch_ahead) return;
    /* The loops' next block: the next rows of C, else the first rows with
     * the next columns, else with the next slice of K. */
    int64_t next_pc = pc, next_jc = jc, next_ic = ic + MC;
    if (next_ic >= i_end) {
        next_ic = i_begin, next_jc = jc + NC;
        if (next_jc >= j_end) next_jc = j_begin, next_pc = pc + slice;
    }
    if (next_pc >= job->K) return;
    const int64_t next_kc = min64(slice, job->K - next_pc);
    const int64_t next_mc = min64(MC, i_end - next_ic), next_nc = min64(NC, j_end - next_jc);
    if (a_packed_here)
        ahead[0] = block_region(job->A, v->a_bytes, job->lda, !job->trans_a, next_ic, next_mc,
                                next_pc, next_kc);
    if (b_packed_here && next_ic == i_begin)
        ahead[1] = block_region(job->B, v->b_bytes, job->ldb, job->trans_b, next_jc, next_nc,
                                next_pc, next_kc);
    const int64_t float_bytes = sizeof(float);
    const char *next_c = (const char *)(job->C + next_ic * job->ldc + next_jc);
    ahead[2] = (strided_region){next_c, next_mc, next_nc * float_bytes, job->ldc * float_bytes};
    double bytes_ahead = 0;
    for (int r = 0; r < 3; r++) bytes_ahead += (double)ahead[r].rows * (double)ahead[r].bytes;
    if (bytes_ahead > FETCH_AHEAD_MAX_BYTES) /* they would push this block out of L2 */
        for (int r = 0; r < 3; r++) ahead[r].rows = 0;
}

/* The blocked loops over C[i_begin:i_end, j_begin:j_end], on one thread.
 * A slice of K is KC = v->slice_slots slots deep: KC * k_per_slot values
 * of k. packed_b: room for (min(NC, columns rounded up to NR), min(KC,
 * slots of K)); packed_a: room for (MC, min(KC, slots of K)). shared_a,
 * shared_b: op(A), op(B) already packed (or NULL: packed here, block by
 * block). */
AVX512 static void gemm_block(const gemm_job *job, int64_t i_begin, int64_t i_end,
                              int64_t j_begin, int64_t j_end, float *packed_b, float *packed_a,
                              const shared_operand *shared_a, const shared_operand *shared_b) {
    const mc_gemm_avx512_variant *v = job->variant;
    const int64_t slice = (int64_t)v->slice_slots * v->k_per_slot;
    /* MMCHAIN_PROFILE: this thread's time here, and the packing's part. */
    const bool profiling = mc_profile_enabled;
    int64_t begin_ns = profiling ? mc_profile_now_ns() : 0, packing_ns = 0;
    for (int64_t pc = 0; pc < job->K; pc += slice) {
        const int64_t kc = min64(slice, job->K - pc);
        const int64_t slots = (kc + v->k_per_slot - 1) / v->k_per_slot;
        const float beta = pc == 0 ? job->beta : 1.0f; /* later slices add to C */
        for (int64_t jc = j_begin; jc < j_end; jc += NC) {
            const int64_t nc = min64(NC, j_end - jc);
            int64_t pack_start = profiling ? mc_profile_now_ns() : 0;
            const float *b_block = packed_b;
            if (shared_b)
                b_block = shared_b->panels + pc / slice * shared_b->slice_floats + jc * slots;
            else if (v->packed_b_block)
                b_block = v->packed_b_block(job->B, job->ldb, pc, kc, jc);
            else
                v->pack_b_block(job->trans_b, job->B, job->ldb, pc, kc, jc, nc, packed_b);
            if (profiling) packing_ns += mc_profile_now_ns() - pack_start;
            for (int64_t ic = i_begin; ic < i_end; ic += MC) {
                const int64_t mc = min64(MC, i_end - ic);
                if (profiling) pack_start = mc_profile_now_ns();
                const float *a_block = packed_a;
                if (shared_a)
                    a_block = shared_a->panels + pc / slice * shared_a->slice_floats + ic * slots;
                else if (v->pack_a_block)
                    v->pack_a_block(job->trans_a, job->A, job->lda, ic, mc, pc, kc, packed_a);
                else
                    for (int64_t ir = 0; ir < mc; ir += MR)
                        v->pack_a_panel(job->trans_a, job->A, job->lda, ic + ir,
                                        min64(MR, mc - ir), pc, kc, packed_a + ir * slots);
                if (profiling) packing_ns += mc_profile_now_ns() - pack_start;
                strided_region ahead[3];
                next_block_regions(job, i_begin, i_end, j_begin, j_end, pc, jc, ic, !shared_a,
                                   !shared_b && !v->packed_b_block, ahead);
                const bool fetching = ahead[0].rows > 0 || ahead[1].rows > 0 || ahead[2].rows > 0;
                const int64_t calls = (nc + NR - 1) / NR * ((mc + MR - 1) / MR);
                int64_t call = 0;
                for (int64_t jr = 0; jr < nc; jr += NR)
                    for (int64_t ir = 0; ir < mc; ir += MR, call++) {
                        if (fetching)
                            for (int r = 0; r < 3; r++) prefetch_part(&ahead[r], call, calls);
                        v->micro_kernel(slots, a_block + ir * slots, b_block + jr * slots,
                                        job->C + (ic + ir) * job->ldc + jc + jr, job->ldc,
                                        min64(MR, mc - ir), min64(NR, nc - jr), job->alpha, beta);
                    }
            }
        }
    }
    if (profiling) mc_profile_gemm_thread_time(mc_profile_now_ns() - begin_ns, packing_ns);
}

/* C = beta * C (the whole product when K == 0 or alpha == 0). */
static void scale_c(const gemm_job *job) {
    for (int64_t i = 0; i < job->M; i++) {
        float *row = job->C + i * job->ldc;
        for (int64_t j = 0; j < job->N; j++) row[j] = job->beta == 0.0f ? 0.0f : job->beta * row[j];
    }
}

/* The packing space of the calling thread, kept between calls so that
 * small products do not pay for malloc and page faults each time; 64-byte
 * aligned, as the micro-kernel loads B panels with aligned loads. */
static _Thread_local mc_scratch workspace;

/* Part `part` of `parts` of 0..n, cut at multiples of `unit`. */
static int64_t cut(int64_t n, int64_t parts, int64_t part, int64_t unit) {
    return min64(n, round_up(n * part / parts, unit));
}

/* Threads for `macs` multiply-adds: one inside a parallel region (the
 * caller already splits the work) or for small products. */
static int threads_for(double macs) {
#ifdef _OPENMP
    if (!omp_in_parallel() && macs >= PARALLEL_MIN_MACS) return mc_get_num_threads();
#endif
    (void)macs;
    return 1;
}

/* Per thread: a B block as wide as `columns` (at most NC), an A block, and
 * 16 slots for the A packing's last spill (all in 4-byte slots). */
static size_t floats_per_thread(const mc_gemm_avx512_variant *v, int64_t K, int64_t columns,
                                size_t *b_floats) {
    const int64_t kc_max = min64(v->slice_slots, (K + v->k_per_slot - 1) / v->k_per_slot);
    const int64_t nc_max = min64(NC, round_up(columns, NR));
    *b_floats = (size_t)(kc_max * nc_max);
    return (size_t)round_up((int64_t)*b_floats + MC * kc_max + 16, 16);
}

static int thread_number(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* The shared operand's size (values: floats, or bf16 for the bf16 kernel)
 * from which its threads pack it together (shared_operand) instead of each
 * packing all of it: packing 2^17 values takes some 50 us, so half of it
 * saved per thread is worth the barrier the threads then meet at (a sleep
 * and a wake-up under OMP_WAIT_POLICY=PASSIVE, some 10-40 us). Up to 2^22
 * values (16 MiB of floats, 8 MiB of bf16): a larger one is packed slice
 * by slice by each thread, in cache. */
static const double SHARED_PACK_MIN = 1 << 17, SHARED_PACK_MAX = 1 << 22;

/* This thread's part of packing the shared operand: of its slices x panels
 * items, numbered slice by slice, [item_begin, item_end). op(B) (operand_b)
 * in blocks of consecutive panels, op(A) in blocks of up to MC rows with
 * the variant's pack_a_block where it has one (the bf16 packing reads a
 * transposed A row pair by row pair there), else panel by panel. A panel's
 * packing may write up to 16 slots past its end (pack_a_panel): the last
 * panel of the part, when another thread's panel follows it in the slice,
 * is packed alone into `own` and copied, so that the spill cannot
 * overwrite that thread's panel; the slices have 16 slots of room after
 * them. own: room for a panel and its spill. Any variant: a panel of kc
 * values of k holds ceil(kc / k_per_slot) slots. */
AVX512 static void pack_shared_part(const gemm_job *job, bool operand_b, int64_t item_begin,
                                    int64_t item_end, const shared_operand *shared, float *own) {
    const mc_gemm_avx512_variant *v = job->variant;
    const int64_t width = operand_b ? NR : MR, extent = operand_b ? job->N : job->M;
    const int64_t panels = (extent + width - 1) / width;
    const int64_t depth = (int64_t)v->slice_slots * v->k_per_slot;
    for (int64_t item = item_begin; item < item_end;) {
        const int64_t s = item / panels, p_begin = item % panels;
        const int64_t p_end = min64(panels, p_begin + (item_end - item));
        const int64_t pc = s * depth, kc = min64(depth, job->K - pc);
        const int64_t slots = (kc + v->k_per_slot - 1) / v->k_per_slot;
        float *slice = shared->panels + s * shared->slice_floats;
        if (operand_b) {
            v->pack_b_block(job->trans_b, job->B, job->ldb, pc, kc, p_begin * NR,
                            min64(p_end * NR, job->N) - p_begin * NR, slice + p_begin * NR * slots);
        } else {
            /* the last panel apart when another thread's follows it */
            const bool other_follows = p_end < panels;
            const int64_t p_block_end = other_follows ? p_end - 1 : p_end;
            /* up to MC / MR panels a call where the variant packs A by blocks */
            void (*const pack_a)(bool, const void *, int64_t, int64_t, int64_t, int64_t, int64_t,
                                 float *) = v->pack_a_block ? v->pack_a_block : v->pack_a_panel;
            const int64_t panels_per_call = v->pack_a_block ? MC / MR : 1;
            for (int64_t p = p_begin; p < p_block_end;) {
                const int64_t count = min64(panels_per_call, p_block_end - p);
                const int64_t rows = min64(count * MR, job->M - p * MR);
                pack_a(job->trans_a, job->A, job->lda, p * MR, rows, pc, kc, slice + p * MR * slots);
                p += count;
            }
            if (other_follows) {
                const int64_t p = p_end - 1;
                v->pack_a_panel(job->trans_a, job->A, job->lda, p * MR, min64(MR, job->M - p * MR),
                                pc, kc, own);
                memcpy(slice + p * MR * slots, own, (size_t)(MR * slots) * sizeof(float));
            }
        }
        item += p_end - p_begin;
    }
}

bool mc_gemm_avx512_run(const mc_gemm_avx512_variant *variant, bool trans_a, bool trans_b,
                        int64_t M, int64_t N, int64_t K, float alpha, const void *A, int64_t lda,
                        const void *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    // A: (M, K) or (K, M) when trans_a; B: (K, N) or (N, K) when trans_b; C: (M, N)
    const double operand_bytes = (double)M * (double)K * variant->a_bytes +
                                 (double)K * (double)N * variant->b_bytes +
                                 (double)M * (double)N * sizeof(float);
    const gemm_job job = {variant, trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C,
                          operand_bytes >= FETCH_AHEAD_MIN_BYTES};
    if (K == 0 || alpha == 0.0f) {
        scale_c(&job);
        return true;
    }
    /* (In double: the product of three int64 sizes may not fit one.) */
    const int threads = threads_for((double)M * (double)N * (double)K);
    /* WHY EACH THREAD TAKES ITS OWN PART OF C, ALL OF K: then the threads
     * never wait for each other (no barrier inside the product; with
     * OMP_WAIT_POLICY=PASSIVE every barrier is a sleep and a wake-up). The
     * price is that each packs the whole of the operand it shares, so C is
     * cut along its longer side, where that copy is the smaller part.
     * Where that copy is large (SHARED_PACK_MIN), the threads pack the
     * shared operand together first, each a part, and meet at one barrier:
     * at 2 threads each packs half of it instead of all. The packed values
     * and the products are the same either way. */
    const bool cut_rows = M >= N;
    const int64_t shared_extent = cut_rows ? N : M, shared_width = cut_rows ? NR : MR;
    const double shared_size = (double)K * (double)shared_extent;
    /* (A B given packed already, as a bf16 weight in panel order, is read
     * in place: nothing to share.) */
    const bool share = threads > 1 && shared_size >= SHARED_PACK_MIN &&
                       shared_size <= SHARED_PACK_MAX && !(cut_rows && variant->packed_b_block);
    const int64_t shared_panels = (shared_extent + shared_width - 1) / shared_width;
    const int64_t k_slots = (K + variant->k_per_slot - 1) / variant->k_per_slot;
    const int64_t kc = variant->slice_slots, slices = (k_slots + kc - 1) / kc;
    shared_operand shared = {NULL,
                             round_up(shared_panels * shared_width * min64(kc, k_slots) + 16, 16)};
    size_t b_floats;
    const size_t per_thread =
        floats_per_thread(variant, K, cut_rows ? N : cut(N, threads, 1, NR) + NR, &b_floats);
    const int64_t shared_floats = share ? slices * shared.slice_floats : 0;
    float *space;
    if (mc_scratch_reserve(&workspace, (int64_t)(threads * per_thread) + shared_floats,
                           "GEMM packing space", &space) != MC_OK)
        return false;
    if (share) shared.panels = space + threads * per_thread;
    const shared_operand *shared_a = share && !cut_rows ? &shared : NULL;
    const shared_operand *shared_b = share && cut_rows ? &shared : NULL;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        if (share) {
            /* The team may be smaller than asked for: its own size splits
             * the packing; the parts of C below go round whatever it is. */
            const int64_t items = slices * shared_panels, n = team_size(), me = thread_number();
            const int64_t pack_start = mc_profile_enabled ? mc_profile_now_ns() : 0;
            pack_shared_part(&job, cut_rows, items * me / n, items * (me + 1) / n, &shared,
                             space + (size_t)me * per_thread);
            if (mc_profile_enabled) {
                const int64_t ns = mc_profile_now_ns() - pack_start;
                mc_profile_gemm_thread_time(ns, ns);
            }
#pragma omp barrier
        }
#pragma omp for schedule(static, 1) nowait
        for (int t = 0; t < threads; t++) {
            int64_t i0 = 0, i1 = M, j0 = 0, j1 = N;
            if (cut_rows) i0 = cut(M, threads, t, MR), i1 = cut(M, threads, t + 1, MR);
            else j0 = cut(N, threads, t, NR), j1 = cut(N, threads, t + 1, NR);
            float *mine = space + (size_t)t * per_thread;
            if (i0 < i1 && j0 < j1)
                gemm_block(&job, i0, i1, j0, j1, mine, mine + b_floats, shared_a, shared_b);
        }
    }
    return true;
}

bool mc_gemm_avx512_run_batched(const mc_gemm_avx512_variant *variant, bool trans_a,
                                bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                const float *A, int64_t lda, int64_t stride_a, const float *B,
                                int64_t ldb, int64_t stride_b, float beta, float *C, int64_t ldc,
                                int64_t stride_c, int64_t batch) {
    // item b: A + b*stride_a, B + b*stride_b, C + b*stride_c, each as in mc_gemm_avx512_run
    int threads = threads_for((double)batch * (double)M * (double)N * (double)K);
    /* Fewer items than threads: split each product instead. Only the first
     * call can fail (to allocate); the others need the same workspace. */
    if (threads > batch) {
        for (int64_t b = 0; b < batch; b++)
            if (!mc_gemm_avx512_run(variant, trans_a, trans_b, M, N, K, alpha, A + b * stride_a,
                                    lda, B + b * stride_b, ldb, beta, C + b * stride_c, ldc))
                return false;
        return true;
    }
    size_t b_floats;
    const size_t per_thread = floats_per_thread(variant, K, N, &b_floats);
    float *space;
    if (mc_scratch_reserve(&workspace, (int64_t)(threads * per_thread), "GEMM packing space",
                           &space) != MC_OK)
        return false;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int64_t b = 0; b < batch; b++) {
        const gemm_job job = {variant, trans_a, trans_b, M, N, K, alpha, beta, A + b * stride_a,
                              B + b * stride_b, lda, ldb, ldc, C + b * stride_c, false};
        float *mine = space + (size_t)thread_number() * per_thread;
        if (K == 0 || alpha == 0.0f) scale_c(&job);
        else gemm_block(&job, 0, M, 0, N, mine, mine + b_floats, NULL, NULL);
    }
    return true;
}

/* ---- single precision ---- */

static const mc_gemm_avx512_variant fp32 = {1, KC_FP32, pack_a_panel, pack_b_block,
                                             micro_kernel, NULL, NULL, 4, 4};

bool mc_sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc) {
    return mc_gemm_avx512_run(&fp32, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                              ldc);
}

bool mc_sgemm_batched_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                             float alpha, const float *A, int64_t lda, int64_t stride_a,
                             const float *B, int64_t ldb, int64_t stride_b, float beta, float *C,
                             int64_t ldc, int64_t stride_c, int64_t batch) {
    return mc_gemm_avx512_run_batched(&fp32, trans_a, trans_b, M, N, K, alpha, A, lda, stride_a, B,
                                      ldb, stride_b, beta, C, ldc, stride_c, batch);
}

#else /* not x86-64 with GCC or clang: OpenBLAS does every product */

bool mc_gemm_avx512_available(void) { return false; }

bool mc_sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc) {
    (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda;
    (void)B, (void)ldb, (void)beta, (void)C, (void)ldc;
    return false;
}

bool mc_sgemm_batched_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                             float alpha, const float *A, int64_t lda, int64_t stride_a,
                             const float *B, int64_t ldb, int64_t stride_b, float beta, float *C,
                             int64_t ldc, int64_t stride_c, int64_t batch) {
    (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda;
    (void)stride_a, (void)B, (void)ldb, (void)stride_b, (void)beta, (void)C, (void)ldc;
    (void)stride_c, (void)batch;
    return false;
}

#endif

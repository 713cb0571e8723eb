/* gemm.c's internals, shared with gemm_avx512.c, the tests and the
 * benchmarks (not part of the installed API).
 *
 * Every GEMM in the library goes through mc_sgemm (ops.h), which picks one
 * of two kernels:
 *   - our packed AVX-512 kernel (gemm_avx512.c), on CPUs that have AVX-512F;
 *   - OpenBLAS's cblas_sgemm otherwise (and whenever MMCHAIN_GEMM=openblas).
 * WHY OUR OWN KERNEL: OpenBLAS picks its kernel from the CPU, but an
 * environment variable (OPENBLAS_CORETYPE) can hold it to an older one; on
 * the machine this project is measured on it is held to Haswell's AVX2
 * kernel, about 1.8x slower than the AVX-512 one. PyTorch's convolutions
 * run in its own oneDNN whatever that variable says. A kernel of our own is
 * the same on every run, and short enough to read (gemm_avx512.c). */
#ifndef MMCHAIN_OPS_GEMM_INTERNAL_H
#define MMCHAIN_OPS_GEMM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "mmchain/error.h"

/* True when mc_sgemm runs our kernel, which may be called from inside an
 * OpenMP parallel region (it then stays on the calling thread). OpenBLAS is
 * kept out of our parallel regions: its pthreads build would start a team
 * of its own in each. */
bool mc_gemm_is_ours(void);

/* True when this CPU (and its OS) runs AVX-512F code. */
bool mc_gemm_avx512_available(void);

/* The packed AVX-512 kernel; same contract as mc_sgemm. Returns false, with
 * C untouched, when its packing workspace cannot be allocated (the caller
 * then falls back to OpenBLAS). Only call when mc_gemm_avx512_available(). */
bool mc_sgemm_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc);

/* The batched form (mc_sgemm_batched's contract), false as above. */
bool mc_sgemm_batched_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                             float alpha, const float *A, int64_t lda, int64_t stride_a,
                             const float *B, int64_t ldb, int64_t stride_b, float beta, float *C,
                             int64_t ldc, int64_t stride_c, int64_t batch);

/* ---- bf16 operands (gemm_avx512_bf16.c) ----
 * The same kernel with both operands rounded to bf16 as they are packed and
 * fp32 accumulation (mc_gemm's MC_PRECISION_BF16), on vdpbf16ps where the
 * CPU has AVX512_BF16, else emulated with fp32 FMAs (bit-identical but for
 * subnormals). Same contracts and conditions as mc_sgemm_avx512 and
 * mc_sgemm_batched_avx512. */
bool mc_sgemm_bf16_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                          float beta, float *C, int64_t ldc);
bool mc_sgemm_batched_bf16_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                                  float alpha, const float *A, int64_t lda, int64_t stride_a,
                                  const float *B, int64_t ldb, int64_t stride_b, float beta,
                                  float *C, int64_t ldc, int64_t stride_c, int64_t batch);
/* The same product with B given as bf16 values (a weight's cached copy,
 * weight_bf16.c), packed without rounding: equal, bit for bit, to
 * mc_sgemm_bf16_avx512 with the fp32 B those values came from when they
 * were rounded as the packing rounds (mc_bf16_bits_of_products). Same
 * contract otherwise. */
bool mc_sgemm_bf16_b_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                            float alpha, const float *A, int64_t lda, const uint16_t *B,
                            int64_t ldb, float beta, float *C, int64_t ldc);
/* The same product with both A and B given as bf16 values (A: a
 * convolution's columns gathered straight into bf16, see
 * mc_bf16_bits_of_products). */
bool mc_sgemm_bf16_ab_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                             float alpha, const uint16_t *A, int64_t lda, const uint16_t *B,
                             int64_t ldb, float beta, float *C, int64_t ldc);
/* A (N, K) matrix of bf16 values (a linear layer's weight's cached copy)
 * kept packed in the micro-kernel's panel order, so that the products
 * multiplying by its transpose read it in place instead of packing it
 * again each call (gemm_avx512_bf16.c). mc_bf16_panels_slots: the 4-byte
 * slots the panels take (0 off x86-64); mc_bf16_pack_panels writes them
 * (B: (N, K) row-major; only where mc_gemm_bf16_runs()). */
int64_t mc_bf16_panels_slots(int64_t N, int64_t K);
void mc_bf16_pack_panels(const uint16_t *B, int64_t N, int64_t K, float *panels);
/* C (M, N) = alpha * op(A) B^T + beta * C with B given as such panels:
 * equal, bit for bit, to mc_sgemm_bf16_b_avx512 with trans_b and the B
 * they were packed from. Same contract otherwise. */
bool mc_sgemm_bf16_panels_avx512(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha,
                                 const float *A, int64_t lda, const float *panels, float beta,
                                 float *C, int64_t ldc);
/* True when MC_PRECISION_BF16 products run on our kernel (not OpenBLAS in
 * fp32), so that an operand may be handed over in bf16. */
bool mc_gemm_bf16_runs(void);
/* mc_gemm(MC_PRECISION_BF16, ...) with B in bf16, as mc_sgemm_bf16_b_avx512;
 * only when mc_gemm_bf16_runs(). MC_ERR_NOMEM, C untouched, when the
 * packing space cannot be allocated. */
mc_status mc_gemm_bf16_b(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                         float alpha, const float *A, int64_t lda, const uint16_t *B, int64_t ldb,
                         float beta, float *C, int64_t ldc);
/* The same with A in bf16 too, as mc_sgemm_bf16_ab_avx512. */
mc_status mc_gemm_bf16_ab(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                          float alpha, const uint16_t *A, int64_t lda, const uint16_t *B,
                          int64_t ldb, float beta, float *C, int64_t ldc);
/* The same with B as panels, as mc_sgemm_bf16_panels_avx512 (op(B) = B^T,
 * B (N, K)). */
mc_status mc_gemm_bf16_panels(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha,
                              const float *A, int64_t lda, const float *panels, float beta,
                              float *C, int64_t ldc);
/* bits[0..n) = the bf16 bits of values[0..n) (values, bits: (n)). */
typedef void (*mc_bf16_bits_fn)(const float *values, int64_t n, uint16_t *bits);
/* The rounding that the bf16 products' packing does now: vcvtne2ps2bf16's
 * on vdpbf16ps (a subnormal float becomes zero), mc_bf16_round's on the
 * emulation; so operands rounded with it and packed from bf16 give the
 * products bit for bit as packing the floats would. NULL when bf16
 * products do not run on our kernel's packing (no AVX-512F). Ask again
 * after mc_gemm_bf16_force_emulation. */
mc_bf16_bits_fn mc_bf16_bits_of_products(void);
/* How many chunks of K the bf16 products (mc_sgemm_bf16_avx512, _b, _ab;
 * not the batched one) sum separately and then add in order, for an
 * (M, N) result over K: 1 (no split) unless K is long and C small. From
 * the shape only, so results do not depend on the thread count. */
int64_t mc_gemm_bf16_k_chunks(int64_t M, int64_t N, int64_t K);
/* True when this CPU has AVX-512F and AVX512_BF16 (vdpbf16ps). */
bool mc_gemm_bf16_native_available(void);
/* True when bf16 products run on vdpbf16ps now (native available and the
 * emulation not forced). */
bool mc_gemm_bf16_is_native(void);
/* Run bf16 products on the emulation even where vdpbf16ps exists (for the
 * tests, which check the two agree, and for benchmarks). Not while products
 * run on other threads: the weights' bf16 copies follow the switch (its
 * rounding differs on subnormals) and are remade in place when next read. */
void mc_gemm_bf16_force_emulation(bool force);

#endif

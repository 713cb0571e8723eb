/* The naive reference kernels (internal, not installed): each op family's
 * definition, written as plain loops, beside which its optimised kernel
 * sits and against which the tests compare that kernel. One suffix, _naive,
 * names them all; each lives in its family's source file, next to the fast
 * kernel it checks. (The image resampler's is public: mc_image_resize_naive,
 * image.h.)
 *
 * Tests and benchmarks include this header by path, so it includes its
 * neighbours relatively. */
#ifndef MMCHAIN_OPS_NAIVE_H
#define MMCHAIN_OPS_NAIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "attention_internal.h"
#include "conv_internal.h"
#include "mmchain/ops.h"

/* ---- gemm.c ----
 * mc_sgemm's product by the definition (double accumulation); same
 * arguments as mc_sgemm (ops.h). */
void mc_sgemm_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                    const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                    int64_t ldc);

/* mc_gemm's MC_PRECISION_BF16 product by the definition: every operand
 * element rounded by mc_bf16_round, then as mc_sgemm_naive (double
 * accumulation). */
void mc_sgemm_bf16_naive(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc);

/* ---- matmul.c ----
 * mc_matmul's product by plain loops (double accumulation):
 * out (M, N) = a (M, K) @ b (K, N), or @ b^T for b (N, K). */
void mc_matmul_naive(const float *a, const float *b, float *out, int64_t M, int64_t K, int64_t N,
                     bool transpose_b);

/* ---- activation.c ----
 * mc_bias_activation_rows (activation_internal.h) by the definitions in
 * double precision: y[r][j] = f(y[r][j] + bias[j]), f exact GELU (libm's
 * erf), x / (1 + e^(-1.702 x)) or relu; bias may be NULL. y: (rows, n). */
void mc_bias_activation_rows_naive(mc_activation activation, float *y, const float *bias,
                                   int64_t rows, int64_t n);

/* ---- elementwise.c ----
 * The broadcasting binary ops one element at a time from its full index;
 * op is "add", "sub", "mul" or "div". Records nothing. */
mc_status mc_binary_naive(mc_graph *g, const char *op, mc_tensor *a, mc_tensor *b, mc_tensor **out);

/* ---- conv.c ----
 * The convolution as seven nested loops (no im2col, no GEMM, no Winograd):
 * the reference of both fast paths.
 * x: (N, H, W, C), weight: (OC, C/groups, KH, KW), bias: (OC) or NULL,
 * out: (N, OH, OW, OC), overwritten. */
void mc_conv2d_forward_naive(const mc_conv2d_geometry *geo, const float *x, const float *weight,
                             const float *bias, float *out);
/* The gradients by the same loops, ADDED into dx (N, H, W, C), dweight
 * (OC, C/groups, KH, KW) and dbias (OC); each may be NULL.
 * dout: (N, OH, OW, OC). */
void mc_conv2d_backward_naive(const mc_conv2d_geometry *geo, const float *x, const float *weight,
                              const float *dout, float *dx, float *dweight, float *dbias);

/* ---- batchnorm.c ----
 * The normalisation one element at a time (the reference of the op's
 * vectorised kernel): y = (x - mean) * (invstd * weight) + bias, then
 * max(y, 0) when relu. x, y: (rows, C); mean, invstd, weight, bias: (C);
 * weight, bias may be NULL (1 and 0). */
void mc_batchnorm2d_normalize_naive(int64_t rows, int64_t c, const float *x, const float *mean,
                                    const float *invstd, const float *weight, const float *bias,
                                    bool relu, float *y);

/* ---- pool.c ----
 * Max pooling one window element at a time (the reference of mc_maxpool2d's
 * kernel). x: (N, H, W, C) -> out: (N, OH, OW, C), floor mode, padding
 * -infinity, ties to the first pixel in scan order, NaN wins.
 * argmax: (N, OH, OW, C) (y * W + x of the winner) or NULL. */
void mc_maxpool2d_naive(const float *x, int64_t n, int64_t h, int64_t w, int64_t c, int kernel,
                        int stride, int padding, float *out, int32_t *argmax);

/* ---- attention.c ----
 * The textbook definitions, one (b, h) at a time, in double precision.
 *   q, k, v: (B, T, D); out: (B, T, D) overwritten; probs: (B, H, T, T) overwritten. */
void mc_attention_forward_naive(const mc_attention_dims *d, const float *q, const float *k,
                                const float *v, float *out, float *probs);
/* ADDS into dq, dk, dv (B, T, D) (each may be NULL); probs from a forward. */
void mc_attention_backward_naive(const mc_attention_dims *d, const float *q, const float *k,
                                 const float *v, const float *probs, const float *dout, float *dq,
                                 float *dk, float *dv);

#endif

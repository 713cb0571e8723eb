/* mmchain — ops: every differentiable operation.
 *
 * Every op has the same form:
 *
 *     mc_status mc_OP(mc_graph *g, <inputs...>, <settings...>, mc_tensor **out);
 *
 * It checks its inputs' shapes (a clear MC_ERR_SHAPE naming the tensors
 * otherwise), allocates *out from g's arena, computes it, and — when
 * gradients are enabled and an input requires one — records a node whose
 * backward function lives right below the forward in the op's source file
 * (lib/ops/<family>.c). Inputs are never modified. Two ops share memory
 * instead of allocating: mc_reshape returns a view of its input's data, and
 * mc_dropout in eval mode (or with p = 0) returns its input itself.
 *
 * Images inside the library are NHWC (see tensor.h); mc_nchw_to_nhwc and
 * mc_nhwc_to_nchw convert at the boundary. */
#ifndef MMCHAIN_OPS_H
#define MMCHAIN_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise.c: binary ops with NumPy/PyTorch broadcasting ----
 * Shapes are aligned from the last dimension; a dimension of size 1 (or a
 * missing leading one) stretches. out has the broadcast shape. */
mc_status mc_add(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor **out);
mc_status mc_sub(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor **out);
mc_status mc_mul(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor **out);
mc_status mc_div(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor **out);
/* out = x * scale + shift (scalars). */
mc_status mc_scale(mc_graph *g, mc_tensor *x, float scale, float shift, mc_tensor **out);

/* ---- activation.c: unary elementwise functions ---- */
mc_status mc_relu(mc_graph *g, mc_tensor *x, mc_tensor **out);
/* relu(a + b) for a and b of the same shape (no broadcasting): the end of a
 * residual block, storing one tensor instead of two. */
mc_status mc_add_relu(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor **out);
/* GELU with the exact erf form: x * 0.5 * (1 + erf(x / sqrt(2))). */
mc_status mc_gelu(mc_graph *g, mc_tensor *x, mc_tensor **out);
/* CLIP's approximation: x * sigmoid(1.702 x). */
mc_status mc_quick_gelu(mc_graph *g, mc_tensor *x, mc_tensor **out);
mc_status mc_sigmoid(mc_graph *g, mc_tensor *x, mc_tensor **out);
mc_status mc_tanh(mc_graph *g, mc_tensor *x, mc_tensor **out);
mc_status mc_exp(mc_graph *g, mc_tensor *x, mc_tensor **out);
mc_status mc_log(mc_graph *g, mc_tensor *x, mc_tensor **out);
/* SiLU (swish): x * sigmoid(x). */
mc_status mc_silu(mc_graph *g, mc_tensor *x, mc_tensor **out);
/* |x|; gradient sign(x), 0 at 0 (as PyTorch). */
mc_status mc_abs(mc_graph *g, mc_tensor *x, mc_tensor **out);
/* sqrt(x); x < 0 gives NaN and x = 0 an infinite gradient, as PyTorch. */
mc_status mc_sqrt(mc_graph *g, mc_tensor *x, mc_tensor **out);
/* The activations a transformer's MLP chooses from (mc_mlp, nn.h;
 * mc_linear_activation). */
typedef enum mc_activation {
    MC_ACT_GELU,       /* exact (erf) GELU: ViT */
    MC_ACT_QUICK_GELU, /* x * sigmoid(1.702 x): CLIP */
    MC_ACT_RELU,
} mc_activation;
/* The activation's op: mc_gelu, mc_quick_gelu or mc_relu (MC_ERR_ARG for
 * another value). */
mc_status mc_activate(mc_graph *g, mc_activation activation, mc_tensor *x, mc_tensor **out);
/* y[i] = e^x[i] for n floats (y may be x): the vectorised exp behind the ops
 * above and softmax, within 2 ulp of expf; records nothing. */
void mc_exp_kernel(const float *x, float *y, int64_t n);

/* ---- pointwise.c: unary elementwise functions with scalar settings ---- */
/* min(max(x, low), high); low or high may be -INFINITY / INFINITY (one-sided).
 * Gradient 1 where low <= x <= high, bounds included (as PyTorch), else 0.
 * MC_ERR_ARG when low > high or a bound is NaN. */
mc_status mc_clamp(mc_graph *g, mc_tensor *x, float low, float high, mc_tensor **out);
/* x^exponent (powf); gradient exponent * x^(exponent - 1), 0 for exponent 0. */
mc_status mc_pow(mc_graph *g, mc_tensor *x, float exponent, mc_tensor **out);
/* x for x > 0, negative_slope * x otherwise (PyTorch's default slope: 0.01). */
mc_status mc_leaky_relu(mc_graph *g, mc_tensor *x, float negative_slope, mc_tensor **out);

/* ---- reduce.c ----
 * dim may be negative (from the end). keepdim keeps it with size 1. */
mc_status mc_sum(mc_graph *g, mc_tensor *x, int dim, bool keepdim, mc_tensor **out);
mc_status mc_mean(mc_graph *g, mc_tensor *x, int dim, bool keepdim, mc_tensor **out);
/* Over every element: out has shape (1). */
mc_status mc_sum_all(mc_graph *g, mc_tensor *x, mc_tensor **out);
mc_status mc_mean_all(mc_graph *g, mc_tensor *x, mc_tensor **out);
/* The largest (smallest) element along dim, as torch.max(x, dim).values:
 * ties go to the first index and NaN counts as the extreme; the gradient goes
 * to that one element. Shapes as mc_sum. */
mc_status mc_max(mc_graph *g, mc_tensor *x, int dim, bool keepdim, mc_tensor **out);
mc_status mc_min(mc_graph *g, mc_tensor *x, int dim, bool keepdim, mc_tensor **out);
/* The index of that element along dim (not an op: records nothing). x (..., n, ...)
 * -> indices: numel(x) / n int32, in the order of x with dim removed. */
mc_status mc_argmax(const mc_tensor *x, int dim, int32_t *indices);
mc_status mc_argmin(const mc_tensor *x, int dim, int32_t *indices);

/* ---- softmax.c: along dimension dim (negative counts from the end) ---- */
mc_status mc_softmax(mc_graph *g, mc_tensor *x, int dim, mc_tensor **out);
mc_status mc_log_softmax(mc_graph *g, mc_tensor *x, int dim, mc_tensor **out);

/* ---- gemm.c: the one matrix product under every op ----
 * C (M, N) = alpha op(A) op(B) + beta C, all row-major. op(A) is (M, K): A is
 * stored (M, K) with row stride lda, or, with trans_a, (K, M). op(B) is
 * (K, N): B stored (K, N) with row stride ldb, or, with trans_b, (N, K). C
 * has row stride ldc. With beta == 0, C is only written (it may hold
 * garbage). Callable inside an OpenMP parallel region: it then runs on the
 * calling thread alone; outside one it uses mc_get_num_threads() threads. */
void mc_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc);
/* `batch` independent products of one shape: item b multiplies
 * A + b*stride_a by B + b*stride_b into C + b*stride_c (strides in floats;
 * 0 shares A or B; items run at the same time, so their C must not
 * overlap). Same as calling mc_sgemm for each item, but the
 * threads take whole items (one parallel region, no barrier between
 * items): for many small products, such as Winograd's 16 or one per
 * attention head. */
void mc_sgemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, int64_t stride_a, const float *B, int64_t ldb,
                      int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c,
                      int64_t batch);
/* Which kernel mc_sgemm runs. AUTO (the default, unless the environment
 * variable MMCHAIN_GEMM says openblas or avx512): our AVX-512 kernel when
 * the CPU has AVX-512F, else OpenBLAS. MC_ERR_UNSUPPORTED when AVX512 is
 * asked for on a CPU without it. */
typedef enum mc_gemm_kernel { MC_GEMM_AUTO, MC_GEMM_OPENBLAS, MC_GEMM_AVX512 } mc_gemm_kernel;
mc_status mc_gemm_set_kernel(mc_gemm_kernel kernel);
/* The kernel in use, for logs and benchmarks: "mmchain AVX-512 (12x32
 * micro-kernel)" or "OpenBLAS <core>". */
const char *mc_gemm_kernel_name(void);

/* The precision of a product's operands (not of tensors: C, alpha, beta and
 * the sums are fp32 either way).
 *   MC_PRECISION_FP32: mc_sgemm.
 *   MC_PRECISION_BF16: both operands rounded to bf16 (round to nearest
 *     even; 8 significant bits), their products (exact in fp32) summed in
 *     fp32. Runs on our kernel: vdpbf16ps where the CPU has AVX512_BF16,
 *     else an emulation with fp32 FMAs that gives the same numbers (but
 *     for subnormals, which vdpbf16ps flushes to zero) at about the fp32
 *     rate. With OpenBLAS (MMCHAIN_GEMM=openblas, or a CPU without
 *     AVX-512F) the product runs in fp32 whatever the precision asks. */
/* (mc_precision is declared in autograd.h, with the graph's switch.) */
/* mc_sgemm (and mc_sgemm_batched) with the operands in `precision`. */
void mc_gemm(mc_precision precision, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
             float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
             float *C, int64_t ldc);
void mc_gemm_batched(mc_precision precision, bool trans_a, bool trans_b, int64_t M, int64_t N,
                     int64_t K, float alpha, const float *A, int64_t lda, int64_t stride_a,
                     const float *B, int64_t ldb, int64_t stride_b, float beta, float *C,
                     int64_t ldc, int64_t stride_c, int64_t batch);
/* x rounded to the nearest bf16 (ties to even; NaN stays NaN, values past
 * the largest bf16 round to infinity), returned as the fp32 it equals. */
float mc_bf16_round(float x);
/* "fp32" or "bf16". */
const char *mc_precision_name(mc_precision precision);
/* The inverse: "fp32" or "bf16" to *out; anything else is MC_ERR_ARG with
 * a message naming the text and the choices. */
mc_status mc_precision_parse(const char *text, mc_precision *out);
/* What runs MC_PRECISION_BF16 products now, for logs and benchmarks:
 * "AVX512_BF16 (vdpbf16ps)", "emulated (fp32 FMA; no AVX512_BF16)" or
 * "fp32 (OpenBLAS)". */
const char *mc_gemm_bf16_kernel_name(void);

/* ---- matmul.c (on mc_sgemm) ----
 * mc_matmul: a (M, K) @ b (K, N) -> (M, N); or batched a (B, M, K) @ b (B, K, N)
 * -> (B, M, N). transpose_b uses b (N, K) / (B, N, K) instead. */
mc_status mc_matmul(mc_graph *g, mc_tensor *a, mc_tensor *b, bool transpose_b, mc_tensor **out);
/* x (..., in) , weight (out, in), bias (out) or NULL -> (..., out). The
 * weight may also be (out, d1, d2, ...) with d1 * d2 * ... = in, used as
 * (out, in): a convolution kernel applied to patches as large as itself
 * (the ViT patch embedding), without a reshape. */
mc_status mc_linear(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias, mc_tensor **out);
/* activation(mc_linear(x, weight, bias)), the activation one of
 * MC_ACT_GELU, MC_ACT_QUICK_GELU, MC_ACT_RELU. Where the op is recorded
 * (training) it is exactly the two ops, mc_linear then mc_gelu /
 * mc_quick_gelu / mc_relu, with their nodes. Where it is not (inference),
 * one output: the product without the bias, then bias and activation in
 * place in one pass (no bias rows written before the product, no second
 * tensor); the same values to float rounding (the bias is added after the
 * product's sum instead of before it). */
mc_status mc_linear_activation(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                               mc_activation activation, mc_tensor **out);
/* residual + mc_linear(x, weight, bias), residual shaped like the output:
 * the end of a pre-norm transformer block's two halves, in one op (the
 * product adds onto residual + bias: one pass and one tensor fewer than
 * mc_linear then mc_add). The same values to float rounding. */
mc_status mc_linear_residual(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                             mc_tensor *residual, mc_tensor **out);
/* Also accepted by mc_matmul: a (B, M, K) with a 2-D b, which is shared by
 * every batch item (as torch.matmul broadcasts it). */

/* ---- shape.c: reshaping, copying permutes, slicing, concatenation ---- */
/* A view with another shape of equal numel (shares data; no copy). One
 * dimension may be -1: it is inferred from the others (as torch.reshape). */
mc_status mc_reshape(mc_graph *g, mc_tensor *x, mc_shape shape, mc_tensor **out);
/* out.dim[i] = x.dim[perm[i]] (copies). */
mc_status mc_permute(mc_graph *g, mc_tensor *x, const int *perm, mc_tensor **out);
mc_status mc_transpose(mc_graph *g, mc_tensor *x, int dim0, int dim1, mc_tensor **out);
/* Elements start..end-1 of dimension dim (copies). Negative start/end count
 * from the end of the dimension, as in Python (x[..., -3:-1]). */
mc_status mc_slice(mc_graph *g, mc_tensor *x, int dim, int64_t start, int64_t end, mc_tensor **out);
/* Join n tensors along dim; other dimensions must agree. */
mc_status mc_concat(mc_graph *g, int n, mc_tensor *const *xs, int dim, mc_tensor **out);
/* x (N, C, H, W) -> (N, H, W, C) and back. */
mc_status mc_nchw_to_nhwc(mc_graph *g, mc_tensor *x, mc_tensor **out);
mc_status mc_nhwc_to_nchw(mc_graph *g, mc_tensor *x, mc_tensor **out);
/* Resolve a possibly negative dimension index of x (-1 is the last) into
 * 0..ndim-1; MC_ERR_ARG naming `op` and x's shape when out of range. */
mc_status mc_resolve_dim(const char *op, const mc_tensor *x, int dim, int *resolved);

/* ---- layernorm.c: over the last dimension (size D) ----
 * x (..., D), weight (D), bias (D) -> (..., D). Biased variance, as PyTorch.
 * weight and bias may be NULL (elementwise_affine=False). */
mc_status mc_layernorm(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias, float eps,
                       mc_tensor **out);

/* ---- groupnorm.c: GroupNorm with PyTorch's semantics ----
 * x (N, ..., C), channels last (NHWC for images); C/groups consecutive
 * channels form a group, normalised per sample over its channels and every
 * position (biased variance), then y = x^ * weight[c] + bias[c]. weight,
 * bias (C) or NULL. No running statistics. */
mc_status mc_group_norm(mc_graph *g, mc_tensor *x, int groups, mc_tensor *weight, mc_tensor *bias,
                        float eps, mc_tensor **out);

/* ---- batchnorm.c: BatchNorm2d with PyTorch's semantics ----
 * x (N, H, W, C) NHWC; weight, bias, running_mean, running_var (C).
 * training: normalise with the batch mean and the biased batch variance,
 *   y = (x - mean) / sqrt(var + eps) * weight + bias, then update
 *   running = (1 - momentum) * running + momentum * batch statistic, using
 *   the unbiased variance for running_var (running stats are modified).
 * eval: normalise with the running statistics. */
mc_status mc_batchnorm2d(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                         mc_tensor *running_mean, mc_tensor *running_var, bool training,
                         float momentum, float eps, mc_tensor **out);

/* relu(mc_batchnorm2d(...)) as one op: same arguments, checks and results
 * bit for bit, but the pre-ReLU tensor is never stored — the memory PyTorch
 * saves with nn.ReLU(inplace=True). x, *out: (N, H, W, C). */
mc_status mc_batchnorm2d_relu(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                              mc_tensor *running_mean, mc_tensor *running_var, bool training,
                              float momentum, float eps, mc_tensor **out);

/* relu(mc_batchnorm2d(...) + shortcut) as one op, the end of a residual
 * block: bit for bit mc_batchnorm2d then mc_add_relu, but the BN output
 * before the addition is never stored. shortcut, x, *out: (N, H, W, C). */
mc_status mc_batchnorm2d_add_relu(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                                  mc_tensor *running_mean, mc_tensor *running_var, bool training,
                                  float momentum, float eps, mc_tensor *shortcut, mc_tensor **out);

/* Synchronised batch norm (set by lib/dist, mc_dist_set_sync_batchnorm):
 * `sum` replaces `count` doubles by their sum over every process (the same
 * result everywhere). While set, training-mode batch norm sums its
 * per-channel statistics and the two per-channel sums of its backward with
 * it, so the batch is the union of every process's batch. NULL (the
 * default): each process normalises by its own batch. */
typedef mc_status (*mc_batchnorm_sum_fn)(double *values, int64_t count);
void mc_batchnorm_set_global_sum(mc_batchnorm_sum_fn sum);

/* ---- conv.c: 2-D convolution (cross-correlation, as PyTorch) ----
 * x (N, H, W, C) NHWC, weight (OC, C/groups, KH, KW), bias (OC) or NULL
 * -> (N, OH, OW, OC) with OH = (H + 2*pad_h - dil_h*(KH-1) - 1) / stride_h + 1. */
typedef struct mc_conv2d_params {
    int stride_h, stride_w;
    int pad_h, pad_w;
    int dilation_h, dilation_w;
    int groups;
} mc_conv2d_params;
/* stride s, padding p, dilation 1, groups 1. */
mc_conv2d_params mc_conv2d_simple(int stride, int padding);
mc_status mc_conv2d(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                    mc_conv2d_params params, mc_tensor **out);

/* ---- pool.c (NHWC) ---- */
/* Max over kernel windows; padding counts as -infinity. */
mc_status mc_maxpool2d(mc_graph *g, mc_tensor *x, int kernel, int stride, int padding,
                       mc_tensor **out);
/* Mean over windows; padded zeros are counted (count_include_pad=True). */
mc_status mc_avgpool2d(mc_graph *g, mc_tensor *x, int kernel, int stride, int padding,
                       mc_tensor **out);
/* PyTorch's adaptive average pooling to (out_h, out_w). */
mc_status mc_adaptive_avgpool2d(mc_graph *g, mc_tensor *x, int out_h, int out_w, mc_tensor **out);
/* Mean over H and W: x (N, H, W, C) -> (N, C). */
mc_status mc_global_avgpool(mc_graph *g, mc_tensor *x, mc_tensor **out);

/* ---- embedding.c ----
 * weight (V, D); ids: numel(ids_shape) indices in [0, V) -> ids_shape + (D). */
mc_status mc_embedding(mc_graph *g, mc_tensor *weight, const int32_t *ids, mc_shape ids_shape,
                       mc_tensor **out);

/* ---- select.c: picking elements ----
 * A mask is a float tensor, true where nonzero; it broadcasts to the shape it
 * selects over (aligned from the last dimension, each dimension equal or 1). */
/* out = mask ? a : b elementwise (torch.where); a and b of one shape. */
mc_status mc_where(mc_graph *g, mc_tensor *mask, mc_tensor *a, mc_tensor *b, mc_tensor **out);
/* out = mask ? value : x (Tensor.masked_fill); no gradient where filled. */
mc_status mc_masked_fill(mc_graph *g, mc_tensor *x, mc_tensor *mask, float value, mc_tensor **out);
/* torch.gather(x, dim, index): out has index_shape (as many dimensions as x,
 * none larger than x's but dim) and out[i] = x[i with coordinate dim
 * replaced by index[i]]; index: numel(index_shape) values in [0, x.dim[dim]).
 * The gradient of an element gathered twice is the sum. */
mc_status mc_gather(mc_graph *g, mc_tensor *x, int dim, const int32_t *index, mc_shape index_shape,
                    mc_tensor **out);

/* ---- dropout.c ----
 * training: zero each element with probability p, scale the rest by
 * 1/(1-p); not training (or p == 0): the identity (*out = x, no copy). */
mc_status mc_dropout(mc_graph *g, mc_tensor *x, float p, bool training, mc_rng *rng,
                     mc_tensor **out);

/* ---- normalize.c: x / max(||x||_2, eps) along the last dim (F.normalize) ---- */
mc_status mc_l2_normalize(mc_graph *g, mc_tensor *x, float eps, mc_tensor **out);

/* ---- attention.c: multi-head scaled dot-product attention ----
 * q, k, v (B, T, D) with D = n_heads * head_dim; each head attends with
 * softmax(q k^T / sqrt(head_dim)) v; causal masks out keys after the query.
 * -> (B, T, D), heads concatenated. No projections: the layer with them
 * is mc_self_attention (nn.h). */
mc_status mc_attention(mc_graph *g, mc_tensor *q, mc_tensor *k, mc_tensor *v, int n_heads,
                       bool causal, mc_tensor **out);

/* ---- loss.c ---- */
/* Mean cross-entropy of logits (N, C) against class ids targets[N]; with
 * label smoothing s the target is (1 - s) one-hot + s / C (as PyTorch). */
mc_status mc_cross_entropy(mc_graph *g, mc_tensor *logits, const int32_t *targets,
                           float label_smoothing, mc_tensor **out);
/* InfoNCE: logits = exp(t) * normalize(a) @ normalize(b)^T, a and b (N, D),
 * t a one-element tensor (learnable when it requires a gradient); loss =
 * cross-entropy with labels 0..N-1 over the rows (a -> b), or with symmetric
 * the mean of the row and column losses (CLIP). out has shape (1). */
mc_status mc_infonce(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor *log_scale, bool symmetric,
                     mc_tensor **out);

/* ---- loss_elementwise.c: reduction 'mean', as PyTorch's defaults ----
 * input and target of one shape -> out (1); both get gradients when they
 * require them. */
/* mean((input - target)^2) (F.mse_loss). */
mc_status mc_mse_loss(mc_graph *g, mc_tensor *input, mc_tensor *target, mc_tensor **out);
/* -mean(t log p + (1 - t) log(1 - p)) with each log clamped at >= -100
 * (F.binary_cross_entropy); p = input in [0, 1] (MC_ERR_ARG otherwise). */
mc_status mc_bce_loss(mc_graph *g, mc_tensor *input, mc_tensor *target, mc_tensor **out);
/* The same on logits, p = sigmoid(logits), computed stably
 * (F.binary_cross_entropy_with_logits): prefer it to sigmoid + bce. */
mc_status mc_bce_with_logits(mc_graph *g, mc_tensor *logits, mc_tensor *target, mc_tensor **out);

#ifdef __cplusplus
}
#endif
#endif

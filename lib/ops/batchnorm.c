/* batchnorm2d: BatchNorm2d with PyTorch's semantics, on NHWC activations.
 *
 * Per channel c, over the M = N*H*W values of the batch:
 *     y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c
 * training: mean and var are the batch's, var BIASED (divided by M); the
 *   running statistics then move towards the batch's,
 *       running = (1 - momentum) * running + momentum * batch,
 *   with the UNBIASED variance (divided by M - 1) for running_var
 *   (torch.nn.functional.batch_norm, documented in torch.nn.BatchNorm2d).
 * eval: mean and var are the running statistics, which are not touched.
 * (eps goes inside the square root; darknet's sqrt(var) + eps does not
 * match PyTorch.)
 *
 * NHWC makes channels the fastest dimension, so every statistic is a
 * column sum over an (M, C) matrix. Sums are taken over a FIXED number of
 * row blocks in parallel and then added in block order, so the result does
 * not depend on the thread count (docs/architecture.md, Determinism).
 *
 * mc_batchnorm2d_relu (ops.h) is relu(batchnorm2d(x)) in one op, as
 * ResNet's conv-BN-ReLU units use it: one pass instead of two, and the BN
 * output before the relu is never stored. relu'(v) = [v > 0], so the
 * gradient reaching BN is dy where v > 0 and 0 elsewhere; backward computes
 * v again from x, which it reads anyway, and does not read y (bn_grad).
 * The results are bit for bit those of mc_batchnorm2d followed by mc_relu
 * (tested).
 *
 * mc_batchnorm2d_add_relu (ops.h) is relu(batchnorm2d(x) + shortcut), the
 * end of a residual block, in one op: the BN output before the addition,
 * a tensor as large as the block's output that nothing reads in backward,
 * is never stored. The same mask serves both gradients: the shortcut gets
 * dy where y > 0, and so does the normalisation. Bit for bit
 * mc_batchnorm2d followed by mc_add_relu (tested). */
#include "mmchain/ops.h"
#include "core/vector_clones.h"
#include "core/parallel.h"
#include "ops/naive.h"

#include <math.h>
#include <string.h>

enum { REDUCE_BLOCKS = 32 };

/* Rows [start, end) of block b when `rows` rows are cut into REDUCE_BLOCKS. */
static void block_range(int64_t rows, int b, int64_t *start, int64_t *end) {
    *start = rows * b / REDUCE_BLOCKS;
    *end = rows * (b + 1) / REDUCE_BLOCKS;
}

/* Column sums of x - shift and of (x - shift)^2 of the (rows, C) matrix x,
 * in one pass, in double: the batch statistics read x once. shift is any
 * value near the column's values (batch_statistics takes x's first row):
 * centred sums follow from shifted ones exactly (centred_squares), and the
 * shift keeps the squares from cancelling when |mean| >> std, which sums of
 * x and x^2 (E[x^2] - E[x]^2) would. (Float runs of 8 rows were tried for
 * the plain sums: twice as fast, but the 5-step Adam losses of the
 * ResNet-50 parity test moved by 2e-3 relative, past its 1e-3.)
 * x: (rows, C), shift: (C), partial: (REDUCE_BLOCKS, 2C) scratch,
 * sum, sum_sq: (C). */
static inline void shifted_sums_row(int64_t c, const float *restrict x, const float *restrict shift,
                                    double *restrict acc, double *restrict acc_sq) {
    for (int64_t ch = 0; ch < c; ch++) {
        double d = (double)x[ch] - shift[ch];
        acc[ch] += d;
        acc_sq[ch] += d * d;
    }
}

MC_VECTOR_CLONES
static void shifted_sums(int64_t rows, int64_t c, const float *x, const float *shift,
                         double *partial, double *sum, double *sum_sq) {
#pragma omp parallel for schedule(static) if (rows * c >= MC_PARALLEL_MIN_WORK)
    for (int b = 0; b < REDUCE_BLOCKS; b++) {
        double *acc = partial + (int64_t)b * 2 * c, *acc_sq = acc + c;
        int64_t start, end;
        block_range(rows, b, &start, &end);
        for (int64_t ch = 0; ch < 2 * c; ch++) acc[ch] = 0.0;
        for (int64_t r = start; r < end; r++) shifted_sums_row(c, x + r * c, shift, acc, acc_sq);
    }
    for (int64_t ch = 0; ch < c; ch++) sum[ch] = sum_sq[ch] = 0.0;
    for (int b = 0; b < REDUCE_BLOCKS; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            sum[ch] += partial[(int64_t)b * 2 * c + ch];
            sum_sq[ch] += partial[(int64_t)b * 2 * c + c + ch];
        }
}

/* sum((x - mean)^2) over n values from s1 = sum(x - shift) and
 * s2 = sum((x - shift)^2), for any mean: with d = shift - mean,
 *     (x - mean)^2 = (x - shift)^2 + 2 d (x - shift) + d^2.
 * The terms cancel only as far as d is large against the spread of x,
 * which a shift from within the batch keeps small. The mean may be another
 * batch's (a synchronised batch norm's global mean): this is then Chan's
 * merge of one part's sum of squares into the whole's. Never below 0. */
static double centred_squares(double s1, double s2, double n, double shift, double mean) {
    double d = shift - mean;
    double m2 = s2 + d * (2.0 * s1 + n * d);
    return m2 > 0.0 ? m2 : 0.0;
}

/* g where keep, +0.0 where not. The select written as a bit mask: GCC 12
 * vectorises it inside loops that also widen to double, a ?: it does not. */
static inline float keep_where(float g, bool keep) {
    uint32_t bits;
    memcpy(&bits, &g, sizeof bits);
    bits &= 0u - (uint32_t)keep;
    memcpy(&g, &bits, sizeof g);
    return g;
}

/* normalize's value of one element before any shortcut and relu:
 * (x - mean) * scale + shift. One function for the forward and for the
 * relu mask that backward computes again from it (bn_grad), so that both
 * are the same expression and give the same bits. */
static inline float normalized(float x, float mean, float scale, float shift) {
    return (x - mean) * scale + shift;
}

/* Where the gradient reaching the normalisation comes from (bn_grad). */
typedef enum {
    NO_RELU,     /* mc_batchnorm2d: dy */
    MASK_FROM_X, /* mc_batchnorm2d_relu: dy where normalized(x) > 0 or NaN */
    MASK_FROM_Y, /* mc_batchnorm2d_add_relu: dy where the op's output y > 0 or NaN */
} relu_mask;

/* The gradient reaching the normalisation at element ch of a row: dy, or
 * with a fused relu dy where the relu's input v was positive or NaN and 0
 * where v <= 0 (exactly where y <= 0: the relu keeps a NaN, as mc_relu and
 * torch.relu do, and passes its gradient on).
 * MASK_FROM_X: v = normalized(x), computed again from x, which backward
 * reads anyway, instead of reading y: one stream of memory less in each of
 * backward's two passes. The same bits as the forward's v (same
 * expression, same constants), so the same mask as y > 0.
 * MASK_FROM_Y: with a shortcut v = normalized(x) + shortcut, so y is read
 * (as many streams as reading the shortcut).
 * Callers pass `mask` as a constant (each loop is written out for each
 * case), so that y is then read unconditionally and the select vectorises.
 * x, dy, y: this row's (C) (y read only for MASK_FROM_Y); mean, scale,
 * shift: (C), the forward's (read only for MASK_FROM_X). */
static inline float bn_grad(const float *x, const float *dy, const float *y, relu_mask mask,
                            const float *mean, const float *scale, const float *shift, int64_t i,
                            int64_t ch) {
    if (mask == MASK_FROM_X)
        return keep_where(dy[i], !(normalized(x[i], mean[ch], scale[ch], shift[ch]) <= 0.0f));
    if (mask == MASK_FROM_Y) return keep_where(dy[i], !(y[i] <= 0.0f));
    return dy[i];
}

/* acc_dy += g and acc_dy_xhat += g * xhat for one row (restrict: no
 * run-time overlap checks, so the loop vectorises).
 * x, dy, y: (C), this row's; mean, invstd, scale, shift, acc_*: (C). */
static inline void backward_sums_row(int64_t c, const float *restrict x, const float *restrict dy,
                                     const float *restrict y, relu_mask mask,
                                     const float *restrict mean, const float *restrict invstd,
                                     const float *restrict scale, const float *restrict shift,
                                     double *restrict acc_dy, double *restrict acc_dy_xhat) {
    for (int64_t ch = 0; ch < c; ch++) {
        float xhat = (x[ch] - mean[ch]) * invstd[ch];
        float g = bn_grad(x, dy, y, mask, mean, scale, shift, ch, ch);
        acc_dy[ch] += g;
        acc_dy_xhat[ch] += (double)g * xhat;
    }
}

/* sum(g) and sum(g * xhat) per channel, xhat = (x - mean) * invstd, g the
 * gradient bn_grad gives. In double, product included (as shifted_sums):
 * sum(g * xhat) cancels heavily (the terms are ~1e4 times its value in the
 * stem's BN of ResNet-50): float products alone (tried) moved bn1.weight's
 * gradient by 2e-3 relative, past the parity test's 1e-3.
 * x, dy: (rows, C); y: (rows, C), read only for MASK_FROM_Y; mean, invstd,
 * scale, shift: (C), the forward's; partial: (REDUCE_BLOCKS, 2C) scratch;
 * sum_dy, sum_dy_xhat: (C). */
MC_VECTOR_CLONES
static void backward_sums(int64_t rows, int64_t c, const float *x, const float *dy,
                          const float *y, relu_mask mask, const float *mean, const float *invstd,
                          const float *scale, const float *shift, double *partial,
                          double *sum_dy, double *sum_dy_xhat) {
#pragma omp parallel for schedule(static) if (rows * c >= MC_PARALLEL_MIN_WORK)
    for (int b = 0; b < REDUCE_BLOCKS; b++) {
        double *acc_dy = partial + (int64_t)b * 2 * c, *acc_dy_xhat = acc_dy + c;
        int64_t start, end;
        block_range(rows, b, &start, &end);
        for (int64_t ch = 0; ch < 2 * c; ch++) acc_dy[ch] = 0.0;
        for (int64_t r = start; r < end; r++) {
            const float *xr = x + r * c, *dyr = dy + r * c;
            if (mask == MASK_FROM_Y)
                backward_sums_row(c, xr, dyr, y + r * c, MASK_FROM_Y, mean, invstd, scale, shift,
                                  acc_dy, acc_dy_xhat);
            else if (mask == MASK_FROM_X)
                backward_sums_row(c, xr, dyr, NULL, MASK_FROM_X, mean, invstd, scale, shift,
                                  acc_dy, acc_dy_xhat);
            else
                backward_sums_row(c, xr, dyr, NULL, NO_RELU, mean, invstd, scale, shift, acc_dy,
                                  acc_dy_xhat);
        }
    }
    for (int64_t ch = 0; ch < c; ch++) sum_dy[ch] = sum_dy_xhat[ch] = 0.0;
    for (int b = 0; b < REDUCE_BLOCKS; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            sum_dy[ch] += partial[(int64_t)b * 2 * c + ch];
            sum_dy_xhat[ch] += partial[(int64_t)b * 2 * c + c + ch];
        }
}

/* Synchronised batch norm (ops.h): the sum over processes, or NULL. */
static mc_batchnorm_sum_fn global_sum;

void mc_batchnorm_set_global_sum(mc_batchnorm_sum_fn sum) { global_sum = sum; }

/* What backward needs: the statistics the forward normalised with. */
typedef struct batchnorm_saved {
    bool training;
    bool relu;     /* mc_batchnorm2d_relu: the output is relu(BN(x)); with a shortcut (input 3)
                      relu(BN(x) + shortcut) */
    float *mean;   /* (C) */
    float *invstd; /* (C): 1 / sqrt(var + eps) */
    float *scale;  /* (C): normalize's, invstd * weight */
    float *shift;  /* (C): normalize's, bias (0 without) */
    double rows;   /* values per channel the statistics cover (all processes' when synchronised) */
    mc_batchnorm_sum_fn sum; /* the forward's global sum (its backward uses the same), or NULL */
} batchnorm_saved;

/* x: (M, C) -> y: (M, C) = (x - mean) * scale + shift, then + shortcut
 * when there is one, then max(., 0) when relu. scale = invstd * weight and
 * shift = bias are per channel, computed once: the inner loop is then a
 * plain vectorisable multiply-add. mean, scale, shift: (C); shortcut:
 * (M, C) or NULL (then relu). */
MC_VECTOR_CLONES
static void normalize(int64_t rows, int64_t c, const float *x, const float *mean,
                      const float *scale, const float *shift, bool relu, const float *shortcut,
                      float *y) {
#pragma omp parallel for schedule(static) if (rows * c >= MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        const float *in = x + r * c;
        float *o = y + r * c;
        if (shortcut) {
            const float *add = shortcut + r * c;
            for (int64_t ch = 0; ch < c; ch++) {
                /* as mc_add_relu adds the BN output */
                float v = normalized(in[ch], mean[ch], scale[ch], shift[ch]) + add[ch];
                o[ch] = v <= 0.0f ? 0.0f : v; /* NaN stays, as mc_relu keeps it */
            }
        } else if (relu)
            for (int64_t ch = 0; ch < c; ch++) {
                float v = normalized(in[ch], mean[ch], scale[ch], shift[ch]);
                o[ch] = v <= 0.0f ? 0.0f : v;
            }
        else
            for (int64_t ch = 0; ch < c; ch++) o[ch] = normalized(in[ch], mean[ch], scale[ch], shift[ch]);
    }
}

/* The naive reference of normalize (what the op computed before the
 * per-channel constants and the fused relu): one element at a time. */
void mc_batchnorm2d_normalize_naive(int64_t rows, int64_t c, const float *x, const float *mean,
                                        const float *invstd, const float *weight,
                                        const float *bias, bool relu, float *y) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t ch = 0; ch < c; ch++) {
            float scale = invstd[ch] * (weight ? weight[ch] : 1.0f);
            float v = (x[r * c + ch] - mean[ch]) * scale + (bias ? bias[ch] : 0.0f);
            y[r * c + ch] = relu && v <= 0.0f ? 0.0f : v;
        }
}

/* Batch statistics into saved->mean / invstd, and the running update.
 * One pass over x (shifted_sums, shifted by x's first row), then per
 * channel: mean = sum(x) / M, and the centred sum of squares from the
 * shifted sums. Synchronised (saved->sum), each process shifts by its own
 * first row: the sums of x and the row counts go over all processes first,
 * giving the global mean, then each process's centred squares about that
 * mean (centred_squares), whose sum is the global batch's: two sums over
 * processes, as two passes took before.
 * x: (M, C); running_mean, running_var: (C) or NULL. */
static mc_status batch_statistics(mc_graph *g, int64_t rows, int64_t c, const float *x, float eps,
                                  float momentum, float *running_mean, float *running_var,
                                  batchnorm_saved *saved) {
    double *partial, *s1, *s2, *sums, *sq;
    MC_TRY(mc_graph_alloc(g, (size_t)(REDUCE_BLOCKS * 2 * c) * sizeof(double), (void **)&partial));
    MC_TRY(mc_graph_alloc(g, (size_t)(4 * c + 1) * sizeof(double), (void **)&s1));
    s2 = s1 + c, sq = s1 + 2 * c, sums = s1 + 3 * c; /* sums: (C + 1), the row count last */
    const float *shift = x; /* the first row */
    shifted_sums(rows, c, x, shift, partial, s1, s2);
    for (int64_t ch = 0; ch < c; ch++) sums[ch] = (double)rows * shift[ch] + s1[ch];
    sums[c] = (double)rows;
    if (saved->sum) MC_TRY(saved->sum(sums, c + 1));
    saved->rows = sums[c];
    if (saved->rows < 2) /* the same count on every process: all stop here */
        return mc_error(MC_ERR_SHAPE, "batchnorm2d: training needs more than one value per "
                        "channel, the synchronised batch has N*H*W = %.0f", saved->rows);
    for (int64_t ch = 0; ch < c; ch++) {
        double mean = sums[ch] / saved->rows;
        saved->mean[ch] = (float)mean;
        sq[ch] = centred_squares(s1[ch], s2[ch], (double)rows, shift[ch], mean);
    }
    if (saved->sum) MC_TRY(saved->sum(sq, c));
    for (int64_t ch = 0; ch < c; ch++) {
        double biased_var = sq[ch] / saved->rows;
        saved->invstd[ch] = (float)(1.0 / sqrt(biased_var + eps));
        if (running_mean)
            running_mean[ch] = (1 - momentum) * running_mean[ch] + momentum * (float)(sums[ch] / saved->rows);
        if (running_var) {
            double unbiased_var = sq[ch] / (saved->rows - 1);
            running_var[ch] = (1 - momentum) * running_var[ch] + momentum * (float)unbiased_var;
        }
    }
    return MC_OK;
}

/* dx: (M, C) += scale * d with g = bn_grad(dy) and
 *   training: d = g - (mean_g + xhat * mean_g_xhat), xhat = (x - mean) * invstd;
 *   eval:     d = g.
 * With a shortcut (mc_batchnorm2d_add_relu) its gradient is g as well:
 * d_shortcut: (M, C) += g, in the same pass, which reads dy and y once for
 * both gradients instead of once more in a pass of its own.
 * fresh: dx and d_shortcut were just made by mc_grad_buffer_fresh, not
 * zeroed (the common case: a BN's input and a block's shortcut have their
 * first gradient here); the pass then stores 0 + v without reading, two
 * streams of memory less (the zeroing and the read), the same bits as
 * adding to zeros (0 + v, not v, which would keep the sign of a -0).
 * x, dy, y (read only for MASK_FROM_Y), d_shortcut (or NULL): (M, C); the
 * rest (C), constant per channel so that the inner loop has no division. */

/* to[i] + v, or 0 + v when `fresh` (to holds zeros). */
static inline float added_to(const float *to, int64_t i, bool fresh, float v) {
    return (fresh ? 0.0f : to[i]) + v;
}

/* One row of input_grad (below); `mask`, `shortcut` and `fresh` constant
 * at each call, so that each combination is a loop of its own that
 * vectorises. restrict: no run-time overlap checks (too many pointers for
 * GCC to version the loop: it stayed scalar); d_shortcut is never dx (the
 * caller adds a shortcut that is x itself in a pass of its own). */
static inline void input_grad_row(int64_t r, int64_t c, bool training, const float *restrict x,
                                  const float *restrict dy, const float *restrict y, relu_mask mask,
                                  float *restrict d_shortcut, bool shortcut, bool fresh,
                                  const float *restrict mean, const float *restrict invstd,
                                  const float *restrict scale, const float *restrict shift,
                                  const float *restrict mean_g,
                                  const float *restrict mean_g_xhat, float *restrict dx) {
    const int64_t row = r * c;
    if (training)
        for (int64_t ch = 0; ch < c; ch++) {
            float xhat = (x[row + ch] - mean[ch]) * invstd[ch];
            float g = bn_grad(x, dy, y, mask, mean, scale, shift, row + ch, ch);
            if (shortcut) d_shortcut[row + ch] = added_to(d_shortcut, row + ch, fresh, g);
            float d = g - (mean_g[ch] + xhat * mean_g_xhat[ch]);
            dx[row + ch] = added_to(dx, row + ch, fresh, scale[ch] * d);
        }
    else
        for (int64_t ch = 0; ch < c; ch++) {
            float g = bn_grad(x, dy, y, mask, mean, scale, shift, row + ch, ch);
            if (shortcut) d_shortcut[row + ch] = added_to(d_shortcut, row + ch, fresh, g);
            dx[row + ch] = added_to(dx, row + ch, fresh, scale[ch] * g);
        }
}

/* input_grad_row for whichever mask and shortcut the op has, `fresh`
 * constant at each call. always_inline: GCC 12 found the eight variants
 * too large to inline and called a copy of this compiled for the baseline
 * target from input_grad's AVX-512 clone, unvectorised. */
static inline __attribute__((always_inline)) void input_grad_row_of_op(
    int64_t r, int64_t c, bool training, const float *x, const float *dy, const float *y,
    relu_mask mask, float *d_shortcut, bool fresh, const float *mean, const float *invstd,
    const float *scale, const float *shift, const float *mean_g, const float *mean_g_xhat,
    float *dx) {
    if (d_shortcut) /* a shortcut comes with the relu, and the mask from y */
        input_grad_row(r, c, training, x, dy, y, MASK_FROM_Y, d_shortcut, true, fresh, mean,
                       invstd, scale, shift, mean_g, mean_g_xhat, dx);
    else if (mask == MASK_FROM_Y)
        input_grad_row(r, c, training, x, dy, y, MASK_FROM_Y, NULL, false, fresh, mean, invstd,
                       scale, shift, mean_g, mean_g_xhat, dx);
    else if (mask == MASK_FROM_X)
        input_grad_row(r, c, training, x, dy, NULL, MASK_FROM_X, NULL, false, fresh, mean, invstd,
                       scale, shift, mean_g, mean_g_xhat, dx);
    else
        input_grad_row(r, c, training, x, dy, NULL, NO_RELU, NULL, false, fresh, mean, invstd,
                       scale, shift, mean_g, mean_g_xhat, dx);
}

MC_VECTOR_CLONES
static void input_grad(int64_t rows, int64_t c, bool training, const float *x, const float *dy,
                       const float *y, relu_mask mask, float *d_shortcut, bool fresh,
                       const float *mean, const float *invstd, const float *scale,
                       const float *shift, const float *mean_g, const float *mean_g_xhat,
                       float *dx) {
#pragma omp parallel for schedule(static) if (rows * c >= MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        if (fresh)
            input_grad_row_of_op(r, c, training, x, dy, y, mask, d_shortcut, true, mean, invstd,
                                 scale, shift, mean_g, mean_g_xhat, dx);
        else
            input_grad_row_of_op(r, c, training, x, dy, y, mask, d_shortcut, false, mean, invstd,
                                 scale, shift, mean_g, mean_g_xhat, dx);
    }
}

/* d_shortcut: (n) += dy where y > 0, when x needs no gradient or is the
 * shortcut itself (otherwise input_grad adds it). y, dy: (n). */
MC_VECTOR_CLONES
static void shortcut_grad(int64_t n, const float *y, const float *dy, float *d_shortcut) {
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) d_shortcut[i] += keep_where(dy[i], !(y[i] <= 0.0f));
}

/* in: x (N, H, W, C), weight (C) or NULL, bias (C) or NULL, shortcut
 * (N, H, W, C) or absent; out->grad: (N, H, W, C). */
static mc_status batchnorm2d_backward(mc_node *node) {
    const batchnorm_saved *saved = node->saved;
    mc_tensor *x = node->in[0], *weight = node->in[1], *bias = node->in[2];
    mc_tensor *shortcut = node->n_in > 3 ? node->in[3] : NULL;
    int64_t c = x->shape.dim[3], rows = x->numel / c;
    const float *dy = node->out->grad;
    const float *y = node->out->data;
    /* The relu's mask from x (which backward reads anyway) unless a
     * shortcut was added before the relu (bn_grad). */
    const relu_mask mask = !saved->relu ? NO_RELU : shortcut ? MASK_FROM_Y : MASK_FROM_X;
    /* The shortcut's gradient comes with x's (input_grad), unless x needs
     * none or is the shortcut itself (both terms then go to one buffer). */
    const bool shortcut_apart = shortcut && (!x->requires_grad || shortcut == x);
    /* input_grad stores every element of dx (and of d_shortcut when it
     * writes that too), so buffers made here are left unzeroed (`fresh`). */
    if (shortcut && shortcut->requires_grad && shortcut_apart) {
        float *d_shortcut_apart;
        MC_TRY(mc_grad_buffer(node->graph, shortcut, &d_shortcut_apart));
        shortcut_grad(x->numel, y, dy, d_shortcut_apart);
    }
    double *partial, *sum_dy, *sum_dy_xhat;
    MC_TRY(mc_graph_alloc(node->graph, (size_t)(REDUCE_BLOCKS * 2 * c) * sizeof(double), (void **)&partial));
    MC_TRY(mc_graph_alloc(node->graph, (size_t)(2 * c) * sizeof(double), (void **)&sum_dy));
    sum_dy_xhat = sum_dy + c;
    backward_sums(rows, c, x->data, dy, y, mask, saved->mean, saved->invstd, saved->scale,
                  saved->shift, partial, sum_dy, sum_dy_xhat);

    if (weight && weight->requires_grad) {
        float *dweight;
        MC_TRY(mc_grad_buffer(node->graph, weight, &dweight));
        for (int64_t ch = 0; ch < c; ch++) dweight[ch] += (float)sum_dy_xhat[ch];
    }
    if (bias && bias->requires_grad) {
        float *dbias;
        MC_TRY(mc_grad_buffer(node->graph, bias, &dbias));
        for (int64_t ch = 0; ch < c; ch++) dbias[ch] += (float)sum_dy[ch];
    }
    if (!x->requires_grad) return MC_OK;
    /* Synchronised, x's gradient needs the sums over the global batch; the
     * weight and bias above keep this process's share (the data-parallel
     * gradient average adds the shares up). */
    if (saved->training && saved->sum) MC_TRY(saved->sum(sum_dy, 2 * c));
    float *dx, *mean_g, *mean_g_xhat;
    MC_TRY(mc_graph_alloc(node->graph, (size_t)(2 * c) * sizeof(float), (void **)&mean_g));
    mean_g_xhat = mean_g + c; /* zeroed by mc_graph_alloc */
    /* The unzeroed buffers are taken last, after the sums and allocations
     * that can fail, so that a failed backward (short of running out of
     * memory for these two) leaves none attached unwritten. */
    float *d_shortcut = NULL;
    bool shortcut_fresh = true, dx_fresh;
    if (shortcut && shortcut->requires_grad && !shortcut_apart)
        MC_TRY(mc_grad_buffer_fresh(node->graph, shortcut, &d_shortcut, &shortcut_fresh));
    MC_TRY(mc_grad_buffer_fresh(node->graph, x, &dx, &dx_fresh));
    /* One pass writes both: stores when both are new, else adds, into
     * zeros for the one that is new (rare: a shortcut with a gradient
     * already and a fresh x, or the other way round). */
    const bool fresh = dx_fresh && shortcut_fresh;
    if (!fresh && dx_fresh) memset(dx, 0, (size_t)x->numel * sizeof(float));
    if (!fresh && d_shortcut && shortcut_fresh)
        memset(d_shortcut, 0, (size_t)x->numel * sizeof(float));
    /* eval: mean and invstd are constants, so dx = dy * weight * invstd
     * (the forward's scale). training: they depend on x too;
     * differentiating through them gives
     *   dx = weight * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)). */
    if (saved->training)
        for (int64_t ch = 0; ch < c; ch++) {
            mean_g[ch] = (float)(sum_dy[ch] / saved->rows);
            mean_g_xhat[ch] = (float)(sum_dy_xhat[ch] / saved->rows);
        }
    input_grad(rows, c, saved->training, x->data, dy, y, mask, d_shortcut, fresh, saved->mean,
               saved->invstd, saved->scale, saved->shift, mean_g, mean_g_xhat, dx);
    return MC_OK;
}

/* A per-channel tensor (weight, bias, running stats) must be (C). */
static mc_status check_channel_vector(const mc_tensor *t, const char *role, const mc_tensor *x,
                                      int64_t c) {
    if (!t || (t->shape.ndim == 1 && t->shape.dim[0] == c)) return MC_OK;
    char ts[160], xs[160];
    return mc_error(MC_ERR_SHAPE, "batchnorm2d: %s %s must have shape (%lld), one per channel of "
                    "%s (NHWC: channels last)",
                    role, mc_tensor_str(t, ts, sizeof ts), (long long)c, mc_tensor_str(x, xs, sizeof xs));
}

static mc_status check_batchnorm_args(const mc_tensor *x, const mc_tensor *weight,
                                      const mc_tensor *bias, const mc_tensor *running_mean,
                                      const mc_tensor *running_var, bool training, float momentum,
                                      float eps) {
    char xs[160];
    if (!x) return mc_error(MC_ERR_ARG, "batchnorm2d: input x must not be NULL");
    mc_tensor_str(x, xs, sizeof xs);
    if (x->shape.ndim != 4)
        return mc_error(MC_ERR_SHAPE, "batchnorm2d: input x %s must be 4-D (N, H, W, C)"
                        ": activations are NHWC, not PyTorch's NCHW", xs);
    int64_t c = x->shape.dim[3];
    MC_TRY(check_channel_vector(weight, "weight", x, c));
    MC_TRY(check_channel_vector(bias, "bias", x, c));
    MC_TRY(check_channel_vector(running_mean, "running_mean", x, c));
    MC_TRY(check_channel_vector(running_var, "running_var", x, c));
    if (!(eps >= 0.0f)) return mc_error(MC_ERR_ARG, "batchnorm2d: eps %g must be >= 0", eps);
    if (!training && (!running_mean || !running_var))
        return mc_error(MC_ERR_ARG, "batchnorm2d: eval mode on x %s needs running_mean and running_var", xs);
    if (training && !(momentum >= 0.0f && momentum <= 1.0f))
        return mc_error(MC_ERR_ARG, "batchnorm2d: momentum %g must be in [0, 1]", momentum);
    /* Synchronised (global_sum), the count that matters is the union's:
     * batch_statistics checks it once summed. */
    if (training && !global_sum && x->numel / c < 2)
        return mc_error(MC_ERR_SHAPE,
                        "batchnorm2d: training needs more than one value per channel, x %s has "
                        "N*H*W = 1",
                        xs);
    return MC_OK;
}

/* shortcut: NULL, or (N, H, W, C) added before the relu (relu then true). */
static mc_status batchnorm2d_op(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                                mc_tensor *running_mean, mc_tensor *running_var, bool training,
                                float momentum, float eps, bool relu, mc_tensor *shortcut,
                                mc_tensor **out) {
    *out = NULL;
    MC_TRY(check_batchnorm_args(x, weight, bias, running_mean, running_var, training, momentum, eps));
    if (shortcut && !mc_shape_equal(shortcut->shape, x->shape)) {
        char xs[160], ss[160];
        return mc_error(MC_ERR_SHAPE,
                        "batchnorm2d_add_relu: shortcut %s must have the shape of x %s",
                        mc_tensor_str(shortcut, ss, sizeof ss), mc_tensor_str(x, xs, sizeof xs));
    }
    int64_t c = x->shape.dim[3], rows = x->numel / c;
    batchnorm_saved *saved;
    MC_TRY(mc_graph_alloc(g, sizeof *saved, (void **)&saved));
    MC_TRY(mc_graph_alloc(g, (size_t)c * sizeof(float), (void **)&saved->mean));
    MC_TRY(mc_graph_alloc(g, (size_t)c * sizeof(float), (void **)&saved->invstd));
    saved->training = training;
    saved->relu = relu;
    saved->rows = (double)rows;
    saved->sum = training ? global_sum : NULL;
    if (training) {
        MC_TRY(batch_statistics(g, rows, c, x->data, eps, momentum,
                                running_mean ? running_mean->data : NULL,
                                running_var ? running_var->data : NULL, saved));
    } else {
        for (int64_t ch = 0; ch < c; ch++) {
            saved->mean[ch] = running_mean->data[ch];
            saved->invstd[ch] = (float)(1.0 / sqrt((double)running_var->data[ch] + eps));
        }
    }
    float *scale, *shift; /* zeroed by mc_graph_alloc: shift is 0 without bias */
    MC_TRY(mc_graph_alloc(g, (size_t)(2 * c) * sizeof(float), (void **)&scale));
    shift = scale + c;
    saved->scale = scale, saved->shift = shift; /* backward's too */
    for (int64_t ch = 0; ch < c; ch++) {
        scale[ch] = saved->invstd[ch] * (weight ? weight->data[ch] : 1.0f);
        if (bias) shift[ch] = bias->data[ch];
    }
    const char *op = shortcut ? "batchnorm2d_add_relu" : relu ? "batchnorm2d_relu" : "batchnorm2d";
    mc_tensor *y; /* every element is written by normalize */
    MC_TRY(mc_graph_tensor_uninit(g, x->shape, op, &y));
    normalize(rows, c, x->data, saved->mean, scale, shift, relu, shortcut ? shortcut->data : NULL,
              y->data);
    /* Inputs keep fixed positions (x, weight, bias[, shortcut]); absent
     * weight and bias are NULL. */
    mc_tensor *inputs[4] = {x, weight, bias, shortcut};
    MC_TRY(mc_graph_record(g, op, batchnorm2d_backward, y, shortcut ? 4 : 3, inputs, saved));
    *out = y;
    return MC_OK;
}

mc_status mc_batchnorm2d(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                         mc_tensor *running_mean, mc_tensor *running_var, bool training,
                         float momentum, float eps, mc_tensor **out) {
    return batchnorm2d_op(g, x, weight, bias, running_mean, running_var, training, momentum, eps,
                          false, NULL, out);
}

mc_status mc_batchnorm2d_relu(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                              mc_tensor *running_mean, mc_tensor *running_var, bool training,
                              float momentum, float eps, mc_tensor **out) {
    return batchnorm2d_op(g, x, weight, bias, running_mean, running_var, training, momentum, eps,
                          true, NULL, out);
}

mc_status mc_batchnorm2d_add_relu(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                                  mc_tensor *running_mean, mc_tensor *running_var, bool training,
                                  float momentum, float eps, mc_tensor *shortcut, mc_tensor **out) {
    if (!shortcut) {
        *out = NULL;
        return mc_error(MC_ERR_ARG, "batchnorm2d_add_relu: shortcut must not be NULL");
    }
    return batchnorm2d_op(g, x, weight, bias, running_mean, running_var, training, momentum, eps,
                          true, shortcut, out);
}

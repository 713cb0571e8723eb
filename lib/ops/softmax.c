/* softmax and log_softmax along any dimension.
 *
 * Along dimension dim, x is viewed as (outer, n, inner): each of the
 * outer*inner "lanes" is n numbers spaced `inner` apart (inner == 1, the last
 * dimension, is the common and fast case: contiguous rows).
 *
 * Numerical stability: softmax(x) = softmax(x - c) for any c; with c = max(x)
 * every exponent is <= 0, so exp never overflows and the largest term is 1,
 * so the sum never underflows to 0.
 *
 * Gradients, with y the output and dy its gradient, per lane:
 *   softmax:      dx = y * (dy - sum(dy * y))
 *   log_softmax:  dx = dy - exp(y) * sum(dy)      (exp(y) is the softmax) */
#include "mmchain/ops.h"
#include "core/parallel.h"
#include "ops/ops_internal.h"

#include <math.h>

typedef struct softmax_saved {
    int dim;
} softmax_saved;

/* ---- one lane ---- */

/* x, y: (n) with stride `stride`; y = softmax(x) or log_softmax(x). */
static void lane_forward(const float *x, float *y, int64_t n, int64_t stride, bool log_output) {
    float max = x[0];
    for (int64_t j = 1; j < n; j++) max = fmaxf(max, x[j * stride]);
    float sum = 0.0f;
    if (log_output) {
        for (int64_t j = 0; j < n; j++) sum += expf(x[j * stride] - max);
        float log_sum = logf(sum);
        for (int64_t j = 0; j < n; j++) y[j * stride] = x[j * stride] - max - log_sum;
    } else {
        for (int64_t j = 0; j < n; j++) {
            y[j * stride] = expf(x[j * stride] - max);
            sum += y[j * stride];
        }
        float inv_sum = 1.0f / sum;
        for (int64_t j = 0; j < n; j++) y[j * stride] *= inv_sum;
    }
}

/* The contiguous case, written as separate simple passes so that the max
 * and the sum vectorise (simd reductions).  x, y: (n). */
static void row_forward(const float *x, float *y, int64_t n, bool log_output) {
    float max = x[0];
#pragma omp simd reduction(max : max)
    for (int64_t j = 0; j < n; j++) max = x[j] > max ? x[j] : max;
    float sum = 0.0f;
#pragma omp simd
    for (int64_t j = 0; j < n; j++) y[j] = x[j] - max;
    mc_exp_kernel(y, y, n); /* the vectorised exp of activation.c */
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) sum += y[j];
    if (log_output) {
        /* (x - max) first: it is exact-ish, while max + log(sum) would be
         * rounded at the magnitude of max. */
        float log_sum = logf(sum);
#pragma omp simd
        for (int64_t j = 0; j < n; j++) y[j] = (x[j] - max) - log_sum;
    } else {
        float inv_sum = 1.0f / sum;
#pragma omp simd
        for (int64_t j = 0; j < n; j++) y[j] *= inv_sum;
    }
}

/* The contiguous case of lane_backward, vectorised.  y, dy, dx: (n). */
static void row_backward(const float *y, const float *dy, float *dx, int64_t n, bool log_output) {
    float dot = 0.0f;
    if (log_output) {
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < n; j++) dot += dy[j];
        for (int64_t j = 0; j < n; j++) dx[j] += dy[j] - expf(y[j]) * dot;
    } else {
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < n; j++) dot += dy[j] * y[j];
#pragma omp simd
        for (int64_t j = 0; j < n; j++) dx[j] += y[j] * (dy[j] - dot);
    }
}

/* y, dy: (n) with stride; dx += the gradient (see the file comment). */
static void lane_backward(const float *y, const float *dy, float *dx, int64_t n, int64_t stride,
                          bool log_output) {
    float dot = 0.0f;
    if (log_output) {
        for (int64_t j = 0; j < n; j++) dot += dy[j * stride];
        for (int64_t j = 0; j < n; j++) dx[j * stride] += dy[j * stride] - expf(y[j * stride]) * dot;
    } else {
        for (int64_t j = 0; j < n; j++) dot += dy[j * stride] * y[j * stride];
        for (int64_t j = 0; j < n; j++) dx[j * stride] += y[j * stride] * (dy[j * stride] - dot);
    }
}

/* ---- all lanes ---- */

/* The first element of lane `lane` of (outer, n, inner): lane = o * inner + i
 * runs along n from (o, 0, i), with stride inner. */
static inline int64_t lane_start(int64_t lane, int64_t n, int64_t inner) {
    return (lane / inner) * n * inner + lane % inner;
}

/* x, y: (outer, n, inner). */
static void softmax_forward(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                            bool log_output) {
    int64_t lanes = outer * inner;
#pragma omp parallel for if (lanes * n > MC_PARALLEL_MIN_WORK)
    for (int64_t lane = 0; lane < lanes; lane++) {
        int64_t start = lane_start(lane, n, inner);
        if (inner == 1)
            row_forward(x + start, y + start, n, log_output);
        else
            lane_forward(x + start, y + start, n, inner, log_output);
    }
}

/* y, dy, dx: (outer, n, inner). */
static void softmax_backward(const float *y, const float *dy, float *dx, int64_t outer, int64_t n,
                             int64_t inner, bool log_output) {
    int64_t lanes = outer * inner;
#pragma omp parallel for if (lanes * n > MC_PARALLEL_MIN_WORK)
    for (int64_t lane = 0; lane < lanes; lane++) {
        int64_t start = lane_start(lane, n, inner);
        if (inner == 1)
            row_backward(y + start, dy + start, dx + start, n, log_output);
        else
            lane_backward(y + start, dy + start, dx + start, n, inner, log_output);
    }
}

static mc_status softmax_node(mc_node *node, bool log_output) {
    const softmax_saved *saved = node->saved;
    float *gx;
    mc_dim_split s;
    MC_TRY(mc_dim_op_grad(node, saved->dim, &gx, &s));
    mc_tensor *y = node->out;
    softmax_backward(y->data, y->grad, gx, s.outer, s.n, s.inner, log_output);
    return MC_OK;
}

static mc_status softmax_backward_node(mc_node *node) { return softmax_node(node, false); }
static mc_status log_softmax_backward_node(mc_node *node) { return softmax_node(node, true); }

static mc_status softmax_op(mc_graph *g, const char *op, mc_tensor *x, int dim, bool log_output,
                            mc_tensor **out) {
    *out = NULL;
    if (!x) return mc_error(MC_ERR_ARG, "%s: input is NULL", op);
    int d = 0;
    MC_TRY(mc_resolve_dim(op, x, dim, &d));
    mc_dim_split s = mc_split_at(x->shape, d);
    mc_tensor *y;
    MC_TRY(mc_graph_tensor(g, x->shape, op, &y));
    softmax_forward(x->data, y->data, s.outer, s.n, s.inner, log_output);
    softmax_saved saved = {.dim = d};
    MC_TRY(mc_op_record_saved(g, op, log_output ? log_softmax_backward_node : softmax_backward_node,
                              y, 1, &x, &saved, sizeof saved));
    *out = y;
    return MC_OK;
}

mc_status mc_softmax(mc_graph *g, mc_tensor *x, int dim, mc_tensor **out) {
    return softmax_op(g, "softmax", x, dim, false, out);
}

mc_status mc_log_softmax(mc_graph *g, mc_tensor *x, int dim, mc_tensor **out) {
    return softmax_op(g, "log_softmax", x, dim, true, out);
}

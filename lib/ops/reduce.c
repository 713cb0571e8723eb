/* Reductions: sum and mean over one dimension, and over every element; max
 * and min over one dimension, argmax and argmin.
 *
 * Reducing dimension `dim` of x views x as (outer, n, inner) — the dims
 * before it, it, and the dims after it — and produces (outer, inner). The
 * backward spreads each output gradient back over the n elements it summed
 * (times 1/n for the mean). */
#include "mmchain/ops.h"
#include "core/parallel.h"
#include "ops/ops_internal.h"

#include <math.h>

typedef struct reduce_saved {
    int dim;     /* the reduced dimension of the input, resolved */
    float scale; /* 1 for sum, 1/n for mean */
} reduce_saved;

/* x: (outer, n, inner); y: (outer, inner) = scale * sum over the middle. */
static void reduce_dim_forward(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                               float scale) {
#pragma omp parallel for if (outer * n * inner > MC_PARALLEL_MIN_WORK && outer > 1)
    for (int64_t o = 0; o < outer; o++) {
        float *y_row = y + o * inner;
        const float *x_block = x + o * n * inner;
        /* Sums in double, as mc_sum_all's: in float, millions of terms
         * drift (a mean of 5 million 0.1f came out 4 % low) and a sum of
         * ones stops at 2^24. */
        if (inner == 1) {
            /* A contiguous row: one dot-style reduction, vectorised by simd. */
            double acc = 0.0;
#pragma omp simd reduction(+ : acc)
            for (int64_t j = 0; j < n; j++) acc += x_block[j];
            y_row[0] = (float)(acc * scale);
            continue;
        }
        enum { CHUNK = 256 }; /* columns summed at once, their sums on the stack */
        for (int64_t i0 = 0; i0 < inner; i0 += CHUNK) {
            const int64_t m = inner - i0 < CHUNK ? inner - i0 : CHUNK;
            double acc[CHUNK];
            for (int64_t i = 0; i < m; i++) acc[i] = 0.0;
            for (int64_t j = 0; j < n; j++)
                for (int64_t i = 0; i < m; i++) acc[i] += x_block[j * inner + i0 + i];
            for (int64_t i = 0; i < m; i++) y_row[i0 + i] = (float)(acc[i] * scale);
        }
    }
}

/* dy: (outer, inner); dx: (outer, n, inner) += scale * dy broadcast over n. */
static void reduce_dim_backward(const float *dy, float *dx, int64_t outer, int64_t n, int64_t inner,
                                float scale) {
#pragma omp parallel for if (outer * n * inner > MC_PARALLEL_MIN_WORK && outer > 1)
    for (int64_t o = 0; o < outer; o++) {
        const float *dy_row = dy + o * inner;
        float *dx_block = dx + o * n * inner;
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < inner; i++) dx_block[j * inner + i] += scale * dy_row[i];
    }
}

static mc_status reduce_dim_node(mc_node *node) {
    const reduce_saved *saved = node->saved;
    float *gx;
    mc_dim_split s;
    MC_TRY(mc_dim_op_grad(node, saved->dim, &gx, &s));
    reduce_dim_backward(node->out->grad, gx, s.outer, s.n, s.inner, saved->scale);
    return MC_OK;
}

/* The reduced shape of x along d (keepdim: d kept as 1; a 1-D input gives (1)). */
static mc_shape reduced_shape(mc_shape shape, int d, bool keepdim) {
    if (keepdim) {
        shape.dim[d] = 1;
    } else if (shape.ndim == 1) {
        shape.dim[0] = 1;
    } else {
        for (int i = d; i < shape.ndim - 1; i++) shape.dim[i] = shape.dim[i + 1];
        shape.ndim--;
    }
    return shape;
}

static mc_status reduce_dim(mc_graph *g, const char *op, mc_tensor *x, int dim, bool keepdim,
                            bool mean, mc_tensor **out) {
    *out = NULL;
    int d = 0;
    MC_TRY(mc_resolve_dim(op, x, dim, &d));
    mc_dim_split s = mc_split_at(x->shape, d);
    mc_shape shape = reduced_shape(x->shape, d, keepdim);
    float scale = mean ? 1.0f / (float)s.n : 1.0f;
    mc_tensor *y;
    MC_TRY(mc_graph_tensor(g, shape, op, &y));
    reduce_dim_forward(x->data, y->data, s.outer, s.n, s.inner, scale);
    reduce_saved saved = {.dim = d, .scale = scale};
    MC_TRY(mc_op_record_saved(g, op, reduce_dim_node, y, 1, &x, &saved, sizeof saved));
    *out = y;
    return MC_OK;
}

mc_status mc_sum(mc_graph *g, mc_tensor *x, int dim, bool keepdim, mc_tensor **out) {
    return reduce_dim(g, "sum", x, dim, keepdim, false, out);
}

mc_status mc_mean(mc_graph *g, mc_tensor *x, int dim, bool keepdim, mc_tensor **out) {
    return reduce_dim(g, "mean", x, dim, keepdim, true, out);
}

/* ---- over every element ---- */

/* The sum of x (n), accumulated in double. The array is cut into a fixed
 * number of blocks whatever the thread count, and the block sums are added
 * in order, so the result does not depend on how many threads ran. */
enum { SUM_BLOCKS = 64 };

static double sum_all_kernel(const float *x, int64_t n) {
    double block_sum[SUM_BLOCKS] = {0};
    int64_t block_len = (n + SUM_BLOCKS - 1) / SUM_BLOCKS;
#pragma omp parallel for if (n > MC_PARALLEL_MIN_WORK)
    for (int b = 0; b < SUM_BLOCKS; b++) {
        int64_t begin = b * block_len, end = begin + block_len < n ? begin + block_len : n;
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = begin; i < end; i++) acc += x[i];
        block_sum[b] = acc;
    }
    double total = 0.0;
    for (int b = 0; b < SUM_BLOCKS; b++) total += block_sum[b];
    return total;
}

static mc_status reduce_all_node(mc_node *node) {
    mc_tensor *x = node->in[0], *y = node->out;
    const reduce_saved *saved = node->saved;
    float *gx;
    MC_TRY(mc_grad_buffer(node->graph, x, &gx));
    float g = y->grad[0] * saved->scale;
    int64_t n = x->numel;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) gx[i] += g;
    return MC_OK;
}

static mc_status reduce_all(mc_graph *g, const char *op, mc_tensor *x, bool mean, mc_tensor **out) {
    *out = NULL;
    if (!x) return mc_error(MC_ERR_ARG, "%s: input is NULL", op);
    mc_tensor *y;
    MC_TRY(mc_graph_tensor(g, MC_SHAPE(1), op, &y));
    double total = sum_all_kernel(x->data, x->numel);
    y->data[0] = (float)(mean ? total / (double)x->numel : total);
    reduce_saved saved = {.dim = -1, .scale = mean ? (float)(1.0 / (double)x->numel) : 1.0f};
    MC_TRY(mc_op_record_saved(g, op, reduce_all_node, y, 1, &x, &saved, sizeof saved));
    *out = y;
    return MC_OK;
}

mc_status mc_sum_all(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    return reduce_all(g, "sum_all", x, false, out);
}

mc_status mc_mean_all(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    return reduce_all(g, "mean_all", x, true, out);
}

/* ---- max and min over one dimension, argmax and argmin ----
 * As torch.max(x, dim) / torch.min(x, dim): the value at the extreme element
 * of each slice, ties to the FIRST index, NaN counts as the extreme (it
 * propagates). The backward routes each output gradient to that one element
 * (the index is saved); the other elements of the slice get nothing. */

typedef struct extreme_saved {
    int dim;          /* the reduced dimension of the input, resolved */
    int32_t *indices; /* (outer, inner): the winner's index along dim */
} extreme_saved;

/* x: (outer, n, inner) -> index (outer, inner) of the max (or min) along n. */
static void extreme_index_kernel(const float *x, int64_t outer, int64_t n, int64_t inner,
                                 bool want_max, int32_t *index) {
#pragma omp parallel for if (outer * n * inner > MC_PARALLEL_MIN_WORK && outer > 1)
    for (int64_t o = 0; o < outer; o++) {
        const float *x_block = x + o * n * inner;
        for (int64_t i = 0; i < inner; i++) {
            int64_t best = 0;
            float best_value = x_block[i];
            for (int64_t j = 1; j < n && !isnan(best_value); j++) {
                float v = x_block[j * inner + i];
                if (isnan(v) || (want_max ? v > best_value : v < best_value)) {
                    best = j;
                    best_value = v;
                }
            }
            index[o * inner + i] = (int32_t)best;
        }
    }
}

static mc_status check_index_range(const char *op, const mc_tensor *x, int d) {
    if (x->shape.dim[d] > INT32_MAX)
        return mc_error(MC_ERR_SHAPE, "%s of %s: dimension %d is too long for 32-bit indices", op,
                        x->name, d);
    return MC_OK;
}

static mc_status extreme_node(mc_node *node) {
    const extreme_saved *saved = node->saved;
    float *gx;
    mc_dim_split s;
    MC_TRY(mc_dim_op_grad(node, saved->dim, &gx, &s));
    const float *dy = node->out->grad; /* (outer, inner) */
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t i = 0; i < s.inner; i++)
            gx[(o * s.n + saved->indices[o * s.inner + i]) * s.inner + i] += dy[o * s.inner + i];
    return MC_OK;
}

static mc_status reduce_extreme(mc_graph *g, const char *op, mc_tensor *x, int dim, bool keepdim,
                                bool want_max, mc_tensor **out) {
    *out = NULL;
    if (!x) return mc_error(MC_ERR_ARG, "%s: input is NULL", op);
    int d = 0;
    MC_TRY(mc_resolve_dim(op, x, dim, &d));
    MC_TRY(check_index_range(op, x, d));
    mc_dim_split s = mc_split_at(x->shape, d);
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, reduced_shape(x->shape, d, keepdim), op, &y));
    int32_t *index;
    MC_TRY(mc_graph_alloc(g, (size_t)(s.outer * s.inner) * sizeof *index, (void **)&index));
    extreme_index_kernel(x->data, s.outer, s.n, s.inner, want_max, index);
    for (int64_t o = 0; o < s.outer; o++)
        for (int64_t i = 0; i < s.inner; i++)
            y->data[o * s.inner + i] = x->data[(o * s.n + index[o * s.inner + i]) * s.inner + i];
    extreme_saved saved = {.dim = d, .indices = index};
    MC_TRY(mc_op_record_saved(g, op, extreme_node, y, 1, &x, &saved, sizeof saved));
    *out = y;
    return MC_OK;
}

static mc_status arg_extreme(const char *op, const mc_tensor *x, int dim, bool want_max,
                             int32_t *indices) {
    if (!x || !indices) return mc_error(MC_ERR_ARG, "%s: x and indices must not be NULL", op);
    int d = 0;
    MC_TRY(mc_resolve_dim(op, x, dim, &d));
    MC_TRY(check_index_range(op, x, d));
    mc_dim_split s = mc_split_at(x->shape, d);
    extreme_index_kernel(x->data, s.outer, s.n, s.inner, want_max, indices);
    return MC_OK;
}

mc_status mc_max(mc_graph *g, mc_tensor *x, int dim, bool keepdim, mc_tensor **out) {
    return reduce_extreme(g, "max", x, dim, keepdim, true, out);
}

mc_status mc_min(mc_graph *g, mc_tensor *x, int dim, bool keepdim, mc_tensor **out) {
    return reduce_extreme(g, "min", x, dim, keepdim, false, out);
}

mc_status mc_argmax(const mc_tensor *x, int dim, int32_t *indices) {
    return arg_extreme("argmax", x, dim, true, indices);
}

mc_status mc_argmin(const mc_tensor *x, int dim, int32_t *indices) {
    return arg_extreme("argmin", x, dim, false, indices);
}

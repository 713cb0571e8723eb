/* Layer normalisation (Ba et al. 2016) over the last dimension, with
 * PyTorch's semantics: per row of D elements,
 *     mean = sum(x) / D,  var = sum((x - mean)^2) / D   (biased)
 *     xhat = (x - mean) * rstd,  rstd = 1 / sqrt(var + eps)
 *     y = xhat * weight + bias
 *
 * Backward, per row, with g = dy * weight (the gradient reaching xhat):
 *     dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
 *     dweight += dy * xhat,  dbias += dy        (summed over rows)
 * The first line is the derivative of xhat through both the mean and the
 * variance (they depend on every x of the row).
 *
 * Rows are independent, so both passes run in parallel over rows; the
 * weight and bias gradients are summed per thread, then the partial sums
 * are added in thread order (deterministic for a given thread count). */
#include "mmchain/ops.h"
#include "core/parallel.h"
#include "core/vector_clones.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct layernorm_saved {
    float *mean; /* (rows) */
    float *rstd; /* (rows) */
} layernorm_saved;

/* The sum of v[0..n) in LANES running sums, lane l taking the elements
 * j = l (mod LANES), added up pairwise at the end. WHY NOT `omp simd
 * reduction`: that lets the compiler sum in as many lanes as its vectors
 * hold, so the AVX-512 clone (16) and the baseline one (4) would round
 * differently; here the order is written out, the lanes are independent
 * elements (what both clones vectorise, MC_VECTOR_CLONES), and every CPU
 * gets the same bits. v: (n). */
enum { LANES = 16 };

static inline float lane_sum(float part[LANES]) {
    for (int width = LANES / 2; width >= 1; width /= 2)
        for (int l = 0; l < width; l++) part[l] += part[l + width];
    return part[0];
}

static inline float sum_of(const float *v, int64_t n) {
    float part[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) part[l] += v[j + l];
    for (int l = 0; j + l < n; l++) part[l] += v[j + l];
    return lane_sum(part);
}

/* The same for the squared deviations (v[j] - center)^2. */
static inline float squared_deviations_of(const float *v, int64_t n, float center) {
    float part[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) part[l] += (v[j + l] - center) * (v[j + l] - center);
    for (int l = 0; j + l < n; l++) part[l] += (v[j + l] - center) * (v[j + l] - center);
    return lane_sum(part);
}

/* x, y: (rows, D); weight, bias: (D) or NULL; mean, rstd: (rows), written. */
MC_VECTOR_CLONES
static void layernorm_forward(const float *x, const float *weight, const float *bias, float *y,
                              float *mean, float *rstd, int64_t rows, int64_t D, float eps) {
    /* Half the usual threshold: each element is read in three passes (mean,
     * variance, output), so half as many elements are as much work. */
#pragma omp parallel for if (rows * D > MC_PARALLEL_MIN_WORK / 2)
    for (int64_t r = 0; r < rows; r++) {
        const float *x_row = x + r * D;
        float *y_row = y + r * D;
        /* Two passes (mean, then squared deviations) instead of E[x^2]-E[x]^2,
         * which cancels catastrophically when |mean| >> std. */
        const float mu = sum_of(x_row, D) / (float)D;
        const float rs = 1.0f / sqrtf(squared_deviations_of(x_row, D, mu) / (float)D + eps);
        if (weight && bias) {
            for (int64_t j = 0; j < D; j++) y_row[j] = (x_row[j] - mu) * rs * weight[j] + bias[j];
        } else {
            for (int64_t j = 0; j < D; j++)
                y_row[j] = (x_row[j] - mu) * rs * (weight ? weight[j] : 1.0f) + (bias ? bias[j] : 0.0f);
        }
        mean[r] = mu;
        rstd[r] = rs;
    }
}

/* x, dy, dx: (rows, D); weight: (D) or NULL; mean, rstd: (rows).
 * dx may be NULL (x needs no gradient). gw_parts, gb_parts: (n_parts, D),
 * zeroed, each thread sums its rows' dweight/dbias into its own part. */
static void layernorm_backward_kernel(const float *x, const float *weight, const float *dy,
                                      const float *mean, const float *rstd, float *dx,
                                      float *gw_parts, float *gb_parts, int n_parts, int64_t rows,
                                      int64_t D) {
#pragma omp parallel num_threads(n_parts) if (n_parts > 1)
    {
#ifdef _OPENMP
        int part = omp_get_thread_num();
#else
        int part = 0;
#endif
        float *gw = gw_parts + part * D, *gb = gb_parts + part * D;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *x_row = x + r * D, *dy_row = dy + r * D;
            float mu = mean[r], rs = rstd[r];
            float sum_g = 0.0f, sum_g_xhat = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_g_xhat)
            for (int64_t j = 0; j < D; j++) {
                float xhat = (x_row[j] - mu) * rs;
                float g = dy_row[j] * (weight ? weight[j] : 1.0f);
                sum_g += g;
                sum_g_xhat += g * xhat;
                gw[j] += dy_row[j] * xhat;
                gb[j] += dy_row[j];
            }
            if (!dx) continue;
            float mean_g = sum_g / (float)D, mean_g_xhat = sum_g_xhat / (float)D;
            float *dx_row = dx + r * D;
#pragma omp simd
            for (int64_t j = 0; j < D; j++) {
                float xhat = (x_row[j] - mu) * rs;
                float g = dy_row[j] * (weight ? weight[j] : 1.0f);
                dx_row[j] += rs * (g - mean_g - xhat * mean_g_xhat);
            }
        }
    }
}

static mc_status layernorm_backward(mc_node *node) {
    mc_tensor *x = node->in[0], *weight = node->in[1], *bias = node->in[2], *y = node->out;
    const layernorm_saved *saved = node->saved;
    int64_t D = mc_tensor_dim(x, -1), rows = x->numel / D;
    float *gx = NULL;
    if (x->requires_grad) MC_TRY(mc_grad_buffer(node->graph, x, &gx));
    int n_parts = 1;
#ifdef _OPENMP
    if (rows * D > MC_PARALLEL_MIN_WORK / 2) n_parts = omp_get_max_threads();
    if (n_parts > rows) n_parts = (int)rows;
#endif
    float *gw_parts, *gb_parts;
    size_t part_bytes = (size_t)n_parts * (size_t)D * sizeof(float);
    MC_TRY(mc_graph_alloc(node->graph, part_bytes, (void **)&gw_parts)); /* zeroed */
    MC_TRY(mc_graph_alloc(node->graph, part_bytes, (void **)&gb_parts));
    layernorm_backward_kernel(x->data, weight ? weight->data : NULL, y->grad, saved->mean,
                              saved->rstd, gx, gw_parts, gb_parts, n_parts, rows, D);
    /* Sum the per-thread parts into the parameters' gradients. */
    mc_tensor *params[2] = {weight, bias};
    float *parts[2] = {gw_parts, gb_parts};
    for (int k = 0; k < 2; k++) {
        if (!params[k] || !params[k]->requires_grad) continue;
        float *grad;
        MC_TRY(mc_grad_buffer(node->graph, params[k], &grad));
        for (int p = 0; p < n_parts; p++)
            for (int64_t j = 0; j < D; j++) grad[j] += parts[k][p * D + j];
    }
    return MC_OK;
}

static mc_status check_param(const mc_tensor *x, const mc_tensor *p, const char *what) {
    if (!p) return MC_OK;
    int64_t D = mc_tensor_dim(x, -1);
    if (p->shape.ndim == 1 && p->shape.dim[0] == D) return MC_OK;
    char xs[160], ps[160];
    return mc_error(MC_ERR_SHAPE, "layernorm: %s %s must have shape (%lld) for input %s", what,
                    mc_tensor_str(p, ps, sizeof ps), (long long)D, mc_tensor_str(x, xs, sizeof xs));
}

mc_status mc_layernorm(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias, float eps,
                       mc_tensor **out) {
    *out = NULL;
    if (!x) return mc_error(MC_ERR_ARG, "layernorm: input is NULL");
    MC_TRY(check_param(x, weight, "weight"));
    MC_TRY(check_param(x, bias, "bias"));
    if (!(eps >= 0.0f))
        return mc_error(MC_ERR_ARG, "layernorm of %s: eps = %g, expected >= 0", x->name, (double)eps);
    int64_t D = mc_tensor_dim(x, -1), rows = x->numel / D;
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, x->shape, "layernorm", &y)); /* every row is written */
    layernorm_saved *saved;
    MC_TRY(mc_graph_alloc(g, sizeof *saved, (void **)&saved));
    MC_TRY(mc_graph_alloc(g, (size_t)rows * sizeof(float), (void **)&saved->mean));
    MC_TRY(mc_graph_alloc(g, (size_t)rows * sizeof(float), (void **)&saved->rstd));
    layernorm_forward(x->data, weight ? weight->data : NULL, bias ? bias->data : NULL, y->data,
                      saved->mean, saved->rstd, rows, D, eps);
    mc_tensor *in[3] = {x, weight, bias};
    MC_TRY(mc_graph_record(g, "layernorm", layernorm_backward, y, 3, in, saved));
    *out = y;
    return MC_OK;
}

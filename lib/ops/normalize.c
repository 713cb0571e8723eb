/* L2 normalisation along the last dimension, as PyTorch's
 * F.normalize(x, p=2, dim=-1, eps):  y = x / max(||x||_2, eps).
 *
 * Gradient per row (D elements), with r = ||x||:
 *   r > eps:  y = x / r and dx = (dy - y * (dy . y)) / r
 *             (the component of dy along y is removed: scaling x does not
 *             change y);
 *   r <= eps: y = x / eps, a constant scale, so dx = dy / eps. */
#include "mmchain/ops.h"
#include "core/parallel.h"
#include "ops/ops_internal.h"

#include <math.h>

typedef struct normalize_saved {
    float eps;
    float *norms; /* (rows): ||x|| of each row */
} normalize_saved;

/* x, y: (rows, D); norms: (rows). */
static void normalize_forward(const float *x, float *y, float *norms, int64_t rows, int64_t D,
                              float eps) {
#pragma omp parallel for if (rows * D > MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        const float *x_row = x + r * D;
        float *y_row = y + r * D;
        float sum_sq = 0.0f;
#pragma omp simd reduction(+ : sum_sq)
        for (int64_t j = 0; j < D; j++) sum_sq += x_row[j] * x_row[j];
        float norm = sqrtf(sum_sq);
        float inv = 1.0f / fmaxf(norm, eps);
#pragma omp simd
        for (int64_t j = 0; j < D; j++) y_row[j] = x_row[j] * inv;
        norms[r] = norm;
    }
}

/* y, dy, dx: (rows, D); norms: (rows). dx += the gradient above. */
static void normalize_backward_kernel(const float *y, const float *dy, float *dx, const float *norms,
                                      int64_t rows, int64_t D, float eps) {
#pragma omp parallel for if (rows * D > MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        const float *y_row = y + r * D, *dy_row = dy + r * D;
        float *dx_row = dx + r * D;
        if (norms[r] <= eps) {
            for (int64_t j = 0; j < D; j++) dx_row[j] += dy_row[j] / eps;
            continue;
        }
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < D; j++) dot += dy_row[j] * y_row[j];
        float inv = 1.0f / norms[r];
#pragma omp simd
        for (int64_t j = 0; j < D; j++) dx_row[j] += (dy_row[j] - y_row[j] * dot) * inv;
    }
}

static mc_status normalize_backward(mc_node *node) {
    mc_tensor *x = node->in[0], *y = node->out;
    const normalize_saved *saved = node->saved;
    float *gx;
    MC_TRY(mc_grad_buffer(node->graph, x, &gx));
    int64_t D = mc_tensor_dim(x, -1);
    normalize_backward_kernel(y->data, y->grad, gx, saved->norms, x->numel / D, D, saved->eps);
    return MC_OK;
}

mc_status mc_l2_normalize(mc_graph *g, mc_tensor *x, float eps, mc_tensor **out) {
    *out = NULL;
    if (!x) return mc_error(MC_ERR_ARG, "l2_normalize: input is NULL");
    if (!(eps > 0.0f))
        return mc_error(MC_ERR_ARG, "l2_normalize of %s: eps = %g, expected > 0", x->name, (double)eps);
    int64_t D = mc_tensor_dim(x, -1), rows = x->numel / D;
    mc_tensor *y;
    float *norms;
    MC_TRY(mc_graph_tensor(g, x->shape, "l2_normalize", &y));
    MC_TRY(mc_graph_alloc(g, (size_t)rows * sizeof(float), (void **)&norms));
    normalize_forward(x->data, y->data, norms, rows, D, eps);
    normalize_saved saved = {.eps = eps, .norms = norms};
    MC_TRY(mc_op_record_saved(g, "l2_normalize", normalize_backward, y, 1, &x, &saved, sizeof saved));
    *out = y;
    return MC_OK;
}

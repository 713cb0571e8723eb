/* Losses: cross-entropy (with label smoothing) and InfoNCE, each a fused op
 * with its own backward, side by side.
 *
 * Fused rather than composed from log_softmax, normalize and matmul ops: the
 * gradient of softmax + cross-entropy is the short closed form
 * softmax(x) - target, which is both cheaper and more accurate than chaining
 * the Jacobians of its parts, and the op has no intermediate tensors on the
 * tape. Per-row results are summed serially afterwards so that the loss does
 * not depend on how OpenMP split the rows (determinism). */
#include "mmchain/ops.h"
#include "core/parallel.h"

#include <math.h>
#include <string.h>

/* log(sum_j exp(x[j])) over n floats at stride `stride`, computed stably
 * around the maximum, in double. */
static double log_sum_exp(const float *x, int64_t n, int64_t stride) {
    float max_x = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        if (x[j * stride] > max_x) max_x = x[j * stride];
    double total = 0.0;
    for (int64_t j = 0; j < n; j++) total += exp((double)x[j * stride] - max_x);
    return max_x + log(total);
}

/* ==================================================================== */
/* ---- cross-entropy ----
 * With label smoothing s (PyTorch's definition), the target distribution of
 * a row with class y is q = (1 - s) * onehot(y) + s / C, and the row loss is
 *     -sum_c q_c log p_c = lse - (1 - s) x_y - (s / C) sum_c x_c
 * where p = softmax(x) and lse = log sum_c exp(x_c). The op returns the mean
 * over the N rows; its gradient is d loss / d x_c = (p_c - q_c) / N. */

typedef struct cross_entropy_saved {
    int64_t rows, classes;
    float label_smoothing;
    int32_t *targets; /* (N), a copy: the caller's array may be gone by backward */
    double *row_lse;  /* (N) log-sum-exp of each row */
} cross_entropy_saved;

static mc_status check_cross_entropy(const mc_tensor *logits, const int32_t *targets,
                                     float label_smoothing) {
    char ls[160];
    if (!logits || !targets)
        return mc_error(MC_ERR_ARG, "cross_entropy: logits and targets must not be NULL");
    if (logits->shape.ndim != 2)
        return mc_error(MC_ERR_SHAPE, "cross_entropy: logits %s should be 2-D (N, C)",
                        mc_tensor_str(logits, ls, sizeof ls));
    if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f))
        return mc_error(MC_ERR_ARG, "cross_entropy: label_smoothing is %g, expected in [0, 1]",
                        label_smoothing);
    const int64_t rows = logits->shape.dim[0], classes = logits->shape.dim[1];
    for (int64_t i = 0; i < rows; i++)
        if (targets[i] < 0 || targets[i] >= classes)
            return mc_error(MC_ERR_ARG,
                            "cross_entropy: targets[%lld] is %d, expected a class in [0, %lld) "
                            "for logits %s",
                            (long long)i, (int)targets[i], (long long)classes,
                            mc_tensor_str(logits, ls, sizeof ls));
    return MC_OK;
}

/* x: (C) one row of logits; returns its loss. */
static double cross_entropy_row(const float *x, int64_t classes, int32_t target, double smoothing,
                                double lse) {
    double sum_x = 0.0;
    for (int64_t c = 0; c < classes; c++) sum_x += x[c];
    return lse - (1.0 - smoothing) * x[target] - smoothing / (double)classes * sum_x;
}

static mc_status cross_entropy_backward(mc_node *node) {
    const cross_entropy_saved *saved = node->saved;
    mc_tensor *logits = node->in[0];
    float *dlogits;
    MC_TRY(mc_grad_buffer(node->graph, logits, &dlogits));
    const int64_t rows = saved->rows, classes = saved->classes;
    const double smoothing = saved->label_smoothing;
    const double per_row = (double)node->out->grad[0] / (double)rows;
    const double spread = smoothing / (double)classes; /* s / C */
#pragma omp parallel for schedule(static) if (rows * classes >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < rows; i++) {
        const float *x = logits->data + i * classes;
        float *dx = dlogits + i * classes;
        for (int64_t c = 0; c < classes; c++) {
            double p = exp((double)x[c] - saved->row_lse[i]);
            double q = spread + (c == saved->targets[i] ? 1.0 - smoothing : 0.0);
            dx[c] += (float)(per_row * (p - q));
        }
    }
    return MC_OK;
}

mc_status mc_cross_entropy(mc_graph *g, mc_tensor *logits, const int32_t *targets,
                           float label_smoothing, mc_tensor **out) {
    *out = NULL;
    MC_TRY(check_cross_entropy(logits, targets, label_smoothing));
    const int64_t rows = logits->shape.dim[0], classes = logits->shape.dim[1];
    cross_entropy_saved *saved;
    MC_TRY(mc_graph_alloc(g, sizeof *saved, (void **)&saved));
    MC_TRY(mc_graph_alloc(g, (size_t)rows * sizeof(int32_t), (void **)&saved->targets));
    MC_TRY(mc_graph_alloc(g, (size_t)rows * sizeof(double), (void **)&saved->row_lse));
    double *row_loss;
    MC_TRY(mc_graph_alloc(g, (size_t)rows * sizeof(double), (void **)&row_loss));
    saved->rows = rows;
    saved->classes = classes;
    saved->label_smoothing = label_smoothing;
    memcpy(saved->targets, targets, (size_t)rows * sizeof(int32_t));

#pragma omp parallel for schedule(static) if (rows * classes >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < rows; i++) {
        const float *x = logits->data + i * classes;
        double lse = log_sum_exp(x, classes, 1);
        saved->row_lse[i] = lse;
        row_loss[i] = cross_entropy_row(x, classes, targets[i], label_smoothing, lse);
    }
    double total = 0.0;
    for (int64_t i = 0; i < rows; i++) total += row_loss[i];

    mc_tensor *loss;
    MC_TRY(mc_graph_tensor(g, MC_SHAPE(1), "cross_entropy", &loss));
    loss->data[0] = (float)(total / (double)rows);
    MC_TRY(mc_graph_record(g, "cross_entropy", cross_entropy_backward, loss, 1, &logits, saved));
    *out = loss;
    return MC_OK;
}

/* ==================================================================== */
/* ---- InfoNCE ----
 * a, b: (N, D), row i of a and row i of b are a positive pair; t = log_scale.
 *     an = a / max(||a||, eps) per row (F.normalize, eps = 1e-12), bn likewise
 *     L  = exp(t) * an bn^T                       (N, N) logits
 *     row loss i    = lse_j L[i][j] - L[i][i]     (a_i must pick b_i among all b)
 *     column loss j = lse_i L[i][j] - L[j][j]     (b_j must pick a_j among all a)
 *     loss = mean(row losses)                      one-directional (the seed paper)
 *          = (mean(row) + mean(column)) / 2        symmetric (CLIP, Radford et al. 2021)
 * Backward, with g the loss gradient, R = softmax of L along rows, K along
 * columns, I the identity, w_row = 1 or 1/2 and w_col = 0 or 1/2:
 *     dL     = g / N * (w_row (R - I) + w_col (K - I))
 *     dt     = sum_ij dL[i][j] L[i][j]            (d exp(t) / dt = exp(t))
 *     d an   = exp(t) dL bn,   d bn = exp(t) dL^T an
 *     d a_i  = (d an_i - an_i (an_i . d an_i)) / ||a_i||   (dan_i / eps if clamped) */

static const double infonce_norm_eps = 1e-12; /* F.normalize's default */

typedef struct infonce_saved {
    int64_t n, dim;
    bool symmetric;
    float scale;     /* exp(t) */
    float *a_unit;   /* (N, D) normalised a */
    float *b_unit;   /* (N, D) normalised b */
    float *a_norm;   /* (N) max(||a_i||, eps) */
    float *b_norm;   /* (N) */
    float *logits;   /* (N, N) */
    double *row_lse; /* (N) log-sum-exp of each row of the logits */
    double *col_lse; /* (N) of each column (symmetric only) */
} infonce_saved;

static mc_status check_infonce(const mc_tensor *a, const mc_tensor *b, const mc_tensor *log_scale) {
    char as[160], bs[160];
    if (!a || !b || !log_scale)
        return mc_error(MC_ERR_ARG, "infonce: a, b and log_scale must not be NULL");
    if (a->shape.ndim != 2)
        return mc_error(MC_ERR_SHAPE, "infonce: a %s should be 2-D (N, D)",
                        mc_tensor_str(a, as, sizeof as));
    if (!mc_shape_equal(a->shape, b->shape))
        return mc_error(MC_ERR_SHAPE,
                        "infonce: a %s and b %s should have the same shape (N pairs of D-vectors)",
                        mc_tensor_str(a, as, sizeof as), mc_tensor_str(b, bs, sizeof bs));
    if (log_scale->numel != 1)
        return mc_error(MC_ERR_SHAPE, "infonce: log_scale %s should have one element",
                        mc_tensor_str(log_scale, as, sizeof as));
    if (!isfinite(log_scale->data[0]) || !isfinite(expf(log_scale->data[0])))
        return mc_error(MC_ERR_NUMERIC, "infonce: log_scale %s is %g; exp() of it is not finite",
                        log_scale->name, log_scale->data[0]);
    return MC_OK;
}

/* unit = x / max(||x||, eps) row by row, norm[i] = max(||x_i||, eps).
 *   x, unit: (N, D); norm: (N) */
static void normalize_rows(const float *x, int64_t n, int64_t dim, float *unit, float *norm) {
#pragma omp parallel for schedule(static) if (n * dim >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        double sum_sq = 0.0;
        for (int64_t c = 0; c < dim; c++) sum_sq += (double)x[i * dim + c] * x[i * dim + c];
        double length = fmax(sqrt(sum_sq), infonce_norm_eps);
        norm[i] = (float)length;
        for (int64_t c = 0; c < dim; c++) unit[i * dim + c] = (float)(x[i * dim + c] / length);
    }
}

/* Adds the gradient of x from the gradient of unit = x / norm.
 *   unit, dunit, dx: (N, D); norm: (N) */
static void normalize_rows_backward(const float *unit, const float *norm, const float *dunit,
                                    int64_t n, int64_t dim, float *dx) {
#pragma omp parallel for schedule(static) if (n * dim >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        const float *u = unit + i * dim, *du = dunit + i * dim;
        /* Clamped at eps, the norm is a constant: only the 1/eps scaling remains. */
        double along = 0.0;
        if (norm[i] > infonce_norm_eps)
            for (int64_t c = 0; c < dim; c++) along += (double)u[c] * du[c];
        for (int64_t c = 0; c < dim; c++)
            dx[i * dim + c] += (float)((du[c] - u[c] * along) / norm[i]);
    }
}

/* The loss from the logits; fills row_lse (and col_lse when symmetric).
 *   logits: (N, N) */
static double infonce_loss(infonce_saved *s) {
    const int64_t n = s->n;
    double row_total = 0.0, col_total = 0.0;
#pragma omp parallel for schedule(static) if (n * n >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        s->row_lse[i] = log_sum_exp(s->logits + i * n, n, 1);
        if (s->symmetric) s->col_lse[i] = log_sum_exp(s->logits + i, n, n);
    }
    /* Summed serially: the same loss whatever the thread count. */
    for (int64_t i = 0; i < n; i++) {
        double diagonal = s->logits[i * n + i];
        row_total += s->row_lse[i] - diagonal;
        if (s->symmetric) col_total += s->col_lse[i] - diagonal;
    }
    return s->symmetric ? 0.5 * (row_total + col_total) / (double)n : row_total / (double)n;
}

static mc_status infonce_backward(mc_node *node) {
    const infonce_saved *s = node->saved;
    mc_tensor *a = node->in[0], *b = node->in[1], *log_scale = node->in[2];
    const int64_t n = s->n, dim = s->dim;
    const double w_row = s->symmetric ? 0.5 : 1.0, w_col = s->symmetric ? 0.5 : 0.0;
    const double g = (double)node->out->grad[0] / (double)n;
    float *dlogits;
    MC_TRY(mc_graph_alloc(node->graph, (size_t)(n * n) * sizeof(float), (void **)&dlogits));
    double *dscale_rows; /* per-row parts of dt, summed serially */
    MC_TRY(mc_graph_alloc(node->graph, (size_t)n * sizeof(double), (void **)&dscale_rows));
#pragma omp parallel for schedule(static) if (n * n >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        double dt_part = 0.0;
        for (int64_t j = 0; j < n; j++) {
            double logit = s->logits[i * n + j], is_diagonal = i == j ? 1.0 : 0.0;
            double row_p = exp(logit - s->row_lse[i]);
            double col_p = w_col != 0.0 ? exp(logit - s->col_lse[j]) : 0.0;
            double dlogit = g * (w_row * (row_p - is_diagonal) + w_col * (col_p - is_diagonal));
            dlogits[i * n + j] = (float)dlogit;
            dt_part += dlogit * logit;
        }
        dscale_rows[i] = dt_part;
    }
    if (log_scale->requires_grad) {
        float *dt;
        MC_TRY(mc_grad_buffer(node->graph, log_scale, &dt));
        double total = 0.0;
        for (int64_t i = 0; i < n; i++) total += dscale_rows[i];
        dt[0] += (float)total;
    }
    /* d an = scale * dL bn (N, D); d bn = scale * dL^T an (N, D) */
    mc_tensor *const unit_inputs[2] = {a, b};
    const float *others[2] = {s->b_unit, s->a_unit};
    const float *units[2] = {s->a_unit, s->b_unit}, *norms[2] = {s->a_norm, s->b_norm};
    for (int which = 0; which < 2; which++) {
        mc_tensor *x = unit_inputs[which];
        if (!x->requires_grad) continue;
        float *dunit, *dx;
        MC_TRY(mc_graph_alloc(node->graph, (size_t)(n * dim) * sizeof(float), (void **)&dunit));
        mc_sgemm(which != 0, false, n, dim, n, s->scale, dlogits, n, others[which], dim, 0.0f,
                 dunit, dim);
        MC_TRY(mc_grad_buffer(node->graph, x, &dx));
        normalize_rows_backward(units[which], norms[which], dunit, n, dim, dx);
    }
    return MC_OK;
}

/* Arena buffers for the saved state of an (N, D) InfoNCE. */
static mc_status infonce_saved_new(mc_graph *g, int64_t n, int64_t dim, bool symmetric,
                                   infonce_saved **out) {
    infonce_saved *s;
    MC_TRY(mc_graph_alloc(g, sizeof *s, (void **)&s));
    s->n = n;
    s->dim = dim;
    s->symmetric = symmetric;
    float **floats[] = {&s->a_unit, &s->b_unit, &s->a_norm, &s->b_norm, &s->logits};
    const int64_t float_counts[] = {n * dim, n * dim, n, n, n * n};
    for (int i = 0; i < 5; i++)
        MC_TRY(mc_graph_alloc(g, (size_t)float_counts[i] * sizeof(float), (void **)floats[i]));
    MC_TRY(mc_graph_alloc(g, (size_t)n * sizeof(double), (void **)&s->row_lse));
    MC_TRY(mc_graph_alloc(g, (size_t)n * sizeof(double), (void **)&s->col_lse));
    *out = s;
    return MC_OK;
}

mc_status mc_infonce(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor *log_scale, bool symmetric,
                     mc_tensor **out) {
    *out = NULL;
    MC_TRY(check_infonce(a, b, log_scale));
    const int64_t n = a->shape.dim[0], dim = a->shape.dim[1];
    if (n > INT32_MAX / (n > 0 ? n : 1) || dim > INT32_MAX)
        return mc_error(MC_ERR_UNSUPPORTED, "infonce: %lld pairs of %lld-vectors exceed BLAS sizes",
                        (long long)n, (long long)dim);
    infonce_saved *s;
    MC_TRY(infonce_saved_new(g, n, dim, symmetric, &s));
    s->scale = expf(log_scale->data[0]);
    normalize_rows(a->data, n, dim, s->a_unit, s->a_norm);
    normalize_rows(b->data, n, dim, s->b_unit, s->b_norm);
    /* logits (N, N) = scale * a_unit (N, D) @ b_unit^T (D, N) */
    mc_sgemm(false, true, n, n, dim, s->scale, s->a_unit, dim, s->b_unit, dim, 0.0f, s->logits, n);
    mc_tensor *loss;
    MC_TRY(mc_graph_tensor(g, MC_SHAPE(1), "infonce", &loss));
    loss->data[0] = (float)infonce_loss(s);
    mc_tensor *inputs[3] = {a, b, log_scale};
    MC_TRY(mc_graph_record(g, "infonce", infonce_backward, loss, 3, inputs, s));
    *out = loss;
    return MC_OK;
}

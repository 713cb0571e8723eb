/* Matrix products on mc_sgemm (gemm.c): mc_matmul (2-D and batched 3-D,
 * optionally with b transposed) and mc_linear (x @ W^T + b, PyTorch's
 * nn.Linear), with mc_matmul_naive beside them as the reference.
 *
 * Gradients of C = A B (A (M, K), B (K, N)), with dC given:
 *     dA = dC B^T  (M, N)(N, K)        dB = A^T dC  (K, M)(M, N)
 * and of C = A B^T (B (N, K)):
 *     dA = dC B    (M, N)(N, K)        dB = dC^T A  (N, M)(M, K)
 * sgemm computes C = alpha op(A) op(B) + beta C, so beta = 1 adds straight
 * into the gradient buffers — accumulation for free.
 *
 * mc_sgemm threads each product itself (gemm.c); the batch items of a 3-D
 * product run one after another, since with a shared b their gradients
 * add into one buffer. */
#include "mmchain/ops.h"
#include "core/parallel.h"
#include "core/vector_clones.h"
#include "ops/activation_internal.h"
#include "ops/gemm_internal.h"
#include "ops/naive.h"
#include "ops/weight_bf16.h"
#include "ops/ops_internal.h"

#include <limits.h>
#include <string.h>

/* ---- the reference kernel ---- */

void mc_matmul_naive(const float *a, const float *b, float *out, int64_t M, int64_t K, int64_t N,
                     bool transpose_b) {
    // a: (M, K); b: (K, N), or (N, K) when transpose_b; out: (M, N)
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)a[m * K + k] * (double)(transpose_b ? b[n * K + k] : b[k * N + n]);
            out[m * N + n] = (float)acc;
        }
}

/* ---- sgemm with int64 sizes ---- */

static mc_status check_blas_size(const char *op, int64_t M, int64_t K, int64_t N) {
    if (M > INT_MAX || K > INT_MAX || N > INT_MAX)
        return mc_error(MC_ERR_UNSUPPORTED, "%s: GEMM of (%lld, %lld) x (%lld, %lld) exceeds BLAS's "
                        "int sizes", op, (long long)M, (long long)K, (long long)K, (long long)N);
    return MC_OK;
}

/* C (M, N) = op(A) op(B) + beta C, row-major, op(A) (M, K), op(B) (K, N).
 * A is stored (M, K) or, transposed, (K, M); likewise B (K, N) or (N, K).
 * Operands in the graph's precision (mc_graph_set_precision). */
static void gemm(const mc_graph *g, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                 const float *A, const float *B, float beta, float *C) {
    mc_gemm(mc_graph_precision(g), trans_a, trans_b, M, N, K, 1.0f, A, trans_a ? M : K, B,
            trans_b ? K : N, beta, C, N);
}

/* gemm with B a weight tensor: on a bf16 graph, its bf16 copy (made once
 * per change of the weight, weight_bf16.h) instead of rounding it again in
 * every product. */
static mc_status gemm_weight(const mc_graph *g, bool trans_a, bool trans_b, int64_t M, int64_t N,
                             int64_t K, const float *A, mc_tensor *weight, float beta, float *C) {
    const uint16_t *weight_bf16 = NULL;
    if (mc_graph_precision(g) == MC_PRECISION_BF16)
        MC_TRY(mc_weight_bf16(weight, NULL, NULL, &weight_bf16));
    if (!weight_bf16) {
        gemm(g, trans_a, trans_b, M, N, K, A, weight->data, beta, C);
        return MC_OK;
    }
    return mc_gemm_bf16_b(trans_a, trans_b, M, N, K, 1.0f, A, trans_a ? M : K, weight_bf16,
                          trans_b ? K : N, beta, C, N);
}

/* y (rows, out) = x (rows, in) @ weight^T + beta y, weight (out, in): a
 * linear op's forward product. An op that is not recorded (inference)
 * multiplies by the weight's bf16 panels on a bf16 graph, which the
 * product reads in place (weight_bf16.h); a recorded one by its plain bf16
 * copy, which its backward multiplies by as well (one form per graph). */
static mc_status linear_product(const mc_graph *g, bool recorded, int64_t rows, int64_t out,
                                int64_t in, const float *x, mc_tensor *weight, float beta,
                                float *y) {
    if (!recorded && mc_graph_precision(g) == MC_PRECISION_BF16) {
        const float *panels;
        MC_TRY(mc_weight_bf16_panels(weight, out, in, &panels));
        if (panels)
            return mc_gemm_bf16_panels(false, rows, out, in, 1.0f, x, in, panels, beta, y, out);
    }
    return gemm_weight(g, false, true, rows, out, in, x, weight, beta, y);
}

/* ---- matmul ---- */

/* Sizes of one product, and how many (batch) with which strides. */
typedef struct matmul_dims {
    int64_t batch, M, K, N;
    int64_t a_step, b_step, c_step; /* elements between batch items; b_step 0 = shared b */
    bool transpose_b;
} matmul_dims;

static mc_status matmul_shapes(const mc_tensor *a, const mc_tensor *b, bool transpose_b,
                               matmul_dims *d, mc_shape *c_shape) {
    char as[160], bs[160];
    int an = a->shape.ndim, bn = b->shape.ndim;
    bool ok_rank = (an == 2 && bn == 2) || (an == 3 && (bn == 3 || bn == 2));
    if (!ok_rank)
        return mc_error(MC_ERR_SHAPE, "matmul: %s @ %s: expected 2-D @ 2-D, 3-D @ 3-D or "
                        "3-D @ 2-D", mc_tensor_str(a, as, sizeof as), mc_tensor_str(b, bs, sizeof bs));
    d->batch = an == 3 ? a->shape.dim[0] : 1;
    d->M = a->shape.dim[an - 2];
    d->K = a->shape.dim[an - 1];
    int64_t b_rows = b->shape.dim[bn - 2], b_cols = b->shape.dim[bn - 1];
    int64_t b_k = transpose_b ? b_cols : b_rows;
    d->N = transpose_b ? b_rows : b_cols;
    d->transpose_b = transpose_b;
    if (b_k != d->K)
        return mc_error(MC_ERR_SHAPE, "matmul: %s has %lld columns but %s%s has %lld rows "
                        "(inner dimensions must agree)", mc_tensor_str(a, as, sizeof as),
                        (long long)d->K, mc_tensor_str(b, bs, sizeof bs),
                        transpose_b ? " transposed" : "", (long long)b_k);
    if (bn == 3 && b->shape.dim[0] != d->batch)
        return mc_error(MC_ERR_SHAPE, "matmul: batch sizes differ: %s @ %s",
                        mc_tensor_str(a, as, sizeof as), mc_tensor_str(b, bs, sizeof bs));
    d->a_step = d->M * d->K;
    d->b_step = bn == 3 ? d->K * d->N : 0;
    d->c_step = d->M * d->N;
    if (bn == 2 && d->batch > 1) {
        /* A shared b: fold the batch into M, one GEMM instead of `batch`. */
        d->M *= d->batch;
        d->batch = 1;
    }
    *c_shape = an == 3 ? MC_SHAPE(a->shape.dim[0], a->shape.dim[1], d->N) : MC_SHAPE(d->M, d->N);
    return check_blas_size("matmul", d->M, d->K, d->N);
}

static mc_status matmul_backward(mc_node *node) {
    mc_tensor *a = node->in[0], *b = node->in[1], *c = node->out;
    const matmul_dims *d = node->saved;
    float *ga = NULL, *gb = NULL;
    if (a->requires_grad) MC_TRY(mc_grad_buffer(node->graph, a, &ga));
    if (b->requires_grad) MC_TRY(mc_grad_buffer(node->graph, b, &gb));
    for (int64_t i = 0; i < d->batch; i++) {
        const float *A = a->data + i * d->a_step, *B = b->data + i * d->b_step;
        const float *dC = c->grad + i * d->c_step;
        if (ga) /* dA (M, K) += dC (M, N) @ (B^T or B) */
            gemm(node->graph, false, !d->transpose_b, d->M, d->K, d->N, dC, B, 1.0f,
                 ga + i * d->a_step);
        if (gb && !d->transpose_b) /* dB (K, N) += A^T (K, M) @ dC (M, N) */
            gemm(node->graph, true, false, d->K, d->N, d->M, A, dC, 1.0f, gb + i * d->b_step);
        if (gb && d->transpose_b) /* dB (N, K) += dC^T (N, M) @ A (M, K) */
            gemm(node->graph, true, false, d->N, d->K, d->M, dC, A, 1.0f, gb + i * d->b_step);
    }
    return MC_OK;
}

mc_status mc_matmul(mc_graph *g, mc_tensor *a, mc_tensor *b, bool transpose_b, mc_tensor **out) {
    *out = NULL;
    if (!a || !b) return mc_error(MC_ERR_ARG, "matmul: an input is NULL");
    matmul_dims d;
    mc_shape c_shape;
    MC_TRY(matmul_shapes(a, b, transpose_b, &d, &c_shape));
    mc_tensor *c;
    MC_TRY(mc_graph_tensor_uninit(g, c_shape, "matmul", &c)); /* sgemm with beta 0 writes it all */
    for (int64_t i = 0; i < d.batch; i++)
        gemm(g, false, transpose_b, d.M, d.N, d.K, a->data + i * d.a_step, b->data + i * d.b_step,
             0.0f, c->data + i * d.c_step);
    mc_tensor *in[2] = {a, b};
    MC_TRY(mc_op_record_saved(g, "matmul", matmul_backward, c, 2, in, &d, sizeof d));
    *out = c;
    return MC_OK;
}

/* ---- linear: y = x W^T + bias ---- */

typedef struct linear_dims {
    int64_t rows, in_features, out_features; /* rows = every leading dim of x */
} linear_dims;

/* The weight is (out, in), or (out, d1, d2, ...) used as (out, d1 * d2 * ...). */
static mc_status linear_shapes(const mc_tensor *x, const mc_tensor *w, const mc_tensor *bias,
                               linear_dims *d) {
    char xs[160], ws[160], bs[160];
    if (!x || !w) return mc_error(MC_ERR_ARG, "linear: input or weight is NULL");
    if (w->shape.ndim < 2)
        return mc_error(MC_ERR_SHAPE, "linear: weight %s must be (out_features, in_features) or "
                        "(out_features, ...) with the trailing dimensions making in_features",
                        mc_tensor_str(w, ws, sizeof ws));
    d->out_features = w->shape.dim[0];
    d->in_features = w->numel / d->out_features;
    if (mc_tensor_dim(x, -1) != d->in_features)
        return mc_error(MC_ERR_SHAPE, "linear: input %s has %lld features, weight %s expects %lld",
                        mc_tensor_str(x, xs, sizeof xs), (long long)mc_tensor_dim(x, -1),
                        mc_tensor_str(w, ws, sizeof ws), (long long)d->in_features);
    if (bias && (bias->shape.ndim != 1 || bias->shape.dim[0] != d->out_features))
        return mc_error(MC_ERR_SHAPE, "linear: bias %s must have shape (%lld) to match weight %s",
                        mc_tensor_str(bias, bs, sizeof bs), (long long)d->out_features,
                        mc_tensor_str(w, ws, sizeof ws));
    d->rows = x->numel / d->in_features;
    return check_blas_size("linear", d->rows, d->in_features, d->out_features);
}

/* What the product adds onto (beta = 1): every row of y set to `bias`, or,
 * with a residual, to residual's row plus bias (bias may be NULL then).
 * In parallel over rows: these are passes over the whole output, run
 * between two threaded products. y, residual: (rows, n); bias: (n). */
MC_VECTOR_CLONES
static void start_rows(float *y, const float *bias, const float *residual, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (rows * n > MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) {
        float *row = y + r * n;
        if (!residual) {
            memcpy(row, bias, (size_t)n * sizeof(float));
        } else if (!bias) {
            memcpy(row, residual + r * n, (size_t)n * sizeof(float));
        } else {
            const float *res = residual + r * n;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) row[j] = res[j] + bias[j];
        }
    }
}

/* The output of a linear op: (..., out_features) for x (..., in_features). */
static mc_shape linear_output_shape(const mc_tensor *x, const linear_dims *d) {
    mc_shape shape = x->shape;
    shape.dim[shape.ndim - 1] = d->out_features;
    return shape;
}

/* Adds the gradients of y = x W^T + bias, given dy (rows, out), into those
 * of x, w and bias that require one (bias may be NULL). */
static mc_status linear_gradients(mc_graph *g, const linear_dims *d, mc_tensor *x, mc_tensor *w,
                                  mc_tensor *bias, const float *dy) {
    if (x->requires_grad) { /* dx (rows, in) += dy (rows, out) @ W (out, in) */
        float *gx;
        MC_TRY(mc_grad_buffer(g, x, &gx));
        MC_TRY(gemm_weight(g, false, false, d->rows, d->in_features, d->out_features, dy, w, 1.0f,
                           gx));
    }
    if (w->requires_grad) { /* dW (out, in) += dy^T (out, rows) @ x (rows, in) */
        float *gw;
        MC_TRY(mc_grad_buffer(g, w, &gw));
        gemm(g, true, false, d->out_features, d->in_features, d->rows, dy, x->data, 1.0f, gw);
    }
    if (bias && bias->requires_grad) { /* db (out) += column sums of dy */
        float *gb;
        MC_TRY(mc_grad_buffer(g, bias, &gb));
        for (int64_t r = 0; r < d->rows; r++) {
            const float *dy_row = dy + r * d->out_features;
#pragma omp simd
            for (int64_t j = 0; j < d->out_features; j++) gb[j] += dy_row[j];
        }
    }
    return MC_OK;
}

/* inputs: x, weight, bias (or fewer when there is none) */
static mc_status linear_backward(mc_node *node) {
    return linear_gradients(node->graph, node->saved, node->in[0], node->in[1],
                            node->n_in > 2 ? node->in[2] : NULL, node->out->grad);
}

mc_status mc_linear(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias, mc_tensor **out) {
    *out = NULL;
    linear_dims d;
    MC_TRY(linear_shapes(x, weight, bias, &d));
    mc_tensor *y;
    /* bias rows or beta 0: all written */
    MC_TRY(mc_graph_tensor_uninit(g, linear_output_shape(x, &d), "linear", &y));
    /* Start y as the bias in every row, then add x W^T on top (beta = 1). */
    if (bias) start_rows(y->data, bias->data, NULL, d.rows, d.out_features);
    mc_tensor *in[3] = {x, weight, bias};
    MC_TRY(linear_product(g, mc_graph_should_record(g, bias ? 3 : 2, in), d.rows, d.out_features,
                          d.in_features, x->data, weight, bias ? 1.0f : 0.0f, y->data));
    MC_TRY(mc_op_record_saved(g, "linear", linear_backward, y, bias ? 3 : 2, in, &d, sizeof d));
    *out = y;
    return MC_OK;
}

mc_status mc_linear_activation(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                               mc_activation activation, mc_tensor **out) {
    *out = NULL;
    if (!mc_activation_valid(activation))
        return mc_error(MC_ERR_ARG, "linear_activation of %s: activation %d is not one of gelu, "
                        "quick_gelu, relu", x ? x->name : "NULL", (int)activation);
    linear_dims d;
    MC_TRY(linear_shapes(x, weight, bias, &d));
    mc_tensor *in[3] = {x, weight, bias};
    if (mc_graph_should_record(g, 3, in)) {
        /* Backward needs the product before the activation: the two ops. */
        mc_tensor *product;
        MC_TRY(mc_linear(g, x, weight, bias, &product));
        return mc_activate(g, activation, product, out);
    }
    mc_tensor *y; /* beta 0: all written */
    MC_TRY(mc_graph_tensor_uninit(g, linear_output_shape(x, &d), "linear_activation", &y));
    MC_TRY(linear_product(g, false, d.rows, d.out_features, d.in_features, x->data, weight, 0.0f,
                          y->data));
    mc_bias_activation_rows(activation, y->data, bias ? bias->data : NULL, d.rows, d.out_features);
    *out = y;
    return MC_OK;
}

/* inputs: x, weight, residual, bias (or fewer when there is none) */
static mc_status linear_residual_backward(mc_node *node) {
    mc_tensor *residual = node->in[2];
    const float *dy = node->out->grad;
    MC_TRY(linear_gradients(node->graph, node->saved, node->in[0], node->in[1],
                            node->n_in > 3 ? node->in[3] : NULL, dy));
    if (!residual->requires_grad) return MC_OK;
    float *gr; /* d residual += dy */
    MC_TRY(mc_grad_buffer(node->graph, residual, &gr));
    const int64_t n = residual->numel;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) gr[i] += dy[i];
    return MC_OK;
}

mc_status mc_linear_residual(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                             mc_tensor *residual, mc_tensor **out) {
    *out = NULL;
    linear_dims d;
    MC_TRY(linear_shapes(x, weight, bias, &d));
    const mc_shape shape = linear_output_shape(x, &d);
    char rs[160], xs[160];
    if (!residual)
        return mc_error(MC_ERR_ARG, "linear_residual: the residual is NULL");
    if (!mc_shape_equal(residual->shape, shape))
        return mc_error(MC_ERR_SHAPE, "linear_residual: residual %s must have the shape of the "
                        "product of %s, (..., %lld)", mc_tensor_str(residual, rs, sizeof rs),
                        mc_tensor_str(x, xs, sizeof xs), (long long)d.out_features);
    mc_tensor *y; /* residual (+ bias) rows: all written */
    MC_TRY(mc_graph_tensor_uninit(g, shape, "linear_residual", &y));
    start_rows(y->data, bias ? bias->data : NULL, residual->data, d.rows, d.out_features);
    mc_tensor *in[4] = {x, weight, residual, bias};
    MC_TRY(linear_product(g, mc_graph_should_record(g, bias ? 4 : 3, in), d.rows, d.out_features,
                          d.in_features, x->data, weight, 1.0f, y->data));
    MC_TRY(mc_op_record_saved(g, "linear_residual", linear_residual_backward, y, bias ? 4 : 3, in,
                              &d, sizeof d));
    *out = y;
    return MC_OK;
}

/* Unary elementwise functions with scalar settings: clamp, pow (scalar
 * exponent), leaky_relu. Each has a forward kernel y = f(x) and a backward
 * kernel dx += dy * f'(x), side by side; the settings are saved on the tape
 * for the backward. (The functions without settings are in activation.c.) */
#include "mmchain/ops.h"
#include "core/parallel.h"
#include "ops/ops_internal.h"

#include <math.h>

typedef enum pointwise_op { POINTWISE_CLAMP, POINTWISE_POW, POINTWISE_LEAKY_RELU } pointwise_op;

typedef struct pointwise_saved {
    pointwise_op op;
    float a, b; /* clamp: low, high; pow: the exponent; leaky_relu: the slope */
} pointwise_saved;

/* ---- clamp: min(max(x, low), high); derivative 1 where low <= x <= high
 * (the bounds included, as PyTorch), 0 outside ---- */

static void clamp_forward(const float *x, float *y, int64_t n, float low, float high) { // x, y: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < low ? low : (x[i] > high ? high : x[i]);
}

static void clamp_backward(const float *x, const float *dy, float *dx, int64_t n, float low,
                           float high) { // x, dy, dx: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) dx[i] += x[i] >= low && x[i] <= high ? dy[i] : 0.0f;
}

/* ---- pow: x^p; derivative p x^(p-1), and 0 for p = 0 (as PyTorch: the
 * constant 1 has no slope, even at x = 0) ---- */

static void pow_forward(const float *x, float *y, int64_t n, float p) { // x, y: (n)
#pragma omp parallel for if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = powf(x[i], p);
}

static void pow_backward(const float *x, const float *dy, float *dx, int64_t n, float p) {
    if (p == 0.0f) return;
#pragma omp parallel for if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * p * powf(x[i], p - 1.0f);
}

/* ---- leaky_relu: x for x > 0, slope * x otherwise; derivative 1 or slope
 * (slope at 0, as PyTorch) ---- */

static void leaky_relu_forward(const float *x, float *y, int64_t n, float slope) { // x, y: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : slope * x[i];
}

static void leaky_relu_backward(const float *x, const float *dy, float *dx, int64_t n, float slope) {
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : slope * dy[i];
}

/* ---- the nodes and ops ---- */

/* The backward of every pointwise node: the saved op picks the kernel. */
static mc_status pointwise_node(mc_node *node) {
    const pointwise_saved *s = node->saved;
    const float *x = node->in[0]->data, *dy = node->out->grad;
    int64_t n = node->out->numel;
    float *dx;
    MC_TRY(mc_grad_buffer(node->graph, node->in[0], &dx));
    switch (s->op) {
    case POINTWISE_CLAMP: clamp_backward(x, dy, dx, n, s->a, s->b); break;
    case POINTWISE_POW: pow_backward(x, dy, dx, n, s->a); break;
    case POINTWISE_LEAKY_RELU: leaky_relu_backward(x, dy, dx, n, s->a); break;
    }
    return MC_OK;
}

/* The output, every element of which the caller's kernel writes;
 * pointwise_finish then records the node with its settings. */
static mc_status pointwise_start(mc_graph *g, const char *op, mc_tensor *x, mc_tensor **y) {
    if (!x) return mc_error(MC_ERR_ARG, "%s: input is NULL", op);
    return mc_graph_tensor_uninit(g, x->shape, op, y);
}

static mc_status pointwise_finish(mc_graph *g, const char *name, pointwise_op op, mc_tensor *x,
                                  mc_tensor *y, float a, float b, mc_tensor **out) {
    pointwise_saved saved = {.op = op, .a = a, .b = b};
    MC_TRY(mc_op_record_saved(g, name, pointwise_node, y, 1, &x, &saved, sizeof saved));
    *out = y;
    return MC_OK;
}

mc_status mc_clamp(mc_graph *g, mc_tensor *x, float low, float high, mc_tensor **out) {
    *out = NULL;
    if (isnan(low) || isnan(high) || low > high)
        return mc_error(MC_ERR_ARG, "clamp of %s: bounds [%g, %g] must be numbers with low <= high",
                        x ? x->name : "NULL", low, high);
    mc_tensor *y;
    MC_TRY(pointwise_start(g, "clamp", x, &y));
    clamp_forward(x->data, y->data, x->numel, low, high);
    return pointwise_finish(g, "clamp", POINTWISE_CLAMP, x, y, low, high, out);
}

mc_status mc_pow(mc_graph *g, mc_tensor *x, float exponent, mc_tensor **out) {
    *out = NULL;
    if (!isfinite(exponent))
        return mc_error(MC_ERR_ARG, "pow of %s: exponent %g must be finite", x ? x->name : "NULL",
                        exponent);
    mc_tensor *y;
    MC_TRY(pointwise_start(g, "pow", x, &y));
    pow_forward(x->data, y->data, x->numel, exponent);
    return pointwise_finish(g, "pow", POINTWISE_POW, x, y, exponent, 0.0f, out);
}

mc_status mc_leaky_relu(mc_graph *g, mc_tensor *x, float negative_slope, mc_tensor **out) {
    *out = NULL;
    if (!isfinite(negative_slope))
        return mc_error(MC_ERR_ARG, "leaky_relu of %s: negative_slope %g must be finite",
                        x ? x->name : "NULL", negative_slope);
    mc_tensor *y;
    MC_TRY(pointwise_start(g, "leaky_relu", x, &y));
    leaky_relu_forward(x->data, y->data, x->numel, negative_slope);
    return pointwise_finish(g, "leaky_relu", POINTWISE_LEAKY_RELU, x, y, negative_slope, 0.0f,
                            out);
}

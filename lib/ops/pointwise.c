/* Unary elementwise functions with scalar settings: clamp, pow (scalar
 * exponent), leaky_relu. Each has a forward kernel y = f(x) and a backward
 * kernel dx += dy * f'(x), side by side; the settings are saved on the tape
 * for the backward. (The functions without settings are in activation.c.) */
#include "mmchain/ops.h"
#include "core/parallel.h"

#include <math.h>

typedef struct pointwise_saved {
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

/* The input's gradient buffer and the settings of a pointwise node. */
static mc_status pointwise_grad(mc_node *node, float **dx, const pointwise_saved **saved) {
    *saved = node->saved;
    return mc_grad_buffer(node->graph, node->in[0], dx);
}

static mc_status clamp_node(mc_node *node) {
    const pointwise_saved *s;
    float *dx;
    MC_TRY(pointwise_grad(node, &dx, &s));
    clamp_backward(node->in[0]->data, node->out->grad, dx, node->out->numel, s->a, s->b);
    return MC_OK;
}

static mc_status pow_node(mc_node *node) {
    const pointwise_saved *s;
    float *dx;
    MC_TRY(pointwise_grad(node, &dx, &s));
    pow_backward(node->in[0]->data, node->out->grad, dx, node->out->numel, s->a);
    return MC_OK;
}

static mc_status leaky_relu_node(mc_node *node) {
    const pointwise_saved *s;
    float *dx;
    MC_TRY(pointwise_grad(node, &dx, &s));
    leaky_relu_backward(node->in[0]->data, node->out->grad, dx, node->out->numel, s->a);
    return MC_OK;
}

/* The output (every element written by the caller's kernel) and, when
 * recording, the saved settings; the node is recorded by pointwise_finish. */
static mc_status pointwise_start(mc_graph *g, const char *op, mc_tensor *x, mc_tensor **y) {
    if (!x) return mc_error(MC_ERR_ARG, "%s: input is NULL", op);
    return mc_graph_tensor_uninit(g, x->shape, op, y);
}

static mc_status pointwise_finish(mc_graph *g, const char *op, mc_backward_fn backward,
                                  mc_tensor *x, mc_tensor *y, float a, float b, mc_tensor **out) {
    mc_tensor *in[1] = {x};
    if (mc_graph_should_record(g, 1, in)) {
        pointwise_saved *saved;
        MC_TRY(mc_graph_alloc(g, sizeof *saved, (void **)&saved));
        saved->a = a;
        saved->b = b;
        MC_TRY(mc_graph_record(g, op, backward, y, 1, in, saved));
    }
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
    return pointwise_finish(g, "clamp", clamp_node, x, y, low, high, out);
}

mc_status mc_pow(mc_graph *g, mc_tensor *x, float exponent, mc_tensor **out) {
    *out = NULL;
    if (!isfinite(exponent))
        return mc_error(MC_ERR_ARG, "pow of %s: exponent %g must be finite", x ? x->name : "NULL",
                        exponent);
    mc_tensor *y;
    MC_TRY(pointwise_start(g, "pow", x, &y));
    pow_forward(x->data, y->data, x->numel, exponent);
    return pointwise_finish(g, "pow", pow_node, x, y, exponent, 0.0f, out);
}

mc_status mc_leaky_relu(mc_graph *g, mc_tensor *x, float negative_slope, mc_tensor **out) {
    *out = NULL;
    if (!isfinite(negative_slope))
        return mc_error(MC_ERR_ARG, "leaky_relu of %s: negative_slope %g must be finite",
                        x ? x->name : "NULL", negative_slope);
    mc_tensor *y;
    MC_TRY(pointwise_start(g, "leaky_relu", x, &y));
    leaky_relu_forward(x->data, y->data, x->numel, negative_slope);
    return pointwise_finish(g, "leaky_relu", leaky_relu_node, x, y, negative_slope, 0.0f, out);
}

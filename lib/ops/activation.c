/* Unary elementwise functions: relu, gelu (erf), quick_gelu, sigmoid, tanh,
 * exp, log. Each has a forward kernel y = f(x) and a backward kernel
 * dx += dy * f'(x), side by side; one driver allocates, runs and records.
 *
 * The kernels are plain loops over contiguous arrays, so the compiler
 * vectorises the ones without library calls, and OpenMP splits the big ones
 * over threads. Where f' is cheaper from the output y than from x (sigmoid,
 * tanh, exp) the backward reads y. */
#include "mmchain/ops.h"

#include <math.h>

/* Loops over more elements than this run on several threads. */
enum { PARALLEL_MIN_ELEMENTS = 32768 };

/* sqrt(2) and 1 / sqrt(2 pi), for the Gaussian CDF and density. */
#define SQRT_2 1.41421356237309504880f
#define INV_SQRT_2PI 0.39894228040143267794f
/* quick_gelu's constant, from CLIP (Radford et al. 2021, the released code). */
#define QUICK_GELU_ALPHA 1.702f

typedef void (*forward_kernel)(const float *x, float *y, int64_t n);
/* x, y: the op's input and output; dy: d loss / d y; dx: accumulated into. */
typedef void (*backward_kernel)(const float *x, const float *y, const float *dy, float *dx,
                                int64_t n);

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* ---- relu: max(x, 0); derivative 1 where x > 0 (0 at the kink, as PyTorch) ---- */

static void relu_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for simd if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void relu_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)y;
#pragma omp parallel for simd if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
}

/* ---- gelu: x * Phi(x), Phi the standard normal CDF = 0.5 (1 + erf(x / sqrt 2));
 * derivative Phi(x) + x * phi(x), phi the standard normal density. ---- */

static void gelu_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * 0.5f * (1.0f + erff(x[i] / SQRT_2));
}

static void gelu_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)y;
#pragma omp parallel for if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) {
        float cdf = 0.5f * (1.0f + erff(x[i] / SQRT_2));
        float pdf = INV_SQRT_2PI * expf(-0.5f * x[i] * x[i]);
        dx[i] += dy[i] * (cdf + x[i] * pdf);
    }
}

/* ---- quick_gelu: x * s with s = sigmoid(1.702 x);
 * derivative s + 1.702 x s (1 - s). ---- */

static void quick_gelu_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(QUICK_GELU_ALPHA * x[i]);
}

static void quick_gelu_backward(const float *x, const float *y, const float *dy, float *dx,
                                int64_t n) {
    (void)y;
#pragma omp parallel for if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(QUICK_GELU_ALPHA * x[i]);
        dx[i] += dy[i] * (s + QUICK_GELU_ALPHA * x[i] * s * (1.0f - s));
    }
}

/* ---- sigmoid: 1 / (1 + e^-x); derivative y (1 - y) ---- */

static void sigmoid_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) y[i] = sigmoidf(x[i]);
}

static void sigmoid_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)x;
#pragma omp parallel for simd if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
}

/* ---- tanh; derivative 1 - y^2 ---- */

static void tanh_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

static void tanh_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)x;
#pragma omp parallel for simd if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

/* ---- exp; derivative y ---- */

static void exp_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
}

static void exp_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)x;
#pragma omp parallel for simd if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * y[i];
}

/* ---- log (natural); derivative 1 / x. Like PyTorch, x <= 0 gives -inf/NaN
 * rather than an error: checking would cost a pass and hide nothing. ---- */

static void log_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) y[i] = logf(x[i]);
}

static void log_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)y;
#pragma omp parallel for simd if (n > PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] / x[i];
}

/* ---- the driver ---- */

/* The backward node functions: each finds its kernel and runs it. */
static mc_status unary_backward(mc_node *node, backward_kernel kernel) {
    mc_tensor *x = node->in[0], *y = node->out;
    float *gx;
    MC_TRY(mc_grad_buffer(node->graph, x, &gx));
    kernel(x->data, y->data, y->grad, gx, x->numel);
    return MC_OK;
}

static mc_status relu_node(mc_node *n) { return unary_backward(n, relu_backward); }
static mc_status gelu_node(mc_node *n) { return unary_backward(n, gelu_backward); }
static mc_status quick_gelu_node(mc_node *n) { return unary_backward(n, quick_gelu_backward); }
static mc_status sigmoid_node(mc_node *n) { return unary_backward(n, sigmoid_backward); }
static mc_status tanh_node(mc_node *n) { return unary_backward(n, tanh_backward); }
static mc_status exp_node(mc_node *n) { return unary_backward(n, exp_backward); }
static mc_status log_node(mc_node *n) { return unary_backward(n, log_backward); }

static mc_status unary_op(mc_graph *g, const char *op, mc_tensor *x, forward_kernel forward,
                          mc_backward_fn backward, mc_tensor **out) {
    *out = NULL;
    if (!x) return mc_error(MC_ERR_ARG, "%s: input is NULL", op);
    mc_tensor *y;
    MC_TRY(mc_graph_tensor(g, x->shape, op, &y));
    forward(x->data, y->data, x->numel);
    mc_tensor *in[1] = {x};
    MC_TRY(mc_graph_record(g, op, backward, y, 1, in, NULL));
    *out = y;
    return MC_OK;
}

mc_status mc_relu(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    return unary_op(g, "relu", x, relu_forward, relu_node, out);
}
mc_status mc_gelu(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    return unary_op(g, "gelu", x, gelu_forward, gelu_node, out);
}
mc_status mc_quick_gelu(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    return unary_op(g, "quick_gelu", x, quick_gelu_forward, quick_gelu_node, out);
}
mc_status mc_sigmoid(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    return unary_op(g, "sigmoid", x, sigmoid_forward, sigmoid_node, out);
}
mc_status mc_tanh(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    return unary_op(g, "tanh", x, tanh_forward, tanh_node, out);
}
mc_status mc_exp(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    return unary_op(g, "exp", x, exp_forward, exp_node, out);
}
mc_status mc_log(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    return unary_op(g, "log", x, log_forward, log_node, out);
}

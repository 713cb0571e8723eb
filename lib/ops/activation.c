/* Unary elementwise functions: relu, gelu (erf), quick_gelu, sigmoid, tanh,
 * exp, log, silu, abs, sqrt. Each has a forward kernel y = f(x) and a backward kernel
 * dx += dy * f'(x), side by side; one driver allocates, runs and records.
 *
 * The kernels are plain loops over contiguous arrays, so the compiler
 * vectorises the ones without library calls, and OpenMP splits the big ones
 * over threads. Where f' is cheaper from the output y than from x (sigmoid,
 * tanh, exp) the backward reads y. */
#include "mmchain/ops.h"
#include "core/vector_clones.h"
#include "core/parallel.h"
#include "ops/activation_internal.h"
#include "ops/exp_approx.h"
#include "ops/naive.h"

#include <math.h>
#include <string.h>

/* sqrt(2) and 1 / sqrt(2 pi), for the Gaussian CDF and density. */
#define SQRT_2 1.41421356237309504880f
#define INV_SQRT_2PI 0.39894228040143267794f
/* quick_gelu's constant, from CLIP (Radford et al. 2021, the released code). */
#define QUICK_GELU_ALPHA 1.702f

typedef void (*forward_kernel)(const float *x, float *y, int64_t n);
/* x, y: the op's input and output; dy: d loss / d y; dx: accumulated into. */
typedef void (*backward_kernel)(const float *x, const float *y, const float *dy, float *dx,
                                int64_t n);

MC_VECTOR_CLONES
void mc_exp_kernel(const float *x, float *y, int64_t n) { // x, y: (n); y may be x
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = exp_approx(x[i]);
}

/* 1 / (1 + e^-x). For x -> -inf, e^-x -> inf and the quotient -> 0: no NaN. */
static inline float sigmoidf(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

/* The standard normal CDF Phi(x) = 0.5 erfc(-x / sqrt 2), with erfc from the
 * Chebyshev fit of Numerical Recipes (Press et al., 2nd ed., sec. 6.2,
 * "erfcc": fractional error below 1.2e-7 everywhere). Unlike 1 + erf, it
 * keeps full RELATIVE accuracy in the far negative tail, where gelu's output
 * is tiny. Branch-free apart from selects, so it vectorises. */
static inline float normal_cdf(float x) {
    float z = fabsf(x) * (1.0f / SQRT_2);
    float t = 1.0f / (1.0f + 0.5f * z);
    float poly = 0.17087277f;
    poly = poly * t - 0.82215223f;
    poly = poly * t + 1.48851587f;
    poly = poly * t - 1.13520398f;
    poly = poly * t + 0.27886807f;
    poly = poly * t - 0.18628806f;
    poly = poly * t + 0.09678418f;
    poly = poly * t + 0.37409196f;
    poly = poly * t + 1.00002368f;
    poly = poly * t - 1.26551223f;
    float erfc_z = t * exp_approx(-z * z + poly);
    float half_erfc = 0.5f * erfc_z; /* = Phi(-|x|) */
    /* Phi(x) = 1 - Phi(-x) for x >= 0; the sign from the bits (see above). */
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    float positive = (float)(bits >= 0);
    return half_erfc + positive * (1.0f - 2.0f * half_erfc);
}

/* ---- relu: max(x, 0); derivative 1 where x > 0 (0 at the kink, as PyTorch) ----
 * Written as "0 where x <= 0, else x" so that a NaN stays NaN and passes its
 * gradient on, as torch.relu and its threshold_backward (result <= 0 ? 0 :
 * grad) do: "x > 0 ? x : 0" would turn it into 0 and hide it. */

static inline float relu_of(float x) { return x <= 0.0f ? 0.0f : x; }

MC_VECTOR_CLONES
static void relu_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = relu_of(x[i]);
}

MC_VECTOR_CLONES
static void relu_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)y;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        float g = dy[i]; /* loaded unconditionally, so the select vectorises */
        dx[i] += x[i] <= 0.0f ? 0.0f : g;
    }
}

/* ---- gelu: x * Phi(x), Phi the standard normal CDF = 0.5 (1 + erf(x / sqrt 2));
 * derivative Phi(x) + x * phi(x), phi the standard normal density. ---- */

static inline float gelu_of(float x) { return x * normal_cdf(x); }

MC_VECTOR_CLONES
static void gelu_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = gelu_of(x[i]);
}

MC_VECTOR_CLONES
static void gelu_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)y;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        float cdf = normal_cdf(x[i]);
        float pdf = INV_SQRT_2PI * exp_approx(-0.5f * x[i] * x[i]);
        dx[i] += dy[i] * (cdf + x[i] * pdf);
    }
}

/* ---- quick_gelu: x * s with s = sigmoid(1.702 x);
 * derivative s + 1.702 x s (1 - s). ---- */

static inline float quick_gelu_of(float x) { return x * sigmoidf(QUICK_GELU_ALPHA * x); }

MC_VECTOR_CLONES
static void quick_gelu_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = quick_gelu_of(x[i]);
}

MC_VECTOR_CLONES
static void quick_gelu_backward(const float *x, const float *y, const float *dy, float *dx,
                                int64_t n) {
    (void)y;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(QUICK_GELU_ALPHA * x[i]);
        dx[i] += dy[i] * (s + QUICK_GELU_ALPHA * x[i] * s * (1.0f - s));
    }
}

/* ---- sigmoid: 1 / (1 + e^-x); derivative y (1 - y) ---- */

MC_VECTOR_CLONES
static void sigmoid_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = sigmoidf(x[i]);
}

MC_VECTOR_CLONES
static void sigmoid_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)x;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
}

/* ---- tanh; derivative 1 - y^2 ---- */

static void tanh_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
}

static void tanh_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)x;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * (1.0f - y[i] * y[i]);
}

/* ---- exp; derivative y ---- */

static void exp_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = exp_approx(x[i]);
}

static void exp_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)x;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * y[i];
}

/* ---- log (natural); derivative 1 / x. Like PyTorch, x <= 0 gives -inf/NaN
 * rather than an error: checking would cost a pass and hide nothing. ---- */

static void log_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = logf(x[i]);
}

static void log_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)y;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] / x[i];
}

/* ---- silu (swish): x * s with s = sigmoid(x); derivative s (1 + x (1 - s)) ---- */

MC_VECTOR_CLONES
static void silu_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(x[i]);
}

MC_VECTOR_CLONES
static void silu_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)y;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(x[i]);
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

/* ---- abs; derivative sign(x), 0 at x = 0 (PyTorch's sgn) ---- */

static void abs_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
}

static void abs_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)y;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        float sign = (float)(x[i] > 0.0f) - (float)(x[i] < 0.0f);
        dx[i] += dy[i] * sign;
    }
}

/* ---- sqrt; derivative 1 / (2 y). As PyTorch: x < 0 gives NaN, and the
 * gradient at x = 0 is +inf, not an error. ---- */

static void sqrt_forward(const float *x, float *y, int64_t n) { // x, y: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]);
}

static void sqrt_backward(const float *x, const float *y, const float *dy, float *dx, int64_t n) {
    (void)x;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] / (2.0f * y[i]);
}

/* ---- the driver ----
 * One entry per function: its name on the tape and its two kernels. A
 * recorded node keeps a pointer to its entry as its saved state (static and
 * read-only, so nothing is allocated), and one backward serves them all. */

typedef struct unary_function {
    const char *name;
    forward_kernel forward;
    backward_kernel backward;
} unary_function;

static const unary_function RELU = {"relu", relu_forward, relu_backward};
static const unary_function GELU = {"gelu", gelu_forward, gelu_backward};
static const unary_function QUICK_GELU = {"quick_gelu", quick_gelu_forward, quick_gelu_backward};
static const unary_function SIGMOID = {"sigmoid", sigmoid_forward, sigmoid_backward};
static const unary_function TANH = {"tanh", tanh_forward, tanh_backward};
static const unary_function EXP = {"exp", exp_forward, exp_backward};
static const unary_function LOG = {"log", log_forward, log_backward};
static const unary_function SILU = {"silu", silu_forward, silu_backward};
static const unary_function ABS = {"abs", abs_forward, abs_backward};
static const unary_function SQRT = {"sqrt", sqrt_forward, sqrt_backward};

static mc_status unary_backward(mc_node *node) {
    const unary_function *f = node->saved;
    mc_tensor *x = node->in[0], *y = node->out;
    float *gx;
    MC_TRY(mc_grad_buffer(node->graph, x, &gx));
    f->backward(x->data, y->data, y->grad, gx, x->numel);
    return MC_OK;
}

static mc_status unary_op(mc_graph *g, const unary_function *f, mc_tensor *x, mc_tensor **out) {
    *out = NULL;
    if (!x) return mc_error(MC_ERR_ARG, "%s: input is NULL", f->name);
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, x->shape, f->name, &y)); /* forward writes every element */
    f->forward(x->data, y->data, x->numel);
    mc_tensor *in[1] = {x};
    /* The backward only reads the entry: the cast drops no promise it keeps. */
    MC_TRY(mc_graph_record(g, f->name, unary_backward, y, 1, in, (void *)f));
    *out = y;
    return MC_OK;
}

mc_status mc_relu(mc_graph *g, mc_tensor *x, mc_tensor **out) { return unary_op(g, &RELU, x, out); }
mc_status mc_gelu(mc_graph *g, mc_tensor *x, mc_tensor **out) { return unary_op(g, &GELU, x, out); }
mc_status mc_quick_gelu(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    return unary_op(g, &QUICK_GELU, x, out);
}
mc_status mc_sigmoid(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    return unary_op(g, &SIGMOID, x, out);
}
mc_status mc_tanh(mc_graph *g, mc_tensor *x, mc_tensor **out) { return unary_op(g, &TANH, x, out); }
mc_status mc_exp(mc_graph *g, mc_tensor *x, mc_tensor **out) { return unary_op(g, &EXP, x, out); }
mc_status mc_log(mc_graph *g, mc_tensor *x, mc_tensor **out) { return unary_op(g, &LOG, x, out); }
mc_status mc_silu(mc_graph *g, mc_tensor *x, mc_tensor **out) { return unary_op(g, &SILU, x, out); }
mc_status mc_abs(mc_graph *g, mc_tensor *x, mc_tensor **out) { return unary_op(g, &ABS, x, out); }
mc_status mc_sqrt(mc_graph *g, mc_tensor *x, mc_tensor **out) { return unary_op(g, &SQRT, x, out); }

/* ---- bias + activation in place: the inference half of mc_linear_activation ----
 * (matmul.c multiplies without the bias, then calls this: one pass over the
 * product instead of bias rows written before it and a second tensor after.) */

/* row[j] = f(row[j] + bias[j]) for j < n; bias may be NULL (f alone).
 * Always inlined with a constant f, so f inlines too and the loop is SIMD. */
static inline __attribute__((always_inline)) void bias_activation_row(float (*f)(float), float *row,
                                                                      const float *bias, int64_t n) {
    if (bias) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) row[j] = f(row[j] + bias[j]);
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) row[j] = f(row[j]);
    }
}

/* One per activation: y (rows, n) in place, bias (n) or NULL. */
MC_VECTOR_CLONES
static void bias_gelu_rows(float *y, const float *bias, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (rows * n > MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) bias_activation_row(gelu_of, y + r * n, bias, n);
}
MC_VECTOR_CLONES
static void bias_quick_gelu_rows(float *y, const float *bias, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (rows * n > MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) bias_activation_row(quick_gelu_of, y + r * n, bias, n);
}
MC_VECTOR_CLONES
static void bias_relu_rows(float *y, const float *bias, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (rows * n > MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++) bias_activation_row(relu_of, y + r * n, bias, n);
}

void mc_bias_activation_rows(mc_activation activation, float *y, const float *bias, int64_t rows,
                             int64_t n) {
    switch (activation) {
    case MC_ACT_GELU: bias_gelu_rows(y, bias, rows, n); return;
    case MC_ACT_QUICK_GELU: bias_quick_gelu_rows(y, bias, rows, n); return;
    case MC_ACT_RELU: bias_relu_rows(y, bias, rows, n); return;
    }
}

/* The reference: the definitions in double precision (erf from libm). */
void mc_bias_activation_rows_naive(mc_activation activation, float *y, const float *bias,
                                   int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) {
            double x = (double)y[r * n + j] + (bias ? (double)bias[j] : 0.0), f = 0.0;
            switch (activation) {
            case MC_ACT_GELU: f = x * 0.5 * (1.0 + erf(x / sqrt(2.0))); break;
            case MC_ACT_QUICK_GELU: f = x / (1.0 + exp(-(double)QUICK_GELU_ALPHA * x)); break;
            case MC_ACT_RELU: f = x <= 0.0 ? 0.0 : x; break;
            }
            y[r * n + j] = (float)f;
        }
}

bool mc_activation_valid(mc_activation activation) {
    return activation == MC_ACT_GELU || activation == MC_ACT_QUICK_GELU ||
           activation == MC_ACT_RELU;
}

mc_status mc_activate(mc_graph *g, mc_activation activation, mc_tensor *x, mc_tensor **out) {
    switch (activation) {
    case MC_ACT_GELU: return mc_gelu(g, x, out);
    case MC_ACT_QUICK_GELU: return mc_quick_gelu(g, x, out);
    case MC_ACT_RELU: return mc_relu(g, x, out);
    }
    *out = NULL;
    return mc_error(MC_ERR_ARG, "activation of %s: %d is not one of gelu, quick_gelu, relu",
                    x ? x->name : "NULL", (int)activation);
}

/* ---- add_relu: relu(a + b), the end of a residual block (a fused op) ----
 * One pass instead of two, and the sum before the relu is never stored: the
 * backward needs only the output y, as relu'(a + b) = [a + b > 0] = [y > 0].
 * The results are those of mc_add then mc_relu, bit for bit. */

MC_VECTOR_CLONES
static void add_relu_forward(const float *a, const float *b, float *y, int64_t n) { // a, b, y: (n)
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        float sum = a[i] + b[i];
        y[i] = sum <= 0.0f ? 0.0f : sum; /* NaN stays (relu_of) */
    }
}

/* y, dy: (n); da, db: (n) accumulated into, either may be NULL. */
MC_VECTOR_CLONES
static void add_relu_backward(const float *y, const float *dy, float *da, float *db, int64_t n) {
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        float g = dy[i];
        g = y[i] <= 0.0f ? 0.0f : g;
        if (da) da[i] += g;
        if (db) db[i] += g;
    }
}

static mc_status add_relu_node(mc_node *node) {
    mc_tensor *a = node->in[0], *b = node->in[1], *y = node->out;
    float *da = NULL, *db = NULL;
    if (a->requires_grad) MC_TRY(mc_grad_buffer(node->graph, a, &da));
    if (b->requires_grad) MC_TRY(mc_grad_buffer(node->graph, b, &db));
    if (da && da == db) { /* relu(a + a): the gradient counts twice */
        add_relu_backward(y->data, y->grad, da, NULL, y->numel);
        db = da, da = NULL;
    }
    add_relu_backward(y->data, y->grad, da, db, y->numel);
    return MC_OK;
}

mc_status mc_add_relu(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor **out) {
    *out = NULL;
    if (!a || !b) return mc_error(MC_ERR_ARG, "add_relu: an input is NULL");
    if (!mc_shape_equal(a->shape, b->shape)) {
        char as[160], bs[160];
        return mc_error(MC_ERR_SHAPE, "add_relu: %s and %s must have the same shape (no broadcasting)",
                        mc_tensor_str(a, as, sizeof as), mc_tensor_str(b, bs, sizeof bs));
    }
    mc_tensor *y; /* every element is written */
    MC_TRY(mc_graph_tensor_uninit(g, a->shape, "add_relu", &y));
    add_relu_forward(a->data, b->data, y->data, y->numel);
    mc_tensor *in[2] = {a, b};
    MC_TRY(mc_graph_record(g, "add_relu", add_relu_node, y, 2, in, NULL));
    *out = y;
    return MC_OK;
}

/* The convolutional op families: conv2d, batchnorm2d, the pools.
 *
 * References, all independent of the code under test:
 *   - finite differences (mc_gradcheck) for every backward;
 *   - conv.c's naive seven-loop kernels for the im2col + GEMM fast path;
 *   - values printed by PyTorch 1.13 (Debian's python3-torch) for the
 *     semantics that are easy to get subtly wrong: batchnorm's biased /
 *     unbiased variances and running update, max pooling's -inf padding,
 *     avg pooling's count_include_pad, adaptive pooling's window bounds.
 *     The script is quoted above each table;
 *   - for the fused ops (mc_batchnorm2d_relu, mc_add_relu), the unfused ops they replace: the
 *     outputs and every gradient must agree bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "../lib/ops/conv_internal.h"
#include "../lib/ops/gemm_internal.h"
#include "../lib/ops/naive.h"

/* ---- helpers ---- */

static mc_tensor *random_tensor(mc_shape shape, const char *name, uint64_t seed, bool grad) {
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, shape, name));
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    mc_tensor_uniform(t, &rng, -1.0f, 1.0f);
    if (grad) MC_CHECK_OK(mc_tensor_set_requires_grad(t, true));
    return t;
}

static mc_tensor *tensor_from(mc_shape shape, const char *name, const float *values) {
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, shape, name));
    MC_CHECK_OK(mc_tensor_load(t, values, t->numel));
    return t;
}

/* Bitwise equality of two float arrays (NaN payloads aside, none occur). */
static void assert_same_floats(const char *what, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(a[i] == b[i], "%s[%lld]: %.9g != %.9g", what, (long long)i, a[i], b[i]);
}

/* ==== conv2d ==== */

typedef struct conv_case {
    const char *name;
    int n, h, w, c, oc, kh, kw;
    mc_conv2d_params p;
    bool bias;
} conv_case;

#define PARAMS(sh, sw, ph, pw, dh, dw, g) ((mc_conv2d_params){sh, sw, ph, pw, dh, dw, g})

/* Stride, padding, dilation and groups combinations, odd and non-square
 * sizes, the 1x1 direct-GEMM path and depthwise convolution. */
static const conv_case conv_cases[] = {
    {"3x3 s1 p1", 2, 5, 5, 3, 4, 3, 3, PARAMS(1, 1, 1, 1, 1, 1, 1), true},
    {"3x3 s2 p1 odd sizes", 2, 7, 6, 3, 5, 3, 3, PARAMS(2, 2, 1, 1, 1, 1, 1), true},
    {"3x2 kernel, stride (2,1), pad (1,0)", 1, 6, 5, 2, 3, 3, 2, PARAMS(2, 1, 1, 0, 1, 1, 1), true},
    {"dilation 2", 2, 7, 7, 2, 3, 3, 3, PARAMS(1, 1, 2, 2, 2, 2, 1), true},
    {"dilation (2,1) stride 2", 1, 9, 6, 2, 2, 3, 3, PARAMS(2, 2, 1, 0, 2, 1, 1), false},
    {"groups 2", 2, 5, 4, 4, 6, 3, 3, PARAMS(1, 1, 1, 1, 1, 1, 2), true},
    {"depthwise", 2, 5, 5, 4, 4, 3, 3, PARAMS(1, 1, 1, 1, 1, 1, 4), true},
    {"depthwise x2 stride 2", 1, 6, 7, 3, 6, 3, 3, PARAMS(2, 2, 1, 1, 1, 1, 3), false},
    {"1x1 direct", 2, 4, 3, 5, 3, 1, 1, PARAMS(1, 1, 0, 0, 1, 1, 1), true},
    {"1x1 direct groups 2", 2, 3, 3, 4, 6, 1, 1, PARAMS(1, 1, 0, 0, 1, 1, 2), false},
    {"1x1 stride 2", 2, 5, 5, 3, 4, 1, 1, PARAMS(2, 2, 0, 0, 1, 1, 1), true},
    {"7x7 s2 p3 (stem)", 1, 9, 8, 3, 2, 7, 7, PARAMS(2, 2, 3, 3, 1, 1, 1), true},
    {"kernel wider than input, padded", 2, 2, 3, 2, 3, 3, 3, PARAMS(1, 1, 1, 1, 1, 1, 1), true},
    {"5x1 kernel, no bias", 2, 6, 3, 3, 2, 5, 1, PARAMS(1, 2, 2, 0, 1, 1, 1), false},
};
enum { N_CONV_CASES = sizeof conv_cases / sizeof conv_cases[0] };

typedef struct conv_inputs {
    mc_tensor *x, *weight, *bias;
} conv_inputs;

static conv_inputs make_conv_inputs(const conv_case *cc, uint64_t seed, bool grad) {
    conv_inputs in;
    in.x = random_tensor(MC_SHAPE(cc->n, cc->h, cc->w, cc->c), "x", seed, grad);
    in.weight = random_tensor(MC_SHAPE(cc->oc, cc->c / cc->p.groups, cc->kh, cc->kw), "weight",
                              seed + 1, grad);
    in.bias = cc->bias ? random_tensor(MC_SHAPE(cc->oc), "bias", seed + 2, grad) : NULL;
    return in;
}

static void free_conv_inputs(conv_inputs *in) {
    mc_tensor_free(in->x);
    mc_tensor_free(in->weight);
    mc_tensor_free(in->bias);
}

static mc_status conv_forward_for_check(mc_graph *g, mc_tensor **inputs, void *ctx, mc_tensor **out) {
    const conv_case *cc = ctx;
    return mc_conv2d(g, inputs[0], inputs[1], cc->bias ? inputs[2] : NULL, cc->p, out);
}

START_TEST(test_conv2d_gradcheck) {
    const conv_case *cc = &conv_cases[_i];
    conv_inputs in = make_conv_inputs(cc, 100 + (uint64_t)_i * 10, true);
    mc_tensor *inputs[3] = {in.x, in.weight, in.bias};
    mc_assert_gradcheck(cc->name, cc->bias ? 3 : 2, inputs, conv_forward_for_check, (void *)cc, NULL);
    free_conv_inputs(&in);
}
END_TEST

/* Run the fast path forward and backward (with a fixed random output
 * gradient) and compare all of it with the naive kernels. */
static void compare_fast_with_naive(const conv_case *cc, uint64_t seed) {
    conv_inputs in = make_conv_inputs(cc, seed, true);
    mc_conv2d_geometry geo;
    MC_CHECK_OK(mc_conv2d_geometry_of(in.x, in.weight, in.bias, cc->p, &geo));
    int64_t out_numel = geo.rows * geo.oc;
    float *expected = calloc((size_t)out_numel, sizeof(float));
    float *dout = calloc((size_t)out_numel, sizeof(float));
    float *dx = calloc((size_t)in.x->numel, sizeof(float));
    float *dw = calloc((size_t)in.weight->numel, sizeof(float));
    float *db = calloc((size_t)geo.oc, sizeof(float));
    ck_assert(expected && dout && dx && dw && db);
    mc_rng rng;
    mc_rng_seed(&rng, seed + 7);
    for (int64_t i = 0; i < out_numel; i++) dout[i] = (float)mc_rng_uniform(&rng) * 2 - 1;
    mc_conv2d_forward_naive(&geo, in.x->data, in.weight->data, in.bias ? in.bias->data : NULL,
                                expected);
    mc_conv2d_backward_naive(&geo, in.x->data, in.weight->data, dout, dx, dw,
                                 in.bias ? db : NULL);

    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *y;
    MC_CHECK_OK(mc_conv2d(g, in.x, in.weight, in.bias, cc->p, &y));
    ck_assert_int_eq(y->numel, out_numel);
    ck_assert_int_eq(y->shape.dim[1], geo.oh);
    MC_CHECK_OK(mc_backward_with_grad(g, y, dout));
    char what[160];
    snprintf(what, sizeof what, "%s: forward", cc->name);
    mc_test_assert_close(what, y->data, expected, (long)out_numel, 1e-4, 1e-4);
    snprintf(what, sizeof what, "%s: d x", cc->name);
    mc_test_assert_close(what, in.x->grad, dx, (long)in.x->numel, 1e-4, 1e-4);
    snprintf(what, sizeof what, "%s: d weight", cc->name);
    mc_test_assert_close(what, in.weight->grad, dw, (long)in.weight->numel, 1e-4, 1e-3);
    if (in.bias) {
        snprintf(what, sizeof what, "%s: d bias", cc->name);
        mc_test_assert_close(what, in.bias->grad, db, (long)geo.oc, 1e-4, 1e-3);
    }
    mc_graph_free(g);
    free(expected), free(dout), free(dx), free(dw), free(db);
    free_conv_inputs(&in);
}

/* Larger shapes than the gradcheck table (more channels, a bigger batch),
 * with the default column budget (one chunk) ... */
static const conv_case fast_cases[] = {
    {"3x3 s1 p1 C16 OC24", 3, 9, 8, 16, 24, 3, 3, PARAMS(1, 1, 1, 1, 1, 1, 1), true},
    {"3x3 s2 p1 C12 OC16", 4, 11, 10, 12, 16, 3, 3, PARAMS(2, 2, 1, 1, 1, 1, 1), true},
    {"1x1 C32 OC16", 3, 6, 7, 32, 16, 1, 1, PARAMS(1, 1, 0, 0, 1, 1, 1), true},
    {"1x1 s2 C16 OC32", 3, 7, 7, 16, 32, 1, 1, PARAMS(2, 2, 0, 0, 1, 1, 1), false},
    {"groups 4 dilation 2", 2, 10, 9, 16, 8, 3, 3, PARAMS(1, 1, 2, 2, 2, 2, 4), true},
    {"depthwise 5x5", 2, 9, 9, 8, 8, 5, 5, PARAMS(1, 1, 2, 2, 1, 1, 8), true},
    {"7x7 s2 p3", 2, 16, 15, 3, 8, 7, 7, PARAMS(2, 2, 3, 3, 1, 1, 1), true},
};
enum { N_FAST_CASES = sizeof fast_cases / sizeof fast_cases[0] };

START_TEST(test_conv2d_fast_matches_naive) {
    compare_fast_with_naive(&fast_cases[_i], 500 + (uint64_t)_i);
}
END_TEST

/* ... and again with a budget so small that the batch is processed in
 * chunks of a few rows, which split images (and, at one row, a single
 * output line), so col2im must add across chunk boundaries correctly. */
START_TEST(test_conv2d_chunked_matches_naive) {
    static const size_t budgets[] = {1, 3 * 1024, 17 * 1024};
    for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
        mc_conv2d_set_column_budget(budgets[b]);
        compare_fast_with_naive(&fast_cases[_i], 900 + (uint64_t)_i);
    }
    mc_conv2d_set_column_budget(0);
}
END_TEST

/* The im2col forward at 2 threads deals whole chunks out to the threads
 * (one parallel region for all of them), at 1 thread it runs them one by
 * one: the outputs must agree bit for bit (a row's sums do not depend on
 * which rows share its product). The gradients must agree bit for bit
 * too, at 2 and 3 threads (the fp32 weight gradient in strips of the
 * weight, one per thread). With the default budget and with ones that cut
 * many chunks; also ResNet-50's stem on a small batch. Each result is also checked against
 * the naive reference. */
static const conv_case stem_case = {
    "7x7 s2 p3 C3 OC64 (stem)", 4, 32, 32, 3, 64, 7, 7, PARAMS(2, 2, 3, 3, 1, 1, 1), false};

typedef struct conv_results {
    float *y, *dx, *dw; /* forward output, gradients of x and weight */
} conv_results;

static conv_results conv_at_threads(const conv_case *cc, int threads, size_t budget,
                                    const float *dout) {
    conv_inputs in = make_conv_inputs(cc, 1300, true);
    mc_set_num_threads(threads);
    mc_conv2d_set_column_budget(budget);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *y;
    MC_CHECK_OK(mc_conv2d(g, in.x, in.weight, in.bias, cc->p, &y));
    MC_CHECK_OK(mc_backward_with_grad(g, y, dout));
    conv_results r = {malloc((size_t)y->numel * sizeof(float)),
                      malloc((size_t)in.x->numel * sizeof(float)),
                      malloc((size_t)in.weight->numel * sizeof(float))};
    ck_assert(r.y && r.dx && r.dw);
    memcpy(r.y, y->data, (size_t)y->numel * sizeof(float));
    memcpy(r.dx, in.x->grad, (size_t)in.x->numel * sizeof(float));
    memcpy(r.dw, in.weight->grad, (size_t)in.weight->numel * sizeof(float));
    mc_graph_free(g);
    free_conv_inputs(&in);
    return r;
}

static void conv_results_free(conv_results *r) { free(r->y), free(r->dx), free(r->dw); }

START_TEST(test_conv2d_same_bits_any_threads) {
    const int threads_before = mc_get_num_threads();
    const conv_case *cc = _i < N_FAST_CASES ? &fast_cases[_i] : &stem_case;
    static const size_t budgets[] = {0, 3 * 1024, 64 * 1024};
    conv_inputs in = make_conv_inputs(cc, 1300, true);
    mc_conv2d_geometry geo;
    MC_CHECK_OK(mc_conv2d_geometry_of(in.x, in.weight, in.bias, cc->p, &geo));
    const int64_t n_out = geo.rows * geo.oc;
    float *dout = malloc((size_t)n_out * sizeof(float));
    float *y = malloc((size_t)n_out * sizeof(float));
    float *dx = calloc((size_t)in.x->numel, sizeof(float));
    float *dw = calloc((size_t)in.weight->numel, sizeof(float));
    ck_assert(dout && y && dx && dw);
    mc_rng rng;
    mc_rng_seed(&rng, 1301);
    for (int64_t i = 0; i < n_out; i++) dout[i] = (float)mc_rng_uniform(&rng) * 2 - 1;
    mc_conv2d_forward_naive(&geo, in.x->data, in.weight->data, in.bias ? in.bias->data : NULL, y);
    mc_conv2d_backward_naive(&geo, in.x->data, in.weight->data, dout, dx, dw, NULL);
    for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
        conv_results one = conv_at_threads(cc, 1, budgets[b], dout);
        conv_results two = conv_at_threads(cc, 2, budgets[b], dout);
        conv_results three = conv_at_threads(cc, 3, budgets[b], dout); /* a middle strip */
        char what[160];
        snprintf(what, sizeof what, "%s, budget %zu: forward vs naive", cc->name, budgets[b]);
        mc_test_assert_close(what, two.y, y, (long)n_out, 1e-4, 1e-4);
        snprintf(what, sizeof what, "%s, budget %zu: d x vs naive", cc->name, budgets[b]);
        mc_test_assert_close(what, two.dx, dx, (long)in.x->numel, 1e-4, 1e-4);
        snprintf(what, sizeof what, "%s, budget %zu: d weight vs naive", cc->name, budgets[b]);
        mc_test_assert_close(what, two.dw, dw, (long)in.weight->numel, 1e-4, 1e-3);
        snprintf(what, sizeof what, "%s, budget %zu: forward, 2 threads vs 1", cc->name, budgets[b]);
        assert_same_floats(what, two.y, one.y, n_out);
        snprintf(what, sizeof what, "%s, budget %zu: d x, 2 threads vs 1", cc->name, budgets[b]);
        assert_same_floats(what, two.dx, one.dx, in.x->numel);
        snprintf(what, sizeof what, "%s, budget %zu: d weight, 2 threads vs 1", cc->name, budgets[b]);
        assert_same_floats(what, two.dw, one.dw, in.weight->numel);
        snprintf(what, sizeof what, "%s, budget %zu: d weight, 3 threads vs 1", cc->name, budgets[b]);
        assert_same_floats(what, three.dw, one.dw, in.weight->numel);
        snprintf(what, sizeof what, "%s, budget %zu: d x, 3 threads vs 1", cc->name, budgets[b]);
        assert_same_floats(what, three.dx, one.dx, in.x->numel);
        conv_results_free(&one);
        conv_results_free(&two);
        conv_results_free(&three);
    }
    mc_conv2d_set_column_budget(0);
    mc_set_num_threads(threads_before);
    free(dout), free(y), free(dx), free(dw);
    free_conv_inputs(&in);
}
END_TEST

/* Hand-derived: a 1x1 input (value 2) with a 3x3 kernel and padding 1 only
 * meets the kernel's centre tap; output = 2 * w[1][1] + bias. */
START_TEST(test_conv2d_hand_example) {
    float w_values[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    mc_tensor *x = tensor_from(MC_SHAPE(1, 1, 1, 1), "x", (float[]){2.0f});
    mc_tensor *w = tensor_from(MC_SHAPE(1, 1, 3, 3), "w", w_values);
    mc_tensor *b = tensor_from(MC_SHAPE(1), "b", (float[]){0.5f});
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *y;
    MC_CHECK_OK(mc_conv2d(g, x, w, b, mc_conv2d_simple(1, 1), &y));
    ck_assert_int_eq(y->numel, 1);
    ck_assert_float_eq_tol(y->data[0], 10.5f, 1e-6f);
    mc_graph_free(g);
    mc_tensor_free(x), mc_tensor_free(w), mc_tensor_free(b);
}
END_TEST

START_TEST(test_conv2d_bad_input) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *x = random_tensor(MC_SHAPE(2, 8, 8, 5), "x", 1, false);
    mc_tensor *w = random_tensor(MC_SHAPE(16, 3, 3, 3), "conv1.weight", 2, false);
    mc_tensor *w6 = random_tensor(MC_SHAPE(6, 2, 3, 3), "w6", 3, false);
    mc_tensor *bias = random_tensor(MC_SHAPE(15), "conv1.bias", 4, false);
    mc_tensor *out = (mc_tensor *)0x1;
    MC_CHECK_FAILS(mc_conv2d(g, x, w, NULL, mc_conv2d_simple(1, 1), &out), MC_ERR_SHAPE,
                   "x (2, 8, 8, 5) has 5 channels, weight conv1.weight (16, 3, 3, 3) expects 3 "
                   "(C/groups = 3 with groups 1); x is NHWC, channels last");
    ck_assert_ptr_null(out);
    mc_conv2d_params p = mc_conv2d_simple(1, 1);
    p.groups = 3; /* 3 does not divide 5 input channels */
    MC_CHECK_FAILS(mc_conv2d(g, x, w6, NULL, p, &out), MC_ERR_SHAPE, "groups 3 must divide");
    mc_tensor *x3 = random_tensor(MC_SHAPE(1, 2, 2, 3), "small", 5, false);
    MC_CHECK_FAILS(mc_conv2d(g, x3, w, NULL, mc_conv2d_simple(1, 0), &out), MC_ERR_SHAPE,
                   "output size 0x0 < 1");
    MC_CHECK_FAILS(mc_conv2d(g, x3, w, bias, mc_conv2d_simple(1, 1), &out), MC_ERR_SHAPE,
                   "bias conv1.bias (15) must have shape (16)");
    MC_CHECK_FAILS(mc_conv2d(g, x3, w, NULL, mc_conv2d_simple(0, 1), &out), MC_ERR_ARG, "stride");
    p = mc_conv2d_simple(1, 1);
    p.dilation_h = 0;
    MC_CHECK_FAILS(mc_conv2d(g, x3, w, NULL, p, &out), MC_ERR_ARG, "dilation");
    MC_CHECK_FAILS(mc_conv2d(g, x3, w, NULL, mc_conv2d_simple(1, -1), &out), MC_ERR_ARG, "padding");
    MC_CHECK_OK(mc_tensor_reshape_inplace(x3, MC_SHAPE(4, 3)));
    MC_CHECK_FAILS(mc_conv2d(g, x3, w, NULL, mc_conv2d_simple(1, 1), &out), MC_ERR_SHAPE,
                   "must be 4-D (N, H, W, C): activations are NHWC, not PyTorch's NCHW");
    mc_graph_free(g);
    mc_tensor_free(x), mc_tensor_free(w), mc_tensor_free(w6), mc_tensor_free(bias);
    mc_tensor_free(x3);
}
END_TEST

/* No tape without gradients; no recorded input is modified. */
START_TEST(test_conv2d_no_grad_records_nothing) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *x = random_tensor(MC_SHAPE(1, 4, 4, 2), "x", 1, true);
    mc_tensor *w = random_tensor(MC_SHAPE(3, 2, 3, 3), "w", 2, true);
    mc_graph_set_grad_enabled(g, false);
    mc_tensor *y;
    MC_CHECK_OK(mc_conv2d(g, x, w, NULL, mc_conv2d_simple(1, 1), &y));
    ck_assert_int_eq(mc_graph_tape_length(g), 0);
    ck_assert(!y->requires_grad);
    mc_graph_free(g);
    mc_tensor_free(x), mc_tensor_free(w);
}
END_TEST

/* ==== conv2d by Winograd F(2x2, 3x3) (conv_winograd.c) ==== */

/* 3x3, stride 1, padding 1: odd and even sizes (a 1x1 input is one tile
 * whose outputs are all but one dropped), batches, bias on and off. */
static const conv_case winograd_cases[] = {
    {"winograd 1x1", 2, 1, 1, 3, 4, 3, 3, PARAMS(1, 1, 1, 1, 1, 1, 1), true},
    {"winograd 2x2", 3, 2, 2, 5, 2, 3, 3, PARAMS(1, 1, 1, 1, 1, 1, 1), false},
    {"winograd 3x5", 2, 3, 5, 4, 6, 3, 3, PARAMS(1, 1, 1, 1, 1, 1, 1), true},
    {"winograd 7x7", 2, 7, 7, 8, 5, 3, 3, PARAMS(1, 1, 1, 1, 1, 1, 1), false},
    {"winograd 16x16", 2, 16, 16, 16, 24, 3, 3, PARAMS(1, 1, 1, 1, 1, 1, 1), true},
    {"winograd 7x7 C64 OC32", 3, 7, 7, 64, 32, 3, 3, PARAMS(1, 1, 1, 1, 1, 1, 1), true},
};
enum { N_WINOGRAD_CASES = sizeof winograd_cases / sizeof winograd_cases[0] };

/* Winograd's forward and input gradient against the naive loops, as one
 * relative error over the whole array (||a - b|| / ||b||) and elementwise.
 * Measured (x, w, dout uniform in [-1, 1]): at most 3.5e-7 on these cases. */
static void compare_winograd_with_naive(const conv_case *cc, uint64_t seed) {
    conv_inputs in = make_conv_inputs(cc, seed, false);
    mc_conv2d_geometry geo;
    MC_CHECK_OK(mc_conv2d_geometry_of(in.x, in.weight, in.bias, cc->p, &geo));
    mc_conv2d_set_winograd(MC_WINOGRAD_ALWAYS);
    ck_assert(mc_conv2d_winograd_applies(&geo));
    int64_t out_numel = geo.rows * geo.oc;
    float *expected = calloc((size_t)out_numel, sizeof(float));
    float *actual = calloc((size_t)out_numel, sizeof(float));
    float *dout = calloc((size_t)out_numel, sizeof(float));
    float *dx_expected = calloc((size_t)in.x->numel, sizeof(float));
    float *dx_actual = calloc((size_t)in.x->numel, sizeof(float));
    ck_assert(expected && actual && dout && dx_expected && dx_actual);
    mc_rng rng;
    mc_rng_seed(&rng, seed + 7);
    for (int64_t i = 0; i < out_numel; i++) dout[i] = (float)mc_rng_uniform(&rng) * 2 - 1;
    /* dx starts non-zero: the kernel must ADD into it. */
    for (int64_t i = 0; i < in.x->numel; i++) dx_expected[i] = dx_actual[i] = 0.25f;
    const float *bias = in.bias ? in.bias->data : NULL;
    mc_conv2d_forward_naive(&geo, in.x->data, in.weight->data, bias, expected);
    mc_conv2d_backward_naive(&geo, in.x->data, in.weight->data, dout, dx_expected, NULL, NULL);
    MC_CHECK_OK(mc_conv2d_winograd_forward(&geo, in.x->data, in.weight->data, bias, actual));
    MC_CHECK_OK(mc_conv2d_winograd_input_grad(&geo, in.weight->data, dout, dx_actual));

    double forward_error = mc_test_rel_error(actual, expected, (long)out_numel);
    double dx_error = mc_test_rel_error(dx_actual, dx_expected, (long)in.x->numel);
    ck_assert_msg(forward_error < 1e-5, "%s: forward relative error %.3g", cc->name, forward_error);
    ck_assert_msg(dx_error < 1e-5, "%s: d x relative error %.3g", cc->name, dx_error);
    char what[160];
    snprintf(what, sizeof what, "%s: forward", cc->name);
    mc_test_assert_close(what, actual, expected, (long)out_numel, 1e-4, 1e-5);
    snprintf(what, sizeof what, "%s: d x", cc->name);
    mc_test_assert_close(what, dx_actual, dx_expected, (long)in.x->numel, 1e-4, 1e-5);
    printf("%s: relative error forward %.2g, d x %.2g\n", cc->name, forward_error, dx_error);
    mc_conv2d_set_winograd(-1);
    free(expected), free(actual), free(dout), free(dx_expected), free(dx_actual);
    free_conv_inputs(&in);
}

START_TEST(test_conv2d_winograd_matches_naive) {
    compare_winograd_with_naive(&winograd_cases[_i], 1300 + (uint64_t)_i);
}
END_TEST

/* Chunks of 1, 3 and 7 tiles: chunk boundaries split tile rows and images. */
START_TEST(test_conv2d_winograd_chunked_matches_naive) {
    static const int64_t chunks[] = {1, 3, 7};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        mc_conv2d_set_winograd_chunk_tiles(chunks[c]);
        compare_winograd_with_naive(&winograd_cases[_i], 1700 + (uint64_t)_i);
    }
    mc_conv2d_set_winograd_chunk_tiles(0);
}
END_TEST

/* With two or more threads and chunks enough for each, the Winograd
 * pipeline deals whole chunks out to the threads (one parallel region),
 * with one it runs them one by one: the forward and the input gradient
 * must agree bit for bit (a tile's sums do not depend on which tiles share
 * its products), in fp32 and, where our kernel runs them, in bf16. With
 * the default chunks and chunks of 1, 3 and 7 tiles; fp32 also against
 * the naive loops. */
static void winograd_at_threads(const mc_conv2d_geometry *geo, const conv_inputs *in,
                                const float *dout, int threads, float *y, float *dx) {
    mc_set_num_threads(threads);
    memset(y, 0xff, (size_t)(geo->rows * geo->oc) * sizeof(float)); /* NaN where none is written */
    memset(dx, 0, (size_t)in->x->numel * sizeof(float));
    MC_CHECK_OK(mc_conv2d_winograd_forward(geo, in->x->data, in->weight->data,
                                           in->bias ? in->bias->data : NULL, y));
    MC_CHECK_OK(mc_conv2d_winograd_input_grad(geo, in->weight->data, dout, dx));
}

START_TEST(test_conv2d_winograd_same_bits_any_threads) {
    const conv_case *cc = &winograd_cases[_i];
    const int threads_before = mc_get_num_threads();
    conv_inputs in = make_conv_inputs(cc, 2500 + (uint64_t)_i, false);
    mc_conv2d_geometry geo;
    MC_CHECK_OK(mc_conv2d_geometry_of(in.x, in.weight, in.bias, cc->p, &geo));
    mc_conv2d_set_winograd(MC_WINOGRAD_ALWAYS);
    const int64_t n_out = geo.rows * geo.oc, n_x = in.x->numel;
    float *dout = malloc((size_t)n_out * sizeof(float));
    float *y_naive = calloc((size_t)n_out, sizeof(float)), *dx_naive = calloc((size_t)n_x, sizeof(float));
    float *y_one = malloc((size_t)n_out * sizeof(float)), *dx_one = malloc((size_t)n_x * sizeof(float));
    float *y_more = malloc((size_t)n_out * sizeof(float)), *dx_more = malloc((size_t)n_x * sizeof(float));
    ck_assert(dout && y_naive && dx_naive && y_one && dx_one && y_more && dx_more);
    mc_rng rng;
    mc_rng_seed(&rng, 2600 + (uint64_t)_i);
    for (int64_t i = 0; i < n_out; i++) dout[i] = (float)mc_rng_uniform(&rng) * 2 - 1;
    mc_conv2d_forward_naive(&geo, in.x->data, in.weight->data, in.bias ? in.bias->data : NULL, y_naive);
    mc_conv2d_backward_naive(&geo, in.x->data, in.weight->data, dout, dx_naive, NULL, NULL);
    static const int64_t chunks[] = {0, 1, 3, 7};
    const int n_precisions = mc_gemm_bf16_runs() ? 2 : 1;
    for (int p = 0; p < n_precisions; p++) {
        geo.precision = p ? MC_PRECISION_BF16 : MC_PRECISION_FP32;
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
            mc_conv2d_set_winograd_chunk_tiles(chunks[c]);
            winograd_at_threads(&geo, &in, dout, 1, y_one, dx_one);
            for (int threads = 2; threads <= 3; threads++) {
                winograd_at_threads(&geo, &in, dout, threads, y_more, dx_more);
                char what[160];
                snprintf(what, sizeof what, "%s, %s, chunks of %lld tiles: forward, %d threads vs 1",
                         cc->name, p ? "bf16" : "fp32", (long long)chunks[c], threads);
                assert_same_floats(what, y_more, y_one, n_out);
                snprintf(what, sizeof what, "%s, %s, chunks of %lld tiles: d x, %d threads vs 1",
                         cc->name, p ? "bf16" : "fp32", (long long)chunks[c], threads);
                assert_same_floats(what, dx_more, dx_one, n_x);
            }
            if (p == 0) {
                mc_test_assert_close("winograd at 3 threads: forward vs naive", y_more, y_naive,
                                     (long)n_out, 1e-4, 1e-5);
                mc_test_assert_close("winograd at 3 threads: d x vs naive", dx_more, dx_naive,
                                     (long)n_x, 1e-4, 1e-5);
            }
        }
    }
    mc_conv2d_set_winograd_chunk_tiles(0);
    mc_conv2d_set_winograd(-1);
    mc_set_num_threads(threads_before);
    free(dout), free(y_naive), free(dx_naive), free(y_one), free(dx_one), free(y_more), free(dx_more);
    free_conv_inputs(&in);
}
END_TEST

/* Through mc_conv2d with Winograd forced on: the whole fast path (forward,
 * dx by Winograd, dweight and dbias by im2col) against the naive loops,
 * and finite differences. */
START_TEST(test_conv2d_winograd_through_op) {
    mc_conv2d_set_winograd(MC_WINOGRAD_ALWAYS);
    compare_fast_with_naive(&winograd_cases[_i], 2100 + (uint64_t)_i);
    mc_conv2d_set_winograd(-1);
}
END_TEST

START_TEST(test_conv2d_winograd_gradcheck) {
    const conv_case *cc = &winograd_cases[_i];
    mc_conv2d_set_winograd(MC_WINOGRAD_ALWAYS);
    conv_inputs in = make_conv_inputs(cc, 2500 + (uint64_t)_i * 10, true);
    mc_tensor *inputs[3] = {in.x, in.weight, in.bias};
    mc_assert_gradcheck(cc->name, cc->bias ? 3 : 2, inputs, conv_forward_for_check, (void *)cc, NULL);
    free_conv_inputs(&in);
    mc_conv2d_set_winograd(-1);
}
END_TEST

/* The switch, and the convolutions Winograd must not take. */
START_TEST(test_conv2d_winograd_applies_only_to_3x3_s1_p1) {
    mc_tensor *x = random_tensor(MC_SHAPE(1, 6, 6, 4), "x", 1, false);
    mc_tensor *w3 = random_tensor(MC_SHAPE(4, 4, 3, 3), "w3", 2, false);
    mc_tensor *w3g = random_tensor(MC_SHAPE(4, 2, 3, 3), "w3g", 3, false);
    mc_tensor *w1 = random_tensor(MC_SHAPE(4, 4, 1, 1), "w1", 4, false);
    mc_conv2d_geometry geo;
    mc_conv2d_set_winograd(MC_WINOGRAD_ALWAYS);
    MC_CHECK_OK(mc_conv2d_geometry_of(x, w3, NULL, mc_conv2d_simple(1, 1), &geo));
    ck_assert(mc_conv2d_winograd_applies(&geo));
    mc_conv2d_set_winograd(MC_WINOGRAD_OFF);
    ck_assert(!mc_conv2d_winograd_applies(&geo));
    /* "on" leaves convolutions of under 64 tiles of 2x2 outputs to im2col:
     * x is 9 tiles; 8 images of 5x5 maps are 8 * 3 * 3 = 72, 7 are 63 */
    mc_conv2d_set_winograd(MC_WINOGRAD_ENOUGH_TILES);
    ck_assert(!mc_conv2d_winograd_applies(&geo));
    mc_tensor *x72 = random_tensor(MC_SHAPE(8, 5, 5, 4), "x72", 5, false);
    mc_tensor *x63 = random_tensor(MC_SHAPE(7, 5, 5, 4), "x63", 6, false);
    mc_conv2d_geometry geo72, geo63;
    MC_CHECK_OK(mc_conv2d_geometry_of(x72, w3, NULL, mc_conv2d_simple(1, 1), &geo72));
    MC_CHECK_OK(mc_conv2d_geometry_of(x63, w3, NULL, mc_conv2d_simple(1, 1), &geo63));
    ck_assert(mc_conv2d_winograd_applies(&geo72));
    ck_assert(!mc_conv2d_winograd_applies(&geo63));
    mc_tensor_free(x72), mc_tensor_free(x63);
    mc_conv2d_set_winograd(MC_WINOGRAD_ALWAYS);
    MC_CHECK_OK(mc_conv2d_geometry_of(x, w3, NULL, mc_conv2d_simple(2, 1), &geo));
    ck_assert(!mc_conv2d_winograd_applies(&geo));
    MC_CHECK_OK(mc_conv2d_geometry_of(x, w3, NULL, mc_conv2d_simple(1, 0), &geo));
    ck_assert(!mc_conv2d_winograd_applies(&geo));
    MC_CHECK_OK(mc_conv2d_geometry_of(x, w3, NULL, PARAMS(1, 1, 2, 2, 2, 2, 1), &geo));
    ck_assert(!mc_conv2d_winograd_applies(&geo));
    MC_CHECK_OK(mc_conv2d_geometry_of(x, w3g, NULL, PARAMS(1, 1, 1, 1, 1, 1, 2), &geo));
    ck_assert(!mc_conv2d_winograd_applies(&geo));
    MC_CHECK_OK(mc_conv2d_geometry_of(x, w1, NULL, mc_conv2d_simple(1, 0), &geo));
    ck_assert(!mc_conv2d_winograd_applies(&geo));
    mc_conv2d_set_winograd(-1);
    mc_tensor_free(x), mc_tensor_free(w3), mc_tensor_free(w3g), mc_tensor_free(w1);
}
END_TEST

/* ==== batchnorm2d ==== */

/* PyTorch reference (x is NCHW (2, 3, 3, 4) in PyTorch, printed NHWC here):
 *   x[n,c,h,w] = ((n*7 + c*5 + h*3 + w*2) % 11) * 0.25 - 1 + 0.01*c*h
 *   bn = BatchNorm2d(3, eps=1e-5, momentum=0.1); weight (1.5, -0.5, 2),
 *   bias (0.1, 0.2, -0.3), running_mean (0.5, -0.25, 1), running_var (2, 0.5, 1.5)
 *   bn.train(); y = bn(x)  -> bn_train_y, running stats after the step
 *   bn.eval();  y = bn(x)  -> bn_eval_y (with the updated running stats) */
static const float bn_x[] = {
    -1, 0.25, 1.5, -0.5, 0.75, -0.75, 0, 1.25, -0.25, 0.5, -1, 0.25, -0.25, 1.01, -0.48,
    0.25, 1.51, 0.02, 0.75, -0.74, 0.52, 1.25, -0.24, 1.02, 0.5, -0.98, 0.29, 1, -0.48, 0.79,
    1.5, 0.02, 1.29, -0.75, 0.52, -0.96, 0.75, -0.75, 0.5, 1.25, -0.25, 1, -1, 0.25, 1.5,
    -0.5, 0.75, -0.75, 1.5, 0.01, 1.27, -0.75, 0.51, -0.98, -0.25, 1.01, -0.48, 0.25, 1.51,
    0.02, -0.5, 0.77, -0.71, 0, 1.27, -0.21, 0.5, -0.98, 0.29, 1, -0.48, 0.79};
static const float bn_train_y[] = {
    -2.283184f, 0.1867814f, 2.955852f, -1.313753f, -0.1242449f, -2.80483f, -0.3443224f,
    -0.4352712f, -1.524678f, 0.6251082f, 0.9643471f, -0.2445268f, -0.8290377f, -0.2859786f,
    -2.113548f, 0.1403929f, -0.5970048f, -0.8333964f, 1.109824f, 0.8026134f, 0.4467549f,
    2.079254f, 0.4915871f, 1.726906f, 0.6251082f, 0.951906f, -0.1421147f, 1.594539f,
    0.6408798f, 1.138037f, 2.56397f, 0.3298535f, 2.418188f, -1.798468f, 0.0188272f,
    -3.342493f, 1.109824f, 0.808834f, 0.3955489f, 2.079254f, 0.4978077f, 1.6757f, -2.283184f,
    0.1867814f, 2.955852f, -1.313753f, -0.1242449f, -2.80483f, 2.56397f, 0.336074f, 2.366982f,
    -1.798468f, 0.02504772f, -3.393699f, -0.8290377f, -0.2859786f, -2.113548f, 0.1403929f,
    -0.5970048f, -0.8333964f, -1.313753f, -0.1366859f, -2.702417f, -0.3443224f, -0.4477122f,
    -1.422266f, 0.6251082f, 0.951906f, -0.1421147f, 1.594539f, 0.6408798f, 1.138037f};
static const float bn_running_mean_after[] = {0.4729167f, -0.202125f, 0.9228333f};
static const float bn_running_var_after[] = {1.862455f, 0.5174159f, 1.413673f};
static const float bn_eval_y[] = {
    -1.51892f, -0.1142711f, 0.670857f, -0.9693574f, -0.4618199f, -3.113887f, -0.4197947f,
    -0.8093688f, -2.272833f, 0.129768f, 0.7546011f, -1.431779f, -0.694576f, -0.6425453f,
    -2.659718f, -0.1450134f, -0.9900942f, -1.818664f, 0.4045493f, 0.5738757f, -0.9776094f,
    0.9541121f, 0.2263268f, -0.1365551f, 0.129768f, 0.7406992f, -1.364494f, 0.6793307f,
    0.3931503f, -0.52344f, 1.228893f, 0.04560142f, 0.3176142f, -1.244139f, -0.3019474f,
    -3.46713f, 0.4045493f, 0.5808267f, -1.011251f, 0.9541121f, 0.2332778f, -0.1701972f,
    -1.51892f, -0.1142711f, 0.670857f, -0.9693574f, -0.4618199f, -3.113887f, 1.228893f,
    0.05255239f, 0.283972f, -1.244139f, -0.2949965f, -3.500772f, -0.694576f, -0.6425453f,
    -2.659718f, -0.1450134f, -0.9900942f, -1.818664f, -0.9693574f, -0.4757219f, -3.046603f,
    -0.4197947f, -0.8232707f, -2.205549f, 0.129768f, 0.7406992f, -1.364494f, 0.6793307f,
    0.3931503f, -0.52344f};

typedef struct bn_module {
    mc_tensor *weight, *bias, *running_mean, *running_var;
} bn_module;

static bn_module bn_module_new(void) {
    bn_module m;
    m.weight = tensor_from(MC_SHAPE(3), "bn.weight", (float[]){1.5f, -0.5f, 2.0f});
    m.bias = tensor_from(MC_SHAPE(3), "bn.bias", (float[]){0.1f, 0.2f, -0.3f});
    m.running_mean = tensor_from(MC_SHAPE(3), "bn.running_mean", (float[]){0.5f, -0.25f, 1.0f});
    m.running_var = tensor_from(MC_SHAPE(3), "bn.running_var", (float[]){2.0f, 0.5f, 1.5f});
    return m;
}

static void bn_module_free(bn_module *m) {
    mc_tensor_free(m->weight), mc_tensor_free(m->bias);
    mc_tensor_free(m->running_mean), mc_tensor_free(m->running_var);
}

START_TEST(test_batchnorm2d_matches_pytorch) {
    bn_module m = bn_module_new();
    mc_tensor *x = tensor_from(MC_SHAPE(2, 3, 4, 3), "x", bn_x);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *y;
    MC_CHECK_OK(mc_batchnorm2d(g, x, m.weight, m.bias, m.running_mean, m.running_var, true, 0.1f,
                               1e-5f, &y));
    mc_test_assert_close("train output", y->data, bn_train_y, 72, 1e-4, 1e-5);
    mc_test_assert_close("running_mean", m.running_mean->data, bn_running_mean_after, 3, 1e-5, 1e-6);
    mc_test_assert_close("running_var (unbiased)", m.running_var->data, bn_running_var_after, 3,
                         1e-5, 1e-6);
    /* eval: normalise with the running stats, and leave them untouched */
    float mean_before[3], var_before[3];
    memcpy(mean_before, m.running_mean->data, sizeof mean_before);
    memcpy(var_before, m.running_var->data, sizeof var_before);
    MC_CHECK_OK(mc_batchnorm2d(g, x, m.weight, m.bias, m.running_mean, m.running_var, false, 0.1f,
                               1e-5f, &y));
    mc_test_assert_close("eval output", y->data, bn_eval_y, 72, 1e-4, 1e-5);
    ck_assert(memcmp(mean_before, m.running_mean->data, sizeof mean_before) == 0);
    ck_assert(memcmp(var_before, m.running_var->data, sizeof var_before) == 0);
    mc_graph_free(g);
    mc_tensor_free(x);
    bn_module_free(&m);
}
END_TEST

typedef struct bn_check_ctx {
    bn_module *m;
    bool training;
} bn_check_ctx;

static mc_status bn_forward_for_check(mc_graph *g, mc_tensor **inputs, void *ctx, mc_tensor **out) {
    bn_check_ctx *c = ctx;
    return mc_batchnorm2d(g, inputs[0], inputs[1], inputs[2], c->m->running_mean,
                          c->m->running_var, c->training, 0.1f, 1e-5f, out);
}

START_TEST(test_batchnorm2d_gradcheck) {
    bool training = _i == 0;
    bn_module m = bn_module_new();
    mc_tensor *x = random_tensor(MC_SHAPE(2, 3, 5, 3), "x", 77, true);
    MC_CHECK_OK(mc_tensor_set_requires_grad(m.weight, true));
    MC_CHECK_OK(mc_tensor_set_requires_grad(m.bias, true));
    bn_check_ctx ctx = {&m, training};
    mc_tensor *inputs[3] = {x, m.weight, m.bias};
    mc_gradcheck_options options = {.eps = 1e-3, .rtol = 2e-2, .atol = 2e-3};
    mc_assert_gradcheck(training ? "batchnorm2d train" : "batchnorm2d eval", 3, inputs,
                        bn_forward_for_check, &ctx, &options);
    mc_tensor_free(x);
    bn_module_free(&m);
}
END_TEST

/* affine=False (weight and bias NULL) and no running statistics
 * (track_running_stats=False): output has zero mean and unit biased
 * variance per channel, by definition. */
START_TEST(test_batchnorm2d_without_affine) {
    mc_tensor *x = random_tensor(MC_SHAPE(3, 4, 2, 5), "x", 5, true);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *y;
    MC_CHECK_OK(mc_batchnorm2d(g, x, NULL, NULL, NULL, NULL, true, 0.1f, 0.0f, &y));
    for (int ch = 0; ch < 5; ch++) {
        double sum = 0, sq = 0;
        for (int r = 0; r < 24; r++) sum += y->data[r * 5 + ch];
        for (int r = 0; r < 24; r++) sq += (y->data[r * 5 + ch] - sum / 24) * (y->data[r * 5 + ch] - sum / 24);
        ck_assert_double_lt(fabs(sum / 24), 1e-5);
        ck_assert_double_lt(fabs(sq / 24 - 1.0), 1e-4);
    }
    mc_graph_free(g);
    mc_tensor_free(x);
}
END_TEST

/* A global sum over one process: the values stay. Installed, the op takes
 * the synchronised path (sums of x first, then centred squares about the
 * global mean), which must give the local path's statistics. */
static mc_status sum_over_one_process(double *values, int64_t count) {
    (void)values, (void)count;
    return MC_OK;
}

/* A global sum over two processes holding the same values. */
static mc_status sum_over_two_like_processes(double *values, int64_t count) {
    for (int64_t i = 0; i < count; i++) values[i] *= 2.0;
    return MC_OK;
}

/* Synchronised, one value per channel on this process is a batch of two:
 * allowed, the statistics those of the union (mean the value, variance 0);
 * over one process it is refused (the same check as unsynchronised). */
static mc_status batchnorm_summed_by(mc_batchnorm_sum_fn sum, mc_graph *g, mc_tensor *x,
                                     mc_tensor **y) {
    mc_batchnorm_set_global_sum(sum);
    mc_status status = mc_batchnorm2d(g, x, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f, y);
    mc_batchnorm_set_global_sum(NULL);
    return status;
}

START_TEST(test_batchnorm2d_synchronised_counts_the_union) {
    mc_tensor *x = random_tensor(MC_SHAPE(1, 1, 1, 3), "x", 9, false);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *y;
    MC_CHECK_OK(batchnorm_summed_by(sum_over_two_like_processes, g, x, &y));
    for (int ch = 0; ch < 3; ch++) ck_assert_float_eq(y->data[ch], 0.0f);
    mc_graph_reset(g);
    MC_CHECK_FAILS(batchnorm_summed_by(sum_over_one_process, g, x, &y), MC_ERR_SHAPE,
                   "the synchronised batch has N*H*W = 1");
    MC_CHECK_FAILS(batchnorm_summed_by(NULL, g, x, &y), MC_ERR_SHAPE, "(1, 1, 1, 3) has N*H*W = 1");
    mc_graph_free(g);
    mc_tensor_free(x);
}
END_TEST

/* One training step of batch norm over x at momentum 1 (running mean 0
 * and variance 1 before), with `sum` as the global sum (NULL: local);
 * the graph holding y, which the caller frees. */
static mc_graph *batchnorm_step(mc_tensor *x, mc_batchnorm_sum_fn sum, mc_tensor **rm,
                                mc_tensor **rv, mc_tensor **y) {
    const int64_t c = x->shape.dim[x->shape.ndim - 1];
    MC_CHECK_OK(mc_tensor_new(rm, MC_SHAPE(c), "rm"));
    MC_CHECK_OK(mc_tensor_new(rv, MC_SHAPE(c), "rv"));
    mc_tensor_fill(*rm, 0.0f);
    mc_tensor_fill(*rv, 1.0f);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_batchnorm_set_global_sum(sum);
    mc_status status = mc_batchnorm2d(g, x, NULL, NULL, *rm, *rv, true, 1.0f, 1e-5f, y);
    mc_batchnorm_set_global_sum(NULL);
    MC_CHECK_OK(status);
    return g;
}

/* The batch statistics a batch norm step at momentum 1 left, against a
 * two-pass double reference of `rows` rows: running mean and unbiased
 * variance, and the output y = (x - mean) / std. x - mean in float is exact
 * to the rounding of the mean to float (half an ulp of the mean: 1/32 of a
 * unit on a -1e6 channel, whose values are multiples of 1/16). */
static void assert_statistics(const mc_tensor *x, const mc_tensor *y, const mc_tensor *rm,
                              const mc_tensor *rv, const double *mean, const double *m2, int rows,
                              int c, const char *path) {
    for (int ch = 0; ch < c; ch++) {
        double var = m2[ch] / (rows - 1);
        ck_assert_msg(fabs(rm->data[ch] - mean[ch]) <= 1e-7 * fabs(mean[ch]),
                      "channel %d (%s): mean %.9g, reference %.9g", ch, path, rm->data[ch], mean[ch]);
        ck_assert_msg(fabs(rv->data[ch] - var) <= 1e-6 * var,
                      "channel %d (%s): unbiased variance %.9g, reference %.9g", ch, path,
                      rv->data[ch], var);
    }
    for (int64_t i = 0; i < x->numel; i++) {
        int ch = (int)(i % c);
        double expected = (x->data[i] - mean[ch]) / sqrt(m2[ch] / rows + 1e-5);
        double ulp = ldexp(1.0, ilogb(fabs(mean[ch])) - 23);
        double tolerance = 1e-4 + ulp / sqrt(m2[ch] / rows);
        ck_assert_msg(fabs(y->data[i] - expected) <= tolerance, "y[%lld] (%s) %.9g, reference %.9g",
                      (long long)i, path, y->data[i], expected);
    }
}

/* Batch statistics far from zero: per channel mean 1e4, -1e6 and 0.5 with
 * std 1, 1 and 1e-3 (x in float, so the -1e6 channel holds multiples of
 * 1/16). The statistics come from one pass over x; sums of x and x^2
 * (E[x^2] - E[x]^2) would cancel here even in double (about 1e-4 relative
 * on the -1e6 channel). Against a two-pass reference in double over the
 * same floats: the running statistics after one step at momentum 1 are the
 * batch's mean and unbiased variance, and the output is (x - mean) / std;
 * the same with the synchronised path of one process. */
START_TEST(test_batchnorm2d_statistics_far_from_zero) {
    enum { ROWS = 4 * 9 * 7, C = 3 };
    const double centre[C] = {1e4, -1e6, 0.5}, spread[C] = {1.0, 1.0, 1e-3};
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(4, 9, 7, C), "x"));
    mc_rng rng;
    mc_rng_seed(&rng, 21);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = (float)(centre[i % C] + spread[i % C] * mc_rng_normal(&rng));
    double mean[C] = {0}, m2[C] = {0};
    for (int64_t i = 0; i < x->numel; i++) mean[i % C] += x->data[i];
    for (int ch = 0; ch < C; ch++) mean[ch] /= ROWS;
    for (int64_t i = 0; i < x->numel; i++) m2[i % C] += (x->data[i] - mean[i % C]) * (x->data[i] - mean[i % C]);
    for (int synchronised = 0; synchronised < 2; synchronised++) {
        mc_tensor *rm, *rv, *y;
        mc_graph *g = batchnorm_step(x, synchronised ? sum_over_one_process : NULL, &rm, &rv, &y);
        assert_statistics(x, y, rm, rv, mean, m2, ROWS, C, synchronised ? "synchronised" : "local");
        mc_graph_free(g);
        mc_tensor_free(rm), mc_tensor_free(rv);
    }
    mc_tensor_free(x);
}
END_TEST

/* A second process's shard for the synchronised statistics: its rows in
 * double, and the global mean the first all-reduce produced, for the
 * second (centred squares about that mean). */
enum { SHARD_ROWS = 2 * 9 * 7, SHARD_C = 3 };
static double other_shard[SHARD_ROWS][SHARD_C];
static double global_mean_seen[SHARD_C];

/* An all-reduce over two processes, the other one simulated: adds the
 * other shard's sums and row count (first call, C + 1 values), then its
 * centred squares about the global mean (second call, C values). */
static mc_status sum_with_other_shard(double *values, int64_t count) {
    if (count == SHARD_C + 1) {
        for (int r = 0; r < SHARD_ROWS; r++)
            for (int ch = 0; ch < SHARD_C; ch++) values[ch] += other_shard[r][ch];
        values[SHARD_C] += SHARD_ROWS;
        for (int ch = 0; ch < SHARD_C; ch++) global_mean_seen[ch] = values[ch] / values[SHARD_C];
    } else {
        ck_assert_int_eq(count, SHARD_C);
        for (int r = 0; r < SHARD_ROWS; r++)
            for (int ch = 0; ch < SHARD_C; ch++) {
                double d = other_shard[r][ch] - global_mean_seen[ch];
                values[ch] += d * d;
            }
    }
    return MC_OK;
}

/* Synchronised batch norm where the shards differ: this process's rows
 * sit 3 spreads above the other's, so its own shift (its first row) and
 * its local mean are both off the global mean, and the merge of the two
 * processes' centred squares must still give the statistics of all rows
 * (two-pass double reference over both shards). */
START_TEST(test_batchnorm2d_synchronised_shards_merge) {
    const double centre[SHARD_C] = {1e4, -1e6, 0.5}, spread[SHARD_C] = {1.0, 1.0, 1e-3};
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(2, 9, 7, SHARD_C), "x"));
    mc_rng rng;
    mc_rng_seed(&rng, 23);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = (float)(centre[i % SHARD_C] + spread[i % SHARD_C] * (3.0 + mc_rng_normal(&rng)));
    for (int r = 0; r < SHARD_ROWS; r++)
        for (int ch = 0; ch < SHARD_C; ch++)
            other_shard[r][ch] = (float)(centre[ch] + spread[ch] * mc_rng_normal(&rng));
    double mean[SHARD_C] = {0}, m2[SHARD_C] = {0};
    const int total = 2 * SHARD_ROWS;
    for (int64_t i = 0; i < x->numel; i++) mean[i % SHARD_C] += x->data[i];
    for (int r = 0; r < SHARD_ROWS; r++)
        for (int ch = 0; ch < SHARD_C; ch++) mean[ch] += other_shard[r][ch];
    for (int ch = 0; ch < SHARD_C; ch++) mean[ch] /= total;
    for (int64_t i = 0; i < x->numel; i++) {
        double d = x->data[i] - mean[i % SHARD_C];
        m2[i % SHARD_C] += d * d;
    }
    for (int r = 0; r < SHARD_ROWS; r++)
        for (int ch = 0; ch < SHARD_C; ch++)
            m2[ch] += (other_shard[r][ch] - mean[ch]) * (other_shard[r][ch] - mean[ch]);
    mc_tensor *rm, *rv, *y;
    mc_graph *g = batchnorm_step(x, sum_with_other_shard, &rm, &rv, &y);
    assert_statistics(x, y, rm, rv, mean, m2, total, SHARD_C, "two shards");
    mc_graph_free(g);
    mc_tensor_free(rm), mc_tensor_free(rv), mc_tensor_free(x);
}
END_TEST

START_TEST(test_batchnorm2d_bad_input) {
    bn_module m = bn_module_new();
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *out;
    mc_tensor *x4 = random_tensor(MC_SHAPE(2, 2, 2, 4), "x", 1, false);
    MC_CHECK_FAILS(mc_batchnorm2d(g, x4, m.weight, m.bias, NULL, NULL, true, 0.1f, 1e-5f, &out),
                   MC_ERR_SHAPE, "weight bn.weight (3) must have shape (4), one per channel of x (2, 2, 2, 4) "
                   "(NHWC: channels last)");
    mc_tensor *x3 = random_tensor(MC_SHAPE(1, 1, 1, 3), "single", 2, false);
    MC_CHECK_FAILS(mc_batchnorm2d(g, x3, m.weight, m.bias, NULL, NULL, true, 0.1f, 1e-5f, &out),
                   MC_ERR_SHAPE, "more than one value per channel");
    MC_CHECK_FAILS(mc_batchnorm2d(g, x3, m.weight, m.bias, NULL, NULL, false, 0.1f, 1e-5f, &out),
                   MC_ERR_ARG, "needs running_mean and running_var");
    MC_CHECK_OK(mc_tensor_reshape_inplace(x4, MC_SHAPE(8, 4)));
    MC_CHECK_FAILS(mc_batchnorm2d(g, x4, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f, &out),
                   MC_ERR_SHAPE, "must be 4-D (N, H, W, C): activations are NHWC, not PyTorch's NCHW");
    mc_graph_free(g);
    mc_tensor_free(x4), mc_tensor_free(x3);
    bn_module_free(&m);
}
END_TEST

/* ==== pools ==== */

/* PyTorch reference: p NCHW (1, 2, 5, 5), p[0,c,h,w] = ((c*13 + h*5 + w*3) % 17) * 0.5 - 3
 *   F.max_pool2d(p, 3, 2, 1), F.avg_pool2d(p, 3, 2, 1) (count_include_pad=True),
 *   F.adaptive_avg_pool2d(p, (3, 2)); all printed NHWC. */
static const float pool_x[] = {
    -3, 3.5, -1.5, 5, 0, -2, 1.5, -0.5, 3, 1, -0.5, -2.5, 1, -1, 2.5, 0.5, 4,
    2, -3, 3.5, 2, 0, 3.5, 1.5, 5, 3, -2, 4.5, -0.5, -2.5, 4.5, 2.5, -2.5, 4,
    -1, -3, 0.5, -1.5, 2, 0, -1.5, 5, 0, -2, 1.5, -0.5, 3, 1, 4.5, 2.5};
static const float maxpool_expected[] = {1, 5, 4, 5, 4, 3.5, 4.5, 4, 5, 4.5, 4, 4.5, 4.5, 5, 3, 4, 4.5, 2.5};
static const float avgpool_expected[] = {
    -0.4444444f, 0.5555556f, 0.8333333f, 0.4444444f, 0.6111111f, 0.6666667f,
    0.8888889f, 0.5f, 1.222222f, 1.111111f, 0.1111111f, 0.6666667f,
    0.05555556f, 1.055556f, 0.1666667f, -0.2222222f, 1.111111f, 0.2222222f};
static const float adaptive_expected[] = {
    -0.25f, 0.5833333f, 1.333333f, 0.75f, 1.611111f, 0.5555555f,
    0.8333333f, 0.7222223f, 0.1666667f, 1.0f, 1.75f, -0.25f};

START_TEST(test_pools_match_pytorch) {
    mc_tensor *x = tensor_from(MC_SHAPE(1, 5, 5, 2), "p", pool_x);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *y;
    MC_CHECK_OK(mc_maxpool2d(g, x, 3, 2, 1, &y));
    ck_assert_int_eq(y->shape.dim[1], 3);
    mc_test_assert_close("maxpool2d(3, 2, 1)", y->data, maxpool_expected, 18, 1e-6, 1e-6);
    MC_CHECK_OK(mc_avgpool2d(g, x, 3, 2, 1, &y));
    mc_test_assert_close("avgpool2d(3, 2, 1)", y->data, avgpool_expected, 18, 1e-5, 1e-6);
    MC_CHECK_OK(mc_adaptive_avgpool2d(g, x, 3, 2, &y));
    ck_assert_int_eq(y->shape.dim[1], 3);
    ck_assert_int_eq(y->shape.dim[2], 2);
    mc_test_assert_close("adaptive_avgpool2d(3, 2)", y->data, adaptive_expected, 12, 1e-5, 1e-6);
    /* global: channel means of pool_x; PyTorch's p.sum((2, 3)) is (23, 24) */
    MC_CHECK_OK(mc_global_avgpool(g, x, &y));
    ck_assert_int_eq(y->shape.ndim, 2);
    mc_test_assert_close("global_avgpool", y->data, (float[]){23.0f / 25, 24.0f / 25}, 2, 1e-6, 1e-6);
    mc_graph_free(g);
    mc_tensor_free(x);
}
END_TEST

/* Padding is -infinity for max pooling: an all-negative image must never
 * produce the 0 a zero-padded implementation would give. */
START_TEST(test_maxpool_padding_is_minus_infinity) {
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(1, 2, 2, 1), "neg"));
    mc_tensor_fill(x, -5.0f);
    x->data[3] = -1.0f;
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *y;
    MC_CHECK_OK(mc_maxpool2d(g, x, 3, 1, 1, &y));
    ck_assert_int_eq(y->numel, 4);
    for (int i = 0; i < 4; i++) ck_assert_float_eq(y->data[i], -1.0f);
    mc_graph_free(g);
    mc_tensor_free(x);
}
END_TEST

typedef struct pool_case {
    const char *name;
    int kind; /* 0 max, 1 avg, 2 adaptive, 3 global */
    int n, h, w, c;
    int kernel, stride, padding; /* adaptive: kernel = out_h, stride = out_w */
} pool_case;

static const pool_case pool_cases[] = {
    {"maxpool 3 s2 p1", 0, 2, 7, 6, 3, 3, 2, 1},
    {"maxpool 2 s2", 0, 1, 5, 4, 2, 2, 2, 0},
    {"maxpool 3 s1 p1", 0, 1, 4, 5, 2, 3, 1, 1},
    {"avgpool 3 s2 p1", 1, 2, 7, 6, 3, 3, 2, 1},
    {"avgpool 2 s1", 1, 1, 5, 4, 2, 2, 1, 0},
    {"adaptive 7x5 -> 3x2", 2, 2, 7, 5, 3, 3, 2, 0},
    {"adaptive 4x4 -> 5x3 (upsampling)", 2, 1, 4, 4, 2, 5, 3, 0},
    {"global", 3, 2, 5, 3, 4, 0, 0, 0},
};
enum { N_POOL_CASES = sizeof pool_cases / sizeof pool_cases[0] };

static mc_status pool_forward_for_check(mc_graph *g, mc_tensor **inputs, void *ctx, mc_tensor **out) {
    const pool_case *pc = ctx;
    switch (pc->kind) {
    case 0: return mc_maxpool2d(g, inputs[0], pc->kernel, pc->stride, pc->padding, out);
    case 1: return mc_avgpool2d(g, inputs[0], pc->kernel, pc->stride, pc->padding, out);
    case 2: return mc_adaptive_avgpool2d(g, inputs[0], pc->kernel, pc->stride, out);
    default: return mc_global_avgpool(g, inputs[0], out);
    }
}

START_TEST(test_pool_gradcheck) {
    const pool_case *pc = &pool_cases[_i];
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(pc->n, pc->h, pc->w, pc->c), "x"));
    /* Distinct values 0.1 apart (a shuffled ramp), so that the +-eps
     * perturbation of finite differences never changes a max's winner. */
    int *order = malloc((size_t)x->numel * sizeof *order);
    ck_assert_ptr_nonnull(order);
    for (int i = 0; i < (int)x->numel; i++) order[i] = i;
    mc_rng rng;
    mc_rng_seed(&rng, 31 + (uint64_t)_i);
    mc_rng_shuffle(&rng, order, (int)x->numel);
    for (int i = 0; i < (int)x->numel; i++) x->data[i] = 0.1f * (float)order[i] - 2.0f;
    free(order);
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, true));
    mc_gradcheck_options options = {.eps = 1e-2, .rtol = 1e-2, .atol = 1e-3};
    mc_assert_gradcheck(pc->name, 1, &x, pool_forward_for_check, (void *)pc, &options);
    mc_tensor_free(x);
}
END_TEST

/* The vectorised max pooling kernel (with and without argmax: training and
 * inference) against the one-element-at-a-time reference, on data with
 * ties, -infinity and NaNs; the argmax through the backward pass. */
START_TEST(test_maxpool_matches_reference) {
    static const int shapes[][7] = {/* n, h, w, c, kernel, stride, padding */
                                    {2, 9, 8, 5, 3, 2, 1}, {1, 6, 7, 3, 2, 2, 0}, {1, 5, 5, 17, 3, 1, 1}};
    for (int k = 0; k < 3; k++) {
        const int *sh = shapes[k];
        mc_tensor *x = random_tensor(MC_SHAPE(sh[0], sh[1], sh[2], sh[3]), "x", 50 + (uint64_t)k, true);
        for (int64_t i = 0; i < x->numel; i++) {
            if (i % 7 == 0) x->data[i] = 0.5f; /* ties */
            if (i % 23 == 0) x->data[i] = -INFINITY;
            if (i % 31 == 5) x->data[i] = NAN;
        }
        mc_graph *g;
        MC_CHECK_OK(mc_graph_new(&g));
        for (int grad = 0; grad < 2; grad++) {
            mc_graph_set_grad_enabled(g, grad);
            mc_tensor *y;
            MC_CHECK_OK(mc_maxpool2d(g, x, sh[4], sh[5], sh[6], &y));
            float *expected = malloc((size_t)y->numel * sizeof(float));
            int32_t *argmax = malloc((size_t)y->numel * sizeof(int32_t));
            ck_assert(expected && argmax);
            mc_maxpool2d_naive(x->data, sh[0], sh[1], sh[2], sh[3], sh[4], sh[5], sh[6], expected,
                                   argmax);
            for (int64_t i = 0; i < y->numel; i++)
                ck_assert_msg(y->data[i] == expected[i] || (isnan(y->data[i]) && isnan(expected[i])),
                              "shape %d, output %lld: %g, reference %g", k, (long long)i, y->data[i],
                              expected[i]);
            if (grad) {
                /* dy = 1 + index: dx at each winner = the sum of its outputs' dy. */
                float *dy = malloc((size_t)y->numel * sizeof(float));
                float *dx = calloc((size_t)x->numel, sizeof(float));
                ck_assert(dy && dx);
                int64_t c = sh[3], plane_in = (int64_t)sh[1] * sh[2] * c;
                int64_t plane_out = y->numel / sh[0];
                for (int64_t i = 0; i < y->numel; i++) {
                    dy[i] = 1.0f + (float)i;
                    dx[i / plane_out * plane_in + (int64_t)argmax[i] * c + i % c] += dy[i];
                }
                mc_tensor_zero_grad(x);
                MC_CHECK_OK(mc_backward_with_grad(g, y, dy));
                assert_same_floats("maxpool dx", x->grad, dx, x->numel);
                free(dy), free(dx);
            }
            free(expected), free(argmax);
            mc_graph_reset(g);
        }
        mc_graph_free(g);
        mc_tensor_free(x);
    }
}
END_TEST

START_TEST(test_pool_bad_input) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *x = random_tensor(MC_SHAPE(1, 3, 3, 2), "feat", 1, false);
    mc_tensor *out;
    MC_CHECK_FAILS(mc_maxpool2d(g, x, 5, 1, 0, &out), MC_ERR_SHAPE, "feat (1, 3, 3, 2) is smaller than kernel 5 with padding 0 (x is NHWC: N, H, W, C)");
    MC_CHECK_FAILS(mc_maxpool2d(g, x, 3, 1, 2, &out), MC_ERR_ARG, "at most half the kernel");
    MC_CHECK_FAILS(mc_avgpool2d(g, x, 0, 1, 0, &out), MC_ERR_ARG, "kernel 0");
    MC_CHECK_FAILS(mc_adaptive_avgpool2d(g, x, 0, 2, &out), MC_ERR_ARG, "at least 1x1");
    MC_CHECK_OK(mc_tensor_reshape_inplace(x, MC_SHAPE(9, 2)));
    MC_CHECK_FAILS(mc_global_avgpool(g, x, &out), MC_ERR_SHAPE, "must be 4-D (N, H, W, C): activations are NHWC");
    MC_CHECK_FAILS(mc_avgpool2d(g, x, 2, 2, 0, &out), MC_ERR_SHAPE, "must be 4-D");
    mc_graph_free(g);
    mc_tensor_free(x);
}
END_TEST


/* ==== fused ops against the ops they replace ==== */


/* One run of a batch-norm variant: its output, running statistics (mean,
 * then var) and the gradients of x, weight, bias and the shortcut. */
typedef struct bn_run {
    float *output, *running, *grads[4];
} bn_run;

/* How the shortcut of a run is made. */
typedef enum { NO_SHORTCUT, SHORTCUT, SHORTCUT_IS_X } shortcut_kind;

/* x (3, 5, 4, 7) and per-channel weight, bias, running statistics made
 * from seeds seed..seed+3 (the shortcut from seed+4, or x itself), through
 * the fused op (fused) or the ops it replaces: relu(BN(x)), or with a
 * shortcut relu(BN(x) + shortcut); backward from y_grad. */
static bn_run run_bn(bool fused, shortcut_kind with_shortcut, bool training,
                     const mc_tensor *y_grad, uint64_t seed) {
    mc_tensor *x = random_tensor(MC_SHAPE(3, 5, 4, 7), "x", seed, true);
    mc_tensor *w = random_tensor(MC_SHAPE(7), "bn.weight", seed + 1, true);
    mc_tensor *b = random_tensor(MC_SHAPE(7), "bn.bias", seed + 2, true);
    mc_tensor *rm = random_tensor(MC_SHAPE(7), "bn.running_mean", seed + 3, false);
    mc_tensor *shortcut = NULL;
    if (with_shortcut == SHORTCUT) shortcut = random_tensor(MC_SHAPE(3, 5, 4, 7), "shortcut", seed + 4, true);
    if (with_shortcut == SHORTCUT_IS_X) shortcut = x;
    mc_tensor *rv;
    MC_CHECK_OK(mc_tensor_new(&rv, MC_SHAPE(7), "bn.running_var"));
    mc_tensor_fill(rv, 0.75f);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *y;
    if (fused && shortcut) {
        MC_CHECK_OK(mc_batchnorm2d_add_relu(g, x, w, b, rm, rv, training, 0.1f, 1e-5f, shortcut, &y));
    } else if (fused) {
        MC_CHECK_OK(mc_batchnorm2d_relu(g, x, w, b, rm, rv, training, 0.1f, 1e-5f, &y));
    } else {
        MC_CHECK_OK(mc_batchnorm2d(g, x, w, b, rm, rv, training, 0.1f, 1e-5f, &y));
        if (shortcut) MC_CHECK_OK(mc_add_relu(g, y, shortcut, &y));
        else MC_CHECK_OK(mc_relu(g, y, &y));
    }
    MC_CHECK_OK(mc_backward_with_grad(g, y, y_grad->data));
    bn_run run = {.output = mc_test_copy_floats(y->data, y->numel)};
    run.running = malloc(14 * sizeof(float));
    ck_assert_ptr_nonnull(run.running);
    memcpy(run.running, rm->data, 7 * sizeof(float));
    memcpy(run.running + 7, rv->data, 7 * sizeof(float));
    mc_tensor *params[4] = {x, w, b, shortcut};
    for (int k = 0; k < 4 && params[k]; k++) run.grads[k] = mc_test_copy_floats(params[k]->grad, params[k]->numel);
    mc_graph_free(g);
    mc_tensor_free(x), mc_tensor_free(w), mc_tensor_free(b);
    if (shortcut != x) mc_tensor_free(shortcut);
    mc_tensor_free(rm), mc_tensor_free(rv);
    return run;
}

/* The fused op and the ops it replaces agree bit for bit: output, running
 * statistics, every gradient; and some outputs are clipped by the relu, or
 * the relu part is untested. */
static void assert_bn_runs_match(shortcut_kind with_shortcut, bool training, uint64_t seed,
                                 uint64_t grad_seed) {
    mc_tensor *y_grad = random_tensor(MC_SHAPE(3, 5, 4, 7), "dy", grad_seed, false);
    bn_run fused = run_bn(true, with_shortcut, training, y_grad, seed);
    bn_run unfused = run_bn(false, with_shortcut, training, y_grad, seed);
    int zeros = 0;
    for (int64_t i = 0; i < y_grad->numel; i++) zeros += unfused.output[i] == 0.0f;
    ck_assert_int_gt(zeros, 10);
    assert_same_floats("output", unfused.output, fused.output, y_grad->numel);
    assert_same_floats("running stats", unfused.running, fused.running, 14);
    assert_same_floats("dx", unfused.grads[0], fused.grads[0], y_grad->numel);
    assert_same_floats("dweight", unfused.grads[1], fused.grads[1], 7);
    assert_same_floats("dbias", unfused.grads[2], fused.grads[2], 7);
    if (with_shortcut) assert_same_floats("dshortcut", unfused.grads[3], fused.grads[3], y_grad->numel);
    bn_run *runs[2] = {&fused, &unfused};
    for (int r = 0; r < 2; r++) {
        free(runs[r]->output), free(runs[r]->running);
        for (int k = 0; k < 4; k++) free(runs[r]->grads[k]);
    }
    mc_tensor_free(y_grad);
}

/* relu(batchnorm2d(x)) as one op and as two: same output, same gradients of
 * x, weight and bias, same running statistics; _i = 0 training, 1 eval. */
START_TEST(test_batchnorm2d_relu_matches_unfused) { assert_bn_runs_match(NO_SHORTCUT, _i == 0, 70, 77); }
END_TEST

/* relu(batchnorm2d(x) + shortcut) as one op and as two (mc_batchnorm2d then
 * mc_add_relu): the same, and the same gradient of the shortcut. */
START_TEST(test_batchnorm2d_add_relu_matches_unfused) { assert_bn_runs_match(SHORTCUT, _i == 0, 60, 78); }
END_TEST

/* The same with x its own shortcut: both terms of x's gradient add up in
 * one buffer. */
START_TEST(test_batchnorm2d_add_relu_own_shortcut_matches_unfused) {
    assert_bn_runs_match(SHORTCUT_IS_X, _i == 0, 50, 79);
}
END_TEST

/* Gradients of x and the shortcut from batch norm kind `kind` (0 plain,
 * 1 with relu, 2 with shortcut and relu, 3 as 2 with the shortcut also
 * added to the output, so that its gradient exists when the op's backward
 * runs). `steps`: the op reads step tensors (reshapes of x and the
 * shortcut), whose gradients it stores unzeroed (mc_grad_buffer_fresh),
 * instead of heap tensors, whose gradients it adds to zeros. grads[0]: x's,
 * grads[1]: the shortcut's (or NULL). */
static void bn_input_grads(int kind, bool training, bool steps, float *grads[2]) {
    const mc_shape shape = MC_SHAPE(3, 5, 4, 7);
    mc_tensor *x = random_tensor(shape, "x", 90, true);
    mc_tensor *w = random_tensor(MC_SHAPE(7), "bn.weight", 91, true);
    mc_tensor *b = random_tensor(MC_SHAPE(7), "bn.bias", 92, true);
    mc_tensor *rm = random_tensor(MC_SHAPE(7), "bn.running_mean", 93, false);
    mc_tensor *rv = random_tensor(MC_SHAPE(7), "bn.running_var", 94, false);
    for (int ch = 0; ch < 7; ch++) rv->data[ch] = 0.5f + fabsf(rv->data[ch]);
    mc_tensor *s = kind >= 2 ? random_tensor(shape, "shortcut", 95, true) : NULL;
    mc_tensor *dy = random_tensor(shape, "dy", 96, false);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *xin = x, *sin = s, *y;
    if (steps) MC_CHECK_OK(mc_reshape(g, x, shape, &xin));
    if (steps && s) MC_CHECK_OK(mc_reshape(g, s, shape, &sin));
    if (kind == 0) MC_CHECK_OK(mc_batchnorm2d(g, xin, w, b, rm, rv, training, 0.1f, 1e-5f, &y));
    if (kind == 1) MC_CHECK_OK(mc_batchnorm2d_relu(g, xin, w, b, rm, rv, training, 0.1f, 1e-5f, &y));
    if (kind >= 2)
        MC_CHECK_OK(mc_batchnorm2d_add_relu(g, xin, w, b, rm, rv, training, 0.1f, 1e-5f, sin, &y));
    if (kind == 3) MC_CHECK_OK(mc_add(g, y, sin, &y));
    MC_CHECK_OK(mc_backward_with_grad(g, y, dy->data));
    grads[0] = mc_test_copy_floats(x->grad, x->numel);
    grads[1] = s ? mc_test_copy_floats(s->grad, s->numel) : NULL;
    mc_graph_free(g);
    mc_tensor *all[] = {x, w, b, rm, rv, s, dy};
    for (int k = 0; k < 7; k++) mc_tensor_free(all[k]);
}

/* Backward storing into new, unzeroed gradients gives the bits of adding
 * into zeros, also when only x's gradient is new (kind 3); _i: kind (_i % 4),
 * training when _i < 4. */
START_TEST(test_batchnorm2d_fresh_gradients_match_added) {
    float *stored[2], *added[2];
    bn_input_grads(_i % 4, _i < 4, true, stored);
    bn_input_grads(_i % 4, _i < 4, false, added);
    const int64_t n = 3 * 5 * 4 * 7;
    assert_same_floats("dx", added[0], stored[0], n);
    if (added[1]) assert_same_floats("dshortcut", added[1], stored[1], n);
    for (int k = 0; k < 2; k++) free(stored[k]), free(added[k]);
}
END_TEST

/* The fused op through finite differences too (its own backward path). */
static mc_status bn_relu_for_check(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
    (void)ctx;
    return mc_batchnorm2d_relu(g, in[0], in[1], in[2], NULL, NULL, true, 0.1f, 1e-5f, out);
}

/* Smallest |BN output before the relu| of x (train mode, weight w, bias b). */
static float min_abs_bn_output(mc_tensor *x, mc_tensor *w, mc_tensor *b) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_grad_enabled(g, false);
    mc_tensor *y;
    MC_CHECK_OK(mc_batchnorm2d(g, x, w, b, NULL, NULL, true, 0.1f, 1e-5f, &y));
    float smallest = INFINITY;
    for (int64_t i = 0; i < y->numel; i++) smallest = fminf(smallest, fabsf(y->data[i]));
    mc_graph_free(g);
    return smallest;
}

START_TEST(test_batchnorm2d_relu_gradcheck) {
    /* Finite differences are wrong across the relu's kink: take the first
     * seed whose BN outputs all stay 0.02 away from 0, further than a
     * +-eps step of one input moves them. */
    for (uint64_t seed = 80; seed < 180; seed += 3) {
        mc_tensor *in[3] = {random_tensor(MC_SHAPE(2, 3, 3, 4), "x", seed, true),
                            random_tensor(MC_SHAPE(4), "w", seed + 1, true),
                            random_tensor(MC_SHAPE(4), "b", seed + 2, true)};
        bool usable = min_abs_bn_output(in[0], in[1], in[2]) > 0.02f;
        if (usable) {
            mc_gradcheck_options options = {.eps = 1e-3, .rtol = 2e-2, .atol = 2e-3};
            mc_assert_gradcheck("batchnorm2d_relu", 3, in, bn_relu_for_check, NULL, &options);
        }
        for (int k = 0; k < 3; k++) mc_tensor_free(in[k]);
        if (usable) return;
    }
    ck_abort_msg("no seed gave BN outputs away from the relu's kink");
}
END_TEST

/* The op's vectorised normalisation against the element-at-a-time
 * reference, through the op in eval mode (mean, invstd from the running
 * statistics), with and without relu, with and without affine. */
START_TEST(test_batchnorm2d_normalize_matches_reference) {
    mc_tensor *x = random_tensor(MC_SHAPE(2, 3, 5, 6), "x", 90, false);
    mc_tensor *w = random_tensor(MC_SHAPE(6), "w", 91, false);
    mc_tensor *b = random_tensor(MC_SHAPE(6), "b", 92, false);
    mc_tensor *rm = random_tensor(MC_SHAPE(6), "rm", 93, false), *rv;
    MC_CHECK_OK(mc_tensor_new(&rv, MC_SHAPE(6), "rv"));
    for (int ch = 0; ch < 6; ch++) rv->data[ch] = 0.5f + 0.25f * (float)ch;
    float invstd[6], expected[180];
    for (int ch = 0; ch < 6; ch++) invstd[ch] = (float)(1.0 / sqrt((double)rv->data[ch] + 1e-5f));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    for (int variant = 0; variant < 4; variant++) {
        bool relu = variant & 1, affine = variant & 2;
        mc_tensor *y;
        mc_status (*op)(mc_graph *, mc_tensor *, mc_tensor *, mc_tensor *, mc_tensor *, mc_tensor *,
                        bool, float, float, mc_tensor **) = relu ? mc_batchnorm2d_relu : mc_batchnorm2d;
        MC_CHECK_OK(op(g, x, affine ? w : NULL, affine ? b : NULL, rm, rv, false, 0.1f, 1e-5f, &y));
        mc_batchnorm2d_normalize_naive(30, 6, x->data, rm->data, invstd, affine ? w->data : NULL,
                                           affine ? b->data : NULL, relu, expected);
        assert_same_floats(relu ? "bn+relu" : "bn", y->data, expected, 180);
    }
    mc_graph_free(g);
    mc_tensor_free(x), mc_tensor_free(w), mc_tensor_free(b), mc_tensor_free(rm), mc_tensor_free(rv);
}
END_TEST

/* relu(a + b) as one op and as mc_add then mc_relu; also a + a. */
START_TEST(test_add_relu_matches_unfused) {
    mc_tensor *dy = random_tensor(MC_SHAPE(2, 3, 4, 5), "dy", 60, false);
    for (int same = 0; same < 2; same++) {
        float *out[2], *da[2], *db[2];
        for (int fused = 0; fused < 2; fused++) {
            mc_tensor *a = random_tensor(MC_SHAPE(2, 3, 4, 5), "a", 61, true);
            mc_tensor *b = random_tensor(MC_SHAPE(2, 3, 4, 5), "b", 62, true);
            mc_tensor *second = same ? a : b;
            mc_graph *g;
            MC_CHECK_OK(mc_graph_new(&g));
            mc_tensor *y;
            if (fused) {
                MC_CHECK_OK(mc_add_relu(g, a, second, &y));
            } else {
                MC_CHECK_OK(mc_add(g, a, second, &y));
                MC_CHECK_OK(mc_relu(g, y, &y));
            }
            MC_CHECK_OK(mc_backward_with_grad(g, y, dy->data));
            out[fused] = malloc(120 * sizeof(float)), da[fused] = malloc(120 * sizeof(float));
            db[fused] = calloc(120, sizeof(float));
            ck_assert(out[fused] && da[fused] && db[fused]);
            memcpy(out[fused], y->data, 120 * sizeof(float));
            memcpy(da[fused], a->grad, 120 * sizeof(float));
            if (!same) memcpy(db[fused], b->grad, 120 * sizeof(float));
            mc_graph_free(g);
            mc_tensor_free(a), mc_tensor_free(b);
        }
        int zeros = 0;
        for (int i = 0; i < 120; i++) zeros += out[1][i] == 0.0f;
        ck_assert_int_gt(zeros, 10);
        assert_same_floats("add_relu", out[1], out[0], 120);
        assert_same_floats("d a", da[1], da[0], 120);
        assert_same_floats("d b", db[1], db[0], 120);
        for (int fused = 0; fused < 2; fused++) free(out[fused]), free(da[fused]), free(db[fused]);
    }
    mc_tensor_free(dy);
}
END_TEST

START_TEST(test_add_relu_bad_input) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *a = random_tensor(MC_SHAPE(1, 2, 2, 3), "block.out", 1, false);
    mc_tensor *b = random_tensor(MC_SHAPE(1, 2, 2, 1), "shortcut", 2, false);
    mc_tensor *out;
    MC_CHECK_FAILS(mc_add_relu(g, a, b, &out), MC_ERR_SHAPE, "shortcut (1, 2, 2, 1)");
    MC_CHECK_FAILS(mc_add_relu(g, a, NULL, &out), MC_ERR_ARG, "NULL");
    mc_graph_free(g);
    mc_tensor_free(a), mc_tensor_free(b);
}
END_TEST

static Suite *conv_suite(void) {
    Suite *s = suite_create("ops_conv");
    const TTest *const conv[] = {test_conv2d_hand_example, test_conv2d_bad_input,
                                 test_conv2d_no_grad_records_nothing,
                                 test_conv2d_winograd_applies_only_to_3x3_s1_p1, NULL};
    const mc_test_loop conv_tables[] = {
        {test_conv2d_gradcheck, 0, N_CONV_CASES},
        {test_conv2d_fast_matches_naive, 0, N_FAST_CASES},
        {test_conv2d_chunked_matches_naive, 0, N_FAST_CASES},
        {test_conv2d_same_bits_any_threads, 0, N_FAST_CASES + 1},
        {test_conv2d_winograd_matches_naive, 0, N_WINOGRAD_CASES},
        {test_conv2d_winograd_chunked_matches_naive, 0, N_WINOGRAD_CASES},
        {test_conv2d_winograd_same_bits_any_threads, 0, N_WINOGRAD_CASES},
        {test_conv2d_winograd_through_op, 0, N_WINOGRAD_CASES},
        {test_conv2d_winograd_gradcheck, 0, N_WINOGRAD_CASES - 1},
        {NULL, 0, 0}};
    tcase_set_timeout(mc_test_add_loops(mc_test_add_case(s, "conv2d", conv), conv_tables), 120);

    const TTest *const bn[] = {test_batchnorm2d_matches_pytorch, test_batchnorm2d_without_affine,
                               test_batchnorm2d_bad_input, test_batchnorm2d_relu_gradcheck,
                               test_batchnorm2d_normalize_matches_reference,
                               test_batchnorm2d_statistics_far_from_zero,
                               test_batchnorm2d_synchronised_shards_merge,
                               test_batchnorm2d_synchronised_counts_the_union,
                               test_add_relu_matches_unfused, test_add_relu_bad_input, NULL};
    const mc_test_loop bn_tables[] = {{test_batchnorm2d_gradcheck, 0, 2},
                                      {test_batchnorm2d_relu_matches_unfused, 0, 2},
                                      {test_batchnorm2d_add_relu_matches_unfused, 0, 2},
                                      {test_batchnorm2d_add_relu_own_shortcut_matches_unfused, 0, 2},
                                      {test_batchnorm2d_fresh_gradients_match_added, 0, 8},
                                      {NULL, 0, 0}};
    tcase_set_timeout(mc_test_add_loops(mc_test_add_case(s, "batchnorm2d", bn), bn_tables), 120);

    const TTest *const pool[] = {test_pools_match_pytorch, test_maxpool_padding_is_minus_infinity,
                                 test_maxpool_matches_reference, test_pool_bad_input, NULL};
    const mc_test_loop pool_tables[] = {{test_pool_gradcheck, 0, N_POOL_CASES}, {NULL, 0, 0}};
    tcase_set_timeout(mc_test_add_loops(mc_test_add_case(s, "pool", pool), pool_tables), 120);
    return s;
}

int main(void) { return mc_test_run_suite(conv_suite()); }

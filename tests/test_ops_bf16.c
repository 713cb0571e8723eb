/* The GEMM-shaped ops on a bf16 graph (mc_graph_set_precision) against the
 * same ops on an fp32 graph, forward and every gradient.
 *
 * THE BOUND for the linear ops (conv2d, linear, matmul): each output or
 * gradient element is a sum of products a*b; bf16 rounds each operand by
 * at most 2^-9 relative, so each product moves by at most about 2^-8 of
 * |a*b|, and both sums are fp32 (at most K * 2^-24 of the same, far less
 * for K of a few hundred). So |bf16 - fp32| <= 2^-7 * sum |a*b| with
 * margin, where sum |a*b| is the same op run in fp32 on |inputs| and
 * |upstream gradient| (for each output and gradient, the op on absolute
 * values gives exactly the sum of absolute products). Elementwise, so a
 * wrong element anywhere (a mis-packed operand) fails it.
 *
 * Attention is not linear (the softmax sits between its two products), so
 * it gets a normwise bound instead: max |bf16 - fp32| <= 2^-5 * max |fp32|
 * per output and gradient.
 *
 * A bf16 graph's products only run in bf16 on our AVX-512 kernel (on
 * vdpbf16ps or its emulation); without AVX-512F the suite is skipped. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "../lib/ops/conv_internal.h"
#include "../lib/ops/gemm_internal.h"

enum { MAX_IN = 3 };

/* One op under test: its inputs' shapes (bias may be absent: n_in). */
typedef mc_status (*op_fn)(mc_graph *g, mc_tensor **in, const void *ctx, mc_tensor **out);

typedef struct op_case {
    const char *name;
    op_fn op;
    const void *ctx;
    int n_in;
    mc_shape shapes[MAX_IN];
    bool normwise; /* attention: the normwise bound */
} op_case;

/* Outputs of one run: the op's output and each input's gradient. */
typedef struct op_results {
    float *out, *grad[MAX_IN];
    int64_t out_numel;
} op_results;

/* The op on a graph of `precision` with inputs `in` and upstream gradient
 * `dout` (NULL: a fixed pseudo-random one, the same every run; absolute:
 * its absolute values). */
static op_results run(const op_case *c, mc_precision precision, mc_tensor **in, bool absolute) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    ck_assert_int_eq(mc_graph_set_precision(g, precision), MC_PRECISION_FP32);
    ck_assert_int_eq(mc_graph_precision(g), precision);
    for (int i = 0; i < c->n_in; i++) mc_tensor_zero_grad(in[i]);
    mc_tensor *y;
    MC_CHECK_OK(c->op(g, in, c->ctx, &y));
    float *dout = malloc((size_t)y->numel * sizeof(float));
    ck_assert_ptr_nonnull(dout);
    mc_rng rng;
    mc_rng_seed(&rng, 99);
    for (int64_t i = 0; i < y->numel; i++) {
        dout[i] = (float)mc_rng_uniform(&rng) * 2 - 1;
        if (absolute) dout[i] = fabsf(dout[i]);
    }
    MC_CHECK_OK(mc_backward_with_grad(g, y, dout));
    op_results r = {.out = mc_test_copy_floats(y->data, y->numel), .out_numel = y->numel};
    for (int i = 0; i < c->n_in; i++) r.grad[i] = mc_test_copy_floats(in[i]->grad, in[i]->numel);
    free(dout);
    mc_graph_free(g);
    return r;
}

static void free_results(op_results *r, int n_in) {
    free(r->out);
    for (int i = 0; i < n_in; i++) free(r->grad[i]);
}

static void check_elementwise(const char *what, const float *bf16, const float *fp32,
                              const float *magnitude, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const double bound = ldexp(1.0, -7) * magnitude[i] + 1e-7;
        ck_assert_msg(fabs((double)bf16[i] - fp32[i]) <= bound,
                      "%s[%lld]: bf16 %.7g, fp32 %.7g, bound %.3g", what, (long long)i, bf16[i],
                      fp32[i], bound);
    }
}

static void check_normwise(const char *what, const float *bf16, const float *fp32, int64_t n) {
    double worst = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)bf16[i] - fp32[i]));
        scale = fmax(scale, fabs((double)fp32[i]));
    }
    ck_assert_msg(worst <= ldexp(1.0, -5) * scale, "%s: max |bf16 - fp32| %.3g, max |fp32| %.3g",
                  what, worst, scale);
}

/* The case's inputs, uniform in [-1, 1), requiring gradients; an absent
 * bias (n_in < MAX_IN) is NULL. */
static void make_inputs(const op_case *c, uint64_t seed, mc_tensor *in[MAX_IN]) {
    for (int i = 0; i < MAX_IN; i++) in[i] = NULL;
    for (int i = 0; i < c->n_in; i++) {
        MC_CHECK_OK(mc_tensor_new(&in[i], c->shapes[i], "input"));
        mc_rng rng;
        mc_rng_seed(&rng, seed + (uint64_t)i);
        mc_tensor_uniform(in[i], &rng, -1.0f, 1.0f);
        MC_CHECK_OK(mc_tensor_set_requires_grad(in[i], true));
    }
}

/* A bf16 run that differs from fp32 at all (so the switch is really on),
 * within the bound. */
static void check_case(const op_case *c) {
    mc_tensor *in[MAX_IN];
    make_inputs(c, 10, in);
    op_results fp32 = run(c, MC_PRECISION_FP32, in, false);
    op_results bf16 = run(c, MC_PRECISION_BF16, in, false);
    ck_assert_msg(memcmp(fp32.out, bf16.out, (size_t)fp32.out_numel * sizeof(float)) != 0,
                  "%s: the bf16 graph computed exactly the fp32 result", c->name);
    char what[160];
    if (c->normwise) {
        snprintf(what, sizeof what, "%s forward", c->name);
        check_normwise(what, bf16.out, fp32.out, fp32.out_numel);
        for (int i = 0; i < c->n_in; i++) {
            snprintf(what, sizeof what, "%s gradient of input %d", c->name, i);
            check_normwise(what, bf16.grad[i], fp32.grad[i], in[i]->numel);
        }
    } else {
        for (int i = 0; i < c->n_in; i++)
            for (int64_t j = 0; j < in[i]->numel; j++) in[i]->data[j] = fabsf(in[i]->data[j]);
        op_results magnitude = run(c, MC_PRECISION_FP32, in, true);
        snprintf(what, sizeof what, "%s forward", c->name);
        check_elementwise(what, bf16.out, fp32.out, magnitude.out, fp32.out_numel);
        for (int i = 0; i < c->n_in; i++) {
            snprintf(what, sizeof what, "%s gradient of input %d", c->name, i);
            check_elementwise(what, bf16.grad[i], fp32.grad[i], magnitude.grad[i], in[i]->numel);
        }
        free_results(&magnitude, c->n_in);
    }
    free_results(&fp32, c->n_in), free_results(&bf16, c->n_in);
    for (int i = 0; i < c->n_in; i++) mc_tensor_free(in[i]);
}

/* ---- the ops ---- */

static mc_status conv_op(mc_graph *g, mc_tensor **in, const void *ctx, mc_tensor **out) {
    return mc_conv2d(g, in[0], in[1], in[2], *(const mc_conv2d_params *)ctx, out);
}
static mc_status linear_op(mc_graph *g, mc_tensor **in, const void *ctx, mc_tensor **out) {
    (void)ctx;
    return mc_linear(g, in[0], in[1], in[2], out);
}
static mc_status matmul_op(mc_graph *g, mc_tensor **in, const void *ctx, mc_tensor **out) {
    return mc_matmul(g, in[0], in[1], *(const bool *)ctx, out);
}
typedef struct attention_ctx {
    int heads;
    bool causal;
} attention_ctx;
static mc_status attention_op(mc_graph *g, mc_tensor **in, const void *ctx, mc_tensor **out) {
    const attention_ctx *a = ctx;
    return mc_attention(g, in[0], in[1], in[2], a->heads, a->causal, out);
}

static const mc_conv2d_params conv3x3 = {.stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
                                         .dilation_h = 1, .dilation_w = 1, .groups = 1};
static const mc_conv2d_params conv1x1_s2 = {.stride_h = 2, .stride_w = 2, .dilation_h = 1,
                                            .dilation_w = 1, .groups = 1};
static const mc_conv2d_params conv7x7_s2 = {.stride_h = 2, .stride_w = 2, .pad_h = 3, .pad_w = 3,
                                            .dilation_h = 1, .dilation_w = 1, .groups = 1};
static const mc_conv2d_params conv3x3_grouped = {.stride_h = 1, .stride_w = 1, .pad_h = 1,
                                                 .pad_w = 1, .dilation_h = 1, .dilation_w = 1,
                                                 .groups = 2};
static const bool plain = false, transposed = true;
static const attention_ctx causal_heads = {4, true}, full_heads = {2, false};

static const op_case cases[] = {
    /* 3x3 stride 1 on a 12x12 map: Winograd's shape in fp32, im2col in bf16 */
    {"conv 3x3", conv_op, &conv3x3, 3,
     {MC_SHAPE(2, 12, 12, 16), MC_SHAPE(24, 16, 3, 3), MC_SHAPE(24)}, false},
    {"conv 1x1 stride 2", conv_op, &conv1x1_s2, 2, {MC_SHAPE(2, 9, 9, 40), MC_SHAPE(33, 40, 1, 1)}, false},
    {"conv 7x7 stride 2", conv_op, &conv7x7_s2, 3,
     {MC_SHAPE(1, 17, 17, 3), MC_SHAPE(8, 3, 7, 7), MC_SHAPE(8)}, false},
    {"conv 3x3 grouped", conv_op, &conv3x3_grouped, 2,
     {MC_SHAPE(2, 6, 6, 8), MC_SHAPE(10, 4, 3, 3)}, false},
    {"linear", linear_op, NULL, 3, {MC_SHAPE(3, 7, 70), MC_SHAPE(45, 70), MC_SHAPE(45)}, false},
    {"matmul", matmul_op, &plain, 2, {MC_SHAPE(37, 130), MC_SHAPE(130, 29)}, false},
    {"matmul batched, b transposed", matmul_op, &transposed, 2,
     {MC_SHAPE(3, 13, 66), MC_SHAPE(3, 21, 66)}, false},
    {"attention causal", attention_op, &causal_heads, 3,
     {MC_SHAPE(2, 17, 64), MC_SHAPE(2, 17, 64), MC_SHAPE(2, 17, 64)}, true},
    {"attention", attention_op, &full_heads, 3,
     {MC_SHAPE(3, 50, 32), MC_SHAPE(3, 50, 32), MC_SHAPE(3, 50, 32)}, true},
};

START_TEST(test_bf16_graph_within_bound_of_fp32) {
    check_case(&cases[_i]);
}
END_TEST

/* Both bf16 micro-kernels give the same op results bit for bit (where the
 * CPU has vdpbf16ps; the emulation otherwise runs every case above). */
START_TEST(test_bf16_ops_same_on_emulation) {
    const op_case *c = &cases[0];
    mc_tensor *in[MAX_IN];
    make_inputs(c, 20, in);
    op_results native = run(c, MC_PRECISION_BF16, in, false);
    mc_gemm_bf16_force_emulation(true);
    op_results emulated = run(c, MC_PRECISION_BF16, in, false);
    mc_gemm_bf16_force_emulation(false);
    ck_assert(memcmp(native.out, emulated.out, (size_t)native.out_numel * sizeof(float)) == 0);
    for (int i = 0; i < c->n_in; i++)
        ck_assert(memcmp(native.grad[i], emulated.grad[i], (size_t)in[i]->numel * sizeof(float)) ==
                  0);
    free_results(&native, c->n_in), free_results(&emulated, c->n_in);
    for (int i = 0; i < c->n_in; i++) mc_tensor_free(in[i]);
}
END_TEST

/* The op's results, output and gradients, equal bit for bit. */
static void assert_same_results(const char *what, const op_results *a, const op_results *b,
                                mc_tensor **in, int n_in) {
    ck_assert_msg(memcmp(a->out, b->out, (size_t)a->out_numel * sizeof(float)) == 0, "%s: output",
                  what);
    for (int i = 0; i < n_in; i++)
        ck_assert_msg(memcmp(a->grad[i], b->grad[i], (size_t)in[i]->numel * sizeof(float)) == 0,
                      "%s: gradient of input %d", what, i);
}

/* A weight's bf16 copy (kept on the tensor, made once per change:
 * lib/ops/weight_bf16.c) follows the weight. After an optimizer step, and
 * after a write of the data announced by mc_tensor_touch, the op's output
 * and every gradient equal, bit for bit, those of the same op given the
 * weight as a tensor of no heap (rounded where it is packed, as a fresh
 * conversion; no copy kept), and differ from before the change. */
START_TEST(test_bf16_weight_copy_follows_the_weight) {
    const op_case *c = &cases[_i];
    mc_tensor *in[MAX_IN];
    make_inputs(c, 30, in);
    mc_tensor *weight = in[1];
    mc_param_list params = {0};
    MC_CHECK_OK(mc_params_add(&params, weight)); /* the list owns it now */
    mc_optimizer *sgd;
    MC_CHECK_OK(mc_optimizer_sgd(&sgd, &params, (mc_sgd_config){.lr = 0.05f}));
    op_results previous = run(c, MC_PRECISION_BF16, in, false);
    ck_assert_msg(weight->bf16 != NULL, "%s: no bf16 copy of the weight was kept", c->name);
    for (int change = 0; change < 2; change++) {
        if (change == 0) {
            MC_CHECK_OK(mc_optimizer_step(sgd)); /* by the gradient run() left */
        } else {
            for (int64_t i = 0; i < weight->numel; i += 3) weight->data[i] *= -0.5f;
            mc_tensor_touch(weight);
        }
        op_results cached = run(c, MC_PRECISION_BF16, in, false);
        mc_tensor uncached = *weight; /* the same data, not a heap tensor: no copy */
        uncached.on_heap = false, uncached.owns_data = false, uncached.bf16 = NULL;
        uncached.grad = NULL;
        mc_tensor *fresh_in[MAX_IN] = {in[0], &uncached, in[2]};
        op_results fresh = run(c, MC_PRECISION_BF16, fresh_in, false);
        ck_assert_ptr_null(uncached.bf16);
        char what[160];
        snprintf(what, sizeof what, "%s after change %d", c->name, change);
        assert_same_results(what, &cached, &fresh, in, c->n_in);
        ck_assert_msg(memcmp(cached.out, previous.out, (size_t)cached.out_numel * sizeof(float)) != 0,
                      "%s: the output did not change with the weight", what);
        free_results(&previous, c->n_in), free_results(&fresh, c->n_in);
        previous = cached;
    }
    free_results(&previous, c->n_in);
    mc_optimizer_free(sgd);
    mc_params_free(&params);
    mc_tensor_free(in[0]), mc_tensor_free(in[2]);
}
END_TEST

/* A convolution's bf16 weight gradient in groups of rows (conv.c: a small
 * weight and several chunks of columns; the small column budget set here
 * makes the chunks): within the bound of fp32 as above, and the output and
 * every gradient the same, bit for bit, at 1, 2 and 3 threads (the groups
 * depend on the shape and the budget only). */
START_TEST(test_bf16_conv_weight_gradient_in_row_groups) {
    const op_case *c = &cases[_i];
    mc_conv2d_set_column_budget(2048); /* 6 to 25 rows per chunk here */
    check_case(c);
    mc_tensor *in[MAX_IN];
    make_inputs(c, 40, in);
    const int threads = mc_get_num_threads();
    mc_set_num_threads(1);
    op_results one = run(c, MC_PRECISION_BF16, in, false);
    for (int n = 2; n <= 3; n++) {
        mc_set_num_threads(n);
        op_results more = run(c, MC_PRECISION_BF16, in, false);
        char what[160];
        snprintf(what, sizeof what, "%s, %d threads against 1", c->name, n);
        assert_same_results(what, &one, &more, in, c->n_in);
        free_results(&more, c->n_in);
    }
    mc_set_num_threads(threads);
    mc_conv2d_set_column_budget(0); /* the default again */
    free_results(&one, c->n_in);
    for (int i = 0; i < c->n_in; i++) mc_tensor_free(in[i]);
}
END_TEST

int main(void) {
    if (!mc_gemm_avx512_available())
        return mc_test_skip("bf16 graphs (this CPU has no AVX-512F: products stay fp32)");
    /* Our kernel even under MMCHAIN_GEMM=openblas (which keeps fp32). */
    if (mc_gemm_set_kernel(MC_GEMM_AVX512) != MC_OK) return EXIT_FAILURE;
    Suite *s = suite_create("ops_bf16");
    TCase *tc = tcase_create("ops");
    tcase_add_loop_test(tc, test_bf16_graph_within_bound_of_fp32, 0,
                        (int)(sizeof cases / sizeof cases[0]));
    if (mc_gemm_bf16_native_available()) tcase_add_test(tc, test_bf16_ops_same_on_emulation);
    /* The cases whose second input is a weight: the convolutions and linear. */
    tcase_add_loop_test(tc, test_bf16_weight_copy_follows_the_weight, 0, 5);
    tcase_add_loop_test(tc, test_bf16_conv_weight_gradient_in_row_groups, 0, 4); /* the convs */
    suite_add_tcase(s, tc);
    return mc_test_run_suite(s);
}

/* The GEMM-shaped ops on a bf16 graph (mc_graph_set_precision) against the
 * same ops on an fp32 graph, forward and every gradient.
 *
 * THE BOUND for the linear ops (conv2d, linear, matmul): each output or
 * gradient element is a sum of products a*b; bf16 rounds each operand by
 * at most u = 2^-8 relative, so each product moves by at most 2u + u^2 =
 * 2^-7 + 2^-16 of |a*b|, and both sums are fp32 (at most K * 2^-24 of the
 * same: under 2^-12 for K up to a few thousand). So |bf16 - fp32| <=
 * (2^-7 + 2^-11) * sum |a*b|, where sum |a*b| is the same op run in fp32 on |inputs| and
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
#include "../lib/ops/naive.h"

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
        const double bound = (ldexp(1.0, -7) + ldexp(1.0, -11)) * magnitude[i] + 1e-7;
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
static const mc_conv2d_params conv1x1 = {.stride_h = 1, .stride_w = 1, .dilation_h = 1,
                                         .dilation_w = 1, .groups = 1};
static const mc_conv2d_params conv1x1_grouped = {.stride_h = 1, .stride_w = 1, .dilation_h = 1,
                                                 .dilation_w = 1, .groups = 2};
static const mc_conv2d_params conv7x7_s2 = {.stride_h = 2, .stride_w = 2, .pad_h = 3, .pad_w = 3,
                                            .dilation_h = 1, .dilation_w = 1, .groups = 1};
static const mc_conv2d_params conv3x3_grouped = {.stride_h = 1, .stride_w = 1, .pad_h = 1,
                                                 .pad_w = 1, .dilation_h = 1, .dilation_w = 1,
                                                 .groups = 2};
static const bool plain = false, transposed = true;
static const attention_ctx causal_heads = {4, true}, full_heads = {2, false};

static const op_case cases[] = {
    /* 3x3 stride 1 on a 12x12 map, 72 tiles: Winograd's shape in fp32; these
     * cases keep bf16 graphs on im2col (main), Winograd's bf16 bound is its
     * own (test_bf16_winograd_conv) */
    {"conv 3x3", conv_op, &conv3x3, 3,
     {MC_SHAPE(2, 12, 12, 16), MC_SHAPE(24, 16, 3, 3), MC_SHAPE(24)}, false},
    {"conv 1x1 stride 2", conv_op, &conv1x1_s2, 2, {MC_SHAPE(2, 9, 9, 40), MC_SHAPE(33, 40, 1, 1)}, false},
    {"conv 7x7 stride 2", conv_op, &conv7x7_s2, 3,
     {MC_SHAPE(1, 17, 17, 3), MC_SHAPE(8, 3, 7, 7), MC_SHAPE(8)}, false},
    {"conv 3x3 grouped", conv_op, &conv3x3_grouped, 2,
     {MC_SHAPE(2, 6, 6, 8), MC_SHAPE(10, 4, 3, 3)}, false},
    /* K = 9 * 512 = 4608: its bf16 products split K (mc_gemm_bf16_k_chunks),
     * so the forward's chunks at several threads are the loop's own
     * (conv.c; at these sizes an even cut would give the same bits, but a
     * chunk that path skipped would show) */
    {"conv 3x3 deep", conv_op, &conv3x3, 2,
     {MC_SHAPE(2, 5, 5, 512), MC_SHAPE(8, 512, 3, 3)}, false},
    /* 1x1 stride 1: x itself is the columns (conv.c's direct products); the
     * weight's bf16 copy is rounded as stored, its order being the one the
     * products read, with groups too */
    {"conv 1x1", conv_op, &conv1x1, 3, {MC_SHAPE(2, 7, 9, 40), MC_SHAPE(36, 40, 1, 1), MC_SHAPE(36)},
     false},
    {"conv 1x1 grouped", conv_op, &conv1x1_grouped, 2,
     {MC_SHAPE(2, 6, 5, 24), MC_SHAPE(20, 12, 1, 1)}, false},
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
 * depend on the shape and the budget only). Some cases never group, and
 * for them it checks the thread counts alone: the 1x1 stride-1 ones gather
 * no columns (their products read x itself), and the 1x1 stride-2 one's
 * 50 rows make two chunks of 25, fewer than the four that two groups
 * need (weight_grad_groups). */
START_TEST(test_bf16_conv_weight_gradient_in_row_groups) {
    const op_case *c = &cases[_i];
    mc_conv2d_set_column_budget(2048); /* 1 to 25 rows per chunk where columns are gathered */
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

/* ---- Winograd F(2x2, 3x3) with bf16 operands ----
 *
 * THE BOUND. Per 2x2 tile (conv_winograd.c), output q of the tile is
 *     y_q = sum_k a_qk sum_c U_kc V_kc,   U = G g G^T, V = B^T d B,
 * k over the 16 positions, a_qk in {0, +-1} (A^T . A). bf16 rounds U and V
 * where the products pack them, each by at most u = 2^-8 relative
 * (8 significant bits, round to nearest), so each product U V moves by at
 * most (2u + u^2) |U| |V|; products and sums are fp32. Hence
 *     |y_q(bf16) - y_q| <= (2u + u^2) W_q + fp32 terms,
 *     W_q = sum_k |a_qk| sum_c (|G| |g| |G|^T)_k (|B^T| |d| |B|)_k,
 * the same pipeline run on absolute values and absolute transforms (which
 * bounds |U| and |V| entry by entry). The fp32 terms (a few 2^-24 per
 * transform, C * 2^-24 for the sums over channels) stay under 2^-13 W_q
 * for the channels here, so the check is (2^-7 + 2^-12) W_q, elementwise.
 *
 * RELATIVE TO sum |x||w| (S_q, per output: im2col's bf16 error is at most
 * about 2u S_q, the bound of the cases above): W_q weighs each |pixel| |tap|
 * pair of the tile by the absolute transform entries connecting them to q,
 * including pairs that do not meet in the direct sum. For inputs of one
 * magnitude, |B^T| has row sums 2, |G| row sums 1, 3/2, 3/2, 1, and |A^T|
 * takes three of four, so inside the image W_q = 4 * 4 * 4 = 64 against
 * S_q = 9 (7.1 x); at a corner (S_q = 4, zeros of the padding in the tile)
 * the ratio reaches 49/4 = 12.25 (computed over all tile positions). So
 * c = 2 * 12.25 = 24.5: |err| <= 24.5 * 2^-8 S_q for equal magnitudes
 * (3.4 bits fewer than the inputs' 8), against c = 2 for im2col. Inputs of
 * unequal magnitudes can exceed that ratio (a large pixel that q's taps
 * weigh little still enters V), which is why W_q is the elementwise check;
 * the S_q one (c = 24.5) is checked on this test's uniform data, where the
 * errors also stay far below the worst case. The reference is the naive
 * convolution (double sums, lib/ops/naive.h); the same data through the
 * bf16 im2col path is checked against 2u S_q and both measured maxima of
 * |err| / S_q are printed in units of 2^-8.
 *
 * NORMWISE. Those worst cases are far from the typical error (the roundings
 * are independent and do not add up coherently), so they would let a
 * systematic error of the same order pass (a 2^-6 scale of U did). So also
 * ||err|| / ||y|| (2-norms), measured here at 3.6-4.0e-3 for Winograd
 * (about u) and 1.9-2.1e-3 for im2col (about u / 2), is checked at twice
 * that: 2^-7 and 2^-8. */

/* The Winograd conv's W_q above for every output.
 * in: (N, H, W, CIN); kernel (ci, co) tap t at kernel[(ci * COUT + co) * 9 + t];
 * magnitude: (N, H, W, COUT) in double. */
static void winograd_magnitude(int64_t n, int64_t h, int64_t w, int64_t cin, int64_t cout,
                               const float *in, const float *kernel, double *magnitude) {
    static const double bt[4][4] = {{1, 0, 1, 0}, {0, 1, 1, 0}, {0, 1, 1, 0}, {0, 1, 0, 1}};
    static const double gm[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, 0.5, 0.5}, {0, 0, 1}};
    static const double at[2][4] = {{1, 1, 1, 0}, {0, 1, 1, 1}};
    double *u = malloc((size_t)(cin * cout * 16) * sizeof(double)); /* |G||g||G|^T per (ci, co) */
    double *v = malloc((size_t)(cin * 16) * sizeof(double));        /* |B^T||d||B| per ci */
    ck_assert(u && v);
    for (int64_t k = 0; k < cin * cout; k++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                double sum = 0;
                for (int a = 0; a < 3; a++)
                    for (int b = 0; b < 3; b++)
                        sum += gm[i][a] * fabs((double)kernel[k * 9 + 3 * a + b]) * gm[j][b];
                u[k * 16 + 4 * i + j] = sum;
            }
    for (int64_t b = 0; b < n; b++)
        for (int64_t ty = 0; ty < (h + 1) / 2; ty++)
            for (int64_t tx = 0; tx < (w + 1) / 2; tx++) {
                for (int64_t ci = 0; ci < cin; ci++)
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 4; j++) {
                            double sum = 0;
                            for (int py = 0; py < 4; py++)
                                for (int px = 0; px < 4; px++) {
                                    int64_t iy = 2 * ty - 1 + py, ix = 2 * tx - 1 + px;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                    sum += bt[i][py] * bt[j][px] *
                                           fabs((double)in[((b * h + iy) * w + ix) * cin + ci]);
                                }
                            v[ci * 16 + 4 * i + j] = sum;
                        }
                for (int64_t co = 0; co < cout; co++) {
                    double m[16] = {0};
                    for (int64_t ci = 0; ci < cin; ci++)
                        for (int k = 0; k < 16; k++) m[k] += u[(ci * cout + co) * 16 + k] * v[ci * 16 + k];
                    for (int qy = 0; qy < 2; qy++)
                        for (int qx = 0; qx < 2; qx++) {
                            int64_t oy = 2 * ty + qy, ox = 2 * tx + qx;
                            if (oy >= h || ox >= w) continue;
                            double sum = 0;
                            for (int i = 0; i < 4; i++)
                                for (int j = 0; j < 4; j++) sum += at[qy][i] * at[qx][j] * m[4 * i + j];
                            magnitude[((b * h + oy) * w + ox) * cout + co] = sum;
                        }
                }
            }
    free(u), free(v);
}

/* Checks one path's result against the reference; returns max |err| / S_q
 * in units of 2^-8. magnitude (W_q) may be NULL (im2col: 2u S_q only). */
static double check_against_reference(const char *what, const float *got, const float *reference,
                                      const float *sum_abs, const double *magnitude, double c,
                                      int64_t count) {
    double worst = 0;
    for (int64_t i = 0; i < count; i++) {
        const double err = fabs((double)got[i] - reference[i]);
        if (magnitude)
            ck_assert_msg(err <= (ldexp(1, -7) + ldexp(1, -12)) * magnitude[i] + 1e-30,
                          "%s[%lld]: |%.7g - %.7g| over (2^-7 + 2^-12) W = %.3g", what,
                          (long long)i, got[i], reference[i],
                          (ldexp(1, -7) + ldexp(1, -12)) * magnitude[i]);
        ck_assert_msg(err <= c * ldexp(1, -8) * sum_abs[i] + 1e-30,
                      "%s[%lld]: |%.7g - %.7g| over %.1f * 2^-8 * sum |x||w| = %.3g", what,
                      (long long)i, got[i], reference[i], c, c * ldexp(1, -8) * sum_abs[i]);
        if (sum_abs[i] > 0) worst = fmax(worst, err / (ldexp(1, -8) * sum_abs[i]));
    }
    return worst;
}

/* ||got - reference|| / ||reference|| (2-norms). */
static double normwise_error(const float *got, const float *reference, int64_t count) {
    double err = 0, ref = 0;
    for (int64_t i = 0; i < count; i++) {
        const double d = (double)got[i] - reference[i];
        err += d * d, ref += (double)reference[i] * reference[i];
    }
    return sqrt(err / ref);
}

typedef struct winograd_case {
    int64_t n, h, w, c, oc, chunk_tiles; /* chunk_tiles 0: the automatic chunks */
} winograd_case;

static const winograd_case winograd_cases[] = {
    {2, 12, 12, 16, 24, 0}, /* the "conv 3x3" case's shape */
    {1, 7, 9, 19, 13, 5},   /* odd sides, channels off the 16-blocks, chunks of 5 tiles */
    {3, 8, 8, 64, 32, 0},
};

static float *uniform_floats(int64_t count, uint64_t seed) {
    float *values = malloc((size_t)count * sizeof(float));
    ck_assert_ptr_nonnull(values);
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    for (int64_t i = 0; i < count; i++) values[i] = (float)mc_rng_uniform(&rng) * 2 - 1;
    return values;
}

static float *absolute_copy(const float *values, int64_t count) {
    float *copy = mc_test_copy_floats(values, count);
    for (int64_t i = 0; i < count; i++) copy[i] = fabsf(copy[i]);
    return copy;
}

/* Forward and input gradient by Winograd in bf16 (directly and through a
 * bf16 graph, the same bits), against the naive reference within the bound
 * above; the bf16 im2col path on the same data within its own. */
START_TEST(test_bf16_winograd_conv) {
    const winograd_case *wc = &winograd_cases[_i];
    const int64_t n = wc->n, h = wc->h, w = wc->w, c = wc->c, oc = wc->oc;
    const int64_t x_count = n * h * w * c, y_count = n * h * w * oc, w_count = oc * c * 9;
    mc_tensor *x, *weight;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(n, h, w, c), "x"));
    MC_CHECK_OK(mc_tensor_new(&weight, MC_SHAPE(oc, c, 3, 3), "weight"));
    float *x_values = uniform_floats(x_count, 50 + (uint64_t)_i);
    float *w_values = uniform_floats(w_count, 60 + (uint64_t)_i);
    float *dy = uniform_floats(y_count, 70 + (uint64_t)_i);
    memcpy(x->data, x_values, (size_t)x_count * sizeof(float));
    memcpy(weight->data, w_values, (size_t)w_count * sizeof(float));
    mc_conv2d_geometry geo;
    MC_CHECK_OK(mc_conv2d_geometry_of(x, weight, NULL, conv3x3, &geo));
    geo.precision = MC_PRECISION_BF16; /* weight_bf16 NULL: rounded where packed */

    /* the reference, and sum |x||w| per output and input gradient */
    float *y_ref = malloc((size_t)y_count * sizeof(float)), *y_abs = malloc((size_t)y_count * sizeof(float));
    float *dx_ref = calloc((size_t)x_count, sizeof(float)), *dx_abs = calloc((size_t)x_count, sizeof(float));
    float *x_abs = absolute_copy(x_values, x_count), *w_abs = absolute_copy(w_values, w_count);
    float *dy_abs = absolute_copy(dy, y_count);
    ck_assert(y_ref && y_abs && dx_ref && dx_abs);
    mc_conv2d_forward_naive(&geo, x_values, w_values, NULL, y_ref);
    mc_conv2d_forward_naive(&geo, x_abs, w_abs, NULL, y_abs);
    mc_conv2d_backward_naive(&geo, x_values, w_values, dy, dx_ref, NULL, NULL);
    mc_conv2d_backward_naive(&geo, x_abs, w_abs, dy_abs, dx_abs, NULL, NULL);

    /* W_q: forward kernel (ci, co) = weight[co][ci]; input gradient
     * kernel (o, c) = weight[o][c] rotated by 180 degrees */
    float *kernel_fwd = malloc((size_t)w_count * sizeof(float));
    float *kernel_bwd = malloc((size_t)w_count * sizeof(float));
    double *y_mag = malloc((size_t)y_count * sizeof(double));
    double *dx_mag = malloc((size_t)x_count * sizeof(double));
    ck_assert(kernel_fwd && kernel_bwd && y_mag && dx_mag);
    for (int64_t o = 0; o < oc; o++)
        for (int64_t ci = 0; ci < c; ci++)
            for (int t = 0; t < 9; t++) {
                kernel_fwd[(ci * oc + o) * 9 + t] = w_values[(o * c + ci) * 9 + t];
                kernel_bwd[(o * c + ci) * 9 + t] = w_values[(o * c + ci) * 9 + 8 - t];
            }
    winograd_magnitude(n, h, w, c, oc, x_values, kernel_fwd, y_mag);
    winograd_magnitude(n, h, w, oc, c, dy, kernel_bwd, dx_mag);

    /* bf16 Winograd, called directly */
    mc_conv2d_set_winograd(MC_WINOGRAD_ALWAYS);
    mc_conv2d_set_winograd_chunk_tiles(wc->chunk_tiles);
    ck_assert(mc_conv2d_winograd_applies(&geo));
    float *y_wino = malloc((size_t)y_count * sizeof(float)), *dx_wino = calloc((size_t)x_count, sizeof(float));
    ck_assert(y_wino && dx_wino);
    MC_CHECK_OK(mc_conv2d_winograd_forward(&geo, x_values, w_values, NULL, y_wino));
    MC_CHECK_OK(mc_conv2d_winograd_input_grad(&geo, w_values, dy, dx_wino));

    /* the same through a bf16 graph (the op's dispatch), bit for bit */
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, true));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_precision(g, MC_PRECISION_BF16);
    mc_tensor *y;
    MC_CHECK_OK(mc_conv2d(g, x, weight, NULL, conv3x3, &y));
    MC_CHECK_OK(mc_backward_with_grad(g, y, dy));
    ck_assert_msg(memcmp(y->data, y_wino, (size_t)y_count * sizeof(float)) == 0,
                  "a bf16 graph's 3x3 conv is not the bf16 Winograd forward");
    ck_assert_msg(memcmp(x->grad, dx_wino, (size_t)x_count * sizeof(float)) == 0,
                  "a bf16 graph's 3x3 conv input gradient is not the bf16 Winograd one");
    mc_graph_free(g);

    /* the bf16 im2col path on the same data */
    mc_conv2d_set_winograd(MC_WINOGRAD_FP32_ONLY);
    ck_assert(!mc_conv2d_winograd_applies(&geo));
    float *y_im2col = malloc((size_t)y_count * sizeof(float)), *dx_im2col = calloc((size_t)x_count, sizeof(float));
    ck_assert(y_im2col && dx_im2col);
    MC_CHECK_OK(mc_conv2d_forward_kernel(&geo, x_values, w_values, NULL, y_im2col));
    MC_CHECK_OK(mc_conv2d_backward_kernel(&geo, x_values, w_values, dy, dx_im2col, NULL));
    mc_conv2d_set_winograd_chunk_tiles(0);
    ck_assert_msg(memcmp(y_wino, y_im2col, (size_t)y_count * sizeof(float)) != 0,
                  "bf16 Winograd and im2col gave the same bits");

    char what[160];
    double worst[4];
    snprintf(what, sizeof what, "case %d: bf16 Winograd forward", _i);
    worst[0] = check_against_reference(what, y_wino, y_ref, y_abs, y_mag, 24.5, y_count);
    snprintf(what, sizeof what, "case %d: bf16 Winograd input gradient", _i);
    worst[1] = check_against_reference(what, dx_wino, dx_ref, dx_abs, dx_mag, 24.5, x_count);
    /* im2col: (2u + u^2) S_q plus the fp32 sums (K = 9 C <= 576: under
     * 2^-14 S_q), 2 + 2^-8 + 2^-6 = 2.02 in units of 2^-8 S_q */
    snprintf(what, sizeof what, "case %d: bf16 im2col forward", _i);
    worst[2] = check_against_reference(what, y_im2col, y_ref, y_abs, NULL, 2.02, y_count);
    snprintf(what, sizeof what, "case %d: bf16 im2col input gradient", _i);
    worst[3] = check_against_reference(what, dx_im2col, dx_ref, dx_abs, NULL, 2.02, x_count);
    /* normwise (see above): Winograd within 2^-7, im2col within 2^-8 */
    const double normwise[4] = {
        normwise_error(y_wino, y_ref, y_count), normwise_error(dx_wino, dx_ref, x_count),
        normwise_error(y_im2col, y_ref, y_count), normwise_error(dx_im2col, dx_ref, x_count)};
    printf("bf16 conv 3x3 (%lld, %lld, %lld, %lld) -> %lld, max |err| / (2^-8 sum |x||w|) and "
           "||err|| / ||y||: Winograd forward %.3f %.2e, input gradient %.3f %.2e; im2col "
           "forward %.3f %.2e, input gradient %.3f %.2e\n",
           (long long)n, (long long)h, (long long)w, (long long)c, (long long)oc, worst[0],
           normwise[0], worst[1], normwise[1], worst[2], normwise[2], worst[3], normwise[3]);
    for (int k = 0; k < 4; k++)
        ck_assert_msg(normwise[k] <= ldexp(1, k < 2 ? -7 : -8),
                      "case %d, %s %s: ||err|| / ||y|| = %.3g", _i, k < 2 ? "Winograd" : "im2col",
                      k % 2 ? "input gradient" : "forward", normwise[k]);

    free(y_ref), free(y_abs), free(dx_ref), free(dx_abs), free(x_abs), free(w_abs), free(dy_abs);
    free(kernel_fwd), free(kernel_bwd), free(y_mag), free(dx_mag);
    free(y_wino), free(dx_wino), free(y_im2col), free(dx_im2col);
    free(x_values), free(w_values), free(dy);
    mc_tensor_free(x), mc_tensor_free(weight);
}
END_TEST

/* Which 3x3 stride-1 convolutions take Winograd: fp32 from 64 tiles of
 * 2x2 outputs, bf16 from 128 (where bf16 products run on our kernel);
 * MC_WINOGRAD_FP32_ONLY keeps bf16 graphs on im2col and fp32 ones as they
 * are. Tiles here: n * 4 * 4 for 8x8 maps. */
START_TEST(test_bf16_winograd_routing) {
    const int64_t batches[3] = {4, 5, 8}; /* 64, 80, 128 tiles */
    const int expect_fp32[3] = {1, 1, 1}, expect_bf16[3] = {0, 0, 1};
    for (int b = 0; b < 3; b++) {
        mc_tensor *x, *weight;
        MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(batches[b], 8, 8, 4), "x"));
        MC_CHECK_OK(mc_tensor_new(&weight, MC_SHAPE(4, 4, 3, 3), "weight"));
        mc_conv2d_geometry geo;
        MC_CHECK_OK(mc_conv2d_geometry_of(x, weight, NULL, conv3x3, &geo));
        mc_conv2d_set_winograd(MC_WINOGRAD_ENOUGH_TILES);
        geo.precision = MC_PRECISION_FP32;
        ck_assert_int_eq(mc_conv2d_winograd_applies(&geo), expect_fp32[b]);
        geo.precision = MC_PRECISION_BF16;
        ck_assert_int_eq(mc_conv2d_winograd_applies(&geo), expect_bf16[b]);
        mc_conv2d_set_winograd(MC_WINOGRAD_FP32_ONLY);
        ck_assert_int_eq(mc_conv2d_winograd_applies(&geo), 0);
        geo.precision = MC_PRECISION_FP32;
        ck_assert_int_eq(mc_conv2d_winograd_applies(&geo), expect_fp32[b]);
        mc_tensor_free(x);
        mc_tensor_free(weight);
    }
}
END_TEST

/* A convolution that Winograd runs keeps no bf16 copy of its weight:
 * nothing of it would read one (its transforms read the fp32 weight, and
 * its weight gradient does not read the weight), while the same
 * convolution on im2col makes one. The weight gradient's columns are
 * gathered in bf16 either way: the weight gradient equals, bit for bit,
 * that of a weight that keeps no copy (a tensor of no heap). */
START_TEST(test_bf16_winograd_conv_keeps_no_copy) {
    const op_case *c = &cases[0]; /* conv 3x3, stride 1 */
    ck_assert_ptr_eq(c->ctx, &conv3x3);
    mc_tensor *in[MAX_IN];
    make_inputs(c, 50, in);
    mc_tensor *weight = in[1];
    mc_conv2d_set_winograd(MC_WINOGRAD_ALWAYS);
    op_results winograd = run(c, MC_PRECISION_BF16, in, false);
    ck_assert_msg(weight->bf16 == NULL, "Winograd's convolution made a bf16 copy of its weight");
    mc_tensor no_heap = *weight; /* the same data; a tensor that keeps no copy */
    no_heap.on_heap = false, no_heap.owns_data = false, no_heap.grad = NULL;
    mc_tensor *no_heap_in[MAX_IN] = {in[0], &no_heap, in[2]};
    op_results without_copy = run(c, MC_PRECISION_BF16, no_heap_in, false);
    assert_same_results("Winograd, a weight of the heap and one of no heap", &winograd,
                        &without_copy, in, c->n_in);
    mc_conv2d_set_winograd(MC_WINOGRAD_FP32_ONLY); /* im2col */
    op_results im2col = run(c, MC_PRECISION_BF16, in, false);
    ck_assert_msg(weight->bf16 != NULL, "im2col's convolution made no bf16 copy of its weight");
    free_results(&winograd, c->n_in), free_results(&without_copy, c->n_in);
    free_results(&im2col, c->n_in);
    for (int i = 0; i < c->n_in; i++) mc_tensor_free(in[i]);
}
END_TEST

/* How many of cases[] from the first on run `op` (the convolutions lead). */
static int leading_cases_of(op_fn op) {
    int n = 0;
    while (n < (int)(sizeof cases / sizeof cases[0]) && cases[n].op == op) n++;
    return n;
}

int main(void) {
    if (!mc_gemm_avx512_available())
        return mc_test_skip("bf16 graphs (this CPU has no AVX-512F: products stay fp32)");
    /* Our kernel even under MMCHAIN_GEMM=openblas (which keeps fp32). */
    if (mc_gemm_set_kernel(MC_GEMM_AVX512) != MC_OK) return EXIT_FAILURE;
    /* The cases above hold bf16 to "bf16 operands in the definition"
     * (im2col's bound); Winograd's is test_bf16_winograd_conv's. */
    mc_conv2d_set_winograd(MC_WINOGRAD_FP32_ONLY);
    Suite *s = suite_create("ops_bf16");
    TCase *tc = tcase_create("ops");
    tcase_add_loop_test(tc, test_bf16_graph_within_bound_of_fp32, 0,
                        (int)(sizeof cases / sizeof cases[0]));
    if (mc_gemm_bf16_native_available()) tcase_add_test(tc, test_bf16_ops_same_on_emulation);
    /* The cases whose second input is a weight: the convolutions and the
     * linear case that follows them. */
    const int convs = leading_cases_of(conv_op);
    if (cases[convs].op != linear_op) {
        fprintf(stderr, "test_ops_bf16: cases[] must list linear right after the convolutions\n");
        return EXIT_FAILURE;
    }
    tcase_add_loop_test(tc, test_bf16_weight_copy_follows_the_weight, 0, convs + 1);
    tcase_add_loop_test(tc, test_bf16_conv_weight_gradient_in_row_groups, 0, convs);
    tcase_add_test(tc, test_bf16_winograd_routing);
    tcase_add_test(tc, test_bf16_winograd_conv_keeps_no_copy);
    tcase_add_loop_test(tc, test_bf16_winograd_conv, 0,
                        (int)(sizeof winograd_cases / sizeof winograd_cases[0]));
    suite_add_tcase(s, tc);
    return mc_test_run_suite(s);
}

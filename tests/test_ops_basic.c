/* The ops a PyTorch user reaches for first: SiLU, abs, sqrt, pow, clamp,
 * leaky ReLU (activation.c, pointwise.c), max/min/argmax/argmin (reduce.c),
 * where, masked_fill, gather (select.c), MSE and BCE losses
 * (loss_elementwise.c), group norm (groupnorm.c) and the BatchNorm1d and
 * GroupNorm layers (lib/nn/norm.c).
 *
 *  1. Finite-difference gradient checks (mc_gradcheck) of every op.
 *  2. Outputs and gradients against PyTorch: the fixture
 *     ops_basic.safetensors written by tests/golden/gen_ops_basic.py
 *     (the parity tolerances of tests/support/fixture.h).
 *  3. Bad input: a clear error naming the tensor. */
#include <math.h>

#include "fixture.h"
#include "testutil.h"

/* ---- the ops under test, in the checker's form ---- */

typedef struct op_case {
    const char *name; /* also the fixture prefix */
    mc_gradcheck_forward forward;
    const char *input;  /* the fixture tensor it runs on */
    float low, high;    /* gradcheck inputs ~ U(low, high), away from kinks */
} op_case;

#define FW(fn, call)                                                                      \
    static mc_status fn(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {          \
        (void)c;                                                                          \
        return call;                                                                      \
    }
FW(fw_silu, mc_silu(g, in[0], out))
FW(fw_abs, mc_abs(g, in[0], out))
FW(fw_sqrt, mc_sqrt(g, in[0], out))
FW(fw_pow3, mc_pow(g, in[0], 3.0f, out))
FW(fw_pow_frac, mc_pow(g, in[0], -1.5f, out))
FW(fw_clamp, mc_clamp(g, in[0], -0.5f, 0.7f, out))
FW(fw_leaky_relu, mc_leaky_relu(g, in[0], 0.2f, out))
FW(fw_max, mc_max(g, in[0], 1, false, out))
FW(fw_min, mc_min(g, in[0], 1, false, out))
FW(fw_mse, mc_mse_loss(g, in[0], in[1], out))
FW(fw_bce, mc_bce_loss(g, in[0], in[1], out))
FW(fw_bce_logits, mc_bce_with_logits(g, in[0], in[1], out))
FW(fw_group_norm, mc_group_norm(g, in[0], 3, in[1], in[2], 1e-5f, out))
FW(fw_group_norm_plain, mc_group_norm(g, in[0], 2, NULL, NULL, 1e-5f, out))

static const op_case unary_cases[] = {
    {"silu", fw_silu, "x", -3, 3},          {"abs", fw_abs, "x", 0.1f, 2},
    {"sqrt", fw_sqrt, "positive", 0.3f, 3}, {"pow3", fw_pow3, "x", -2, 2},
    {"pow_frac", fw_pow_frac, "positive", 0.5f, 3},
    {"clamp", fw_clamp, "x", -2, 2},        {"leaky_relu", fw_leaky_relu, "x", 0.1f, 2},
};
enum { N_UNARY = sizeof unary_cases / sizeof unary_cases[0] };

/* A (5, 7) input drawn for the gradient check; abs and leaky_relu get both
 * signs by flipping every other element of their positive range, and
 * clamp's elements are kept 0.05 away from its bounds. */
static mc_tensor *gradcheck_input(const op_case *c, mc_rng *rng) {
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(5, 7), "x"));
    mc_tensor_uniform(x, rng, c->low, c->high);
    for (int64_t i = 0; i < x->numel; i++) {
        if (c->low > 0 && c->forward != fw_sqrt && c->forward != fw_pow_frac && i % 2)
            x->data[i] = -x->data[i];
        if (c->forward == fw_clamp && (fabsf(x->data[i] + 0.5f) < 0.05f || fabsf(x->data[i] - 0.7f) < 0.05f))
            x->data[i] += 0.1f;
    }
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, true));
    return x;
}

START_TEST(test_unary_gradcheck) {
    const op_case *c = &unary_cases[_i];
    mc_rng rng;
    mc_rng_seed(&rng, 160 + (uint64_t)_i);
    mc_tensor *x = gradcheck_input(c, &rng);
    mc_gradcheck_options options = {.eps = 1e-3};
    mc_assert_gradcheck(c->name, 1, &x, c->forward, NULL, &options);
    mc_tensor_free(x);
}
END_TEST

/* Backpropagate the fixture's <prefix>.dout from y. */
static void backward_from(mc_fixture *fx, mc_graph *g, mc_tensor *y, const char *prefix) {
    char name[64];
    snprintf(name, sizeof name, "%s.dout", prefix);
    mc_fixture_backward(fx, g, y, name);
}

/* Compare t's values, or its gradient, with the fixture's <prefix>.<what>. */
static void expect(mc_fixture *fx, const char *prefix, const char *what, const mc_tensor *t,
                   bool gradient) {
    char name[64];
    snprintf(name, sizeof name, "%s.%s", prefix, what);
    if (gradient)
        mc_fixture_expect_grad(fx, name, t);
    else
        mc_fixture_expect_output(fx, name, t);
}

START_TEST(test_unary_parity) {
    const op_case *c = &unary_cases[_i];
    mc_fixture *fx = mc_fixture_open("ops_basic.safetensors");
    mc_tensor *x = mc_fixture_tensor(fx, c->input, true);
    mc_graph *g = mc_test_new_graph();
    mc_tensor *y;
    MC_CHECK_OK(c->forward(g, &x, NULL, &y));
    expect(fx, c->name, "out", y, false);
    backward_from(fx, g, y, c->name);
    expect(fx, c->name, "grad_x", x, true);
    mc_graph_free(g);
    mc_fixture_close(fx);
}
END_TEST

/* ---- max / min / argmax / argmin over dim 1 of (3, 5, 4), with ties ---- */

START_TEST(test_max_min_parity) {
    mc_fixture *fx = mc_fixture_open("ops_basic.safetensors");
    mc_tensor *x = mc_fixture_tensor(fx, "reduce.x", true);
    const char *names[2] = {"max", "min"};
    mc_gradcheck_forward forwards[2] = {fw_max, fw_min};
    for (int k = 0; k < 2; k++) {
        mc_tensor_zero_grad(x);
        mc_graph *g = mc_test_new_graph();
        mc_tensor *y;
        MC_CHECK_OK(forwards[k](g, &x, NULL, &y));
        ck_assert_int_eq(y->shape.ndim, 2);
        expect(fx, names[k], "out", y, false);
        backward_from(fx, g, y, names[k]);
        expect(fx, names[k], "grad_x", x, true);
        /* The indices, ties to the first (PyTorch's CPU max/min do too). */
        int32_t indices[12];
        MC_CHECK_OK((k == 0 ? mc_argmax : mc_argmin)(x, 1, indices));
        char name[64];
        snprintf(name, sizeof name, "%s.indices", names[k]);
        int64_t n;
        int32_t *expected = mc_fixture_ints(fx, name, &n);
        ck_assert_int_eq(n, 12);
        for (int i = 0; i < 12; i++) ck_assert_int_eq(indices[i], expected[i]);
        mc_graph_free(g);
    }
    mc_fixture_close(fx);
}
END_TEST

START_TEST(test_max_min_gradcheck_and_errors) {
    mc_rng rng;
    mc_rng_seed(&rng, 170);
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(3, 5, 4), "x"));
    mc_tensor_uniform(x, &rng, -1.0f, 1.0f); /* distinct values: no ties within eps */
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, true));
    mc_gradcheck_options options = {.eps = 1e-4};
    mc_assert_gradcheck("max dim 1", 1, &x, fw_max, NULL, &options);
    mc_assert_gradcheck("min dim 1", 1, &x, fw_min, NULL, &options);
    mc_graph *g = mc_test_new_graph();
    mc_tensor *y;
    MC_CHECK_OK(mc_max(g, x, -1, true, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(3, 5, 1)));
    MC_CHECK_FAILS(mc_max(g, x, 3, false, &y), MC_ERR_ARG, "dim 3");
    int32_t idx[15];
    MC_CHECK_FAILS(mc_argmax(x, -4, idx), MC_ERR_ARG, "argmax");
    /* NaN is the max, as in PyTorch. */
    x->data[7] = NAN; /* (0, 1, 3) */
    MC_CHECK_OK(mc_argmax(x, 1, idx));
    ck_assert_int_eq(idx[3], 1);
    mc_graph_free(g);
    mc_tensor_free(x);
}
END_TEST

/* ---- where, masked_fill, gather ---- */

typedef struct select_ctx {
    mc_tensor *mask;
    const int32_t *index;
} select_ctx;

static mc_status fw_where(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_where(g, ((select_ctx *)c)->mask, in[0], in[1], out);
}
static mc_status fw_masked_fill(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_masked_fill(g, in[0], ((select_ctx *)c)->mask, -2.0f, out);
}
static mc_status fw_gather(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_gather(g, in[0], 1, ((select_ctx *)c)->index, MC_SHAPE(3, 7, 4), out);
}

START_TEST(test_select_parity_and_gradcheck) {
    mc_fixture *fx = mc_fixture_open("ops_basic.safetensors");
    mc_tensor *a = mc_fixture_tensor(fx, "select.a", true);
    mc_tensor *b = mc_fixture_tensor(fx, "select.b", true);
    int64_t n_index;
    select_ctx ctx = {.mask = mc_fixture_tensor(fx, "select.mask", false),
                      .index = mc_fixture_ints(fx, "gather.index", &n_index)};
    ck_assert_int_eq(n_index, 3 * 7 * 4);
    mc_tensor *in[2] = {a, b};
    const char *names[3] = {"where", "masked_fill", "gather"};
    mc_gradcheck_forward forwards[3] = {fw_where, fw_masked_fill, fw_gather};
    for (int k = 0; k < 3; k++) {
        mc_tensor_zero_grad(a);
        mc_tensor_zero_grad(b);
        mc_graph *g = mc_test_new_graph();
        mc_tensor *y;
        MC_CHECK_OK(forwards[k](g, in, &ctx, &y));
        expect(fx, names[k], "out", y, false);
        backward_from(fx, g, y, names[k]);
        expect(fx, names[k], k == 0 ? "grad_a" : "grad_x", a, true);
        if (k == 0) expect(fx, names[k], "grad_b", b, true);
        mc_graph_free(g);
        mc_assert_gradcheck(names[k], k == 0 ? 2 : 1, in, forwards[k], &ctx, NULL);
    }
    mc_fixture_close(fx);
}
END_TEST

START_TEST(test_select_errors) {
    mc_graph *g = mc_test_new_graph();
    mc_tensor *x, *mask, *other, *y;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(3, 4), "x"));
    MC_CHECK_OK(mc_tensor_new(&mask, MC_SHAPE(2, 4), "mask"));
    MC_CHECK_OK(mc_tensor_new(&other, MC_SHAPE(4, 3), "other"));
    MC_CHECK_FAILS(mc_masked_fill(g, x, mask, 0.0f, &y), MC_ERR_SHAPE, "mask");
    MC_CHECK_FAILS(mc_where(g, x, x, other, &y), MC_ERR_SHAPE, "other");
    int32_t index[6] = {0, 1, 2, 3, 4, 0};
    MC_CHECK_FAILS(mc_gather(g, x, 1, index, MC_SHAPE(3, 2), &y), MC_ERR_ARG, "index[4] is 4");
    MC_CHECK_FAILS(mc_gather(g, x, 1, index, MC_SHAPE(6), &y), MC_ERR_SHAPE, "as many dimensions");
    MC_CHECK_FAILS(mc_clamp(g, x, 1.0f, -1.0f, &y), MC_ERR_ARG, "low <= high");
    mc_tensor_free(x);
    mc_tensor_free(mask);
    mc_tensor_free(other);
    mc_graph_free(g);
}
END_TEST

/* ---- losses: MSE, BCE, BCE with logits; gradients to input and target ---- */

START_TEST(test_losses_parity_and_gradcheck) {
    mc_fixture *fx = mc_fixture_open("ops_basic.safetensors");
    mc_tensor *x = mc_fixture_tensor(fx, "loss.x", true);
    mc_tensor *t = mc_fixture_tensor(fx, "loss.t", true);
    mc_tensor *p = mc_fixture_tensor(fx, "loss.p", true);
    const char *names[3] = {"mse", "bce", "bce_logits"};
    mc_gradcheck_forward forwards[3] = {fw_mse, fw_bce, fw_bce_logits};
    for (int k = 0; k < 3; k++) {
        mc_tensor *in[2] = {k == 1 ? p : x, t};
        mc_tensor_zero_grad(in[0]);
        mc_tensor_zero_grad(t);
        mc_graph *g = mc_test_new_graph();
        mc_tensor *loss;
        MC_CHECK_OK(forwards[k](g, in, NULL, &loss));
        expect(fx, names[k], "out", loss, false);
        MC_CHECK_OK(mc_backward(g, loss));
        expect(fx, names[k], "grad_input", in[0], true);
        expect(fx, names[k], "grad_target", t, true);
        mc_graph_free(g);
        mc_gradcheck_options options = {.eps = 1e-3};
        mc_assert_gradcheck(names[k], 2, in, forwards[k], NULL, &options);
    }
    mc_graph *g = mc_test_new_graph();
    mc_tensor *loss;
    MC_CHECK_FAILS(mc_bce_loss(g, x, t, &loss), MC_ERR_ARG, "probabilities must be in [0, 1]");
    MC_CHECK_FAILS(mc_mse_loss(g, x, mc_fixture_tensor(fx, "select.a", false), &loss), MC_ERR_SHAPE,
                   "same shape");
    mc_graph_free(g);
    mc_fixture_close(fx);
}
END_TEST

/* ---- group norm (op and layer) and BatchNorm1d ---- */

START_TEST(test_group_norm_parity) {
    mc_fixture *fx = mc_fixture_open("ops_basic.safetensors");
    ck_assert_str_eq(mc_fixture_metadata(fx, "group_norm.groups"), "3");
    mc_tensor *x = mc_fixture_tensor(fx, "group_norm.x", true);
    mc_param_list params = {0};
    mc_group_norm_layer layer;
    MC_CHECK_OK(mc_group_norm_init(&params, "norm", 3, 6, 1e-5f, &layer));
    ck_assert_str_eq(params.items[0]->name, "norm.weight");
    ck_assert_str_eq(params.items[1]->name, "norm.bias");
    MC_CHECK_OK(mc_tensor_copy(layer.weight, mc_fixture_tensor(fx, "group_norm.weight", false)));
    MC_CHECK_OK(mc_tensor_copy(layer.bias, mc_fixture_tensor(fx, "group_norm.bias", false)));
    mc_graph *g = mc_test_new_graph();
    mc_tensor *y;
    MC_CHECK_OK(mc_group_norm_forward(g, &layer, x, &y));
    expect(fx, "group_norm", "out", y, false);
    backward_from(fx, g, y, "group_norm");
    expect(fx, "group_norm", "grad_x", x, true);
    expect(fx, "group_norm", "grad_weight", layer.weight, true);
    expect(fx, "group_norm", "grad_bias", layer.bias, true);
    MC_CHECK_FAILS(mc_group_norm(g, x, 4, NULL, NULL, 1e-5f, &y), MC_ERR_ARG, "4 groups");
    /* Values 1e5 + 0.1 z: a large mean next to a small spread, where
     * E[x^2] - mean^2 loses the variance (39 % low). The output's spread
     * must be 1, as a two-pass reference in double says. */
    mc_tensor *offset;
    MC_CHECK_OK(mc_tensor_new(&offset, MC_SHAPE(1, 64, 64, 16), "offset"));
    mc_rng rng;
    mc_rng_seed(&rng, 7);
    mc_tensor_normal(offset, &rng, 0.0f, 0.1f);
    for (int64_t i = 0; i < offset->numel; i++) offset->data[i] += 1e5f;
    double mean = 0.0, squares = 0.0;
    for (int64_t i = 0; i < offset->numel; i++) mean += offset->data[i];
    mean /= (double)offset->numel;
    for (int64_t i = 0; i < offset->numel; i++)
        squares += (offset->data[i] - mean) * (offset->data[i] - mean);
    const double invstd = 1.0 / sqrt(squares / (double)offset->numel + 1e-5);
    MC_CHECK_OK(mc_group_norm(g, offset, 1, NULL, NULL, 1e-5f, &y));
    for (int64_t i = 0; i < offset->numel; i += 997)
        ck_assert_msg(fabs(y->data[i] - (offset->data[i] - mean) * invstd) < 1e-3,
                      "group norm of offset values at %lld: %g, expected %g", (long long)i,
                      (double)y->data[i], (offset->data[i] - mean) * invstd);
    mc_tensor_free(offset);
    mc_graph_free(g);
    mc_params_free(&params);
    mc_fixture_close(fx);
}
END_TEST

START_TEST(test_group_norm_gradcheck) {
    mc_rng rng;
    mc_rng_seed(&rng, 180);
    mc_tensor *in[3];
    MC_CHECK_OK(mc_tensor_new(&in[0], MC_SHAPE(2, 3, 2, 6), "x"));
    MC_CHECK_OK(mc_tensor_new(&in[1], MC_SHAPE(6), "weight"));
    MC_CHECK_OK(mc_tensor_new(&in[2], MC_SHAPE(6), "bias"));
    for (int k = 0; k < 3; k++) {
        mc_tensor_uniform(in[k], &rng, k == 1 ? 0.5f : -1.0f, k == 1 ? 1.5f : 1.0f);
        MC_CHECK_OK(mc_tensor_set_requires_grad(in[k], true));
    }
    mc_gradcheck_options options = {.eps = 1e-3};
    mc_assert_gradcheck("group_norm affine", 3, in, fw_group_norm, NULL, &options);
    mc_assert_gradcheck("group_norm plain, 2 groups", 1, in, fw_group_norm_plain, NULL, &options);
    for (int k = 0; k < 3; k++) mc_tensor_free(in[k]);
}
END_TEST

START_TEST(test_batch_norm1d_parity) {
    mc_fixture *fx = mc_fixture_open("ops_basic.safetensors");
    mc_param_list params = {0};
    mc_batch_norm bn;
    MC_CHECK_OK(mc_batch_norm_init(&params, "bn", 5, &bn));
    MC_CHECK_OK(mc_tensor_copy(bn.weight, mc_fixture_tensor(fx, "batch_norm1d.init.weight", false)));
    MC_CHECK_OK(mc_tensor_copy(bn.bias, mc_fixture_tensor(fx, "batch_norm1d.init.bias", false)));
    mc_tensor *x = mc_fixture_tensor(fx, "batch_norm1d.x", true);
    mc_graph *g = mc_test_new_graph();
    mc_tensor *y;
    MC_CHECK_OK(mc_batch_norm1d_forward(g, &bn, true, x, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(8, 5)));
    expect(fx, "batch_norm1d", "out", y, false);
    expect(fx, "batch_norm1d", "running_mean", bn.running_mean, false);
    expect(fx, "batch_norm1d", "running_var", bn.running_var, false);
    ck_assert_float_eq(bn.num_batches_tracked->data[0], 1.0f);
    backward_from(fx, g, y, "batch_norm1d");
    expect(fx, "batch_norm1d", "grad_x", x, true);
    expect(fx, "batch_norm1d", "grad_weight", bn.weight, true);
    expect(fx, "batch_norm1d", "grad_bias", bn.bias, true);
    mc_graph_reset(g);
    MC_CHECK_OK(mc_batch_norm1d_forward(g, &bn, false, x, &y));
    expect(fx, "batch_norm1d", "eval_out", y, false);
    mc_tensor *row;
    MC_CHECK_OK(mc_slice(g, x, 0, 0, 1, &row));
    MC_CHECK_FAILS(mc_batch_norm1d_forward(g, &bn, true, row, &y), MC_ERR_SHAPE, "one row");
    MC_CHECK_FAILS(mc_batch_norm1d_forward(g, &bn, true, mc_fixture_tensor(fx, "select.a", false), &y),
                   MC_ERR_SHAPE, "(N, C)");
    mc_graph_free(g);
    mc_params_free(&params);
    mc_fixture_close(fx);
}
END_TEST

/* relu keeps a NaN and passes its gradient on, as torch.relu and its
 * threshold_backward (result <= 0 ? 0 : grad) do, in each op that has a
 * relu: mc_relu, mc_add_relu and batch norm's fused relus. Hiding it as 0
 * would let training go on from corrupted activations. */
START_TEST(test_relu_keeps_nan) {
    mc_graph *g = mc_test_new_graph();
    mc_tensor *x, *y, *loss;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(1, 2, 2, 1), "x")); /* NHWC, one channel */
    MC_CHECK_OK(mc_tensor_load(x, (const float[]){NAN, -1.0f, 2.0f, 0.0f}, 4));
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, true));
    MC_CHECK_OK(mc_relu(g, x, &y));
    ck_assert(isnan(y->data[0]));
    ck_assert_float_eq(y->data[1], 0.0f);
    ck_assert_float_eq(y->data[2], 2.0f);
    ck_assert_float_eq(y->data[3], 0.0f);
    MC_CHECK_OK(mc_sum_all(g, y, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    ck_assert_float_eq(x->grad[0], 1.0f); /* through the NaN, as PyTorch */
    ck_assert_float_eq(x->grad[1], 0.0f);
    ck_assert_float_eq(x->grad[2], 1.0f);
    ck_assert_float_eq(x->grad[3], 0.0f);
    mc_tensor *zero;
    MC_CHECK_OK(mc_tensor_new(&zero, MC_SHAPE(1, 2, 2, 1), "zero"));
    MC_CHECK_OK(mc_add_relu(g, x, zero, &y));
    ck_assert(isnan(y->data[0]));
    /* batch norm + relu in eval mode (running mean 0, var 1): NaN stays */
    mc_tensor *mean, *var;
    MC_CHECK_OK(mc_tensor_new(&mean, MC_SHAPE(1), "mean"));
    MC_CHECK_OK(mc_tensor_new(&var, MC_SHAPE(1), "var"));
    var->data[0] = 1.0f;
    MC_CHECK_OK(mc_batchnorm2d_relu(g, x, NULL, NULL, mean, var, false, 0.1f, 1e-5f, &y));
    ck_assert(isnan(y->data[0]));
    ck_assert_float_eq(y->data[1], 0.0f);
    mc_tensor_free(x);
    mc_tensor_free(zero);
    mc_tensor_free(mean);
    mc_tensor_free(var);
    mc_graph_free(g);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_basic");
    const TTest *const none[] = {NULL};
    mc_test_add_loops(mc_test_add_case(s, "unary", none),
                      (const mc_test_loop[]){{test_unary_gradcheck, 0, N_UNARY},
                                             {test_unary_parity, 0, N_UNARY},
                                             {NULL, 0, 0}});
    const TTest *const tests[] = {test_max_min_parity, test_max_min_gradcheck_and_errors,
                                  test_select_parity_and_gradcheck, test_select_errors,
                                  test_losses_parity_and_gradcheck, test_group_norm_parity,
                                  test_group_norm_gradcheck, test_batch_norm1d_parity,
                                  test_relu_keeps_nan, NULL};
    mc_test_add_case(s, "ops", tests);
    return mc_test_run_suite(s);
}

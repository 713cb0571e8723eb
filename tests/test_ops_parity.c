/* PyTorch parity: our ops and optimizers against the fixtures that
 * tests/golden/gen_ops.py computed with PyTorch (in float64, stored as
 * float32). Outputs and every input / parameter gradient are compared.
 *
 * Gradients come from the fixture's random upstream gradient "dout"
 * (mc_backward_with_grad), so every output element contributes; scalar
 * losses use d(loss) = 1.
 *
 * Tolerances (|ours - torch| <= atol + rtol * |torch|), float32 against a
 * float64 reference:
 *   forward outputs            rtol 1e-4, atol 1e-5 (MC_PARITY_OUT_*, fixture.h)
 *   gradients                  rtol 1e-3, atol 1e-5 (MC_PARITY_GRAD_*: longer sums, cancellation)
 *   10 optimizer steps         losses rtol 1e-4; final parameters rtol 1e-3, atol 1e-5 */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "testutil.h"

/* Backpropagate the fixture's <prefix>dout from y and compare the gradients
 * of x, the weight and the bias (when there is one) with <prefix>grad_*. */
static void expect_affine_grads(mc_fixture *fx, mc_graph *g, mc_tensor *y, const char *prefix,
                                const mc_tensor *x, const mc_tensor *w, const mc_tensor *b) {
    char name[64];
    snprintf(name, sizeof name, "%sdout", prefix);
    mc_fixture_backward(fx, g, y, name);
    snprintf(name, sizeof name, "%sgrad_x", prefix);
    mc_fixture_expect_grad(fx, name, x);
    snprintf(name, sizeof name, "%sgrad_weight", prefix);
    mc_fixture_expect_grad(fx, name, w);
    snprintf(name, sizeof name, "%sgrad_bias", prefix);
    if (b) mc_fixture_expect_grad(fx, name, b);
}

/* ---- conv2d: groups, dilation, stride, padding (5 cases) ---- */

START_TEST(test_conv2d_parity) {
    mc_fixture *fx = mc_fixture_open("ops_conv2d.safetensors");
    int cases = atoi(mc_fixture_metadata(fx, "cases"));
    ck_assert_int_eq(cases, 5);
    for (int c = 0; c < cases; c++) {
        char name[64];
#define CASE(field) (snprintf(name, sizeof name, "case%d.%s", c, field), name)
        int32_t *p = mc_fixture_ints(fx, CASE("params"), NULL);
        mc_conv2d_params params = {.stride_h = p[0], .stride_w = p[1], .pad_h = p[2], .pad_w = p[3],
                                   .dilation_h = p[4], .dilation_w = p[5], .groups = p[6]};
        mc_tensor *x = mc_fixture_tensor(fx, CASE("x"), true);
        mc_tensor *w = mc_fixture_tensor(fx, CASE("weight"), true);
        bool has_bias = mc_safetensors_has(fx->file, CASE("bias"));
        mc_tensor *b = has_bias ? mc_fixture_tensor(fx, CASE("bias"), true) : NULL;
        mc_graph *g = mc_test_new_graph();
        mc_tensor *y;
        MC_CHECK_OK(mc_conv2d(g, x, w, b, params, &y));
        mc_fixture_expect_output(fx, CASE("out"), y);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "case%d.", c);
        expect_affine_grads(fx, g, y, prefix, x, w, b);
#undef CASE
        mc_graph_free(g);
    }
    mc_fixture_close(fx);
}
END_TEST

/* ---- batchnorm2d: a training step (with running statistics), then eval ---- */

START_TEST(test_batchnorm2d_parity) {
    mc_fixture *fx = mc_fixture_open("ops_batchnorm2d.safetensors");
    ck_assert_str_eq(mc_fixture_metadata(fx, "momentum"), "0.1");
    ck_assert_str_eq(mc_fixture_metadata(fx, "eps"), "1e-05");
    mc_tensor *x = mc_fixture_tensor(fx, "x", true);
    mc_tensor *w = mc_fixture_tensor(fx, "weight", true);
    mc_tensor *b = mc_fixture_tensor(fx, "bias", true);
    mc_tensor *running_mean = mc_fixture_tensor(fx, "running_mean", false);
    mc_tensor *running_var = mc_fixture_tensor(fx, "running_var", false);

    mc_graph *g = mc_test_new_graph();
    mc_tensor *y;
    MC_CHECK_OK(mc_batchnorm2d(g, x, w, b, running_mean, running_var, true, 0.1f, 1e-5f, &y));
    mc_fixture_expect_output(fx, "train.out", y);
    /* The running statistics moved by momentum (running_var unbiased). */
    mc_fixture_expect_output(fx, "train.running_mean", running_mean);
    mc_fixture_expect_output(fx, "train.running_var", running_var);
    expect_affine_grads(fx, g, y, "train.", x, w, b);

    /* Eval: normalise with the running statistics, which stay put. */
    mc_graph_reset(g);
    mc_tensor_zero_grad(x);
    mc_tensor_zero_grad(w);
    mc_tensor_zero_grad(b);
    MC_CHECK_OK(mc_batchnorm2d(g, x, w, b, running_mean, running_var, false, 0.1f, 1e-5f, &y));
    mc_fixture_expect_output(fx, "eval.out", y);
    mc_fixture_expect_output(fx, "train.running_mean", running_mean);
    mc_fixture_expect_output(fx, "train.running_var", running_var);
    expect_affine_grads(fx, g, y, "eval.", x, w, b);
    mc_graph_free(g);
    mc_fixture_close(fx);
}
END_TEST

/* ---- layernorm over the last dimension ---- */

START_TEST(test_layernorm_parity) {
    mc_fixture *fx = mc_fixture_open("ops_layernorm.safetensors");
    ck_assert_str_eq(mc_fixture_metadata(fx, "eps"), "1e-05");
    mc_tensor *x = mc_fixture_tensor(fx, "x", true);
    mc_tensor *w = mc_fixture_tensor(fx, "weight", true);
    mc_tensor *b = mc_fixture_tensor(fx, "bias", true);
    mc_graph *g = mc_test_new_graph();
    mc_tensor *y;
    MC_CHECK_OK(mc_layernorm(g, x, w, b, 1e-5f, &y));
    mc_fixture_expect_output(fx, "out", y);
    expect_affine_grads(fx, g, y, "", x, w, b);
    mc_graph_free(g);
    mc_fixture_close(fx);
}
END_TEST

/* ---- gelu (erf) and quick_gelu ---- */

START_TEST(test_gelu_parity) {
    mc_fixture *fx = mc_fixture_open("ops_gelu.safetensors");
    typedef mc_status (*unary_op)(mc_graph *, mc_tensor *, mc_tensor **);
    const struct {
        const char *name;
        unary_op op;
    } ops[] = {{"gelu", mc_gelu}, {"quick_gelu", mc_quick_gelu}};
    for (int i = 0; i < 2; i++) {
        mc_tensor *x = mc_fixture_tensor(fx, "x", true);
        mc_graph *g = mc_test_new_graph();
        mc_tensor *y;
        MC_CHECK_OK(ops[i].op(g, x, &y));
        char name[64];
        snprintf(name, sizeof name, "%s.out", ops[i].name);
        mc_fixture_expect_output(fx, name, y);
        mc_fixture_backward(fx, g, y, "dout");
        snprintf(name, sizeof name, "%s.grad_x", ops[i].name);
        mc_fixture_expect_grad(fx, name, x);
        mc_graph_free(g);
    }
    mc_fixture_close(fx);
}
END_TEST

/* ---- multi-head attention, with and without the causal mask ---- */

START_TEST(test_attention_parity) {
    mc_fixture *fx = mc_fixture_open("ops_attention.safetensors");
    int n_heads = atoi(mc_fixture_metadata(fx, "n_heads"));
    for (int causal = 0; causal <= 1; causal++) {
        const char *prefix = causal ? "causal" : "full";
        mc_tensor *q = mc_fixture_tensor(fx, "q", true);
        mc_tensor *k = mc_fixture_tensor(fx, "k", true);
        mc_tensor *v = mc_fixture_tensor(fx, "v", true);
        mc_graph *g = mc_test_new_graph();
        mc_tensor *y;
        MC_CHECK_OK(mc_attention(g, q, k, v, n_heads, causal, &y));
        char name[64];
#define NAME(field) (snprintf(name, sizeof name, "%s.%s", prefix, field), name)
        mc_fixture_expect_output(fx, NAME("out"), y);
        mc_fixture_backward(fx, g, y, NAME("dout"));
        mc_fixture_expect_grad(fx, NAME("grad_q"), q);
        mc_fixture_expect_grad(fx, NAME("grad_k"), k);
        mc_fixture_expect_grad(fx, NAME("grad_v"), v);
#undef NAME
        mc_graph_free(g);
    }
    mc_fixture_close(fx);
}
END_TEST

/* ---- cross-entropy, without and with label smoothing ---- */

START_TEST(test_cross_entropy_parity) {
    mc_fixture *fx = mc_fixture_open("ops_cross_entropy.safetensors");
    int64_t n;
    const int32_t *targets = mc_fixture_ints(fx, "targets", &n);
    const struct {
        const char *name;
        float smoothing;
    } cases[] = {{"plain", 0.0f}, {"smooth", 0.1f}};
    ck_assert_str_eq(mc_fixture_metadata(fx, "smooth.label_smoothing"), "0.1");
    for (int i = 0; i < 2; i++) {
        mc_tensor *logits = mc_fixture_tensor(fx, "logits", true);
        ck_assert_int_eq(mc_tensor_dim(logits, 0), n);
        mc_graph *g = mc_test_new_graph();
        mc_tensor *loss;
        MC_CHECK_OK(mc_cross_entropy(g, logits, targets, cases[i].smoothing, &loss));
        char name[64];
        snprintf(name, sizeof name, "%s.loss", cases[i].name);
        mc_fixture_expect_output(fx, name, loss);
        MC_CHECK_OK(mc_backward(g, loss));
        snprintf(name, sizeof name, "%s.grad_logits", cases[i].name);
        mc_fixture_expect_grad(fx, name, logits);
        mc_graph_free(g);
    }
    mc_fixture_close(fx);
}
END_TEST

/* ---- InfoNCE: one-directional and symmetric, learnable and fixed t ---- */

static void check_infonce(const char *variant, bool symmetric, bool learnable_t) {
    mc_fixture *fx = mc_fixture_open("ops_infonce.safetensors");
    mc_tensor *a = mc_fixture_tensor(fx, "a", true);
    mc_tensor *b = mc_fixture_tensor(fx, "b", true);
    mc_tensor *t = mc_fixture_tensor(fx, "t", learnable_t);
    mc_graph *g = mc_test_new_graph();
    mc_tensor *loss;
    MC_CHECK_OK(mc_infonce(g, a, b, t, symmetric, &loss));
    char name[64];
#define NAME(field) (snprintf(name, sizeof name, "%s.%s", variant, field), name)
    mc_fixture_expect_output(fx, NAME("loss"), loss);
    MC_CHECK_OK(mc_backward(g, loss));
    mc_fixture_expect_grad(fx, NAME("grad_a"), a);
    mc_fixture_expect_grad(fx, NAME("grad_b"), b);
    if (learnable_t) mc_fixture_expect_grad(fx, NAME("grad_t"), t);
    else ck_assert(t->grad == NULL);
#undef NAME
    mc_graph_free(g);
    mc_fixture_close(fx);
}

START_TEST(test_infonce_one_way_parity) { check_infonce("one_way", false, true); }
END_TEST
START_TEST(test_infonce_symmetric_parity) { check_infonce("symmetric", true, true); }
END_TEST
/* A fixed temperature gives the same loss and a/b gradients. */
START_TEST(test_infonce_fixed_t_parity) {
    check_infonce("one_way", false, false);
    check_infonce("symmetric", true, false);
}
END_TEST

/* ---- optimizers: 10 steps on Linear(6, 10) -> tanh -> Linear(10, 3) ---- */

static const char *const MLP_NAMES[4] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};

static void load_mlp(mc_fixture *fx, mc_param_list *params) {
    const mc_shape shapes[4] = {MC_SHAPE(10, 6), MC_SHAPE(10), MC_SHAPE(3, 10), MC_SHAPE(3)};
    for (int i = 0; i < 4; i++) {
        mc_tensor *p;
        MC_CHECK_OK(mc_params_new(params, &p, shapes[i], true, "%s", MLP_NAMES[i]));
        char name[64];
        snprintf(name, sizeof name, "init.%s", MLP_NAMES[i]);
        MC_CHECK_OK(mc_safetensors_read_into(fx->file, name, p));
    }
}

static mc_status mlp_loss(mc_graph *g, mc_param_list *p, mc_tensor *x, const int32_t *targets,
                          mc_tensor **loss) {
    mc_tensor *h, *a, *logits;
    MC_TRY(mc_linear(g, x, p->items[0], p->items[1], &h));
    MC_TRY(mc_tanh(g, h, &a));
    MC_TRY(mc_linear(g, a, p->items[2], p->items[3], &logits));
    return mc_cross_entropy(g, logits, targets, 0.0f, loss);
}

/* The settings of gen_ops.py's OPTIMIZERS; its metadata records them. */
static mc_optimizer *make_optimizer(const char *name, mc_param_list *params) {
    mc_optimizer *opt = NULL;
    if (strcmp(name, "sgd") == 0) {
        mc_sgd_config c = {.lr = 0.1f, .momentum = 0.9f, .dampening = 0.1f, .weight_decay = 0.0f};
        MC_CHECK_OK(mc_optimizer_sgd(&opt, params, c));
    } else if (strcmp(name, "sgd_nesterov") == 0) {
        mc_sgd_config c = {.lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-2f, .nesterov = true};
        MC_CHECK_OK(mc_optimizer_sgd(&opt, params, c));
    } else if (strcmp(name, "adam") == 0) {
        mc_adam_config c = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 1e-3f};
        MC_CHECK_OK(mc_optimizer_adam(&opt, params, c));
    } else {
        mc_adam_config c = {.lr = 1e-2f, .beta1 = 0.8f, .beta2 = 0.99f, .eps = 1e-6f, .weight_decay = 0.1f};
        MC_CHECK_OK(mc_optimizer_adamw(&opt, params, c));
    }
    return opt;
}

static void check_optimizer(const char *name, const char *settings) {
    mc_fixture *fx = mc_fixture_open("ops_optim.safetensors");
    /* The C settings above must be the ones the fixture was made with. */
    ck_assert_str_eq(mc_fixture_metadata(fx, name), settings);
    int steps = atoi(mc_fixture_metadata(fx, "steps"));
    mc_tensor *x = mc_fixture_tensor(fx, "x", false);
    const int32_t *targets = mc_fixture_ints(fx, "targets", NULL);
    mc_param_list params = {0};
    load_mlp(fx, &params);
    mc_optimizer *opt = make_optimizer(name, &params);
    mc_graph *g = mc_test_new_graph();
    float losses[64];
    ck_assert_int_le(steps, 64);
    for (int s = 0; s < steps; s++) {
        mc_optimizer_zero_grad(opt);
        mc_tensor *loss;
        MC_CHECK_OK(mlp_loss(g, &params, x, targets, &loss));
        losses[s] = loss->data[0];
        MC_CHECK_OK(mc_backward(g, loss));
        MC_CHECK_OK(mc_optimizer_step(opt));
        mc_graph_reset(g);
    }
    char expected[64];
    snprintf(expected, sizeof expected, "%s.losses", name);
    mc_fixture_expect(fx, expected, losses, steps, 1e-4, 1e-6);
    for (int i = 0; i < 4; i++) {
        snprintf(expected, sizeof expected, "%s.final.%s", name, MLP_NAMES[i]);
        mc_fixture_expect(fx, expected, params.items[i]->data, params.items[i]->numel, 1e-3, 1e-5);
    }
    mc_graph_free(g);
    mc_optimizer_free(opt);
    mc_params_free(&params);
    mc_fixture_close(fx);
}

START_TEST(test_sgd_momentum_parity) {
    check_optimizer("sgd", "lr=0.1 momentum=0.9 dampening=0.1 weight_decay=0.0");
}
END_TEST
START_TEST(test_sgd_nesterov_parity) {
    check_optimizer("sgd_nesterov", "lr=0.1 momentum=0.9 nesterov=True weight_decay=0.01");
}
END_TEST
START_TEST(test_adam_parity) {
    check_optimizer("adam", "lr=0.01 betas=(0.9, 0.999) eps=1e-08 weight_decay=0.001");
}
END_TEST
START_TEST(test_adamw_parity) {
    check_optimizer("adamw", "lr=0.01 betas=(0.8, 0.99) eps=1e-06 weight_decay=0.1");
}
END_TEST

static Suite *parity_suite(void) {
    Suite *s = suite_create("ops_parity");
    const TTest *const ops[] = {test_conv2d_parity, test_batchnorm2d_parity, test_layernorm_parity,
                                test_gelu_parity, test_attention_parity, test_cross_entropy_parity,
                                test_infonce_one_way_parity, test_infonce_symmetric_parity,
                                test_infonce_fixed_t_parity, NULL};
    mc_test_add_case(s, "ops", ops);
    const TTest *const optim[] = {test_sgd_momentum_parity, test_sgd_nesterov_parity,
                                  test_adam_parity, test_adamw_parity, NULL};
    mc_test_add_case(s, "optim", optim);
    return s;
}

int main(void) { return mc_test_run_suite(parity_suite()); }

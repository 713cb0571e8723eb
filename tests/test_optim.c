/* Optimizers, gradient clipping and learning-rate schedules.
 *
 * Each optimizer is checked against the update rule written out here in
 * double precision, in the form torch.optim's documentation gives it (the
 * pseudo-code of SGD, Adam and AdamW), which is a different arrangement of the
 * arithmetic than lib/optim's (e.g. Adam's m_hat / (sqrt(v_hat) + eps) instead
 * of lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "mmchain/optim.h"
#include "../lib/optim/optim_internal.h"

/* ---- a small model: three named parameters ---- */

enum { N_W = 12, N_B = 5, N_FROZEN = 2, N_TOTAL = N_W + N_B + N_FROZEN };

typedef struct model {
    mc_param_list params;
    mc_tensor *w, *b, *frozen;
} model;

static void model_init(model *m, uint64_t seed) {
    memset(m, 0, sizeof *m);
    MC_CHECK_OK(mc_params_new(&m->params, &m->w, MC_SHAPE(3, 4), true, "layer.weight"));
    MC_CHECK_OK(mc_params_new(&m->params, &m->b, MC_SHAPE(5), true, "layer.bias"));
    MC_CHECK_OK(mc_params_new(&m->params, &m->frozen, MC_SHAPE(2), true, "embed.weight"));
    /* Gradient buffers as backward would make them (heap tensors get theirs
     * from the heap, so no graph has to stay alive). */
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    float *grad;
    for (int i = 0; i < m->params.count; i++)
        MC_CHECK_OK(mc_grad_buffer(g, m->params.items[i], &grad));
    mc_graph_free(g);
    /* Frozen, but holding a gradient buffer: it must still not move. */
    MC_CHECK_OK(mc_tensor_set_requires_grad(m->frozen, false));
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    for (int i = 0; i < m->params.count; i++)
        mc_tensor_normal(m->params.items[i], &rng, 0.0f, 1.0f);
}

/* A deterministic gradient for step `step`, of size `scale`. */
static void model_set_grads(model *m, int step, float scale) {
    mc_rng rng;
    mc_rng_seed(&rng, 1000 + (uint64_t)step);
    for (int i = 0; i < m->params.count; i++) {
        mc_tensor *t = m->params.items[i];
        for (int64_t j = 0; j < t->numel; j++) t->grad[j] = scale * (float)mc_rng_normal(&rng);
    }
}

/* All parameter values, in list order, as doubles (the reference's state). */
static void model_values(const model *m, double *out) {
    int k = 0;
    for (int i = 0; i < m->params.count; i++)
        for (int64_t j = 0; j < m->params.items[i]->numel; j++)
            out[k++] = m->params.items[i]->data[j];
}

static void model_grads(const model *m, double *out) {
    int k = 0;
    for (int i = 0; i < m->params.count; i++)
        for (int64_t j = 0; j < m->params.items[i]->numel; j++)
            out[k++] = m->params.items[i]->grad[j];
}

static void assert_model_close(const model *m, const double *expected, double rtol, double atol,
                               const char *what) {
    float actual[N_TOTAL], wanted[N_TOTAL];
    int k = 0;
    for (int i = 0; i < m->params.count; i++)
        for (int64_t j = 0; j < m->params.items[i]->numel; j++, k++) {
            actual[k] = m->params.items[i]->data[j];
            wanted[k] = (float)expected[k];
        }
    mc_test_assert_close(what, actual, wanted, N_TOTAL, rtol, atol);
}

/* A model from `seed` and an Adam optimizer with PyTorch's defaults over it. */
static mc_optimizer *model_with_adam(model *m, uint64_t seed) {
    model_init(m, seed);
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &m->params, mc_adam_defaults()));
    return opt;
}

static bool is_frozen_index(int k) { return k >= N_W + N_B; }

/* ---- the reference updates, in double (torch.optim documentation) ---- */

typedef struct reference_state {
    double m[N_TOTAL], v[N_TOTAL]; /* momentum buffer / exp_avg, exp_avg_sq */
    int t;                         /* steps taken */
} reference_state;

/* SGD: g = grad + wd*theta; b = g (t = 1) or mu*b + (1 - tau)*g;
 * g = nesterov ? g + mu*b : b (when mu != 0); theta -= lr*g. */
static void reference_sgd(double *theta, const double *grad, reference_state *s,
                          const mc_sgd_config *c, double lr) {
    s->t++;
    for (int k = 0; k < N_TOTAL; k++) {
        if (is_frozen_index(k)) continue;
        double g = grad[k] + (double)c->weight_decay * theta[k];
        if (c->momentum != 0.0f) {
            s->m[k] = s->t == 1 ? g : c->momentum * s->m[k] + (1.0 - c->dampening) * g;
            g = c->nesterov ? g + c->momentum * s->m[k] : s->m[k];
        }
        theta[k] -= lr * g;
    }
}

/* Adam: g += wd*theta; AdamW: theta -= lr*wd*theta. Then
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; m_hat = m / (1 - b1^t);
 * v_hat = v / (1 - b2^t); theta -= lr * m_hat / (sqrt(v_hat) + eps). */
static void reference_adam(double *theta, const double *grad, reference_state *s,
                           const mc_adam_config *c, double lr, bool decoupled) {
    s->t++;
    for (int k = 0; k < N_TOTAL; k++) {
        if (is_frozen_index(k)) continue;
        double g = grad[k];
        if (decoupled)
            theta[k] -= lr * c->weight_decay * theta[k];
        else
            g += c->weight_decay * theta[k];
        s->m[k] = c->beta1 * s->m[k] + (1.0 - c->beta1) * g;
        s->v[k] = c->beta2 * s->v[k] + (1.0 - c->beta2) * g * g;
        double m_hat = s->m[k] / (1.0 - pow(c->beta1, s->t));
        double v_hat = s->v[k] / (1.0 - pow(c->beta2, s->t));
        theta[k] -= lr * m_hat / (sqrt(v_hat) + c->eps);
    }
}

/* ---- one optimizer vs its reference over several steps ---- */

typedef enum { RUN_SGD, RUN_ADAM, RUN_ADAMW } run_kind;

typedef struct optim_case {
    const char *name;
    run_kind kind;
    mc_sgd_config sgd;
    mc_adam_config adam;
    float grad_scale;
    bool cosine_lr; /* change the learning rate every step from a schedule */
} optim_case;

/* PyTorch's defaults, which the first Adam and AdamW cases below use (with
 * lr 1e-2). */
START_TEST(test_adam_defaults) {
    const mc_adam_config adam = mc_adam_defaults(), adamw = mc_adamw_defaults();
    ck_assert_float_eq(adam.lr, 1e-3f);
    ck_assert_float_eq(adam.beta1, 0.9f);
    ck_assert_float_eq(adam.beta2, 0.999f);
    ck_assert_float_eq(adam.eps, 1e-8f);
    ck_assert_float_eq(adam.weight_decay, 0.0f);
    ck_assert_float_eq(adamw.lr, adam.lr);
    ck_assert_float_eq(adamw.beta1, adam.beta1);
    ck_assert_float_eq(adamw.beta2, adam.beta2);
    ck_assert_float_eq(adamw.eps, adam.eps);
    ck_assert_float_eq(adamw.weight_decay, 1e-2f);
}
END_TEST

/* In the second Adam and AdamW cases, small gradients with a large eps make
 * the placement of eps matter: inside vs outside the bias-corrected sqrt
 * differs by a factor ~30. */
static const optim_case formula_cases[] = {
    {"sgd plain", RUN_SGD, .sgd = {.lr = 0.1f}, .grad_scale = 1.0f},
    {"sgd momentum+dampening+wd", RUN_SGD,
     .sgd = {.lr = 0.05f, .momentum = 0.9f, .dampening = 0.1f, .weight_decay = 1e-2f},
     .grad_scale = 1.0f},
    {"sgd nesterov+wd, cosine lr", RUN_SGD,
     .sgd = {.lr = 0.05f, .momentum = 0.8f, .weight_decay = 1e-3f, .nesterov = true},
     .grad_scale = 1.0f,
     .cosine_lr = true},
    {"adam defaults", RUN_ADAM,
     .adam = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f},
     .grad_scale = 1.0f},
    {"adam wd, large eps", RUN_ADAM,
     .adam = {.lr = 1e-2f, .beta1 = 0.8f, .beta2 = 0.99f, .eps = 1e-3f, .weight_decay = 0.1f},
     .grad_scale = 1e-3f},
    {"adam beta1 0, cosine lr", RUN_ADAM,
     .adam = {.lr = 5e-3f, .beta1 = 0.0f, .beta2 = 0.9f, .eps = 1e-8f, .weight_decay = 0.0f},
     .grad_scale = 3.0f,
     .cosine_lr = true},
    {"adamw defaults", RUN_ADAMW,
     .adam = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 1e-2f},
     .grad_scale = 1.0f},
    {"adamw strong decay, large eps", RUN_ADAMW,
     .adam = {.lr = 3e-3f, .beta1 = 0.5f, .beta2 = 0.9f, .eps = 1e-3f, .weight_decay = 0.5f},
     .grad_scale = 1e-3f,
     .cosine_lr = true},
};
enum { N_FORMULA_CASES = sizeof formula_cases / sizeof formula_cases[0] };

/* Case _i: the optimizer against its reference over several steps. */
START_TEST(test_matches_formula) {
    const optim_case *c = &formula_cases[_i];
    model m;
    model_init(&m, 5);
    mc_optimizer *opt;
    if (c->kind == RUN_SGD) MC_CHECK_OK(mc_optimizer_sgd(&opt, &m.params, c->sgd));
    if (c->kind == RUN_ADAM) MC_CHECK_OK(mc_optimizer_adam(&opt, &m.params, c->adam));
    if (c->kind == RUN_ADAMW) MC_CHECK_OK(mc_optimizer_adamw(&opt, &m.params, c->adam));
    double theta[N_TOTAL], grad[N_TOTAL];
    model_values(&m, theta);
    reference_state state = {0};
    float base_lr = c->kind == RUN_SGD ? c->sgd.lr : c->adam.lr;
    mc_lr_schedule schedule = mc_lr_cosine(base_lr, 1, 5, 0.0f);
    for (int step = 0; step < 4; step++) {
        model_set_grads(&m, step, c->grad_scale);
        model_grads(&m, grad);
        float lr = c->cosine_lr ? mc_lr_at(&schedule, step + 1) : base_lr;
        MC_CHECK_OK(mc_optimizer_set_lr(opt, lr));
        MC_CHECK_OK(mc_optimizer_step(opt));
        if (c->kind == RUN_SGD)
            reference_sgd(theta, grad, &state, &c->sgd, lr);
        else
            reference_adam(theta, grad, &state, &c->adam, lr, c->kind == RUN_ADAMW);
        char what[128];
        snprintf(what, sizeof what, "%s, step %d", c->name, step + 1);
        assert_model_close(&m, theta, 1e-5, 1e-6, what);
    }
    ck_assert_int_eq(mc_optimizer_steps(opt), 4);
    mc_optimizer_free(opt);
    mc_params_free(&m.params);
}
END_TEST

/* Hand-computed single steps, so the rules are pinned by numbers too:
 * SGD lr 0.1, wd 0.5, p = 2, g = 1:  p = 2 - 0.1 * (1 + 0.5*2) = 1.8.
 * Adam lr 0.1, step 1, any g != 0: m_hat = g, v_hat = g^2, so
 *   p -= 0.1 * g / (|g| + eps) = 0.1 * sign(g) (eps 0): p = 2 - 0.1 = 1.9.
 * AdamW lr 0.1, wd 0.5: p = 2 * (1 - 0.05) - 0.1 = 1.8. */
START_TEST(test_single_steps_by_hand) {
    for (int which = 0; which < 3; which++) {
        mc_param_list params = {0};
        mc_tensor *p;
        MC_CHECK_OK(mc_params_new(&params, &p, MC_SHAPE(1), true, "p"));
        mc_graph *g;
        float *grad;
        MC_CHECK_OK(mc_graph_new(&g));
        MC_CHECK_OK(mc_grad_buffer(g, p, &grad));
        mc_graph_free(g);
        p->data[0] = 2.0f;
        p->grad[0] = 1.0f;
        mc_optimizer *opt;
        mc_adam_config adam = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 0.0f};
        float expected;
        if (which == 0) {
            MC_CHECK_OK(
                mc_optimizer_sgd(&opt, &params, (mc_sgd_config){.lr = 0.1f, .weight_decay = 0.5f}));
            expected = 1.8f;
        } else if (which == 1) {
            MC_CHECK_OK(mc_optimizer_adam(&opt, &params, adam));
            expected = 1.9f;
        } else {
            adam.weight_decay = 0.5f;
            MC_CHECK_OK(mc_optimizer_adamw(&opt, &params, adam));
            expected = 1.8f;
        }
        MC_CHECK_OK(mc_optimizer_step(opt));
        ck_assert_float_eq_tol(p->data[0], expected, 1e-6f);
        mc_optimizer_zero_grad(opt);
        ck_assert_float_eq(p->grad[0], 0.0f);
        mc_optimizer_free(opt);
        mc_params_free(&params);
    }
}
END_TEST

START_TEST(test_optimizer_bad_settings) {
    mc_param_list params = {0};
    mc_optimizer *opt = (mc_optimizer *)0x1;
    MC_CHECK_FAILS(mc_optimizer_sgd(&opt, &params, (mc_sgd_config){.lr = 0.1f, .nesterov = true}),
                   MC_ERR_ARG, "nesterov needs momentum > 0");
    ck_assert_ptr_null(opt);
    MC_CHECK_FAILS(mc_optimizer_sgd(&opt, &params, (mc_sgd_config){.lr = -1.0f}), MC_ERR_ARG,
                   "sgd: lr is -1");
    mc_adam_config adam = mc_adam_defaults();
    adam.beta1 = 1.0f;
    MC_CHECK_FAILS(mc_optimizer_adam(&opt, &params, adam), MC_ERR_ARG, "adam: beta1 is 1");
    adam = mc_adamw_defaults();
    adam.eps = -1e-8f;
    MC_CHECK_FAILS(mc_optimizer_adamw(&opt, &params, adam), MC_ERR_ARG, "adamw: eps");
    MC_CHECK_FAILS(mc_optimizer_adam(&opt, NULL, mc_adam_defaults()), MC_ERR_ARG, "NULL");
}
END_TEST

/* The list must keep its tensors: growing it after creation is an error. */
START_TEST(test_optimizer_list_changed) {
    model m;
    mc_optimizer *opt = model_with_adam(&m, 6);
    MC_CHECK_OK(mc_params_new(&m.params, NULL, MC_SHAPE(2), true, "late.weight"));
    MC_CHECK_FAILS(mc_optimizer_step(opt), MC_ERR_STATE, "had 3 tensors");
    mc_optimizer_free(opt);
    mc_params_free(&m.params);
}
END_TEST

/* ==================================================================== */
/* ---- state export / import ---- */

/* Runs `steps` steps starting at step number `first`; the bias is frozen
 * during step 0 so that its own step count lags behind. */
static void train(mc_optimizer *opt, model *m, int first, int steps) {
    for (int step = first; step < first + steps; step++) {
        MC_CHECK_OK(mc_tensor_set_requires_grad(m->b, step != 0));
        model_set_grads(m, step, 1.0f);
        MC_CHECK_OK(mc_optimizer_step(opt));
    }
}

static float state_value(const mc_param_list *state, const char *name) {
    mc_tensor *t = mc_params_find(state, name);
    ck_assert_msg(t != NULL, "state has no %s", name);
    return t->data[0];
}

/* An SGD optimizer with the settings `sgd`, or an AdamW one with `adamw`. */
static void new_sgd_or_adamw(mc_optimizer **opt, mc_param_list *params, bool use_sgd,
                             mc_sgd_config sgd, mc_adam_config adamw) {
    if (use_sgd)
        MC_CHECK_OK(mc_optimizer_sgd(opt, params, sgd));
    else
        MC_CHECK_OK(mc_optimizer_adamw(opt, params, adamw));
}

/* The values of `from`'s parameters into `to`'s. */
static void model_copy_values(model *to, const model *from) {
    for (int i = 0; i < from->params.count; i++)
        MC_CHECK_OK(mc_tensor_copy(to->params.items[i], from->params.items[i]));
}

/* Run 0: AdamW; run 1: SGD with Nesterov momentum; run 2: SGD without
 * momentum, whose state is the step counts alone. A model that takes over
 * another's values and optimizer state continues bit for bit like it, and
 * exports the same state; one that takes over the values only (the
 * control) does not continue alike (where there are moments to lose), so
 * the round trip is not passing by accident. */
START_TEST(test_state_round_trip) {
    const bool use_sgd = _i >= 1, plain = _i == 2;
    model a, b, control;
    model_init(&a, 9);
    mc_optimizer *opt_a, *opt_b, *opt_control;
    mc_sgd_config sgd = {.lr = 0.05f, .momentum = plain ? 0.0f : 0.9f, .nesterov = !plain};
    mc_adam_config adamw = mc_adamw_defaults();
    new_sgd_or_adamw(&opt_a, &a.params, use_sgd, sgd, adamw);
    train(opt_a, &a, 0, 3);

    mc_param_list state = {0};
    MC_CHECK_OK(mc_optimizer_export_state(opt_a, &state));
    ck_assert_float_eq(state_value(&state, "optimizer.step"), 3.0f);
    ck_assert_float_eq(state_value(&state, "optimizer.step.layer.bias"), 2.0f);
    ck_assert_ptr_null(mc_params_find(&state, "optimizer.step.layer.weight"));
    ck_assert_ptr_null(mc_params_find(&state, "optimizer.exp_avg.embed.weight")); /* frozen */
    const char *buffer =
        use_sgd ? "optimizer.momentum_buffer.layer.weight" : "optimizer.exp_avg_sq.layer.weight";
    mc_tensor *saved = mc_params_find(&state, buffer);
    if (plain) {
        /* No buffers: the frozen parameter's 0 steps are written, lest the
         * import take it for one updated at every step. */
        ck_assert_ptr_null(saved);
        ck_assert_float_eq(state_value(&state, "optimizer.step.embed.weight"), 0.0f);
        ck_assert_int_eq(state.count, 1 + 2);
    } else {
        ck_assert_ptr_nonnull(saved);
        ck_assert(mc_shape_equal(saved->shape, a.w->shape));
        ck_assert_int_eq(state.count, use_sgd ? 1 + 2 + 1 : 1 + 4 + 1);
    }

    /* Two models with a's current values and fresh optimizers; b imports
     * a's state, the control does not. */
    model_init(&b, 123);
    model_init(&control, 9);
    model_copy_values(&b, &a);
    model_copy_values(&control, &a);
    new_sgd_or_adamw(&opt_b, &b.params, use_sgd, sgd, adamw);
    new_sgd_or_adamw(&opt_control, &control.params, use_sgd, sgd, adamw);
    MC_CHECK_OK(mc_optimizer_import_state_from_list(opt_b, &state));
    ck_assert_int_eq(mc_optimizer_steps(opt_b), 3);
    mc_param_list again = {0};
    MC_CHECK_OK(mc_optimizer_export_state(opt_b, &again));
    mc_test_assert_same_params("the state exported again", &state, &again);
    mc_params_free(&again);

    /* Continued steps must be bit-for-bit identical; the control's differ
     * from the first step on. */
    train(opt_a, &a, 3, 1);
    train(opt_b, &b, 3, 1);
    train(opt_control, &control, 3, 1);
    if (!plain) ck_assert(memcmp(a.w->data, control.w->data, sizeof(float) * N_W) != 0);
    train(opt_a, &a, 4, 1);
    train(opt_b, &b, 4, 1);
    mc_test_assert_same_params("after resuming", &a.params, &b.params);
    mc_params_free(&state);
    model *models[] = {&a, &b, &control};
    mc_optimizer *optimizers[] = {opt_a, opt_b, opt_control};
    for (int k = 0; k < 3; k++) {
        mc_optimizer_free(optimizers[k]);
        mc_params_free(&models[k]->params);
    }
}
END_TEST

START_TEST(test_state_import_errors) {
    model m;
    mc_optimizer *opt = model_with_adam(&m, 10);
    train(opt, &m, 0, 2);
    mc_param_list state = {0};
    MC_CHECK_OK(mc_optimizer_export_state(opt, &state));
    float w_before[N_W];
    memcpy(w_before, m.w->data, sizeof w_before);

    /* A wrong shape, then a missing tensor, then a bad step count: each an
     * error naming the tensor, and the optimizer keeps its own state. */
    mc_tensor *exp_avg = mc_params_find(&state, "optimizer.exp_avg.layer.weight");
    MC_CHECK_OK(mc_tensor_reshape_inplace(exp_avg, MC_SHAPE(4, 3)));
    MC_CHECK_FAILS(
        mc_optimizer_import_state_from_list(opt, &state), MC_ERR_SHAPE,
        "optimizer.exp_avg.layer.weight has shape (4, 3), parameter layer.weight has (3, 4)");
    mc_tensor_set_name(exp_avg, "renamed");
    MC_CHECK_FAILS(
        mc_optimizer_import_state_from_list(opt, &state), MC_ERR_FORMAT,
        "optimizer.exp_avg.layer.weight is missing (the state of layer.weight is incomplete)");
    mc_tensor_set_name(exp_avg, "optimizer.exp_avg.layer.weight");
    MC_CHECK_OK(mc_tensor_reshape_inplace(exp_avg, MC_SHAPE(3, 4)));
    /* A negative second moment (every update would be NaN), a parameter
     * that counts more steps than the optimizer. */
    mc_tensor *exp_avg_sq = mc_params_find(&state, "optimizer.exp_avg_sq.layer.weight");
    const float kept = exp_avg_sq->data[5];
    exp_avg_sq->data[5] = -1.0f;
    MC_CHECK_FAILS(mc_optimizer_import_state_from_list(opt, &state), MC_ERR_FORMAT,
                   "optimizer.exp_avg_sq.layer.weight holds -1 at element 5");
    exp_avg_sq->data[5] = kept;
    mc_tensor *bias_steps = mc_params_find(&state, "optimizer.step.layer.bias");
    bias_steps->data[0] = 3.0f;
    MC_CHECK_FAILS(mc_optimizer_import_state_from_list(opt, &state), MC_ERR_FORMAT,
                   "optimizer.step.layer.bias counts 3 steps, more than the optimizer's 2");
    bias_steps->data[0] = 1.0f;
    /* State of a parameter this optimizer does not have (another model's
     * names): refused, not dropped. */
    mc_tensor_set_name(exp_avg_sq, "optimizer.exp_avg_sq.encoder.layer.weight");
    MC_CHECK_FAILS(mc_optimizer_import_state_from_list(opt, &state), MC_ERR_FORMAT,
                   "optimizer.exp_avg_sq.encoder.layer.weight belongs to no parameter");
    mc_tensor_set_name(exp_avg_sq, "optimizer.exp_avg_sq.layer.weight");
    mc_tensor *step = mc_params_find(&state, "optimizer.step");
    step->data[0] = 2.5f;
    MC_CHECK_FAILS(mc_optimizer_import_state_from_list(opt, &state), MC_ERR_FORMAT,
                   "optimizer.step");
    mc_tensor_set_name(step, "gone");
    MC_CHECK_FAILS(mc_optimizer_import_state_from_list(opt, &state), MC_ERR_FORMAT,
                   "optimizer.step is missing");
    ck_assert_int_eq(mc_optimizer_steps(opt), 2);
    ck_assert(memcmp(w_before, m.w->data, sizeof w_before) == 0);
    mc_params_free(&state);
    mc_optimizer_free(opt);
    mc_params_free(&m.params);
}
END_TEST

/* ==================================================================== */
/* ---- gradient clipping ---- */

/* Gradients (3, 4) and (12) (and a frozen one that must be ignored): the
 * global norm is sqrt(9 + 16 + 144) = 13. */
static model clip_model(void) {
    model m;
    model_init(&m, 1);
    memset(m.w->grad, 0, sizeof(float) * N_W);
    memset(m.b->grad, 0, sizeof(float) * N_B);
    m.w->grad[0] = 3.0f;
    m.w->grad[5] = 4.0f;
    m.b->grad[2] = 12.0f;
    m.frozen->grad[0] = 1000.0f;
    return m;
}

START_TEST(test_grad_clip_norm) {
    model m = clip_model();
    float norm;
    MC_CHECK_OK(mc_grad_clip_norm(&m.params, 20.0f, &norm));
    ck_assert_float_eq_tol(norm, 13.0f, 1e-5f);
    ck_assert_float_eq(m.w->grad[0], 3.0f); /* below the limit: untouched */
    MC_CHECK_OK(mc_grad_clip_norm(&m.params, 6.5f, &norm));
    ck_assert_float_eq_tol(norm, 13.0f, 1e-5f);
    const double factor = 6.5 / (13.0 + 1e-6);
    ck_assert_float_eq_tol(m.w->grad[0], 3.0 * factor, 1e-6);
    ck_assert_float_eq_tol(m.w->grad[5], 4.0 * factor, 1e-6);
    ck_assert_float_eq_tol(m.b->grad[2], 12.0 * factor, 1e-6);
    ck_assert_float_eq(m.frozen->grad[0], 1000.0f);
    MC_CHECK_OK(mc_grad_clip_norm(&m.params, 100.0f, &norm));
    ck_assert_float_eq_tol(norm, 6.5f, 1e-5f);
    /* Tiny gradients show the 1e-6 in the denominator: norm 1.3e-6, max 1e-7
     * -> factor 1e-7 / 2.3e-6 (it would be 1e-7 / 1.3e-6 without it). */
    m.w->grad[0] = 3e-7f;
    m.w->grad[5] = 4e-7f;
    m.b->grad[2] = 12e-7f;
    MC_CHECK_OK(mc_grad_clip_norm(&m.params, 1e-7f, &norm));
    ck_assert_float_eq_tol(norm, 1.3e-6f, 1e-11f);
    ck_assert_float_eq_tol(m.b->grad[2], 12e-7 * (1e-7 / 2.3e-6), 1e-11);
    mc_params_free(&m.params);
}
END_TEST

START_TEST(test_grad_clip_norm_errors) {
    model m = clip_model();
    float norm;
    MC_CHECK_FAILS(mc_grad_clip_norm(&m.params, 0.0f, &norm), MC_ERR_ARG, "max_norm is 0");
    m.b->grad[1] = NAN;
    MC_CHECK_FAILS(mc_grad_clip_norm(&m.params, 1.0f, &norm), MC_ERR_NUMERIC, "layer.bias");
    ck_assert_float_eq(m.w->grad[0], 3.0f); /* nothing was scaled */
    /* Every gradient finite, their norm (4.2e38) not a float. */
    m.b->grad[1] = 0.0f;
    m.w->grad[0] = m.w->grad[5] = 3e38f;
    MC_CHECK_FAILS(mc_grad_clip_norm(&m.params, 1.0f, &norm), MC_ERR_NUMERIC, "past float's range");
    ck_assert_float_eq(m.w->grad[0], 3e38f);
    mc_params_free(&m.params);
}
END_TEST

/* ==================================================================== */
/* ---- schedules ---- */

START_TEST(test_lr_schedules) {
    mc_lr_schedule constant = mc_lr_constant(0.3f);
    MC_CHECK_OK(mc_lr_schedule_check(&constant));
    ck_assert_float_eq(mc_lr_at(&constant, 0), 0.3f);
    ck_assert_float_eq(mc_lr_at(&constant, 12345), 0.3f);

    /* StepLR(step_size 3, gamma 0.5): 0.1 for steps 0-2, 0.05 for 3-5, ... */
    mc_lr_schedule step = mc_lr_step(0.1f, 3, 0.5f);
    MC_CHECK_OK(mc_lr_schedule_check(&step));
    const float step_expected[8] = {0.1f, 0.1f, 0.1f, 0.05f, 0.05f, 0.05f, 0.025f, 0.025f};
    for (int s = 0; s < 8; s++) ck_assert_float_eq_tol(mc_lr_at(&step, s), step_expected[s], 1e-8f);

    /* Warmup 10, total 110, base 1: linear 0 -> 1 over steps 0..10, then
     * 0.5 (1 + cos(pi (s - 10) / 100)): 1 at 10, 0.5 at 60, 0 at 110 and after. */
    mc_lr_schedule cosine = mc_lr_cosine(1.0f, 10, 110, 0.0f);
    MC_CHECK_OK(mc_lr_schedule_check(&cosine));
    ck_assert_float_eq_tol(mc_lr_at(&cosine, 0), 0.0f, 1e-7f);
    ck_assert_float_eq_tol(mc_lr_at(&cosine, 5), 0.5f, 1e-7f);
    ck_assert_float_eq_tol(mc_lr_at(&cosine, 10), 1.0f, 1e-7f);
    ck_assert_float_eq_tol(mc_lr_at(&cosine, 35), 0.5 * (1 + cos(M_PI * 0.25)), 1e-6f);
    ck_assert_float_eq_tol(mc_lr_at(&cosine, 60), 0.5f, 1e-6f);
    ck_assert_float_eq_tol(mc_lr_at(&cosine, 110), 0.0f, 1e-7f);
    ck_assert_float_eq_tol(mc_lr_at(&cosine, 500), 0.0f, 1e-7f);
    /* With a floor of 0.1: halfway is 0.1 + 0.9 * 0.5 = 0.55. */
    mc_lr_schedule floored = mc_lr_cosine(1.0f, 0, 100, 0.1f);
    ck_assert_float_eq_tol(mc_lr_at(&floored, 0), 1.0f, 1e-7f);
    ck_assert_float_eq_tol(mc_lr_at(&floored, 50), 0.55f, 1e-6f);
    ck_assert_float_eq_tol(mc_lr_at(&floored, 100), 0.1f, 1e-7f);
}
END_TEST

START_TEST(test_lr_schedule_errors) {
    mc_lr_schedule s = mc_lr_step(0.1f, 0, 0.5f);
    MC_CHECK_FAILS(mc_lr_schedule_check(&s), MC_ERR_ARG, "step_size is 0");
    s = mc_lr_cosine(0.1f, 100, 100, 0.0f);
    MC_CHECK_FAILS(mc_lr_schedule_check(&s), MC_ERR_ARG,
                   "total_steps 100 must exceed warmup_steps 100");
    s = mc_lr_cosine(0.1f, 0, 100, 0.5f);
    MC_CHECK_FAILS(mc_lr_schedule_check(&s), MC_ERR_ARG, "min_lr");
    s = mc_lr_constant(-1.0f);
    MC_CHECK_FAILS(mc_lr_schedule_check(&s), MC_ERR_ARG, "base_lr");
}
END_TEST

/* ==================================================================== */
/* ---- parameter groups ---- */

/* A one-tensor list that does not own its tensor. */
static mc_param_list view_of(mc_tensor **t) {
    return (mc_param_list){.items = t, .count = 1, .capacity = 1};
}

/* One optimizer with two groups (the weight: lr 0.05, weight decay 0.01; the
 * bias: lr 0.2, no decay) against two one-group optimizers with those
 * settings: the parameters must be bit-identical after every step. From step
 * 2 a StepLR schedule halves the bias group's lr; the weight group's stays.
 * Run 0: AdamW; run 1: SGD with momentum. */
START_TEST(test_groups_match_separate) {
    const bool use_sgd = _i == 1;
    model grouped, separate;
    model_init(&grouped, 21);
    model_init(&separate, 21);
    mc_param_list grouped_w = view_of(&grouped.w), grouped_b = view_of(&grouped.b);
    mc_param_list separate_w = view_of(&separate.w), separate_b = view_of(&separate.b);
    mc_sgd_config sgd = {.lr = 0.05f, .momentum = 0.9f, .weight_decay = 0.01f};
    mc_adam_config adamw = mc_adamw_defaults();
    adamw.lr = 0.05f;
    adamw.weight_decay = 0.01f;
    mc_optimizer *opt, *opt_w, *opt_b;
    new_sgd_or_adamw(&opt, &grouped_w, use_sgd, sgd, adamw);
    new_sgd_or_adamw(&opt_w, &separate_w, use_sgd, sgd, adamw);
    sgd.lr = adamw.lr = 0.2f;
    sgd.weight_decay = adamw.weight_decay = 0.0f;
    new_sgd_or_adamw(&opt_b, &separate_b, use_sgd, sgd, adamw);
    MC_CHECK_OK(mc_optimizer_add_group(opt, &grouped_b, 0.2f, 0.0f));
    ck_assert_int_eq(mc_optimizer_group_count(opt), 2);
    mc_lr_schedule bias_schedule = mc_lr_step(0.2f, 2, 0.5f);
    for (int step = 0; step < 5; step++) {
        float bias_lr = mc_lr_at(&bias_schedule, mc_optimizer_steps(opt));
        MC_CHECK_OK(mc_optimizer_set_group_lr(opt, 1, bias_lr));
        MC_CHECK_OK(mc_optimizer_set_lr(opt_b, bias_lr));
        model_set_grads(&grouped, step, 1.0f);
        model_set_grads(&separate, step, 1.0f);
        MC_CHECK_OK(mc_optimizer_step(opt));
        MC_CHECK_OK(mc_optimizer_step(opt_w));
        MC_CHECK_OK(mc_optimizer_step(opt_b));
        ck_assert_float_eq(mc_optimizer_get_group_lr(opt, 0), 0.05f);
        ck_assert_float_eq(mc_optimizer_get_group_lr(opt, 1), bias_lr);
        for (int i = 0; i < grouped.params.count; i++) {
            const mc_tensor *a = grouped.params.items[i], *b = separate.params.items[i];
            ck_assert_msg(memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0,
                          "step %d: %s differs from the separate optimizers'", step, a->name);
        }
    }
    ck_assert_float_eq(mc_optimizer_get_group_lr(opt, 1), 0.05f); /* halved at steps 2 and 4 */
    MC_CHECK_FAILS(mc_optimizer_set_group_lr(opt, 2, 0.1f), MC_ERR_ARG, "group 2 does not exist");
    ck_assert(isnan(mc_optimizer_get_group_lr(opt, 2)));
    MC_CHECK_FAILS(mc_optimizer_add_group(opt, &grouped_b, 0.1f, 0.0f), MC_ERR_STATE,
                   "after 5 steps");
    mc_optimizer_free(opt);
    mc_optimizer_free(opt_w);
    mc_optimizer_free(opt_b);
    mc_params_free(&grouped.params);
    mc_params_free(&separate.params);
}
END_TEST

START_TEST(test_group_bad_settings) {
    model m;
    mc_optimizer *opt = model_with_adam(&m, 3);
    mc_param_list bias = view_of(&m.b);
    MC_CHECK_FAILS(mc_optimizer_add_group(opt, &bias, -1.0f, 0.0f), MC_ERR_ARG,
                   "group 1: lr is -1");
    MC_CHECK_FAILS(mc_optimizer_add_group(opt, &bias, 0.1f, NAN), MC_ERR_ARG,
                   "group 1: weight_decay");
    MC_CHECK_FAILS(mc_optimizer_add_group(opt, NULL, 0.1f, 0.0f), MC_ERR_ARG, "NULL");
    const float lr = mc_optimizer_get_lr(opt);
    MC_CHECK_FAILS(mc_optimizer_set_lr(opt, NAN), MC_ERR_ARG, "lr is nan");
    MC_CHECK_FAILS(mc_optimizer_set_lr(opt, -0.5f), MC_ERR_ARG, "lr is -0.5");
    ck_assert_float_eq(mc_optimizer_get_lr(opt), lr);
    /* A tensor already in a group, or twice in one: it would be stepped
     * twice per step (PyTorch refuses it too). */
    MC_CHECK_FAILS(mc_optimizer_add_group(opt, &bias, 0.1f, 0.0f), MC_ERR_ARG, "is in group 0 already");
    mc_tensor *extra;
    MC_CHECK_OK(mc_tensor_new(&extra, MC_SHAPE(2), "extra"));
    mc_tensor *pair[2] = {extra, extra};
    mc_param_list twice = {.items = pair, .count = 2, .capacity = 2};
    MC_CHECK_FAILS(mc_optimizer_add_group(opt, &twice, 0.1f, 0.0f), MC_ERR_ARG, "lists extra twice");
    mc_tensor_free(extra);
    ck_assert_int_eq(mc_optimizer_group_count(opt), 1);
    mc_optimizer_free(opt);
    mc_params_free(&m.params);
}
END_TEST


/* The vectorised Adam kernel (the AVX-512 one where the CPU has it) gives
 * the plain reference's bits, for Adam and AdamW, at lengths that leave
 * every tail length and that take the threaded path. */
START_TEST(test_adam_kernel_matches_reference) {
    const int64_t lengths[] = {1, 15, 16, 17, 4096 + 5, 70001};
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
        const int64_t n = lengths[l];
        float *arrays[2][4]; /* [kernel][param, grad, exp_avg, exp_avg_sq] */
        for (int k = 0; k < 2; k++)
            for (int a = 0; a < 4; a++) arrays[k][a] = malloc((size_t)n * sizeof(float));
        for (int decoupled = 0; decoupled < 2; decoupled++) {
            uint32_t seed = 12345u + (uint32_t)n;
            for (int64_t i = 0; i < n; i++)
                for (int a = 0; a < 4; a++) {
                    seed = seed * 1664525u + 1013904223u;
                    float u = (float)(seed >> 8) / 16777216.0f; /* [0, 1) */
                    float value = a == 3 ? u * 1e-3f : (u - 0.5f) * (a == 1 ? 2e-2f : 1.0f);
                    arrays[0][a][i] = arrays[1][a][i] = value;
                }
            mc_adam_config config = mc_adam_defaults();
            config.weight_decay = 0.01f;
            for (int64_t step = 1; step <= 3; step++) {
                mc_adam_update(arrays[0][0], arrays[0][1], arrays[0][2], arrays[0][3], n, &config,
                               1e-3f, step, decoupled);
                mc_adam_update_reference(arrays[1][0], arrays[1][1], arrays[1][2], arrays[1][3],
                                         n, &config, 1e-3f, step, decoupled);
            }
            for (int a = 0; a < 4; a++)
                ck_assert_msg(memcmp(arrays[0][a], arrays[1][a], (size_t)n * sizeof(float)) == 0,
                              "n %lld, decoupled %d: array %d differs from the reference",
                              (long long)n, decoupled, a);
        }
        for (int k = 0; k < 2; k++)
            for (int a = 0; a < 4; a++) free(arrays[k][a]);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("optim");
    const TTest *const rules[] = {test_adam_defaults, test_single_steps_by_hand,
                                  test_adam_kernel_matches_reference, test_optimizer_bad_settings,
                                  test_optimizer_list_changed, NULL};
    mc_test_add_loops(mc_test_add_case(s, "update rules", rules),
                      (const mc_test_loop[]){{test_matches_formula, 0, N_FORMULA_CASES}, {NULL, 0, 0}});
    /* The loop tests run once for AdamW and once for SGD. */
    const TTest *const state[] = {test_state_import_errors, NULL};
    mc_test_add_loops(mc_test_add_case(s, "state", state),
                      (const mc_test_loop[]){{test_state_round_trip, 0, 3}, {NULL, 0, 0}});
    const TTest *const clip[] = {test_grad_clip_norm, test_grad_clip_norm_errors, test_lr_schedules,
                                 test_lr_schedule_errors, NULL};
    mc_test_add_case(s, "clip and schedules", clip);
    const TTest *const groups[] = {test_group_bad_settings, NULL};
    mc_test_add_loops(mc_test_add_case(s, "parameter groups", groups),
                      (const mc_test_loop[]){{test_groups_match_separate, 0, 2}, {NULL, 0, 0}});
    return mc_test_run_suite(s);
}

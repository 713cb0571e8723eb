/* The dense op families: elementwise (broadcasting), activations, reductions,
 * softmax, matmul/linear, shape ops, embedding, dropout, L2-normalize and
 * layernorm.
 *
 *  1. One TABLE-DRIVEN finite-difference gradient check over every op
 *     (grad_cases[] below), on odd shapes and broadcast cases, plus a loop
 *     over randomly drawn broadcast shapes.
 *  2. Forward values against independent references: hand-computed numbers
 *     (derivations in comments), double-precision loops written here, and the
 *     library's naive kernels (mc_matmul_naive, mc_binary_naive).
 *  3. Bad input: a clear error naming the tensors (MC_CHECK_FAILS).
 *  4. Autograd semantics: gradients of heap tensors accumulate across backward
 *     calls; the no-grad switch records nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "../lib/ops/activation_internal.h"
#include "../lib/ops/naive.h"

/* ------------------------------------------------------------------ */
/* helpers                                                            */
/* ------------------------------------------------------------------ */

/* A brace initializer for an mc_shape, usable in static tables. */
#define SH(...) {.ndim = MC_SHAPE_NARGS(__VA_ARGS__), .dim = {__VA_ARGS__}}

static mc_tensor *new_uniform(mc_shape shape, const char *name, mc_rng *rng, float low, float high) {
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, shape, name));
    mc_tensor_uniform(t, rng, low, high);
    return t;
}

/* Values 0, 1, 2, ... scaled: easy to reason about by index. */
static mc_tensor *new_iota(mc_shape shape, const char *name, float scale) {
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, shape, name));
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)i * scale;
    return t;
}

/* ------------------------------------------------------------------ */
/* 1. the gradient-check table                                        */
/* ------------------------------------------------------------------ */

enum { MAX_CASE_INPUTS = 6 };

typedef struct grad_case {
    const char *name;
    mc_gradcheck_forward forward;
    int n_inputs;
    mc_shape shapes[MAX_CASE_INPUTS];
    float low, high;      /* inputs ~ U(low, high) */
    bool away_from_zero;  /* push |x| >= 0.1, away from kinks (relu) */
    int frozen_mask;      /* bit i: input i does NOT require a gradient */
    int arg[6];           /* op settings: dims, flags, a permutation */
    mc_shape target;      /* reshape's target */
} grad_case;

/* One table entry: name, forward, input range, then the input shapes. */
#define GC(name_, forward_, low_, high_, ...)                                  \
    .name = (name_), .forward = (forward_), .low = (low_), .high = (high_),    \
    .shapes = {__VA_ARGS__},                                                   \
    .n_inputs = (int)(sizeof((mc_shape[]){__VA_ARGS__}) / sizeof(mc_shape))

#define CASE(ctx) ((const grad_case *)(ctx))

static mc_status fw_add(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_add(g, in[0], in[1], out); }
static mc_status fw_sub(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_sub(g, in[0], in[1], out); }
static mc_status fw_mul(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_mul(g, in[0], in[1], out); }
static mc_status fw_div(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_div(g, in[0], in[1], out); }
/* x * x: one tensor used as both inputs, its gradient is the sum of both. */
static mc_status fw_square(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_mul(g, in[0], in[0], out); }
static mc_status fw_scale(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_scale(g, in[0], -1.7f, 0.3f, out); }
static mc_status fw_relu(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_relu(g, in[0], out); }
static mc_status fw_gelu(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_gelu(g, in[0], out); }
static mc_status fw_quick_gelu(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_quick_gelu(g, in[0], out); }
static mc_status fw_sigmoid(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_sigmoid(g, in[0], out); }
static mc_status fw_tanh(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_tanh(g, in[0], out); }
static mc_status fw_exp(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_exp(g, in[0], out); }
static mc_status fw_log(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_log(g, in[0], out); }
static mc_status fw_sum(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_sum(g, in[0], CASE(c)->arg[0], CASE(c)->arg[1], out);
}
static mc_status fw_mean(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_mean(g, in[0], CASE(c)->arg[0], CASE(c)->arg[1], out);
}
static mc_status fw_sum_all(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_sum_all(g, in[0], out); }
static mc_status fw_mean_all(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_mean_all(g, in[0], out); }
static mc_status fw_softmax(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_softmax(g, in[0], CASE(c)->arg[0], out);
}
static mc_status fw_log_softmax(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_log_softmax(g, in[0], CASE(c)->arg[0], out);
}
static mc_status fw_matmul(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_matmul(g, in[0], in[1], CASE(c)->arg[0], out);
}
static mc_status fw_linear(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_linear(g, in[0], in[1], CASE(c)->n_inputs == 3 ? in[2] : NULL, out);
}
/* arg[0]: the mc_activation */
static mc_status fw_linear_activation(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_linear_activation(g, in[0], in[1], CASE(c)->n_inputs == 3 ? in[2] : NULL,
                                (mc_activation)CASE(c)->arg[0], out);
}
/* inputs: x, weight, residual, and the bias when there are four */
static mc_status fw_linear_residual(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_linear_residual(g, in[0], in[1], CASE(c)->n_inputs == 4 ? in[3] : NULL, in[2], out);
}
/* the residual is x itself: its gradient gets both terms */
static mc_status fw_linear_residual_self(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    (void)c;
    return mc_linear_residual(g, in[0], in[1], in[2], in[0], out);
}
static mc_status fw_reshape(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_reshape(g, in[0], CASE(c)->target, out);
}
static mc_status fw_permute(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_permute(g, in[0], CASE(c)->arg, out);
}
static mc_status fw_transpose(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_transpose(g, in[0], CASE(c)->arg[0], CASE(c)->arg[1], out);
}
static mc_status fw_slice(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_slice(g, in[0], CASE(c)->arg[0], CASE(c)->arg[1], CASE(c)->arg[2], out);
}
static mc_status fw_concat(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_concat(g, CASE(c)->n_inputs, in, CASE(c)->arg[0], out);
}
static mc_status fw_nchw_to_nhwc(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_nchw_to_nhwc(g, in[0], out); }
static mc_status fw_nhwc_to_nchw(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) { (void)c; return mc_nhwc_to_nchw(g, in[0], out); }
/* ids (2, 3) into a (5, D) table; ids 1 and 4 repeat, so their rows'
 * gradients must be sums. */
static const int32_t embedding_ids[6] = {1, 4, 1, 0, 4, 2};
static mc_status fw_embedding(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    (void)c;
    return mc_embedding(g, in[0], embedding_ids, MC_SHAPE(2, 3), out);
}
/* The checker reruns the forward many times: reseed so the mask is fixed. */
static mc_status fw_dropout(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    (void)c;
    mc_rng rng;
    mc_rng_seed(&rng, 99);
    return mc_dropout(g, in[0], 0.3f, true, &rng, out);
}
static mc_status fw_l2_normalize(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    return mc_l2_normalize(g, in[0], CASE(c)->arg[0] ? 0.5f : 1e-12f, out);
}
static mc_status fw_layernorm(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    bool affine = CASE(c)->n_inputs == 3;
    return mc_layernorm(g, in[0], affine ? in[1] : NULL, affine ? in[2] : NULL, 1e-5f, out);
}
/* A small MLP, linear -> gelu -> linear -> log_softmax: gradients flow
 * through several recorded nodes and a parameter used by one of them. */
static mc_status fw_mlp(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    (void)c;
    mc_tensor *h, *a, *logits;
    MC_TRY(mc_linear(g, in[0], in[1], in[2], &h));
    MC_TRY(mc_gelu(g, h, &a));
    MC_TRY(mc_linear(g, a, in[3], NULL, &logits));
    return mc_log_softmax(g, logits, -1, out);
}
/* reshape -> transpose -> slice -> mul by itself: views and copies chained. */
static mc_status fw_shape_chain(mc_graph *g, mc_tensor **in, void *c, mc_tensor **out) {
    (void)c;
    mc_tensor *r, *t, *s;
    MC_TRY(mc_reshape(g, in[0], MC_SHAPE(3, -1, 2), &r));
    MC_TRY(mc_transpose(g, r, 0, 2, &t));
    MC_TRY(mc_slice(g, t, 1, 1, -1, &s));
    return mc_mul(g, s, s, out);
}

static const grad_case grad_cases[] = {
    /* elementwise, broadcasting */
    {GC("add (3,1,5)+(4,5)", fw_add, -1, 1, SH(3, 1, 5), SH(4, 5))},
    {GC("add same shape (2,3,5)", fw_add, -1, 1, SH(2, 3, 5), SH(2, 3, 5))},
    {GC("sub (4,5)-(3,1,5)", fw_sub, -1, 1, SH(4, 5), SH(3, 1, 5))},
    {GC("sub (2,3,1)-(1)", fw_sub, -1, 1, SH(2, 3, 1), SH(1))},
    {GC("mul (2,3)*(3)", fw_mul, -1, 1, SH(2, 3), SH(3))},
    {GC("mul (3,1)*(1,7)", fw_mul, -1, 1, SH(3, 1), SH(1, 7))},
    {GC("mul (2,3)*(3) b frozen", fw_mul, -1, 1, SH(2, 3), SH(3)), .frozen_mask = 2},
    {GC("mul x*x", fw_square, -1, 1, SH(3, 5))},
    {GC("div (2,3,4)/(3,1)", fw_div, 0.5f, 2.0f, SH(2, 3, 4), SH(3, 1))},
    {GC("div (5)/(2,1,5)", fw_div, 0.5f, 2.0f, SH(5), SH(2, 1, 5))},
    {GC("scale", fw_scale, -1, 1, SH(3, 7))},
    /* activations */
    {GC("relu", fw_relu, -2, 2, SH(5, 7)), .away_from_zero = true},
    {GC("gelu", fw_gelu, -3, 3, SH(5, 7))},
    {GC("quick_gelu", fw_quick_gelu, -3, 3, SH(5, 7))},
    {GC("sigmoid", fw_sigmoid, -3, 3, SH(5, 7))},
    {GC("tanh", fw_tanh, -2, 2, SH(5, 7))},
    {GC("exp", fw_exp, -2, 1, SH(5, 7))},
    {GC("log", fw_log, 0.5f, 3.0f, SH(5, 7))},
    /* reductions */
    {GC("sum dim 1", fw_sum, -1, 1, SH(3, 5, 2)), .arg = {1, 0}},
    {GC("sum dim -1 keepdim", fw_sum, -1, 1, SH(3, 5, 7)), .arg = {-1, 1}},
    {GC("sum 1-D", fw_sum, -1, 1, SH(9)), .arg = {0, 0}},
    {GC("mean dim 0", fw_mean, -1, 1, SH(4, 3, 5)), .arg = {0, 0}},
    {GC("mean dim -2 keepdim", fw_mean, -1, 1, SH(2, 7, 3)), .arg = {-2, 1}},
    {GC("sum_all", fw_sum_all, -1, 1, SH(3, 5, 7))},
    {GC("mean_all", fw_mean_all, -1, 1, SH(2, 9))},
    /* softmax */
    {GC("softmax dim -1", fw_softmax, -2, 2, SH(3, 7)), .arg = {-1}},
    {GC("softmax dim 1 of 3", fw_softmax, -2, 2, SH(2, 5, 3)), .arg = {1}},
    {GC("softmax dim 0", fw_softmax, -2, 2, SH(4, 3)), .arg = {0}},
    {GC("log_softmax dim -1", fw_log_softmax, -2, 2, SH(3, 7)), .arg = {-1}},
    {GC("log_softmax dim 1 of 3", fw_log_softmax, -2, 2, SH(2, 5, 3)), .arg = {1}},
    /* matmul / linear */
    {GC("matmul (3,5)@(5,4)", fw_matmul, -1, 1, SH(3, 5), SH(5, 4))},
    {GC("matmul (3,5)@(4,5)^T", fw_matmul, -1, 1, SH(3, 5), SH(4, 5)), .arg = {1}},
    {GC("matmul (2,3,5)@(2,5,4)", fw_matmul, -1, 1, SH(2, 3, 5), SH(2, 5, 4))},
    {GC("matmul (2,3,5)@(2,4,5)^T", fw_matmul, -1, 1, SH(2, 3, 5), SH(2, 4, 5)), .arg = {1}},
    {GC("matmul (2,3,5)@(5,4) shared b", fw_matmul, -1, 1, SH(2, 3, 5), SH(5, 4))},
    {GC("matmul a frozen", fw_matmul, -1, 1, SH(3, 5), SH(5, 4)), .frozen_mask = 1},
    {GC("linear (3,5)->(4) with bias", fw_linear, -1, 1, SH(3, 5), SH(4, 5), SH(4))},
    {GC("linear (2,3,5)->(7) no bias", fw_linear, -1, 1, SH(2, 3, 5), SH(7, 5))},
    {GC("linear weight frozen", fw_linear, -1, 1, SH(2, 5), SH(3, 5), SH(3)), .frozen_mask = 2},
    {GC("linear (2,6)->(3), weight (3,2,3)", fw_linear, -1, 1, SH(2, 6), SH(3, 2, 3), SH(3))},
    {GC("linear_activation gelu", fw_linear_activation, -1, 1, SH(3, 5), SH(4, 5), SH(4)), .arg = {MC_ACT_GELU}},
    {GC("linear_activation quick_gelu", fw_linear_activation, -1, 1, SH(2, 3, 5), SH(4, 5), SH(4)), .arg = {MC_ACT_QUICK_GELU}},
    {GC("linear_activation gelu no bias", fw_linear_activation, -1, 1, SH(3, 5), SH(4, 5)), .arg = {MC_ACT_GELU}},
    {GC("linear_residual with bias", fw_linear_residual, -1, 1, SH(2, 3, 5), SH(4, 5), SH(2, 3, 4), SH(4))},
    {GC("linear_residual no bias", fw_linear_residual, -1, 1, SH(3, 5), SH(4, 5), SH(3, 4))},
    {GC("linear_residual residual frozen", fw_linear_residual, -1, 1, SH(3, 5), SH(4, 5), SH(3, 4), SH(4)), .frozen_mask = 4},
    {GC("linear_residual of x itself", fw_linear_residual_self, -1, 1, SH(3, 4), SH(4, 4), SH(4))},
    /* shape */
    {GC("reshape (2,3,4)->(4,-1)", fw_reshape, -1, 1, SH(2, 3, 4)), .target = SH(4, -1)},
    {GC("permute (2,3,4,5) by (2,0,3,1)", fw_permute, -1, 1, SH(2, 3, 4, 5)), .arg = {2, 0, 3, 1}},
    {GC("transpose (3,4,5) dims 0,-1", fw_transpose, -1, 1, SH(3, 4, 5)), .arg = {0, -1}},
    {GC("slice dim 1 [1:4)", fw_slice, -1, 1, SH(2, 5, 3)), .arg = {1, 1, 4}},
    {GC("slice dim -1 [-3:-1)", fw_slice, -1, 1, SH(2, 7)), .arg = {-1, -3, -1}},
    {GC("concat 3 along dim 1", fw_concat, -1, 1, SH(2, 1, 3), SH(2, 4, 3), SH(2, 2, 3)), .arg = {1}},
    {GC("concat 6 along dim 0 (> MC_MAX_INPUTS)", fw_concat, -1, 1, SH(1, 3), SH(2, 3), SH(1, 3), SH(3, 3), SH(1, 3), SH(2, 3)), .arg = {0}},
    {GC("concat, one input frozen", fw_concat, -1, 1, SH(3, 2), SH(3, 5)), .frozen_mask = 1, .arg = {-1}},
    {GC("nchw_to_nhwc", fw_nchw_to_nhwc, -1, 1, SH(2, 3, 4, 5))},
    {GC("nhwc_to_nchw", fw_nhwc_to_nchw, -1, 1, SH(2, 4, 5, 3))},
    {GC("reshape/transpose/slice chain", fw_shape_chain, -1, 1, SH(4, 9))},
    /* embedding, dropout, normalize, layernorm */
    {GC("embedding (5,4)", fw_embedding, -1, 1, SH(5, 4))},
    {GC("dropout p=0.3", fw_dropout, -1, 1, SH(4, 9))},
    {GC("l2_normalize", fw_l2_normalize, -1, 1, SH(3, 7))},
    {GC("l2_normalize below eps", fw_l2_normalize, -0.05f, 0.05f, SH(3, 3)), .arg = {1}},
    {GC("layernorm (3,2,7) affine", fw_layernorm, -1, 1, SH(3, 2, 7), SH(7), SH(7))},
    {GC("layernorm (5,6) no affine", fw_layernorm, -1, 1, SH(5, 6))},
    /* composites */
    {GC("mlp linear-gelu-linear-log_softmax", fw_mlp, -1, 1, SH(3, 5), SH(6, 5), SH(6), SH(4, 6))},
};
enum { N_GRAD_CASES = sizeof grad_cases / sizeof grad_cases[0] };

START_TEST(test_gradcheck_table) {
    const grad_case *c = &grad_cases[_i];
    mc_rng rng;
    mc_rng_seed(&rng, 1000 + (uint64_t)_i);
    mc_tensor *inputs[MAX_CASE_INPUTS] = {NULL};
    static const char *names[MAX_CASE_INPUTS] = {"in0", "in1", "in2", "in3", "in4", "in5"};
    for (int i = 0; i < c->n_inputs; i++) {
        inputs[i] = new_uniform(c->shapes[i], names[i], &rng, c->low, c->high);
        if (c->away_from_zero)
            for (int64_t j = 0; j < inputs[i]->numel; j++)
                inputs[i]->data[j] = copysignf(0.1f + fabsf(inputs[i]->data[j]), inputs[i]->data[j]);
        bool frozen = (c->frozen_mask >> i) & 1;
        MC_CHECK_OK(mc_tensor_set_requires_grad(inputs[i], !frozen));
    }
    mc_assert_gradcheck(c->name, c->n_inputs, inputs, c->forward, (void *)c, NULL);
    /* A frozen input must not have received a gradient. */
    for (int i = 0; i < c->n_inputs; i++)
        if ((c->frozen_mask >> i) & 1)
            ck_assert_msg(inputs[i]->grad == NULL, "%s: frozen input %d got a gradient", c->name, i);
    for (int i = 0; i < c->n_inputs; i++) mc_tensor_free(inputs[i]);
}
END_TEST

/* Random broadcast pairs: draw a shape for a, derive b by dropping leading
 * dims and setting some dims to 1 (and sometimes swap the roles), then
 * gradcheck all four binary ops on them. */
static mc_gradcheck_forward binary_forwards[4] = {fw_add, fw_sub, fw_mul, fw_div};

START_TEST(test_gradcheck_random_broadcasts) {
    mc_rng rng;
    mc_rng_seed(&rng, 2024);
    for (int trial = 0; trial < 12; trial++) {
        mc_shape sa = {.ndim = 1 + (int)mc_rng_below(&rng, 4)};
        for (int i = 0; i < sa.ndim; i++) sa.dim[i] = 1 + (int64_t)mc_rng_below(&rng, 4);
        mc_shape sb = {.ndim = 1 + (int)mc_rng_below(&rng, (uint64_t)sa.ndim)};
        for (int i = 0; i < sb.ndim; i++) {
            int64_t d = sa.dim[sa.ndim - sb.ndim + i];
            sb.dim[i] = mc_rng_below(&rng, 3) == 0 ? 1 : d;
        }
        /* Sometimes a dim of a is 1 where b is not. */
        int k = (int)mc_rng_below(&rng, (uint64_t)sb.ndim);
        if (sb.dim[k] > 1 && mc_rng_below(&rng, 2)) sa.dim[sa.ndim - sb.ndim + k] = 1;
        if (trial % 2) {
            mc_shape t = sa;
            sa = sb;
            sb = t;
        }
        int op = trial % 4;
        float low = op == 3 ? 0.5f : -1.0f, high = 2.0f;
        mc_tensor *in[2] = {new_uniform(sa, "a", &rng, low, high), new_uniform(sb, "b", &rng, low, high)};
        MC_CHECK_OK(mc_tensor_set_requires_grad(in[0], true));
        MC_CHECK_OK(mc_tensor_set_requires_grad(in[1], true));
        char name[128], s1[64], s2[64];
        snprintf(name, sizeof name, "random %s %s %s", (const char *[]){"add", "sub", "mul", "div"}[op],
                 mc_shape_str(sa, s1, sizeof s1), mc_shape_str(sb, s2, sizeof s2));
        mc_assert_gradcheck(name, 2, in, binary_forwards[op], NULL, NULL);
        mc_tensor_free(in[0]);
        mc_tensor_free(in[1]);
    }
}
END_TEST

/* ------------------------------------------------------------------ */
/* 2. forward values                                                  */
/* ------------------------------------------------------------------ */

START_TEST(test_broadcast_values) {
    mc_graph *g = mc_test_new_graph();
    /* (2,3) * (3): row r of a times b elementwise. */
    mc_tensor *a = new_iota(MC_SHAPE(2, 3), "a", 1.0f); /* [[0,1,2],[3,4,5]] */
    mc_tensor *b;
    MC_CHECK_OK(mc_tensor_new(&b, MC_SHAPE(3), "b"));
    MC_CHECK_OK(mc_tensor_load(b, (const float[]){2, -1, 0.5f}, 3));
    mc_tensor *y;
    MC_CHECK_OK(mc_mul(g, a, b, &y));
    ck_assert_int_eq(y->shape.ndim, 2);
    const float expected_mul[6] = {0, -1, 1, 6, -4, 2.5f};
    mc_test_assert_close("(2,3)*(3)", y->data, expected_mul, 6, 0, 1e-30);
    MC_CHECK_OK(mc_div(g, a, b, &y));
    const float expected_div[6] = {0, -1, 4, 1.5f, -4, 10};
    mc_test_assert_close("(2,3)/(3)", y->data, expected_div, 6, 1e-6, 1e-30);
    /* b's gradient is -dy (a / b) / b, as PyTorch computes it: with a = 1e-30
     * and b = 1e-25, b * b (1e-50) would underflow to 0 and give -inf;
     * the true value is -1e20. */
    {
        mc_tensor *na, *nb, *quotient, *total;
        MC_CHECK_OK(mc_tensor_new(&na, MC_SHAPE(1), "na"));
        MC_CHECK_OK(mc_tensor_new(&nb, MC_SHAPE(1), "nb"));
        na->data[0] = 1e-30f;
        nb->data[0] = 1e-25f;
        MC_CHECK_OK(mc_tensor_set_requires_grad(nb, true));
        MC_CHECK_OK(mc_div(g, na, nb, &quotient));
        MC_CHECK_OK(mc_sum_all(g, quotient, &total));
        MC_CHECK_OK(mc_backward(g, total));
        ck_assert_msg(isfinite(nb->grad[0]) && fabsf(nb->grad[0] / -1e20f - 1.0f) < 1e-5f,
                      "d(a/b)/db at a = 1e-30, b = 1e-25: %g", (double)nb->grad[0]);
        mc_tensor_free(na);
        mc_tensor_free(nb);
    }

    /* (3,1,5) + (4,5) -> (3,4,5): out[i][j][k] = p[i][0][k] + q[j][k]. */
    mc_tensor *p = new_iota(MC_SHAPE(3, 1, 5), "p", 1.0f), *q = new_iota(MC_SHAPE(4, 5), "q", 100.0f);
    MC_CHECK_OK(mc_add(g, p, q, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(3, 4, 5)));
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 5; k++)
                ck_assert_float_eq(y->data[(i * 4 + j) * 5 + k], p->data[i * 5 + k] + q->data[j * 5 + k]);
    MC_CHECK_OK(mc_sub(g, q, p, &y));
    ck_assert_float_eq(y->data[(2 * 4 + 3) * 5 + 4], q->data[3 * 5 + 4] - p->data[2 * 5 + 4]);
    mc_tensor_free(a);
    mc_tensor_free(b);
    mc_tensor_free(p);
    mc_tensor_free(q);
    mc_graph_free(g);
}
END_TEST

/* Large tensors take the threaded paths: check them against the naive
 * one-element-at-a-time kernel, and the backward's reduction over the
 * stretched dimension against a sum written here. */
START_TEST(test_broadcast_large_matches_naive) {
    mc_graph *g = mc_test_new_graph();
    mc_rng rng;
    mc_rng_seed(&rng, 5);
    mc_tensor *a = new_uniform(MC_SHAPE(64, 33, 17), "a", &rng, -1, 1);
    mc_tensor *b = new_uniform(MC_SHAPE(33, 1), "b", &rng, 0.5f, 2);
    const char *ops[4] = {"add", "sub", "mul", "div"};
    mc_status (*fns[4])(mc_graph *, mc_tensor *, mc_tensor *, mc_tensor **) = {mc_add, mc_sub, mc_mul, mc_div};
    for (int k = 0; k < 4; k++) {
        mc_tensor *fast, *naive;
        MC_CHECK_OK(fns[k](g, a, b, &fast));
        MC_CHECK_OK(mc_binary_naive(g, ops[k], a, b, &naive));
        mc_test_assert_close(ops[k], fast->data, naive->data, (long)fast->numel, 1e-6, 1e-7);
        MC_CHECK_OK(fns[k](g, b, a, &fast));
        MC_CHECK_OK(mc_binary_naive(g, ops[k], b, a, &naive));
        mc_test_assert_close(ops[k], fast->data, naive->data, (long)fast->numel, 1e-6, 1e-7);
    }
    /* d sum(a + b) / d b[j] = number of elements b[j] was added to = 64 * 17. */
    MC_CHECK_OK(mc_tensor_set_requires_grad(a, true));
    MC_CHECK_OK(mc_tensor_set_requires_grad(b, true));
    mc_tensor *y, *loss;
    MC_CHECK_OK(mc_mul(g, a, b, &y));
    MC_CHECK_OK(mc_sum_all(g, y, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    /* d/d b[j] of sum(a * b) = sum over i, k of a[i][j][k]; d/d a = b[j]. */
    for (int j = 0; j < 33; j++) {
        double expected = 0;
        for (int i = 0; i < 64; i++)
            for (int k = 0; k < 17; k++) expected += a->data[(i * 33 + j) * 17 + k];
        ck_assert_double_eq_tol(b->grad[j], expected, 1e-3 * (1 + fabs(expected)));
        ck_assert_float_eq(a->grad[(5 * 33 + j) * 17 + 3], b->data[j]);
    }
    mc_tensor_free(a);
    mc_tensor_free(b);
    mc_graph_free(g);
}
END_TEST

START_TEST(test_scale_and_activation_values) {
    mc_graph *g = mc_test_new_graph();
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(5), "x"));
    MC_CHECK_OK(mc_tensor_load(x, (const float[]){-2, -1, 0, 0.5f, 1}, 5));
    mc_tensor *y;
    MC_CHECK_OK(mc_scale(g, x, 2.0f, 1.0f, &y));
    mc_test_assert_close("scale", y->data, (const float[]){-3, -1, 1, 2, 3}, 5, 0, 1e-30);
    MC_CHECK_OK(mc_relu(g, x, &y));
    mc_test_assert_close("relu", y->data, (const float[]){0, 0, 0, 0.5f, 1}, 5, 0, 1e-30);
    /* gelu(x) = x Phi(x): Phi(1) = 0.8413447461, Phi(-1) = 0.1586552539,
     * Phi(-2) = 0.0227501319, Phi(0.5) = 0.6914624613 (normal tables). */
    MC_CHECK_OK(mc_gelu(g, x, &y));
    mc_test_assert_close("gelu", y->data,
                         (const float[]){-0.0455002638f, -0.1586552539f, 0, 0.3457312306f, 0.8413447461f},
                         5, 1e-5, 1e-7);
    /* quick_gelu(x) = x / (1 + e^(-1.702 x)): 1 / (1 + e^-1.702) = 0.8457957. */
    MC_CHECK_OK(mc_quick_gelu(g, x, &y));
    ck_assert_double_eq_tol(y->data[4], 1.0 / (1.0 + exp(-1.702)), 1e-6);
    ck_assert_double_eq_tol(y->data[0], -2.0 / (1.0 + exp(3.404)), 1e-6);
    MC_CHECK_OK(mc_sigmoid(g, x, &y));
    ck_assert_float_eq(y->data[2], 0.5f);
    ck_assert_double_eq_tol(y->data[4], 0.7310585786, 1e-6); /* 1 / (1 + 1/e) */
    MC_CHECK_OK(mc_tanh(g, x, &y));
    ck_assert_double_eq_tol(y->data[3], 0.4621171573, 1e-6);
    MC_CHECK_OK(mc_exp(g, x, &y));
    ck_assert_double_eq_tol(y->data[4], 2.7182818285, 1e-6);
    MC_CHECK_OK(mc_log(g, y, &y)); /* log(exp(x)) = x */
    mc_test_assert_close("log(exp(x))", y->data, x->data, 5, 1e-6, 1e-6);
    /* Large arguments: sigmoid saturates without NaN. */
    MC_CHECK_OK(mc_tensor_load(x, (const float[]){-200, -90, 0, 90, 200}, 5));
    MC_CHECK_OK(mc_sigmoid(g, x, &y));
    mc_test_assert_close("sigmoid saturation", y->data, (const float[]){0, 0, 0.5f, 1, 1}, 5, 0, 1e-30);
    MC_CHECK_OK(mc_quick_gelu(g, x, &y));
    mc_test_assert_close("quick_gelu saturation", y->data, (const float[]){0, 0, 0, 90, 200}, 5, 1e-6, 1e-30);
    mc_tensor_free(x);
    mc_graph_free(g);
}
END_TEST

/* The vectorised exp against libm's exp in double: relative error within
 * 3e-7 (about 2 float ulp) over the normal range; 0 and +inf beyond it, NaN
 * passes through. */
START_TEST(test_exp_kernel_matches_libm) {
    enum { N = 200001 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_nonnull(y);
    for (int i = 0; i < N; i++) x[i] = -87.0f + 175.0f * (float)i / (N - 1); /* [-87, 88] */
    mc_exp_kernel(x, y, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double ref = exp((double)x[i]);
        worst = fmax(worst, fabs(y[i] - ref) / ref);
    }
    ck_assert_msg(worst < 3e-7, "exp kernel: worst relative error %g", worst);
    const float edge[6] = {-1000.0f, -110.0f, 89.0f, 1000.0f, INFINITY, NAN};
    float edge_y[6];
    mc_exp_kernel(edge, edge_y, 6);
    ck_assert_float_eq(edge_y[0], 0.0f);
    ck_assert_float_eq(edge_y[1], 0.0f);
    ck_assert(isinf(edge_y[2]) && isinf(edge_y[3]) && isinf(edge_y[4]));
    ck_assert(isnan(edge_y[5]));
    /* Gradual underflow: e^-100 = 3.72e-44 is a subnormal float. */
    float tiny = -100.0f, tiny_y;
    mc_exp_kernel(&tiny, &tiny_y, 1);
    ck_assert_double_eq_tol(tiny_y, exp(-100.0), 2e-45);
    free(x);
    free(y);
}
END_TEST

/* Threaded activation paths (> 32k elements) against libm in double. */
START_TEST(test_activations_large_match_libm) {
    mc_graph *g = mc_test_new_graph();
    mc_rng rng;
    mc_rng_seed(&rng, 8);
    mc_tensor *x = new_uniform(MC_SHAPE(50, 1001), "x", &rng, -6, 6);
    mc_tensor *y;
    MC_CHECK_OK(mc_gelu(g, x, &y));
    for (int64_t i = 0; i < x->numel; i += 7) {
        double v = x->data[i];
        ck_assert_double_eq_tol(y->data[i], v * 0.5 * (1 + erf(v / sqrt(2.0))), 2e-6 * (1 + fabs(v)));
    }
    /* Far negative tail: gelu(-5) = -5 Phi(-5) = -1.4332985e-6; the value is
     * tiny, and its RELATIVE error must stay small too. */
    x->data[0] = -5.0f;
    x->data[1] = -8.0f; /* -8 Phi(-8) = -4.9759e-15 */
    MC_CHECK_OK(mc_gelu(g, x, &y));
    ck_assert_double_eq_tol(y->data[0], -5.0 * 0.5 * erfc(5.0 / sqrt(2.0)), 1e-6 * 1.4333e-6);
    ck_assert_double_eq_tol(y->data[1], -8.0 * 0.5 * erfc(8.0 / sqrt(2.0)), 1e-5 * 4.976e-15);
    MC_CHECK_OK(mc_quick_gelu(g, x, &y));
    for (int64_t i = 0; i < x->numel; i += 7) {
        double v = x->data[i];
        ck_assert_double_eq_tol(y->data[i], v / (1 + exp(-1.702 * v)), 2e-6 * (1 + fabs(v)));
    }
    MC_CHECK_OK(mc_sigmoid(g, x, &y));
    for (int64_t i = 0; i < x->numel; i += 7)
        ck_assert_double_eq_tol(y->data[i], 1 / (1 + exp(-(double)x->data[i])), 2e-6);
    mc_tensor_free(x);
    mc_graph_free(g);
}
END_TEST

START_TEST(test_reduce_values) {
    mc_graph *g = mc_test_new_graph();
    mc_tensor *x = new_iota(MC_SHAPE(2, 3, 4), "x", 1.0f); /* x[i][j][k] = 12i + 4j + k */
    mc_tensor *y;
    MC_CHECK_OK(mc_sum(g, x, 1, false, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(2, 4)));
    /* sum_j (12i + 4j + k) = 36i + 12 + 3k */
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) ck_assert_float_eq(y->data[i * 4 + k], 36 * i + 12 + 3 * k);
    MC_CHECK_OK(mc_mean(g, x, -1, true, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(2, 3, 1)));
    /* mean_k = 12i + 4j + 1.5 */
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) ck_assert_float_eq(y->data[i * 3 + j], 12 * i + 4 * j + 1.5f);
    MC_CHECK_OK(mc_sum(g, x, 0, false, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(3, 4)));
    ck_assert_float_eq(y->data[5], 5 + 17); /* j=1,k=1: 5 + 17 */
    MC_CHECK_OK(mc_sum_all(g, x, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(1)));
    ck_assert_float_eq(y->data[0], 276); /* 0 + 1 + ... + 23 = 23*24/2 */
    MC_CHECK_OK(mc_mean_all(g, x, &y));
    ck_assert_float_eq(y->data[0], 11.5f);
    mc_tensor *v = new_iota(MC_SHAPE(5), "v", 1.0f);
    MC_CHECK_OK(mc_sum(g, v, 0, false, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(1)));
    ck_assert_float_eq(y->data[0], 10);
    /* Sums over a dimension are taken in double too: 5,017,600 values of
     * 0.1f summed in float one after another come out 4 % low, and 2^25
     * ones stop at 2^24. */
    mc_tensor *tenths;
    MC_CHECK_OK(mc_tensor_new(&tenths, MC_SHAPE(5017600, 2), "tenths"));
    mc_tensor_fill(tenths, 0.1f);
    MC_CHECK_OK(mc_mean(g, tenths, 0, false, &y));
    ck_assert_float_eq_tol(y->data[0], 0.1f, 1e-7f);
    ck_assert_float_eq_tol(y->data[1], 0.1f, 1e-7f);
    mc_tensor_free(tenths);
    mc_tensor *column;
    MC_CHECK_OK(mc_tensor_new(&column, MC_SHAPE(1 << 25), "column"));
    mc_tensor_fill(column, 1.0f);
    MC_CHECK_OK(mc_sum(g, column, 0, false, &y));
    ck_assert_float_eq(y->data[0], (float)(1 << 25));
    mc_tensor_free(column);
    /* A big sum_all is accumulated in double: 1e6 ones plus one 1e-3 * ... */
    mc_tensor *ones;
    MC_CHECK_OK(mc_tensor_new(&ones, MC_SHAPE(1000, 1001), "ones"));
    mc_tensor_fill(ones, 0.1f);
    MC_CHECK_OK(mc_mean_all(g, ones, &y));
    ck_assert_double_eq_tol(y->data[0], 0.1, 1e-7);
    mc_tensor_free(ones);
    mc_tensor_free(v);
    mc_tensor_free(x);
    mc_graph_free(g);
}
END_TEST

/* Softmax in double along dim of x viewed as (outer, n, inner). */
static void softmax_reference(const float *x, double *y, int64_t outer, int64_t n, int64_t inner,
                              bool log_output) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double max = -INFINITY, sum = 0;
            for (int64_t j = 0; j < n; j++) max = fmax(max, x[(o * n + j) * inner + i]);
            for (int64_t j = 0; j < n; j++) sum += exp(x[(o * n + j) * inner + i] - max);
            for (int64_t j = 0; j < n; j++) {
                double z = x[(o * n + j) * inner + i] - max;
                y[(o * n + j) * inner + i] = log_output ? z - log(sum) : exp(z) / sum;
            }
        }
}

START_TEST(test_softmax_values) {
    mc_graph *g = mc_test_new_graph();
    mc_rng rng;
    mc_rng_seed(&rng, 11);
    mc_tensor *x = new_uniform(MC_SHAPE(3, 7, 5), "x", &rng, -4, 4);
    double ref[105];
    float ref_f[105];
    struct { int dim; int64_t outer, n, inner; } dims[3] = {{0, 1, 3, 35}, {1, 3, 7, 5}, {-1, 21, 5, 1}};
    for (int d = 0; d < 3; d++)
        for (int log_output = 0; log_output < 2; log_output++) {
            mc_tensor *y;
            if (log_output)
                MC_CHECK_OK(mc_log_softmax(g, x, dims[d].dim, &y));
            else
                MC_CHECK_OK(mc_softmax(g, x, dims[d].dim, &y));
            softmax_reference(x->data, ref, dims[d].outer, dims[d].n, dims[d].inner, log_output);
            for (int i = 0; i < 105; i++) ref_f[i] = (float)ref[i];
            mc_test_assert_close(log_output ? "log_softmax" : "softmax", y->data, ref_f, 105, 1e-5, 1e-7);
        }
    /* Stability: softmax(1000, 1001, 1002) = softmax(0, 1, 2), no overflow. */
    mc_tensor *big;
    MC_CHECK_OK(mc_tensor_new(&big, MC_SHAPE(1, 3), "big"));
    MC_CHECK_OK(mc_tensor_load(big, (const float[]){1000, 1001, 1002}, 3));
    mc_tensor *y;
    MC_CHECK_OK(mc_softmax(g, big, -1, &y));
    /* e^0, e^1, e^2 over their sum 11.1073379... */
    mc_test_assert_close("stable softmax", y->data,
                         (const float[]){0.0900305732f, 0.2447284711f, 0.6652409558f}, 3, 1e-5, 1e-30);
    MC_CHECK_OK(mc_log_softmax(g, big, -1, &y));
    mc_test_assert_close("stable log_softmax", y->data,
                         (const float[]){-2.4076059644f, -1.4076059644f, -0.4076059644f}, 3, 1e-5, 1e-30);
    /* Big rows on the threaded path: every row sums to 1. */
    mc_tensor *wide = new_uniform(MC_SHAPE(100, 513), "wide", &rng, -10, 10);
    MC_CHECK_OK(mc_softmax(g, wide, 1, &y));
    for (int r = 0; r < 100; r++) {
        double sum = 0;
        for (int j = 0; j < 513; j++) sum += y->data[r * 513 + j];
        ck_assert_double_eq_tol(sum, 1.0, 1e-5);
    }
    mc_tensor_free(wide);
    mc_tensor_free(big);
    mc_tensor_free(x);
    mc_graph_free(g);
}
END_TEST

START_TEST(test_matmul_naive_by_hand) {
    /* [[1,2],[3,4]] @ [[5,6],[7,8]] = [[19,22],[43,50]]. */
    const float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
    float c[4];
    mc_matmul_naive(a, b, c, 2, 2, 2, false);
    mc_test_assert_close("naive", c, (const float[]){19, 22, 43, 50}, 4, 0, 1e-30);
    /* a @ b^T: [[1*5+2*6, 1*7+2*8], [3*5+4*6, 3*7+4*8]] = [[17,23],[39,53]]. */
    mc_matmul_naive(a, b, c, 2, 2, 2, true);
    mc_test_assert_close("naive^T", c, (const float[]){17, 23, 39, 53}, 4, 0, 1e-30);
}
END_TEST

START_TEST(test_matmul_matches_naive) {
    mc_graph *g = mc_test_new_graph();
    mc_rng rng;
    mc_rng_seed(&rng, 3);
    int64_t M = 37, K = 19, N = 23, B = 3;
    mc_tensor *a = new_uniform(MC_SHAPE(B, M, K), "a", &rng, -1, 1);
    mc_tensor *b = new_uniform(MC_SHAPE(B, K, N), "b", &rng, -1, 1);
    mc_tensor *bt = new_uniform(MC_SHAPE(B, N, K), "bt", &rng, -1, 1);
    mc_tensor *shared = new_uniform(MC_SHAPE(K, N), "shared", &rng, -1, 1);
    float *ref = malloc((size_t)(B * M * N) * sizeof *ref);
    ck_assert_ptr_nonnull(ref);
    mc_tensor *c;
    MC_CHECK_OK(mc_matmul(g, a, b, false, &c));
    ck_assert(mc_shape_equal(c->shape, MC_SHAPE(B, M, N)));
    for (int64_t i = 0; i < B; i++)
        mc_matmul_naive(a->data + i * M * K, b->data + i * K * N, ref + i * M * N, M, K, N, false);
    mc_test_assert_close("batched matmul", c->data, ref, (long)(B * M * N), 1e-5, 1e-5);
    MC_CHECK_OK(mc_matmul(g, a, bt, true, &c));
    for (int64_t i = 0; i < B; i++)
        mc_matmul_naive(a->data + i * M * K, bt->data + i * N * K, ref + i * M * N, M, K, N, true);
    mc_test_assert_close("batched matmul b^T", c->data, ref, (long)(B * M * N), 1e-5, 1e-5);
    MC_CHECK_OK(mc_matmul(g, a, shared, false, &c));
    ck_assert(mc_shape_equal(c->shape, MC_SHAPE(B, M, N)));
    mc_matmul_naive(a->data, shared->data, ref, B * M, K, N, false);
    mc_test_assert_close("matmul shared b", c->data, ref, (long)(B * M * N), 1e-5, 1e-5);
    /* linear = x W^T + bias, x (B, M, K), W (N, K). */
    mc_tensor *w = new_uniform(MC_SHAPE(N, K), "w", &rng, -1, 1);
    mc_tensor *bias = new_uniform(MC_SHAPE(N), "bias", &rng, -1, 1);
    MC_CHECK_OK(mc_linear(g, a, w, bias, &c));
    ck_assert(mc_shape_equal(c->shape, MC_SHAPE(B, M, N)));
    mc_matmul_naive(a->data, w->data, ref, B * M, K, N, true);
    for (int64_t r = 0; r < B * M; r++)
        for (int64_t j = 0; j < N; j++) ref[r * N + j] += bias->data[j];
    mc_test_assert_close("linear", c->data, ref, (long)(B * M * N), 1e-5, 1e-5);
    free(ref);
    mc_tensor_free(a);
    mc_tensor_free(b);
    mc_tensor_free(bt);
    mc_tensor_free(shared);
    mc_tensor_free(w);
    mc_tensor_free(bias);
    mc_graph_free(g);
}
END_TEST

/* The fused linear ops against the definitions: mc_linear_activation
 * without gradients (its one-pass inference path, mc_bias_activation_rows)
 * and with them (mc_linear then the activation op), mc_linear_residual,
 * and the in-place kernel against its double-precision reference. Sizes
 * past one thread's share and past one K slice of the GEMM. */
START_TEST(test_linear_fused_match_naive) {
    mc_graph *g = mc_test_new_graph(), *eval = mc_test_new_graph();
    mc_graph_set_grad_enabled(eval, false);
    mc_rng rng;
    mc_rng_seed(&rng, 5);
    const int64_t rows = 150, K = 600, N = 300;
    mc_tensor *x = new_uniform(MC_SHAPE(3, rows / 3, K), "x", &rng, -1, 1);
    mc_tensor *w = new_uniform(MC_SHAPE(N, K), "w", &rng, -0.1f, 0.1f);
    mc_tensor *bias = new_uniform(MC_SHAPE(N), "bias", &rng, -1, 1);
    mc_tensor *residual = new_uniform(MC_SHAPE(3, rows / 3, N), "residual", &rng, -1, 1);
    MC_CHECK_OK(mc_tensor_set_requires_grad(w, true));
    float *product = malloc((size_t)(rows * N) * sizeof *product);
    float *ref = malloc((size_t)(rows * N) * sizeof *ref);
    ck_assert_ptr_nonnull(product);
    ck_assert_ptr_nonnull(ref);
    mc_matmul_naive(x->data, w->data, product, rows, K, N, true);
    const mc_activation acts[3] = {MC_ACT_GELU, MC_ACT_QUICK_GELU, MC_ACT_RELU};
    for (int a = 0; a < 3; a++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            mc_tensor *b = with_bias ? bias : NULL, *inferred, *recorded, *composed, *pre;
            memcpy(ref, product, (size_t)(rows * N) * sizeof *ref);
            mc_bias_activation_rows_naive(acts[a], ref, b ? b->data : NULL, rows, N);
            MC_CHECK_OK(mc_linear_activation(eval, x, w, b, acts[a], &inferred));
            ck_assert(mc_shape_equal(inferred->shape, MC_SHAPE(3, rows / 3, N)));
            mc_test_assert_close("linear_activation, inference", inferred->data, ref,
                                 (long)(rows * N), 1e-5, 1e-5);
            MC_CHECK_OK(mc_linear_activation(g, x, w, b, acts[a], &recorded));
            mc_test_assert_close("linear_activation, recorded", recorded->data, ref,
                                 (long)(rows * N), 1e-5, 1e-5);
            /* recorded, it is the two ops: the same values, bit for bit */
            MC_CHECK_OK(mc_linear(g, x, w, b, &pre));
            MC_CHECK_OK(mc_activate(g, acts[a], pre, &composed));
            ck_assert_mem_eq(recorded->data, composed->data, (size_t)(rows * N) * sizeof(float));
            /* the kernel alone against its reference, on the same rows */
            memcpy(ref, product, (size_t)(rows * N) * sizeof *ref);
            mc_bias_activation_rows(acts[a], ref, b ? b->data : NULL, rows, N);
            float *exact = malloc((size_t)(rows * N) * sizeof *exact);
            ck_assert_ptr_nonnull(exact);
            memcpy(exact, product, (size_t)(rows * N) * sizeof *exact);
            mc_bias_activation_rows_naive(acts[a], exact, b ? b->data : NULL, rows, N);
            mc_test_assert_close("bias_activation_rows", ref, exact, (long)(rows * N), 1e-6, 1e-6);
            free(exact);
        }
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < N; j++)
                ref[r * N + j] = (float)((double)product[r * N + j] + residual->data[r * N + j] +
                                         (with_bias ? (double)bias->data[j] : 0.0));
        mc_tensor *y;
        MC_CHECK_OK(mc_linear_residual(eval, x, w, with_bias ? bias : NULL, residual, &y));
        mc_test_assert_close("linear_residual", y->data, ref, (long)(rows * N), 1e-5, 1e-5);
    }
    /* a (N, 2, K/2) weight is the (N, K) one */
    mc_tensor *w3 = new_uniform(MC_SHAPE(N, 2, K / 2), "w3", &rng, -1, 1), *by_view, *by_3d, *w2;
    MC_CHECK_OK(mc_linear(eval, x, w3, bias, &by_3d));
    MC_CHECK_OK(mc_reshape(eval, w3, MC_SHAPE(N, K), &w2));
    MC_CHECK_OK(mc_linear(eval, x, w2, bias, &by_view));
    ck_assert_mem_eq(by_3d->data, by_view->data, (size_t)(rows * N) * sizeof(float));
    mc_tensor *bad;
    MC_CHECK_FAILS(mc_linear_residual(eval, x, w, bias, x, &bad), MC_ERR_SHAPE, "residual");
    MC_CHECK_FAILS(mc_linear_activation(eval, x, w, bias, (mc_activation)9, &bad), MC_ERR_ARG,
                   "activation");
    free(product);
    free(ref);
    mc_tensor_free(x);
    mc_tensor_free(w);
    mc_tensor_free(w3);
    mc_tensor_free(bias);
    mc_tensor_free(residual);
    mc_graph_free(g);
    mc_graph_free(eval);
}
END_TEST

START_TEST(test_shape_values) {
    mc_graph *g = mc_test_new_graph();
    mc_tensor *x = new_iota(MC_SHAPE(2, 3, 4, 5), "x", 1.0f); /* x[n][c][h][w] = 60n + 20c + 5h + w */
    mc_tensor *y;
    MC_CHECK_OK(mc_nchw_to_nhwc(g, x, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(2, 4, 5, 3)));
    for (int n = 0; n < 2; n++)
        for (int h = 0; h < 4; h++)
            for (int w = 0; w < 5; w++)
                for (int c = 0; c < 3; c++)
                    ck_assert_float_eq(y->data[((n * 4 + h) * 5 + w) * 3 + c], 60 * n + 20 * c + 5 * h + w);
    mc_tensor *back;
    MC_CHECK_OK(mc_nhwc_to_nchw(g, y, &back));
    mc_test_assert_close("nhwc round trip", back->data, x->data, 120, 0, 1e-30);
    /* transpose(1, 3): y[n][w][h][c] = x[n][c][h][w]. */
    MC_CHECK_OK(mc_transpose(g, x, 1, -1, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(2, 5, 4, 3)));
    ck_assert_float_eq(y->data[((1 * 5 + 4) * 4 + 2) * 3 + 1], 60 + 20 + 10 + 4);
    /* slice dim 2 [1:3): y[n][c][h'][w] = x[n][c][h'+1][w]. */
    MC_CHECK_OK(mc_slice(g, x, 2, 1, 3, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(2, 3, 2, 5)));
    ck_assert_float_eq(y->data[((1 * 3 + 2) * 2 + 1) * 5 + 3], 60 + 40 + 10 + 3);
    /* reshape with -1 is a view: same data pointer. */
    MC_CHECK_OK(mc_reshape(g, x, MC_SHAPE(-1, 10), &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(12, 10)));
    ck_assert_ptr_eq(y->data, x->data);
    /* concat along dim 1: [a | b]. */
    mc_tensor *a = new_iota(MC_SHAPE(2, 1), "a", 1.0f), *b = new_iota(MC_SHAPE(2, 2), "b", 10.0f);
    mc_tensor *parts[2] = {a, b};
    MC_CHECK_OK(mc_concat(g, 2, parts, 1, &y));
    mc_test_assert_close("concat", y->data, (const float[]){0, 0, 10, 1, 20, 30}, 6, 0, 1e-30);
    /* Six single rows concatenated (two levels of grouping). */
    mc_tensor *rows[6];
    for (int i = 0; i < 6; i++) {
        MC_CHECK_OK(mc_tensor_new(&rows[i], MC_SHAPE(1, 2), "row"));
        rows[i]->data[0] = (float)i;
        rows[i]->data[1] = (float)(10 * i);
    }
    MC_CHECK_OK(mc_concat(g, 6, rows, 0, &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(6, 2)));
    for (int i = 0; i < 6; i++) {
        ck_assert_float_eq(y->data[2 * i], (float)i);
        ck_assert_float_eq(y->data[2 * i + 1], (float)(10 * i));
        mc_tensor_free(rows[i]);
    }
    /* A big permute takes the threaded path. */
    mc_tensor *big = new_iota(MC_SHAPE(8, 64, 9, 10), "big", 1.0f);
    MC_CHECK_OK(mc_nchw_to_nhwc(g, big, &y));
    for (int n = 0; n < 8; n += 3)
        for (int c = 0; c < 64; c += 5)
            ck_assert_float_eq(y->data[((n * 9 + 4) * 10 + 7) * 64 + c], big->data[((n * 64 + c) * 9 + 4) * 10 + 7]);
    mc_tensor_free(big);
    mc_tensor_free(a);
    mc_tensor_free(b);
    mc_tensor_free(x);
    mc_graph_free(g);
}
END_TEST

START_TEST(test_embedding_dropout_normalize_values) {
    mc_graph *g = mc_test_new_graph();
    mc_tensor *table = new_iota(MC_SHAPE(5, 3), "table", 1.0f);
    mc_tensor *y;
    const int32_t ids[4] = {4, 0, 4, 2};
    MC_CHECK_OK(mc_embedding(g, table, ids, MC_SHAPE(2, 2), &y));
    ck_assert(mc_shape_equal(y->shape, MC_SHAPE(2, 2, 3)));
    mc_test_assert_close("embedding", y->data, (const float[]){12, 13, 14, 0, 1, 2, 12, 13, 14, 6, 7, 8}, 12, 0, 1e-30);

    /* Dropout: about p of the elements are zero, the rest are x / (1 - p). */
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(100, 100), "x"));
    mc_tensor_fill(x, 1.0f);
    mc_rng rng;
    mc_rng_seed(&rng, 4);
    MC_CHECK_OK(mc_dropout(g, x, 0.25f, true, &rng, &y));
    int zeros = 0;
    for (int i = 0; i < 10000; i++) {
        ck_assert(y->data[i] == 0.0f || fabsf(y->data[i] - 1.0f / 0.75f) < 1e-6f);
        zeros += y->data[i] == 0.0f;
    }
    ck_assert_int_gt(zeros, 2300); /* 2500 expected; 5 standard deviations is ~215 */
    ck_assert_int_lt(zeros, 2700);
    MC_CHECK_OK(mc_dropout(g, x, 0.25f, false, &rng, &y));
    ck_assert_ptr_eq(y, x); /* eval: the identity */

    /* (3, 4) / 5 = (0.6, 0.8); (0, 0) stays 0 (divided by eps). */
    mc_tensor *v;
    MC_CHECK_OK(mc_tensor_new(&v, MC_SHAPE(2, 2), "v"));
    MC_CHECK_OK(mc_tensor_load(v, (const float[]){3, 4, 0, 0}, 4));
    MC_CHECK_OK(mc_l2_normalize(g, v, 1e-12f, &y));
    mc_test_assert_close("l2_normalize", y->data, (const float[]){0.6f, 0.8f, 0, 0}, 4, 1e-6, 1e-30);
    mc_tensor_free(v);
    mc_tensor_free(x);
    mc_tensor_free(table);
    mc_graph_free(g);
}
END_TEST

/* LayerNorm in double, written from the definition. x, y: (rows, D). */
static void layernorm_reference(const float *x, const float *w, const float *b, float *y, int64_t rows,
                                int64_t D, double eps) {
    for (int64_t r = 0; r < rows; r++) {
        double mean = 0, var = 0;
        for (int64_t j = 0; j < D; j++) mean += x[r * D + j];
        mean /= (double)D;
        for (int64_t j = 0; j < D; j++) var += (x[r * D + j] - mean) * (x[r * D + j] - mean);
        var /= (double)D;
        for (int64_t j = 0; j < D; j++)
            y[r * D + j] = (float)((x[r * D + j] - mean) / sqrt(var + eps) * w[j] + b[j]);
    }
}

START_TEST(test_layernorm_values) {
    mc_graph *g = mc_test_new_graph();
    mc_rng rng;
    mc_rng_seed(&rng, 12);
    /* 50 x 768 = 38400 elements: the threaded path (ViT-B/32 sized rows);
     * then 7 rows of widths around the forward's 16 running sums
     * (layernorm.c): fewer, a multiple, and remainders. */
    static const int64_t widths[] = {768, 1, 5, 16, 37, 1027};
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        const int64_t D = widths[i], rows = i == 0 ? 50 : 7;
        mc_tensor *x = new_uniform(MC_SHAPE(rows, D), "x", &rng, -3, 5);
        mc_tensor *w = new_uniform(MC_SHAPE(D), "ln.weight", &rng, 0.5f, 1.5f);
        mc_tensor *b = new_uniform(MC_SHAPE(D), "ln.bias", &rng, -1, 1);
        mc_tensor *y;
        MC_CHECK_OK(mc_layernorm(g, x, w, b, 1e-5f, &y));
        float *ref = malloc((size_t)x->numel * sizeof *ref);
        ck_assert_ptr_nonnull(ref);
        layernorm_reference(x->data, w->data, b->data, ref, rows, D, 1e-5);
        char what[64];
        snprintf(what, sizeof what, "layernorm width %lld", (long long)D);
        mc_test_assert_close(what, y->data, ref, (long)x->numel, 1e-4, 1e-5);
        if (D > 1) { /* A large common offset does not break the variance (two-pass). */
            for (int64_t k = 0; k < x->numel; k++) x->data[k] += 1000.0f;
            MC_CHECK_OK(mc_layernorm(g, x, w, b, 1e-5f, &y));
            mc_test_assert_close("layernorm offset", y->data, ref, (long)x->numel, 1e-2, 1e-2);
        }
        free(ref);
        mc_tensor_free(x);
        mc_tensor_free(w);
        mc_tensor_free(b);
    }
    mc_graph_free(g);
}
END_TEST

/* The threaded layernorm backward (per-thread weight-gradient parts) agrees
 * with a small-row computation: the same data split into pieces below the
 * threading threshold must give the same parameter gradients. */
START_TEST(test_layernorm_backward_threaded_matches_serial) {
    mc_rng rng;
    mc_rng_seed(&rng, 21);
    int64_t rows = 80, D = 300; /* 24000 > the threading threshold */
    mc_tensor *x = new_uniform(MC_SHAPE(rows, D), "x", &rng, -2, 2);
    mc_tensor *w = new_uniform(MC_SHAPE(D), "w", &rng, 0.5f, 1.5f);
    mc_tensor *b = new_uniform(MC_SHAPE(D), "b", &rng, -1, 1);
    mc_tensor *r = new_uniform(MC_SHAPE(rows, D), "r", &rng, -1, 1);
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, true));
    MC_CHECK_OK(mc_tensor_set_requires_grad(w, true));
    MC_CHECK_OK(mc_tensor_set_requires_grad(b, true));
    mc_graph *g = mc_test_new_graph();
    mc_tensor *y;
    MC_CHECK_OK(mc_layernorm(g, x, w, b, 1e-5f, &y));
    MC_CHECK_OK(mc_backward_with_grad(g, y, r->data));
    float *gx = malloc((size_t)x->numel * sizeof *gx), gw[300], gb[300];
    ck_assert_ptr_nonnull(gx);
    memcpy(gx, x->grad, (size_t)x->numel * sizeof *gx);
    memcpy(gw, w->grad, sizeof gw);
    memcpy(gb, b->grad, sizeof gb);
    /* Serial: 20 pieces of 4 rows (1200 elements each). */
    mc_tensor_zero_grad(x);
    mc_tensor_zero_grad(w);
    mc_tensor_zero_grad(b);
    for (int piece = 0; piece < 20; piece++) {
        mc_graph_reset(g);
        mc_tensor *xs, *ys;
        MC_CHECK_OK(mc_slice(g, x, 0, piece * 4, piece * 4 + 4, &xs));
        MC_CHECK_OK(mc_layernorm(g, xs, w, b, 1e-5f, &ys));
        MC_CHECK_OK(mc_backward_with_grad(g, ys, r->data + piece * 4 * D));
    }
    mc_test_assert_close("layernorm dx", x->grad, gx, (long)x->numel, 1e-4, 1e-5);
    mc_test_assert_close("layernorm dweight", w->grad, gw, 300, 1e-4, 1e-4);
    mc_test_assert_close("layernorm dbias", b->grad, gb, 300, 1e-4, 1e-4);
    free(gx);
    mc_tensor_free(x);
    mc_tensor_free(w);
    mc_tensor_free(b);
    mc_tensor_free(r);
    mc_graph_free(g);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 3. bad input                                                       */
/* ------------------------------------------------------------------ */

START_TEST(test_bad_inputs) {
    mc_graph *g = mc_test_new_graph();
    mc_tensor *a, *b, *c3, *w, *y = NULL;
    MC_CHECK_OK(mc_tensor_new(&a, MC_SHAPE(3, 5), "a"));
    MC_CHECK_OK(mc_tensor_new(&b, MC_SHAPE(4, 6), "b"));
    MC_CHECK_OK(mc_tensor_new(&c3, MC_SHAPE(2, 5, 4), "c3"));
    MC_CHECK_OK(mc_tensor_new(&w, MC_SHAPE(7, 6), "fc.weight"));
    /* matmul: inner dimensions disagree; batch sizes; ranks. */
    MC_CHECK_FAILS(mc_matmul(g, a, b, false, &y), MC_ERR_SHAPE, "matmul: a (3, 5) has 5 columns but b (4, 6) has 4 rows");
    ck_assert_ptr_null(y);
    MC_CHECK_FAILS(mc_matmul(g, a, b, true, &y), MC_ERR_SHAPE, "b (4, 6) transposed has 6 rows");
    mc_tensor *d3;
    MC_CHECK_OK(mc_tensor_new(&d3, MC_SHAPE(3, 4, 2), "d3"));
    MC_CHECK_FAILS(mc_matmul(g, c3, d3, false, &y), MC_ERR_SHAPE, "batch sizes differ");
    MC_CHECK_FAILS(mc_matmul(g, a, c3, false, &y), MC_ERR_SHAPE, "expected 2-D @ 2-D");
    /* linear: features disagree; bias shape. */
    MC_CHECK_FAILS(mc_linear(g, a, w, NULL, &y), MC_ERR_SHAPE, "input a (3, 5) has 5 features, weight fc.weight (7, 6) expects 6");
    MC_CHECK_FAILS(mc_linear(g, b, w, a, &y), MC_ERR_SHAPE, "bias a (3, 5) must have shape (7)");
    /* broadcast mismatch */
    MC_CHECK_FAILS(mc_add(g, a, b, &y), MC_ERR_SHAPE, "add: cannot broadcast a (3, 5) with b (4, 6)");
    /* An empty view (rows past the end) against a broadcast row: refused,
     * not broadcast into rows read from no data. */
    mc_tensor *row;
    MC_CHECK_OK(mc_tensor_new(&row, MC_SHAPE(5), "row"));
    mc_tensor empty = mc_tensor_rows(a, 5, 1);
    MC_CHECK_FAILS(mc_add(g, &empty, row, &y), MC_ERR_SHAPE, "a");
    mc_tensor_free(row);
    MC_CHECK_FAILS(mc_mul(g, c3, a, &y), MC_ERR_SHAPE, "dimension -1 is 4 vs 5");
    /* bad dims */
    MC_CHECK_FAILS(mc_softmax(g, a, 2, &y), MC_ERR_ARG, "softmax: dim 2 is out of range for a (3, 5)");
    MC_CHECK_FAILS(mc_log_softmax(g, a, -3, &y), MC_ERR_ARG, "dim -3 is out of range");
    MC_CHECK_FAILS(mc_sum(g, c3, 3, false, &y), MC_ERR_ARG, "sum: dim 3");
    MC_CHECK_FAILS(mc_mean(g, c3, -4, true, &y), MC_ERR_ARG, "mean: dim -4");
    MC_CHECK_FAILS(mc_transpose(g, a, 0, 2, &y), MC_ERR_ARG, "transpose: dim 2");
    /* bad perms: repeated entry, out of range */
    MC_CHECK_FAILS(mc_permute(g, c3, (const int[]){0, 0, 1}, &y), MC_ERR_ARG, "bad perm for c3 (2, 5, 4): entry 1 is 0");
    MC_CHECK_FAILS(mc_permute(g, c3, (const int[]){0, 3, 1}, &y), MC_ERR_ARG, "expected each of 0..2 exactly once");
    MC_CHECK_FAILS(mc_nchw_to_nhwc(g, c3, &y), MC_ERR_SHAPE, "expected 4 (N, C, H, W)");
    /* slice, concat, reshape */
    MC_CHECK_FAILS(mc_slice(g, a, 1, 3, 7, &y), MC_ERR_ARG, "range 3:7 of dim 1 of a (3, 5)");
    MC_CHECK_FAILS(mc_slice(g, a, 0, 2, 2, &y), MC_ERR_ARG, "empty");
    mc_tensor *pair[2] = {a, b};
    MC_CHECK_FAILS(mc_concat(g, 2, pair, 0, &y), MC_ERR_SHAPE, "input 1 b (4, 6) does not match input 0 a (3, 5)");
    MC_CHECK_FAILS(mc_concat(g, 0, pair, 0, &y), MC_ERR_ARG, "at least one");
    MC_CHECK_FAILS(mc_reshape(g, a, MC_SHAPE(4, 4), &y), MC_ERR_SHAPE, "different element count");
    MC_CHECK_FAILS(mc_reshape(g, a, MC_SHAPE(4, -1), &y), MC_ERR_SHAPE, "15 elements do not divide into 4");
    MC_CHECK_FAILS(mc_reshape(g, a, MC_SHAPE(-1, -1), &y), MC_ERR_SHAPE, "one -1 is allowed");
    /* The known sizes' product would overflow to 0 (then a division by it). */
    MC_CHECK_FAILS(mc_reshape(g, a, MC_SHAPE(-1, 1ll << 32, 1ll << 32), &y), MC_ERR_SHAPE,
                   "more than its 15 elements");
    /* A NULL input is an error, not a crash. */
    MC_CHECK_FAILS(mc_reshape(g, NULL, MC_SHAPE(15), &y), MC_ERR_ARG, "NULL");
    MC_CHECK_FAILS(mc_sum(g, NULL, 0, false, &y), MC_ERR_ARG, "sum: the input tensor is NULL");
    MC_CHECK_FAILS(mc_permute(g, NULL, (const int[]){0, 1}, &y), MC_ERR_ARG, "NULL");
    MC_CHECK_FAILS(mc_nchw_to_nhwc(g, NULL, &y), MC_ERR_ARG, "NULL");
    MC_CHECK_FAILS(mc_scale(g, NULL, 2.0f, 0.0f, &y), MC_ERR_ARG, "NULL");
    /* embedding: an id out of range is named with V */
    int32_t ids[3] = {0, 7, 2};
    MC_CHECK_FAILS(mc_embedding(g, w, ids, MC_SHAPE(3), &y), MC_ERR_ARG,
                   "id 7 at position 1 is out of range for weight fc.weight (7, 6): expected 0 <= id < V = 7");
    ids[1] = -1;
    MC_CHECK_FAILS(mc_embedding(g, w, ids, MC_SHAPE(3), &y), MC_ERR_ARG, "id -1");
    /* dropout, layernorm, normalize settings */
    MC_CHECK_FAILS(mc_dropout(g, a, 1.5f, true, NULL, &y), MC_ERR_ARG, "p = 1.5");
    MC_CHECK_FAILS(mc_dropout(g, a, 0.5f, true, NULL, &y), MC_ERR_ARG, "needs an rng");
    MC_CHECK_FAILS(mc_layernorm(g, a, w, NULL, 1e-5f, &y), MC_ERR_SHAPE, "weight fc.weight (7, 6) must have shape (5)");
    MC_CHECK_FAILS(mc_l2_normalize(g, a, 0.0f, &y), MC_ERR_ARG, "eps = 0");
    ck_assert_ptr_null(y);
    mc_tensor_free(a);
    mc_tensor_free(b);
    mc_tensor_free(c3);
    mc_tensor_free(d3);
    mc_tensor_free(w);
    mc_graph_free(g);
}
END_TEST

/* ------------------------------------------------------------------ */
/* 4. autograd semantics                                              */
/* ------------------------------------------------------------------ */

/* Gradients of heap tensors accumulate across backward calls (PyTorch):
 * two identical steps without zeroing give exactly twice one step. */
START_TEST(test_gradients_accumulate) {
    mc_rng rng;
    mc_rng_seed(&rng, 31);
    mc_tensor *x = new_uniform(MC_SHAPE(4, 5), "x", &rng, -1, 1);
    mc_tensor *w = new_uniform(MC_SHAPE(3, 5), "w", &rng, -1, 1);
    mc_tensor *bias = new_uniform(MC_SHAPE(3), "bias", &rng, -1, 1);
    MC_CHECK_OK(mc_tensor_set_requires_grad(w, true));
    MC_CHECK_OK(mc_tensor_set_requires_grad(bias, true));
    mc_graph *g = mc_test_new_graph();
    float first_w[15], first_b[3];
    for (int step = 0; step < 2; step++) {
        mc_tensor *h, *a, *loss;
        MC_CHECK_OK(mc_linear(g, x, w, bias, &h));
        MC_CHECK_OK(mc_tanh(g, h, &a));
        MC_CHECK_OK(mc_mean_all(g, a, &loss));
        MC_CHECK_OK(mc_backward(g, loss));
        if (step == 0) {
            memcpy(first_w, w->grad, sizeof first_w);
            memcpy(first_b, bias->grad, sizeof first_b);
        }
        mc_graph_reset(g);
    }
    float twice_w[15], twice_b[3];
    for (int i = 0; i < 15; i++) twice_w[i] = 2 * first_w[i];
    for (int i = 0; i < 3; i++) twice_b[i] = 2 * first_b[i];
    mc_test_assert_close("w.grad after two steps", w->grad, twice_w, 15, 1e-6, 1e-9);
    mc_test_assert_close("bias.grad after two steps", bias->grad, twice_b, 3, 1e-6, 1e-9);
    ck_assert_float_ne(first_b[0], 0.0f);
    /* x does not require a gradient: it never got a buffer. */
    ck_assert_ptr_null(x->grad);
    /* A second backward on a consumed tape is an error, not a double count. */
    mc_tensor *h, *loss;
    MC_CHECK_OK(mc_linear(g, x, w, bias, &h));
    MC_CHECK_OK(mc_sum_all(g, h, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    MC_CHECK_FAILS(mc_backward(g, loss), MC_ERR_STATE, "backward already ran");
    mc_tensor_free(x);
    mc_tensor_free(w);
    mc_tensor_free(bias);
    mc_graph_free(g);
}
END_TEST

START_TEST(test_no_grad_records_nothing) {
    mc_rng rng;
    mc_rng_seed(&rng, 32);
    mc_tensor *x = new_uniform(MC_SHAPE(3, 4), "x", &rng, -1, 1);
    mc_tensor *w = new_uniform(MC_SHAPE(2, 4), "w", &rng, -1, 1);
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, true));
    MC_CHECK_OK(mc_tensor_set_requires_grad(w, true));
    mc_graph *g = mc_test_new_graph();
    bool was = mc_graph_set_grad_enabled(g, false);
    ck_assert(was);
    mc_tensor *y[10];
    MC_CHECK_OK(mc_linear(g, x, w, NULL, &y[0]));
    MC_CHECK_OK(mc_add(g, x, x, &y[1]));
    MC_CHECK_OK(mc_gelu(g, x, &y[2]));
    MC_CHECK_OK(mc_softmax(g, x, -1, &y[3]));
    MC_CHECK_OK(mc_layernorm(g, x, NULL, NULL, 1e-5f, &y[4]));
    MC_CHECK_OK(mc_reshape(g, x, MC_SHAPE(12), &y[5]));
    MC_CHECK_OK(mc_transpose(g, x, 0, 1, &y[6]));
    MC_CHECK_OK(mc_sum(g, x, 0, false, &y[7]));
    MC_CHECK_OK(mc_embedding(g, w, (const int32_t[]){1, 0}, MC_SHAPE(2), &y[8]));
    MC_CHECK_OK(mc_l2_normalize(g, x, 1e-12f, &y[9]));
    ck_assert_int_eq(mc_graph_tape_length(g), 0);
    for (int i = 0; i < 10; i++) ck_assert_msg(!y[i]->requires_grad, "output %d requires grad", i);
    mc_graph_set_grad_enabled(g, true);
    MC_CHECK_OK(mc_gelu(g, x, &y[0]));
    ck_assert_int_eq(mc_graph_tape_length(g), 1);
    ck_assert(y[0]->requires_grad);
    mc_tensor_free(x);
    mc_tensor_free(w);
    mc_graph_free(g);
}
END_TEST

int main(void) {
    mc_threads_init_from_env();
    Suite *s = suite_create("ops_dense");
    const TTest *const grad[] = {test_gradcheck_random_broadcasts, NULL};
    const mc_test_loop grad_table[] = {{test_gradcheck_table, 0, N_GRAD_CASES}, {NULL, 0, 0}};
    tcase_set_timeout(mc_test_add_loops(mc_test_add_case(s, "gradcheck", grad), grad_table), 60);

    const TTest *const values[] = {test_broadcast_values, test_broadcast_large_matches_naive,
                                   test_scale_and_activation_values, test_exp_kernel_matches_libm,
                                   test_activations_large_match_libm, test_reduce_values,
                                   test_softmax_values, test_matmul_naive_by_hand,
                                   test_matmul_matches_naive, test_linear_fused_match_naive,
                                   test_shape_values,
                                   test_embedding_dropout_normalize_values, test_layernorm_values,
                                   test_layernorm_backward_threaded_matches_serial, NULL};
    tcase_set_timeout(mc_test_add_case(s, "forward values", values), 60);

    const TTest *const bad[] = {test_bad_inputs, NULL};
    mc_test_add_case(s, "bad input", bad);

    const TTest *const autograd[] = {test_gradients_accumulate, test_no_grad_records_nothing, NULL};
    mc_test_add_case(s, "autograd", autograd);
    return mc_test_run_suite(s);
}

/* The public gradient checker (gradcheck.h) on a custom op written as a
 * user would: square(x) = x * x, recorded with mc_graph_record, with a
 * correct backward and with two wrong ones that the checker must catch. */
#include "testutil.h"

/* d square / dx = 2x. `factor` is 2 in the correct backward; the broken
 * variants use another factor, or forget to accumulate (= instead of +=). */
typedef struct square_variant {
    float factor;
    bool overwrite;
} square_variant;

static mc_status square_backward(mc_node *node) {
    const square_variant *variant = node->saved;
    mc_tensor *x = node->in[0];
    float *dx;
    MC_TRY(mc_grad_buffer(node->graph, x, &dx));
    const float *dy = node->out->grad;
    for (int64_t i = 0; i < x->numel; i++) {
        float term = variant->factor * x->data[i] * dy[i];
        dx[i] = variant->overwrite ? term : dx[i] + term;
    }
    return MC_OK;
}

/* x (any shape) -> x * x (same shape). */
static mc_status square(mc_graph *g, mc_tensor *x, square_variant variant, mc_tensor **out) {
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, x->shape, "square", &y));
    for (int64_t i = 0; i < x->numel; i++) y->data[i] = x->data[i] * x->data[i];
    square_variant *saved = NULL;
    if (mc_graph_should_record(g, 1, &x)) {
        MC_TRY(mc_graph_alloc(g, sizeof *saved, (void **)&saved));
        *saved = variant;
    }
    MC_TRY(mc_graph_record(g, "square", square_backward, y, 1, &x, saved));
    *out = y;
    return MC_OK;
}

/* x used twice, square(x) + x: a wrong backward that overwrites instead of
 * adding loses the share of the identity, whose backward runs first (the
 * tape runs in reverse: add, relu, square). */
static mc_status square_plus_x(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
    mc_tensor *squared, *identity;
    MC_TRY(square(g, in[0], *(const square_variant *)ctx, &squared));
    MC_TRY(mc_relu(g, in[0], &identity)); /* inputs are positive: relu is x here */
    return mc_add(g, squared, identity, out);
}

static mc_status square_only(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
    return square(g, in[0], *(const square_variant *)ctx, out);
}

/* A (3, 5) input with values in [0.5, 1.5): away from zero, so relu is the
 * identity within any perturbation. */
static mc_tensor *positive_input(void) {
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(3, 5), "x"));
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = 0.5f + (float)i / (float)x->numel;
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, true));
    return x;
}

START_TEST(test_correct_backward_passes_with_report) {
    mc_tensor *x = positive_input();
    square_variant right = {.factor = 2.0f};
    mc_gradcheck_report report;
    const uint64_t version = x->version;
    MC_CHECK_OK(mc_gradcheck("square", 1, &x, square_only, &right, NULL, &report));
    ck_assert(report.passed);
    ck_assert_int_eq(report.checked, 15);
    /* Every perturbation and restore touched x: what is derived from its
     * data (a weight's bf16 copies) is remade, never kept from a perturbed
     * value. */
    ck_assert_msg(x->version > version + 2 * 15, "x->version went from %llu to %llu",
                  (unsigned long long)version, (unsigned long long)x->version);
    ck_assert(report.worst_violation <= 1.0);
    ck_assert(report.max_abs_error < 2e-3);
    ck_assert(report.worst_input == 0);
    ck_assert(report.worst_element >= 0 && report.worst_element < 15);
    /* The analytic gradient left in x->grad is 2 x r for the checker's r:
     * its size is bounded by 2 |x| (|r| <= 1) and it is not all zero. */
    double total = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        ck_assert(fabsf(x->grad[i]) <= 2.0f * x->data[i] + 1e-6f);
        total += fabs(x->grad[i]);
    }
    ck_assert(total > 0.1);
    /* Same verdict through an input used twice. */
    MC_CHECK_OK(mc_gradcheck("square + x", 1, &x, square_plus_x, &right, NULL, &report));
    mc_tensor_free(x);
}
END_TEST

START_TEST(test_wrong_factor_is_caught) {
    mc_tensor *x = positive_input();
    square_variant wrong = {.factor = 2.2f}; /* a 10 % error */
    mc_gradcheck_report report;
    MC_CHECK_FAILS(mc_gradcheck("square", 1, &x, square_only, &wrong, NULL, &report),
                   MC_ERR_NUMERIC, "square: gradient of input 0 (x)");
    ck_assert(!report.passed);
    ck_assert(report.worst_violation > 1.0);
    ck_assert_int_eq(report.worst_input, 0);
    /* At the worst element the analytic gradient is 1.1 times the numeric. */
    ck_assert(fabs(report.worst_analytic / report.worst_numeric - 1.1) < 0.01);
    ck_assert(fabs(report.max_rel_error - 0.1 / 1.1) < 0.01);
    mc_tensor_free(x);
}
END_TEST

START_TEST(test_overwriting_backward_is_caught) {
    mc_tensor *x = positive_input();
    square_variant overwrite = {.factor = 2.0f, .overwrite = true};
    MC_CHECK_FAILS(mc_gradcheck("square + x", 1, &x, square_plus_x, &overwrite, NULL, NULL),
                   MC_ERR_NUMERIC, "input 0 (x)");
    mc_tensor_free(x);
}
END_TEST

START_TEST(test_check_that_cannot_run_is_an_error) {
    mc_tensor *x = positive_input(), *w = positive_input();
    mc_tensor_set_name(w, "w");
    mc_tensor *both[2] = {x, w};
    square_variant right = {.factor = 2.0f};
    /* square_only never reads its second input: no gradient reaches it. */
    MC_CHECK_FAILS(mc_gradcheck("square of x", 2, both, square_only, &right, NULL, NULL),
                   MC_ERR_STATE, "input 1 (w) received no gradient");
    mc_tensor_free(w);
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, false));
    MC_CHECK_FAILS(mc_gradcheck("square", 1, &x, square_only, &right, NULL, NULL), MC_ERR_ARG,
                   "no input requires a gradient");
    MC_CHECK_FAILS(mc_gradcheck("square", 1, &x, NULL, NULL, NULL, NULL), MC_ERR_ARG,
                   "forward function");
    mc_tensor_free(x);
}
END_TEST

/* Options are honoured: an eps too large for a curved function fails where
 * the default passes (the central difference of x^3 has error eps^2 r). */
static mc_status cube(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
    (void)ctx;
    mc_tensor *sq;
    MC_TRY(mc_mul(g, in[0], in[0], &sq));
    return mc_mul(g, sq, in[0], out);
}

START_TEST(test_options_are_used) {
    mc_tensor *x = positive_input();
    MC_CHECK_OK(mc_gradcheck("cube", 1, &x, cube, NULL, NULL, NULL));
    mc_gradcheck_options coarse = {.eps = 0.5, .rtol = 1e-3, .atol = 1e-4};
    MC_CHECK_FAILS(mc_gradcheck("cube", 1, &x, cube, NULL, &coarse, NULL), MC_ERR_NUMERIC,
                   "cube");
    mc_tensor_free(x);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gradcheck");
    const TTest *const tests[] = {test_correct_backward_passes_with_report,
                                  test_wrong_factor_is_caught, test_overwriting_backward_is_caught,
                                  test_check_that_cannot_run_is_an_error, test_options_are_used,
                                  NULL};
    mc_test_add_case(s, "gradcheck", tests);
    return mc_test_run_suite(s);
}

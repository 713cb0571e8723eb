/* Recomputation (mc_recompute, autograd.h; mc_resnet_set_recompute,
 * models.h) against running the same network directly:
 *   - a segment's gradients pass the finite-difference check, and equal
 *     the direct run's bit for bit (the same ops on the same values);
 *   - a ResNet training step (forward in training mode, backward, Adam)
 *     with recomputation leaves the same gradients, parameters, batch-norm
 *     running statistics and batch counts as without, bit for bit, while
 *     the step's arena peaks lower;
 *   - several steps on one graph (planned gradient blocks, steps that
 *     depart from the plan) equal the same steps on fresh graphs;
 *   - a backward hook still sees every parameter of a recomputed segment
 *     on the tape (the data-parallel trainer sends gradients from it);
 *   - with gradients off a segment runs once and records nothing. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "mmchain/mmchain.h"
#include "testutil.h"

/* ---- a small segment: tanh(x W^T + b) * x, reading W and b from its context ---- */

typedef struct dense_context {
    mc_tensor *weight, *bias; /* (5, 5), (5) */
} dense_context;

static mc_status dense_segment(mc_graph *g, const void *context, bool recomputing, mc_tensor *x,
                               mc_tensor **out) {
    (void)recomputing;
    const dense_context *c = context;
    mc_tensor *h;
    MC_TRY(mc_linear(g, x, c->weight, c->bias, &h));
    MC_TRY(mc_tanh(g, h, &h));
    return mc_mul(g, h, x, out);
}

/* inputs: x (3, 5), weight (5, 5), bias (5); ctx: non-NULL = recompute.
 * The segment runs twice in a row, so the second one's input is a step
 * tensor that the first produced. */
static mc_status dense_forward(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
    dense_context context = {in[1], in[2]};
    mc_tensor *h = in[0];
    for (int i = 0; i < 2; i++) {
        if (ctx) MC_TRY(mc_recompute(g, dense_segment, &context, sizeof context, h, &h));
        else MC_TRY(dense_segment(g, &context, false, h, &h));
    }
    return mc_sum_all(g, h, out);
}

static void make_dense_inputs(mc_tensor *in[3]) {
    mc_rng rng;
    mc_rng_seed(&rng, 11);
    MC_CHECK_OK(mc_tensor_new(&in[0], MC_SHAPE(3, 5), "x"));
    MC_CHECK_OK(mc_tensor_new(&in[1], MC_SHAPE(5, 5), "weight"));
    MC_CHECK_OK(mc_tensor_new(&in[2], MC_SHAPE(5), "bias"));
    for (int i = 0; i < 3; i++) {
        mc_tensor_uniform(in[i], &rng, -1.0f, 1.0f);
        in[i]->requires_grad = true;
    }
}

START_TEST(test_segment_gradcheck) {
    mc_tensor *in[3];
    make_dense_inputs(in);
    int recompute = 1;
    mc_assert_gradcheck("recomputed dense segment", 3, in, dense_forward, &recompute, NULL);
    for (int i = 0; i < 3; i++) mc_tensor_free(in[i]);
}
END_TEST

/* The three inputs' gradients, into malloc'd copies. */
static void copy_input_grads(mc_tensor **in, float *grads[3]) {
    for (int i = 0; i < 3; i++) {
        grads[i] = malloc((size_t)in[i]->numel * sizeof(float));
        memcpy(grads[i], in[i]->grad, (size_t)in[i]->numel * sizeof(float));
    }
}

/* One forward + backward of dense_forward; the inputs' gradients into grads. */
static void dense_gradients(mc_tensor **in, bool recompute, float *grads[3]) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    for (int i = 0; i < 3; i++) mc_tensor_zero_grad(in[i]);
    mc_tensor *loss;
    int flag = 1;
    MC_CHECK_OK(dense_forward(g, in, recompute ? &flag : NULL, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    copy_input_grads(in, grads);
    mc_graph_free(g);
}

START_TEST(test_segment_gradients_equal_direct_run) {
    mc_tensor *in[3];
    make_dense_inputs(in);
    float *direct[3], *recomputed[3];
    dense_gradients(in, false, direct);
    dense_gradients(in, true, recomputed);
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(memcmp(direct[i], recomputed[i], (size_t)in[i]->numel * sizeof(float)) == 0,
                      "gradient of %s differs with recomputation", in[i]->name);
        free(direct[i]);
        free(recomputed[i]);
        mc_tensor_free(in[i]);
    }
}
END_TEST

/* A backward hook learns when a parameter's gradient is final from the
 * nodes that take it: every parameter of a recomputed segment must be the
 * input of some node on the tape. */
START_TEST(test_segment_parameters_on_tape) {
    mc_tensor *in[3];
    make_dense_inputs(in);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *loss;
    int flag = 1;
    MC_CHECK_OK(dense_forward(g, in, &flag, &loss));
    for (int p = 1; p < 3; p++) {
        bool found = false;
        const mc_node *node;
        for (int i = 0; (node = mc_graph_tape_node(g, i)) != NULL; i++)
            for (int j = 0; j < node->n_in; j++) found |= node->in[j] == in[p];
        ck_assert_msg(found, "%s is no node's input on the tape", in[p]->name);
    }
    mc_graph_free(g);
    for (int i = 0; i < 3; i++) mc_tensor_free(in[i]);
}
END_TEST

START_TEST(test_segment_without_gradients_records_nothing) {
    mc_tensor *in[3];
    make_dense_inputs(in);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_grad_enabled(g, false);
    mc_tensor *with, *without;
    int flag = 1;
    MC_CHECK_OK(dense_forward(g, in, &flag, &with));
    MC_CHECK_OK(dense_forward(g, in, NULL, &without));
    ck_assert_int_eq(mc_graph_tape_length(g), 0);
    ck_assert(!with->requires_grad);
    ck_assert(memcmp(with->data, without->data, sizeof(float)) == 0);
    mc_graph_free(g);
    for (int i = 0; i < 3; i++) mc_tensor_free(in[i]);
}
END_TEST

/* A segment that returns its input records nothing: with a gradient to
 * pass on, that is an error naming it, not a result cut off from the
 * tape (the gradient would stop there). */
static mc_status identity_segment(mc_graph *g, const void *context, bool recomputing, mc_tensor *x,
                                  mc_tensor **out) {
    (void)g, (void)context, (void)recomputing;
    *out = x;
    return MC_OK;
}

START_TEST(test_segment_returning_its_input_is_refused) {
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(2, 3), "x"));
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, true));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *y = NULL;
    MC_CHECK_FAILS(mc_recompute(g, identity_segment, NULL, 0, x, &y), MC_ERR_ARG,
                   "recompute of x: the segment recorded no op but returned x");
    ck_assert_ptr_null(y);
    mc_graph_set_grad_enabled(g, false); /* no gradient to pass on: the segment runs as is */
    MC_CHECK_OK(mc_recompute(g, identity_segment, NULL, 0, x, &y));
    ck_assert_ptr_eq(y, x);
    mc_graph_free(g);
    mc_tensor_free(x);
}
END_TEST

/* ---- a ResNet training step with and without recomputation ---- */

typedef struct step_result {
    mc_resnet *model;
    float **grads; /* per parameter, NULL where it has none */
    float loss;
    size_t arena_peak;
} step_result;

/* A bottleneck ResNet with a downsampling block in every stage (and two
 * blocks in one), one training step on a fixed batch: loss = mean of the
 * logits squared, backward, Adam. */
static step_result train_step(bool recompute) {
    mc_resnet_config config = {.block = MC_RESNET_BOTTLENECK, .layers = {1, 2, 1, 1}, .base_width = 4,
                               .in_channels = 3, .fc_out = 6};
    step_result r = {0};
    MC_CHECK_OK(mc_resnet_new(&r.model, &config, 3));
    mc_resnet_set_training(r.model, true);
    mc_resnet_set_recompute(r.model, recompute);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_rng rng;
    mc_rng_seed(&rng, 5);
    mc_tensor *x, *logits, *squared, *loss;
    MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(4, 3, 32, 32), "x", &x));
    mc_tensor_uniform(x, &rng, -1.0f, 1.0f);
    MC_CHECK_OK(mc_resnet_forward(r.model, g, x, &logits));
    MC_CHECK_OK(mc_mul(g, logits, logits, &squared));
    MC_CHECK_OK(mc_mean_all(g, squared, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    r.loss = loss->data[0];
    r.arena_peak = mc_graph_arena_peak_bytes(g);
    r.grads = calloc((size_t)r.model->params.count, sizeof *r.grads);
    for (int i = 0; i < r.model->params.count; i++) {
        const mc_tensor *t = r.model->params.items[i];
        if (!t->grad) continue;
        r.grads[i] = malloc((size_t)t->numel * sizeof(float));
        memcpy(r.grads[i], t->grad, (size_t)t->numel * sizeof(float));
    }
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &r.model->params, mc_adam_defaults()));
    MC_CHECK_OK(mc_optimizer_step(opt));
    mc_optimizer_free(opt);
    mc_graph_free(g);
    return r;
}

static void step_result_free(step_result *r) {
    for (int i = 0; i < r->model->params.count; i++) free(r->grads[i]);
    free(r->grads);
    mc_resnet_free(r->model);
}

START_TEST(test_resnet_step_equals_direct_step) {
    step_result direct = train_step(false), recomputed = train_step(true);
    ck_assert(memcmp(&direct.loss, &recomputed.loss, sizeof(float)) == 0);
    int with_grad = 0;
    for (int i = 0; i < direct.model->params.count; i++) {
        const mc_tensor *t = direct.model->params.items[i];
        ck_assert_msg((direct.grads[i] == NULL) == (recomputed.grads[i] == NULL),
                      "%s has a gradient in one run only", t->name);
        if (!direct.grads[i]) continue;
        with_grad++;
        ck_assert_msg(memcmp(direct.grads[i], recomputed.grads[i], (size_t)t->numel * sizeof(float)) == 0,
                      "gradient of %s differs with recomputation", t->name);
    }
    ck_assert_int_gt(with_grad, 0);
    /* Weights after Adam, running statistics, batches tracked: all of it. */
    mc_test_assert_same_params("after a step with recomputation", &direct.model->params,
                               &recomputed.model->params);
    fprintf(stderr, "arena peak: %zu bytes directly, %zu with recomputation\n", direct.arena_peak,
            recomputed.arena_peak);
    ck_assert_uint_lt(recomputed.arena_peak, direct.arena_peak);
    step_result_free(&direct);
    step_result_free(&recomputed);
}
END_TEST

/* ---- several steps on one graph: the planned gradient blocks ----
 *
 * From its second step on, a graph takes its gradient blocks from a plan
 * of the step before (graph.c); a step that departs from it (another
 * batch, another loss) takes blocks of its own and is planned anew. A
 * place planned wrongly would overwrite a live gradient. So: the same
 * steps on one graph, with and without recomputation, against a fresh
 * graph for every step (which never plans), bit for bit. */

enum { N_STEPS = 7 };
static const int STEP_BATCH[N_STEPS] = {4, 4, 4, 2, 4, 4, 4};
/* Step 5's loss is mean(logits^3): one node more, later on its tape. */
static const bool STEP_CUBED[N_STEPS] = {false, false, false, false, false, true, false};

static void train_steps(bool recompute, bool fresh_graphs, float losses[N_STEPS], mc_resnet **out) {
    mc_resnet_config config = {.block = MC_RESNET_BOTTLENECK, .layers = {1, 2, 1, 1}, .base_width = 4,
                               .in_channels = 3, .fc_out = 6};
    mc_resnet *model;
    MC_CHECK_OK(mc_resnet_new(&model, &config, 3));
    mc_resnet_set_training(model, true);
    mc_resnet_set_recompute(model, recompute);
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &model->params, mc_adam_defaults()));
    mc_graph *g = NULL;
    mc_rng rng;
    mc_rng_seed(&rng, 9);
    for (int step = 0; step < N_STEPS; step++) {
        if (!g) MC_CHECK_OK(mc_graph_new(&g));
        mc_optimizer_zero_grad(opt);
        mc_tensor *x, *logits, *squared, *loss;
        MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(STEP_BATCH[step], 3, 32, 32), "x", &x));
        mc_tensor_uniform(x, &rng, -1.0f, 1.0f);
        MC_CHECK_OK(mc_resnet_forward(model, g, x, &logits));
        MC_CHECK_OK(mc_mul(g, logits, logits, &squared));
        if (STEP_CUBED[step]) MC_CHECK_OK(mc_mul(g, squared, logits, &squared));
        MC_CHECK_OK(mc_mean_all(g, squared, &loss));
        MC_CHECK_OK(mc_backward(g, loss));
        losses[step] = loss->data[0];
        MC_CHECK_OK(mc_optimizer_step(opt));
        mc_graph_reset(g);
        if (fresh_graphs) {
            mc_graph_free(g);
            g = NULL;
        }
    }
    mc_graph_free(g);
    mc_optimizer_free(opt);
    *out = model;
}

START_TEST(test_steps_on_one_graph_equal_fresh_graphs) {
    float fresh_losses[N_STEPS];
    mc_resnet *fresh;
    train_steps(false, true, fresh_losses, &fresh);
    for (int recompute = 0; recompute < 2; recompute++) {
        float losses[N_STEPS];
        mc_resnet *model;
        train_steps(recompute, false, losses, &model);
        for (int step = 0; step < N_STEPS; step++)
            ck_assert_msg(memcmp(&losses[step], &fresh_losses[step], sizeof(float)) == 0,
                          "step %d's loss differs on one graph (recompute %d)", step, recompute);
        mc_test_assert_same_params(recompute ? "after steps on one graph, recomputing"
                                             : "after steps on one graph",
                                   &fresh->params, &model->params);
        mc_resnet_free(model);
    }
    mc_resnet_free(fresh);
}
END_TEST

/* ---- a segment's arena memory lives in the planned region ----
 *
 * A segment whose run takes far more arena memory (a 4 MiB intermediate)
 * than the rest of the step: from the second step on, that memory is a
 * place in the gradient blocks' plan (graph.c, segment rooms), so the
 * chunk the arena keeps at the reset holds only what lies outside the
 * segments (under 1 MiB here, the arena's least chunk); the arena keeping
 * the segment's peak would fail. The gradients of every step equal a
 * fresh graph's bit for bit (a wrongly placed room would overwrite a kept
 * output or a gradient). */
enum { WIDE = 1 << 20 };

/* dense_segment's context first (the segment passes it on), then the
 * width of the zero-filled intermediate the segment also takes. */
typedef struct wide_context {
    dense_context dense;
    int64_t width;
} wide_context;

static mc_status wide_segment(mc_graph *g, const void *context, bool recomputing, mc_tensor *x,
                              mc_tensor **out) {
    const int64_t width = ((const wide_context *)context)->width;
    mc_tensor *wide;
    MC_TRY(mc_graph_tensor(g, MC_SHAPE(width), "wide", &wide)); /* zero-filled: checked below */
    for (int64_t i = 0; i < width; i += 4096)
        if (wide->data[i] != 0.0f) return mc_error(MC_ERR_STATE, "wide intermediate not zeroed");
    wide->data[width - 1] = 1.0f;
    return dense_segment(g, context, recomputing, x, out);
}

/* One step of three wide segments; returns the arena's reserved bytes
 * before the step's reset (the chunks in use and spare: a segment run in
 * arena chunks instead of its planned place shows there). */
static size_t wide_step_of(mc_graph *g, mc_tensor **in, int64_t width, float *grads[3]) {
    wide_context context = {{in[1], in[2]}, width};
    for (int i = 0; i < 3; i++) mc_tensor_zero_grad(in[i]);
    mc_tensor *h = in[0], *loss;
    for (int i = 0; i < 3; i++) MC_CHECK_OK(mc_recompute(g, wide_segment, &context, sizeof context, h, &h));
    MC_CHECK_OK(mc_sum_all(g, h, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    copy_input_grads(in, grads);
    size_t reserved = mc_graph_arena_reserved_bytes(g);
    mc_graph_reset(g);
    return reserved;
}

static size_t wide_step(mc_graph *g, mc_tensor **in, float *grads[3]) {
    return wide_step_of(g, in, WIDE, grads);
}

START_TEST(test_segment_memory_planned_with_blocks) {
    mc_tensor *in[3];
    make_dense_inputs(in);
    float *fresh[3];
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    wide_step(g, in, fresh);
    mc_graph_free(g);
    MC_CHECK_OK(mc_graph_new(&g));
    for (int step = 0; step < 4; step++) {
        float *grads[3];
        size_t reserved_in_step = wide_step(g, in, grads);
        ck_assert_uint_ge(mc_graph_arena_peak_bytes(g), WIDE * sizeof(float));
        ck_assert_uint_le(mc_graph_arena_reserved_bytes(g), 1 << 20);
        /* From the second step the segments ran in their planned places. */
        if (step > 0) ck_assert_uint_le(reserved_in_step, 1 << 20);
        for (int i = 0; i < 3; i++) {
            ck_assert_msg(memcmp(grads[i], fresh[i], (size_t)in[i]->numel * sizeof(float)) == 0,
                          "step %d: gradient of %s differs on one graph", step, in[i]->name);
            free(grads[i]);
        }
    }
    mc_graph_free(g);
    for (int i = 0; i < 3; i++) {
        free(fresh[i]);
        mc_tensor_free(in[i]);
    }
}
END_TEST

/* Steps of two shapes in turn (a batch of 3 rows, then of 4): every step
 * departs from the plan the other shape left, so after its first segment
 * (lent the planned place) its segments run in arena chunks. The chunk the
 * arena keeps after such a step holds them: a step of the smaller shape
 * grows the arena no more (it would map, and fault in, fresh memory each
 * time). A step of the larger shape still overflows the smaller place lent
 * to its first segment into a chunk of its own. Back on one shape, the
 * first step that follows the plan gives the segments' room back (the
 * arena keeps at most its least chunk). The gradients equal a fresh
 * graph's bit for bit. */
START_TEST(test_segments_of_alternating_shapes_keep_their_chunk) {
    mc_tensor *in[2][3];
    make_dense_inputs(in[0]);
    make_dense_inputs(in[1]);
    mc_tensor_free(in[1][0]);
    MC_CHECK_OK(mc_tensor_new(&in[1][0], MC_SHAPE(4, 5), "x4"));
    mc_rng rng;
    mc_rng_seed(&rng, 12);
    mc_tensor_uniform(in[1][0], &rng, -1.0f, 1.0f);
    in[1][0]->requires_grad = true;
    float *fresh[2][3];
    mc_graph *g;
    for (int shape = 0; shape < 2; shape++) {
        MC_CHECK_OK(mc_graph_new(&g));
        wide_step(g, in[shape], fresh[shape]);
        mc_graph_free(g);
    }
    MC_CHECK_OK(mc_graph_new(&g));
    size_t reserved_after_reset = 0;
    for (int step = 0; step < 8; step++) {
        const int shape = step < 6 ? step % 2 : 0;
        float *grads[3];
        size_t reserved_in_step = wide_step(g, in[shape], grads);
        if (step >= 2 && shape == 0)
            ck_assert_msg(reserved_in_step == reserved_after_reset,
                          "step %d: the arena grew from %zu to %zu bytes", step, reserved_after_reset,
                          reserved_in_step);
        reserved_after_reset = mc_graph_arena_reserved_bytes(g);
        if (step == 7) ck_assert_uint_le(reserved_after_reset, 1 << 20);
        for (int i = 0; i < 3; i++) {
            ck_assert_msg(memcmp(grads[i], fresh[shape][i], (size_t)in[shape][i]->numel * sizeof(float)) == 0,
                          "step %d: gradient of %s differs on one graph", step, in[shape][i]->name);
            free(grads[i]);
        }
    }
    mc_graph_free(g);
    for (int shape = 0; shape < 2; shape++)
        for (int i = 0; i < 3; i++) {
            free(fresh[shape][i]);
            mc_tensor_free(in[shape][i]);
        }
}
END_TEST

int main(void) {
    Suite *s = suite_create("recompute");
    const TTest *const tests[] = {test_segment_gradcheck,
                                  test_segment_gradients_equal_direct_run,
                                  test_segment_parameters_on_tape,
                                  test_segment_without_gradients_records_nothing,
                                  test_segment_returning_its_input_is_refused,
                                  test_resnet_step_equals_direct_step,
                                  test_steps_on_one_graph_equal_fresh_graphs,
                                  test_segment_memory_planned_with_blocks,
                                  test_segments_of_alternating_shapes_keep_their_chunk,
                                  NULL};
    tcase_set_timeout(mc_test_add_case(s, "recompute", tests), 300);
    return mc_test_run_suite(s);
}

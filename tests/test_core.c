/* The core: shapes, heap tensors, the arena, the tape, the RNG, errors. */
#include <string.h>

#include "testutil.h"

START_TEST(test_shape_macro_and_numel) {
    mc_shape s = MC_SHAPE(2, 3, 4);
    ck_assert_int_eq(s.ndim, 3);
    ck_assert_int_eq(mc_shape_numel(s), 24);
    char buf[64];
    ck_assert_str_eq(mc_shape_str(s, buf, sizeof buf), "(2, 3, 4)");
    ck_assert(mc_shape_equal(s, MC_SHAPE(2, 3, 4)));
    ck_assert(!mc_shape_equal(s, MC_SHAPE(2, 12)));
}
END_TEST

START_TEST(test_shape_errors) {
    MC_CHECK_FAILS(mc_shape_check(MC_SHAPE(2, 0), "x"), MC_ERR_SHAPE, "x: dimension 1 is 0");
    MC_CHECK_FAILS(mc_shape_check(MC_SHAPE(1LL << 40, 1LL << 40), "big"), MC_ERR_SHAPE, "overflow");
    mc_shape seven = {.ndim = 7, .dim = {1}};
    MC_CHECK_FAILS(mc_shape_check(seven, "deep"), MC_ERR_SHAPE, "7 dimensions");
    mc_tensor *t = (mc_tensor *)0x1;
    MC_CHECK_FAILS(mc_tensor_new(&t, MC_SHAPE(3, -1), "neg"), MC_ERR_SHAPE, "neg");
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(test_heap_tensor_lifecycle) {
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, MC_SHAPE(2, 5), "w"));
    ck_assert_str_eq(t->name, "w");
    ck_assert_int_eq(t->numel, 10);
    for (int i = 0; i < 10; i++) ck_assert_float_eq(t->data[i], 0.0f);
    mc_tensor_fill(t, 2.5f);
    mc_tensor *c;
    MC_CHECK_OK(mc_tensor_clone(&c, t, "w2"));
    ck_assert_float_eq(c->data[9], 2.5f);
    MC_CHECK_OK(mc_tensor_reshape_inplace(c, MC_SHAPE(10)));
    MC_CHECK_FAILS(mc_tensor_reshape_inplace(c, MC_SHAPE(3, 3)), MC_ERR_SHAPE, "element counts");
    ck_assert_int_eq(mc_tensor_dim(t, -1), 5);
    MC_CHECK_OK(mc_tensor_set_requires_grad(t, true));
    ck_assert(t->requires_grad);
    ck_assert_ptr_null(t->grad); /* made by the first backward that reaches it */
    mc_tensor_free(t);
    mc_tensor_free(c);
}
END_TEST

START_TEST(test_row_views) {
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, MC_SHAPE(4, 2, 3), "batch"));
    for (int i = 0; i < 24; i++) t->data[i] = (float)i;
    MC_CHECK_OK(mc_tensor_set_requires_grad(t, true));
    mc_tensor rows = mc_tensor_rows(t, 1, 2);
    ck_assert(mc_shape_equal(rows.shape, MC_SHAPE(2, 2, 3)));
    ck_assert_int_eq(rows.numel, 12);
    ck_assert_str_eq(rows.name, "batch");
    ck_assert_ptr_eq(rows.data, t->data + 6); /* borrowed, not copied */
    ck_assert_float_eq(rows.data[11], 17.0f);
    ck_assert(!rows.requires_grad && rows.grad == NULL && !rows.on_heap && !rows.owns_data);
    rows.data[0] = -1.0f;
    ck_assert_float_eq(t->data[6], -1.0f);
    mc_tensor last = mc_tensor_rows(t, 3, 1);
    ck_assert_float_eq(last.data[5], 23.0f);
    /* Outside the tensor: an empty view. */
    const int64_t bad[][2] = {{-1, 1}, {0, 0}, {3, 2}, {4, 1}, {INT64_MAX, 1}, {1, INT64_MAX}};
    for (int i = 0; i < 6; i++) {
        mc_tensor empty = mc_tensor_rows(t, bad[i][0], bad[i][1]);
        ck_assert_ptr_null(empty.data);
        ck_assert_int_eq(empty.numel, 0);
        ck_assert_int_eq(empty.shape.dim[0], 0);
    }
    mc_tensor_free(t);
}
END_TEST

START_TEST(test_rng_is_deterministic) {
    mc_rng a, b;
    mc_rng_seed(&a, 42);
    mc_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++) ck_assert_uint_eq(mc_rng_u64(&a), mc_rng_u64(&b));
    mc_rng_seed(&b, 43);
    ck_assert_uint_ne(mc_rng_u64(&a), mc_rng_u64(&b));
    /* Normal samples have roughly zero mean and unit variance. */
    double sum = 0, sum2 = 0;
    for (int i = 0; i < 20000; i++) {
        double x = mc_rng_normal(&a);
        sum += x;
        sum2 += x * x;
    }
    ck_assert_double_lt(fabs(sum / 20000), 0.03);
    ck_assert_double_lt(fabs(sum2 / 20000 - 1.0), 0.05);
    int items[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    mc_rng_shuffle(&a, items, 10);
    int seen = 0;
    for (int i = 0; i < 10; i++) seen |= 1 << items[i];
    ck_assert_int_eq(seen, 1023);
}
END_TEST

START_TEST(test_arena_reuses_memory) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 20; i++) {
            mc_tensor *t;
            MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(256, 256), "act", &t));
            ck_assert_float_eq(t->data[100], 0.0f);
            t->data[100] = 1.0f;
        }
        size_t peak = mc_graph_arena_peak_bytes(g);
        ck_assert_uint_ge(peak, 20 * 256 * 256 * sizeof(float));
        mc_graph_reset(g);
        ck_assert_uint_eq(mc_graph_arena_bytes(g), 0);
    }
    ck_assert_uint_gt(mc_peak_rss_bytes(), 0);
    mc_graph_free(g);
}
END_TEST

/* A step whose arena grows through several chunks, some given back by a
 * release (the pattern of a recomputed segment): after the reset the arena
 * keeps one chunk of the step's peak, not the chunks' total (which doubling
 * growth and the spare list make about twice the peak), and the same step
 * again fits in it. */
START_TEST(test_arena_reset_keeps_the_peak) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    size_t reserved_after_reset = 0;
    for (int step = 0; step < 3; step++) {
        mc_tensor *base, *t;
        MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(1 << 16), "base", &base));
        for (int segment = 0; segment < 3; segment++) {
            mc_graph_mark mark = mc_graph_get_mark(g);
            for (int i = 0; i < 5; i++) {
                MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE((1 << 18) * (segment + 1)), "act", &t));
                ck_assert_float_eq(t->data[t->numel - 1], 0.0f);
                t->data[t->numel - 1] = 1.0f;
            }
            MC_CHECK_OK(mc_graph_release_keep(g, mark, NULL));
        }
        const size_t step_peak = (1 << 16) * sizeof(float) + 5 * 3 * (1 << 18) * sizeof(float);
        ck_assert_uint_ge(mc_graph_arena_peak_bytes(g), step_peak);
        /* From the second step, the step fitted in the chunk kept at the
         * last reset: no chunk made, none on the spare list. */
        if (step > 0) ck_assert_uint_eq(mc_graph_arena_reserved_bytes(g), reserved_after_reset);
        mc_graph_reset(g);
        const size_t reserved = mc_graph_arena_reserved_bytes(g);
        ck_assert_uint_ge(reserved, step_peak);
        ck_assert_uint_lt(reserved, step_peak + 64 * 1024);
        if (step > 0) ck_assert_uint_eq(reserved, reserved_after_reset);
        reserved_after_reset = reserved;
    }
    mc_graph_free(g);
}
END_TEST

START_TEST(test_mark_and_release_keep) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *before, *big, *kept;
    MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(10), "before", &before));
    before->data[3] = 3.0f;
    size_t used_at_mark = mc_graph_arena_bytes(g);
    mc_graph_mark mark = mc_graph_get_mark(g);
    for (int i = 0; i < 8; i++) MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(1 << 18), "big", &big));
    MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(4, 5), "kept", &kept));
    kept->data[19] = 19.0f;
    MC_CHECK_OK(mc_graph_release_keep(g, mark, &kept));
    /* Only the kept tensor remains after the mark, with its values. */
    ck_assert_float_eq(kept->data[19], 19.0f);
    ck_assert_str_eq(kept->name, "kept");
    ck_assert_uint_lt(mc_graph_arena_bytes(g), used_at_mark + 1024);
    ck_assert_float_eq(before->data[3], 3.0f);
    ck_assert(!kept->requires_grad);
    /* A leaf marked for a gradient stays marked; one holding a gradient
     * buffer (the release would free it) is refused before any release. */
    mark = mc_graph_get_mark(g);
    MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(4), "leaf", &kept));
    MC_CHECK_OK(mc_tensor_set_requires_grad(kept, true));
    MC_CHECK_OK(mc_graph_release_keep(g, mark, &kept));
    ck_assert(kept->requires_grad);
    ck_assert_str_eq(kept->name, "leaf");
    float grad[4] = {0};
    kept->grad = grad;
    const size_t in_use = mc_graph_arena_bytes(g);
    MC_CHECK_FAILS(mc_graph_release_keep(g, mark, &kept), MC_ERR_ARG, "leaf, which holds a gradient");
    ck_assert_uint_eq(mc_graph_arena_bytes(g), in_use);
    kept->grad = NULL;
    /* With ops recorded since the mark, releasing is refused. */
    mc_tensor *w, *y;
    MC_CHECK_OK(mc_tensor_new(&w, MC_SHAPE(3), "w"));
    MC_CHECK_OK(mc_tensor_set_requires_grad(w, true));
    mark = mc_graph_get_mark(g);
    MC_CHECK_OK(mc_relu(g, w, &y));
    MC_CHECK_FAILS(mc_graph_release_keep(g, mark, NULL), MC_ERR_STATE, "recorded");
    mc_tensor_free(w);
    mc_graph_free(g);
}
END_TEST

/* The inference loop's pattern: each stage's output kept, the rest released.
 * Every value must survive wherever the new place falls: just after the
 * mark, overlapping the old place in the same chunk (small scratch before
 * it), or in a newer chunk the release gave back (large scratch). Twice:
 * with the mark taken on an empty graph (every chunk goes back to the
 * spares) and after a first tensor (the mark's chunk rewinds). */
START_TEST(test_release_keep_moves_every_value) {
    for (int first_tensor = 0; first_tensor < 2; first_tensor++) {
        mc_graph *g;
        MC_CHECK_OK(mc_graph_new(&g));
        mc_tensor *before = NULL;
        if (first_tensor) {
            MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(64), "before", &before));
            for (int64_t i = 0; i < 64; i++) before->data[i] = (float)(i + 1);
        }
        mc_graph_mark mark = mc_graph_get_mark(g);
        ck_assert(first_tensor ? mark.chunk != NULL : mark.chunk == NULL);
        mc_tensor *h = NULL;
        for (int stage = 0; stage < 8; stage++) {
            mc_tensor *scratch;
            MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(stage % 2 ? 1 << 19 : 5), "scratch", &scratch));
            const int64_t n = 3000 + 100001 * (stage % 3);
            MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(n), "h", &h));
            for (int64_t i = 0; i < n; i++) h->data[i] = (float)(i % 4093) + 0.25f * (float)stage;
            MC_CHECK_OK(mc_graph_release_keep(g, mark, &h));
            ck_assert_int_eq(h->numel, n);
            ck_assert_str_eq(h->name, "h");
            int64_t wrong = 0;
            for (int64_t i = 0; i < n; i++)
                wrong += h->data[i] != (float)(i % 4093) + 0.25f * (float)stage;
            ck_assert_int_eq(wrong, 0);
            ck_assert_uint_lt(mc_graph_arena_bytes(g), (size_t)n * sizeof(float) + 2048);
            if (before)
                for (int64_t i = 0; i < 64; i++) ck_assert_float_eq(before->data[i], (float)(i + 1));
        }
        mc_graph_free(g);
    }
}
END_TEST

START_TEST(test_backward_needs_a_recorded_loss) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *t;
    MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(1), "loss", &t));
    MC_CHECK_FAILS(mc_backward(g, t), MC_ERR_STATE, "loss");
    MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(3), "vec", &t));
    MC_CHECK_FAILS(mc_backward(g, t), MC_ERR_SHAPE, "expected one");
    /* NULL (a failed op's output passed on): an error, not a crash. */
    MC_CHECK_FAILS(mc_backward(g, NULL), MC_ERR_ARG, "the loss is NULL");
    MC_CHECK_FAILS(mc_backward_with_grad(g, t, NULL), MC_ERR_ARG, "gradient to start from is NULL");
    mc_tensor *view;
    MC_CHECK_FAILS(mc_graph_view(g, NULL, MC_SHAPE(3), &view), MC_ERR_ARG, "is NULL");
    mc_graph_free(g);
}
END_TEST

START_TEST(test_error_context) {
    mc_error(MC_ERR_IO, "cannot open %s", "a.bin");
    mc_error_context(MC_ERR_IO, "loading %s: ", "model");
    ck_assert_str_eq(mc_last_error(), "loading model: cannot open a.bin");
    ck_assert_str_eq(mc_status_name(MC_ERR_SHAPE), "MC_ERR_SHAPE");
}
END_TEST

int main(void) {
    Suite *s = suite_create("core");
    const TTest *const tests[] = {test_shape_macro_and_numel, test_shape_errors,
                                  test_heap_tensor_lifecycle, test_row_views,
                                  test_rng_is_deterministic, test_arena_reuses_memory, test_arena_reset_keeps_the_peak,
                                  test_mark_and_release_keep, test_release_keep_moves_every_value,
                                  test_backward_needs_a_recorded_loss,
                                  test_error_context, NULL};
    mc_test_add_case(s, "core", tests);
    return mc_test_run_suite(s);
}

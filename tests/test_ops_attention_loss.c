/* Attention, cross-entropy and InfoNCE: forward values against hand-derived
 * small cases and double-precision references written here, the fast
 * attention kernels against the naive ones, finite-difference gradient
 * checks, and bad input. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "../lib/ops/attention_internal.h"
#include "../lib/ops/naive.h"

/* ---- helpers ---- */

static mc_tensor *heap_tensor(mc_shape shape, const char *name, bool requires_grad, mc_rng *rng) {
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, shape, name));
    if (rng) mc_tensor_normal(t, rng, 0.0f, 1.0f);
    MC_CHECK_OK(mc_tensor_set_requires_grad(t, requires_grad));
    return t;
}

static mc_tensor *tensor_of(mc_shape shape, const char *name, const float *values) {
    mc_tensor *t = heap_tensor(shape, name, false, NULL);
    MC_CHECK_OK(mc_tensor_load(t, values, t->numel));
    return t;
}

static void free_all(mc_tensor **ts, int n) {
    for (int i = 0; i < n; i++) mc_tensor_free(ts[i]);
}

/* ==================================================================== */
/* ---- attention ---- */

typedef struct attention_case {
    int heads;
    bool causal;
} attention_case;

static mc_status attention_forward(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
    const attention_case *c = ctx;
    return mc_attention(g, in[0], in[1], in[2], c->heads, c->causal, out);
}

/* Self-attention: q = k = v = one tensor (gradients from three uses add up). */
static mc_status self_attention_forward(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
    const attention_case *c = ctx;
    return mc_attention(g, in[0], in[0], in[0], c->heads, c->causal, out);
}

/* Hand-derived: T = 2, D = 1 (one head, head_dim 1, so the scale is 1).
 * q = k = (1, 0), v = (2, 4).
 *   row 0: scores (1, 0) -> p = (e, 1) / (e + 1), o = (2e + 4) / (e + 1)
 *   row 1: scores (0, 0) -> p = (1/2, 1/2), o = 3
 * causal: row 0 sees only key 0 -> o = 2; row 1 is unchanged. */
START_TEST(test_attention_hand_case) {
    const float qk[] = {1, 0}, vv[] = {2, 4};
    mc_tensor *q = tensor_of(MC_SHAPE(1, 2, 1), "q", qk);
    mc_tensor *v = tensor_of(MC_SHAPE(1, 2, 1), "v", vv);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *out;
    const double e = exp(1.0);
    MC_CHECK_OK(mc_attention(g, q, q, v, 1, false, &out));
    const float full[] = {(float)((2 * e + 4) / (e + 1)), 3.0f};
    mc_test_assert_close("attention", out->data, full, 2, 1e-6, 1e-6);
    MC_CHECK_OK(mc_attention(g, q, q, v, 1, true, &out));
    const float causal[] = {2.0f, 3.0f};
    mc_test_assert_close("causal attention", out->data, causal, 2, 1e-6, 1e-6);
    mc_graph_free(g);
    mc_tensor_free(q);
    mc_tensor_free(v);
}
END_TEST

/* Two heads must not mix: with D = 2 and 2 heads, each column is its own
 * head_dim-1 attention; column 1 uses q = k = 0, so it averages v. */
START_TEST(test_attention_heads_are_separate) {
    const float qk[] = {1, 0, 0, 0}, vv[] = {2, 10, 4, 20};
    mc_tensor *q = tensor_of(MC_SHAPE(1, 2, 2), "q", qk);
    mc_tensor *v = tensor_of(MC_SHAPE(1, 2, 2), "v", vv);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *out;
    MC_CHECK_OK(mc_attention(g, q, q, v, 2, false, &out));
    const double e = exp(1.0);
    const float expected[] = {(float)((2 * e + 4) / (e + 1)), 15.0f, 3.0f, 15.0f};
    mc_test_assert_close("two heads", out->data, expected, 4, 1e-6, 1e-6);
    mc_graph_free(g);
    mc_tensor_free(q);
    mc_tensor_free(v);
}
END_TEST

/* The fast kernels against the naive ones, forward and backward, over
 * shapes that include head_dim not a multiple of 8 and the CLIP sizes; the
 * last two have enough work for the forward to give each thread whole batch
 * items (with our GEMM), the others run each step over all items at once. */
START_TEST(test_attention_fast_matches_naive) {
    const struct {
        int64_t b, t, heads, head_dim;
    } shapes[] = {{2, 5, 2, 4},   {1, 7, 3, 5},   {3, 1, 1, 8},
                  {2, 50, 2, 64}, {1, 77, 2, 64}, {4, 50, 4, 64}, {3, 77, 2, 64}};
    mc_rng rng;
    mc_rng_seed(&rng, 7);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int causal = 0; causal < 2; causal++) {
            mc_attention_dims d = {.batch = shapes[s].b,
                                   .seq = shapes[s].t,
                                   .width = shapes[s].heads * shapes[s].head_dim,
                                   .heads = shapes[s].heads,
                                   .head_dim = shapes[s].head_dim,
                                   .causal = causal};
            size_t n = (size_t)(d.batch * d.seq * d.width);
            size_t n_probs = (size_t)(d.batch * d.heads * d.seq * d.seq);
            float *buf = calloc(12 * n + 3 * n_probs, sizeof(float));
            ck_assert_ptr_nonnull(buf);
            float *q = buf, *k = q + n, *v = k + n, *dout = v + n;
            float *out_fast = dout + n, *out_naive = out_fast + n;
            float *dq_fast = out_naive + n, *dk_fast = dq_fast + n, *dv_fast = dk_fast + n;
            float *dq_naive = dv_fast + n, *dk_naive = dq_naive + n, *dv_naive = dk_naive + n;
            float *p_fast = dv_naive + n, *p_naive = p_fast + n_probs, *scratch = p_naive + n_probs;
            for (size_t i = 0; i < 4 * n; i++) buf[i] = (float)mc_rng_normal(&rng);
            mc_attention_forward_fast(&d, q, k, v, out_fast, p_fast, d.batch);
            mc_attention_forward_naive(&d, q, k, v, out_naive, p_naive);
            mc_test_assert_close("attention forward fast vs naive", out_fast, out_naive, (long)n,
                                 1e-4, 1e-5);
            mc_test_assert_close("attention probs fast vs naive", p_fast, p_naive, (long)n_probs,
                                 1e-4, 1e-6);
            /* The per-item path (each thread whole items) and the step path
             * (each step over all items, taken with more threads than
             * items) give the same bits: splitting a product over heads or
             * items leaves each sum's order as it is. */
            {
                const int threads = mc_get_num_threads();
                mc_set_num_threads((int)d.batch + 1);
                mc_attention_forward_fast(&d, q, k, v, dq_fast, scratch, d.batch);
                mc_set_num_threads(threads);
                ck_assert_msg(memcmp(dq_fast, out_fast, n * sizeof(float)) == 0,
                              "attention forward: step path differs from per-item path");
                ck_assert_msg(memcmp(scratch, p_fast, n_probs * sizeof(float)) == 0,
                              "attention probs: step path differs from per-item path");
                memset(dq_fast, 0, n * sizeof(float));
            }
            /* inference's chunks: probabilities of two items at a time, reused */
            if (d.batch > 2) {
                mc_attention_forward_fast(&d, q, k, v, dq_fast, scratch, 2);
                mc_test_assert_close("attention forward in chunks of 2 vs naive", dq_fast,
                                     out_naive, (long)n, 1e-4, 1e-5);
                memset(dq_fast, 0, n * sizeof(float));
            }
            /* a scratch of one item forces the chunked path */
            mc_attention_backward_fast(&d, q, k, v, p_fast, dout, dq_fast, dk_fast, dv_fast,
                                       scratch, 1);
            mc_attention_backward_naive(&d, q, k, v, p_naive, dout, dq_naive, dk_naive, dv_naive);
            mc_test_assert_close("attention dq fast vs naive", dq_fast, dq_naive, (long)n, 1e-3,
                                 1e-4);
            mc_test_assert_close("attention dk fast vs naive", dk_fast, dk_naive, (long)n, 1e-3,
                                 1e-4);
            mc_test_assert_close("attention dv fast vs naive", dv_fast, dv_naive, (long)n, 1e-3,
                                 1e-4);
            free(buf);
        }
}
END_TEST

static void gradcheck_attention(bool causal) {
    mc_rng rng;
    mc_rng_seed(&rng, causal ? 11 : 12);
    /* B=2, T=4, D=6 with 2 heads (head_dim 3, odd). */
    mc_tensor *in[3] = {heap_tensor(MC_SHAPE(2, 4, 6), "q", true, &rng),
                        heap_tensor(MC_SHAPE(2, 4, 6), "k", true, &rng),
                        heap_tensor(MC_SHAPE(2, 4, 6), "v", true, &rng)};
    attention_case c = {.heads = 2, .causal = causal};
    mc_assert_gradcheck(causal ? "attention causal" : "attention", 3, in, attention_forward, &c,
                        NULL);
    /* Only v trainable: q and k get no gradient, v's is still right. */
    mc_tensor_set_requires_grad(in[0], false);
    mc_tensor_set_requires_grad(in[1], false);
    mc_assert_gradcheck("attention, v only", 3, in, attention_forward, &c, NULL);
    free_all(in, 3);
}

START_TEST(test_attention_gradcheck) { gradcheck_attention(false); }
END_TEST

START_TEST(test_attention_causal_gradcheck) { gradcheck_attention(true); }
END_TEST

START_TEST(test_self_attention_gradcheck) {
    mc_rng rng;
    mc_rng_seed(&rng, 13);
    mc_tensor *x = heap_tensor(MC_SHAPE(1, 5, 4), "x", true, &rng);
    attention_case c = {.heads = 2, .causal = true};
    mc_assert_gradcheck("self attention", 1, &x, self_attention_forward, &c, NULL);
    mc_tensor_free(x);
}
END_TEST

/* Without a tape the op keeps one batch item's probabilities instead of
 * all of them; the output must be the same. */
START_TEST(test_attention_no_grad_matches) {
    mc_rng rng;
    mc_rng_seed(&rng, 14);
    mc_tensor *q = heap_tensor(MC_SHAPE(3, 9, 8), "q", true, &rng);
    mc_tensor *k = heap_tensor(MC_SHAPE(3, 9, 8), "k", false, &rng);
    mc_tensor *v = heap_tensor(MC_SHAPE(3, 9, 8), "v", false, &rng);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *with_tape, *without;
    MC_CHECK_OK(mc_attention(g, q, k, v, 2, true, &with_tape));
    ck_assert_int_eq(mc_graph_tape_length(g), 1);
    mc_graph_set_grad_enabled(g, false);
    MC_CHECK_OK(mc_attention(g, q, k, v, 2, true, &without));
    ck_assert_int_eq(mc_graph_tape_length(g), 1);
    ck_assert(!without->requires_grad);
    mc_test_assert_close("no-grad attention", without->data, with_tape->data, (long)q->numel, 0,
                         1e-12);
    mc_graph_free(g);
    mc_tensor_free(q);
    mc_tensor_free(k);
    mc_tensor_free(v);
}
END_TEST

START_TEST(test_attention_bad_input) {
    mc_tensor *q = heap_tensor(MC_SHAPE(2, 4, 6), "q", false, NULL);
    mc_tensor *k = heap_tensor(MC_SHAPE(2, 5, 6), "k", false, NULL);
    mc_tensor *flat = heap_tensor(MC_SHAPE(4, 6), "flat", false, NULL);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *out = (mc_tensor *)0x1;
    MC_CHECK_FAILS(mc_attention(g, q, k, q, 2, false, &out), MC_ERR_SHAPE,
                   "k is k (2, 5, 6), but q is q (2, 4, 6)");
    ck_assert_ptr_null(out);
    MC_CHECK_FAILS(mc_attention(g, q, q, k, 2, false, &out), MC_ERR_SHAPE, "v is k (2, 5, 6)");
    MC_CHECK_FAILS(mc_attention(g, q, q, q, 4, false, &out), MC_ERR_ARG,
                   "n_heads 4 does not divide");
    MC_CHECK_FAILS(mc_attention(g, q, q, q, 0, false, &out), MC_ERR_ARG, "n_heads 0");
    MC_CHECK_FAILS(mc_attention(g, flat, flat, flat, 1, false, &out), MC_ERR_SHAPE, "3-D");
    MC_CHECK_FAILS(mc_attention(g, q, NULL, q, 1, false, &out), MC_ERR_ARG, "NULL");
    mc_graph_free(g);
    mc_tensor_free(q);
    mc_tensor_free(k);
    mc_tensor_free(flat);
}
END_TEST

/* ==================================================================== */
/* ---- cross-entropy ---- */

typedef struct ce_case {
    const int32_t *targets;
    float smoothing;
} ce_case;

static mc_status ce_forward(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
    const ce_case *c = ctx;
    return mc_cross_entropy(g, in[0], c->targets, c->smoothing, out);
}

/* The definition in double: mean over rows of -sum_c q_c log softmax(x)_c
 * with q = (1 - s) onehot + s / C. */
static double reference_cross_entropy(const float *x, int rows, int classes, const int32_t *targets,
                                      double s) {
    double total = 0.0;
    for (int i = 0; i < rows; i++) {
        double denominator = 0.0;
        for (int c = 0; c < classes; c++) denominator += exp((double)x[i * classes + c]);
        for (int c = 0; c < classes; c++) {
            double q = (c == targets[i] ? 1.0 - s : 0.0) + s / classes;
            total -= q * log(exp((double)x[i * classes + c]) / denominator);
        }
    }
    return total / rows;
}

/* Hand-derived:
 *   logits (0, 0, 0), target 0: loss = log 3 (uniform over three classes);
 *   logits (1, 0), target 0, s = 0.3: q = (0.85, 0.15),
 *     loss = log(1 + e) - 0.85 * 1 - 0.15 * 0 = log(1 + e) - 0.85. */
START_TEST(test_cross_entropy_hand_cases) {
    const float zeros[3] = {0, 0, 0}, two[2] = {1, 0};
    const int32_t target = 0;
    mc_tensor *x3 = tensor_of(MC_SHAPE(1, 3), "logits", zeros);
    mc_tensor *x2 = tensor_of(MC_SHAPE(1, 2), "logits", two);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *loss;
    MC_CHECK_OK(mc_cross_entropy(g, x3, &target, 0.0f, &loss));
    ck_assert_int_eq(loss->numel, 1);
    ck_assert_double_eq_tol(loss->data[0], log(3.0), 1e-6);
    MC_CHECK_OK(mc_cross_entropy(g, x2, &target, 0.3f, &loss));
    ck_assert_double_eq_tol(loss->data[0], log(1.0 + exp(1.0)) - 0.85, 1e-6);
    mc_graph_free(g);
    mc_tensor_free(x3);
    mc_tensor_free(x2);
}
END_TEST

START_TEST(test_cross_entropy_matches_reference) {
    mc_rng rng;
    mc_rng_seed(&rng, 21);
    const int32_t targets[6] = {0, 4, 2, 2, 1, 3};
    mc_tensor *x = heap_tensor(MC_SHAPE(6, 5), "logits", false, &rng);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] *= 4.0f; /* confident rows too */
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    const float smoothings[] = {0.0f, 0.1f, 1.0f};
    for (int s = 0; s < 3; s++) {
        mc_tensor *loss;
        MC_CHECK_OK(mc_cross_entropy(g, x, targets, smoothings[s], &loss));
        double expected = reference_cross_entropy(x->data, 6, 5, targets, smoothings[s]);
        ck_assert_double_eq_tol(loss->data[0], expected, 1e-5 * fmax(1.0, fabs(expected)));
    }
    mc_graph_free(g);
    mc_tensor_free(x);
}
END_TEST

START_TEST(test_cross_entropy_gradcheck) {
    mc_rng rng;
    mc_rng_seed(&rng, 22);
    const int32_t targets[4] = {2, 0, 6, 3};
    mc_tensor *x = heap_tensor(MC_SHAPE(4, 7), "logits", true, &rng);
    ce_case plain = {targets, 0.0f}, smooth = {targets, 0.2f};
    mc_assert_gradcheck("cross_entropy", 1, &x, ce_forward, &plain, NULL);
    mc_assert_gradcheck("cross_entropy smoothed", 1, &x, ce_forward, &smooth, NULL);
    mc_tensor_free(x);
}
END_TEST

START_TEST(test_cross_entropy_bad_input) {
    mc_tensor *x = heap_tensor(MC_SHAPE(2, 3), "logits", false, NULL);
    mc_tensor *x3d = heap_tensor(MC_SHAPE(2, 3, 1), "cube", false, NULL);
    const int32_t good[2] = {0, 2}, too_big[2] = {0, 3}, negative[2] = {-1, 0};
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *loss;
    MC_CHECK_FAILS(mc_cross_entropy(g, x, too_big, 0.0f, &loss), MC_ERR_ARG, "targets[1] is 3");
    MC_CHECK_FAILS(mc_cross_entropy(g, x, negative, 0.0f, &loss), MC_ERR_ARG, "targets[0] is -1");
    MC_CHECK_FAILS(mc_cross_entropy(g, x, good, 1.5f, &loss), MC_ERR_ARG, "label_smoothing");
    MC_CHECK_FAILS(mc_cross_entropy(g, x3d, good, 0.0f, &loss), MC_ERR_SHAPE, "cube (2, 3, 1)");
    MC_CHECK_FAILS(mc_cross_entropy(g, x, NULL, 0.0f, &loss), MC_ERR_ARG, "NULL");
    mc_graph_free(g);
    mc_tensor_free(x);
    mc_tensor_free(x3d);
}
END_TEST

/* ==================================================================== */
/* ---- InfoNCE ---- */

static mc_status infonce_one_way(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
    (void)ctx;
    return mc_infonce(g, in[0], in[1], in[2], false, out);
}

static mc_status infonce_symmetric(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
    (void)ctx;
    return mc_infonce(g, in[0], in[1], in[2], true, out);
}

/* The definition in double, written out independently of loss.c. */
static double reference_infonce(const float *a, const float *b, int n, int dim, double t,
                                bool symmetric) {
    double logits[16][16];
    ck_assert_int_le(n, 16);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double dot = 0, na = 0, nb = 0;
            for (int c = 0; c < dim; c++) {
                dot += (double)a[i * dim + c] * b[j * dim + c];
                na += (double)a[i * dim + c] * a[i * dim + c];
                nb += (double)b[j * dim + c] * b[j * dim + c];
            }
            logits[i][j] = exp(t) * dot / (sqrt(na) * sqrt(nb));
        }
    double rows = 0, cols = 0;
    for (int i = 0; i < n; i++) {
        double row_sum = 0, col_sum = 0;
        for (int j = 0; j < n; j++) {
            row_sum += exp(logits[i][j]);
            col_sum += exp(logits[j][i]);
        }
        rows += -log(exp(logits[i][i]) / row_sum);
        cols += -log(exp(logits[i][i]) / col_sum);
    }
    return symmetric ? (rows + cols) / (2.0 * n) : rows / n;
}

/* Hand-derived: a = ((1, 0), (0, 1)), b = ((1, 0), (5, 0)) -> the unit rows
 * of b are both (1, 0), so with scale s = exp(t) the logits are
 * ((s, s), (0, 0)).
 *   rows: each row is two equal logits -> log 2 each; one-way loss = log 2.
 *   columns: col 0 = (s, 0), its diagonal s -> log(1 + e^-s);
 *            col 1 = (s, 0), its diagonal 0 -> log(e^s + 1).
 *   symmetric = (2 log 2 + log(1 + e^-s) + log(1 + e^s)) / 4.
 * With t = 0 (s = 1) and t = log 2 (s = 2). */
START_TEST(test_infonce_hand_case) {
    const float av[] = {1, 0, 0, 1}, bv[] = {1, 0, 5, 0};
    mc_tensor *a = tensor_of(MC_SHAPE(2, 2), "a", av);
    mc_tensor *b = tensor_of(MC_SHAPE(2, 2), "b", bv);
    mc_tensor *t = heap_tensor(MC_SHAPE(1), "t", false, NULL);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    for (int k = 0; k < 2; k++) {
        double s = k == 0 ? 1.0 : 2.0;
        t->data[0] = (float)log(s);
        mc_tensor *loss;
        MC_CHECK_OK(mc_infonce(g, a, b, t, false, &loss));
        ck_assert_double_eq_tol(loss->data[0], log(2.0), 1e-6);
        MC_CHECK_OK(mc_infonce(g, a, b, t, true, &loss));
        double expected = (2 * log(2.0) + log(1 + exp(-s)) + log(1 + exp(s))) / 4.0;
        ck_assert_double_eq_tol(loss->data[0], expected, 1e-6);
    }
    mc_graph_free(g);
    free_all((mc_tensor *[]){a, b, t}, 3);
}
END_TEST

START_TEST(test_infonce_matches_reference) {
    mc_rng rng;
    mc_rng_seed(&rng, 31);
    mc_tensor *a = heap_tensor(MC_SHAPE(7, 5), "a", false, &rng);
    mc_tensor *b = heap_tensor(MC_SHAPE(7, 5), "b", false, &rng);
    mc_tensor *t = heap_tensor(MC_SHAPE(1), "t", false, NULL);
    t->data[0] = (float)log(1.0 / 0.07); /* CLIP's initial temperature */
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    for (int symmetric = 0; symmetric < 2; symmetric++) {
        mc_tensor *loss;
        MC_CHECK_OK(mc_infonce(g, a, b, t, symmetric, &loss));
        double expected = reference_infonce(a->data, b->data, 7, 5, t->data[0], symmetric);
        ck_assert_double_eq_tol(loss->data[0], expected, 1e-4 * fmax(1.0, expected));
    }
    mc_graph_free(g);
    free_all((mc_tensor *[]){a, b, t}, 3);
}
END_TEST

static void gradcheck_infonce(bool symmetric, bool learnable_t) {
    mc_rng rng;
    mc_rng_seed(&rng, 40 + 2 * symmetric + learnable_t);
    mc_tensor *in[3] = {heap_tensor(MC_SHAPE(5, 4), "a", true, &rng),
                        heap_tensor(MC_SHAPE(5, 4), "b", true, &rng),
                        heap_tensor(MC_SHAPE(1), "t", learnable_t, NULL)};
    in[2]->data[0] = 0.7f;
    char name[64];
    snprintf(name, sizeof name, "infonce %s, t %s", symmetric ? "symmetric" : "one-way",
             learnable_t ? "learnable" : "fixed");
    /* eps 1e-3: the loss is smooth and of order 1, so a small step keeps the
     * central difference's truncation error below the tolerance. */
    mc_gradcheck_options options = {.eps = 1e-3, .rtol = 2e-2, .atol = 2e-3};
    mc_assert_gradcheck(name, 3, in, symmetric ? infonce_symmetric : infonce_one_way, NULL,
                        &options);
    free_all(in, 3);
}

START_TEST(test_infonce_gradcheck_one_way_fixed) { gradcheck_infonce(false, false); }
END_TEST
START_TEST(test_infonce_gradcheck_one_way_learnable) { gradcheck_infonce(false, true); }
END_TEST
START_TEST(test_infonce_gradcheck_symmetric_fixed) { gradcheck_infonce(true, false); }
END_TEST
START_TEST(test_infonce_gradcheck_symmetric_learnable) { gradcheck_infonce(true, true); }
END_TEST

/* Only the temperature learns (both towers frozen): t still gets its gradient.
 * From the hand case: one-way loss is log 2 whatever t is, so dL/dt = 0;
 * symmetric: dL/ds = (-e^-s/(1+e^-s) + e^s/(1+e^s)) / 4 and dL/dt = s dL/ds. */
START_TEST(test_infonce_temperature_gradient_by_hand) {
    const float av[] = {1, 0, 0, 1}, bv[] = {1, 0, 5, 0};
    mc_tensor *a = tensor_of(MC_SHAPE(2, 2), "a", av);
    mc_tensor *b = tensor_of(MC_SHAPE(2, 2), "b", bv);
    mc_tensor *t = heap_tensor(MC_SHAPE(1), "t", true, NULL);
    const double s = 2.0;
    t->data[0] = (float)log(s);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *loss;
    MC_CHECK_OK(mc_infonce(g, a, b, t, false, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    ck_assert_double_eq_tol(t->grad[0], 0.0, 1e-6);
    mc_graph_reset(g);
    mc_tensor_zero_grad(t);
    MC_CHECK_OK(mc_infonce(g, a, b, t, true, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    double dlds = (-exp(-s) / (1 + exp(-s)) + exp(s) / (1 + exp(s))) / 4.0;
    ck_assert_double_eq_tol(t->grad[0], s * dlds, 1e-6);
    mc_graph_free(g);
    free_all((mc_tensor *[]){a, b, t}, 3);
}
END_TEST

START_TEST(test_infonce_bad_input) {
    mc_tensor *a = heap_tensor(MC_SHAPE(4, 3), "img", false, NULL);
    mc_tensor *b = heap_tensor(MC_SHAPE(5, 3), "txt", false, NULL);
    mc_tensor *cube = heap_tensor(MC_SHAPE(4, 3, 1), "cube", false, NULL);
    mc_tensor *t2 = heap_tensor(MC_SHAPE(2), "logit_scale", false, NULL);
    mc_tensor *t = heap_tensor(MC_SHAPE(1), "t", false, NULL);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *loss;
    MC_CHECK_FAILS(mc_infonce(g, a, b, t, false, &loss), MC_ERR_SHAPE, "txt (5, 3)");
    MC_CHECK_FAILS(mc_infonce(g, cube, cube, t, false, &loss), MC_ERR_SHAPE, "2-D");
    MC_CHECK_FAILS(mc_infonce(g, a, a, t2, true, &loss), MC_ERR_SHAPE, "logit_scale (2)");
    MC_CHECK_FAILS(mc_infonce(g, a, a, NULL, true, &loss), MC_ERR_ARG, "NULL");
    t->data[0] = 1000.0f;
    MC_CHECK_FAILS(mc_infonce(g, a, a, t, true, &loss), MC_ERR_NUMERIC, "not finite");
    mc_graph_free(g);
    free_all((mc_tensor *[]){a, b, cube, t2, t}, 5);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops_attention_loss");
    const TTest *const attention[] = {test_attention_hand_case, test_attention_heads_are_separate,
                                      test_attention_fast_matches_naive, test_attention_gradcheck,
                                      test_attention_causal_gradcheck, test_self_attention_gradcheck,
                                      test_attention_no_grad_matches, test_attention_bad_input, NULL};
    tcase_set_timeout(mc_test_add_case(s, "attention", attention), 60);
    const TTest *const ce[] = {test_cross_entropy_hand_cases, test_cross_entropy_matches_reference,
                               test_cross_entropy_gradcheck, test_cross_entropy_bad_input, NULL};
    mc_test_add_case(s, "cross_entropy", ce);
    const TTest *const infonce[] = {test_infonce_hand_case, test_infonce_matches_reference,
                                    test_infonce_gradcheck_one_way_fixed,
                                    test_infonce_gradcheck_one_way_learnable,
                                    test_infonce_gradcheck_symmetric_fixed,
                                    test_infonce_gradcheck_symmetric_learnable,
                                    test_infonce_temperature_gradient_by_hand,
                                    test_infonce_bad_input, NULL};
    mc_test_add_case(s, "infonce", infonce);
    return mc_test_run_suite(s);
}

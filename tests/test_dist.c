/* The distributed layer (lib/dist, dist.h) for any number of ranks.
 *
 * ctest runs this program as one process (a world of one: every collective
 * is a copy); tests/script_dist_mpi.sh runs it again under `mpirun -np 2`
 * and `-np 3` when the library has MPI. Every expected value is computed
 * here from the formula that made each rank's data, never through the
 * module: the sums over ranks in rank order, in double, rounded once (the
 * order the module promises, so those comparisons are exact), and a
 * data-parallel step against the same step taken by this process alone on
 * the whole batch, and the validation metrics against the one-process
 * evaluation. Sizes are odd and not divisible by the world size. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmchain/chain.h"
#include "mmchain/dist.h"

#include "../lib/dist/comm.h"

static int rank_, world_;

/* The value rank k holds at index i: different on every rank, not
 * representable exactly in a few bits, so that the order of a sum shows. */
static float value_of(int k, int64_t i) {
    return (float)((double)((i * 7919 + k * 104729) % 1009) * 0.0137 - 6.5 + 1e-3 / (k + 1.3));
}

/* The sum over ranks of value_of(., i) in rank order, in double. */
static double rank_order_sum(int64_t i) {
    double sum = 0.0;
    for (int k = 0; k < world_; k++) sum += value_of(k, i);
    return sum;
}

/* ---------------------------------------------------------------------------
 * the world and the slices
 * ------------------------------------------------------------------------- */

START_TEST(test_world) {
    ck_assert_int_ge(world_, 1);
    ck_assert_int_ge(rank_, 0);
    ck_assert_int_lt(rank_, world_);
    if (!mc_dist_built_with_mpi()) ck_assert_int_eq(world_, 1);
    MC_CHECK_OK(mc_dist_barrier());
}
END_TEST

START_TEST(test_slices_cover_the_batch) {
    int64_t start, count;
    mc_dist_slice(33, 0, 2, &start, &count);
    ck_assert(start == 0 && count == 17);
    mc_dist_slice(33, 1, 2, &start, &count);
    ck_assert(start == 17 && count == 16);
    for (int world = 1; world <= 5; world++)
        for (int64_t n = 0; n <= 23; n++) {
            int64_t next = 0, largest = 0, smallest = n;
            for (int r = 0; r < world; r++) {
                mc_dist_slice(n, r, world, &start, &count);
                ck_assert_msg(start == next, "n %lld world %d rank %d starts at %lld", (long long)n,
                              world, r, (long long)start);
                if (r > 0) ck_assert_msg(count <= largest, "earlier ranks take the extra items");
                next += count;
                largest = count > largest ? count : largest;
                smallest = count < smallest ? count : smallest;
            }
            ck_assert_int_eq(next, n);
            ck_assert_int_le(largest - smallest, 1);
        }
}
END_TEST

/* ---------------------------------------------------------------------------
 * collectives on buffers
 * ------------------------------------------------------------------------- */

/* Sizes: empty, one, fewer than the ranks, odd, and more than one exchange
 * round (the module cuts buffers into rounds of 4 Mi elements). */
static const int64_t sizes[] = {0, 1, 2, 7, 1001, (1 << 22) + 5};

START_TEST(test_allreduce_floats_in_rank_order) {
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        float *sum = malloc((size_t)(n + 1) * sizeof *sum), *avg = malloc((size_t)(n + 1) * sizeof *avg);
        ck_assert(sum && avg);
        for (int64_t i = 0; i < n; i++) sum[i] = avg[i] = value_of(rank_, i);
        MC_CHECK_OK(mc_dist_allreduce_floats(sum, n, MC_DIST_SUM));
        MC_CHECK_OK(mc_dist_allreduce_floats(avg, n, MC_DIST_AVERAGE));
        int64_t wrong = 0;
        for (int64_t i = 0; i < n; i++) {
            double total = rank_order_sum(i);
            if (sum[i] != (float)total || avg[i] != (float)(total / world_)) wrong++;
        }
        ck_assert_msg(wrong == 0, "%lld of %lld sums differ from the rank-order sum", (long long)wrong,
                      (long long)n);
        free(sum);
        free(avg);
    }
}
END_TEST

START_TEST(test_allreduce_doubles_in_rank_order) {
    const int64_t n = 333;
    double values[333];
    for (int64_t i = 0; i < n; i++) values[i] = value_of(rank_, i) * (1.0 + 1e-12 * i);
    MC_CHECK_OK(mc_dist_allreduce_doubles(values, n, MC_DIST_SUM));
    for (int64_t i = 0; i < n; i++) {
        double expected = 0.0;
        for (int k = 0; k < world_; k++) expected += value_of(k, i) * (1.0 + 1e-12 * i);
        ck_assert_msg(values[i] == expected, "element %lld: %.17g, expected %.17g", (long long)i,
                      values[i], expected);
    }
}
END_TEST

START_TEST(test_broadcast) {
    float data[37];
    for (int i = 0; i < 37; i++) data[i] = rank_ == 0 ? value_of(0, i) : -1.0f;
    MC_CHECK_OK(mc_dist_broadcast_floats(data, 37, 0));
    for (int i = 0; i < 37; i++) ck_assert_float_eq(data[i], value_of(0, i));

    /* A parameter list: every tensor, buffers included, becomes rank 0's. */
    mc_param_list params = {0};
    mc_tensor *w, *b, *running;
    MC_CHECK_OK(mc_params_new(&params, &w, MC_SHAPE(5, 3), true, "w"));
    MC_CHECK_OK(mc_params_new(&params, &b, MC_SHAPE(5), true, "b"));
    MC_CHECK_OK(mc_params_new(&params, &running, MC_SHAPE(5), false, "running_mean"));
    for (int p = 0; p < params.count; p++)
        for (int64_t i = 0; i < params.items[p]->numel; i++) params.items[p]->data[i] = value_of(rank_, 100 * p + i);
    MC_CHECK_OK(mc_dist_broadcast_params(&params));
    for (int p = 0; p < params.count; p++)
        for (int64_t i = 0; i < params.items[p]->numel; i++)
            ck_assert_float_eq(params.items[p]->data[i], value_of(0, 100 * p + i));
    mc_params_free(&params);
}
END_TEST

START_TEST(test_broadcast_params_refuses_different_models) {
    if (world_ == 1) return; /* one process cannot disagree with itself */
    mc_param_list params = {0};
    mc_tensor *w;
    /* The last rank's tensor has another size: every rank must say so (a
     * rank that went on would wait forever for the others). */
    MC_CHECK_OK(mc_params_new(&params, &w, MC_SHAPE(rank_ == world_ - 1 ? 4 : 5), true, "w"));
    MC_CHECK_FAILS(mc_dist_broadcast_params(&params), MC_ERR_STATE, "differs from rank 0");
    mc_params_free(&params);
}
END_TEST

START_TEST(test_check_params_agree) {
    mc_param_list params = {0};
    mc_tensor *w, *running;
    MC_CHECK_OK(mc_params_new(&params, &w, MC_SHAPE(9), true, "w"));
    MC_CHECK_OK(mc_params_new(&params, &running, MC_SHAPE(3), false, "running_mean"));
    for (int64_t i = 0; i < w->numel; i++) w->data[i] = value_of(0, i);
    running->data[0] = (float)rank_; /* buffers may differ (per-rank batch norm) */
    MC_CHECK_OK(mc_dist_check_params_agree(&params, "after epoch 1"));
    if (world_ > 1) {
        /* One bit of one weight on the last rank: every rank says so. */
        if (rank_ == world_ - 1) w->data[4] = nextafterf(w->data[4], 10.0f);
        MC_CHECK_FAILS(mc_dist_check_params_agree(&params, "after epoch 2"), MC_ERR_NUMERIC,
                       "after epoch 2: the weights of 1 rank(s)");
    }
    mc_params_free(&params);
}
END_TEST

/* Rank k's rows: an odd number, none at all on rank 1. */
static int64_t rows_of(int k) { return k == 1 ? 0 : 2 * k + 3; }

START_TEST(test_allgather_rows) {
    const int64_t row_len = 3;
    int64_t mine = rows_of(rank_), counts[16], total;
    MC_CHECK_OK(mc_dist_allgather_counts(mine, counts, &total));
    int64_t expected_total = 0;
    for (int k = 0; k < world_; k++) {
        ck_assert_int_eq(counts[k], rows_of(k));
        expected_total += rows_of(k);
    }
    ck_assert_int_eq(total, expected_total);
    float local[64], global[512];
    for (int64_t i = 0; i < mine * row_len; i++) local[i] = value_of(rank_, i);
    MC_CHECK_FAILS(mc_dist_allgather_rows(local, mine, row_len, counts, NULL), MC_ERR_ARG,
                   "no buffer for the rows");
    MC_CHECK_OK(mc_dist_allgather_rows(local, mine, row_len, counts, global));
    int64_t at = 0;
    for (int k = 0; k < world_; k++)
        for (int64_t i = 0; i < rows_of(k) * row_len; i++) ck_assert_float_eq(global[at++], value_of(k, i));
}
END_TEST

/* MPI's counts are int: a transfer is counted in the largest power-of-two
 * unit dividing its sizes and offsets, not in bytes. With the count held
 * to the total row count for the test, rows of 16 floats (64 bytes) still
 * pass, counted in rows or larger units (no count or offset exceeds the
 * total); in bytes, every offset past the first rank's is 64 times as
 * large. Rows of 3 floats (a unit of 4 bytes: 3 units a row) are refused
 * on every rank alike. */
START_TEST(test_transfers_counted_in_units) {
    int64_t mine = rows_of(rank_), counts[16], total;
    MC_CHECK_OK(mc_dist_allgather_counts(mine, counts, &total));
    mc_comm_limit_count_for_testing((int)total);
    float local[16 * 16], global[16 * 16 * 16];
    for (int64_t i = 0; i < mine * 16; i++) local[i] = value_of(rank_, i);
    MC_CHECK_OK(mc_dist_allgather_rows(local, mine, 16, counts, global));
    int64_t at = 0;
    for (int k = 0; k < world_; k++)
        for (int64_t i = 0; i < rows_of(k) * 16; i++) ck_assert_float_eq(global[at++], value_of(k, i));
    if (mc_dist_built_with_mpi() && world_ > 1)
        MC_CHECK_FAILS(mc_dist_allgather_rows(local, mine, 3, counts, global), MC_ERR_UNSUPPORTED,
                       "units of 4 bytes");
    mc_comm_limit_count_for_testing(0);
}
END_TEST

START_TEST(test_reduce_scatter_rows) {
    const int64_t row_len = 5;
    int64_t counts[16], total = 0, offset = 0;
    for (int k = 0; k < world_; k++) {
        counts[k] = rows_of(k);
        if (k < rank_) offset += counts[k];
        total += counts[k];
    }
    float *global = malloc((size_t)(total * row_len) * sizeof *global), local[64];
    ck_assert_ptr_nonnull(global);
    for (int64_t i = 0; i < total * row_len; i++) global[i] = value_of(rank_, i);
    MC_CHECK_OK(mc_dist_reduce_scatter_rows(global, row_len, counts, local));
    for (int64_t i = 0; i < counts[rank_] * row_len; i++)
        ck_assert_float_eq(local[i], (float)rank_order_sum(offset * row_len + i));
    free(global);
}
END_TEST

START_TEST(test_average_gradients) {
    mc_param_list params = {0};
    mc_tensor *w, *frozen, *untouched;
    MC_CHECK_OK(mc_params_new(&params, &w, MC_SHAPE(7, 3), true, "w"));
    MC_CHECK_OK(mc_params_new(&params, &frozen, MC_SHAPE(4), false, "running_var"));
    MC_CHECK_OK(mc_params_new(&params, &untouched, MC_SHAPE(2), true, "never_reached"));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    float *grad;
    MC_CHECK_OK(mc_grad_buffer(g, w, &grad));
    for (int64_t i = 0; i < w->numel; i++) grad[i] = value_of(rank_, i);
    MC_CHECK_OK(mc_dist_average_gradients(g, &params));
    for (int64_t i = 0; i < w->numel; i++) ck_assert_float_eq(w->grad[i], (float)(rank_order_sum(i) / world_));
    ck_assert_ptr_null(frozen->grad); /* buffers take no part */
    if (untouched->grad)
        for (int64_t i = 0; i < untouched->numel; i++) ck_assert_float_eq(untouched->grad[i], 0.0f);
    mc_graph_free(g);
    mc_params_free(&params);
}
END_TEST

/* ---------------------------------------------------------------------------
 * all-gather with gradient
 * ------------------------------------------------------------------------- */

START_TEST(test_all_gather_op_gradient) {
    const int64_t row_len = 4, mine = rows_of(rank_);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *local, *gathered;
    MC_CHECK_OK(mc_tensor_new(&local, MC_SHAPE(mine > 0 ? mine : 1, row_len), "local"));
    mc_tensor local_view = *local; /* rank 1 holds zero rows */
    local_view.shape.dim[0] = mine;
    local_view.numel = mine * row_len;
    for (int64_t i = 0; i < local_view.numel; i++) local->data[i] = value_of(rank_, i);
    MC_CHECK_OK(mc_tensor_set_requires_grad(local, true));
    local_view.requires_grad = true;
    MC_CHECK_OK(mc_dist_all_gather_op(g, &local_view, &gathered));
    int64_t total = 0, offset = 0;
    for (int k = 0; k < world_; k++) {
        if (k < rank_) offset += rows_of(k);
        total += rows_of(k);
    }
    ck_assert_int_eq(gathered->shape.dim[0], total);
    ck_assert_int_eq(gathered->shape.dim[1], row_len);
    /* The gradient each rank's loss sends into the gathered rows differs by
     * rank: local's gradient is the sum over ranks of its own rows. */
    float *upstream = malloc((size_t)(total * row_len) * sizeof *upstream);
    ck_assert_ptr_nonnull(upstream);
    for (int64_t i = 0; i < total * row_len; i++) upstream[i] = value_of(rank_, i);
    MC_CHECK_OK(mc_backward_with_grad(g, gathered, upstream));
    if (mine > 0) {
        ck_assert_ptr_nonnull(local_view.grad);
        for (int64_t i = 0; i < mine * row_len; i++)
            ck_assert_float_eq(local_view.grad[i], (float)rank_order_sum(offset * row_len + i));
    }
    free(local_view.grad);
    free(upstream);
    mc_tensor_free(local);
    mc_graph_free(g);
}
END_TEST

/* ---------------------------------------------------------------------------
 * a data-parallel step equals the one-process step
 * ------------------------------------------------------------------------- */

enum { N = 13, HW = 3, C = 4, E = 6 };

/* A small model: batch norm (+ relu) over NHWC, flatten, linear to E, then
 * InfoNCE against fixed targets, with a learnable temperature. */
typedef struct tiny_model {
    mc_param_list params; /* bn.weight, bn.bias, fc.weight, fc.bias, logit_scale, running stats */
    mc_tensor *bn_w, *bn_b, *mean, *var, *fc_w, *fc_b, *scale;
} tiny_model;

static void tiny_model_new(tiny_model *m) {
    *m = (tiny_model){0};
    mc_rng rng;
    mc_rng_seed(&rng, 42);
    MC_CHECK_OK(mc_params_new(&m->params, &m->bn_w, MC_SHAPE(C), true, "bn.weight"));
    MC_CHECK_OK(mc_params_new(&m->params, &m->bn_b, MC_SHAPE(C), true, "bn.bias"));
    MC_CHECK_OK(mc_params_new(&m->params, &m->mean, MC_SHAPE(C), false, "bn.running_mean"));
    MC_CHECK_OK(mc_params_new(&m->params, &m->var, MC_SHAPE(C), false, "bn.running_var"));
    MC_CHECK_OK(mc_params_new(&m->params, &m->fc_w, MC_SHAPE(E, HW * HW * C), true, "fc.weight"));
    MC_CHECK_OK(mc_params_new(&m->params, &m->fc_b, MC_SHAPE(E), true, "fc.bias"));
    MC_CHECK_OK(mc_params_new(&m->params, &m->scale, MC_SHAPE(1), true, "logit_scale"));
    mc_tensor_uniform(m->bn_w, &rng, 0.5f, 1.5f);
    mc_tensor_uniform(m->bn_b, &rng, -0.5f, 0.5f);
    mc_tensor_fill(m->var, 1.0f);
    mc_tensor_normal(m->fc_w, &rng, 0.0f, 0.3f);
    mc_tensor_uniform(m->fc_b, &rng, -0.1f, 0.1f);
    m->scale->data[0] = 2.0f;
}

/* rows [start, start + n) of the batch x (N, HW, HW, C) and targets (N, E)
 * -> *loss; x's rows become a heap tensor with a gradient (*x_out). */
static void tiny_step(tiny_model *m, mc_graph *g, const float *x_all, const float *targets_all,
                      int64_t start, int64_t n, bool gather, bool symmetric, mc_tensor **x_out,
                      mc_tensor **loss) {
    mc_tensor *x, *t, *h, *flat, *emb, *targets;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(n, HW, HW, C), "x"));
    memcpy(x->data, x_all + start * HW * HW * C, (size_t)x->numel * sizeof(float));
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, true));
    MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(n, E), "targets", &t));
    memcpy(t->data, targets_all + start * E, (size_t)t->numel * sizeof(float));
    MC_CHECK_OK(mc_batchnorm2d_relu(g, x, m->bn_w, m->bn_b, m->mean, m->var, true, 0.1f, 1e-5f, &h));
    MC_CHECK_OK(mc_reshape(g, h, MC_SHAPE(n, HW * HW * C), &flat));
    MC_CHECK_OK(mc_linear(g, flat, m->fc_w, m->fc_b, &emb));
    if (gather) {
        MC_CHECK_OK(mc_dist_all_gather_op(g, emb, &emb));
        MC_CHECK_OK(mc_dist_all_gather_op(g, t, &targets));
    } else {
        targets = t;
    }
    MC_CHECK_OK(mc_infonce(g, emb, targets, m->scale, symmetric, loss));
    *x_out = x;
}

static void check_data_parallel_step(bool symmetric) {
    mc_rng rng;
    mc_rng_seed(&rng, 7);
    float x_all[N * HW * HW * C], targets_all[N * E];
    for (int i = 0; i < N * HW * HW * C; i++) x_all[i] = (float)(mc_rng_normal(&rng) * 1.5 + 0.3);
    for (int i = 0; i < N * E; i++) targets_all[i] = (float)mc_rng_normal(&rng);

    /* The reference: this process alone on the whole batch. */
    tiny_model ref, dist;
    tiny_model_new(&ref);
    tiny_model_new(&dist);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *x_ref, *loss_ref;
    tiny_step(&ref, g, x_all, targets_all, 0, N, false, symmetric, &x_ref, &loss_ref);
    float ref_loss = loss_ref->data[0];
    MC_CHECK_OK(mc_backward(g, loss_ref));
    mc_graph_reset(g);

    /* This rank's slice, synchronised batch norm, gathered InfoNCE. */
    int64_t start, count;
    mc_dist_slice(N, rank_, world_, &start, &count);
    mc_tensor *x, *loss;
    mc_dist_set_sync_batchnorm(true);
    tiny_step(&dist, g, x_all, targets_all, start, count, true, symmetric, &x, &loss);
    float loss_value = loss->data[0];
    MC_CHECK_OK(mc_backward(g, loss));
    mc_dist_set_sync_batchnorm(false);
    MC_CHECK_OK(mc_dist_average_gradients(g, &dist.params));

    const double rtol = 1e-5, atol = 1e-6;
    ck_assert_msg(fabs(loss_value - ref_loss) <= 1e-6 * fabs(ref_loss), "loss %.9g, one process %.9g",
                  loss_value, ref_loss);
    for (int p = 0; p < ref.params.count; p++) {
        const mc_tensor *a = dist.params.items[p], *b = ref.params.items[p];
        mc_test_assert_close(a->name, a->data, b->data, (long)a->numel, rtol, atol);
        if (b->requires_grad) {
            char what[128];
            snprintf(what, sizeof what, "gradient of %s", a->name);
            mc_test_assert_close(what, a->grad, b->grad, (long)a->numel, rtol, atol);
        }
    }
    /* The input's gradient: each rank computed the same loss, so its rows
     * got world times the one-process gradient (the average of the
     * parameter gradients divides it out). */
    float *expected = malloc((size_t)x->numel * sizeof *expected);
    ck_assert_ptr_nonnull(expected);
    for (int64_t i = 0; i < x->numel; i++) expected[i] = world_ * x_ref->grad[start * HW * HW * C + i];
    mc_test_assert_close("gradient of this rank's inputs", x->grad, expected, (long)x->numel, rtol, atol);
    free(expected);
    mc_tensor_free(x);
    mc_tensor_free(x_ref);
    mc_graph_free(g);
    mc_params_free(&ref.params);
    mc_params_free(&dist.params);
}

/* The gradients of one data-parallel step of a tiny model (plus a
 * trainable tensor no op uses), averaged by mc_dist_average_gradients after
 * backward, or by a reducer with buckets of `bucket_bytes` during it
 * (bucket_bytes 0). The model is left in *m, its gradients set. */
static void bucket_step(tiny_model *m, int64_t bucket_bytes, mc_dist_reducer_stats *stats) {
    mc_rng rng;
    mc_rng_seed(&rng, 11);
    float x_all[N * HW * HW * C], targets_all[N * E];
    for (int i = 0; i < N * HW * HW * C; i++) x_all[i] = (float)(mc_rng_normal(&rng) * 1.5 + 0.3);
    for (int i = 0; i < N * E; i++) targets_all[i] = (float)mc_rng_normal(&rng);
    tiny_model_new(m);
    mc_tensor *unused;
    MC_CHECK_OK(mc_params_new(&m->params, &unused, MC_SHAPE(3), true, "unused"));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    int64_t start, count;
    mc_dist_slice(N, rank_, world_, &start, &count);
    mc_tensor *x, *loss;
    mc_dist_set_sync_batchnorm(true);
    tiny_step(m, g, x_all, targets_all, start, count, true, false, &x, &loss);
    if (bucket_bytes == 0) {
        MC_CHECK_OK(mc_backward(g, loss));
        MC_CHECK_OK(mc_dist_average_gradients(g, &m->params));
    } else {
        mc_dist_reducer *reducer;
        MC_CHECK_OK(mc_dist_reducer_new(&m->params, bucket_bytes, &reducer));
        MC_CHECK_OK(mc_dist_backward_average(reducer, g, loss));
        mc_dist_reducer_stats_get(reducer, stats);
        mc_dist_reducer_free(reducer);
    }
    mc_dist_set_sync_batchnorm(false);
    mc_tensor_free(x);
    mc_graph_free(g);
}

/* Buckets change when the gradients travel, not what they sum to: bit for
 * bit the average after backward, for one bucket per tensor, a few tensors
 * per bucket and one bucket for all. */
START_TEST(test_buckets_equal_average_after_backward) {
    tiny_model reference;
    mc_dist_reducer_stats unused_stats;
    bucket_step(&reference, 0, &unused_stats);
    const int64_t bucket_sizes[] = {1, 200, MC_DIST_BUCKET_BYTES};
    for (size_t s = 0; s < sizeof bucket_sizes / sizeof bucket_sizes[0]; s++) {
        tiny_model m;
        mc_dist_reducer_stats stats;
        bucket_step(&m, bucket_sizes[s], &stats);
        int trainable = 0;
        int64_t gradient_floats = 0, sent_floats = 0;
        for (int p = 0; p < m.params.count; p++) {
            const mc_tensor *a = m.params.items[p], *b = reference.params.items[p];
            if (!b->requires_grad) continue;
            trainable++;
            gradient_floats += a->numel;
            /* One bucket per tensor: this rank sends the others their
             * chunks of it, then its summed chunk to each of them. */
            int64_t mine = a->numel * (rank_ + 1) / world_ - a->numel * rank_ / world_;
            sent_floats += (a->numel - mine) + (int64_t)(world_ - 1) * mine;
            ck_assert_ptr_nonnull(a->grad);
            /* One process: the average after backward leaves a gradient
             * never created as it is, i.e. zeros. */
            float *zeros = calloc((size_t)a->numel, sizeof(float));
            ck_assert_ptr_nonnull(zeros);
            const float *expected = b->grad ? b->grad : zeros;
            bool same = memcmp(a->grad, expected, (size_t)a->numel * sizeof(float)) == 0;
            free(zeros);
            ck_assert_msg(same,
                          "buckets of %lld bytes: the gradient of %s differs from the average after backward",
                          (long long)bucket_sizes[s], a->name);
        }
        ck_assert_int_eq(stats.gradient_bytes, gradient_floats * (int64_t)sizeof(float));
        ck_assert_int_eq(stats.buckets_overlapped, stats.buckets); /* all started inside backward */
        if (bucket_sizes[s] == 1) {
            ck_assert_int_eq(stats.buckets, trainable);
            ck_assert_int_eq(stats.bytes_sent, sent_floats * (int64_t)sizeof(float));
        }
        if (bucket_sizes[s] == MC_DIST_BUCKET_BYTES) ck_assert_int_eq(stats.buckets, 1);
        if (world_ == 1) ck_assert_int_eq(stats.bytes_sent, 0);
        mc_params_free(&m.params);
    }
    mc_params_free(&reference.params);
}
END_TEST

START_TEST(test_data_parallel_step_equals_one_process) { check_data_parallel_step(false); }
END_TEST

START_TEST(test_data_parallel_step_symmetric) { check_data_parallel_step(true); }
END_TEST

/* ---------------------------------------------------------------------------
 * validation in shards
 * ------------------------------------------------------------------------- */

enum { EVAL_TILES = 23, EVAL_SIZE = 32, EVAL_CLASSES = 5, EVAL_E = 8 };

/* mc_chain_evaluate_distributed, every rank its share of the batches,
 * against mc_chain_evaluate in this process alone: the same metrics bit for
 * bit. 23 tiles in batches of 4 make 6 batches (unequal shares on 4 ranks),
 * in batches of 16 two (a rank without a batch on 3 ranks). */
static void check_sharded_evaluation(int batch, bool symmetric) {
    mc_rng rng;
    mc_rng_seed(&rng, 11);
    mc_tensor *spectral, *rgb, *targets, *classes;
    MC_CHECK_OK(mc_tensor_new(&spectral, MC_SHAPE(EVAL_TILES, 2, EVAL_SIZE, EVAL_SIZE), "spectral"));
    MC_CHECK_OK(mc_tensor_new(&rgb, MC_SHAPE(EVAL_TILES, 3, EVAL_SIZE, EVAL_SIZE), "rgb"));
    MC_CHECK_OK(mc_tensor_new(&targets, MC_SHAPE(EVAL_TILES, EVAL_E), "targets"));
    MC_CHECK_OK(mc_tensor_new(&classes, MC_SHAPE(EVAL_CLASSES, EVAL_E), "classes"));
    mc_tensor_normal(spectral, &rng, 0.0f, 1.0f);
    mc_tensor_uniform(rgb, &rng, 0.0f, 1.0f);
    mc_tensor_normal(targets, &rng, 0.0f, 1.0f);
    mc_tensor_normal(classes, &rng, 0.0f, 1.0f);
    int labels[EVAL_TILES];
    for (int i = 0; i < EVAL_TILES; i++) labels[i] = (int)mc_rng_below(&rng, EVAL_CLASSES);
    const char *names[EVAL_CLASSES] = {"a", "b", "c", "d", "e"};
    mc_chain_data data;
    MC_CHECK_OK(mc_chain_data_from_tensors(&data, spectral, rgb, labels, EVAL_CLASSES, names));
    /* a ResNet of one basic block per stage, 4 channels wide, on two bands */
    const mc_resnet_config arch = {.block = MC_RESNET_BASIC, .layers = {1, 1, 1, 1}, .base_width = 4};
    mc_spectral_encoder *enc;
    mc_bands bands;
    mc_norm norm;
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_TORCHGEO));
    MC_CHECK_OK(mc_bands_parse("B08,B11", &bands));
    MC_CHECK_OK(mc_spectral_encoder_new(&enc, &arch, &bands, &norm, EVAL_SIZE, EVAL_E, 2.0f, false, 5));

    mc_chain_metrics alone, shared;
    MC_CHECK_OK(mc_chain_evaluate(enc, &data, targets, classes, batch, symmetric, &alone));
    MC_CHECK_OK(mc_chain_evaluate_distributed(enc, &data, targets, classes, batch, symmetric, &shared));
    ck_assert_int_eq(shared.count, EVAL_TILES);
    ck_assert_msg(shared.loss == alone.loss && shared.match_acc == alone.match_acc,
                  "loss %.17g, matching %.17g in shards; %.17g, %.17g alone", shared.loss, shared.match_acc,
                  alone.loss, alone.match_acc);
    ck_assert(shared.spectral_text_acc == alone.spectral_text_acc && shared.rgb_text_acc == alone.rgb_text_acc);
    ck_assert(memcmp(shared.spectral_embeds, alone.spectral_embeds, sizeof(float) * EVAL_TILES * EVAL_E) == 0);
    ck_assert(memcmp(shared.labels, labels, sizeof labels) == 0);
    ck_assert(memcmp(shared.spectral_pred, alone.spectral_pred, sizeof labels) == 0);
    ck_assert(memcmp(shared.rgb_pred, alone.rgb_pred, sizeof labels) == 0);
    const size_t confusion = sizeof(int64_t) * EVAL_CLASSES * EVAL_CLASSES;
    ck_assert(memcmp(shared.spectral_confusion, alone.spectral_confusion, confusion) == 0);
    ck_assert(memcmp(shared.rgb_confusion, alone.rgb_confusion, confusion) == 0);
    /* The metrics are not trivial: a loss, and predictions of several classes. */
    ck_assert(isfinite(alone.loss) && alone.loss > 0.0);
    int first_pred = alone.spectral_pred[0], varied = 0;
    for (int i = 1; i < EVAL_TILES; i++) varied |= alone.spectral_pred[i] != first_pred;
    ck_assert_msg(varied, "every tile predicted as class %d", first_pred);
    mc_chain_metrics_free(&alone);
    mc_chain_metrics_free(&shared);
    mc_spectral_encoder_free(enc);
    mc_chain_data_free(&data);
    mc_tensor_free(spectral);
    mc_tensor_free(rgb);
    mc_tensor_free(targets);
    mc_tensor_free(classes);
}

START_TEST(test_evaluation_in_shards) { check_sharded_evaluation(4, false); }
END_TEST

START_TEST(test_evaluation_with_fewer_batches_than_ranks) { check_sharded_evaluation(16, true); }
END_TEST

int main(int argc, char **argv) {
    mc_status status = mc_dist_init(&argc, &argv);
    if (status != MC_OK) {
        fprintf(stderr, "mc_dist_init: %s\n", mc_last_error());
        return 1;
    }
    rank_ = mc_dist_rank();
    world_ = mc_dist_world_size();
    printf("test_dist: rank %d of %d (%s)\n", rank_, world_, mc_dist_built_with_mpi() ? "MPI" : "no MPI");
    if (world_ > 16) return mc_test_skip("this test is written for at most 16 ranks");
    Suite *s = suite_create("dist");
    TCase *world = tcase_create("world");
    tcase_add_test(world, test_world);
    tcase_add_test(world, test_slices_cover_the_batch);
    suite_add_tcase(s, world);
    TCase *buffers = tcase_create("collectives");
    tcase_add_test(buffers, test_allreduce_floats_in_rank_order);
    tcase_add_test(buffers, test_allreduce_doubles_in_rank_order);
    tcase_add_test(buffers, test_broadcast);
    tcase_add_test(buffers, test_broadcast_params_refuses_different_models);
    tcase_add_test(buffers, test_check_params_agree);
    tcase_add_test(buffers, test_allgather_rows);
    tcase_add_test(buffers, test_transfers_counted_in_units);
    tcase_add_test(buffers, test_reduce_scatter_rows);
    tcase_add_test(buffers, test_average_gradients);
    suite_add_tcase(s, buffers);
    TCase *training = tcase_create("data parallel");
    tcase_add_test(training, test_all_gather_op_gradient);
    tcase_add_test(training, test_data_parallel_step_equals_one_process);
    tcase_add_test(training, test_data_parallel_step_symmetric);
    tcase_add_test(training, test_buckets_equal_average_after_backward);
    suite_add_tcase(s, training);
    TCase *validation = tcase_create("validation");
    tcase_add_test(validation, test_evaluation_in_shards);
    tcase_add_test(validation, test_evaluation_with_fewer_batches_than_ranks);
    suite_add_tcase(s, validation);
    /* Without fork: a forked child must not talk to MPI. (A failed check
     * on one rank may leave the others waiting in a collective: the script
     * that runs this under mpirun puts a time limit on it.) */
    SRunner *runner = srunner_create(s);
    srunner_set_fork_status(runner, CK_NOFORK);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    mc_dist_finalize();
    return failed == 0 ? 0 : 1;
}

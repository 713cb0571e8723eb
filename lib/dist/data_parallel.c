/* Data-parallel training on top of the collectives (dist.h): every rank
 * starting from rank 0's parameters, the all-gather op with its gradient,
 * the average of the gradients after backward, and synchronised batch norm. */
#include "mmchain/dist.h"

#include "mmchain/ops.h"

#include "dist/comm.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * the same start everywhere
 * ------------------------------------------------------------------------- */

uint64_t mc_dist_fingerprint(uint64_t h, const void *data, size_t bytes) {
    const uint8_t *p = data;
    for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 0x100000001b3ULL; /* FNV-1a */
    return h;
}

/* Over the names and sizes of a parameter list (and, with values, the
 * bytes of its trainable tensors): two ranks with the same fingerprint hold
 * the same tensors in the same order (with the same values). */
static uint64_t params_fingerprint(const mc_param_list *params, bool values) {
    uint64_t h = MC_DIST_FINGERPRINT_START;
    for (int i = 0; i < params->count; i++) {
        const mc_tensor *t = params->items[i];
        h = mc_dist_fingerprint(h, t->name, strlen(t->name));
        h = mc_dist_fingerprint(h, &t->numel, sizeof t->numel);
        if (values && t->requires_grad) h = mc_dist_fingerprint(h, t->data, (size_t)t->numel * sizeof(float));
    }
    return h;
}

/* Whether every rank's fingerprint equals rank 0's. Every rank learns the
 * number of differing ranks (*differing), so that all of them stop together
 * instead of some waiting in collectives the others never enter. */
static mc_status compare_with_rank0(uint64_t mine, bool *mine_differs, int *differing) {
    uint64_t root = mine;
    MC_TRY(mc_comm_broadcast(&root, sizeof root, 0));
    double count = root != mine ? 1.0 : 0.0;
    MC_TRY(mc_dist_allreduce_doubles(&count, 1, MC_DIST_SUM));
    *mine_differs = root != mine;
    *differing = (int)count;
    return MC_OK;
}

mc_status mc_dist_check_settings(const char *what, const mc_dist_setting *settings, int count) {
    const int world = mc_comm_size();
    int64_t *counts = malloc((size_t)world * sizeof *counts), total;
    if (!counts) return mc_error(MC_ERR_NOMEM, "%s: out of memory", what);
    mc_status status = mc_dist_allgather_counts(count, counts, &total);
    for (int k = 1; k < world && status == MC_OK; k++)
        if (counts[k] != counts[0])
            status = mc_error(MC_ERR_ARG, "%s: rank %d has %lld settings to compare, rank 0 %lld: the ranks "
                              "run different versions of the program", what, k, (long long)counts[k],
                              (long long)counts[0]);
    double *values = status == MC_OK ? malloc((size_t)(total + 1) * sizeof *values) : NULL;
    int64_t *table = status == MC_OK ? malloc(2 * (size_t)world * sizeof *table) : NULL;
    if (status == MC_OK && (!values || !table)) status = mc_error(MC_ERR_NOMEM, "%s: out of memory", what);
    double *mine = status == MC_OK ? malloc(((size_t)count + 1) * sizeof *mine) : NULL;
    if (status == MC_OK && !mine) status = mc_error(MC_ERR_NOMEM, "%s: out of memory", what);
    if (status == MC_OK) {
        for (int i = 0; i < count; i++) mine[i] = settings[i].value;
        for (int k = 0; k < world; k++) {
            table[k] = count * (int64_t)sizeof(double);
            table[world + k] = k * table[k];
        }
        status = mc_comm_allgatherv(mine, table[0], values, table, table + world);
    }
    /* The first setting, then the first rank, that differs: the same on
     * every rank, so every rank reports it. */
    for (int i = 0; i < count && status == MC_OK; i++)
        for (int k = 1; k < world; k++)
            if (memcmp(&values[(int64_t)k * count + i], &values[i], sizeof(double)) != 0) {
                status = mc_error(MC_ERR_ARG, "%s: %s is %.17g on rank %d but %.17g on rank 0: every rank must be "
                                  "started with the same options and see the same data", what, settings[i].name,
                                  values[(int64_t)k * count + i], k, values[i]);
                break;
            }
    free(counts);
    free(values);
    free(table);
    free(mine);
    return status;
}

mc_status mc_dist_broadcast_params(const mc_param_list *params) {
    bool mine_differs;
    int differing;
    MC_TRY(compare_with_rank0(params_fingerprint(params, false), &mine_differs, &differing));
    if (differing > 0)
        return mc_error(MC_ERR_STATE,
                        "%d rank(s) hold a model that differs from rank 0's in its tensor names or "
                        "sizes (rank %d's %s): every rank must build the same model",
                        differing, mc_dist_rank(), mine_differs ? "differs" : "does not");
    for (int i = 0; i < params->count; i++) {
        MC_TRY(mc_dist_broadcast_floats(params->items[i]->data, params->items[i]->numel, 0));
        mc_tensor_touch(params->items[i]);
    }
    return MC_OK;
}

mc_status mc_dist_check_params_agree(const mc_param_list *params, const char *when) {
    bool mine_differs;
    int differing;
    MC_TRY(compare_with_rank0(params_fingerprint(params, true), &mine_differs, &differing));
    if (differing > 0)
        return mc_error(MC_ERR_NUMERIC,
                        "%s: the weights of %d rank(s) are no longer rank 0's (rank %d's %s): the "
                        "ranks diverged",
                        when, differing, mc_dist_rank(), mine_differs ? "differ" : "do not");
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * all-gather with gradient
 * ------------------------------------------------------------------------- */

typedef struct gather_saved {
    int64_t row_len;  /* floats per row */
    int64_t *counts;  /* (world): every rank's rows */
} gather_saved;

/* out->grad (M, row_len) -> local->grad (m, row_len) += the sum over ranks
 * of this rank's rows of it. */
static mc_status all_gather_backward(mc_node *node) {
    const gather_saved *s = node->saved;
    mc_tensor *local = node->in[0];
    float *summed, *dlocal;
    MC_TRY(mc_graph_alloc(node->graph, (size_t)local->numel * sizeof(float), (void **)&summed));
    MC_TRY(mc_dist_reduce_scatter_rows(node->out->grad, s->row_len, s->counts, summed));
    MC_TRY(mc_grad_buffer(node->graph, local, &dlocal));
    for (int64_t i = 0; i < local->numel; i++) dlocal[i] += summed[i];
    return MC_OK;
}

mc_status mc_dist_all_gather_op(mc_graph *g, mc_tensor *local, mc_tensor **out) {
    *out = NULL;
    if (!g || !local) return mc_error(MC_ERR_ARG, "all-gather: graph and input must not be NULL");
    const int world = mc_dist_world_size();
    gather_saved *s;
    MC_TRY(mc_graph_alloc(g, sizeof *s, (void **)&s));
    MC_TRY(mc_graph_alloc(g, (size_t)world * sizeof *s->counts, (void **)&s->counts));
    const int64_t rows = local->shape.dim[0];
    s->row_len = 1;
    for (int d = 1; d < local->shape.ndim; d++) s->row_len *= local->shape.dim[d];
    /* The trailing size must agree: gather it with the counts' check. */
    int64_t total, *lens;
    MC_TRY(mc_graph_alloc(g, (size_t)world * sizeof *lens, (void **)&lens));
    MC_TRY(mc_dist_allgather_counts(s->row_len, lens, &total));
    for (int k = 0; k < world; k++)
        if (lens[k] != s->row_len) {
            char shape[160];
            return mc_error(MC_ERR_SHAPE,
                            "all-gather: rank %d's rows hold %lld values, rank %d's %s rows %lld",
                            k, (long long)lens[k], mc_dist_rank(), mc_tensor_str(local, shape, sizeof shape),
                            (long long)s->row_len);
        }
    MC_TRY(mc_dist_allgather_counts(rows, s->counts, &total));
    mc_shape shape = local->shape;
    shape.dim[0] = total;
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, shape, "all_gather", &y));
    MC_TRY(mc_dist_allgather_rows(local->data, rows, s->row_len, s->counts, y->data));
    MC_TRY(mc_graph_record(g, "all_gather", all_gather_backward, y, 1, &local, s));
    *out = y;
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * gradients
 * ------------------------------------------------------------------------- */

mc_status mc_dist_average_gradients(mc_graph *g, const mc_param_list *params) {
    int64_t total = 0;
    for (int i = 0; i < params->count; i++)
        if (params->items[i]->requires_grad) total += params->items[i]->numel;
    if (mc_dist_world_size() == 1 || total == 0) return MC_OK;
    /* One packed buffer: one all-reduce instead of one per tensor (a
     * ResNet-50 has 161), in list order on every rank. */
    float *packed = malloc((size_t)total * sizeof *packed);
    if (!packed) return mc_error(MC_ERR_NOMEM, "gradient average: out of memory for %lld floats", (long long)total);
    int64_t at = 0;
    for (int i = 0; i < params->count; i++) {
        const mc_tensor *t = params->items[i];
        if (!t->requires_grad) continue;
        if (t->grad) memcpy(packed + at, t->grad, (size_t)t->numel * sizeof(float));
        else memset(packed + at, 0, (size_t)t->numel * sizeof(float));
        at += t->numel;
    }
    mc_status status = mc_dist_allreduce_floats(packed, total, MC_DIST_AVERAGE);
    at = 0;
    for (int i = 0; i < params->count && status == MC_OK; i++) {
        mc_tensor *t = params->items[i];
        if (!t->requires_grad) continue;
        float *grad = t->grad;
        if (!grad) status = mc_grad_buffer(g, t, &grad);
        if (status == MC_OK) memcpy(grad, packed + at, (size_t)t->numel * sizeof(float));
        at += t->numel;
    }
    free(packed);
    return status;
}

/* ---------------------------------------------------------------------------
 * synchronised batch norm
 * ------------------------------------------------------------------------- */

static mc_status sum_over_ranks(double *values, int64_t count) {
    return mc_dist_allreduce_doubles(values, count, MC_DIST_SUM);
}

void mc_dist_set_sync_batchnorm(bool enabled) {
    mc_batchnorm_set_global_sum(enabled ? sum_over_ranks : NULL);
}

/* Embedding lookup: row ids[i] of the table weight (V, D) for every id.
 *
 * Backward: each looked-up row's gradient is added into its row of the
 * table; an id used twice receives the sum. Those additions can collide, so
 * the backward loop is sequential (it is cheap: one row add per id). */
#include "mmchain/ops.h"

#include <string.h>

typedef struct embedding_saved {
    int64_t n_ids;
    int32_t *ids; /* a copy: the caller's array may be gone by backward */
} embedding_saved;

/* weight: (V, D); ids: (n_ids) in [0, V); y: (n_ids, D). */
static void embedding_forward(const float *weight, int64_t D, const int32_t *ids, int64_t n_ids,
                              float *y) {
    for (int64_t i = 0; i < n_ids; i++)
        memcpy(y + i * D, weight + (int64_t)ids[i] * D, (size_t)D * sizeof(float));
}

static mc_status embedding_backward(mc_node *node) {
    mc_tensor *weight = node->in[0], *y = node->out;
    const embedding_saved *saved = node->saved;
    float *gw;
    MC_TRY(mc_grad_buffer(node->graph, weight, &gw));
    int64_t D = weight->shape.dim[1];
    for (int64_t i = 0; i < saved->n_ids; i++) { // gw: (V, D) += dy: (n_ids, D) by row id
        float *gw_row = gw + (int64_t)saved->ids[i] * D;
        const float *dy_row = y->grad + i * D;
        for (int64_t j = 0; j < D; j++) gw_row[j] += dy_row[j];
    }
    return MC_OK;
}

static mc_status check_embedding(const mc_tensor *weight, const int32_t *ids, mc_shape ids_shape,
                                 int64_t *n_ids) {
    char ws[160];
    if (weight->shape.ndim != 2)
        return mc_error(MC_ERR_SHAPE, "embedding: weight %s must be 2-D (V, D)",
                        mc_tensor_str(weight, ws, sizeof ws));
    MC_TRY(mc_shape_check(ids_shape, "embedding ids"));
    if (ids_shape.ndim + 1 > MC_MAX_DIMS)
        return mc_error(MC_ERR_SHAPE, "embedding: ids have %d dimensions; the output would need %d "
                        "(at most %d)", ids_shape.ndim, ids_shape.ndim + 1, MC_MAX_DIMS);
    if (!ids) return mc_error(MC_ERR_ARG, "embedding: ids is NULL");
    int64_t V = weight->shape.dim[0];
    *n_ids = mc_shape_numel(ids_shape);
    for (int64_t i = 0; i < *n_ids; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return mc_error(MC_ERR_ARG, "embedding: id %ld at position %lld is out of range for "
                            "weight %s: expected 0 <= id < V = %lld", (long)ids[i], (long long)i,
                            mc_tensor_str(weight, ws, sizeof ws), (long long)V);
    return MC_OK;
}

mc_status mc_embedding(mc_graph *g, mc_tensor *weight, const int32_t *ids, mc_shape ids_shape,
                       mc_tensor **out) {
    *out = NULL;
    if (!weight) return mc_error(MC_ERR_ARG, "embedding: weight is NULL");
    int64_t n_ids = 0;
    MC_TRY(check_embedding(weight, ids, ids_shape, &n_ids));
    int64_t D = weight->shape.dim[1];
    mc_shape y_shape = ids_shape;
    y_shape.dim[y_shape.ndim++] = D;
    mc_tensor *y;
    MC_TRY(mc_graph_tensor(g, y_shape, "embedding", &y));
    embedding_forward(weight->data, D, ids, n_ids, y->data);
    mc_tensor *in[1] = {weight};
    if (mc_graph_should_record(g, 1, in)) {
        embedding_saved *saved;
        MC_TRY(mc_graph_alloc(g, sizeof *saved, (void **)&saved));
        MC_TRY(mc_graph_alloc(g, (size_t)n_ids * sizeof(int32_t), (void **)&saved->ids));
        memcpy(saved->ids, ids, (size_t)n_ids * sizeof(int32_t));
        saved->n_ids = n_ids;
        MC_TRY(mc_graph_record(g, "embedding", embedding_backward, y, 1, in, saved));
    }
    *out = y;
    return MC_OK;
}

/* Steps that many op families of lib/ops take the same way (internal, not
 * installed): viewing a tensor around one dimension, and recording an op
 * together with the state its backward needs. */
#ifndef MMCHAIN_OPS_INTERNAL_H
#define MMCHAIN_OPS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mmchain/ops.h"

/* A tensor viewed around dimension `dim` as (outer, n, inner): outer is the
 * product of the dimensions before dim, n = shape.dim[dim], inner the
 * product of those after it. Every op along one dimension (sum, softmax,
 * slice, ...) works on this form. `dim` is already resolved (0..ndim-1). */
typedef struct mc_dim_split {
    int64_t outer, n, inner;
} mc_dim_split;

static inline mc_dim_split mc_split_at(mc_shape shape, int dim) {
    mc_dim_split split = {1, shape.dim[dim], 1};
    for (int i = 0; i < dim; i++) split.outer *= shape.dim[i];
    for (int i = dim + 1; i < shape.ndim; i++) split.inner *= shape.dim[i];
    return split;
}

/* For the backward of an op along one dimension of its one input
 * x = node->in[0]: x's gradient buffer, and x viewed around `dim`. */
static inline mc_status mc_dim_op_grad(mc_node *node, int dim, float **gx, mc_dim_split *split) {
    *split = mc_split_at(node->in[0]->shape, dim);
    return mc_grad_buffer(node->graph, node->in[0], gx);
}

/* Records `op` on g's tape as mc_graph_record does, with a copy of the op's
 * `state` (state_bytes, e.g. the dimension it worked along) in g's arena as
 * the node's ->saved. The copy is made only when the op is recorded
 * (gradients on and some input requires one), so inference spends no arena
 * on it. */
static inline mc_status mc_op_record_saved(mc_graph *g, const char *op, mc_backward_fn backward,
                                           mc_tensor *out, int n_in, mc_tensor *const *in,
                                           const void *state, size_t state_bytes) {
    if (!mc_graph_should_record(g, n_in, in)) return MC_OK;
    void *saved;
    MC_TRY(mc_graph_alloc(g, state_bytes, &saved));
    memcpy(saved, state, state_bytes);
    return mc_graph_record(g, op, backward, out, n_in, in, saved);
}

#endif

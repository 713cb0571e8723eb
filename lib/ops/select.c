/* Selection: where (pick from a or b by a mask), masked_fill (replace the
 * masked elements by a value) and gather (pick along one dimension by an
 * index tensor), as torch.where, Tensor.masked_fill and torch.gather.
 *
 * Each forward works out, once, which source element every output element
 * comes from — the mask expanded to the output's shape, or gather's source
 * offsets — and saves it; the backward routes each output gradient back to
 * that element (+=, so an element gathered twice receives the sum). */
#include "mmchain/ops.h"

#include <string.h>

/* ---- masks ----
 * A mask is a float tensor, true where nonzero (as a float tensor converts
 * to bool in PyTorch). It broadcasts to the shape it selects over: aligned
 * from the last dimension, each of its dimensions equal or 1, leading ones
 * missing. */

/* Expand `mask` to `shape`: keep[i] = mask at output index i is nonzero.
 * keep: numel(shape) bytes. MC_ERR_SHAPE naming both when it does not
 * broadcast. */
static mc_status expand_mask(const char *op, const mc_tensor *mask, const mc_tensor *target,
                             uint8_t *keep) {
    mc_shape shape = target->shape;
    int64_t stride[MC_MAX_DIMS]; /* the mask's stride along each output dimension; 0 stretches */
    int64_t s = 1;
    bool fits = mask->shape.ndim <= shape.ndim;
    for (int i = shape.ndim - 1; i >= 0 && fits; i--) {
        int im = mask->shape.ndim - shape.ndim + i;
        int64_t d = im >= 0 ? mask->shape.dim[im] : 1;
        fits = d == shape.dim[i] || d == 1;
        stride[i] = d == 1 ? 0 : s;
        s *= d;
    }
    if (!fits) {
        char ms[160], ts[160];
        return mc_error(MC_ERR_SHAPE, "%s: mask %s does not broadcast to %s (dimensions must match or be 1)",
                        op, mc_tensor_str(mask, ms, sizeof ms), mc_tensor_str(target, ts, sizeof ts));
    }
    int64_t index[MC_MAX_DIMS] = {0}, offset = 0; /* the output index, counted like an odometer */
    for (int64_t i = 0; i < target->numel; i++) {
        keep[i] = mask->data[offset] != 0.0f;
        for (int k = shape.ndim - 1; k >= 0; k--) {
            offset += stride[k];
            if (++index[k] < shape.dim[k]) break;
            offset -= stride[k] * shape.dim[k];
            index[k] = 0;
        }
    }
    return MC_OK;
}

/* ---- where: out = mask ? a : b; da += mask ? dy : 0, db += mask ? 0 : dy ---- */

static mc_status where_backward(mc_node *node) {
    const uint8_t *keep = node->saved; /* (numel): the expanded mask */
    const float *dy = node->out->grad;
    int64_t n = node->out->numel;
    for (int side = 0; side < 2; side++) { /* a where the mask holds, b elsewhere */
        mc_tensor *t = node->in[side];
        if (!t->requires_grad) continue;
        float *dt;
        MC_TRY(mc_grad_buffer(node->graph, t, &dt));
        for (int64_t i = 0; i < n; i++)
            if (keep[i] == (side == 0)) dt[i] += dy[i];
    }
    return MC_OK;
}

mc_status mc_where(mc_graph *g, mc_tensor *mask, mc_tensor *a, mc_tensor *b, mc_tensor **out) {
    *out = NULL;
    if (!mask || !a || !b) return mc_error(MC_ERR_ARG, "where: mask, a and b must not be NULL");
    if (!mc_shape_equal(a->shape, b->shape)) {
        char as[160], bs[160];
        return mc_error(MC_ERR_SHAPE, "where: a %s and b %s must have the same shape",
                        mc_tensor_str(a, as, sizeof as), mc_tensor_str(b, bs, sizeof bs));
    }
    uint8_t *keep;
    MC_TRY(mc_graph_alloc(g, (size_t)a->numel, (void **)&keep));
    MC_TRY(expand_mask("where", mask, a, keep));
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, a->shape, "where", &y));
    for (int64_t i = 0; i < y->numel; i++) y->data[i] = keep[i] ? a->data[i] : b->data[i];
    mc_tensor *in[2] = {a, b};
    MC_TRY(mc_graph_record(g, "where", where_backward, y, 2, in, keep));
    *out = y;
    return MC_OK;
}

/* ---- masked_fill: out = mask ? value : x; dx += mask ? 0 : dy ---- */

static mc_status masked_fill_backward(mc_node *node) {
    const uint8_t *keep = node->saved; /* (numel): true where filled */
    const float *dy = node->out->grad;
    float *dx;
    MC_TRY(mc_grad_buffer(node->graph, node->in[0], &dx));
    for (int64_t i = 0; i < node->out->numel; i++)
        if (!keep[i]) dx[i] += dy[i];
    return MC_OK;
}

mc_status mc_masked_fill(mc_graph *g, mc_tensor *x, mc_tensor *mask, float value, mc_tensor **out) {
    *out = NULL;
    if (!x || !mask) return mc_error(MC_ERR_ARG, "masked_fill: x and mask must not be NULL");
    uint8_t *filled;
    MC_TRY(mc_graph_alloc(g, (size_t)x->numel, (void **)&filled));
    MC_TRY(expand_mask("masked_fill", mask, x, filled));
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, x->shape, "masked_fill", &y));
    for (int64_t i = 0; i < y->numel; i++) y->data[i] = filled[i] ? value : x->data[i];
    mc_tensor *in[1] = {x};
    MC_TRY(mc_graph_record(g, "masked_fill", masked_fill_backward, y, 1, in, filled));
    *out = y;
    return MC_OK;
}

/* ---- gather along dim: out[i] = x[i with its dim-th coordinate replaced by
 * index[i]]; dx[source(i)] += dy[i] ---- */

static mc_status gather_backward(mc_node *node) {
    const int64_t *source = node->saved; /* (numel of out): flat offsets into x */
    const float *dy = node->out->grad;
    float *dx;
    MC_TRY(mc_grad_buffer(node->graph, node->in[0], &dx));
    for (int64_t i = 0; i < node->out->numel; i++) dx[source[i]] += dy[i];
    return MC_OK;
}

static mc_status check_gather(const mc_tensor *x, int d, const int32_t *index, mc_shape index_shape) {
    char xs[160], is[64];
    if (!index) return mc_error(MC_ERR_ARG, "gather: index is NULL");
    MC_TRY(mc_shape_check(index_shape, "gather: index"));
    bool fits = index_shape.ndim == x->shape.ndim;
    for (int k = 0; k < x->shape.ndim && fits; k++)
        fits = k == d || index_shape.dim[k] <= x->shape.dim[k];
    if (!fits)
        return mc_error(MC_ERR_SHAPE,
                        "gather: index %s must have as many dimensions as x %s and be no larger "
                        "in any dimension but %d",
                        mc_shape_str(index_shape, is, sizeof is), mc_tensor_str(x, xs, sizeof xs), d);
    int64_t n = mc_shape_numel(index_shape);
    for (int64_t i = 0; i < n; i++)
        if (index[i] < 0 || index[i] >= x->shape.dim[d])
            return mc_error(MC_ERR_ARG, "gather: index[%lld] is %d, expected in [0, %lld) for dim %d of %s",
                            (long long)i, (int)index[i], (long long)x->shape.dim[d], d,
                            mc_tensor_str(x, xs, sizeof xs));
    return MC_OK;
}

mc_status mc_gather(mc_graph *g, mc_tensor *x, int dim, const int32_t *index, mc_shape index_shape,
                    mc_tensor **out) {
    *out = NULL;
    if (!x) return mc_error(MC_ERR_ARG, "gather: x is NULL");
    int d = 0;
    MC_TRY(mc_resolve_dim("gather", x, dim, &d));
    MC_TRY(check_gather(x, d, index, index_shape));
    int64_t x_stride[MC_MAX_DIMS];
    int64_t s = 1;
    for (int k = x->shape.ndim - 1; k >= 0; k--) {
        x_stride[k] = s;
        s *= x->shape.dim[k];
    }
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, index_shape, "gather", &y));
    int64_t *source; /* (numel of out) */
    MC_TRY(mc_graph_alloc(g, (size_t)y->numel * sizeof *source, (void **)&source));
    int64_t coord[MC_MAX_DIMS] = {0}; /* the output index, counted like an odometer */
    for (int64_t i = 0; i < y->numel; i++) {
        int64_t offset = 0;
        for (int k = 0; k < index_shape.ndim; k++)
            offset += (k == d ? (int64_t)index[i] : coord[k]) * x_stride[k];
        source[i] = offset;
        y->data[i] = x->data[offset];
        for (int k = index_shape.ndim - 1; k >= 0; k--) {
            if (++coord[k] < index_shape.dim[k]) break;
            coord[k] = 0;
        }
    }
    mc_tensor *in[1] = {x};
    MC_TRY(mc_graph_record(g, "gather", gather_backward, y, 1, in, source));
    *out = y;
    return MC_OK;
}

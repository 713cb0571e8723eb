/* Shape ops: reshape (a view), permute/transpose, slice, concat and the
 * NCHW <-> NHWC conversions. Each forward is followed by its backward.
 *
 * Everything here moves elements without arithmetic, so every backward is the
 * same movement run in reverse, adding (+=) instead of copying. */
#include "mmchain/ops.h"
#include "core/parallel.h"
#include "ops/ops_internal.h"

#include <stdio.h>
#include <string.h>

static const char *describe(const mc_tensor *t, char *buf, size_t len) {
    return mc_tensor_str(t, buf, len);
}

mc_status mc_resolve_dim(const char *op, const mc_tensor *x, int dim, int *resolved) {
    if (!x) return mc_error(MC_ERR_ARG, "%s: the input tensor is NULL", op);
    int ndim = x->shape.ndim;
    int d = dim < 0 ? dim + ndim : dim;
    if (d < 0 || d >= ndim) {
        char xs[160];
        return mc_error(MC_ERR_ARG, "%s: dim %d is out of range for %s (expected %d..%d)", op, dim,
                        describe(x, xs, sizeof xs), -ndim, ndim - 1);
    }
    *resolved = d;
    return MC_OK;
}

/* ---- reshape: a view whose node routes the gradient back to x ---- */

static mc_status reshape_backward(mc_node *node) {
    mc_tensor *x = node->in[0], *y = node->out;
    float *gx;
    MC_TRY(mc_grad_buffer(node->graph, x, &gx));
    const float *gy = y->grad;
    for (int64_t i = 0; i < x->numel; i++) gx[i] += gy[i];
    return MC_OK;
}

/* Replace one -1 in `shape` by the size that keeps x's element count. */
static mc_status infer_reshape(const mc_tensor *x, mc_shape *shape) {
    char xs[160], ss[128];
    int inferred = -1;
    int64_t known = 1;
    bool infers = false; /* a -1 to fill in: the product of the others divides numel */
    for (int i = 0; i < shape->ndim && i < MC_MAX_DIMS; i++) infers |= shape->dim[i] == -1;
    for (int i = 0; i < shape->ndim && i < MC_MAX_DIMS; i++) {
        if (shape->dim[i] == -1 && inferred < 0) {
            inferred = i;
        } else if (shape->dim[i] < 1) {
            return mc_error(MC_ERR_SHAPE, "reshape %s to %s: dimension %d is %lld (one -1 is allowed)",
                            describe(x, xs, sizeof xs), mc_shape_str(*shape, ss, sizeof ss), i,
                            (long long)shape->dim[i]);
        } else if (!infers) {
            continue; /* nothing to fill in: the view checks the element count */
        } else if (shape->dim[i] > x->numel / known) {
            /* more elements than x has (checked before the product, which
             * could overflow, and wrap to 0: a division by zero below) */
            return mc_error(MC_ERR_SHAPE, "reshape %s to %s: more than its %lld elements",
                            describe(x, xs, sizeof xs), mc_shape_str(*shape, ss, sizeof ss),
                            (long long)x->numel);
        } else {
            known *= shape->dim[i];
        }
    }
    if (inferred < 0) return MC_OK;
    if (x->numel % known != 0)
        return mc_error(MC_ERR_SHAPE, "reshape %s to %s: %lld elements do not divide into %lld",
                        describe(x, xs, sizeof xs), mc_shape_str(*shape, ss, sizeof ss),
                        (long long)x->numel, (long long)known);
    shape->dim[inferred] = x->numel / known;
    return MC_OK;
}

mc_status mc_reshape(mc_graph *g, mc_tensor *x, mc_shape shape, mc_tensor **out) {
    *out = NULL;
    if (!x) return mc_error(MC_ERR_ARG, "reshape: the input tensor is NULL");
    if (shape.ndim < 1 || shape.ndim > MC_MAX_DIMS)
        return mc_error(MC_ERR_SHAPE, "reshape %s: %d dimensions, expected 1 to %d", x->name,
                        shape.ndim, MC_MAX_DIMS);
    MC_TRY(infer_reshape(x, &shape));
    mc_tensor *view;
    MC_TRY(mc_graph_view(g, x, shape, &view));
    mc_tensor *in[1] = {x};
    MC_TRY(mc_graph_record(g, "reshape", reshape_backward, view, 1, in, NULL));
    *out = view;
    return MC_OK;
}

/* ---- permute / transpose (copies) ---- */

typedef struct permute_saved {
    int perm[MC_MAX_DIMS];
} permute_saved;

/* Moves x's elements into permuted order (or, with `scatter_add`, adds them
 * back: the backward). For each element of y, the matching element of x sits
 * at sum_i index_i * x_stride[perm[i]]; y is walked row by row (its last
 * dimension innermost) so each row is one strided loop.
 *   x: x_shape, contiguous;  y: y_shape = x_shape permuted by perm. */
static void permute_kernel(float *x, mc_shape x_shape, const int *perm, float *y, bool scatter_add) {
    int nd = x_shape.ndim;
    int64_t x_stride[MC_MAX_DIMS], y_dim[MC_MAX_DIMS], step[MC_MAX_DIMS];
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        x_stride[i] = s;
        s *= x_shape.dim[i];
    }
    for (int i = 0; i < nd; i++) {
        y_dim[i] = x_shape.dim[perm[i]];
        step[i] = x_stride[perm[i]]; /* moving one along y's axis i moves this far in x */
    }
    int64_t row_len = y_dim[nd - 1], inner_step = step[nd - 1];
    int64_t n_rows = mc_shape_numel(x_shape) / row_len;
#pragma omp parallel for if (n_rows * row_len > MC_PARALLEL_MIN_WORK)
    for (int64_t row = 0; row < n_rows; row++) {
        /* Decompose the row number into y's leading indices. */
        int64_t rest = row, x_offset = 0;
        for (int i = nd - 2; i >= 0; i--) {
            x_offset += (rest % y_dim[i]) * step[i];
            rest /= y_dim[i];
        }
        float *y_row = y + row * row_len;
        const float *x_src = x + x_offset;
        if (scatter_add) {
            float *x_dst = x + x_offset;
            for (int64_t j = 0; j < row_len; j++) x_dst[j * inner_step] += y_row[j];
        } else {
            for (int64_t j = 0; j < row_len; j++) y_row[j] = x_src[j * inner_step];
        }
    }
}

static mc_status permute_backward(mc_node *node) {
    mc_tensor *x = node->in[0], *y = node->out;
    const permute_saved *saved = node->saved;
    float *gx;
    MC_TRY(mc_grad_buffer(node->graph, x, &gx));
    permute_kernel(gx, x->shape, saved->perm, y->grad, true);
    return MC_OK;
}

static mc_status check_perm(const char *op, const mc_tensor *x, const int *perm) {
    if (!x || !perm) return mc_error(MC_ERR_ARG, "%s: the input tensor or the permutation is NULL", op);
    int nd = x->shape.ndim;
    bool seen[MC_MAX_DIMS] = {false};
    char xs[160];
    for (int i = 0; i < nd; i++) {
        if (perm[i] < 0 || perm[i] >= nd || seen[perm[i]])
            return mc_error(MC_ERR_ARG,
                            "%s: bad perm for %s: entry %d is %d; expected each of 0..%d exactly once",
                            op, describe(x, xs, sizeof xs), i, perm[i], nd - 1);
        seen[perm[i]] = true;
    }
    return MC_OK;
}

static mc_status permute_op(mc_graph *g, const char *op, mc_tensor *x, const int *perm,
                            mc_tensor **out) {
    *out = NULL;
    MC_TRY(check_perm(op, x, perm));
    mc_shape y_shape = x->shape;
    for (int i = 0; i < x->shape.ndim; i++) y_shape.dim[i] = x->shape.dim[perm[i]];
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, y_shape, op, &y)); /* every element is written */
    permute_kernel(x->data, x->shape, perm, y->data, false);
    permute_saved saved = {{0}};
    memcpy(saved.perm, perm, (size_t)x->shape.ndim * sizeof(int));
    MC_TRY(mc_op_record_saved(g, op, permute_backward, y, 1, &x, &saved, sizeof saved));
    *out = y;
    return MC_OK;
}

mc_status mc_permute(mc_graph *g, mc_tensor *x, const int *perm, mc_tensor **out) {
    return permute_op(g, "permute", x, perm, out);
}

mc_status mc_transpose(mc_graph *g, mc_tensor *x, int dim0, int dim1, mc_tensor **out) {
    *out = NULL;
    int d0 = 0, d1 = 0;
    MC_TRY(mc_resolve_dim("transpose", x, dim0, &d0));
    MC_TRY(mc_resolve_dim("transpose", x, dim1, &d1));
    int perm[MC_MAX_DIMS];
    for (int i = 0; i < x->shape.ndim; i++) perm[i] = i;
    perm[d0] = d1;
    perm[d1] = d0;
    return permute_op(g, "transpose", x, perm, out);
}

static mc_status check_4d(const char *op, const mc_tensor *x, const char *layout) {
    if (!x) return mc_error(MC_ERR_ARG, "%s: the input tensor is NULL", op);
    if (x->shape.ndim == 4) return MC_OK;
    char xs[160];
    return mc_error(MC_ERR_SHAPE, "%s: input %s has %d dimensions, expected 4 %s", op,
                    describe(x, xs, sizeof xs), x->shape.ndim, layout);
}

mc_status mc_nchw_to_nhwc(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    *out = NULL;
    MC_TRY(check_4d("nchw_to_nhwc", x, "(N, C, H, W)"));
    static const int perm[4] = {0, 2, 3, 1};
    return permute_op(g, "nchw_to_nhwc", x, perm, out);
}

mc_status mc_nhwc_to_nchw(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    *out = NULL;
    MC_TRY(check_4d("nhwc_to_nchw", x, "(N, H, W, C)"));
    static const int perm[4] = {0, 3, 1, 2};
    return permute_op(g, "nhwc_to_nchw", x, perm, out);
}

/* ---- slice (copies) ---- */

typedef struct slice_saved {
    int dim;
    int64_t start;
} slice_saved;

/* Copies chunk by chunk; with `add_back` it adds y into x instead (backward).
 *   x: (outer, x_len, inner);  y: (outer, y_len, inner) = x[:, start:start+y_len, :]. */
static void slice_kernel(float *x, int64_t x_len, float *y, int64_t y_len, int64_t outer,
                         int64_t inner, int64_t start, bool add_back) {
    int64_t chunk = y_len * inner;
#pragma omp parallel for if (outer * chunk > MC_PARALLEL_MIN_WORK)
    for (int64_t o = 0; o < outer; o++) {
        float *x_chunk = x + (o * x_len + start) * inner;
        float *y_chunk = y + o * chunk;
        if (add_back)
            for (int64_t j = 0; j < chunk; j++) x_chunk[j] += y_chunk[j];
        else
            memcpy(y_chunk, x_chunk, (size_t)chunk * sizeof(float));
    }
}

static mc_status slice_backward(mc_node *node) {
    const slice_saved *saved = node->saved;
    float *gx;
    mc_dim_split s;
    MC_TRY(mc_dim_op_grad(node, saved->dim, &gx, &s));
    slice_kernel(gx, s.n, node->out->grad, node->out->shape.dim[saved->dim], s.outer, s.inner,
                 saved->start, true);
    return MC_OK;
}

mc_status mc_slice(mc_graph *g, mc_tensor *x, int dim, int64_t start, int64_t end, mc_tensor **out) {
    *out = NULL;
    int d = 0;
    MC_TRY(mc_resolve_dim("slice", x, dim, &d));
    int64_t len = x->shape.dim[d];
    int64_t first = start < 0 ? start + len : start;
    int64_t last = end < 0 ? end + len : end;
    if (first < 0 || last > len || first >= last) {
        char xs[160];
        return mc_error(MC_ERR_ARG, "slice: range %lld:%lld of dim %d of %s is empty or out of bounds "
                        "(the dim has size %lld)",
                        (long long)start, (long long)end, dim, describe(x, xs, sizeof xs),
                        (long long)len);
    }
    mc_shape y_shape = x->shape;
    y_shape.dim[d] = last - first;
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, y_shape, "slice", &y)); /* every chunk is copied */
    mc_dim_split s = mc_split_at(x->shape, d);
    slice_kernel(x->data, len, y->data, last - first, s.outer, s.inner, first, false);
    slice_saved saved = {.dim = d, .start = first};
    MC_TRY(mc_op_record_saved(g, "slice", slice_backward, y, 1, &x, &saved, sizeof saved));
    *out = y;
    return MC_OK;
}

/* ---- concat (copies) ---- */

typedef struct concat_saved {
    int dim;
} concat_saved;

static mc_status concat_backward(mc_node *node) {
    mc_tensor *y = node->out;
    const concat_saved *saved = node->saved;
    mc_dim_split s = mc_split_at(y->shape, saved->dim);
    int64_t offset = 0;
    for (int i = 0; i < node->n_in; i++) {
        mc_tensor *x = node->in[i];
        int64_t x_len = x->shape.dim[saved->dim];
        if (x->requires_grad) {
            /* x is the slice offset:offset+x_len of y: add that slice of dy. */
            float *gx;
            MC_TRY(mc_grad_buffer(node->graph, x, &gx));
            for (int64_t o = 0; o < s.outer; o++) {
                const float *gy_chunk = y->grad + (o * s.n + offset) * s.inner;
                float *gx_chunk = gx + o * x_len * s.inner;
                for (int64_t j = 0; j < x_len * s.inner; j++) gx_chunk[j] += gy_chunk[j];
            }
        }
        offset += x_len;
    }
    return MC_OK;
}

static mc_status check_concat_inputs(int n, mc_tensor *const *xs, int d) {
    const mc_tensor *first = xs[0];
    for (int i = 1; i < n; i++) {
        const mc_tensor *x = xs[i];
        bool fits = x->shape.ndim == first->shape.ndim;
        for (int k = 0; fits && k < x->shape.ndim; k++)
            if (k != d && x->shape.dim[k] != first->shape.dim[k]) fits = false;
        if (!fits) {
            char a[160], b[160];
            return mc_error(MC_ERR_SHAPE, "concat along dim %d: input %d %s does not match input 0 %s "
                            "outside that dim", d, i, describe(x, a, sizeof a),
                            describe(first, b, sizeof b));
        }
    }
    return MC_OK;
}

/* One recorded node holds at most MC_MAX_INPUTS inputs. */
static mc_status concat_few(mc_graph *g, int n, mc_tensor *const *xs, int d, mc_tensor **out) {
    mc_shape y_shape = xs[0]->shape;
    y_shape.dim[d] = 0;
    for (int i = 0; i < n; i++) y_shape.dim[d] += xs[i]->shape.dim[d];
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, y_shape, "concat", &y)); /* the inputs fill it */
    mc_dim_split s = mc_split_at(y_shape, d); /* s.n: y's length along d */
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        int64_t x_len = xs[i]->shape.dim[d];
        for (int64_t o = 0; o < s.outer; o++)
            memcpy(y->data + (o * s.n + offset) * s.inner, xs[i]->data + o * x_len * s.inner,
                   (size_t)(x_len * s.inner) * sizeof(float));
        offset += x_len;
    }
    concat_saved saved = {.dim = d};
    MC_TRY(mc_op_record_saved(g, "concat", concat_backward, y, n, xs, &saved, sizeof saved));
    *out = y;
    return MC_OK;
}

mc_status mc_concat(mc_graph *g, int n, mc_tensor *const *xs, int dim, mc_tensor **out) {
    *out = NULL;
    if (n < 1 || !xs) return mc_error(MC_ERR_ARG, "concat: %d inputs, expected at least one", n);
    for (int i = 0; i < n; i++)
        if (!xs[i]) return mc_error(MC_ERR_ARG, "concat: input %d is NULL", i);
    int d = 0;
    MC_TRY(mc_resolve_dim("concat", xs[0], dim, &d));
    MC_TRY(check_concat_inputs(n, xs, d));
    if (n <= MC_MAX_INPUTS) return concat_few(g, n, xs, d, out);
    /* More inputs than a tape node holds: concatenate groups of up to
     * MC_MAX_INPUTS, then the groups' results. Concatenation is associative,
     * so the result is the same; the price is one extra copy. */
    mc_tensor *groups[MC_MAX_INPUTS];
    int n_groups = 0, per_group = (n + MC_MAX_INPUTS - 1) / MC_MAX_INPUTS;
    for (int first = 0; first < n; first += per_group) {
        int count = n - first < per_group ? n - first : per_group;
        MC_TRY(mc_concat(g, count, xs + first, d, &groups[n_groups++]));
    }
    return concat_few(g, n_groups, groups, d, out);
}

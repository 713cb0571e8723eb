/* Binary elementwise ops with NumPy/PyTorch broadcasting (add, sub, mul,
 * div) and the scalar affine map mc_scale. Forward and backward side by side.
 *
 * Broadcasting: shapes are aligned from the last dimension; a missing leading
 * dimension counts as 1 and a dimension of size 1 stretches to the other's
 * size. We describe each input by its strides in the OUTPUT's index space,
 * with stride 0 along the dimensions where it stretches; then
 *     out[i] = f(a[offset_a(i)], b[offset_b(i)])
 * for every output index i. Adjacent dimensions that both inputs traverse
 * contiguously are merged first, so that the innermost loop is as long as
 * possible ((3,1,5)+(4,5): out (3,4,5), a strides (5,0,1), b (0,5,1); for
 * (8,16)+(8,16) everything merges into one loop of 128).
 *
 * Backward: an input that was stretched received the same element many times,
 * so its gradient is the SUM of the output gradient over the stretched
 * dimensions — the same walk, adding into offset_a(i) instead of reading. */
#include "mmchain/ops.h"
#include "core/parallel.h"
#include "ops/naive.h"
#include "ops/ops_internal.h"

#include <stdio.h>
#include <string.h>

typedef enum binary_op { OP_ADD, OP_SUB, OP_MUL, OP_DIV } binary_op;

static const char *const op_names[] = {"add", "sub", "mul", "div"};

/* ---- broadcasting plan ---- */

typedef struct broadcast_plan {
    int ndim;                     /* after merging; >= 1 */
    int64_t dim[MC_MAX_DIMS];     /* output dims */
    int64_t a_stride[MC_MAX_DIMS]; /* 0 where a stretches */
    int64_t b_stride[MC_MAX_DIMS];
    int64_t row_len;              /* dim[ndim - 1]: the innermost loop */
    int64_t n_rows;
} broadcast_plan;

/* The broadcast shape of a and b, or MC_ERR_SHAPE naming both. */
static mc_status broadcast_shape(const char *op, const mc_tensor *a, const mc_tensor *b,
                                 mc_shape *out) {
    /* An empty dimension (mc_tensor_rows' empty view) would broadcast
     * against a 1 into a non-empty output read from no data. */
    MC_TRY(mc_shape_check(a->shape, a->name));
    MC_TRY(mc_shape_check(b->shape, b->name));
    int nd = a->shape.ndim > b->shape.ndim ? a->shape.ndim : b->shape.ndim;
    out->ndim = nd;
    for (int k = 0; k < nd; k++) { /* k counts from the end: 0 is the last dim */
        int i = nd - 1 - k;
        int ia = a->shape.ndim - 1 - k, ib = b->shape.ndim - 1 - k;
        int64_t da = ia >= 0 ? a->shape.dim[ia] : 1, db = ib >= 0 ? b->shape.dim[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char as[160], bs[160];
            return mc_error(MC_ERR_SHAPE,
                            "%s: cannot broadcast %s with %s: dimension %d is %lld vs "
                            "%lld (sizes must match or one must be 1)",
                            op, mc_tensor_str(a, as, sizeof as), mc_tensor_str(b, bs, sizeof bs),
                            -(k + 1), (long long)da, (long long)db);
        }
        out->dim[i] = da > db ? da : db;
    }
    return MC_OK;
}

/* Strides of `t` in the index space of `shape` (t right-aligned in it). */
static void strides_in(const mc_tensor *t, mc_shape shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = shape.ndim - 1; i >= 0; i--) {
        int it = t->shape.ndim - shape.ndim + i;
        int64_t d = it >= 0 ? t->shape.dim[it] : 1;
        stride[i] = d == 1 ? 0 : s;
        s *= d;
    }
}

static void plan_broadcast(const mc_tensor *a, const mc_tensor *b, mc_shape shape,
                           broadcast_plan *plan) {
    int64_t as[MC_MAX_DIMS], bs[MC_MAX_DIMS];
    strides_in(a, shape, as);
    strides_in(b, shape, bs);
    int n = 0;
    for (int i = 0; i < shape.ndim; i++) {
        if (shape.dim[i] == 1) continue; /* size-1 output dims move nothing */
        /* Merge into the previous dim when both inputs continue contiguously. */
        if (n > 0 && plan->a_stride[n - 1] == as[i] * shape.dim[i] &&
            plan->b_stride[n - 1] == bs[i] * shape.dim[i]) {
            plan->dim[n - 1] *= shape.dim[i];
            plan->a_stride[n - 1] = as[i];
            plan->b_stride[n - 1] = bs[i];
            continue;
        }
        plan->dim[n] = shape.dim[i];
        plan->a_stride[n] = as[i];
        plan->b_stride[n] = bs[i];
        n++;
    }
    if (n == 0) { /* a single element */
        plan->dim[0] = 1;
        plan->a_stride[0] = plan->b_stride[0] = 0;
        n = 1;
    }
    plan->ndim = n;
    plan->row_len = plan->dim[n - 1];
    plan->n_rows = mc_shape_numel(shape) / plan->row_len;
}

/* Offsets of a and b at the start of output row `row`. */
static void row_offsets(const broadcast_plan *plan, int64_t row, int64_t *a_off, int64_t *b_off) {
    int64_t rest = row;
    *a_off = *b_off = 0;
    for (int i = plan->ndim - 2; i >= 0; i--) {
        int64_t index = rest % plan->dim[i];
        rest /= plan->dim[i];
        *a_off += index * plan->a_stride[i];
        *b_off += index * plan->b_stride[i];
    }
}

/* ---- forward ---- */

/* One output row: out[j] = EXPR(av, bv). The innermost strides are 1 or 0
 * (contiguous or stretched), so four plain loops cover every case and each
 * one vectorises. */
#define ROW_LOOP(EXPR)                                                         \
    do {                                                                       \
        if (as == 1 && bs == 1) {                                              \
            for (int64_t j = 0; j < n; j++) { float av = a[j], bv = b[j]; out[j] = (EXPR); } \
        } else if (as == 1) {                                                  \
            float bv = b[0];                                                   \
            for (int64_t j = 0; j < n; j++) { float av = a[j]; out[j] = (EXPR); } \
        } else if (bs == 1) {                                                  \
            float av = a[0];                                                   \
            for (int64_t j = 0; j < n; j++) { float bv = b[j]; out[j] = (EXPR); } \
        } else {                                                               \
            float av = a[0], bv = b[0];                                        \
            for (int64_t j = 0; j < n; j++) out[j] = (EXPR);                   \
        }                                                                      \
    } while (0)

/* a: (n) with stride as in {0, 1}; b: (n) with stride bs; out: (n). */
static void binary_row(binary_op op, const float *a, int64_t as, const float *b, int64_t bs,
                       float *out, int64_t n) {
    switch (op) {
    case OP_ADD: ROW_LOOP(av + bv); break;
    case OP_SUB: ROW_LOOP(av - bv); break;
    case OP_MUL: ROW_LOOP(av * bv); break;
    case OP_DIV: ROW_LOOP(av / bv); break;
    }
}

/* Rows are cut into pieces of at most this many elements, so that one long
 * merged row (same-shape inputs merge into a single row) still spreads over
 * the threads. */
enum { PIECE_ELEMENTS = 8192 };

/* a, b: broadcastable to out's shape; out: (plan->n_rows, plan->row_len). */
static void binary_forward(binary_op op, const broadcast_plan *plan, const float *a, const float *b,
                           float *out) {
    int64_t n = plan->row_len;
    int64_t as = plan->a_stride[plan->ndim - 1], bs = plan->b_stride[plan->ndim - 1];
    int64_t pieces_per_row = (n + PIECE_ELEMENTS - 1) / PIECE_ELEMENTS;
    int64_t n_pieces = plan->n_rows * pieces_per_row;
#pragma omp parallel for if (plan->n_rows * n > MC_PARALLEL_MIN_WORK)
    for (int64_t piece = 0; piece < n_pieces; piece++) {
        int64_t row = piece / pieces_per_row;
        int64_t begin = (piece % pieces_per_row) * PIECE_ELEMENTS;
        int64_t len = n - begin < PIECE_ELEMENTS ? n - begin : PIECE_ELEMENTS;
        int64_t a_off, b_off;
        row_offsets(plan, row, &a_off, &b_off);
        binary_row(op, a + a_off + begin * as, as, b + b_off + begin * bs, bs,
                   out + row * n + begin, len);
    }
}

/* The reference the planned kernel is tested against (through the ops):
 * one output element at a time, offsets from the full index. */
static void binary_forward_naive(binary_op op, const mc_tensor *a, const mc_tensor *b, mc_tensor *out) {
    int64_t as[MC_MAX_DIMS], bs[MC_MAX_DIMS];
    strides_in(a, out->shape, as);
    strides_in(b, out->shape, bs);
    for (int64_t i = 0; i < out->numel; i++) {
        int64_t rest = i, ia = 0, ib = 0;
        for (int k = out->shape.ndim - 1; k >= 0; k--) {
            int64_t index = rest % out->shape.dim[k];
            rest /= out->shape.dim[k];
            ia += index * as[k];
            ib += index * bs[k];
        }
        float av = a->data[ia], bv = b->data[ib];
        out->data[i] = op == OP_ADD ? av + bv : op == OP_SUB ? av - bv : op == OP_MUL ? av * bv : av / bv;
    }
}

/* ---- backward ---- */

/* d out / d a and d out / d b for one element, times dy. */
static inline float grad_a(binary_op op, float dy, float bv) {
    switch (op) {
    case OP_ADD:
    case OP_SUB: return dy;
    case OP_MUL: return dy * bv;
    case OP_DIV: return dy / bv;
    }
    return 0.0f;
}

static inline float grad_b(binary_op op, float dy, float av, float bv) {
    switch (op) {
    case OP_ADD: return dy;
    case OP_SUB: return -dy;
    case OP_MUL: return dy * av;
    /* (a / b) / b, as PyTorch's div backward: b * b would overflow or
     * underflow where the quotient does not. */
    case OP_DIV: return -dy * ((av / bv) / bv);
    }
    return 0.0f;
}

/* ga, gb: gradients of a and b (either may be NULL: not needed); dy: out's.
 * Rows run in parallel only when no two rows add into the same element,
 * i.e. when neither gradient being filled belongs to a stretched input. */
static void binary_backward_kernel(binary_op op, const broadcast_plan *plan, const float *a,
                                   const float *b, const float *dy, float *ga, float *gb,
                                   bool rows_disjoint) {
    int64_t n = plan->row_len;
    int64_t as = plan->a_stride[plan->ndim - 1], bs = plan->b_stride[plan->ndim - 1];
    int64_t pieces_per_row = (n + PIECE_ELEMENTS - 1) / PIECE_ELEMENTS;
    int64_t n_pieces = plan->n_rows * pieces_per_row;
#pragma omp parallel for if (rows_disjoint && plan->n_rows * n > MC_PARALLEL_MIN_WORK)
    for (int64_t piece = 0; piece < n_pieces; piece++) {
        int64_t row = piece / pieces_per_row;
        int64_t begin = (piece % pieces_per_row) * PIECE_ELEMENTS;
        int64_t end = n - begin < PIECE_ELEMENTS ? n : begin + PIECE_ELEMENTS;
        int64_t a_off, b_off;
        row_offsets(plan, row, &a_off, &b_off);
        const float *dy_row = dy + row * n;
        for (int64_t j = begin; j < end; j++) {
            float av = a[a_off + j * as], bv = b[b_off + j * bs];
            if (ga) ga[a_off + j * as] += grad_a(op, dy_row[j], bv);
            if (gb) gb[b_off + j * bs] += grad_b(op, dy_row[j], av, bv);
        }
    }
}

static mc_status binary_backward(mc_node *node, binary_op op) {
    mc_tensor *a = node->in[0], *b = node->in[1], *y = node->out;
    float *ga = NULL, *gb = NULL;
    if (a->requires_grad) MC_TRY(mc_grad_buffer(node->graph, a, &ga));
    if (b->requires_grad) MC_TRY(mc_grad_buffer(node->graph, b, &gb));
    broadcast_plan plan;
    plan_broadcast(a, b, y->shape, &plan);
    bool rows_disjoint = (!ga || a->numel == y->numel) && (!gb || b->numel == y->numel);
    binary_backward_kernel(op, &plan, a->data, b->data, y->grad, ga, gb, rows_disjoint);
    return MC_OK;
}

static mc_status add_backward(mc_node *node) { return binary_backward(node, OP_ADD); }
static mc_status sub_backward(mc_node *node) { return binary_backward(node, OP_SUB); }
static mc_status mul_backward(mc_node *node) { return binary_backward(node, OP_MUL); }
static mc_status div_backward(mc_node *node) { return binary_backward(node, OP_DIV); }

static const mc_backward_fn backward_fns[] = {add_backward, sub_backward, mul_backward, div_backward};

/* ---- the ops ---- */

static mc_status binary_op_run(mc_graph *g, binary_op op, mc_tensor *a, mc_tensor *b,
                               mc_tensor **out) {
    *out = NULL;
    if (!a || !b) return mc_error(MC_ERR_ARG, "%s: an input is NULL", op_names[op]);
    mc_shape shape;
    MC_TRY(broadcast_shape(op_names[op], a, b, &shape));
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, shape, op_names[op], &y)); /* every element is written */
    broadcast_plan plan;
    plan_broadcast(a, b, shape, &plan);
    binary_forward(op, &plan, a->data, b->data, y->data);
    mc_tensor *in[2] = {a, b};
    MC_TRY(mc_graph_record(g, op_names[op], backward_fns[op], y, 2, in, NULL));
    *out = y;
    return MC_OK;
}

mc_status mc_add(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor **out) {
    return binary_op_run(g, OP_ADD, a, b, out);
}
mc_status mc_sub(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor **out) {
    return binary_op_run(g, OP_SUB, a, b, out);
}
mc_status mc_mul(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor **out) {
    return binary_op_run(g, OP_MUL, a, b, out);
}
mc_status mc_div(mc_graph *g, mc_tensor *a, mc_tensor *b, mc_tensor **out) {
    return binary_op_run(g, OP_DIV, a, b, out);
}

/* The naive kernel, for tests: out = a (op) b with a freshly computed
 * broadcast, no planning or merging. op is "add", "sub", "mul" or "div". */
mc_status mc_binary_naive(mc_graph *g, const char *op, mc_tensor *a, mc_tensor *b, mc_tensor **out) {
    *out = NULL;
    int k = 0;
    while (k < 4 && strcmp(op, op_names[k]) != 0) k++;
    if (k == 4) return mc_error(MC_ERR_ARG, "binary_naive: unknown op \"%s\"", op);
    mc_shape shape;
    MC_TRY(broadcast_shape(op, a, b, &shape));
    MC_TRY(mc_graph_tensor(g, shape, op, out));
    binary_forward_naive((binary_op)k, a, b, *out);
    return MC_OK;
}

/* ---- scale: y = x * scale + shift ---- */

/* The node saves the scale, the only setting the backward needs. */
static mc_status scale_backward(mc_node *node) {
    mc_tensor *x = node->in[0], *y = node->out;
    const float scale = *(const float *)node->saved;
    float *gx;
    MC_TRY(mc_grad_buffer(node->graph, x, &gx));
    const float *gy = y->grad;
    int64_t n = x->numel;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * scale;
    return MC_OK;
}

mc_status mc_scale(mc_graph *g, mc_tensor *x, float scale, float shift, mc_tensor **out) {
    *out = NULL;
    if (!x) return mc_error(MC_ERR_ARG, "scale: the input tensor is NULL");
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, x->shape, "scale", &y));
    const float *xd = x->data;
    float *yd = y->data;
    int64_t n = x->numel;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) yd[i] = xd[i] * scale + shift;
    MC_TRY(mc_op_record_saved(g, "scale", scale_backward, y, 1, &x, &scale, sizeof scale));
    *out = y;
    return MC_OK;
}

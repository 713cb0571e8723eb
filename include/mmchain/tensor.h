/* mmchain — the tensor.
 *
 * A tensor is a float32 array, contiguous and row-major (the last dimension
 * varies fastest), with up to MC_MAX_DIMS dimensions and a name. It may carry
 * a gradient buffer of the same shape.
 *
 * Two lifetimes:
 *   - heap tensors (parameters, inputs, anything that outlives one training
 *     step) come from mc_tensor_new() and are released with mc_tensor_free();
 *   - step tensors (activations, the outputs of ops) live in a graph's arena
 *     (see autograd.h) and are all released at once by mc_graph_reset().
 *
 * Layout conventions, written down once:
 *   - images that enter or leave the library (files, the CLI, model inputs)
 *     are NCHW, as in PyTorch;
 *   - inside the convolutional ops, activations are NHWC ("channels last"):
 *     a 1x1 convolution over a whole batch is then one GEMM and im2col copies
 *     contiguous channel runs (docs/architecture.md explains why);
 *   - weights keep PyTorch's layouts: conv (OC, C/groups, KH, KW), linear
 *     (out_features, in_features), so checkpoints load without conversion. */
#ifndef MMCHAIN_TENSOR_H
#define MMCHAIN_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "rng.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MC_MAX_DIMS 6
#define MC_NAME_LEN 96

typedef struct mc_shape {
    int ndim;
    int64_t dim[MC_MAX_DIMS];
} mc_shape;

/* MC_SHAPE(2, 3, 4) is the shape (2, 3, 4). Up to MC_MAX_DIMS dimensions. */
#define MC_SHAPE_NARGS_(_1, _2, _3, _4, _5, _6, n, ...) n
#define MC_SHAPE_NARGS(...) MC_SHAPE_NARGS_(__VA_ARGS__, 6, 5, 4, 3, 2, 1, 0)
#define MC_SHAPE(...) \
    ((mc_shape){.ndim = MC_SHAPE_NARGS(__VA_ARGS__), .dim = {__VA_ARGS__}})

struct mc_tensor_bf16; /* a bf16 copy of a weight's data (lib/ops/weight_bf16.c) */

typedef struct mc_tensor {
    char name[MC_NAME_LEN];
    mc_shape shape;
    int64_t numel;
    float *data;        /* numel floats */
    float *grad;        /* numel floats, or NULL when no gradient is held */
    bool requires_grad; /* ops that read it record themselves on the tape */
    bool on_heap;       /* made by mc_tensor_new: freed by mc_tensor_free */
    bool owns_data;     /* false for views that share another's data */
    /* Changes whenever the library writes data (loads, copies, fills,
     * optimizer steps; mc_tensor_touch): what is derived from the data, the
     * bf16 copies below, is remade when it has changed. */
    uint64_t version;
    struct mc_tensor_bf16 *bf16; /* NULL, or the bf16 copy bf16 graphs multiply by */
    /* NULL, or the bf16 copy in the GEMM's panel order that unrecorded
     * linear ops multiply by: a slot of its own, so that a graph reading
     * one form never sees the other made in its place. */
    struct mc_tensor_bf16 *bf16_panels;
} mc_tensor;

/* ---- shapes ---- */
int64_t mc_shape_numel(mc_shape shape);
bool mc_shape_equal(mc_shape a, mc_shape b);
/* Writes "(2, 3, 4)" into buf (always NUL-terminated) and returns buf. */
const char *mc_shape_str(mc_shape shape, char *buf, size_t buf_len);
/* Checks 1 <= ndim <= MC_MAX_DIMS, every dim > 0, numel fits in int64. */
mc_status mc_shape_check(mc_shape shape, const char *what);

/* ---- heap tensors ---- */
/* A zero-filled tensor of `shape`, named `name` (may be NULL). */
mc_status mc_tensor_new(mc_tensor **out, mc_shape shape, const char *name);
void mc_tensor_free(mc_tensor *t);
/* A heap copy of src's data and shape (not its gradient). */
mc_status mc_tensor_clone(mc_tensor **out, const mc_tensor *src, const char *name);
/* Mark t as needing a gradient. The grad buffer is allocated (zeroed) the
 * first time backward reaches t; until then t->grad is NULL. */
mc_status mc_tensor_set_requires_grad(mc_tensor *t, bool requires_grad);

/* ---- contents ---- */
void mc_tensor_set_name(mc_tensor *t, const char *name);
/* Copy data between tensors of equal numel (shapes may differ). */
mc_status mc_tensor_copy(mc_tensor *dst, const mc_tensor *src);
/* Copy n floats from memory into t (n must equal t->numel). */
mc_status mc_tensor_load(mc_tensor *t, const float *values, int64_t n);
void mc_tensor_fill(mc_tensor *t, float value);
/* Say that t's data changed: call after writing t->data yourself (the
 * library's own writers do), so that a bf16 graph does not multiply by a
 * stale bf16 copy of a weight (autograd.h, mc_graph_set_precision). */
void mc_tensor_touch(mc_tensor *t);
void mc_tensor_zero_grad(mc_tensor *t);
/* Uniform in [low, high) and normal(mean, std), from `rng`. */
void mc_tensor_uniform(mc_tensor *t, mc_rng *rng, float low, float high);
void mc_tensor_normal(mc_tensor *t, mc_rng *rng, float mean, float std);
/* Change the shape in place (same numel), like torch's view on a
 * contiguous tensor. Does not record anything on a tape. */
mc_status mc_tensor_reshape_inplace(mc_tensor *t, mc_shape shape);
/* Rows [first, first + n) of t along its first dimension, as a borrowed view:
 * same name, shape (n, ...), data pointing into t's (which must outlive the
 * view), no gradient, never freed. For handing part of a batch buffer to an
 * op or a loader without copying. 0 <= first, 1 <= n, first + n <= dim 0;
 * outside that range the view is empty (data NULL, numel 0, dim 0 = 0). */
mc_tensor mc_tensor_rows(const mc_tensor *t, int64_t first, int64_t n);
/* Dimension i; negative i counts from the end (-1 is the last). */
int64_t mc_tensor_dim(const mc_tensor *t, int i);
/* A description for messages: "conv1.weight (64, 3, 7, 7)". */
const char *mc_tensor_str(const mc_tensor *t, char *buf, size_t buf_len);
/* MC_OK when all n values are finite; else an MC_ERR_NUMERIC saying
 * "WHAT holds NaN at element I (and K more non-finite values)". One pass:
 * cheap next to reading the values from a file, which is where it is used
 * (weights, checkpoints, input tiles), so that a NaN is refused where it
 * enters, with the tensor named, not found steps later as a NaN loss. */
mc_status mc_check_finite(const float *values, int64_t n, const char *what);

#ifdef __cplusplus
}
#endif
#endif

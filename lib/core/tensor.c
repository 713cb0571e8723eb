/* Heap tensors, shapes and tensor contents. */
#include "mmchain/tensor.h"
#include "core/parallel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shapes ---- */

int64_t mc_shape_numel(mc_shape shape) {
    int64_t n = 1;
    for (int i = 0; i < shape.ndim; i++) n *= shape.dim[i];
    return n;
}

bool mc_shape_equal(mc_shape a, mc_shape b) {
    if (a.ndim != b.ndim) return false;
    for (int i = 0; i < a.ndim; i++)
        if (a.dim[i] != b.dim[i]) return false;
    return true;
}

const char *mc_shape_str(mc_shape shape, char *buf, size_t buf_len) {
    size_t used = 0;
    if (buf_len == 0) return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, buf_len, "(");
    for (int i = 0; i < shape.ndim && used < buf_len; i++)
        used += (size_t)snprintf(buf + used, buf_len - used, i ? ", %lld" : "%lld",
                                 (long long)shape.dim[i]);
    if (used < buf_len) snprintf(buf + used, buf_len - used, ")");
    return buf;
}

mc_status mc_shape_check(mc_shape shape, const char *what) {
    if (shape.ndim < 1 || shape.ndim > MC_MAX_DIMS)
        return mc_error(MC_ERR_SHAPE, "%s: %d dimensions, expected 1 to %d", what ? what : "tensor",
                        shape.ndim, MC_MAX_DIMS);
    int64_t numel = 1;
    for (int i = 0; i < shape.ndim; i++) {
        int64_t d = shape.dim[i];
        if (d < 1)
            return mc_error(MC_ERR_SHAPE, "%s: dimension %d is %lld, expected a positive size",
                            what ? what : "tensor", i, (long long)d);
        /* Keep numel * sizeof(float) representable. */
        if (numel > (INT64_MAX / 8) / d)
            return mc_error(MC_ERR_SHAPE, "%s: the shape's element count overflows",
                            what ? what : "tensor");
        numel *= d;
    }
    return MC_OK;
}

/* ---- heap tensors ---- */

mc_status mc_tensor_new(mc_tensor **out, mc_shape shape, const char *name) {
    *out = NULL;
    MC_TRY(mc_shape_check(shape, name));
    mc_tensor *t = calloc(1, sizeof *t);
    if (!t) return mc_error(MC_ERR_NOMEM, "tensor %s: out of memory", name ? name : "");
    int64_t numel = mc_shape_numel(shape);
    t->data = calloc((size_t)numel, sizeof(float));
    if (!t->data) {
        free(t);
        return mc_error(MC_ERR_NOMEM, "tensor %s: cannot allocate %lld floats", name ? name : "",
                        (long long)numel);
    }
    t->shape = shape;
    t->numel = numel;
    t->on_heap = true;
    t->owns_data = true;
    mc_tensor_set_name(t, name);
    *out = t;
    return MC_OK;
}

void mc_tensor_free(mc_tensor *t) {
    if (!t || !t->on_heap) return;
    if (t->owns_data) {
        free(t->data);
        free(t->grad);
    }
    free(t->bf16);
    free(t->bf16_panels);
    free(t);
}

void mc_tensor_touch(mc_tensor *t) { t->version++; }

mc_status mc_tensor_clone(mc_tensor **out, const mc_tensor *src, const char *name) {
    MC_TRY(mc_tensor_new(out, src->shape, name ? name : src->name));
    memcpy((*out)->data, src->data, (size_t)src->numel * sizeof(float));
    return MC_OK;
}

mc_status mc_tensor_set_requires_grad(mc_tensor *t, bool requires_grad) {
    /* The gradient buffer itself is made on first use by backward (as
     * PyTorch's .grad is None until then), so a model loaded only for
     * inference never pays for it. */
    t->requires_grad = requires_grad;
    return MC_OK;
}

/* ---- contents ---- */

void mc_tensor_set_name(mc_tensor *t, const char *name) {
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
}

mc_status mc_tensor_copy(mc_tensor *dst, const mc_tensor *src) {
    if (dst->numel != src->numel) {
        char a[128], b[128];
        return mc_error(MC_ERR_SHAPE, "copy: source %s has %lld elements, destination %s has %lld",
                        mc_tensor_str(src, a, sizeof a), (long long)src->numel,
                        mc_tensor_str(dst, b, sizeof b), (long long)dst->numel);
    }
    memmove(dst->data, src->data, (size_t)src->numel * sizeof(float));
    mc_tensor_touch(dst);
    return MC_OK;
}

mc_status mc_tensor_load(mc_tensor *t, const float *values, int64_t n) {
    if (n != t->numel)
        return mc_error(MC_ERR_SHAPE, "tensor %s: given %lld values, expected %lld", t->name,
                        (long long)n, (long long)t->numel);
    memcpy(t->data, values, (size_t)n * sizeof(float));
    mc_tensor_touch(t);
    return MC_OK;
}

void mc_tensor_fill(mc_tensor *t, float value) {
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = value;
    mc_tensor_touch(t);
}

/* Parts of 64 KiB that mc_zero_parallel shares out. */
enum { ZERO_PART_BYTES = 64 << 10 };

void mc_zero_parallel(void *memory, size_t bytes) {
    /* Most calls are small (every zeroed arena allocation, tensor headers
     * included): a plain memset, without even a one-thread team. */
    if (bytes < MC_PARALLEL_MIN_WORK * sizeof(float)) {
        if (bytes) memset(memory, 0, bytes);
        return;
    }
    unsigned char *bytes_at = memory;
    const int64_t parts = (int64_t)((bytes + ZERO_PART_BYTES - 1) / ZERO_PART_BYTES);
#pragma omp parallel for schedule(static)
    for (int64_t part = 0; part < parts; part++) {
        const size_t start = (size_t)part * ZERO_PART_BYTES;
        memset(bytes_at + start, 0, bytes - start < ZERO_PART_BYTES ? bytes - start : ZERO_PART_BYTES);
    }
}

void mc_tensor_zero_grad(mc_tensor *t) {
    /* A training loop zeroes every parameter's gradient each step
     * (ResNet-50: 98 MB). */
    if (t->grad) mc_zero_parallel(t->grad, (size_t)t->numel * sizeof(float));
}

void mc_tensor_uniform(mc_tensor *t, mc_rng *rng, float low, float high) {
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = low + (high - low) * (float)mc_rng_uniform(rng);
    mc_tensor_touch(t);
}

void mc_tensor_normal(mc_tensor *t, mc_rng *rng, float mean, float std) {
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = mean + std * (float)mc_rng_normal(rng);
    mc_tensor_touch(t);
}

mc_status mc_tensor_reshape_inplace(mc_tensor *t, mc_shape shape) {
    MC_TRY(mc_shape_check(shape, t->name));
    if (mc_shape_numel(shape) != t->numel) {
        char a[128], b[128];
        return mc_error(MC_ERR_SHAPE, "reshape %s: cannot view %s as %s (element counts differ)",
                        t->name, mc_shape_str(t->shape, a, sizeof a), mc_shape_str(shape, b, sizeof b));
    }
    t->shape = shape;
    mc_tensor_touch(t);
    return MC_OK;
}

mc_tensor mc_tensor_rows(const mc_tensor *t, int64_t first, int64_t n) {
    mc_tensor view = *t;
    view.grad = NULL;
    view.requires_grad = false;
    view.on_heap = false;
    view.owns_data = false;
    view.bf16 = NULL;
    view.bf16_panels = NULL;
    /* (n > dim0 - first, not first + n > dim0: the sum may overflow.) */
    if (t->shape.ndim < 1 || first < 0 || n < 1 || first > t->shape.dim[0] ||
        n > t->shape.dim[0] - first || !t->data) {
        view.shape.dim[0] = 0;
        view.numel = 0;
        view.data = NULL;
        return view;
    }
    int64_t per_row = t->numel / t->shape.dim[0];
    view.shape.dim[0] = n;
    view.numel = n * per_row;
    view.data = t->data + first * per_row;
    return view;
}

int64_t mc_tensor_dim(const mc_tensor *t, int i) {
    if (i < 0) i += t->shape.ndim;
    if (i < 0 || i >= t->shape.ndim) return 0;
    return t->shape.dim[i];
}

const char *mc_tensor_str(const mc_tensor *t, char *buf, size_t buf_len) {
    char shape[96];
    snprintf(buf, buf_len, "%s %s", t->name[0] ? t->name : "(unnamed)",
             mc_shape_str(t->shape, shape, sizeof shape));
    return buf;
}

mc_status mc_check_finite(const float *values, int64_t n, const char *what) {
    int64_t first = -1, bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(values[i])) {
            if (first < 0) first = i;
            bad++;
        }
    if (first < 0) return MC_OK;
    const char *kind = isnan(values[first]) ? "NaN" : values[first] > 0 ? "+Inf" : "-Inf";
    if (bad == 1) return mc_error(MC_ERR_NUMERIC, "%s holds %s at element %lld", what, kind, (long long)first);
    return mc_error(MC_ERR_NUMERIC, "%s holds %s at element %lld (and %lld more non-finite values)", what, kind,
                    (long long)first, (long long)(bad - 1));
}

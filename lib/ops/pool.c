/* Pooling on NHWC activations: max, average, adaptive average, global average.
 *
 * Every window is a rectangle of input pixels, and NHWC keeps a pixel's C
 * channels contiguous, so each kernel's inner loop runs over channels.
 * Forward loops are parallel over output lines; backward loops over images
 * (windows may overlap inside one image, never across two). */
#include "mmchain/ops.h"
#include "core/parallel.h"
#include "core/vector_clones.h"
#include "ops/naive.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* x (N, H, W, C) pooled to (N, OH, OW, C) with square windows, or with
 * PyTorch's adaptive windows (adaptive average pooling: kernel, stride and
 * padding unused). */
typedef struct pool_geometry {
    int64_t n, h, w, c;
    int64_t oh, ow;
    int kernel, stride, padding;
    bool adaptive;
} pool_geometry;

/* Every pool's first check: x is a 4-D activation, NHWC. */
static mc_status check_nhwc(const char *op, const mc_tensor *x) {
    char xs[160];
    if (!x) return mc_error(MC_ERR_ARG, "%s: input x must not be NULL", op);
    if (x->shape.ndim != 4)
        return mc_error(MC_ERR_SHAPE, "%s: input x %s must be 4-D (N, H, W, C)"
                        ": activations are NHWC, not PyTorch's NCHW",
                        op, mc_tensor_str(x, xs, sizeof xs));
    return MC_OK;
}

static mc_status pool_geometry_of(const char *op, const mc_tensor *x, int kernel, int stride,
                                  int padding, pool_geometry *geo) {
    MC_TRY(check_nhwc(op, x));
    char xs[160];
    mc_tensor_str(x, xs, sizeof xs);
    if (kernel < 1 || stride < 1 || padding < 0)
        return mc_error(MC_ERR_ARG, "%s: kernel %d and stride %d must be >= 1, padding %d >= 0", op,
                        kernel, stride, padding);
    /* PyTorch's rule; it also guarantees every window holds a real pixel. */
    if (padding > kernel / 2)
        return mc_error(MC_ERR_ARG, "%s: padding %d must be at most half the kernel %d", op,
                        padding, kernel);
    geo->n = x->shape.dim[0], geo->h = x->shape.dim[1], geo->w = x->shape.dim[2];
    geo->c = x->shape.dim[3];
    geo->kernel = kernel, geo->stride = stride, geo->padding = padding;
    geo->adaptive = false;
    /* floor division (ceil_mode=False) */
    int64_t span_h = geo->h + 2 * (int64_t)padding - kernel;
    int64_t span_w = geo->w + 2 * (int64_t)padding - kernel;
    geo->oh = span_h < 0 ? 0 : span_h / stride + 1;
    geo->ow = span_w < 0 ? 0 : span_w / stride + 1;
    if (geo->oh < 1 || geo->ow < 1)
        return mc_error(MC_ERR_SHAPE, "%s: output size < 1: input x %s is smaller than kernel %d "
                        "with padding %d (x is NHWC: N, H, W, C)", op, xs, kernel, padding);
    return MC_OK;
}

/* The window of output (oy, ox) clipped to the image: rows [*y0, *y1),
 * columns [*x0, *x1). */
static void window(const pool_geometry *geo, int64_t oy, int64_t ox, int64_t *y0, int64_t *y1,
                   int64_t *x0, int64_t *x1) {
    int64_t top = oy * geo->stride - geo->padding, left = ox * geo->stride - geo->padding;
    *y0 = top < 0 ? 0 : top;
    *x0 = left < 0 ? 0 : left;
    *y1 = top + geo->kernel < geo->h ? top + geo->kernel : geo->h;
    *x1 = left + geo->kernel < geo->w ? left + geo->kernel : geo->w;
}

/* ==== max pooling ==== */

typedef struct maxpool_saved {
    pool_geometry geo;
    int32_t *argmax; /* (N, OH, OW, C): y * W + x of the winning input pixel */
} maxpool_saved;

/* The pooling rule for one channel: a candidate v replaces the best so far
 * when it is larger, or NaN (NaN wins over numbers and, once in, stays: no
 * number is larger than it and later NaNs change nothing that matters).
 * Written with | and a select so that the channel loop vectorises. */
static inline int maxpool_takes(float v, float best) { return (v > best) | isnan(v); }

/* x: (N, H, W, C) -> out: (N, OH, OW, C); argmax: (N, OH, OW, C) or NULL
 * (inference needs no argmax). The first pixel of each window (always a
 * real one: padding <= kernel/2) starts the running maximum; padding never
 * wins, ties go to the first pixel in scan order, as in PyTorch's CPU
 * kernel. Compared with mc_maxpool2d_naive by the tests. Cloned for
 * AVX-512 (vector_clones.h): the channel loops' compares and selects are
 * exact, so both clones give the same output and argmax. */
MC_VECTOR_CLONES
static void maxpool_forward(const pool_geometry *geo, const float *x, float *out, int32_t *argmax) {
    const int64_t c = geo->c;
#pragma omp parallel for schedule(static) if (geo->n * geo->h * geo->w * geo->c >= MC_PARALLEL_MIN_WORK)
    for (int64_t line = 0; line < geo->n * geo->oh; line++) {
        int64_t n = line / geo->oh, oy = line % geo->oh;
        for (int64_t ox = 0; ox < geo->ow; ox++) {
            int64_t y0, y1, x0, x1;
            window(geo, oy, ox, &y0, &y1, &x0, &x1);
            int64_t cell = (n * geo->oh + oy) * geo->ow + ox;
            float *best = out + cell * c;
            int32_t *where = argmax ? argmax + cell * c : NULL;
            memcpy(best, x + ((n * geo->h + y0) * geo->w + x0) * c, (size_t)c * sizeof(float));
            if (where)
                for (int64_t ch = 0; ch < c; ch++) where[ch] = (int32_t)(y0 * geo->w + x0);
            for (int64_t y = y0; y < y1; y++)
                for (int64_t xx = (y == y0 ? x0 + 1 : x0); xx < x1; xx++) {
                    const float *pixel = x + ((n * geo->h + y) * geo->w + xx) * c;
                    int32_t index = (int32_t)(y * geo->w + xx);
                    if (where)
                        for (int64_t ch = 0; ch < c; ch++) {
                            int take = maxpool_takes(pixel[ch], best[ch]);
                            best[ch] = take ? pixel[ch] : best[ch];
                            where[ch] = take ? index : where[ch];
                        }
                    else
                        for (int64_t ch = 0; ch < c; ch++)
                            best[ch] = maxpool_takes(pixel[ch], best[ch]) ? pixel[ch] : best[ch];
                }
        }
    }
}

/* The definition, one output element at a time: start from -infinity (and
 * the window's first real pixel as argmax), take every pixel that is larger
 * or NaN. x: (N, H, W, C) -> out: (N, OH, OW, C); argmax: (N, OH, OW, C) or
 * NULL. */
void mc_maxpool2d_naive(const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                            int kernel, int stride, int padding, float *out, int32_t *argmax) {
    int64_t oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1;
    for (int64_t i = 0; i < n; i++)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++)
                for (int64_t ch = 0; ch < c; ch++) {
                    int64_t top = oy * stride - padding, left = ox * stride - padding;
                    float best = -INFINITY;
                    int64_t where = (top < 0 ? 0 : top) * w + (left < 0 ? 0 : left);
                    for (int64_t y = top; y < top + kernel; y++)
                        for (int64_t xx = left; xx < left + kernel; xx++) {
                            if (y < 0 || y >= h || xx < 0 || xx >= w) continue;
                            float v = x[((i * h + y) * w + xx) * c + ch];
                            if (v > best || isnan(v)) best = v, where = y * w + xx;
                        }
                    int64_t o = ((i * oh + oy) * ow + ox) * c + ch;
                    out[o] = best;
                    if (argmax) argmax[o] = (int32_t)where;
                }
}

/* dout: (N, OH, OW, C) routed to the argmax pixels of dx: (N, H, W, C). */
static mc_status maxpool2d_backward(mc_node *node) {
    const maxpool_saved *saved = node->saved;
    const pool_geometry *geo = &saved->geo;
    float *dx;
    MC_TRY(mc_grad_buffer(node->graph, node->in[0], &dx));
    const float *dout = node->out->grad;
#pragma omp parallel for schedule(static) if (geo->n * geo->h * geo->w * geo->c >= MC_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < geo->n; n++) {
        const int64_t c = geo->c, cells = geo->oh * geo->ow;
        float *image = dx + n * geo->h * geo->w * c;
        /* cell by cell, channel by channel: the order of i = cell * C + ch
         * (so each dx element gets its terms in the same order), without
         * an integer division per element to find the channel */
        for (int64_t cell = n * cells; cell < (n + 1) * cells; cell++) {
            const int32_t *from = saved->argmax + cell * c;
            const float *grad = dout + cell * c;
            for (int64_t ch = 0; ch < c; ch++) image[(int64_t)from[ch] * c + ch] += grad[ch];
        }
    }
    return MC_OK;
}

mc_status mc_maxpool2d(mc_graph *g, mc_tensor *x, int kernel, int stride, int padding,
                       mc_tensor **out) {
    *out = NULL;
    maxpool_saved *saved;
    MC_TRY(mc_graph_alloc(g, sizeof *saved, (void **)&saved));
    MC_TRY(pool_geometry_of("maxpool2d", x, kernel, stride, padding, &saved->geo));
    const pool_geometry *geo = &saved->geo;
    if ((int64_t)geo->h * geo->w > INT32_MAX)
        return mc_error(MC_ERR_UNSUPPORTED, "maxpool2d: input x %s has too many pixels", x->name);
    mc_tensor *y; /* every element is written */
    MC_TRY(mc_graph_tensor_uninit(g, MC_SHAPE(geo->n, geo->oh, geo->ow, geo->c), "maxpool2d", &y));
    /* Only a recorded op needs to remember where each maximum came from. */
    bool record = mc_graph_should_record(g, 1, &x);
    if (record) MC_TRY(mc_graph_alloc(g, (size_t)y->numel * sizeof(int32_t), (void **)&saved->argmax));
    maxpool_forward(geo, x->data, y->data, record ? saved->argmax : NULL);
    MC_TRY(mc_graph_record(g, "maxpool2d", maxpool2d_backward, y, 1, &x, saved));
    *out = y;
    return MC_OK;
}

/* ==== average pooling (count_include_pad=True) ==== */

/* The two window kernels both average pools share. image: (H, W, C) with
 * row width w; the window is rows [y0, y1) x columns [x0, x1). */

/* mean[c] = scale * (sum of the window's pixels)[c]; mean: (C). */
static void window_sum_scaled(const float *image, int64_t w, int64_t c, int64_t y0, int64_t y1,
                              int64_t x0, int64_t x1, float scale, float *mean) {
    for (int64_t ch = 0; ch < c; ch++) mean[ch] = 0.0f;
    for (int64_t y = y0; y < y1; y++)
        for (int64_t xx = x0; xx < x1; xx++) {
            const float *pixel = image + (y * w + xx) * c;
            for (int64_t ch = 0; ch < c; ch++) mean[ch] += pixel[ch];
        }
    for (int64_t ch = 0; ch < c; ch++) mean[ch] *= scale;
}

/* Every pixel of the window of dimage += scale * d; d: (C). */
static void window_spread(float *dimage, int64_t w, int64_t c, int64_t y0, int64_t y1, int64_t x0,
                          int64_t x1, float scale, const float *d) {
    for (int64_t y = y0; y < y1; y++)
        for (int64_t xx = x0; xx < x1; xx++) {
            float *pixel = dimage + (y * w + xx) * c;
            for (int64_t ch = 0; ch < c; ch++) pixel[ch] += d[ch] * scale;
        }
}

/* With floor-mode output sizes every window ends at most `padding` past the
 * image, so the padded window always holds kernel*kernel cells: that is the
 * divisor when padding counts (PyTorch's count_include_pad=True). */
static float avgpool_divisor(const pool_geometry *geo) {
    return (float)geo->kernel * (float)geo->kernel;
}

/* PyTorch's adaptive windows: output i of `out` covers input
 * [floor(i*in/out), ceil((i+1)*in/out)); neighbours may overlap. */
static void adaptive_range(int64_t i, int64_t in, int64_t out, int64_t *start, int64_t *end) {
    *start = i * in / out;
    *end = ((i + 1) * in + out - 1) / out;
}

/* The window of average-pool output (oy, ox), rows [*y0, *y1) x columns
 * [*x0, *x1); returns the scale 1 / divisor of its sum: the padded
 * kernel's cell count for avgpool2d, the window's own for adaptive pooling.
 * The only place where the two average pools differ. */
static float avg_window(const pool_geometry *geo, int64_t oy, int64_t ox, int64_t *y0, int64_t *y1,
                        int64_t *x0, int64_t *x1) {
    if (geo->adaptive) {
        adaptive_range(oy, geo->h, geo->oh, y0, y1);
        adaptive_range(ox, geo->w, geo->ow, x0, x1);
        return 1.0f / (float)((*y1 - *y0) * (*x1 - *x0));
    }
    window(geo, oy, ox, y0, y1, x0, x1);
    return 1.0f / avgpool_divisor(geo);
}

/* x: (N, H, W, C) -> out: (N, OH, OW, C). */
static void avgpool_forward(const pool_geometry *geo, const float *x, float *out) {
#pragma omp parallel for schedule(static) if (geo->n * geo->h * geo->w * geo->c >= MC_PARALLEL_MIN_WORK)
    for (int64_t line = 0; line < geo->n * geo->oh; line++) {
        int64_t n = line / geo->oh, oy = line % geo->oh;
        for (int64_t ox = 0; ox < geo->ow; ox++) {
            int64_t y0, y1, x0, x1;
            float scale = avg_window(geo, oy, ox, &y0, &y1, &x0, &x1);
            window_sum_scaled(x + n * geo->h * geo->w * geo->c, geo->w, geo->c, y0, y1, x0, x1, scale,
                              out + ((n * geo->oh + oy) * geo->ow + ox) * geo->c);
        }
    }
}

/* dout: (N, OH, OW, C); adds dout / divisor to every pixel of each window
 * of dx: (N, H, W, C). */
static mc_status avgpool_backward(mc_node *node) {
    const pool_geometry *geo = node->saved;
    float *dx;
    MC_TRY(mc_grad_buffer(node->graph, node->in[0], &dx));
    const float *dout = node->out->grad;
#pragma omp parallel for schedule(static) if (geo->n * geo->h * geo->w * geo->c >= MC_PARALLEL_MIN_WORK)
    for (int64_t n = 0; n < geo->n; n++)
        for (int64_t oy = 0; oy < geo->oh; oy++)
            for (int64_t ox = 0; ox < geo->ow; ox++) {
                int64_t y0, y1, x0, x1;
                float scale = avg_window(geo, oy, ox, &y0, &y1, &x0, &x1);
                window_spread(dx + n * geo->h * geo->w * geo->c, geo->w, geo->c, y0, y1, x0, x1, scale,
                              dout + ((n * geo->oh + oy) * geo->ow + ox) * geo->c);
            }
    return MC_OK;
}

mc_status mc_avgpool2d(mc_graph *g, mc_tensor *x, int kernel, int stride, int padding,
                       mc_tensor **out) {
    *out = NULL;
    pool_geometry *geo;
    MC_TRY(mc_graph_alloc(g, sizeof *geo, (void **)&geo));
    MC_TRY(pool_geometry_of("avgpool2d", x, kernel, stride, padding, geo));
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, MC_SHAPE(geo->n, geo->oh, geo->ow, geo->c), "avgpool2d", &y));
    avgpool_forward(geo, x->data, y->data);
    MC_TRY(mc_graph_record(g, "avgpool2d", avgpool_backward, y, 1, &x, geo));
    *out = y;
    return MC_OK;
}

/* ==== adaptive average pooling: the average pool with adaptive windows ==== */

mc_status mc_adaptive_avgpool2d(mc_graph *g, mc_tensor *x, int out_h, int out_w, mc_tensor **out) {
    *out = NULL;
    MC_TRY(check_nhwc("adaptive_avgpool2d", x));
    if (out_h < 1 || out_w < 1)
        return mc_error(MC_ERR_ARG, "adaptive_avgpool2d: output size %dx%d must be at least 1x1",
                        out_h, out_w);
    pool_geometry *geo;
    MC_TRY(mc_graph_alloc(g, sizeof *geo, (void **)&geo));
    *geo = (pool_geometry){.n = x->shape.dim[0], .h = x->shape.dim[1], .w = x->shape.dim[2],
                           .c = x->shape.dim[3], .oh = out_h, .ow = out_w, .adaptive = true};
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, MC_SHAPE(geo->n, geo->oh, geo->ow, geo->c), "adaptive_avgpool2d",
                                  &y));
    avgpool_forward(geo, x->data, y->data);
    MC_TRY(mc_graph_record(g, "adaptive_avgpool2d", avgpool_backward, y, 1, &x, geo));
    *out = y;
    return MC_OK;
}

/* ==== global average pooling ==== */

/* x: (N, H, W, C) -> out: (N, C), the mean over H*W. */
static void global_avgpool_forward(int64_t n, int64_t pixels, int64_t c, const float *x, float *out) {
#pragma omp parallel for schedule(static) if (n * pixels * c >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        float *sum = out + i * c;
        for (int64_t ch = 0; ch < c; ch++) sum[ch] = 0.0f;
        for (int64_t p = 0; p < pixels; p++)
            for (int64_t ch = 0; ch < c; ch++) sum[ch] += x[(i * pixels + p) * c + ch];
        for (int64_t ch = 0; ch < c; ch++) sum[ch] /= (float)pixels;
    }
}

/* dout: (N, C) / (H*W) added to every pixel of dx: (N, H, W, C). */
static mc_status global_avgpool_backward(mc_node *node) {
    mc_tensor *x = node->in[0];
    int64_t n = x->shape.dim[0], c = x->shape.dim[3], pixels = x->shape.dim[1] * x->shape.dim[2];
    float *dx;
    MC_TRY(mc_grad_buffer(node->graph, x, &dx));
    const float *dout = node->out->grad;
    float inv = 1.0f / (float)pixels;
#pragma omp parallel for schedule(static) if (n * pixels * c >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++)
        for (int64_t p = 0; p < pixels; p++)
            for (int64_t ch = 0; ch < c; ch++) dx[(i * pixels + p) * c + ch] += dout[i * c + ch] * inv;
    return MC_OK;
}

mc_status mc_global_avgpool(mc_graph *g, mc_tensor *x, mc_tensor **out) {
    *out = NULL;
    MC_TRY(check_nhwc("global_avgpool", x));
    int64_t n = x->shape.dim[0], c = x->shape.dim[3], pixels = x->shape.dim[1] * x->shape.dim[2];
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, MC_SHAPE(n, c), "global_avgpool", &y));
    global_avgpool_forward(n, pixels, c, x->data, y->data);
    MC_TRY(mc_graph_record(g, "global_avgpool", global_avgpool_backward, y, 1, &x, NULL));
    *out = y;
    return MC_OK;
}

/* Data augmentation: random crops (resize back, or shift and pad), flips and
 * quarter turns, for single images, batches and pairs of views.
 * include/mmchain/augment.h defines the semantics; each image goes through
 * two passes:
 *   1. crop: x (C, H, W) -> cropped (C, H, W), the box brought back to H x W;
 *   2. orient: cropped -> out, an index permutation (flips, then rot90).
 * Working through a scratch copy makes out == x (in place) safe. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmchain/augment.h"

mc_augment_params mc_augment_identity(void) {
    mc_augment_params p = {.mode = MC_CROP_RESIZE, .y0 = 0.0f, .x0 = 0.0f, .h = 1.0f, .w = 1.0f,
                           .hflip = false, .vflip = false, .rot90 = 0};
    return p;
}

mc_augment_config mc_augment_default_config(void) {
    mc_augment_config c = {.mode = MC_CROP_RESIZE, .crop_min = 0.8f, .crop_max = 1.0f, .pad = 0.125f,
                           .hflip = true, .vflip = true, .rot90 = true};
    return c;
}

void mc_augment_sample(mc_rng *rng, const mc_augment_config *config, mc_augment_params *out) {
    /* Six draws, always, in this order. */
    double u_size = mc_rng_uniform(rng), u_y = mc_rng_uniform(rng), u_x = mc_rng_uniform(rng);
    uint64_t h_bit = mc_rng_below(rng, 2), v_bit = mc_rng_below(rng, 2), turns = mc_rng_below(rng, 4);
    *out = mc_augment_identity();
    out->mode = config->mode;
    if (config->mode == MC_CROP_RESIZE) {
        float side = config->crop_min + (config->crop_max - config->crop_min) * (float)u_size;
        out->h = out->w = side;
        out->y0 = (1.0f - side) * (float)u_y;
        out->x0 = (1.0f - side) * (float)u_x;
    } else {
        out->y0 = config->pad * (2.0f * (float)u_y - 1.0f);
        out->x0 = config->pad * (2.0f * (float)u_x - 1.0f);
    }
    out->hflip = config->hflip && h_bit;
    out->vflip = config->vflip && v_bit;
    out->rot90 = config->rot90 ? (int)turns : 0;
}

/* ---- pass 1: the crop ---- */

/* One axis of PyTorch's bilinear (align_corners=False) resampling of the
 * relative span [start, start + size) of an axis of length n onto n pixels:
 * output i reads lo[i] and lo[i] + step[i] (0 or 1) with weight frac[i].
 * Source positions are clamped to the pixel centres inside the box, so for
 * a box on whole pixels this is exactly torchvision's resized_crop: crop,
 * then interpolate(mode="bilinear", align_corners=False, antialias=False). */
static void bilinear_taps(int n, float start, float size, int *lo, int *step, float *frac) {
    /* Source pixels per output pixel: size * n input pixels onto n outputs. */
    float scale = size;
    float first = start * (float)n, last = (start + size) * (float)n - 1.0f;
    /* A box may start up to the check's slack before 0 (check_params):
     * pixel -1 does not exist. */
    if (first < 0.0f) first = 0.0f;
    if (first > (float)(n - 1)) first = (float)(n - 1);
    if (last > (float)(n - 1)) last = (float)(n - 1);
    if (last < first) last = first;
    for (int i = 0; i < n; i++) {
        float src = first + ((float)i + 0.5f) * scale - 0.5f;
        if (src < first) src = first;
        if (src > last) src = last;
        int i0 = (int)floorf(src);
        lo[i] = i0;
        step[i] = i0 < n - 1 ? 1 : 0;
        frac[i] = src - (float)i0;
    }
}

/* x, out: (C, H, W). taps_y: 3 arrays of H, taps_x: 3 arrays of W. */
static void crop_resize(const float *x, int C, int H, int W, const mc_augment_params *p, int *ty, int *sy,
                        float *fy, int *tx, int *sx, float *fx, float *out) {
    bilinear_taps(H, p->y0, p->h, ty, sy, fy);
    bilinear_taps(W, p->x0, p->w, tx, sx, fx);
    for (int c = 0; c < C; c++) {
        const float *plane = x + (long)c * H * W;
        for (int i = 0; i < H; i++) {
            const float *r0 = plane + (long)ty[i] * W, *r1 = r0 + (long)sy[i] * W;
            float *dst = out + ((long)c * H + i) * W;
            for (int j = 0; j < W; j++) {
                float top = r0[tx[j]] + fx[j] * (r0[tx[j] + sx[j]] - r0[tx[j]]);
                float bottom = r1[tx[j]] + fx[j] * (r1[tx[j] + sx[j]] - r1[tx[j]]);
                dst[j] = top + fy[i] * (bottom - top);
            }
        }
    }
}

/* x, out: (C, H, W). out(i, j) = x(i + dy, j + dx), 0 outside. */
static void crop_pad(const float *x, int C, int H, int W, const mc_augment_params *p, float *out) {
    int dy = (int)lroundf(p->y0 * (float)H), dx = (int)lroundf(p->x0 * (float)W);
    for (int c = 0; c < C; c++)
        for (int i = 0; i < H; i++) {
            float *dst = out + ((long)c * H + i) * W;
            int si = i + dy;
            for (int j = 0; j < W; j++) {
                int sj = j + dx;
                dst[j] = (si >= 0 && si < H && sj >= 0 && sj < W) ? x[((long)c * H + si) * W + sj] : 0.0f;
            }
        }
}

/* ---- pass 2: flips and quarter turns ---- */

/* Where output pixel (i, j) comes from in the un-oriented image (H x W;
 * odd turns only on square images, so H == W there). The inverse of
 * "hflip, then vflip, then rot90 by k": undo the turn, then the flips. */
static void oriented_source(int i, int j, int H, int W, const mc_augment_params *p, int *si, int *sj) {
    int a = i, b = j;
    switch (p->rot90 & 3) {
    case 1: a = j, b = W - 1 - i; break;         /* rot90(x)[i][j] = x[j][W-1-i] */
    case 2: a = H - 1 - i, b = W - 1 - j; break; /* rot180(x)[i][j] = x[H-1-i][W-1-j] */
    case 3: a = H - 1 - j, b = i; break;         /* rot270(x)[i][j] = x[H-1-j][i] */
    default: break;
    }
    if (p->vflip) a = H - 1 - a;
    if (p->hflip) b = W - 1 - b;
    *si = a;
    *sj = b;
}

static void orient(const float *x, int C, int H, int W, const mc_augment_params *p, float *out) {
    if (!p->hflip && !p->vflip && (p->rot90 & 3) == 0) {
        memcpy(out, x, sizeof(float) * (size_t)C * H * W);
        return;
    }
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            int si, sj;
            oriented_source(i, j, H, W, p, &si, &sj);
            for (int c = 0; c < C; c++) out[((long)c * H + i) * W + j] = x[((long)c * H + si) * W + sj];
        }
}

/* ---- checks and the public entry points ---- */

static mc_status check_params(const mc_augment_params *p, int H, int W, const mc_tensor *x, int k) {
    char buf[160];
    if (p->rot90 < 0 || p->rot90 > 3)
        return mc_error(MC_ERR_ARG, "augment: params[%d].rot90 = %d, expected 0..3", k, p->rot90);
    if ((p->rot90 & 1) && H != W)
        return mc_error(MC_ERR_SHAPE, "augment: params[%d] turns %s by %d quarter(s); an odd turn needs a square image",
                        k, mc_tensor_str(x, buf, sizeof buf), p->rot90);
    if (p->mode == MC_CROP_RESIZE) {
        const float slack = 1e-5f;
        if (!(p->h > 0.0f && p->w > 0.0f && p->y0 >= -slack && p->x0 >= -slack && p->y0 + p->h <= 1.0f + slack &&
              p->x0 + p->w <= 1.0f + slack))
            return mc_error(MC_ERR_ARG,
                            "augment: params[%d] crop box (y0 %g, x0 %g, h %g, w %g) must lie inside the image (0..1)",
                            k, p->y0, p->x0, p->h, p->w);
    } else if (p->mode != MC_CROP_PAD) {
        return mc_error(MC_ERR_ARG, "augment: params[%d].mode = %d is not a crop mode", k, (int)p->mode);
    } else if (!(fabsf(p->y0) <= 1.0f && fabsf(p->x0) <= 1.0f)) {
        return mc_error(MC_ERR_ARG, "augment: params[%d] shift (%g, %g) must be within -1..1", k, p->y0, p->x0);
    }
    return MC_OK;
}

/* Split x's shape into N images of (C, H, W). */
static mc_status image_dims(const mc_tensor *x, const char *what, int *N, int *C, int *H, int *W) {
    char buf[160];
    if (x->shape.ndim == 3) {
        *N = 1, *C = (int)x->shape.dim[0], *H = (int)x->shape.dim[1], *W = (int)x->shape.dim[2];
    } else if (x->shape.ndim == 4) {
        *N = (int)x->shape.dim[0], *C = (int)x->shape.dim[1], *H = (int)x->shape.dim[2], *W = (int)x->shape.dim[3];
    } else {
        return mc_error(MC_ERR_SHAPE, "augment: %s %s must be an image (C, H, W) or a batch (N, C, H, W)", what,
                        mc_tensor_str(x, buf, sizeof buf));
    }
    return MC_OK;
}

mc_status mc_augment_apply(const mc_tensor *x, const mc_augment_params *params, int n_params, mc_tensor *out) {
    if (!x || !params || !out) return mc_error(MC_ERR_ARG, "mc_augment_apply: x, params and out must not be NULL");
    int N = 0, C = 0, H = 0, W = 0;
    MC_TRY(image_dims(x, "input", &N, &C, &H, &W));
    char bx[160], bo[160];
    if (!mc_shape_equal(x->shape, out->shape))
        return mc_error(MC_ERR_SHAPE, "mc_augment_apply: out %s must have the shape of x %s",
                        mc_tensor_str(out, bo, sizeof bo), mc_tensor_str(x, bx, sizeof bx));
    if (n_params != 1 && n_params != N)
        return mc_error(MC_ERR_ARG, "mc_augment_apply: %d params for %s; expected 1 or %d", n_params,
                        mc_tensor_str(x, bx, sizeof bx), N);
    for (int k = 0; k < n_params; k++) MC_TRY(check_params(&params[k], H, W, x, k));

    size_t image = (size_t)C * H * W;
    /* Scratch: one cropped image plus the bilinear taps of both axes. */
    size_t bytes = sizeof(float) * image + 3 * sizeof(int) * (size_t)(H + W) + sizeof(float) * (size_t)(H + W);
    char *scratch = malloc(bytes);
    if (!scratch) return mc_error(MC_ERR_NOMEM, "mc_augment_apply: cannot allocate %zu bytes of scratch", bytes);
    float *cropped = (float *)scratch;
    int *ty = (int *)(cropped + image), *sy = ty + H, *tx = sy + H, *sx = tx + W;
    float *fy = (float *)(sx + W), *fx = fy + H;
    for (int n = 0; n < N; n++) {
        const mc_augment_params *p = &params[n_params == 1 ? 0 : n];
        const float *src = x->data + (size_t)n * image;
        if (p->mode == MC_CROP_PAD) crop_pad(src, C, H, W, p, cropped);
        else crop_resize(src, C, H, W, p, ty, sy, fy, tx, sx, fx, cropped);
        orient(cropped, C, H, W, p, out->data + (size_t)n * image);
    }
    free(scratch);
    return MC_OK;
}

mc_status mc_augment_pair(mc_rng *rng, const mc_augment_config *config, bool shared, const mc_tensor *a,
                          mc_tensor *a_out, const mc_tensor *b, mc_tensor *b_out) {
    if (!rng || !config || !a || !a_out || !b || !b_out)
        return mc_error(MC_ERR_ARG, "mc_augment_pair: no argument may be NULL");
    int na = 0, nb = 0, c = 0, h = 0, w = 0;
    MC_TRY(image_dims(a, "view a", &na, &c, &h, &w));
    MC_TRY(image_dims(b, "view b", &nb, &c, &h, &w));
    char ba[160], bb[160];
    if (na != nb || a->shape.ndim != b->shape.ndim)
        return mc_error(MC_ERR_SHAPE, "mc_augment_pair: views a %s and b %s hold different numbers of images",
                        mc_tensor_str(a, ba, sizeof ba), mc_tensor_str(b, bb, sizeof bb));
    mc_augment_params *pa = malloc(sizeof *pa * (size_t)na * 2);
    if (!pa) return mc_error(MC_ERR_NOMEM, "mc_augment_pair: cannot allocate params for %d pairs", na);
    mc_augment_params *pb = pa + na;
    for (int k = 0; k < na; k++) {
        mc_augment_sample(rng, config, &pa[k]);
        if (shared) pb[k] = pa[k];
        else mc_augment_sample(rng, config, &pb[k]);
    }
    mc_status status = mc_augment_apply(a, pa, na, a_out);
    if (status == MC_OK) status = mc_augment_apply(b, pb, na, b_out);
    free(pa);
    return status;
}

/* conv2d: 2-D convolution (cross-correlation, as PyTorch) on NHWC activations.
 *
 * The fast path turns a convolution into matrix products ("im2col + GEMM",
 * Chellapilla et al. 2006):
 *
 *   - Every output pixel of the whole batch is one GEMM row, so the batch is
 *     folded into the GEMM: rows = N*OH*OW. Its receptive field, gathered
 *     into one row of a "column matrix", has KH*KW*C values. Because x is
 *     NHWC, the field is KH*KW contiguous runs of C channels: im2col is a
 *     sequence of memcpy's.
 *   - The weight (OC, C/g, KH, KW) is repacked per call to (OC, KH, KW, C/g)
 *     so that its rows line up with the column rows; then, per group,
 *         out[rows, OC_g] = columns[rows, K_g] @ packed_weight[OC_g, K_g]^T.
 *   - A 1x1, stride-1, unpadded convolution needs no gathering at all: x
 *     seen as a (N*H*W, C) matrix already is the column matrix, and the
 *     PyTorch weight (OC, C/g, 1, 1) already is the packed one.
 *
 * Backward reuses the same matrices:
 *     d_weight[OC_g, K_g] += d_out[rows, OC_g]^T @ columns[rows, K_g]
 *     d_columns[rows, K_g] = d_out[rows, OC_g] @ packed_weight[OC_g, K_g]
 * and col2im adds each d_columns entry back onto the input pixel it was
 * gathered from.
 *
 * Memory and speed: the columns are KH*KW times larger than x, so they are
 * built for a chunk of output rows at a time, sized to stay in the L2 cache
 * between im2col and the GEMM (see rows_per_chunk) and never more than
 * `column_budget` bytes, in a per-thread scratch buffer that is reused
 * across calls: in a steady training loop conv allocates nothing. Backward recomputes the columns
 * instead of keeping them (they would dominate the arena).
 *
 * bf16 (a graph whose products take bf16 operands, on our kernel): the
 * columns are gathered straight into bf16, rounded as the GEMM's packing
 * would round them, and the forward and weight-gradient products read them
 * in bf16 (im2col_bf16). The input gradient's d_columns stay fp32.
 *
 * Column row layout, for groups g: [group 0: (kh, kw, c) | group 1: ... ],
 * so one im2col pass serves every group and group g's GEMM reads the
 * sub-matrix at column offset g*K_g with leading dimension K_total. */
#include "ops/conv_internal.h"
#include "core/vector_clones.h"
#include "core/parallel.h"
#include "mmchain/threads.h"
#include "ops/gemm_internal.h"
#include "ops/naive.h"
#include "ops/weight_bf16.h"
#include "ops/ops_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- settings and scratch memory ---- */

enum { DEFAULT_COLUMN_BUDGET = 64 << 20 };
static size_t column_budget = DEFAULT_COLUMN_BUDGET;

void mc_conv2d_set_column_budget(size_t bytes) {
    column_budget = bytes ? bytes : (size_t)DEFAULT_COLUMN_BUDGET;
}

/* Thread-local so that two threads running separate graphs never share one. */
static _Thread_local mc_scratch scratch_columns;       /* im2col rows */
static _Thread_local mc_scratch scratch_packed_weight; /* (OC, KH, KW, C/g) */
static _Thread_local mc_scratch scratch_packed_dweight;
static _Thread_local mc_scratch scratch_dweight_partials; /* bf16 weight gradient, by groups */

void mc_conv2d_release_workspace(void) {
    mc_scratch *all[] = {&scratch_columns, &scratch_packed_weight, &scratch_packed_dweight,
                         &scratch_dweight_partials};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mc_scratch_free(all[i]);
    mc_conv2d_winograd_release_workspace();
}

/* ---- geometry and checks ---- */

mc_conv2d_params mc_conv2d_simple(int stride, int padding) {
    mc_conv2d_params p = {stride, stride, padding, padding, 1, 1, 1};
    return p;
}

static mc_status check_params(mc_conv2d_params p) {
    if (p.stride_h < 1 || p.stride_w < 1)
        return mc_error(MC_ERR_ARG, "conv2d: stride (%d, %d) must be >= 1", p.stride_h, p.stride_w);
    if (p.dilation_h < 1 || p.dilation_w < 1)
        return mc_error(MC_ERR_ARG, "conv2d: dilation (%d, %d) must be >= 1", p.dilation_h,
                        p.dilation_w);
    if (p.pad_h < 0 || p.pad_w < 0)
        return mc_error(MC_ERR_ARG, "conv2d: padding (%d, %d) must be >= 0", p.pad_h, p.pad_w);
    if (p.groups < 1) return mc_error(MC_ERR_ARG, "conv2d: groups %d must be >= 1", p.groups);
    return MC_OK;
}

static int64_t output_size(int64_t in, int pad, int dilation, int64_t kernel, int stride) {
    int64_t span = in + 2 * (int64_t)pad - (int64_t)dilation * (kernel - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
}

mc_status mc_conv2d_geometry_of(const mc_tensor *x, const mc_tensor *weight, const mc_tensor *bias,
                                mc_conv2d_params p, mc_conv2d_geometry *geo) {
    char xs[160], ws[160], bs[160];
    if (!x || !weight) return mc_error(MC_ERR_ARG, "conv2d: input x and weight must not be NULL");
    mc_tensor_str(x, xs, sizeof xs);
    mc_tensor_str(weight, ws, sizeof ws);
    MC_TRY(check_params(p));
    if (x->shape.ndim != 4)
        return mc_error(MC_ERR_SHAPE, "conv2d: input x %s must be 4-D (N, H, W, C)"
                        ": activations are NHWC, not PyTorch's NCHW", xs);
    if (weight->shape.ndim != 4)
        return mc_error(MC_ERR_SHAPE, "conv2d: weight %s must be 4-D (OC, C/groups, KH, KW)", ws);
    memset(geo, 0, sizeof *geo);
    geo->n = x->shape.dim[0], geo->h = x->shape.dim[1], geo->w = x->shape.dim[2];
    geo->c = x->shape.dim[3];
    geo->oc = weight->shape.dim[0], geo->kh = weight->shape.dim[2], geo->kw = weight->shape.dim[3];
    geo->groups = p.groups;
    geo->p = p;
    if (geo->c % p.groups != 0 || geo->oc % p.groups != 0)
        return mc_error(MC_ERR_SHAPE,
                        "conv2d: groups %d must divide the input channels of x %s and the output "
                        "channels of weight %s",
                        p.groups, xs, ws);
    geo->c_group = geo->c / p.groups;
    geo->oc_group = geo->oc / p.groups;
    if (weight->shape.dim[1] != geo->c_group)
        return mc_error(MC_ERR_SHAPE,
                        "conv2d: input x %s has %lld channels, weight %s expects %lld (C/groups = "
                        "%lld with groups %d); x is NHWC, channels last",
                        xs, (long long)geo->c, ws, (long long)weight->shape.dim[1] * p.groups,
                        (long long)weight->shape.dim[1], p.groups);
    if (bias && (bias->shape.ndim != 1 || bias->shape.dim[0] != geo->oc))
        return mc_error(MC_ERR_SHAPE, "conv2d: bias %s must have shape (%lld) to match weight %s",
                        mc_tensor_str(bias, bs, sizeof bs), (long long)geo->oc, ws);
    geo->oh = output_size(geo->h, p.pad_h, p.dilation_h, geo->kh, p.stride_h);
    geo->ow = output_size(geo->w, p.pad_w, p.dilation_w, geo->kw, p.stride_w);
    if (geo->oh < 1 || geo->ow < 1)
        return mc_error(MC_ERR_SHAPE,
                        "conv2d: output size %lldx%lld < 1: input x %s with kernel %lldx%lld, "
                        "padding (%d, %d), dilation (%d, %d) is too small"
                        " (x is NHWC: N, H, W, C)",
                        (long long)geo->oh, (long long)geo->ow, xs, (long long)geo->kh,
                        (long long)geo->kw, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w);
    geo->k_group = geo->kh * geo->kw * geo->c_group;
    geo->k_total = geo->k_group * p.groups;
    geo->rows = geo->n * geo->oh * geo->ow;
    /* cblas takes int sizes; rows are chunked, the rest must fit. */
    if (geo->k_total > INT_MAX / 2 || geo->oc > INT_MAX / 2)
        return mc_error(MC_ERR_UNSUPPORTED, "conv2d: weight %s is too large for one GEMM", ws);
    return MC_OK;
}

/* 1x1, stride 1, no padding: x itself is the column matrix. */
static int is_direct_gemm(const mc_conv2d_geometry *geo) {
    const mc_conv2d_params *p = &geo->p;
    return geo->kh == 1 && geo->kw == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_h == 0 &&
           p->pad_w == 0;
}

/* How many output rows one chunk of columns holds.
 *
 * Speed: im2col writes the chunk and the GEMM reads it straight back, so a
 * chunk that fits in the L2 cache never goes to memory (measured on
 * ResNet-50's 7x7 stem: 65% of the bare sgemm rate with one 64 MiB chunk,
 * 98% with 1 MiB chunks). But every chunk's GEMM re-reads the whole packed
 * weight (OC x K), so a chunk keeps at least 2*OC rows: the weight traffic
 * then stays below the columns' (large-K layers such as layer4's 3x3 lost
 * 30% with 1 MiB chunks), and at least 256 rows keep the GEMM tall.
 * Memory: never more than column_budget bytes; at least one row; no more
 * than cblas's int can count. */
enum { CACHE_CHUNK_BYTES = 1 << 20, MIN_CHUNK_ROWS = 256 };

static int64_t rows_per_chunk(const mc_conv2d_geometry *geo, int64_t floats_per_row) {
    int64_t bytes_per_row = floats_per_row * (int64_t)sizeof(float);
    int64_t rows = CACHE_CHUNK_BYTES / bytes_per_row;
    if (rows < 2 * geo->oc) rows = 2 * geo->oc;
    if (rows < MIN_CHUNK_ROWS) rows = MIN_CHUNK_ROWS;
    int64_t budget_rows = (int64_t)column_budget / bytes_per_row;
    if (rows > budget_rows) rows = budget_rows;
    if (rows < 1) rows = 1;
    if (rows > INT_MAX / 2) rows = INT_MAX / 2;
    return rows < geo->rows ? rows : geo->rows;
}

/* The direct (1x1) path needs no buffer: chunk only so cblas's int can count. */
static int64_t direct_chunk(const mc_conv2d_geometry *geo) {
    return geo->rows < INT_MAX / 2 ? geo->rows : INT_MAX / 2;
}

/* ---- the naive reference: the definition, loop by loop ---- */

/* The element of x (N, H, W, C) that tap (i, j) of channel c of `group`
 * reads for output pixel (n, oy, ox), or -1 where the tap falls in the
 * padding. */
static int64_t naive_x_index(const mc_conv2d_geometry *geo, int64_t n, int64_t oy, int64_t ox,
                             int64_t group, int64_t c, int64_t i, int64_t j) {
    const mc_conv2d_params *p = &geo->p;
    int64_t iy = oy * p->stride_h - p->pad_h + i * p->dilation_h;
    int64_t ix = ox * p->stride_w - p->pad_w + j * p->dilation_w;
    if (iy < 0 || iy >= geo->h || ix < 0 || ix >= geo->w) return -1;
    return ((n * geo->h + iy) * geo->w + ix) * geo->c + group * geo->c_group + c;
}

/* x: (N, H, W, C), weight: (OC, C/g, KH, KW), bias: (OC) or NULL,
 * out: (N, OH, OW, OC). */
void mc_conv2d_forward_naive(const mc_conv2d_geometry *geo, const float *x,
                                 const float *weight, const float *bias, float *out) {
    for (int64_t n = 0; n < geo->n; n++)
        for (int64_t oy = 0; oy < geo->oh; oy++)
            for (int64_t ox = 0; ox < geo->ow; ox++)
                for (int64_t o = 0; o < geo->oc; o++) {
                    int64_t group = o / geo->oc_group;
                    double sum = bias ? bias[o] : 0.0;
                    for (int64_t c = 0; c < geo->c_group; c++)
                        for (int64_t i = 0; i < geo->kh; i++)
                            for (int64_t j = 0; j < geo->kw; j++) {
                                int64_t xi = naive_x_index(geo, n, oy, ox, group, c, i, j);
                                if (xi < 0) continue;
                                float wv = weight[((o * geo->c_group + c) * geo->kh + i) * geo->kw + j];
                                sum += (double)x[xi] * wv;
                            }
                    out[((n * geo->oh + oy) * geo->ow + ox) * geo->oc + o] = (float)sum;
                }
}

/* dout: (N, OH, OW, OC); adds into dx (N, H, W, C), dweight (OC, C/g, KH, KW),
 * dbias (OC), each optional. */
void mc_conv2d_backward_naive(const mc_conv2d_geometry *geo, const float *x,
                                  const float *weight, const float *dout, float *dx,
                                  float *dweight, float *dbias) {
    for (int64_t n = 0; n < geo->n; n++)
        for (int64_t oy = 0; oy < geo->oh; oy++)
            for (int64_t ox = 0; ox < geo->ow; ox++)
                for (int64_t o = 0; o < geo->oc; o++) {
                    int64_t group = o / geo->oc_group;
                    float d = dout[((n * geo->oh + oy) * geo->ow + ox) * geo->oc + o];
                    if (dbias) dbias[o] += d;
                    for (int64_t c = 0; c < geo->c_group; c++)
                        for (int64_t i = 0; i < geo->kh; i++)
                            for (int64_t j = 0; j < geo->kw; j++) {
                                int64_t xi = naive_x_index(geo, n, oy, ox, group, c, i, j);
                                if (xi < 0) continue;
                                int64_t wi = ((o * geo->c_group + c) * geo->kh + i) * geo->kw + j;
                                if (dx) dx[xi] += d * weight[wi];
                                if (dweight) dweight[wi] += d * x[xi];
                            }
                }
}

/* ---- the fast path's pieces ---- */

/* weight: (OC, C/g, KH, KW) -> packed: (OC, KH, KW, C/g), the row order of
 * the columns: a (C/g x KH*KW) -> (KH*KW x C/g) transpose per output
 * channel. Taps outer, channels inner, so that the writes are contiguous
 * (measured about 2x faster than the reverse order for 512x512x3x3). */
MC_VECTOR_CLONES
static void pack_weight(const mc_conv2d_geometry *geo, const float *weight, float *packed) {
    const int64_t taps = geo->kh * geo->kw, cg = geo->c_group;
#pragma omp parallel for schedule(static) if (geo->oc * geo->k_group >= MC_PARALLEL_MIN_WORK)
    for (int64_t o = 0; o < geo->oc; o++) {
        const float *src = weight + o * cg * taps; /* (C/g, taps) */
        float *dst = packed + o * taps * cg;       /* (taps, C/g) */
        for (int64_t t = 0; t < taps; t++)
            for (int64_t c = 0; c < cg; c++) dst[t * cg + c] = src[c * taps + t];
    }
}

/* The inverse, adding: packed: (OC, KH, KW, C/g) -> dweight: (OC, C/g, KH, KW). */
MC_VECTOR_CLONES
static void unpack_add_weight(const mc_conv2d_geometry *geo, const float *packed, float *dweight) {
    const int64_t taps = geo->kh * geo->kw, cg = geo->c_group;
#pragma omp parallel for schedule(static) if (geo->oc * geo->k_group >= MC_PARALLEL_MIN_WORK)
    for (int64_t o = 0; o < geo->oc; o++) {
        const float *src = packed + o * taps * cg; /* (taps, C/g) */
        float *dst = dweight + o * cg * taps;      /* (C/g, taps) */
        for (int64_t t = 0; t < taps; t++)
            for (int64_t c = 0; c < cg; c++) dst[c * taps + t] += src[t * cg + c];
    }
}

/* The taps j of one kernel row that land inside the image, [*j_first,
 * *j_end), for output column ox. Outside them is zero padding. */
static void valid_taps(const mc_conv2d_geometry *geo, int64_t ox, int64_t *j_first, int64_t *j_end) {
    const mc_conv2d_params *p = &geo->p;
    int64_t left = ox * p->stride_w - p->pad_w; /* ix of tap j is left + j*dilation */
    int64_t first = 0, end = geo->kw;
    while (first < end && left + first * p->dilation_w < 0) first++;
    while (end > first && left + (end - 1) * p->dilation_w >= geo->w) end--;
    *j_first = first;
    *j_end = end;
}

/* With one group and no horizontal dilation, the taps of one kernel row are
 * consecutive pixels of x, and NHWC makes them ONE contiguous run of
 * (taps * C) floats, which is also contiguous in the column row: one memcpy
 * (or one add loop) per kernel row instead of one per tap. */
static int taps_are_contiguous(const mc_conv2d_geometry *geo) {
    return geo->groups == 1 && geo->p.dilation_w == 1;
}

/* Unaligned vectors of 16 and 4 floats (GCC's vector types may alias
 * floats): one zmm in the AVX-512 clone, SSE registers in the baseline. */
typedef float floats16 __attribute__((vector_size(64), aligned(4)));
typedef float floats4 __attribute__((vector_size(16), aligned(4)));

/* to[0, n) = from[0, n), the ranges apart. WHY NOT memcpy: im2col copies
 * one short run per kernel row (the stem's: 7 taps x 3 channels, 84
 * bytes), millions of them per step, and the library call with its size
 * dispatch cost as much as the copy (perf, ResNet-50's stem at batch 100:
 * memcpy and memset a fifth of the stem's time). Whole vectors, the last
 * one overlapping the one before (the same values stored twice). */
static inline void copy_floats(float *to, const float *from, int64_t n) {
    if (n >= 16) {
        for (int64_t k = 0; k < n - 16; k += 16) *(floats16 *)(to + k) = *(const floats16 *)(from + k);
        *(floats16 *)(to + n - 16) = *(const floats16 *)(from + n - 16);
    } else if (n >= 4) {
        for (int64_t k = 0; k < n - 4; k += 4) *(floats4 *)(to + k) = *(const floats4 *)(from + k);
        *(floats4 *)(to + n - 4) = *(const floats4 *)(from + n - 4);
    } else {
        for (int64_t k = 0; k < n; k++) to[k] = from[k];
    }
}

/* The receptive field of output row `row` into its column row at dst:
 * K_total values laid out (group, kh, kw, c in group), taps outside the
 * image zero padding. round NULL: floats, copied; else bf16 values,
 * rounded by `round` a run of taps at a time (see im2col_bf16).
 * x: (N, H, W, C); dst: (K_total). */
static inline void gather_row(const mc_conv2d_geometry *geo, const float *x, int64_t row,
                              void *dst_row, mc_bf16_bits_fn round) {
    const mc_conv2d_params *p = &geo->p;
    const int64_t cg = geo->c_group;
    const int contiguous = taps_are_contiguous(geo);
    const size_t value_bytes = round ? sizeof(uint16_t) : sizeof(float);
    int64_t n = row / (geo->oh * geo->ow);
    int64_t oy = row / geo->ow % geo->oh, ox = row % geo->ow;
    int64_t left = ox * p->stride_w - p->pad_w, j_first, j_end;
    valid_taps(geo, ox, &j_first, &j_end);
    for (int64_t g = 0; g < geo->groups; g++)
        for (int64_t i = 0; i < geo->kh; i++) {
            /* this kernel row's part of the column row: kw * cg values */
            char *dst = (char *)dst_row + (size_t)(g * geo->k_group + i * geo->kw * cg) * value_bytes;
            int64_t iy = oy * p->stride_h - p->pad_h + i * p->dilation_h;
            if (iy < 0 || iy >= geo->h || j_first >= j_end) {
                memset(dst, 0, (size_t)(geo->kw * cg) * value_bytes);
                continue;
            }
            const float *line = x + (n * geo->h + iy) * geo->w * geo->c + g * cg;
            if (j_first > 0) memset(dst, 0, (size_t)(j_first * cg) * value_bytes);
            /* one run of the taps [j_first, j_end) when contiguous, else one per tap */
            for (int64_t j = j_first; j < j_end; j++) {
                const float *from = line + (left + j * p->dilation_w) * geo->c;
                const int64_t n_values = (contiguous ? j_end - j_first : 1) * cg;
                char *to = dst + (size_t)(j * cg) * value_bytes;
                if (round) round(from, n_values, (uint16_t *)to);
                else copy_floats((float *)to, from, n_values);
                if (contiguous) break;
            }
            if (j_end < geo->kw)
                memset(dst + (size_t)(j_end * cg) * value_bytes, 0,
                       (size_t)((geo->kw - j_end) * cg) * value_bytes);
        }
}

/* Column rows of at most this many values are gathered in floats on the
 * stack and rounded in one call (8 KiB). */
enum { ROUNDED_ROW_MAX = 2048 };

/* Gather the receptive fields of output rows [row0, row0 + count) into
 * columns: (count, K_total), floats (round NULL) or bf16 values rounded by
 * `round` (see im2col_bf16). x: (N, H, W, C).
 * WHY A ROW IN FLOATS FIRST: rounded run by run, the stem's rows are 7
 * calls of 21 values each, each mostly a call and a masked tail (about
 * 14 ns a run against 26 for a whole row of 147); short rows are gathered
 * in floats and rounded whole. */
MC_VECTOR_CLONES
static void gather_columns(const mc_conv2d_geometry *geo, const float *x, int64_t row0,
                           int64_t count, void *columns, mc_bf16_bits_fn round) {
    const int64_t k_total = geo->k_total;
#pragma omp parallel for schedule(static) if (count * k_total >= MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < count; r++) {
        if (!round) {
            gather_row(geo, x, row0 + r, (float *)columns + r * k_total, NULL);
        } else if (k_total <= ROUNDED_ROW_MAX) {
            float floats[ROUNDED_ROW_MAX];
            gather_row(geo, x, row0 + r, floats, NULL);
            round(floats, k_total, (uint16_t *)columns + r * k_total);
        } else {
            gather_row(geo, x, row0 + r, (uint16_t *)columns + r * k_total, round);
        }
    }
}

/* The strip [k0, k1) of the column rows of output rows [row0, row0 + count),
 * as gather_columns would write them (fp32): the part of the columns that
 * one thread multiplies in weight_grad_by_strips. Only where the taps are
 * contiguous (one group, no horizontal dilation): a kernel row's part of a
 * column row is then zeros, one run of x's line, zeros, and the strip takes
 * a slice of each. x: (N, H, W, C); strip: (count, k1 - k0). */
MC_VECTOR_CLONES
static void gather_column_strip(const mc_conv2d_geometry *geo, const float *x, int64_t row0,
                                int64_t count, int64_t k0, int64_t k1, float *strip) {
    const mc_conv2d_params *p = &geo->p;
    const int64_t c = geo->c, width = k1 - k0, kernel_row = geo->kw * c;
    for (int64_t r = 0; r < count; r++) {
        const int64_t row = row0 + r, n = row / (geo->oh * geo->ow);
        const int64_t oy = row / geo->ow % geo->oh, ox = row % geo->ow;
        int64_t j_first, j_end;
        valid_taps(geo, ox, &j_first, &j_end);
        for (int64_t i = k0 / kernel_row; i * kernel_row < k1; i++) {
            /* this kernel row's columns inside the strip, as offsets in the kernel row */
            const int64_t lo = (k0 > i * kernel_row ? k0 : i * kernel_row) - i * kernel_row;
            const int64_t hi = (k1 < (i + 1) * kernel_row ? k1 : (i + 1) * kernel_row) - i * kernel_row;
            float *to = strip + r * width + (i * kernel_row + lo - k0);
            const int64_t iy = oy * p->stride_h - p->pad_h + i * p->dilation_h;
            /* the values of x at offsets [data_lo, data_hi) of the kernel row; zeros around */
            int64_t data_lo = j_first * c, data_hi = j_end * c;
            if (iy < 0 || iy >= geo->h || j_first >= j_end) data_lo = data_hi = hi;
            if (data_lo < lo) data_lo = lo;
            if (data_hi > hi) data_hi = hi;
            if (data_lo > data_hi) data_lo = data_hi = hi;
            memset(to, 0, (size_t)(data_lo - lo) * sizeof(float));
            if (data_hi > data_lo) { /* offset t of the kernel row: x's line at pixel left, + t */
                const int64_t at = ((n * geo->h + iy) * geo->w + ox * p->stride_w - p->pad_w) * c;
                copy_floats(to + (data_lo - lo), x + (at + data_lo), data_hi - data_lo);
            }
            memset(to + (data_hi - lo), 0, (size_t)(hi - data_hi) * sizeof(float));
        }
    }
}

/* columns: (count, K_total) floats. */
static void im2col(const mc_conv2d_geometry *geo, const float *x, int64_t row0, int64_t count,
                   float *columns) {
    gather_columns(geo, x, row0, count, columns, NULL);
}

/* The same columns in bf16, rounded as the bf16 GEMM's packing would round
 * them (mc_bf16_bits_of_products): the product from them equals, bit for
 * bit, the product that packs fp32 columns, while im2col writes half the
 * bytes and the packing only rearranges. columns: (count, K_total) bf16.
 * Called only where geo->weight_bf16 or geo->gather_bf16 is set, which
 * happens only where our AVX-512 kernel runs the bf16 products: the
 * rounding function is then never NULL. */
static void im2col_bf16(const mc_conv2d_geometry *geo, const float *x, int64_t row0,
                        int64_t count, uint16_t *columns) {
    gather_columns(geo, x, row0, count, columns, mc_bf16_bits_of_products());
}

/* The adjoint of im2col for rows [row0, row0 + count): add every column
 * entry onto the input pixel it was gathered from. Windows of neighbouring
 * output pixels overlap, so threads split the work by IMAGE: all rows of one
 * image are scattered by one thread, in row order (race-free, and the sums
 * do not depend on the thread count).
 * columns: (count, K_total); dx: (N, H, W, C). */
MC_VECTOR_CLONES
static void col2im_add(const mc_conv2d_geometry *geo, const float *columns, int64_t row0,
                       int64_t count, float *dx) {
    const mc_conv2d_params *p = &geo->p;
    const int64_t cg = geo->c_group, plane = geo->oh * geo->ow;
    const int contiguous = taps_are_contiguous(geo);
    int64_t first_image = row0 / plane, last_image = (row0 + count - 1) / plane;
#pragma omp parallel for schedule(static) if (count * geo->k_total >= MC_PARALLEL_MIN_WORK)
    for (int64_t n = first_image; n <= last_image; n++) {
        int64_t begin = n * plane > row0 ? n * plane : row0;
        int64_t end = (n + 1) * plane < row0 + count ? (n + 1) * plane : row0 + count;
        for (int64_t row = begin; row < end; row++) {
            int64_t oy = row / geo->ow % geo->oh, ox = row % geo->ow;
            int64_t left = ox * p->stride_w - p->pad_w, j_first, j_end;
            valid_taps(geo, ox, &j_first, &j_end);
            for (int64_t g = 0; g < geo->groups; g++)
                for (int64_t i = 0; i < geo->kh; i++) {
                    int64_t iy = oy * p->stride_h - p->pad_h + i * p->dilation_h;
                    if (iy < 0 || iy >= geo->h) continue;
                    const float *src = columns + (row - row0) * geo->k_total + g * geo->k_group +
                                       i * geo->kw * cg;
                    float *line = dx + (n * geo->h + iy) * geo->w * geo->c + g * cg;
                    if (contiguous) {
                        float *run = line + (left + j_first) * geo->c;
                        const float *from = src + j_first * cg;
                        for (int64_t k = 0; k < (j_end - j_first) * cg; k++) run[k] += from[k];
                    } else {
                        for (int64_t j = j_first; j < j_end; j++) {
                            float *pixel = line + (left + j * p->dilation_w) * geo->c;
                            for (int64_t c = 0; c < cg; c++) pixel[c] += src[j * cg + c];
                        }
                    }
                }
        }
    }
}

/* out[rows, OC_g] (beta) += columns[rows, K_g] @ weight_g[OC_g, K_g]^T for
 * every group. columns: (rows, ld_columns) floats, or columns_bf16 in bf16
 * when not NULL (then geo->weight_bf16 is set), weight: (OC, K_g) (or
 * geo->weight_bf16 when set), out: (rows, OC). */
static mc_status gemm_forward(const mc_conv2d_geometry *geo, int64_t rows, const float *columns,
                              const uint16_t *columns_bf16, int64_t ld_columns,
                              const float *weight, float *out) {
    for (int64_t g = 0; g < geo->groups; g++) {
        const int64_t w_offset = g * geo->oc_group * geo->k_group;
        if (columns_bf16)
            MC_TRY(mc_gemm_bf16_ab(false, true, rows, geo->oc_group, geo->k_group, 1.0f,
                                   columns_bf16 + g * geo->k_group, ld_columns,
                                   geo->weight_bf16 + w_offset, geo->k_group, 0.0f,
                                   out + g * geo->oc_group, geo->oc));
        else if (geo->weight_bf16)
            MC_TRY(mc_gemm_bf16_b(false, true, rows, geo->oc_group, geo->k_group, 1.0f,
                                  columns + g * geo->k_group, ld_columns, geo->weight_bf16 + w_offset,
                                  geo->k_group, 0.0f, out + g * geo->oc_group, geo->oc));
        else
            mc_gemm(geo->precision, false, true, rows, geo->oc_group, geo->k_group, 1.0f,
                    columns + g * geo->k_group, ld_columns, weight + w_offset, geo->k_group, 0.0f,
                    out + g * geo->oc_group, geo->oc);
    }
    return MC_OK;
}

/* dweight_g[OC_g, K_g] += dout_g[rows, OC_g]^T @ columns_g[rows, K_g].
 * dout: (rows, OC), columns: (rows, ld_columns) floats, or columns_bf16
 * in bf16 when not NULL, dweight: (OC, K_g). */
static mc_status gemm_weight_grad(const mc_conv2d_geometry *geo, int64_t rows, const float *dout,
                                  const float *columns, const uint16_t *columns_bf16,
                                  int64_t ld_columns, float *dweight) {
    for (int64_t g = 0; g < geo->groups; g++) {
        float *dweight_g = dweight + g * geo->oc_group * geo->k_group;
        if (columns_bf16)
            MC_TRY(mc_gemm_bf16_b(true, false, geo->oc_group, geo->k_group, rows, 1.0f,
                                  dout + g * geo->oc_group, geo->oc,
                                  columns_bf16 + g * geo->k_group, ld_columns, 1.0f, dweight_g,
                                  geo->k_group));
        else
            mc_gemm(geo->precision, true, false, geo->oc_group, geo->k_group, rows, 1.0f,
                    dout + g * geo->oc_group, geo->oc, columns + g * geo->k_group, ld_columns,
                    1.0f, dweight_g, geo->k_group);
    }
    return MC_OK;
}

/* dcolumns_g[rows, K_g] = dout_g[rows, OC_g] @ weight_g[OC_g, K_g] (+ beta * dcolumns).
 * dout: (rows, OC), weight: (OC, K_g) (or geo->weight_bf16 when set),
 * dcolumns: (rows, ld_dcolumns). */
static mc_status gemm_input_grad(const mc_conv2d_geometry *geo, int64_t rows, const float *dout,
                                 const float *weight, float beta, float *dcolumns,
                                 int64_t ld_dcolumns) {
    for (int64_t g = 0; g < geo->groups; g++) {
        const int64_t w_offset = g * geo->oc_group * geo->k_group;
        if (geo->weight_bf16)
            MC_TRY(mc_gemm_bf16_b(false, false, rows, geo->k_group, geo->oc_group, 1.0f,
                                  dout + g * geo->oc_group, geo->oc, geo->weight_bf16 + w_offset,
                                  geo->k_group, beta, dcolumns + g * geo->k_group, ld_dcolumns));
        else
            mc_gemm(geo->precision, false, false, rows, geo->k_group, geo->oc_group, 1.0f,
                    dout + g * geo->oc_group, geo->oc, weight + w_offset, geo->k_group, beta,
                    dcolumns + g * geo->k_group, ld_dcolumns);
    }
    return MC_OK;
}

/* out: (rows, OC) += bias: (OC) on every row. */
MC_VECTOR_CLONES
static void add_bias(int64_t rows, int64_t oc, const float *bias, float *out) {
#pragma omp parallel for schedule(static) if (rows * oc >= MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < oc; o++) out[r * oc + o] += bias[o];
}

/* dbias: (OC) += column sums of dout: (rows, OC), accumulated in double. */
static mc_status add_bias_grad(mc_graph *g, int64_t rows, int64_t oc, const float *dout,
                               float *dbias) {
    double *sums;
    MC_TRY(mc_graph_alloc(g, (size_t)oc * sizeof(double), (void **)&sums));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < oc; o++) sums[o] += dout[r * oc + o];
    for (int64_t o = 0; o < oc; o++) dbias[o] += (float)sums[o];
    return MC_OK;
}

/* ---- forward ---- */

/* The im2col forward with the chunks dealt out to the threads.
 *
 * WHY: chunk by chunk, every chunk is two parallel regions (im2col, then
 * the product), each a sleep and a wake-up of the other threads under
 * OMP_WAIT_POLICY=PASSIVE, for little work: ResNet-50's stem at batch 100
 * is 58 chunks of 1783 x 64 x 147, some 0.1 ms each. Here one region
 * holds them all: each thread gathers its own chunks into its own columns
 * (staying in its cache) and multiplies them alone. A row of the output
 * depends only on its own columns and the weight, summed over K in the
 * same slices whichever rows share a product, so the result is bit for bit
 * that of the chunk-by-chunk loop, for any thread count. That holds for
 * any chunking, and the chunks are cut evenly, a multiple of `threads` of
 * them, each at most `chunk` rows, except where a bf16 product could split
 * K (mc_gemm_bf16_k_chunks: a K of 4096 and more, by a rule on M x N):
 * there the chunks are the loop's own, `chunk` rows each but the last,
 * dealt out as they come. In bf16 the columns are gathered in bf16
 * (im2col_bf16) and multiplied by the weight's bf16 copy.
 * packed: (OC, K_g) (pack_weight's; NULL in bf16), out: (rows, OC). */
static mc_status forward_chunks_per_thread(const mc_conv2d_geometry *geo, const float *x,
                                           const float *packed, int64_t chunk, int threads,
                                           float *out) {
    int64_t rows_each = chunk, chunks = (geo->rows + chunk - 1) / chunk;
    const bool k_may_split =
        geo->weight_bf16 && mc_gemm_bf16_k_chunks(1, geo->oc_group, geo->k_group) > 1;
    if (!k_may_split) chunks = mc_conv2d_chunks_for_threads(geo->rows, chunk, threads, &rows_each);
    /* floats per column row: bf16 values take half */
    const int64_t row_floats = geo->weight_bf16 ? (geo->k_total + 1) / 2 : geo->k_total;
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t row0;
        const int64_t count = mc_conv2d_chunk_span(geo->rows, rows_each, c, &row0);
        if (count == 0) continue;
        float *columns; /* this thread's */
        if (mc_scratch_reserve(&scratch_columns, rows_each * row_floats, "conv2d im2col columns",
                               &columns) != MC_OK) {
            failed = 1;
            continue;
        }
        uint16_t *columns_bf16 = geo->weight_bf16 ? (uint16_t *)columns : NULL;
        if (columns_bf16) im2col_bf16(geo, x, row0, count, columns_bf16);
        else im2col(geo, x, row0, count, columns);
        if (gemm_forward(geo, count, columns, columns_bf16, geo->k_total, packed,
                         out + row0 * geo->oc) != MC_OK)
            failed = 1;
    }
    if (failed)
        return mc_error(MC_ERR_NOMEM, "conv2d: no memory for the im2col columns or the products' "
                        "packing space");
    return MC_OK;
}

/* x: (N, H, W, C), weight: (OC, C/g, KH, KW), bias: (OC) or NULL
 * -> out: (N, OH, OW, OC), overwritten. */
static mc_status conv_forward_gemm(const mc_conv2d_geometry *geo, const float *x,
                                   const float *weight, float *out) {
    if (is_direct_gemm(geo)) {
        int64_t chunk = direct_chunk(geo);
        for (int64_t row0 = 0; row0 < geo->rows; row0 += chunk) {
            int64_t count = geo->rows - row0 < chunk ? geo->rows - row0 : chunk;
            MC_TRY(gemm_forward(geo, count, x + row0 * geo->c, NULL, geo->c, weight,
                                out + row0 * geo->oc));
        }
        return MC_OK;
    }
    float *packed = NULL, *columns;
    if (!geo->weight_bf16) {
        MC_TRY(mc_scratch_reserve(&scratch_packed_weight, geo->oc * geo->k_group, "conv2d packed weight", &packed));
        pack_weight(geo, weight, packed);
    }
    int64_t chunk = rows_per_chunk(geo, geo->k_total);
    /* Chunks enough for every thread (and products on our kernel, which
     * runs one thread inside a parallel region): one region for all. fp32,
     * or bf16 products with the weight's bf16 copy. */
    const int threads = mc_get_num_threads();
    if ((geo->precision == MC_PRECISION_FP32 || geo->weight_bf16) && threads > 1 &&
        !mc_inside_parallel_region() && mc_gemm_is_ours() &&
        (geo->rows + chunk - 1) / chunk >= threads)
        return forward_chunks_per_thread(geo, x, packed, chunk, threads, out);
    MC_TRY(mc_scratch_reserve(&scratch_columns, chunk * geo->k_total, "conv2d im2col columns", &columns));
    /* bf16: the columns gathered straight into bf16 (the weight is already) */
    uint16_t *columns_bf16 = geo->weight_bf16 ? (uint16_t *)columns : NULL;
    for (int64_t row0 = 0; row0 < geo->rows; row0 += chunk) {
        int64_t count = geo->rows - row0 < chunk ? geo->rows - row0 : chunk;
        if (columns_bf16) im2col_bf16(geo, x, row0, count, columns_bf16);
        else im2col(geo, x, row0, count, columns);
        MC_TRY(gemm_forward(geo, count, columns, columns_bf16, geo->k_total, packed,
                            out + row0 * geo->oc));
    }
    return MC_OK;
}

/* x: (N, H, W, C), weight: (OC, C/g, KH, KW), bias: (OC) or NULL
 * -> out: (N, OH, OW, OC), overwritten. */
mc_status mc_conv2d_forward_kernel(const mc_conv2d_geometry *geo, const float *x,
                                   const float *weight, const float *bias, float *out) {
    if (mc_conv2d_winograd_applies(geo)) /* 3x3 stride 1: conv_winograd.c */
        return mc_conv2d_winograd_forward(geo, x, weight, bias, out);
    MC_TRY(conv_forward_gemm(geo, x, weight, out));
    if (bias) add_bias(geo->rows, geo->oc, bias, out);
    return MC_OK;
}

/* ---- backward ---- */

/* dout: (N, OH, OW, OC); adds into dx: (N, H, W, C) and dweight:
 * (OC, C/g, KH, KW), either may be NULL. */
static mc_status conv_backward_direct(const mc_conv2d_geometry *geo, const float *x,
                                      const float *weight, const float *dout, float *dx,
                                      float *dweight) {
    /* 1x1: the PyTorch weight layout is the packed one; x is the columns. */
    int64_t chunk = direct_chunk(geo);
    for (int64_t row0 = 0; row0 < geo->rows; row0 += chunk) {
        int64_t count = geo->rows - row0 < chunk ? geo->rows - row0 : chunk;
        const float *dout_chunk = dout + row0 * geo->oc;
        if (dweight)
            MC_TRY(gemm_weight_grad(geo, count, dout_chunk, x + row0 * geo->c, NULL, geo->c,
                                    dweight));
        if (dx) MC_TRY(gemm_input_grad(geo, count, dout_chunk, weight, 1.0f, dx + row0 * geo->c, geo->c));
    }
    return MC_OK;
}

/* ---- the bf16 weight gradient in groups of rows ----
 *
 * WHY: the weight gradient is a product over all output rows (K = batch x
 * output pixels) into the small weight; chunk by chunk (rows_per_chunk),
 * each chunk's product (layer1's 3x3: 64 x 576 over 455 rows) is too small
 * to share among the threads well: each thread packs the chunk's whole
 * dout for its strip of the weight, and every chunk is one more parallel
 * region. Here the chunks are dealt out in a fixed number of groups of
 * consecutive rows: each group's chunks are gathered and multiplied by one
 * thread into the group's own partial gradient (the columns staying in
 * that thread's cache, as before), and the partials are added in group
 * order. The groups depend on the shape (and the column budget) only, so
 * the result is the same for any thread count. Only where the weight is
 * small (the partials cost a pass over it each) and there are enough
 * chunks to share. */
enum { WEIGHT_GRAD_MAX_GROUPS = 8 };
static const int64_t WEIGHT_GRAD_MAX_GROUPED = 1 << 18; /* weight elements */

/* How many groups of rows the bf16 weight gradient takes for `chunks`
 * chunks: a power of two (an even share for 2, 4 or 8 threads), each
 * group at least two chunks; 1: the chunks in one loop. */
static int64_t weight_grad_groups(const mc_conv2d_geometry *geo, int64_t chunks) {
    if (geo->oc * geo->k_group > WEIGHT_GRAD_MAX_GROUPED) return 1;
    int64_t groups = 1;
    while (groups < WEIGHT_GRAD_MAX_GROUPS && 2 * (2 * groups) <= chunks) groups *= 2;
    return groups;
}

/* packed_dweight (OC, K_g) = dout^T @ columns over all rows, in bf16,
 * columns gathered chunk by chunk, in weight_grad_groups groups of chunks
 * (see above). x: (N, H, W, C), dout: (rows, OC); packed_dweight is
 * overwritten. */
static mc_status weight_grad_bf16_grouped(const mc_conv2d_geometry *geo, const float *x,
                                          const float *dout, int64_t chunk, int64_t groups,
                                          float *packed_dweight) {
    const int64_t chunks = (geo->rows + chunk - 1) / chunk, size = geo->oc * geo->k_group;
    float *partials = NULL;
    if (groups > 1)
        MC_TRY(mc_scratch_reserve(&scratch_dweight_partials, (groups - 1) * size,
                                  "conv2d partial weight gradients", &partials));
    int threads = mc_get_num_threads();
    if (threads > groups) threads = (int)groups;
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1) reduction(| : failed)
    for (int64_t group = 0; group < groups; group++) {
        /* the first group's gradient goes straight to packed_dweight */
        float *dweight = group == 0 ? packed_dweight : partials + (group - 1) * size;
        memset(dweight, 0, (size_t)size * sizeof(float));
        float *columns; /* this thread's: the bf16 columns of one chunk */
        if (mc_scratch_reserve(&scratch_columns, chunk * ((geo->k_total + 1) / 2),
                               "conv2d im2col columns", &columns) != MC_OK) {
            failed = 1;
            continue;
        }
        for (int64_t c = chunks * group / groups; c < chunks * (group + 1) / groups; c++) {
            const int64_t row0 = c * chunk, count = geo->rows - row0 < chunk ? geo->rows - row0 : chunk;
            im2col_bf16(geo, x, row0, count, (uint16_t *)columns);
            if (gemm_weight_grad(geo, count, dout + row0 * geo->oc, NULL, (uint16_t *)columns,
                                 geo->k_total, dweight) != MC_OK)
                failed = 1;
        }
    }
    if (failed) return mc_error(MC_ERR_NOMEM, "conv2d: no memory for the bf16 weight gradient");
    for (int64_t group = 1; group < groups; group++) {
        const float *partial = partials + (group - 1) * size;
        for (int64_t i = 0; i < size; i++) packed_dweight[i] += partial[i];
    }
    return MC_OK;
}

/* ---- the fp32 weight gradient in strips of the weight ----
 *
 * WHY: chunk by chunk, the weight gradient is two parallel regions per
 * chunk (im2col, then the product shared by strips of the weight), each a
 * sleep and a wake-up of the other threads, for little work: layer1's 3x3
 * at batch 100 is 57 chunks of 64 x 576 over 455 rows, ResNet-50's stem 58
 * of 64 x 147 over 1783; their products ran 1.15 and 1.01 times faster on
 * 2 threads than on 1 (MMCHAIN_PROFILE). Here one region holds them all:
 * each thread owns a strip of the weight's columns (a range of (kh, kw, c))
 * and, chunk by chunk, gathers only its strip of the columns and multiplies
 * the chunk's dout into its strip of the weight. The chunks, and so every
 * product's inner dimension and the order of the sums, are those of the
 * chunk-by-chunk loop, and a weight element's sums do not depend on which
 * columns share its product: the result is the loop's, bit for bit, for
 * any thread count.
 * (Groups of rows, as in bf16, would share better still, but change the
 * sums at float rounding: see docs/architecture.md.) Strips start at
 * multiples of 16 columns, one vector. fp32 only: bf16 products split K
 * by a rule on M x N (mc_gemm_bf16_k_chunks), so a strip's width could
 * change its sums. */
enum { STRIP_ALIGN = 16 };

static int64_t strip_start(int64_t k_total, int threads, int t) {
    int64_t k = (k_total * t / threads + STRIP_ALIGN / 2) / STRIP_ALIGN * STRIP_ALIGN;
    return t == threads ? k_total : k < k_total ? k : k_total;
}

/* packed_dweight (OC, K_total) += dout^T @ columns over all rows.
 * x: (N, H, W, C), dout: (rows, OC). One group, contiguous taps. */
static mc_status weight_grad_by_strips(const mc_conv2d_geometry *geo, const float *x,
                                       const float *dout, int64_t chunk, int threads,
                                       float *packed_dweight) {
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed)
    for (int t = 0; t < threads; t++) {
        const int64_t k0 = strip_start(geo->k_total, threads, t);
        const int64_t width = strip_start(geo->k_total, threads, t + 1) - k0;
        float *strip; /* this thread's */
        if (width == 0) continue;
        if (mc_scratch_reserve(&scratch_columns, chunk * width, "conv2d im2col columns", &strip) !=
            MC_OK) {
            failed = 1;
            continue;
        }
        for (int64_t row0 = 0; row0 < geo->rows; row0 += chunk) {
            const int64_t count = geo->rows - row0 < chunk ? geo->rows - row0 : chunk;
            gather_column_strip(geo, x, row0, count, k0, k0 + width, strip);
            mc_gemm(MC_PRECISION_FP32, true, false, geo->oc, width, count, 1.0f,
                    dout + row0 * geo->oc, geo->oc, strip, width, 1.0f, packed_dweight + k0,
                    geo->k_total);
        }
    }
    if (failed) return mc_error(MC_ERR_NOMEM, "conv2d: no memory for the im2col columns");
    return MC_OK;
}

static mc_status conv_backward_im2col(const mc_conv2d_geometry *geo, const float *x,
                                      const float *weight, const float *dout, float *dx,
                                      float *dweight) {
    float *packed = NULL, *packed_dweight = NULL, *columns;
    if (dx && !geo->weight_bf16) {
        MC_TRY(mc_scratch_reserve(&scratch_packed_weight, geo->oc * geo->k_group, "conv2d packed weight",
                               &packed));
        pack_weight(geo, weight, packed);
    }
    if (dweight)
        MC_TRY(mc_scratch_reserve(&scratch_packed_dweight, geo->oc * geo->k_group,
                               "conv2d packed weight gradient", &packed_dweight));
    if (dweight && geo->gather_bf16) { /* bf16: in groups of rows where that shares better */
        /* chunks of bf16 columns: half a float per value */
        const int64_t chunk = rows_per_chunk(geo, (geo->k_total + 1) / 2);
        const int64_t groups = weight_grad_groups(geo, (geo->rows + chunk - 1) / chunk);
        if (groups > 1) { /* overwrites packed_dweight: no zeroing first */
            MC_TRY(weight_grad_bf16_grouped(geo, x, dout, chunk, groups, packed_dweight));
            unpack_add_weight(geo, packed_dweight, dweight);
            if (!dx) return MC_OK;
            dweight = NULL;
        }
    }
    if (dweight) /* the chunks below add into it */
        memset(packed_dweight, 0, (size_t)(geo->oc * geo->k_group) * sizeof(float));
    int64_t chunk = rows_per_chunk(geo, geo->k_total);
    /* fp32 on our kernel at several threads: the weight gradient by strips */
    const int threads = mc_get_num_threads();
    if (dweight && geo->precision == MC_PRECISION_FP32 && threads > 1 &&
        !mc_inside_parallel_region() && mc_gemm_is_ours() && taps_are_contiguous(geo)) {
        MC_TRY(weight_grad_by_strips(geo, x, dout, chunk, threads, packed_dweight));
        unpack_add_weight(geo, packed_dweight, dweight);
        if (!dx) return MC_OK;
        dweight = NULL;
    }
    MC_TRY(mc_scratch_reserve(&scratch_columns, chunk * geo->k_total, "conv2d im2col columns", &columns));
    for (int64_t row0 = 0; row0 < geo->rows; row0 += chunk) {
        int64_t count = geo->rows - row0 < chunk ? geo->rows - row0 : chunk;
        const float *dout_chunk = dout + row0 * geo->oc;
        if (dweight && geo->gather_bf16) { /* bf16: the columns gathered in bf16 */
            uint16_t *columns_bf16 = (uint16_t *)columns;
            im2col_bf16(geo, x, row0, count, columns_bf16);
            MC_TRY(gemm_weight_grad(geo, count, dout_chunk, NULL, columns_bf16, geo->k_total,
                                    packed_dweight));
        } else if (dweight) {
            im2col(geo, x, row0, count, columns);
            MC_TRY(gemm_weight_grad(geo, count, dout_chunk, columns, NULL, geo->k_total,
                                    packed_dweight));
        }
        if (dx) { /* the same buffer now receives d(columns) */
            MC_TRY(gemm_input_grad(geo, count, dout_chunk, packed, 0.0f, columns, geo->k_total));
            col2im_add(geo, columns, row0, count, dx);
        }
    }
    if (dweight) unpack_add_weight(geo, packed_dweight, dweight);
    return MC_OK;
}

/* dout: (N, OH, OW, OC); adds into dx: (N, H, W, C) and dweight:
 * (OC, C/g, KH, KW), either may be NULL. */
mc_status mc_conv2d_backward_kernel(const mc_conv2d_geometry *geo, const float *x,
                                    const float *weight, const float *dout, float *dx,
                                    float *dweight) {
    if (!dx && !dweight) return MC_OK;
    if (is_direct_gemm(geo)) return conv_backward_direct(geo, x, weight, dout, dx, dweight);
    if (dx && mc_conv2d_winograd_applies(geo)) { /* dx by Winograd, dweight by im2col */
        MC_TRY(mc_conv2d_winograd_input_grad(geo, weight, dout, dx));
        dx = NULL;
        if (!dweight) return MC_OK;
    }
    return conv_backward_im2col(geo, x, weight, dout, dx, dweight);
}

typedef struct conv_saved {
    mc_conv2d_geometry geo;
} conv_saved;

/* pack_weight as an mc_weight_arrange_fn: the bf16 copy's order. */
static void arrange_weight(const void *geo, const float *weight, float *arranged) {
    pack_weight(geo, weight, arranged);
}

/* geo->weight_bf16 and geo->gather_bf16 for `weight` on a bf16 graph (NULL
 * and false otherwise). A 3x3 convolution run by Winograd gets no copy: its
 * forward and input gradient transform the fp32 weight and round the
 * transform where the products pack it, and its weight gradient (im2col)
 * does not read the weight. */
static mc_status attach_weight_bf16(mc_conv2d_geometry *geo, mc_tensor *weight) {
    geo->weight_bf16 = NULL;
    geo->gather_bf16 = geo->precision == MC_PRECISION_BF16 && mc_gemm_bf16_runs();
    if (geo->precision != MC_PRECISION_BF16 || mc_conv2d_winograd_applies(geo)) return MC_OK;
    /* A 1x1 kernel's (KH, KW, C/g) order is its stored (C/g, KH, KW) one:
     * rounded as stored, without a pass through an arranged float copy. */
    const mc_weight_arrange_fn arrange = geo->kh * geo->kw == 1 ? NULL : arrange_weight;
    return mc_weight_bf16(weight, arrange, geo, &geo->weight_bf16);
}

/* in: x (N, H, W, C), weight (OC, C/g, KH, KW), [bias (OC)];
 * out->grad: (N, OH, OW, OC). */
static mc_status conv2d_backward(mc_node *node) {
    const conv_saved *saved = node->saved;
    mc_conv2d_geometry geo_now = saved->geo, *geo = &geo_now;
    mc_tensor *x = node->in[0], *weight = node->in[1];
    MC_TRY(attach_weight_bf16(geo, weight)); /* the copy current now */
    mc_tensor *bias = node->n_in > 2 ? node->in[2] : NULL;
    const float *dout = node->out->grad;
    float *dx = NULL, *dweight = NULL, *dbias = NULL;
    if (x->requires_grad) MC_TRY(mc_grad_buffer(node->graph, x, &dx));
    if (weight->requires_grad) MC_TRY(mc_grad_buffer(node->graph, weight, &dweight));
    if (bias && bias->requires_grad) MC_TRY(mc_grad_buffer(node->graph, bias, &dbias));
    if (dbias) MC_TRY(add_bias_grad(node->graph, geo->rows, geo->oc, dout, dbias));
    return mc_conv2d_backward_kernel(geo, x->data, weight->data, dout, dx, dweight);
}

mc_status mc_conv2d(mc_graph *g, mc_tensor *x, mc_tensor *weight, mc_tensor *bias,
                    mc_conv2d_params params, mc_tensor **out) {
    *out = NULL;
    mc_conv2d_geometry geo;
    MC_TRY(mc_conv2d_geometry_of(x, weight, bias, params, &geo));
    geo.precision = mc_graph_precision(g); /* forward and backward alike */
    MC_TRY(attach_weight_bf16(&geo, weight));
    mc_tensor *y; /* the GEMMs (beta 0) write every element */
    MC_TRY(mc_graph_tensor_uninit(g, MC_SHAPE(geo.n, geo.oh, geo.ow, geo.oc), "conv2d", &y));
    MC_TRY(mc_conv2d_forward_kernel(&geo, x->data, weight->data, bias ? bias->data : NULL, y->data));

    mc_tensor *inputs[3] = {x, weight, bias};
    conv_saved saved = {.geo = geo};
    MC_TRY(mc_op_record_saved(g, "conv2d", conv2d_backward, y, bias ? 3 : 2, inputs, &saved,
                              sizeof saved));
    *out = y;
    return MC_OK;
}

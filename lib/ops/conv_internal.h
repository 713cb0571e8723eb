/* conv.c's internals, shared with its tests and its benchmark (not part of
 * the installed API): the geometry of one convolution, the fast kernels,
 * Winograd's switch and the workspace knobs. The naive reference kernels the
 * fast paths are tested against are in naive.h. */
#ifndef MMCHAIN_OPS_CONV_INTERNAL_H
#define MMCHAIN_OPS_CONV_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/scratch.h" /* relative: tests and benchmarks include this header by path */
#include "mmchain/ops.h"

/* Every size of one convolution, derived once from the tensors. */
typedef struct mc_conv2d_geometry {
    int64_t n, h, w, c;         /* input x (N, H, W, C) */
    int64_t oc, kh, kw;         /* weight (OC, C/groups, KH, KW) */
    int64_t oh, ow;             /* output (N, OH, OW, OC) */
    int64_t groups;
    int64_t c_group, oc_group;  /* C / groups, OC / groups */
    int64_t k_group;            /* KH*KW*C/groups: one group's GEMM inner dimension */
    int64_t k_total;            /* KH*KW*C: the length of one row of the column matrix */
    int64_t rows;               /* N*OH*OW: one GEMM row per output pixel */
    mc_conv2d_params p;
    mc_precision precision;     /* of the GEMMs' operands: the graph's (fp32 by default) */
    /* bf16 only: the weight in bf16, in the order (OC, KH, KW, C/g) the
     * columns' rows are in (a copy kept on the weight tensor, made once per
     * change of the weight: weight_bf16.h); NULL: the fp32 weight is
     * rearranged per call and rounded where it is packed. */
    const uint16_t *weight_bf16;
    /* bf16 products on our kernel (mc_gemm_bf16_runs): im2col gathers the
     * weight gradient's columns straight into bf16. Set with weight_bf16,
     * which a 3x3 convolution run by Winograd leaves NULL (nothing of it
     * reads the copy) while its weight gradient still gathers in bf16. */
    bool gather_bf16;
} mc_conv2d_geometry;

/* Check x, weight, bias (may be NULL) and params against each other and fill
 * *geo. MC_ERR_SHAPE / MC_ERR_ARG with a message naming the tensors. */
mc_status mc_conv2d_geometry_of(const mc_tensor *x, const mc_tensor *weight, const mc_tensor *bias,
                                mc_conv2d_params params, mc_conv2d_geometry *geo);

/* The fast path (im2col + GEMM, or one GEMM for 1x1 stride-1 unpadded),
 * without the graph: what mc_conv2d and its backward node run.
 * x: (N, H, W, C), weight: (OC, C/groups, KH, KW), bias: (OC) or NULL,
 * out: (N, OH, OW, OC), overwritten. */
mc_status mc_conv2d_forward_kernel(const mc_conv2d_geometry *geo, const float *x,
                                   const float *weight, const float *bias, float *out);
/* dout: (N, OH, OW, OC); ADDS into dx (N, H, W, C) and dweight
 * (OC, C/groups, KH, KW); either may be NULL. */
mc_status mc_conv2d_backward_kernel(const mc_conv2d_geometry *geo, const float *x,
                                    const float *weight, const float *dout, float *dx,
                                    float *dweight);


/* The fast path gathers at most this many bytes of im2col columns at once
 * (per thread, where threads gather chunks of their own) and processes
 * the batch in chunks of output rows beyond it. 0 restores
 * the default (64 MiB). Tests shrink it to exercise the chunking. */
void mc_conv2d_set_column_budget(size_t bytes);
/* conv keeps per-thread scratch buffers (columns, repacked weights) that
 * grow to the largest call and are reused; this frees the calling thread's.
 * Where the threads gather columns of their own (an fp32 forward with
 * chunks for every thread, the fp32 weight gradient by strips, the bf16
 * one by groups of rows), each worker keeps a column buffer of up to the
 * budget until it ends, so the columns can take threads x the budget;
 * likewise Winograd's tiles V and M where the threads take chunks of
 * tiles of their own (up to 64 MiB each). */
void mc_conv2d_release_workspace(void);

/* Where the threads take whole chunks of their own (im2col's fp32
 * forward, Winograd): `items` (rows, tiles) cut into a multiple of
 * `threads` chunks of at most `chunk` items each, as even as can be.
 * Returns how many chunks; *per_chunk: the items of each but the last
 * ones (some trailing chunks may be short or empty). */
static inline int64_t mc_conv2d_chunks_for_threads(int64_t items, int64_t chunk, int threads,
                                                   int64_t *per_chunk) {
    int64_t chunks = (items + chunk - 1) / chunk;
    chunks = (chunks + threads - 1) / threads * threads;
    *per_chunk = (items + chunks - 1) / chunks;
    return chunks;
}

/* Chunk c of such a cut, `per_chunk` items each: its first item in *first;
 * returns how many items it holds (0 for a chunk past the end). */
static inline int64_t mc_conv2d_chunk_span(int64_t items, int64_t per_chunk, int64_t c,
                                           int64_t *first) {
    *first = c * per_chunk;
    if (*first >= items) return 0;
    return items - *first < per_chunk ? items - *first : per_chunk;
}

/* ---- Winograd F(2x2, 3x3) (conv_winograd.c) ----
 * For 3x3, stride-1, padding-1, undilated, ungrouped convolutions the fast
 * path's forward and input gradient run by Winograd's minimal filtering
 * (2.25x fewer multiplies), on bf16 graphs with bf16 operands in its 16
 * products; the weight gradient keeps im2col + GEMM. */

enum {
    MC_WINOGRAD_OFF = 0,
    MC_WINOGRAD_ALWAYS = 1,     /* every such conv, however small (tests) */
    MC_WINOGRAD_ENOUGH_TILES = 2, /* at least 64 tiles of 2x2 outputs (128 on bf16
                                     graphs): what "on" means */
    MC_WINOGRAD_FP32_ONLY = 3,  /* ENOUGH_TILES on fp32 graphs; bf16 graphs keep im2col */
};
/* 1 when geo is such a convolution and the mode selects it. */
int mc_conv2d_winograd_applies(const mc_conv2d_geometry *geo);
/* The mode: MMCHAIN_CONV_WINOGRAD=0 -> OFF, =fp32 -> FP32_ONLY, any other
 * value -> ENOUGH_TILES (read once); unset -> the default in
 * conv_winograd.c. */
int mc_conv2d_winograd_enabled(void);
/* Force a mode (tests, benchmarks); -1 returns to the environment's choice. */
void mc_conv2d_set_winograd(int mode);
/* Process at most this many tiles per chunk (tests: exercise the chunking);
 * 0 restores the automatic size. */
void mc_conv2d_set_winograd_chunk_tiles(int64_t tiles);
/* x: (N, H, W, C), weight: (OC, C, 3, 3), bias: (OC) or NULL,
 * out: (N, H, W, OC), overwritten. geo must satisfy the conditions above
 * (the switch aside). */
mc_status mc_conv2d_winograd_forward(const mc_conv2d_geometry *geo, const float *x,
                                     const float *weight, const float *bias, float *out);
/* dout: (N, H, W, OC), weight: (OC, C, 3, 3); ADDS into dx: (N, H, W, C). */
mc_status mc_conv2d_winograd_input_grad(const mc_conv2d_geometry *geo, const float *weight,
                                        const float *dout, float *dx);
/* Frees the calling thread's Winograd scratch buffers (called by
 * mc_conv2d_release_workspace). */
void mc_conv2d_winograd_release_workspace(void);

#endif

/* conv2d by Winograd's minimal filtering, F(2x2, 3x3), for the 3x3,
 * stride-1, padding-1, undilated, ungrouped convolutions that carry about
 * half of ResNet-50's FLOPs (Lavin & Gray 2016, "Fast Algorithms for
 * Convolutional Neural Networks", section 4).
 *
 * One 2x2 block of outputs needs a 4x4 patch ("tile") of input. With
 *     g: one 3x3 kernel, d: one 4x4 input tile,
 *     U = G g G^T, V = B^T d B          (both 4x4)
 *     Y = A^T [U (.) V] A               (2x2; (.) is elementwise)
 * Y equals the 2x2 cross-correlation outputs: 16 multiplies instead of 36,
 * 2.25x fewer. Summing over input channels commutes with A^T . A, so each
 * of the 16 positions k of the elementwise product becomes one GEMM over
 * channels:
 *     M_k[tiles, OC] = V_k[tiles, C] @ U_k[C, OC]       (k = 0..15)
 * and the output transform A^T M A runs once per tile and output channel.
 *
 * Layouts: U (16, C, OC), computed once per call from the PyTorch weight;
 * V (16, tiles, C) and M (16, tiles, OC) for one chunk of tiles. Tiles step
 * by 2 over the padded input; every tile of the batch (N * ceil(H/2) *
 * ceil(W/2)) is one GEMM row, processed in chunks so that V and M stay
 * small. Outputs of the last tile row/column beyond an odd H/W are dropped.
 *
 * The input gradient of a stride-1, padding-1 3x3 conv is the same kind of
 * conv on dY, with the kernel flipped spatially and its channel axes
 * swapped: dX[c] = sum_o dY[o] (*) flip(w[o][c]). So it reuses the whole
 * pipeline; only the weight transform reads the weight differently.
 *
 * Numerics: the transforms have entries 0, +-1, +-1/2, so in fp32 the
 * rounding error stays close to direct convolution's (measured in the
 * tests). On a bf16 graph the 16 products take U and V as bf16 operands
 * (rounded after the transforms) with fp32 sums; the transforms stay fp32.
 * Its error bound is looser than im2col's in bf16: see
 * mc_conv2d_winograd_applies. */
#include "ops/conv_internal.h"
#include "ops/gemm_internal.h"
#include "core/vector_clones.h"
#include "core/parallel.h"
#include "mmchain/threads.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- the switch ---- */

/* -1: not decided yet (read MMCHAIN_CONV_WINOGRAD once), else one of
 * MC_WINOGRAD_OFF / _ALWAYS / _ENOUGH_TILES / _FP32_ONLY. */
static atomic_int winograd_mode = -1;
/* Used when the environment variable is unset. On by default: measured
 * (bench_resnet, one thread, images per CPU-second, two runs each, OFF -> ON)
 * eval32 145.6/147.9 -> 151.1/154.8, train100 43.8/43.9 -> 44.8/45.3;
 * bench_conv at 224x224, forward GFLOP/s-equivalent, layer1..3 3x3:
 * 100/109/108 -> 113/142/150. Those runs predate the vectorised transforms
 * and the tile-count rule below, which only widened Winograd's lead. */
enum { WINOGRAD_DEFAULT = MC_WINOGRAD_ENOUGH_TILES };

void mc_conv2d_set_winograd(int mode) {
    int known = mode >= MC_WINOGRAD_OFF && mode <= MC_WINOGRAD_FP32_ONLY;
    atomic_store(&winograd_mode, known ? mode : -1);
}

int mc_conv2d_winograd_enabled(void) {
    int mode = atomic_load(&winograd_mode);
    if (mode < 0) {
        const char *env = getenv("MMCHAIN_CONV_WINOGRAD");
        if (!env || !env[0]) mode = WINOGRAD_DEFAULT;
        else if (strcmp(env, "0") == 0) mode = MC_WINOGRAD_OFF;
        else if (strcmp(env, "fp32") == 0) mode = MC_WINOGRAD_FP32_ONLY;
        else mode = MC_WINOGRAD_ENOUGH_TILES;
        atomic_store(&winograd_mode, mode);
    }
    return mode;
}

/* Convolutions of fewer tiles (N * ceil(H/2) * ceil(W/2) 2x2 output
 * blocks) stay on im2col + GEMM: the weight transform (16 * C * OC values)
 * and the packing of U in each of the 16 products cost the same however
 * few tiles there are, while the multiplies saved shrink with them.
 * Measured (one thread, CPU time, both directions, 3x3 convs of 512
 * channels on 2x2 maps): 8 tiles 2.7 ms by im2col against 3.7 by Winograd,
 * 32 tiles about even (5.4 / 5.1), 100 tiles 14.0 / 9.2; 256 channels on
 * 4x4 maps, 128 tiles: 4.3 / 2.7; 512 channels on 7x7 maps (a quarter of
 * the last tiles' outputs dropped), 128 tiles: 14.0 / 10.9. The side of
 * the map does not matter by itself: before the weight transform ran on
 * vectors, maps under 8x8 were left to im2col, which the transform's cost
 * then decided. */
enum { MIN_WINOGRAD_TILES = 64 };
/* On a bf16 graph im2col's products run at twice the rate while the
 * transforms do not speed up, so the crossover moves up. Measured (one
 * thread, CPU time, forward and input gradient on a bf16 graph, median of
 * 9, Winograd / im2col): 512 channels on 2x2 maps, 64 tiles 13.0 / 10.3 ms,
 * 100 tiles 14.5 / 14.7; 256 channels on 4x4 maps, 64 tiles 3.3 / 3.0,
 * 128 tiles 6.0 / 6.0, 400 tiles 14.2 / 17.6; 128 channels on 8x8 maps,
 * 512 tiles 6.9 / 7.7, 1600 tiles 20.8 / 25.0; 64 channels on 16x16 maps,
 * 6400 tiles 34.7 / 37.2. */
enum { MIN_WINOGRAD_TILES_BF16 = 128 };

int mc_conv2d_winograd_applies(const mc_conv2d_geometry *geo) {
    const mc_conv2d_params *p = &geo->p;
    int shape_fits = geo->kh == 3 && geo->kw == 3 && p->stride_h == 1 && p->stride_w == 1 &&
                     p->pad_h == 1 && p->pad_w == 1 && p->dilation_h == 1 &&
                     p->dilation_w == 1 && geo->groups == 1;
    if (!shape_fits) return 0;
    /* bf16 graphs too (U and V rounded to bf16 where the products pack
     * them, fp32 sums, transforms in fp32). bf16 doubles the rate of the
     * 16 products as it does im2col's, while the transforms stay fp32
     * passes over memory, so Winograd's lead shrinks but stays from about
     * 128 tiles on: 7 to 20 % less time than bf16 im2col for the 3x3
     * convs of ResNet-50's layer1 to layer3 at 64x64, batch 100
     * (MIN_WINOGRAD_TILES_BF16 has the numbers; in a perf profile of
     * layer1's forward the transforms and the packing of V take about 58 %
     * of the time, the products' micro-kernel 27 %). The
     * price is accuracy: U and V are sums of up to 9 weights (times 1/4)
     * and 4 inputs, rounded after the sum, so an output's error
     * is bounded by 2^-7 of the pipeline run on absolute values, which for
     * inputs of one magnitude is up to 12.25 times the sum |x||w| that
     * bounds bf16 im2col's error; measured on random data, the maximum
     * error relative to sum |x||w| is 1.7 to 2.6 times im2col's and the
     * normwise error about twice (3.9e-3 against 2.0e-3). Derived and
     * checked in tests/test_ops_bf16.c. MC_WINOGRAD_FP32_ONLY
     * (MMCHAIN_CONV_WINOGRAD=fp32) keeps bf16 graphs on im2col. */
    const int64_t tiles = geo->n * ((geo->h + 1) / 2) * ((geo->w + 1) / 2);
    /* A bf16 graph whose products fall back to fp32 (no AVX-512, OpenBLAS)
     * is an fp32 convolution: fp32's threshold, fp32's results. */
    const int bf16 = geo->precision == MC_PRECISION_BF16 && mc_gemm_bf16_runs();
    switch (mc_conv2d_winograd_enabled()) {
    case MC_WINOGRAD_ALWAYS: return 1;
    case MC_WINOGRAD_ENOUGH_TILES:
        return tiles >= (bf16 ? MIN_WINOGRAD_TILES_BF16 : MIN_WINOGRAD_TILES);
    case MC_WINOGRAD_FP32_ONLY: return !bf16 && tiles >= MIN_WINOGRAD_TILES;
    default: return 0;
    }
}

/* ---- scratch memory and chunking ---- */

enum { POSITIONS = 16 }; /* 4x4 entries of one transformed tile */

static _Thread_local mc_scratch scratch_u;     /* (16, C, OC) */
static _Thread_local mc_scratch scratch_v;     /* (16, chunk, C) */
static _Thread_local mc_scratch scratch_m;     /* (16, chunk, OC) */
static _Thread_local mc_scratch scratch_zeros; /* (C): the padding pixel */

void mc_conv2d_winograd_release_workspace(void) {
    mc_scratch *all[] = {&scratch_u, &scratch_v, &scratch_m, &scratch_zeros};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) mc_scratch_free(all[i]);
}

static int64_t forced_chunk_tiles = 0;

void mc_conv2d_set_winograd_chunk_tiles(int64_t tiles) {
    forced_chunk_tiles = tiles > 0 ? tiles : 0;
}

/* Tiles per chunk. V and M of one chunk are written by a transform and read
 * straight back by the GEMMs, so a chunk that fits in the L2 cache saves a
 * trip to memory; but every chunk's 16 GEMMs re-read all of U (C x OC per
 * position), so a chunk keeps at least 2*OC tiles (and 256) to keep that
 * traffic below V's and the GEMMs tall: the same rule as conv.c's im2col
 * chunks. At most 64 MiB of V and M. */
enum { CACHE_CHUNK_BYTES = 1 << 20, MIN_CHUNK_TILES = 256, MAX_CHUNK_BYTES = 64 << 20 };

static int64_t tiles_per_chunk(int64_t tiles, int64_t cin, int64_t cout) {
    int64_t bytes_per_tile = POSITIONS * (cin + cout) * (int64_t)sizeof(float);
    int64_t chunk = CACHE_CHUNK_BYTES / bytes_per_tile;
    if (chunk < 2 * cout) chunk = 2 * cout;
    if (chunk < MIN_CHUNK_TILES) chunk = MIN_CHUNK_TILES;
    if (chunk > MAX_CHUNK_BYTES / bytes_per_tile) chunk = MAX_CHUNK_BYTES / bytes_per_tile;
    if (forced_chunk_tiles) chunk = forced_chunk_tiles;
    if (chunk > INT_MAX / 2) chunk = INT_MAX / 2;
    if (chunk < 1) chunk = 1;
    return chunk < tiles ? chunk : tiles;
}

/* ---- the three transforms ---- */

/* One Winograd convolution: x (N, H, W, CIN) -> out (N, H, W, COUT). */
typedef struct winograd_shape {
    int64_t n, h, w, cin, cout;
    int64_t tiles_h, tiles_w, tiles; /* ceil(H/2), ceil(W/2), N*tiles_h*tiles_w */
    mc_precision precision;          /* of the 16 products' operands U and V */
} winograd_shape;

static winograd_shape shape_of(int64_t n, int64_t h, int64_t w, int64_t cin, int64_t cout,
                               mc_precision precision) {
    winograd_shape s = {n, h, w, cin, cout, (h + 1) / 2, (w + 1) / 2, 0, precision};
    s.tiles = n * s.tiles_h * s.tiles_w;
    return s;
}

/* The transforms work on blocks of CHANNEL_BLOCK channels at a time, copied
 * into fixed-size local arrays: loops of a constant length over local
 * arrays are what the compiler vectorizes (a plain loop over channels that
 * reads 16 pixel pointers and writes 16 strided rows was not vectorized). */
enum { CHANNEL_BLOCK = 16 };

/* block[k][0..nb) = from[k][c0 .. c0 + nb) for the 16 positions k, zeros
 * beyond nb. A whole block is copied by a loop of constant length (one
 * vector move per position): memcpy of the variable length nb compiled to
 * `rep movsq`, whose start-up cost made the copies most of the transforms'
 * time (perf, train100). */
static inline void load_block(const float *const from[POSITIONS], int64_t c0, int64_t nb,
                              float block[POSITIONS][CHANNEL_BLOCK]) {
    if (nb == CHANNEL_BLOCK) {
        for (int k = 0; k < POSITIONS; k++)
            for (int b = 0; b < CHANNEL_BLOCK; b++) block[k][b] = from[k][c0 + b];
        return;
    }
    memset(block, 0, sizeof(float[POSITIONS][CHANNEL_BLOCK]));
    for (int k = 0; k < POSITIONS; k++)
        memcpy(block[k], from[k] + c0, (size_t)nb * sizeof(float));
}

/* U = G g G^T for CHANNEL_BLOCK 3x3 kernels g at once (kernel b's tap
 * (i, j) at g[3*i + j][b]),
 * G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]. */
static inline void kernel_transform(const float g[9][CHANNEL_BLOCK],
                                    float u[POSITIONS][CHANNEL_BLOCK]) {
    float gg[4][3][CHANNEL_BLOCK]; /* G g: (4, 3) */
    for (int j = 0; j < 3; j++)
        for (int b = 0; b < CHANNEL_BLOCK; b++) {
            float g0 = g[j][b], g1 = g[3 + j][b], g2 = g[6 + j][b];
            gg[0][j][b] = g0;
            gg[1][j][b] = 0.5f * (g0 + g1 + g2);
            gg[2][j][b] = 0.5f * (g0 - g1 + g2);
            gg[3][j][b] = g2;
        }
    for (int i = 0; i < 4; i++) /* (G g) G^T: the same combination along rows */
        for (int b = 0; b < CHANNEL_BLOCK; b++) {
            float a = gg[i][0][b], m = gg[i][1][b], c = gg[i][2][b];
            u[4 * i + 0][b] = a;
            u[4 * i + 1][b] = 0.5f * (a + m + c);
            u[4 * i + 2][b] = 0.5f * (a - m + c);
            u[4 * i + 3][b] = c;
        }
}

/* weight: (OC, C, 3, 3) -> u: (16, CIN, COUT).
 * Forward: CIN = C, COUT = OC, kernel (ci, co) = weight[co][ci].
 * Input gradient (flip_transpose): CIN = OC, COUT = C, kernel (ci, co) =
 * weight[ci][co] rotated by 180 degrees.
 * CHANNEL_BLOCK kernels of consecutive co at a time, so that the transform
 * runs on vectors and u's rows are written a vector at a time (one kernel
 * at a time, a call each, was 14 % of a 4x4-map conv's time). */
MC_VECTOR_CLONES
static void weight_transform(const winograd_shape *s, const float *weight, int flip_transpose,
                             float *u) {
    const int64_t plane = s->cin * s->cout; /* one position's (CIN, COUT) matrix */
#pragma omp parallel for schedule(static) if (plane * 9 >= MC_PARALLEL_MIN_WORK)
    for (int64_t ci = 0; ci < s->cin; ci++)
        for (int64_t co0 = 0; co0 < s->cout; co0 += CHANNEL_BLOCK) {
            const int64_t nb = s->cout - co0 < CHANNEL_BLOCK ? s->cout - co0 : CHANNEL_BLOCK;
            float g[9][CHANNEL_BLOCK] = {{0}}, t[POSITIONS][CHANNEL_BLOCK];
            for (int64_t b = 0; b < nb; b++) {
                const int64_t co = co0 + b;
                if (flip_transpose) {
                    const float *w = weight + (ci * s->cout + co) * 9; /* weight[ci][co] */
                    for (int tap = 0; tap < 9; tap++) g[tap][b] = w[8 - tap];
                } else {
                    const float *w = weight + (co * s->cin + ci) * 9; /* weight[co][ci] */
                    for (int tap = 0; tap < 9; tap++) g[tap][b] = w[tap];
                }
            }
            kernel_transform(g, t);
            float *to = u + ci * s->cout + co0;
            if (nb == CHANNEL_BLOCK)
                for (int k = 0; k < POSITIONS; k++)
                    for (int b = 0; b < CHANNEL_BLOCK; b++) to[k * plane + b] = t[k][b];
            else
                for (int k = 0; k < POSITIONS; k++)
                    for (int64_t b = 0; b < nb; b++) to[k * plane + b] = t[k][b];
        }
}

/* V = B^T d B for the tiles [tile0, tile0 + count), every channel.
 * B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
 * Tile t covers input rows 2*ty - 1 .. 2*ty + 2 and columns likewise (the
 * -1 is the padding); pixels outside the image read `zeros`.
 * x: (N, H, W, CIN), zeros: (CIN), v: (16, count, CIN). */
MC_VECTOR_CLONES
static void input_transform(const winograd_shape *s, const float *x, const float *zeros,
                            int64_t tile0, int64_t count, float *v) {
    const int64_t cin = s->cin, per_image = s->tiles_h * s->tiles_w;
#pragma omp parallel for schedule(static) if (count * POSITIONS * cin >= MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < count; r++) {
        int64_t t = tile0 + r, n = t / per_image;
        int64_t ty = t / s->tiles_w % s->tiles_h, tx = t % s->tiles_w;
        const float *pixel[POSITIONS]; /* the 4x4 input pixels, (CIN) each */
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                int64_t iy = 2 * ty - 1 + i, ix = 2 * tx - 1 + j;
                int inside = iy >= 0 && iy < s->h && ix >= 0 && ix < s->w;
                pixel[4 * i + j] = inside ? x + ((n * s->h + iy) * s->w + ix) * cin : zeros;
            }
        float *dst = v + r * cin; /* position k at dst + k * count * cin */
        const int64_t step = count * cin;
        for (int64_t c0 = 0; c0 < cin; c0 += CHANNEL_BLOCK) {
            int64_t nb = cin - c0 < CHANNEL_BLOCK ? cin - c0 : CHANNEL_BLOCK;
            float d[POSITIONS][CHANNEL_BLOCK], bd[POSITIONS][CHANNEL_BLOCK];
            float vt[POSITIONS][CHANNEL_BLOCK];
            load_block(pixel, c0, nb, d);
            for (int j = 0; j < 4; j++) /* B^T d: combine rows */
                for (int b = 0; b < CHANNEL_BLOCK; b++) {
                    bd[0 + j][b] = d[0 + j][b] - d[8 + j][b];
                    bd[4 + j][b] = d[4 + j][b] + d[8 + j][b];
                    bd[8 + j][b] = d[8 + j][b] - d[4 + j][b];
                    bd[12 + j][b] = d[4 + j][b] - d[12 + j][b];
                }
            for (int i = 0; i < 4; i++) /* (B^T d) B: combine columns */
                for (int b = 0; b < CHANNEL_BLOCK; b++) {
                    vt[4 * i + 0][b] = bd[4 * i + 0][b] - bd[4 * i + 2][b];
                    vt[4 * i + 1][b] = bd[4 * i + 1][b] + bd[4 * i + 2][b];
                    vt[4 * i + 2][b] = bd[4 * i + 2][b] - bd[4 * i + 1][b];
                    vt[4 * i + 3][b] = bd[4 * i + 1][b] - bd[4 * i + 3][b];
                }
            if (nb == CHANNEL_BLOCK)
                for (int k = 0; k < POSITIONS; k++)
                    for (int b = 0; b < CHANNEL_BLOCK; b++) dst[k * step + c0 + b] = vt[k][b];
            else
                for (int k = 0; k < POSITIONS; k++)
                    memcpy(dst + k * step + c0, vt[k], (size_t)nb * sizeof(float));
        }
    }
}

/* Y = A^T m A (+ bias) for the tiles [tile0, tile0 + count), with
 * A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]; written into out (or added to it
 * when `accumulate`), dropping outputs beyond an odd H or W.
 * m: (16, count, COUT), bias: (COUT) or NULL, out: (N, H, W, COUT). */
MC_VECTOR_CLONES
static void output_transform(const winograd_shape *s, const float *m, const float *bias,
                             int accumulate, int64_t tile0, int64_t count, float *out) {
    const int64_t cout = s->cout, per_image = s->tiles_h * s->tiles_w;
#pragma omp parallel for schedule(static) if (count * POSITIONS * cout >= MC_PARALLEL_MIN_WORK)
    for (int64_t r = 0; r < count; r++) {
        int64_t t = tile0 + r, n = t / per_image;
        int64_t ty = t / s->tiles_w % s->tiles_h, tx = t % s->tiles_w;
        float *dst[4]; /* outputs (2*ty + i, 2*tx + j) at dst[2*i + j]; NULL outside */
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                int64_t oy = 2 * ty + i, ox = 2 * tx + j;
                dst[2 * i + j] =
                    oy < s->h && ox < s->w ? out + ((n * s->h + oy) * s->w + ox) * cout : NULL;
            }
        const float *src = m + r * cout; /* position k at src + k * count * cout */
        const int64_t step = count * cout;
        for (int64_t o0 = 0; o0 < cout; o0 += CHANNEL_BLOCK) {
            int64_t nb = cout - o0 < CHANNEL_BLOCK ? cout - o0 : CHANNEL_BLOCK;
            float mt[POSITIONS][CHANNEL_BLOCK], am[8][CHANNEL_BLOCK], y[4][CHANNEL_BLOCK];
            float b_add[CHANNEL_BLOCK] = {0};
            const float *position[POSITIONS];
            for (int k = 0; k < POSITIONS; k++) position[k] = src + k * step;
            load_block(position, o0, nb, mt);
            if (bias)
                for (int b = 0; b < CHANNEL_BLOCK; b++) b_add[b] = b < nb ? bias[o0 + b] : 0.0f;
            for (int j = 0; j < 4; j++) /* A^T m: (2, 4) */
                for (int b = 0; b < CHANNEL_BLOCK; b++) {
                    am[j][b] = mt[0 + j][b] + mt[4 + j][b] + mt[8 + j][b];
                    am[4 + j][b] = mt[4 + j][b] - mt[8 + j][b] - mt[12 + j][b];
                }
            for (int i = 0; i < 2; i++) /* (A^T m) A: (2, 2) */
                for (int b = 0; b < CHANNEL_BLOCK; b++) {
                    y[2 * i + 0][b] =
                        am[4 * i + 0][b] + am[4 * i + 1][b] + am[4 * i + 2][b] + b_add[b];
                    y[2 * i + 1][b] =
                        am[4 * i + 1][b] - am[4 * i + 2][b] - am[4 * i + 3][b] + b_add[b];
                }
            for (int q = 0; q < 4; q++) {
                if (!dst[q]) continue;
                float *target = dst[q] + o0;
                if (nb == CHANNEL_BLOCK && accumulate)
                    for (int b = 0; b < CHANNEL_BLOCK; b++) target[b] += y[q][b];
                else if (nb == CHANNEL_BLOCK)
                    for (int b = 0; b < CHANNEL_BLOCK; b++) target[b] = y[q][b];
                else if (accumulate)
                    for (int64_t b = 0; b < nb; b++) target[b] += y[q][b];
                else
                    memcpy(target, y[q], (size_t)nb * sizeof(float));
            }
        }
    }
}

/* ---- the pipeline ---- */

/* The pipeline for the tiles [tile0, tile0 + count): V, then
 * M_k[count, COUT] = V_k[count, CIN] @ U_k[CIN, COUT] for the 16 positions
 * k as one batched product (the threads, when the caller is not already
 * one of several, take whole k), then the output transform. In bf16, V
 * and U are rounded where the product packs them and M is summed in fp32.
 * v: (16, count, CIN), m: (16, count, COUT), the calling thread's; the
 * rest as in winograd_run. */
static void run_tiles(const winograd_shape *s, const float *x, const float *zeros, const float *u,
                      const float *bias, int accumulate, int64_t tile0, int64_t count, float *v,
                      float *m, float *out) {
    input_transform(s, x, zeros, tile0, count, v);
    mc_gemm_batched(s->precision, false, false, count, s->cout, s->cin, 1.0f, v, s->cin,
                    count * s->cin, u, s->cout, s->cin * s->cout, 0.0f, m, s->cout,
                    count * s->cout, POSITIONS);
    output_transform(s, m, bias, accumulate, tile0, count, out);
}

/* The pipeline with the chunks dealt out to the threads.
 *
 * WHY: chunk by chunk, every chunk is three parallel regions (the two
 * transforms and the batched product), each a sleep and a wake-up of the
 * other threads under OMP_WAIT_POLICY=PASSIVE, for little work: layer1's
 * 3x3 convolutions of ResNet-50 at 64x64, batch 100, are 25 chunks of 256
 * tiles, each chunk's 16 products 256 x 64 x 64 some 0.15 ms on one core;
 * they ran 1.13 times faster on 2 threads than on 1. Here one region holds
 * them all: each thread transforms its own chunks into its own V and M
 * (staying in its cache) and multiplies them alone. A tile's outputs depend
 * only on its own V row and U, summed over the channels in the same slices
 * whichever tiles share a product, and each tile writes its own outputs,
 * so the result is bit for bit that of the chunk-by-chunk loop, for any
 * thread count. The chunks are cut evenly, a multiple of `threads` of
 * them, each at most `chunk` tiles. zeros: (CIN), shared and read only.
 * If a thread cannot have its V and M, the others' tiles are written (or
 * added) all the same: an error leaves `out` partly updated, as a failed
 * backward leaves its gradients. */
static mc_status run_chunks_per_thread(const winograd_shape *s, const float *x, const float *zeros,
                                       const float *u, const float *bias, int accumulate,
                                       int64_t chunk, int threads, float *out) {
    int64_t tiles_each;
    const int64_t chunks = mc_conv2d_chunks_for_threads(s->tiles, chunk, threads, &tiles_each);
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(| : failed)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t tile0;
        const int64_t count = mc_conv2d_chunk_span(s->tiles, tiles_each, c, &tile0);
        if (count == 0) continue;
        float *v, *m; /* this thread's */
        if (mc_scratch_reserve(&scratch_v, POSITIONS * tiles_each * s->cin,
                               "conv2d (winograd) input tiles V", &v) != MC_OK ||
            mc_scratch_reserve(&scratch_m, POSITIONS * tiles_each * s->cout,
                               "conv2d (winograd) products M", &m) != MC_OK) {
            failed = 1;
            continue;
        }
        run_tiles(s, x, zeros, u, bias, accumulate, tile0, count, v, m, out);
    }
    if (failed) return mc_error(MC_ERR_NOMEM, "conv2d (winograd): no memory for the tiles V and M");
    return MC_OK;
}

/* x: (N, H, W, CIN), u: (16, CIN, COUT) transformed weight, bias: (COUT) or
 * NULL -> out: (N, H, W, COUT), overwritten or (accumulate) added to. */
static mc_status winograd_run(const winograd_shape *s, const float *x, const float *u,
                              const float *bias, int accumulate, float *out) {
    if (s->cin > INT_MAX / 2 || s->cout > INT_MAX / 2)
        return mc_error(MC_ERR_UNSUPPORTED, "conv2d (winograd): %lld -> %lld channels are too many "
                        "for one GEMM", (long long)s->cin, (long long)s->cout);
    int64_t chunk = tiles_per_chunk(s->tiles, s->cin, s->cout);
    float *v, *m, *zeros;
    MC_TRY(mc_scratch_reserve(&scratch_zeros, s->cin, "conv2d (winograd) padding pixel", &zeros));
    memset(zeros, 0, (size_t)s->cin * sizeof(float));
    /* Chunks enough for every thread, and products on our kernel (which
     * runs one thread inside a parallel region): one region for all. With
     * fewer chunks than threads the positions are shared instead: split
     * further, every thread would pack all 16 of U for a few tiles. */
    const int threads = mc_get_num_threads();
    if (threads > 1 && !mc_inside_parallel_region() && mc_gemm_is_ours() &&
        (s->tiles + chunk - 1) / chunk >= threads)
        return run_chunks_per_thread(s, x, zeros, u, bias, accumulate, chunk, threads, out);
    MC_TRY(mc_scratch_reserve(&scratch_v, POSITIONS * chunk * s->cin, "conv2d (winograd) input tiles V", &v));
    MC_TRY(mc_scratch_reserve(&scratch_m, POSITIONS * chunk * s->cout, "conv2d (winograd) products M", &m));
    for (int64_t tile0 = 0; tile0 < s->tiles; tile0 += chunk) {
        int64_t count = s->tiles - tile0 < chunk ? s->tiles - tile0 : chunk;
        run_tiles(s, x, zeros, u, bias, accumulate, tile0, count, v, m, out);
    }
    return MC_OK;
}

/* Transform the weight for shape s (flip_transpose: for the input gradient)
 * and run the pipeline on `in` into `out`. */
static mc_status transform_and_run(const winograd_shape *s, const float *weight,
                                   int flip_transpose, const float *in, const float *bias,
                                   int accumulate, float *out) {
    float *u;
    MC_TRY(mc_scratch_reserve(&scratch_u, POSITIONS * s->cin * s->cout,
                              "conv2d (winograd) transformed weight U", &u));
    weight_transform(s, weight, flip_transpose, u);
    return winograd_run(s, in, u, bias, accumulate, out);
}

/* x: (N, H, W, C), weight: (OC, C, 3, 3), bias: (OC) or NULL
 * -> out: (N, H, W, OC), overwritten. */
mc_status mc_conv2d_winograd_forward(const mc_conv2d_geometry *geo, const float *x,
                                     const float *weight, const float *bias, float *out) {
    winograd_shape s = shape_of(geo->n, geo->h, geo->w, geo->c, geo->oc, geo->precision);
    return transform_and_run(&s, weight, 0, x, bias, 0, out);
}

/* dout: (N, H, W, OC), weight: (OC, C, 3, 3); ADDS into dx: (N, H, W, C).
 * The same convolution with the kernel flipped and its channels swapped. */
mc_status mc_conv2d_winograd_input_grad(const mc_conv2d_geometry *geo, const float *weight,
                                        const float *dout, float *dx) {
    winograd_shape s = shape_of(geo->n, geo->h, geo->w, geo->oc, geo->c, geo->precision);
    return transform_and_run(&s, weight, 1, dout, NULL, 1, dx);
}

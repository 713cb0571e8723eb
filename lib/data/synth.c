/* The synthetic world: tiles and the sensor that images them.
 *
 * A tile is (world seed, class, index) -> 64x64x13 uint16. Its own random
 * stream is seeded from a hash of the three, so tiles are independent of
 * each other and of the order (and the thread) that makes them.
 *
 * The sensor model turns painted surface reflectance into EuroSAT-like
 * top-of-atmosphere (L1C) numbers, in this order:
 *   1. band resolution: Sentinel-2 measures B05-B07, B8A, B11, B12 at 20 m
 *      and B01, B09, B10 at 60 m; EuroSAT resampled them to the 10 m grid,
 *      so we average them over 2x2 and 6x6 blocks (with a random phase);
 *   2. illumination: a per-tile gain (sun elevation, slope) on the surface;
 *   3. atmosphere: toa = path[b] * haze + transmittance[b] * surface. The
 *      path term (molecular and aerosol scattering) lifts the blue bands —
 *      why real L1C water and forest read ~1000 in B01/B02; B09 sits in a
 *      water-vapour absorption band (transmittance scaled per tile) and B10
 *      (1375 nm) sees almost nothing of the ground, which is why EuroSAT's
 *      B10 is ~12 everywhere;
 *   4. thin cloud on some tiles: a soft fBm veil, bright and flat in every
 *      band and the only thing that lifts B10 (cirrus);
 *   5. per-band calibration jitter and sensor noise;
 *   6. quantisation: round(reflectance x 10000), clamped to uint16.
 * The path/transmittance tables were fitted by eye so that per-class band
 * means of the synthetic world fall near those of the 50 real tiles in
 * ../shared/data/eurosat-ms-sample (docs/synth.md shows both). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mmchain/synth.h"
#include "synth_internal.h"

/* EuroSAT's class folders, sorted: label = position. */
static const char *const class_names[MC_SYNTH_CLASSES] = {
    "AnnualCrop", "Forest",        "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture",    "PermanentCrop", "Residential",          "River",   "SeaLake",
};

const char *mc_synth_class_name(int label) {
    if (label < 0 || label >= MC_SYNTH_CLASSES) return NULL;
    return class_names[label];
}

int mc_synth_class_label(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < MC_SYNTH_CLASSES; i++)
        if (strcmp(class_names[i], name) == 0) return i;
    return -1;
}

/* ---- the sensor ---- */

/*                                       B01    B02    B03    B04    B05    B06    B07    B08    B09    B10     B11    B12    B8A */
static const float path_reflectance[SYNTH_B] = {.090f, .060f, .032f, .016f, .016f, .016f, .014f, .012f, .004f, .0007f, .002f, .001f, .011f};
static const float transmittance[SYNTH_B]    = {.800f, .860f, .900f, .920f, .920f, .930f, .930f, .880f, .250f, .0015f, .900f, .880f, .980f};
/* Native ground resolution as a block size on the 10 m grid. */
static const int band_block[SYNTH_B]         = {6,     1,     1,     1,     2,     2,     2,     1,     6,     6,      2,     2,     2};
/* Sensor noise (reflectance, 1 sigma). */
static const float noise_sigma[SYNTH_B]      = {.0015f, .002f, .002f, .002f, .0025f, .003f, .003f, .003f, .002f, .0001f, .003f, .003f, .003f};

/* An approximately normal number from one 64-bit draw: the sum of four
 * 16-bit uniforms (Irwin-Hall), rescaled to unit variance. Ten times cheaper
 * than Box-Muller, and the tails beyond 3.4 sigma do not matter for noise. */
static float cheap_normal(mc_rng *rng) {
    uint64_t r = mc_rng_u64(rng);
    float sum = (float)(r & 0xffff) + (float)((r >> 16) & 0xffff) + (float)((r >> 32) & 0xffff) + (float)(r >> 48);
    /* Mean 4 * 32767.5; variance 4 * 65536^2 / 12. */
    return (sum - 131070.0f) * (1.7320508f / 65536.0f);
}

/* Average band b over blocks of k x k pixels whose grid starts at
 * (-phase_y, -phase_x); blocks cut by the border average what they cover. */
static void coarsen_band(float *refl, int b, int k, int phase_y, int phase_x) {
    for (int by = -phase_y; by < SYNTH_S; by += k)
        for (int bx = -phase_x; bx < SYNTH_S; bx += k) {
            int y0 = by < 0 ? 0 : by, x0 = bx < 0 ? 0 : bx;
            int y1 = by + k > SYNTH_S ? SYNTH_S : by + k, x1 = bx + k > SYNTH_S ? SYNTH_S : bx + k;
            float sum = 0.0f;
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++) sum += refl[((long)y * SYNTH_S + x) * SYNTH_B + b];
            float mean = sum / (float)((y1 - y0) * (x1 - x0));
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++) refl[((long)y * SYNTH_S + x) * SYNTH_B + b] = mean;
        }
}

/* Steps 1-6 above: surface (S, S, B) -> out (S, S, B) uint16. `veil` is
 * scratch (S, S). */
static void image_tile(synth_canvas *c, uint16_t *out) {
    mc_rng *rng = c->rng;
    for (int b = 0; b < SYNTH_B; b++)
        if (band_block[b] > 1)
            coarsen_band(c->refl, b, band_block[b], mc_synth_pick(rng, band_block[b]), mc_synth_pick(rng, band_block[b]));

    float gain = mc_synth_uniform(rng, 0.85f, 1.15f);
    float haze = mc_synth_clamp(expf(0.2f * (float)mc_rng_normal(rng)), 0.6f, 1.6f);
    float vapour = mc_synth_uniform(rng, 0.7f, 1.3f);
    float calibration[SYNTH_B];
    for (int b = 0; b < SYNTH_B; b++) calibration[b] = 1.0f + 0.02f * (float)mc_rng_normal(rng);

    /* A thin-cloud veil on ~15 % of tiles: opacity 0..max over soft patches. */
    float *veil = c->field;
    float veil_max = 0.0f;
    if (mc_rng_uniform(rng) < 0.15) {
        veil_max = mc_synth_uniform(rng, 0.05f, 0.45f);
        float cut = mc_synth_uniform(rng, 0.3f, 0.6f);
        mc_synth_fbm(rng, mc_synth_uniform(rng, 16.0f, 40.0f), 4, veil);
        for (int i = 0; i < SYNTH_S * SYNTH_S; i++) {
            float t = mc_synth_clamp((veil[i] - cut) / 0.3f, 0.0f, 1.0f);
            veil[i] = veil_max * t;
        }
    }
    const float cloud_reflectance = 0.45f, cirrus_b10 = 0.06f;

    for (int i = 0; i < SYNTH_S * SYNTH_S; i++) {
        const float *surface = c->refl + (long)i * SYNTH_B;
        float opacity = veil_max > 0.0f ? veil[i] : 0.0f;
        for (int b = 0; b < SYNTH_B; b++) {
            float trans = transmittance[b] * (b == BAND_B09 ? vapour : 1.0f);
            float toa = path_reflectance[b] * haze + trans * gain * surface[b];
            if (opacity > 0.0f)
                toa = (1.0f - opacity) * toa + opacity * (b == BAND_B10 ? cirrus_b10 : cloud_reflectance);
            toa = toa * calibration[b] + noise_sigma[b] * cheap_normal(rng);
            float dn = roundf(toa * 10000.0f);
            out[(long)i * SYNTH_B + b] = (uint16_t)mc_synth_clamp(dn, 0.0f, 65535.0f);
        }
    }
}

/* ---- tiles ---- */

/* Scratch for one tile: the canvas (surface and two noise fields). */
typedef struct tile_scratch {
    float *memory;
    synth_canvas canvas;
} tile_scratch;

static mc_status scratch_new(tile_scratch *s) {
    size_t floats = (size_t)SYNTH_S * SYNTH_S * (SYNTH_B + 2);
    s->memory = malloc(floats * sizeof(float));
    if (!s->memory)
        return mc_error(MC_ERR_NOMEM, "synth: cannot allocate %zu bytes of tile scratch", floats * sizeof(float));
    s->canvas.refl = s->memory;
    s->canvas.field = s->memory + (size_t)SYNTH_S * SYNTH_S * SYNTH_B;
    s->canvas.field2 = s->canvas.field + (size_t)SYNTH_S * SYNTH_S;
    return MC_OK;
}

/* The tile's own seed: splitmix64's finaliser over (seed, label, index). */
static uint64_t tile_seed(uint64_t seed, int label, int64_t index) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ULL + (uint64_t)label * 0xd1b54a32d192ed03ULL +
                 (uint64_t)index * 0xaef17502108ef2d9ULL + 0x632be59bd9b4e019ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void render_tile(tile_scratch *s, uint64_t seed, int label, int64_t index, uint16_t *out) {
    mc_rng rng;
    mc_rng_seed(&rng, tile_seed(seed, label, index));
    s->canvas.rng = &rng;
    mc_synth_paint_class(&s->canvas, label);
    image_tile(&s->canvas, out);
}

static mc_status check_tile_args(int label, int64_t index) {
    if (label < 0 || label >= MC_SYNTH_CLASSES)
        return mc_error(MC_ERR_ARG, "synth: class label %d is outside 0..%d", label, MC_SYNTH_CLASSES - 1);
    if (index < 0) return mc_error(MC_ERR_ARG, "synth: tile index %lld is negative", (long long)index);
    return MC_OK;
}

mc_status mc_synth_tile(uint64_t seed, int label, int64_t index, uint16_t *out) {
    if (!out) return mc_error(MC_ERR_ARG, "mc_synth_tile: out must not be NULL");
    MC_TRY(check_tile_args(label, index));
    tile_scratch scratch;
    MC_TRY(scratch_new(&scratch));
    render_tile(&scratch, seed, label, index, out);
    free(scratch.memory);
    return MC_OK;
}

mc_status mc_synth_batch(uint64_t seed, int64_t first, mc_tensor *out, int *labels) {
    if (!out) return mc_error(MC_ERR_ARG, "mc_synth_batch: out must not be NULL");
    if (first < 0) return mc_error(MC_ERR_ARG, "mc_synth_batch: first tile %lld is negative", (long long)first);
    const mc_shape *sh = &out->shape;
    if (sh->ndim != 4 || sh->dim[1] != SYNTH_B || sh->dim[2] != SYNTH_S || sh->dim[3] != SYNTH_S) {
        char buf[160];
        return mc_error(MC_ERR_SHAPE, "mc_synth_batch: out %s must be (N, %d, %d, %d)",
                        mc_tensor_str(out, buf, sizeof buf), SYNTH_B, SYNTH_S, SYNTH_S);
    }
    const int64_t n = sh->dim[0];
    const long plane = (long)SYNTH_S * SYNTH_S;
    int failed = 0;
#pragma omp parallel
    {
        tile_scratch scratch = {0};
        uint16_t *tile = malloc(sizeof(uint16_t) * plane * SYNTH_B);
        int ok = tile != NULL && scratch_new(&scratch) == MC_OK;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (int64_t k = 0; k < n; k++) {
            if (!ok) continue;
            int64_t number = first + k;
            int label = (int)(number % MC_SYNTH_CLASSES);
            render_tile(&scratch, seed, label, number / MC_SYNTH_CLASSES, tile);
            /* (H, W, B) uint16 -> (B, H, W) float reflectance. */
            float *dst = out->data + k * SYNTH_B * plane;
            for (long p = 0; p < plane; p++)
                for (int b = 0; b < SYNTH_B; b++) dst[b * plane + p] = (float)tile[p * SYNTH_B + b] / 10000.0f;
            if (labels) labels[k] = label;
        }
        free(tile);
        free(scratch.memory);
    }
    if (failed) return mc_error(MC_ERR_NOMEM, "mc_synth_batch: cannot allocate per-thread tile scratch");
    return MC_OK;
}

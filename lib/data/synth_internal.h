/* The synthetic world's internals, shared by synth.c (tiles, sensor),
 * synth_materials.c (spectra) and synth_layouts.c (class scenes).
 *
 * A tile is painted in two stages:
 *   1. a layout paints SURFACE reflectance (0..1, 13 bands) onto a canvas:
 *      every pixel holds the spectrum of what lies on the ground there;
 *   2. the sensor (synth.c) turns it into top-of-atmosphere numbers: band
 *      resolution, illumination, haze, cloud, noise, uint16 quantisation. */
#ifndef MMCHAIN_SYNTH_INTERNAL_H
#define MMCHAIN_SYNTH_INTERNAL_H

#include "mmchain/rng.h"
#include "mmchain/synth.h"

#define SYNTH_S MC_SYNTH_SIZE
#define SYNTH_B MC_SYNTH_BANDS
#define SYNTH_PI 3.14159265358979f

/* Band indices in EuroSAT file order (B8A last). */
enum {
    BAND_B01, BAND_B02, BAND_B03, BAND_B04, BAND_B05, BAND_B06, BAND_B07,
    BAND_B08, BAND_B09, BAND_B10, BAND_B11, BAND_B12, BAND_B8A
};

/* ---- spectra (synth_materials.c) ---- */

/* A 13-band surface reflectance, passed by value (52 bytes). */
typedef struct synth_spectrum {
    float r[SYNTH_B];
} synth_spectrum;

/* The base materials; the table in synth_materials.c gives their spectra. */
typedef enum synth_material_id {
    MAT_GREEN_VEGETATION,
    MAT_SENESCENT_VEGETATION,
    MAT_CONIFER_FOREST,
    MAT_BROADLEAF_FOREST,
    MAT_SHRUB,
    MAT_CLEAR_WATER,
    MAT_TURBID_WATER,
    MAT_MOIST_SOIL,
    MAT_DRY_SOIL,
    MAT_ASPHALT,
    MAT_CONCRETE,
    MAT_RED_ROOF,
    MAT_GREY_ROOF,
    MAT_BRIGHT_ROOF,
    MAT_COUNT
} synth_material_id;

synth_spectrum mc_synth_material_spectrum(synth_material_id id);
/* (1 - t) * a + t * b: a linear (areal) mixture, t in 0..1. */
synth_spectrum mc_synth_mix(synth_spectrum a, synth_spectrum b, float t);
synth_spectrum mc_synth_scaled(synth_spectrum a, float k);
/* One instance of a material: overall brightness x (1 + amount * N(0,1))
 * and a gentle spectral tilt, so two roofs or two fields differ. */
synth_spectrum mc_synth_vary(mc_rng *rng, synth_spectrum a, float amount);
/* A crop or grass canopy: growth stage 0 (bare soil) .. 1 (full green
 * cover), then `dryness` 0..1 of the green turned senescent. The soil is
 * moist_soil .. dry_soil by `soil_brightness` 0..1. */
synth_spectrum mc_synth_canopy(float stage, float dryness, float soil_brightness);

/* ---- canvas and painting (synth_layouts.c) ---- */

typedef struct synth_canvas {
    float *refl;   /* (S, S, B) surface reflectance, pixel-interleaved */
    float *field;  /* (S, S) scratch noise field */
    float *field2; /* (S, S) scratch noise field */
    mc_rng *rng;
} synth_canvas;

static inline float *synth_px(synth_canvas *c, int y, int x) {
    return c->refl + ((long)y * SYNTH_S + x) * SYNTH_B;
}
/* Blend spectrum s into pixel (y, x) with weight alpha (0..1). */
void mc_synth_put(synth_canvas *c, int y, int x, synth_spectrum s, float alpha);
void mc_synth_fill(synth_canvas *c, synth_spectrum s);

/* Fractal value noise (fBm) into out (S, S): octaves of smoothly
 * interpolated random lattices, the first with cells of `cell` pixels, each
 * next one half as large and half as strong. Values lie in 0..1, mean ~0.5. */
void mc_synth_fbm(mc_rng *rng, float cell, int octaves, float *out);

float mc_synth_uniform(mc_rng *rng, float lo, float hi);
/* A uniform draw from 0..n-1. */
int mc_synth_pick(mc_rng *rng, int n);
float mc_synth_clamp(float x, float lo, float hi);

/* Paint the surface of one tile of class `label` (0..9). */
void mc_synth_paint_class(synth_canvas *c, int label);

#endif

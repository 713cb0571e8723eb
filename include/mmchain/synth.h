/* mmchain — the synthetic multispectral world.
 *
 * A procedural stand-in for EuroSAT-MS that needs no download: 64x64 tiles
 * of 13 Sentinel-2 bands for the same 10 land-use classes, built from
 *
 *   - materials: 13-band surface reflectances that follow real spectral
 *     signatures (vegetation with its red edge and high NIR, water dark in
 *     the NIR and SWIR, soils and built-up surfaces rising into the SWIR);
 *     lib/data/synth_materials.c lists them with their sources;
 *   - layouts, one per class: field patchworks, orchard rows, roads with
 *     verges, industrial halls, residential block grids, meandering rivers,
 *     shores, forest canopy, meadows (lib/data/synth_layouts.c);
 *   - a sensor: per-tile illumination, haze (path radiance), thin cloud,
 *     the coarser 20 m / 60 m bands, band noise, quantisation to uint16
 *     top-of-atmosphere reflectance x 10000 like EuroSAT's L1C tiles.
 *
 * Every tile is a pure function of (world seed, class, index): tiles can be
 * made in any order, in parallel, and tile 7 of Forest is the same whether
 * 10 or 10,000 tiles are generated. docs/synth.md describes the world.
 *
 * Band order is EuroSAT-MS's file order (B8A is the 13th band):
 *     B01 B02 B03 B04 B05 B06 B07 B08 B09 B10 B11 B12 B8A
 * Classes are EuroSAT's sorted folder names (mc_synth_class_name). */
#ifndef MMCHAIN_SYNTH_H
#define MMCHAIN_SYNTH_H

#include <stdint.h>

#include "augment.h" /* random crops, flips and turns of tiles and their views */
#include "error.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MC_SYNTH_SIZE 64    /* tiles are MC_SYNTH_SIZE x MC_SYNTH_SIZE pixels (10 m) */
#define MC_SYNTH_BANDS 13   /* Sentinel-2 bands, EuroSAT file order */
#define MC_SYNTH_CLASSES 10 /* EuroSAT's land-use classes */

/* "AnnualCrop", "Forest", ..., "SeaLake" (label order = sorted names), or
 * NULL outside 0..9. */
const char *mc_synth_class_name(int label);
/* The label of a class name (exact, case-sensitive), or -1. */
int mc_synth_class_label(const char *name);

/* ---- tiles ---- */

/* One tile as EuroSAT stores it: uint16 top-of-atmosphere reflectance x
 * 10000, pixel-interleaved.
 *   out: (MC_SYNTH_SIZE, MC_SYNTH_SIZE, MC_SYNTH_BANDS) = 64*64*13 values.
 * Errors: label outside 0..9, index < 0, out NULL, out of memory. */
mc_status mc_synth_tile(uint64_t seed, int label, int64_t index, uint16_t *out);

/* A balanced batch for training, as float tensors at the NCHW boundary.
 * Tile k (0 <= k < N) is number first + k of the world's sequence, which
 * cycles through the classes: label (first + k) % 10, index (first + k) / 10.
 *   out:    (N, 13, 64, 64) heap or arena tensor; values are the uint16
 *           numbers / 10000 (reflectance, MC_NORM_REFLECTANCE in data.h),
 *           so a tile read back from its .tif file gives the same floats;
 *   labels: N ints (may be NULL).
 * Tiles are made in parallel (OpenMP). */
mc_status mc_synth_batch(uint64_t seed, int64_t first, mc_tensor *out, int *labels);

/* ---- materials (for documentation, tests and the curious) ---- */

/* Number of base materials in the library. */
int mc_synth_material_count(void);
/* Name of material i ("green vegetation", "clear water", ...), or NULL. */
const char *mc_synth_material_name(int i);
/* The 13 surface reflectances (0..1, EuroSAT band order) of the material
 * named `name`. MC_ERR_ARG (listing the valid names) when unknown. */
mc_status mc_synth_material(const char *name, float reflectance[MC_SYNTH_BANDS]);

#ifdef __cplusplus
}
#endif
#endif

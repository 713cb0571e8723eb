/* mmchain — EuroSAT-MS data: GeoTIFF tiles, bands, normalisation, datasets.
 *
 * EuroSAT-MS (Helber et al., 2019) is 27,000 Sentinel-2 L1C tiles, 64x64
 * pixels, 13 bands of uint16 reflectance x 10000, one GeoTIFF per tile, in
 * one folder per class:
 *
 *     EuroSAT_MS/AnnualCrop/AnnualCrop_1.tif ... EuroSAT_MS/SeaLake/SeaLake_3000.tif
 *
 * Band order inside the files (B8A is the LAST band, not the 9th):
 *
 *     index  0   1   2   3   4   5   6   7   8   9   10  11  12
 *     band   B01 B02 B03 B04 B05 B06 B07 B08 B09 B10 B11 B12 B8A
 *
 * Reading is lazy: mc_eurosat_open() only lists the files (an index of path
 * and label); mc_eurosat_load_batch() decodes the tiles a batch needs. The
 * whole dataset (2.9 GB) never has to be in memory.
 *
 * Layouts at this boundary: batches are NCHW float tensors, like every image
 * that enters or leaves the library (tensor.h). A raster read from a TIFF is
 * band-planar (C, H, W). The TIFF writer takes pixel-interleaved (H, W, C)
 * samples, the order of EuroSAT's own files.
 *
 * docs/data.md has the band table, the normalisations and the RGB mapping. */
#ifndef MMCHAIN_DATA_H
#define MMCHAIN_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "rng.h"
#include "image.h" /* mc_raster: a TIFF tile as read from its file */
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- bands ------------------------------------------------------------- */

#define MC_EUROSAT_NUM_BANDS 13
#define MC_EUROSAT_NUM_CLASSES 10

typedef struct mc_band_info {
    const char *name;     /* "B8A" */
    float wavelength_nm;  /* centre wavelength (Sentinel-2A) */
    int resolution_m;     /* native ground resolution */
    const char *what;     /* "narrow NIR (vegetation red edge)" */
} mc_band_info;

/* Band `i` of the file order above (0 <= i < 13), or NULL. */
const mc_band_info *mc_eurosat_band(int i);
/* File index of a band name ("B8A" -> 12; also "B8" -> 7, "b08" -> 7); -1 if unknown. */
int mc_eurosat_band_index(const char *name);

/* An ordered selection of bands, as file indices. */
typedef struct mc_bands {
    int count;
    int index[MC_EUROSAT_NUM_BANDS * 2]; /* mc_bands_parse names each band once */
} mc_bands;

/* Parse "B08,B11,B12" (any order), "all" (the 13 in file order) or "rgb"
 * (B04,B03,B02). Unknown names are an MC_ERR_ARG listing the valid ones. */
mc_status mc_bands_parse(const char *spec, mc_bands *out);
/* "B08,B11,B12" into buf (always NUL-terminated); returns buf. */
const char *mc_bands_str(const mc_bands *bands, char *buf, size_t buf_len);

/* ---- normalisation ------------------------------------------------------- */

typedef enum mc_norm_kind {
    MC_NORM_TORCHGEO = 0, /* z-score with torchgeo's EuroSAT per-band mean/std (default) */
    MC_NORM_REFLECTANCE,  /* value / 10000 (top-of-atmosphere reflectance, ~0..1) */
    MC_NORM_DATASET,      /* z-score with statistics measured on a training split */
    MC_NORM_NONE          /* raw digital numbers */
} mc_norm_kind;

/* Per-band affine map (value - mean[b]) / std[b], for the 13 file bands.
 * std is never 0: a constant band keeps std = 1 (it maps to value - mean). */
typedef struct mc_norm {
    mc_norm_kind kind;
    float mean[MC_EUROSAT_NUM_BANDS];
    float std[MC_EUROSAT_NUM_BANDS];
} mc_norm;

/* Fill `norm` for TORCHGEO, REFLECTANCE or NONE (DATASET needs
 * mc_eurosat_compute_norm). */
mc_status mc_norm_init(mc_norm *norm, mc_norm_kind kind);
/* "torchgeo", "reflectance", "dataset", "none" <-> kind. */
mc_status mc_norm_parse(const char *name, mc_norm_kind *out);
const char *mc_norm_name(mc_norm_kind kind);

/* ---- the RGB view -------------------------------------------------------- */

/* EuroSAT's RGB release maps a reflectance DN to 0..1 as
 * clamp(dn / MC_EUROSAT_RGB_SCALE, 0, 1) on B04, B03, B02 (measured against
 * the release's JPEGs; docs/data.md). */
#define MC_EUROSAT_RGB_SCALE 2740.0f
float mc_eurosat_rgb_value(float dn);

/* ---- the dataset --------------------------------------------------------- */

typedef enum mc_split { MC_SPLIT_ALL = 0, MC_SPLIT_TRAIN, MC_SPLIT_VAL, MC_SPLIT_TEST } mc_split;
const char *mc_split_name(mc_split split);

typedef struct mc_eurosat_options {
    /* Folder of the RGB release (class folders of .jpg/.png with the same
     * stems); when set, the RGB view is the release's image. NULL: derive. */
    const char *rgb_dir;
    /* Folder holding torchgeo's split files eurosat-train.txt,
     * eurosat-val.txt, eurosat-test.txt (lines like "AnnualCrop_1.jpg",
     * matched by stem). NULL: a seeded stratified split. */
    const char *split_dir;
    uint64_t seed;   /* for the stratified split */
    /* Sizes of the stratified split; the test split gets what remains.
     * 0 = the default: 2600 / 1000 (the seed paper's), scaled down in the
     * same 26:10 ratio to all tiles when the dataset has fewer than 3600.
     * With one size given, the other takes its default or what is left,
     * whichever is less. Explicit sizes larger than the dataset are an
     * error. */
    int train_size;
    int val_size;
} mc_eurosat_options;

#define MC_EUROSAT_DEFAULT_TRAIN 2600
#define MC_EUROSAT_DEFAULT_VAL 1000

/* Defaults: no rgb_dir, no split files, seed 0, default sizes. */
mc_eurosat_options mc_eurosat_default_options(void);

typedef struct mc_eurosat mc_eurosat; /* opaque */

/* List DIR/<Class>/<*.tif>: classes are the sorted sub-folder names, tiles
 * sorted by name within a class. Reads only the first tile's header (to
 * learn the tile size and band count). Errors: no class folders, an empty
 * class folder, an unreadable folder, split files naming absent tiles, a
 * split larger than the data. */
mc_status mc_eurosat_open(mc_eurosat **out, const char *dir, const mc_eurosat_options *options);
void mc_eurosat_free(mc_eurosat *ds);

int mc_eurosat_size(const mc_eurosat *ds);            /* number of tiles */
int mc_eurosat_num_classes(const mc_eurosat *ds);
const char *mc_eurosat_class_name(const mc_eurosat *ds, int label);
const char *mc_eurosat_path(const mc_eurosat *ds, int index);
/* The RGB release the RGB views come from (options->rgb_dir), or NULL when
 * they are made from the tiles' B04, B03, B02. */
const char *mc_eurosat_rgb_dir(const mc_eurosat *ds);
int mc_eurosat_label(const mc_eurosat *ds, int index);
/* Tile size and band count of the first tile (every tile must match). */
void mc_eurosat_tile_shape(const mc_eurosat *ds, int *height, int *width, int *bands);
/* The indices of a split (into the dataset's listing); valid until free. */
mc_status mc_eurosat_split(const mc_eurosat *ds, mc_split split, const int **indices, int *count);

/* Decode the tiles indices[0..n) and write the selected bands, normalised,
 * into `out`: (n, bands->count, H, W), caller-allocated (heap or arena).
 * Reads files in parallel. A tile whose size or band count differs from the
 * first is an error naming the file. */
mc_status mc_eurosat_load_batch(const mc_eurosat *ds, const int *indices, int n,
                                const mc_bands *bands, const mc_norm *norm, mc_tensor *out);
/* The RGB view, (n, 3, H, W) in 0..1: the release's image when rgb_dir was
 * given (resized bicubically if its size differs), else B04,B03,B02 through
 * mc_eurosat_rgb_value. */
mc_status mc_eurosat_load_rgb(const mc_eurosat *ds, const int *indices, int n, mc_tensor *out);
/* labels[i] = label of indices[i]. */
void mc_eurosat_labels(const mc_eurosat *ds, const int *indices, int n, int *labels);

/* Per-band mean and std (population) over the tiles of `split`, in file
 * band order, as kind MC_NORM_DATASET. A constant band gets std 1. */
mc_status mc_eurosat_compute_norm(const mc_eurosat *ds, mc_split split, mc_norm *out);

/* One tile file on its own (e.g. `mmchain classify x.tif`): (1, C, H, W). */
mc_status mc_tile_load(const char *path, const mc_bands *bands, const mc_norm *norm,
                       mc_tensor **out);
/* Write the selected bands of a raster, normalised, into a (C, H, W) buffer. */
mc_status mc_raster_select(const mc_raster *raster, const char *path, const mc_bands *bands,
                           const mc_norm *norm, float *out);

#ifdef __cplusplus
}
#endif
#endif

/* bench_data — how fast tiles load (lazily, from the files, every pass).
 *
 *     bench_data [DIR [RGB_DIR]] [--seconds S]
 *
 * DIR defaults to $MMCHAIN_SHARED_DATA/eurosat-ms-sample (or
 * ../shared/data/eurosat-ms-sample), RGB_DIR to the matching
 * eurosat-rgb-sample. Every pass decodes the TIFFs again (the OS file cache
 * is warm after the first pass, as in training epochs after the first).
 * Reports tiles/s for: 13 bands z-scored, 3 bands, the derived RGB view,
 * the release's JPEG, and CLIP preprocessing (64 -> 224, antialiased). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common.h"
#include "mmchain/mmchain.h"

typedef enum { LOAD_BANDS, LOAD_RGB, LOAD_CLIP } load_kind;

/* Repeat one kind of load over the whole dataset for about `seconds`. */
static int measure(const char *what, const mc_eurosat *ds, load_kind kind, const char *band_spec, double seconds) {
    const int *indices;
    int n;
    mc_bands bands;
    mc_norm norm;
    mc_tensor *batch = NULL;
    int h, w;
    mc_eurosat_tile_shape(ds, &h, &w, NULL);
    if (mc_eurosat_split(ds, MC_SPLIT_ALL, &indices, &n) != MC_OK || mc_bands_parse(band_spec, &bands) != MC_OK ||
        mc_norm_init(&norm, MC_NORM_TORCHGEO) != MC_OK ||
        mc_tensor_new(&batch, MC_SHAPE(n, kind == LOAD_BANDS ? bands.count : 3, h, w), "batch") != MC_OK) {
        fprintf(stderr, "bench_data: %s\n", mc_last_error());
        return 1;
    }
    long tiles = 0;
    double start = bench_now_seconds(), elapsed = 0;
    mc_status status = MC_OK;
    while (status == MC_OK && elapsed < seconds) {
        if (kind == LOAD_BANDS) {
            status = mc_eurosat_load_batch(ds, indices, n, &bands, &norm, batch);
        } else {
            status = mc_eurosat_load_rgb(ds, indices, n, batch);
            if (status == MC_OK && kind == LOAD_CLIP) {
                mc_tensor *clip = NULL;
                status = mc_clip_preprocess(batch, 224, true, &clip);
                mc_tensor_free(clip);
            }
        }
        tiles += n;
        elapsed = bench_now_seconds() - start;
    }
    mc_tensor_free(batch);
    if (status != MC_OK) {
        fprintf(stderr, "bench_data: %s\n", mc_last_error());
        return 1;
    }
    printf("| %-44s | %8.0f |\n", what, tiles / elapsed);
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *rgb_dir = NULL;
    double seconds = 2.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!dir) dir = argv[i];
        else rgb_dir = argv[i];
    }
    char default_dir[1024], default_rgb[1024];
    const char *shared = getenv("MMCHAIN_SHARED_DATA");
    snprintf(default_dir, sizeof default_dir, "%s/eurosat-ms-sample", shared ? shared : "../shared/data");
    snprintf(default_rgb, sizeof default_rgb, "%s/eurosat-rgb-sample", shared ? shared : "../shared/data");
    if (!dir) dir = default_dir, rgb_dir = default_rgb;
    mc_eurosat *ds = NULL, *release = NULL;
    mc_eurosat_options options = mc_eurosat_default_options();
    options.rgb_dir = rgb_dir;
    if (mc_eurosat_open(&ds, dir, NULL) != MC_OK) {
        fprintf(stderr, "bench_data: %s\n", mc_last_error());
        return 1;
    }
    if (rgb_dir && mc_eurosat_open(&release, dir, &options) != MC_OK) {
        fprintf(stderr, "bench_data: no RGB release (%s); skipping its rows\n", mc_last_error());
        release = NULL;
    }
    printf("bench_data: %d tiles from %s, %d threads\n\n", mc_eurosat_size(ds), dir, mc_get_num_threads());
    printf("| load (lazy, every pass from the files)       |  tiles/s |\n");
    printf("|----------------------------------------------|---------:|\n");
    int failed = measure("13 bands, torchgeo z-score", ds, LOAD_BANDS, "all", seconds);
    failed |= measure("3 bands (B08,B11,B12)", ds, LOAD_BANDS, "B08,B11,B12", seconds);
    failed |= measure("RGB view derived from B04,B03,B02", ds, LOAD_RGB, "rgb", seconds);
    if (release) failed |= measure("RGB view = release JPEG", release, LOAD_RGB, "rgb", seconds);
    failed |= measure("derived RGB + CLIP preprocess to 224", ds, LOAD_CLIP, "rgb", seconds);
    mc_eurosat_free(ds);
    mc_eurosat_free(release);
    return failed;
}

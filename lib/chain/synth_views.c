/* Views of the synthetic world (synth.h) as the CLIP and the chain take
 * them: the RGB view of each tile (mc_rgb_from_reflectance), optionally the
 * selected bands normalised as a tile read from its .tif would be, and the
 * scene attributes that captions are made from. The tiles are generated a
 * chunk at a time, so that memory holds the views, not the 13-band tiles. */
#include "mmchain/pretrain.h"

#include <stdlib.h>
#include <string.h>

#include "mmchain/image.h"
#include "mmchain/synth.h"

#define WORLD_CHUNK 250 /* tiles generated at once: 250 x 13 x 64 x 64 floats = 53 MB */

void mc_synth_views_free(mc_synth_views *v) {
    if (!v) return;
    mc_tensor_free(v->rgb);
    mc_tensor_free(v->spectral);
    free(v->labels);
    free(v->attrs);
    memset(v, 0, sizeof *v);
}

/* spectral rows [row, row + n) = the selected bands of tiles, normalised:
 * tiles (n, 13, T, T) reflectance -> spectral (N, B, T, T). */
static void select_bands(const mc_tensor *tiles, const mc_bands *bands, const mc_norm *norm,
                         mc_tensor *spectral, int row) {
    const int64_t n = tiles->shape.dim[0], plane = tiles->shape.dim[2] * tiles->shape.dim[3];
    for (int64_t i = 0; i < n; i++)
        for (int b = 0; b < bands->count; b++) {
            const int band = bands->index[b];
            const float *src = tiles->data + (i * MC_SYNTH_BANDS + band) * plane;
            float *dst = spectral->data + ((row + i) * bands->count + b) * plane;
            /* reflectance -> the file's digital number -> the normalisation */
            for (int64_t p = 0; p < plane; p++) dst[p] = (src[p] * 10000.0f - norm->mean[band]) / norm->std[band];
        }
}

/* One chunk: tiles (n, 13, 64, 64) to be filled with world tiles
 * [world_first, world_first + n), into rows [row, row + n) of v. */
static mc_status make_chunk(uint64_t seed, int64_t world_first, int row, const mc_bands *bands,
                            const mc_norm *norm, mc_tensor *tiles, mc_synth_views *v) {
    const int n = (int)tiles->shape.dim[0], size = (int)v->rgb->shape.dim[2];
    MC_TRY(mc_synth_batch(seed, world_first, tiles, v->labels + row));
    const int64_t tile_floats = (int64_t)MC_SYNTH_BANDS * MC_SYNTH_SIZE * MC_SYNTH_SIZE;
    for (int i = 0; v->attrs && i < n; i++)
        MC_TRY(mc_scene_attributes_from_tile(tiles->data + i * tile_floats, MC_SYNTH_SIZE,
                                             MC_SYNTH_SIZE, &v->attrs[row + i]));
    mc_tensor *small = tiles;
    if (size != MC_SYNTH_SIZE) MC_TRY(mc_image_resize(tiles, size, size, true, &small));
    mc_tensor rgb_rows = mc_tensor_rows(v->rgb, row, n);
    mc_status status = mc_rgb_from_reflectance(small, &rgb_rows);
    if (status == MC_OK && v->spectral) select_bands(small, bands, norm, v->spectral, row);
    if (small != tiles) mc_tensor_free(small);
    return status;
}

static mc_status views_alloc(int count, int size, const mc_bands *bands, bool attributes,
                             mc_synth_views *v) {
    v->count = count;
    v->labels = malloc((size_t)count * sizeof *v->labels);
    if (attributes) v->attrs = malloc((size_t)count * sizeof *v->attrs);
    if (!v->labels || (attributes && !v->attrs))
        return mc_error(MC_ERR_NOMEM, "synthetic views: out of memory for %d tiles", count);
    MC_TRY(mc_tensor_new(&v->rgb, MC_SHAPE(count, 3, size, size), "rgb"));
    if (bands) MC_TRY(mc_tensor_new(&v->spectral, MC_SHAPE(count, bands->count, size, size), "spectral"));
    return MC_OK;
}

mc_status mc_synth_views_make(uint64_t seed, int64_t first, int count, int size,
                              const mc_bands *bands, const mc_norm *norm, bool attributes,
                              mc_synth_views *out) {
    if (!out) return mc_error(MC_ERR_ARG, "synthetic views: no output");
    if (bands && !norm) return mc_error(MC_ERR_ARG, "synthetic views: a spectral view needs a normalisation");
    memset(out, 0, sizeof *out);
    if (count < 1 || first < 0 || size < 1 || size > MC_SYNTH_SIZE || (bands && bands->count < 1))
        return mc_error(MC_ERR_ARG, "synthetic views: %d tiles from %lld at %d pixels (expected >= 1 "
                        "tile, first >= 0, a size in 1..%d)", count, (long long)first, size, MC_SYNTH_SIZE);
    mc_status status = views_alloc(count, size, bands, attributes, out);
    for (int row = 0; row < count && status == MC_OK; row += WORLD_CHUNK) {
        int n = count - row < WORLD_CHUNK ? count - row : WORLD_CHUNK;
        mc_tensor *tiles;
        status = mc_tensor_new(&tiles, MC_SHAPE(n, MC_SYNTH_BANDS, MC_SYNTH_SIZE, MC_SYNTH_SIZE), "tiles");
        if (status == MC_OK) status = make_chunk(seed, first + row, row, bands, norm, tiles, out);
        mc_tensor_free(tiles);
    }
    if (status != MC_OK) mc_synth_views_free(out);
    return status;
}

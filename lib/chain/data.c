/* Paired data for the chain: (spectral view, RGB view, label) by item
 * number, from a EuroSAT-MS folder (read lazily, batch by batch) or from
 * tensors in memory (the demo's synthetic world). The trainer sees only the
 * mc_chain_data interface, so both go through the same training code. */
#include "mmchain/chain.h"
#include "core/grow.h"

#include <stdlib.h>
#include <string.h>

void mc_chain_data_free(mc_chain_data *data) {
    if (!data) return;
    if (data->release) data->release(data->ctx);
    memset(data, 0, sizeof *data);
}

/* ---------------------------------------------------------------------------
 * EuroSAT-MS
 * ------------------------------------------------------------------------- */

typedef struct eurosat_source {
    const mc_eurosat *ds;
    const int *split_indices; /* (count): item -> dataset index */
    int count;
    mc_bands bands;
    mc_norm norm;
    const char **class_names; /* (num_classes), borrowed strings */
    int *scratch;             /* dataset indices of one load */
    size_t scratch_capacity;
    char *rgb_source;         /* mc_chain_data.rgb_source */
} eurosat_source;

static mc_status eurosat_indices(eurosat_source *src, const int *items, int n, int count) {
    if (mc_grow((void **)&src->scratch, &src->scratch_capacity, (size_t)n, sizeof *src->scratch, 64,
                "dataset indices") != MC_OK)
        return mc_error_context(MC_ERR_NOMEM, "EuroSAT pairs: ");
    for (int i = 0; i < n; i++) {
        if (items[i] < 0 || items[i] >= count)
            return mc_error(MC_ERR_ARG, "EuroSAT pairs: item %d outside 0..%d", items[i], count - 1);
        src->scratch[i] = src->split_indices[items[i]];
    }
    return MC_OK;
}

static mc_status eurosat_load(void *ctx, const int *items, int n, mc_tensor *spectral,
                              mc_tensor *rgb, int *labels) {
    eurosat_source *src = ctx;
    MC_TRY(eurosat_indices(src, items, n, src->count));
    if (spectral) MC_TRY(mc_eurosat_load_batch(src->ds, src->scratch, n, &src->bands, &src->norm, spectral));
    if (rgb) MC_TRY(mc_eurosat_load_rgb(src->ds, src->scratch, n, rgb));
    if (labels) mc_eurosat_labels(src->ds, src->scratch, n, labels);
    return MC_OK;
}

static const char *eurosat_tile_key(void *ctx, int item) {
    eurosat_source *src = ctx;
    if (item < 0 || item >= src->count) return NULL; /* no such tile: no key */
    return mc_eurosat_path(src->ds, src->split_indices[item]);
}

static void eurosat_release(void *ctx) {
    eurosat_source *src = ctx;
    if (!src) return;
    free(src->rgb_source);
    free(src->class_names);
    free(src->scratch);
    free(src);
}

/* Every asked band must exist in the tiles (a 3-band file cannot give B11). */
static mc_status check_bands_present(const mc_eurosat *ds, const mc_bands *bands, int tile_bands) {
    for (int i = 0; i < bands->count; i++)
        if (bands->index[i] >= tile_bands) {
            const mc_band_info *info = mc_eurosat_band(bands->index[i]);
            return mc_error(MC_ERR_ARG,
                            "the tiles of %s have %d bands, so band %s (file band %d) is not there",
                            mc_eurosat_size(ds) > 0 ? mc_eurosat_path(ds, 0) : "the dataset",
                            tile_bands, info ? info->name : "?", bands->index[i] + 1);
        }
    return MC_OK;
}

mc_status mc_chain_data_from_eurosat(mc_chain_data *out, const mc_eurosat *ds, mc_split split,
                                     const mc_bands *bands, const mc_norm *norm) {
    if (!out || !ds || !bands || !norm || bands->count < 1)
        return mc_error(MC_ERR_ARG, "EuroSAT pairs: need a dataset, bands and a normalisation");
    int height, width, tile_bands;
    mc_eurosat_tile_shape(ds, &height, &width, &tile_bands);
    MC_TRY(check_bands_present(ds, bands, tile_bands));
    const int *indices;
    int count;
    MC_TRY(mc_eurosat_split(ds, split, &indices, &count));
    if (count < 1)
        return mc_error(MC_ERR_ARG, "EuroSAT pairs: the %s split is empty", mc_split_name(split));
    eurosat_source *src = calloc(1, sizeof *src);
    int k = mc_eurosat_num_classes(ds);
    if (src) src->class_names = calloc((size_t)k, sizeof *src->class_names);
    /* The tile keys are the .tif paths whichever way the RGB view is made. */
    const char *rgb_dir = mc_eurosat_rgb_dir(ds);
    const size_t source_len = 64 + (rgb_dir ? strlen(rgb_dir) : 0);
    if (src && src->class_names) src->rgb_source = malloc(source_len);
    if (src && src->rgb_source) {
        if (rgb_dir) snprintf(src->rgb_source, source_len, "RGB release %s", rgb_dir);
        else snprintf(src->rgb_source, source_len, "the tiles' B04,B03,B02 / %g", (double)MC_EUROSAT_RGB_SCALE);
    }
    if (!src || !src->class_names || !src->rgb_source) {
        eurosat_release(src);
        return mc_error(MC_ERR_NOMEM, "EuroSAT pairs: out of memory");
    }
    for (int c = 0; c < k; c++) src->class_names[c] = mc_eurosat_class_name(ds, c);
    src->ds = ds;
    src->split_indices = indices;
    src->count = count;
    src->bands = *bands;
    src->norm = *norm;
    *out = (mc_chain_data){
        .count = count, .bands = bands->count, .height = height, .width = width,
        .rgb_height = height, .rgb_width = width, .rgb_channels = 3, .num_classes = k,
        .class_names = src->class_names, .load = eurosat_load, .tile_key = eurosat_tile_key,
        .rgb_source = src->rgb_source, .release = eurosat_release, .ctx = src,
    };
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * tensors in memory
 * ------------------------------------------------------------------------- */

typedef struct tensor_source {
    const mc_tensor *spectral, *rgb; /* (N, C, H, W), (N, 3, Hr, Wr) */
    const int *labels;               /* (N) */
} tensor_source;

/* dst[i] = src[items[i]] for rows of row_len floats. */
static void gather_rows(const float *src, const int *items, int n, int64_t row_len, float *dst) {
    for (int i = 0; i < n; i++)
        memcpy(dst + (int64_t)i * row_len, src + (int64_t)items[i] * row_len,
               (size_t)row_len * sizeof *dst);
}

static mc_status tensor_load(void *ctx, const int *items, int n, mc_tensor *spectral, mc_tensor *rgb,
                             int *labels) {
    tensor_source *src = ctx;
    int64_t count = src->spectral->shape.dim[0];
    for (int i = 0; i < n; i++)
        if (items[i] < 0 || items[i] >= count)
            return mc_error(MC_ERR_ARG, "tensor pairs: item %d outside 0..%lld", items[i],
                            (long long)count - 1);
    int64_t spectral_row = src->spectral->numel / count, rgb_row = src->rgb->numel / count;
    if (spectral && spectral->numel != n * spectral_row)
        return mc_error(MC_ERR_SHAPE, "tensor pairs: spectral batch holds %lld floats, expected %lld",
                        (long long)spectral->numel, (long long)(n * spectral_row));
    if (rgb && rgb->numel != n * rgb_row)
        return mc_error(MC_ERR_SHAPE, "tensor pairs: RGB batch holds %lld floats, expected %lld",
                        (long long)rgb->numel, (long long)(n * rgb_row));
    if (spectral) gather_rows(src->spectral->data, items, n, spectral_row, spectral->data);
    if (rgb) gather_rows(src->rgb->data, items, n, rgb_row, rgb->data);
    if (labels)
        for (int i = 0; i < n; i++) labels[i] = src->labels[items[i]];
    return MC_OK;
}

mc_status mc_chain_data_from_tensors(mc_chain_data *out, const mc_tensor *spectral,
                                     const mc_tensor *rgb, const int *labels, int num_classes,
                                     const char *const *class_names) {
    char a[128], b[128];
    if (!out || !spectral || !rgb || !labels || num_classes < 1 || !class_names)
        return mc_error(MC_ERR_ARG, "tensor pairs: need spectral and RGB tensors, labels and classes");
    if (spectral->shape.ndim != 4 || rgb->shape.ndim != 4 || rgb->shape.dim[1] != 3 ||
        rgb->shape.dim[0] != spectral->shape.dim[0])
        return mc_error(MC_ERR_SHAPE,
                        "tensor pairs: expected spectral (N, C, H, W) and rgb (N, 3, H, W), got %s "
                        "and %s",
                        mc_tensor_str(spectral, a, sizeof a), mc_tensor_str(rgb, b, sizeof b));
    int count = (int)spectral->shape.dim[0];
    for (int i = 0; i < count; i++)
        if (labels[i] < 0 || labels[i] >= num_classes)
            return mc_error(MC_ERR_ARG, "tensor pairs: label %d of tile %d is outside 0..%d",
                            labels[i], i, num_classes - 1);
    tensor_source *src = calloc(1, sizeof *src);
    if (!src) return mc_error(MC_ERR_NOMEM, "tensor pairs: out of memory");
    *src = (tensor_source){.spectral = spectral, .rgb = rgb, .labels = labels};
    *out = (mc_chain_data){
        .count = count, .bands = (int)spectral->shape.dim[1], .height = (int)spectral->shape.dim[2],
        .width = (int)spectral->shape.dim[3], .rgb_height = (int)rgb->shape.dim[2],
        .rgb_width = (int)rgb->shape.dim[3], .rgb_channels = 3, .num_classes = num_classes,
        .class_names = class_names, .load = tensor_load, .tile_key = NULL, .release = free,
        .ctx = src,
    };
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * an evenly spaced subset (a capped validation set)
 * ------------------------------------------------------------------------- */

typedef struct subset_source {
    const mc_chain_data *base;
    int count;
    int *base_item;  /* (count): view item -> base item */
    int *scratch;    /* base items of one load */
    size_t scratch_capacity;
} subset_source;

static mc_status subset_load(void *ctx, const int *items, int n, mc_tensor *spectral,
                             mc_tensor *rgb, int *labels) {
    subset_source *src = ctx;
    if (mc_grow((void **)&src->scratch, &src->scratch_capacity, (size_t)n, sizeof *src->scratch, 64,
                "base items") != MC_OK)
        return mc_error_context(MC_ERR_NOMEM, "tile subset: ");
    for (int i = 0; i < n; i++) {
        if (items[i] < 0 || items[i] >= src->count)
            return mc_error(MC_ERR_ARG, "tile subset: item %d of %d tiles", items[i], src->count);
        src->scratch[i] = src->base_item[items[i]];
    }
    return src->base->load(src->base->ctx, src->scratch, n, spectral, rgb, labels);
}

static const char *subset_tile_key(void *ctx, int item) {
    subset_source *src = ctx;
    if (item < 0 || item >= src->count) return NULL; /* as the base's, for an item it lacks */
    return src->base->tile_key(src->base->ctx, src->base_item[item]);
}

static void subset_release(void *ctx) {
    subset_source *src = ctx;
    if (!src) return;
    free(src->base_item);
    free(src->scratch);
    free(src);
}

mc_status mc_chain_data_subset(mc_chain_data *out, const mc_chain_data *base, int count) {
    if (!out || !base || count < 1 || count > base->count)
        return mc_error(MC_ERR_ARG, "tile subset: %d tiles of a source of %d", count,
                        base ? base->count : 0);
    subset_source *src = calloc(1, sizeof *src);
    if (src) src->base_item = malloc((size_t)count * sizeof *src->base_item);
    if (!src || !src->base_item) {
        subset_release(src);
        return mc_error(MC_ERR_NOMEM, "tile subset: out of memory");
    }
    src->base = base;
    src->count = count;
    for (int i = 0; i < count; i++) src->base_item[i] = (int)((int64_t)i * base->count / count);
    *out = *base;
    out->count = count;
    out->load = subset_load;
    out->tile_key = base->tile_key ? subset_tile_key : NULL;
    out->release = subset_release;
    out->ctx = src;
    return MC_OK;
}

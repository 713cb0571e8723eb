/* EuroSAT-MS: bands, normalisation, the dataset index, splits, and lazy
 * batch loading of GeoTIFF tiles (include/mmchain/data.h, docs/data.md). */
#include "mmchain/data.h"
#include "mmchain/image.h"

#include "core/excerpt.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- bands ---- */

/* Centre wavelengths of Sentinel-2A's MSI and native resolutions, from ESA's
 * Sentinel-2 User Handbook (Table: "Spectral bands for the SENTINEL-2
 * sensors"), in EuroSAT-MS's file order (B8A last). */
static const mc_band_info band_table[MC_EUROSAT_NUM_BANDS] = {
    {"B01", 442.7f, 60, "coastal aerosol"},
    {"B02", 492.4f, 10, "blue"},
    {"B03", 559.8f, 10, "green"},
    {"B04", 664.6f, 10, "red"},
    {"B05", 704.1f, 20, "vegetation red edge"},
    {"B06", 740.5f, 20, "vegetation red edge"},
    {"B07", 782.8f, 20, "vegetation red edge"},
    {"B08", 832.8f, 10, "NIR"},
    {"B09", 945.1f, 60, "water vapour"},
    {"B10", 1373.5f, 60, "SWIR cirrus"},
    {"B11", 1613.7f, 20, "SWIR"},
    {"B12", 2202.4f, 20, "SWIR"},
    {"B8A", 864.7f, 20, "narrow NIR (vegetation red edge)"},
};

const mc_band_info *mc_eurosat_band(int i) {
    return i >= 0 && i < MC_EUROSAT_NUM_BANDS ? &band_table[i] : NULL;
}

/* "B08", "B8", "b08", " B8A " -> file index; -1 if not a band name. */
int mc_eurosat_band_index(const char *name) {
    if (!name) return -1;
    while (isspace((unsigned char)*name)) name++;
    if (toupper((unsigned char)*name) != 'B') return -1;
    name++;
    char digits[8];
    int n = 0;
    while (n < 7 && name[n] && !isspace((unsigned char)name[n])) {
        digits[n] = (char)toupper((unsigned char)name[n]);
        n++;
    }
    digits[n] = '\0';
    for (const char *rest = name + n; *rest; rest++)
        if (!isspace((unsigned char)*rest)) return -1;
    if (strcmp(digits, "8A") == 0 || strcmp(digits, "08A") == 0) return 12;
    if (n == 0 || n > 2) return -1;
    for (int i = 0; i < n; i++)
        if (!isdigit((unsigned char)digits[i])) return -1;
    int number = atoi(digits);
    return number >= 1 && number <= 12 ? number - 1 : -1;
}

static const char *valid_band_list(void) {
    return "B01 B02 B03 B04 B05 B06 B07 B08 B09 B10 B11 B12 B8A, or \"all\", or \"rgb\"";
}

mc_status mc_bands_parse(const char *spec, mc_bands *out) {
    if (!spec || !out) return mc_error(MC_ERR_ARG, "bands: NULL argument");
    memset(out, 0, sizeof *out);
    if (strcmp(spec, "all") == 0) {
        for (int i = 0; i < MC_EUROSAT_NUM_BANDS; i++) out->index[i] = i;
        out->count = MC_EUROSAT_NUM_BANDS;
        return MC_OK;
    }
    if (strcmp(spec, "rgb") == 0) spec = "B04,B03,B02";
    const char *p = spec;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char name[32];
        if (len >= sizeof name) /* cut to fit, its end would go unread */
            return mc_error(MC_ERR_ARG, "bands \"%.40s...\": a band name of %zu bytes (valid: %s)",
                            spec, len, valid_band_list());
        snprintf(name, sizeof name, "%.*s", (int)len, p);
        int index = mc_eurosat_band_index(name);
        if (index < 0)
            return mc_error(MC_ERR_ARG, "bands \"%s\": unknown band \"%s\" (valid: %s)", spec, name,
                            valid_band_list());
        for (int i = 0; i < out->count; i++)
            if (out->index[i] == index) /* the same input channel twice: a mistake, never a choice */
                return mc_error(MC_ERR_ARG, "bands \"%s\": band %s is named twice", spec, name);
        if (out->count == (int)(sizeof out->index / sizeof out->index[0]))
            return mc_error(MC_ERR_ARG, "bands \"%s\": more than %d bands", spec, out->count);
        out->index[out->count++] = index;
        if (!comma) break;
        p = comma + 1;
    }
    if (out->count == 0)
        return mc_error(MC_ERR_ARG, "bands \"%s\": no band named (valid: %s)", spec, valid_band_list());
    return MC_OK;
}

const char *mc_bands_str(const mc_bands *bands, char *buf, size_t buf_len) {
    if (!buf || buf_len == 0) return buf;
    buf[0] = '\0';
    size_t used = 0;
    for (int i = 0; bands && i < bands->count && used < buf_len; i++) {
        const mc_band_info *info = mc_eurosat_band(bands->index[i]);
        int n = snprintf(buf + used, buf_len - used, "%s%s", i ? "," : "", info ? info->name : "?");
        if (n < 0) break;
        used += (size_t)n;
    }
    return buf;
}

/* ---- normalisation ---- */

/* torchgeo's per-band EuroSAT-MS statistics, file band order, from
 * torchgeo/datamodules/eurosat.py (EuroSATDataModule.band_means/band_stds,
 * torchgeo v0.2, microsoft/torchgeo, MIT licence). */
static const float torchgeo_mean[MC_EUROSAT_NUM_BANDS] = {
    1354.40546513f, 1118.24399958f, 1042.92983953f, 947.62620298f, 1199.47283961f,
    1999.79090914f, 2369.22292565f, 2296.82608323f, 732.08340178f, 12.11327804f,
    1819.01027855f, 1118.92391149f, 2594.14080798f};
static const float torchgeo_std[MC_EUROSAT_NUM_BANDS] = {
    245.71762908f, 333.00778264f, 395.09249139f, 593.75055589f, 566.4170017f,
    861.18399006f, 1086.63139075f, 1117.98170791f, 404.91978886f, 4.77584468f,
    1002.58768311f, 761.30323499f, 1231.58581042f};

static const char *const norm_names[] = {"torchgeo", "reflectance", "dataset", "none"};

const char *mc_norm_name(mc_norm_kind kind) {
    return kind >= MC_NORM_TORCHGEO && kind <= MC_NORM_NONE ? norm_names[kind] : "?";
}

mc_status mc_norm_parse(const char *name, mc_norm_kind *out) {
    for (int k = MC_NORM_TORCHGEO; name && k <= MC_NORM_NONE; k++)
        if (strcmp(name, norm_names[k]) == 0) {
            *out = (mc_norm_kind)k;
            return MC_OK;
        }
    return mc_error(MC_ERR_ARG, "normalisation \"%s\" is unknown (valid: torchgeo, reflectance, dataset, none)",
                    name ? name : "(null)");
}

mc_status mc_norm_init(mc_norm *norm, mc_norm_kind kind) {
    if (!norm) return mc_error(MC_ERR_ARG, "mc_norm_init: NULL norm");
    norm->kind = kind;
    for (int b = 0; b < MC_EUROSAT_NUM_BANDS; b++) {
        switch (kind) {
        case MC_NORM_TORCHGEO: norm->mean[b] = torchgeo_mean[b], norm->std[b] = torchgeo_std[b]; break;
        case MC_NORM_REFLECTANCE: norm->mean[b] = 0.0f, norm->std[b] = 10000.0f; break;
        case MC_NORM_NONE: norm->mean[b] = 0.0f, norm->std[b] = 1.0f; break;
        default:
            return mc_error(MC_ERR_ARG, "mc_norm_init: normalisation \"%s\" needs measured statistics "
                            "(use mc_eurosat_compute_norm)", mc_norm_name(kind));
        }
    }
    return MC_OK;
}

/* ---- the RGB view ---- */

float mc_eurosat_rgb_value(float dn) {
    float v = dn / MC_EUROSAT_RGB_SCALE;
    return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
}

/* ---- selecting bands from a raster ---- */

mc_status mc_raster_select(const mc_raster *raster, const char *path, const mc_bands *bands,
                           const mc_norm *norm, float *out /* (bands->count, H, W) */) {
    if (!raster || !bands || !out) return mc_error(MC_ERR_ARG, "mc_raster_select: NULL argument");
    size_t plane = (size_t)raster->height * raster->width;
    for (int i = 0; i < bands->count; i++) {
        int b = bands->index[i];
        if (b < 0 || b >= raster->bands) {
            const mc_band_info *info = mc_eurosat_band(b);
            return mc_error(MC_ERR_SHAPE, "%s: has %d bands, but band %s (band %d of EuroSAT's 13) was asked for",
                            path ? path : "raster", raster->bands, info ? info->name : "?", b + 1);
        }
        float mean = norm && b < MC_EUROSAT_NUM_BANDS ? norm->mean[b] : 0.0f;
        float std = norm && b < MC_EUROSAT_NUM_BANDS ? norm->std[b] : 1.0f;
        float inv_std = std > 0.0f ? 1.0f / std : 1.0f; /* never divide by zero */
        const float *src = raster->data + (size_t)b * plane;
        float *dst = out + (size_t)i * plane;
        for (size_t k = 0; k < plane; k++) dst[k] = (src[k] - mean) * inv_std;
    }
    return MC_OK;
}

mc_status mc_tile_load(const char *path, const mc_bands *bands, const mc_norm *norm, mc_tensor **out) {
    if (!path || !bands || !out) return mc_error(MC_ERR_ARG, "mc_tile_load: NULL argument");
    mc_raster raster;
    MC_TRY(mc_tiff_read(path, &raster));
    mc_tensor *t = NULL;
    mc_status status = mc_tensor_new(&t, MC_SHAPE(1, bands->count, raster.height, raster.width), path);
    if (status == MC_OK) status = mc_raster_select(&raster, path, bands, norm, t->data);
    mc_raster_free(&raster);
    if (status != MC_OK) {
        mc_tensor_free(t);
        return status;
    }
    *out = t;
    return MC_OK;
}

/* ---- the dataset ---- */

struct mc_eurosat {
    char *dir;
    mc_image_folder files;  /* tif paths, labels, class names */
    char **rgb_paths;       /* per tile, or NULL without rgb_dir */
    char *rgb_dir;          /* options->rgb_dir, or NULL */
    int height, width, bands;
    int *split_indices[4];  /* MC_SPLIT_ALL .. MC_SPLIT_TEST */
    int split_count[4];
};

const char *mc_split_name(mc_split split) {
    static const char *const names[] = {"all", "train", "val", "test"};
    return split >= MC_SPLIT_ALL && split <= MC_SPLIT_TEST ? names[split] : "?";
}

mc_eurosat_options mc_eurosat_default_options(void) {
    mc_eurosat_options options = {NULL, NULL, 0, 0, 0};
    return options;
}

int mc_eurosat_size(const mc_eurosat *ds) { return ds ? ds->files.count : 0; }
int mc_eurosat_num_classes(const mc_eurosat *ds) { return ds ? ds->files.num_classes : 0; }
const char *mc_eurosat_class_name(const mc_eurosat *ds, int label) {
    return ds && label >= 0 && label < ds->files.num_classes ? ds->files.class_names[label] : NULL;
}
const char *mc_eurosat_rgb_dir(const mc_eurosat *ds) { return ds ? ds->rgb_dir : NULL; }
const char *mc_eurosat_path(const mc_eurosat *ds, int index) {
    return ds && index >= 0 && index < ds->files.count ? ds->files.paths[index] : NULL;
}
int mc_eurosat_label(const mc_eurosat *ds, int index) {
    return ds && index >= 0 && index < ds->files.count ? ds->files.labels[index] : -1;
}
void mc_eurosat_tile_shape(const mc_eurosat *ds, int *height, int *width, int *bands) {
    if (height) *height = ds ? ds->height : 0;
    if (width) *width = ds ? ds->width : 0;
    if (bands) *bands = ds ? ds->bands : 0;
}
void mc_eurosat_labels(const mc_eurosat *ds, const int *indices, int n, int *labels) {
    for (int i = 0; i < n; i++) labels[i] = mc_eurosat_label(ds, indices[i]);
}

mc_status mc_eurosat_split(const mc_eurosat *ds, mc_split split, const int **indices, int *count) {
    if (!ds || !indices || !count || split < MC_SPLIT_ALL || split > MC_SPLIT_TEST)
        return mc_error(MC_ERR_ARG, "mc_eurosat_split: bad argument");
    *indices = ds->split_indices[split];
    *count = ds->split_count[split];
    return MC_OK;
}

void mc_eurosat_free(mc_eurosat *ds) {
    if (!ds) return;
    if (ds->rgb_paths)
        for (int i = 0; i < ds->files.count; i++) free(ds->rgb_paths[i]);
    free(ds->rgb_paths);
    free(ds->rgb_dir);
    for (int s = 0; s < 4; s++) free(ds->split_indices[s]);
    mc_image_folder_free(&ds->files);
    free(ds->dir);
    free(ds);
}

/* "dir/Forest/Forest_12.tif" -> "Forest_12" into buf; NULL when the stem
 * does not fit (a cut stem could match another tile's). */
static const char *path_stem(const char *path, char *buf, size_t len) {
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    const char *dot = strrchr(name, '.');
    size_t n = dot && dot != name ? (size_t)(dot - name) : strlen(name);
    if (n >= len) return NULL;
    snprintf(buf, len, "%.*s", (int)n, name);
    return buf;
}

/* ---- stems, for matching split files and RGB images ---- */

typedef struct stem_entry {
    char stem[128];
    int index;
} stem_entry;

static int compare_stems(const void *a, const void *b) {
    return strcmp(((const stem_entry *)a)->stem, ((const stem_entry *)b)->stem);
}

static mc_status make_stem_index(const mc_eurosat *ds, stem_entry **out) {
    stem_entry *stems = malloc(sizeof *stems * (size_t)ds->files.count);
    if (!stems) return mc_error(MC_ERR_NOMEM, "%s: out of memory indexing tiles", ds->dir);
    for (int i = 0; i < ds->files.count; i++) {
        if (!path_stem(ds->files.paths[i], stems[i].stem, sizeof stems[i].stem)) {
            free(stems);
            return mc_error(MC_ERR_FORMAT, "%s: tile name longer than %zu bytes (split files match "
                            "tiles by name)", ds->files.paths[i], sizeof stems[i].stem - 1);
        }
        stems[i].index = i;
    }
    qsort(stems, (size_t)ds->files.count, sizeof *stems, compare_stems);
    /* Two tiles of one name (A/x.tif and B/x.tif, x.tif and x.tiff): a
     * split file would name one of them, and the other would drop out of
     * every split without a word. */
    for (int i = 1; i < ds->files.count; i++)
        if (strcmp(stems[i - 1].stem, stems[i].stem) == 0) {
            mc_status s = mc_error(MC_ERR_FORMAT,
                                   "%s and %s have the same name %s: split files match tiles "
                                   "by name, so each name must be one tile's",
                                   ds->files.paths[stems[i - 1].index],
                                   ds->files.paths[stems[i].index], stems[i].stem);
            free(stems);
            return s;
        }
    *out = stems;
    return MC_OK;
}

static int find_stem(const stem_entry *stems, int n, const char *stem) {
    stem_entry key;
    snprintf(key.stem, sizeof key.stem, "%s", stem);
    const stem_entry *hit = bsearch(&key, stems, (size_t)n, sizeof *stems, compare_stems);
    return hit ? hit->index : -1;
}

/* ---- torchgeo split files ---- */

static int compare_ints(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Read split_dir/eurosat-<name>.txt into ds->split_indices[split]. A
 * missing test file is allowed (empty split); train and val are required.
 * listed_in[tile] is the split that already lists the tile (0: none): a tile
 * listed twice, or in two splits, is refused, since a tile in both training
 * and validation would leak into the score. Names from the file are quoted
 * as sanitised excerpts (mc_excerpt): a garbage file cannot write raw bytes
 * to the terminal. */
static mc_status read_split_file(mc_eurosat *ds, const char *split_dir, mc_split split,
                                 const stem_entry *stems, unsigned char *listed_in) {
    char path[4096];
    int path_len = snprintf(path, sizeof path, "%s/eurosat-%s.txt", split_dir, mc_split_name(split));
    if (path_len < 0 || (size_t)path_len >= sizeof path)
        return mc_error(MC_ERR_IO, "split folder %s: path too long", split_dir);
    FILE *file = fopen(path, "r");
    if (!file) {
        if (split == MC_SPLIT_TEST && errno == ENOENT) return MC_OK;
        return mc_error(MC_ERR_IO, "split file %s: cannot open: %s", path, strerror(errno));
    }
    int *indices = malloc(sizeof(int) * (size_t)(ds->files.count > 0 ? ds->files.count : 1));
    if (!indices) {
        fclose(file);
        return mc_error(MC_ERR_NOMEM, "split file %s: out of memory", path);
    }
    int count = 0, line_number = 0;
    char line[512], stem[128];
    mc_status status = MC_OK;
    while (status == MC_OK && fgets(line, sizeof line, file)) {
        line_number++;
        size_t len = strcspn(line, "\r\n");
        if (line[len] == '\0' && !feof(file)) { /* no end of line within the buffer */
            status = mc_error(MC_ERR_FORMAT, "split file %s line %d: longer than %zu bytes", path,
                              line_number, sizeof line - 2);
            break;
        }
        /* Whitespace at either end is no part of the name (torchgeo
         * strips each line). */
        while (len > 0 && isspace((unsigned char)line[len - 1])) len--;
        line[len] = '\0';
        size_t lead = 0;
        while (isspace((unsigned char)line[lead])) lead++;
        memmove(line, line + lead, len - lead + 1);
        if (line[0] == '\0') continue;
        const char *wanted = path_stem(line, stem, sizeof stem);
        int index = wanted ? find_stem(stems, ds->files.count, wanted) : -1;
        char quoted[MC_EXCERPT_LEN];
        if (!wanted)
            status = mc_error(MC_ERR_FORMAT, "split file %s line %d: tile name longer than %zu bytes",
                              path, line_number, sizeof stem - 1);
        else if (index < 0)
            status = mc_error(MC_ERR_FORMAT, "split file %s line %d: tile \"%s\" is not in %s", path,
                              line_number, mc_excerpt(stem, quoted, sizeof quoted), ds->dir);
        else if (listed_in[index] == split)
            status = mc_error(MC_ERR_FORMAT, "split file %s line %d: tile \"%s\" is listed twice", path,
                              line_number, mc_excerpt(stem, quoted, sizeof quoted));
        else if (listed_in[index] != 0)
            status = mc_error(MC_ERR_FORMAT, "split file %s line %d: tile \"%s\" is also in the %s split "
                              "(a tile in two splits leaks between training and evaluation)", path,
                              line_number, mc_excerpt(stem, quoted, sizeof quoted),
                              mc_split_name((mc_split)listed_in[index]));
        else
            indices[count++] = index, listed_in[index] = (unsigned char)split;
    }
    /* fgets ends at a read error as at the end: told apart here, not taken
     * for a shorter split (a folder in the file's place, an I/O error). */
    if (status == MC_OK && ferror(file))
        status = mc_error(MC_ERR_IO, "split file %s: read failed after line %d: %s", path,
                          line_number, strerror(errno));
    fclose(file);
    if (status != MC_OK) {
        free(indices);
        return status;
    }
    qsort(indices, (size_t)count, sizeof(int), compare_ints);
    ds->split_indices[split] = indices;
    ds->split_count[split] = count;
    return MC_OK;
}

/* ---- the seeded stratified split ---- */

/* Share `needed` items among classes in proportion to `available`, never
 * more than a class has: floor shares, then one more to the classes with
 * the largest remainders (Hamilton's method). */
static void stratified_quota(int needed, const int *available, int num_classes, int *quota) {
    long total = 0;
    for (int c = 0; c < num_classes; c++) total += available[c];
    int given = 0;
    for (int c = 0; c < num_classes; c++) {
        quota[c] = total ? (int)((long)needed * available[c] / total) : 0;
        given += quota[c];
    }
    while (given < needed) {
        int best = -1;
        double best_remainder = -1.0;
        for (int c = 0; c < num_classes; c++) {
            if (quota[c] >= available[c]) continue;
            double remainder = (double)needed * available[c] / (double)total - quota[c];
            if (remainder > best_remainder) best_remainder = remainder, best = c;
        }
        if (best < 0) break;
        quota[best]++;
        given++;
    }
}

static mc_status resolve_split_sizes(const mc_eurosat *ds, const mc_eurosat_options *options, int *train,
                                     int *val) {
    int total = ds->files.count;
    *train = options->train_size, *val = options->val_size;
    if (*train < 0 || *val < 0)
        return mc_error(MC_ERR_ARG, "%s: split sizes %d / %d must not be negative", ds->dir, *train, *val);
    if (*train == 0 && *val == 0 && total < MC_EUROSAT_DEFAULT_TRAIN + MC_EUROSAT_DEFAULT_VAL) {
        /* A small dataset: the default 26:10 ratio over all its tiles. */
        *train = (int)((long)total * MC_EUROSAT_DEFAULT_TRAIN / (MC_EUROSAT_DEFAULT_TRAIN + MC_EUROSAT_DEFAULT_VAL));
        *val = total - *train;
        return MC_OK;
    }
    /* One size given: the other takes its default, or what the given one
     * leaves when that is less (train_size 300 of 500 tiles: 200 val, not
     * a refused 1000). */
    const bool train_given = *train > 0, val_given = *val > 0;
    if (!train_given) *train = MC_EUROSAT_DEFAULT_TRAIN;
    if (!val_given) *val = MC_EUROSAT_DEFAULT_VAL;
    if (train_given && !val_given && *val > total - *train) *val = total - *train;
    if (val_given && !train_given && *train > total - *val) *train = total - *val;
    if ((long)*train + *val > total || *train < 1 || *val < 1)
        return mc_error(MC_ERR_ARG, "%s: a split of %d train + %d val tiles needs more than the %d tiles there",
                        ds->dir, train_given ? options->train_size : MC_EUROSAT_DEFAULT_TRAIN,
                        val_given ? options->val_size : MC_EUROSAT_DEFAULT_VAL, total);
    return MC_OK;
}

/* Shuffle each class's tiles with the seed, give train its quota from the
 * front of each class, val the next, test the rest. */
static mc_status stratified_split(mc_eurosat *ds, const mc_eurosat_options *options) {
    int train, val;
    MC_TRY(resolve_split_sizes(ds, options, &train, &val));
    int k = ds->files.num_classes, total = ds->files.count;
    int *available = calloc((size_t)k, sizeof(int)), *train_quota = calloc((size_t)k, sizeof(int));
    int *val_quota = calloc((size_t)k, sizeof(int)), *order = malloc(sizeof(int) * (size_t)total);
    for (int s = MC_SPLIT_TRAIN; s <= MC_SPLIT_TEST; s++)
        ds->split_indices[s] = malloc(sizeof(int) * (size_t)total);
    bool ok = available && train_quota && val_quota && order && ds->split_indices[MC_SPLIT_TRAIN] &&
              ds->split_indices[MC_SPLIT_VAL] && ds->split_indices[MC_SPLIT_TEST];
    if (ok) {
        for (int i = 0; i < total; i++) available[ds->files.labels[i]]++;
        stratified_quota(train, available, k, train_quota);
        for (int c = 0; c < k; c++) available[c] -= train_quota[c];
        stratified_quota(val, available, k, val_quota);
        mc_rng rng;
        mc_rng_seed(&rng, options->seed);
        /* The listing is grouped by class, so each class is one contiguous run. */
        for (int start = 0, c = 0; c < k; c++) {
            int n = 0;
            while (start + n < total && ds->files.labels[start + n] == c) order[start + n] = start + n, n++;
            mc_rng_shuffle(&rng, order + start, n);
            for (int j = 0; j < n; j++) {
                mc_split s = j < train_quota[c] ? MC_SPLIT_TRAIN
                             : j < train_quota[c] + val_quota[c] ? MC_SPLIT_VAL : MC_SPLIT_TEST;
                ds->split_indices[s][ds->split_count[s]++] = order[start + j];
            }
            start += n;
        }
        for (int s = MC_SPLIT_TRAIN; s <= MC_SPLIT_TEST; s++)
            qsort(ds->split_indices[s], (size_t)ds->split_count[s], sizeof(int), compare_ints);
    }
    free(available), free(train_quota), free(val_quota), free(order);
    return ok ? MC_OK : mc_error(MC_ERR_NOMEM, "%s: out of memory splitting", ds->dir);
}

static mc_status make_splits(mc_eurosat *ds, const mc_eurosat_options *options) {
    int total = ds->files.count;
    ds->split_indices[MC_SPLIT_ALL] = malloc(sizeof(int) * (size_t)total);
    if (!ds->split_indices[MC_SPLIT_ALL]) return mc_error(MC_ERR_NOMEM, "%s: out of memory", ds->dir);
    for (int i = 0; i < total; i++) ds->split_indices[MC_SPLIT_ALL][i] = i;
    ds->split_count[MC_SPLIT_ALL] = total;
    if (!options->split_dir) return stratified_split(ds, options);
    stem_entry *stems = NULL;
    MC_TRY(make_stem_index(ds, &stems));
    unsigned char *listed_in = calloc((size_t)(ds->files.count > 0 ? ds->files.count : 1), 1);
    mc_status status = listed_in ? MC_OK : mc_error(MC_ERR_NOMEM, "%s: out of memory", options->split_dir);
    for (int s = MC_SPLIT_TRAIN; status == MC_OK && s <= MC_SPLIT_TEST; s++)
        status = read_split_file(ds, options->split_dir, (mc_split)s, stems, listed_in);
    free(listed_in);
    free(stems);
    return status;
}

/* ---- the RGB release beside the tiles ---- */

static mc_status find_rgb_paths(mc_eurosat *ds, const char *rgb_dir) {
    static const char *const extensions[] = {"jpg", "png", "jpeg", "JPG", "PNG"};
    ds->rgb_paths = calloc((size_t)ds->files.count, sizeof(char *));
    if (!ds->rgb_paths) return mc_error(MC_ERR_NOMEM, "%s: out of memory", rgb_dir);
    for (int i = 0; i < ds->files.count; i++) {
        char stem[128], path[4096];
        if (!path_stem(ds->files.paths[i], stem, sizeof stem))
            return mc_error(MC_ERR_FORMAT, "%s: tile name longer than %zu bytes (RGB images are "
                            "matched by name)", ds->files.paths[i], sizeof stem - 1);
        const char *class_name = ds->files.class_names[ds->files.labels[i]];
        struct stat info;
        bool found = false;
        for (size_t e = 0; !found && e < sizeof extensions / sizeof extensions[0]; e++) {
            int n = snprintf(path, sizeof path, "%s/%s/%s.%s", rgb_dir, class_name, stem, extensions[e]);
            if (n < 0 || (size_t)n >= sizeof path)
                return mc_error(MC_ERR_IO, "RGB folder %s: path for tile %s too long", rgb_dir, stem);
            found = stat(path, &info) == 0 && S_ISREG(info.st_mode);
        }
        if (!found)
            return mc_error(MC_ERR_IO, "RGB folder %s has no image for tile %s (looked for %s/%s/%s.jpg or .png)",
                            rgb_dir, ds->files.paths[i], rgb_dir, class_name, stem);
        ds->rgb_paths[i] = strdup(path);
        if (!ds->rgb_paths[i]) return mc_error(MC_ERR_NOMEM, "%s: out of memory", rgb_dir);
    }
    return MC_OK;
}

/* ---- open ---- */

static mc_status read_first_tile_shape(mc_eurosat *ds) {
    mc_raster raster;
    MC_TRY(mc_tiff_read(ds->files.paths[0], &raster));
    ds->height = raster.height;
    ds->width = raster.width;
    ds->bands = raster.bands;
    mc_raster_free(&raster);
    return MC_OK;
}

mc_status mc_eurosat_open(mc_eurosat **out, const char *dir, const mc_eurosat_options *options) {
    if (!out || !dir) return mc_error(MC_ERR_ARG, "mc_eurosat_open: NULL argument");
    *out = NULL;
    mc_eurosat_options defaults = mc_eurosat_default_options();
    if (!options) options = &defaults;
    mc_eurosat *ds = calloc(1, sizeof *ds);
    if (!ds || !(ds->dir = strdup(dir))) {
        free(ds);
        return mc_error(MC_ERR_NOMEM, "%s: out of memory", dir);
    }
    static const char *const extensions[] = {"tif", "tiff", NULL};
    mc_status status = mc_class_folder_scan(dir, extensions, &ds->files);
    if (status == MC_OK) status = read_first_tile_shape(ds);
    if (status == MC_OK) status = make_splits(ds, options);
    if (status == MC_OK && options->rgb_dir) status = find_rgb_paths(ds, options->rgb_dir);
    if (status == MC_OK && options->rgb_dir && !(ds->rgb_dir = strdup(options->rgb_dir)))
        status = mc_error(MC_ERR_NOMEM, "%s: out of memory", options->rgb_dir);
    if (status != MC_OK) {
        mc_eurosat_free(ds);
        return status;
    }
    *out = ds;
    return MC_OK;
}

/* ---- loading batches ---- */

static mc_status check_batch(const mc_eurosat *ds, const int *indices, int n, int channels, const mc_tensor *out,
                             const char *what) {
    char buf[160];
    if (!ds || (!indices && n > 0) || !out) return mc_error(MC_ERR_ARG, "%s: NULL argument", what);
    if (out->shape.ndim != 4 || out->shape.dim[0] != n || out->shape.dim[1] != channels)
        return mc_error(MC_ERR_SHAPE, "%s: output %s must be (%d, %d, H, W)", what,
                        mc_tensor_str(out, buf, sizeof buf), n, channels);
    for (int i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= ds->files.count)
            return mc_error(MC_ERR_ARG, "%s: tile index %d is outside 0..%d", what, indices[i], ds->files.count - 1);
    return MC_OK;
}

/* MC_OK when a tile of `path` has the dataset's band count: another count
 * is another product (a 14-band file among 13-band ones), even where the
 * selected bands exist in it. */
static mc_status check_tile_bands(const char *path, int tile_bands, int dataset_bands) {
    if (tile_bands == dataset_bands) return MC_OK;
    return mc_error(MC_ERR_SHAPE, "%s: tile has %d bands, the dataset's first tile %d", path,
                    tile_bands, dataset_bands);
}

/* One tile into out: (C, H, W) selected and normalised, or the RGB view. */
static mc_status load_one(const char *path, const mc_bands *bands, const mc_norm *norm, bool rgb_view,
                          int height, int width, int file_bands, float *out) {
    mc_raster raster;
    MC_TRY(mc_tiff_read(path, &raster));
    mc_status status = MC_OK;
    if (raster.height != height || raster.width != width)
        status = mc_error(MC_ERR_SHAPE, "%s: tile is %dx%d, expected %dx%d like the batch", path,
                          raster.height, raster.width, height, width);
    else status = check_tile_bands(path, raster.bands, file_bands);
    if (status == MC_OK) status = mc_raster_select(&raster, path, bands, rgb_view ? NULL : norm, out);
    if (status == MC_OK && rgb_view)
        for (size_t k = 0; k < (size_t)3 * height * width; k++) out[k] = mc_eurosat_rgb_value(out[k]);
    mc_raster_free(&raster);
    return status;
}

/* Run load_one over a batch in parallel; the message of the failing tile
 * that comes first in the batch is carried back to the calling thread
 * (messages are thread-local), the same whichever thread meets it first. */
static mc_status load_tiles(const mc_eurosat *ds, const int *indices, int n, const mc_bands *bands,
                            const mc_norm *norm, bool rgb_view, mc_tensor *out) {
    int height = (int)out->shape.dim[2], width = (int)out->shape.dim[3];
    size_t per_tile = (size_t)bands->count * height * width;
    mc_status status = MC_OK;
    int failed_at = n; /* the batch position of the message below */
    char message[1024] = "";
    #pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < n; i++) {
        mc_status s;
        if (rgb_view && ds->rgb_paths)
            s = mc_image_load_into(ds->rgb_paths[indices[i]], true, out, i);
        else
            s = load_one(ds->files.paths[indices[i]], bands, norm, rgb_view, height, width, ds->bands,
                         out->data + per_tile * i);
        if (s != MC_OK) {
            #pragma omp critical(mc_eurosat_load)
            {
                if (i < failed_at) {
                    failed_at = i;
                    status = s;
                    snprintf(message, sizeof message, "%s", mc_last_error());
                }
            }
        }
    }
    return status == MC_OK ? MC_OK : mc_error(status, "%s", message);
}

mc_status mc_eurosat_load_batch(const mc_eurosat *ds, const int *indices, int n, const mc_bands *bands,
                                const mc_norm *norm, mc_tensor *out) {
    if (!bands) return mc_error(MC_ERR_ARG, "mc_eurosat_load_batch: NULL bands");
    MC_TRY(check_batch(ds, indices, n, bands->count, out, "mc_eurosat_load_batch"));
    return load_tiles(ds, indices, n, bands, norm, false, out);
}

mc_status mc_eurosat_load_rgb(const mc_eurosat *ds, const int *indices, int n, mc_tensor *out) {
    MC_TRY(check_batch(ds, indices, n, 3, out, "mc_eurosat_load_rgb"));
    mc_bands rgb = {3, {3, 2, 1}}; /* B04, B03, B02 */
    return load_tiles(ds, indices, n, &rgb, NULL, true, out);
}

/* ---- dataset statistics ---- */

mc_status mc_eurosat_compute_norm(const mc_eurosat *ds, mc_split split, mc_norm *out) {
    const int *indices = NULL;
    int count = 0;
    MC_TRY(mc_eurosat_split(ds, split, &indices, &count));
    if (!out || count == 0)
        return mc_error(MC_ERR_ARG, "%s: cannot measure statistics on the empty %s split", ds->dir, mc_split_name(split));
    /* Sums of (v - shift) with shift = the band's first value: exact zero
     * variance for a constant band, and no cancellation for large means. */
    double sum[MC_EUROSAT_NUM_BANDS] = {0}, sum_sq[MC_EUROSAT_NUM_BANDS] = {0};
    double shift[MC_EUROSAT_NUM_BANDS] = {0};
    double pixels = 0.0;
    int bands = ds->bands < MC_EUROSAT_NUM_BANDS ? ds->bands : MC_EUROSAT_NUM_BANDS;
    for (int i = 0; i < count; i++) {
        mc_raster raster;
        MC_TRY(mc_tiff_read(ds->files.paths[indices[i]], &raster));
        const mc_status bands_fit = check_tile_bands(ds->files.paths[indices[i]], raster.bands, ds->bands);
        if (bands_fit != MC_OK) {
            mc_raster_free(&raster);
            return bands_fit;
        }
        size_t plane = (size_t)raster.height * raster.width;
        for (int b = 0; b < bands; b++) {
            if (i == 0) shift[b] = raster.data[(size_t)b * plane];
            for (size_t k = 0; k < plane; k++) {
                double v = raster.data[(size_t)b * plane + k] - shift[b];
                sum[b] += v, sum_sq[b] += v * v;
            }
        }
        pixels += (double)plane;
        mc_raster_free(&raster);
    }
    MC_TRY(mc_norm_init(out, MC_NORM_NONE));
    out->kind = MC_NORM_DATASET;
    for (int b = 0; b < bands; b++) {
        double mean_shifted = sum[b] / pixels;
        double var = sum_sq[b] / pixels - mean_shifted * mean_shifted;
        double std = var > 0.0 ? sqrt(var) : 0.0;
        out->mean[b] = (float)(mean_shifted + shift[b]);
        out->std[b] = std > 1e-6 ? (float)std : 1.0f; /* a constant band: no division by zero */
    }
    return MC_OK;
}

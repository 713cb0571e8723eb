/* The real EuroSAT-MS sample (../shared/data/eurosat-ms-sample: 50 tiles, 5
 * per class, uncompressed pixel-interleaved 13-band uint16 GeoTIFFs) and its
 * paired RGB release JPEGs. Skipped when the sample is absent.
 *
 * Independent reference: this file decodes every tile itself from the raw
 * bytes (TIFF header, IFD, StripOffsets/StripByteCounts, little-endian
 * uint16 samples) without libtiff, and the loader must agree exactly. */
#include <stdlib.h>

#include "mmchain/pretrain.h"
#include "testutil.h"

static char ms_dir[1024], rgb_dir[1024];

static const char *const class_names[10] = {"AnnualCrop", "Forest", "HerbaceousVegetation", "Highway",
                                            "Industrial", "Pasture", "PermanentCrop", "Residential",
                                            "River", "SeaLake"};

/* ---- a raw decoder for uncompressed, contiguous, little-endian TIFFs ---- */

static unsigned u16le(const unsigned char *p) { return p[0] | (unsigned)p[1] << 8; }
static unsigned long u32le(const unsigned char *p) {
    return p[0] | (unsigned long)p[1] << 8 | (unsigned long)p[2] << 16 | (unsigned long)p[3] << 24;
}

/* The value of an IFD entry's i-th element (SHORT or LONG). */
static unsigned long entry_value(const unsigned char *file, const unsigned char *entry, unsigned long i) {
    unsigned type = u16le(entry + 2);
    unsigned long count = u32le(entry + 4);
    size_t size = type == 3 ? 2 : 4;
    const unsigned char *values = count * size <= 4 ? entry + 8 : file + u32le(entry + 8);
    return type == 3 ? u16le(values + i * 2) : u32le(values + i * 4);
}

/* pixels: (13, 64, 64) band-planar, like mc_raster. */
static void raw_decode(const char *path, float *pixels) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static unsigned char file[1 << 18];
    size_t size = fread(file, 1, sizeof file, f);
    fclose(f);
    ck_assert_msg(size > 8 && file[0] == 'I' && file[1] == 'I' && file[2] == 42, "%s: not a little-endian TIFF", path);
    const unsigned char *ifd = file + u32le(file + 4);
    unsigned entries = u16le(ifd);
    const unsigned char *offsets = NULL, *counts = NULL;
    unsigned long width = 0, height = 0, bands = 0, rows_per_strip = 0, compression = 1, planar = 1;
    for (unsigned e = 0; e < entries; e++) {
        const unsigned char *entry = ifd + 2 + 12 * e;
        switch (u16le(entry)) {
        case 256: width = entry_value(file, entry, 0); break;
        case 257: height = entry_value(file, entry, 0); break;
        case 259: compression = entry_value(file, entry, 0); break;
        case 273: offsets = entry; break;
        case 277: bands = entry_value(file, entry, 0); break;
        case 278: rows_per_strip = entry_value(file, entry, 0); break;
        case 279: counts = entry; break;
        case 284: planar = entry_value(file, entry, 0); break;
        }
    }
    ck_assert_msg(width == 64 && height == 64 && bands == 13 && compression == 1 && planar == 1 && offsets && counts,
                  "%s: not the expected uncompressed 64x64x13 layout", path);
    unsigned long strips = u32le(offsets + 4);
    for (unsigned long s = 0; s < strips; s++) {
        const unsigned char *strip = file + entry_value(file, offsets, s);
        unsigned long bytes = entry_value(file, counts, s);
        ck_assert_uint_eq(bytes, rows_per_strip * 64 * 13 * 2);
        for (unsigned long i = 0; i < bytes / 2; i++) {
            unsigned long pixel = s * rows_per_strip * 64 + i / 13, band = i % 13;
            pixels[band * 4096 + pixel] = (float)u16le(strip + 2 * i);
        }
    }
}

/* ---- tests ---- */

START_TEST(test_sample_listing) {
    mc_eurosat *ds;
    MC_CHECK_OK(mc_eurosat_open(&ds, ms_dir, NULL));
    ck_assert_int_eq(mc_eurosat_size(ds), 50);
    ck_assert_int_eq(mc_eurosat_num_classes(ds), 10);
    for (int c = 0; c < 10; c++) ck_assert_str_eq(mc_eurosat_class_name(ds, c), class_names[c]);
    for (int i = 0; i < 50; i++) {
        /* Five per class, in class order; the file name starts with its class. */
        int label = mc_eurosat_label(ds, i);
        ck_assert_int_eq(label, i / 5);
        const char *name = strrchr(mc_eurosat_path(ds, i), '/') + 1;
        ck_assert_msg(strncmp(name, class_names[label], strlen(class_names[label])) == 0 &&
                          name[strlen(class_names[label])] == '_',
                      "%s labelled %s", name, class_names[label]);
    }
    int h, w, b;
    mc_eurosat_tile_shape(ds, &h, &w, &b);
    ck_assert_int_eq(h, 64);
    ck_assert_int_eq(w, 64);
    ck_assert_int_eq(b, 13);
    mc_eurosat_free(ds);
}
END_TEST

START_TEST(test_sample_pixels_equal_raw_decode) {
    mc_eurosat *ds;
    MC_CHECK_OK(mc_eurosat_open(&ds, ms_dir, NULL));
    mc_bands all;
    MC_CHECK_OK(mc_bands_parse("all", &all));
    mc_norm none;
    MC_CHECK_OK(mc_norm_init(&none, MC_NORM_NONE));
    mc_tensor *batch;
    MC_CHECK_OK(mc_tensor_new(&batch, MC_SHAPE(50, 13, 64, 64), "sample"));
    const int *indices;
    int n;
    MC_CHECK_OK(mc_eurosat_split(ds, MC_SPLIT_ALL, &indices, &n));
    MC_CHECK_OK(mc_eurosat_load_batch(ds, indices, n, &all, &none, batch));
    float *raw = malloc(sizeof(float) * 13 * 4096);
    double band_sum[13] = {0};
    for (int i = 0; i < 50; i++) {
        raw_decode(mc_eurosat_path(ds, i), raw);
        const float *got = batch->data + (size_t)i * 13 * 4096;
        /* Count mismatches and assert once: a Check assertion per pixel is slow. */
        int mismatches = 0, first = -1;
        for (int k = 0; k < 13 * 4096; k++) {
            if (got[k] != raw[k] && mismatches++ == 0) first = k;
            band_sum[k / 4096] += raw[k];
        }
        ck_assert_msg(mismatches == 0, "%s: %d values differ from the raw decode, first band %d pixel %d: %g vs %g",
                      mc_eurosat_path(ds, i), mismatches, first / 4096, first % 4096, got[first], raw[first]);
    }
    /* Plausibility against the band means in ../shared/data/README.md
     * (real EuroSAT-MS tiles): each within 35 % on this 50-tile sample. */
    static const double readme_mean[13] = {1361, 1129, 1061, 968, 1219, 2010, 2377, 2302, 729, 12, 1848, 1152, 2596};
    for (int b = 0; b < 13; b++) {
        double mean = band_sum[b] / (50.0 * 4096);
        ck_assert_msg(fabs(mean - readme_mean[b]) < 0.35 * readme_mean[b], "band %d mean %g vs %g", b, mean,
                      readme_mean[b]);
    }
    /* torchgeo's z-score and dataset statistics stay finite on real tiles
     * (one has a constant band). */
    mc_norm norms[2];
    MC_CHECK_OK(mc_norm_init(&norms[0], MC_NORM_TORCHGEO));
    MC_CHECK_OK(mc_eurosat_compute_norm(ds, MC_SPLIT_ALL, &norms[1]));
    for (int k = 0; k < 2; k++) {
        MC_CHECK_OK(mc_eurosat_load_batch(ds, indices, n, &all, &norms[k], batch));
        int64_t not_finite = 0;
        for (int64_t i = 0; i < batch->numel; i++) not_finite += !isfinite(batch->data[i]);
        ck_assert_msg(not_finite == 0, "%s normalisation: %ld values are not finite", mc_norm_name(norms[k].kind),
                      (long)not_finite);
    }
    free(raw);
    mc_tensor_free(batch);
    mc_eurosat_free(ds);
}
END_TEST

static double correlation(const float *a, const float *b, int n) {
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) ma += a[i], mb += b[i];
    ma /= n, mb /= n;
    for (int i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return sab / sqrt(saa * sbb + 1e-30);
}

/* The derived RGB view (B04, B03, B02 / 2740) against the release's JPEG
 * of the same tile: correlation > 0.9 per tile, and a small mean error. */
START_TEST(test_sample_rgb_view_matches_release) {
    mc_eurosat *derived, *release;
    MC_CHECK_OK(mc_eurosat_open(&derived, ms_dir, NULL));
    mc_eurosat_options options = mc_eurosat_default_options();
    options.rgb_dir = rgb_dir;
    MC_CHECK_OK(mc_eurosat_open(&release, ms_dir, &options));
    mc_tensor *a, *b;
    MC_CHECK_OK(mc_tensor_new(&a, MC_SHAPE(50, 3, 64, 64), "derived"));
    MC_CHECK_OK(mc_tensor_new(&b, MC_SHAPE(50, 3, 64, 64), "release"));
    const int *indices;
    int n;
    MC_CHECK_OK(mc_eurosat_split(derived, MC_SPLIT_ALL, &indices, &n));
    MC_CHECK_OK(mc_eurosat_load_rgb(derived, indices, n, a));
    MC_CHECK_OK(mc_eurosat_load_rgb(release, indices, n, b));
    double abs_error = 0;
    for (int i = 0; i < 50; i++) {
        const float *x = a->data + (size_t)i * 3 * 4096, *y = b->data + (size_t)i * 3 * 4096;
        double r = correlation(x, y, 3 * 4096);
        ck_assert_msg(r > 0.9, "%s: RGB view correlates %.3f with the release JPEG", mc_eurosat_path(derived, i), r);
        for (int k = 0; k < 3 * 4096; k++) abs_error += fabs(x[k] - y[k]);
    }
    /* Measured: about 2/255 mean absolute error (JPEG noise). */
    ck_assert_double_lt(abs_error / (50.0 * 3 * 4096), 4.0 / 255.0);
    /* The release view is exactly the JPEG decode. */
    mc_tensor *jpeg;
    char path[2048];
    snprintf(path, sizeof path, "%s/Forest/%s", rgb_dir, strrchr(mc_eurosat_path(derived, 5), '/') + 1);
    strcpy(strrchr(path, '.'), ".jpg");
    MC_CHECK_OK(mc_jpeg_read(path, &jpeg));
    ck_assert_mem_eq(jpeg->data, b->data + (size_t)5 * 3 * 4096, sizeof(float) * 3 * 4096);
    mc_tensor_free(jpeg), mc_tensor_free(a), mc_tensor_free(b);
    mc_eurosat_free(derived), mc_eurosat_free(release);
}
END_TEST

START_TEST(test_sample_jpegs_kept_as_bytes) {
    /* The release's JPEGs kept as bytes (3 x 64 x 64 each, no floats) and
     * read a batch at a time are the floats the JPEG reader gives, bit for
     * bit: at the tiles' own size and resized to 32 (pretrain-clip's default
     * tower size). */
    mc_image_folder folder;
    MC_CHECK_OK(mc_image_folder_open(rgb_dir, &folder));
    ck_assert_int_eq(folder.count, 50);
    mc_byte_images *bytes;
    MC_CHECK_OK(mc_byte_images_load(&folder, true, &bytes));
    ck_assert_int_eq(mc_byte_images_size(bytes), 50 * 3 * 64 * 64);
    int order[50];
    for (int i = 0; i < 50; i++) order[i] = (i * 17) % 50; /* every tile, out of order */
    for (int size = 64; size >= 32; size /= 2) {
        mc_tensor *decoded, *read;
        MC_CHECK_OK(mc_tensor_new(&decoded, MC_SHAPE(50, 3, size, size), "decoded"));
        MC_CHECK_OK(mc_tensor_new(&read, MC_SHAPE(50, 3, size, size), "read"));
        MC_CHECK_OK(mc_image_folder_load(&folder, order, 50, true, decoded));
        mc_image_source source = mc_byte_images_source(bytes, size, size);
        MC_CHECK_OK(source.read(source.ctx, order, 50, read));
        ck_assert_mem_eq(read->data, decoded->data, (size_t)decoded->numel * sizeof(float));
        mc_tensor_free(decoded);
        mc_tensor_free(read);
    }
    mc_byte_images_free(bytes);
    mc_image_folder_free(&folder);
}
END_TEST

int main(void) {
    mc_test_shared_path("eurosat-ms-sample", ms_dir, sizeof ms_dir);
    mc_test_shared_path("eurosat-rgb-sample", rgb_dir, sizeof rgb_dir);
    if (!mc_test_file_exists(ms_dir) || !mc_test_file_exists(rgb_dir))
        return mc_test_skip("the EuroSAT sample (../shared/data/eurosat-ms-sample, eurosat-rgb-sample) is absent");
    Suite *s = suite_create("eurosat_sample");
    const TTest *const tests[] = {test_sample_listing, test_sample_pixels_equal_raw_decode,
                                  test_sample_rgb_view_matches_release, test_sample_jpegs_kept_as_bytes, NULL};
    tcase_set_timeout(mc_test_add_case(s, "sample", tests), 60);
    return mc_test_run_suite(s);
}

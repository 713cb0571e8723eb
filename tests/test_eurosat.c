/* EuroSAT-MS loading on files this test writes itself with libtiff (every
 * layout the reader must handle), bands, normalisations, splits, the RGB
 * view, and bad input — each failure a clear error naming the file.
 * Expected pixel values come from the closed-form pattern the files were
 * written with (mc_test_tiff_pattern, tests/support/tiff_fixture.c), not
 * from our reader. */
#include <stdlib.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>

#include "testutil.h"
#include "tiff_fixture.h"

/* ---- helpers ---- */

static mc_test_tiff_spec eurosat_spec(void) {
    mc_test_tiff_spec s = {64, 64, 13, 16, SAMPLEFORMAT_UINT, COMPRESSION_NONE, PLANARCONFIG_CONTIG, 0, 0};
    return s;
}

static void assert_raster_matches(const char *what, const mc_raster *r, const mc_test_tiff_spec *s) {
    ck_assert_msg(r->height == s->h && r->width == s->w && r->bands == s->c, "%s: raster %dx%dx%d, expected %dx%dx%d",
                  what, r->bands, r->height, r->width, s->c, s->h, s->w);
    ck_assert_int_eq(r->bits_per_sample, s->bits);
    /* One assertion at the end: a Check assertion per sample is slow. */
    long mismatches = 0;
    char first[160] = "";
    for (int b = 0; b < s->c; b++)
        for (int y = 0; y < s->h; y++)
            for (int x = 0; x < s->w; x++) {
                double want = mc_test_tiff_value(s, b, y, x);
                float got = r->data[((size_t)b * s->h + y) * s->w + x];
                if (got != (float)want && mismatches++ == 0)
                    snprintf(first, sizeof first, "band %d (%d, %d) is %g, expected %g", b, y, x, got, want);
            }
    ck_assert_msg(mismatches == 0, "%s: %ld samples differ, first: %s", what, mismatches, first);
}

static void make_dir(const char *dir, const char *sub, char *out, size_t len) {
    snprintf(out, len, "%s/%s", dir, sub);
    ck_assert_int_eq(mkdir(out, 0755), 0);
}

/* ---- TIFF layouts ---- */

START_TEST(test_tiff_layouts) {
    char path[1024];
    struct { const char *name; mc_test_tiff_spec spec; } cases[] = {
        {"plain", eurosat_spec()},
        {"lzw", {64, 64, 13, 16, SAMPLEFORMAT_UINT, COMPRESSION_LZW, PLANARCONFIG_CONTIG, 0, 1}},
        {"deflate_planar", {64, 64, 13, 16, SAMPLEFORMAT_UINT, COMPRESSION_ADOBE_DEFLATE, PLANARCONFIG_SEPARATE, 0, 2}},
        {"tiled", {64, 64, 13, 16, SAMPLEFORMAT_UINT, COMPRESSION_LZW, PLANARCONFIG_CONTIG, 16, 3}},
        {"tiled_planar_partial", {40, 24, 13, 16, SAMPLEFORMAT_UINT, COMPRESSION_NONE, PLANARCONFIG_SEPARATE, 16, 4}},
        {"uint8", {64, 64, 13, 8, SAMPLEFORMAT_UINT, COMPRESSION_NONE, PLANARCONFIG_CONTIG, 0, 5}},
        {"float", {64, 64, 13, 32, SAMPLEFORMAT_IEEEFP, COMPRESSION_ADOBE_DEFLATE, PLANARCONFIG_CONTIG, 0, 6}},
        {"bands12", {64, 64, 12, 16, SAMPLEFORMAT_UINT, COMPRESSION_NONE, PLANARCONFIG_CONTIG, 0, 7}},
        {"small32", {32, 32, 13, 16, SAMPLEFORMAT_UINT, COMPRESSION_LZW, PLANARCONFIG_CONTIG, 0, 8}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/%s.tif", mc_test_dir, cases[i].name);
        mc_test_write_tiff(path, &cases[i].spec);
        mc_raster raster;
        MC_CHECK_OK(mc_tiff_read(path, &raster));
        assert_raster_matches(cases[i].name, &raster, &cases[i].spec);
        ck_assert_int_eq(raster.sample_kind, cases[i].spec.sample_format == SAMPLEFORMAT_IEEEFP ? 'f' : 'u');
        mc_raster_free(&raster);
    }
}
END_TEST

/* A single-band TIFF opened for writing at `path` with its size, sample
 * width and strips set (one strip of `height` rows); the caller adds the
 * rest of its tags and its strip. */
static TIFF *open_single_band_tiff(const char *path, uint32_t width, uint32_t height, int bits) {
    TIFF *tif = TIFFOpen(path, "w");
    ck_assert_ptr_nonnull(tif);
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, width);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, height);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 1);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, bits);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, height);
    return tif;
}

/* A float tile holding NaN or Inf is refused on load, naming the file. */
START_TEST(test_tiff_non_finite_refused) {
    char path[1024];
    const float bad[2][4] = {{0.5f, NAN, 0.25f, 1.0f}, {0.5f, 0.0f, -INFINITY, INFINITY}};
    const char *needles[2] = {"nan.tif holds NaN at element 1", "inf.tif holds -Inf at element 2 (and 1 more"};
    for (int i = 0; i < 2; i++) {
        mc_test_dir_path(i == 0 ? "nan.tif" : "inf.tif", path, sizeof path);
        TIFF *tif = open_single_band_tiff(path, 2, 2, 32);
        TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_IEEEFP);
        ck_assert_int_eq(TIFFWriteEncodedStrip(tif, 0, (void *)bad[i], sizeof bad[i]), (tmsize_t)sizeof bad[i]);
        TIFFClose(tif);
        mc_raster raster;
        MC_CHECK_FAILS(mc_tiff_read(path, &raster), MC_ERR_NUMERIC, needles[i]);
    }
}
END_TEST

/* A 4096 x 4096 16-bit raster of zeros in one zstd strip: 32 MiB from a
 * file of about a kilobyte (zstd's run blocks go to 32768:1). A nodata
 * raster like it is read, not refused as a corrupt header. */
START_TEST(test_tiff_zstd_runs_read) {
    enum { SIDE = 4096 };
    char path[1024];
    mc_test_dir_path("zeros.tif", path, sizeof path);
    /* Debian's libtiff is built with zstd (and the reader lets it run). */
    ck_assert_msg(TIFFIsCODECConfigured(COMPRESSION_ZSTD), "this libtiff has no zstd codec");
    TIFF *tif = open_single_band_tiff(path, SIDE, SIDE, 16);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_ZSTD);
    uint16_t *zeros = calloc((size_t)SIDE * SIDE, sizeof *zeros);
    ck_assert_ptr_nonnull(zeros);
    const tmsize_t bytes = (tmsize_t)SIDE * SIDE * (tmsize_t)sizeof *zeros;
    ck_assert_int_eq(TIFFWriteEncodedStrip(tif, 0, zeros, bytes), bytes);
    TIFFClose(tif);
    free(zeros);
    mc_raster raster;
    MC_CHECK_OK(mc_tiff_read(path, &raster));
    ck_assert_int_eq(raster.height, SIDE);
    ck_assert_float_eq(raster.data[(size_t)SIDE * SIDE - 1], 0.0f);
    mc_raster_free(&raster);
}
END_TEST

/* Our writer, read back by libtiff itself (scanline by scanline), with
 * EuroSAT's tags: 16-bit unsigned, pixel-interleaved, 4 rows per strip. */
START_TEST(test_tiff_writer) {
    char path[1024];
    mc_test_dir_path("w.tif", path, sizeof path);
    int h = 10, w = 6, c = 13;
    uint16_t *pixels = malloc(sizeof(uint16_t) * (size_t)h * w * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int b = 0; b < c; b++) pixels[((size_t)y * w + x) * c + b] = (uint16_t)mc_test_tiff_pattern(b, y, x, 0);
    MC_CHECK_OK(mc_tiff_write_u16(path, pixels, h, w, c));
    TIFF *tif = TIFFOpen(path, "r");
    ck_assert_ptr_nonnull(tif);
    uint16_t spp = 0, bps = 0, planar = 0, format = 0;
    uint32_t rows_per_strip = 0;
    TIFFGetField(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetField(tif, TIFFTAG_BITSPERSAMPLE, &bps);
    TIFFGetField(tif, TIFFTAG_PLANARCONFIG, &planar);
    TIFFGetField(tif, TIFFTAG_SAMPLEFORMAT, &format);
    TIFFGetField(tif, TIFFTAG_ROWSPERSTRIP, &rows_per_strip);
    ck_assert_int_eq(spp, 13); ck_assert_int_eq(bps, 16); ck_assert_int_eq(planar, PLANARCONFIG_CONTIG);
    ck_assert_int_eq(format, SAMPLEFORMAT_UINT); ck_assert_int_eq(rows_per_strip, 4);
    uint16_t *row = malloc((size_t)TIFFScanlineSize(tif));
    for (int y = 0; y < h; y++) {
        ck_assert_int_eq(TIFFReadScanline(tif, row, (uint32_t)y, 0), 1);
        ck_assert_mem_eq(row, pixels + (size_t)y * w * c, sizeof(uint16_t) * (size_t)w * c);
    }
    TIFFClose(tif);
    MC_CHECK_FAILS(mc_tiff_write_u16(path, pixels, 0, w, c), MC_ERR_ARG, "w.tif");
    mc_test_dir_path("no/such/dir/x.tif", path, sizeof path);
    MC_CHECK_FAILS(mc_tiff_write_u16(path, pixels, h, w, c), MC_ERR_IO, "x.tif: cannot create");
    free(row), free(pixels);
}
END_TEST

/* ---- bands and normalisation ---- */

START_TEST(test_band_parsing) {
    mc_bands bands;
    MC_CHECK_OK(mc_bands_parse("B08,B11,B12", &bands));
    ck_assert_int_eq(bands.count, 3);
    ck_assert_int_eq(bands.index[0], 7); ck_assert_int_eq(bands.index[1], 10); ck_assert_int_eq(bands.index[2], 11);
    MC_CHECK_OK(mc_bands_parse("b8a, B2,B01", &bands)); /* any order, spaces, short names */
    ck_assert_int_eq(bands.index[0], 12); ck_assert_int_eq(bands.index[1], 1); ck_assert_int_eq(bands.index[2], 0);
    MC_CHECK_OK(mc_bands_parse("rgb", &bands));
    ck_assert_int_eq(bands.index[0], 3); ck_assert_int_eq(bands.index[1], 2); ck_assert_int_eq(bands.index[2], 1);
    char buf[128];
    ck_assert_str_eq(mc_bands_str(&bands, buf, sizeof buf), "B04,B03,B02");
    MC_CHECK_OK(mc_bands_parse("all", &bands));
    ck_assert_int_eq(bands.count, 13);
    ck_assert_str_eq(mc_eurosat_band(bands.index[12])->name, "B8A");
    ck_assert_int_eq(mc_eurosat_band(7)->resolution_m, 10);
    MC_CHECK_FAILS(mc_bands_parse("B08,B13", &bands), MC_ERR_ARG, "unknown band \"B13\" (valid: B01 B02");
    MC_CHECK_FAILS(mc_bands_parse("B08,,B11", &bands), MC_ERR_ARG, "unknown band \"\"");
    MC_CHECK_FAILS(mc_bands_parse("nir", &bands), MC_ERR_ARG, "B8A");
    MC_CHECK_FAILS(mc_bands_parse("B08,B08", &bands), MC_ERR_ARG, "band B08 is named twice");
    MC_CHECK_FAILS(mc_bands_parse("B8A,b8a", &bands), MC_ERR_ARG, "is named twice");
    /* A name too long for the parser's buffer is refused, not cut to "B01". */
    MC_CHECK_FAILS(mc_bands_parse("B01                             X", &bands), MC_ERR_ARG,
                   "a band name of 33 bytes");
    mc_norm_kind kind;
    MC_CHECK_OK(mc_norm_parse("reflectance", &kind));
    ck_assert_int_eq(kind, MC_NORM_REFLECTANCE);
    MC_CHECK_FAILS(mc_norm_parse("zscore", &kind), MC_ERR_ARG, "valid: torchgeo");
    mc_norm norm;
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_TORCHGEO));
    /* torchgeo's table (datamodules/eurosat.py): B04 mean 947.626, std 593.751. */
    ck_assert_float_eq_tol(norm.mean[3], 947.62620298f, 1e-3f);
    ck_assert_float_eq_tol(norm.std[12], 1231.58581042f, 1e-3f);
    MC_CHECK_FAILS(mc_norm_init(&norm, MC_NORM_DATASET), MC_ERR_ARG, "mc_eurosat_compute_norm");
    /* The RGB mapping: dn / 2740 clipped to 0..1. */
    ck_assert_float_eq_tol(mc_eurosat_rgb_value(1370.0f), 0.5f, 1e-6f);
    ck_assert_float_eq(mc_eurosat_rgb_value(9000.0f), 1.0f);
}
END_TEST

/* ---- datasets ---- */

static const char *const test_classes[] = {"River", "AnnualCrop", "Forest"}; /* unsorted on purpose */

/* dir/<Class>/<Class>_<i>.tif for 3 classes x per_class tiles of 8x8x13;
 * tile_id = 10 * sorted label + i. Band 9 (B10) is constant 12, as cirrus
 * often is in real tiles. */
static void make_dataset(const char *dir, int per_class) {
    static const int sorted_label[] = {2, 0, 1};
    for (int c = 0; c < 3; c++) {
        char class_dir[1024], path[1100];
        make_dir(dir, test_classes[c], class_dir, sizeof class_dir);
        for (int i = 0; i < per_class; i++) {
            mc_test_tiff_spec s = {8, 8, 13, 16, SAMPLEFORMAT_UINT, COMPRESSION_LZW, PLANARCONFIG_CONTIG, 0,
                           10 * sorted_label[c] + i};
            snprintf(path, sizeof path, "%s/%s_%d.tif", class_dir, test_classes[c], i);
            uint16_t pixels[8 * 8 * 13];
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++)
                    for (int b = 0; b < 13; b++)
                        pixels[(y * 8 + x) * 13 + b] = b == 9 ? 12 : (uint16_t)mc_test_tiff_value(&s, b, y, x);
            MC_CHECK_OK(mc_tiff_write_u16(path, pixels, 8, 8, 13));
        }
    }
}

/* The tile_id of dataset index i: files are sorted by name within a class. */
static int tile_id_of(const mc_eurosat *ds, int index) {
    const char *path = mc_eurosat_path(ds, index);
    const char *us = strrchr(path, '_');
    return 10 * mc_eurosat_label(ds, index) + atoi(us + 1);
}

START_TEST(test_dataset_listing_and_batches) {
    make_dataset(mc_test_dir, 4);
    mc_eurosat *ds;
    mc_eurosat_options options = mc_eurosat_default_options();
    options.train_size = 6, options.val_size = 3, options.seed = 5;
    MC_CHECK_OK(mc_eurosat_open(&ds, mc_test_dir, &options));
    ck_assert_int_eq(mc_eurosat_size(ds), 12);
    ck_assert_int_eq(mc_eurosat_num_classes(ds), 3);
    ck_assert_str_eq(mc_eurosat_class_name(ds, 0), "AnnualCrop");
    ck_assert_str_eq(mc_eurosat_class_name(ds, 2), "River");
    ck_assert_int_eq(mc_eurosat_label(ds, 5), 1);
    int h, w, b;
    mc_eurosat_tile_shape(ds, &h, &w, &b);
    ck_assert_int_eq(h, 8); ck_assert_int_eq(w, 8); ck_assert_int_eq(b, 13);
    /* B04 and B08 of tiles 2 and 9, reflectance-scaled, vs the pattern. */
    mc_bands bands;
    MC_CHECK_OK(mc_bands_parse("B04,B08", &bands));
    mc_norm norm;
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_REFLECTANCE));
    mc_tensor *batch;
    MC_CHECK_OK(mc_tensor_new(&batch, MC_SHAPE(2, 2, 8, 8), "batch"));
    int indices[2] = {9, 2};
    MC_CHECK_OK(mc_eurosat_load_batch(ds, indices, 2, &bands, &norm, batch));
    for (int n = 0; n < 2; n++)
        for (int c = 0; c < 2; c++)
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++) {
                    double want = mc_test_tiff_pattern(bands.index[c], y, x, tile_id_of(ds, indices[n])) / 10000.0;
                    ck_assert_float_eq_tol(batch->data[((n * 2 + c) * 8 + y) * 8 + x], (float)want, 1e-6f);
                }
    /* torchgeo z-score of B04 at (0, 0) of tile 9. */
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_TORCHGEO));
    MC_CHECK_OK(mc_eurosat_load_batch(ds, indices, 2, &bands, &norm, batch));
    double dn = mc_test_tiff_pattern(3, 0, 0, tile_id_of(ds, 9));
    ck_assert_float_eq_tol(batch->data[0], (float)((dn - 947.62620298) / 593.75055589), 1e-5f);
    /* The RGB view: B04, B03, B02 / 2740 clipped. */
    mc_tensor *rgb;
    MC_CHECK_OK(mc_tensor_new(&rgb, MC_SHAPE(2, 3, 8, 8), "rgb"));
    MC_CHECK_OK(mc_eurosat_load_rgb(ds, indices, 2, rgb));
    for (int c = 0; c < 3; c++) {
        double v = mc_test_tiff_pattern(3 - c, 7, 7, tile_id_of(ds, 2)) / 2740.0;
        ck_assert_float_eq_tol(rgb->data[((3 + c) * 8 + 7) * 8 + 7], (float)(v > 1 ? 1 : v), 1e-6f);
    }
    int labels[2];
    mc_eurosat_labels(ds, indices, 2, labels);
    ck_assert_int_eq(labels[0], 2); ck_assert_int_eq(labels[1], 0);
    /* Wrong output shapes and indices. */
    MC_CHECK_FAILS(mc_eurosat_load_batch(ds, indices, 1, &bands, &norm, batch), MC_ERR_SHAPE, "must be (1, 2, H, W)");
    int outside[2] = {0, 12};
    MC_CHECK_FAILS(mc_eurosat_load_batch(ds, outside, 2, &bands, &norm, batch), MC_ERR_ARG, "index 12");
    mc_tensor *wrong_size;
    MC_CHECK_OK(mc_tensor_new(&wrong_size, MC_SHAPE(2, 2, 16, 16), "wrong"));
    MC_CHECK_FAILS(mc_eurosat_load_batch(ds, indices, 2, &bands, &norm, wrong_size), MC_ERR_SHAPE,
                   "tile is 8x8, expected 16x16");
    mc_tensor_free(wrong_size), mc_tensor_free(batch), mc_tensor_free(rgb);
    mc_eurosat_free(ds);
}
END_TEST

START_TEST(test_stratified_split) {
    make_dataset(mc_test_dir, 4);
    mc_eurosat_options options = mc_eurosat_default_options();
    options.train_size = 6, options.val_size = 3, options.seed = 11;
    mc_eurosat *a, *b, *c;
    MC_CHECK_OK(mc_eurosat_open(&a, mc_test_dir, &options));
    MC_CHECK_OK(mc_eurosat_open(&b, mc_test_dir, &options));
    options.seed = 12;
    MC_CHECK_OK(mc_eurosat_open(&c, mc_test_dir, &options));
    int seen[12] = {0}, differs = 0;
    int expected_count[4] = {12, 6, 3, 3};
    for (int s = MC_SPLIT_ALL; s <= MC_SPLIT_TEST; s++) {
        const int *ia, *ib, *ic;
        int na, nb, nc;
        MC_CHECK_OK(mc_eurosat_split(a, (mc_split)s, &ia, &na));
        MC_CHECK_OK(mc_eurosat_split(b, (mc_split)s, &ib, &nb));
        MC_CHECK_OK(mc_eurosat_split(c, (mc_split)s, &ic, &nc));
        ck_assert_int_eq(na, expected_count[s]);
        ck_assert_int_eq(nb, na);
        ck_assert_int_eq(nc, na);
        int per_class[3] = {0};
        for (int i = 0; i < na; i++) {
            ck_assert_int_eq(ia[i], ib[i]); /* same seed, same split */
            differs += ia[i] != ic[i];
            if (s != MC_SPLIT_ALL) seen[ia[i]]++, per_class[mc_eurosat_label(a, ia[i])]++;
        }
        /* Stratified: 6 train = 2 per class, 3 val = 1 per class. */
        if (s == MC_SPLIT_TRAIN) ck_assert(per_class[0] == 2 && per_class[1] == 2 && per_class[2] == 2);
        if (s == MC_SPLIT_VAL) ck_assert(per_class[0] == 1 && per_class[1] == 1 && per_class[2] == 1);
    }
    for (int i = 0; i < 12; i++) ck_assert_int_eq(seen[i], 1); /* a partition */
    ck_assert_int_gt(differs, 0);
    mc_eurosat_free(a), mc_eurosat_free(b), mc_eurosat_free(c);
    /* Default sizes on a small dataset: the 26:10 ratio over all 12 tiles. */
    mc_eurosat *d;
    MC_CHECK_OK(mc_eurosat_open(&d, mc_test_dir, NULL));
    const int *idx;
    int n;
    MC_CHECK_OK(mc_eurosat_split(d, MC_SPLIT_TRAIN, &idx, &n));
    ck_assert_int_eq(n, 12 * 2600 / 3600);
    mc_eurosat_free(d);
    options.train_size = 10, options.val_size = 5;
    MC_CHECK_FAILS(mc_eurosat_open(&d, mc_test_dir, &options), MC_ERR_ARG, "10 train + 5 val tiles needs more than the 12");
    /* One size given: the other takes what is left (not its default 1000,
     * which 12 tiles cannot hold); none left is still an error. */
    options.train_size = 6, options.val_size = 0;
    MC_CHECK_OK(mc_eurosat_open(&d, mc_test_dir, &options));
    MC_CHECK_OK(mc_eurosat_split(d, MC_SPLIT_VAL, &idx, &n));
    ck_assert_int_eq(n, 6);
    mc_eurosat_free(d);
    options.train_size = 0, options.val_size = 3;
    MC_CHECK_OK(mc_eurosat_open(&d, mc_test_dir, &options));
    MC_CHECK_OK(mc_eurosat_split(d, MC_SPLIT_TRAIN, &idx, &n));
    ck_assert_int_eq(n, 9);
    mc_eurosat_free(d);
    options.train_size = 12, options.val_size = 0;
    MC_CHECK_FAILS(mc_eurosat_open(&d, mc_test_dir, &options), MC_ERR_ARG, "12 train + 1000 val tiles");
}
END_TEST

/* Dataset statistics against a direct computation from the pattern; the
 * constant band B10 gets std 1, never 0. */
START_TEST(test_dataset_norm) {
    make_dataset(mc_test_dir, 2);
    mc_eurosat_options options = mc_eurosat_default_options();
    options.train_size = 3, options.val_size = 3;
    mc_eurosat *ds;
    MC_CHECK_OK(mc_eurosat_open(&ds, mc_test_dir, &options));
    mc_norm norm;
    MC_CHECK_OK(mc_eurosat_compute_norm(ds, MC_SPLIT_TRAIN, &norm));
    ck_assert_int_eq(norm.kind, MC_NORM_DATASET);
    const int *train;
    int n;
    MC_CHECK_OK(mc_eurosat_split(ds, MC_SPLIT_TRAIN, &train, &n));
    for (int b = 0; b < 13; b++) {
        if (b == 9) continue;
        double sum = 0, sum_sq = 0;
        for (int i = 0; i < n; i++)
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++) {
                    double v = mc_test_tiff_pattern(b, y, x, tile_id_of(ds, train[i]));
                    sum += v, sum_sq += v * v;
                }
        double mean = sum / (n * 64), std = sqrt(sum_sq / (n * 64) - mean * mean);
        ck_assert_float_eq_tol(norm.mean[b], (float)mean, 1e-2f);
        ck_assert_float_eq_tol(norm.std[b], (float)std, 1e-2f);
    }
    ck_assert_float_eq(norm.mean[9], 12.0f);
    ck_assert_float_eq(norm.std[9], 1.0f);
    /* So the constant band loads as exact zeros, never NaN/Inf. */
    mc_bands b10 = {1, {9}};
    mc_tensor *batch;
    MC_CHECK_OK(mc_tensor_new(&batch, MC_SHAPE(1, 1, 8, 8), "b10"));
    MC_CHECK_OK(mc_eurosat_load_batch(ds, train, 1, &b10, &norm, batch));
    int nonzero = 0;
    for (int i = 0; i < 64; i++) nonzero += batch->data[i] != 0.0f;
    ck_assert_int_eq(nonzero, 0);
    mc_tensor_free(batch);
    mc_eurosat_free(ds);
}
END_TEST

START_TEST(test_split_files_and_rgb_folder) {
    char data[1024], splits[1024], rgb[1024], path[2048];
    make_dir(mc_test_dir, "ms", data, sizeof data);
    make_dataset(data, 2);
    make_dir(mc_test_dir, "splits", splits, sizeof splits);
    /* torchgeo's files name the RGB release's .jpg: matched by stem. */
    snprintf(path, sizeof path, "%s/eurosat-train.txt", splits);
    mc_test_write_text(path, "River_1.jpg\nAnnualCrop_0.jpg \n\tForest_1.jpg\n"); /* torchgeo strips */
    snprintf(path, sizeof path, "%s/eurosat-val.txt", splits);
    mc_test_write_text(path, "Forest_0.jpg\r\n\n");
    mc_eurosat_options options = mc_eurosat_default_options();
    options.split_dir = splits;
    mc_eurosat *ds;
    MC_CHECK_OK(mc_eurosat_open(&ds, data, &options));
    const int *idx;
    int n;
    MC_CHECK_OK(mc_eurosat_split(ds, MC_SPLIT_TRAIN, &idx, &n));
    ck_assert_int_eq(n, 3);
    /* Sorted listing: AnnualCrop_0 0, AnnualCrop_1 1, Forest_0 2, Forest_1 3, River_0 4, River_1 5. */
    ck_assert_int_eq(idx[0], 0); ck_assert_int_eq(idx[1], 3); ck_assert_int_eq(idx[2], 5);
    MC_CHECK_OK(mc_eurosat_split(ds, MC_SPLIT_VAL, &idx, &n));
    ck_assert_int_eq(n, 1); ck_assert_int_eq(idx[0], 2);
    MC_CHECK_OK(mc_eurosat_split(ds, MC_SPLIT_TEST, &idx, &n));
    ck_assert_int_eq(n, 0); /* no eurosat-test.txt: empty */
    mc_eurosat_free(ds);
    /* A split file naming a tile that does not exist. */
    snprintf(path, sizeof path, "%s/eurosat-val.txt", splits);
    mc_test_write_text(path, "Forest_0.jpg\nForest_99.jpg\n");
    MC_CHECK_FAILS(mc_eurosat_open(&ds, data, &options), MC_ERR_FORMAT,
                   "eurosat-val.txt line 2: tile \"Forest_99\" is not in");
    /* A tile listed twice, or in both training and validation (it would
     * leak into the score). */
    mc_test_write_text(path, "Forest_0.jpg\nForest_0.jpg\n");
    MC_CHECK_FAILS(mc_eurosat_open(&ds, data, &options), MC_ERR_FORMAT,
                   "eurosat-val.txt line 2: tile \"Forest_0\" is listed twice");
    mc_test_write_text(path, "Forest_0.jpg\nRiver_1.jpg\n");
    MC_CHECK_FAILS(mc_eurosat_open(&ds, data, &options), MC_ERR_FORMAT,
                   "eurosat-val.txt line 2: tile \"River_1\" is also in the train split");
    /* Garbage is quoted as a short, escaped excerpt, never as raw bytes. */
    mc_test_write_text(path, "\x1b[2J\x07\xff\xfe" "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
    MC_CHECK_FAILS(mc_eurosat_open(&ds, data, &options), MC_ERR_FORMAT,
                   "tile \"\\x1b[2J\\x07\\xff\\xfeAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA...\" is not in");
    ck_assert_ptr_null(strchr(mc_last_error(), '\x1b'));
    /* A missing train file. */
    snprintf(path, sizeof path, "%s/eurosat-train.txt", splits);
    remove(path);
    MC_CHECK_FAILS(mc_eurosat_open(&ds, data, &options), MC_ERR_IO, "eurosat-train.txt: cannot open");
    /* A folder in its place opens, but reading it fails: an error, not an
     * empty split. */
    ck_assert_int_eq(mkdir(path, 0755), 0);
    MC_CHECK_FAILS(mc_eurosat_open(&ds, data, &options), MC_ERR_IO,
                   "eurosat-train.txt: read failed after line 0");
    ck_assert_int_eq(rmdir(path), 0);
    /* Two tiles of one name in two classes: a split file could name only
     * one of them, and the other would drop out of every split. */
    mc_test_write_text(path, "River_1.jpg\n");
    char val[2048];
    snprintf(val, sizeof val, "%s/eurosat-val.txt", splits);
    mc_test_write_text(val, "Forest_0.jpg\n");
    MC_CHECK_OK(mc_eurosat_open(&ds, data, &options));
    mc_eurosat_free(ds);
    char copy[2048], original[2048];
    snprintf(original, sizeof original, "%s/River/River_1.tif", data);
    snprintf(copy, sizeof copy, "%s/Forest/River_1.tif", data);
    size_t tile_len = 0;
    char *tile = mc_test_read_file(original, &tile_len);
    mc_test_write_file(copy, tile, tile_len);
    free(tile);
    MC_CHECK_FAILS(mc_eurosat_open(&ds, data, &options), MC_ERR_FORMAT, "have the same name River_1");
    ck_assert_int_eq(remove(copy), 0);
    /* An RGB folder: PNGs with the tiles' stems, at a different size (resized). */
    make_dir(mc_test_dir, "rgb", rgb, sizeof rgb);
    for (int c = 0; c < 3; c++) {
        char class_dir[1100];
        make_dir(rgb, test_classes[c], class_dir, sizeof class_dir);
        for (int i = 0; i < 2; i++) {
            mc_tensor *image;
            MC_CHECK_OK(mc_tensor_new(&image, MC_SHAPE(3, 16, 16), "rgb"));
            mc_tensor_fill(image, (float)(c * 2 + i) / 255.0f);
            snprintf(path, sizeof path, "%s/%s_%d.png", class_dir, test_classes[c], i);
            MC_CHECK_OK(mc_png_write(path, image, 8));
            mc_tensor_free(image);
        }
    }
    options.split_dir = NULL;
    options.rgb_dir = rgb;
    MC_CHECK_OK(mc_eurosat_open(&ds, data, &options));
    mc_tensor *batch;
    MC_CHECK_OK(mc_tensor_new(&batch, MC_SHAPE(1, 3, 8, 8), "rgb"));
    int river_1[1] = {5};
    MC_CHECK_OK(mc_eurosat_load_rgb(ds, river_1, 1, batch));
    /* River is test_classes[0]: value (0 * 2 + 1) / 255 everywhere. */
    ck_assert_float_eq_tol(batch->data[0], 1.0f / 255.0f, 1e-6f);
    ck_assert_float_eq_tol(batch->data[3 * 64 - 1], 1.0f / 255.0f, 1e-6f);
    mc_tensor_free(batch);
    mc_eurosat_free(ds);
    snprintf(path, sizeof path, "%s/Forest/Forest_1.png", rgb);
    remove(path);
    MC_CHECK_FAILS(mc_eurosat_open(&ds, data, &options), MC_ERR_IO, "has no image for tile");
}
END_TEST

/* ---- bad input ---- */

START_TEST(test_bad_tiffs) {
    char path[1024];
    mc_raster raster;
    /* Truncated: a valid tile cut in half. Uncompressed, the header's size
     * already says the pixels cannot be there (checked before allocating);
     * compressed, decoding the missing strip fails. */
    mc_test_dir_path("truncated.tif", path, sizeof path);
    mc_test_tiff_spec s = eurosat_spec();
    mc_test_write_tiff(path, &s);
    ck_assert_int_eq(truncate(path, 50000), 0);
    MC_CHECK_FAILS(mc_tiff_read(path, &raster), MC_ERR_FORMAT,
                   "truncated.tif: TIFF header declares 106496 bytes of pixels, which a 50000-byte file cannot hold");
    ck_assert_ptr_null(raster.data);
    s.compression = COMPRESSION_LZW;
    mc_test_write_tiff(path, &s);
    struct stat info;
    ck_assert_int_eq(stat(path, &info), 0);
    ck_assert_int_eq(truncate(path, info.st_size / 2), 0);
    MC_CHECK_FAILS(mc_tiff_read(path, &raster), MC_ERR_FORMAT, "truncated.tif: cannot decode TIFF strip");
    ck_assert_ptr_null(raster.data);
    /* Cut inside the header. */
    ck_assert_int_eq(truncate(path, 6), 0);
    MC_CHECK_FAILS(mc_tiff_read(path, &raster), MC_ERR_FORMAT, "truncated.tif");
    /* 2^31 pixels in one row: more values than the raster's int sizes
     * hold, refused from the header (the pixels are never decoded). */
    mc_test_dir_path("wide.tif", path, sizeof path);
    TIFF *wide = open_single_band_tiff(path, 2147483648u, 1, 8);
    TIFFSetField(wide, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
    unsigned char raw_strip[16] = {0x78, 0x9c};
    ck_assert_int_eq(TIFFWriteRawStrip(wide, 0, raw_strip, sizeof raw_strip), (tmsize_t)sizeof raw_strip);
    TIFFClose(wide);
    MC_CHECK_FAILS(mc_tiff_read(path, &raster), MC_ERR_FORMAT,
                   "wide.tif: TIFF size 2147483648x1 with 1 bands is empty or too large");
    ck_assert_ptr_null(raster.data);
    /* Not a TIFF, with a .tif name. */
    mc_test_dir_path("fake.tif", path, sizeof path);
    mc_test_write_text(path, "\x89PNG this is not a tiff");
    MC_CHECK_FAILS(mc_tiff_read(path, &raster), MC_ERR_FORMAT, "fake.tif: not a TIFF file");
    /* Missing. */
    mc_test_dir_path("missing.tif", path, sizeof path);
    MC_CHECK_FAILS(mc_tiff_read(path, &raster), MC_ERR_IO, "missing.tif: cannot open");
    /* 3 bands where 13 are asked. */
    mc_test_dir_path("three.tif", path, sizeof path);
    mc_test_tiff_spec three = {64, 64, 3, 16, SAMPLEFORMAT_UINT, COMPRESSION_NONE, PLANARCONFIG_CONTIG, 0, 0};
    mc_test_write_tiff(path, &three);
    mc_bands all;
    MC_CHECK_OK(mc_bands_parse("all", &all));
    mc_tensor *tile = NULL;
    MC_CHECK_FAILS(mc_tile_load(path, &all, NULL, &tile), MC_ERR_SHAPE,
                   "three.tif: has 3 bands, but band B04 (band 4 of EuroSAT's 13) was asked for");
    ck_assert_ptr_null(tile);
    mc_bands rgb;
    MC_CHECK_OK(mc_bands_parse("B03,B02", &rgb));
    MC_CHECK_OK(mc_tile_load(path, &rgb, NULL, &tile)); /* bands it has are fine */
    ck_assert_float_eq(tile->data[0], (float)mc_test_tiff_pattern(2, 0, 0, 0));
    mc_tensor_free(tile);
}
END_TEST

START_TEST(test_bad_datasets) {
    char path[2048], sub[1024];
    mc_eurosat *ds = (mc_eurosat *)0x1;
    /* No class folders (only a file). */
    mc_test_dir_path("readme.txt", path, sizeof path);
    mc_test_write_text(path, "hi");
    MC_CHECK_FAILS(mc_eurosat_open(&ds, mc_test_dir, NULL), MC_ERR_FORMAT, "no class folders");
    ck_assert_ptr_null(ds);
    /* A missing folder. */
    mc_test_dir_path("nowhere", path, sizeof path);
    MC_CHECK_FAILS(mc_eurosat_open(&ds, path, NULL), MC_ERR_IO, "nowhere: cannot open folder");
    /* An empty class folder beside a good one. */
    make_dataset(mc_test_dir, 2);
    make_dir(mc_test_dir, "Pasture", sub, sizeof sub);
    MC_CHECK_FAILS(mc_eurosat_open(&ds, mc_test_dir, NULL), MC_ERR_FORMAT, "Pasture: class folder holds no files (expected .tif");
    /* A 3-band tile among 13-band ones: the batch load names it. */
    mc_test_tiff_spec three = {8, 8, 3, 16, SAMPLEFORMAT_UINT, COMPRESSION_NONE, PLANARCONFIG_CONTIG, 0, 0};
    snprintf(path, sizeof path, "%s/Pasture_0.tif", sub);
    mc_test_write_tiff(path, &three);
    MC_CHECK_OK(mc_eurosat_open(&ds, mc_test_dir, NULL));
    mc_bands bands;
    MC_CHECK_OK(mc_bands_parse("B08", &bands));
    mc_tensor *batch;
    MC_CHECK_OK(mc_tensor_new(&batch, MC_SHAPE(2, 1, 8, 8), "batch"));
    int indices[2] = {0, 4}; /* AnnualCrop_0, Pasture_0 (classes sorted: AnnualCrop, Forest, Pasture, River) */
    ck_assert_str_eq(mc_eurosat_class_name(ds, mc_eurosat_label(ds, 4)), "Pasture");
    MC_CHECK_FAILS(mc_eurosat_load_batch(ds, indices, 2, &bands, NULL, batch), MC_ERR_SHAPE,
                   "Pasture_0.tif: tile has 3 bands, the dataset's first tile 13");
    /* A 14-band tile holds B08 too, but it is another product: refused. */
    mc_test_tiff_spec fourteen = {8, 8, 14, 16, SAMPLEFORMAT_UINT, COMPRESSION_NONE, PLANARCONFIG_CONTIG, 0, 0};
    mc_test_write_tiff(path, &fourteen);
    MC_CHECK_FAILS(mc_eurosat_load_batch(ds, indices, 2, &bands, NULL, batch), MC_ERR_SHAPE,
                   "Pasture_0.tif: tile has 14 bands, the dataset's first tile 13");
    mc_test_write_tiff(path, &three);
    /* An unreadable tile (permissions mean nothing to root: CI runs as root). */
    mc_test_dir_path("AnnualCrop/AnnualCrop_0.tif", path, sizeof path);
    ck_assert_int_eq(chmod(path, 0), 0);
    FILE *probe = fopen(path, "rb");
    if (probe) {
        fclose(probe); /* root: the file is still readable, nothing to test */
    } else {
        indices[1] = 1;
        MC_CHECK_FAILS(mc_eurosat_load_batch(ds, indices, 2, &bands, NULL, batch), MC_ERR_IO,
                       "AnnualCrop_0.tif: cannot open: Permission denied");
    }
    mc_tensor_free(batch);
    mc_eurosat_free(ds);
    /* A corrupt (non-TIFF) first tile fails the open, naming it. */
    chmod(path, 0644);
    mc_test_write_text(path, "not a tiff");
    MC_CHECK_FAILS(mc_eurosat_open(&ds, mc_test_dir, NULL), MC_ERR_FORMAT, "AnnualCrop_0.tif: not a TIFF file");
}
END_TEST

int main(void) {
    Suite *s = suite_create("eurosat");
    const TTest *const files[] = {test_tiff_layouts, test_tiff_non_finite_refused, test_tiff_zstd_runs_read,
                                  test_tiff_writer,
                                  test_bad_tiffs, NULL};
    mc_test_use_temp_dir(mc_test_add_case(s, "files", files));
    const TTest *const dataset[] = {test_band_parsing, test_dataset_listing_and_batches,
                                    test_stratified_split, test_dataset_norm,
                                    test_split_files_and_rgb_folder, test_bad_datasets, NULL};
    mc_test_use_temp_dir(mc_test_add_case(s, "dataset", dataset));
    return mc_test_run_suite(s);
}

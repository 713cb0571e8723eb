/* The synthetic multispectral world: determinism, the API's contracts, the
 * materials' spectral physics, statistics against the real EuroSAT sample,
 * and the claim that classes differ by content, not by band means. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

enum { S = MC_SYNTH_SIZE, B = MC_SYNTH_BANDS, K = MC_SYNTH_CLASSES, PLANE = S * S };
enum { B02 = 1, B03 = 2, B04 = 3, B05 = 4, B07 = 6, B08 = 7, B10 = 9, B11 = 10, B12 = 11 };

/* ---- determinism and contracts ---- */

START_TEST(test_tiles_are_deterministic) {
    uint16_t *a = malloc(sizeof(uint16_t) * PLANE * B), *b = malloc(sizeof(uint16_t) * PLANE * B);
    ck_assert(a && b);
    for (int label = 0; label < K; label++) {
        MC_CHECK_OK(mc_synth_tile(42, label, 7, a));
        MC_CHECK_OK(mc_synth_tile(42, label, 7, b));
        ck_assert_msg(memcmp(a, b, sizeof(uint16_t) * PLANE * B) == 0, "class %d: same seed, different tile", label);
        MC_CHECK_OK(mc_synth_tile(43, label, 7, b));
        ck_assert_msg(memcmp(a, b, sizeof(uint16_t) * PLANE * B) != 0, "class %d: seeds 42 and 43 agree", label);
        MC_CHECK_OK(mc_synth_tile(42, label, 8, b));
        ck_assert_msg(memcmp(a, b, sizeof(uint16_t) * PLANE * B) != 0, "class %d: tiles 7 and 8 agree", label);
    }
    free(a);
    free(b);
}
END_TEST

START_TEST(test_batch_matches_tiles) {
    /* Tile k of a batch starting at `first` is number first + k of the
     * sequence: class (first + k) % 10, index (first + k) / 10, values / 10000.
     * Made in parallel, in any order, it must equal the tile made alone. */
    const int n = 12, first = 25;
    mc_tensor *batch;
    MC_CHECK_OK(mc_tensor_new(&batch, MC_SHAPE(n, B, S, S), "synth"));
    int labels[12];
    MC_CHECK_OK(mc_synth_batch(9, first, batch, labels));
    uint16_t *tile = malloc(sizeof(uint16_t) * PLANE * B);
    ck_assert_ptr_nonnull(tile);
    for (int k = 0; k < n; k++) {
        ck_assert_int_eq(labels[k], (first + k) % K);
        MC_CHECK_OK(mc_synth_tile(9, (first + k) % K, (first + k) / K, tile));
        for (int p = 0; p < PLANE; p += 37)
            for (int b = 0; b < B; b++)
                ck_assert_float_eq(batch->data[((long)k * B + b) * PLANE + p], (float)tile[p * B + b] / 10000.0f);
    }
    free(tile);
    mc_tensor_free(batch);
}
END_TEST

START_TEST(test_errors_and_names) {
    uint16_t tile[1];
    MC_CHECK_FAILS(mc_synth_tile(1, 10, 0, tile), MC_ERR_ARG, "class label 10");
    MC_CHECK_FAILS(mc_synth_tile(1, 0, -1, tile), MC_ERR_ARG, "negative");
    MC_CHECK_FAILS(mc_synth_tile(1, 0, 0, NULL), MC_ERR_ARG, "NULL");
    mc_tensor *wrong;
    MC_CHECK_OK(mc_tensor_new(&wrong, MC_SHAPE(2, 3, S, S), "rgb"));
    MC_CHECK_FAILS(mc_synth_batch(1, 0, wrong, NULL), MC_ERR_SHAPE, "rgb (2, 3, 64, 64) must be (N, 13, 64, 64)");
    mc_tensor_free(wrong);
    /* EuroSAT's class folders, sorted: the label order of the real loader. */
    const char *expected[K] = {"AnnualCrop", "Forest",        "HerbaceousVegetation", "Highway", "Industrial",
                               "Pasture",    "PermanentCrop", "Residential",          "River",   "SeaLake"};
    for (int i = 0; i < K; i++) {
        ck_assert_str_eq(mc_synth_class_name(i), expected[i]);
        ck_assert_int_eq(mc_synth_class_label(expected[i]), i);
        if (i) ck_assert_int_lt(strcmp(expected[i - 1], expected[i]), 0);
    }
    ck_assert_ptr_null(mc_synth_class_name(10));
    ck_assert_int_eq(mc_synth_class_label("Desert"), -1);
    float r[B];
    MC_CHECK_FAILS(mc_synth_material("unobtainium", r), MC_ERR_ARG, "\"clear water\"");
}
END_TEST

START_TEST(test_files_read_back_through_the_eurosat_loader) {
    /* The world written in EuroSAT-MS's layout (as `mmchain synth` does) is
     * read by the real-data loader: same labels, and with the reflectance
     * normalisation the same floats as mc_synth_batch / mc_synth_tile. */
    char dir[512], path[1024];
    ck_assert_str_ne(mc_test_temp_dir(dir, sizeof dir), "");
    uint16_t *tile = malloc(sizeof(uint16_t) * PLANE * B);
    ck_assert_ptr_nonnull(tile);
    for (int c = 0; c < K; c++) {
        snprintf(path, sizeof path, "%s/%s", dir, mc_synth_class_name(c));
        ck_assert_int_eq(mkdir(path, 0777), 0);
        for (int i = 0; i < 2; i++) {
            MC_CHECK_OK(mc_synth_tile(31, c, i, tile));
            snprintf(path, sizeof path, "%s/%s/%s_%d.tif", dir, mc_synth_class_name(c), mc_synth_class_name(c), i + 1);
            MC_CHECK_OK(mc_tiff_write_u16(path, tile, S, S, B));
        }
    }
    mc_eurosat_options options = mc_eurosat_default_options();
    options.train_size = 10;
    options.val_size = 5;
    mc_eurosat *ds;
    MC_CHECK_OK(mc_eurosat_open(&ds, dir, &options));
    ck_assert_int_eq(mc_eurosat_size(ds), 2 * K);
    mc_bands all;
    MC_CHECK_OK(mc_bands_parse("all", &all));
    mc_norm norm;
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_REFLECTANCE));
    mc_tensor *loaded;
    MC_CHECK_OK(mc_tensor_new(&loaded, MC_SHAPE(1, B, S, S), "loaded"));
    for (int k = 0; k < 2 * K; k++) {
        int label = mc_eurosat_label(ds, k);
        ck_assert_str_eq(mc_eurosat_class_name(ds, label), mc_synth_class_name(label));
        const char *file = strrchr(mc_eurosat_path(ds, k), '_');
        int index = atoi(file + 1) - 1;
        MC_CHECK_OK(mc_eurosat_load_batch(ds, &k, 1, &all, &norm, loaded));
        MC_CHECK_OK(mc_synth_tile(31, label, index, tile));
        for (int p = 0; p < PLANE; p++)
            for (int b = 0; b < B; b++)
                ck_assert_float_eq_tol(loaded->data[b * PLANE + p], (float)tile[p * B + b] / 10000.0f, 1e-7f);
        remove(mc_eurosat_path(ds, k));
    }
    for (int c = 0; c < K; c++) {
        snprintf(path, sizeof path, "%s/%s", dir, mc_synth_class_name(c));
        rmdir(path);
    }
    rmdir(dir);
    mc_tensor_free(loaded);
    mc_eurosat_free(ds);
    free(tile);
}
END_TEST

/* ---- the materials follow real spectral signatures ---- */

static void material(const char *name, float r[B]) { MC_CHECK_OK(mc_synth_material(name, r)); }

START_TEST(test_material_physics) {
    float r[B];
    const char *vegetation[] = {"green vegetation", "conifer forest", "broadleaf forest", "shrub"};
    for (int i = 0; i < 4; i++) {
        material(vegetation[i], r);
        /* Chlorophyll: red absorbed, green bump; the red edge climbs B04 <
         * B05 < B07; the NIR plateau is several times the red. */
        ck_assert_msg(r[B03] > r[B04] && r[B03] > r[B02], "%s: no green peak", vegetation[i]);
        ck_assert_msg(r[B04] < r[B05] && r[B05] < r[B07], "%s: no red edge", vegetation[i]);
        ck_assert_msg(r[B08] > 5.0f * r[B04], "%s: NIR %.3f not >> red %.3f", vegetation[i], r[B08], r[B04]);
    }
    float conifer[B], broadleaf[B];
    material("conifer forest", conifer);
    material("broadleaf forest", broadleaf);
    ck_assert(conifer[B08] < broadleaf[B08]); /* needles are darker in the NIR */
    float dry[B], green[B];
    material("senescent vegetation", dry);
    material("green vegetation", green);
    ck_assert(dry[B04] > green[B04] && dry[B08] < green[B08] && dry[B11] > green[B11]);
    const char *waters[] = {"clear water", "turbid water"};
    for (int i = 0; i < 2; i++) {
        material(waters[i], r);
        ck_assert_msg(r[B08] < r[B03] && r[B11] < 0.01f && r[B12] < 0.01f, "%s: not dark beyond 750 nm", waters[i]);
    }
    float clear[B], turbid[B];
    material("clear water", clear);
    material("turbid water", turbid);
    ck_assert(turbid[B03] > clear[B03]);
    const char *soils[] = {"moist soil", "dry soil"};
    for (int i = 0; i < 2; i++) {
        material(soils[i], r);
        ck_assert_msg(r[B02] < r[B04] && r[B04] < r[B08] && r[B08] < r[B11], "%s: not rising into the SWIR", soils[i]);
    }
    float asphalt[B], concrete[B], red_roof[B];
    material("asphalt", asphalt);
    material("concrete", concrete);
    material("red roof", red_roof);
    for (int b = 0; b < B; b++) ck_assert(asphalt[b] < concrete[b]);
    ck_assert(red_roof[B04] > 2.0f * red_roof[B03]); /* iron-oxide red */
    ck_assert_int_eq(mc_synth_material_count(), 14);
    for (int i = 0; i < mc_synth_material_count(); i++) {
        material(mc_synth_material_name(i), r);
        for (int b = 0; b < B; b++) ck_assert(r[b] >= 0.0f && r[b] <= 1.0f);
    }
}
END_TEST

/* ---- statistics against the real sample ---- */

/* Mean band values of real EuroSAT-MS tiles, file band order, as given in
 * ../shared/data/README.md ("Mean band values of real EuroSAT-MS tiles are
 * roughly [...]"; they agree with torchgeo's EuroSAT mean table). */
static const double real_band_mean[B] = {1361, 1129, 1061, 968, 1219, 2010, 2377, 2302, 729, 12, 1848, 1152, 2596};

/* Per-class means of B02, B03, B04, B08 over the 5 real tiles per class in
 * ../shared/data/eurosat-ms-sample, measured once with an independent
 * reader (a raw decode of the uncompressed strips in Python/numpy). */
static const double real_class_mean[K][4] = {
    {1185, 1250, 1306, 3080}, /* AnnualCrop */
    {778, 647, 367, 2903},    /* Forest */
    {1156, 1117, 1093, 2327}, /* HerbaceousVegetation */
    {1145, 1062, 979, 2372},  /* Highway */
    {1364, 1267, 1257, 2130}, /* Industrial */
    {1215, 1045, 730, 3335},  /* Pasture */
    {1241, 1283, 1330, 2906}, /* PermanentCrop */
    {1194, 1103, 1025, 2118}, /* Residential */
    {1152, 978, 771, 1715},   /* River */
    {1027, 924, 659, 341},    /* SeaLake */
};

/* A balanced world of n_per_class tiles per class (heap, (N, 13, 64, 64)). */
static mc_tensor *make_world(uint64_t seed, int64_t first, int n_per_class, int *labels) {
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, MC_SHAPE((int64_t)n_per_class * K, B, S, S), "world"));
    MC_CHECK_OK(mc_synth_batch(seed, first, t, labels));
    return t;
}

/* Mean of band b of tile k, in uint16 units (x 10000). */
static double tile_band_mean(const mc_tensor *w, int k, int b) {
    const float *p = w->data + ((long)k * B + b) * PLANE;
    double sum = 0;
    for (int i = 0; i < PLANE; i++) sum += p[i];
    return sum / PLANE * 10000.0;
}

START_TEST(test_statistics_near_the_real_sample) {
    const int per = 30;
    int *labels = malloc(sizeof(int) * per * K);
    ck_assert_ptr_nonnull(labels);
    mc_tensor *w = make_world(2024, 0, per, labels);
    double all[B] = {0}, cls[K][B] = {{0}};
    for (int k = 0; k < per * K; k++)
        for (int b = 0; b < B; b++) {
            double m = tile_band_mean(w, k, b);
            all[b] += m / (per * K);
            cls[labels[k]][b] += m / per;
        }
    /* The check: every band's mean over the whole world lies within a factor
     * of 2 of the real per-band mean. */
    for (int b = 0; b < B; b++)
        ck_assert_msg(all[b] > real_band_mean[b] / 2 && all[b] < real_band_mean[b] * 2,
                      "band %d: synthetic mean %.0f vs real %.0f (factor 2 allowed)", b, all[b], real_band_mean[b]);
    /* Per class, the 10 m bands B02, B03, B04, B08 within a factor of 2 of the
     * real sample's class means. */
    const int ten_m[4] = {B02, B03, B04, B08};
    for (int c = 0; c < K; c++)
        for (int j = 0; j < 4; j++) {
            double s = cls[c][ten_m[j]], r = real_class_mean[c][j];
            ck_assert_msg(s > r / 2 && s < r * 2, "%s band %d: synthetic %.0f vs real %.0f", mc_synth_class_name(c),
                          ten_m[j], s, r);
        }
    /* Physics at the class level: vegetated classes have NIR well above red,
     * water is darker in the NIR than in the green, and built-up classes are
     * less green (lower NDVI) than pasture and forest. */
    const char *green[] = {"Forest", "Pasture", "PermanentCrop", "HerbaceousVegetation", "AnnualCrop"};
    for (int i = 0; i < 5; i++) {
        int c = mc_synth_class_label(green[i]);
        ck_assert_msg(cls[c][B08] > 1.5 * cls[c][B04], "%s: NIR %.0f vs red %.0f", green[i], cls[c][B08], cls[c][B04]);
    }
    int sea = mc_synth_class_label("SeaLake");
    ck_assert(cls[sea][B08] < cls[sea][B03]);
#define NDVI(c) ((cls[c][B08] - cls[c][B04]) / (cls[c][B08] + cls[c][B04]))
    int forest = mc_synth_class_label("Forest"), pasture = mc_synth_class_label("Pasture");
    int industrial = mc_synth_class_label("Industrial"), residential = mc_synth_class_label("Residential");
    ck_assert(NDVI(industrial) < NDVI(forest) && NDVI(industrial) < NDVI(pasture));
    ck_assert(NDVI(residential) < NDVI(forest) && NDVI(residential) < NDVI(pasture));
#undef NDVI
    /* B10 (cirrus) sees almost nothing of the ground: tens, not thousands. */
    ck_assert(all[B10] < 40.0);
    mc_tensor_free(w);
    free(labels);
}
END_TEST

/* ---- content, not band means ----
 * Two nearest-centroid classifiers (z-scored features, Euclidean distance to
 * each class's mean feature vector), trained on one part of the world and
 * scored on another. They differ only in what they see:
 *   - band means: the 13 per-band tile means;
 *   - texture/layout: 22 handcrafted features of spatial structure — for
 *     the visible brightness and B08, each normalised by its tile mean, and
 *     for NDVI: the spread, the gradient energy, the autocorrelation at lags
 *     1, 2 and 4 px and the gradients' orientation coherence (stripes and
 *     roads are coherent); plus the water fraction, the low-NDVI fraction,
 *     the mean NDVI and the spread of 8x8-block NDVI means.
 * (lib/ops was being written when this test was; a small convnet is the
 * stronger model of the issue — this handcrafted texture classifier plays
 * its part here, deterministic and fast.) */

enum { N_MEAN_FEATURES = B, N_TEXTURE_FEATURES = 22 };

/* 6 features of one image img (S, S) into f. */
static void structure_features(const float *img, float *f) {
    double mean = 0;
    for (int i = 0; i < PLANE; i++) mean += img[i];
    mean /= PLANE;
    double var = 0, grad = 0, jxx = 0, jyy = 0, jxy = 0;
    for (int i = 0; i < PLANE; i++) var += (img[i] - mean) * (img[i] - mean);
    var = var / PLANE + 1e-12;
    for (int y = 0; y < S - 1; y++)
        for (int x = 0; x < S - 1; x++) {
            double gx = img[y * S + x + 1] - img[y * S + x], gy = img[(y + 1) * S + x] - img[y * S + x];
            grad += fabs(gx) + fabs(gy);
            jxx += gx * gx, jyy += gy * gy, jxy += gx * gy;
        }
    f[0] = (float)sqrt(var);
    f[1] = (float)(grad / ((S - 1) * (S - 1)));
    const int lags[3] = {1, 2, 4};
    for (int l = 0; l < 3; l++) {
        int L = lags[l];
        double acc = 0;
        for (int y = 0; y < S; y++)
            for (int x = 0; x + L < S; x++) acc += (img[y * S + x] - mean) * (img[y * S + x + L] - mean);
        for (int y = 0; y + L < S; y++)
            for (int x = 0; x < S; x++) acc += (img[y * S + x] - mean) * (img[(y + L) * S + x] - mean);
        f[2 + l] = (float)(acc / (2.0 * S * (S - L)) / var);
    }
    f[5] = (float)(sqrt((jxx - jyy) * (jxx - jyy) + 4 * jxy * jxy) / (jxx + jyy + 1e-12));
}

static void texture_features(const mc_tensor *w, int k, float *f) {
    const float *band = w->data + (long)k * B * PLANE;
    float *vis = malloc(sizeof(float) * PLANE * 3);
    ck_assert_ptr_nonnull(vis);
    float *nir = vis + PLANE, *ndvi = nir + PLANE;
    double vis_mean = 0, nir_mean = 0;
    int water = 0, bare = 0;
    for (int i = 0; i < PLANE; i++) {
        float blue = band[B02 * PLANE + i], grn = band[B03 * PLANE + i], red = band[B04 * PLANE + i];
        float n = band[B08 * PLANE + i];
        vis[i] = (blue + grn + red) / 3.0f;
        nir[i] = n;
        ndvi[i] = (n - red) / (n + red + 1e-6f);
        vis_mean += vis[i], nir_mean += n;
        water += (grn - n) / (grn + n + 1e-6f) > 0.0f;
        bare += ndvi[i] < 0.3f;
    }
    for (int i = 0; i < PLANE; i++) vis[i] /= (float)(vis_mean / PLANE), nir[i] /= (float)(nir_mean / PLANE);
    structure_features(vis, f);
    structure_features(nir, f + 6);
    structure_features(ndvi, f + 12);
    double ndvi_mean = 0, block_sum = 0, block_sq = 0;
    for (int i = 0; i < PLANE; i++) ndvi_mean += ndvi[i];
    for (int by = 0; by < S; by += 8)
        for (int bx = 0; bx < S; bx += 8) {
            double m = 0;
            for (int y = by; y < by + 8; y++)
                for (int x = bx; x < bx + 8; x++) m += ndvi[y * S + x];
            m /= 64;
            block_sum += m, block_sq += m * m;
        }
    const int blocks = (S / 8) * (S / 8);
    f[18] = (float)water / PLANE;
    f[19] = (float)bare / PLANE;
    f[20] = (float)(ndvi_mean / PLANE);
    f[21] = (float)sqrt(fmax(0.0, block_sq / blocks - (block_sum / blocks) * (block_sum / blocks)));
    free(vis);
}

static void mean_features(const mc_tensor *w, int k, float *f) {
    for (int b = 0; b < B; b++) f[b] = (float)tile_band_mean(w, k, b);
}

/* Train a nearest-centroid classifier on features train (n_train, d) and
 * return its accuracy on test (n_test, d). */
static double nearest_centroid_accuracy(const float *train, const int *train_labels, int n_train, const float *test,
                                        const int *test_labels, int n_test, int d) {
    double *mu = calloc((size_t)d * (2 + K), sizeof(double)), *sd = mu + d, *centroid = sd + d;
    int count[K] = {0};
    ck_assert_ptr_nonnull(mu);
    for (int i = 0; i < n_train; i++)
        for (int j = 0; j < d; j++) mu[j] += train[i * d + j] / (double)n_train;
    for (int i = 0; i < n_train; i++)
        for (int j = 0; j < d; j++) sd[j] += pow(train[i * d + j] - mu[j], 2) / n_train;
    for (int j = 0; j < d; j++) sd[j] = sqrt(sd[j]) + 1e-9;
    for (int i = 0; i < n_train; i++) {
        count[train_labels[i]]++;
        for (int j = 0; j < d; j++) centroid[train_labels[i] * d + j] += (train[i * d + j] - mu[j]) / sd[j];
    }
    for (int c = 0; c < K; c++)
        for (int j = 0; j < d; j++) centroid[c * d + j] /= count[c];
    int correct = 0;
    for (int i = 0; i < n_test; i++) {
        int best = 0;
        double best_d = INFINITY;
        for (int c = 0; c < K; c++) {
            double dist = 0;
            for (int j = 0; j < d; j++) dist += pow((test[i * d + j] - mu[j]) / sd[j] - centroid[c * d + j], 2);
            if (dist < best_d) best_d = dist, best = c;
        }
        correct += best == test_labels[i];
    }
    free(mu);
    return (double)correct / n_test;
}

typedef void (*feature_fn)(const mc_tensor *w, int k, float *f);

static float *features_of(const mc_tensor *w, int n, feature_fn fn, int d) {
    float *f = malloc(sizeof(float) * (size_t)n * d);
    ck_assert_ptr_nonnull(f);
    for (int k = 0; k < n; k++) fn(w, k, f + (long)k * d);
    return f;
}

START_TEST(test_content_beats_band_means) {
    /* Train on tiles 0..599 of the world (60 per class), test on the next
     * 400 (40 per class): different tiles, same world. */
    const int per_train = 60, per_test = 40, n_train = per_train * K, n_test = per_test * K;
    int *train_labels = malloc(sizeof(int) * (n_train + n_test)), *test_labels = train_labels + n_train;
    ck_assert_ptr_nonnull(train_labels);
    mc_tensor *train = make_world(77, 0, per_train, train_labels);
    mc_tensor *test = make_world(77, n_train, per_test, test_labels);

    float *tr = features_of(train, n_train, mean_features, N_MEAN_FEATURES);
    float *te = features_of(test, n_test, mean_features, N_MEAN_FEATURES);
    double acc_means = nearest_centroid_accuracy(tr, train_labels, n_train, te, test_labels, n_test, N_MEAN_FEATURES);
    free(tr);
    free(te);
    tr = features_of(train, n_train, texture_features, N_TEXTURE_FEATURES);
    te = features_of(test, n_test, texture_features, N_TEXTURE_FEATURES);
    double acc_texture =
        nearest_centroid_accuracy(tr, train_labels, n_train, te, test_labels, n_test, N_TEXTURE_FEATURES);
    free(tr);
    free(te);
    printf("nearest centroid on %d test tiles: band means %.3f, texture/layout %.3f (chance 0.100)\n", n_test,
           acc_means, acc_texture);
    /* Band means alone get part of the way (water and forest are easy), far
     * from what the content gives. */
    ck_assert_msg(acc_means < 0.70, "band means classify %.3f: the world is too easy by spectrum alone", acc_means);
    ck_assert_msg(acc_texture > 0.75, "texture/layout only %.3f", acc_texture);
    ck_assert_msg(acc_texture > acc_means + 0.20, "texture %.3f is not far above band means %.3f", acc_texture,
                  acc_means);
    mc_tensor_free(train);
    mc_tensor_free(test);
    free(train_labels);
}
END_TEST

START_TEST(test_views_share_the_scene_but_differ) {
    /* The RGB view (B04, B03, B02) and the infrared view (B08, B11, B12) of a
     * tile show the same scene — their spatial patterns correlate — yet in
     * different contrast: across vegetated and built tiles the sign of the
     * B08-vs-B04 relation flips (water and roofs dark in NIR, fields bright),
     * so no single band predicts the other view. Checked on Residential
     * tiles: correlation of B04 and B08 over pixels is far from +1. */
    int labels[40];
    mc_tensor *w = make_world(5, 0, 4, labels);
    int checked = 0;
    for (int k = 0; k < 40; k++) {
        if (labels[k] != mc_synth_class_label("Residential") && labels[k] != mc_synth_class_label("River")) continue;
        const float *red = w->data + ((long)k * B + B04) * PLANE, *nir = w->data + ((long)k * B + B08) * PLANE;
        const float *swir = w->data + ((long)k * B + B11) * PLANE;
        double mr = 0, mn = 0, ms = 0;
        for (int i = 0; i < PLANE; i++) mr += red[i], mn += nir[i], ms += swir[i];
        mr /= PLANE, mn /= PLANE, ms /= PLANE;
        double srn = 0, srr = 0, snn = 0, sns = 0, sss = 0;
        for (int i = 0; i < PLANE; i++) {
            srn += (red[i] - mr) * (nir[i] - mn), srr += pow(red[i] - mr, 2), snn += pow(nir[i] - mn, 2);
            sns += (nir[i] - mn) * (swir[i] - ms), sss += pow(swir[i] - ms, 2);
        }
        double corr_red_nir = srn / sqrt(srr * snn);
        ck_assert_msg(corr_red_nir < 0.6, "tile %d: red and NIR correlate %.2f — same contrast", k, corr_red_nir);
        /* ...while the scene is shared: some band of the IR view follows the
         * structure strongly (|corr| of NIR with red or SWIR is high). */
        double corr_nir_swir = sns / sqrt(snn * sss);
        ck_assert_msg(fabs(corr_red_nir) > 0.3 || fabs(corr_nir_swir) > 0.3, "tile %d: views unrelated", k);
        checked++;
    }
    ck_assert_int_eq(checked, 8);
    mc_tensor_free(w);
}
END_TEST

int main(void) {
    Suite *s = suite_create("synth");
    TCase *tc = tcase_create("synth");
    tcase_set_timeout(tc, 300); /* ASan on a busy machine */
    tcase_add_test(tc, test_tiles_are_deterministic);
    tcase_add_test(tc, test_batch_matches_tiles);
    tcase_add_test(tc, test_errors_and_names);
    tcase_add_test(tc, test_files_read_back_through_the_eurosat_loader);
    tcase_add_test(tc, test_material_physics);
    tcase_add_test(tc, test_statistics_near_the_real_sample);
    tcase_add_test(tc, test_content_beats_band_means);
    tcase_add_test(tc, test_views_share_the_scene_but_differ);
    suite_add_tcase(s, tc);
    return mc_test_run_suite(s);
}

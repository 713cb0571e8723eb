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
 * The convnet test below is the stronger model; this one stays
 * because it says WHICH content separates the classes (and costs 0.5 s). */

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

/* ---- a trained convnet against band means ----
 * The world's claim (docs/synth.md), tested with the library itself: a small convnet trained
 * for a few seconds reads the content (stripes, rows, roads, roofs, shores)
 * and classifies held-out tiles far better than classifiers of the 13
 * per-band tile means. Two band-mean classifiers, so that "band means do
 * worse" is not an artefact of a weak one: the nearest-centroid classifier
 * above, and a softmax regression (convex, trained to convergence) on the
 * z-scored band means — the stronger of the two is the baseline.
 *
 * The convnet sees less spectrum than the baselines: only the four 10 m
 * bands B02, B03, B04, B08 (the 20 m and 60 m bands add blur, not layout,
 * and B10's cirrus spikes on cloudy tiles are hundreds of torchgeo standard
 * deviations), at 32x32 (a 2x2 average pool of the 64x64 tile), z-scored with
 * torchgeo's EuroSAT table (MC_NORM_TORCHGEO, data.h) as a real-data run is:
 *     3 x [conv 3x3 (no bias) -> batchnorm -> relu], 4 -> 16 -> 16 -> 32
 *     channels, a 2x2 max pool after the first two; global average pool;
 *     linear 32 -> 10.
 * Its global average pool could compute band means too: what it gains over
 * the baselines is content. Trained with Adam, lr 0.01 with cosine decay,
 * batches of 32, 3 epochs over 2000 tiles (more tiles beat more epochs). */

enum {
    CNN_BANDS = 4,                   /* B02 B03 B04 B08 */
    CNN_SIZE = S / 2,                /* 32x32 after a 2x2 average pool */
    CNN_PIXELS = CNN_SIZE * CNN_SIZE,
    CNN_LAYERS = 3,
    CNN_BATCH = 32,
    CNN_EPOCHS = 3,
    CNN_CHUNK = 100 /* tiles generated at a time */
};
static const int cnn_bands[CNN_BANDS] = {B02, B03, B04, B08};
static const int cnn_channels[CNN_LAYERS + 1] = {CNN_BANDS, 16, 16, 32};

/* Built from the layer kit (nn.h). */
typedef struct convnet {
    mc_param_list params;
    mc_conv_bn unit[CNN_LAYERS]; /* conv3x3 -> BN -> ReLU */
    mc_linear_layer fc;
} convnet;

/* PyTorch's initialisations for a ResNet-style net: kaiming-normal (fan_out)
 * convs, batchnorm weight 1 / bias 0, a default-uniform linear head. */
static void convnet_init(convnet *net, uint64_t seed) {
    memset(net, 0, sizeof *net);
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    for (int l = 0; l < CNN_LAYERS; l++) {
        mc_conv_config conv = {.in_channels = cnn_channels[l], .out_channels = cnn_channels[l + 1],
                               .kernel = 3, .stride = 1, .padding = 1,
                               .init = MC_CONV_INIT_KAIMING_FAN_OUT};
        char conv_name[16], bn_name[16];
        snprintf(conv_name, sizeof conv_name, "conv%d", l);
        snprintf(bn_name, sizeof bn_name, "bn%d", l);
        MC_CHECK_OK(mc_conv_bn_init(&net->params, conv_name, bn_name, &conv, true, &rng, &net->unit[l]));
    }
    MC_CHECK_OK(mc_linear_init(&net->params, "fc", cnn_channels[CNN_LAYERS], K, true, &rng, &net->fc));
}

/* x (N, 32, 32, 4) NHWC -> logits (N, 10). */
static mc_status convnet_forward(convnet *net, mc_graph *g, mc_tensor *x, bool training, mc_tensor **logits) {
    for (int l = 0; l < CNN_LAYERS; l++) {
        MC_TRY(mc_conv_bn_forward(g, &net->unit[l], training, x, &x));
        if (l < CNN_LAYERS - 1) MC_TRY(mc_maxpool2d(g, x, 2, 2, 0, &x));
    }
    MC_TRY(mc_global_avgpool(g, x, &x));
    return mc_linear_forward(g, &net->fc, x, logits);
}

/* Tiles first .. first + n - 1 of the world (n a multiple of CNN_CHUNK),
 * made CNN_CHUNK at a time so the full-size world never sits in memory:
 *   inputs (n, 32, 32, 4): the convnet's view (above);
 *   means  (n, 13):        every band's tile mean in DN, from the full tile;
 *   labels (n). */
static mc_tensor *make_convnet_data(uint64_t seed, int64_t first, int n, float *means, int *labels) {
    ck_assert_int_eq(n % CNN_CHUNK, 0);
    mc_norm norm;
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_TORCHGEO));
    mc_tensor *inputs, *chunk;
    MC_CHECK_OK(mc_tensor_new(&inputs, MC_SHAPE(n, CNN_SIZE, CNN_SIZE, CNN_BANDS), "convnet inputs"));
    MC_CHECK_OK(mc_tensor_new(&chunk, MC_SHAPE(CNN_CHUNK, B, S, S), "world chunk"));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_grad_enabled(g, false);
    for (int done = 0; done < n; done += CNN_CHUNK) {
        MC_CHECK_OK(mc_synth_batch(seed, first + done, chunk, labels + done));
        for (int k = 0; k < CNN_CHUNK; k++) mean_features(chunk, k, means + (long)(done + k) * B);
        mc_tensor *nhwc, *pooled; /* (CNN_CHUNK, 64, 64, 13), (CNN_CHUNK, 32, 32, 13) */
        MC_CHECK_OK(mc_nchw_to_nhwc(g, chunk, &nhwc));
        MC_CHECK_OK(mc_avgpool2d(g, nhwc, 2, 2, 0, &pooled));
        float *dst = inputs->data + (long)done * CNN_PIXELS * CNN_BANDS;
        for (long p = 0; p < (long)CNN_CHUNK * CNN_PIXELS; p++)
            for (int j = 0; j < CNN_BANDS; j++) {
                int b = cnn_bands[j]; /* reflectance -> DN -> z-score */
                dst[p * CNN_BANDS + j] = (pooled->data[p * B + b] * 10000.0f - norm.mean[b]) / norm.std[b];
            }
        mc_graph_reset(g);
    }
    mc_graph_free(g);
    mc_tensor_free(chunk);
    return inputs;
}

/* Copy tiles order[0..n-1] of inputs into a step tensor (n, 32, 32, 4). */
static mc_tensor *gather_tiles(mc_graph *g, const mc_tensor *inputs, const int *order, int n) {
    const long per_tile = (long)CNN_PIXELS * CNN_BANDS;
    mc_tensor *x;
    MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(n, CNN_SIZE, CNN_SIZE, CNN_BANDS), "batch", &x));
    for (int k = 0; k < n; k++)
        memcpy(x->data + k * per_tile, inputs->data + order[k] * per_tile, sizeof(float) * per_tile);
    return x;
}

/* Adam on shuffled mini-batches (settings above); returns the last epoch's
 * mean training loss. */
static double convnet_train(convnet *net, const mc_tensor *inputs, const int *labels, int n, uint64_t seed) {
    const int steps_per_epoch = n / CNN_BATCH;
    mc_lr_schedule schedule = mc_lr_cosine(0.01f, 0, (int64_t)CNN_EPOCHS * steps_per_epoch, 0.0f);
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &net->params, mc_adam_defaults()));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    int *order = malloc(sizeof(int) * n);
    int32_t targets[CNN_BATCH];
    ck_assert_ptr_nonnull(order);
    for (int i = 0; i < n; i++) order[i] = i;
    double epoch_loss = 0;
    for (int epoch = 0; epoch < CNN_EPOCHS; epoch++) {
        mc_rng_shuffle(&rng, order, n);
        epoch_loss = 0;
        for (int step = 0; step < steps_per_epoch; step++) {
            const int *batch = order + step * CNN_BATCH;
            for (int k = 0; k < CNN_BATCH; k++) targets[k] = labels[batch[k]];
            mc_optimizer_zero_grad(opt);
            MC_CHECK_OK(mc_optimizer_set_lr(opt, mc_lr_at(&schedule, mc_optimizer_steps(opt))));
            mc_tensor *logits, *loss;
            MC_CHECK_OK(convnet_forward(net, g, gather_tiles(g, inputs, batch, CNN_BATCH), true, &logits));
            MC_CHECK_OK(mc_cross_entropy(g, logits, targets, 0.0f, &loss));
            MC_CHECK_OK(mc_backward(g, loss));
            MC_CHECK_OK(mc_optimizer_step(opt));
            epoch_loss += loss->data[0] / steps_per_epoch;
            mc_graph_reset(g);
        }
    }
    free(order);
    mc_graph_free(g);
    mc_optimizer_free(opt);
    return epoch_loss;
}

/* Index of the largest of n scores. */
static int argmax(const float *scores, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (scores[i] > scores[best]) best = i;
    return best;
}

/* Accuracy of the convnet (batchnorm in eval mode) on n tiles of inputs. */
static double convnet_accuracy(convnet *net, const mc_tensor *inputs, const int *labels, int n) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_grad_enabled(g, false);
    int order[CNN_CHUNK], correct = 0;
    for (int start = 0; start < n; start += CNN_CHUNK) {
        int count = n - start < CNN_CHUNK ? n - start : CNN_CHUNK;
        for (int k = 0; k < count; k++) order[k] = start + k;
        mc_tensor *logits;
        MC_CHECK_OK(convnet_forward(net, g, gather_tiles(g, inputs, order, count), false, &logits));
        for (int k = 0; k < count; k++) correct += argmax(logits->data + k * K, K) == labels[start + k];
        mc_graph_reset(g);
    }
    mc_graph_free(g);
    return (double)correct / n;
}

/* features (n, d) -> z-scored with the mean and std of the first n_train rows
 * (the training set), in place. */
static void zscore_by_train(float *features, int n, int n_train, int d) {
    for (int j = 0; j < d; j++) {
        double mean = 0, var = 0;
        for (int i = 0; i < n_train; i++) mean += features[i * d + j] / (double)n_train;
        for (int i = 0; i < n_train; i++) var += pow(features[i * d + j] - mean, 2) / n_train;
        double sd = sqrt(var) + 1e-9;
        for (int i = 0; i < n; i++) features[i * d + j] = (float)((features[i * d + j] - mean) / sd);
    }
}

/* Softmax regression (linear 13 -> 10, cross-entropy) on band-mean features
 * (n_train + n_test rows, training rows first): full-batch Adam, lr 0.05,
 * 2000 steps, then the accuracy on the test rows. Convex, so this is about
 * the best a linear model of band means does: the test accuracy moved by
 * < 0.02 between 500 and 2000 steps (worlds 2 and 1234). */
static double band_mean_softmax_accuracy(float *means, const int *labels, int n_train, int n_test) {
    zscore_by_train(means, n_train + n_test, n_train, B);
    mc_param_list params = {0};
    mc_tensor *weight, *bias, *x_train, *x_test;
    MC_CHECK_OK(mc_params_new(&params, &weight, MC_SHAPE(K, B), true, "weight"));
    MC_CHECK_OK(mc_params_new(&params, &bias, MC_SHAPE(K), true, "bias"));
    MC_CHECK_OK(mc_tensor_new(&x_train, MC_SHAPE(n_train, B), "band means (train)"));
    MC_CHECK_OK(mc_tensor_new(&x_test, MC_SHAPE(n_test, B), "band means (test)"));
    MC_CHECK_OK(mc_tensor_load(x_train, means, (int64_t)n_train * B));
    MC_CHECK_OK(mc_tensor_load(x_test, means + (long)n_train * B, (int64_t)n_test * B));
    int32_t *targets = malloc(sizeof(int32_t) * n_train);
    ck_assert_ptr_nonnull(targets);
    for (int i = 0; i < n_train; i++) targets[i] = labels[i];
    mc_adam_config adam = mc_adam_defaults();
    adam.lr = 0.05f;
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &params, adam));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    for (int step = 0; step < 2000; step++) {
        mc_tensor *logits, *loss;
        mc_optimizer_zero_grad(opt);
        MC_CHECK_OK(mc_linear(g, x_train, weight, bias, &logits));
        MC_CHECK_OK(mc_cross_entropy(g, logits, targets, 0.0f, &loss));
        MC_CHECK_OK(mc_backward(g, loss));
        MC_CHECK_OK(mc_optimizer_step(opt));
        mc_graph_reset(g);
    }
    mc_graph_set_grad_enabled(g, false);
    mc_tensor *logits;
    MC_CHECK_OK(mc_linear(g, x_test, weight, bias, &logits));
    int correct = 0;
    for (int i = 0; i < n_test; i++) correct += argmax(logits->data + i * K, K) == labels[n_train + i];
    mc_graph_free(g);
    mc_optimizer_free(opt);
    free(targets);
    mc_tensor_free(x_train);
    mc_tensor_free(x_test);
    mc_params_free(&params);
    return (double)correct / n_test;
}

START_TEST(test_convnet_beats_band_means) {
    /* One thread: the numbers below are then reproducible run to run (one
     * summation order in OpenBLAS and the ops), and a shared, busy machine
     * does not stall the many small parallel regions at their barriers. */
    const int threads = mc_get_num_threads();
    mc_set_num_threads(1);
    /* Train on tiles 0..1999 of a world (200 per class), test on the next
     * 400 (40 per class): different tiles, same world. */
    const int n_train = 2000, n_test = 400, n = n_train + n_test;
    int *labels = malloc(sizeof(int) * n);
    float *means = malloc(sizeof(float) * n * B);
    ck_assert(labels && means);
    mc_tensor *train = make_convnet_data(1234, 0, n_train, means, labels);
    mc_tensor *test = make_convnet_data(1234, n_train, n_test, means + (long)n_train * B, labels + n_train);

    double acc_centroid = nearest_centroid_accuracy(means, labels, n_train, means + (long)n_train * B,
                                                    labels + n_train, n_test, B);
    double acc_softmax = band_mean_softmax_accuracy(means, labels, n_train, n_test);
    convnet net;
    convnet_init(&net, 99);
    double train_loss = convnet_train(&net, train, labels, n_train, 7);
    double acc_convnet = convnet_accuracy(&net, test, labels + n_train, n_test);
    printf("on %d held-out tiles: band means nearest centroid %.3f, band means softmax regression %.3f, "
           "convnet %.3f (last epoch's training loss %.3f; chance 0.100)\n",
           n_test, acc_centroid, acc_softmax, acc_convnet, train_loss);
    fflush(stdout); /* Check's forked child may not flush on a failure */
    /* Measured (these seeds, one thread, OpenBLAS 0.3 on x86-64): nearest
     * centroid 0.560, softmax regression 0.762, convnet 0.975 (training loss
     * 0.247). Worlds 1, 2, 3 (other init seeds) gave 0.52-0.55, 0.74-0.77
     * (at 500 steps) and 0.965-0.975. The bounds leave room for another BLAS or compiler (sums
     * in another order) without admitting a world whose classes band means
     * separate, or a convnet that learnt little. */
    double acc_means = fmax(acc_centroid, acc_softmax);
    ck_assert_msg(acc_means < 0.85, "band means classify %.3f: the world is too easy by spectrum alone", acc_means);
    ck_assert_msg(acc_convnet > 0.90, "the convnet reaches only %.3f", acc_convnet);
    ck_assert_msg(acc_convnet > acc_means + 0.12, "convnet %.3f is not far above band means %.3f", acc_convnet,
                  acc_means);
    mc_params_free(&net.params);
    mc_tensor_free(train);
    mc_tensor_free(test);
    free(labels);
    free(means);
    mc_set_num_threads(threads);
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
    const TTest *const tests[] = {test_tiles_are_deterministic, test_batch_matches_tiles,
                                  test_errors_and_names,
                                  test_files_read_back_through_the_eurosat_loader,
                                  test_material_physics, test_statistics_near_the_real_sample,
                                  test_content_beats_band_means, test_convnet_beats_band_means,
                                  test_views_share_the_scene_but_differ, NULL};
    tcase_set_timeout(mc_test_add_case(s, "synth", tests), 300); /* ASan on a busy machine */
    return mc_test_run_suite(s);
}

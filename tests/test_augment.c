/* Augmentation: flips, quarter turns and crops on tiny hand-made images with
 * expected values worked out by hand (and checked once against PyTorch:
 * torch.flip, torch.rot90(x, k, (-2, -1)), and F.interpolate(crop,
 * mode="bilinear", align_corners=False) — the values are written below);
 * shared crops across views of different sizes; reproducibility. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* A heap tensor of `shape` holding `values`. */
static mc_tensor *make(mc_shape shape, const float *values) {
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, shape, "image"));
    if (values) MC_CHECK_OK(mc_tensor_load(t, values, t->numel));
    return t;
}

/* Apply one params to a (1, H, W) image and compare with expected. */
static void check_one(const float *in, int h, int w, mc_augment_params p, const float *expected, const char *what) {
    mc_tensor *x = make(MC_SHAPE(1, h, w), in), *out = make(MC_SHAPE(1, h, w), NULL);
    MC_CHECK_OK(mc_augment_apply(x, &p, 1, out));
    mc_test_assert_close(what, out->data, expected, h * w, 0.0, 1e-6);
    mc_tensor_free(x);
    mc_tensor_free(out);
}

static const float grid3[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* [[1,2,3],[4,5,6],[7,8,9]] */

START_TEST(test_flips) {
    const float wide[6] = {1, 2, 3, 4, 5, 6}; /* [[1,2,3],[4,5,6]], not square */
    mc_augment_params p = mc_augment_identity();
    p.hflip = true;
    check_one(wide, 2, 3, p, (const float[]){3, 2, 1, 6, 5, 4}, "hflip");
    p = mc_augment_identity();
    p.vflip = true;
    check_one(wide, 2, 3, p, (const float[]){4, 5, 6, 1, 2, 3}, "vflip");
    p.hflip = true; /* both flips = a half turn */
    check_one(wide, 2, 3, p, (const float[]){6, 5, 4, 3, 2, 1}, "hflip+vflip");
    check_one(wide, 2, 3, mc_augment_identity(), wide, "identity");
}
END_TEST

START_TEST(test_quarter_turns) {
    mc_augment_params p = mc_augment_identity();
    p.rot90 = 1; /* torch.rot90(x, 1, (-2, -1)) */
    check_one(grid3, 3, 3, p, (const float[]){3, 6, 9, 2, 5, 8, 1, 4, 7}, "rot90 k=1");
    p.rot90 = 2;
    check_one(grid3, 3, 3, p, (const float[]){9, 8, 7, 6, 5, 4, 3, 2, 1}, "rot90 k=2");
    p.rot90 = 3;
    check_one(grid3, 3, 3, p, (const float[]){7, 4, 1, 8, 5, 2, 9, 6, 3}, "rot90 k=3");
    /* hflip then a quarter turn = the transpose. */
    p.rot90 = 1;
    p.hflip = true;
    check_one(grid3, 3, 3, p, (const float[]){1, 4, 7, 2, 5, 8, 3, 6, 9}, "hflip+rot90");
}
END_TEST

START_TEST(test_channels_move_together) {
    /* Two channels: the second is ten times the first. */
    float in[18];
    for (int i = 0; i < 9; i++) in[i] = grid3[i], in[9 + i] = 10 * grid3[i];
    mc_tensor *x = make(MC_SHAPE(2, 3, 3), in), *out = make(MC_SHAPE(2, 3, 3), NULL);
    mc_augment_params p = mc_augment_identity();
    p.rot90 = 3;
    MC_CHECK_OK(mc_augment_apply(x, &p, 1, out));
    const float expected[18] = {7, 4, 1, 8, 5, 2, 9, 6, 3, 70, 40, 10, 80, 50, 20, 90, 60, 30};
    mc_test_assert_close("two channels", out->data, expected, 18, 0.0, 1e-6);
    mc_tensor_free(x);
    mc_tensor_free(out);
}
END_TEST

START_TEST(test_crop_resize_bilinear) {
    /* x[i][j] = 4i + j on 4x4. The top-left quarter (0, 0, .5, .5) brought
     * back to 4x4: each axis reads source positions (i + .5) * .5 - .5 =
     * -.25, .25, .75, 1.25, clamped to the box's pixel centres 0..1 ->
     * 0, .25, .75, 1; bilinear is exact on a linear ramp, so
     * out[i][j] = 4 s[i] + s[j] (PyTorch: F.interpolate(x[..., :2, :2],
     * size=4, mode="bilinear", align_corners=False) gives the same). */
    float ramp[16];
    for (int i = 0; i < 16; i++) ramp[i] = (float)i;
    const float s[4] = {0, 0.25f, 0.75f, 1};
    float expected[16];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) expected[i * 4 + j] = 4 * s[i] + s[j];
    mc_augment_params p = mc_augment_identity();
    p.h = p.w = 0.5f;
    check_one(ramp, 4, 4, p, expected, "crop (0,0,.5,.5)");
    /* Rows 1..2, columns 0..1: source rows 1 + s, so out = 4 (1 + s[i]) + s[j]. */
    p.y0 = 0.25f;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) expected[i * 4 + j] = 4 * (1 + s[i]) + s[j];
    check_one(ramp, 4, 4, p, expected, "crop (.25,0,.5,.5)");
    /* The whole box is the identity. */
    check_one(ramp, 4, 4, mc_augment_identity(), ramp, "crop (0,0,1,1)");
    /* A box starting a hair before 0 (within the check's slack) reads no
     * pixel before the image: here the floats before it are NaN. */
    float *room = malloc(sizeof(float) * 32);
    for (int i = 0; i < 16; i++) room[i] = NAN;
    memcpy(room + 16, ramp, sizeof ramp);
    mc_tensor inside = {.shape = MC_SHAPE(1, 4, 4), .numel = 16, .data = room + 16};
    mc_tensor *out = make(MC_SHAPE(1, 4, 4), NULL);
    p = mc_augment_identity();
    p.y0 = p.x0 = -1e-6f;
    MC_CHECK_OK(mc_augment_apply(&inside, &p, 1, out));
    mc_test_assert_close("crop (-1e-6, -1e-6, 1, 1)", out->data, ramp, 16, 0.0, 1e-4);
    mc_tensor_free(out);
    free(room);
}
END_TEST

START_TEST(test_crop_pad_shift) {
    /* Shift by dy = round(1/3 * 3) = 1, dx = -1: out(i, j) = x(i + 1, j - 1). */
    mc_augment_params p = mc_augment_identity();
    p.mode = MC_CROP_PAD;
    p.y0 = 1.0f / 3.0f;
    p.x0 = -1.0f / 3.0f;
    check_one(grid3, 3, 3, p, (const float[]){0, 4, 5, 0, 7, 8, 0, 0, 0}, "pad shift");
}
END_TEST

START_TEST(test_batch_params_and_in_place) {
    float in[18];
    for (int i = 0; i < 9; i++) in[i] = grid3[i], in[9 + i] = grid3[i];
    mc_tensor *x = make(MC_SHAPE(2, 1, 3, 3), in);
    mc_augment_params p[2] = {mc_augment_identity(), mc_augment_identity()};
    p[0].hflip = true;
    p[1].rot90 = 1;
    MC_CHECK_OK(mc_augment_apply(x, p, 2, x)); /* in place */
    const float expected[18] = {3, 2, 1, 6, 5, 4, 9, 8, 7, 3, 6, 9, 2, 5, 8, 1, 4, 7};
    mc_test_assert_close("batch, in place", x->data, expected, 18, 0.0, 1e-6);
    mc_tensor_free(x);
}
END_TEST

START_TEST(test_shared_box_cuts_the_same_ground) {
    /* The same ground at two resolutions: the top-left quarter is 1, the
     * rest 0, on a 4x4 and an 8x8 image. The relative box (0, 0, .5, .5)
     * holds only the bright quarter in both, whatever the flips and turn. */
    mc_tensor *small = make(MC_SHAPE(1, 1, 4, 4), NULL), *big = make(MC_SHAPE(1, 2, 8, 8), NULL);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) small->data[i * 4 + j] = (i < 2 && j < 2);
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++) big->data[c * 64 + i * 8 + j] = (i < 4 && j < 4);
    mc_augment_params p = mc_augment_identity();
    p.h = p.w = 0.5f;
    p.rot90 = 3;
    p.vflip = true;
    MC_CHECK_OK(mc_augment_apply(small, &p, 1, small));
    MC_CHECK_OK(mc_augment_apply(big, &p, 1, big));
    for (int i = 0; i < 16; i++) ck_assert_float_eq(small->data[i], 1.0f);
    for (int i = 0; i < 128; i++) ck_assert_float_eq(big->data[i], 1.0f);
    mc_tensor_free(small);
    mc_tensor_free(big);
}
END_TEST

/* Run mc_augment_pair from a seed on copies of a and b. */
static void pair_from_seed(uint64_t seed, bool shared, const mc_tensor *a, const mc_tensor *b, mc_tensor **a_out,
                           mc_tensor **b_out) {
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    mc_augment_config config = mc_augment_default_config();
    MC_CHECK_OK(mc_tensor_clone(a_out, a, "a_out"));
    MC_CHECK_OK(mc_tensor_clone(b_out, b, "b_out"));
    MC_CHECK_OK(mc_augment_pair(&rng, &config, shared, a, *a_out, b, *b_out));
}

static bool same(const mc_tensor *x, const mc_tensor *y) {
    return memcmp(x->data, y->data, sizeof(float) * (size_t)x->numel) == 0;
}

START_TEST(test_pairs_are_reproducible) {
    mc_rng rng;
    mc_rng_seed(&rng, 5);
    mc_tensor *a = make(MC_SHAPE(4, 3, 16, 16), NULL), *b;
    mc_tensor_uniform(a, &rng, 0.0f, 1.0f);
    MC_CHECK_OK(mc_tensor_clone(&b, a, "b"));
    mc_tensor *a1, *b1, *a2, *b2, *a3, *b3, *a4, *b4;
    pair_from_seed(11, true, a, b, &a1, &b1);
    pair_from_seed(11, true, a, b, &a2, &b2);
    ck_assert(same(a1, a2) && same(b1, b2)); /* same seed, same result */
    ck_assert(same(a1, b1));                 /* shared: identical views stay identical */
    ck_assert(!same(a1, a));                 /* and something happened */
    pair_from_seed(12, true, a, b, &a3, &b3);
    ck_assert(!same(a1, a3)); /* another seed, another augmentation */
    pair_from_seed(11, false, a, b, &a4, &b4);
    ck_assert(!same(a4, b4)); /* independent: the views differ */
    mc_tensor *all[] = {a, b, a1, b1, a2, b2, a3, b3, a4, b4};
    for (int i = 0; i < 10; i++) mc_tensor_free(all[i]);
}
END_TEST

START_TEST(test_sampling) {
    mc_rng r1, r2;
    mc_rng_seed(&r1, 3);
    mc_rng_seed(&r2, 3);
    mc_augment_config off = {.mode = MC_CROP_RESIZE, .crop_min = 1, .crop_max = 1};
    mc_augment_config on = mc_augment_default_config();
    int hflips = 0, turns[4] = {0};
    for (int i = 0; i < 2000; i++) {
        mc_augment_params a, b;
        mc_augment_sample(&r1, &off, &a);
        mc_augment_sample(&r2, &on, &b);
        /* Disabled options give the identity... */
        ck_assert(!a.hflip && !a.vflip && a.rot90 == 0 && a.h == 1.0f && a.y0 == 0.0f);
        /* ...enabled ones stay inside their ranges. */
        ck_assert(b.h >= 0.8f && b.h <= 1.0f && b.h == b.w);
        ck_assert(b.y0 >= 0.0f && b.y0 + b.h <= 1.0f + 1e-6f && b.x0 >= 0.0f && b.x0 + b.w <= 1.0f + 1e-6f);
        hflips += b.hflip;
        turns[b.rot90]++;
    }
    /* Both configs consumed the same draws: the streams are still aligned. */
    ck_assert_uint_eq(mc_rng_u64(&r1), mc_rng_u64(&r2));
    /* Fair coins and a fair four-sided die (binomial sd ~22 and ~19). */
    ck_assert_int_gt(hflips, 880);
    ck_assert_int_lt(hflips, 1120);
    for (int k = 0; k < 4; k++) ck_assert_int_gt(turns[k], 400);
    /* Pad mode: shifts within +-pad, no resize box. */
    mc_augment_config pad = {.mode = MC_CROP_PAD, .pad = 0.25f};
    mc_augment_params p;
    mc_augment_sample(&r1, &pad, &p);
    ck_assert(p.mode == MC_CROP_PAD && p.y0 >= -0.25f && p.y0 <= 0.25f && p.h == 1.0f);
}
END_TEST

START_TEST(test_errors) {
    mc_tensor *wide = make(MC_SHAPE(1, 2, 3), NULL), *sq = make(MC_SHAPE(1, 3, 3), NULL);
    mc_tensor *flat = make(MC_SHAPE(9), NULL), *batch = make(MC_SHAPE(2, 1, 3, 3), NULL);
    mc_augment_params p = mc_augment_identity();
    p.rot90 = 1;
    MC_CHECK_FAILS(mc_augment_apply(wide, &p, 1, wide), MC_ERR_SHAPE, "square");
    p = mc_augment_identity();
    p.x0 = 0.6f;
    MC_CHECK_FAILS(mc_augment_apply(sq, &p, 1, sq), MC_ERR_ARG, "inside the image");
    p = mc_augment_identity();
    p.rot90 = 5;
    MC_CHECK_FAILS(mc_augment_apply(sq, &p, 1, sq), MC_ERR_ARG, "rot90");
    p = mc_augment_identity();
    MC_CHECK_FAILS(mc_augment_apply(sq, &p, 1, wide), MC_ERR_SHAPE, "shape of x");
    MC_CHECK_FAILS(mc_augment_apply(flat, &p, 1, flat), MC_ERR_SHAPE, "(C, H, W)");
    mc_augment_params three[3] = {p, p, p};
    MC_CHECK_FAILS(mc_augment_apply(batch, three, 3, batch), MC_ERR_ARG, "expected 1 or 2");
    mc_rng rng;
    mc_rng_seed(&rng, 1);
    mc_augment_config config = mc_augment_default_config();
    MC_CHECK_FAILS(mc_augment_pair(&rng, &config, true, batch, batch, sq, sq), MC_ERR_SHAPE, "different numbers");
    mc_tensor_free(wide);
    mc_tensor_free(sq);
    mc_tensor_free(flat);
    mc_tensor_free(batch);
}
END_TEST

int main(void) {
    Suite *s = suite_create("augment");
    const TTest *const tests[] = {test_flips, test_quarter_turns, test_channels_move_together,
                                  test_crop_resize_bilinear, test_crop_pad_shift,
                                  test_batch_params_and_in_place,
                                  test_shared_box_cuts_the_same_ground, test_pairs_are_reproducible,
                                  test_sampling, test_errors, NULL};
    mc_test_add_case(s, "augment", tests);
    return mc_test_run_suite(s);
}

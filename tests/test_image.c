/* RGB images: PNG/JPEG files, bicubic resize against PyTorch, centre crop,
 * CLIP preprocessing, folders of class folders, corrupt files.
 * Expected values come from tests/golden/gen_image.py (PyTorch / PIL) or
 * from hand derivations in the comments. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* ---- helpers ---- */

static mc_safetensors *open_fixture(const char *name) {
    char path[1024];
    mc_safetensors *f = NULL;
    MC_CHECK_OK(mc_safetensors_open(mc_test_fixture_path(name, path, sizeof path), &f));
    return f;
}

static mc_tensor *fixture_tensor(mc_safetensors *f, const char *name) {
    mc_tensor *t = NULL;
    MC_CHECK_OK(mc_safetensors_read(f, name, &t));
    return t;
}

static void assert_tensors_close(const char *what, const mc_tensor *actual, const mc_tensor *expected,
                                 double atol) {
    char a[128], b[128];
    ck_assert_msg(mc_shape_equal(actual->shape, expected->shape), "%s: shape %s, expected %s", what,
                  mc_shape_str(actual->shape, a, sizeof a), mc_shape_str(expected->shape, b, sizeof b));
    /* atol 0 asks for equality up to float rounding of the stored values. */
    mc_test_assert_close(what, actual->data, expected->data, (long)actual->numel, 1e-5,
                         atol > 0 ? atol : 1e-9);
}

/* The first `keep` bytes of src, written to dst (a truncated copy). */
static void copy_truncated(const char *src, const char *dst, long keep, long flip_at) {
    FILE *f = fopen(src, "rb");
    ck_assert_ptr_nonnull(f);
    unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert((long)n > keep);
    if (flip_at >= 0) buf[flip_at] ^= 0x5a;
    mc_test_write_file(dst, buf, (size_t)keep);
}

/* ---- PNG ---- */

/* Write then read every channel count at 8 and 16 bits: the values are
 * exact multiples of 1/255 (1/65535), so the round trip must be exact. */
START_TEST(test_png_round_trips) {
    char path[1024];
    mc_test_dir_path("x.png", path, sizeof path);
    mc_rng rng;
    mc_rng_seed(&rng, 7);
    for (int depth = 8; depth <= 16; depth += 8)
        for (int c = 1; c <= 4; c++) {
            double max_value = depth == 8 ? 255.0 : 65535.0;
            mc_tensor *image, *back = NULL;
            MC_CHECK_OK(mc_tensor_new(&image, MC_SHAPE(c, 5, 7), "image"));
            for (int64_t i = 0; i < image->numel; i++)
                image->data[i] = (float)(mc_rng_below(&rng, (uint64_t)max_value + 1) / max_value);
            image->data[0] = 0.0f, image->data[1] = 1.0f; /* the extremes */
            MC_CHECK_OK(mc_png_write(path, image, depth));
            int read_depth = 0;
            MC_CHECK_OK(mc_png_read(path, &back, &read_depth));
            ck_assert_int_eq(read_depth, depth);
            char what[64];
            snprintf(what, sizeof what, "png %d-bit, %d channels", depth, c);
            assert_tensors_close(what, back, image, 0.0);
            mc_tensor_free(image);
            mc_tensor_free(back);
        }
}
END_TEST

/* Out-of-range values are clamped, not wrapped: -0.5 -> 0, 7 -> 255. */
START_TEST(test_png_write_clamps) {
    char path[1024];
    mc_test_dir_path("c.png", path, sizeof path);
    mc_tensor *image, *back;
    MC_CHECK_OK(mc_tensor_new(&image, MC_SHAPE(1, 1, 3), "image"));
    float values[3] = {-0.5f, 7.0f, 0.5f};
    MC_CHECK_OK(mc_tensor_load(image, values, 3));
    MC_CHECK_OK(mc_png_write(path, image, 8));
    MC_CHECK_OK(mc_png_read(path, &back, NULL));
    ck_assert_float_eq(back->data[0], 0.0f);
    ck_assert_float_eq(back->data[1], 1.0f);
    ck_assert_float_eq(back->data[2], 128.0f / 255.0f); /* 0.5 * 255 + 0.5 = 128 */
    mc_tensor_free(image);
    mc_tensor_free(back);
}
END_TEST

START_TEST(test_png_files_written_by_pil) {
    mc_safetensors *expected = open_fixture("image_files.safetensors");
    const char *cases[][2] = {{"image_rgb8.png", "png.rgb8"},
                              {"image_gray16.png", "png.gray16"},
                              {"image_la8.png", "png.la8"},
                              {"image_rgba8.png", "png.rgba8"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[1024];
        mc_tensor *image = NULL;
        MC_CHECK_OK(mc_png_read(mc_test_fixture_path(cases[i][0], path, sizeof path), &image, NULL));
        mc_tensor *want = fixture_tensor(expected, cases[i][1]);
        assert_tensors_close(cases[i][0], image, want, 1e-7);
        mc_tensor_free(image);
        mc_tensor_free(want);
    }
    mc_safetensors_close(expected);
}
END_TEST

START_TEST(test_png_bad_files) {
    char path[1024], good[1024];
    mc_tensor *image = NULL;
    mc_test_fixture_path("image_rgb8.png", good, sizeof good);
    /* Truncated inside the image data. */
    mc_test_dir_path("truncated.png", path, sizeof path);
    copy_truncated(good, path, 60, -1);
    MC_CHECK_FAILS(mc_png_read(path, &image, NULL), MC_ERR_FORMAT, "truncated.png: corrupt PNG");
    ck_assert_ptr_null(image);
    /* A flipped byte in the IHDR chunk: its CRC no longer matches. */
    mc_test_dir_path("crc.png", path, sizeof path);
    FILE *f = fopen(good, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    copy_truncated(good, path, size - 1, 18);
    MC_CHECK_FAILS(mc_png_read(path, &image, NULL), MC_ERR_FORMAT, "crc.png: corrupt PNG");
    /* Not a PNG at all. */
    mc_test_dir_path("text.png", path, sizeof path);
    mc_test_write_file(path, "hello, world", 12);
    MC_CHECK_FAILS(mc_png_read(path, &image, NULL), MC_ERR_FORMAT, "text.png: not a PNG");
    MC_CHECK_FAILS(mc_image_read(path, &image), MC_ERR_FORMAT, "neither a PNG nor a JPEG");
    /* Missing. */
    mc_test_dir_path("missing.png", path, sizeof path);
    MC_CHECK_FAILS(mc_png_read(path, &image, NULL), MC_ERR_IO, "missing.png: cannot open");
    /* Bad arguments to the writer. */
    mc_tensor *five;
    MC_CHECK_OK(mc_tensor_new(&five, MC_SHAPE(5, 2, 2), "five"));
    MC_CHECK_FAILS(mc_png_write(path, five, 8), MC_ERR_SHAPE, "C in 1..4");
    MC_CHECK_OK(mc_tensor_reshape_inplace(five, MC_SHAPE(1, 4, 5)));
    MC_CHECK_FAILS(mc_png_write(path, five, 12), MC_ERR_ARG, "bit depth 12");
    mc_tensor_free(five);
}
END_TEST

/* ---- JPEG ---- */

START_TEST(test_jpeg_matches_pil) {
    mc_safetensors *expected = open_fixture("image_files.safetensors");
    const char *cases[][2] = {{"image_photo.jpg", "jpeg.photo"}, {"image_photo_gray.jpg", "jpeg.photo_gray"}};
    for (int i = 0; i < 2; i++) {
        char path[1024];
        mc_tensor *image = NULL;
        MC_CHECK_OK(mc_jpeg_read(mc_test_fixture_path(cases[i][0], path, sizeof path), &image));
        mc_tensor *want = fixture_tensor(expected, cases[i][1]);
        /* Same libjpeg(-turbo) decoder as PIL here; another libjpeg build
         * may round an IDCT differently by one level. */
        assert_tensors_close(cases[i][0], image, want, 1.01 / 255.0);
        mc_tensor *via_dispatch = NULL;
        MC_CHECK_OK(mc_image_read(path, &via_dispatch));
        assert_tensors_close("mc_image_read", via_dispatch, image, 0.0);
        mc_tensor_free(via_dispatch);
        mc_tensor_free(image);
        mc_tensor_free(want);
    }
    mc_safetensors_close(expected);
}
END_TEST

START_TEST(test_jpeg_bad_files) {
    char path[1024], good[1024];
    mc_test_fixture_path("image_photo.jpg", good, sizeof good);
    mc_tensor *image = NULL;
    /* Cut off in the middle of the entropy-coded data. */
    mc_test_dir_path("cut.jpg", path, sizeof path);
    copy_truncated(good, path, 400, -1);
    MC_CHECK_FAILS(mc_jpeg_read(path, &image), MC_ERR_FORMAT, "cut.jpg: corrupt or unsupported JPEG");
    ck_assert_ptr_null(image);
    /* Cut off inside the header. */
    mc_test_dir_path("header.jpg", path, sizeof path);
    copy_truncated(good, path, 40, -1);
    MC_CHECK_FAILS(mc_jpeg_read(path, &image), MC_ERR_FORMAT, "header.jpg: corrupt");
    /* Not a JPEG. */
    mc_test_dir_path("text.jpg", path, sizeof path);
    mc_test_write_file(path, "GIF89a not a jpeg at all", 24);
    MC_CHECK_FAILS(mc_jpeg_read(path, &image), MC_ERR_FORMAT, "text.jpg");
}
END_TEST

/* ---- resize ---- */

static void check_resize_case(mc_safetensors *f, const char *input_name, const char *expected_name,
                              bool antialias) {
    mc_tensor *input = fixture_tensor(f, input_name), *want = fixture_tensor(f, expected_name);
    int h = (int)want->shape.dim[2], w = (int)want->shape.dim[3];
    mc_tensor *fast = NULL, *naive = NULL;
    MC_CHECK_OK(mc_image_resize(input, h, w, antialias, &fast));
    MC_CHECK_OK(mc_image_resize_naive(input, h, w, antialias, &naive));
    char what[128];
    snprintf(what, sizeof what, "%s (fast)", expected_name);
    assert_tensors_close(what, fast, want, 2e-6);
    snprintf(what, sizeof what, "%s (naive)", expected_name);
    assert_tensors_close(what, naive, want, 2e-6);
    mc_tensor_free(input), mc_tensor_free(want), mc_tensor_free(fast), mc_tensor_free(naive);
}

START_TEST(test_resize_matches_pytorch) {
    mc_safetensors *f = open_fixture("image_resize.safetensors");
    const char *sizes[] = {"31x29", "5x7", "13x6", "9x40"};
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "plain.%s", sizes[i]);
        check_resize_case(f, "input", name, false);
        snprintf(name, sizeof name, "aa.%s", sizes[i]);
        check_resize_case(f, "input", name, true);
    }
    check_resize_case(f, "small", "plain.small.56", false);
    check_resize_case(f, "small", "aa.small.56", true);
    mc_safetensors_close(f);
}
END_TEST

/* Same size, antialias off: t = 0, so the weights are cubic(1), cubic(0),
 * cubic(1), cubic(2) = 0, 1, 0, 0 — the identity. A (C, H, W) image keeps
 * its rank. */
START_TEST(test_resize_same_size_is_identity) {
    mc_tensor *image, *out = NULL;
    MC_CHECK_OK(mc_tensor_new(&image, MC_SHAPE(2, 4, 3), "image"));
    for (int i = 0; i < 24; i++) image->data[i] = (float)(i * i % 7);
    MC_CHECK_OK(mc_image_resize(image, 4, 3, false, &out));
    ck_assert_int_eq(out->shape.ndim, 3);
    assert_tensors_close("identity", out, image, 0.0);
    mc_tensor_free(out);
    /* A constant image stays constant under both kernels (weights sum to 1). */
    mc_tensor_fill(image, 0.25f);
    for (int aa = 0; aa <= 1; aa++) {
        MC_CHECK_OK(mc_image_resize(image, 9, 2, aa, &out));
        for (int64_t i = 0; i < out->numel; i++) ck_assert_float_eq_tol(out->data[i], 0.25f, 1e-6f);
        mc_tensor_free(out);
    }
    MC_CHECK_FAILS(mc_image_resize(image, 0, 3, false, &out), MC_ERR_ARG, "output size 0x3");
    mc_tensor_free(image);
}
END_TEST

/* The fast separable kernel against the naive 2-D one on a larger random
 * batch, like the 64 -> 224 CLIP resize, and a strong shrink. */
START_TEST(test_resize_fast_matches_naive) {
    mc_tensor *image;
    MC_CHECK_OK(mc_tensor_new(&image, MC_SHAPE(2, 3, 64, 48), "image"));
    mc_rng rng;
    mc_rng_seed(&rng, 3);
    mc_tensor_uniform(image, &rng, 0.0f, 1.0f);
    int sizes[][2] = {{224, 224}, {11, 5}};
    for (int s = 0; s < 2; s++)
        for (int aa = 0; aa <= 1; aa++) {
            mc_tensor *fast, *naive;
            MC_CHECK_OK(mc_image_resize(image, sizes[s][0], sizes[s][1], aa, &fast));
            MC_CHECK_OK(mc_image_resize_naive(image, sizes[s][0], sizes[s][1], aa, &naive));
            assert_tensors_close("fast vs naive", fast, naive, 2e-6);
            mc_tensor_free(fast), mc_tensor_free(naive);
        }
    mc_tensor_free(image);
}
END_TEST

/* ---- crop and CLIP ---- */

/* torchvision's CenterCrop offset is round((H - h) / 2) with Python's
 * round-half-to-even: 5 -> 3 starts at 1; 6 -> 3 at round(1.5) = 2;
 * 5 -> 4 at round(0.5) = 0. */
START_TEST(test_center_crop_offsets) {
    mc_tensor *image, *out;
    MC_CHECK_OK(mc_tensor_new(&image, MC_SHAPE(1, 5, 6), "image"));
    for (int i = 0; i < 30; i++) image->data[i] = (float)i; /* value = 6 * y + x */
    MC_CHECK_OK(mc_image_center_crop(image, 3, 3, &out));
    ck_assert_float_eq(out->data[0], 6.0f * 1 + 2); /* top 1, left round(1.5) = 2 */
    ck_assert_float_eq(out->data[8], 6.0f * 3 + 4);
    mc_tensor_free(out);
    MC_CHECK_OK(mc_image_center_crop(image, 4, 5, &out));
    ck_assert_float_eq(out->data[0], 0.0f); /* top round(0.5) = 0, left round(0.5) = 0 */
    mc_tensor_free(out);
    MC_CHECK_FAILS(mc_image_center_crop(image, 6, 2, &out), MC_ERR_SHAPE, "does not fit");
    mc_tensor_free(image);
}
END_TEST

START_TEST(test_clip_preprocess_matches_torchvision) {
    mc_safetensors *f = open_fixture("image_resize.safetensors");
    mc_tensor *input = fixture_tensor(f, "clip.input"), *want = fixture_tensor(f, "clip.output");
    mc_tensor *out = NULL;
    MC_CHECK_OK(mc_clip_preprocess(input, 16, true, &out));
    /* torchvision returns (3, 16, 16) per image; ours is a batch (1, 3, 16, 16). */
    MC_CHECK_OK(mc_tensor_reshape_inplace(want, out->shape));
    assert_tensors_close("clip preprocess", out, want, 1e-5);
    mc_tensor_free(out);
    /* A (3, H, W) image gives (1, 3, S, S); the constants are CLIP's. */
    mc_tensor *single;
    MC_CHECK_OK(mc_tensor_new(&single, MC_SHAPE(3, 10, 20), "single"));
    mc_tensor_fill(single, 0.5f);
    MC_CHECK_OK(mc_clip_preprocess(single, 8, true, &out));
    ck_assert_int_eq(out->shape.ndim, 4);
    ck_assert_int_eq(out->shape.dim[3], 8);
    ck_assert_float_eq_tol(out->data[0], (0.5f - 0.48145466f) / 0.26862954f, 1e-5f);
    ck_assert_float_eq_tol(out->data[out->numel - 1], (0.5f - 0.40821073f) / 0.27577711f, 1e-5f);
    mc_tensor_free(out);
    mc_tensor *gray;
    MC_CHECK_OK(mc_tensor_new(&gray, MC_SHAPE(1, 10, 20), "gray"));
    MC_CHECK_FAILS(mc_clip_preprocess(gray, 8, true, &out), MC_ERR_SHAPE, "gray (1, 10, 20)");
    mc_tensor_free(gray), mc_tensor_free(single), mc_tensor_free(input), mc_tensor_free(want);
    mc_safetensors_close(f);
}
END_TEST

/* The arena paths the trainer takes every step give the heap paths' results
 * bit for bit: mc_image_resize_into with a caller's scratch, and
 * mc_clip_preprocess_on for square tiles (resized straight into the result)
 * and other shapes (through the heap path). */
START_TEST(test_resize_into_and_preprocess_on_match) {
    mc_rng rng;
    mc_rng_seed(&rng, 5);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    const int shapes[][2] = {{64, 64}, {20, 30}, {31, 17}};
    for (int s = 0; s < 3; s++) {
        mc_tensor *image, *heap, *into, *pixels, *want;
        MC_CHECK_OK(mc_tensor_new(&image, MC_SHAPE(2, 3, shapes[s][0], shapes[s][1]), "image"));
        mc_tensor_uniform(image, &rng, 0.0f, 1.0f);
        for (int aa = 0; aa <= 1; aa++) {
            MC_CHECK_OK(mc_image_resize(image, 40, 24, aa, &heap));
            MC_CHECK_OK(mc_tensor_new(&into, heap->shape, "into"));
            float *scratch = malloc(sizeof(float) * (size_t)mc_image_resize_scratch_floats(image, 24));
            ck_assert_ptr_nonnull(scratch);
            MC_CHECK_OK(mc_image_resize_into(image, aa, scratch, into));
            ck_assert_int_eq(memcmp(heap->data, into->data, (size_t)heap->numel * sizeof(float)), 0);
            free(scratch);
            mc_tensor_free(heap), mc_tensor_free(into);
            MC_CHECK_OK(mc_clip_preprocess(image, 32, aa, &want));
            MC_CHECK_OK(mc_clip_preprocess_on(g, image, 32, aa, &pixels));
            ck_assert(mc_shape_equal(pixels->shape, want->shape));
            ck_assert_int_eq(memcmp(pixels->data, want->data, (size_t)want->numel * sizeof(float)), 0);
            mc_tensor_free(want);
            mc_graph_reset(g);
        }
        mc_tensor_free(image);
    }
    mc_tensor *image, *wrong;
    float scratch[8];
    MC_CHECK_OK(mc_tensor_new(&image, MC_SHAPE(3, 4, 4), "image"));
    MC_CHECK_OK(mc_tensor_new(&wrong, MC_SHAPE(2, 2, 2), "wrong"));
    MC_CHECK_FAILS(mc_image_resize_into(image, true, scratch, wrong), MC_ERR_SHAPE, "only H and W may differ");
    mc_tensor *none = NULL;
    MC_CHECK_FAILS(mc_clip_preprocess_on(g, image, 8, true, &none), MC_ERR_SHAPE, "must be (N, 3, H, W)");
    mc_tensor_free(image), mc_tensor_free(wrong);
    mc_graph_free(g);
}
END_TEST

/* ---- folders ---- */

static void write_png(const char *path, int c, int h, int w, float value) {
    mc_tensor *image;
    MC_CHECK_OK(mc_tensor_new(&image, MC_SHAPE(c, h, w), "image"));
    mc_tensor_fill(image, value);
    MC_CHECK_OK(mc_png_write(path, image, 8));
    mc_tensor_free(image);
}

START_TEST(test_image_folder) {
    char path[1024];
    const char *classes[] = {"River", "Forest"}; /* listed out of order on purpose */
    for (int c = 0; c < 2; c++) {
        mc_test_dir_path(classes[c], path, sizeof path);
        ck_assert_int_eq(mkdir(path, 0755), 0);
    }
    mc_test_dir_path("Forest/b.png", path, sizeof path);
    write_png(path, 3, 8, 8, 0.2f);
    mc_test_dir_path("Forest/a.PNG", path, sizeof path);
    write_png(path, 1, 4, 4, 0.6f); /* grey, smaller: repeated to RGB and resized */
    mc_test_dir_path("Forest/notes.txt", path, sizeof path);
    mc_test_write_file(path, "x", 1);
    char jpeg[1024];
    mc_test_fixture_path("image_photo.jpg", jpeg, sizeof jpeg);
    mc_test_dir_path("River/photo.jpg", path, sizeof path);
    ck_assert_int_eq(symlink(jpeg, path), 0);
    mc_image_folder folder;
    MC_CHECK_OK(mc_image_folder_open(mc_test_dir, &folder));
    ck_assert_int_eq(folder.num_classes, 2);
    ck_assert_str_eq(folder.class_names[0], "Forest");
    ck_assert_str_eq(folder.class_names[1], "River");
    ck_assert_int_eq(folder.count, 3);
    ck_assert(strstr(folder.paths[0], "Forest/a.PNG") != NULL); /* 'a' < 'b' */
    ck_assert_int_eq(folder.labels[2], 1);
    mc_tensor *batch;
    MC_CHECK_OK(mc_tensor_new(&batch, MC_SHAPE(2, 3, 8, 8), "batch"));
    int indices[2] = {0, 1};
    MC_CHECK_OK(mc_image_folder_load(&folder, indices, 2, true, batch));
    ck_assert_float_eq_tol(batch->data[0], 153.0f / 255.0f, 1e-6f);        /* grey 0.6 -> 153 */
    ck_assert_float_eq_tol(batch->data[2 * 64 + 63], 153.0f / 255.0f, 1e-6f); /* its blue plane */
    ck_assert_float_eq_tol(batch->data[3 * 64], 51.0f / 255.0f, 1e-6f);     /* b.png: 0.2 -> 51 */
    int bad[1] = {3};
    MC_CHECK_FAILS(mc_image_folder_load(&folder, bad, 1, true, batch), MC_ERR_ARG, "index 3");
    mc_tensor_free(batch);
    mc_image_folder_free(&folder);
    /* An empty class folder. */
    mc_test_dir_path("Empty", path, sizeof path);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    MC_CHECK_FAILS(mc_image_folder_open(mc_test_dir, &folder), MC_ERR_FORMAT, "Empty: class folder holds no files");
    /* No class folders. */
    MC_CHECK_FAILS(mc_image_folder_open(path, &folder), MC_ERR_FORMAT, "no class folders");
}
END_TEST

int main(void) {
    Suite *s = suite_create("image");
    const TTest *const files[] = {test_png_round_trips, test_png_write_clamps,
                                  test_png_files_written_by_pil, test_png_bad_files,
                                  test_jpeg_matches_pil, test_jpeg_bad_files, test_image_folder,
                                  NULL};
    mc_test_use_temp_dir(mc_test_add_case(s, "files", files));
    const TTest *const geometry[] = {test_resize_matches_pytorch, test_resize_same_size_is_identity,
                                     test_resize_fast_matches_naive, test_center_crop_offsets,
                                     test_clip_preprocess_matches_torchvision,
                                     test_resize_into_and_preprocess_on_match, NULL};
    mc_test_add_case(s, "geometry", geometry);
    return mc_test_run_suite(s);
}

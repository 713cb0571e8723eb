/* `mmchain embed --model clip-vision|clip-text` on the committed tiny CLIP
 * (tests/golden/fixtures/clip_tiny.*, written by tests/golden/gen_clip.py
 * with PyTorch): the CLI's outputs against PyTorch's image_embeds and
 * text_embeds, int32 and int64 ids, more rows than one batch, the --text
 * and --image conveniences, and the errors that need a crafted file (the
 * argument errors are in script_cli_embed_clip.sh). */
#include "cli_embed_clip.h"

/* The fixture: 4 images (4, 3, 32, 32), 4 id rows (4, 77), vocabulary 600,
 * embeddings of width 48. */
#define FIXTURE_ROWS 4
#define CONTEXT 77
#define VOCAB 600

static char model_path[1024], io_path[1024];

/* The fixture's int64 ids (FIXTURE_ROWS, CONTEXT); free() them. */
static int64_t *fixture_ids(void) {
    mc_safetensors *io;
    MC_CHECK_OK(mc_safetensors_open(io_path, &io));
    int64_t *ids;
    mc_shape shape;
    MC_CHECK_OK(mc_safetensors_read_ints(io, "input_ids", &ids, &shape));
    ck_assert_int_eq(shape.dim[0], FIXTURE_ROWS);
    ck_assert_int_eq(shape.dim[1], CONTEXT);
    mc_safetensors_close(io);
    return ids;
}

/* Run `embed --model MODEL --weights MODEL_PATH --input IN --output OUT`
 * and return the output; the run must succeed. */
static mc_tensor *embed_file(const char *model, const char *weights, const char *in) {
    const char *out = embed_test_path("out.safetensors");
    int code = run_embed("--model %s --weights '%s' --input '%s' --output '%s'", model, weights, in, out);
    ck_assert_msg(code == 0, "embed --model %s --input %s failed: %s", model, in, embed_stderr());
    return read_tensor(out, "output");
}

START_TEST(test_vision_matches_pytorch) {
    mc_tensor *pixels = read_tensor(io_path, "pixel_values");
    mc_tensor *expected = read_tensor(io_path, "image_embeds");
    const char *in = embed_test_path("pixels.safetensors");
    write_float_input(in, pixels);
    mc_tensor *output = embed_file("clip-vision", model_path, in);
    assert_embeddings_close("clip-vision output", output, expected, 1e-4);
    mc_tensor_free(output);
    mc_tensor_free(expected);
    mc_tensor_free(pixels);
}
END_TEST

/* Token ids as int64 (the Hugging Face dtype) and as int32. */
START_TEST(test_text_matches_pytorch) {
    int64_t *ids = fixture_ids();
    mc_tensor *expected = read_tensor(io_path, "text_embeds");
    for (int as_int32 = 0; as_int32 < 2; as_int32++) {
        const char *in = embed_test_path("ids.safetensors");
        write_ids_input(in, as_int32, FIXTURE_ROWS, CONTEXT, ids);
        mc_tensor *output = embed_file("clip-text", model_path, in);
        assert_embeddings_close(as_int32 ? "clip-text output (I32 ids)" : "clip-text output (I64 ids)", output,
                                expected, 1e-4);
        mc_tensor_free(output);
    }
    mc_tensor_free(expected);
    free(ids);
}
END_TEST

/* More rows than one forward pass holds (the CLI runs 32 at a time): 40
 * rows, row r a copy of fixture row pick(r), must give the fixture's
 * embeddings in the same order. The order is irregular so that a batch
 * reading the wrong rows cannot come out right by periodicity. */
enum { MANY_ROWS = 40 };
static int pick(int r) { return (r * 7 + r / 3) % FIXTURE_ROWS; }

/* Rows of t (FIXTURE_ROWS, ...) picked into a new (MANY_ROWS, ...) tensor. */
static mc_tensor *picked_rows(const mc_tensor *t, const char *name) {
    mc_shape shape = t->shape;
    shape.dim[0] = MANY_ROWS;
    int64_t row = t->numel / FIXTURE_ROWS;
    mc_tensor *out;
    MC_CHECK_OK(mc_tensor_new(&out, shape, name));
    for (int r = 0; r < MANY_ROWS; r++)
        memcpy(out->data + r * row, t->data + pick(r) * row, (size_t)row * sizeof(float));
    return out;
}

START_TEST(test_more_rows_than_one_batch) {
    int64_t *ids = fixture_ids();
    int64_t many_ids[MANY_ROWS * CONTEXT];
    for (int r = 0; r < MANY_ROWS; r++)
        memcpy(many_ids + r * CONTEXT, ids + pick(r) * CONTEXT, sizeof *ids * CONTEXT);
    const char *in = embed_test_path("many_ids.safetensors");
    write_ids_input(in, false, MANY_ROWS, CONTEXT, many_ids);
    mc_tensor *text_ref = read_tensor(io_path, "text_embeds");
    mc_tensor *text_expected = picked_rows(text_ref, "text_expected");
    mc_tensor *text = embed_file("clip-text", model_path, in);
    assert_embeddings_close("40 text rows", text, text_expected, 1e-4);

    mc_tensor *pixels = read_tensor(io_path, "pixel_values");
    mc_tensor *many_pixels = picked_rows(pixels, "input");
    in = embed_test_path("many_pixels.safetensors");
    write_float_input(in, many_pixels);
    mc_tensor *image_ref = read_tensor(io_path, "image_embeds");
    mc_tensor *image_expected = picked_rows(image_ref, "image_expected");
    mc_tensor *image = embed_file("clip-vision", model_path, in);
    assert_embeddings_close("40 image rows", image, image_expected, 1e-4);

    mc_tensor *frees[] = {text_ref, text_expected, text, pixels, many_pixels, image_ref, image_expected, image};
    for (size_t i = 0; i < sizeof frees / sizeof frees[0]; i++) mc_tensor_free(frees[i]);
    free(ids);
}
END_TEST

/* A tokenizer whose vocabulary fits the fixture's text tower (600 = 512
 * byte tokens + 86 merges + sot + eot): the merges "a a", "a b", ...,
 * "d h" of two letters. Saved as DIR/vocab/merges.txt (+ vocab.json). */
static mc_tokenizer *fixture_tokenizer(const char **vocab_path) {
    char merges[86][4];
    const char *merge_list[86];
    for (int i = 0; i < 86; i++) {
        snprintf(merges[i], sizeof merges[i], "%c %c", 'a' + i / 26, 'a' + i % 26);
        merge_list[i] = merges[i];
    }
    mc_tokenizer *tok;
    MC_CHECK_OK(mc_tokenizer_from_merges(merge_list, 86, &tok));
    ck_assert_int_eq(mc_tokenizer_vocab_size(tok), VOCAB);
    const char *folder = embed_test_path("vocab");
    char command[1100];
    snprintf(command, sizeof command, "mkdir -p '%s'", folder);
    ck_assert_int_eq(system(command), 0);
    MC_CHECK_OK(mc_tokenizer_save(tok, folder));
    *vocab_path = embed_test_path("vocab/merges.txt");
    return tok;
}

/* The text tower on `texts` tokenized by the library (mc_tokenizer is
 * tested against CLIP's own tokenizer in test_tokenizer*), through --input. */
static mc_tensor *embed_tokenized(mc_tokenizer *tok, const char *const *texts, int n, bool truncate) {
    int32_t ids[8 * CONTEXT];
    int64_t wide[8 * CONTEXT];
    ck_assert_int_le(n, 8);
    MC_CHECK_OK(mc_tokenizer_tokenize_batch(tok, texts, n, CONTEXT, truncate, ids));
    for (int i = 0; i < n * CONTEXT; i++) wide[i] = ids[i];
    const char *in = embed_test_path("tokenized.safetensors");
    write_ids_input(in, true, n, CONTEXT, wide);
    return embed_file("clip-text", model_path, in);
}

START_TEST(test_text_option_matches_ids) {
    const char *vocab;
    mc_tokenizer *tok = fixture_tokenizer(&vocab);
    const char *texts[] = {"a photo of a fox", "", "Hello World!", "-starts with a dash"};
    mc_tensor *expected = embed_tokenized(tok, texts, 4, false);
    const char *out = embed_test_path("texts.safetensors");
    int code = run_embed("--model clip-text --weights '%s' --vocab '%s' --text '%s' --text '%s' --text '%s' "
                         "--text '%s' --output '%s'",
                         model_path, vocab, texts[0], texts[1], texts[2], texts[3], out);
    ck_assert_msg(code == 0, "embed --text failed: %s", embed_stderr());
    assert_output_close("--text output", out, expected, 1e-6);
    mc_tensor_free(expected);
    mc_tokenizer_free(tok);
}
END_TEST

/* 30 words of "fox " are 30 byte-level words of 3-4 tokens: far beyond 77. */
START_TEST(test_too_long_text) {
    const char *vocab;
    mc_tokenizer *tok = fixture_tokenizer(&vocab);
    char long_text[200] = "";
    for (int i = 0; i < 30; i++) strcat(long_text, "fox ");
    const char *out = embed_test_path("long.safetensors");
    int code = run_embed("--model clip-text --weights '%s' --vocab '%s' --text 'short' --text '%s' --output '%s'",
                         model_path, vocab, long_text, out);
    assert_embed_error(code, "too long");
    ck_assert_msg(strstr(embed_stderr(), "--truncate") != NULL, "the error does not suggest --truncate");
    ck_assert_msg(!mc_test_file_exists(out), "a failed run wrote %s", out);

    code = run_embed("--model clip-text --weights '%s' --vocab '%s' --truncate --text 'short' --text '%s' "
                     "--output '%s'", model_path, vocab, long_text, out);
    ck_assert_msg(code == 0, "embed --truncate failed: %s", embed_stderr());
    const char *texts[] = {"short", long_text};
    mc_tensor *expected = embed_tokenized(tok, texts, 2, true);
    assert_output_close("--truncate output", out, expected, 1e-6);
    mc_tensor_free(expected);
    mc_tokenizer_free(tok);
}
END_TEST

/* --image FILE: decoded, made RGB (grey repeated, alpha dropped, as PIL's
 * convert("RGB")), CLIP-preprocessed. The reference decodes come from PIL
 * (image_files.safetensors, tests/golden/gen_image.py); the preprocessing
 * of those is mc_clip_preprocess (tested against torchvision in
 * test_image); they go in through --input. */
static void pil_rgb(mc_safetensors *decoded, const char *name, mc_tensor *batch, int row) {
    mc_tensor *image;
    MC_CHECK_OK(mc_safetensors_read(decoded, name, &image));
    int64_t channels = image->shape.dim[0], h = image->shape.dim[1], w = image->shape.dim[2];
    mc_tensor *rgb, *pixels;
    MC_CHECK_OK(mc_tensor_new(&rgb, MC_SHAPE(3, h, w), "rgb"));
    for (int c = 0; c < 3; c++)
        memcpy(rgb->data + c * h * w, image->data + (channels < 3 ? 0 : c) * h * w, sizeof(float) * (size_t)(h * w));
    MC_CHECK_OK(mc_clip_preprocess(rgb, 32, true, &pixels));
    memcpy(batch->data + (int64_t)row * pixels->numel, pixels->data, sizeof(float) * (size_t)pixels->numel);
    mc_tensor_free(pixels);
    mc_tensor_free(rgb);
    mc_tensor_free(image);
}

START_TEST(test_image_option_matches_pil) {
    const char *files[] = {"image_rgba8.png", "image_photo.jpg", "image_photo_gray.jpg"};
    const char *decodes[] = {"png.rgba8", "jpeg.photo", "jpeg.photo_gray"};
    char paths[3][1024], decoded_path[1024];
    for (int i = 0; i < 3; i++) mc_test_fixture_path(files[i], paths[i], sizeof paths[i]);
    mc_safetensors *decoded;
    MC_CHECK_OK(mc_safetensors_open(mc_test_fixture_path("image_files.safetensors", decoded_path, sizeof decoded_path),
                                    &decoded));
    mc_tensor *batch;
    MC_CHECK_OK(mc_tensor_new(&batch, MC_SHAPE(3, 3, 32, 32), "input"));
    for (int i = 0; i < 3; i++) pil_rgb(decoded, decodes[i], batch, i);
    mc_safetensors_close(decoded);
    const char *in = embed_test_path("pil_pixels.safetensors");
    write_float_input(in, batch);
    mc_tensor *expected = embed_file("clip-vision", model_path, in);

    const char *out = embed_test_path("images.safetensors");
    int code = run_embed("--model clip-vision --weights '%s' --image '%s' --image '%s' --image '%s' --output '%s'",
                         model_path, paths[0], paths[1], paths[2], out);
    ck_assert_msg(code == 0, "embed --image failed: %s", embed_stderr());
    mc_tensor *output = read_tensor(out, "output");
    ck_assert(mc_shape_equal(output->shape, expected->shape));
    /* The PNG decodes exactly. A JPEG decoder may round an IDCT output one
     * level (1/255) differently from PIL's build (test_image): after CLIP's
     * normalisation (/0.27) and the tower that stays well under 2 %. */
    int64_t width = output->shape.dim[1];
    for (int i = 0; i < 3; i++) {
        double error = mc_test_rel_error(output->data + i * width, expected->data + i * width, (long)width);
        double tolerance = i == 0 ? 1e-5 : 2e-2;
        ck_assert_msg(error < tolerance, "--image %s: relative error %.3g (tolerance %.3g)", files[i], error,
                      tolerance);
    }
    mc_tensor_free(output);
    mc_tensor_free(expected);
    mc_tensor_free(batch);
}
END_TEST

/* The fixture model without one tower: only the tensors of the other. */
static const char *one_tower_file(const char *keep_prefix, const char *keep_projection, const char *name) {
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(model_path, &f));
    int n = 0;
    mc_tensor *kept[200];
    for (int i = 0; i < mc_safetensors_count(f); i++) {
        const char *tensor = mc_safetensors_name(f, i);
        bool keep = !strncmp(tensor, keep_prefix, strlen(keep_prefix)) || !strcmp(tensor, keep_projection) ||
                    !strcmp(tensor, "logit_scale");
        if (!keep || strstr(tensor, "position_ids")) continue; /* int buffers: io.h writes floats */
        ck_assert_int_lt(n, 200);
        MC_CHECK_OK(mc_safetensors_read(f, tensor, &kept[n++]));
    }
    mc_safetensors_close(f);
    const char *path = embed_test_path(name);
    MC_CHECK_OK(mc_safetensors_write(path, n, kept, 0, NULL));
    for (int i = 0; i < n; i++) mc_tensor_free(kept[i]);
    return path;
}

START_TEST(test_missing_tower) {
    const char *text_only = one_tower_file("text_model.", "text_projection.weight", "text_only.safetensors");
    const char *vision_only = one_tower_file("vision_model.", "visual_projection.weight", "vision_only.safetensors");
    int64_t *ids = fixture_ids();
    const char *ids_in = embed_test_path("ids.safetensors");
    write_ids_input(ids_in, false, FIXTURE_ROWS, CONTEXT, ids);
    mc_tensor *pixels = read_tensor(io_path, "pixel_values");
    const char *pixels_in = embed_test_path("pixels.safetensors");
    write_float_input(pixels_in, pixels);
    const char *out = embed_test_path("never.safetensors");

    int code = run_embed("--model clip-vision --weights '%s' --input '%s' --output '%s'", text_only, pixels_in, out);
    assert_embed_error(code, "text_only.safetensors has no image tower");
    code = run_embed("--model clip-text --weights '%s' --input '%s' --output '%s'", vision_only, ids_in, out);
    assert_embed_error(code, "vision_only.safetensors has no text tower");
    ck_assert(!mc_test_file_exists(out));
    /* ...while the tower a file has works (and agrees with PyTorch). */
    mc_tensor *expected = read_tensor(io_path, "text_embeds");
    mc_tensor *output = embed_file("clip-text", text_only, ids_in);
    assert_embeddings_close("text-only file", output, expected, 1e-4);
    mc_tensor_free(output);
    mc_tensor_free(expected);
    mc_tensor_free(pixels);
    free(ids);
}
END_TEST

/* Inputs of the wrong dtype, shape or range; a vocabulary of the wrong size. */
START_TEST(test_input_errors) {
    const char *out = embed_test_path("never.safetensors");
    mc_tensor *pixels = read_tensor(io_path, "pixel_values");
    const char *pixels_in = embed_test_path("pixels.safetensors");
    write_float_input(pixels_in, pixels);
    int code = run_embed("--model clip-text --weights '%s' --input '%s' --output '%s'", model_path, pixels_in, out);
    assert_embed_error(code, "tensor 'input' has dtype F32, expected token ids as I32 or I64 (N x 77)");

    int64_t *ids = fixture_ids();
    const char *ids_in = embed_test_path("ids.safetensors");
    write_ids_input(ids_in, false, FIXTURE_ROWS, CONTEXT, ids);
    code = run_embed("--model clip-vision --weights '%s' --input '%s' --output '%s'", model_path, ids_in, out);
    assert_embed_error(code, "I64");

    /* 4 x 154 ids: the context is 77. */
    const char *wide_in = embed_test_path("wide_ids.safetensors");
    write_ids_input(wide_in, true, FIXTURE_ROWS / 2, 2 * CONTEXT, ids);
    code = run_embed("--model clip-text --weights '%s' --input '%s' --output '%s'", model_path, wide_in, out);
    assert_embed_error(code, "tensor 'input' is (2, 154), expected N x 77 token ids");

    /* An id outside the vocabulary (600 tokens). */
    ids[CONTEXT + 5] = VOCAB;
    write_ids_input(ids_in, false, FIXTURE_ROWS, CONTEXT, ids);
    code = run_embed("--model clip-text --weights '%s' --input '%s' --output '%s'", model_path, ids_in, out);
    assert_embed_error(code, "holds id 600 at row 1, column 5: expected 0 <= id < 600");

    /* Pixels of the wrong size: 16 x 16 for a 32 x 32 tower. */
    mc_tensor *small;
    MC_CHECK_OK(mc_tensor_new(&small, MC_SHAPE(2, 3, 16, 16), "input"));
    write_float_input(pixels_in, small);
    code = run_embed("--model clip-vision --weights '%s' --input '%s' --output '%s'", model_path, pixels_in, out);
    assert_embed_error(code, "tensor 'input' is (2, 3, 16, 16), expected N x 3 x 32 x 32");

    /* A vocabulary of 514 tokens (no merges) for a tower of 600. */
    mc_tokenizer *bytes_only;
    MC_CHECK_OK(mc_tokenizer_from_merges(NULL, 0, &bytes_only));
    const char *folder = embed_test_path("bytes_vocab");
    char command[1100];
    snprintf(command, sizeof command, "mkdir -p '%s'", folder);
    ck_assert_int_eq(system(command), 0);
    MC_CHECK_OK(mc_tokenizer_save(bytes_only, folder));
    mc_tokenizer_free(bytes_only);
    code = run_embed("--model clip-text --weights '%s' --vocab '%s' --text 'a fox' --output '%s'", model_path,
                     folder, out);
    assert_embed_error(code, "has 514 tokens, but the text tower");
    ck_assert(!mc_test_file_exists(out));
    mc_tensor_free(small);
    mc_tensor_free(pixels);
    free(ids);
}
END_TEST

static Suite *cli_embed_clip_suite(void) {
    Suite *s = suite_create("cli_embed_clip");
    const TTest *const tests[] = {test_vision_matches_pytorch, test_text_matches_pytorch,
                                  test_more_rows_than_one_batch, test_text_option_matches_ids,
                                  test_too_long_text, test_image_option_matches_pil,
                                  test_missing_tower, test_input_errors, NULL};
    tcase_set_timeout(mc_test_add_case(s, "fixture", tests), 300);
    return s;
}

int main(void) {
    if (!getenv("MMCHAIN_CLI")) return mc_test_skip("MMCHAIN_CLI is not set (the mmchain program is not built)");
    mc_test_fixture_path("clip_tiny.model.safetensors", model_path, sizeof model_path);
    mc_test_fixture_path("clip_tiny.io.safetensors", io_path, sizeof io_path);
    return embed_test_run_suite(cli_embed_clip_suite());
}

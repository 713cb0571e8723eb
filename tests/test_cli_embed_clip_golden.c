/* `mmchain embed --model clip-vision|clip-text` against the independent
 * reference in ../shared/data/clip-golden (outputs of OpenAI's original
 * clip/model.py, see its README): --input pixels, --input int64 ids, and
 * --text with CLIP's real vocabulary (../shared/data/clip-tokenizer) on the
 * prompts the reference ids were made from. Skipped when absent. */
#include "cli_embed_clip.h"

static char tokenizer_path[1024];

/* The prompts of the reference files, in the order of their input_ids
 * rows (tiny-b has one more: the empty text). */
static const char *const PROMPTS[] = {"a centered satellite photo of annual crop land.",
                                      "a centered satellite photo of the river.", "a photo of a fox",
                                      "Hello World!", ""};

/* The reference's metadata lists the same prompts (a JSON list of plain
 * ASCII strings, so no escapes to undo). */
static void assert_prompts_match(const char *io_path, int n_prompts) {
    mc_safetensors *io;
    MC_CHECK_OK(mc_safetensors_open(io_path, &io));
    const char *listed = mc_safetensors_metadata(io, "prompts");
    ck_assert_msg(listed != NULL, "%s has no prompts metadata", io_path);
    char expected[1024] = "[";
    for (int i = 0; i < n_prompts; i++) {
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof expected - used, "%s\"%s\"", i ? ", " : "", PROMPTS[i]);
    }
    strcat(expected, "]");
    ck_assert_str_eq(listed, expected);
    mc_safetensors_close(io);
}

/* One reference model: both towers through --input, the text tower also
 * through --text. */
static void check_reference(const char *model_name, const char *io_name, bool with_texts) {
    char model[1024], io[1024];
    mc_test_shared_path(model_name, model, sizeof model);
    mc_test_shared_path(io_name, io, sizeof io);
    const char *out = embed_test_path("out.safetensors");

    mc_tensor *pixels = read_tensor(io, "pixel_values");
    const char *pixels_in = embed_test_path("pixels.safetensors");
    write_float_input(pixels_in, pixels);
    int code = run_embed("--model clip-vision --weights '%s' --input '%s' --output '%s'", model, pixels_in, out);
    ck_assert_msg(code == 0, "%s: clip-vision failed: %s", model_name, embed_stderr());
    mc_tensor *image = read_tensor(out, "output");
    mc_tensor *image_ref = read_tensor(io, "image_embeds");
    assert_embeddings_close("image_embeds", image, image_ref, 1e-4);

    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(io, &f));
    int64_t *ids;
    mc_shape shape;
    MC_CHECK_OK(mc_safetensors_read_ints(f, "input_ids", &ids, &shape));
    mc_safetensors_close(f);
    const char *ids_in = embed_test_path("ids.safetensors");
    write_ids_input(ids_in, false, shape.dim[0], shape.dim[1], ids);
    code = run_embed("--model clip-text --weights '%s' --input '%s' --output '%s'", model, ids_in, out);
    ck_assert_msg(code == 0, "%s: clip-text failed: %s", model_name, embed_stderr());
    mc_tensor *text = read_tensor(out, "output");
    mc_tensor *text_ref = read_tensor(io, "text_embeds");
    assert_embeddings_close("text_embeds", text, text_ref, 1e-4);

    if (with_texts) {
        int n = (int)shape.dim[0];
        assert_prompts_match(io, n);
        char args[2048] = "";
        for (int i = 0; i < n; i++) {
            size_t used = strlen(args);
            snprintf(args + used, sizeof args - used, " --text '%s'", PROMPTS[i]);
        }
        code = run_embed("--model clip-text --weights '%s' --vocab '%s'%s --output '%s'", model, tokenizer_path,
                         args, out);
        ck_assert_msg(code == 0, "%s: clip-text --text failed: %s", model_name, embed_stderr());
        assert_output_close("text_embeds from --text", out, text_ref, 1e-4);
    }
    free(ids);
    mc_tensor_free(text);
    mc_tensor_free(text_ref);
    mc_tensor_free(image);
    mc_tensor_free(image_ref);
    mc_tensor_free(pixels);
}

START_TEST(test_tiny_a) { check_reference("clip-golden/tiny-a.model.safetensors", "clip-golden/tiny-a.io.safetensors", true); }
END_TEST

START_TEST(test_tiny_b) { check_reference("clip-golden/tiny-b.model.safetensors", "clip-golden/tiny-b.io.safetensors", true); }
END_TEST

/* F16 weights, against the outputs of the F16-rounded model. */
START_TEST(test_tiny_a_f16) {
    check_reference("clip-golden/tiny-a.model-f16.safetensors", "clip-golden/tiny-a.io-f16.safetensors", false);
}
END_TEST

/* A real vocabulary (49,408 tokens) with a text too long for 77. */
START_TEST(test_too_long_with_real_vocabulary) {
    char model[1024], long_text[700] = "";
    mc_test_shared_path("clip-golden/tiny-a.model.safetensors", model, sizeof model);
    for (int i = 0; i < 80; i++) strcat(long_text, "fox ");
    const char *out = embed_test_path("long.safetensors");
    int code = run_embed("--model clip-text --weights '%s' --vocab '%s' --text '%s' --output '%s'", model,
                         tokenizer_path, long_text, out);
    assert_embed_error(code, "is too long for context length 77: 82 tokens");
    code = run_embed("--model clip-text --weights '%s' --vocab '%s' --truncate --text '%s' --output '%s'", model,
                     tokenizer_path, long_text, out);
    ck_assert_msg(code == 0, "--truncate failed: %s", embed_stderr());
}
END_TEST

static Suite *cli_embed_clip_golden_suite(void) {
    Suite *s = suite_create("cli_embed_clip_golden");
    const TTest *const tests[] = {test_tiny_a, test_tiny_b, test_tiny_a_f16,
                                  test_too_long_with_real_vocabulary, NULL};
    tcase_set_timeout(mc_test_add_case(s, "clip-golden", tests), 300);
    return s;
}

int main(void) {
    if (!getenv("MMCHAIN_CLI")) return mc_test_skip("MMCHAIN_CLI is not set (the mmchain program is not built)");
    char probe[1024];
    if (!mc_test_file_exists(mc_test_shared_path("clip-golden/tiny-b.io.safetensors", probe, sizeof probe)))
        return mc_test_skip("../shared/data/clip-golden is absent");
    mc_test_shared_path("clip-tokenizer", tokenizer_path, sizeof tokenizer_path);
    if (!mc_test_file_exists(tokenizer_path)) return mc_test_skip("../shared/data/clip-tokenizer is absent");
    return embed_test_run_suite(cli_embed_clip_golden_suite());
}

/* CLIP towers against the independent reference in ../shared/data/clip-golden:
 * tiny models with random weights whose outputs were computed by OpenAI's
 * original clip/model.py. Skipped when that folder is absent. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Compare our towers with `io` for the model file `model`. */
static void check_model_against_reference(const char *model_name, const char *io_name, double tolerance) {
    char model_path[512], io_path[512];
    mc_test_shared_path(model_name, model_path, sizeof model_path);
    mc_test_shared_path(io_name, io_path, sizeof io_path);
    mc_clip *clip;
    MC_CHECK_OK(mc_clip_load(model_path, &clip));
    mc_safetensors *io;
    MC_CHECK_OK(mc_safetensors_open(io_path, &io));
    mc_tensor *pixels, *image_ref, *text_ref, *logits_ref = NULL;
    MC_CHECK_OK(mc_safetensors_read(io, "pixel_values", &pixels));
    MC_CHECK_OK(mc_safetensors_read(io, "image_embeds", &image_ref));
    MC_CHECK_OK(mc_safetensors_read(io, "text_embeds", &text_ref));
    if (mc_safetensors_has(io, "logits_per_image")) /* the F16 file has no logits */
        MC_CHECK_OK(mc_safetensors_read(io, "logits_per_image", &logits_ref));
    int64_t *ids64;
    mc_shape ids_shape;
    MC_CHECK_OK(mc_safetensors_read_ints(io, "input_ids", &ids64, &ids_shape));
    int n_texts = (int)ids_shape.dim[0];
    ck_assert_int_eq(ids_shape.dim[1], clip->config.text.context);
    int32_t *ids = malloc(sizeof *ids * (size_t)mc_shape_numel(ids_shape));
    for (int64_t i = 0; i < mc_shape_numel(ids_shape); i++) ids[i] = (int32_t)ids64[i];

    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_grad_enabled(g, false);
    mc_tensor *image, *text;
    MC_CHECK_OK(mc_clip_encode_image(clip, g, pixels, &image));
    MC_CHECK_OK(mc_clip_encode_text(clip, g, ids, n_texts, &text));
    ck_assert(mc_shape_equal(image->shape, image_ref->shape));
    ck_assert(mc_shape_equal(text->shape, text_ref->shape));
    double image_error = mc_test_rel_error(image->data, image_ref->data, image->numel);
    double text_error = mc_test_rel_error(text->data, text_ref->data, text->numel);
    ck_assert_msg(image_error < tolerance, "%s image_embeds: relative error %.3g", model_name, image_error);
    ck_assert_msg(text_error < tolerance, "%s text_embeds: relative error %.3g", model_name, text_error);
    /* Element-wise too, so one wrong row cannot hide in the norm. */
    mc_test_assert_close("image_embeds", image->data, image_ref->data, image->numel, 10 * tolerance, 1e-4);
    mc_test_assert_close("text_embeds", text->data, text_ref->data, text->numel, 10 * tolerance, 1e-4);

    if (logits_ref) {
        /* logits_per_image = exp(logit_scale) normalize(image) normalize(text)^T:
         * the zero-shot scorer with the normalised texts as the classes. */
        mc_tensor *text_unit, *logits;
        MC_CHECK_OK(mc_l2_normalize(g, text, 1e-12f, &text_unit));
        MC_CHECK_OK(mc_clip_zero_shot_logits(image, text_unit, clip->logit_scale->data[0], &logits));
        double logits_error = mc_test_rel_error(logits->data, logits_ref->data, logits->numel);
        ck_assert_msg(logits_error < tolerance, "logits_per_image: relative error %.3g", logits_error);
        mc_tensor_free(logits);
    }
    mc_graph_free(g);
    free(ids);
    free(ids64);
    mc_tensor_free(pixels);
    mc_tensor_free(image_ref);
    mc_tensor_free(text_ref);
    mc_tensor_free(logits_ref);
    mc_safetensors_close(io);
    mc_clip_free(clip);
}

START_TEST(test_tiny_a) { check_model_against_reference("clip-golden/tiny-a.model.safetensors", "clip-golden/tiny-a.io.safetensors", 1e-4); }
END_TEST

START_TEST(test_tiny_b) { check_model_against_reference("clip-golden/tiny-b.model.safetensors", "clip-golden/tiny-b.io.safetensors", 1e-4); }
END_TEST

/* F16 weights, compared with the outputs of the F16-rounded model. */
START_TEST(test_tiny_a_f16) { check_model_against_reference("clip-golden/tiny-a.model-f16.safetensors", "clip-golden/tiny-a.io-f16.safetensors", 1e-4); }
END_TEST

START_TEST(test_derived_config) {
    char path[512];
    mc_clip *clip;
    MC_CHECK_OK(mc_clip_load(mc_test_shared_path("clip-golden/tiny-b.model.safetensors", path, sizeof path), &clip));
    /* The table in ../shared/data/clip-golden/README.md. */
    ck_assert_int_eq(clip->config.embed_dim, 96);
    ck_assert_int_eq(clip->config.vision.width, 192);
    ck_assert_int_eq(clip->config.vision.layers, 3);
    ck_assert_int_eq(clip->config.vision.heads, 3);
    ck_assert_int_eq(clip->config.vision.patch, 16);
    ck_assert_int_eq(clip->config.vision.image_size, 64);
    ck_assert_int_eq(clip->config.text.width, 128);
    ck_assert_int_eq(clip->config.text.layers, 2);
    ck_assert_int_eq(clip->config.text.heads, 2);
    ck_assert_int_eq(clip->config.text.context, 77);
    ck_assert_int_eq(clip->config.text.vocab, 49408);
    mc_clip_free(clip);
}
END_TEST

int main(void) {
    char path[512];
    if (!mc_test_file_exists(mc_test_shared_path("clip-golden/tiny-a.model.safetensors", path, sizeof path)))
        return mc_test_skip("../shared/data/clip-golden is absent");
    Suite *s = suite_create("clip_golden");
    const TTest *const tests[] = {test_tiny_a, test_tiny_b, test_tiny_a_f16, test_derived_config,
                                  NULL};
    tcase_set_timeout(mc_test_add_case(s, "clip_golden", tests), 120);
    return mc_test_run_suite(s);
}

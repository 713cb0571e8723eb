/* A full-size ViT-B/32 with random weights against the PyTorch twin, made
 * at test time by tests/golden/gen_clip.py --full when Debian's PyTorch is
 * installed (skipped otherwise, and under the sanitizers, where it would take
 * many minutes). */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

START_TEST(test_vit_b32_matches_pytorch) {
    const char *dir = getenv("MMCHAIN_FULL_DIR");
    char model_path[1024], io_path[1024];
    snprintf(model_path, sizeof model_path, "%s/clip_vit_b32.model.safetensors", dir);
    snprintf(io_path, sizeof io_path, "%s/clip_vit_b32.io.safetensors", dir);
    mc_clip *clip;
    MC_CHECK_OK(mc_clip_load(model_path, &clip));
    ck_assert_int_eq(clip->config.vision.width, 768);
    ck_assert_int_eq(clip->config.vision.heads, 12);
    ck_assert_int_eq(clip->config.vision.image_size, 224);
    ck_assert_int_eq(clip->config.text.heads, 8);
    mc_safetensors *io;
    MC_CHECK_OK(mc_safetensors_open(io_path, &io));
    mc_tensor *pixels, *image_ref, *text_ref;
    MC_CHECK_OK(mc_safetensors_read(io, "pixel_values", &pixels));
    MC_CHECK_OK(mc_safetensors_read(io, "image_embeds", &image_ref));
    MC_CHECK_OK(mc_safetensors_read(io, "text_embeds", &text_ref));
    int64_t *ids64;
    mc_shape shape;
    MC_CHECK_OK(mc_safetensors_read_ints(io, "input_ids", &ids64, &shape));
    int32_t ids[2 * 77];
    for (int i = 0; i < 2 * 77; i++) ids[i] = (int32_t)ids64[i];
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_grad_enabled(g, false);
    mc_tensor *image, *text;
    MC_CHECK_OK(mc_clip_encode_image(clip, g, pixels, &image));
    MC_CHECK_OK(mc_clip_encode_text(clip, g, ids, 2, &text));
    double image_error = mc_test_rel_error(image->data, image_ref->data, image->numel);
    double text_error = mc_test_rel_error(text->data, text_ref->data, text->numel);
    printf("ViT-B/32 random weights: image rel err %.3g, text rel err %.3g\n", image_error, text_error);
    ck_assert_msg(image_error < 1e-4, "image relative error %.3g", image_error);
    ck_assert_msg(text_error < 1e-4, "text relative error %.3g", text_error);
    mc_graph_free(g);
    free(ids64);
    mc_tensor_free(pixels);
    mc_tensor_free(image_ref);
    mc_tensor_free(text_ref);
    mc_safetensors_close(io);
    mc_clip_free(clip);
}
END_TEST

int main(void) {
    if (getenv("MMCHAIN_SANITIZER_RUN")) return mc_test_skip("full-size check is not run under the sanitizers");
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
        return mc_test_skip("Debian's python3-torch is not installed: no full-size ViT-B/32 fixture");
    const char *generated = getenv("MMCHAIN_GENERATED");
    const char *source = getenv("MMCHAIN_SOURCE_DIR");
    if (!generated || !source) return mc_test_skip("MMCHAIN_GENERATED / MMCHAIN_SOURCE_DIR not set (run through ctest)");
    static char dir[1024], command[4096];
    snprintf(dir, sizeof dir, "%s/clip_full", generated);
    snprintf(command, sizeof command, "/usr/bin/python3 '%s/tests/golden/gen_clip.py' --full '%s'", source, dir);
    if (system(command) != 0) {
        fprintf(stderr, "error: %s failed\n", command);
        return 1;
    }
    setenv("MMCHAIN_FULL_DIR", dir, 1);
    Suite *s = suite_create("clip_full");
    const TTest *const tests[] = {test_vit_b32_matches_pytorch, NULL};
    tcase_set_timeout(mc_test_add_case(s, "clip_full", tests), 600);
    return mc_test_run_suite(s);
}

/* CLIP towers against the PyTorch twin tests/golden/gen_clip.py (committed
 * fixtures): both embeddings, the symmetric InfoNCE loss with a learnable
 * logit_scale, and the gradient of every parameter. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct fixture {
    mc_clip *clip;
    mc_safetensors *io;
    mc_tensor *pixels;
    int32_t *ids;
    int n_texts;
} fixture;

static void fixture_open(fixture *f) {
    char path[512];
    MC_CHECK_OK(mc_clip_load(mc_test_fixture_path("clip_tiny.model.safetensors", path, sizeof path), &f->clip));
    MC_CHECK_OK(mc_safetensors_open(mc_test_fixture_path("clip_tiny.io.safetensors", path, sizeof path), &f->io));
    MC_CHECK_OK(mc_safetensors_read(f->io, "pixel_values", &f->pixels));
    int64_t *ids64;
    mc_shape shape;
    MC_CHECK_OK(mc_safetensors_read_ints(f->io, "input_ids", &ids64, &shape));
    f->n_texts = (int)shape.dim[0];
    f->ids = malloc(sizeof *f->ids * (size_t)mc_shape_numel(shape));
    for (int64_t i = 0; i < mc_shape_numel(shape); i++) f->ids[i] = (int32_t)ids64[i];
    free(ids64);
}

static void fixture_close(fixture *f) {
    free(f->ids);
    mc_tensor_free(f->pixels);
    mc_safetensors_close(f->io);
    mc_clip_free(f->clip);
}

/* ||actual - expected|| <= tolerance * max(||expected||, floor). The floor
 * matters for gradients that are zero in exact arithmetic: the key
 * projection's bias adds the same q.b to every score of a row, which softmax
 * ignores, so both sides hold only rounding noise (~1e-9) there. */
static void assert_matches(const fixture *f, const char *name, const mc_tensor *actual, double tolerance,
                           double floor) {
    mc_tensor *expected;
    MC_CHECK_OK(mc_safetensors_read(f->io, name, &expected));
    ck_assert_int_eq(actual->numel, expected->numel);
    double diff2 = 0.0, ref2 = 0.0;
    for (int64_t i = 0; i < actual->numel; i++) {
        double d = (double)actual->data[i] - expected->data[i];
        diff2 += d * d;
        ref2 += (double)expected->data[i] * expected->data[i];
    }
    double scale = sqrt(ref2) > floor ? sqrt(ref2) : floor;
    ck_assert_msg(sqrt(diff2) <= tolerance * scale, "%s: |diff| %.3g, |expected| %.3g (tolerance %.1g)", name,
                  sqrt(diff2), sqrt(ref2), tolerance);
    mc_tensor_free(expected);
}

START_TEST(test_embeddings_match) {
    fixture f;
    fixture_open(&f);
    /* The derived configuration: mlp width 2*width, vocabulary 600. */
    ck_assert_int_eq(f.clip->config.vision.mlp_width, 128);
    ck_assert_int_eq(f.clip->config.text.vocab, 600);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_grad_enabled(g, false);
    mc_tensor *image, *text;
    MC_CHECK_OK(mc_clip_encode_image(f.clip, g, f.pixels, &image));
    MC_CHECK_OK(mc_clip_encode_text(f.clip, g, f.ids, f.n_texts, &text));
    assert_matches(&f, "image_embeds", image, 1e-4, 0.0);
    assert_matches(&f, "text_embeds", text, 1e-4, 0.0);
    ck_assert_int_eq(mc_graph_tape_length(g), 0); /* no-grad recorded nothing */
    mc_graph_free(g);
    fixture_close(&f);
}
END_TEST

START_TEST(test_every_gradient_matches) {
    fixture f;
    fixture_open(&f);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *image, *text, *loss;
    MC_CHECK_OK(mc_clip_encode_image(f.clip, g, f.pixels, &image));
    MC_CHECK_OK(mc_clip_encode_text(f.clip, g, f.ids, f.n_texts, &text));
    MC_CHECK_OK(mc_infonce(g, image, text, f.clip->logit_scale, true, &loss));
    assert_matches(&f, "loss", loss, 1e-5, 0.0);
    MC_CHECK_OK(mc_backward(g, loss));
    int checked = 0;
    for (int i = 0; i < f.clip->params.count; i++) {
        mc_tensor *p = f.clip->params.items[i];
        char name[MC_NAME_LEN + 8];
        snprintf(name, sizeof name, "grad.%s", p->name);
        ck_assert_ptr_nonnull(p->grad);
        mc_tensor grad_view = *p;
        grad_view.data = p->grad;
        /* Relative error of each whole gradient tensor under 1e-3. */
        assert_matches(&f, name, &grad_view, 1e-3, 1e-4);
        checked++;
    }
    ck_assert_int_eq(checked, mc_safetensors_count(f.io) - 5); /* all but the 5 io tensors */
    mc_graph_free(g);
    fixture_close(&f);
}
END_TEST

int main(void) {
    Suite *s = suite_create("clip_parity");
    const TTest *const tests[] = {test_embeddings_match, test_every_gradient_matches, NULL};
    tcase_set_timeout(mc_test_add_case(s, "clip_parity", tests), 120);
    return mc_test_run_suite(s);
}

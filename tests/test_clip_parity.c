/* CLIP towers against the PyTorch twin tests/golden/gen_clip.py (committed
 * fixtures): both embeddings, the symmetric InfoNCE loss with a learnable
 * logit_scale, and the gradient of every parameter; in fp32, and again on
 * bf16 graphs (mc_graph_set_precision) against the same fp32 references
 * with bars of their own.
 *
 * THE bf16 BARS. bf16 keeps 8 significant bits: each rounded operand is
 * off by at most u = 2^-8 (3.9e-3) relative, and with errors of random sign
 * one product's output (as a whole-tensor norm) by about u. The towers have
 * about 8 products per path (patch embedding, per block QKV, the two
 * attention products, out-projection, two MLP layers, projection); layer
 * norm keeps the scale, so the errors add in quadrature: about
 * sqrt(8) u = 1.1e-2. Bars: 2^-4 (6.25e-2) for the embeddings and the
 * loss, 2^-3 for gradients (a product of two rounded chains, summed over a
 * handful of items). The key biases' gradients are zero in exact
 * arithmetic (see assert_matches) and hold rounding noise of about 1e-3 in
 * bf16 (1e-9 in fp32), so the floor is 2e-2 there (no other gradient is
 * that small). Measured on this fixture: embeddings 4.1e-3 and 5.9e-3,
 * loss 2.2e-5, gradients at most 2.5e-2 (docs/architecture.md). */
#include <math.h>
#include <stdio.h>
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
    printf("  %-50s %.3g (bar %.3g; |expected| %.3g)\n", name, sqrt(diff2) / scale, tolerance,
           sqrt(ref2)); /* ctest -V */
    ck_assert_msg(sqrt(diff2) <= tolerance * scale, "%s: |diff| %.3g, |expected| %.3g (tolerance %.1g)", name,
                  sqrt(diff2), sqrt(ref2), tolerance);
    mc_tensor_free(expected);
}

#define BF16_TOL_EMBED 0.0625
#define BF16_TOL_LOSS 0.0625
#define BF16_TOL_GRAD 0.125
#define BF16_GRAD_FLOOR 2e-2

/* Both embeddings on a `precision` graph, within `tolerance` of the twin's. */
static void check_embeddings(mc_precision precision, double tolerance) {
    fixture f;
    fixture_open(&f);
    /* The derived configuration: mlp width 2*width, vocabulary 600. */
    ck_assert_int_eq(f.clip->config.vision.mlp_width, 128);
    ck_assert_int_eq(f.clip->config.text.vocab, 600);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_precision(g, precision);
    mc_graph_set_grad_enabled(g, false);
    mc_tensor *image, *text;
    MC_CHECK_OK(mc_clip_encode_image(f.clip, g, f.pixels, &image));
    MC_CHECK_OK(mc_clip_encode_text(f.clip, g, f.ids, f.n_texts, &text));
    assert_matches(&f, "image_embeds", image, tolerance, 0.0);
    assert_matches(&f, "text_embeds", text, tolerance, 0.0);
    ck_assert_int_eq(mc_graph_tape_length(g), 0); /* no-grad recorded nothing */
    mc_graph_free(g);
    fixture_close(&f);
}

START_TEST(test_embeddings_match) { check_embeddings(MC_PRECISION_FP32, 1e-4); }
END_TEST

START_TEST(test_embeddings_match_bf16) { check_embeddings(MC_PRECISION_BF16, BF16_TOL_EMBED); }
END_TEST

/* The loss and every parameter's gradient on a `precision` graph. */
static void check_gradients(mc_precision precision, double loss_tolerance, double grad_tolerance,
                            double grad_floor) {
    fixture f;
    fixture_open(&f);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_graph_set_precision(g, precision);
    mc_tensor *image, *text, *loss;
    MC_CHECK_OK(mc_clip_encode_image(f.clip, g, f.pixels, &image));
    MC_CHECK_OK(mc_clip_encode_text(f.clip, g, f.ids, f.n_texts, &text));
    MC_CHECK_OK(mc_infonce(g, image, text, f.clip->logit_scale, true, &loss));
    assert_matches(&f, "loss", loss, loss_tolerance, 0.0);
    MC_CHECK_OK(mc_backward(g, loss));
    int checked = 0;
    for (int i = 0; i < f.clip->params.count; i++) {
        mc_tensor *p = f.clip->params.items[i];
        char name[MC_NAME_LEN + 8];
        snprintf(name, sizeof name, "grad.%s", p->name);
        ck_assert_ptr_nonnull(p->grad);
        mc_tensor grad_view = *p;
        grad_view.data = p->grad;
        /* Relative error of each whole gradient tensor (1e-3 in fp32). */
        assert_matches(&f, name, &grad_view, grad_tolerance, grad_floor);
        checked++;
    }
    ck_assert_int_eq(checked, mc_safetensors_count(f.io) - 5); /* all but the 5 io tensors */
    mc_graph_free(g);
    fixture_close(&f);
}

START_TEST(test_every_gradient_matches) { check_gradients(MC_PRECISION_FP32, 1e-5, 1e-3, 1e-4); }
END_TEST

START_TEST(test_every_gradient_matches_bf16) {
    check_gradients(MC_PRECISION_BF16, BF16_TOL_LOSS, BF16_TOL_GRAD, BF16_GRAD_FLOOR);
}
END_TEST

int main(void) {
    Suite *s = suite_create("clip_parity");
    const TTest *const tests[] = {test_embeddings_match, test_every_gradient_matches,
                                  test_embeddings_match_bf16, test_every_gradient_matches_bf16, NULL};
    tcase_set_timeout(mc_test_add_case(s, "clip_parity", tests), 120);
    return mc_test_run_suite(s);
}

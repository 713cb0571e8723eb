/* ResNet parity in bf16: the committed PyTorch fixtures of test_resnet.c
 * (fp32 references, tests/golden/gen_resnet.py), run with every graph in
 * bf16 (mc_set_default_precision), against bars of their own. The fp32
 * bars (resnet_parity.h) are not touched.
 *
 * WHERE THE BARS COME FROM. bf16 keeps 8 significant bits, so rounding an
 * operand has a relative error of at most u = 2^-8 (3.9e-3), and the
 * product of two rounded operands at most 2u; the fp32 sums add almost
 * nothing. The errors of a dot product's terms have random signs, so one
 * layer's output (a whole-tensor relative error, as parity_compare
 * measures) is off by about u. A forward pass of L layers of products
 * compounds them (batch norm keeps the scale, so they add in quadrature):
 * about sqrt(L) u, 1.6e-2 for the fixtures' 17 products per path. Bar for
 * outputs, losses and batch-norm statistics: 2^-4 (four times that).
 *
 * Gradients are another matter. A weight's gradient is a sum over the
 * batch of (upstream gradient) x (activation), and behind a training-mode
 * batch norm the upstream gradient sums to zero per channel, so that sum
 * cancels: its terms are many times the result, and their bf16 rounding
 * errors (u of each term, not of the result) do not cancel. With the
 * fixtures' batches of 2-4 items the measured per-tensor errors reach 0.37
 * (layer3.0.conv2.weight); the batch-norm parameters' gradients (norms
 * 0.01-0.4, the same kind of sum) are measured against a floor of 0.5.
 * Bar: 2^-1, which still fails a mis-packed or stale operand (an error of
 * order 1). Five Adam steps follow from those gradients (Adam's step does
 * not shrink with a small, noisy gradient): measured 0.114, bar 2^-2.
 * conv1 is derived in fp32, on load: its fp32 bar stays.
 *
 * Measured (vdpbf16ps; the emulation gives the same numbers): logits and
 * features at most 6.3e-3, training loss 3.1e-3, BN running statistics
 * 2.0e-3, gradients 0.37, Adam losses 0.114. */
#include <math.h>

#include "mmchain/ops.h"

#define PARITY_TOL_CONV1 1e-6
#define PARITY_TOL_EVAL 0.0625
#define PARITY_TOL_LOSS 0.0625
#define PARITY_TOL_GRAD 0.5
#define PARITY_TOL_STATS 0.0625
#define PARITY_TOL_ADAM 0.25
/* Every error measured, for the record (ctest -V shows them). */
#define PARITY_NOTE(what, err, tol) printf("  bf16 %-40s %.3g (bar %.3g)\n", what, err, tol)
#define PARITY_GRAD_FLOOR 0.5
#include <stdio.h>

#include "resnet_parity.h"
#include "../lib/ops/conv_internal.h"

/* The committed cases of test_resnet.c, each in inference and training. */
static const char *const cases[] = {"basic", "bottleneck5"};

START_TEST(test_bf16_committed_case) {
    char dir[1024];
    parity_run_nth(mc_test_fixture_path("", dir, sizeof dir), cases, _i);
}
END_TEST

/* The same with every 3x3 stride-1 convolution by Winograd with bf16
 * operands (by default a bf16 graph takes it from 128 tiles on: in the
 * fixtures only layer1 of the training batch, 4 x 6 x 6 = 144 tiles; the
 * other layers run im2col): its rounding of the transformed input and
 * weight, about twice im2col's error per convolution
 * (tests/test_ops_bf16.c), stays within the same bars. */
START_TEST(test_bf16_committed_case_winograd) {
    mc_conv2d_set_winograd(MC_WINOGRAD_ALWAYS);
    char dir[1024];
    parity_run_nth(mc_test_fixture_path("", dir, sizeof dir), cases, _i);
    mc_conv2d_set_winograd(-1);
}
END_TEST

/* The bf16 path really ran: a bf16 graph's logits differ from the fp32
 * ones (by far less than the bar), unless products fall back to fp32. */
START_TEST(test_bf16_differs_from_fp32) {
    if (strncmp(mc_gemm_bf16_kernel_name(), "fp32", 4) == 0) return; /* OpenBLAS: fp32 products */
    char dir[1024];
    mc_test_fixture_path("", dir, sizeof dir);
    parity_case c;
    parity_open(&c, dir, "basic");
    mc_resnet *m;
    MC_CHECK_OK(mc_resnet_new(&m, &c.config, 1));
    MC_CHECK_OK(mc_resnet_load(m, c.weights, NULL, NULL, 0));
    mc_tensor *x = parity_read(&c, "eval0.input"), *out[2];
    mc_graph *g[2];
    for (int i = 0; i < 2; i++) {
        MC_CHECK_OK(mc_graph_new(&g[i]));
        mc_graph_set_precision(g[i], i == 0 ? MC_PRECISION_FP32 : MC_PRECISION_BF16);
        mc_graph_set_grad_enabled(g[i], false);
        MC_CHECK_OK(mc_resnet_forward(m, g[i], x, &out[i]));
    }
    double err = mc_test_rel_error(out[1]->data, out[0]->data, (long)out[0]->numel);
    printf("bf16 vs fp32 logits (basic, eval0): %.3g\n", err);
    ck_assert_msg(err > 1e-6 && err < PARITY_TOL_EVAL, "bf16 vs fp32 logits: relative error %.3g", err);
    for (int i = 0; i < 2; i++) mc_graph_free(g[i]);
    mc_tensor_free(x);
    mc_resnet_free(m);
    parity_close(&c);
}
END_TEST

int main(void) {
    /* Every graph the parity checks make is a bf16 graph. */
    mc_set_default_precision(MC_PRECISION_BF16);
    Suite *s = suite_create("resnet_bf16");
    const TTest *const tests[] = {test_bf16_differs_from_fp32, NULL};
    TCase *parity = mc_test_add_loops(
        mc_test_add_case(s, "parity_bf16", tests),
        (const mc_test_loop[]){{test_bf16_committed_case, 0, PARITY_N_RUNS(cases)},
                               {test_bf16_committed_case_winograd, 0, PARITY_N_RUNS(cases)},
                               {NULL, 0, 0}});
    tcase_set_timeout(parity, 120);
    return mc_test_run_suite(s);
}

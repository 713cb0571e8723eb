/* Reading the committed PyTorch fixtures (tests/golden/fixtures/ops_NAME.safetensors)
 * in Check tests: open a file, take its tensors as heap tensors (freed when
 * the fixture is closed), and compare results against expected tensors.
 *
 *     mc_fixture *fx = mc_fixture_open("ops_layernorm.safetensors");
 *     mc_tensor *x = mc_fixture_tensor(fx, "x", true);     // requires_grad
 *     ... run the op ...
 *     mc_fixture_expect(fx, "out", y->data, y->numel, 1e-4, 1e-5);
 *     mc_fixture_close(fx);
 *
 * Every failure (a missing file or tensor, a count or value mismatch) is a
 * Check assertion naming the file and the tensor. */
#ifndef MMCHAIN_TEST_FIXTURE_H
#define MMCHAIN_TEST_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "mmchain/mmchain.h"

typedef struct mc_fixture {
    mc_safetensors *file;
    char path[1024];
    mc_param_list owned; /* the tensors handed out */
    void **blocks;       /* other allocations handed out (integer arrays) */
    int n_blocks, cap_blocks;
} mc_fixture;

/* The fixture `relative` under $MMCHAIN_FIXTURES (asserts it opens). */
mc_fixture *mc_fixture_open(const char *relative);
void mc_fixture_close(mc_fixture *fx);

/* A heap copy of tensor `name` as float32, with a gradient buffer when
 * requires_grad. Owned by the fixture. */
mc_tensor *mc_fixture_tensor(mc_fixture *fx, const char *name, bool requires_grad);
/* An integer tensor as int32 values (targets, settings); *n (may be NULL)
 * receives the count. Owned by the fixture. */
int32_t *mc_fixture_ints(mc_fixture *fx, const char *name, int64_t *n);
/* A "__metadata__" value (asserts it exists). */
const char *mc_fixture_metadata(mc_fixture *fx, const char *key);

/* Assert that n values at `actual` match the fixture tensor `expected_name`
 * (same element count, |a - e| <= atol + rtol * |e| everywhere). */
void mc_fixture_expect(mc_fixture *fx, const char *expected_name, const float *actual, int64_t n,
                       double rtol, double atol);

/* ---- op parity: float32 results against PyTorch's float64 ones ----
 * The tolerances (|ours - torch| <= atol + rtol * |torch|) of the ops'
 * parity tests: forward outputs rtol 1e-4, atol 1e-5; gradients rtol 1e-3,
 * atol 1e-5 (longer sums, cancellation). */
#define MC_PARITY_OUT_RTOL 1e-4
#define MC_PARITY_OUT_ATOL 1e-5
#define MC_PARITY_GRAD_RTOL 1e-3
#define MC_PARITY_GRAD_ATOL 1e-5

/* Backpropagate the fixture tensor `dout_name`, an upstream gradient with
 * as many values as `out`, from out. */
void mc_fixture_backward(mc_fixture *fx, mc_graph *g, mc_tensor *out, const char *dout_name);
/* Assert t's values (output) or its gradient (grad, which must have been
 * computed) match the fixture tensor `name` within the parity tolerances. */
void mc_fixture_expect_output(mc_fixture *fx, const char *name, const mc_tensor *t);
void mc_fixture_expect_grad(mc_fixture *fx, const char *name, const mc_tensor *t);

#endif

/* mmchain — checking a backward function against finite differences.
 *
 * A backward function is easy to get subtly wrong (a missing term, a
 * transposed index, = where += was needed) and the mistake rarely shows in
 * the forward results. mc_gradcheck compares the gradient your backward
 * computes with the slope of the forward itself:
 *
 *   1. it runs `forward` on a fresh graph, takes the projected loss
 *      L = sum(out * r) for a fixed random r (uniform in [-1, 1], seeded),
 *      and backpropagates r (mc_backward_with_grad): the analytic gradient
 *      dL/dx of every input that requires a gradient;
 *   2. for every element x[j] of those inputs it runs the forward twice more,
 *      with gradients off, at x[j] + eps and x[j] - eps, and takes the
 *      central difference (L+ - L-) / (2 eps), L summed in double precision;
 *   3. it compares the two element by element:
 *          |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
 *
 * Projecting onto a random r checks every output element's contribution at
 * once (a wrong gradient would have to be orthogonal to r to pass). The
 * tensors stay float32, so eps cannot be tiny: the defaults (eps 1e-2,
 * rtol 2e-2, atol 2e-3) suit inputs of order 1. Keep inputs away from the
 * points where the op is not differentiable (relu at 0, max with ties,
 * clamp at its bounds): within eps of a kink the central difference
 * averages two slopes. The check costs 2 forwards per input element, so use
 * small, odd-sized shapes (3x5, not 64x64).
 *
 *     static mc_status my_forward(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
 *         (void)ctx;
 *         return my_op(g, in[0], in[1], out);
 *     }
 *     ...
 *     mc_tensor *in[2] = {x, w};            (heap tensors, requires_grad set)
 *     mc_gradcheck_report report;
 *     if (mc_gradcheck("my_op", 2, in, my_forward, NULL, NULL, &report) != MC_OK)
 *         fprintf(stderr, "%s\n", mc_last_error());
 *
 * The inputs' values are restored after each perturbation; their gradients
 * are zeroed first and hold the analytic gradient afterwards. `forward`
 * must compute the same function every time it is called (no dropout with
 * a moving RNG, no running-statistics update that changes the output). */
#ifndef MMCHAIN_GRADCHECK_H
#define MMCHAIN_GRADCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds the op under test on `g` from `inputs` (the array given to
 * mc_gradcheck; ctx is passed through) and returns its output in *out. */
typedef mc_status (*mc_gradcheck_forward)(mc_graph *g, mc_tensor **inputs, void *ctx,
                                          mc_tensor **out);

/* Zero (or a negative value) in any field means its default. */
typedef struct mc_gradcheck_options {
    double eps;    /* perturbation of each element; default 1e-2 */
    double rtol;   /* relative tolerance; default 2e-2 */
    double atol;   /* absolute tolerance; default 2e-3 */
    uint64_t seed; /* seed of the projection r; default 1234 */
} mc_gradcheck_options;

/* What a check found. Errors are over every element compared; "worst" is
 * the element with the largest violation (error / tolerance). */
typedef struct mc_gradcheck_report {
    bool passed;            /* every element within tolerance */
    int64_t checked;        /* elements compared (all inputs together) */
    double max_abs_error;   /* max |analytic - numeric| */
    double max_rel_error;   /* max |analytic - numeric| / max(|analytic|, |numeric|),
                               over elements where that is not 0 / 0 (near-zero
                               gradients make it large: the verdict uses atol too) */
    double worst_violation; /* max |a - n| / (atol + rtol max(|a|, |n|)); <= 1 passes */
    int worst_input;        /* index into inputs of the worst element; -1 if none */
    int64_t worst_element;  /* its flat index in that input; -1 if none */
    double worst_analytic;  /* the two gradients at the worst element */
    double worst_numeric;
} mc_gradcheck_report;

/* Check the backward of `forward` with respect to every input with
 * requires_grad (others are held fixed). `name` labels the messages;
 * options and report may be NULL. Returns
 *   MC_OK           every element within tolerance;
 *   MC_ERR_NUMERIC  some element is not (the message names the input, the
 *                   element and both gradients), or a gradient is NaN;
 *   MC_ERR_STATE    an input that requires a gradient received none (the
 *                   op recorded nothing, or did not route to it);
 *   MC_ERR_ARG      no input requires a gradient (nothing to check), or
 *                   an argument is NULL;
 *   anything else   forward or backward failed (their message, prefixed
 *                   with `name`).
 * *report is filled whenever the comparison ran (passed or not). */
mc_status mc_gradcheck(const char *name, int n_inputs, mc_tensor **inputs,
                       mc_gradcheck_forward forward, void *ctx,
                       const mc_gradcheck_options *options, mc_gradcheck_report *report);

#ifdef __cplusplus
}
#endif
#endif

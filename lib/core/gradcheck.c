/* Finite-difference gradient checking (gradcheck.h): the analytic gradient
 * of a projected loss L = sum(out * r) against its central difference. */
#include "mmchain/gradcheck.h"

#include <math.h>
#include <stdlib.h>

#include "mmchain/rng.h"

typedef struct gradcheck_run {
    const char *name;
    int n_inputs;
    mc_tensor **inputs;
    mc_gradcheck_forward forward;
    void *ctx;
    const float *r; /* the projection, one weight per output element */
    int64_t n_out;
} gradcheck_run;

/* L = sum(out * r), summed in double, with the forward run in no-grad mode
 * on a reset graph (nothing is recorded; the arena is reused). */
static mc_status projected_loss(mc_graph *g, const gradcheck_run *run, double *loss) {
    mc_graph_reset(g);
    bool was = mc_graph_set_grad_enabled(g, false);
    mc_tensor *out = NULL;
    mc_status status = run->forward(g, run->inputs, run->ctx, &out);
    mc_graph_set_grad_enabled(g, was);
    if (status != MC_OK) return status;
    if (out->numel != run->n_out)
        return mc_error(MC_ERR_SHAPE, "%s: the output has %lld elements after a perturbation, %lld before",
                        run->name, (long long)out->numel, (long long)run->n_out);
    double sum = 0.0;
    for (int64_t i = 0; i < run->n_out; i++) sum += (double)out->data[i] * (double)run->r[i];
    *loss = sum;
    return MC_OK;
}

/* dL/dx[j] by central difference. The step is the one actually taken after
 * rounding x[j] +- eps to float, not 2 eps. */
static mc_status numeric_gradient(mc_graph *g, const gradcheck_run *run, mc_tensor *x, int64_t j,
                                  double eps, double *gradient) {
    float saved = x->data[j];
    float up = (float)(saved + eps), down = (float)(saved - eps);
    double plus = 0.0, minus = 0.0;
    /* Each write touches x: what is derived from its data (a weight's bf16
     * copies) is remade from the perturbed values, not kept stale. */
    x->data[j] = up;
    mc_tensor_touch(x);
    mc_status status = projected_loss(g, run, &plus);
    if (status == MC_OK) {
        x->data[j] = down;
        mc_tensor_touch(x);
        status = projected_loss(g, run, &minus);
    }
    x->data[j] = saved;
    mc_tensor_touch(x);
    if (status != MC_OK)
        return mc_error_context(status, "%s: forward at %s[%lld] %+g: ", run->name, x->name,
                                (long long)j, eps);
    *gradient = (plus - minus) / ((double)up - (double)down);
    return MC_OK;
}

/* Fold one element's comparison into the report. */
static void compare_element(mc_gradcheck_report *report, int input, int64_t j, double analytic,
                            double numeric, double rtol, double atol) {
    double error = fabs(analytic - numeric);
    double scale = fmax(fabs(analytic), fabs(numeric));
    double violation = error / (atol + rtol * scale);
    if (isnan(violation)) violation = INFINITY;
    report->checked++;
    if (isnan(error) || error > report->max_abs_error) report->max_abs_error = isnan(error) ? INFINITY : error;
    if (scale > 0.0 && error / scale > report->max_rel_error) report->max_rel_error = error / scale;
    if (violation > report->worst_violation || report->worst_input < 0) {
        report->worst_violation = violation;
        report->worst_input = input;
        report->worst_element = j;
        report->worst_analytic = analytic;
        report->worst_numeric = numeric;
    }
}

/* The analytic gradients: one forward with recording, backward of r. */
static mc_status analytic_pass(mc_graph *g, gradcheck_run *run, float **r_out, mc_rng *rng) {
    for (int i = 0; i < run->n_inputs; i++) mc_tensor_zero_grad(run->inputs[i]);
    mc_tensor *out = NULL;
    mc_status status = run->forward(g, run->inputs, run->ctx, &out);
    if (status != MC_OK) return mc_error_context(status, "%s: forward: ", run->name);
    float *r = malloc((size_t)out->numel * sizeof *r);
    if (!r) return mc_error(MC_ERR_NOMEM, "%s: the projection of %lld floats", run->name,
                            (long long)out->numel);
    for (int64_t i = 0; i < out->numel; i++) r[i] = (float)(mc_rng_uniform(rng) * 2.0 - 1.0);
    *r_out = r;
    run->r = r;
    run->n_out = out->numel;
    status = mc_backward_with_grad(g, out, r);
    if (status != MC_OK) return mc_error_context(status, "%s: backward: ", run->name);
    return MC_OK;
}

mc_status mc_gradcheck(const char *name, int n_inputs, mc_tensor **inputs,
                       mc_gradcheck_forward forward, void *ctx,
                       const mc_gradcheck_options *options, mc_gradcheck_report *report) {
    if (!name) name = "gradcheck";
    if (n_inputs < 0 || (n_inputs > 0 && !inputs) || !forward)
        return mc_error(MC_ERR_ARG, "%s: needs a forward function and %d inputs", name, n_inputs);
    int differentiable = 0;
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i]) return mc_error(MC_ERR_ARG, "%s: input %d is NULL", name, i);
        differentiable += inputs[i]->requires_grad;
    }
    if (differentiable == 0)
        return mc_error(MC_ERR_ARG, "%s: no input requires a gradient: nothing to check", name);
    double eps = options && options->eps > 0 ? options->eps : 1e-2;
    double rtol = options && options->rtol > 0 ? options->rtol : 2e-2;
    double atol = options && options->atol > 0 ? options->atol : 2e-3;
    uint64_t seed = options && options->seed ? options->seed : 1234;

    mc_gradcheck_report found = {.passed = false, .worst_input = -1, .worst_element = -1};
    gradcheck_run run = {.name = name, .n_inputs = n_inputs, .inputs = inputs,
                         .forward = forward, .ctx = ctx};
    mc_graph *g = NULL;
    float *r = NULL;
    mc_status status = mc_graph_new(&g);
    if (status != MC_OK) return status;
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    status = analytic_pass(g, &run, &r, &rng);

    for (int i = 0; i < n_inputs && status == MC_OK; i++) {
        mc_tensor *x = inputs[i];
        if (!x->requires_grad) continue;
        if (!x->grad) {
            status = mc_error(MC_ERR_STATE, "%s: input %d (%s) received no gradient", name, i, x->name);
            break;
        }
        for (int64_t j = 0; j < x->numel && status == MC_OK; j++) {
            double numeric = 0.0;
            status = numeric_gradient(g, &run, x, j, eps, &numeric);
            if (status == MC_OK) compare_element(&found, i, j, x->grad[j], numeric, rtol, atol);
        }
    }
    free(r);
    mc_graph_free(g);
    if (status != MC_OK) return status;

    found.passed = found.worst_violation <= 1.0;
    if (report) *report = found;
    if (!found.passed)
        return mc_error(MC_ERR_NUMERIC,
                        "%s: gradient of input %d (%s) element %lld: analytic %.6g, numeric %.6g "
                        "(%.2f times the tolerance %g + %g * |gradient|; max abs error %.3g)",
                        name, found.worst_input, inputs[found.worst_input]->name,
                        (long long)found.worst_element, found.worst_analytic, found.worst_numeric,
                        found.worst_violation, atol, rtol, found.max_abs_error);
    return MC_OK;
}

/* Elementwise losses with PyTorch's default reduction 'mean': MSE, binary
 * cross-entropy on probabilities, and binary cross-entropy on logits (the
 * stable one). Each takes `input` and a `target` of the same shape, returns a
 * one-element tensor, and differentiates with respect to both (the target
 * too when it requires a gradient, as PyTorch does). Terms are summed in
 * double, serially, so the loss does not depend on the thread count.
 *
 * With N elements and upstream gradient g = d out:
 *   mse                 l = (x - t)^2                    dx = 2 (x - t) g / N, dt = -dx
 *   bce                 l = -(t log x + (1-t) log(1-x)) dx = (x - t) / (x (1-x)) g / N,
 *                       logs clamped at >= -100           dt = (log(1-x) - log x) g / N
 *   bce_with_logits     l = max(x, 0) - x t + log(1 + e^-|x|)
 *                                                          dx = (sigmoid(x) - t) g / N, dt = -x g / N
 * The logits form never evaluates log(sigmoid(x)), which underflows to
 * -inf for x below about -88 in float. */
#include "mmchain/ops.h"
#include "ops/ops_internal.h"

#include <math.h>

typedef enum elementwise_loss { LOSS_MSE, LOSS_BCE, LOSS_BCE_WITH_LOGITS } elementwise_loss;

static const char *const loss_names[] = {"mse_loss", "bce_loss", "bce_with_logits"};

/* PyTorch clamps each log of binary_cross_entropy at -100, so that a
 * probability of exactly 0 or 1 gives a large finite loss, not inf. */
#define BCE_LOG_FLOOR (-100.0)
/* ... and keeps the gradient's denominator x (1 - x) at least this. */
#define BCE_GRAD_EPS 1e-12

static double clamped_log(double v) { return fmax(log(v), BCE_LOG_FLOOR); }

/* One element's loss. */
static double element_loss(elementwise_loss kind, double x, double t) {
    switch (kind) {
    case LOSS_MSE: return (x - t) * (x - t);
    case LOSS_BCE: return -(t * clamped_log(x) + (1.0 - t) * clamped_log(1.0 - x));
    case LOSS_BCE_WITH_LOGITS: return fmax(x, 0.0) - x * t + log1p(exp(-fabs(x)));
    }
    return 0.0;
}

/* d l / d x and d l / d t of one element. */
static void element_grad(elementwise_loss kind, double x, double t, double *dx, double *dt) {
    switch (kind) {
    case LOSS_MSE:
        *dx = 2.0 * (x - t);
        *dt = -*dx;
        return;
    case LOSS_BCE:
        *dx = (x - t) / fmax(x * (1.0 - x), BCE_GRAD_EPS);
        *dt = clamped_log(1.0 - x) - clamped_log(x);
        return;
    case LOSS_BCE_WITH_LOGITS:
        *dx = 1.0 / (1.0 + exp(-x)) - t;
        *dt = -x;
        return;
    }
}

static mc_status elementwise_loss_backward(mc_node *node) {
    const elementwise_loss *kind = node->saved;
    mc_tensor *input = node->in[0], *target = node->in[1];
    float *dinput = NULL, *dtarget = NULL;
    if (input->requires_grad) MC_TRY(mc_grad_buffer(node->graph, input, &dinput));
    if (target->requires_grad) MC_TRY(mc_grad_buffer(node->graph, target, &dtarget));
    const int64_t n = input->numel;
    const double scale = (double)node->out->grad[0] / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double dx = 0.0, dt = 0.0;
        element_grad(*kind, input->data[i], target->data[i], &dx, &dt);
        if (dinput) dinput[i] += (float)(dx * scale);
        if (dtarget) dtarget[i] += (float)(dt * scale);
    }
    return MC_OK;
}

static mc_status check_loss_inputs(elementwise_loss kind, const mc_tensor *input,
                                   const mc_tensor *target) {
    const char *op = loss_names[kind];
    char is[160], ts[160];
    if (!input || !target) return mc_error(MC_ERR_ARG, "%s: input and target must not be NULL", op);
    if (!mc_shape_equal(input->shape, target->shape))
        return mc_error(MC_ERR_SHAPE, "%s: input %s and target %s must have the same shape", op,
                        mc_tensor_str(input, is, sizeof is), mc_tensor_str(target, ts, sizeof ts));
    if (kind == LOSS_BCE)
        for (int64_t i = 0; i < input->numel; i++)
            if (!(input->data[i] >= 0.0f && input->data[i] <= 1.0f))
                return mc_error(MC_ERR_ARG,
                                "%s: input %s element %lld is %g; probabilities must be in [0, 1] "
                                "(for logits use bce_with_logits)",
                                op, input->name, (long long)i, input->data[i]);
    return MC_OK;
}

static mc_status loss_op(mc_graph *g, elementwise_loss kind, mc_tensor *input, mc_tensor *target,
                         mc_tensor **out) {
    *out = NULL;
    MC_TRY(check_loss_inputs(kind, input, target));
    double total = 0.0;
    for (int64_t i = 0; i < input->numel; i++)
        total += element_loss(kind, input->data[i], target->data[i]);
    mc_tensor *loss;
    MC_TRY(mc_graph_tensor(g, MC_SHAPE(1), loss_names[kind], &loss));
    loss->data[0] = (float)(total / (double)input->numel);
    mc_tensor *in[2] = {input, target};
    MC_TRY(mc_op_record_saved(g, loss_names[kind], elementwise_loss_backward, loss, 2, in, &kind,
                              sizeof kind));
    *out = loss;
    return MC_OK;
}

mc_status mc_mse_loss(mc_graph *g, mc_tensor *input, mc_tensor *target, mc_tensor **out) {
    return loss_op(g, LOSS_MSE, input, target, out);
}

mc_status mc_bce_loss(mc_graph *g, mc_tensor *input, mc_tensor *target, mc_tensor **out) {
    return loss_op(g, LOSS_BCE, input, target, out);
}

mc_status mc_bce_with_logits(mc_graph *g, mc_tensor *logits, mc_tensor *target, mc_tensor **out) {
    return loss_op(g, LOSS_BCE_WITH_LOGITS, logits, target, out);
}

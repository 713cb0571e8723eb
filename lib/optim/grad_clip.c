/* Gradient clipping by the global L2 norm, as torch.nn.utils.clip_grad_norm_:
 * total = sqrt(sum over parameters of ||grad||^2); if total > max_norm, every
 * gradient is multiplied by max_norm / (total + 1e-6). (PyTorch multiplies by
 * min(1, that factor) unconditionally; skipping the multiply when the factor
 * is >= 1 gives the same numbers.) */
#include "mmchain/optim.h"
#include "core/parallel.h"

#include <math.h>

/* sum of squares of x: (n), accumulated in double so that millions of small
 * terms keep their precision. */
static double sum_of_squares(const float *x, int64_t n) {
    double sum = 0.0;
#pragma omp parallel for reduction(+ : sum) schedule(static) if (n >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * (double)x[i];
    return sum;
}

/* x: (n), scaled in place. */
static void scale_in_place(float *x, int64_t n, float factor) {
#pragma omp parallel for schedule(static) if (n >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) x[i] *= factor;
}

static bool has_gradient(const mc_tensor *t) { return t->requires_grad && t->grad != NULL; }

mc_status mc_grad_clip_norm(mc_param_list *params, float max_norm, float *total_norm) {
    if (total_norm) *total_norm = 0.0f;
    if (!params) return mc_error(MC_ERR_ARG, "grad_clip_norm: the parameter list is NULL");
    if (!(max_norm > 0.0f) || !isfinite(max_norm))
        return mc_error(MC_ERR_ARG, "grad_clip_norm: max_norm is %g, expected a positive number",
                        max_norm);
    double sum = 0.0;
    for (int i = 0; i < params->count; i++) {
        const mc_tensor *t = params->items[i];
        if (!has_gradient(t)) continue;
        double part = sum_of_squares(t->grad, t->numel);
        if (!isfinite(part))
            return mc_error(MC_ERR_NUMERIC,
                            "grad_clip_norm: the gradient of %s is not finite (NaN or infinity); "
                            "nothing was clipped",
                            t->name);
        sum += part;
    }
    double norm = sqrt(sum);
    /* Finite in double, the norm may still be past float's range (two
     * gradients of 3e38): PyTorch's float32 norm is infinite there. */
    if (!isfinite((float)norm))
        return mc_error(MC_ERR_NUMERIC, "grad_clip_norm: the gradients' norm, %g, is past float's "
                        "range; nothing was clipped", norm);
    if (total_norm) *total_norm = (float)norm;
    double factor = (double)max_norm / (norm + 1e-6);
    if (factor >= 1.0) return MC_OK;
    for (int i = 0; i < params->count; i++) {
        mc_tensor *t = params->items[i];
        if (has_gradient(t)) scale_in_place(t->grad, t->numel, (float)factor);
    }
    return MC_OK;
}

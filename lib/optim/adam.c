/* Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), following
 * torch.optim.Adam / AdamW (1.13, _single_tensor_adam[w]) operation by
 * operation, with t this parameter's step count (1 on the first update):
 *
 *     AdamW only:  param = param * (1 - lr * weight_decay)   (decoupled decay)
 *     Adam only:   grad  = grad + weight_decay * param        (L2 in the gradient)
 *     exp_avg    = beta1 * exp_avg    + (1 - beta1) * grad
 *     exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
 *     step_size  = lr / (1 - beta1^t)
 *     denom      = sqrt(exp_avg_sq) / sqrt(1 - beta2^t) + eps  (eps AFTER the
 *                  bias-corrected square root, which is what PyTorch does)
 *     param      = param - step_size * exp_avg / denom
 *
 * The bias corrections are computed in double, as Python computes them;
 * the element-wise work is float32, as in PyTorch's CPU kernels. */
#include "optim/optim_internal.h"
#include "core/vector_clones.h"
#include "core/parallel.h"

#include <math.h>

MC_VECTOR_CLONES
void mc_adam_update(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, int64_t n,
                    const mc_adam_config *config, float lr, int64_t step, bool decoupled_decay) {
    const double bias_correction1 = 1.0 - pow((double)config->beta1, (double)step);
    const double bias_correction2 = 1.0 - pow((double)config->beta2, (double)step);
    const float step_size = (float)((double)lr / bias_correction1);
    const float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    const float beta1 = config->beta1, beta2 = config->beta2, eps = config->eps;
    const float one_minus_beta1 = (float)(1.0 - (double)config->beta1);
    const float one_minus_beta2 = (float)(1.0 - (double)config->beta2);
    /* AdamW shrinks the parameter; Adam adds the decay to the gradient. */
    const float shrink = decoupled_decay ? (float)(1.0 - (double)lr * config->weight_decay) : 1.0f;
    const float l2_decay = decoupled_decay ? 0.0f : config->weight_decay;
#pragma omp parallel for schedule(static) if (n >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        float p = param[i];
        if (decoupled_decay) p *= shrink;
        float g = grad[i];
        if (l2_decay != 0.0f) g += l2_decay * p;
        float m = beta1 * exp_avg[i] + one_minus_beta1 * g;
        float v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float denom = sqrtf(v) / bias_correction2_sqrt + eps;
        param[i] = p - step_size * (m / denom);
    }
}

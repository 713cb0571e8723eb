/* SGD with momentum, dampening, Nesterov and L2 weight decay, following
 * torch.optim.SGD (1.13, _single_tensor_sgd) operation by operation:
 *
 *     d = grad + weight_decay * param
 *     if momentum != 0:
 *         buf = d                                   (first step: a copy)
 *         buf = momentum * buf + (1 - dampening) * d (later steps)
 *         d = nesterov ? d + momentum * buf : buf
 *     param = param - lr * d
 *
 * Arithmetic is float32 per element, as PyTorch's CPU kernels do, so a step
 * matches PyTorch's to rounding. */
#include "optim/optim_internal.h"
#include "core/parallel.h"

void mc_sgd_update(float *param, const float *grad, float *momentum_buffer, int64_t n,
                   const mc_sgd_config *config, float lr, bool first_step) {
    const float weight_decay = config->weight_decay;
    const float momentum = config->momentum;
    const float keep_new = (float)(1.0 - (double)config->dampening); /* 1 - dampening */
    const bool nesterov = config->nesterov;
#pragma omp parallel for schedule(static) if (n >= MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) {
        float d = grad[i];
        if (weight_decay != 0.0f) d += weight_decay * param[i];
        if (momentum_buffer) {
            float buf = first_step ? d : momentum * momentum_buffer[i] + keep_new * d;
            momentum_buffer[i] = buf;
            d = nesterov ? d + momentum * buf : buf;
        }
        param[i] -= lr * d;
    }
}

/* Learning-rate schedules as pure functions of the step count, so that a
 * resumed run needs nothing but its restored step to continue the schedule
 * (no scheduler object with state of its own, unlike torch.optim.lr_scheduler).
 *
 * The cosine schedule with linear warmup follows the common definition of
 * Hugging Face transformers' get_cosine_schedule_with_warmup (half a cosine
 * period after a warmup that rises linearly from 0), with a floor min_lr. */
#include "mmchain/optim.h"

#include <math.h>

mc_lr_schedule mc_lr_constant(float base_lr) {
    return (mc_lr_schedule){.kind = MC_LR_CONSTANT, .base_lr = base_lr};
}

mc_lr_schedule mc_lr_step(float base_lr, int64_t step_size, float gamma) {
    return (mc_lr_schedule){
        .kind = MC_LR_STEP, .base_lr = base_lr, .step_size = step_size, .gamma = gamma};
}

mc_lr_schedule mc_lr_cosine(float base_lr, int64_t warmup_steps, int64_t total_steps,
                            float min_lr) {
    return (mc_lr_schedule){.kind = MC_LR_COSINE,
                            .base_lr = base_lr,
                            .warmup_steps = warmup_steps,
                            .total_steps = total_steps,
                            .min_lr = min_lr};
}

mc_status mc_lr_schedule_check(const mc_lr_schedule *s) {
    if (!s) return mc_error(MC_ERR_ARG, "lr schedule: NULL");
    if (!(s->base_lr >= 0.0f) || !isfinite(s->base_lr))
        return mc_error(MC_ERR_ARG, "lr schedule: base_lr is %g, expected >= 0", s->base_lr);
    switch (s->kind) {
    case MC_LR_CONSTANT: return MC_OK;
    case MC_LR_STEP:
        if (s->step_size <= 0)
            return mc_error(MC_ERR_ARG, "lr schedule (step): step_size is %lld, expected > 0",
                            (long long)s->step_size);
        if (!(s->gamma >= 0.0f) || !isfinite(s->gamma))
            return mc_error(MC_ERR_ARG, "lr schedule (step): gamma is %g, expected >= 0", s->gamma);
        return MC_OK;
    case MC_LR_COSINE:
        if (s->warmup_steps < 0)
            return mc_error(MC_ERR_ARG, "lr schedule (cosine): warmup_steps is %lld, expected >= 0",
                            (long long)s->warmup_steps);
        if (s->total_steps <= s->warmup_steps)
            return mc_error(MC_ERR_ARG,
                            "lr schedule (cosine): total_steps %lld must exceed warmup_steps %lld",
                            (long long)s->total_steps, (long long)s->warmup_steps);
        if (!(s->min_lr >= 0.0f && s->min_lr <= s->base_lr))
            return mc_error(MC_ERR_ARG, "lr schedule (cosine): min_lr is %g, expected in [0, %g]",
                            s->min_lr, s->base_lr);
        return MC_OK;
    }
    return mc_error(MC_ERR_ARG, "lr schedule: unknown kind %d", (int)s->kind);
}

static double cosine_lr(const mc_lr_schedule *s, int64_t step) {
    if (step < s->warmup_steps) return (double)s->base_lr * (double)step / (double)s->warmup_steps;
    double progress = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
    if (progress > 1.0) progress = 1.0;
    const double pi = 3.14159265358979323846;
    return s->min_lr + ((double)s->base_lr - s->min_lr) * 0.5 * (1.0 + cos(pi * progress));
}

float mc_lr_at(const mc_lr_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    switch (s->kind) {
    case MC_LR_CONSTANT: return s->base_lr;
    case MC_LR_STEP:
        if (s->step_size <= 0) return s->base_lr;
        return (float)((double)s->base_lr * pow((double)s->gamma, (double)(step / s->step_size)));
    case MC_LR_COSINE: return (float)cosine_lr(s, step);
    }
    return s->base_lr;
}

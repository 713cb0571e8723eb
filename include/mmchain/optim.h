/* mmchain — optimizers, gradient clipping and learning-rate schedules.
 *
 * An optimizer updates the tensors of an mc_param_list (nn.h) that have
 * requires_grad set, from their .grad buffers, with PyTorch's update rules
 * (torch.optim, version 1.13), operation for operation in float. The
 * hyper-parameters are floats: 1 - beta2 is 1 - 0.999f = 0.00099998713,
 * where PyTorch rounds the double 1 - 0.999 to 0.001f, a relative
 * difference of 1.3e-5 in that one factor:
 *
 *   SGD    d = g + wd*p;  with momentum: buf = d on the first step, then
 *          buf = momentum*buf + (1 - dampening)*d;  d = nesterov ? d + momentum*buf : buf;
 *          p -= lr*d
 *   Adam   g += wd*p (L2 penalty in the gradient);  m = b1*m + (1-b1)*g;
 *          v = b2*v + (1-b2)*g*g;  p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 *   AdamW  p *= 1 - lr*wd (decoupled decay, before the step), then Adam with wd = 0
 *
 * A typical step:
 *
 *     mc_graph_reset(g);                 (the previous step's tensors go)
 *     mc_params_zero_grad(&params);
 *     ... forward, mc_backward(g, loss) ...
 *     float norm;
 *     MC_TRY(mc_grad_clip_norm(&params, 1.0f, &norm));
 *     MC_TRY(mc_optimizer_set_lr(opt, mc_lr_at(&schedule, mc_optimizer_steps(opt))));
 *     MC_TRY(mc_optimizer_step(opt));
 *
 * Checkpoints: the optimizer's state is a set of named tensors,
 *     "optimizer.step"                       one element: steps taken so far
 *     "optimizer.momentum_buffer.<param>"    SGD with momentum
 *     "optimizer.exp_avg.<param>"            Adam / AdamW first moment
 *     "optimizer.exp_avg_sq.<param>"         Adam / AdamW second moment
 *     "optimizer.step.<param>"               only for a parameter whose own step
 *                                            count differs from optimizer.step
 *                                            (it was frozen for a while)
 * mc_optimizer_export_state copies them into a parameter list (for a
 * safetensors writer); mc_optimizer_import_state reads them back through a
 * lookup function (a safetensors file, a parameter list, ...). Hyper-
 * parameters are not part of the state: the program that resumes sets them. */
#ifndef MMCHAIN_OPTIM_H
#define MMCHAIN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configurations (PyTorch's defaults in the comments) ---- */

typedef struct mc_sgd_config {
    float lr;           /* required, >= 0 */
    float momentum;     /* 0 */
    float dampening;    /* 0 */
    float weight_decay; /* 0 */
    bool nesterov;      /* false; needs momentum > 0 and dampening == 0 */
} mc_sgd_config;

typedef struct mc_adam_config {
    float lr;           /* 1e-3 */
    float beta1, beta2; /* 0.9, 0.999; each in [0, 1) */
    float eps;          /* 1e-8 */
    float weight_decay; /* Adam: 0 (added to the gradient); AdamW: 1e-2 (decoupled) */
} mc_adam_config;

/* PyTorch's defaults: Adam (lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0) and
 * AdamW (the same with wd 1e-2). */
mc_adam_config mc_adam_defaults(void);
mc_adam_config mc_adamw_defaults(void);

/* ---- optimizer.c: the common object ---- */

typedef enum mc_optimizer_kind { MC_OPTIM_SGD, MC_OPTIM_ADAM, MC_OPTIM_ADAMW } mc_optimizer_kind;

typedef struct mc_optimizer mc_optimizer;

/* Create an optimizer over `params` (not owned; it must outlive the
 * optimizer and keep its tensors in the same order). Checks the settings.
 * The optimizer has one parameter group, group 0: `params` with config.lr and
 * config.weight_decay. */
mc_status mc_optimizer_sgd(mc_optimizer **out, mc_param_list *params, mc_sgd_config config);
mc_status mc_optimizer_adam(mc_optimizer **out, mc_param_list *params, mc_adam_config config);
mc_status mc_optimizer_adamw(mc_optimizer **out, mc_param_list *params, mc_adam_config config);
void mc_optimizer_free(mc_optimizer *opt);

/* Parameter groups, like torch.optim's param_groups: add another list of
 * tensors (not owned, as above) with its own learning rate and weight decay;
 * every other setting (momentum, betas, eps, ...) is the optimizer's. Groups
 * are numbered in the order they were added (the constructor's is 0) and
 * updated in that order; a tensor belongs to one group only. Add groups
 * before the first step. The checkpoint state is the same as for one list
 * holding all the groups' tensors in order: state is named by parameter, and
 * a group's lr and weight decay, like every hyperparameter, are not saved.
 *
 *     mc_optimizer_adamw(&opt, &matrices, config);          group 0: decayed
 *     mc_optimizer_add_group(opt, &biases, config.lr, 0.0f);  group 1: not decayed */
mc_status mc_optimizer_add_group(mc_optimizer *opt, mc_param_list *params, float lr,
                                 float weight_decay);
int mc_optimizer_group_count(const mc_optimizer *opt);
/* One group's learning rate; an error names a group that does not exist or
 * an lr that is negative or not finite. */
mc_status mc_optimizer_set_group_lr(mc_optimizer *opt, int group, float lr);
/* NaN for a group that does not exist. */
float mc_optimizer_get_group_lr(const mc_optimizer *opt, int group);

/* One update of every parameter with requires_grad and a gradient buffer
 * (a parameter whose grad is still NULL, never reached by backward, is
 * skipped, as PyTorch skips p.grad None). */
mc_status mc_optimizer_step(mc_optimizer *opt);
/* Zero the gradients of the optimizer's parameters (mc_params_zero_grad). */
void mc_optimizer_zero_grad(mc_optimizer *opt);

mc_optimizer_kind mc_optimizer_get_kind(const mc_optimizer *opt);
/* "sgd", "adam" or "adamw". */
const char *mc_optimizer_name(const mc_optimizer *opt);
/* The learning rate of the next step (a schedule sets it before each step):
 * set_lr sets every group's (an lr that is negative or not finite is an
 * error and changes none), get_lr returns group 0's. */
mc_status mc_optimizer_set_lr(mc_optimizer *opt, float lr);
float mc_optimizer_get_lr(const mc_optimizer *opt);
/* Steps taken so far (0 before the first). */
int64_t mc_optimizer_steps(const mc_optimizer *opt);

/* ---- optimizer.c: state for checkpoints ---- */

/* Append heap copies of the state tensors (names above) to `out`, which owns
 * them. Parameters that have not been updated yet have no state. */
mc_status mc_optimizer_export_state(const mc_optimizer *opt, mc_param_list *out);

/* Returns the tensor called `name`, or NULL when there is none. */
typedef const mc_tensor *(*mc_tensor_lookup_fn)(void *ctx, const char *name);

/* Replace the optimizer's state with the tensors found through `lookup`.
 * "optimizer.step" is required. A parameter with none of its state tensors
 * has no state (it never had a gradient, as in PyTorch's state_dict); one
 * with some must have all (momentum buffer for SGD with momentum, exp_avg and
 * exp_avg_sq for Adam/AdamW), each with the parameter's shape. A missing or
 * mis-shaped tensor is an error naming it; the optimizer is left unchanged. */
mc_status mc_optimizer_import_state(mc_optimizer *opt, mc_tensor_lookup_fn lookup, void *ctx);
/* The same, looking the names up in a parameter list (mc_params_find). An
 * "optimizer.*" tensor of the list that the import would not read (state
 * of a parameter this optimizer does not have, or of a buffer it does not
 * keep) is an error naming it: dropped, it would leave the run with fresh
 * moments and no word said. mc_checkpoint_load refuses such a file too. */
mc_status mc_optimizer_import_state_from_list(mc_optimizer *opt, const mc_param_list *state);

/* ---- grad_clip.c: torch.nn.utils.clip_grad_norm_ ----
 * The L2 norm of all gradients of `params` with requires_grad, taken together
 * as one vector, goes into *total_norm (may be NULL). When it exceeds
 * max_norm every gradient is scaled by max_norm / (total_norm + 1e-6).
 * A NaN or infinite norm is an MC_ERR_NUMERIC naming the first parameter
 * with a non-finite gradient (or saying that finite gradients have a norm
 * past float's range), and nothing is scaled (PyTorch's
 * error_if_nonfinite=True). */
mc_status mc_grad_clip_norm(mc_param_list *params, float max_norm, float *total_norm);

/* ---- schedule.c: learning rate as a pure function of the step ----
 * `step` counts the optimizer steps already taken (0 for the first update),
 * i.e. mc_optimizer_steps() just before mc_optimizer_step(), so a resumed
 * run continues the schedule from its restored step count. */
typedef enum mc_lr_kind {
    MC_LR_CONSTANT, /* base_lr */
    MC_LR_STEP,     /* base_lr * gamma^floor(step / step_size)  (torch StepLR) */
    MC_LR_COSINE    /* linear warmup, then cosine decay to min_lr (below) */
} mc_lr_kind;

typedef struct mc_lr_schedule {
    mc_lr_kind kind;
    float base_lr;
    /* MC_LR_STEP */
    int64_t step_size; /* > 0 */
    float gamma;
    /* MC_LR_COSINE: for step < warmup_steps, base_lr * step / warmup_steps;
     * then min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * progress)) with
     * progress = (step - warmup_steps) / (total_steps - warmup_steps),
     * clamped to [0, 1]; min_lr once step >= total_steps. */
    int64_t warmup_steps; /* >= 0 */
    int64_t total_steps;  /* > warmup_steps */
    float min_lr;
} mc_lr_schedule;

mc_lr_schedule mc_lr_constant(float base_lr);
mc_lr_schedule mc_lr_step(float base_lr, int64_t step_size, float gamma);
mc_lr_schedule mc_lr_cosine(float base_lr, int64_t warmup_steps, int64_t total_steps, float min_lr);
/* Checks the fields above; names the one that is wrong. */
mc_status mc_lr_schedule_check(const mc_lr_schedule *schedule);
/* The learning rate for the update that follows `step` steps (step >= 0). */
float mc_lr_at(const mc_lr_schedule *schedule, int64_t step);

#ifdef __cplusplus
}
#endif
#endif

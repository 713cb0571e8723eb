/* Private to lib/optim: the optimizer object and the per-parameter update
 * kernels that optimizer.c dispatches to (sgd.c, adam.c). */
#ifndef MMCHAIN_OPTIM_INTERNAL_H
#define MMCHAIN_OPTIM_INTERNAL_H

#include "mmchain/optim.h"

/* What the optimizer remembers about one parameter. */
typedef struct mc_param_state {
    float *buf1;   /* SGD momentum_buffer or Adam exp_avg (numel floats); NULL until needed */
    float *buf2;   /* Adam exp_avg_sq (numel floats); NULL for SGD */
    int64_t numel; /* the parameter's element count when the buffers were made */
    int64_t steps; /* updates this parameter has received (Adam's bias-correction t) */
} mc_param_state;

/* One parameter group: its tensors and the settings that may differ between
 * groups (PyTorch's param_groups entries). */
typedef struct mc_param_group {
    mc_param_list *params; /* not owned */
    int n_params;          /* params->count when the group was added: the list must not change */
    mc_param_state *state; /* n_params entries, parallel to params->items */
    float lr;
    float weight_decay;
} mc_param_group;

struct mc_optimizer {
    mc_optimizer_kind kind;
    mc_param_group *groups; /* n_groups entries; group 0 comes from the constructor */
    int n_groups;
    mc_sgd_config sgd;   /* the settings shared by all groups (lr and weight_decay: group 0's) */
    mc_adam_config adam;
    int64_t steps;
};

/* Whether the state import reads a tensor called `name` (what
 * mc_optimizer_export_state would write for this optimizer and its
 * parameters): "optimizer.step", or "optimizer.<buffer or step>.<param>"
 * for one of its buffers and one of its parameters. A checkpoint's state
 * tensor it would not read (another model's parameter names, momentum
 * buffers for an SGD without momentum) is state the load would drop. */
bool mc_optimizer_reads_state(const mc_optimizer *opt, const char *name);

/* One SGD update of n elements. first_step: the momentum buffer is new and is
 * set to the (decayed) gradient instead of being blended into.
 *   param: (n), grad: (n), momentum_buffer: (n) or NULL when momentum == 0 */
void mc_sgd_update(float *param, const float *grad, float *momentum_buffer, int64_t n,
                   const mc_sgd_config *config, float lr, bool first_step);

/* One Adam (decoupled_decay false) or AdamW (true) update of n elements;
 * step is this parameter's update count including this one (t >= 1).
 *   param: (n), grad: (n), exp_avg: (n), exp_avg_sq: (n) */
void mc_adam_update(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, int64_t n,
                    const mc_adam_config *config, float lr, int64_t step, bool decoupled_decay);
/* mc_adam_update computed one element at a time, whatever the CPU: the
 * reference the vectorised kernel is tested against (the same bits). */
void mc_adam_update_reference(float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                              int64_t n, const mc_adam_config *config, float lr, int64_t step,
                              bool decoupled_decay);

#endif

/* mmchain — parameters and layers.
 *
 * A model's state is an mc_param_list: an ordered list of named heap tensors
 * that it owns. Trainable parameters have requires_grad set; buffers (batch
 * norm running statistics) do not. Names follow the PyTorch state_dict of the
 * model's source ("layer1.0.conv1.weight"), so checkpoints load by name, the
 * optimizer and checkpointing are flat loops, and freezing is
 * mc_tensor_set_requires_grad(t, false). */
#ifndef MMCHAIN_NN_H
#define MMCHAIN_NN_H

#include <stdbool.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mc_param_list {
    mc_tensor **items;
    int count;
    int capacity;
} mc_param_list;

/* Create a zeroed heap tensor named `name` (a printf format), add it to the
 * list (which owns it) and return it in *out. trainable sets requires_grad. */
mc_status mc_params_new(mc_param_list *list, mc_tensor **out, mc_shape shape, bool trainable,
                        const char *name_fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
/* Add an existing heap tensor; the list takes ownership. */
mc_status mc_params_add(mc_param_list *list, mc_tensor *t);
/* The tensor named `name`, or NULL. */
mc_tensor *mc_params_find(const mc_param_list *list, const char *name);
/* Free every tensor and the list's storage. */
void mc_params_free(mc_param_list *list);
void mc_params_zero_grad(mc_param_list *list);
/* Number of elements over trainable tensors (or all, when all is true). */
int64_t mc_params_numel(const mc_param_list *list, bool all);
/* requires_grad on every tensor whose name starts with `prefix` ("" = all)
 * and that is a parameter (not a buffer: names ending in running_mean,
 * running_var, num_batches_tracked are left alone). Returns how many. */
int mc_params_set_trainable(mc_param_list *list, const char *prefix, bool trainable);

/* PyTorch's default initialisations, from `rng`. */
/* nn.Linear / nn.Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the
 * weight (kaiming_uniform with a = sqrt(5)) and the bias. */
void mc_init_default_uniform(mc_tensor *t, int64_t fan_in, mc_rng *rng);
/* kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, 2 / fan_out). */
void mc_init_kaiming_normal_fan_out(mc_tensor *t, int64_t fan_out, mc_rng *rng);

#ifdef __cplusplus
}
#endif
#endif

/* Shared by the layers of lib/nn (not public). */
#ifndef MMCHAIN_NN_LAYER_INTERNAL_H
#define MMCHAIN_NN_LAYER_INTERNAL_H

#include <stddef.h>

#include "mmchain/nn.h"

/* A new zeroed parameter "<prefix>.<leaf>" (just "<leaf>" when prefix is
 * empty) in `params`. trainable sets requires_grad. */
mc_status mc_layer_param(mc_param_list *params, mc_tensor **out, mc_shape shape, bool trainable,
                         const char *prefix, const char *leaf);

/* The gain and bias of a normalisation layer (batch, group and layer norm):
 * "<prefix>.weight" (width) filled with 1 and "<prefix>.bias" (width) left
 * 0, both trainable: the identity until trained or loaded, as PyTorch
 * initialises them. */
mc_status mc_layer_norm_affine(mc_param_list *params, const char *prefix, int width,
                               mc_tensor **weight, mc_tensor **bias);

/* A layer's init adds all its tensors or none: with status an error, the
 * tensors added to `params` since it held `first` are freed and dropped
 * (so that a retry under the same prefix makes no second tensor of a
 * name). Returns status. */
mc_status mc_layer_init_end(mc_param_list *params, int first, mc_status status);

/* "<prefix>.<child>" into buf (len bytes), the prefix of a sub-layer. */
const char *mc_layer_child(char *buf, size_t len, const char *prefix, const char *child);

/* residual + self_attn(x) and residual + mlp(x), the halves of a pre-norm
 * transformer block, with the residual added by the last product
 * (mc_linear_residual): one pass and one tensor fewer than adding it after.
 * residual may be NULL (mc_self_attention_forward, mc_mlp_forward). */
mc_status mc_self_attention_forward_residual(mc_graph *g, const mc_self_attention *layer,
                                             mc_tensor *x, mc_tensor *residual, mc_tensor **out);
mc_status mc_mlp_forward_residual(mc_graph *g, const mc_mlp *layer, mc_tensor *x,
                                  mc_tensor *residual, mc_tensor **out);

#endif

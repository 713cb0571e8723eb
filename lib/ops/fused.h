/* The naive reference kernels that the fused ops' fast kernels are tested
 * against (internal, not installed). The fused ops themselves,
 * mc_batchnorm2d_relu and mc_add_relu, are public (include/mmchain/ops.h).
 *
 * Why fuse: a training step keeps every op output that a backward reads.
 * ResNet's conv -> BN -> ReLU would keep three tensors per unit (conv out,
 * BN out, ReLU out); relu(BN(x)) as one op keeps two, and relu(a + b) at the
 * end of each residual block keeps one instead of two. That is the memory
 * PyTorch saves with nn.ReLU(inplace=True). Each fused op gives bit for bit
 * the results of the ops it replaces (tests/test_ops_conv.c). */
#ifndef MMCHAIN_OPS_FUSED_H
#define MMCHAIN_OPS_FUSED_H

#include <stdbool.h>
#include <stdint.h>

#include "mmchain/ops.h"

/* The normalisation one element at a time (the reference of the op's
 * vectorised kernel): y = (x - mean) * (invstd * weight) + bias, then
 * max(y, 0) when relu. x, y: (rows, C); mean, invstd, weight, bias: (C);
 * weight, bias may be NULL (1 and 0). */
void mc_batchnorm2d_reference_normalize(int64_t rows, int64_t c, const float *x, const float *mean,
                                        const float *invstd, const float *weight,
                                        const float *bias, bool relu, float *y);

/* pool.c: max pooling one window element at a time (the reference of
 * mc_maxpool2d's kernel). x: (N, H, W, C) -> out: (N, OH, OW, C), floor
 * mode, padding -infinity, ties to the first pixel in scan order, NaN wins.
 * argmax: (N, OH, OW, C) (y * W + x of the winner) or NULL. */
void mc_maxpool2d_reference(const float *x, int64_t n, int64_t h, int64_t w, int64_t c,
                            int kernel, int stride, int padding, float *out, int32_t *argmax);

#endif

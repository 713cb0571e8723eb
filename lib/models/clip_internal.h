/* Shared by the two CLIP towers (not public). */
#ifndef MMCHAIN_CLIP_INTERNAL_H
#define MMCHAIN_CLIP_INTERNAL_H

#include "mmchain/clip.h"

/* One pre-norm transformer block:
 *   x = x + out_proj(attention(LN1(x)))
 *   x = x + fc2(quick_gelu(fc1(LN2(x))))
 * x: (B, T, W) -> *out (B, T, W). */
mc_status mc_clip_block_forward(mc_graph *g, const mc_clip_block *block, mc_tensor *x, int heads,
                                bool causal, float eps, mc_tensor **out);

/* All blocks of a tower in turn. In no-grad mode each block's intermediate
 * activations are released once its output exists, so inference memory holds
 * one block's worth, not the whole network's. */
mc_status mc_clip_blocks_forward(mc_graph *g, const mc_clip_block *blocks, int layers, mc_tensor *x,
                                 int heads, bool causal, float eps, mc_tensor **out);

#endif

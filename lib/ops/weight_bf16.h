/* The bf16 copy of a weight (weight_bf16.c): what bf16 graphs multiply by,
 * made once per change of the weight instead of once per product. */
#ifndef MMCHAIN_OPS_WEIGHT_BF16_H
#define MMCHAIN_OPS_WEIGHT_BF16_H

#include <stdint.h>

#include "mmchain/tensor.h"

/* Writes a weight's data in the order its op multiplies by: arranged: as
 * many floats as the weight has, in that order. */
typedef void (*mc_weight_arrange_fn)(const void *ctx, const float *weight, float *arranged);

/* The bf16 values of t's data, rounded as the products' packing rounds
 * (mc_bf16_bits_of_products: mc_bf16_round, except that on vdpbf16ps a
 * subnormal float becomes zero), arranged by `arrange` (NULL: as stored;
 * ctx is its argument), for mc_gemm_bf16_b. Made on first use and kept on
 * t (freed with it) until t->version or t->data changes, another
 * arrangement is asked for, or the packing's rounding changes: with an
 * optimizer step between training steps, once per step. *out is NULL
 * when there is no copy to keep: t is not a heap tensor (activations are
 * rounded where they are packed), or bf16 products do not run on our
 * kernel (gemm.c). MC_ERR_NOMEM when the copy cannot be allocated. */
mc_status mc_weight_bf16(mc_tensor *t, mc_weight_arrange_fn arrange, const void *ctx,
                         const uint16_t **out);

/* The same values packed in the GEMM's panel order for products by t's
 * transpose (t as (N, K), a linear layer's (out, in) weight; its forward
 * product x t^T), for mc_gemm_bf16_panels: the products read them in place
 * instead of packing them each call. Kept as mc_weight_bf16 keeps its
 * copy, in a slot of its own (t->bf16_panels): a weight read both ways
 * holds both forms. A graph that also multiplies by t the other way
 * (training: the input gradient) asks for mc_weight_bf16 throughout, so
 * that one form serves it. *out is NULL when there is nothing to keep, as
 * for mc_weight_bf16. */
mc_status mc_weight_bf16_panels(mc_tensor *t, int64_t N, int64_t K, const float **out);

#endif

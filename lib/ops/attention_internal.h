/* attention.c's internals, shared with its tests (not part of the installed
 * API): the sizes of one attention call and the fast kernels mc_attention
 * uses. The naive reference kernels they are tested against are in naive.h. */
#ifndef MMCHAIN_OPS_ATTENTION_INTERNAL_H
#define MMCHAIN_OPS_ATTENTION_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "mmchain/ops.h"

typedef struct mc_attention_dims {
    int64_t batch;    /* B */
    int64_t seq;      /* T: queries and keys */
    int64_t width;    /* D = heads * head_dim: the row stride of q, k, v, out */
    int64_t heads;    /* H */
    int64_t head_dim; /* D / H */
    bool causal;      /* query i sees keys 0..i only */
    mc_precision precision; /* of the two products' operands (the graph's) */
} mc_attention_dims;

/* The fast forward: a GEMM per (b, h) for S = Q K^T and O = P V with the
 * masked softmax between them, batch items taken probs_items at a time,
 * each thread taking whole items (or, with fewer items than threads, the
 * products threaded over heads and the softmax over rows).
 *   q, k, v: (B, T, D); out: (B, T, D), overwritten;
 *   probs: (probs_items, H, T, T), overwritten with the softmax probabilities
 *   (masked entries 0). With probs_items >= B it ends up holding every
 *   item's (what backward needs); with fewer it is reused chunk by chunk. */
void mc_attention_forward_fast(const mc_attention_dims *d, const float *q, const float *k,
                               const float *v, float *out, float *probs, int64_t probs_items);

/* The fast backward: ADDS into dq, dk, dv (B, T, D); each may be NULL.
 *   q, k, v, dout: (B, T, D); probs: (B, H, T, T) from the forward;
 *   scratch: (scratch_items, H, T, T) for the score gradients of a chunk. */
void mc_attention_backward_fast(const mc_attention_dims *d, const float *q, const float *k,
                                const float *v, const float *probs, const float *dout, float *dq,
                                float *dk, float *dv, float *scratch, int64_t scratch_items);

/* How many batch items' (H, T, T) squares fit the 32 MB chunk (1..B). */
int64_t mc_attention_chunk_items(const mc_attention_dims *d);


#endif

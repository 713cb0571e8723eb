/* attention.c's internals, shared with its tests (not part of the installed
 * API): the sizes of one attention call, the fast kernels mc_attention uses
 * and the naive reference kernels they are tested against. */
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
} mc_attention_dims;

/* The fast forward (OpenMP over batch x heads).
 *   q, k, v: (B, T, D); out: (B, T, D), overwritten;
 *   probs: (B, H, T, T), overwritten with the softmax probabilities (masked
 *   entries 0), or NULL when nothing is saved for backward — then
 *   row_scratch: (omp_get_max_threads(), T) holds one row at a time. */
void mc_attention_forward_fast(const mc_attention_dims *d, const float *q, const float *k,
                               const float *v, float *out, float *probs, float *row_scratch);

/* The fast backward: ADDS into dq, dk, dv (B, T, D); each may be NULL.
 *   q, k, v, out, dout: (B, T, D); probs: (B, H, T, T) from the forward. */
void mc_attention_backward_fast(const mc_attention_dims *d, const float *q, const float *k,
                                const float *v, const float *out, const float *probs,
                                const float *dout, float *dq, float *dk, float *dv);

/* The textbook definitions, one (b, h) at a time, in double precision.
 *   q, k, v: (B, T, D); out: (B, T, D) overwritten; probs: (B, H, T, T) overwritten. */
void mc_attention_forward_naive(const mc_attention_dims *d, const float *q, const float *k,
                                const float *v, float *out, float *probs);
/* ADDS into dq, dk, dv (B, T, D) (each may be NULL); probs from a forward. */
void mc_attention_backward_naive(const mc_attention_dims *d, const float *q, const float *k,
                                 const float *v, const float *probs, const float *dout, float *dq,
                                 float *dk, float *dv);

#endif

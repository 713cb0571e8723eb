/* A scratch buffer that only grows and is reused across calls: the
 * per-thread workspaces of conv (im2col columns, repacked weights),
 * Winograd (transformed tiles) and the GEMM (packed panels). Keeping them
 * saves a malloc, and the page faults of fresh memory, on every call. */
#ifndef MMCHAIN_CORE_SCRATCH_H
#define MMCHAIN_CORE_SCRATCH_H

#include <stddef.h>
#include <stdint.h>

#include "mmchain/error.h"

typedef struct mc_scratch {
    float *data;     /* 64-byte aligned (whole AVX-512 vectors) */
    size_t capacity; /* floats */
} mc_scratch;

/* Room for at least `floats` floats in *out (the old contents are lost).
 * MC_ERR_NOMEM with a message naming `what` when memory runs out. */
mc_status mc_scratch_reserve(mc_scratch *buffer, int64_t floats, const char *what, float **out);
/* Buffers are thread-local (`static _Thread_local mc_scratch`): a thread's
 * are freed when the thread ends, OpenMP's workers included (scratch.c). */
/* Give the memory back (the buffer stays usable: it grows again). */
void mc_scratch_free(mc_scratch *buffer);

#endif

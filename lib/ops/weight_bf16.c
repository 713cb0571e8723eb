/* Weights in bf16, converted once per change (weight_bf16.h).
 *
 * A bf16 graph's products round both operands to bf16 where they are
 * packed. A weight is packed again by every product that reads it (the
 * forward pass and the input gradient, once per thread that takes a part
 * of the output), while it changes only when the optimizer steps or a file
 * is loaded. So its bf16 values are made once, kept on the tensor, and
 * packed from there: the GEMM reads half the bytes and rounds nothing. The
 * tensor's version (tensor.h) says when they are stale: every write of the
 * library bumps it (optimizer steps, loads, copies, fills; mc_tensor_touch
 * for the user's own writes).
 *
 * The values are exactly those the packing would round to, so a product
 * with the copy equals, bit for bit, one that rounds the fp32 weight itself
 * (tests/test_ops_bf16.c checks this across optimizer steps). */
#include "ops/weight_bf16.h"

#include "mmchain/ops.h"
#include "ops/gemm_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct mc_tensor_bf16 {
    uint64_t version;  /* t->version the values were made from */
    const float *data; /* t->data they were made from */
    int64_t numel;
    mc_weight_arrange_fn arrange; /* the order they are in (NULL: as stored) */
    uint16_t values[];            /* numel bf16 values */
};

/* One copy is made at a time: ops of two graphs on two threads may share a
 * model. */
static pthread_mutex_t making = PTHREAD_MUTEX_INITIALIZER;

static bool is_current(const struct mc_tensor_bf16 *copy, const mc_tensor *t,
                       mc_weight_arrange_fn arrange) {
    return copy && copy->version == t->version && copy->data == t->data &&
           copy->numel == t->numel && copy->arrange == arrange;
}

/* The bf16 bits of values[0..n) into bits, one at a time: the reference,
 * and the kernel of CPUs without AVX-512F. values, bits: (n). */
static void round_to_bf16_reference(const float *values, int64_t n, uint16_t *bits) {
    for (int64_t i = 0; i < n; i++) {
        float rounded = mc_bf16_round(values[i]);
        uint32_t word;
        memcpy(&word, &rounded, sizeof word);
        bits[i] = (uint16_t)(word >> 16);
    }
}

/* round_to_bf16_reference's bits, 16 at a time where the CPU has AVX-512F
 * (the same rounding, tested), in parts of 4096 among the threads: a
 * ResNet-50 has 25 million weights to round after every optimizer step.
 * values, bits: (n). */
enum { ROUNDING_PART = 4096 };

static void round_to_bf16(const float *values, int64_t n, uint16_t *bits) {
    const int64_t parts = (n + ROUNDING_PART - 1) / ROUNDING_PART;
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
    for (int64_t part = 0; part < parts; part++) {
        const int64_t start = part * ROUNDING_PART;
        const int64_t count = n - start < ROUNDING_PART ? n - start : ROUNDING_PART;
        if (!mc_bf16_bits_avx512(values + start, count, bits + start))
            round_to_bf16_reference(values + start, count, bits + start);
    }
}

static mc_status make_copy(mc_tensor *t, mc_weight_arrange_fn arrange, const void *ctx) {
    struct mc_tensor_bf16 *copy = t->bf16;
    if (!copy || copy->numel != t->numel) {
        free(t->bf16);
        t->bf16 = NULL;
        copy = malloc(sizeof *copy + (size_t)t->numel * sizeof(uint16_t));
        if (!copy) return mc_error(MC_ERR_NOMEM, "%s: no memory for its bf16 copy", t->name);
        t->bf16 = copy;
    }
    copy->version = t->version;
    copy->data = t->data;
    copy->numel = t->numel;
    copy->arrange = arrange;
    if (!arrange) {
        round_to_bf16(t->data, t->numel, copy->values);
        return MC_OK;
    }
    float *arranged = malloc((size_t)t->numel * sizeof(float));
    if (!arranged) {
        copy->data = NULL; /* not current */
        return mc_error(MC_ERR_NOMEM, "%s: no memory to arrange its bf16 copy", t->name);
    }
    arrange(ctx, t->data, arranged);
    round_to_bf16(arranged, t->numel, copy->values);
    free(arranged);
    return MC_OK;
}

mc_status mc_weight_bf16(mc_tensor *t, mc_weight_arrange_fn arrange, const void *ctx,
                         const uint16_t **out) {
    *out = NULL;
    if (!t->on_heap || !mc_gemm_bf16_runs()) return MC_OK;
    pthread_mutex_lock(&making);
    mc_status status = is_current(t->bf16, t, arrange) ? MC_OK : make_copy(t, arrange, ctx);
    if (status == MC_OK) *out = t->bf16->values;
    pthread_mutex_unlock(&making);
    return status;
}

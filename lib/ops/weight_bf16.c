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
 * (tests/test_ops_bf16.c checks this across optimizer steps).
 *
 * Two forms, each in a slot of its own on the tensor: the copy (t->bf16),
 * as stored or in the order a conv's columns need, which the GEMM packs
 * from; and the panels (t->bf16_panels), already in the micro-kernel's
 * order, which an unrecorded linear op's product reads in place. Separate
 * slots, because a product keeps reading the form it was handed after the
 * lock below is released: making the other form in the same buffer would
 * rewrite (or free) it under a graph that runs on another thread. */
#include "ops/weight_bf16.h"

#include "mmchain/ops.h"
#include "ops/gemm_internal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct mc_tensor_bf16 {
    uint64_t version;  /* t->version the values were made from */
    const float *data; /* t->data they were made from */
    int64_t numel;
    mc_weight_arrange_fn arrange; /* the order they are in (NULL: as stored) */
    int64_t panel_rows;           /* panels: the N they were packed for; 0: a copy */
    mc_bf16_bits_fn rounding;     /* the products' rounding they were made with */
    size_t capacity;              /* bytes of values */
    /* numel bf16 values, or the panels (aligned: the GEMM loads them so) */
    _Alignas(64) uint16_t values[];
};

/* One copy is made at a time: ops of two graphs on two threads may share a
 * model. */
static pthread_mutex_t making = PTHREAD_MUTEX_INITIALIZER;

/* Made from t's data as it is now, in this form, with `rounding`, the one
 * the products' packing does now (it changes with
 * mc_gemm_bf16_force_emulation). */
static bool is_current(const struct mc_tensor_bf16 *copy, const mc_tensor *t,
                       mc_weight_arrange_fn arrange, int64_t panel_rows,
                       mc_bf16_bits_fn rounding) {
    return copy && copy->version == t->version && copy->data == t->data &&
           copy->numel == t->numel && copy->arrange == arrange &&
           copy->panel_rows == panel_rows && copy->rounding == rounding;
}

/* values[0..n) rounded to bf16 bits by `rounding`, in parts of 4096 among
 * the threads: a ResNet-50 has 25 million weights to round after every
 * optimizer step. `rounding` is mc_bf16_bits_of_products(), the packing's
 * own (vcvtne2ps2bf16 on vdpbf16ps, mc_bf16_round's bits on the
 * emulation), not mc_bf16_round's everywhere: so the copy gives the
 * products bit for bit for every value, the largest subnormals included
 * (mc_bf16_round takes them up to 2^-126, vcvtne2ps2bf16 to zero); and
 * vcvtne2ps2bf16 is the faster of the two. values, bits: (n). */
enum { ROUNDING_PART = 4096 };

static void round_to_bf16(mc_bf16_bits_fn rounding, const float *values, int64_t n,
                          uint16_t *bits) {
    const int64_t parts = (n + ROUNDING_PART - 1) / ROUNDING_PART;
#pragma omp parallel for schedule(static) if (n >= (1 << 16))
    for (int64_t part = 0; part < parts; part++) {
        const int64_t start = part * ROUNDING_PART;
        const int64_t count = n - start < ROUNDING_PART ? n - start : ROUNDING_PART;
        rounding(values + start, count, bits + start);
    }
}

/* *slot (t->bf16 or t->bf16_panels) with room for `bytes` of values
 * (64-byte aligned), marked not current. */
static mc_status reserve_form(mc_tensor *t, struct mc_tensor_bf16 **slot, size_t bytes) {
    struct mc_tensor_bf16 *form = *slot;
    if (!form || form->capacity < bytes) {
        free(*slot);
        *slot = NULL;
        const size_t size = (sizeof *form + bytes + 63) / 64 * 64; /* aligned_alloc's rule */
        form = aligned_alloc(64, size);
        if (!form) return mc_error(MC_ERR_NOMEM, "%s: no memory for its bf16 copy", t->name);
        form->capacity = bytes;
        *slot = form;
    }
    form->data = NULL; /* not current until made */
    return MC_OK;
}

static void mark_made(struct mc_tensor_bf16 *form, const mc_tensor *t, mc_weight_arrange_fn arrange,
                      int64_t panel_rows, mc_bf16_bits_fn rounding) {
    form->version = t->version;
    form->data = t->data;
    form->numel = t->numel;
    form->arrange = arrange;
    form->panel_rows = panel_rows;
    form->rounding = rounding;
}

static mc_status make_copy(mc_tensor *t, mc_weight_arrange_fn arrange, const void *ctx,
                           mc_bf16_bits_fn rounding) {
    MC_TRY(reserve_form(t, &t->bf16, (size_t)t->numel * sizeof(uint16_t)));
    if (!arrange) {
        round_to_bf16(rounding, t->data, t->numel, t->bf16->values);
    } else {
        float *arranged = malloc((size_t)t->numel * sizeof(float));
        if (!arranged)
            return mc_error(MC_ERR_NOMEM, "%s: no memory to arrange its bf16 copy", t->name);
        arrange(ctx, t->data, arranged);
        round_to_bf16(rounding, arranged, t->numel, t->bf16->values);
        free(arranged);
    }
    mark_made(t->bf16, t, arrange, 0, rounding);
    return MC_OK;
}

mc_status mc_weight_bf16(mc_tensor *t, mc_weight_arrange_fn arrange, const void *ctx,
                         const uint16_t **out) {
    *out = NULL;
    const mc_bf16_bits_fn rounding = mc_bf16_bits_of_products();
    if (!t->on_heap || !mc_gemm_bf16_runs() || !rounding) return MC_OK;
    pthread_mutex_lock(&making);
    mc_status status = is_current(t->bf16, t, arrange, 0, rounding)
                           ? MC_OK
                           : make_copy(t, arrange, ctx, rounding);
    if (status == MC_OK) *out = t->bf16->values;
    pthread_mutex_unlock(&making);
    return status;
}

/* The panels of t as (N, K): rounded as make_copy rounds, then packed. */
static mc_status make_panels(mc_tensor *t, int64_t N, int64_t K, mc_bf16_bits_fn rounding) {
    const int64_t slots = mc_bf16_panels_slots(N, K);
    uint16_t *rounded = malloc((size_t)t->numel * sizeof *rounded);
    if (!rounded) return mc_error(MC_ERR_NOMEM, "%s: no memory to round its bf16 panels", t->name);
    mc_status status = reserve_form(t, &t->bf16_panels, (size_t)slots * sizeof(float));
    if (status == MC_OK) {
        round_to_bf16(rounding, t->data, t->numel, rounded);
        mc_bf16_pack_panels(rounded, N, K, (float *)t->bf16_panels->values);
        mark_made(t->bf16_panels, t, NULL, N, rounding);
    }
    free(rounded);
    return status;
}

mc_status mc_weight_bf16_panels(mc_tensor *t, int64_t N, int64_t K, const float **out) {
    *out = NULL;
    const mc_bf16_bits_fn rounding = mc_bf16_bits_of_products();
    if (!t->on_heap || !mc_gemm_bf16_runs() || !rounding || mc_bf16_panels_slots(N, K) <= 0)
        return MC_OK;
    if (N * K != t->numel)
        return mc_error(MC_ERR_SHAPE, "%s: %lld values cannot be packed as (%lld, %lld)", t->name,
                        (long long)t->numel, (long long)N, (long long)K);
    pthread_mutex_lock(&making);
    mc_status status = is_current(t->bf16_panels, t, NULL, N, rounding)
                           ? MC_OK
                           : make_panels(t, N, K, rounding);
    if (status == MC_OK) *out = (const float *)t->bf16_panels->values;
    pthread_mutex_unlock(&making);
    return status;
}

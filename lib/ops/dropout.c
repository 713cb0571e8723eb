/* Dropout (Srivastava et al. 2014), "inverted" as in PyTorch: in training,
 * each element is zeroed with probability p and the survivors are scaled by
 * 1/(1-p), so the expected value is unchanged and evaluation needs no
 * rescaling. The per-element multiplier (0 or 1/(1-p)) is saved, and the
 * backward multiplies the gradient by the same mask.
 *
 * The mask is drawn sequentially from the caller's RNG, so the same seed
 * gives the same mask whatever the thread count. */
#include "mmchain/ops.h"
#include "core/parallel.h"
#include "ops/ops_internal.h"

typedef struct dropout_saved {
    float *mask; /* (numel): 0 or 1/(1-p) */
} dropout_saved;

static mc_status dropout_backward(mc_node *node) {
    mc_tensor *x = node->in[0], *y = node->out;
    const dropout_saved *saved = node->saved;
    float *gx;
    MC_TRY(mc_grad_buffer(node->graph, x, &gx));
    const float *dy = y->grad, *mask = saved->mask;
    int64_t n = x->numel;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) gx[i] += dy[i] * mask[i];
    return MC_OK;
}

/* mask: (n) filled with 0 (probability p) or 1/(1-p). */
static void draw_mask(float *mask, int64_t n, float p, mc_rng *rng) {
    float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    for (int64_t i = 0; i < n; i++) mask[i] = mc_rng_uniform(rng) < (double)p ? 0.0f : keep_scale;
}

mc_status mc_dropout(mc_graph *g, mc_tensor *x, float p, bool training, mc_rng *rng,
                     mc_tensor **out) {
    *out = NULL;
    if (!x) return mc_error(MC_ERR_ARG, "dropout: input is NULL");
    if (!(p >= 0.0f && p <= 1.0f))
        return mc_error(MC_ERR_ARG, "dropout on %s: p = %g, expected a probability in [0, 1]",
                        x->name, (double)p);
    if (!training || p == 0.0f) {
        /* The identity: hand x itself back, as F.dropout does in eval mode. */
        *out = x;
        return MC_OK;
    }
    if (!rng) return mc_error(MC_ERR_ARG, "dropout on %s: training with p = %g needs an rng",
                              x->name, (double)p);
    float *mask;
    MC_TRY(mc_graph_alloc(g, (size_t)x->numel * sizeof(float), (void **)&mask));
    draw_mask(mask, x->numel, p, rng);
    mc_tensor *y;
    MC_TRY(mc_graph_tensor(g, x->shape, "dropout", &y));
    int64_t n = x->numel;
    const float *xd = x->data;
#pragma omp parallel for simd if (n > MC_PARALLEL_MIN_WORK)
    for (int64_t i = 0; i < n; i++) y->data[i] = xd[i] * mask[i];
    dropout_saved saved = {.mask = mask};
    MC_TRY(mc_op_record_saved(g, "dropout", dropout_backward, y, 1, &x, &saved, sizeof saved));
    *out = y;
    return MC_OK;
}

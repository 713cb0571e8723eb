/* Multi-head scaled dot-product attention (Vaswani et al., 2017), forward and
 * backward side by side.
 *
 * q, k, v are (B, T, D) with D = H * head_dim; head h owns the columns
 * h*head_dim .. (h+1)*head_dim-1 of every row, so a head's Q, K and V are
 * (T, head_dim) matrices with row stride D, which BLAS takes directly as the
 * leading dimension — no copies or permutes. For each batch item b and head h:
 *
 *     S = Q K^T / sqrt(head_dim)             (T, T)
 *     S[i][j] = -inf for j > i when causal   (a query never sees later keys)
 *     P = softmax(S) along each row          (T, T), saved for backward
 *     O = P V                                (T, head_dim) -> columns of out
 *
 * Backward, with dO the gradient of O (the softmax Jacobian applied per row):
 *
 *     dV = P^T dO
 *     dP = dO V^T
 *     dS[i][j] = P[i][j] * (dP[i][j] - sum_k P[i][k] dP[i][k])
 *     dQ = dS K / sqrt(head_dim),   dK = dS^T Q / sqrt(head_dim)
 *
 * WHY A GEMM PER (b, h). The per-head matrices are small (T = 50 for
 * ViT-B/32 at 224, T = 77 for CLIP text, head_dim = 64: about 160 k
 * multiply-adds per GEMM), which suggested giving each OpenMP thread whole
 * (b, h) problems with a hand-written kernel instead. We measured both on the
 * development machine (AMD EPYC, OpenBLAS core Haswell, B = 100, H = 12,
 * T = 50, forward): the OpenMP kernel (vectorised dot products with eight
 * partial sums) took 175 ms (4.4 GFLOP/s) on one thread, serial sgemm calls
 * 78 ms (9.8 GFLOP/s). The reason: the library is compiled for generic
 * x86-64 (SSE2, no FMA) unless MMCHAIN_NATIVE is set, while the GEMM kernels
 * (OpenBLAS's, and since then our AVX-512 one) pick their instructions at
 * run time. Attention is also a small part of a transformer block's work
 * (at T = 50, D = 768 the Q/K/V/output projections and the MLP do ~90x more
 * multiply-adds), so the simple form wins. The heads of one batch item are
 * one mc_sgemm_batched call. With more items than threads (the usual case)
 * the forward gives each thread whole items, all three steps of an item in
 * a row (its scores, their softmax, P V): one OpenMP region per chunk of
 * batch items (the whole batch unless its (H, T, T) squares pass 32 MB),
 * and an item's scores are still in its thread's cache for the softmax and
 * P V. With fewer, each step runs over the chunk at once (the products
 * threaded over heads, the softmax over rows). The backward runs its steps
 * over a chunk at once, the softmax backward in parallel over rows. So
 * there are a few OpenMP barriers per call rather than one per item — on a
 * busy machine each barrier can cost a scheduler time slice. */
#include "mmchain/threads.h"
#include "ops/attention_internal.h"
#include "ops/gemm_internal.h"
#include "core/parallel.h"
#include "core/vector_clones.h"
#include "ops/exp_approx.h"
#include "ops/naive.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Per-head products of fewer multiply-adds than this stay on one thread. */
enum { PARALLEL_MIN_MACS = 1 << 20 };

/* Row i of head h of batch item b in a (B, T, D) tensor. */
static inline int64_t row_offset(const mc_attention_dims *d, int64_t b, int64_t i, int64_t h) {
    return (b * d->seq + i) * d->width + h * d->head_dim;
}

/* The number of keys query i may see. */
static inline int64_t visible_keys(const mc_attention_dims *d, int64_t i) {
    return d->causal ? i + 1 : d->seq;
}

/* ---- forward: the fast kernel ---- */

/* Whether `items` batch items' per-head products are worth a thread team:
 * the threads then take whole items, each running its heads' products as
 * one mc_sgemm_batched call on its own thread. */
static bool worth_threads(const mc_attention_dims *d, int64_t items) {
    return mc_gemm_is_ours() && items > 1 &&
           items * d->heads * d->seq * d->seq * d->head_dim >= PARALLEL_MIN_MACS;
}

/* In place: row[0..n_keys) becomes its softmax, row[n_keys..T) zero (the
 * masked keys). The sum of the exponentials runs in 16 lanes, element j in
 * lane j % 16, added up lane by lane at the end: a fixed order, so the
 * AVX-512 clone (one register of lanes) and the baseline one compute the
 * same numbers, where a simd reduction would add in an order of the
 * vector width's choosing. The last partial group of 16 goes through the
 * same lanes under a condition (masked loads and stores in the AVX-512
 * clone). */
MC_VECTOR_CLONES
static void softmax_row(float *row, int64_t n_keys, int64_t T) {
    float max_score = -INFINITY;
#pragma omp simd reduction(max : max_score)
    for (int64_t j = 0; j < n_keys; j++) max_score = row[j] > max_score ? row[j] : max_score;
    float lanes[16] = {0.0f};
    for (int64_t j0 = 0; j0 < n_keys; j0 += 16) {
        const int64_t count = n_keys - j0 < 16 ? n_keys - j0 : 16;
#pragma omp simd
        for (int64_t l = 0; l < 16; l++) {
            if (l < count) {
                const float e = exp_approx(row[j0 + l] - max_score);
                row[j0 + l] = e;
                lanes[l] += e;
            }
        }
    }
    float total = 0.0f;
    for (int l = 0; l < 16; l++) total += lanes[l];
    const float inv_total = 1.0f / total;
#pragma omp simd
    for (int64_t j = 0; j < n_keys; j++) row[j] *= inv_total;
    for (int64_t j = n_keys; j < T; j++) row[j] = 0.0f; /* masked */
}

/* In place: each of the n_rows rows (length T) of scores becomes its masked
 * softmax; row r belongs to query r % T. scores: (items, H, T, T). On the
 * calling thread, or, with `parallel`, split among the threads. */
static void masked_softmax_rows(const mc_attention_dims *d, float *scores, int64_t n_rows,
                                bool parallel) {
    const int64_t T = d->seq;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t r = 0; r < n_rows; r++) softmax_row(scores + r * T, visible_keys(d, r % T), T);
}

/* Whether masked_softmax_rows over n_rows rows is worth a thread team.
 * Half the usual threshold: a row is read in several passes (maximum,
 * exponentials, scaling), so half as many elements are as much work. */
static bool softmax_worth_threads(const mc_attention_dims *d, int64_t n_rows) {
    return n_rows * d->seq >= MC_PARALLEL_MIN_WORK / 2;
}

/* The scale of the scores S = Q K^T / sqrt(head_dim). */
static float score_scale(const mc_attention_dims *d) { return 1.0f / sqrtf((float)d->head_dim); }

/* The forward for batch item b on the calling thread: its heads' scores
 * (one batched product), their softmax, their P V.
 * probs: (H, T, T), this item's. */
static void forward_item(const mc_attention_dims *d, const float *q, const float *k,
                         const float *v, float *out, float *probs, int64_t b) {
    const int T = (int)d->seq, D = (int)d->width, hd = (int)d->head_dim;
    /* S = scale * Q K^T per head: (T, hd) x (hd, T) -> (T, T); head h's
     * columns start h*hd into each row of q, k, v and out. */
    mc_gemm_batched(d->precision, false, true, T, T, hd, score_scale(d), q + row_offset(d, b, 0, 0),
                    D, hd, k + row_offset(d, b, 0, 0), D, hd, 0.0f, probs, T, T * T, d->heads);
    masked_softmax_rows(d, probs, d->heads * T, false);
    /* O = P V: (T, T) x (T, hd) -> (T, hd), written into out's columns */
    mc_gemm_batched(d->precision, false, false, T, hd, T, 1.0f, probs, T, T * T,
                    v + row_offset(d, b, 0, 0), D, hd, 0.0f, out + row_offset(d, b, 0, 0), D, hd,
                    d->heads);
}

void mc_attention_forward_fast(const mc_attention_dims *d, const float *q, const float *k,
                               const float *v, float *out, float *probs, int64_t probs_items) {
    const int T = (int)d->seq, D = (int)d->width, hd = (int)d->head_dim;
    const int64_t per_item = d->heads * T * T;
    const float scale = score_scale(d);
    for (int64_t first = 0; first < d->batch; first += probs_items) {
        const int64_t last = first + probs_items < d->batch ? first + probs_items : d->batch;
        float *chunk = probs_items >= d->batch ? probs + first * per_item : probs;
        if (worth_threads(d, last - first) && last - first >= mc_get_num_threads()) {
            /* Each thread takes whole items, all three steps of one item
             * after another: one OpenMP region per chunk, and an item's
             * scores are still in the thread's cache when its softmax and
             * P V read them. */
#pragma omp parallel for schedule(static)
            for (int64_t b = first; b < last; b++)
                forward_item(d, q, k, v, out, chunk + (b - first) * per_item, b);
            continue;
        }
        /* Few items: each step over the chunk at once, the products
         * threaded over heads (mc_gemm_batched), the softmax over rows. */
        for (int64_t b = first; b < last; b++)
            mc_gemm_batched(d->precision, false, true, T, T, hd, scale, q + row_offset(d, b, 0, 0),
                            D, hd, k + row_offset(d, b, 0, 0), D, hd, 0.0f,
                            chunk + (b - first) * per_item, T, T * T, d->heads);
        const int64_t n_rows = (last - first) * d->heads * T;
        masked_softmax_rows(d, chunk, n_rows, softmax_worth_threads(d, n_rows));
        for (int64_t b = first; b < last; b++)
            mc_gemm_batched(d->precision, false, false, T, hd, T, 1.0f,
                            chunk + (b - first) * per_item, T, T * T, v + row_offset(d, b, 0, 0), D,
                            hd, 0.0f, out + row_offset(d, b, 0, 0), D, hd, d->heads);
    }
}

/* ---- backward: the fast kernel ---- */

/* In place over n_rows rows of length T: dprobs becomes
 * dS = P * (dP - rowsum(P * dP)) * scale, the scores' scale folded in.
 * probs, dprobs: (items, H, T, T). */
static void softmax_rows_backward(const mc_attention_dims *d, const float *probs, float *dprobs,
                                  int64_t n_rows) {
    const int64_t T = d->seq;
    const float scale = score_scale(d);
#pragma omp parallel for schedule(static) if (n_rows * T >= MC_PARALLEL_MIN_WORK / 2)
    for (int64_t r = 0; r < n_rows; r++) {
        const float *p = probs + r * T;
        float *g = dprobs + r * T;
        double row_sum = 0.0;
        for (int64_t j = 0; j < T; j++) row_sum += (double)p[j] * g[j];
        for (int64_t j = 0; j < T; j++) g[j] = p[j] * (g[j] - (float)row_sum) * scale;
    }
}

void mc_attention_backward_fast(const mc_attention_dims *d, const float *q, const float *k,
                                const float *v, const float *probs, const float *dout, float *dq,
                                float *dk, float *dv, float *scratch, int64_t scratch_items) {
    const int T = (int)d->seq, D = (int)d->width, hd = (int)d->head_dim;
    const int64_t per_item = d->heads * T * T;
    for (int64_t first = 0; first < d->batch; first += scratch_items) {
        const int64_t last = first + scratch_items < d->batch ? first + scratch_items : d->batch;
        const bool parallel_items = worth_threads(d, last - first);
#pragma omp parallel for schedule(static) if (parallel_items)
        for (int64_t b = first; b < last; b++) {
            const int64_t item = row_offset(d, b, 0, 0), squares = b * per_item;
            /* dV += P^T dO per head: (T, T)^T x (T, hd) */
            if (dv)
                mc_gemm_batched(d->precision, true, false, T, hd, T, 1.0f, probs + squares, T,
                                T * T, dout + item, D, hd, 1.0f, dv + item, D, hd, d->heads);
            /* dP = dO V^T per head: (T, hd) x (hd, T) */
            if (dq || dk)
                mc_gemm_batched(d->precision, false, true, T, T, hd, 1.0f, dout + item, D, hd,
                                v + item, D, hd, 0.0f, scratch + squares - first * per_item, T,
                                T * T, d->heads);
        }
        if (!dq && !dk) continue;
        softmax_rows_backward(d, probs + first * per_item, scratch, (last - first) * d->heads * T);
#pragma omp parallel for schedule(static) if (parallel_items)
        for (int64_t b = first; b < last; b++) {
            const int64_t item = row_offset(d, b, 0, 0);
            const float *dscores = scratch + (b - first) * per_item; /* scaled, (H, T, T) */
            /* dQ += dS K: (T, T) x (T, hd);  dK += dS^T Q: (T, T)^T x (T, hd) */
            if (dq)
                mc_gemm_batched(d->precision, false, false, T, hd, T, 1.0f, dscores, T, T * T,
                                k + item, D, hd, 1.0f, dq + item, D, hd, d->heads);
            if (dk)
                mc_gemm_batched(d->precision, true, false, T, hd, T, 1.0f, dscores, T, T * T,
                                q + item, D, hd, 1.0f, dk + item, D, hd, d->heads);
        }
    }
}

/* Batch items per chunk whose (H, T, T) scratch fits in this many bytes. */
enum { CHUNK_BYTES = 32 << 20 };

int64_t mc_attention_chunk_items(const mc_attention_dims *d) {
    int64_t per_item = d->heads * d->seq * d->seq * (int64_t)sizeof(float);
    int64_t items = CHUNK_BYTES / per_item;
    if (items < 1) items = 1;
    return items < d->batch ? items : d->batch;
}

/* ---- the naive reference: the definition, element by element, in double ----
 * Each score is recomputed wherever it is needed, so the reference needs no
 * scratch memory; it is slow and only meant for tests on small shapes. */

/* S[i][j] of head h of batch item b: q_i . k_j / sqrt(head_dim), or -inf if masked. */
static double naive_score(const mc_attention_dims *d, const float *q, const float *k, int64_t b,
                          int64_t h, int64_t i, int64_t j) {
    if (d->causal && j > i) return -INFINITY;
    double acc = 0.0;
    for (int64_t c = 0; c < d->head_dim; c++)
        acc += (double)q[row_offset(d, b, i, h) + c] * k[row_offset(d, b, j, h) + c];
    return acc / sqrt((double)d->head_dim);
}

void mc_attention_forward_naive(const mc_attention_dims *d, const float *q, const float *k,
                                const float *v, float *out, float *probs) {
    const int64_t T = d->seq;
    for (int64_t b = 0; b < d->batch; b++)
        for (int64_t h = 0; h < d->heads; h++) {
            float *P = probs + ((b * d->heads + h) * T) * T; /* (T, T) */
            for (int64_t i = 0; i < T; i++) {
                /* P[i][j] = exp(S[i][j] - max) / sum_j exp(S[i][j] - max) */
                double max_s = -INFINITY, total = 0.0;
                for (int64_t j = 0; j < T; j++)
                    max_s = fmax(max_s, naive_score(d, q, k, b, h, i, j));
                for (int64_t j = 0; j < T; j++)
                    total += exp(naive_score(d, q, k, b, h, i, j) - max_s);
                for (int64_t j = 0; j < T; j++)
                    P[i * T + j] = (float)(exp(naive_score(d, q, k, b, h, i, j) - max_s) / total);
                /* O[i] = sum_j P[i][j] V[j] */
                for (int64_t c = 0; c < d->head_dim; c++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < T; j++)
                        acc += (double)P[i * T + j] * v[row_offset(d, b, j, h) + c];
                    out[row_offset(d, b, i, h) + c] = (float)acc;
                }
            }
        }
}

/* dP[i][j] = dO_i . V_j for head h of batch item b. */
static double naive_dprob(const mc_attention_dims *d, const float *dout, const float *v, int64_t b,
                          int64_t h, int64_t i, int64_t j) {
    double acc = 0.0;
    for (int64_t c = 0; c < d->head_dim; c++)
        acc += (double)dout[row_offset(d, b, i, h) + c] * v[row_offset(d, b, j, h) + c];
    return acc;
}

void mc_attention_backward_naive(const mc_attention_dims *d, const float *q, const float *k,
                                 const float *v, const float *probs, const float *dout, float *dq,
                                 float *dk, float *dv) {
    const int64_t T = d->seq;
    const double scale = 1.0 / sqrt((double)d->head_dim);
    for (int64_t b = 0; b < d->batch; b++)
        for (int64_t h = 0; h < d->heads; h++) {
            const float *P = probs + ((b * d->heads + h) * T) * T;
            for (int64_t i = 0; i < T; i++) {
                double row_sum = 0.0; /* sum_j P[i][j] dP[i][j] */
                for (int64_t j = 0; j < T; j++)
                    row_sum += P[i * T + j] * naive_dprob(d, dout, v, b, h, i, j);
                for (int64_t j = 0; j < T; j++) {
                    double p = P[i * T + j];
                    double dS = p * (naive_dprob(d, dout, v, b, h, i, j) - row_sum) * scale;
                    for (int64_t c = 0; c < d->head_dim; c++) {
                        int64_t at_i = row_offset(d, b, i, h) + c,
                                at_j = row_offset(d, b, j, h) + c;
                        if (dv) dv[at_j] += (float)(p * dout[at_i]); /* dV = P^T dO */
                        if (dq) dq[at_i] += (float)(dS * k[at_j]);   /* dQ = dS K (scaled) */
                        if (dk) dk[at_j] += (float)(dS * q[at_i]);   /* dK = dS^T Q (scaled) */
                    }
                }
            }
        }
}

/* ---- the op ---- */

typedef struct attention_saved {
    mc_attention_dims dims;
    float *probs; /* (B, H, T, T) */
} attention_saved;

static mc_status attention_backward(mc_node *node) {
    const attention_saved *saved = node->saved;
    const mc_attention_dims *d = &saved->dims;
    mc_tensor *q = node->in[0], *k = node->in[1], *v = node->in[2];
    float *dq = NULL, *dk = NULL, *dv = NULL, *scratch;
    if (q->requires_grad) MC_TRY(mc_grad_buffer(node->graph, q, &dq));
    if (k->requires_grad) MC_TRY(mc_grad_buffer(node->graph, k, &dk));
    if (v->requires_grad) MC_TRY(mc_grad_buffer(node->graph, v, &dv));
    const int64_t items = mc_attention_chunk_items(d);
    MC_TRY(mc_graph_alloc(node->graph, (size_t)(items * d->heads * d->seq * d->seq) * sizeof(float),
                          (void **)&scratch));
    mc_attention_backward_fast(d, q->data, k->data, v->data, saved->probs, node->out->grad, dq, dk,
                               dv, scratch, items);
    return MC_OK;
}

/* q, k, v must be (B, T, D) alike, D divisible by n_heads. */
static mc_status check_attention(const mc_tensor *q, const mc_tensor *k, const mc_tensor *v,
                                 int n_heads, bool causal, mc_attention_dims *dims) {
    if (!q || !k || !v) return mc_error(MC_ERR_ARG, "attention: q, k and v must not be NULL");
    char qs[160], other[160];
    if (q->shape.ndim != 3)
        return mc_error(MC_ERR_SHAPE, "attention: q %s should be 3-D (B, T, D)",
                        mc_tensor_str(q, qs, sizeof qs));
    const mc_tensor *kv[2] = {k, v};
    for (int i = 0; i < 2; i++)
        if (!mc_shape_equal(kv[i]->shape, q->shape))
            return mc_error(MC_ERR_SHAPE,
                            "attention: %s is %s, but q is %s; q, k and v must have one shape "
                            "(B, T, D)",
                            i == 0 ? "k" : "v", mc_tensor_str(kv[i], other, sizeof other),
                            mc_tensor_str(q, qs, sizeof qs));
    const int64_t width = q->shape.dim[2];
    if (n_heads < 1 || width % n_heads != 0)
        return mc_error(MC_ERR_ARG, "attention: n_heads %d does not divide the width %lld of q %s",
                        n_heads, (long long)width, mc_tensor_str(q, qs, sizeof qs));
    const int64_t seq = q->shape.dim[1];
    if (width > INT_MAX || seq > INT_MAX / seq)
        return mc_error(MC_ERR_UNSUPPORTED, "attention: q %s is too large for BLAS's int sizes",
                        mc_tensor_str(q, qs, sizeof qs));
    *dims = (mc_attention_dims){.batch = q->shape.dim[0],
                                .seq = q->shape.dim[1],
                                .width = width,
                                .heads = n_heads,
                                .head_dim = width / n_heads,
                                .causal = causal};
    return MC_OK;
}

mc_status mc_attention(mc_graph *g, mc_tensor *q, mc_tensor *k, mc_tensor *v, int n_heads,
                       bool causal, mc_tensor **out) {
    *out = NULL;
    mc_attention_dims dims;
    MC_TRY(check_attention(q, k, v, n_heads, causal, &dims));
    dims.precision = mc_graph_precision(g);
    mc_tensor *result;
    /* Every head's P V (beta 0) writes its columns of every row: no zeros
     * needed (a pass over a (B, T, D) tensor per block saved). */
    MC_TRY(mc_graph_tensor_uninit(g, q->shape, "attention", &result));
    mc_tensor *inputs[3] = {q, k, v};
    const bool record = mc_graph_should_record(g, 3, inputs);
    attention_saved *saved = NULL;
    /* Backward needs every probability, (B, H, T, T); inference reuses a
     * chunk of batch items' worth (all of them would be 146 MB for the text
     * tower at batch 512). */
    const int64_t probs_items = record ? dims.batch : mc_attention_chunk_items(&dims);
    float *probs;
    MC_TRY(mc_graph_alloc(g,
                          (size_t)(probs_items * dims.heads * dims.seq * dims.seq) * sizeof(float),
                          (void **)&probs));
    if (record) {
        MC_TRY(mc_graph_alloc(g, sizeof *saved, (void **)&saved));
        saved->dims = dims;
        saved->probs = probs;
    }
    mc_attention_forward_fast(&dims, q->data, k->data, v->data, result->data, probs, probs_items);
    MC_TRY(mc_graph_record(g, "attention", attention_backward, result, 3, inputs, saved));
    *out = result;
    return MC_OK;
}

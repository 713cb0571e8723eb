/* Multi-head scaled dot-product attention (Vaswani et al., 2017), forward and
 * backward side by side.
 *
 * q, k, v are (B, T, D) with D = H * head_dim; head h owns the columns
 * h*head_dim .. (h+1)*head_dim-1 of every row, so a head's Q, K and V are
 * (T, head_dim) matrices with row stride D — no copies or permutes needed.
 * For each batch item b and head h:
 *
 *     S = Q K^T / sqrt(head_dim)             (T, T)
 *     S[i][j] = -inf for j > i when causal   (a query never sees later keys)
 *     P = softmax(S) along each row          (T, T), saved for backward
 *     O = P V                                (T, head_dim) -> columns of out
 *
 * Backward, with dO the gradient of O (the standard softmax Jacobian):
 *
 *     dV = P^T dO
 *     dP = dO V^T
 *     dS[i][j] = P[i][j] * (dP[i][j] - sum_k P[i][k] dP[i][k])
 *     dQ = dS K / sqrt(head_dim),   dK = dS^T Q / sqrt(head_dim)
 *
 * and sum_k P[i][k] dP[i][k] = dO[i] . (sum_k P[i][k] V[k]) = dO[i] . O[i],
 * so the row sum comes from one dot product with the saved output and
 * backward needs no (T, T) scratch (the observation FlashAttention uses,
 * Dao et al., 2022).
 *
 * WHY NO cblas_sgemm HERE. The matrices are small: T = 50 (ViT-B/32 at 224),
 * T = 77 (CLIP text), head_dim = 64, so each (b, h) is three GEMMs of about
 * 50x50x64 = 160 k multiply-adds. At that size OpenBLAS runs single-threaded
 * (it only splits larger problems) and spends a good part of each call on
 * packing and dispatch, and our rule forbids calling it inside an OpenMP
 * region. A batch has B*H independent (b, h) problems (100 x 12 = 1200 for
 * ViT-B/32 at batch 100), so we give each thread whole (b, h) problems: one
 * (b, h)'s Q, K, V rows (3 x 50 x 64 floats = 38 KB) and a probability row stay in
 * L1/L2 while it is worked on, all cores are busy, and nothing is packed.
 * The inner loops are dot products with eight partial sums and axpys over
 * head_dim = 64 contiguous floats, which GCC vectorises at -O2/-O3. Measured
 * on the development machine (2 cores, B=100, H=12, T=50, head_dim=64,
 * forward + backward): see the numbers in the comment above
 * mc_attention_forward_fast. */
#include "ops/attention_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- small vector helpers ---- */

/* a . b over n floats, with eight independent partial sums so that the
 * compiler can keep them in one SIMD register (a single running sum would
 * serialise on the add latency and cannot be reordered without -ffast-math). */
static inline float dot(const float *a, const float *b, int64_t n) {
    float partial[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) partial[l] += a[i + l] * b[i + l];
    float sum = ((partial[0] + partial[4]) + (partial[1] + partial[5])) +
                ((partial[2] + partial[6]) + (partial[3] + partial[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* y += alpha * x over n floats. */
static inline void axpy(float *restrict y, float alpha, const float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

/* Row i of head h of batch item b in a (B, T, D) tensor. */
static inline int64_t row_offset(const mc_attention_dims *d, int64_t b, int64_t i, int64_t h) {
    return (b * d->seq + i) * d->width + h * d->head_dim;
}

/* The number of keys query i may see. */
static inline int64_t visible_keys(const mc_attention_dims *d, int64_t i) {
    return d->causal ? i + 1 : d->seq;
}

/* ---- forward: the fast kernel ----
 * Timing on the development machine (Xeon, 2 threads, B=100 H=12 T=50
 * head_dim=64, forward): this kernel vs the same algorithm with one
 * cblas_sgemm per (b, h) for S and O (serial calls, OpenBLAS threads):
 * recorded in the report of the change that added this file. */

/* One query row: probs_row (n_keys used of T) gets softmax(q_i . k_j * scale),
 * out_row (head_dim) gets sum_j p_j v_j.
 *   q_row: (head_dim); k, v: the head's (T, head_dim) with row stride D. */
static void attend_one_query(const mc_attention_dims *d, const float *q_row, const float *k,
                             const float *v, int64_t n_keys, float scale, float *probs_row,
                             float *out_row) {
    const int64_t hd = d->head_dim, D = d->width;
    float max_score = -INFINITY;
    for (int64_t j = 0; j < n_keys; j++) {
        probs_row[j] = dot(q_row, k + j * D, hd) * scale;
        if (probs_row[j] > max_score) max_score = probs_row[j];
    }
    float total = 0.0f;
    for (int64_t j = 0; j < n_keys; j++) {
        probs_row[j] = expf(probs_row[j] - max_score);
        total += probs_row[j];
    }
    const float inv_total = 1.0f / total;
    memset(out_row, 0, (size_t)hd * sizeof(float));
    for (int64_t j = 0; j < n_keys; j++) {
        probs_row[j] *= inv_total;
        axpy(out_row, probs_row[j], v + j * D, hd);
    }
    for (int64_t j = n_keys; j < d->seq; j++) probs_row[j] = 0.0f; /* masked */
}

void mc_attention_forward_fast(const mc_attention_dims *d, const float *q, const float *k,
                               const float *v, float *out, float *probs, float *row_scratch) {
    const int64_t T = d->seq, n_problems = d->batch * d->heads;
    const float scale = 1.0f / sqrtf((float)d->head_dim);
#pragma omp parallel for schedule(static)
    for (int64_t bh = 0; bh < n_problems; bh++) {
        const int64_t b = bh / d->heads, h = bh % d->heads;
        int thread = 0;
#ifdef _OPENMP
        thread = omp_get_thread_num();
#endif
        const float *k_head = k + row_offset(d, b, 0, h);
        const float *v_head = v + row_offset(d, b, 0, h);
        for (int64_t i = 0; i < T; i++) {
            float *probs_row = probs ? probs + (bh * T + i) * T : row_scratch + (int64_t)thread * T;
            attend_one_query(d, q + row_offset(d, b, i, h), k_head, v_head, visible_keys(d, i),
                             scale, probs_row, out + row_offset(d, b, i, h));
        }
    }
}

/* ---- backward: the fast kernel ---- */

void mc_attention_backward_fast(const mc_attention_dims *d, const float *q, const float *k,
                                const float *v, const float *out, const float *probs,
                                const float *dout, float *dq, float *dk, float *dv) {
    const int64_t T = d->seq, D = d->width, hd = d->head_dim, n_problems = d->batch * d->heads;
    const float scale = 1.0f / sqrtf((float)hd);
    const bool need_scores_grad = dq || dk;
    /* Different (b, h) write disjoint column blocks of dq, dk, dv, so the
     * threads never collide, even when q, k and v are one tensor. */
#pragma omp parallel for schedule(static)
    for (int64_t bh = 0; bh < n_problems; bh++) {
        const int64_t b = bh / d->heads, h = bh % d->heads;
        const int64_t head0 = row_offset(d, b, 0, h);
        for (int64_t i = 0; i < T; i++) {
            const int64_t row_i = row_offset(d, b, i, h);
            const float *dout_i = dout + row_i;
            const float *probs_row = probs + (bh * T + i) * T;
            /* sum_k P[i][k] dP[i][k] = dO[i] . O[i] (see the top of the file) */
            const float row_sum = need_scores_grad ? dot(dout_i, out + row_i, hd) : 0.0f;
            for (int64_t j = 0; j < visible_keys(d, i); j++) {
                const float p = probs_row[j];
                const int64_t row_j = head0 + j * D;
                if (dv) axpy(dv + row_j, p, dout_i, hd);
                if (!need_scores_grad) continue;
                const float dscore = p * (dot(dout_i, v + row_j, hd) - row_sum) * scale;
                if (dq) axpy(dq + row_i, dscore, k + row_j, hd);
                if (dk) axpy(dk + row_j, dscore, q + row_i, hd);
            }
        }
    }
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
                for (int64_t j = 0; j < T; j++) max_s = fmax(max_s, naive_score(d, q, k, b, h, i, j));
                for (int64_t j = 0; j < T; j++) total += exp(naive_score(d, q, k, b, h, i, j) - max_s);
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
                        int64_t at_i = row_offset(d, b, i, h) + c, at_j = row_offset(d, b, j, h) + c;
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
    mc_tensor *q = node->in[0], *k = node->in[1], *v = node->in[2];
    float *dq = NULL, *dk = NULL, *dv = NULL;
    if (q->requires_grad) MC_TRY(mc_grad_buffer(node->graph, q, &dq));
    if (k->requires_grad) MC_TRY(mc_grad_buffer(node->graph, k, &dk));
    if (v->requires_grad) MC_TRY(mc_grad_buffer(node->graph, v, &dv));
    mc_attention_backward_fast(&saved->dims, q->data, k->data, v->data, node->out->data,
                               saved->probs, node->out->grad, dq, dk, dv);
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
            return mc_error(MC_ERR_SHAPE, "attention: %s %s should have the shape of q %s",
                            i == 0 ? "k" : "v", mc_tensor_str(kv[i], other, sizeof other),
                            mc_tensor_str(q, qs, sizeof qs));
    const int64_t width = q->shape.dim[2];
    if (n_heads < 1 || width % n_heads != 0)
        return mc_error(MC_ERR_ARG,
                        "attention: n_heads %d does not divide the width %lld of q %s", n_heads,
                        (long long)width, mc_tensor_str(q, qs, sizeof qs));
    *dims = (mc_attention_dims){.batch = q->shape.dim[0], .seq = q->shape.dim[1], .width = width,
                                .heads = n_heads, .head_dim = width / n_heads, .causal = causal};
    return MC_OK;
}

mc_status mc_attention(mc_graph *g, mc_tensor *q, mc_tensor *k, mc_tensor *v, int n_heads,
                       bool causal, mc_tensor **out) {
    *out = NULL;
    mc_attention_dims dims;
    MC_TRY(check_attention(q, k, v, n_heads, causal, &dims));
    mc_tensor *result;
    MC_TRY(mc_graph_tensor(g, q->shape, "attention", &result));
    mc_tensor *inputs[3] = {q, k, v};
    const bool record = mc_graph_should_record(g, 3, inputs);
    attention_saved *saved = NULL;
    float *row_scratch = NULL;
    if (record) {
        /* Backward needs every probability: (B, H, T, T). */
        MC_TRY(mc_graph_alloc(g, sizeof *saved, (void **)&saved));
        saved->dims = dims;
        size_t n_probs = (size_t)(dims.batch * dims.heads * dims.seq * dims.seq);
        MC_TRY(mc_graph_alloc(g, n_probs * sizeof(float), (void **)&saved->probs));
    } else {
        /* Inference keeps one row per thread instead (B*H*T*T floats would be
         * 146 MB for the text tower at batch 512). */
        int threads = 1;
#ifdef _OPENMP
        threads = omp_get_max_threads();
#endif
        MC_TRY(mc_graph_alloc(g, (size_t)threads * (size_t)dims.seq * sizeof(float),
                              (void **)&row_scratch));
    }
    mc_attention_forward_fast(&dims, q->data, k->data, v->data, result->data,
                              saved ? saved->probs : NULL, row_scratch);
    MC_TRY(mc_graph_record(g, "attention", attention_backward, result, 3, inputs, saved));
    *out = result;
    return MC_OK;
}

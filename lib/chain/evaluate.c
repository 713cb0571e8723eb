/* The chain's metrics (the seed paper's, plus per-class detail):
 *
 *   match_acc          spectral -> RGB retrieval inside a batch: tile i's
 *                      spectral embedding is closer (cosine) to its own RGB
 *                      embedding than to any other tile's of the batch. The
 *                      paper's training metric; it depends on the batch size
 *                      (512 in the paper: chance is 1/512).
 *   spectral_text_acc  zero-shot top-1: the class whose prompt embedding is
 *                      closest to the spectral embedding is the true class.
 *   rgb_text_acc       the same for CLIP's own RGB embedding: the ceiling the
 *                      chain aims at (it can only learn what CLIP sees).
 *   loss               the InfoNCE of the evaluation batches.
 * All on un-augmented views, the encoder in eval mode (BN running stats).
 *
 * Data parallel (mc_chain_evaluate_distributed): each rank evaluates its
 * share of the batches, whole batches (shards.c), so that every batch's
 * embeddings, loss and matching count are the one-process ones; the tiles'
 * rows and the batches' results are then gathered and every rank adds them
 * up in batch order, as one process does: the metrics are the one-process
 * metrics bit for bit. */
#include "mmchain/chain.h"

#include "chain/chain_internal.h"
#include "mmchain/dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mc_chain_metrics_free(mc_chain_metrics *m) {
    if (!m) return;
    free(m->spectral_class_acc);
    free(m->rgb_class_acc);
    free(m->spectral_confusion);
    free(m->rgb_confusion);
    free(m->labels);
    free(m->spectral_pred);
    free(m->rgb_pred);
    free(m->spectral_embeds);
    memset(m, 0, sizeof *m);
}

static mc_status metrics_alloc(mc_chain_metrics *m, int count, int k, int e) {
    memset(m, 0, sizeof *m);
    m->count = count;
    m->num_classes = k;
    m->embed_dim = e;
    m->spectral_embeds = malloc((size_t)count * (size_t)e * sizeof(float));
    m->spectral_class_acc = calloc((size_t)k, sizeof(double));
    m->rgb_class_acc = calloc((size_t)k, sizeof(double));
    m->spectral_confusion = calloc((size_t)k * (size_t)k, sizeof(int64_t));
    m->rgb_confusion = calloc((size_t)k * (size_t)k, sizeof(int64_t));
    m->labels = calloc((size_t)count, sizeof(int));
    m->spectral_pred = calloc((size_t)count, sizeof(int));
    m->rgb_pred = calloc((size_t)count, sizeof(int));
    if (!m->spectral_class_acc || !m->rgb_class_acc || !m->spectral_confusion ||
        !m->rgb_confusion || !m->labels || !m->spectral_pred || !m->rgb_pred || !m->spectral_embeds) {
        mc_chain_metrics_free(m);
        return mc_error(MC_ERR_NOMEM, "metrics: out of memory");
    }
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * small kernels on embeddings (rows of E floats)
 * ------------------------------------------------------------------------- */

/* pred[i] = argmax_k cos(embeds_i, classes_k). embeds (n, E), classes (K, E).
 * A row that is not finite (a diverged encoder) is an error: its argmax
 * would be class 0 and count as that class's predictions. */
static mc_status zero_shot_predict(const mc_tensor *embeds, const mc_tensor *classes, int *pred) {
    mc_tensor *logits;
    MC_TRY(mc_clip_zero_shot_logits(embeds, classes, 0.0f, &logits));
    int64_t n = logits->shape.dim[0], k = logits->shape.dim[1];
    for (int64_t i = 0; i < n; i++) {
        const float *row = logits->data + i * k;
        int best = 0;
        for (int64_t c = 0; c < k; c++) {
            if (!isfinite(row[c])) {
                mc_tensor_free(logits);
                return mc_error(MC_ERR_NUMERIC, "evaluate: the %s embedding of the batch's tile %lld "
                                "is not finite (has the encoder diverged?)",
                                embeds->name, (long long)i);
            }
            if (row[c] > row[best]) best = (int)c;
        }
        pred[i] = best;
    }
    mc_tensor_free(logits);
    return MC_OK;
}

static double row_norm(const float *x, int64_t e) {
    double s = 0.0;
    for (int64_t d = 0; d < e; d++) s += (double)x[d] * x[d];
    return sqrt(s);
}

/* How many rows i of a (n, E) have b_i as their nearest row of b (cosine):
 * the in-batch matching count. Ties count as misses (strictly greater). */
static int matching_count(const float *a, const float *b, int64_t n, int64_t e) {
    int correct = 0;
    double *b_norm = malloc((size_t)n * sizeof *b_norm);
    if (!b_norm) return -1;
    for (int64_t j = 0; j < n; j++) b_norm[j] = row_norm(b + j * e, e) + 1e-12;
    for (int64_t i = 0; i < n; i++) {
        double own = 0.0, best_other = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            double dot = 0.0;
            for (int64_t d = 0; d < e; d++) dot += (double)a[i * e + d] * b[j * e + d];
            double cosine = dot / b_norm[j]; /* |a_i| is the same for every j */
            if (j == i) own = cosine;
            else if (cosine > best_other) best_other = cosine;
        }
        correct += own > best_other;
    }
    free(b_norm);
    return correct;
}

static void confusion_to_class_acc(const int64_t *confusion, int k, double *acc) {
    for (int t = 0; t < k; t++) {
        int64_t total = 0;
        for (int p = 0; p < k; p++) total += confusion[t * k + p];
        acc[t] = total ? (double)confusion[t * k + t] / (double)total : NAN;
    }
}

static double confusion_accuracy(const int64_t *confusion, int k, int count) {
    int64_t right = 0;
    for (int t = 0; t < k; t++) right += confusion[t * k + t];
    return count ? (double)right / count : NAN;
}

/* ---------------------------------------------------------------------------
 * one evaluation batch
 * ------------------------------------------------------------------------- */

/* What a batch contributes beyond its tiles' rows: its loss (the mean over
 * its tiles, as the loss op returns it) and how many of its tiles matched. */
typedef struct batch_result {
    float loss;
    int matched;
} batch_result;

static mc_status evaluate_batch(mc_spectral_encoder *enc, const mc_chain_data *data, mc_graph *g,
                                const mc_tensor *rgb_targets, const mc_tensor *classes, int first,
                                int n, bool symmetric, mc_chain_metrics *m, batch_result *result) {
    int64_t e = enc->embed_dim;
    int *items = malloc((size_t)n * sizeof *items);
    if (!items) return mc_error(MC_ERR_NOMEM, "evaluate: out of memory");
    for (int i = 0; i < n; i++) items[i] = first + i;
    mc_tensor *x, *spectral, *targets = NULL, *loss;
    mc_status status = mc_graph_tensor(g, MC_SHAPE(n, data->bands, data->height, data->width), "x", &x);
    if (status == MC_OK) status = data->load(data->ctx, items, n, x, NULL, m->labels + first);
    free(items);
    /* the labels index the confusion matrices: a source's bad label is an
     * error, not a write past them */
    for (int i = 0; status == MC_OK && i < n; i++)
        if (m->labels[first + i] < 0 || m->labels[first + i] >= m->num_classes)
            status = mc_error(MC_ERR_ARG, "evaluate: tile %d has label %d, expected 0..%d", first + i,
                              m->labels[first + i], m->num_classes - 1);
    if (status == MC_OK) status = mc_spectral_encoder_forward(enc, g, x, &spectral);
    if (status == MC_OK)
        memcpy(m->spectral_embeds + (int64_t)first * e, spectral->data, (size_t)(n * e) * sizeof(float));
    if (status == MC_OK) status = zero_shot_predict(spectral, classes, m->spectral_pred + first);
    if (status == MC_OK && rgb_targets) {
        status = mc_graph_tensor(g, MC_SHAPE(n, e), "rgb_targets", &targets);
        if (status == MC_OK)
            memcpy(targets->data, rgb_targets->data + (int64_t)first * e, (size_t)(n * e) * sizeof(float));
        if (status == MC_OK) status = zero_shot_predict(targets, classes, m->rgb_pred + first);
        if (status == MC_OK) status = mc_infonce(g, spectral, targets, enc->logit_scale, symmetric, &loss);
        if (status == MC_OK) {
            result->loss = loss->data[0];
            result->matched = matching_count(spectral->data, targets->data, n, e);
            if (result->matched < 0) status = mc_error(MC_ERR_NOMEM, "evaluate: out of memory");
        }
    }
    mc_graph_reset(g);
    return status;
}

/* ---------------------------------------------------------------------------
 * data parallel: the batches in shards
 * ------------------------------------------------------------------------- */

/* A tile's row in the gather: its embedding, then its label and the two
 * predictions (small integers, exact in float). */
enum { TILE_EXTRA = 3 };

/* Every rank evaluated the whole batches of tiles [begin, end) (shards.c)
 * into its own rows of m and its batches' entries of results; afterwards
 * every rank holds every tile's rows and every batch's result, as one
 * process computes them. */
static mc_status gather_evaluation(mc_chain_metrics *m, batch_result *results, int batch, int begin, int end) {
    const int64_t e = m->embed_dim, batches = (m->count + batch - 1) / batch;
    const int first_batch = begin / batch, last_batch = first_batch + (end - begin + batch - 1) / batch;
    mc_tensor *tiles = NULL, *per_batch = NULL;
    mc_status status = mc_tensor_new(&tiles, MC_SHAPE(m->count, e + TILE_EXTRA), "evaluation tiles");
    if (status == MC_OK) status = mc_tensor_new(&per_batch, MC_SHAPE(batches, 2), "evaluation batches");
    if (status == MC_OK) {
        for (int i = begin; i < end; i++) {
            float *row = tiles->data + i * (e + TILE_EXTRA);
            memcpy(row, m->spectral_embeds + i * e, (size_t)e * sizeof(float));
            row[e] = (float)m->labels[i];
            row[e + 1] = (float)m->spectral_pred[i];
            row[e + 2] = (float)m->rgb_pred[i];
        }
        for (int b = first_batch; b < last_batch; b++) {
            per_batch->data[2 * b] = results[b].loss;
            per_batch->data[2 * b + 1] = (float)results[b].matched;
        }
        status = mc_chain_gather_shards(tiles, begin, end, 1, "evaluate");
    }
    if (status == MC_OK) status = mc_chain_gather_shards(per_batch, first_batch, last_batch, 1, "evaluate");
    if (status == MC_OK) {
        for (int i = 0; i < m->count; i++) {
            const float *row = tiles->data + i * (e + TILE_EXTRA);
            memcpy(m->spectral_embeds + i * e, row, (size_t)e * sizeof(float));
            m->labels[i] = (int)row[e];
            m->spectral_pred[i] = (int)row[e + 1];
            m->rgb_pred[i] = (int)row[e + 2];
        }
        for (int64_t b = 0; b < batches; b++)
            results[b] = (batch_result){per_batch->data[2 * b], (int)per_batch->data[2 * b + 1]};
    }
    mc_tensor_free(tiles);
    mc_tensor_free(per_batch);
    return status;
}

/* ---------------------------------------------------------------------------
 * the metrics
 * ------------------------------------------------------------------------- */

static void tally(mc_chain_metrics *m, bool with_rgb) {
    int k = m->num_classes;
    for (int i = 0; i < m->count; i++) {
        m->spectral_confusion[m->labels[i] * k + m->spectral_pred[i]]++;
        if (with_rgb) m->rgb_confusion[m->labels[i] * k + m->rgb_pred[i]]++;
    }
    confusion_to_class_acc(m->spectral_confusion, k, m->spectral_class_acc);
    confusion_to_class_acc(m->rgb_confusion, k, m->rgb_class_acc);
    m->spectral_text_acc = confusion_accuracy(m->spectral_confusion, k, m->count);
    m->rgb_text_acc = with_rgb ? confusion_accuracy(m->rgb_confusion, k, m->count) : NAN;
}

/* The loss and the matching accuracy over the tiles: the batches' results
 * summed in batch order (the order does not depend on the ranks). */
static void batch_totals(mc_chain_metrics *m, const batch_result *results, int batch) {
    double loss_sum = 0.0; /* sum over tiles of the batch loss */
    int64_t matched = 0;
    for (int first = 0, b = 0; first < m->count; first += batch, b++) {
        int n = m->count - first < batch ? m->count - first : batch;
        loss_sum += (double)results[b].loss * n;
        matched += results[b].matched;
    }
    m->loss = loss_sum / m->count;
    m->match_acc = (double)matched / m->count;
}

static mc_status check_eval_inputs(const mc_spectral_encoder *enc, const mc_chain_data *data,
                                   const mc_tensor *rgb_targets, const mc_tensor *classes) {
    char a[128];
    if (data->bands != enc->bands.count)
        return mc_error(MC_ERR_SHAPE, "evaluate: the data has %d bands, the encoder takes %d",
                        data->bands, enc->bands.count);
    if (classes->shape.ndim != 2 || classes->shape.dim[0] != data->num_classes ||
        classes->shape.dim[1] != enc->embed_dim)
        return mc_error(MC_ERR_SHAPE, "evaluate: class embeddings %s, expected (%d, %d)",
                        mc_tensor_str(classes, a, sizeof a), data->num_classes, enc->embed_dim);
    if (rgb_targets && (rgb_targets->shape.ndim != 2 || rgb_targets->shape.dim[0] != data->count ||
                        rgb_targets->shape.dim[1] != enc->embed_dim))
        return mc_error(MC_ERR_SHAPE, "evaluate: RGB targets %s, expected (%d, %d)",
                        mc_tensor_str(rgb_targets, a, sizeof a), data->count, enc->embed_dim);
    return MC_OK;
}

/* The batches of tiles [begin, end) (all of them alone), the encoder in
 * eval mode. */
static mc_status evaluate_batches(mc_spectral_encoder *enc, const mc_chain_data *data,
                                  const mc_tensor *rgb_targets, const mc_tensor *class_embeds, int batch,
                                  bool symmetric, int begin, int end, mc_chain_metrics *out,
                                  batch_result *results) {
    mc_graph *g;
    MC_TRY(mc_graph_new(&g));
    mc_graph_set_grad_enabled(g, false);
    bool was_training = enc->resnet->training;
    mc_resnet_set_training(enc->resnet, false);
    mc_status status = MC_OK;
    for (int first = begin; first < end && status == MC_OK; first += batch) {
        int n = end - first < batch ? end - first : batch;
        status = evaluate_batch(enc, data, g, rgb_targets, class_embeds, first, n, symmetric, out,
                                &results[first / batch]);
    }
    mc_resnet_set_training(enc->resnet, was_training);
    mc_graph_free(g);
    return status;
}

static mc_status evaluate(mc_spectral_encoder *enc, const mc_chain_data *data, const mc_tensor *rgb_targets,
                          const mc_tensor *class_embeds, int batch, bool symmetric, bool sharded,
                          mc_chain_metrics *out) {
    if (!enc || !data || !class_embeds || !out || batch < 1 || data->count < 1)
        return mc_error(MC_ERR_ARG, "evaluate: bad arguments");
    MC_TRY(check_eval_inputs(enc, data, rgb_targets, class_embeds));
    /* A batch past the tile count is one batch of them all (the same
     * result), and count + batch then stays within an int. */
    if (batch > data->count) batch = data->count;
    MC_TRY(metrics_alloc(out, data->count, data->num_classes, enc->embed_dim));
    int begin = 0, end = data->count;
    if (sharded) mc_chain_shard_of_tiles(data->count, batch, &begin, &end);
    batch_result *results = calloc((size_t)(data->count + batch - 1) / (size_t)batch, sizeof *results);
    mc_status status = results ? MC_OK : mc_error(MC_ERR_NOMEM, "evaluate: out of memory");
    if (status == MC_OK)
        status = evaluate_batches(enc, data, rgb_targets, class_embeds, batch, symmetric, begin, end, out, results);
    /* A rank that failed ends the job (dist.h): the others must not gather without it. */
    if (status == MC_OK && sharded) status = gather_evaluation(out, results, batch, begin, end);
    if (status == MC_OK) {
        tally(out, rgb_targets != NULL);
        if (rgb_targets) batch_totals(out, results, batch);
        else out->loss = out->match_acc = NAN;
    }
    free(results);
    if (status != MC_OK) mc_chain_metrics_free(out);
    return status;
}

mc_status mc_chain_evaluate(mc_spectral_encoder *enc, const mc_chain_data *data,
                            const mc_tensor *rgb_targets, const mc_tensor *class_embeds, int batch,
                            bool symmetric, mc_chain_metrics *out) {
    return evaluate(enc, data, rgb_targets, class_embeds, batch, symmetric, false, out);
}

mc_status mc_chain_evaluate_distributed(mc_spectral_encoder *enc, const mc_chain_data *data,
                                        const mc_tensor *rgb_targets, const mc_tensor *class_embeds, int batch,
                                        bool symmetric, mc_chain_metrics *out) {
    return evaluate(enc, data, rgb_targets, class_embeds, batch, symmetric, mc_dist_world_size() > 1, out);
}

mc_status mc_chain_zero_shot_probs(const mc_tensor *embeds, const mc_tensor *class_embeds,
                                   float logit_scale, mc_tensor **out) {
    MC_TRY(mc_clip_zero_shot_logits(embeds, class_embeds, logit_scale, out));
    int64_t n = (*out)->shape.dim[0], k = (*out)->shape.dim[1];
    for (int64_t i = 0; i < n; i++) { /* softmax, max-subtracted */
        float *row = (*out)->data + i * k;
        float top = row[0];
        for (int64_t c = 1; c < k; c++) top = row[c] > top ? row[c] : top;
        double sum = 0.0;
        for (int64_t c = 0; c < k; c++) sum += exp((double)row[c] - top);
        for (int64_t c = 0; c < k; c++) row[c] = (float)(exp((double)row[c] - top) / sum);
    }
    return MC_OK;
}

/* A further hop: chaining through a trained spectral encoder.
 *
 * The seed paper chains one modality to CLIP. Its method does not need CLIP
 * in particular: any frozen encoder whose space is already joined to text
 * can be the teacher. Here the teacher is a spectral encoder trained by the
 * first hop (its space is CLIP's image space), and the student is a new
 * encoder on other bands of the same tiles. The student's targets are the
 * teacher's embeddings of the tile seen through the teacher's bands, so it
 * never sees RGB, text or labels, and reaches text in two hops:
 *
 *     student bands -> teacher's space (= CLIP's image space) -> CLIP's text
 *
 * The trainer needs three things for that, all here: the teacher as a frozen
 * embedder (mc_spectral_encoder_embed), a data source whose second view is
 * the teacher's bands instead of RGB (mc_chain_data_with_teacher_view), and
 * a fingerprint of the teacher so its targets can be cached on disk. */
#include "mmchain/chain.h"

#include "chain/chain_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fnv.h"

/* ---------------------------------------------------------------------------
 * the teacher as a frozen embedder
 * ------------------------------------------------------------------------- */

mc_status mc_chain_teacher_embed_on(mc_spectral_encoder *enc, mc_graph *g, const mc_tensor *x, int batch,
                                    mc_tensor *out) {
    char a[128], b[128];
    if (!enc || !g || !x || !out || batch < 1) return mc_error(MC_ERR_ARG, "encoder embed: bad arguments");
    if (x->shape.ndim != 4 || x->shape.dim[1] != enc->bands.count || out->shape.ndim != 2 ||
        out->shape.dim[0] != x->shape.dim[0] || out->shape.dim[1] != enc->embed_dim)
        return mc_error(MC_ERR_SHAPE, "encoder embed: x %s -> out %s, expected (N, %d, H, W) -> (N, %d)",
                        mc_tensor_str(x, a, sizeof a), mc_tensor_str(out, b, sizeof b),
                        enc->bands.count, enc->embed_dim);
    bool was_enabled = mc_graph_set_grad_enabled(g, false); /* frozen: nothing is recorded */
    bool was_training = enc->resnet->training;
    mc_resnet_set_training(enc->resnet, false);
    const int64_t n_total = x->shape.dim[0], e = enc->embed_dim;
    const int64_t tile_floats = x->numel / (n_total > 0 ? n_total : 1);
    mc_status status = MC_OK;
    for (int64_t first = 0; first < n_total && status == MC_OK; first += batch) {
        int64_t n = n_total - first < batch ? n_total - first : batch;
        mc_tensor *views, *embeds;
        status = mc_graph_tensor(g, MC_SHAPE(n, x->shape.dim[1], x->shape.dim[2], x->shape.dim[3]),
                                 "teacher_views", &views);
        if (status == MC_OK) {
            memcpy(views->data, x->data + first * tile_floats, (size_t)(n * tile_floats) * sizeof(float));
            status = mc_spectral_encoder_forward(enc, g, views, &embeds);
        }
        if (status == MC_OK)
            memcpy(out->data + first * e, embeds->data, (size_t)(n * e) * sizeof(float));
        mc_graph_reset(g);
    }
    mc_resnet_set_training(enc->resnet, was_training);
    mc_graph_set_grad_enabled(g, was_enabled);
    return status;
}

mc_status mc_spectral_encoder_embed(mc_spectral_encoder *enc, const mc_tensor *x, int batch,
                                    mc_tensor *out) {
    mc_graph *g;
    MC_TRY(mc_graph_new(&g));
    mc_status status = mc_chain_teacher_embed_on(enc, g, x, batch, out);
    mc_graph_free(g);
    return status;
}

void mc_chain_teacher_fingerprint(const mc_spectral_encoder *teacher, char out[17]) {
    uint64_t h = mc_fnv1a_string(MC_FNV1A_OFFSET, "mmchain teacher v1");
    for (int i = 0; i < teacher->params.count; i++) { /* weights, BN statistics, logit scale */
        const mc_tensor *t = teacher->params.items[i];
        h = mc_fnv1a(h, t->data, (size_t)t->numel * sizeof(float));
    }
    h = mc_fnv1a(h, teacher->bands.index, (size_t)teacher->bands.count * sizeof(int));
    h = mc_fnv1a(h, teacher->norm.mean, sizeof teacher->norm.mean);
    h = mc_fnv1a(h, teacher->norm.std, sizeof teacher->norm.std);
    snprintf(out, 17, "%016" PRIx64, h);
}

mc_status mc_chain_teacher_targets(mc_spectral_encoder *teacher, const mc_chain_data *data,
                                   const char *cache_dir, int batch, mc_tensor **out,
                                   bool *from_cache) {
    if (!teacher || !data) return mc_error(MC_ERR_ARG, "teacher targets: bad arguments");
    if (data->rgb_channels != teacher->bands.count)
        return mc_error(MC_ERR_SHAPE, "teacher targets: the second view has %d bands, the teacher takes %d",
                        data->rgb_channels, teacher->bands.count);
    const mc_chain_tower tower = {.teacher = teacher};
    return mc_chain_tower_targets(&tower, data, cache_dir, batch, out, from_cache);
}

/* ---------------------------------------------------------------------------
 * a source whose second view is the teacher's bands
 * ------------------------------------------------------------------------- */

typedef struct teacher_view_source {
    const mc_chain_data *student, *teacher_view;
} teacher_view_source;

/* The student's bands as the spectral view, the teacher's in the RGB slot. */
static mc_status teacher_view_load(void *ctx, const int *items, int n, mc_tensor *spectral,
                                   mc_tensor *second, int *labels) {
    teacher_view_source *src = ctx;
    if (spectral || labels) MC_TRY(src->student->load(src->student->ctx, items, n, spectral, NULL, labels));
    if (second) MC_TRY(src->teacher_view->load(src->teacher_view->ctx, items, n, second, NULL, NULL));
    return MC_OK;
}

/* The tile (its path). The view, which a cached target depends on too, is
 * in the cache key through the teacher's fingerprint (its bands and
 * normalisation: mc_chain_teacher_fingerprint). */
static const char *teacher_view_tile_key(void *ctx, int item) {
    teacher_view_source *src = ctx;
    return src->teacher_view->tile_key(src->teacher_view->ctx, item);
}

mc_status mc_chain_data_with_teacher_view(mc_chain_data *out, const mc_chain_data *student,
                                          const mc_chain_data *teacher_view) {
    if (!out || !student || !teacher_view)
        return mc_error(MC_ERR_ARG, "teacher view: missing source");
    if (student->count != teacher_view->count || student->height != teacher_view->height ||
        student->width != teacher_view->width)
        return mc_error(MC_ERR_SHAPE,
                        "teacher view: the student's source has %d tiles of %dx%d, the teacher's %d of %dx%d",
                        student->count, student->height, student->width, teacher_view->count,
                        teacher_view->height, teacher_view->width);
    if (student->tile_key && teacher_view->tile_key)
        for (int i = 0; i < student->count; i++)
            if (strcmp(student->tile_key(student->ctx, i), teacher_view->tile_key(teacher_view->ctx, i)) != 0)
                return mc_error(MC_ERR_ARG, "teacher view: tile %d is %s for the student, %s for the teacher", i,
                                student->tile_key(student->ctx, i), teacher_view->tile_key(teacher_view->ctx, i));
    teacher_view_source *src = malloc(sizeof *src);
    if (!src) return mc_error(MC_ERR_NOMEM, "teacher view: out of memory");
    *src = (teacher_view_source){student, teacher_view};
    *out = *student;
    out->rgb_channels = teacher_view->bands;
    out->rgb_height = teacher_view->height;
    out->rgb_width = teacher_view->width;
    out->load = teacher_view_load;
    out->tile_key = student->tile_key && teacher_view->tile_key ? teacher_view_tile_key : NULL;
    out->rgb_source = NULL; /* the second view is the teacher's bands, not RGB */
    out->release = free;
    out->ctx = src;
    return MC_OK;
}

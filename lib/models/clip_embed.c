/* CLIP inference in batches without gradients (images and texts), and the
 * fingerprint of the image tower that names cached image embeddings. */
#include "mmchain/clip.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/fnv.h"

/* The rows to embed: images (pixels, or RGB to preprocess) or text ids. */
typedef struct embed_rows {
    const mc_tensor *images; /* (N, 3, H, W), or NULL for texts */
    bool rgb;
    const int32_t *ids; /* (N, T) */
    int64_t count;
} embed_rows;

/* Rows [first, first + n) through their tower -> out rows. The step
 * tensors live on g until the caller resets it. */
static mc_status embed_batch(mc_clip *clip, mc_graph *g, const embed_rows *in, int64_t first, int n,
                             mc_tensor *out) {
    mc_tensor *embeds = NULL;
    mc_status status;
    if (in->images) {
        mc_tensor chunk = mc_tensor_rows(in->images, first, n);
        if (in->rgb) {
            /* the pixels on g's arena, reused batch after batch */
            mc_tensor *pixels = NULL;
            status = mc_clip_preprocess_on(g, &chunk, clip->config.vision.image_size, true, &pixels);
            if (status == MC_OK) status = mc_clip_encode_image(clip, g, pixels, &embeds);
        } else {
            status = mc_clip_encode_image(clip, g, &chunk, &embeds);
        }
    } else {
        status = mc_clip_encode_text(clip, g, in->ids + first * clip->config.text.context, n, &embeds);
    }
    if (status != MC_OK) return status;
    int64_t width = out->shape.dim[1];
    memcpy(out->data + first * width, embeds->data, (size_t)(n * width) * sizeof(float));
    return MC_OK;
}

/* Every batch on g, reset after each: its arena's pages are faulted in
 * by the first batch and reused by the others. */
static mc_status embed_all_on(mc_clip *clip, mc_graph *g, const embed_rows *in, int batch,
                              mc_tensor *out) {
    bool was_enabled = mc_graph_set_grad_enabled(g, false); /* inference: no tape */
    mc_status status = MC_OK;
    for (int64_t first = 0; first < in->count && status == MC_OK; first += batch) {
        int n = (int)(in->count - first < batch ? in->count - first : batch);
        status = embed_batch(clip, g, in, first, n, out);
        mc_graph_reset(g);
    }
    mc_graph_set_grad_enabled(g, was_enabled);
    return status;
}

static mc_status embed_all(mc_clip *clip, const embed_rows *in, int batch, mc_tensor *out) {
    mc_graph *g;
    MC_TRY(mc_graph_new(&g));
    mc_status status = embed_all_on(clip, g, in, batch, out);
    mc_graph_free(g);
    return status;
}

/* out must be (rows, E). */
static mc_status check_output(const mc_clip *clip, const char *what, int64_t rows, int batch,
                              const mc_tensor *out) {
    char a[128];
    if (batch < 1) return mc_error(MC_ERR_ARG, "clip: embed %s: batch %d, expected >= 1", what, batch);
    if (!out || out->shape.ndim != 2 || out->shape.dim[0] != rows ||
        out->shape.dim[1] != clip->config.embed_dim)
        return mc_error(MC_ERR_SHAPE, "clip: embed %s: output %s, expected (%lld, %d)", what,
                        out ? mc_tensor_str(out, a, sizeof a) : "NULL", (long long)rows,
                        clip->config.embed_dim);
    return MC_OK;
}

static mc_status check_images(const mc_clip *clip, const mc_tensor *images, int batch,
                              const mc_tensor *out) {
    char a[128];
    if (!clip || !images) return mc_error(MC_ERR_ARG, "clip: embed images: NULL argument");
    if (!clip->config.has_vision) return mc_error(MC_ERR_ARG, "clip: embed images: no image tower");
    if (images->shape.ndim != 4 || images->shape.dim[1] != 3)
        return mc_error(MC_ERR_SHAPE, "clip: embed images: %s, expected (N, 3, H, W)",
                        mc_tensor_str(images, a, sizeof a));
    return check_output(clip, "images", images->shape.dim[0], batch, out);
}

mc_status mc_clip_embed_images(mc_clip *clip, const mc_tensor *images, bool rgb, int batch,
                               mc_tensor *out) {
    MC_TRY(check_images(clip, images, batch, out));
    embed_rows in = {.images = images, .rgb = rgb, .count = images->shape.dim[0]};
    return embed_all(clip, &in, batch, out);
}

mc_status mc_clip_embed_images_on(mc_clip *clip, mc_graph *g, const mc_tensor *images, bool rgb,
                                  int batch, mc_tensor *out) {
    if (!g) return mc_error(MC_ERR_ARG, "clip: embed images: NULL graph");
    MC_TRY(check_images(clip, images, batch, out));
    embed_rows in = {.images = images, .rgb = rgb, .count = images->shape.dim[0]};
    return embed_all_on(clip, g, &in, batch, out);
}

mc_status mc_clip_embed_texts(mc_clip *clip, const int32_t *ids, int64_t n, int batch,
                              mc_tensor *out) {
    if (!clip || !ids || n < 1) return mc_error(MC_ERR_ARG, "clip: embed texts: no ids");
    if (!clip->config.has_text) return mc_error(MC_ERR_ARG, "clip: embed texts: no text tower");
    MC_TRY(check_output(clip, "texts", n, batch, out));
    embed_rows in = {.ids = ids, .count = n};
    return embed_all(clip, &in, batch, out);
}

static bool is_vision_tensor(const char *name) {
    return strncmp(name, "vision_model.", 13) == 0 || strcmp(name, "visual_projection.weight") == 0;
}

void mc_clip_vision_fingerprint(const mc_clip *clip, char hex[17]) {
    uint64_t h = MC_FNV1A_OFFSET;
    for (int i = 0; i < clip->params.count; i++) {
        const mc_tensor *t = clip->params.items[i];
        if (!is_vision_tensor(t->name)) continue;
        h = mc_fnv1a_string(h, t->name);
        h = mc_fnv1a(h, t->shape.dim, (size_t)t->shape.ndim * sizeof t->shape.dim[0]);
        h = mc_fnv1a(h, t->data, (size_t)t->numel * sizeof *t->data);
    }
    snprintf(hex, 17, "%016" PRIx64, h);
}

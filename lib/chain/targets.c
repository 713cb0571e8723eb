/* CLIP targets: the frozen image tower's embeddings of the RGB views.
 *
 * The spectral encoder learns to reproduce these, so every training step
 * needs one per tile. CLIP ViT-B/32 costs about 4.4 GFLOPs per 224x224 image,
 * more than the ResNet-50 step on a 64x64 tile, so the embeddings of the
 * un-augmented views are computed once and cached on disk, keyed by
 * everything they depend on: the tiles (their paths), the preprocessing and
 * the CLIP weights (a fingerprint of the image tower). Augmented views are
 * either embedded on the fly (the trainer calls mc_chain_embed_rgb) or taken
 * from K precomputed crops per tile (mc_chain_crop_targets), whose boxes are
 * a pure function of (seed, tile, k) so the spectral view can be cut the
 * same way at training time. */
#include "mmchain/chain.h"

#include "chain/chain_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fnv.h"
#include "mmchain/dist.h"

/* ---------------------------------------------------------------------------
 * embedding RGB views
 * ------------------------------------------------------------------------- */

mc_status mc_chain_embed_rgb(mc_clip *clip, const mc_tensor *rgb, int batch, mc_tensor *out) {
    if (!clip) return mc_error(MC_ERR_ARG, "embed RGB: no CLIP");
    const mc_chain_tower tower = {.clip = clip};
    return mc_chain_tower_embed(&tower, rgb, batch, out);
}

/* What the tower's embeddings are called in messages. */
static const char *targets_name(const mc_chain_tower *tower) {
    return tower->clip ? "CLIP targets" : "teacher targets";
}

int mc_chain_tower_dim(const mc_chain_tower *tower) {
    return tower->clip ? tower->clip->config.embed_dim : tower->teacher->embed_dim;
}

mc_status mc_chain_tower_embed_on(const mc_chain_tower *tower, mc_graph *g, const mc_tensor *views,
                                  int batch, mc_tensor *out) {
    if (tower->clip) return mc_clip_embed_images_on(tower->clip, g, views, true, batch, out);
    return mc_chain_teacher_embed_on(tower->teacher, g, views, batch, out);
}

mc_status mc_chain_tower_embed(const mc_chain_tower *tower, const mc_tensor *views, int batch,
                               mc_tensor *out) {
    mc_graph *g;
    MC_TRY(mc_graph_new(&g));
    mc_status status = mc_chain_tower_embed_on(tower, g, views, batch, out);
    mc_graph_free(g);
    return status;
}

/* ---------------------------------------------------------------------------
 * the on-disk cache
 * ------------------------------------------------------------------------- */

/* The key of a set of targets: tiles, preprocessing, the tower (CLIP's
 * image tower or a teacher), and (for crops) the augmentation. */
static mc_status cache_key(const mc_chain_tower *tower, const mc_chain_data *data, const char *variant,
                           int batch, char key[17]) {
    char fingerprint[17], preprocessing[128];
    uint64_t h;
    if (tower->clip) {
        mc_clip_vision_fingerprint(tower->clip, fingerprint);
        /* The heads and the MLP's activation as well: they are not in the
         * tensors the fingerprint hashes (mc_clip_load reads them beside
         * them), and others are another tower. The exact GELU is named,
         * quick_gelu is not: a cache of an OpenAI CLIP keeps its key. */
        snprintf(preprocessing, sizeof preprocessing,
                 "rgb %dx%d -> bicubic antialias %d, CLIP mean/std, %d heads%s", data->rgb_height,
                 data->rgb_width, tower->clip->config.vision.image_size,
                 tower->clip->config.vision.heads,
                 tower->clip->config.vision.activation == MC_CLIP_GELU ? ", gelu" : "");
        /* v4: where the RGB views come from (an RGB release, or the tiles'
         * bands) is part of the key; before, runs with and without --rgb
         * sharing a cache folder read each other's targets. */
        /* v2: the tower's inference since then sums its softmax in 16 lanes
         * and adds the fc1 bias after the product, which changes the
         * embeddings at float rounding: a v1 cache would no longer equal
         * the targets made on the fly bit for bit.
         * v3: layer norm sums its rows in 16 fixed lanes, again a change
         * at float rounding. */
        h = mc_fnv1a_string(MC_FNV1A_OFFSET, "mmchain clip targets v4");
        h = mc_fnv1a_string(h, data->rgb_source ? data->rgb_source : "");
    } else {
        mc_chain_teacher_fingerprint(tower->teacher, fingerprint);
        /* The batch size as well: a convolution takes Winograd or im2col by
         * the tile count of the whole batch, so a tile's embedding can
         * differ at float rounding between batch sizes. */
        snprintf(preprocessing, sizeof preprocessing, "teacher view %dx%dx%d in batches of %d",
                 data->rgb_channels, data->rgb_height, data->rgb_width, batch);
        /* v2: Winograd is now chosen by the tile count, not the map size,
         * which moves some of the teacher's 3x3 convolutions onto it and
         * changes its embeddings at float rounding. */
        h = mc_fnv1a_string(MC_FNV1A_OFFSET, "mmchain teacher targets v2");
    }
    h = mc_fnv1a_string(h, fingerprint);
    h = mc_fnv1a_string(h, preprocessing);
    h = mc_fnv1a_string(h, variant);
    /* bf16 targets differ from fp32 ones (the teacher's graph is made with
     * the default precision); fp32 keys stay as they were. "v2": a bf16
     * graph's 3x3 convolutions of 128 tiles or more now run by Winograd
     * with bf16 operands, which changes bf16 teacher targets. */
    if (mc_default_precision() == MC_PRECISION_BF16) {
        h = mc_fnv1a_string(h, "bf16 products v2");
        /* bf16 products split a long inner dimension by the size of their
         * result, and the image tower's last MLP runs on one row per image:
         * its rounding can depend on the batch (the teacher's key has it). */
        char batch_text[32];
        snprintf(batch_text, sizeof batch_text, "batch %d", batch);
        if (tower->clip) h = mc_fnv1a_string(h, batch_text);
    }
    for (int i = 0; i < data->count; i++) {
        const char *tile = data->tile_key(data->ctx, i);
        if (!tile) return mc_error(MC_ERR_ARG, "%s: tile %d has no cache key", targets_name(tower), i);
        h = mc_fnv1a_string(h, tile);
    }
    snprintf(key, 17, "%016" PRIx64, h);
    return MC_OK;
}

static mc_status make_folder(const char *dir) {
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) return MC_OK;
    return mc_error(MC_ERR_IO, "cache folder %s cannot be created: %s", dir, strerror(errno));
}

/* A cached (rows, E) tensor when the file exists and fits; NULL otherwise. */
static mc_tensor *cache_read(const char *path, int64_t rows, int64_t width) {
    mc_safetensors *f;
    if (mc_safetensors_open(path, &f) != MC_OK) {
        mc_clear_error(); /* absent or unreadable: recompute */
        return NULL;
    }
    mc_tensor *t = NULL;
    mc_shape shape;
    if (mc_safetensors_info(f, "targets", NULL, &shape) == MC_OK &&
        mc_shape_equal(shape, MC_SHAPE(rows, width)))
        if (mc_safetensors_read(f, "targets", &t) != MC_OK) t = NULL;
    if (t && mc_check_finite(t->data, t->numel, path) != MC_OK) { /* a damaged cache: recompute */
        mc_tensor_free(t);
        t = NULL;
    }
    mc_safetensors_close(f);
    mc_clear_error();
    return t;
}

/* Embed tiles [begin, end) of data into their rows of out (all of data's
 * rows: the others are left as they are). */
typedef mc_status (*compute_fn)(const mc_chain_tower *tower, const mc_chain_data *data, int batch,
                                void *ctx, int begin, int end, mc_tensor *out);

/* Data parallel: rank 0's cached targets (or none) on every rank, so that
 * every rank takes the same branch and the others need not see its disk. */
static mc_status share_cached(mc_tensor **cached, int64_t rows, int64_t width) {
    float found = *cached ? 1.0f : 0.0f;
    MC_TRY(mc_dist_broadcast_floats(&found, 1, 0));
    if (found == 0.0f) return MC_OK;
    if (!*cached) MC_TRY(mc_tensor_new(cached, MC_SHAPE(rows, width), "targets"));
    return mc_dist_broadcast_floats((*cached)->data, rows * width, 0);
}

/* Read the targets from cache_dir/clip-targets-<key>.safetensors (a
 * teacher's: teacher-targets-<key>), or compute and store them. */
static mc_status cached_targets(const mc_chain_tower *tower, const mc_chain_data *data,
                                const char *cache_dir, const char *variant, int64_t rows, int batch,
                                compute_fn compute, void *ctx, mc_tensor **out, bool *from_cache) {
    int64_t width = mc_chain_tower_dim(tower);
    char key[17], path[4096];
    bool use_cache = cache_dir && data->tile_key;
    const bool sharded = mc_dist_world_size() > 1, writer = mc_dist_rank() == 0;
    if (from_cache) *from_cache = false;
    mc_tensor *cached = NULL;
    if (use_cache) {
        MC_TRY(cache_key(tower, data, variant, batch, key));
        /* cut short, the key would be lost and different targets share a file */
        if (snprintf(path, sizeof path, "%s/%s-targets-%s.safetensors", cache_dir,
                     tower->clip ? "clip" : "teacher", key) >= (int)sizeof path)
            return mc_error(MC_ERR_ARG, "cache folder %s: its path is too long for a file name",
                            cache_dir);
        if (writer) cached = cache_read(path, rows, width);
    }
    if (sharded) MC_TRY(share_cached(&cached, rows, width));
    if (cached) {
        *out = cached;
        if (from_cache) *from_cache = true;
        return MC_OK;
    }
    int begin = 0, end = data->count;
    if (sharded) mc_chain_shard_of_tiles(data->count, batch, &begin, &end);
    mc_tensor *targets;
    MC_TRY(mc_tensor_new(&targets, MC_SHAPE(rows, width), "targets"));
    mc_status status = compute(tower, data, batch, ctx, begin, end, targets);
    if (status == MC_OK && sharded)
        status = mc_chain_gather_shards(targets, begin, end, rows / data->count, targets_name(tower));
    if (status == MC_OK && use_cache && writer) {
        char count[24];
        snprintf(count, sizeof count, "%lld", (long long)rows);
        mc_metadata_entry meta[] = {{"key", key}, {"variant", variant}, {"rows", count}};
        status = make_folder(cache_dir);
        if (status == MC_OK) status = mc_safetensors_write(path, 1, &targets, 3, meta);
    }
    if (status != MC_OK) {
        mc_tensor_free(targets);
        return status;
    }
    *out = targets;
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * un-augmented targets
 * ------------------------------------------------------------------------- */

/* Load the second views (RGB, or a teacher's bands) of items
 * [first, first + n) into a new heap tensor. */
static mc_status load_rgb_views(const mc_chain_tower *tower, const mc_chain_data *data, int first, int n,
                                mc_tensor **rgb) {
    int *items = malloc((size_t)n * sizeof *items);
    if (!items) return mc_error(MC_ERR_NOMEM, "%s: out of memory", targets_name(tower));
    for (int i = 0; i < n; i++) items[i] = first + i;
    mc_status status = mc_tensor_new(rgb, MC_SHAPE(n, data->rgb_channels, data->rgb_height, data->rgb_width),
                                     "rgb");
    if (status == MC_OK) status = data->load(data->ctx, items, n, NULL, *rgb, NULL);
    if (status != MC_OK) {
        mc_tensor_free(*rgb);
        *rgb = NULL;
    }
    free(items);
    return status;
}

static mc_status compute_plain(const mc_chain_tower *tower, const mc_chain_data *data, int batch,
                               void *ctx, int begin, int end, mc_tensor *out) {
    (void)ctx;
    mc_graph *g; /* one for all batches: its arena is filled once */
    MC_TRY(mc_graph_new(&g));
    mc_status status = MC_OK;
    for (int first = begin; first < end && status == MC_OK; first += batch) {
        int n = end - first < batch ? end - first : batch;
        mc_tensor *rgb;
        status = load_rgb_views(tower, data, first, n, &rgb);
        if (status != MC_OK) break;
        mc_tensor rows = mc_tensor_rows(out, first, n);
        status = mc_chain_tower_embed_on(tower, g, rgb, batch, &rows);
        mc_tensor_free(rgb);
    }
    mc_graph_free(g);
    return status;
}

mc_status mc_chain_tower_targets(const mc_chain_tower *tower, const mc_chain_data *data,
                                 const char *cache_dir, int batch, mc_tensor **out,
                                 bool *from_cache) {
    if (!tower || !data || !out || batch < 1 || data->count < 1)
        return mc_error(MC_ERR_ARG, "%s: bad arguments", tower ? targets_name(tower) : "targets");
    return cached_targets(tower, data, cache_dir, "plain", data->count, batch, compute_plain, NULL,
                          out, from_cache);
}

mc_status mc_chain_targets(mc_clip *clip, const mc_chain_data *data, const char *cache_dir,
                           int batch, mc_tensor **out, bool *from_cache) {
    if (!clip) return mc_error(MC_ERR_ARG, "CLIP targets: no CLIP");
    const mc_chain_tower tower = {.clip = clip};
    return mc_chain_tower_targets(&tower, data, cache_dir, batch, out, from_cache);
}

/* ---------------------------------------------------------------------------
 * K augmented crops per tile
 * ------------------------------------------------------------------------- */

void mc_chain_crop_params(uint64_t seed, int item, int k, const mc_augment_config *config,
                          mc_augment_params *out) {
    mc_rng rng;
    uint64_t h = mc_chain_mix64(seed ^ 0x63726f7073ULL); /* "crops" */
    h = mc_chain_mix64(h ^ (uint64_t)(uint32_t)item);
    h = mc_chain_mix64(h ^ ((uint64_t)(uint32_t)k << 32));
    mc_rng_seed(&rng, h);
    mc_augment_sample(&rng, config, out);
}

typedef struct crop_job {
    int crops;
    uint64_t seed;
    const mc_augment_config *config;
} crop_job;

static mc_status compute_crops(const mc_chain_tower *tower, const mc_chain_data *data, int batch,
                               void *ctx, int begin, int end, mc_tensor *out) {
    const crop_job *job = ctx;
    mc_augment_params *params = malloc((size_t)batch * sizeof *params);
    mc_tensor *rgb = NULL, *cut = NULL, *embeds = NULL;
    mc_graph *g = NULL; /* one for all batches: its arena is filled once */
    mc_status status = params ? mc_graph_new(&g) : mc_error(MC_ERR_NOMEM, "crop targets: out of memory");
    for (int first = begin; first < end && status == MC_OK; first += batch) {
        int n = end - first < batch ? end - first : batch;
        status = load_rgb_views(tower, data, first, n, &rgb);
        if (status == MC_OK) status = mc_tensor_new(&cut, rgb->shape, "rgb_crop");
        if (status == MC_OK) status = mc_tensor_new(&embeds, MC_SHAPE(n, out->shape.dim[1]), "crop");
        for (int k = 0; k < job->crops && status == MC_OK; k++) {
            for (int i = 0; i < n; i++)
                mc_chain_crop_params(job->seed, first + i, k, job->config, &params[i]);
            status = mc_augment_apply(rgb, params, n, cut);
            if (status == MC_OK) status = mc_chain_tower_embed_on(tower, g, cut, batch, embeds);
            int64_t e = out->shape.dim[1];
            for (int i = 0; i < n && status == MC_OK; i++) /* row item * K + k */
                memcpy(out->data + ((int64_t)(first + i) * job->crops + k) * e,
                       embeds->data + (int64_t)i * e, (size_t)e * sizeof(float));
        }
        mc_tensor_free(rgb);
        mc_tensor_free(cut);
        mc_tensor_free(embeds);
        rgb = cut = embeds = NULL;
    }
    mc_graph_free(g);
    free(params);
    return status;
}

mc_status mc_chain_tower_crop_targets(const mc_chain_tower *tower, const mc_chain_data *data,
                                      const char *cache_dir, int batch, int crops, uint64_t seed,
                                      const mc_augment_config *config, mc_tensor **out,
                                      bool *from_cache) {
    if (!tower || !data || !config || !out || batch < 1 || crops < 1 || data->count < 1)
        return mc_error(MC_ERR_ARG, "crop targets: bad arguments (crops %d)", crops);
    char variant[256];
    snprintf(variant, sizeof variant,
             "crops %d seed %" PRIu64 " mode %d crop %.9g..%.9g pad %.9g flips %d%d rot %d", crops,
             seed, (int)config->mode, (double)config->crop_min, (double)config->crop_max,
             (double)config->pad, config->hflip, config->vflip, config->rot90);
    crop_job job = {.crops = crops, .seed = seed, .config = config};
    return cached_targets(tower, data, cache_dir, variant, (int64_t)data->count * crops, batch,
                          compute_crops, &job, out, from_cache);
}

mc_status mc_chain_crop_targets(mc_clip *clip, const mc_chain_data *data, const char *cache_dir,
                                int batch, int crops, uint64_t seed,
                                const mc_augment_config *config, mc_tensor **out,
                                bool *from_cache) {
    if (!clip) return mc_error(MC_ERR_ARG, "crop targets: no CLIP");
    const mc_chain_tower tower = {.clip = clip};
    return mc_chain_tower_crop_targets(&tower, data, cache_dir, batch, crops, seed, config, out,
                                       from_cache);
}

/* Training the spectral encoder against CLIP's image embeddings.
 *
 * One step (the seed paper's recipe): take the next batch of tiles, cut the
 * same random relative box out of the spectral tile and its RGB view, embed
 * the RGB crop with the frozen CLIP (or look up one of K precomputed crops),
 * embed the spectral crop with the ResNet, InfoNCE between the two (spectral
 * -> RGB, or symmetric), backward, Adam.
 *
 * Resumability is designed in, not bolted on:
 *   - the order of the tiles in epoch e is a permutation drawn from a
 *     generator seeded by (seed, e) alone;
 *   - the augmentation of global step s is drawn from a generator seeded by
 *     (seed, s) alone;
 *   - everything else that changes — weights, BN running statistics, Adam's
 *     moments and step count, epoch, step, best metric — is in the checkpoint.
 * So a run resumed from any checkpoint replays exactly the steps an
 * uninterrupted run would have taken, and (same thread count, so the same
 * floating-point reduction order) ends with bit-identical weights.
 *
 * Data parallel (config.distributed, docs/distributed.md): every rank draws
 * the same global batch and the same augmentations, embeds its slice of the
 * batch, and all-gathers the embeddings and targets, so that each rank
 * computes the one-process InfoNCE over the whole batch; the gather's
 * backward and the gradient average then give every rank the one-process
 * gradient, and identical Adam steps keep the ranks' weights identical.
 * Validation is shared too: every rank evaluates its share of the
 * validation batches, and every rank gets the whole metrics. */
#include "mmchain/chain.h"

#include "chain/chain_internal.h"
#include "mmchain/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

mc_chain_train_config mc_chain_train_defaults(void) {
    mc_augment_config crops = mc_augment_default_config();
    crops.hflip = crops.vflip = crops.rot90 = false; /* the paper: random crops only */
    mc_chain_train_config c = {
        .epochs = 10, .batch_size = 100, .val_batch_size = 512, .lr = 1e-4f,
        .symmetric = false, .learnable_temperature = false, .temperature = 0.07f,
        .augment = true, .augment_config = crops, .target_crops = 0, .shuffle_pairs = false,
        .seed = 0, .selection = MC_SELECT_LOSS, .val_every = 1, .val_max_tiles = 0,
        .checkpoint_every = 0, .checkpoint_dir = NULL, .cache_dir = NULL,
        .clip_batch = 64, .stop_after_steps = 0, .n_extra_meta = 0, .extra_meta = NULL,
        .distributed = false, .sync_batchnorm = false,
    };
    return c;
}

static const char *const SELECTION_NAMES[] = {"loss", "matching", "labels"};

const char *mc_chain_selection_name(mc_chain_selection selection) {
    return selection <= MC_SELECT_LABELS ? SELECTION_NAMES[selection] : "?";
}

const char *mc_chain_selection_describe(mc_chain_selection selection) {
    switch (selection) {
    case MC_SELECT_LOSS: return "validation InfoNCE loss (label-free)";
    case MC_SELECT_MATCHING: return "validation spectral->RGB matching accuracy (label-free)";
    case MC_SELECT_LABELS: return "validation spectral->text accuracy (uses the labels)";
    }
    return "?";
}

mc_status mc_chain_selection_parse(const char *name, mc_chain_selection *out) {
    for (int i = 0; i <= MC_SELECT_LABELS; i++)
        if (name && strcmp(name, SELECTION_NAMES[i]) == 0) {
            *out = (mc_chain_selection)i;
            return MC_OK;
        }
    return mc_error(MC_ERR_ARG, "'%s' is not loss, matching or labels", name ? name : "");
}

struct mc_chain_trainer {
    mc_chain_train_config cfg;
    mc_spectral_encoder *enc;
    mc_chain_tower tower;       /* what makes the targets: CLIP or the teacher */
    const mc_chain_data *train, *val; /* val: the caller's, or val_subset */
    mc_chain_data val_subset;   /* the capped validation set (val_max_tiles) */
    const mc_tensor *classes;   /* (K, E) */
    mc_chain_hooks hooks;
    mc_tensor *train_targets;   /* (count, E), (count * K, E) for crops, NULL on the fly */
    mc_tensor *val_targets;     /* (val count, E) */
    int *pair_of;               /* (count): tile i learns the target of tile pair_of[i] */
    mc_optimizer *opt;
    mc_graph *g;
    mc_chain_state state;
    int64_t steps_per_epoch;
    int *order;                 /* (count): this epoch's permutation */
    int order_epoch;            /* the epoch `order` belongs to, -1 = none */
    /* one batch */
    int *items, *pairs, *rows;  /* (batch): tiles, target tiles, target rows */
    mc_augment_params *params;  /* (batch) */
    mc_tensor *rgb;             /* (batch, C, Hr, Wr) on-the-fly second views (RGB: C = 3) */
    mc_graph *embed_g;          /* on the fly: the tower's graph, kept so its arena is reused */
    mc_tensor *targets;         /* (batch, E) this step's targets */
    mc_chain_metrics metrics;
    bool have_metrics;
    /* data parallel: this process's rank among `world` (0 of 1 alone) */
    int rank, world;
    bool weights_shared;        /* rank 0's weights were broadcast */
    mc_dist_reducer *reducer;   /* the gradient average, overlapped with backward */
};

/* ---------------------------------------------------------------------------
 * pure functions of the seed
 * ------------------------------------------------------------------------- */

/* A generator for one purpose ("order", "augment", "pairs") and one index. */
static void seeded_rng(uint64_t seed, uint64_t purpose, uint64_t index, mc_rng *rng) {
    mc_rng_seed(rng, mc_chain_mix64(mc_chain_mix64(seed ^ purpose) ^ index));
}

#define PURPOSE_ORDER 0x6f72646572ULL   /* "order" */
#define PURPOSE_AUGMENT 0x6175676dULL   /* "augm" */
#define PURPOSE_PAIRS 0x7061697273ULL   /* "pairs" */

static void epoch_order(const mc_chain_trainer *t, int epoch, int *order) {
    mc_rng rng;
    seeded_rng(t->cfg.seed, PURPOSE_ORDER, (uint64_t)epoch, &rng);
    for (int i = 0; i < t->train->count; i++) order[i] = i;
    mc_rng_shuffle(&rng, order, t->train->count);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void say(const mc_chain_trainer *t, const char *line) {
    if (t->rank == 0 && t->hooks.on_message) t->hooks.on_message(t->hooks.ctx, line);
}

/* ---------------------------------------------------------------------------
 * construction
 * ------------------------------------------------------------------------- */

static mc_status check_config(const mc_chain_train_config *c) {
    if (c->epochs < 1 || c->batch_size < 2 || c->val_batch_size < 1 || !(c->lr > 0.0f) ||
        !(c->temperature > 0.0f) || c->target_crops < 0 || c->checkpoint_every < 0 ||
        c->clip_batch < 1 || c->val_every < 1 || c->val_max_tiles < 0 ||
        (unsigned)c->selection > MC_SELECT_LABELS)
        return mc_error(MC_ERR_ARG,
                        "train config: epochs %d, batch %d, validation batch %d, lr %g, temperature "
                        "%g, target crops %d, checkpoint every %lld, validate every %d on %d tiles, "
                        "selection %d (expected epochs >= 1, batch >= 2, lr > 0, temperature > 0, "
                        "crops >= 0, validate every >= 1 on >= 0 tiles, selection 0..2)",
                        c->epochs, c->batch_size, c->val_batch_size, (double)c->lr,
                        (double)c->temperature, c->target_crops, (long long)c->checkpoint_every,
                        c->val_every, c->val_max_tiles, (int)c->selection);
    return MC_OK;
}

static mc_status check_sizes(const mc_spectral_encoder *enc, const mc_chain_tower *tower,
                             const mc_chain_data *train, const mc_chain_data *val,
                             const mc_tensor *classes) {
    char a[128];
    if (enc->embed_dim != mc_chain_tower_dim(tower))
        return mc_error(MC_ERR_SHAPE, "the encoder's head outputs %d values, %s has %d",
                        enc->embed_dim, tower->clip ? "CLIP's joint space" : "the teacher's space",
                        mc_chain_tower_dim(tower));
    const mc_chain_data *sets[2] = {train, val};
    for (int i = 0; i < 2; i++) {
        int channels = tower->clip ? 3 : tower->teacher->bands.count;
        if (sets[i]->rgb_channels != channels)
            return mc_error(MC_ERR_SHAPE, "%s data's second view has %d channels, %s takes %d",
                            i ? "validation" : "training", sets[i]->rgb_channels,
                            tower->clip ? "CLIP's image tower" : "the teacher", channels);
        if (sets[i]->bands != enc->bands.count)
            return mc_error(MC_ERR_SHAPE, "%s data has %d bands, the encoder takes %d",
                            i ? "validation" : "training", sets[i]->bands, enc->bands.count);
        if (sets[i]->height != enc->image_size || sets[i]->width != enc->image_size)
            return mc_error(MC_ERR_SHAPE, "%s tiles are %dx%d, the encoder takes %dx%d",
                            i ? "validation" : "training", sets[i]->height, sets[i]->width,
                            enc->image_size, enc->image_size);
    }
    if (train->count < 2) return mc_error(MC_ERR_ARG, "training needs at least 2 tiles, got %d", train->count);
    if (classes->shape.ndim != 2 || classes->shape.dim[0] != val->num_classes ||
        classes->shape.dim[1] != enc->embed_dim)
        return mc_error(MC_ERR_SHAPE, "class embeddings %s, expected (%d classes, %d)",
                        mc_tensor_str(classes, a, sizeof a), val->num_classes, enc->embed_dim);
    return MC_OK;
}

static mc_status alloc_buffers(mc_chain_trainer *t) {
    int b = t->cfg.batch_size, count = t->train->count;
    t->order = malloc((size_t)count * sizeof *t->order);
    t->pair_of = malloc((size_t)count * sizeof *t->pair_of);
    t->items = malloc((size_t)b * sizeof *t->items);
    t->pairs = malloc((size_t)b * sizeof *t->pairs);
    t->rows = malloc((size_t)b * sizeof *t->rows);
    t->params = malloc((size_t)b * sizeof *t->params);
    if (!t->order || !t->pair_of || !t->items || !t->pairs || !t->rows || !t->params)
        return mc_error(MC_ERR_NOMEM, "trainer: out of memory");
    for (int i = 0; i < count; i++) t->pair_of[i] = i;
    if (t->cfg.shuffle_pairs) { /* the negative control: a fixed wrong pairing */
        mc_rng rng;
        seeded_rng(t->cfg.seed, PURPOSE_PAIRS, 0, &rng);
        mc_rng_shuffle(&rng, t->pair_of, count);
    }
    MC_TRY(mc_tensor_new(&t->targets, MC_SHAPE(b, t->enc->embed_dim), "targets"));
    if (t->cfg.augment && t->cfg.target_crops == 0) {
        MC_TRY(mc_tensor_new(&t->rgb, MC_SHAPE(b, t->train->rgb_channels, t->train->rgb_height,
                                               t->train->rgb_width), "rgb"));
        MC_TRY(mc_graph_new(&t->embed_g));
    }
    return MC_OK;
}

static mc_status compute_targets(mc_chain_trainer *t) {
    char line[256];
    bool cached;
    const char *what = t->tower.clip ? "CLIP targets" : "teacher targets";
    snprintf(line, sizeof line, "%s: %d validation tiles", what, t->val->count);
    say(t, line);
    MC_TRY(mc_chain_tower_targets(&t->tower, t->val, t->cfg.cache_dir, t->cfg.clip_batch, &t->val_targets,
                                  &cached));
    if (cached) {
        snprintf(line, sizeof line, "%s: validation tiles read from the cache", what);
        say(t, line);
    }
    if (t->cfg.augment && t->cfg.target_crops == 0) return MC_OK; /* embedded per step */
    if (!t->cfg.augment) {
        snprintf(line, sizeof line, "%s: %d training tiles", what, t->train->count);
        say(t, line);
        MC_TRY(mc_chain_tower_targets(&t->tower, t->train, t->cfg.cache_dir, t->cfg.clip_batch,
                                      &t->train_targets, &cached));
    } else {
        snprintf(line, sizeof line, "%s: %d crops of %d training tiles", what,
                 t->cfg.target_crops, t->train->count);
        say(t, line);
        MC_TRY(mc_chain_tower_crop_targets(&t->tower, t->train, t->cfg.cache_dir, t->cfg.clip_batch,
                                           t->cfg.target_crops, t->cfg.seed, &t->cfg.augment_config,
                                           &t->train_targets, &cached));
    }
    if (cached) {
        snprintf(line, sizeof line, "%s: training targets read from the cache", what);
        say(t, line);
    }
    return MC_OK;
}


/* The tiles of a source, as a fingerprint of their paths (0 for tiles
 * held in memory, which have none). */
static uint64_t tiles_fingerprint(const mc_chain_data *data) {
    uint64_t h = MC_DIST_FINGERPRINT_START;
    for (int i = 0; data->tile_key && i < data->count; i++) {
        const char *key = data->tile_key(data->ctx, i);
        h = mc_dist_fingerprint(h, key, strlen(key) + 1);
    }
    return h;
}

/* What an encoder computes beyond its weights: its input bands, their
 * normalisation, its tile size and embedding width (a fingerprint). */
static uint64_t encoder_fingerprint(uint64_t h, const mc_spectral_encoder *enc) {
    h = mc_dist_fingerprint(h, &enc->bands.count, sizeof enc->bands.count);
    h = mc_dist_fingerprint(h, enc->bands.index, (size_t)enc->bands.count * sizeof enc->bands.index[0]);
    h = mc_dist_fingerprint(h, &enc->norm.kind, sizeof enc->norm.kind);
    h = mc_dist_fingerprint(h, enc->norm.mean, sizeof enc->norm.mean);
    h = mc_dist_fingerprint(h, enc->norm.std, sizeof enc->norm.std);
    h = mc_dist_fingerprint(h, &enc->image_size, sizeof enc->image_size);
    return mc_dist_fingerprint(h, &enc->embed_dim, sizeof enc->embed_dim);
}

/* Data parallel: every rank must train with rank 0's options on rank 0's
 * tiles, or the ranks would silently train apart (their averaged gradients
 * keep their weights equal, so nothing else would show it). */
static mc_status check_ranks_agree(const mc_chain_trainer *t) {
    const mc_chain_train_config *c = &t->cfg;
    uint64_t train_tiles = tiles_fingerprint(t->train), val_tiles = tiles_fingerprint(t->val);
    uint64_t inputs = encoder_fingerprint(MC_DIST_FINGERPRINT_START, t->enc);
    if (c->teacher) inputs = encoder_fingerprint(inputs, c->teacher);
    const mc_dist_setting settings[] = {
        {"--epochs", c->epochs}, {"--batch", c->batch_size}, {"--val-batch", c->val_batch_size},
        {"--lr", c->lr}, {"--symmetric", c->symmetric}, {"--learnable-temperature", c->learnable_temperature},
        {"--temperature", c->temperature}, {"--no-augment", !c->augment},
        {"--crop-min", c->augment_config.crop_min}, {"--target-crops", c->target_crops},
        {"--shuffle-pairs", c->shuffle_pairs}, {"--seed (low half)", (double)(uint32_t)c->seed},
        {"--seed (high half)", (double)(c->seed >> 32)}, {"--select", c->selection}, {"--val-every", c->val_every},
        {"--val-max", c->val_max_tiles}, {"--sync-bn", c->sync_batchnorm}, {"--stop-after-steps", (double)c->stop_after_steps},
        /* With --sync-bn a recomputed block's forward runs its batch norms'
         * all-reduces again in backward: a rank that recomputes and one
         * that does not would pair different collectives. */
        {"--recompute (with --sync-bn)", c->sync_batchnorm && t->enc->resnet->recompute},
        {"training tiles", t->train->count}, {"validation tiles", t->val->count},
        {"bands of a tile", t->train->bands}, {"tile height", t->train->height}, {"tile width", t->train->width},
        {"classes", t->train->num_classes},
        {"training tile paths (fingerprint, low half)", (double)(uint32_t)train_tiles},
        {"training tile paths (fingerprint, high half)", (double)(train_tiles >> 32)},
        {"validation tile paths (fingerprint, low half)", (double)(uint32_t)val_tiles},
        {"validation tile paths (fingerprint, high half)", (double)(val_tiles >> 32)},
        {"--precision", mc_default_precision()}, {"--clip-batch", c->clip_batch},
        {"--teacher", c->teacher != NULL},
        {"bands, normalisation, tile size, embedding (fingerprint, low half)", (double)(uint32_t)inputs},
        {"bands, normalisation, tile size, embedding (fingerprint, high half)", (double)(inputs >> 32)},
    };
    return mc_dist_check_settings("the ranks disagree", settings, (int)(sizeof settings / sizeof settings[0]));
}

static mc_status trainer_init(mc_chain_trainer *t) {
    int count = t->train->count, b = t->cfg.batch_size;
    /* Batches of the epoch: full ones, plus the remainder when it holds at
     * least 2 tiles (InfoNCE over one tile is constant; BN needs >1). */
    t->steps_per_epoch = count / b + (count % b >= 2 ? 1 : 0);
    t->order_epoch = -1;
    t->state.best_metric = -1.0;
    if (t->cfg.val_max_tiles > 0 && t->cfg.val_max_tiles < t->val->count) {
        MC_TRY(mc_chain_data_subset(&t->val_subset, t->val, t->cfg.val_max_tiles));
        t->val = &t->val_subset;
    }
    if (t->world > 1) MC_TRY(check_ranks_agree(t));
    MC_TRY(mc_dist_check_batches(count, b, t->world)); /* every rank needs a part of every batch */
    MC_TRY(alloc_buffers(t));
    MC_TRY(compute_targets(t)); /* data parallel: every rank embeds its shard of the tiles */
    mc_adam_config adam = mc_adam_defaults();
    adam.lr = t->cfg.lr;
    MC_TRY(mc_optimizer_adam(&t->opt, &t->enc->params, adam));
    MC_TRY(mc_graph_new(&t->g));
    if (t->world > 1) MC_TRY(mc_dist_reducer_new(&t->enc->params, MC_DIST_BUCKET_BYTES, &t->reducer));
    return MC_OK;
}

mc_status mc_chain_trainer_new(mc_chain_trainer **out, const mc_chain_train_config *config,
                               mc_spectral_encoder *enc, mc_clip *clip, const mc_chain_data *train,
                               const mc_chain_data *val, const mc_tensor *class_embeds,
                               const mc_chain_hooks *hooks) {
    if (!out || !config || !enc || !(clip || config->teacher) || !train || !val || !class_embeds)
        return mc_error(MC_ERR_ARG, "trainer: missing argument");
    MC_TRY(check_config(config));
    /* The teacher, when given, takes CLIP's place as the target tower. */
    const mc_chain_tower tower = config->teacher ? (mc_chain_tower){.teacher = config->teacher}
                                                 : (mc_chain_tower){.clip = clip};
    MC_TRY(check_sizes(enc, &tower, train, val, class_embeds));
    mc_chain_trainer *t = calloc(1, sizeof *t);
    if (!t) return mc_error(MC_ERR_NOMEM, "trainer: out of memory");
    *t = (mc_chain_trainer){.cfg = *config, .enc = enc, .tower = tower, .train = train, .val = val,
                            .classes = class_embeds, .rank = 0, .world = 1};
    if (config->distributed) {
        t->rank = mc_dist_rank();
        t->world = mc_dist_world_size();
    }
    if (hooks) t->hooks = *hooks;
    if (clip) mc_clip_set_trainable(clip, false);
    /* The temperature: fixed, or learnable from CLIP's initial value. */
    enc->logit_scale->data[0] = logf(1.0f / config->temperature);
    mc_status status = mc_tensor_set_requires_grad(enc->logit_scale, config->learnable_temperature);
    if (status == MC_OK) status = trainer_init(t);
    if (status != MC_OK) {
        mc_chain_trainer_free(t);
        return status;
    }
    *out = t;
    return MC_OK;
}

void mc_chain_trainer_free(mc_chain_trainer *t) {
    if (!t) return;
    mc_tensor_free(t->train_targets);
    mc_tensor_free(t->val_targets);
    mc_tensor_free(t->rgb);
    mc_tensor_free(t->targets);
    mc_optimizer_free(t->opt);
    mc_graph_free(t->g);
    mc_graph_free(t->embed_g);
    mc_dist_reducer_free(t->reducer);
    mc_chain_metrics_free(&t->metrics);
    mc_chain_data_free(&t->val_subset);
    free(t->pair_of);
    free(t->order);
    free(t->items);
    free(t->pairs);
    free(t->rows);
    free(t->params);
    free(t);
}

const mc_chain_state *mc_chain_trainer_state(const mc_chain_trainer *t) { return &t->state; }
const mc_tensor *mc_chain_trainer_val_targets(const mc_chain_trainer *t) { return t->val_targets; }
const mc_chain_data *mc_chain_trainer_val_data(const mc_chain_trainer *t) { return t->val; }
int64_t mc_chain_trainer_steps_per_epoch(const mc_chain_trainer *t) { return t->steps_per_epoch; }

/* ---------------------------------------------------------------------------
 * one step
 * ------------------------------------------------------------------------- */

/* The next batch's tile numbers (items) and target tiles (pairs). */
static int next_batch(mc_chain_trainer *t) {
    if (t->order_epoch != t->state.epoch) {
        epoch_order(t, t->state.epoch, t->order);
        t->order_epoch = t->state.epoch;
    }
    int b = t->cfg.batch_size;
    int64_t first = t->state.step_in_epoch * b;
    int n = (int)(t->train->count - first < b ? t->train->count - first : b);
    for (int i = 0; i < n; i++) {
        t->items[i] = t->order[first + i];
        t->pairs[i] = t->pair_of[t->items[i]];
    }
    return n;
}

/* Rows of the precomputed targets into t->targets. */
static void gather_targets(mc_chain_trainer *t, int n, const int *rows) {
    int64_t e = t->enc->embed_dim;
    for (int i = 0; i < n; i++)
        memcpy(t->targets->data + i * e, t->train_targets->data + (int64_t)rows[i] * e,
               (size_t)e * sizeof(float));
}

/* The batch's items [first, first + m) — all of it alone, this rank's
 * slice in a distributed run: x (m, C, H, W) is their spectral view; augment
 * it and set the first m targets. The augmentations of the whole batch (n
 * items) are drawn, in the same order whatever the slice, so every item
 * gets the augmentation it gets in a one-process run. */
static mc_status prepare_views(mc_chain_trainer *t, mc_tensor *x, int n, int first, int m) {
    mc_tensor targets_view = mc_tensor_rows(t->targets, 0, m);
    if (!t->cfg.augment) {
        gather_targets(t, m, t->pairs + first);
        return MC_OK;
    }
    mc_rng rng;
    seeded_rng(t->cfg.seed, PURPOSE_AUGMENT, (uint64_t)t->state.global_step, &rng);
    if (t->cfg.target_crops > 0) {
        /* One of the K embedded crops of the target tile; the spectral tile
         * gets the same relative box. */
        for (int i = 0; i < n; i++) {
            int k = (int)mc_rng_below(&rng, (uint64_t)t->cfg.target_crops);
            mc_chain_crop_params(t->cfg.seed, t->pairs[i], k, &t->cfg.augment_config, &t->params[i]);
            t->rows[i] = t->pairs[i] * t->cfg.target_crops + k;
        }
        gather_targets(t, m, t->rows + first);
        MC_TRY(mc_augment_apply(x, t->params + first, m, x));
    } else {
        /* On the fly: crop both views with one shared box (mc_augment_pair's
         * draws, one per pair), embed the RGB crop. */
        for (int i = 0; i < n; i++) mc_augment_sample(&rng, &t->cfg.augment_config, &t->params[i]);
        mc_tensor rgb = mc_tensor_rows(t->rgb, 0, m);
        MC_TRY(t->train->load(t->train->ctx, t->pairs + first, m, NULL, &rgb, NULL));
        MC_TRY(mc_augment_apply(x, t->params + first, m, x));
        MC_TRY(mc_augment_apply(&rgb, t->params + first, m, &rgb));
        MC_TRY(mc_chain_tower_embed_on(&t->tower, t->embed_g, &rgb, t->cfg.clip_batch, &targets_view));
    }
    t->state.rng = rng;
    return MC_OK;
}

/* CLIP bounds its learnable logit scale at log(100) so the softmax cannot
 * become arbitrarily sharp (Radford et al., 2021, section 2.5). */
static void clamp_logit_scale(mc_spectral_encoder *enc) {
    const float max_scale = logf(100.0f);
    if (enc->logit_scale->data[0] > max_scale) enc->logit_scale->data[0] = max_scale;
}

/* Data parallel: the embeddings and targets of every rank's slice, in rank
 * order — the whole batch, as one process would have it. The gather's
 * backward sums what every rank's loss sends to this rank's rows. */
static mc_status gather_batch(mc_chain_trainer *t, mc_tensor **embeds, mc_tensor **targets) {
    if (t->world == 1) return MC_OK;
    MC_TRY(mc_dist_all_gather_op(t->g, *embeds, embeds));
    return mc_dist_all_gather_op(t->g, *targets, targets);
}

/* In a distributed run, before the first step: every rank takes rank 0's
 * weights and buffers (a resumed run's ranks read the same checkpoint; a
 * fresh one's were initialised from the same seed — this makes sure). */
static mc_status share_weights(mc_chain_trainer *t) {
    if (t->world == 1 || t->weights_shared) return MC_OK;
    MC_TRY(mc_dist_broadcast_params(&t->enc->params));
    t->weights_shared = true;
    return MC_OK;
}

mc_status mc_chain_trainer_step(mc_chain_trainer *t, double *loss_out) {
    MC_TRY(share_weights(t));
    int n = next_batch(t);
    int64_t first, m; /* this rank's slice of the batch */
    mc_dist_slice(n, t->rank, t->world, &first, &m);
    mc_tensor *x, *embeds, *loss;
    mc_tensor local_targets = mc_tensor_rows(t->targets, 0, m), *targets = &local_targets;
    mc_status status = mc_graph_tensor(
        t->g, MC_SHAPE(m, t->train->bands, t->train->height, t->train->width), "x", &x);
    if (status == MC_OK) status = t->train->load(t->train->ctx, t->items + first, (int)m, x, NULL, NULL);
    if (status == MC_OK) status = prepare_views(t, x, n, (int)first, (int)m);
    mc_resnet_set_training(t->enc->resnet, true);
    bool sync_bn = t->cfg.sync_batchnorm && t->world > 1;
    if (sync_bn) mc_dist_set_sync_batchnorm(true);
    if (status == MC_OK) status = mc_spectral_encoder_forward(t->enc, t->g, x, &embeds);
    if (status == MC_OK) status = gather_batch(t, &embeds, &targets);
    if (status == MC_OK) status = mc_infonce(t->g, embeds, targets, t->enc->logit_scale, t->cfg.symmetric, &loss);
    if (status == MC_OK && !isfinite(loss->data[0]))
        status = mc_error(MC_ERR_NUMERIC,
                          "the loss became %g at epoch %d, step %lld (global step %lld); training "
                          "stopped, the last good checkpoint is kept",
                          (double)loss->data[0], t->state.epoch + 1,
                          (long long)t->state.step_in_epoch + 1, (long long)t->state.global_step + 1);
    if (status == MC_OK) {
        *loss_out = loss->data[0];
        mc_optimizer_zero_grad(t->opt);
        /* Data parallel: the gradients averaged over ranks, in buckets sent while backward runs. */
        status = t->reducer ? mc_dist_backward_average(t->reducer, t->g, loss) : mc_backward(t->g, loss);
    }
    if (sync_bn) mc_dist_set_sync_batchnorm(false);
    if (status == MC_OK) status = mc_optimizer_step(t->opt);
    mc_graph_reset(t->g);
    if (status != MC_OK) return status;
    clamp_logit_scale(t->enc);
    t->state.step_in_epoch++;
    t->state.global_step++;
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * checkpoints
 * ------------------------------------------------------------------------- */

/* A NaN that slipped into the weights through a finite loss must not
 * overwrite a good checkpoint: checked once where checkpoints are due,
 * before the hook records that step or epoch (the hook first, then the
 * checkpoints: finish_epoch says why). Rank 0 writes them, but every rank
 * checks its own tensors (the weights are the same on all; batch norm's
 * running statistics, without --sync-bn, are each rank's until shared)
 * and the verdicts are summed: all ranks stop together, where a rank that
 * carried on would wait in the next step's collectives for ever. */
static mc_status weights_fit_to_save(const mc_chain_trainer *t) {
    if (!t->cfg.checkpoint_dir) return MC_OK;
    const mc_tensor *bad = NULL;
    for (int i = 0; i < t->enc->params.count && !bad; i++) {
        const mc_tensor *p = t->enc->params.items[i];
        for (int64_t j = 0; j < p->numel && !bad; j++)
            if (!isfinite(p->data[j])) bad = p;
    }
    float ranks_with_one = bad ? 1.0f : 0.0f;
    if (t->world > 1) MC_TRY(mc_dist_allreduce_floats(&ranks_with_one, 1, MC_DIST_SUM));
    if (ranks_with_one == 0.0f) return MC_OK;
    if (!bad)
        return mc_error(MC_ERR_NUMERIC, "another rank's tensors hold a non-finite value; training "
                        "stopped, the last good checkpoint is kept");
    return mc_error(MC_ERR_NUMERIC,
                    "%s holds a non-finite value; training stopped, the last good checkpoint is "
                    "kept",
                    bad->name);
}

/* The caller has checked the weights (weights_fit_to_save). */
static mc_status save_checkpoint(mc_chain_trainer *t, const char *name) {
    if (!t->cfg.checkpoint_dir || t->rank != 0) return MC_OK; /* rank 0 writes for all */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.safetensors", t->cfg.checkpoint_dir, name);
    /* The caller's entries, then how `best` is chosen (eval names it). */
    int n = t->cfg.n_extra_meta;
    mc_metadata_entry *meta = malloc((size_t)(n + 1) * sizeof *meta);
    if (!meta) return mc_error(MC_ERR_NOMEM, "checkpoint: out of memory");
    for (int i = 0; i < n; i++) meta[i] = t->cfg.extra_meta[i];
    meta[n] = (mc_metadata_entry){"selection", mc_chain_selection_name(t->cfg.selection)};
    mc_status status = mc_spectral_encoder_save(t->enc, path, t->opt, &t->state, n + 1, meta);
    free(meta);
    return status;
}

mc_status mc_chain_trainer_resume(mc_chain_trainer *t, const char *checkpoint_path) {
    /* Everything checked before anything is restored: the encoder first
     * (another architecture is what the file says first), then where the
     * file stopped. */
    mc_chain_state state;
    MC_TRY(mc_spectral_encoder_check_fits(t->enc, checkpoint_path, &state));
    /* Further into its epoch than this run's epochs are long: another
     * batch size or split. */
    if (state.step_in_epoch > t->steps_per_epoch)
        return mc_error(MC_ERR_FORMAT,
                        "checkpoint %s stopped at step %lld of an epoch of %lld steps: was it "
                        "written with another batch size or data split?",
                        checkpoint_path, (long long)state.step_in_epoch,
                        (long long)t->steps_per_epoch);
    /* A run of fewer epochs than the file has trained already would run
     * nothing and report the checkpoint's later training as its own. */
    if (state.epoch > t->cfg.epochs)
        return mc_error(MC_ERR_ARG,
                        "checkpoint %s has trained %d epochs already, more than this run's "
                        "%d (--epochs)", checkpoint_path, state.epoch, t->cfg.epochs);
    MC_TRY(mc_spectral_encoder_restore(t->enc, checkpoint_path, t->opt, &state));
    /* The temperature's trainability is this run's choice, not the file's. */
    MC_TRY(mc_tensor_set_requires_grad(t->enc->logit_scale, t->cfg.learnable_temperature));
    t->state = state;
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * epochs
 * ------------------------------------------------------------------------- */

/* In a distributed run, before validating: every rank takes rank 0's
 * buffers (batch norm's running statistics). Without --sync-bn each rank's
 * move towards its own slice's statistics, so the ranks would evaluate
 * their shares of the batches with different models; rank 0's are the ones
 * its checkpoint keeps (as DDP's broadcast_buffers). The buffers do not
 * enter training steps (batch norm normalises by the batch there). */
static mc_status share_buffers(mc_chain_trainer *t) {
    if (t->world == 1) return MC_OK;
    for (int i = 0; i < t->enc->params.count; i++) {
        mc_tensor *buffer = t->enc->params.items[i];
        if (buffer->requires_grad) continue;
        MC_TRY(mc_dist_broadcast_floats(buffer->data, buffer->numel, 0));
        mc_tensor_touch(buffer);
    }
    return MC_OK;
}

mc_status mc_chain_trainer_validate(mc_chain_trainer *t, const mc_chain_metrics **out) {
    mc_chain_metrics_free(&t->metrics);
    t->have_metrics = false;
    MC_TRY(share_buffers(t));
    /* In a distributed run every rank evaluates its share of the batches. */
    MC_TRY((t->world > 1 ? mc_chain_evaluate_distributed : mc_chain_evaluate)(
        t->enc, t->val, t->val_targets, t->classes, t->cfg.val_batch_size, t->cfg.symmetric, &t->metrics));
    t->have_metrics = true;
    *out = &t->metrics;
    return MC_OK;
}

/* The number the selection compares. */
static double selection_metric(const mc_chain_metrics *m, mc_chain_selection selection) {
    switch (selection) {
    case MC_SELECT_LOSS: return m->loss;
    case MC_SELECT_MATCHING: return m->match_acc;
    case MC_SELECT_LABELS: return m->spectral_text_acc;
    }
    return NAN;
}

/* Strictly better than the best so far (lower loss, higher accuracy): ties
 * keep the earlier epoch. A non-finite value never wins. */
static bool improves(const mc_chain_trainer *t, double value) {
    if (!isfinite(value)) return false;
    if (t->state.best_epoch == 0) return true;
    return t->cfg.selection == MC_SELECT_LOSS ? value < t->state.best_metric
                                              : value > t->state.best_metric;
}

/* Validation runs every val_every epochs and after the last one: on a small
 * training set, validating each epoch can cost as much as the epoch. */
static bool validates_after(const mc_chain_trainer *t, int epochs_done) {
    return epochs_done % t->cfg.val_every == 0 || epochs_done >= t->cfg.epochs;
}

/* Validate (when due: in a distributed run every rank, each its share of
 * the batches), keep the best, write `last`, tell the caller. Every rank
 * keeps the same state; rank 0 writes for all and calls the hook. */
static mc_status finish_epoch(mc_chain_trainer *t, double loss_sum, int64_t steps_run,
                              double started) {
    if (t->world > 1) {
        char when[64];
        snprintf(when, sizeof when, "after epoch %d", t->state.epoch + 1);
        MC_TRY(mc_dist_check_params_agree(&t->enc->params, when));
    }
    if (!validates_after(t, t->state.epoch + 1)) {
        t->state.epoch++;
        t->state.step_in_epoch = 0;
        MC_TRY(weights_fit_to_save(t));
        return save_checkpoint(t, "last");
    }
    const mc_chain_metrics *m;
    MC_TRY(mc_chain_trainer_validate(t, &m));
    t->state.epoch++;
    t->state.step_in_epoch = 0;
    double value = selection_metric(m, t->cfg.selection);
    bool is_best = improves(t, value);
    if (is_best) {
        t->state.best_metric = value;
        t->state.best_epoch = t->state.epoch;
    }
    /* The hook (the caller's metrics row) before the checkpoints that
     * cover its step: a run killed between the two resumes from an earlier
     * checkpoint, drops the rows past it and writes this one again; the
     * other order would lose the row for good. Weights the checkpoints
     * would refuse stop the run before the hook records the epoch. */
    MC_TRY(weights_fit_to_save(t));
    if (t->rank == 0 && t->hooks.on_epoch) {
        mc_chain_epoch_info info = {
            .epoch = t->state.epoch, .train_loss = steps_run ? loss_sum / (double)steps_run : NAN,
            .val = m, .is_best = is_best, .seconds = now_seconds() - started,
        };
        MC_TRY(t->hooks.on_epoch(t->hooks.ctx, &info));
    }
    if (is_best) MC_TRY(save_checkpoint(t, "best"));
    return save_checkpoint(t, "last");
}

static bool should_stop(const mc_chain_trainer *t) {
    return t->cfg.stop_after_steps > 0 && t->state.global_step >= t->cfg.stop_after_steps;
}

static mc_status run_epoch(mc_chain_trainer *t) {
    double started = now_seconds(), loss_sum = 0.0;
    int64_t steps_run = 0;
    while (t->state.step_in_epoch < t->steps_per_epoch) {
        if (should_stop(t)) return MC_OK;
        double step_start = now_seconds(), loss;
        MC_TRY(mc_chain_trainer_step(t, &loss));
        loss_sum += loss;
        steps_run++;
        /* The hook before the checkpoint, as in finish_epoch. */
        const bool checkpoint_due = t->cfg.checkpoint_every > 0 &&
                                    t->state.global_step % t->cfg.checkpoint_every == 0 &&
                                    t->state.step_in_epoch < t->steps_per_epoch;
        if (checkpoint_due) MC_TRY(weights_fit_to_save(t));
        if (t->rank == 0 && t->hooks.on_step) {
            int64_t first = (t->state.step_in_epoch - 1) * t->cfg.batch_size;
            mc_chain_step_info info = {
                .epoch = t->state.epoch, .step_in_epoch = t->state.step_in_epoch,
                .steps_per_epoch = t->steps_per_epoch, .global_step = t->state.global_step,
                .loss = loss,
                .batch_items = (int)(t->train->count - first < t->cfg.batch_size
                                         ? t->train->count - first
                                         : t->cfg.batch_size),
                .step_seconds = now_seconds() - step_start,
            };
            t->hooks.on_step(t->hooks.ctx, &info);
        }
        if (checkpoint_due) MC_TRY(save_checkpoint(t, "last"));
    }
    return finish_epoch(t, loss_sum, steps_run, started);
}

mc_status mc_chain_trainer_run(mc_chain_trainer *t) {
    while (t->state.epoch < t->cfg.epochs && !should_stop(t)) MC_TRY(run_epoch(t));
    return MC_OK;
}

/* mmchain — the method: multi-modal chaining of a spectral encoder to CLIP.
 *
 * A frozen CLIP maps RGB images and text into one joint space. We train a
 * ResNet on the multispectral bands of the same tiles so that its embedding
 * of a tile matches CLIP's image embedding of the tile's RGB view (InfoNCE
 * over the batch, as in the seed paper); the encoder never sees text, yet
 * classifies zero-shot against CLIP's text embeddings of class prompts
 * ("hopping" spectral -> image -> text). docs/method.md tells the story.
 *
 * The pieces, one file each (lib/chain/):
 *   prompts.c     CLIP's EuroSAT prompts, class names matched by folder name,
 *                 the zero-shot text classifier (K, E)
 *   data.c        mc_chain_data: pairs (spectral view, RGB view, label) from
 *                 a EuroSAT-MS folder or from tensors in memory (the demo)
 *   spectral.c    the spectral encoder: a ResNet (any depth, N bands, head
 *                 Linear(F, E)) plus its InfoNCE temperature
 *   checkpoint.c  encoder checkpoints with the training state
 *   targets.c     CLIP image embeddings of the RGB views, cached on disk
 *   evaluate.c    the metrics: matching accuracy, zero-shot top-1, per class,
 *                 confusion matrices
 *   train.c       the training loop: seeded epochs, checkpoints, resume
 *   teacher.c     a further hop: a trained spectral encoder as the teacher
 *                 in CLIP's place (its bands of the same tile as the second view)
 *   memory.c      the memory a training run needs, estimated before it starts
 *
 * The whole method, from a EuroSAT-MS folder (data_dir), a CLIP (clip_path)
 * and its vocabulary (vocab_path) to a trained encoder; `arch` is the
 * ResNet's mc_resnet_config, `epochs` and `batch` the caller's numbers.
 * tests/test_chain_example.c compiles and runs exactly the lines between the
 * markers, so they cannot go stale:
 *
 * chain-example:begin
 *     mc_eurosat *ds;                               // the tiles (data.h)
 *     mc_eurosat_options options = mc_eurosat_default_options();
 *     MC_TRY(mc_eurosat_open(&ds, data_dir, &options));
 *     mc_bands bands;
 *     mc_norm norm;
 *     MC_TRY(mc_bands_parse("B08,B11,B12", &bands));
 *     MC_TRY(mc_norm_init(&norm, MC_NORM_TORCHGEO));
 *     mc_chain_data train, val;                     // (spectral, RGB, label) pairs
 *     MC_TRY(mc_chain_data_from_eurosat(&train, ds, MC_SPLIT_TRAIN, &bands, &norm));
 *     MC_TRY(mc_chain_data_from_eurosat(&val, ds, MC_SPLIT_VAL, &bands, &norm));
 *
 *     mc_clip *clip;                                // the frozen CLIP (clip.h)
 *     mc_tokenizer *tok;
 *     MC_TRY(mc_clip_load(clip_path, &clip));
 *     MC_TRY(mc_tokenizer_load(vocab_path, &tok));
 *     char **names;                                 // "annual crop land", ...
 *     MC_TRY(mc_chain_class_prompts(val.class_names, val.num_classes, &names));
 *     mc_tensor *classes;                           // (K, E) zero-shot classifier
 *     MC_TRY(mc_chain_text_classifier(clip, tok, (const char *const *)names, val.num_classes,
 *                                     mc_chain_eurosat_templates, MC_CHAIN_NUM_TEMPLATES,
 *                                     &classes));
 *
 *     mc_spectral_encoder *enc;                     // a ResNet on the three bands
 *     MC_TRY(mc_spectral_encoder_new(&enc, &arch, &bands, &norm, 64, clip->config.embed_dim,
 *                                    logf(1 / 0.07f), false, 7));
 *     mc_chain_train_config cfg = mc_chain_train_defaults();
 *     cfg.epochs = epochs;
 *     cfg.batch_size = batch;
 *     mc_chain_hooks hooks = {.ctx = NULL, .on_epoch = print_epoch};
 *     mc_chain_trainer *t;
 *     MC_TRY(mc_chain_trainer_new(&t, &cfg, enc, clip, &train, &val, classes, &hooks));
 *     MC_TRY(mc_chain_trainer_run(t));              // all epochs; resumable
 *
 *     mc_chain_trainer_free(t);
 *     mc_spectral_encoder_free(enc);
 *     mc_tensor_free(classes);
 *     mc_chain_strings_free(names, val.num_classes);
 *     mc_tokenizer_free(tok);
 *     mc_clip_free(clip);
 *     mc_chain_data_free(&train);
 *     mc_chain_data_free(&val);
 *     mc_eurosat_free(ds);
 * chain-example:end
 *
 * where print_epoch is an on_epoch hook:
 *
 *     static mc_status print_epoch(void *ctx, const mc_chain_epoch_info *info) {
 *         printf("epoch %d: zero-shot %.3f\n", info->epoch, info->val->spectral_text_acc);
 *         return MC_OK;
 *     }
 *
 * Determinism: the order of the data in epoch e is a pure function of
 * (seed, e); the augmentation of step s is a pure function of (seed, s). A
 * run resumed from a checkpoint (weights, BN statistics, optimizer state,
 * epoch and step) therefore ends bit-identical to an uninterrupted one with
 * the same seed and thread count. */
#ifndef MMCHAIN_CHAIN_H
#define MMCHAIN_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "augment.h"
#include "clip.h"
#include "data.h"
#include "io.h"
#include "models.h"
#include "optim.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* =========================================================================
 * Prompts and the zero-shot classifier (lib/chain/prompts.c)
 * ========================================================================= */

/* CLIP's EuroSAT prompt templates (OpenAI CLIP, notebooks/Prompt_Engineering
 * _for_ImageNet / data/prompts.md): "a centered satellite photo of {}.",
 * "a centered satellite photo of a {}.", "a centered satellite photo of the
 * {}.". "{}" is replaced by the class name. */
#define MC_CHAIN_NUM_TEMPLATES 3
extern const char *const mc_chain_eurosat_templates[MC_CHAIN_NUM_TEMPLATES];

/* CLIP's EuroSAT class name for a dataset folder name, matched by name
 * (case-insensitive): "AnnualCrop" -> "annual crop land",
 * "HerbaceousVegetation" -> "brushland or shrubland", "SeaLake" -> "lake or
 * sea", ... NULL for a folder name outside EuroSAT's ten. */
const char *mc_chain_eurosat_class_prompt(const char *folder_name);

/* Prompt names for n folder names: CLIP's name where known, otherwise the
 * folder name split at lower->upper case changes and lowercased
 * ("MixedForest" -> "mixed forest"). *out: n malloc'd strings in a malloc'd
 * array; free with mc_chain_strings_free(*out, n). */
mc_status mc_chain_class_prompts(const char *const *folder_names, int n, char ***out);
void mc_chain_strings_free(char **strings, int n);

/* Split a list at `separator` (',' for class names, '|' for templates,
 * which may contain commas) into trimmed, non-empty items (free with
 * mc_chain_strings_free). `what` names the list in messages ("--classes"). */
mc_status mc_chain_split_list(const char *list, char separator, const char *what, char ***out,
                              int *n);

/* The zero-shot classifier: for each class, every template filled with its
 * name, tokenized to CLIP's text context (clip->config.text.context), encoded
 * by the text tower, L2-normalised, averaged, renormalised (CLIP's prompt
 * ensembling, mc_clip_class_embeddings). A template without "{}" is an error.
 * *out: heap tensor (n_classes, E), rows of unit length. */
mc_status mc_chain_text_classifier(mc_clip *clip, mc_tokenizer *tok, const char *const *class_names,
                                   int n_classes, const char *const *templates, int n_templates,
                                   mc_tensor **out);

/* =========================================================================
 * Paired data (lib/chain/data.c)
 * =========================================================================
 * A source of (spectral view, RGB view, label) triples, read by item number
 * 0..count-1. The spectral view is normalised and band-selected as the
 * encoder expects; the RGB view is 0..1, the input of CLIP preprocessing. */
typedef struct mc_chain_data {
    int count;
    int bands, height, width;       /* spectral view (bands, height, width) */
    int rgb_height, rgb_width;      /* RGB view (rgb_channels, rgb_height, rgb_width) */
    int rgb_channels;               /* 3; a teacher's band count when the second
                                     * view is a trained encoder's input (a
                                     * further hop: mc_chain_data_with_teacher_view) */
    int num_classes;
    const char *const *class_names; /* num_classes folder names ("AnnualCrop") */
    /* Fill any of spectral (n, bands, H, W), rgb (n, 3, Hr, Wr), labels[n]
     * (each may be NULL) for items[0..n). */
    mc_status (*load)(void *ctx, const int *items, int n, mc_tensor *spectral, mc_tensor *rgb,
                      int *labels);
    /* A string that identifies the tile's content (a file path), for the
     * on-disk target cache; NULL = this source cannot be cached on disk. */
    const char *(*tile_key)(void *ctx, int item);
    /* Where the RGB views come from when the tile keys do not say it (the
     * tiles' own bands, or an RGB release beside them), part of the target
     * cache's key; NULL: the tile keys say it all. */
    const char *rgb_source;
    void (*release)(void *ctx); /* frees ctx (may be NULL) */
    void *ctx;
} mc_chain_data;

/* The tiles of one split of an open EuroSAT-MS folder (data.h): the selected
 * bands normalised by `norm` as the spectral view, mc_eurosat_load_rgb as the
 * RGB view. `ds` is borrowed (must outlive the source). A dataset whose
 * tiles have fewer bands than `bands` asks for is an error naming the band. */
mc_status mc_chain_data_from_eurosat(mc_chain_data *out, const mc_eurosat *ds, mc_split split,
                                     const mc_bands *bands, const mc_norm *norm);
/* Tiles held in memory (the demo's synthetic world): spectral (N, C, H, W)
 * already normalised, rgb (N, 3, Hr, Wr) in 0..1, labels[N] in
 * 0..num_classes-1. Borrowed, not copied: they must outlive the source.
 * Not cached on disk (tile_key is NULL). */
mc_status mc_chain_data_from_tensors(mc_chain_data *out, const mc_tensor *spectral,
                                     const mc_tensor *rgb, const int *labels, int num_classes,
                                     const char *const *class_names);
/* A view of `count` tiles of `base`, evenly spaced over its items (item i
 * of the view is item floor(i * base->count / count) of base), so a capped
 * validation set keeps the class mix of a sorted or stratified one. base is
 * borrowed; count must be 1..base->count. */
mc_status mc_chain_data_subset(mc_chain_data *out, const mc_chain_data *base, int count);
void mc_chain_data_free(mc_chain_data *data);

/* =========================================================================
 * The spectral encoder (lib/chain/spectral.c)
 * ========================================================================= */

/* A ResNet whose conv1 takes the selected bands and whose fc is the
 * projection head Linear(F, E) into CLIP's joint space, plus the InfoNCE
 * log inverse temperature. */
typedef struct mc_spectral_encoder {
    mc_resnet *resnet;      /* config.in_channels = bands.count, fc_out = E */
    mc_tensor *logit_scale; /* (1): log(1/temperature); trainable when learnable */
    /* Every tensor the optimizer and checkpoints see: the ResNet's params
     * followed by logit_scale. A VIEW: it does not own its tensors (never
     * mc_params_free it; mc_spectral_encoder_free handles everything). */
    mc_param_list params;
    mc_bands bands;         /* the input bands, EuroSAT file indices */
    mc_norm norm;           /* how the bands were normalised */
    int image_size;         /* tile side the encoder was trained on */
    int embed_dim;          /* E */
} mc_spectral_encoder;

/* A new encoder with torchvision's initialisation (seeded). arch->in_channels
 * and arch->fc_out are overridden by bands->count and embed_dim.
 * logit_scale starts at log_scale (CLIP: log(1/0.07)); learnable sets its
 * requires_grad. */
mc_status mc_spectral_encoder_new(mc_spectral_encoder **out, const mc_resnet_config *arch,
                                  const mc_bands *bands, const mc_norm *norm, int image_size,
                                  int embed_dim, float log_scale, bool learnable, uint64_t seed);
void mc_spectral_encoder_free(mc_spectral_encoder *enc);

/* Load ImageNet weights (torchvision/timm ResNet safetensors) into the
 * backbone; the head stays new (fc.* in the file ignored). conv1 for N != 3
 * bands follows the rule of models.h, with the file's R, G, B kernels on the
 * bands B04, B03, B02 when they are among the inputs. A file of another
 * depth or width is an error naming the mismatching tensors. */
mc_status mc_spectral_encoder_load_imagenet(mc_spectral_encoder *enc, const char *path,
                                            char *report, size_t report_len);

/* x (N, bands, H, W) NCHW -> *out (N, E), projected, not normalised.
 * Records on g's tape when gradients are on (training). */
mc_status mc_spectral_encoder_forward(mc_spectral_encoder *enc, mc_graph *g, mc_tensor *x,
                                      mc_tensor **out);

/* =========================================================================
 * Checkpoints (lib/chain/checkpoint.c)
 * ========================================================================= */

/* Where a training run stands. */
typedef struct mc_chain_state {
    int epoch;              /* epochs finished */
    int64_t step_in_epoch;  /* batches finished in the current epoch */
    int64_t global_step;    /* optimizer steps so far */
    double best_metric;     /* the selection metric of the best checkpoint (the
                             * validation loss, matching or spectral->text
                             * accuracy: mc_chain_selection) */
    int best_epoch;         /* the epoch (1-based) that reached it, 0 = none */
    mc_rng rng;             /* the run's generator (stored for completeness:
                             * data order and augmentation are pure functions of
                             * the seed, epoch and step) */
} mc_chain_state;

/* A safetensors file: every encoder tensor under its name ("conv1.weight",
 * ..., "fc.weight", "logit_scale"), the optimizer's state when opt is given,
 * and __metadata__: format "mmchain.spectral", arch, block, layers,
 * base_width, bands ("B08,B11,B12"), norm (kind), norm_mean / norm_std (the
 * 13 numbers each), image_size, embed_dim, epoch, step_in_epoch,
 * global_step, best_metric, best_epoch, rng (hex), plus the caller's extra
 * entries. Written atomically (io.h): a kill leaves the old file intact. */
mc_status mc_spectral_encoder_save(const mc_spectral_encoder *enc, const char *path,
                                   const mc_optimizer *opt, const mc_chain_state *state,
                                   int n_extra, const mc_metadata_entry *extra);
/* Rebuild an encoder from a checkpoint: architecture, bands, normalisation
 * and image size from the metadata, then every tensor (strict). state (may be
 * NULL) receives the training state. A file that is not an encoder
 * checkpoint is an error naming it. */
mc_status mc_spectral_encoder_load(const char *path, mc_spectral_encoder **out,
                                   mc_chain_state *state);
/* Load a checkpoint into an existing encoder (a resume): the file's
 * architecture, bands, tile size, embedding width and normalisation (its
 * kind and the 13 bands' means and deviations, bit for bit) must be the
 * encoder's (an error naming both otherwise); then every tensor, the
 * optimizer's state when opt is given (made over enc->params, same kind)
 * and the training state when state is given. */
mc_status mc_spectral_encoder_restore(mc_spectral_encoder *enc, const char *path, mc_optimizer *opt,
                                      mc_chain_state *state);
/* One metadata value of a checkpoint (copied into buf); MC_ERR_FORMAT naming
 * the key when absent. */
mc_status mc_checkpoint_metadata_get(const char *path, const char *key, char *buf, size_t len);

/* =========================================================================
 * CLIP targets (lib/chain/targets.c)
 * ========================================================================= */

/* CLIP image embeddings of RGB views in 0..1: rgb (N, 3, H, W) -> out
 * (N, E) (caller-allocated), through mc_clip_preprocess (bicubic to the
 * tower's size, CLIP normalisation) and the frozen tower without gradients,
 * `batch` images at a time: mc_clip_embed_images (clip.h) with rgb = true,
 * which checks that the checkpoint has an image tower and the shapes. */
mc_status mc_chain_embed_rgb(mc_clip *clip, const mc_tensor *rgb, int batch, mc_tensor *out);

/* The targets of a data source's un-augmented RGB views: *out heap (count, E).
 * With cache_dir (and a source that has tile keys) the result is stored in
 * cache_dir/clip-targets-<key>.safetensors, key = hash of (every tile key,
 * the preprocessing, the CLIP fingerprint), and read from there next time.
 * *from_cache (may be NULL) says which happened.
 * In a distributed run (several ranks in dist.h) mc_chain_targets,
 * mc_chain_crop_targets and mc_chain_teacher_targets are collective: every
 * rank embeds its share of the batches of tiles and the rows are
 * all-gathered (the same bytes as one process: each batch holds the same
 * tiles); rank 0 alone reads and writes the cache and shares what it read. */
mc_status mc_chain_targets(mc_clip *clip, const mc_chain_data *data, const char *cache_dir,
                           int batch, mc_tensor **out, bool *from_cache);

/* The crop of item `item`, variant k (0 <= k < K) for --target-crops: a
 * pure function of (seed, item, k), so the spectral view can be cut with the
 * same relative box long after the RGB crop was embedded. */
void mc_chain_crop_params(uint64_t seed, int item, int k, const mc_augment_config *config,
                          mc_augment_params *out);
/* Targets of K augmented crops per tile: *out heap (count * K, E), row
 * item * K + k embedded from the RGB view cut by mc_chain_crop_params. Cached
 * like mc_chain_targets (the key adds seed, K and the augmentation). */
mc_status mc_chain_crop_targets(mc_clip *clip, const mc_chain_data *data, const char *cache_dir,
                                int batch, int crops, uint64_t seed,
                                const mc_augment_config *config, mc_tensor **out,
                                bool *from_cache);

/* =========================================================================
 * Evaluation (lib/chain/evaluate.c)
 * ========================================================================= */

typedef struct mc_chain_metrics {
    int count;                 /* tiles evaluated */
    int num_classes;           /* K */
    double loss;               /* InfoNCE over the evaluation batches */
    double match_acc;          /* spectral -> RGB: the tile's own RGB embedding is
                                * the nearest among its batch (the paper's metric) */
    double spectral_text_acc;  /* zero-shot top-1, spectral embeddings */
    double rgb_text_acc;       /* zero-shot top-1, CLIP's RGB embeddings */
    double *spectral_class_acc, *rgb_class_acc; /* (K) per-class recall; NaN = no tile */
    int64_t *spectral_confusion, *rgb_confusion; /* (K, K): [true * K + predicted] */
    int *labels, *spectral_pred, *rgb_pred;      /* (count): per tile, data order */
    int embed_dim;             /* E */
    float *spectral_embeds;    /* (count, E): the spectral embeddings the metrics
                                * were computed from (projected, not normalised) */
} mc_chain_metrics;

/* Every metric over all tiles of `data` (un-augmented), in batches of
 * `batch` (512 in the paper; the last batch may be smaller): the encoder in
 * eval mode, rgb_targets (count, E) from mc_chain_targets, class_embeds
 * (K, E) from mc_chain_text_classifier with K = data->num_classes. out is
 * filled (free with mc_chain_metrics_free). */
mc_status mc_chain_evaluate(mc_spectral_encoder *enc, const mc_chain_data *data,
                            const mc_tensor *rgb_targets, const mc_tensor *class_embeds, int batch,
                            bool symmetric, mc_chain_metrics *out);
/* The same, by every rank of a distributed run (dist.h; collective: every
 * rank calls it with the same arguments): each rank evaluates its share of
 * the batches — whole batches, so each batch's embeddings, loss and matching
 * count are the ones one process computes — and the per-tile rows and
 * per-batch results are gathered, so that every rank's `out` holds the
 * one-process metrics bit for bit. In a world of one, mc_chain_evaluate. */
mc_status mc_chain_evaluate_distributed(mc_spectral_encoder *enc, const mc_chain_data *data,
                                        const mc_tensor *rgb_targets, const mc_tensor *class_embeds, int batch,
                                        bool symmetric, mc_chain_metrics *out);
void mc_chain_metrics_free(mc_chain_metrics *m);

/* Zero-shot predictions for any embeddings: embeds (N, E) -> scores (N, K)
 * softmax probabilities of exp(logit_scale) * cos (CLIP's zero-shot), heap
 * tensor. */
mc_status mc_chain_zero_shot_probs(const mc_tensor *embeds, const mc_tensor *class_embeds,
                                   float logit_scale, mc_tensor **out);

/* =========================================================================
 * A further hop (lib/chain/teacher.c)
 * =========================================================================
 * Chaining through a trained encoder instead of CLIP: a student encoder on
 * other bands learns to land where a trained spectral encoder (the teacher,
 * itself chained to CLIP) puts the same tile. The student never sees RGB,
 * text or labels; it reaches text in two hops, student -> teacher -> CLIP's
 * joint space. */

/* Embeddings of spectral views by a frozen encoder: x (N, bands, H, W) ->
 * out (N, E) (caller-allocated), projected, not normalised; eval mode (BN
 * running statistics), no tape, `batch` tiles at a time. */
mc_status mc_spectral_encoder_embed(mc_spectral_encoder *enc, const mc_tensor *x, int batch,
                                    mc_tensor *out);

/* A source over the same tiles as `student` whose second view is the
 * spectral view of `teacher_view` (the teacher's bands, normalised as the
 * teacher expects) in place of the RGB view: spectral and labels from
 * student, rgb_channels = teacher_view->bands. The two must hold the same
 * tiles in the same order (same count and tile keys) and tile size. Both are
 * borrowed. */
mc_status mc_chain_data_with_teacher_view(mc_chain_data *out, const mc_chain_data *student,
                                          const mc_chain_data *teacher_view);

/* The targets of a further hop: the teacher's embeddings of the second
 * views of `data` (count, E), cached like mc_chain_targets in
 * cache_dir/teacher-targets-<key>.safetensors (the key adds a fingerprint of
 * the teacher's weights and its bands). */
mc_status mc_chain_teacher_targets(mc_spectral_encoder *teacher, const mc_chain_data *data,
                                   const char *cache_dir, int batch, mc_tensor **out,
                                   bool *from_cache);

/* =========================================================================
 * Training (lib/chain/train.c)
 * ========================================================================= */

/* How the `best` checkpoint is chosen among the validated epochs. The first
 * two never read a label: a zero-shot method must not be tuned with the
 * labels it is scored on. */
typedef enum mc_chain_selection {
    MC_SELECT_LOSS = 0,  /* lowest validation InfoNCE loss (label-free; default) */
    MC_SELECT_MATCHING,  /* highest validation spectral->RGB matching accuracy (label-free) */
    MC_SELECT_LABELS     /* highest validation spectral->text accuracy: uses the labels */
} mc_chain_selection;

/* "loss", "matching", "labels" (the names the CLI takes). */
const char *mc_chain_selection_name(mc_chain_selection selection);
/* A name of mc_chain_selection_name -> *out; MC_ERR_ARG naming the three. */
mc_status mc_chain_selection_parse(const char *name, mc_chain_selection *out);
/* The one-line description: "validation InfoNCE loss (label-free)". */
const char *mc_chain_selection_describe(mc_chain_selection selection);

typedef struct mc_chain_train_config {
    int epochs;               /* 10 */
    int batch_size;           /* 100 (the paper) */
    int val_batch_size;       /* 512 (the paper) */
    float lr;                 /* 1e-4, Adam (the paper) */
    bool symmetric;           /* false: spectral -> RGB only, as the paper */
    bool learnable_temperature; /* false */
    float temperature;        /* 0.07 (CLIP's initial value) */
    /* Augmentation: random crops with the SAME relative box on both views.
     * target_crops = 0: the augmented RGB view is embedded by CLIP on the
     * fly each step (fidelity); K > 0: one of K precomputed crops per tile
     * (speed). augment = false: no augmentation, cached un-augmented targets. */
    bool augment;             /* true */
    mc_augment_config augment_config; /* resize crops 0.8..1, no flips */
    int target_crops;         /* 0 */
    bool shuffle_pairs;       /* the negative control: tile i is paired with
                               * the RGB view of tile perm(i) (fixed, seeded) */
    /* NULL: the targets are CLIP's image embeddings of the RGB views (the
     * seed paper). A trained spectral encoder: the targets are its
     * embeddings of the second view, which then holds the teacher's bands
     * (mc_chain_data_with_teacher_view); the encoder reaches text through
     * the teacher's space, which is CLIP's. Borrowed; used frozen. */
    mc_spectral_encoder *teacher;
    uint64_t seed;            /* 0 */
    mc_chain_selection selection; /* MC_SELECT_LOSS: label-free */
    int val_every;            /* validate every N epochs (and after the last): 1 */
    int val_max_tiles;        /* > 0: validate on this many tiles of the
                               * validation set, evenly spaced (0: all) */
    int64_t checkpoint_every; /* write `last` every N steps (0: epoch ends only) */
    const char *checkpoint_dir; /* NULL: no checkpoints; else last.safetensors
                                 * and best.safetensors are written there */
    const char *cache_dir;    /* NULL: targets in memory only */
    int clip_batch;           /* images per CLIP forward when embedding: 64 */
    int64_t stop_after_steps; /* > 0: return after this many steps in total,
                               * as if killed (tests) */
    int n_extra_meta;         /* extra checkpoint metadata (the CLI's flags) */
    const mc_metadata_entry *extra_meta;
    /* Data parallel over the ranks of the distributed layer (dist.h; every
     * rank runs the same trainer): batch_size stays the GLOBAL batch, each
     * rank embeds its slice of it (mc_dist_slice), the embeddings are
     * gathered so that InfoNCE sees every pair of the global batch, and the
     * gradients are averaged. All ranks start from rank 0's weights. Every
     * rank validates its share of the batches and every rank gets the whole
     * metrics (mc_chain_evaluate_distributed); rank 0 alone writes
     * checkpoints and calls the hooks. */
    bool distributed;         /* false */
    bool sync_batchnorm;      /* batch norm over the global batch (false:
                               * each rank's own slice, as PyTorch's DDP) */
} mc_chain_train_config;

mc_chain_train_config mc_chain_train_defaults(void);

/* After every optimizer step, before that step's checkpoint (when one is
 * due), so that a run killed in between resumes from an earlier checkpoint
 * and the hook sees the step again (mc_chain_hooks). */
typedef struct mc_chain_step_info {
    int epoch;                /* 0-based epoch in progress */
    int64_t step_in_epoch;    /* batches finished in this epoch (1..steps_per_epoch) */
    int64_t steps_per_epoch;
    int64_t global_step;
    double loss;              /* this batch's loss */
    int batch_items;
    double step_seconds;      /* wall time of the step */
} mc_chain_step_info;

/* After each validation (every val_every epochs and after the last),
 * before the epoch's checkpoints are written. */
typedef struct mc_chain_epoch_info {
    int epoch;                /* 1-based: epochs finished */
    double train_loss;        /* mean over the epoch's batches (those run in
                               * this process after a resume) */
    const mc_chain_metrics *val;
    bool is_best;             /* best.safetensors is (re)written after the hook */
    double seconds;
} mc_chain_epoch_info;

/* In a distributed run only rank 0 calls the hooks. The hooks of a step
 * or an epoch run before its checkpoints are written: what they record
 * (metrics rows) is then never lost to a kill between the two, since the
 * run resumes from an earlier checkpoint and calls them for that step
 * again; mc_run_metrics_drop_after removes the rows past the checkpoint a
 * run resumes from. So the times they are given leave out the writing of
 * those checkpoints, and a hook that fails (on_epoch) stops the run before
 * they are written. Weights the checkpoints would refuse (not finite) stop
 * the run before the hook. */
typedef struct mc_chain_hooks {
    void *ctx;
    void (*on_step)(void *ctx, const mc_chain_step_info *info);          /* may be NULL */
    mc_status (*on_epoch)(void *ctx, const mc_chain_epoch_info *info);   /* may be NULL */
    void (*on_message)(void *ctx, const char *line); /* "computing CLIP targets ..." */
} mc_chain_hooks;

typedef struct mc_chain_trainer mc_chain_trainer;

/* Prepare training: checks the sizes (bands, image size, embed_dim against
 * CLIP's, classes against class_embeds), computes the validation targets and
 * (augment off or target_crops > 0) the training targets, creates Adam.
 * enc, clip, train, val and class_embeds are borrowed. With config->teacher
 * the teacher makes the targets and clip may be NULL. */
mc_status mc_chain_trainer_new(mc_chain_trainer **out, const mc_chain_train_config *config,
                               mc_spectral_encoder *enc, mc_clip *clip, const mc_chain_data *train,
                               const mc_chain_data *val, const mc_tensor *class_embeds,
                               const mc_chain_hooks *hooks);
/* Continue from a checkpoint written by this trainer's configuration:
 * weights, BN statistics, optimizer state, epoch, step, best metric.
 * Refused before anything is restored: a checkpoint of another encoder
 * (mc_spectral_encoder_restore's checks), one stopped further into its
 * epoch than this trainer's epochs are long (another batch size or split),
 * and one that has trained more epochs than cfg.epochs. */
mc_status mc_chain_trainer_resume(mc_chain_trainer *t, const char *checkpoint_path);
/* Train until config->epochs epochs are done (or stop_after_steps). A NaN or
 * infinite loss stops with MC_ERR_NUMERIC naming the epoch and step; the last
 * good checkpoint is kept (nothing is written after the bad step). */
mc_status mc_chain_trainer_run(mc_chain_trainer *t);
/* One training step on the next batch (used by run; exposed for profiling):
 * *loss receives the batch's loss. */
mc_status mc_chain_trainer_step(mc_chain_trainer *t, double *loss);
/* Validation metrics of the current weights (owned by the trainer; valid
 * until the next call). Collective in a distributed run: every rank calls
 * it and gets the same metrics. */
mc_status mc_chain_trainer_validate(mc_chain_trainer *t, const mc_chain_metrics **out);
const mc_chain_state *mc_chain_trainer_state(const mc_chain_trainer *t);
/* Batches per epoch: the full ones plus a remainder of at least 2 tiles. */
int64_t mc_chain_trainer_steps_per_epoch(const mc_chain_trainer *t);
/* The validation targets (val count, E). */
const mc_tensor *mc_chain_trainer_val_targets(const mc_chain_trainer *t);
/* The tiles validation runs on: the caller's validation source, or its
 * evenly spaced subset of val_max_tiles tiles (owned by the trainer). */
const mc_chain_data *mc_chain_trainer_val_data(const mc_chain_trainer *t);
void mc_chain_trainer_free(mc_chain_trainer *t);

/* =========================================================================
 * Memory (lib/chain/memory.c): a training run's peak, estimated before
 * anything is built, so that a run that cannot fit is refused at the start
 * (mmchain train --max-memory) rather than killed hours into it.
 * ========================================================================= */

/* What the estimate needs: the sizes a run is configured with. */
typedef struct mc_chain_memory_plan {
    mc_resnet_config arch;   /* the encoder: in_channels = bands, fc_out = E */
    int image_size;          /* the spectral tile's side */
    int rgb_size;            /* the RGB view's side */
    int embed_dim;           /* E */
    int batch_size, val_batch_size, clip_batch;
    int train_tiles, val_tiles;
    bool augment;            /* as mc_chain_train_config */
    int target_crops;
    bool recompute;          /* the encoder recomputes its blocks
                              * (mc_resnet_set_recompute) */
    /* The frozen CLIP (mc_chain_memory_plan_clip fills these from its file):
     * its parameter count, and the image tower's sizes for its forward. */
    int64_t clip_params;
    int clip_image_size, clip_patch, clip_width, clip_mlp_width;
} mc_chain_memory_plan;

/* The estimate, in bytes, by part. */
typedef struct mc_chain_memory_estimate {
    size_t weights;      /* the encoder's parameters and BN buffers (exact) */
    size_t gradients;    /* one per trainable parameter (exact) */
    size_t optimizer;    /* Adam's two moments per trainable parameter (exact) */
    size_t clip;         /* the frozen CLIP's weights as float32 (exact) */
    size_t targets;      /* the CLIP targets held in memory (exact) */
    size_t step;         /* one training step's arena at the batch size: the
                          * activations the backward pass keeps, the loss's
                          * B x B matrices (modelled) */
    size_t step_extra;   /* beside the arena during a step: gradients in
                          * flight (reusable blocks), the RGB batch (modelled) */
    size_t validation;   /* a validation forward at its batch (modelled) */
    size_t clip_forward; /* CLIP's image tower over a batch (modelled) */
    size_t total;        /* the peak: weights + gradients + optimizer + clip
                          * + targets + the largest phase (embedding the
                          * targets; a step and step_extra, with CLIP's
                          * forward when targets are embedded on the fly;
                          * validation) */
} mc_chain_memory_estimate;

/* The estimate for `plan`; MC_ERR_ARG for an architecture or size out of
 * range. Allocates nothing. What the process needs besides (the program,
 * its libraries, BLAS and thread buffers: tens of MB) is not included. The
 * temperature counts as trainable (4 bytes either way). */
mc_status mc_chain_estimate_memory(const mc_chain_memory_plan *plan, mc_chain_memory_estimate *out);
/* The CLIP fields of `plan` and embed_dim (the image tower's projection)
 * from an open CLIPModel file's tensor table (its header only: nothing is
 * loaded, nothing checked: mc_clip_load does that). */
mc_status mc_chain_memory_plan_clip(const mc_safetensors *f, mc_chain_memory_plan *plan);

#ifdef __cplusplus
}
#endif
#endif

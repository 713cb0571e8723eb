/* mmchain — a CLIP of our own: captions for labelled images, contrastive
 * pretraining from scratch, and views of the synthetic world to train it on.
 *
 * The seed paper starts from OpenAI's CLIP. Where there is none (no download,
 * or a domain CLIP never saw) we make one the way CLIP was made (Radford et
 * al., 2021, section 2): images paired with text, an image tower and a text
 * tower trained together so that each image's embedding is nearest to its own
 * caption's among the batch (symmetric InfoNCE, learnable temperature). Our
 * text is generated: each labelled image gets captions built from its class
 * name through prompt templates, plus attributes measured on the scene
 * ("a satellite photo of river, hazy, with open water").
 *
 *   captions.c     scene attributes of a tile and the captions made from them
 *   pretrain.c     mc_clip_pretrain: the training loop (AdamW, warmup + cosine)
 *   synth_views.c  RGB and spectral views of the synthetic world (synth.h)
 *   image_source.c images a batch at a time: a tensor's rows, or a folder of
 *                  PNG/JPEG images kept as bytes (mc_byte_images)
 *
 *     mc_clip *clip;                                  (mc_clip_new, clip.h)
 *     mc_clip_pretrain_data data = {pixels, captions_per_image, ids};
 *     mc_clip_pretrain_config cfg = mc_clip_pretrain_defaults();
 *     MC_TRY(mc_clip_pretrain(clip, &data, &cfg, NULL));
 *     MC_TRY(mc_clip_save(clip, "clip/model.safetensors", 0, NULL));
 *
 * The demo's spectral encoder is trained and evaluated by the chain library
 * (chain.h): one implementation for `mmchain train` and `mmchain demo`. */
#ifndef MMCHAIN_PRETRAIN_H
#define MMCHAIN_PRETRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chain.h"
#include "clip.h"
#include "image.h"
#include "rng.h"
#include "tensor.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* =========================================================================
 * Captions (lib/chain/captions.c)
 * ========================================================================= */

/* What a caption may say about a scene besides its class, measured on the
 * pixels. A field is negative when it could not be measured (an RGB image
 * has no B01, B10 or near infrared). */
typedef struct mc_scene_attributes {
    float brightness; /* mean of the RGB view, 0..1 */
    float vegetation; /* mean NDVI (B08 - B04) / (B08 + B04), -1..1; < -1: unknown */
    float water;      /* fraction of water pixels (NIR below green, SWIR dark), 0..1 */
    float haze;       /* darkest B01 reflectance of the tile (path radiance) */
    float cirrus;     /* mean B10 reflectance (only clouds reach it) */
} mc_scene_attributes;

/* Attributes of one tile of top-of-atmosphere reflectance in EuroSAT's band
 * order (B01 ... B12, B8A; value / 10000, as mc_synth_batch gives):
 *   tile: (13, h, w) band-planar. */
mc_status mc_scene_attributes_from_tile(const float *tile, int h, int w, mc_scene_attributes *out);
/* Attributes of an RGB image in 0..1 (only the brightness is known):
 *   rgb: (3, h, w) planar. */
mc_status mc_scene_attributes_from_rgb(const float *rgb, int h, int w, mc_scene_attributes *out);

/* The phrases a caption may add for these attributes ("hazy", "with open
 * water", ...), at most `max` of them, into phrases[]; returns how many. */
int mc_caption_phrases(const mc_scene_attributes *attrs, const char **phrases, int max);

/* The caption templates ("a satellite photo of {}", ...): "{}" is the class
 * phrase. */
#define MC_CAPTION_NUM_TEMPLATES 8
extern const char *const mc_caption_templates[MC_CAPTION_NUM_TEMPLATES];

/* One caption: a template drawn from rng with `class_phrase` in place of
 * "{}" (after no article, "a " or "the ", drawn), then each phrase of the
 * attributes with probability 1/2, joined by ", ", and a final "." with
 * probability 1/2 ("an aerial photo of the river, hazy, with open water.").
 * attrs may be NULL (class only). Too long for buf (len bytes) is MC_ERR_ARG. */
mc_status mc_caption_make(const char *class_phrase, const mc_scene_attributes *attrs, mc_rng *rng,
                          char *buf, size_t len);

/* Captions for a labelled set: for image i (label labels[i], attributes
 * attrs[i] or NULL), k = 0..per_image-1, the caption goes to
 * (*out)[i * per_image + k]. class_phrases[label] names each class. The
 * strings and the array are malloc'd: free with mc_chain_strings_free(*out,
 * n * per_image). Deterministic for a seed. */
mc_status mc_captions_make(const char *const *class_phrases, int num_classes, const int *labels,
                           const mc_scene_attributes *attrs, int n, int per_image, uint64_t seed,
                           char ***out);

/* =========================================================================
 * Images a batch at a time (lib/chain/image_source.c)
 * ========================================================================= */

/* N images read on demand, a batch at a time, so that a data set need not be
 * held as floats: read(ctx, indices, n, rows) fills rows (n, 3, height,
 * width) with images indices[0..n), in that order. What the values are is
 * the consumer's contract (RGB in 0..1 for mc_labelled_images, CLIP-
 * normalised pixels for mc_clip_pretrain_data). Called from one thread. */
typedef struct mc_image_source {
    int count, height, width;
    void *ctx;
    mc_status (*read)(void *ctx, const int *indices, int n, mc_tensor *rows);
} mc_image_source;

/* The rows of an (N, 3, H, W) tensor, borrowed: reading copies them. */
mc_image_source mc_image_source_of_tensor(const mc_tensor *images);

/* A folder of images (image.h) decoded once and kept as 8-bit samples, each
 * image at its own size: 3 x 64 x 64 bytes for a tile of EuroSAT's RGB
 * release, 332 MB for its 27,000 tiles where (N, 3, 64, 64) floats take
 * 1.3 GB. Opaque; free with mc_byte_images_free. */
typedef struct mc_byte_images mc_byte_images;

/* Decode every image of `folder` (in parallel). Only the planes a batch uses
 * are kept (grey: one, colour: three; alpha dropped). A decoded value v is
 * kept as the byte k with k / 255.0f == v bit for bit (what the 8-bit JPEG
 * and PNG readers produce); an image with any other value (a 16-bit PNG)
 * keeps its floats. */
mc_status mc_byte_images_load(const mc_image_folder *folder, bool antialias, mc_byte_images **out);
void mc_byte_images_free(mc_byte_images *images);
/* The bytes (and floats) the pixels take. */
int64_t mc_byte_images_size(const mc_byte_images *images);
/* The images as mc_image_folder_load(folder, ..., antialias, rows) gives
 * them, bit for bit: k / 255.0f, resized (bicubic) to height x width when an
 * image's size differs, grey repeated to RGB. The source borrows `images`. */
mc_image_source mc_byte_images_source(const mc_byte_images *images, int height, int width);

/* =========================================================================
 * Contrastive pretraining (lib/chain/pretrain.c)
 * ========================================================================= */

/* Images with their captions' token ids. Borrowed. */
typedef struct mc_clip_pretrain_data {
    const mc_tensor *pixels; /* (N, 3, S, S), CLIP-normalised, S = the tower's image_size */
    int captions_per_image;  /* K >= 1: each step uses one, drawn at random */
    const int32_t *ids;      /* (N, K, context) token ids, context = the text tower's */
    /* Instead of pixels (NULL): the same rows read a batch at a time, each
     * batch before it is augmented; height = width = S. */
    const mc_image_source *source;
} mc_clip_pretrain_data;

typedef struct mc_clip_pretrain_config {
    int epochs;              /* 20 */
    int batch_size;          /* 128 */
    float lr;                /* 2e-3: AdamW's peak learning rate */
    float weight_decay;      /* 0.1, decoupled, on matrices only (not on gains,
                              * biases, the class embedding or logit_scale) */
    float warmup_fraction;   /* 0.1 of the steps: linear warmup, then cosine */
    float min_lr_fraction;   /* 0.02: the cosine ends at lr * this */
    float max_grad_norm;     /* 1.0 (0: no clipping) */
    bool augment;            /* true: random flips and quarter turns of the
                              * images (nadir views have no "up") */
    uint64_t seed;           /* batch order, caption choice, augmentation */
    /* Data parallel over the ranks of the distributed layer (dist.h, as
     * mc_chain_train_config.distributed): batch_size is the global batch;
     * each rank embeds its slice, the embeddings of both towers are
     * gathered for the loss, the gradients averaged before clipping. Every
     * rank calls its own hooks: pass none on ranks other than 0. */
    bool distributed;        /* false */
} mc_clip_pretrain_config;

mc_clip_pretrain_config mc_clip_pretrain_defaults(void);

typedef struct mc_clip_pretrain_step_info {
    int epoch;           /* 0-based epoch in progress */
    int64_t step;        /* optimizer steps done, 1..total_steps */
    int64_t total_steps;
    int batch_items;
    double loss;         /* this batch's symmetric InfoNCE */
    float lr;
    float logit_scale;   /* log of the inverse temperature after the step */
} mc_clip_pretrain_step_info;

typedef struct mc_clip_pretrain_hooks {
    void *ctx;
    void (*on_step)(void *ctx, const mc_clip_pretrain_step_info *info);          /* may be NULL */
    /* After each epoch with its mean loss; an error stops training. */
    mc_status (*on_epoch)(void *ctx, int epoch, double mean_loss, double seconds); /* may be NULL */
    void (*on_message)(void *ctx, const char *line); /* "12000 captions, ..." (may be NULL) */
} mc_clip_pretrain_hooks;

/* Train both towers of `clip` (and logit_scale, clamped at log 100 as CLIP
 * does) on the pairs: each step a batch of images in a seeded order, one
 * caption of each, symmetric InfoNCE (ops.h mc_infonce), gradient clipping,
 * AdamW with linear warmup and cosine decay (optim.h). The batches of an
 * epoch are the full ones plus a remainder of at least 2 images. A non-finite
 * loss stops with MC_ERR_NUMERIC naming the step. hooks may be NULL. */
mc_status mc_clip_pretrain(mc_clip *clip, const mc_clip_pretrain_data *data,
                           const mc_clip_pretrain_config *config,
                           const mc_clip_pretrain_hooks *hooks);

/* ---- the whole recipe: labelled images -> captions -> vocabulary -> CLIP ---- */

/* The sizes of a CLIP made from scratch; heads = width / 64 (at least 1),
 * MLP 4 x width, as mc_clip_load derives them from a file. */
typedef struct mc_clip_recipe {
    int image_size, patch, width, layers;    /* the image tower (ViT) */
    int text_width, text_layers;             /* the text tower */
    int max_context;                         /* the text context is the longest caption or
                                              * evaluation prompt, at most this */
    int embed_dim;                           /* the joint space */
    int merges;                              /* BPE merges learned from the captions (0 = bytes) */
    int captions_per_image;                  /* K */
    mc_clip_pretrain_config train;           /* train.seed also seeds captions and weights */
} mc_clip_recipe;

/* A ViT 32x32/4 of width 64 x 2 layers, text width 64 x 2 layers, context
 * <= 77 (CLIP's), joint space 64, 200 merges, 4 captions per image. */
mc_clip_recipe mc_clip_recipe_defaults(void);

/* Labelled RGB images, borrowed. */
typedef struct mc_labelled_images {
    const mc_tensor *rgb;                    /* (N, 3, H, W) in 0..1 (any H, W) */
    const int *labels;                       /* (N) in 0..num_classes-1 */
    const mc_scene_attributes *attrs;        /* (N) or NULL: captions name the class only */
    int num_classes;
    const char *const *class_phrases;        /* (num_classes) the classes' names in text */
    const mc_image_source *source;           /* instead of rgb (NULL): the same images in 0..1,
                                              * read a batch at a time */
} mc_labelled_images;

/* Make a CLIP from labelled images: K captions per image
 * (mc_captions_make), a BPE vocabulary learned from them
 * (mc_tokenizer_train), a context long enough for every caption and for
 * CLIP's EuroSAT prompts of each class (chain.h), a new CLIP of the recipe's
 * sizes (mc_clip_new), the images through mc_clip_preprocess (bicubic to the
 * tower's size, CLIP normalisation: what mc_chain_embed_rgb does later) one
 * batch at a time as mc_clip_pretrain asks for them (the same floats as
 * preprocessing the whole set first, without its copy), and
 * mc_clip_pretrain. *clip and *tok are the caller's (free them). */
mc_status mc_clip_from_captions(const mc_clip_recipe *recipe, const mc_labelled_images *images,
                                const mc_clip_pretrain_hooks *hooks, mc_clip **clip,
                                mc_tokenizer **tok);

/* Write DIR/model.safetensors (Hugging Face CLIPModel names), DIR/merges.txt
 * and DIR/vocab.json: what `mmchain train --clip DIR/model.safetensors
 * --vocab DIR/merges.txt` loads. DIR is created when missing. */
mc_status mc_clip_save_folder(const mc_clip *clip, const mc_tokenizer *tok, const char *dir);

/* Zero-shot top-1 of CLIP's image tower on labelled RGB images: the images
 * through mc_chain_embed_rgb, the classes through mc_chain_text_classifier
 * with CLIP's EuroSAT templates and `class_phrases`; *accuracy in 0..1.
 *   rgb: (N, 3, H, W) in 0..1, labels: (N). */
mc_status mc_clip_zero_shot_accuracy(mc_clip *clip, mc_tokenizer *tok, const mc_tensor *rgb,
                                     const int *labels, const char *const *class_phrases,
                                     int num_classes, double *accuracy);
/* The same, by every rank of a distributed run (dist.h; collective: every
 * rank calls it with the same arguments): each rank embeds its share of the
 * images, in whole batches of 64 so that every embedding is the one one
 * process computes, and the counts of right answers are summed over ranks:
 * every rank gets the one-process accuracy exactly. In a world of one,
 * mc_clip_zero_shot_accuracy. */
mc_status mc_clip_zero_shot_accuracy_distributed(mc_clip *clip, mc_tokenizer *tok, const mc_tensor *rgb,
                                                 const int *labels, const char *const *class_phrases,
                                                 int num_classes, double *accuracy);
/* Either of the two on images read a batch of 64 at a time (RGB in 0..1):
 * the same embeddings and accuracy as on a tensor of the same rows. */
mc_status mc_clip_zero_shot_accuracy_source(mc_clip *clip, mc_tokenizer *tok, const mc_image_source *rgb,
                                            const int *labels, const char *const *class_phrases,
                                            int num_classes, bool distributed, double *accuracy);

/* The RGB view of reflectance tiles, as EuroSAT's RGB release makes it:
 * B04, B03, B02 through mc_eurosat_rgb_value (data.h).
 *   tiles: (N, 13, H, W) reflectance (value / 10000) -> rgb: (N, 3, H, W) in 0..1. */
mc_status mc_rgb_from_reflectance(const mc_tensor *tiles, mc_tensor *rgb);

/* =========================================================================
 * Views of the synthetic world (lib/chain/synth_views.c)
 * ========================================================================= */

/* Views of consecutive tiles of the synthetic world, resampled (bicubic,
 * antialiased) from 64x64 to size x size. */
typedef struct mc_synth_views {
    int count;
    mc_tensor *rgb;                /* (N, 3, size, size) in 0..1 (mc_rgb_from_reflectance) */
    mc_tensor *spectral;           /* (N, bands, size, size) normalised, or NULL */
    int *labels;                   /* (N) */
    mc_scene_attributes *attrs;    /* (N) measured on the full tiles, or NULL */
} mc_synth_views;

/* Tiles first .. first + count - 1 of the world `seed` (mc_synth_batch's
 * numbering: balanced over the classes), made a chunk at a time so that
 * memory holds the views, not the 13-band tiles. The spectral view holds
 * `bands` normalised by `norm` as a tile read from its .tif would be
 * (data.h); bands NULL: no spectral view. attributes false: no attrs.
 * Free with mc_synth_views_free. */
mc_status mc_synth_views_make(uint64_t seed, int64_t first, int count, int size,
                              const mc_bands *bands, const mc_norm *norm, bool attributes,
                              mc_synth_views *out);
void mc_synth_views_free(mc_synth_views *views);

#ifdef __cplusplus
}
#endif
#endif

/* mmchain — CLIP: the image tower (a ViT), the text tower and zero-shot
 * classification, with Hugging Face `CLIPModel` tensor names.
 *
 * Architecture (Radford et al., 2021, "Learning Transferable Visual Models
 * From Natural Language Supervision"; layout as in OpenAI's clip/model.py and
 * Hugging Face's modeling_clip.py):
 *
 *   image (N, 3, S, S) -> patches (N, G*G, 3*P*P) @ patch_embedding^T (no bias)
 *     -> [class token; patches] + position embedding -> pre-LayerNorm
 *     -> L x mc_transformer_block (nn.h):
 *          { x += out_proj(MHA(LN1(x)));  x += fc2(act(fc1(LN2(x)))) }
 *        act: quick_gelu in OpenAI's CLIPs, the exact GELU in open_clip's own
 *     -> post-LayerNorm of the class token -> @ visual_projection^T (no bias)
 *   text ids (N, T) -> token embedding + position embedding
 *     -> L x the same block with a causal mask -> final LayerNorm
 *     -> the feature at the end-of-text token (the largest id in the row)
 *     -> @ text_projection^T (no bias)
 *
 * Every size is derived from the tensors of a checkpoint, so ViT-B/32,
 * ViT-B/16 and ViT-L/14 load with the same code; the head counts, which no
 * shape shows, from the file's metadata (mc_clip_save records them), else
 * from a Hugging Face config.json beside it, else width / 64 (OpenAI's
 * CLIPs; LAION's ViT-H/14 has 16 heads of 80 and needs the config.json).
 * So do the MLP's activation (mmchain.clip.{vision,text}_act, else the
 * config.json's hidden_act, else OpenAI's quick_gelu): LAION's models use
 * the exact GELU. */
#ifndef MMCHAIN_CLIP_H
#define MMCHAIN_CLIP_H

#include <stdbool.h>
#include <stdint.h>

#include "io.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The activation inside a tower's MLP. 0, what a zeroed config holds, is
 * OpenAI's quick_gelu; open_clip's own models (LAION's among them) use the
 * exact GELU ("hidden_act": "gelu" in their Hugging Face config.json). */
typedef enum mc_clip_activation {
    MC_CLIP_QUICK_GELU = 0, /* x * sigmoid(1.702 x): OpenAI's CLIPs */
    MC_CLIP_GELU,           /* exact (erf) GELU: open_clip's own models */
} mc_clip_activation;

typedef struct mc_clip_vision_config {
    int width;      /* hidden size (768 for ViT-B) */
    int layers;     /* transformer blocks */
    int heads;      /* attention heads (width / 64 in OpenAI's CLIPs) */
    int mlp_width;  /* hidden size of the MLP (4 * width) */
    int patch;      /* patch size P (32 for ViT-B/32) */
    int image_size; /* input side S, a multiple of P (224) */
    mc_clip_activation activation; /* the MLP's (OpenAI's quick_gelu: 0) */
} mc_clip_vision_config;

typedef struct mc_clip_text_config {
    int width;      /* 512 for ViT-B/32's text tower */
    int layers;
    int heads;
    int mlp_width;
    int context;    /* sequence length T (77) */
    int vocab;      /* vocabulary size (49408) */
    mc_clip_activation activation; /* the MLP's (OpenAI's quick_gelu: 0) */
} mc_clip_text_config;

typedef struct mc_clip_config {
    bool has_vision, has_text;
    mc_clip_vision_config vision;
    mc_clip_text_config text;
    int embed_dim;  /* the joint space (512 for ViT-B/32) */
    float layernorm_eps; /* 1e-5 */
} mc_clip_config;

typedef struct mc_clip {
    mc_clip_config config;
    mc_param_list params; /* every tensor, Hugging Face names */
    /* vision tower */
    mc_tensor *patch_embedding;    /* (W, 3, P, P) */
    mc_tensor *class_embedding;    /* (W) */
    mc_tensor *vision_positions;   /* (1 + G*G, W) */
    mc_layer_norm pre_layernorm;   /* before the blocks ("pre_layrnorm") */
    mc_transformer_block *vision_blocks; /* vision.layers of them */
    mc_layer_norm post_layernorm;  /* on the class token */
    mc_tensor *visual_projection;  /* (E, W) */
    /* text tower */
    mc_tensor *token_embedding;    /* (V, W) */
    mc_tensor *text_positions;     /* (T, W) */
    mc_transformer_block *text_blocks; /* text.layers of them, causal */
    mc_layer_norm final_layer_norm;
    mc_tensor *text_projection;    /* (E, W) */
    mc_tensor *logit_scale;        /* (1): log of the inverse temperature */
} mc_clip;

/* A model with the given sizes, randomly initialised from `rng` (the
 * standard deviations of Hugging Face's CLIPModel._init_weights, except the
 * text position embedding's: 0.01 as open_clip draws it, where Hugging
 * Face draws 0.02). */
mc_status mc_clip_new(mc_clip **out, const mc_clip_config *config, mc_rng *rng);
void mc_clip_free(mc_clip *clip);
/* Derive the configuration from a CLIPModel safetensors file (either tower
 * may be absent) and load every tensor. Missing, misshaped or unknown tensors
 * are an error naming them (the int64 position_ids buffers are ignored; a
 * file of one tower may lack logit_scale, which then keeps log(1 / 0.07)).
 * Heads: the metadata mmchain.clip.{vision,text}_heads, else
 * {vision,text}_config.num_attention_heads of a config.json in the same
 * folder, else width / 64; a count that does not divide the width is an
 * error naming where it came from. The MLP's activation likewise:
 * mmchain.clip.{vision,text}_act, else the config.json's hidden_act
 * ("quick_gelu" or "gelu"; another is an error), else quick_gelu. A
 * config.json of one tower alone (CLIPVisionModel's, CLIPTextModel's) has
 * these at its top level. */
mc_status mc_clip_load(const char *path, mc_clip **out);
/* Write the model in Hugging Face naming, atomically, with metadata (and
 * the head counts and activations, as mmchain.clip.{vision,text}_heads and
 * mmchain.clip.{vision,text}_act). */
mc_status mc_clip_save(const mc_clip *clip, const char *path, int n_meta,
                       const mc_metadata_entry *meta);
/* Freeze (or unfreeze) every parameter. */
void mc_clip_set_trainable(mc_clip *clip, bool trainable);

/* pixels: (N, 3, S, S) NCHW, already CLIP-normalised -> *out (N, E),
 * projected, not normalised. */
mc_status mc_clip_encode_image(mc_clip *clip, mc_graph *g, mc_tensor *pixels, mc_tensor **out);
/* ids: n_texts rows of context ids (sot ... eot, zero padding) -> (n, E).
 * Without gradients (mc_graph_set_grad_enabled(g, false)) runs only the
 * positions up to the batch's last eot: the causal tower's result is that
 * of the whole context. A graph recording gradients runs all T positions
 * (a length varying by batch would defeat its memory plan). */
mc_status mc_clip_encode_text(mc_clip *clip, mc_graph *g, const int32_t *ids, int n_texts,
                              mc_tensor **out);

/* Zero-shot classifier weights: for each class, the mean over templates of
 * the L2-normalised text embeddings, renormalised (CLIP's prompt
 * ensembling). ids: (n_classes * n_templates) rows of context ids, class-
 * major (class 0 with every template, then class 1, ...).
 * *out: a heap tensor (n_classes, E), rows of unit length. */
mc_status mc_clip_class_embeddings(mc_clip *clip, const int32_t *ids, int n_classes,
                                   int n_templates, mc_tensor **out);
/* scores[i][k] = exp(logit_scale) * cos(image_i, class_k): images (N, E)
 * (any scale), classes (K, E) (unit rows) -> heap tensor (N, K). */
mc_status mc_clip_zero_shot_logits(const mc_tensor *image_embeds, const mc_tensor *class_embeds,
                                   float logit_scale, mc_tensor **out);

/* ---- inference in batches (lib/models/clip_embed.c) ----
 * Both run the tower without gradients (no tape), `batch` rows per forward
 * pass, resetting the graph in between, so memory holds one batch's
 * activations whatever the row count. Rows are independent: the results do
 * not depend on `batch` beyond the GEMM's rounding. */

/* images (N, 3, H, W) -> out (N, E), caller-allocated, projected, not
 * normalised. rgb: the images are RGB in 0..1 of any size, preprocessed
 * (mc_clip_preprocess_on, bicubic with antialiasing) one batch at a time;
 * otherwise they are already pixels (N, 3, S, S), CLIP-normalised. */
mc_status mc_clip_embed_images(mc_clip *clip, const mc_tensor *images, bool rgb, int batch,
                               mc_tensor *out);
/* The same on the caller's graph g, reset after every batch (and left
 * reset, its gradient switch as it was): a caller that embeds again and
 * again (a trainer's targets every step) keeps g, so the arena's pages
 * are faulted in once, not per call. Same embeddings as
 * mc_clip_embed_images. */
mc_status mc_clip_embed_images_on(mc_clip *clip, mc_graph *g, const mc_tensor *images, bool rgb,
                                  int batch, mc_tensor *out);
/* ids: n rows of context ids (sot ... eot, zero padding) -> out (n, E),
 * caller-allocated. */
mc_status mc_clip_embed_texts(mc_clip *clip, const int32_t *ids, int64_t n, int batch,
                              mc_tensor *out);

/* A 16-hex-digit fingerprint of the image tower (FNV-1a over the names,
 * shapes and values of its tensors): the identity of the weights in keys
 * of cached image embeddings. */
void mc_clip_vision_fingerprint(const mc_clip *clip, char hex[17]);

/* ---- image preprocessing (lib/models/clip_preprocess.c) ---- */

/* OpenAI CLIP's normalisation constants (clip/clip.py, _transform). */
extern const float mc_clip_mean[3];
extern const float mc_clip_std[3];
/* In place: channel c -> (x - mean[c]) / std[c]; image (3, H, W) or (N, 3, H, W). */
mc_status mc_image_clip_normalize(mc_tensor *image);
/* CLIP preprocessing of RGB images in 0..1, (3, H, W) or (N, 3, H, W):
 * resize the shorter side to `size` (bicubic), centre crop size x size,
 * normalise. Output: heap tensor (N, 3, size, size). CLIP itself uses PIL,
 * i.e. antialias = true. */
mc_status mc_clip_preprocess(const mc_tensor *images, int size, bool antialias, mc_tensor **out);
/* The same for (N, 3, H, W), the result (N, 3, size, size) and the
 * resampling's scratch on g's arena (until g is reset): a caller that
 * preprocesses a batch every step reuses memory instead of touching fresh
 * pages. Bit for bit mc_clip_preprocess's pixels. */
mc_status mc_clip_preprocess_on(mc_graph *g, const mc_tensor *images, int size, bool antialias,
                                mc_tensor **out);

#ifdef __cplusplus
}
#endif
#endif

/* CLIP: parameters with Hugging Face names, initialisation, loading and
 * saving, and zero-shot classification. The towers' forward passes are in
 * clip_vision.c and clip_text.c; the block they share is nn.h's
 * mc_transformer_block. */
#include "mmchain/clip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "mmchain/checkpoint.h"
#include "models/models_internal.h"

/* ---- creating the parameters ---- */

/* A parameter `name`, initialised N(0, std) when rng is given and std > 0,
 * to `fill` otherwise. */
static mc_status add_param(mc_clip *clip, mc_tensor **out, mc_shape shape, const char *name,
                           mc_rng *rng, float std, float fill) {
    MC_TRY(mc_params_new(&clip->params, out, shape, true, "%s", name));
    if (rng && std > 0.0f) mc_tensor_normal(*out, rng, 0.0f, std);
    else mc_tensor_fill(*out, fill);
    return MC_OK;
}

/* The blocks of one tower, "<tower>.encoder.layers.<i>.*": transformer
 * blocks (nn.h) created empty, then drawn with the standard deviations of
 * Hugging Face's CLIPPreTrainedModel._init_weights (biases 0) when rng is
 * given. */
static mc_status add_blocks(mc_clip *clip, mc_transformer_block **blocks, const char *tower,
                            int layers, int width, int heads, int mlp_width,
                            mc_clip_activation activation, bool causal, mc_rng *rng) {
    *blocks = calloc((size_t)layers, sizeof **blocks);
    if (!*blocks) return mc_error(MC_ERR_NOMEM, "clip: out of memory for %d blocks", layers);
    mc_transformer_config config = {.width = width, .heads = heads, .mlp_width = mlp_width,
                                    .activation = activation == MC_CLIP_GELU ? MC_ACT_GELU
                                                                             : MC_ACT_QUICK_GELU,
                                    .causal = causal,
                                    .eps = clip->config.layernorm_eps};
    float in_std = powf((float)width, -0.5f) * powf(2.0f * (float)layers, -0.5f);
    float out_std = powf((float)width, -0.5f);
    float fc_std = powf(2.0f * (float)width, -0.5f);
    for (int i = 0; i < layers; i++) {
        mc_transformer_block *b = &(*blocks)[i];
        char prefix[MC_NAME_LEN];
        snprintf(prefix, sizeof prefix, "%s.encoder.layers.%d", tower, i);
        MC_TRY(mc_transformer_block_init(&clip->params, prefix, &config, NULL, b));
        if (!rng) continue;
        mc_linear_init_normal(&b->self_attn.k_proj, in_std, rng);
        mc_linear_init_normal(&b->self_attn.v_proj, in_std, rng);
        mc_linear_init_normal(&b->self_attn.q_proj, in_std, rng);
        mc_linear_init_normal(&b->self_attn.out_proj, out_std, rng);
        mc_linear_init_normal(&b->mlp.fc1, fc_std, rng);
        mc_linear_init_normal(&b->mlp.fc2, in_std, rng);
    }
    return MC_OK;
}

static mc_status add_text_tower(mc_clip *clip, mc_rng *rng) {
    const mc_clip_text_config *t = &clip->config.text;
    MC_TRY(add_param(clip, &clip->token_embedding, MC_SHAPE(t->vocab, t->width),
                     "text_model.embeddings.token_embedding.weight", rng, 0.02f, 0.0f));
    /* 0.01: open_clip's (Hugging Face draws 0.02); kept, since the demo's
     * CLIP and its published numbers were trained from it. */
    MC_TRY(add_param(clip, &clip->text_positions, MC_SHAPE(t->context, t->width),
                     "text_model.embeddings.position_embedding.weight", rng, 0.01f, 0.0f));
    MC_TRY(add_blocks(clip, &clip->text_blocks, "text_model", t->layers, t->width, t->heads,
                      t->mlp_width, t->activation, true, rng));
    return mc_layer_norm_init(&clip->params, "text_model.final_layer_norm", t->width,
                              clip->config.layernorm_eps, &clip->final_layer_norm);
}

static mc_status add_vision_tower(mc_clip *clip, mc_rng *rng) {
    const mc_clip_vision_config *v = &clip->config.vision;
    int grid = v->image_size / v->patch;
    MC_TRY(add_param(clip, &clip->class_embedding, MC_SHAPE(v->width),
                     "vision_model.embeddings.class_embedding", rng, powf((float)v->width, -0.5f), 0.0f));
    MC_TRY(add_param(clip, &clip->patch_embedding, MC_SHAPE(v->width, 3, v->patch, v->patch),
                     "vision_model.embeddings.patch_embedding.weight", rng, 0.02f, 0.0f));
    MC_TRY(add_param(clip, &clip->vision_positions, MC_SHAPE(1 + grid * grid, v->width),
                     "vision_model.embeddings.position_embedding.weight", rng, 0.02f, 0.0f));
    float eps = clip->config.layernorm_eps;
    MC_TRY(mc_layer_norm_init(&clip->params, "vision_model.pre_layrnorm", v->width, eps,
                              &clip->pre_layernorm));
    MC_TRY(add_blocks(clip, &clip->vision_blocks, "vision_model", v->layers, v->width, v->heads,
                      v->mlp_width, v->activation, false, rng));
    return mc_layer_norm_init(&clip->params, "vision_model.post_layernorm", v->width, eps,
                              &clip->post_layernorm);
}

/* The largest grid of patches per side: 1 + G * G positions stay far
 * inside an int (a loaded file's tensors are bounded tighter still). */
enum { MAX_GRID = 4096 };

static bool known_activation(mc_clip_activation a) {
    return a == MC_CLIP_QUICK_GELU || a == MC_CLIP_GELU;
}

static mc_status check_config(const mc_clip_config *c) {
    if (!c->has_vision && !c->has_text)
        return mc_error(MC_ERR_ARG, "clip: a model needs a vision or a text tower");
    if (c->embed_dim < 1) return mc_error(MC_ERR_ARG, "clip: embed_dim %d must be positive", c->embed_dim);
    if (c->has_vision) {
        const mc_clip_vision_config *v = &c->vision;
        if (v->width < 1 || v->layers < 1 || v->heads < 1 || v->mlp_width < 1 || v->patch < 1 ||
            v->image_size < v->patch)
            return mc_error(MC_ERR_ARG, "clip vision: every size must be positive and image_size >= patch");
        if (v->width % v->heads || v->image_size % v->patch)
            return mc_error(MC_ERR_ARG, "clip vision: width %d must divide by heads %d and image %d by patch %d",
                            v->width, v->heads, v->image_size, v->patch);
        if (v->image_size / v->patch > MAX_GRID)
            return mc_error(MC_ERR_ARG, "clip vision: image %d / patch %d gives %d patches a side, "
                            "at most %d", v->image_size, v->patch, v->image_size / v->patch, MAX_GRID);
        if (!known_activation(v->activation))
            return mc_error(MC_ERR_ARG, "clip vision: activation %d is not an mc_clip_activation",
                            (int)v->activation);
    }
    if (c->has_text) {
        const mc_clip_text_config *t = &c->text;
        if (t->width < 1 || t->layers < 1 || t->heads < 1 || t->mlp_width < 1 || t->context < 2 || t->vocab < 2)
            return mc_error(MC_ERR_ARG, "clip text: every size must be positive (context and vocab >= 2)");
        if (t->width % t->heads)
            return mc_error(MC_ERR_ARG, "clip text: width %d must divide by heads %d", t->width, t->heads);
        if (!known_activation(t->activation))
            return mc_error(MC_ERR_ARG, "clip text: activation %d is not an mc_clip_activation",
                            (int)t->activation);
    }
    return MC_OK;
}

/* Create the parameters; rng NULL leaves them zero (they are about to be
 * loaded). Order follows Hugging Face's state_dict. */
static mc_status clip_create(mc_clip **out, const mc_clip_config *config, mc_rng *rng) {
    *out = NULL;
    MC_TRY(check_config(config));
    mc_clip *clip = calloc(1, sizeof *clip);
    if (!clip) return mc_error(MC_ERR_NOMEM, "clip: out of memory");
    clip->config = *config;
    if (clip->config.layernorm_eps <= 0.0f) clip->config.layernorm_eps = 1e-5f;
    mc_status status = MC_OK;
    if (config->has_text) status = add_text_tower(clip, rng);
    if (status == MC_OK && config->has_vision) status = add_vision_tower(clip, rng);
    if (status == MC_OK && config->has_vision)
        status = add_param(clip, &clip->visual_projection, MC_SHAPE(config->embed_dim, config->vision.width),
                           "visual_projection.weight", rng, powf((float)config->vision.width, -0.5f), 0.0f);
    if (status == MC_OK && config->has_text)
        status = add_param(clip, &clip->text_projection, MC_SHAPE(config->embed_dim, config->text.width),
                           "text_projection.weight", rng, powf((float)config->text.width, -0.5f), 0.0f);
    if (status == MC_OK)
        status = add_param(clip, &clip->logit_scale, MC_SHAPE(1), "logit_scale", NULL, 0.0f,
                           logf(1.0f / 0.07f));
    if (status != MC_OK) {
        mc_clip_free(clip);
        return status;
    }
    *out = clip;
    return MC_OK;
}

mc_status mc_clip_new(mc_clip **out, const mc_clip_config *config, mc_rng *rng) {
    if (!rng) return mc_error(MC_ERR_ARG, "clip: mc_clip_new needs an rng for the initialisation");
    return clip_create(out, config, rng);
}

void mc_clip_free(mc_clip *clip) {
    if (!clip) return;
    mc_params_free(&clip->params);
    free(clip->vision_blocks);
    free(clip->text_blocks);
    free(clip);
}

void mc_clip_set_trainable(mc_clip *clip, bool trainable) {
    mc_params_set_trainable(&clip->params, "", trainable);
}

/* ---- loading ---- */

/* dims of a tensor that must exist with `ndim` dimensions. */
static mc_status tensor_dims(const mc_safetensors *f, const char *name, int ndim, mc_shape *shape) {
    mc_dtype dtype;
    MC_TRY(mc_safetensors_info(f, name, &dtype, shape));
    if (shape->ndim != ndim)
        return mc_error(MC_ERR_FORMAT, "%s: tensor %s has %d dimensions, expected %d",
                        mc_safetensors_path(f), name, shape->ndim, ndim);
    /* The sizes become ints and are multiplied (the position grid by the
     * patch): a file may declare empty tensors of any size, so each is
     * bounded first, far above any CLIP (widths of thousands, 49,408
     * tokens). */
    for (int d = 0; d < ndim; d++)
        if (shape->dim[d] < 1 || shape->dim[d] > (1 << 20))
            return mc_error(MC_ERR_FORMAT, "%s: tensor %s has a dimension of %lld, expected 1..%d",
                            mc_safetensors_path(f), name, (long long)shape->dim[d], 1 << 20);
    return MC_OK;
}

/* ---- attention heads: not in the tensors ---- */

/* The metadata key mc_clip_save records a tower's heads under. */
static void heads_key(const char *kind, char *key, size_t len) {
    snprintf(key, len, "mmchain.clip.%s_heads", kind);
}

/* A config.json beside the weights (Hugging Face's layout), read whole;
 * NULL (no error) when there is none or it is not a small readable file. */
enum { CONFIG_JSON_MAX = 1 << 20 };
static mc_json_doc *config_beside(const char *weights_path) {
    const char *slash = strrchr(weights_path, '/');
    size_t folder = slash ? (size_t)(slash - weights_path) + 1 : 0;
    char path[4096];
    if (folder + sizeof "config.json" > sizeof path) return NULL;
    memcpy(path, weights_path, folder);
    memcpy(path + folder, "config.json", sizeof "config.json");
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    char *text = malloc(CONFIG_JSON_MAX + 1);
    size_t len = text ? fread(text, 1, CONFIG_JSON_MAX + 1, file) : 0;
    fclose(file);
    mc_json_doc *doc = NULL;
    if (text && len <= CONFIG_JSON_MAX && mc_json_parse(text, len, path, &doc) != MC_OK) doc = NULL;
    mc_clear_error(); /* not a Hugging Face config: the other sources decide */
    free(text);
    return doc;
}

/* What a config.json says of the `kind` tower ("vision" or "text"): its
 * <kind>_config object (a CLIPModel's), else the whole document when it
 * describes that tower alone (a CLIPVisionModel's or CLIPTextModel's:
 * "model_type": "clip_<kind>_model"); NULL when there is neither. */
static const mc_json *tower_section(const mc_json_doc *beside, const char *kind) {
    if (!beside) return NULL;
    const mc_json *root = mc_json_root(beside);
    char name[32];
    snprintf(name, sizeof name, "%s_config", kind);
    const mc_json *section = mc_json_get(root, name);
    if (section && section->type == MC_JSON_OBJECT) return section;
    const mc_json *type = mc_json_get(root, "model_type");
    snprintf(name, sizeof name, "clip_%s_model", kind);
    return type && type->type == MC_JSON_STRING && strcmp(type->string, name) == 0 ? root : NULL;
}

/* A tower's attention heads, which no tensor shape shows: the file's own
 * record (mc_clip_save writes it), else a Hugging Face config.json beside
 * the file (<kind>_config.num_attention_heads), else one head per 64
 * channels, as in OpenAI's released CLIPs. LAION's ViT-H/14 (width 1280,
 * 16 heads of 80) is why the last alone will not do: 1280 / 64 = 20 heads
 * would load without an error and compute other embeddings. A recorded
 * count that does not divide the width is an error. beside: the
 * config.json beside the file (config_beside), or NULL. */
static mc_status tower_heads(const mc_safetensors *f, const mc_json_doc *beside, const char *kind,
                             int width, int *heads) {
    char key[48];
    heads_key(kind, key, sizeof key);
    const char *recorded = mc_safetensors_metadata(f, key), *source = "its metadata";
    char given[32] = ""; /* the count as written, for the message */
    long long count = -1;
    if (recorded) {
        char *end;
        count = strtoll(recorded, &end, 10);
        if (end == recorded || *end) count = -1;
        snprintf(given, sizeof given, "%.20s", recorded);
    } else {
        const mc_json *config = tower_section(beside, kind);
        const mc_json *n = config ? mc_json_get(config, "num_attention_heads") : NULL;
        if (n) {
            source = "the config.json beside it";
            count = n->type == MC_JSON_NUMBER && n->is_int ? (long long)n->integer : -1;
            if (n->type == MC_JSON_NUMBER) snprintf(given, sizeof given, "%g", n->number);
            else snprintf(given, sizeof given, "a %s", mc_json_type_name(n->type));
        }
        if (!n) { /* recorded nowhere: OpenAI's rule */
            *heads = width / 64 > 0 ? width / 64 : 1;
            return MC_OK;
        }
    }
    if (count < 1 || count > width || width % count)
        return mc_error(MC_ERR_FORMAT, "%s: %s gives the %s tower %s attention heads, which must "
                        "be a count that divides its width %d", mc_safetensors_path(f), source,
                        kind, given, width);
    *heads = (int)count;
    return MC_OK;
}

/* ---- the MLP's activation: not in the tensors either ---- */

static void activation_key(const char *kind, char *key, size_t len) {
    snprintf(key, len, "mmchain.clip.%s_act", kind);
}

/* Hugging Face's names (its config's hidden_act), which mc_clip_save
 * records too. */
static const char *activation_name(mc_clip_activation a) {
    return a == MC_CLIP_GELU ? "gelu" : "quick_gelu";
}

/* A tower's MLP activation: the file's own record, else hidden_act of a
 * config.json beside it, else quick_gelu, as in OpenAI's CLIPs. open_clip's
 * own models (LAION's ViT-H/14 among them) use the exact GELU: with
 * quick_gelu they would load without an error and compute other
 * embeddings. A name that is neither is an error: Hugging Face knows
 * others (gelu_new, the tanh approximation), which this library does not
 * run. */
static mc_status tower_activation(const mc_safetensors *f, const mc_json_doc *beside,
                                  const char *kind, mc_clip_activation *activation) {
    *activation = MC_CLIP_QUICK_GELU;
    char key[48];
    activation_key(kind, key, sizeof key);
    const char *name = mc_safetensors_metadata(f, key), *source = "its metadata";
    if (!name) {
        const mc_json *config = tower_section(beside, kind);
        const mc_json *act = config ? mc_json_get(config, "hidden_act") : NULL;
        if (!act) return MC_OK; /* recorded nowhere: OpenAI's */
        source = "the config.json beside it";
        if (act->type != MC_JSON_STRING || strlen(act->string) != act->string_len)
            return mc_error(MC_ERR_FORMAT, "%s: %s gives the %s tower's hidden_act as a %s, "
                            "expected \"quick_gelu\" or \"gelu\"", mc_safetensors_path(f),
                            source, kind, mc_json_type_name(act->type));
        name = act->string;
    }
    if (strcmp(name, "gelu") == 0) *activation = MC_CLIP_GELU;
    else if (strcmp(name, "quick_gelu") != 0)
        return mc_error(MC_ERR_FORMAT, "%s: %s gives the %s tower the activation \"%.40s\"; "
                        "this library runs \"quick_gelu\" and \"gelu\"", mc_safetensors_path(f),
                        source, kind, name);
    return MC_OK;
}

/* What the encoder of the `kind` tower ("vision" or "text") says about
 * itself: its number of layers (<kind>_model.encoder.layers.N.*, at least
 * one) and its MLP width (from layer 0's fc1); its heads, which the
 * tensors do not show, come after (tower_heads). */
static mc_status derive_encoder(const mc_safetensors *f, const char *kind, int *layers,
                                int *mlp_width) {
    char tower[16], layers_prefix[48];
    snprintf(tower, sizeof tower, "%s_model", kind);
    snprintf(layers_prefix, sizeof layers_prefix, "%s.encoder.layers.", tower);
    *layers = mc_count_numbered_tensors(f, layers_prefix, ".layer_norm1.weight");
    if (*layers == 0)
        return mc_error(MC_ERR_FORMAT, "%s: %s tower without %s.encoder.layers.0.*",
                        mc_safetensors_path(f), kind, tower);
    char fc1_name[MC_NAME_LEN];
    snprintf(fc1_name, sizeof fc1_name, "%s.encoder.layers.0.mlp.fc1.weight", tower);
    mc_shape fc1;
    MC_TRY(tensor_dims(f, fc1_name, 2, &fc1));
    *mlp_width = (int)fc1.dim[0];
    return MC_OK;
}

static mc_status derive_vision_config(const mc_safetensors *f, mc_clip_vision_config *v) {
    mc_shape patch, positions;
    MC_TRY(tensor_dims(f, "vision_model.embeddings.patch_embedding.weight", 4, &patch));
    MC_TRY(tensor_dims(f, "vision_model.embeddings.position_embedding.weight", 2, &positions));
    v->width = (int)patch.dim[0];
    v->patch = (int)patch.dim[2];
    int grid = (int)lround(sqrt((double)(positions.dim[0] - 1)));
    if (grid * grid + 1 != positions.dim[0] || patch.dim[1] != 3 || patch.dim[2] != patch.dim[3])
        return mc_error(MC_ERR_FORMAT,
                        "%s: vision embeddings do not describe a square ViT over RGB "
                        "(patch_embedding (W, 3, P, P) and 1 + G*G positions expected)",
                        mc_safetensors_path(f));
    v->image_size = grid * v->patch;
    return derive_encoder(f, "vision", &v->layers, &v->mlp_width);
}

static mc_status derive_text_config(const mc_safetensors *f, mc_clip_text_config *t) {
    mc_shape tokens, positions;
    MC_TRY(tensor_dims(f, "text_model.embeddings.token_embedding.weight", 2, &tokens));
    MC_TRY(tensor_dims(f, "text_model.embeddings.position_embedding.weight", 2, &positions));
    t->vocab = (int)tokens.dim[0];
    t->width = (int)tokens.dim[1];
    t->context = (int)positions.dim[0];
    return derive_encoder(f, "text", &t->layers, &t->mlp_width);
}

static mc_status derive_config(const mc_safetensors *f, mc_clip_config *c) {
    memset(c, 0, sizeof *c);
    c->layernorm_eps = 1e-5f;
    c->has_vision = mc_safetensors_has(f, "vision_model.embeddings.patch_embedding.weight");
    c->has_text = mc_safetensors_has(f, "text_model.embeddings.token_embedding.weight");
    if (!c->has_vision && !c->has_text)
        return mc_error(MC_ERR_FORMAT,
                        "%s: not a CLIPModel file (neither vision_model.embeddings.patch_embedding.weight "
                        "nor text_model.embeddings.token_embedding.weight)",
                        mc_safetensors_path(f));
    mc_shape projection;
    if (c->has_vision) {
        MC_TRY(derive_vision_config(f, &c->vision));
        MC_TRY(tensor_dims(f, "visual_projection.weight", 2, &projection));
        c->embed_dim = (int)projection.dim[0];
    }
    if (c->has_text) {
        MC_TRY(derive_text_config(f, &c->text));
        MC_TRY(tensor_dims(f, "text_projection.weight", 2, &projection));
        c->embed_dim = (int)projection.dim[0];
    }
    /* The heads and activations of both towers, the config.json beside the
     * file read once. */
    mc_json_doc *beside = config_beside(mc_safetensors_path(f));
    mc_status status = MC_OK;
    if (c->has_vision) status = tower_heads(f, beside, "vision", c->vision.width, &c->vision.heads);
    if (status == MC_OK && c->has_vision)
        status = tower_activation(f, beside, "vision", &c->vision.activation);
    if (status == MC_OK && c->has_text)
        status = tower_heads(f, beside, "text", c->text.width, &c->text.heads);
    if (status == MC_OK && c->has_text)
        status = tower_activation(f, beside, "text", &c->text.activation);
    mc_json_free(beside);
    return status;
}

/* The blocks of one tower as shapes only (add_blocks' tensors). */
static mc_status expect_blocks(const mc_safetensors *f, const char *tower, int layers, int width,
                               int mlp_width) {
    static const char *const square[] = {"self_attn.k_proj", "self_attn.v_proj",
                                         "self_attn.q_proj", "self_attn.out_proj"};
    char name[MC_NAME_LEN];
#define EXPECT(shape, fmt, ...)                                                                   \
    do {                                                                                          \
        snprintf(name, sizeof name, "%s.encoder.layers.%d." fmt, tower, i, __VA_ARGS__);         \
        MC_TRY(mc_checkpoint_expect(f, name, shape));                                             \
    } while (0)
    for (int i = 0; i < layers; i++) {
        for (size_t k = 0; k < sizeof square / sizeof square[0]; k++) {
            EXPECT(MC_SHAPE(width, width), "%s.weight", square[k]);
            EXPECT(MC_SHAPE(width), "%s.bias", square[k]);
        }
        for (int n = 1; n <= 2; n++) {
            EXPECT(MC_SHAPE(width), "layer_norm%d.weight", n);
            EXPECT(MC_SHAPE(width), "layer_norm%d.bias", n);
        }
        EXPECT(MC_SHAPE(mlp_width, width), "%s", "mlp.fc1.weight");
        EXPECT(MC_SHAPE(mlp_width), "%s", "mlp.fc1.bias");
        EXPECT(MC_SHAPE(width, mlp_width), "%s", "mlp.fc2.weight");
        EXPECT(MC_SHAPE(width), "%s", "mlp.fc2.bias");
    }
#undef EXPECT
    return MC_OK;
}

static mc_status expect_layernorm(const mc_safetensors *f, const char *prefix, int width) {
    char name[MC_NAME_LEN];
    snprintf(name, sizeof name, "%s.weight", prefix);
    MC_TRY(mc_checkpoint_expect(f, name, MC_SHAPE(width)));
    snprintf(name, sizeof name, "%s.bias", prefix);
    return mc_checkpoint_expect(f, name, MC_SHAPE(width));
}

/* Hugging Face's one-tower models (CLIPVisionModelWithProjection,
 * CLIPTextModelWithProjection) keep no logit_scale: a file of one tower
 * may lack it, and the model then keeps its initial value, log(1 / 0.07)
 * (it scales only zero-shot scores, which need both towers). A file of
 * both towers (a CLIPModel's) must have it. */
static bool logit_scale_optional(const mc_clip_config *c) {
    return !(c->has_vision && c->has_text);
}

/* Every tensor clip_create would make for `c`, checked against the file
 * before anything is allocated: a file whose embeddings declare a huge
 * model (a transposed token embedding, say) is refused here. */
static mc_status check_file_shapes(const mc_safetensors *f, const mc_clip_config *c) {
    MC_TRY(check_config(c));
    if (c->has_text) {
        const mc_clip_text_config *t = &c->text;
        MC_TRY(mc_checkpoint_expect(f, "text_model.embeddings.token_embedding.weight",
                                    MC_SHAPE(t->vocab, t->width)));
        MC_TRY(mc_checkpoint_expect(f, "text_model.embeddings.position_embedding.weight",
                                    MC_SHAPE(t->context, t->width)));
        MC_TRY(expect_blocks(f, "text_model", t->layers, t->width, t->mlp_width));
        MC_TRY(expect_layernorm(f, "text_model.final_layer_norm", t->width));
        MC_TRY(mc_checkpoint_expect(f, "text_projection.weight", MC_SHAPE(c->embed_dim, t->width)));
    }
    if (c->has_vision) {
        const mc_clip_vision_config *v = &c->vision;
        int grid = v->image_size / v->patch;
        MC_TRY(mc_checkpoint_expect(f, "vision_model.embeddings.class_embedding", MC_SHAPE(v->width)));
        MC_TRY(mc_checkpoint_expect(f, "vision_model.embeddings.patch_embedding.weight",
                                    MC_SHAPE(v->width, 3, v->patch, v->patch)));
        MC_TRY(mc_checkpoint_expect(f, "vision_model.embeddings.position_embedding.weight",
                                    MC_SHAPE(1 + grid * grid, v->width)));
        MC_TRY(expect_layernorm(f, "vision_model.pre_layrnorm", v->width));
        MC_TRY(expect_blocks(f, "vision_model", v->layers, v->width, v->mlp_width));
        MC_TRY(expect_layernorm(f, "vision_model.post_layernorm", v->width));
        MC_TRY(mc_checkpoint_expect(f, "visual_projection.weight", MC_SHAPE(c->embed_dim, v->width)));
    }
    if (!logit_scale_optional(c) || mc_safetensors_has(f, "logit_scale"))
        MC_TRY(mc_checkpoint_expect(f, "logit_scale", MC_SHAPE(1)));
    return MC_OK;
}

mc_status mc_clip_load(const char *path, mc_clip **out) {
    *out = NULL;
    mc_safetensors *f;
    MC_TRY(mc_safetensors_open(path, &f));
    mc_clip_config config;
    mc_clip *clip = NULL;
    mc_status status = derive_config(f, &config);
    if (status == MC_OK) status = check_file_shapes(f, &config);
    if (status == MC_OK) status = clip_create(&clip, &config, NULL);
    /* Strict by name and shape; Hugging Face's position_ids are ignored,
     * and so is the logit_scale a one-tower file need not have. */
    static const char *const without_logit_scale[] = {"logit_scale", NULL};
    mc_checkpoint_load_options options = mc_checkpoint_load_defaults();
    if (status == MC_OK && logit_scale_optional(&config) && !mc_safetensors_has(f, "logit_scale"))
        options.skip_prefixes = without_logit_scale;
    if (status == MC_OK) status = mc_checkpoint_load_params(f, &clip->params, &options, NULL, 0);
    mc_safetensors_close(f);
    if (status != MC_OK) {
        mc_clip_free(clip);
        return mc_error_context(status, "loading CLIP from %s: ", path);
    }
    *out = clip;
    return MC_OK;
}

mc_status mc_clip_save(const mc_clip *clip, const char *path, int n_meta, const mc_metadata_entry *meta) {
    if (n_meta < 0 || (n_meta > 0 && !meta))
        return mc_error(MC_ERR_ARG, "clip: saving %s with bad metadata", path ? path : "(null)");
    /* The heads and activations, which the tensors do not show
     * (tower_heads and tower_activation read them back). */
    mc_metadata_entry *all = malloc(((size_t)n_meta + 4) * sizeof *all);
    if (!all) return mc_error(MC_ERR_NOMEM, "clip: saving %s: out of memory", path ? path : "(null)");
    if (n_meta) memcpy(all, meta, (size_t)n_meta * sizeof *all);
    char keys[2][2][48], heads_values[2][16];
    int n = n_meta;
    const bool has[2] = {clip->config.has_vision, clip->config.has_text};
    const int heads[2] = {clip->config.vision.heads, clip->config.text.heads};
    const mc_clip_activation activations[2] = {clip->config.vision.activation,
                                               clip->config.text.activation};
    const char *const kinds[2] = {"vision", "text"};
    for (int k = 0; k < 2; k++)
        if (has[k]) {
            heads_key(kinds[k], keys[k][0], sizeof keys[k][0]);
            snprintf(heads_values[k], sizeof heads_values[k], "%d", heads[k]);
            all[n++] = (mc_metadata_entry){keys[k][0], heads_values[k]};
            activation_key(kinds[k], keys[k][1], sizeof keys[k][1]);
            all[n++] = (mc_metadata_entry){keys[k][1], activation_name(activations[k])};
        }
    mc_status status = mc_safetensors_write(path, clip->params.count, clip->params.items, n, all);
    free(all);
    return status;
}

/* ---- zero-shot classification ---- */

/* Normalise each row of (rows, cols) data to unit length. */
static void normalize_rows(float *data, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = data + r * cols;
        double norm2 = 0.0;
        for (int64_t c = 0; c < cols; c++) norm2 += (double)row[c] * row[c];
        float inverse = norm2 > 0.0 ? (float)(1.0 / sqrt(norm2)) : 0.0f;
        for (int64_t c = 0; c < cols; c++) row[c] *= inverse;
    }
}

mc_status mc_clip_class_embeddings(mc_clip *clip, const int32_t *ids, int n_classes, int n_templates,
                                   mc_tensor **out) {
    *out = NULL;
    if (!clip->config.has_text) return mc_error(MC_ERR_ARG, "clip: class embeddings need a text tower");
    if (n_classes < 1 || n_templates < 1)
        return mc_error(MC_ERR_ARG, "clip: %d classes x %d templates, expected at least one each",
                        n_classes, n_templates);
    const int embed = clip->config.embed_dim;
    const int64_t rows = (int64_t)n_classes * n_templates;
    mc_tensor *texts = NULL, *classes = NULL;
    MC_TRY(mc_tensor_new(&texts, MC_SHAPE(rows, embed), "prompt_embeddings"));
    /* One class per forward pass (its n_templates prompts). */
    mc_status status = mc_clip_embed_texts(clip, ids, rows, n_templates, texts);
    if (status == MC_OK) status = mc_tensor_new(&classes, MC_SHAPE(n_classes, embed), "class_embeddings");
    if (status != MC_OK) {
        mc_tensor_free(texts);
        return status;
    }
    normalize_rows(texts->data, rows, embed);
    for (int k = 0; k < n_classes; k++) {
        float *mean = classes->data + (int64_t)k * embed;
        const float *prompts = texts->data + (int64_t)k * n_templates * embed;
        for (int t = 0; t < n_templates; t++)
            for (int e = 0; e < embed; e++) mean[e] += prompts[(int64_t)t * embed + e] / (float)n_templates;
    }
    mc_tensor_free(texts);
    normalize_rows(classes->data, n_classes, embed);
    *out = classes;
    return MC_OK;
}

mc_status mc_clip_zero_shot_logits(const mc_tensor *image_embeds, const mc_tensor *class_embeds,
                                   float logit_scale, mc_tensor **out) {
    *out = NULL;
    if (!image_embeds || !class_embeds)
        return mc_error(MC_ERR_ARG, "zero-shot: the %s embeddings are NULL",
                        image_embeds ? "class" : "image");
    if (image_embeds->shape.ndim != 2 || class_embeds->shape.ndim != 2 ||
        image_embeds->shape.dim[1] != class_embeds->shape.dim[1]) {
        char a[128], b[128];
        return mc_error(MC_ERR_SHAPE, "zero-shot: image embeddings %s and class embeddings %s must be (N, E) and (K, E)",
                        mc_tensor_str(image_embeds, a, sizeof a), mc_tensor_str(class_embeds, b, sizeof b));
    }
    int64_t n = image_embeds->shape.dim[0], k = class_embeds->shape.dim[0], e = image_embeds->shape.dim[1];
    MC_TRY(mc_tensor_new(out, MC_SHAPE(n, k), "zero_shot_logits"));
    float scale = expf(logit_scale);
    for (int64_t i = 0; i < n; i++) {
        const float *image = image_embeds->data + i * e;
        double norm2 = 0.0;
        for (int64_t d = 0; d < e; d++) norm2 += (double)image[d] * image[d];
        double inverse = norm2 > 0.0 ? 1.0 / sqrt(norm2) : 0.0;
        for (int64_t c = 0; c < k; c++) {
            const float *cls = class_embeds->data + c * e;
            double dot = 0.0;
            for (int64_t d = 0; d < e; d++) dot += (double)image[d] * cls[d];
            (*out)->data[i * k + c] = (float)(scale * dot * inverse);
        }
    }
    return MC_OK;
}

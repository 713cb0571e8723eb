/* Writes the seed corpora of the model-loader targets: tiny valid models
 * made by the library itself, so that fuzzing starts from files every
 * loader accepts (a few kilobytes each; mutations of their headers and
 * shapes are what the targets exist to try).
 *
 *     fuzz_make_model_seeds tests/fuzz/corpus
 *
 * writes corpus/clip/, corpus/resnet/ and corpus/checkpoint/. Besides the
 * valid models, files that declare a model far larger than they hold (the
 * hostile files every loader must refuse from the shapes, before building):
 * a token embedding stored transposed, a checkpoint whose metadata claims a
 * 4096-wide stem or 1000 blocks per stage. The files are committed; run
 * this again only when a format changes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mmchain/mmchain.h"

#define CHECK(call)                                                                               \
    do {                                                                                          \
        mc_status check_status_ = (call);                                                         \
        if (check_status_ != MC_OK) {                                                             \
            fprintf(stderr, "make_model_seeds: %s: %s\n", #call, mc_last_error());               \
            return 1;                                                                             \
        }                                                                                         \
    } while (0)

static char path_buf[4096];

/* root/folder/name, the folder made when missing. */
static const char *seed_path(const char *root, const char *folder, const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", root, folder);
    mkdir(path_buf, 0777);
    snprintf(path_buf, sizeof path_buf, "%s/%s/%s", root, folder, name);
    return path_buf;
}

/* Copy `src` to `dst` with metadata `key` set to `value`. */
static mc_status copy_with_metadata(const char *src, const char *dst, const char *key, const char *value) {
    mc_safetensors *f;
    MC_TRY(mc_safetensors_open(src, &f));
    int n = mc_safetensors_count(f), n_meta = mc_safetensors_metadata_count(f);
    mc_tensor **tensors = calloc((size_t)n, sizeof *tensors);
    mc_metadata_entry *meta = calloc((size_t)n_meta + 1, sizeof *meta);
    mc_status status = tensors && meta ? MC_OK : mc_error(MC_ERR_NOMEM, "no memory");
    for (int i = 0; i < n && status == MC_OK; i++)
        status = mc_safetensors_read(f, mc_safetensors_name(f, i), &tensors[i]);
    for (int i = 0; i < n_meta && status == MC_OK; i++) {
        meta[i].key = mc_safetensors_metadata_key(f, i);
        meta[i].value = strcmp(meta[i].key, key) == 0 ? value : mc_safetensors_metadata(f, meta[i].key);
    }
    if (status == MC_OK) status = mc_safetensors_write(dst, n, tensors, n_meta, meta);
    for (int i = 0; tensors && i < n; i++) mc_tensor_free(tensors[i]);
    free(tensors);
    free(meta);
    mc_safetensors_close(f);
    return status;
}

/* A text tower of vocabulary 1024 and width 8 whose token embedding is
 * stored as (8, 1024): the same bytes, but read naively a width of 1024,
 * a model some hundred times the file. */
static int clip_transposed_seed(const char *root) {
    mc_clip_config config = {
        .has_text = true,
        .text = {.width = 8, .layers = 1, .heads = 1, .mlp_width = 16, .context = 4, .vocab = 1024},
        .embed_dim = 4,
        .layernorm_eps = 1e-5f,
    };
    mc_rng rng;
    mc_rng_seed(&rng, 1);
    mc_clip *clip;
    CHECK(mc_clip_new(&clip, &config, &rng));
    mc_shape *shape = &clip->token_embedding->shape;
    int64_t rows = shape->dim[0];
    shape->dim[0] = shape->dim[1];
    shape->dim[1] = rows;
    mc_status status = mc_clip_save(clip, seed_path(root, "clip", "transposed_token_embedding.safetensors"), 0, NULL);
    shape->dim[1] = shape->dim[0];
    shape->dim[0] = rows;
    mc_clip_free(clip);
    CHECK(status);
    return 0;
}

/* CLIP with both towers, width 8, one block each; and each tower alone. */
static int clip_seeds(const char *root) {
    mc_clip_config config = {
        .has_vision = true,
        .has_text = true,
        .vision = {.width = 8, .layers = 1, .heads = 1, .mlp_width = 16, .patch = 4, .image_size = 8},
        .text = {.width = 8, .layers = 1, .heads = 1, .mlp_width = 16, .context = 4, .vocab = 12},
        .embed_dim = 4,
        .layernorm_eps = 1e-5f,
    };
    static const char *const names[3] = {"both_towers.safetensors", "text_only.safetensors",
                                         "vision_only.safetensors"};
    for (int kind = 0; kind < 3; kind++) {
        config.has_vision = kind != 1;
        config.has_text = kind != 2;
        mc_rng rng;
        mc_rng_seed(&rng, 1);
        mc_clip *clip;
        CHECK(mc_clip_new(&clip, &config, &rng));
        mc_status status = mc_clip_save(clip, seed_path(root, "clip", names[kind]), 0, NULL);
        mc_clip_free(clip);
        CHECK(status);
    }
    return clip_transposed_seed(root);
}

/* torchvision-named ResNets of width 1: basic blocks with an fc, and
 * bottleneck blocks without one. */
static int resnet_seeds(const char *root) {
    const mc_resnet_config configs[2] = {
        {.block = MC_RESNET_BASIC, .layers = {1, 1, 1, 1}, .base_width = 1, .in_channels = 3, .fc_out = 3},
        {.block = MC_RESNET_BOTTLENECK, .layers = {1, 1, 1, 1}, .base_width = 1, .in_channels = 3},
    };
    static const char *const names[2] = {"basic_fc.safetensors", "bottleneck.safetensors"};
    for (int i = 0; i < 2; i++) {
        mc_resnet *model;
        CHECK(mc_resnet_new(&model, &configs[i], 1));
        mc_status status = mc_safetensors_write(seed_path(root, "resnet", names[i]), model->params.count,
                                                model->params.items, 0, NULL);
        mc_resnet_free(model);
        CHECK(status);
    }
    return 0;
}

/* One optimizer step on the mean of the encoder's output for a random
 * batch, so that the optimizer has state to save. */
static mc_status train_one_step(mc_spectral_encoder *enc, mc_optimizer *opt) {
    mc_rng rng;
    mc_rng_seed(&rng, 2);
    mc_tensor *x = NULL, *embedding, *loss;
    mc_graph *g = NULL;
    mc_resnet_set_training(enc->resnet, true);
    mc_status status = mc_tensor_new(&x, MC_SHAPE(2, enc->bands.count, 32, 32), "x");
    if (status == MC_OK) mc_tensor_uniform(x, &rng, -1.0f, 1.0f);
    if (status == MC_OK) status = mc_graph_new(&g);
    if (status == MC_OK) status = mc_spectral_encoder_forward(enc, g, x, &embedding);
    if (status == MC_OK) status = mc_mean_all(g, embedding, &loss);
    if (status == MC_OK) status = mc_backward(g, loss);
    if (status == MC_OK) status = mc_optimizer_step(opt);
    mc_graph_free(g);
    mc_tensor_free(x);
    return status;
}

/* Spectral-encoder checkpoints of width 1 over 4 bands after one step:
 * with AdamW's state (two buffers per parameter) and with SGD's momentum. */
static int checkpoint_seeds(const char *root) {
    mc_resnet_config arch = {.block = MC_RESNET_BASIC, .layers = {1, 1, 1, 1}, .base_width = 1};
    mc_bands bands;
    mc_norm norm;
    CHECK(mc_bands_parse("B02,B03,B04,B08", &bands));
    CHECK(mc_norm_init(&norm, MC_NORM_TORCHGEO));
    mc_chain_state state = {.epoch = 2, .step_in_epoch = 1, .global_step = 7, .best_metric = 0.5, .best_epoch = 1};
    mc_rng_seed(&state.rng, 3);
    for (int kind = 0; kind < 2; kind++) {
        mc_spectral_encoder *enc;
        CHECK(mc_spectral_encoder_new(&enc, &arch, &bands, &norm, 32, 4, logf(1 / 0.07f), true, 1));
        mc_optimizer *opt = NULL;
        mc_status status = kind == 0 ? mc_optimizer_adamw(&opt, &enc->params, mc_adamw_defaults())
                                     : mc_optimizer_sgd(&opt, &enc->params,
                                                        (mc_sgd_config){.lr = 0.1f, .momentum = 0.9f});
        const char *name = kind == 0 ? "adamw.safetensors" : "sgd.safetensors";
        if (status == MC_OK) status = train_one_step(enc, opt);
        if (status == MC_OK)
            status = mc_spectral_encoder_save(enc, seed_path(root, "checkpoint", name), opt, &state, 0, NULL);
        mc_optimizer_free(opt);
        mc_spectral_encoder_free(enc);
        CHECK(status);
    }
    /* The AdamW checkpoint's metadata claiming a huge network. */
    char valid[4096];
    snprintf(valid, sizeof valid, "%s", seed_path(root, "checkpoint", "adamw.safetensors"));
    CHECK(copy_with_metadata(valid, seed_path(root, "checkpoint", "claims_width_4096.safetensors"),
                             "base_width", "4096"));
    CHECK(copy_with_metadata(valid, seed_path(root, "checkpoint", "claims_1000_blocks.safetensors"),
                             "layers", "1000,1000,1000,1000"));
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_FOLDER (tests/fuzz/corpus)\n", argv[0]);
        return 1;
    }
    return clip_seeds(argv[1]) || resnet_seeds(argv[1]) || checkpoint_seeds(argv[1]);
}

/* A tiny, complete input set for the chain's tests, made in the test:
 *
 *   DIR/data/<Class>/<Class>_<i>.tif    synthetic-world tiles (mc_synth_tile),
 *                                       13 bands, 64x64, uint16, EuroSAT's layout
 *   DIR/data3/<Class>/<Class>_<i>.tif   the same with only 3 bands (a dataset
 *                                       that lacks B08..B12)
 *   DIR/clip.safetensors                a random tiny CLIP (mc_clip_new + save)
 *   vocabulary                          CLIP's merges from ../shared/data when
 *                                       present, else DIR/merges.txt: a small BPE
 *                                       learned from the prompts (mc_tokenizer_train)
 *
 * Included by test_chain*.c (static functions: one copy per executable). */
#ifndef MMCHAIN_CHAIN_FIXTURE_H
#define MMCHAIN_CHAIN_FIXTURE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mmchain/mmchain.h"
#include "testutil.h"

#define FIXTURE_EMBED 16

typedef struct chain_fixture {
    char dir[1024];
    char data[1100], data3[1100], clip[1100], vocab[1100];
    int per_class;
} chain_fixture;

static mc_status fixture_mkdir(const char *path) {
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return MC_OK;
    return mc_error(MC_ERR_IO, "fixture: cannot create %s: %s", path, strerror(errno));
}

/* Tiles i = 1..per_class of every class, with `bands` of the 13 bands. */
static mc_status fixture_write_tiles(const char *root, int per_class, int bands, uint64_t seed) {
    uint16_t *tile = malloc(sizeof *tile * 64 * 64 * 13), *cut = malloc(sizeof *cut * 64 * 64 * 13);
    mc_status s = tile && cut ? fixture_mkdir(root) : mc_error(MC_ERR_NOMEM, "fixture: out of memory");
    for (int c = 0; c < MC_SYNTH_CLASSES && s == MC_OK; c++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", root, mc_synth_class_name(c));
        s = fixture_mkdir(path);
        for (int i = 0; i < per_class && s == MC_OK; i++) {
            s = mc_synth_tile(seed, c, i, tile);
            for (int p = 0; p < 64 * 64 && s == MC_OK; p++)
                for (int b = 0; b < bands; b++) cut[p * bands + b] = tile[p * 13 + b];
            snprintf(path, sizeof path, "%s/%s/%s_%d.tif", root, mc_synth_class_name(c),
                     mc_synth_class_name(c), i + 1);
            if (s == MC_OK) s = mc_tiff_write_u16(path, cut, 64, 64, bands);
        }
    }
    free(tile);
    free(cut);
    return s;
}

/* The vocabulary: CLIP's own merges when the shared data is there, else a
 * small BPE learned from the EuroSAT prompts. */
static mc_status fixture_vocab(chain_fixture *f, int *vocab_size) {
    char shared[1024];
    mc_test_shared_path("clip-tokenizer/merges.txt", shared, sizeof shared);
    mc_tokenizer *tok = NULL;
    if (mc_test_file_exists(shared)) {
        snprintf(f->vocab, sizeof f->vocab, "%s", shared);
        MC_TRY(mc_tokenizer_load(f->vocab, &tok));
    } else {
        const char *texts[MC_EUROSAT_NUM_CLASSES * MC_CHAIN_NUM_TEMPLATES];
        char buf[MC_EUROSAT_NUM_CLASSES * MC_CHAIN_NUM_TEMPLATES][160];
        for (int c = 0; c < MC_SYNTH_CLASSES; c++)
            for (int t = 0; t < MC_CHAIN_NUM_TEMPLATES; t++) {
                int k = c * MC_CHAIN_NUM_TEMPLATES + t;
                const char *hole = strstr(mc_chain_eurosat_templates[t], "{}");
                snprintf(buf[k], sizeof buf[k], "%.*s%s%s",
                         (int)(hole - mc_chain_eurosat_templates[t]), mc_chain_eurosat_templates[t],
                         mc_chain_eurosat_class_prompt(mc_synth_class_name(c)), hole + 2);
                texts[k] = buf[k];
            }
        MC_TRY(mc_tokenizer_train(texts, MC_SYNTH_CLASSES * MC_CHAIN_NUM_TEMPLATES, 200, &tok));
        snprintf(f->vocab, sizeof f->vocab, "%s/merges.txt", f->dir);
        mc_status s = mc_tokenizer_save(tok, f->vocab);
        if (s != MC_OK) {
            mc_tokenizer_free(tok);
            return s;
        }
    }
    *vocab_size = mc_tokenizer_vocab_size(tok);
    mc_tokenizer_free(tok);
    return MC_OK;
}

static mc_clip_config fixture_clip_config(int vocab_size) {
    mc_clip_config c = {0};
    c.has_vision = c.has_text = true;
    c.embed_dim = FIXTURE_EMBED;
    c.vision = (mc_clip_vision_config){.width = 32, .layers = 1, .heads = 1, .mlp_width = 64,
                                       .patch = 8, .image_size = 16};
    c.text = (mc_clip_text_config){.width = 32, .layers = 1, .heads = 1, .mlp_width = 64,
                                   .context = 77, .vocab = vocab_size};
    c.layernorm_eps = 1e-5f;
    return c;
}

static mc_status fixture_write(const char *dir, int per_class, chain_fixture *f) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    snprintf(f->data, sizeof f->data, "%s/data", dir);
    snprintf(f->data3, sizeof f->data3, "%s/data3", dir);
    snprintf(f->clip, sizeof f->clip, "%s/clip.safetensors", dir);
    f->per_class = per_class;
    MC_TRY(fixture_mkdir(dir));
    MC_TRY(fixture_write_tiles(f->data, per_class, 13, 11));
    MC_TRY(fixture_write_tiles(f->data3, 2, 3, 11));
    int vocab_size;
    MC_TRY(fixture_vocab(f, &vocab_size));
    mc_clip_config config = fixture_clip_config(vocab_size);
    mc_rng rng;
    mc_rng_seed(&rng, 5);
    mc_clip *clip;
    MC_TRY(mc_clip_new(&clip, &config, &rng));
    mc_status s = mc_clip_save(clip, f->clip, 0, NULL);
    mc_clip_free(clip);
    return s;
}

/* The tiny encoder architecture the tests train: basic blocks, one per
 * stage, width 4 (a few thousand weights). */
static inline mc_resnet_config fixture_arch(void) {
    mc_resnet_config arch = {0};
    arch.block = MC_RESNET_BASIC;
    arch.layers[0] = arch.layers[1] = arch.layers[2] = arch.layers[3] = 1;
    arch.base_width = 4;
    arch.in_channels = 3;
    arch.fc_out = FIXTURE_EMBED;
    return arch;
}

#endif

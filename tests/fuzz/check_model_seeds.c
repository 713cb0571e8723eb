/* The model targets' seeds are what make_model_seeds.c says they are:
 *     fuzz_check_model_seeds tests/fuzz/corpus
 * loads each valid seed the way its target does and expects it to load
 * (the checkpoints also resume with the optimizer they name), and expects
 * each hostile seed to be refused. WHY: a change of a format or of a
 * loader that made the valid seeds fail at the first check would leave the
 * fuzz targets mutating files that never get past it, testing nothing,
 * while their replays still passed. Exit 0 when every seed behaves; one
 * line per seed that does not. */
#include <stdio.h>
#include <string.h>

#include "mmchain/mmchain.h"

static int failures;

/* One seed's outcome against the expected one. A hostile seed must be
 * refused for what it declares: the file itself must open as safetensors
 * (a missing or unreadable file would be "refused" too, testing nothing),
 * and the refusal must be about the model, not the file (MC_ERR_IO). */
static void expect(const char *path, mc_status status, bool loads) {
    if (!loads && status != MC_OK) {
        char message[1024];
        snprintf(message, sizeof message, "%s", mc_last_error());
        mc_safetensors *f = NULL;
        if (status == MC_ERR_IO || mc_safetensors_open(path, &f) != MC_OK) {
            fprintf(stderr, "%s: refused, but not for the model it declares: %s\n", path, message);
            failures++;
        }
        mc_safetensors_close(f);
        return;
    }
    if ((status == MC_OK) == loads) return;
    fprintf(stderr, "%s: expected to %s, but %s%s\n", path, loads ? "load" : "be refused",
            status == MC_OK ? "it loaded" : "the loader said: ", status == MC_OK ? "" : mc_last_error());
    failures++;
}

static mc_status load_clip(const char *path) {
    mc_clip *clip = NULL;
    mc_status status = mc_clip_load(path, &clip);
    mc_clip_free(clip);
    return status;
}

/* As embed --model resnet: the architecture from the file, every tensor. */
static mc_status load_resnet(const char *path) {
    mc_safetensors *f = NULL;
    MC_TRY(mc_safetensors_open(path, &f));
    mc_resnet_config config;
    mc_resnet *model = NULL;
    mc_status status = mc_resnet_config_from_file(f, &config);
    if (status == MC_OK) status = mc_resnet_new(&model, &config, 1);
    if (status == MC_OK) {
        mc_resnet_load_options options = mc_resnet_load_defaults();
        char report[256];
        status = mc_resnet_load(model, f, &options, report, sizeof report);
    }
    mc_resnet_free(model);
    mc_safetensors_close(f);
    return status;
}

/* As train --resume: the encoder, then its optimizer's state. */
static mc_status resume_checkpoint(const char *path) {
    mc_spectral_encoder *enc = NULL;
    mc_chain_state state;
    MC_TRY(mc_spectral_encoder_load(path, &enc, &state));
    char kind[32] = "";
    mc_status status = mc_checkpoint_metadata_get(path, "mmchain.optimizer", kind, sizeof kind);
    mc_optimizer *opt = NULL;
    if (status == MC_OK) {
        if (strcmp(kind, "sgd") == 0)
            status = mc_optimizer_sgd(&opt, &enc->params, (mc_sgd_config){.lr = 0.1f, .momentum = 0.9f});
        else
            status = mc_optimizer_adamw(&opt, &enc->params, mc_adamw_defaults());
    }
    if (status == MC_OK) status = mc_spectral_encoder_restore(enc, path, opt, &state);
    mc_optimizer_free(opt);
    mc_spectral_encoder_free(enc);
    return status;
}

typedef struct seed {
    const char *folder, *name;
    mc_status (*load)(const char *path);
    bool loads;
} seed;

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_check_model_seeds CORPUS_FOLDER\n");
        return 2;
    }
    static const seed seeds[] = {
        {"clip", "both_towers.safetensors", load_clip, true},
        {"clip", "text_only.safetensors", load_clip, true},
        {"clip", "vision_only.safetensors", load_clip, true},
        {"clip", "transposed_token_embedding.safetensors", load_clip, false},
        {"resnet", "basic_fc.safetensors", load_resnet, true},
        {"resnet", "bottleneck.safetensors", load_resnet, true},
        {"checkpoint", "adamw.safetensors", resume_checkpoint, true},
        {"checkpoint", "sgd.safetensors", resume_checkpoint, true},
        {"checkpoint", "claims_width_4096.safetensors", resume_checkpoint, false},
        {"checkpoint", "claims_1000_blocks.safetensors", resume_checkpoint, false},
    };
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/%s", argv[1], seeds[i].folder, seeds[i].name);
        expect(path, seeds[i].load(path), seeds[i].loads);
        mc_clear_error();
    }
    if (failures == 0) printf("every model seed loads or is refused as make_model_seeds.c made it\n");
    return failures ? 1 : 0;
}

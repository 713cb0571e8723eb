/* Training checkpoints (lib/chain/checkpoint.c): a spectral encoder's
 * tensors, its optimizer's state ("optimizer.*") and the metadata that
 * describes the run (architecture, bands, normalisation, tile size,
 * embedding width, epoch, steps, best metric, generator state).
 *   - mc_spectral_encoder_load, as eval, classify and embed read a
 *     checkpoint: the encoder rebuilt from the metadata, checked against
 *     every tensor's shape first;
 *   - then, when that loaded, mc_spectral_encoder_restore with the
 *     optimizer the file names (train --resume): the same checks, the
 *     optimizer's state and the training state.
 * The heap each takes is bounded by the file's size (fuzz_common.h). */
#include <string.h>

#include "fuzz_common.h"
#include "mmchain/mmchain.h"

/* The optimizer a resumed run would make for this file. */
static mc_status optimizer_for(const char *path, mc_spectral_encoder *enc, mc_optimizer **opt) {
    char kind[32] = "";
    (void)mc_checkpoint_metadata_get(path, "mmchain.optimizer", kind, sizeof kind);
    if (strcmp(kind, "sgd") == 0)
        return mc_optimizer_sgd(opt, &enc->params, (mc_sgd_config){.lr = 0.1f, .momentum = 0.9f});
    if (strcmp(kind, "adam") == 0) return mc_optimizer_adam(opt, &enc->params, mc_adam_defaults());
    return mc_optimizer_adamw(opt, &enc->params, mc_adamw_defaults());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("checkpoint.safetensors", data, size);
    mc_spectral_encoder *enc = NULL;
    mc_chain_state state;
    fuzz_heap_begin();
    mc_status status = mc_spectral_encoder_load(path, &enc, &state);
    fuzz_heap_check("mc_spectral_encoder_load", size);
    if (status == MC_OK) {
        mc_optimizer *opt = NULL;
        fuzz_heap_begin();
        if (optimizer_for(path, enc, &opt) == MC_OK)
            (void)mc_spectral_encoder_restore(enc, path, opt, &state);
        /* The encoder itself was allocated before: the bound is for what
         * the resume adds (the optimizer's state and the file). */
        fuzz_heap_check("mc_spectral_encoder_restore", size);
        mc_optimizer_free(opt);
        mc_spectral_encoder_free(enc);
    }
    mc_clear_error();
    return 0;
}

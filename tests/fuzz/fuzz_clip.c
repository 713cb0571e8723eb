/* CLIP from a safetensors file in Hugging Face naming (mc_clip_load): the
 * configuration derived from the tensors' shapes (widths, layers, vocabulary,
 * context, patch, image size), every tensor checked against it, then the
 * model built and loaded. The heap the loader takes is bounded by the file's
 * size (fuzz_common.h): a file declaring a huge model must be refused from
 * its shapes, before anything of that size is allocated. */
#include "fuzz_common.h"
#include "mmchain/mmchain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("clip.safetensors", data, size);
    mc_clip *clip = NULL;
    fuzz_heap_begin();
    mc_status status = mc_clip_load(path, &clip);
    fuzz_heap_check("mc_clip_load", size);
    if (status == MC_OK) mc_clip_free(clip);
    mc_clear_error();
    return 0;
}

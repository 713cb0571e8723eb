/* JPEG (libjpeg under our error manager), through mc_image_read, which
 * also picks the decoder by the first bytes. */
#include "fuzz_common.h"
#include "mmchain/mmchain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_tensor *image = NULL;
    if (mc_image_read(fuzz_write("input.jpg", data, size), &image) == MC_OK) mc_tensor_free(image);
    return 0;
}

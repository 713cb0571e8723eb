/* PNG (libpng under our error handler and size checks). */
#include "fuzz_common.h"
#include "mmchain/mmchain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_tensor *image = NULL;
    int depth;
    if (mc_png_read(fuzz_write("input.png", data, size), &image, &depth) == MC_OK) mc_tensor_free(image);
    return 0;
}

/* safetensors: the 8-byte length, the JSON header, the tensor table, and
 * every tensor read back (float conversion or integers) and the metadata. */
#include <stdlib.h>

#include "fuzz_common.h"
#include "mmchain/mmchain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_safetensors *f = NULL;
    if (mc_safetensors_open(fuzz_write("input.safetensors", data, size), &f) != MC_OK) return 0;
    for (int i = 0; i < mc_safetensors_count(f); i++) {
        const char *name = mc_safetensors_name(f, i);
        mc_dtype dtype;
        mc_shape shape;
        if (mc_safetensors_info(f, name, &dtype, &shape) != MC_OK) continue;
        if (dtype == MC_DTYPE_F32 || dtype == MC_DTYPE_F16 || dtype == MC_DTYPE_BF16 || dtype == MC_DTYPE_F64) {
            mc_tensor *t = NULL;
            if (mc_safetensors_read(f, name, &t) == MC_OK) mc_tensor_free(t);
        } else {
            int64_t *values = NULL;
            if (mc_safetensors_read_ints(f, name, &values, NULL) == MC_OK) free(values);
        }
    }
    for (int i = 0; i < mc_safetensors_metadata_count(f); i++)
        (void)mc_safetensors_metadata(f, mc_safetensors_metadata_key(f, i));
    mc_safetensors_close(f);
    return 0;
}

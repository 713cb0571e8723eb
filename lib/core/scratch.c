/* Grow-only scratch buffers (scratch.h). */
#include "core/scratch.h"

#include <stdlib.h>

enum { SCRATCH_ALIGN = 64 };

void mc_scratch_free(mc_scratch *buffer) {
    free(buffer->data);
    buffer->data = NULL;
    buffer->capacity = 0;
}

mc_status mc_scratch_reserve(mc_scratch *buffer, int64_t floats, const char *what, float **out) {
    *out = NULL;
    if (floats < 0 || (uint64_t)floats > SIZE_MAX / sizeof(float) - SCRATCH_ALIGN)
        return mc_error(MC_ERR_NOMEM, "cannot allocate %lld floats for the %s", (long long)floats,
                        what);
    if ((size_t)floats > buffer->capacity) {
        /* free + allocate, not realloc: the old contents are not needed. */
        mc_scratch_free(buffer);
        size_t bytes = (size_t)floats * sizeof(float);
        bytes = (bytes + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN; /* aligned_alloc's rule */
        buffer->data = aligned_alloc(SCRATCH_ALIGN, bytes ? bytes : SCRATCH_ALIGN);
        if (!buffer->data)
            return mc_error(MC_ERR_NOMEM, "cannot allocate %lld floats for the %s",
                            (long long)floats, what);
        buffer->capacity = (size_t)floats;
    }
    *out = buffer->data;
    return MC_OK;
}

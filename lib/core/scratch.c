/* Grow-only scratch buffers (scratch.h). */
#include "core/scratch.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

enum { SCRATCH_ALIGN = 64 };

void mc_scratch_free(mc_scratch *buffer) {
    free(buffer->data);
    buffer->data = NULL;
    buffer->capacity = 0;
}

/* ---- a thread's buffers, freed when the thread ends ----
 *
 * WHY: the buffers are thread-local, and not only the calling thread's:
 * OpenMP workers take their own (a bf16 product split along K, a
 * convolution's chunks, strips or groups of rows per thread, Winograd's
 * chunks of tiles per thread). OpenMP ends workers
 * when a team shrinks (a smaller thread count, a num_threads clause), and
 * a thread-local buffer would be lost with its thread. So each thread
 * lists its buffers as they first get memory, and a pthread key's
 * destructor, which runs as the thread ends (before its thread-local
 * storage goes), frees them. The main thread's live until exit. */
enum { MAX_THREAD_BUFFERS = 64 }; /* the library declares 10 per thread */

typedef struct thread_buffers {
    mc_scratch *listed[MAX_THREAD_BUFFERS];
    int count;
} thread_buffers;

static _Thread_local thread_buffers this_thread;
static pthread_key_t thread_end;
static pthread_once_t thread_end_once = PTHREAD_ONCE_INIT;
static bool thread_end_made;

static void free_thread_buffers(void *buffers) {
    thread_buffers *mine = buffers;
    for (int i = 0; i < mine->count; i++) mc_scratch_free(mine->listed[i]);
    mine->count = 0;
}

static void make_thread_end(void) {
    thread_end_made = pthread_key_create(&thread_end, free_thread_buffers) == 0;
}

static void list_for_thread_end(mc_scratch *buffer) {
    for (int i = 0; i < this_thread.count; i++)
        if (this_thread.listed[i] == buffer) return;
    if (this_thread.count == MAX_THREAD_BUFFERS) return; /* not reached: 10 exist */
    this_thread.listed[this_thread.count++] = buffer;
    pthread_once(&thread_end_once, make_thread_end);
    /* a non-NULL value: the destructor runs only for those */
    if (thread_end_made) pthread_setspecific(thread_end, &this_thread);
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
        list_for_thread_end(buffer);
    }
    *out = buffer->data;
    return MC_OK;
}

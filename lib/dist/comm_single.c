/* The message layer for a world of one process (built without MPI): rank 0
 * of 1. Every transfer is a copy from this process to itself, so the code
 * above it (lib/dist/dist.c) runs unchanged. */
#include "dist/comm.h"

#include <stdlib.h>
#include <string.h>

bool mc_comm_built_with_mpi(void) { return false; }

void mc_comm_limit_count_for_testing(int count) { (void)count; }

static bool started;

mc_status mc_comm_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (started) return mc_error(MC_ERR_STATE, "mc_dist_init: the distributed layer is already running");
    started = true;
    return MC_OK;
}

mc_status mc_comm_finalize(void) {
    started = false;
    return MC_OK;
}

int mc_comm_rank(void) { return 0; }
int mc_comm_size(void) { return 1; }
mc_status mc_comm_barrier(void) { return MC_OK; }

mc_status mc_comm_broadcast(void *data, int64_t bytes, int root) {
    (void)data;
    (void)bytes;
    if (root != 0) return mc_error(MC_ERR_ARG, "broadcast from rank %d in a world of one process", root);
    return MC_OK;
}

mc_status mc_comm_alltoallv(const void *send, const int64_t *send_bytes, const int64_t *send_offsets,
                            void *recv, const int64_t *recv_bytes, const int64_t *recv_offsets) {
    if (send_bytes[0] != recv_bytes[0])
        return mc_error(MC_ERR_ARG, "alltoallv: sends %lld bytes to itself but expects %lld",
                        (long long)send_bytes[0], (long long)recv_bytes[0]);
    if (send_bytes[0] > 0)
        memmove((char *)recv + recv_offsets[0], (const char *)send + send_offsets[0], (size_t)send_bytes[0]);
    return MC_OK;
}

mc_status mc_comm_allgatherv(const void *send, int64_t bytes, void *recv, const int64_t *recv_bytes,
                             const int64_t *recv_offsets) {
    if (bytes != recv_bytes[0])
        return mc_error(MC_ERR_ARG, "allgatherv: sends %lld bytes but expects %lld",
                        (long long)bytes, (long long)recv_bytes[0]);
    if (bytes > 0) memmove((char *)recv + recv_offsets[0], send, (size_t)bytes);
    return MC_OK;
}

/* Channels: every collective completes when it starts (a copy). */
struct mc_comm_channel {
    int unused;
};

mc_status mc_comm_channel_new(mc_comm_channel **out) {
    *out = calloc(1, sizeof **out);
    return *out ? MC_OK : mc_error(MC_ERR_NOMEM, "channel: out of memory");
}

void mc_comm_channel_free(mc_comm_channel *channel) { free(channel); }

mc_status mc_comm_channel_alltoallv_start(mc_comm_channel *channel, const void *send, const int64_t *send_bytes,
                                          const int64_t *send_offsets, void *recv, const int64_t *recv_bytes,
                                          const int64_t *recv_offsets) {
    (void)channel;
    return mc_comm_alltoallv(send, send_bytes, send_offsets, recv, recv_bytes, recv_offsets);
}

mc_status mc_comm_channel_allgatherv_start(mc_comm_channel *channel, const void *send, int64_t bytes, void *recv,
                                           const int64_t *recv_bytes, const int64_t *recv_offsets) {
    (void)channel;
    return mc_comm_allgatherv(send, bytes, recv, recv_bytes, recv_offsets);
}

mc_status mc_comm_channel_test(mc_comm_channel *channel, bool *done) {
    (void)channel;
    *done = true;
    return MC_OK;
}

bool mc_comm_channel_busy(const mc_comm_channel *channel) {
    (void)channel;
    return false; /* a copy completes when it starts */
}

mc_status mc_comm_channel_wait(mc_comm_channel *channel) {
    (void)channel;
    return MC_OK;
}

void mc_comm_abort(int code) { (void)code; }

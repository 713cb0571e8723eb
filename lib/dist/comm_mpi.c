/* The message layer over MPI (built with MMCHAIN_MPI): MPI_COMM_WORLD, the
 * main thread only (MPI_THREAD_FUNNELED). Errors come back as statuses
 * (MPI_ERRORS_RETURN) with MPI's own description of what went wrong. */
#include "dist/comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

bool mc_comm_built_with_mpi(void) { return true; }

static bool started;      /* mc_comm_init ran */
static bool we_initialised; /* and it called MPI_Init_thread (not the program) */
static int world_rank, world_size = 1;

/* A status naming the call and MPI's message for `code`. */
static mc_status mpi_failed(const char *call, int code) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "error %d", code);
    return mc_error(MC_ERR_IO, "%s failed on rank %d: %s", call, world_rank, text);
}

#define MPI_TRY(call, ...)                                   \
    do {                                                     \
        int mpi_code_ = call(__VA_ARGS__);                   \
        if (mpi_code_ != MPI_SUCCESS) return mpi_failed(#call, mpi_code_); \
    } while (0)

mc_status mc_comm_init(int *argc, char ***argv) {
    if (started) return mc_error(MC_ERR_STATE, "mc_dist_init: the distributed layer is already running");
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready) {
        int provided = MPI_THREAD_SINGLE;
        int code = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (code != MPI_SUCCESS) return mc_error(MC_ERR_IO, "MPI_Init_thread failed (error %d)", code);
        we_initialised = true;
        if (provided < MPI_THREAD_FUNNELED)
            return mc_error(MC_ERR_UNSUPPORTED,
                            "this MPI library gives no thread support (level %d): mmchain's OpenMP "
                            "threads need MPI_THREAD_FUNNELED",
                            provided);
    }
    MPI_TRY(MPI_Comm_set_errhandler, MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_TRY(MPI_Comm_rank, MPI_COMM_WORLD, &world_rank);
    MPI_TRY(MPI_Comm_size, MPI_COMM_WORLD, &world_size);
    started = true;
    return MC_OK;
}

mc_status mc_comm_finalize(void) {
    if (!started) return MC_OK;
    started = false;
    world_rank = 0;
    world_size = 1;
    if (!we_initialised) return MC_OK; /* the program started MPI; it ends it */
    we_initialised = false;
    MPI_TRY(MPI_Finalize);
    return MC_OK;
}

int mc_comm_rank(void) { return world_rank; }
int mc_comm_size(void) { return world_size; }

static mc_status not_started(const char *what) {
    return mc_error(MC_ERR_STATE, "%s: mc_dist_init has not been called", what);
}

mc_status mc_comm_barrier(void) {
    if (!started) return world_size == 1 ? MC_OK : not_started("barrier");
    MPI_TRY(MPI_Barrier, MPI_COMM_WORLD);
    return MC_OK;
}

/* MPI counts and displacements are int. */
static mc_status to_int(int64_t bytes, const char *what, int *out) {
    if (bytes < 0 || bytes > INT_MAX)
        return mc_error(MC_ERR_UNSUPPORTED, "%s: %lld bytes in one transfer (MPI's limit is %d)", what,
                        (long long)bytes, INT_MAX);
    *out = (int)bytes;
    return MC_OK;
}

mc_status mc_comm_broadcast(void *data, int64_t bytes, int root) {
    if (!started) return not_started("broadcast");
    /* Broadcasts (whole parameter tensors) are cut into rounds of at most
     * 1 GiB, so no single transfer exceeds MPI's int count. */
    const int64_t round = (int64_t)1 << 30;
    for (int64_t done = 0; done < bytes; done += round) {
        int64_t n = bytes - done < round ? bytes - done : round;
        MPI_TRY(MPI_Bcast, (char *)data + done, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
    }
    return MC_OK;
}

/* counts / offsets (world) int64 -> int, into one malloc'd array of 4 rows. */
static mc_status int_tables(const int64_t *const sources[4], const char *what, int **out) {
    int *table = malloc(4 * (size_t)world_size * sizeof *table);
    if (!table) return mc_error(MC_ERR_NOMEM, "%s: out of memory", what);
    for (int row = 0; row < 4; row++)
        for (int k = 0; k < world_size; k++) {
            if (!sources[row]) continue;
            mc_status s = to_int(sources[row][k], what, &table[row * world_size + k]);
            if (s != MC_OK) {
                free(table);
                return s;
            }
        }
    *out = table;
    return MC_OK;
}

mc_status mc_comm_alltoallv(const void *send, const int64_t *send_bytes, const int64_t *send_offsets,
                            void *recv, const int64_t *recv_bytes, const int64_t *recv_offsets) {
    if (!started) return not_started("alltoallv");
    const int64_t *sources[4] = {send_bytes, send_offsets, recv_bytes, recv_offsets};
    int *t = NULL;
    MC_TRY(int_tables(sources, "alltoallv", &t));
    int n = world_size;
    int code = MPI_Alltoallv(send, t, t + n, MPI_BYTE, recv, t + 2 * n, t + 3 * n, MPI_BYTE, MPI_COMM_WORLD);
    free(t);
    return code == MPI_SUCCESS ? MC_OK : mpi_failed("MPI_Alltoallv", code);
}

mc_status mc_comm_allgatherv(const void *send, int64_t bytes, void *recv, const int64_t *recv_bytes,
                             const int64_t *recv_offsets) {
    if (!started) return not_started("allgatherv");
    int count = 0;
    MC_TRY(to_int(bytes, "allgatherv", &count));
    const int64_t *sources[4] = {recv_bytes, recv_offsets, NULL, NULL};
    int *t = NULL;
    MC_TRY(int_tables(sources, "allgatherv", &t));
    int code = MPI_Allgatherv(send, count, MPI_BYTE, recv, t, t + world_size, MPI_BYTE, MPI_COMM_WORLD);
    free(t);
    return code == MPI_SUCCESS ? MC_OK : mpi_failed("MPI_Allgatherv", code);
}

/* ---- channels: non-blocking collectives on a communicator of their own ---- */

struct mc_comm_channel {
    MPI_Comm comm;
    MPI_Request request; /* MPI_REQUEST_NULL when idle */
    int *table;          /* (4, world) int counts and offsets, alive while the request is */
};

mc_status mc_comm_channel_new(mc_comm_channel **out) {
    *out = NULL;
    if (!started) return not_started("channel");
    mc_comm_channel *c = calloc(1, sizeof *c);
    if (!c) return mc_error(MC_ERR_NOMEM, "channel: out of memory");
    int code = MPI_Comm_dup(MPI_COMM_WORLD, &c->comm);
    if (code != MPI_SUCCESS) {
        free(c);
        return mpi_failed("MPI_Comm_dup", code);
    }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    c->request = MPI_REQUEST_NULL;
    *out = c;
    return MC_OK;
}

void mc_comm_channel_free(mc_comm_channel *c) {
    if (!c) return;
    /* A collective still in flight (after an error on another channel) is
     * left to MPI_Abort or MPI_Finalize: it cannot be cancelled. */
    if (c->request == MPI_REQUEST_NULL) {
        MPI_Comm_free(&c->comm);
        free(c->table);
    }
    free(c);
}

static mc_status channel_idle(const mc_comm_channel *c, const char *what) {
    if (!started) return not_started(what);
    if (c->request != MPI_REQUEST_NULL)
        return mc_error(MC_ERR_STATE, "%s: the channel's previous collective has not completed", what);
    return MC_OK;
}

mc_status mc_comm_channel_alltoallv_start(mc_comm_channel *c, const void *send, const int64_t *send_bytes,
                                          const int64_t *send_offsets, void *recv, const int64_t *recv_bytes,
                                          const int64_t *recv_offsets) {
    MC_TRY(channel_idle(c, "ialltoallv"));
    const int64_t *sources[4] = {send_bytes, send_offsets, recv_bytes, recv_offsets};
    free(c->table);
    c->table = NULL;
    MC_TRY(int_tables(sources, "ialltoallv", &c->table));
    int *t = c->table, n = world_size;
    MPI_TRY(MPI_Ialltoallv, send, t, t + n, MPI_BYTE, recv, t + 2 * n, t + 3 * n, MPI_BYTE, c->comm,
            &c->request);
    return MC_OK;
}

mc_status mc_comm_channel_allgatherv_start(mc_comm_channel *c, const void *send, int64_t bytes, void *recv,
                                           const int64_t *recv_bytes, const int64_t *recv_offsets) {
    MC_TRY(channel_idle(c, "iallgatherv"));
    int count = 0;
    MC_TRY(to_int(bytes, "iallgatherv", &count));
    const int64_t *sources[4] = {recv_bytes, recv_offsets, NULL, NULL};
    free(c->table);
    c->table = NULL;
    MC_TRY(int_tables(sources, "iallgatherv", &c->table));
    MPI_TRY(MPI_Iallgatherv, send, count, MPI_BYTE, recv, c->table, c->table + world_size, MPI_BYTE, c->comm,
            &c->request);
    return MC_OK;
}

mc_status mc_comm_channel_test(mc_comm_channel *c, bool *done) {
    int flag = 1;
    if (c->request != MPI_REQUEST_NULL) MPI_TRY(MPI_Test, &c->request, &flag, MPI_STATUS_IGNORE);
    *done = flag != 0;
    return MC_OK;
}

mc_status mc_comm_channel_wait(mc_comm_channel *c) {
    if (c->request != MPI_REQUEST_NULL) MPI_TRY(MPI_Wait, &c->request, MPI_STATUS_IGNORE);
    return MC_OK;
}

void mc_comm_abort(int code) {
    if (started && world_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

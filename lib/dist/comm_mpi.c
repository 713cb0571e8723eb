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
    int ready = 0, finished = 0;
    MPI_Initialized(&ready);
    MPI_Finalized(&finished);
    if (finished) /* (a refused start finalises the MPI it began) */
        return mc_error(MC_ERR_STATE, "mc_dist_init: MPI has been finalised in this process");
    if (!ready) {
        int provided = MPI_THREAD_SINGLE;
        int code = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (code != MPI_SUCCESS) return mc_error(MC_ERR_IO, "MPI_Init_thread failed (error %d)", code);
        we_initialised = true;
    }
    /* The level MPI gives, whoever initialised it (the program may have
     * asked for less). Refused, MPI is finalised again if we started it,
     * so that the process does not end with it running. */
    int provided = MPI_THREAD_SINGLE;
    MPI_TRY(MPI_Query_thread, &provided);
    if (provided < MPI_THREAD_FUNNELED) {
        if (we_initialised) MPI_Finalize();
        we_initialised = false;
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

/* ---- counts: MPI's are int ----
 *
 * WHY UNITS: a count or displacement of more than INT_MAX bytes (2 GiB)
 * does not fit MPI's int. A transfer of floats or of rows moves whole
 * units of 4 bytes, or of a row's bytes: counted in the largest power of
 * two (up to 1 MiB) that divides every size and offset of the transfer,
 * and sent as a contiguous MPI type of that many bytes, the same bytes
 * fit in counts 4 to a million times smaller. (The crop targets gathered
 * by 8 ranks pass 2 GiB at about 74 crops a tile.) */

enum { MAX_UNIT = 1 << 20 };
static int max_count = INT_MAX; /* lowered by the tests (mc_comm_limit_count_for_testing) */

void mc_comm_limit_count_for_testing(int count) { max_count = count > 0 ? count : INT_MAX; }

/* The largest power of two, at most MAX_UNIT, dividing `also` and every
 * entry of the given tables (world entries each; NULL rows skipped). */
static int64_t common_unit(const int64_t *const sources[4], int64_t also) {
    uint64_t bits = (uint64_t)also | MAX_UNIT;
    for (int row = 0; row < 4; row++)
        for (int k = 0; sources[row] && k < world_size; k++) bits |= (uint64_t)sources[row][k];
    return (int64_t)(bits & (~bits + 1)); /* the lowest bit set */
}

/* A count of `unit`-byte units as an int. */
static mc_status to_int(int64_t bytes, int64_t unit, const char *what, int *out) {
    const int64_t units = bytes / unit;
    if (bytes < 0 || units > max_count)
        return mc_error(MC_ERR_UNSUPPORTED, "%s: %lld bytes in one transfer, %lld units of %lld "
                        "bytes (MPI's counts are int: at most %d)", what, (long long)bytes,
                        (long long)units, (long long)unit, max_count);
    *out = (int)units;
    return MC_OK;
}

/* The MPI type of one `unit`-byte unit; free it with free_unit_type. */
static mc_status unit_type(int64_t unit, MPI_Datatype *type) {
    *type = MPI_BYTE;
    if (unit == 1) return MC_OK;
    MPI_TRY(MPI_Type_contiguous, (int)unit, MPI_BYTE, type);
    int code = MPI_Type_commit(type);
    if (code != MPI_SUCCESS) {
        MPI_Type_free(type);
        return mpi_failed("MPI_Type_commit", code);
    }
    return MC_OK;
}

/* (MPI lets a type be freed while a collective started with it is in
 * flight: the collective completes normally.) */
static void free_unit_type(MPI_Datatype *type) {
    if (*type != MPI_BYTE) MPI_Type_free(type);
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

/* counts / offsets (world) in bytes -> int counts of `unit`-byte units,
 * into one malloc'd array of 4 rows. */
static mc_status int_tables(const int64_t *const sources[4], int64_t unit, const char *what,
                            int **out) {
    int *table = malloc(4 * (size_t)world_size * sizeof *table);
    if (!table) return mc_error(MC_ERR_NOMEM, "%s: out of memory", what);
    for (int row = 0; row < 4; row++)
        for (int k = 0; k < world_size; k++) {
            if (!sources[row]) continue;
            mc_status s = to_int(sources[row][k], unit, what, &table[row * world_size + k]);
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
    const int64_t unit = common_unit(sources, 0);
    int *t = NULL;
    MC_TRY(int_tables(sources, unit, "alltoallv", &t));
    MPI_Datatype type;
    mc_status status = unit_type(unit, &type);
    if (status == MC_OK) {
        int n = world_size;
        int code = MPI_Alltoallv(send, t, t + n, type, recv, t + 2 * n, t + 3 * n, type, MPI_COMM_WORLD);
        if (code != MPI_SUCCESS) status = mpi_failed("MPI_Alltoallv", code);
        free_unit_type(&type);
    }
    free(t);
    return status;
}

mc_status mc_comm_allgatherv(const void *send, int64_t bytes, void *recv, const int64_t *recv_bytes,
                             const int64_t *recv_offsets) {
    if (!started) return not_started("allgatherv");
    const int64_t *sources[4] = {recv_bytes, recv_offsets, NULL, NULL};
    const int64_t unit = common_unit(sources, bytes);
    int count = 0;
    MC_TRY(to_int(bytes, unit, "allgatherv", &count));
    int *t = NULL;
    MC_TRY(int_tables(sources, unit, "allgatherv", &t));
    MPI_Datatype type;
    mc_status status = unit_type(unit, &type);
    if (status == MC_OK) {
        int code = MPI_Allgatherv(send, count, type, recv, t, t + world_size, type, MPI_COMM_WORLD);
        if (code != MPI_SUCCESS) status = mpi_failed("MPI_Allgatherv", code);
        free_unit_type(&type);
    }
    free(t);
    return status;
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
    const int64_t unit = common_unit(sources, 0);
    free(c->table);
    c->table = NULL;
    MC_TRY(int_tables(sources, unit, "ialltoallv", &c->table));
    MPI_Datatype type;
    MC_TRY(unit_type(unit, &type));
    int *t = c->table, n = world_size;
    int code = MPI_Ialltoallv(send, t, t + n, type, recv, t + 2 * n, t + 3 * n, type, c->comm,
                              &c->request);
    free_unit_type(&type);
    return code == MPI_SUCCESS ? MC_OK : mpi_failed("MPI_Ialltoallv", code);
}

mc_status mc_comm_channel_allgatherv_start(mc_comm_channel *c, const void *send, int64_t bytes, void *recv,
                                           const int64_t *recv_bytes, const int64_t *recv_offsets) {
    MC_TRY(channel_idle(c, "iallgatherv"));
    const int64_t *sources[4] = {recv_bytes, recv_offsets, NULL, NULL};
    const int64_t unit = common_unit(sources, bytes);
    int count = 0;
    MC_TRY(to_int(bytes, unit, "iallgatherv", &count));
    free(c->table);
    c->table = NULL;
    MC_TRY(int_tables(sources, unit, "iallgatherv", &c->table));
    MPI_Datatype type;
    MC_TRY(unit_type(unit, &type));
    int code = MPI_Iallgatherv(send, count, type, recv, c->table, c->table + world_size, type,
                               c->comm, &c->request);
    free_unit_type(&type);
    return code == MPI_SUCCESS ? MC_OK : mpi_failed("MPI_Iallgatherv", code);
}

mc_status mc_comm_channel_test(mc_comm_channel *c, bool *done) {
    int flag = 1;
    if (c->request != MPI_REQUEST_NULL) MPI_TRY(MPI_Test, &c->request, &flag, MPI_STATUS_IGNORE);
    *done = flag != 0;
    return MC_OK;
}

bool mc_comm_channel_busy(const mc_comm_channel *c) { return c->request != MPI_REQUEST_NULL; }

mc_status mc_comm_channel_wait(mc_comm_channel *c) {
    if (c->request != MPI_REQUEST_NULL) MPI_TRY(MPI_Wait, &c->request, MPI_STATUS_IGNORE);
    return MC_OK;
}

void mc_comm_abort(int code) {
    if (started && world_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

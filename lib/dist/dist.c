/* The distributed layer's collectives on buffers (dist.h), built on the
 * message layer (comm.h), which only moves bytes. Every sum over ranks is
 * taken here, in rank order, in double: the result is the same on every
 * rank and in every run, whatever MPI's algorithms or the timing. */
#include "mmchain/dist.h"

#include "dist/comm.h"
#include "dist/reduce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool mc_dist_built_with_mpi(void) { return mc_comm_built_with_mpi(); }
mc_status mc_dist_init(int *argc, char ***argv) { return mc_comm_init(argc, argv); }
mc_status mc_dist_finalize(void) { return mc_comm_finalize(); }
bool mc_dist_launched(void) {
    /* Open MPI's mpirun; MPICH's and Intel MPI's Hydra (PMI); PMIx launchers. */
    static const char *const variables[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof variables / sizeof variables[0]; i++)
        if (getenv(variables[i])) return true;
    return false;
}

int mc_dist_rank(void) { return mc_comm_rank(); }
int mc_dist_world_size(void) { return mc_comm_size(); }
mc_status mc_dist_barrier(void) { return mc_comm_barrier(); }

void mc_dist_slice(int64_t n, int rank, int world, int64_t *start, int64_t *count) {
    int64_t base = n / world, extra = n % world;
    *count = base + (rank < extra ? 1 : 0);
    *start = rank * base + (rank < extra ? rank : extra);
}

mc_status mc_dist_check_batches(int64_t count, int64_t batch, int world) {
    int64_t rest = count % batch;
    if (batch < world)
        return mc_error(MC_ERR_ARG, "a batch of %lld items cannot be shared by %d ranks: the batch "
                        "(the global one) needs at least one item per rank", (long long)batch, world);
    if (rest >= 2 && rest < world)
        return mc_error(MC_ERR_ARG, "the last batch of each epoch holds %lld items (%lld items, batch "
                        "%lld), fewer than the %d ranks: choose a batch size that leaves none or at "
                        "least %d", (long long)rest, (long long)count, (long long)batch, world, world);
    return MC_OK;
}

void mc_dist_abort_job(int code, const char *message) {
    if (mc_comm_size() <= 1) return;
    fprintf(stderr, "rank %d: %s\n", mc_comm_rank(), message);
    fflush(stderr);
    mc_comm_abort(code);
}

mc_status mc_dist_broadcast_floats(float *data, int64_t count, int root) {
    if (count < 0) return mc_error(MC_ERR_ARG, "broadcast of %lld floats", (long long)count);
    return mc_comm_broadcast(data, count * (int64_t)sizeof(float), root);
}

/* ---------------------------------------------------------------------------
 * all-reduce = reduce-scatter in rank order + all-gather
 * ------------------------------------------------------------------------- */

/* Elements per exchange round: bounds the scratch memory (about two rounds'
 * worth) and keeps every transfer far below MPI's int count. */
enum { ROUND_ELEMENTS = 1 << 22 };

/* Chunk k of n elements cut into `world` chunks: [n k / world, n (k+1) / world). */
static int64_t chunk_start(int64_t n, int k, int world) { return n * k / world; }

static double element_at(const void *base, size_t size, int64_t i) {
    return size == sizeof(float) ? (double)((const float *)base)[i] : ((const double *)base)[i];
}

static void element_set(void *base, size_t size, int64_t i, double value) {
    if (size == sizeof(float)) ((float *)base)[i] = (float)value;
    else ((double *)base)[i] = value;
}

int64_t mc_dist_chunk_count(int64_t n, int rank, int world) {
    return chunk_start(n, rank + 1, world) - chunk_start(n, rank, world);
}

void mc_dist_scatter_table(int64_t n, size_t size, int64_t *table) {
    const int world = mc_comm_size(), rank = mc_comm_rank();
    const int64_t bytes = (int64_t)size, my_count = mc_dist_chunk_count(n, rank, world);
    int64_t *send_bytes = table, *send_offsets = table + world, *recv_bytes = table + 2 * world,
            *recv_offsets = table + 3 * world;
    for (int k = 0; k < world; k++) {
        send_offsets[k] = chunk_start(n, k, world) * bytes;
        send_bytes[k] = chunk_start(n, k + 1, world) * bytes - send_offsets[k];
        recv_bytes[k] = my_count * bytes;
        recv_offsets[k] = k * my_count * bytes;
    }
}

void mc_dist_gather_table(int64_t n, size_t size, int64_t *table) {
    const int world = mc_comm_size();
    int64_t *recv_bytes = table, *recv_offsets = table + world;
    for (int k = 0; k < world; k++) {
        recv_offsets[k] = chunk_start(n, k, world) * (int64_t)size;
        recv_bytes[k] = chunk_start(n, k + 1, world) * (int64_t)size - recv_offsets[k];
    }
}

void mc_dist_sum_received(const void *received, int64_t my_count, size_t size, mc_dist_reduce op, void *mine) {
    const int world = mc_comm_size();
    for (int64_t i = 0; i < my_count; i++) {
        double sum = 0.0;
        for (int k = 0; k < world; k++) sum += element_at(received, size, k * my_count + i);
        element_set(mine, size, i, op == MC_DIST_AVERAGE ? sum / world : sum);
    }
}

/* A buffer of floats or of doubles, seen as raw elements. */
typedef struct elements {
    void *data;
    size_t size; /* sizeof(float) or sizeof(double) */
} elements;

/* One round: buffer[0..n) of every rank -> its sum over ranks on every rank.
 * received: (world, n / world + 1) elements scratch; mine: (n / world + 1);
 * table: (4, world). */
static mc_status allreduce_round(elements buf, int64_t n, mc_dist_reduce op, void *received, void *mine,
                                 int64_t *table) {
    const int world = mc_comm_size();
    const int64_t my_count = mc_dist_chunk_count(n, mc_comm_rank(), world);
    /* Reduce-scatter: rank k receives chunk k of every rank's buffer, rank
     * j's copy at row j of `received`; it sums them, rank 0's term first. */
    mc_dist_scatter_table(n, buf.size, table);
    MC_TRY(mc_comm_alltoallv(buf.data, table, table + world, received, table + 2 * world, table + 3 * world));
    mc_dist_sum_received(received, my_count, buf.size, op, mine);
    /* All-gather the summed chunks back into every rank's buffer. */
    mc_dist_gather_table(n, buf.size, table);
    return mc_comm_allgatherv(mine, my_count * (int64_t)buf.size, buf.data, table, table + world);
}

static mc_status allreduce(elements buf, int64_t count, mc_dist_reduce op) {
    if (count < 0) return mc_error(MC_ERR_ARG, "all-reduce of %lld elements", (long long)count);
    const int world = mc_comm_size();
    if (world == 1 || count == 0) return MC_OK; /* the sum over one rank is the buffer itself */
    const int64_t round = count < ROUND_ELEMENTS ? count : ROUND_ELEMENTS;
    const int64_t chunk = round / world + 1;
    void *received = malloc((size_t)(world * chunk) * buf.size);
    void *mine = malloc((size_t)chunk * buf.size);
    int64_t *table = malloc(4 * (size_t)world * sizeof *table);
    mc_status status = MC_OK;
    if (!received || !mine || !table)
        status = mc_error(MC_ERR_NOMEM, "all-reduce of %lld elements: out of memory", (long long)count);
    for (int64_t done = 0; status == MC_OK && done < count; done += round) {
        int64_t n = count - done < round ? count - done : round;
        elements part = {(char *)buf.data + done * (int64_t)buf.size, buf.size};
        status = allreduce_round(part, n, op, received, mine, table);
    }
    free(received);
    free(mine);
    free(table);
    return status;
}

mc_status mc_dist_allreduce_floats(float *data, int64_t count, mc_dist_reduce op) {
    return allreduce((elements){data, sizeof(float)}, count, op);
}

mc_status mc_dist_allreduce_doubles(double *data, int64_t count, mc_dist_reduce op) {
    return allreduce((elements){data, sizeof(double)}, count, op);
}

/* ---------------------------------------------------------------------------
 * rows: all-gather and its adjoint, the summing reduce-scatter
 * ------------------------------------------------------------------------- */

mc_status mc_dist_allgather_counts(int64_t rows, int64_t *counts, int64_t *total) {
    const int world = mc_comm_size();
    if (rows < 0) return mc_error(MC_ERR_ARG, "all-gather of %lld rows", (long long)rows);
    int64_t *table = malloc(2 * (size_t)world * sizeof *table);
    if (!table) return mc_error(MC_ERR_NOMEM, "all-gather: out of memory");
    for (int k = 0; k < world; k++) {
        table[k] = (int64_t)sizeof(int64_t);
        table[world + k] = k * (int64_t)sizeof(int64_t);
    }
    mc_status status = mc_comm_allgatherv(&rows, sizeof rows, counts, table, table + world);
    free(table);
    MC_TRY(status);
    *total = 0;
    for (int k = 0; k < world; k++) *total += counts[k];
    return MC_OK;
}

/* Byte sizes and offsets of each rank's rows: table (2, world). */
static mc_status row_table(const int64_t *counts, int64_t row_len, int64_t **out) {
    const int world = mc_comm_size();
    int64_t *table = malloc(2 * (size_t)world * sizeof *table);
    if (!table) return mc_error(MC_ERR_NOMEM, "rows across ranks: out of memory");
    int64_t offset = 0;
    for (int k = 0; k < world; k++) {
        table[k] = counts[k] * row_len * (int64_t)sizeof(float);
        table[world + k] = offset;
        offset += table[k];
    }
    *out = table;
    return MC_OK;
}

mc_status mc_dist_allgather_rows(const float *local, int64_t rows, int64_t row_len,
                                 const int64_t *counts, float *global) {
    const int rank = mc_comm_rank();
    if (!counts || !global)
        return mc_error(MC_ERR_ARG, "all-gather: no %s (mc_dist_allgather_counts sizes them)",
                        counts ? "buffer for the rows" : "row counts");
    if (counts[rank] != rows)
        return mc_error(MC_ERR_ARG, "all-gather: rank %d gives %lld rows, its count says %lld", rank,
                        (long long)rows, (long long)counts[rank]);
    int64_t *table = NULL;
    MC_TRY(row_table(counts, row_len, &table));
    const int world = mc_comm_size();
    mc_status status = mc_comm_allgatherv(local, table[rank], global, table, table + world);
    free(table);
    return status;
}

mc_status mc_dist_reduce_scatter_rows(const float *global, int64_t row_len, const int64_t *counts,
                                      float *local) {
    const int world = mc_comm_size(), rank = mc_comm_rank();
    const int64_t mine = counts[rank] * row_len; /* floats this rank receives from each rank */
    int64_t *table = NULL, *recv = malloc(2 * (size_t)world * sizeof *recv);
    float *received = malloc((size_t)(world * mine + 1) * sizeof *received);
    mc_status status = recv && received ? row_table(counts, row_len, &table)
                                        : mc_error(MC_ERR_NOMEM, "reduce-scatter: out of memory");
    if (status == MC_OK) {
        for (int k = 0; k < world; k++) {
            recv[k] = mine * (int64_t)sizeof(float);
            recv[world + k] = k * mine * (int64_t)sizeof(float);
        }
        /* Rank k's copy of this rank's rows lands at row block k. */
        status = mc_comm_alltoallv(global, table, table + world, received, recv, recv + world);
    }
    if (status == MC_OK)
        for (int64_t i = 0; i < mine; i++) {
            double sum = 0.0;
            for (int k = 0; k < world; k++) sum += received[k * mine + i];
            local[i] = (float)sum;
        }
    free(table);
    free(recv);
    free(received);
    return status;
}

/* mmchain — distributed data parallelism over MPI (lib/dist/).
 *
 * N processes ("ranks") each hold a full copy of the model and take a slice
 * of every global batch; their gradients are combined so that every rank
 * takes the same optimizer step. This header is the whole interface: nothing
 * else in the library includes mpi.h. Built without MPI (CMake option
 * MMCHAIN_MPI), the same functions exist for one process: rank 0 of a world
 * of size 1, where every collective is a copy or nothing at all.
 *
 * Determinism. Sums across ranks are taken in RANK ORDER (0, 1, ..., N-1),
 * by this module, never by MPI's arithmetic: MPI_Allreduce may pick a
 * different algorithm (ring, recursive doubling, ...) by message size and
 * communicator, and with it a different order of the floating-point
 * additions, and the MPI standard only recommends (does not require) that
 * a reduction give the same result on every rank. Here an all-reduce is a
 * reduce-scatter written out by hand — every rank receives the k-th chunk of
 * every rank's buffer (MPI_Alltoallv, which moves bytes and adds nothing)
 * and sums them in rank order, in double — followed by an all-gather of the
 * summed chunks (MPI_Allgatherv). Every element is summed once, by one
 * rank, in a fixed order, so the result is bit-identical on all ranks and
 * from run to run, whatever the timing; the traffic is the same 2 (N-1)/N
 * of the buffer per rank as a ring all-reduce.
 *
 * Every function here except mc_dist_rank / mc_dist_world_size /
 * mc_dist_slice is COLLECTIVE: every rank must call it, in the same order,
 * with matching sizes. A rank that fails between collectives must end the
 * job (mc_dist_abort_job), or the others wait forever. */
#ifndef MMCHAIN_DIST_H
#define MMCHAIN_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd.h"
#include "error.h"
#include "nn.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the world ---- */

/* True when the library was built with MPI (the MMCHAIN_MPI option). */
bool mc_dist_built_with_mpi(void);
/* Start the distributed layer (MPI_Init_thread, MPI_THREAD_FUNNELED: only
 * the main thread talks to MPI; OpenMP teams never do). argc / argv may be
 * NULL. Without MPI, or when the program was not started by mpirun, this is
 * a world of one process. Calling it twice is an error (MC_ERR_STATE). */
mc_status mc_dist_init(int *argc, char ***argv);
/* End it (MPI_Finalize). Harmless when mc_dist_init was not called. */
mc_status mc_dist_finalize(void);
/* True when an MPI launcher started this process (mpiexec / mpirun of Open
 * MPI, MPICH or Intel MPI, or a PMIx launcher such as srun): the
 * environment names its rank. A program decides from it whether to call
 * mc_dist_init — and one built without MPI can refuse to run as N copies
 * that would each train alone. Not collective. */
bool mc_dist_launched(void);
/* This process's rank, 0..world-1 (0 before mc_dist_init). */
int mc_dist_rank(void);
/* How many processes (1 before mc_dist_init, and without MPI). */
int mc_dist_world_size(void);

/* Rank `rank`'s share of n items split over `world` ranks: the first
 * n % world ranks get one item more. *start, *count: its first item and how
 * many (33 items on 2 ranks: 0..16 and 17..32). Not collective. */
void mc_dist_slice(int64_t n, int rank, int world, int64_t *start, int64_t *count);

/* Whether every batch of an epoch gives each of `world` ranks at least one
 * item: `count` items in batches of `batch`, the full ones plus the
 * remainder when it holds at least 2 items (the trainers' rule). MC_ERR_ARG
 * naming the batch that does not. Not collective: every rank finds the same. */
mc_status mc_dist_check_batches(int64_t count, int64_t batch, int world);

/* End every process of the job: the message goes to stderr, prefixed with
 * "rank R: ", then MPI_Abort with exit code `code`. This is how a rank that
 * failed tells the others, which may be waiting in a collective. In a world
 * of one it prints nothing and returns: the caller reports its error and
 * returns `code` as it would without MPI. Not collective. */
void mc_dist_abort_job(int code, const char *message);

/* ---- collectives on buffers ---- */

mc_status mc_dist_barrier(void);
/* Copy root's `count` floats into every rank's data. */
mc_status mc_dist_broadcast_floats(float *data, int64_t count, int root);
/* Every tensor of a parameter list (parameters and buffers, in list order)
 * from rank 0 to all ranks: every rank then starts from rank 0's model. The
 * lists must have the same tensors (names and sizes are checked). */
mc_status mc_dist_broadcast_params(const mc_param_list *params);

/* Check that every rank's trainable tensors are bit for bit rank 0's (a
 * 64-bit FNV-1a fingerprint of their bytes, compared with rank 0's). On a
 * difference every rank returns MC_ERR_NUMERIC, the message starting with
 * `when` ("after epoch 3"). Data-parallel ranks apply identical updates, so
 * this is a check of the machinery, cheap enough for every epoch. */
mc_status mc_dist_check_params_agree(const mc_param_list *params, const char *when);

/* A setting every rank must share (an option, a data size), by name. */
typedef struct mc_dist_setting {
    const char *name; /* "--batch" */
    double value;
} mc_dist_setting;
/* Check that every rank holds rank 0's settings (the same count, the same
 * values bit for bit). On a difference every rank returns MC_ERR_ARG naming
 * `what`, the first setting that differs, and its values on rank 0 and on
 * the first rank that differs: ranks started with different options or data
 * would otherwise train apart, or wait for each other forever. */
mc_status mc_dist_check_settings(const char *what, const mc_dist_setting *settings, int count);
/* 64-bit FNV-1a of `bytes`, continued from `h` (start from
 * MC_DIST_FINGERPRINT_START): a setting too long to compare as a number,
 * such as a list of tile paths, compared as two 32-bit halves. Not collective. */
#define MC_DIST_FINGERPRINT_START 0xcbf29ce484222325ULL
uint64_t mc_dist_fingerprint(uint64_t h, const void *bytes, size_t n);

typedef enum mc_dist_reduce {
    MC_DIST_SUM,     /* sum over ranks, in rank order */
    MC_DIST_AVERAGE  /* the sum divided by the world size */
} mc_dist_reduce;

/* data (count) <- the elementwise sum (or average) over ranks, in rank
 * order and in double, then rounded once to float. Bit-identical on every
 * rank. */
mc_status mc_dist_allreduce_floats(float *data, int64_t count, mc_dist_reduce op);
/* The same for doubles, summed in rank order (batch-norm statistics). */
mc_status mc_dist_allreduce_doubles(double *data, int64_t count, mc_dist_reduce op);

/* Rows of all ranks, concatenated in rank order. Every rank gives `rows`
 * rows of `row_len` floats (rows may differ between ranks, and may be 0).
 * mc_dist_allgather_counts: counts (world) receives each rank's row count
 * and *total their sum, to size the buffer. mc_dist_allgather_rows then
 * takes those counts and fills global, room for total * row_len floats
 * (not NULL: an error). */
mc_status mc_dist_allgather_counts(int64_t rows, int64_t *counts, int64_t *total);
mc_status mc_dist_allgather_rows(const float *local, int64_t rows, int64_t row_len,
                                 const int64_t *counts, float *global);
/* The inverse of a gather, summing: every rank holds a full (total, row_len)
 * buffer `global` whose rows are split between the ranks as `counts` says;
 * rank r receives in `local` (counts[r], row_len) the sum over ranks, in
 * rank order, of rows counts[0] + ... + counts[r-1] onwards. */
mc_status mc_dist_reduce_scatter_rows(const float *global, int64_t row_len, const int64_t *counts,
                                      float *local);

/* ---- data-parallel training ---- */

/* An all-gather op on the tape: local (m, ...) on this rank -> *out
 * (M, ...) with M = the sum of every rank's m, rows in rank order; the
 * trailing dimensions must agree. Backward (gather with gradient, as
 * open_clip's gather_features): the gradient of *out, which each rank
 * computed from its own loss, is summed over ranks (reduce-scatter, rank
 * order) and this rank's rows are added to local's gradient. If every rank
 * computes the same loss from the gathered rows, local's gradient is then N
 * times the one-process gradient of those rows: average the parameter
 * gradients (mc_dist_average_gradients) to get the one-process gradient.
 * Without a gradient (local does not require one) it is a plain gather. */
mc_status mc_dist_all_gather_op(mc_graph *g, mc_tensor *local, mc_tensor **out);

/* Average the gradients of every trainable tensor of `params` over ranks
 * (one all-reduce over a packed buffer, in list order). A tensor whose
 * gradient was never created counts as zeros; g provides the buffer when
 * the average is not zero. Call after backward, before the optimizer step. */
mc_status mc_dist_average_gradients(mc_graph *g, const mc_param_list *params);

/* Gradient averaging in buckets, overlapped with backward (as PyTorch's
 * DistributedDataParallel). The trainable tensors of a parameter list are
 * grouped, in REVERSE list order (roughly the order in which backward
 * finishes their gradients), into buckets of about `bucket_bytes`. During
 * backward, as soon as every gradient of a bucket is final — backward has
 * walked every node of the tape that uses its tensors — the bucket is
 * packed and its all-reduce starts as non-blocking collectives, while
 * backward goes on; the rest is waited for at the end. The averages are
 * those of mc_dist_average_gradients bit for bit (every element is summed
 * in rank order, whatever the buckets). Buckets start in bucket order on
 * every rank, and each has its own communicator, so the order of MPI's
 * calls does not depend on timing.
 *
 * MPI moves a non-blocking collective on only inside MPI calls: the
 * reducer tests its buckets after every node of backward, which is how the
 * transfer advances while the heavy ops compute. */
typedef struct mc_dist_reducer mc_dist_reducer;

/* The default bucket size, as DDP's bucket_cap_mb = 25. */
#define MC_DIST_BUCKET_BYTES ((int64_t)25 << 20)

/* Collective (each bucket duplicates the world's communicator). The list
 * must outlive the reducer and keep its tensors. */
mc_status mc_dist_reducer_new(const mc_param_list *params, int64_t bucket_bytes, mc_dist_reducer **out);
/* Collective. */
void mc_dist_reducer_free(mc_dist_reducer *reducer);
/* mc_backward(g, loss), then every trainable gradient of the reducer's
 * list averaged over ranks — mc_dist_average_gradients's result, with the
 * communication overlapped with backward. */
mc_status mc_dist_backward_average(mc_dist_reducer *reducer, mc_graph *g, mc_tensor *loss);

/* What the last mc_dist_backward_average did on this rank. */
typedef struct mc_dist_reducer_stats {
    int buckets;
    int64_t gradient_bytes; /* the gradients averaged (floats x 4) */
    int64_t bytes_sent;     /* by this rank, both phases (2 (N-1)/N of the gradients) */
    int64_t last_bucket_bytes; /* the bucket backward completes last (nothing hides its exchange) */
    int buckets_overlapped; /* buckets whose exchange had started before backward ended */
    double backward_seconds;   /* backward itself, with the overlapped communication */
    double exposed_seconds;    /* after backward: waiting for the buckets and unpacking */
} mc_dist_reducer_stats;
void mc_dist_reducer_stats_get(const mc_dist_reducer *reducer, mc_dist_reducer_stats *out);

/* Synchronised batch norm: while enabled, every training-mode batch norm
 * (mc_batchnorm2d, mc_batchnorm2d_relu) takes its statistics over the
 * global batch — the per-channel sums of its forward and the two sums of
 * its backward are summed over ranks — so that N ranks compute what one
 * process computes on the whole batch (PyTorch's SyncBatchNorm). Without
 * it each rank normalises by its own slice (DDP's default). Every rank must
 * run the same batch norms in the same order while it is enabled. */
void mc_dist_set_sync_batchnorm(bool enabled);

#ifdef __cplusplus
}
#endif
#endif

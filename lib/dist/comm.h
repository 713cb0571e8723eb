/* The message layer under lib/dist: what MPI provides (comm_mpi.c), or its
 * stand-in for a world of one process (comm_single.c). Exactly one of the
 * two is compiled (CMake option MMCHAIN_MPI). Only data movement lives here;
 * every sum is taken in lib/dist/dist.c, in rank order.
 *
 * Sizes are in bytes. MPI counts are int: the MPI layer counts a transfer
 * in the largest power-of-two unit (up to 1 MiB) that divides all its
 * sizes and offsets, and refuses (MC_ERR_UNSUPPORTED) one of more than
 * INT_MAX such units. Broadcasts go in rounds of 1 GiB. */
#ifndef MMCHAIN_DIST_COMM_H
#define MMCHAIN_DIST_COMM_H

#include <stdbool.h>
#include <stdint.h>

#include "mmchain/error.h"

bool mc_comm_built_with_mpi(void);
mc_status mc_comm_init(int *argc, char ***argv);
mc_status mc_comm_finalize(void);
int mc_comm_rank(void);
int mc_comm_size(void);
mc_status mc_comm_barrier(void);
/* root's `bytes` bytes at data to every rank's data. */
mc_status mc_comm_broadcast(void *data, int64_t bytes, int root);
/* Each rank sends send_bytes[k] bytes from send + send_offsets[k] to rank k
 * and receives recv_bytes[k] bytes from rank k at recv + recv_offsets[k]
 * (MPI_Alltoallv). All arrays have world-size entries. */
mc_status mc_comm_alltoallv(const void *send, const int64_t *send_bytes, const int64_t *send_offsets,
                            void *recv, const int64_t *recv_bytes, const int64_t *recv_offsets);
/* Each rank's `bytes` bytes from send to every rank's recv + recv_offsets[k],
 * where k is the sender (MPI_Allgatherv). recv_bytes[k]: what rank k sends. */
mc_status mc_comm_allgatherv(const void *send, int64_t bytes, void *recv, const int64_t *recv_bytes,
                             const int64_t *recv_offsets);
/* A channel: a communicator of its own (a duplicate of the world's) that
 * carries one non-blocking collective at a time. MPI wants the collectives
 * of one communicator started in the same order on every rank; a gradient
 * bucket's exchange goes in two phases, the second started when the first
 * is seen complete — a moment that depends on timing — so every bucket gets
 * its own channel, and buckets may then progress in any order.
 * mc_comm_channel_new and _free are collective. The _start functions take
 * the same arguments as the blocking ones and return at once; the buffers
 * must stay untouched until _test says done or _wait returns. */
typedef struct mc_comm_channel mc_comm_channel;
mc_status mc_comm_channel_new(mc_comm_channel **out);
void mc_comm_channel_free(mc_comm_channel *channel);
mc_status mc_comm_channel_alltoallv_start(mc_comm_channel *channel, const void *send, const int64_t *send_bytes,
                                          const int64_t *send_offsets, void *recv, const int64_t *recv_bytes,
                                          const int64_t *recv_offsets);
mc_status mc_comm_channel_allgatherv_start(mc_comm_channel *channel, const void *send, int64_t bytes, void *recv,
                                           const int64_t *recv_bytes, const int64_t *recv_offsets);
/* *done: the channel's collective has completed (true when none was started).
 * Calling it is also what moves the transfer on: MPI progresses a
 * non-blocking collective only inside MPI calls. */
mc_status mc_comm_channel_test(mc_comm_channel *channel, bool *done);
/* Whether a collective started on the channel has not been seen complete
 * (by _test or _wait): its buffers are still MPI's. */
bool mc_comm_channel_busy(const mc_comm_channel *channel);
mc_status mc_comm_channel_wait(mc_comm_channel *channel);
/* Tests only: at most `count` units in one transfer (0: MPI's INT_MAX), so
 * that the unit counting shows on transfers of a few bytes. No effect in a
 * world of one. */
void mc_comm_limit_count_for_testing(int count);
/* End every process of the job with exit code `code` (MPI_Abort); returns
 * only in a world of one. */
void mc_comm_abort(int code);

#endif

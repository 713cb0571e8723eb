/* The message layer under lib/dist: what MPI provides (comm_mpi.c), or its
 * stand-in for a world of one process (comm_single.c). Exactly one of the
 * two is compiled (CMake option MMCHAIN_MPI). Only data movement lives here;
 * every sum is taken in lib/dist/dist.c, in rank order.
 *
 * Sizes are in bytes. MPI counts are int: a transfer of more than INT_MAX
 * bytes is refused (MC_ERR_UNSUPPORTED) — callers cut large buffers into
 * rounds. */
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
/* End every process of the job with exit code `code` (MPI_Abort); returns
 * only in a world of one. */
void mc_comm_abort(int code);

#endif

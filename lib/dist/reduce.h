/* The pieces of lib/dist's rank-order all-reduce (dist.c), shared by the
 * blocking all-reduce and the gradient buckets (buckets.c), which run the
 * same two phases as non-blocking collectives:
 *
 *   1. reduce-scatter: rank k receives chunk k of every rank's buffer
 *      (alltoallv, laid out by mc_dist_scatter_table), and sums it in rank
 *      order (mc_dist_sum_received);
 *   2. all-gather of the summed chunks (allgatherv, mc_dist_gather_table).
 *
 * A buffer of n elements is cut into `world` chunks, chunk k holding
 * elements [n k / world, n (k+1) / world). Every element is summed once, by
 * one rank, in rank order: the result does not depend on how a buffer is
 * cut into rounds or buckets. */
#ifndef MMCHAIN_DIST_REDUCE_H
#define MMCHAIN_DIST_REDUCE_H

#include <stddef.h>
#include <stdint.h>

#include "mmchain/dist.h"

/* How many of n elements chunk `rank` holds. */
int64_t mc_dist_chunk_count(int64_t n, int rank, int world);
/* table (4, world): send bytes, send offsets, receive bytes, receive
 * offsets of phase 1 for n elements of `size` bytes. */
void mc_dist_scatter_table(int64_t n, size_t size, int64_t *table);
/* table (2, world): receive bytes and offsets of phase 2. */
void mc_dist_gather_table(int64_t n, size_t size, int64_t *table);
/* received (world, my_count) elements of `size` bytes (floats or doubles),
 * row k from rank k -> mine (my_count): the sum over rows in row order, in
 * double, divided by the world size for an average, rounded once. */
void mc_dist_sum_received(const void *received, int64_t my_count, size_t size, mc_dist_reduce op, void *mine);

#endif

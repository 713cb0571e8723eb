/* When a loop is worth splitting over threads (internal).
 *
 * Element-wise and row loops in lib/ run as `#pragma omp parallel for ...
 * if (work >= MC_PARALLEL_MIN_WORK)`, where work counts the floats the loop
 * touches. Below that a loop costs less than starting a team: a pass over
 * 32768 floats (128 KiB, within the L2 cache of one core) takes a few
 * microseconds, about what waking sleeping threads and meeting them at the
 * closing barrier costs. Tests and small models run thousands of such tiny
 * ops, which would otherwise spend their time in thread wake-ups. One value
 * for every loop: the point is the order of magnitude, not a per-loop tuning.
 * (The GEMM and attention count multiply-adds instead and keep their own
 * thresholds.) */
#ifndef MMCHAIN_CORE_PARALLEL_H
#define MMCHAIN_CORE_PARALLEL_H

#include <stdbool.h>
#include <stddef.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { MC_PARALLEL_MIN_WORK = 1 << 15 };

/* memset(memory, 0, bytes), a large block in parts over the threads, a
 * small one with a plain memset. Why: the gradients and arena memory that
 * must start as zeros are zeroed by the thread that walks the graph, and a
 * single memset there leaves the other threads waiting. (tensor.c) */
void mc_zero_parallel(void *memory, size_t bytes);

/* Whether the caller runs inside a parallel region, where a nested
 * `omp parallel` runs on the calling thread alone (under libgomp's default
 * of one active level, which the library does not change). */
static inline bool mc_inside_parallel_region(void) {
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return false;
#endif
}

#endif

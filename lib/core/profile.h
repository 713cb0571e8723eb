/* MMCHAIN_PROFILE=1: where a program's time goes, printed when it exits.
 *
 * With the variable set (to anything but "" or "0"), the library counts
 *   - every op recorded on a tape: calls, forward and backward wall time,
 *     and apart from them the forwards that backward runs again in
 *     recomputed segments (mc_recompute);
 *   - every matrix product by shape (M, N, K, transposes, batch, precision):
 *     calls, wall time, GFLOP/s;
 *   - the share of the AVX-512 GEMM's thread time spent packing operands;
 *   - the largest arena + gradient peak of any graph, and the process's
 *     peak resident memory,
 * and prints the tables on stderr at exit (atexit: a program that links the
 * library needs no call). Without it, every hook is one predictable branch
 * on mc_profile_enabled. Not part of the installed API: the hooks are
 * called by graph.c and the GEMM files; docs/architecture.md ("Environment
 * variables") describes the output. */
#ifndef MMCHAIN_CORE_PROFILE_H
#define MMCHAIN_CORE_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Read once, before main, from MMCHAIN_PROFILE. */
extern bool mc_profile_enabled;

/* A monotonic clock in nanoseconds. */
int64_t mc_profile_now_ns(void);

/* The hooks; call only when mc_profile_enabled. Thread-safe. */
void mc_profile_op_forward(const char *op, int64_t ns);
void mc_profile_op_backward(const char *op, int64_t ns);
/* A forward run again by backward in a recomputed segment. */
void mc_profile_op_recomputed(const char *op, int64_t ns);
/* One product: precision_name "fp32" or "bf16"; batch 1 for mc_gemm. */
void mc_profile_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t batch,
                     const char *precision_name, int64_t ns);
/* Thread time inside the AVX-512 kernel's blocked loops, and the part of it
 * spent packing A and B. */
void mc_profile_gemm_thread_time(int64_t total_ns, int64_t packing_ns);
/* A graph's arena + live gradients reached `bytes`. */
void mc_profile_graph_peak(size_t bytes);

#endif

/* mmchain — threads.
 *
 * One knob for the whole library: the number of threads used by our OpenMP
 * loops and by OpenBLAS. It is set before main() from MMCHAIN_THREADS, else
 * to the number of processors, in every program that links the library (no
 * call needed); mc_set_num_threads changes it later. Ops never call OpenBLAS
 * from inside an OpenMP parallel region, so the two pools never run at the
 * same time (no oversubscription). Every environment variable the library
 * reads is listed in docs/architecture.md, "Environment variables". */
#ifndef MMCHAIN_THREADS_H
#define MMCHAIN_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Set the thread count (n >= 1) for OpenMP and OpenBLAS. The OpenMP part
 * applies to parallel loops started from the calling thread (OpenMP keeps
 * the count per thread). */
void mc_set_num_threads(int n);
int mc_get_num_threads(void);
/* Read MMCHAIN_THREADS again (done once before main(); callable again). */
void mc_threads_init_from_env(void);
/* For programs (not called by the library itself): libgomp reads
 * OMP_WAIT_POLICY once, when it is loaded, before main(), and nothing can
 * change the policy afterwards. Its default lets idle threads spin, which
 * on a shared or oversubscribed machine starves the threads doing the work
 * (measured: a training step up to 20x slower), while passive waiting costs
 * microseconds per parallel loop. This sets OMP_WAIT_POLICY=PASSIVE and
 * re-executes the program (/proc/self/exe) with the same arguments, unless
 *   - the user chose (OMP_WAIT_POLICY or GOMP_SPINCOUNT is set),
 *   - the thread count is 1 (nothing ever waits), or
 *   - /proc/self/exe is not the file this code was loaded from: the program
 *     runs under valgrind, an emulator or the dynamic loader started by
 *     hand, where executing /proc/self/exe would fail or leave the wrapper.
 * It returns only when no re-execution happened (or exec failed: the
 * program then runs with libgomp's default policy). Wrappers that stay
 * across exec (perf, strace, mpirun, gdb) see the second start. Set
 * OMP_WAIT_POLICY yourself to avoid it. */
void mc_threads_reexec_with_passive_wait(char **argv);

/* The OpenBLAS kernel in use ("Haswell", "SkylakeX", ...). */
const char *mc_blas_core_name(void);

#ifdef __cplusplus
}
#endif
#endif

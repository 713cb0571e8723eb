/* mmchain — threads.
 *
 * One knob for the whole library: the number of threads used by our OpenMP
 * loops and by OpenBLAS. The default comes from MMCHAIN_THREADS, else from the
 * number of processors. Ops never call OpenBLAS from inside an OpenMP parallel
 * region, so the two pools never run at the same time (no oversubscription). */
#ifndef MMCHAIN_THREADS_H
#define MMCHAIN_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Set the thread count (n >= 1) for OpenMP and OpenBLAS. */
void mc_set_num_threads(int n);
int mc_get_num_threads(void);
/* Read MMCHAIN_THREADS (called once automatically; callable again). */
void mc_threads_init_from_env(void);
/* For programs (not called by the library itself): libgomp reads
 * OMP_WAIT_POLICY once, when it is loaded, before main(). Its default lets
 * idle threads spin, which on a shared or oversubscribed machine starves the
 * threads doing the work (measured: a training step up to 20x slower), while
 * passive waiting costs microseconds per parallel loop. Unless the user
 * chose a policy, this sets OMP_WAIT_POLICY=PASSIVE and re-executes the
 * program (/proc/self/exe) with the same arguments. It returns only when no
 * re-execution happened: the policy was already set, or exec failed (the
 * program then simply runs with the default policy). */
void mc_threads_reexec_with_passive_wait(char **argv);

/* The OpenBLAS kernel in use ("Haswell", "SkylakeX", ...). */
const char *mc_blas_core_name(void);

#ifdef __cplusplus
}
#endif
#endif

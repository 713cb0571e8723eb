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
/* The OpenBLAS kernel in use ("Haswell", "SkylakeX", ...). */
const char *mc_blas_core_name(void);

#ifdef __cplusplus
}
#endif
#endif

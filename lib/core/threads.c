/* One thread count for OpenMP loops and OpenBLAS. */
#include "mmchain/threads.h"

#include <stdlib.h>
#include <unistd.h>
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* OpenBLAS extensions (declared in its cblas.h, repeated for clarity). */
extern void openblas_set_num_threads(int num_threads);
extern char *openblas_get_corename(void);

static int thread_count = 0; /* 0: not yet initialised */

void mc_set_num_threads(int n) {
    if (n < 1) n = 1;
    thread_count = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

void mc_threads_init_from_env(void) {
    const char *env = getenv("MMCHAIN_THREADS");
    int n = env ? atoi(env) : 0;
    if (n < 1) {
#ifdef _OPENMP
        n = omp_get_num_procs();
#else
        n = 1;
#endif
    }
    mc_set_num_threads(n);
}

int mc_get_num_threads(void) {
    if (thread_count == 0) mc_threads_init_from_env();
    return thread_count;
}

const char *mc_blas_core_name(void) { return openblas_get_corename(); }

void mc_threads_reexec_with_passive_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    execv("/proc/self/exe", argv);
}

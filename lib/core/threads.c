/* One thread count for OpenMP loops and OpenBLAS, applied before main(). */
#include "mmchain/threads.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
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

/* Every program that links the library honours MMCHAIN_THREADS from its
 * first parallel loop, with no call: this runs before main(). Until it ran,
 * OpenMP loops took all processors, and a run asked to use one thread ran
 * its loops on all of them, with idle threads spinning in between.
 *
 * It is not static: the build links it in by name (--undefined, see
 * CMakeLists.txt and mmchain.pc), so a program gets it even when nothing
 * else it uses lives in this file. It runs after libgomp's and OpenBLAS's
 * own start-up code (a shared library is initialised before the program
 * that needs it), so both are ready to be told the count. */
__attribute__((constructor)) void mc_threads_startup(void) { mc_threads_init_from_env(); }

const char *mc_blas_core_name(void) { return openblas_get_corename(); }

/* True when /proc/self/exe is the file this code was loaded from. Under a
 * program that loads ours itself (valgrind, the dynamic loader started by
 * hand, an emulator) /proc/self/exe is that program, and executing it with
 * our arguments would fail or leave the wrapper: compare the file behind
 * /proc/self/exe with the one mapped at this function's address. */
static bool exe_is_this_program(void) {
    struct stat exe;
    if (stat("/proc/self/exe", &exe) != 0) return false;
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return false;
    const uintptr_t here = (uintptr_t)&exe_is_this_program;
    bool same = false;
    char line[4096];
    while (fgets(line, sizeof line, maps)) {
        uintptr_t low, high;
        unsigned int dev_major, dev_minor;
        unsigned long inode;
        /* "low-high perms offset major:minor inode path" */
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %*s %x:%x %lu", &low, &high, &dev_major,
                   &dev_minor, &inode) == 5 &&
            here >= low && here < high) {
            same = inode == (unsigned long)exe.st_ino && makedev(dev_major, dev_minor) == exe.st_dev;
            break;
        }
    }
    fclose(maps);
    return same;
}

void mc_threads_reexec_with_passive_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return; /* the user chose */
    if (mc_get_num_threads() < 2) return;                               /* nothing ever waits */
    if (!argv || !argv[0] || !exe_is_this_program()) return;            /* run by a wrapper */
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("OMP_WAIT_POLICY"); /* execv failed: carry on with libgomp's policy */
}

/* MMCHAIN_THREADS is honoured by any program that links the library, from
 * its first parallel loop, without a call to the threads API.
 *
 * The suite runs itself again as a child (the --child-report mode below)
 * under a chosen MMCHAIN_THREADS. The child calls nothing in threads.h: it
 * reads OpenMP's thread count at the top of main(), runs one op large
 * enough to be parallel, and reports how many threads of the process that
 * op started (from /proc/self/task, before and after). Counting the threads
 * the op added, rather than all of them, keeps the check independent of the
 * OpenBLAS flavour (the pthreads build starts its own pool at load time). */
#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "testutil.h"

/* Threads of this process now. */
static int count_tasks(void) {
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return -1;
    int count = 0;
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;)
        if (entry->d_name[0] != '.') count++;
    closedir(dir);
    return count;
}

/* The child: prints "max_threads M added T" and exits 0, or exits 1. */
static int child_report(void) {
#ifdef _OPENMP
    const int max_threads = omp_get_max_threads(); /* before any call into mmchain */
#else
    const int max_threads = 1;
#endif
    const int tasks_before = count_tasks();
    mc_graph *g = NULL;
    mc_tensor *x = NULL, *y = NULL;
    const int64_t n = 1 << 20; /* far above the size that runs on one thread */
    if (mc_graph_new(&g) != MC_OK || mc_tensor_new(&x, MC_SHAPE(n), "x") != MC_OK) return 1;
    for (int64_t i = 0; i < n; i++) x->data[i] = (float)(i % 7) - 3.0f;
    if (mc_relu(g, x, &y) != MC_OK) return 1;
    const int tasks_after = count_tasks();
    printf("max_threads %d added %d\n", max_threads, tasks_after - tasks_before);
    mc_tensor_free(x);
    mc_graph_free(g);
    return 0;
}

typedef struct child_result {
    int max_threads; /* OpenMP's thread count at the top of main() */
    int added;       /* threads the parallel op started */
} child_result;

/* Run this program as a child with MMCHAIN_THREADS=value (NULL: unset). */
static child_result run_child(const char *value) {
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert_msg(len > 0, "cannot read /proc/self/exe");
    self[len] = '\0';
    char command[4200];
    if (value) snprintf(command, sizeof command, "MMCHAIN_THREADS=%s '%s' --child-report", value, self);
    else snprintf(command, sizeof command, "env -u MMCHAIN_THREADS '%s' --child-report", self);
    FILE *child = popen(command, "r");
    ck_assert_msg(child != NULL, "cannot run %s", command);
    child_result result = {-1, -1};
    int fields = fscanf(child, "max_threads %d added %d", &result.max_threads, &result.added);
    int status = pclose(child);
    ck_assert_msg(fields == 2 && status == 0, "%s: exit status %d, %d fields read", command, status,
                  fields);
    return result;
}

START_TEST(one_thread_means_one_thread) {
    child_result r = run_child("1");
    ck_assert_msg(r.max_threads == 1, "MMCHAIN_THREADS=1: OpenMP would use %d threads", r.max_threads);
    ck_assert_msg(r.added == 0, "MMCHAIN_THREADS=1: a parallel op started %d threads", r.added);
}
END_TEST

/* 3 differs from the default on the usual 2- or 4-processor machines, so
 * this fails if the variable were ignored there. */
START_TEST(three_threads_means_three_threads) {
    child_result r = run_child("3");
    ck_assert_int_eq(r.max_threads, 3);
    ck_assert_int_eq(r.added, 2); /* two workers beside the main thread */
}
END_TEST

START_TEST(unset_means_all_processors) {
    child_result r = run_child(NULL);
#ifdef _OPENMP
    ck_assert_int_eq(r.max_threads, omp_get_num_procs());
#else
    ck_assert_int_eq(r.max_threads, 1);
#endif
}
END_TEST

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--child-report") == 0) return child_report();
    Suite *s = suite_create("threads");
    const TTest *const tests[] = {one_thread_means_one_thread, three_threads_means_three_threads,
                                  unset_means_all_processors, NULL};
    mc_test_add_case(s, "environment", tests);
    return mc_test_run_suite(s);
}

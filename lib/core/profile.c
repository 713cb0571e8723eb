/* MMCHAIN_PROFILE: counters behind one branch, printed at exit (profile.h). */
#include "core/profile.h"

#include "mmchain/autograd.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool mc_profile_enabled;

int64_t mc_profile_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the counters ---- */

typedef struct op_row {
    const char *op; /* the static name ops record with */
    int64_t forward_calls, backward_calls, recomputed_calls;
    int64_t forward_ns, backward_ns, recomputed_ns;
} op_row;

typedef struct gemm_row {
    bool trans_a, trans_b;
    int64_t M, N, K, batch;
    const char *precision;
    int64_t calls, ns;
} gemm_row;

/* Unbounded lists (a network has tens of ops and shapes; searched
 * linearly, only while profiling), under one lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static op_row *ops;
static int op_count, op_capacity;
static gemm_row *gemms;
static int gemm_count, gemm_capacity;
static atomic_llong gemm_thread_ns, gemm_packing_ns;
static size_t graph_peak_bytes;
static int64_t start_ns;
static bool out_of_memory; /* a row could not be added: say so at exit */
static bool reset_done;    /* mc_profile_reset ran: times count from it */

/* Grow *items (of `size` bytes each) to hold one more; false when it cannot. */
static bool make_room(void **items, int count, int *capacity, size_t size) {
    if (count < *capacity) return true;
    int grown = *capacity ? 2 * *capacity : 32;
    void *bigger = realloc(*items, (size_t)grown * size);
    if (!bigger) return false;
    *items = bigger;
    *capacity = grown;
    return true;
}

static op_row *find_op(const char *op) {
    for (int i = 0; i < op_count; i++)
        if (ops[i].op == op || strcmp(ops[i].op, op) == 0) return &ops[i];
    if (!make_room((void **)&ops, op_count, &op_capacity, sizeof *ops)) return NULL;
    ops[op_count] = (op_row){.op = op};
    return &ops[op_count++];
}

typedef enum { FORWARD, BACKWARD, RECOMPUTED } op_pass;

/* One call of `op` in one pass. */
static void count_op(const char *op, op_pass pass, int64_t ns) {
    pthread_mutex_lock(&lock);
    op_row *row = find_op(op);
    if (!row) out_of_memory = true;
    else if (pass == BACKWARD) row->backward_calls++, row->backward_ns += ns;
    else if (pass == RECOMPUTED) row->recomputed_calls++, row->recomputed_ns += ns;
    else row->forward_calls++, row->forward_ns += ns;
    pthread_mutex_unlock(&lock);
}

void mc_profile_op_forward(const char *op, int64_t ns) { count_op(op, FORWARD, ns); }
void mc_profile_op_backward(const char *op, int64_t ns) { count_op(op, BACKWARD, ns); }
void mc_profile_op_recomputed(const char *op, int64_t ns) { count_op(op, RECOMPUTED, ns); }

void mc_profile_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, int64_t batch,
                     const char *precision_name, int64_t ns) {
#ifdef _OPENMP
    /* A product that one thread of a team runs alone, while the others run
     * theirs (conv2d's chunks, strips and groups per thread, Winograd's
     * chunks, attention's items), counts its share of the team's elapsed
     * time: the times of all threads' products together then add up to
     * wall time, as a product split over the threads does, where every
     * thread of the team is busy; a thread left idle (fewer items than
     * threads) makes the table count less than the elapsed time. */
    if (omp_in_parallel()) ns /= omp_get_num_threads();
#endif
    pthread_mutex_lock(&lock);
    gemm_row *row = NULL;
    for (int i = 0; i < gemm_count && !row; i++) {
        gemm_row *r = &gemms[i];
        if (r->M == M && r->N == N && r->K == K && r->batch == batch && r->trans_a == trans_a &&
            r->trans_b == trans_b && strcmp(r->precision, precision_name) == 0)
            row = r;
    }
    if (!row && make_room((void **)&gemms, gemm_count, &gemm_capacity, sizeof *gemms)) {
        row = &gemms[gemm_count++];
        *row = (gemm_row){trans_a, trans_b, M, N, K, batch, precision_name, 0, 0};
    }
    if (row) row->calls++, row->ns += ns;
    else out_of_memory = true;
    pthread_mutex_unlock(&lock);
}

void mc_profile_gemm_thread_time(int64_t total_ns, int64_t packing_ns) {
    atomic_fetch_add(&gemm_thread_ns, total_ns);
    atomic_fetch_add(&gemm_packing_ns, packing_ns);
}

void mc_profile_graph_peak(size_t bytes) {
    pthread_mutex_lock(&lock);
    if (bytes > graph_peak_bytes) graph_peak_bytes = bytes;
    pthread_mutex_unlock(&lock);
}

void mc_profile_reset(void) {
    if (!mc_profile_enabled) return;
    pthread_mutex_lock(&lock);
    /* Empty the lists, keep their memory (names are static strings). */
    op_count = 0;
    gemm_count = 0;
    atomic_store(&gemm_thread_ns, 0);
    atomic_store(&gemm_packing_ns, 0);
    start_ns = mc_profile_now_ns();
    reset_done = true;
    pthread_mutex_unlock(&lock);
}

/* ---- the report ---- */

static int64_t op_ns(const op_row *r) { return r->forward_ns + r->backward_ns + r->recomputed_ns; }

static int by_op_time(const void *a, const void *b) {
    const op_row *x = a, *y = b;
    int64_t tx = op_ns(x), ty = op_ns(y);
    return tx < ty ? 1 : tx > ty ? -1 : strcmp(x->op, y->op);
}

static int by_gemm_time(const void *a, const void *b) {
    const gemm_row *x = a, *y = b;
    return x->ns < y->ns ? 1 : x->ns > y->ns ? -1 : 0;
}

static double seconds(int64_t ns) { return (double)ns * 1e-9; }
static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

static double gflops(double flops, int64_t ns) { return ns > 0 ? flops / (double)ns : 0.0; }

static double gemm_flops(const gemm_row *r) {
    return 2.0 * (double)r->M * (double)r->N * (double)r->K * (double)r->batch * (double)r->calls;
}

enum { GEMM_ROWS_SHOWN = 40 };

static void print_report(void) {
    pthread_mutex_lock(&lock);
    FILE *out = stderr;
    fprintf(out,
            "\nmmchain profile (MMCHAIN_PROFILE=1): %.3f s from %s to exit, peak resident "
            "memory %.1f MiB, largest graph peak (arena + gradients) %.1f MiB\n",
            seconds(mc_profile_now_ns() - start_ns),
            reset_done ? "the last mc_profile_reset" : "start", mib(mc_peak_rss_bytes()),
            mib(graph_peak_bytes));

    qsort(ops, (size_t)op_count, sizeof *ops, by_op_time);
    int64_t op_total = 0;
    for (int i = 0; i < op_count; i++) op_total += op_ns(&ops[i]);
    fprintf(out, "\nops recorded on a tape, wall time (forward: from the op's first arena "
                 "allocation to its recording; backward: its backward function, less the ops "
                 "it runs that have rows of their own; recomputed: the forward again, run by "
                 "the backward of a recomputed segment)\n"
                 "| op | forward calls | forward s | backward calls | backward s | recomputed calls "
                 "| recomputed s | share |\n"
                 "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    op_row all = {.op = "all ops"};
    for (int i = 0; i < op_count; i++) {
        const op_row *r = &ops[i];
        fprintf(out, "| %s | %lld | %.3f | %lld | %.3f | %lld | %.3f | %.1f %% |\n", r->op,
                (long long)r->forward_calls, seconds(r->forward_ns), (long long)r->backward_calls,
                seconds(r->backward_ns), (long long)r->recomputed_calls, seconds(r->recomputed_ns),
                op_total ? 100.0 * (double)op_ns(r) / (double)op_total : 0.0);
        all.forward_calls += r->forward_calls, all.backward_calls += r->backward_calls;
        all.recomputed_calls += r->recomputed_calls;
        all.forward_ns += r->forward_ns, all.backward_ns += r->backward_ns;
        all.recomputed_ns += r->recomputed_ns;
    }
    fprintf(out, "| all ops | %lld | %.3f | %lld | %.3f | %lld | %.3f | 100.0 %% |\n",
            (long long)all.forward_calls, seconds(all.forward_ns), (long long)all.backward_calls,
            seconds(all.backward_ns), (long long)all.recomputed_calls, seconds(all.recomputed_ns));

    qsort(gemms, (size_t)gemm_count, sizeof *gemms, by_gemm_time);
    fprintf(out, "\nmatrix products by shape, wall time (C: M x N, inner dimension K; "
                 "A, B: N = as stored, T = transposed; batch: products per call)\n"
                 "| M | N | K | A B | batch | precision | calls | s | GFLOP/s |\n"
                 "|---:|---:|---:|---|---:|---|---:|---:|---:|\n");
    int64_t all_calls = 0, all_ns = 0, rest_calls = 0, rest_ns = 0;
    double all_flops = 0.0, rest_flops = 0.0;
    for (int i = 0; i < gemm_count; i++) {
        const gemm_row *r = &gemms[i];
        double flops = gemm_flops(r);
        all_calls += r->calls, all_ns += r->ns, all_flops += flops;
        if (i >= GEMM_ROWS_SHOWN) {
            rest_calls += r->calls, rest_ns += r->ns, rest_flops += flops;
            continue;
        }
        fprintf(out, "| %lld | %lld | %lld | %c %c | %lld | %s | %lld | %.3f | %.1f |\n",
                (long long)r->M, (long long)r->N, (long long)r->K, r->trans_a ? 'T' : 'N',
                r->trans_b ? 'T' : 'N', (long long)r->batch, r->precision, (long long)r->calls,
                seconds(r->ns), gflops(flops, r->ns));
    }
    if (gemm_count > GEMM_ROWS_SHOWN)
        fprintf(out, "| %d more shapes | | | | | | %lld | %.3f | %.1f |\n",
                gemm_count - GEMM_ROWS_SHOWN, (long long)rest_calls, seconds(rest_ns),
                gflops(rest_flops, rest_ns));
    fprintf(out, "| all products | | | | | | %lld | %.3f | %.1f |\n", (long long)all_calls,
            seconds(all_ns), gflops(all_flops, all_ns));

    long long thread_ns = atomic_load(&gemm_thread_ns), packing_ns = atomic_load(&gemm_packing_ns);
    if (thread_ns > 0)
        fprintf(out, "\npacking: %.1f %% of the AVX-512 GEMM's thread time (%.3f of %.3f thread-s)\n",
                100.0 * (double)packing_ns / (double)thread_ns, seconds(packing_ns),
                seconds(thread_ns));
    else
        fprintf(out, "\npacking: no product ran on the AVX-512 GEMM (OpenBLAS packs internally)\n");
    if (out_of_memory) fprintf(out, "(some rows are missing: out of memory while profiling)\n");
    pthread_mutex_unlock(&lock);
}

/* Before main: read the variable, and arrange the report. */
__attribute__((constructor)) static void profile_init(void) {
    const char *env = getenv("MMCHAIN_PROFILE");
    if (!env || !*env || strcmp(env, "0") == 0) return;
    start_ns = mc_profile_now_ns();
    if (atexit(print_report) != 0) {
        fprintf(stderr, "mmchain: MMCHAIN_PROFILE: cannot register the report; profiling is off\n");
        return;
    }
    mc_profile_enabled = true;
}

/* Helpers shared by the benchmark programs (header-only: each bench/<dir>/
 * is its own program, built from its own folder): clocks, medians, and the
 * PyTorch peer run as a child process whose output is "row value" lines
 * plus one "torch <version> ..." line. */
#ifndef MMCHAIN_BENCH_COMMON_H
#define MMCHAIN_BENCH_COMMON_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mmchain/clip.h"

/* ---- failing ----
 * CHECK(expr): a library call that must succeed. On failure it calls
 * die(the call's text), which each program defines before its first CHECK:
 * die reports the call and mc_last_error() and exits (bench_dist also stops
 * the other ranks). */
#define CHECK(expr)                      \
    do {                                 \
        if ((expr) != MC_OK) die(#expr); \
    } while (0)

/* ---- timing ---- */

static inline double bench_clock_seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wall-clock seconds since an arbitrary start. */
static inline double bench_now_seconds(void) { return bench_clock_seconds(CLOCK_MONOTONIC); }

static inline int bench_compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sort values[0..n) ascending, in place. */
static inline void bench_sort(double *values, int n) {
    qsort(values, (size_t)n, sizeof *values, bench_compare_doubles);
}

/* The median of values[0..n) (sorts them; the mean of the middle two for even n). */
static inline double bench_median(double *values, int n) {
    bench_sort(values, n);
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

/* ---- the PyTorch peer ---- */

/* One "row value" line of the peer's output. */
typedef struct bench_peer_row {
    char row[32];
    double value;
} bench_peer_row;

/* Run `command`, collect up to `capacity` rows and the "torch ..." line
 * (into version, cut to version_len - 1 bytes). Returns the rows read; 0
 * (with a warning on stderr) when the peer could not run. */
static inline int bench_run_peer(const char *command, bench_peer_row *rows, int capacity, char *version,
                                 size_t version_len) {
    version[0] = '\0';
    FILE *pipe = popen(command, "r");
    if (!pipe) return 0;
    int n = 0;
    char line[512];
    while (fgets(line, sizeof line, pipe)) {
        if (strncmp(line, "torch ", 6) == 0) {
            size_t len = strcspn(line, "\n");
            if (len >= version_len) len = version_len - 1;
            memcpy(version, line, len);
            version[len] = '\0';
        } else if (n < capacity && sscanf(line, "%31s %lf", rows[n].row, &rows[n].value) == 2) {
            n++;
        }
    }
    if (pclose(pipe) != 0) fprintf(stderr, "warning: the PyTorch peer failed (%s)\n", command);
    return n;
}

/* The value of `row` in the peer's output, 0 when it has none. */
static inline double bench_peer_value(const bench_peer_row *rows, int n, const char *row) {
    for (int i = 0; i < n; i++)
        if (strcmp(rows[i].row, row) == 0) return rows[i].value;
    return 0.0;
}

/* CLIP ViT-B/32's sizes (OpenAI's release), for benchmarks with random
 * weights: speed does not depend on them. */
static inline mc_clip_config bench_clip_vit_b32(void) {
    mc_clip_config config = {
        .has_vision = true, .has_text = true, .embed_dim = 512,
        .vision = {.width = 768, .layers = 12, .heads = 12, .mlp_width = 3072, .patch = 32, .image_size = 224},
        .text = {.width = 512, .layers = 12, .heads = 8, .mlp_width = 2048, .context = 77, .vocab = 49408},
    };
    return config;
}

/* This program's own path (to run itself as a child for one row) into
 * self; false (with a message naming `program`) when /proc/self/exe cannot
 * be read. */
static inline bool bench_self_path(const char *program, char *self, size_t self_len) {
    ssize_t len = readlink("/proc/self/exe", self, self_len - 1);
    if (len <= 0) {
        fprintf(stderr, "%s: cannot find its own executable\n", program);
        return false;
    }
    self[len] = '\0';
    return true;
}

/* ---- the conditions a table needs ---- */

/* /proc/cpuinfo's first "model name" into cpu (cpu_len bytes), "unknown"
 * where there is none. */
static inline void bench_cpu_model(char *cpu, size_t cpu_len) {
    snprintf(cpu, cpu_len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            const char *colon = strchr(line, ':');
            snprintf(cpu, cpu_len, "%s", colon ? colon + 2 : line);
            cpu[strcspn(cpu, "\n")] = '\0';
            break;
        }
    fclose(f);
}

/* The source tree's commit (`git describe --always --dirty` in
 * MMCHAIN_SOURCE_DIR, else the working directory) into commit, "unknown"
 * when git or the repository is absent. */
static inline void bench_commit(char *commit, size_t commit_len) {
    const char *source = getenv("MMCHAIN_SOURCE_DIR");
    char command[1200];
    snprintf(command, sizeof command, "git -C '%s' describe --always --dirty 2>/dev/null",
             source ? source : ".");
    snprintf(commit, commit_len, "unknown");
    FILE *pipe = popen(command, "r");
    if (!pipe) return;
    char line[128];
    if (fgets(line, sizeof line, pipe) && line[0] != '\n') {
        line[strcspn(line, "\n")] = '\0';
        snprintf(commit, commit_len, "%s", line);
    }
    pclose(pipe);
}

/* ---- fraction of peak ----
 * One core's fp32 peak, GFLOP/s, that the tables' fractions of peak divide
 * by: two 512-bit FMA pipes x 16 lanes x 2 FLOP x ~3.75 GHz = 240 on the
 * machine the tables are measured on. MMCHAIN_BENCH_PEAK_GFLOPS replaces
 * it for another CPU. bf16 products (vdpbf16ps: two products per lane) can
 * reach twice it, so a bf16 row may print more than 100 %. */
static inline double bench_peak_gflops_per_thread(void) {
    const char *text = getenv("MMCHAIN_BENCH_PEAK_GFLOPS");
    double value = text ? atof(text) : 0.0;
    return value > 0.0 ? value : 240.0;
}

#endif

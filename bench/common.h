/* Helpers shared by the benchmark programs (header-only: each bench/<dir>/
 * is its own program, built from its own folder): clocks, medians, and the
 * PyTorch peer run as a child process whose output is "row value" lines
 * plus one "torch <version> ..." line. */
#ifndef MMCHAIN_BENCH_COMMON_H
#define MMCHAIN_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#endif

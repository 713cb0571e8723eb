/* mmchain — running like a real training program: a progress line, a run
 * folder (config.json, metrics.csv, log.txt, checkpoints/), report.html and
 * a contact sheet of tiles.
 *
 *     mc_run *run;
 *     MC_TRY(mc_run_open(&run, "runs/demo", resume));
 *     mc_run_set_quiet(run, quiet);
 *     mc_metadata_entry cfg[] = {{"lr", "1e-4"}, {"batch", "100"}, {"seed", "7"}};
 *     MC_TRY(mc_run_write_config(run, 3, cfg));
 *
 *     mc_progress bar;
 *     mc_progress_begin(&bar, "train", steps_total, quiet);
 *     for (...) {
 *         mc_progress_update(&bar, epoch, step, loss, items_done);
 *         const char *cols[] = {"epoch", "step", "loss"};
 *         double vals[] = {epoch, step, loss};
 *         MC_TRY(mc_run_metrics_row(run, "step", cols, vals, 3));
 *     }
 *     mc_progress_end(&bar, "epoch 3 done");
 *     mc_run_log(run, "best spectral->text accuracy %.3f", best);
 *     MC_TRY(mc_run_write_report(run, &extra));   // plots from metrics.csv + extra
 *     mc_run_close(run);
 */
#ifndef MMCHAIN_RUN_H
#define MMCHAIN_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "io.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- progress ----------------------------------------------------------
 * On a terminal: one line rewritten in place with '\r':
 *     train  epoch 2  step 130/400  loss 1.2345  812.3 items/s  ETA 0:41
 * Not a terminal (a log file, a pipe): the same text as a plain line, at
 * most once every `every_steps` steps or `every_seconds` seconds (whichever
 * comes first), plus the final step. Nothing at all when quiet. */

typedef double (*mc_clock_fn)(void *ctx); /* seconds, monotonic */

typedef enum mc_progress_mode {
    MC_PROGRESS_AUTO = 0, /* in place when isatty(fileno(out)), else plain lines */
    MC_PROGRESS_TERMINAL, /* in place with '\r' */
    MC_PROGRESS_PLAIN     /* plain lines */
} mc_progress_mode;

typedef struct mc_progress_options { /* zero = every default */
    FILE *out;            /* default stderr */
    mc_progress_mode mode;
    mc_clock_fn clock;    /* default: CLOCK_MONOTONIC */
    void *clock_ctx;
    int64_t every_steps;  /* plain mode: print every N steps (default 50) */
    double every_seconds; /* plain mode: or every S seconds (default 10) */
} mc_progress_options;

typedef struct mc_progress {
    char label[48];
    FILE *out;
    bool quiet, terminal;
    mc_clock_fn clock;
    void *clock_ctx;
    int64_t total_steps, every_steps;
    double every_seconds;
    double start_time;      /* clock at mc_progress_begin */
    double last_print_time;
    int64_t base_step;      /* the step before the first update (0, or where a resume began) */
    int64_t last_print_step;
    int line_len;           /* length of the last in-place line (to blank it) */
    bool started;           /* at least one update seen */
    bool line_open;         /* an in-place line is on screen without its newline */
} mc_progress;

/* Start a progress display with the defaults (stderr, isatty, monotonic clock). */
void mc_progress_begin(mc_progress *p, const char *label, int64_t total_steps, bool quiet);
/* The same with options (opt may be NULL = defaults); tests use it to capture
 * output into a memstream and to inject a fake clock. */
void mc_progress_begin_with(mc_progress *p, const char *label, int64_t total_steps, bool quiet,
                            const mc_progress_options *opt);
/* Report that `step` (1-based, counted across epochs, <= total_steps) has
 * finished with this loss; items_done counts the items (images, pairs)
 * processed since mc_progress_begin, for the throughput. A resumed run may
 * start at any step: the ETA uses the steps done since the first update. */
void mc_progress_update(mc_progress *p, int epoch, int64_t step, double loss, int64_t items_done);
/* Finish the line (newline on a terminal) and print `summary` (may be NULL). */
void mc_progress_end(mc_progress *p, const char *summary);
/* The status text for the current state, e.g. for a log line. */
void mc_progress_format(const mc_progress *p, int epoch, int64_t step, double loss,
                        int64_t items_done, double now, char *buf, size_t len);

/* ---- run folder ---------------------------------------------------------
 *   DIR/config.json        every flag and default, plus mmchain_version,
 *                          created (UTC date), threads, blas
 *   DIR/metrics.csv        "kind" + the union of all columns ever written;
 *                          a row leaves the others' cells empty
 *   DIR/log.txt            timestamped lines of mc_run_log
 *   DIR/checkpoints/       created for the caller (last/best.safetensors)
 *   DIR/report.html        mc_run_write_report */

typedef struct mc_run mc_run;

/* Create `dir` (and its parents) and dir/checkpoints. resume = false: a
 * fresh run (an existing metrics.csv / log.txt is replaced); resume = true:
 * the folder must exist with a config.json, metrics and log are appended
 * to, and temporary files left by a write that was killed are removed.
 * An unwritable folder is MC_ERR_IO naming it. */
mc_status mc_run_open(mc_run **out, const char *dir, bool resume);
void mc_run_close(mc_run *run);
/* quiet: mc_run_log writes only to log.txt, not to stdout. */
void mc_run_set_quiet(mc_run *run, bool quiet);
const char *mc_run_dir(const mc_run *run);
bool mc_run_resumed(const mc_run *run);

/* Write DIR/config.json atomically: the caller's n key/value pairs (every
 * flag with its value or default, the seed, ...) and ours. Values that look
 * like numbers / true / false are written as JSON numbers / booleans. */
mc_status mc_run_write_config(mc_run *run, int n, const mc_metadata_entry *kv);
/* Read back a value of DIR/config.json into buf (MC_ERR_ARG when absent):
 * resume uses it to check the same flags. */
mc_status mc_run_config_get(const mc_run *run, const char *key, char *buf, size_t len);

/* Append one row of `kind` ("step", "epoch", "eval", ...) to metrics.csv.
 * New column names extend the header (the file is rewritten atomically
 * once); NaN is written as "nan". */
mc_status mc_run_metrics_row(mc_run *run, const char *kind, const char *const *columns,
                             const double *values, int n);
/* On resume: drop the rows whose `column` is greater than `limit` (rows
 * logged after the checkpoint the run resumes from), so that metrics.csv
 * matches an uninterrupted run. Rows without that column are kept. */
mc_status mc_run_metrics_drop_after(mc_run *run, const char *column, double limit);

/* Append a line to log.txt (with a timestamp) and print it to stdout unless
 * quiet. A trailing newline in fmt is optional. */
mc_status mc_run_log(mc_run *run, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* buf = DIR/relative (MC_ERR_ARG when it does not fit). */
mc_status mc_run_path(const mc_run *run, const char *relative, char *buf, size_t len);

/* ---- report.html ---------------------------------------------------------
 * One self-contained HTML file: inline CSS, inline SVG plots, no script, no
 * network; images embedded as base64 data URIs. Every array is borrowed. */

#define MC_REPORT_MAX_SERIES 6

/* A line plot's geometry in SVG pixels: the plotting area spans x from
 * MC_PLOT_LEFT to MC_PLOT_WIDTH - MC_PLOT_RIGHT and y from MC_PLOT_TOP
 * (the axis maximum) down to MC_PLOT_HEIGHT - MC_PLOT_BOTTOM (the minimum).
 * Each axis covers the data rounded out to "nice" ticks: multiples of
 * 1, 2 or 5 x 10^k, about 5 of them. Points are written with one decimal. */
enum {
    MC_PLOT_WIDTH = 520,
    MC_PLOT_HEIGHT = 320,
    MC_PLOT_LEFT = 64,
    MC_PLOT_RIGHT = 16,
    MC_PLOT_TOP = 44,
    MC_PLOT_BOTTOM = 48
};

typedef struct mc_report_series {
    const char *name;
    int n;            /* points */
    const double *x;  /* (n) */
    const double *y;  /* (n); NaN points are skipped */
} mc_report_series;

typedef struct mc_report_plot {
    const char *title, *x_label, *y_label;
    int n_series; /* <= MC_REPORT_MAX_SERIES */
    mc_report_series series[MC_REPORT_MAX_SERIES];
    double y_lo, y_hi; /* a fixed y range when y_lo < y_hi (0, 1 for accuracies); else from the data */
} mc_report_plot;

typedef struct mc_report_confusion {
    const char *title;
    int k;                          /* classes */
    const char *const *class_names; /* (k) */
    const int64_t *counts;          /* (k, k): row = true class, column = predicted */
} mc_report_confusion;

typedef struct mc_report_bars {
    const char *title;
    int n;
    const char *const *names; /* (n) */
    const double *values;     /* (n), accuracies in [0, 1] */
} mc_report_bars;

typedef struct mc_report_image {
    const char *path;    /* a PNG file, embedded */
    const char *caption;
} mc_report_image;

typedef struct mc_report {
    const char *title;
    int n_summary;
    const mc_metadata_entry *summary; /* key / value rows of the summary table */
    int n_plots;
    const mc_report_plot *plots;
    int n_confusions;
    const mc_report_confusion *confusions;
    int n_bars;
    const mc_report_bars *bars;
    int n_images;
    const mc_report_image *images;
} mc_report;

/* Write the report to `path` atomically. */
mc_status mc_report_write(const char *path, const mc_report *report);
/* The report with plots made from a metrics.csv (as written by
 * mc_run_metrics_row; absent file = no plots) followed by everything in
 * `extra` (may be NULL): "step" rows give loss-over-steps plots, "epoch"
 * rows one plot of their *loss* columns and one of their *acc* columns
 * (on a 0..1 axis) against the epoch. Used by `mmchain eval` to re-render a run. */
mc_status mc_report_write_with_metrics(const char *path, const char *metrics_csv,
                                       const mc_report *extra);
/* mc_report_write_with_metrics(DIR/report.html, DIR/metrics.csv, extra). */
mc_status mc_run_write_report(mc_run *run, const mc_report *extra);

/* RFC 4648 base64 of len bytes into a malloc'd NUL-terminated string. */
mc_status mc_base64_encode(const void *data, size_t len, char **out);

/* ---- contact sheets and a tiny drawing canvas ------------------------------
 * A canvas is an RGB image (3, height, width) in [0, 1] (image.h's layout,
 * what mc_png_write takes) with a built-in 5x7 bitmap font (capitals,
 * digits, a little punctuation; lower case is drawn as capitals). */

typedef struct mc_canvas {
    mc_tensor *image; /* (3, height, width) */
    int height, width;
} mc_canvas;

mc_status mc_canvas_new(mc_canvas *cv, int height, int width, float background);
void mc_canvas_free(mc_canvas *cv);
/* Pixels outside the canvas are ignored. */
void mc_canvas_put_pixel(mc_canvas *cv, int y, int x, const float rgb[3]);
/* `text` with its top-left corner at (y, x), at most max_chars characters,
 * each glyph 6 * scale pixels wide and 7 * scale high. */
void mc_canvas_draw_text(mc_canvas *cv, int y, int x, const char *text, int max_chars, int scale,
                         const float rgb[3]);
/* Copy an RGB image (3, h, w), clamped to [0, 1], with its top-left at (y, x). */
void mc_canvas_blit(mc_canvas *cv, int y, int x, const mc_tensor *image);

/* A PNG grid of tiles with a caption under each (e.g. "pred river / true lake").
 *   tiles: (N, 3, H, W) RGB in [0, 1]; captions: (N) strings (or NULL: none);
 *   columns: tiles per row; scale: integer pixel zoom >= 1. Written atomically. */
mc_status mc_contact_sheet_write(const char *path, const mc_tensor *tiles,
                                 const char *const *captions, int columns, int scale);

#ifdef __cplusplus
}
#endif
#endif

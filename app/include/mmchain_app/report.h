/* mmchain's application layer — report.html and contact sheets.
 *
 * A report is one self-contained HTML page (summary table, line plots from a
 * run's metrics.csv, confusion matrices, accuracy bars, embedded PNGs); a
 * contact sheet is a PNG grid of tiles with captions, drawn on a small canvas
 * with a built-in bitmap font.
 *
 *     mc_report extra = {.title = "demo", .n_images = 1, .images = &sheet};
 *     MC_TRY(mc_run_write_report(run, &extra));   // plots from metrics.csv + extra
 */
#ifndef MMCHAIN_APP_REPORT_H
#define MMCHAIN_APP_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "mmchain/error.h"
#include "mmchain/io.h"
#include "mmchain/tensor.h"
#include "mmchain_app/run.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- report.html ---------------------------------------------------------
 * One self-contained HTML file: inline CSS, inline SVG plots, no script, no
 * network; images embedded as base64 data URIs. Every array is borrowed. */

#define MC_REPORT_MAX_SERIES 6

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

/* A chain of encoders as a diagram: boxes left to right (e.g. the student,
 * its teacher, CLIP's image tower, CLIP's text tower), an arrow between
 * neighbours labelled with what was measured across it and its accuracy,
 * and under each box its own zero-shot accuracy against the text. */
typedef struct mc_report_chain {
    const char *title;
    int n;                      /* boxes, 2..MC_REPORT_MAX_CHAIN */
    const char *const *nodes;   /* (n) box labels */
    const char *const *links;   /* (n - 1) what arrow i (box i -> i + 1) measures ("matching") */
    const double *link_acc;     /* (n - 1) its accuracy in [0, 1]; NaN = not measured */
    const double *text_acc;     /* (n) box i's zero-shot accuracy -> text; NaN = none (may be NULL) */
} mc_report_chain;

#define MC_REPORT_MAX_CHAIN 8

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
    int n_chains;
    const mc_report_chain *chains; /* drawn after the summary */
} mc_report;

/* Write the report to `path` atomically. */
mc_status mc_report_write(const char *path, const mc_report *report);
/* A fraction as "71.3 %" into buf, or "-" for a value not measured (NaN:
 * a control that was not run); returns buf. */
const char *mc_report_percent(double fraction, char *buf, size_t len);
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

/* Internal helpers of the application layer shared by run.c (metrics.csv,
 * config.json), metrics.c, report.c (plots from metrics.csv) and svg.c. Not
 * part of any public header. */
#ifndef MMCHAIN_APP_RUN_INTERNAL_H
#define MMCHAIN_APP_RUN_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

#include "mmchain/error.h"
#include "mmchain_app/report.h"

/* The whole file as a malloc'd NUL-terminated string. A missing file is
 * MC_ERR_IO; *len (may be NULL) gets the length. */
mc_status mc_read_text_file(const char *path, char **text, size_t *len);

/* Split `line` (modified in place) at commas into at most max_cells cells;
 * returns the number of cells. metrics.csv never quotes: its names are
 * checked to hold no comma, quote or newline, and its cells are numbers. */
int mc_csv_split(char *line, char **cells, int max_cells);

/* A parsed metrics.csv: "kind" plus numeric columns; empty cells are NaN. */
typedef struct mc_metrics_table {
    int n_columns;
    char **columns;  /* (n_columns), without "kind" */
    int n_rows;
    char **kinds;    /* (n_rows) */
    double *values;  /* (n_rows, n_columns) */
} mc_metrics_table;

mc_status mc_metrics_read(const char *path, mc_metrics_table *table);
void mc_metrics_free(mc_metrics_table *table);
/* The index of a column, or -1. */
int mc_metrics_column(const mc_metrics_table *table, const char *name);

/* ---- svg.c: HTML-safe text and inline SVG charts ---- */

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

/* `s` with & < > " ' as character references. */
void mc_html_escape(FILE *f, const char *s);
/* A line plot (mc_report_plot) as an <svg> element. */
void mc_svg_line_plot(FILE *f, const mc_report_plot *plot);
/* Horizontal bars, one per name, values in [0, 1] shown as percentages. */
void mc_svg_bars(FILE *f, const mc_report_bars *bars);

#endif

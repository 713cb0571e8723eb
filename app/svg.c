/* Inline SVG charts for report.html: line plots with axes, ticks, grid and
 * a legend, and horizontal bar charts. Pure text output, no script.
 *
 * A line plot maps data to pixels linearly:
 *     px = LEFT + (x - x_lo) / (x_hi - x_lo) * (WIDTH - LEFT - RIGHT)
 *     py = (HEIGHT - BOTTOM) - (y - y_lo) / (y_hi - y_lo) * (HEIGHT - BOTTOM - TOP)
 * where [x_lo, x_hi] and [y_lo, y_hi] are the data ranges rounded out to
 * "nice" tick steps (1, 2 or 5 x 10^k, Heckbert, "Nice numbers for graph
 * labels", Graphics Gems, 1990). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "run_internal.h"

/* Colour-blind-friendly series colours (the Tableau 10 palette). */
static const char *const SERIES_COLOURS[MC_REPORT_MAX_SERIES] = {"#4e79a7", "#f28e2b", "#e15759",
                                                                 "#59a14f", "#b07aa1", "#76b7b2"};

void mc_html_escape(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* The <svg> element's opening tag and the chart's title. */
static void open_svg(FILE *f, const char *css_class, int width, int height, const char *title) {
    fprintf(f, "<svg class=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" role=\"img\">\n",
            css_class, width, height, width, height);
    fputs("<text class=\"title\" x=\"8\" y=\"16\">", f);
    mc_html_escape(f, title);
    fputs("</text>\n", f);
}

/* ---- axes ---- */

typedef struct axis {
    double lo, hi, step; /* the rounded-out range and the tick step */
} axis;

/* Round [lo, hi] out to multiples of a nice step giving about 5 ticks. */
static axis nice_axis(double lo, double hi) {
    if (!(hi - lo > 1e-12 * fmax(1.0, fabs(hi)))) { /* one value: give it some room */
        double room = lo != 0 ? fabs(lo) * 0.1 : 1.0;
        lo -= room;
        hi += room;
    }
    double raw = (hi - lo) / 5;
    double magnitude = pow(10, floor(log10(raw)));
    double f = raw / magnitude;
    double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * magnitude;
    /* The epsilon keeps 1.0 / 0.2 = 5.0000000001 from adding a tick. */
    axis a = {floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step};
    return a;
}

/* The finite data range of all series; false when there is no finite point. */
static bool data_range(const mc_report_plot *plot, double *x_lo, double *x_hi, double *y_lo, double *y_hi) {
    bool any = false;
    for (int s = 0; s < plot->n_series; s++) {
        const mc_report_series *series = &plot->series[s];
        for (int i = 0; i < series->n; i++) {
            double x = series->x[i], y = series->y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            if (!any) {
                *x_lo = *x_hi = x;
                *y_lo = *y_hi = y;
                any = true;
            }
            *x_lo = fmin(*x_lo, x);
            *x_hi = fmax(*x_hi, x);
            *y_lo = fmin(*y_lo, y);
            *y_hi = fmax(*y_hi, y);
        }
    }
    return any;
}

typedef struct plot_frame {
    axis x, y;
    double left, right, top, bottom; /* the plotting area in pixels */
} plot_frame;

static double to_px(const plot_frame *fr, double x) {
    return fr->left + (x - fr->x.lo) / (fr->x.hi - fr->x.lo) * (fr->right - fr->left);
}

static double to_py(const plot_frame *fr, double y) {
    return fr->bottom - (y - fr->y.lo) / (fr->y.hi - fr->y.lo) * (fr->bottom - fr->top);
}

/* A tick label: "%g" of the value, with -0 printed as 0. */
static void put_tick_label(FILE *f, double v, double step) {
    if (fabs(v) < 1e-9 * step) v = 0;
    fprintf(f, "%g", v);
}

/* Grid lines, tick labels and the two axes. */
static void draw_axes(FILE *f, const plot_frame *fr, const mc_report_plot *plot) {
    for (int i = 0; fr->x.lo + i * fr->x.step <= fr->x.hi + 1e-9 * fr->x.step; i++) {
        double v = fr->x.lo + i * fr->x.step, px = to_px(fr, v);
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", px, fr->top, px,
                fr->bottom);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", px, fr->bottom + 16);
        put_tick_label(f, v, fr->x.step);
        fputs("</text>\n", f);
    }
    for (int i = 0; fr->y.lo + i * fr->y.step <= fr->y.hi + 1e-9 * fr->y.step; i++) {
        double v = fr->y.lo + i * fr->y.step, py = to_py(fr, v);
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", fr->left, py, fr->right,
                py);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", fr->left - 6, py + 4);
        put_tick_label(f, v, fr->y.step);
        fputs("</text>\n", f);
    }
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", fr->left, fr->bottom,
            fr->right, fr->bottom);
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", fr->left, fr->top,
            fr->left, fr->bottom);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", (fr->left + fr->right) / 2, MC_PLOT_HEIGHT - 8);
    mc_html_escape(f, plot->x_label);
    fprintf(f, "</text>\n<text transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\">",
            (fr->top + fr->bottom) / 2);
    mc_html_escape(f, plot->y_label);
    fputs("</text>\n", f);
}

/* One series: a polyline through its finite points, dots when they are few. */
static void draw_series(FILE *f, const plot_frame *fr, const mc_report_series *series, const char *colour) {
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colour);
    int finite = 0;
    for (int i = 0; i < series->n; i++) {
        if (!isfinite(series->x[i]) || !isfinite(series->y[i])) continue;
        fprintf(f, "%s%.1f,%.1f", finite++ ? " " : "", to_px(fr, series->x[i]), to_py(fr, series->y[i]));
    }
    fputs("\"/>\n", f);
    if (finite > 40) return; /* dots would hide a dense curve */
    for (int i = 0; i < series->n; i++)
        if (isfinite(series->x[i]) && isfinite(series->y[i]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", to_px(fr, series->x[i]),
                    to_py(fr, series->y[i]), colour);
    fputc('\n', f);
}

/* The legend: a row of coloured dashes and names under the title. */
static void draw_legend(FILE *f, const mc_report_plot *plot) {
    double x = MC_PLOT_LEFT;
    for (int s = 0; s < plot->n_series; s++) {
        const char *name = plot->series[s].name ? plot->series[s].name : "";
        fprintf(f, "<line x1=\"%.1f\" y1=\"30\" x2=\"%.1f\" y2=\"30\" stroke=\"%s\" stroke-width=\"3\"/>", x, x + 16,
                SERIES_COLOURS[s]);
        fprintf(f, "<text x=\"%.1f\" y=\"34\">", x + 20);
        mc_html_escape(f, name);
        fputs("</text>\n", f);
        x += 20 + 7.0 * (double)strlen(name) + 16; /* about 7 px per character at 12 px */
    }
}

void mc_svg_line_plot(FILE *f, const mc_report_plot *plot) {
    open_svg(f, "plot", MC_PLOT_WIDTH, MC_PLOT_HEIGHT, plot->title);
    int n_series = plot->n_series < MC_REPORT_MAX_SERIES ? plot->n_series : MC_REPORT_MAX_SERIES;
    mc_report_plot clipped = *plot;
    clipped.n_series = n_series < 0 ? 0 : n_series;
    double x_lo = 0, x_hi = 0, y_lo = 0, y_hi = 0;
    if (!data_range(&clipped, &x_lo, &x_hi, &y_lo, &y_hi)) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no data</text>\n</svg>\n", MC_PLOT_WIDTH / 2,
                MC_PLOT_HEIGHT / 2);
        return;
    }
    if (plot->y_lo < plot->y_hi) { /* a fixed range, still ticked nicely */
        y_lo = plot->y_lo;
        y_hi = plot->y_hi;
    }
    plot_frame fr = {nice_axis(x_lo, x_hi), nice_axis(y_lo, y_hi), MC_PLOT_LEFT, MC_PLOT_WIDTH - MC_PLOT_RIGHT,
                     MC_PLOT_TOP, MC_PLOT_HEIGHT - MC_PLOT_BOTTOM};
    draw_axes(f, &fr, &clipped);
    for (int s = 0; s < clipped.n_series; s++) draw_series(f, &fr, &clipped.series[s], SERIES_COLOURS[s]);
    draw_legend(f, &clipped);
    fputs("</svg>\n", f);
}

/* ---- bars ---- */

enum { BAR_LABEL_WIDTH = 230, BAR_WIDTH = 260, BAR_ROW = 22, BAR_TOP = 28 };

void mc_svg_bars(FILE *f, const mc_report_bars *bars) {
    int height = BAR_TOP + bars->n * BAR_ROW + 8, width = BAR_LABEL_WIDTH + BAR_WIDTH + 60;
    open_svg(f, "bars", width, height, bars->title);
    for (int i = 0; i < bars->n; i++) {
        double v = bars->values[i], shown = isfinite(v) ? fmin(fmax(v, 0), 1) : 0;
        int y = BAR_TOP + i * BAR_ROW;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", BAR_LABEL_WIDTH - 8, y + 14);
        mc_html_escape(f, bars->names[i]);
        fprintf(f, "</text><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"track\"/>", BAR_LABEL_WIDTH, y + 3,
                BAR_WIDTH, BAR_ROW - 6);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>", BAR_LABEL_WIDTH, y + 3,
                shown * BAR_WIDTH, BAR_ROW - 6, SERIES_COLOURS[0]);
        if (isfinite(v))
            fprintf(f, "<text x=\"%d\" y=\"%d\">%.1f%%</text>\n", BAR_LABEL_WIDTH + BAR_WIDTH + 6, y + 14, 100 * v);
        else
            fprintf(f, "<text x=\"%d\" y=\"%d\">n/a</text>\n", BAR_LABEL_WIDTH + BAR_WIDTH + 6, y + 14);
    }
    fputs("</svg>\n", f);
}

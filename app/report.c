/* report.html: one self-contained page (inline CSS and SVG, images as
 * base64 data URIs, no script, nothing fetched from a network), so a run
 * folder can be copied anywhere and still be read in any browser.
 *
 * Sections, each only when it has content: the summary table, chain diagrams
 * (boxes and arrows with the accuracy of each link), the plots,
 * the confusion matrices (cells shaded by the fraction of their true-class
 * row), per-class accuracy bars, and images (a contact sheet). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mmchain/mmchain.h"
#include "mmchain_app/report.h"
#include "mmchain_app/run.h"
#include "run_internal.h"

/* ---- base64 (RFC 4648 §4, with '=' padding) ---- */

mc_status mc_base64_encode(const void *data, size_t len, char **out) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *in = data;
    *out = NULL;
    if (len > 0 && !data) return mc_error(MC_ERR_ARG, "base64: NULL data");
    if (len / 3 >= (SIZE_MAX - 5) / 4) return mc_error(MC_ERR_NOMEM, "base64: %zu bytes is too many", len);
    char *text = malloc((len + 2) / 3 * 4 + 1);
    if (!text) return mc_error(MC_ERR_NOMEM, "base64: out of memory for %zu bytes", len);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        /* Three bytes -> 24 bits -> four 6-bit digits; a short final group
         * is padded with zero bits and '=' for each missing byte. */
        size_t left = len - i;
        uint32_t bits = (uint32_t)in[i] << 16 | (left > 1 ? (uint32_t)in[i + 1] << 8 : 0) | (left > 2 ? in[i + 2] : 0);
        text[o++] = alphabet[bits >> 18 & 63];
        text[o++] = alphabet[bits >> 12 & 63];
        text[o++] = left > 1 ? alphabet[bits >> 6 & 63] : '=';
        text[o++] = left > 2 ? alphabet[bits & 63] : '=';
    }
    text[o] = '\0';
    *out = text;
    return MC_OK;
}

/* ---- sections ---- */

static const char STYLE[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1120px;"
    "color:#222;padding:0 16px}\n"
    "h1{font-size:24px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}\n"
    "table{border-collapse:collapse;font-size:13px}\n"
    "table.summary td,table.summary th{padding:3px 12px 3px 0;text-align:left;vertical-align:top}\n"
    "table.summary th{font-weight:600;color:#555}\n"
    "table.confusion td,table.confusion th{border:1px solid #ddd;padding:3px 6px;text-align:right}\n"
    "table.confusion th.pred{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;"
    "font-weight:500;max-height:180px}\n"
    "table.confusion th.true{text-align:right;font-weight:500}\n"
    "table.confusion td.diag{font-weight:700}\n"
    ".charts{display:flex;flex-wrap:wrap;gap:16px}\n"
    "svg text{font-size:12px;fill:#333}svg text.title{font-size:14px;font-weight:600}\n"
    "svg line.grid{stroke:#e6e6e6}svg line.axis{stroke:#555}svg rect.track{fill:#f0f0f0}\n"
    "figure{margin:0}figcaption{font-size:13px;color:#555;margin-top:4px}\n"
    "img.sheet{image-rendering:pixelated;max-width:100%;border:1px solid #ddd}\n"
    ".note{color:#666;font-size:13px}\n";

static void write_summary(FILE *f, const mc_report *r) {
    if (r->n_summary <= 0) return;
    fputs("<h2>Summary</h2>\n<table class=\"summary\">\n", f);
    for (int i = 0; i < r->n_summary; i++) {
        fputs("<tr><th>", f);
        mc_html_escape(f, r->summary[i].key);
        fputs("</th><td>", f);
        mc_html_escape(f, r->summary[i].value);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

const char *mc_report_percent(double v, char *buf, size_t len) {
    if (isfinite(v)) snprintf(buf, len, "%.1f %%", 100.0 * v);
    else snprintf(buf, len, "-");
    return buf;
}

/* Boxes in a row joined by arrows; each arrow carries its link's label and
 * accuracy above it, each box its zero-shot accuracy below. */
static void write_chain(FILE *f, const mc_report_chain *c) {
    enum { BOX_W = 170, BOX_H = 54, GAP = 110, TOP = 40, MARGIN = 10 };
    const int width = 2 * MARGIN + c->n * BOX_W + (c->n - 1) * GAP, height = TOP + BOX_H + 56;
    char value[32];
    fprintf(f, "<figure>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\">\n", width, height, width, height);
    fputs("<defs><marker id=\"arrow\" markerWidth=\"10\" markerHeight=\"8\" refX=\"9\" refY=\"4\" "
          "orient=\"auto\"><path d=\"M0,0 L10,4 L0,8 z\" fill=\"#555\"/></marker></defs>\n", f);
    for (int i = 0; i < c->n; i++) {
        int x = MARGIN + i * (BOX_W + GAP);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" rx=\"6\" fill=\"#eef3f8\" "
                   "stroke=\"#4e79a7\"/>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">",
                x, TOP, BOX_W, BOX_H, x + BOX_W / 2, TOP + BOX_H / 2 + 4);
        mc_html_escape(f, c->nodes[i]);
        fputs("</text>\n", f);
        if (c->text_acc && isfinite(c->text_acc[i])) {
            mc_report_percent(c->text_acc[i], value, sizeof value);
            fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">-> text: %s</text>\n", x + BOX_W / 2,
                    TOP + BOX_H + 20, value);
        }
        if (i == c->n - 1) continue;
        int x0 = x + BOX_W + 4, x1 = x + BOX_W + GAP - 4, y = TOP + BOX_H / 2;
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#555\" stroke-width=\"2\" "
                   "marker-end=\"url(#arrow)\"/>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">",
                x0, y, x1, y, (x0 + x1) / 2, y - 24);
        mc_html_escape(f, c->links[i]);
        mc_report_percent(c->link_acc[i], value, sizeof value);
        fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" class=\"title\">%s</text>\n",
                (x0 + x1) / 2, y - 8, value);
    }
    fputs("</svg>\n<figcaption>", f);
    mc_html_escape(f, c->title);
    fputs("</figcaption>\n</figure>\n", f);
}

static void write_plots(FILE *f, const mc_report *r) {
    if (r->n_plots <= 0) return;
    fputs("<h2>Training curves</h2>\n<div class=\"charts\">\n", f);
    for (int i = 0; i < r->n_plots; i++) mc_svg_line_plot(f, &r->plots[i]);
    fputs("</div>\n", f);
}

/* A (K, K) table; a cell's shade is its share of its true-class row. */
static void write_confusion(FILE *f, const mc_report_confusion *c) {
    int64_t total = 0, correct = 0;
    for (int t = 0; t < c->k; t++)
        for (int p = 0; p < c->k; p++) {
            total += c->counts[t * c->k + p];
            if (t == p) correct += c->counts[t * c->k + p];
        }
    fputs("<figure>\n<table class=\"confusion\">\n<tr><th>true \\ predicted</th>", f);
    for (int p = 0; p < c->k; p++) {
        fputs("<th class=\"pred\">", f);
        mc_html_escape(f, c->class_names[p]);
        fputs("</th>", f);
    }
    fputs("</tr>\n", f);
    for (int t = 0; t < c->k; t++) {
        int64_t row_total = 0;
        for (int p = 0; p < c->k; p++) row_total += c->counts[t * c->k + p];
        fputs("<tr><th class=\"true\">", f);
        mc_html_escape(f, c->class_names[t]);
        fputs("</th>", f);
        for (int p = 0; p < c->k; p++) {
            int64_t n = c->counts[t * c->k + p];
            double share = row_total > 0 ? (double)n / (double)row_total : 0;
            fprintf(f, "<td%s style=\"background:rgba(78,121,167,%.2f)%s\">%lld</td>", t == p ? " class=\"diag\"" : "",
                    share, share > 0.6 ? ";color:#fff" : "", (long long)n);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n<figcaption>", f);
    mc_html_escape(f, c->title);
    if (total > 0)
        fprintf(f, " — accuracy %.1f%% (%lld of %lld)", 100.0 * (double)correct / (double)total, (long long)correct,
                (long long)total);
    fputs("</figcaption>\n</figure>\n", f);
}

static mc_status write_image(FILE *f, const mc_report_image *image) {
    char *bytes, *encoded;
    size_t len;
    MC_TRY(mc_read_text_file(image->path, &bytes, &len));
    mc_status s = mc_base64_encode(bytes, len, &encoded);
    free(bytes);
    MC_TRY(s);
    fputs("<figure>\n<img class=\"sheet\" alt=\"", f);
    mc_html_escape(f, image->caption ? image->caption : image->path);
    fprintf(f, "\" src=\"data:image/png;base64,%s\">\n<figcaption>", encoded);
    mc_html_escape(f, image->caption);
    fputs("</figcaption>\n</figure>\n", f);
    free(encoded);
    return MC_OK;
}

static mc_status write_html(void *ctx, FILE *f) {
    const mc_report *r = ctx;
    const char *title = r->title ? r->title : "mmchain report";
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>", f);
    mc_html_escape(f, title);
    fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>", STYLE);
    mc_html_escape(f, title);
    fprintf(f, "</h1>\n<p class=\"note\">mmchain %s</p>\n", mc_version());
    write_summary(f, r);
    if (r->n_chains > 0) fputs("<h2>The chain</h2>\n", f);
    for (int i = 0; i < r->n_chains; i++) write_chain(f, &r->chains[i]);
    write_plots(f, r);
    if (r->n_confusions > 0) fputs("<h2>Confusion matrices</h2>\n<div class=\"charts\">\n", f);
    for (int i = 0; i < r->n_confusions; i++) write_confusion(f, &r->confusions[i]);
    if (r->n_confusions > 0) fputs("</div>\n", f);
    if (r->n_bars > 0) fputs("<h2>Per-class accuracy</h2>\n<div class=\"charts\">\n", f);
    for (int i = 0; i < r->n_bars; i++) mc_svg_bars(f, &r->bars[i]);
    if (r->n_bars > 0) fputs("</div>\n", f);
    if (r->n_images > 0) fputs("<h2>Images</h2>\n", f);
    for (int i = 0; i < r->n_images; i++) MC_TRY(write_image(f, &r->images[i]));
    fputs("</body>\n</html>\n", f);
    return MC_OK;
}

static mc_status check_report(const char *path, const mc_report *r) {
    if ((r->n_summary > 0 && !r->summary) || (r->n_plots > 0 && !r->plots) ||
        (r->n_confusions > 0 && !r->confusions) || (r->n_bars > 0 && !r->bars) || (r->n_images > 0 && !r->images))
        return mc_error(MC_ERR_ARG, "report %s: a section has a count but no array", path);
    for (int i = 0; i < r->n_plots; i++) {
        const mc_report_plot *p = &r->plots[i];
        if (p->n_series < 0 || p->n_series > MC_REPORT_MAX_SERIES)
            return mc_error(MC_ERR_ARG, "report %s: plot \"%s\" has %d series (at most %d)", path,
                            p->title ? p->title : "", p->n_series, MC_REPORT_MAX_SERIES);
        for (int s = 0; s < p->n_series; s++)
            if (p->series[s].n < 0 || (p->series[s].n > 0 && (!p->series[s].x || !p->series[s].y)))
                return mc_error(MC_ERR_ARG, "report %s: plot \"%s\" series %d has no data", path,
                                p->title ? p->title : "", s);
    }
    for (int i = 0; i < r->n_confusions; i++)
        if (r->confusions[i].k <= 0 || !r->confusions[i].counts || !r->confusions[i].class_names)
            return mc_error(MC_ERR_ARG, "report %s: confusion matrix %d needs k > 0, counts and class names", path, i);
    for (int i = 0; i < r->n_bars; i++)
        if (r->bars[i].n < 0 || (r->bars[i].n > 0 && (!r->bars[i].names || !r->bars[i].values)))
            return mc_error(MC_ERR_ARG, "report %s: bar chart %d needs names and values", path, i);
    for (int i = 0; i < r->n_images; i++)
        if (!r->images[i].path) return mc_error(MC_ERR_ARG, "report %s: image %d has no path", path, i);
    if (r->n_chains > 0 && !r->chains) return mc_error(MC_ERR_ARG, "report %s: chains counted but absent", path);
    for (int i = 0; i < r->n_chains; i++) {
        const mc_report_chain *c = &r->chains[i];
        if (c->n < 2 || c->n > MC_REPORT_MAX_CHAIN || !c->nodes || !c->links || !c->link_acc)
            return mc_error(MC_ERR_ARG, "report %s: chain %d needs 2..%d boxes, their names, links and accuracies",
                            path, i, MC_REPORT_MAX_CHAIN);
    }
    return MC_OK;
}

mc_status mc_report_write(const char *path, const mc_report *report) {
    if (!path || !report) return mc_error(MC_ERR_ARG, "report: a path and a report are needed");
    MC_TRY(check_report(path, report));
    return mc_write_file_atomic_with(path, write_html, (void *)report);
}

/* ---- plots from metrics.csv ---- */

/* The plots made from a table; their arrays live in one allocation. */
typedef struct metric_plots {
    mc_report_plot plots[3];
    int n;
    double *arrays;
} metric_plots;

/* Up to MC_REPORT_MAX_SERIES columns of rows of `kind` whose name contains
 * `part` ("loss", "acc") against column `x_name` (or the row number). */
static void add_plot(metric_plots *mp, const mc_metrics_table *t, const char *kind, const char *x_name,
                     const char *part, const char *title, const char *y_label, double **next) {
    int x_col = mc_metrics_column(t, x_name), rows = 0;
    for (int r = 0; r < t->n_rows; r++) rows += strcmp(t->kinds[r], kind) == 0;
    mc_report_plot *plot = &mp->plots[mp->n];
    memset(plot, 0, sizeof *plot);
    for (int c = 0; c < t->n_columns && plot->n_series < MC_REPORT_MAX_SERIES; c++) {
        if (c == x_col || !strstr(t->columns[c], part)) continue;
        double *x = *next, *y = x + rows;
        int n = 0;
        bool any = false;
        for (int r = 0; r < t->n_rows; r++) {
            if (strcmp(t->kinds[r], kind) != 0) continue;
            x[n] = x_col >= 0 ? t->values[(size_t)r * t->n_columns + x_col] : n + 1;
            y[n] = t->values[(size_t)r * t->n_columns + c];
            any |= isfinite(y[n]);
            n++;
        }
        if (!any) continue; /* a column of another kind of row */
        *next += 2 * rows;
        plot->series[plot->n_series++] = (mc_report_series){t->columns[c], n, x, y};
    }
    if (plot->n_series == 0) return;
    plot->title = title;
    plot->x_label = x_name;
    plot->y_label = y_label;
    mp->n++;
}

static mc_status plots_from_table(const mc_metrics_table *t, metric_plots *mp) {
    memset(mp, 0, sizeof *mp);
    /* At most 3 plots x 6 series x (x, y) per row. */
    size_t doubles = (size_t)3 * MC_REPORT_MAX_SERIES * 2 * (size_t)(t->n_rows + 1);
    mp->arrays = malloc(sizeof *mp->arrays * doubles);
    if (!mp->arrays) return mc_error(MC_ERR_NOMEM, "report: out of memory for %d metrics rows", t->n_rows);
    double *next = mp->arrays;
    add_plot(mp, t, "step", "step", "loss", "Training loss per step", "loss", &next);
    add_plot(mp, t, "epoch", "epoch", "loss", "Losses per epoch", "loss", &next);
    add_plot(mp, t, "epoch", "epoch", "acc", "Accuracies per epoch", "accuracy", &next);
    if (mp->n > 0 && strcmp(mp->plots[mp->n - 1].title, "Accuracies per epoch") == 0) {
        mp->plots[mp->n - 1].y_lo = 0; /* accuracies on their whole scale */
        mp->plots[mp->n - 1].y_hi = 1;
    }
    return MC_OK;
}

mc_status mc_report_write_with_metrics(const char *path, const char *metrics_csv, const mc_report *extra) {
    mc_report empty = {0};
    const mc_report *base = extra ? extra : &empty;
    struct stat info;
    if (!metrics_csv || stat(metrics_csv, &info) != 0) return mc_report_write(path, base);
    mc_metrics_table table;
    MC_TRY(mc_metrics_read(metrics_csv, &table));
    metric_plots mp;
    mc_status s = plots_from_table(&table, &mp);
    mc_report_plot *plots = NULL;
    if (s == MC_OK) {
        plots = malloc(sizeof *plots * (size_t)(mp.n + base->n_plots + 1));
        if (!plots) s = mc_error(MC_ERR_NOMEM, "report %s: out of memory", path);
    }
    if (s == MC_OK) {
        /* The training curves first, then the caller's own plots. */
        memcpy(plots, mp.plots, sizeof *plots * (size_t)mp.n);
        if (base->n_plots > 0) memcpy(plots + mp.n, base->plots, sizeof *plots * (size_t)base->n_plots);
        mc_report combined = *base;
        combined.plots = plots;
        combined.n_plots = mp.n + base->n_plots;
        s = mc_report_write(path, &combined);
    }
    free(plots);
    free(mp.arrays);
    mc_metrics_free(&table);
    return s;
}

mc_status mc_run_write_report(mc_run *run, const mc_report *extra) {
    char html[4096], csv[4096];
    MC_TRY(mc_run_path(run, "report.html", html, sizeof html));
    MC_TRY(mc_run_path(run, "metrics.csv", csv, sizeof csv));
    return mc_report_write_with_metrics(html, csv, extra);
}

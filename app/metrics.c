/* Reading metrics.csv back (for report.html) and the little text helpers
 * the run folder shares with it.
 *
 * metrics.csv, as mc_run_metrics_row writes it:
 *     kind,epoch,step,loss,val_acc
 *     step,1,50,2.1034,
 *     step,1,100,1.8876,
 *     epoch,1,100,1.9012,0.4125
 * The first column names the kind of row; a row leaves the cells of the
 * other kinds' columns empty. Every other cell is a number ("nan" too). */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run_internal.h"

mc_status mc_read_text_file(const char *path, char **text, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return mc_error(MC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    bool failed = ferror(f) != 0;
    fclose(f);
    if (!buf) return mc_error(MC_ERR_NOMEM, "%s: out of memory reading it", path);
    if (failed) {
        free(buf);
        return mc_error(MC_ERR_IO, "%s: read failed", path);
    }
    buf[n] = '\0';
    *text = buf;
    if (len) *len = n;
    return MC_OK;
}

int mc_csv_split(char *line, char **cells, int max_cells) {
    int n = 0;
    char *cell = line;
    while (n < max_cells) {
        cells[n++] = cell;
        char *comma = strchr(cell, ',');
        if (!comma) break;
        *comma = '\0';
        cell = comma + 1;
    }
    return n;
}

void mc_metrics_free(mc_metrics_table *t) {
    for (int i = 0; i < t->n_columns; i++) free(t->columns[i]);
    for (int i = 0; i < t->n_rows; i++) free(t->kinds[i]);
    free(t->columns);
    free(t->kinds);
    free(t->values);
    memset(t, 0, sizeof *t);
}

int mc_metrics_column(const mc_metrics_table *t, const char *name) {
    for (int i = 0; i < t->n_columns; i++)
        if (strcmp(t->columns[i], name) == 0) return i;
    return -1;
}

static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

/* The header line: "kind,a,b,c" -> columns a, b, c. */
static mc_status read_header(const char *path, char *line, mc_metrics_table *t) {
    int n = 1;
    for (const char *c = line; *c; c++) n += *c == ',';
    char **cells = malloc(sizeof *cells * (size_t)n);
    if (!cells) return mc_error(MC_ERR_NOMEM, "%s: out of memory", path);
    n = mc_csv_split(line, cells, n);
    if (strcmp(cells[0], "kind") != 0) {
        free(cells);
        return mc_error(MC_ERR_FORMAT, "%s: the header must start with \"kind\", not \"%s\"", path, line);
    }
    t->columns = calloc((size_t)n, sizeof *t->columns);
    for (int i = 1; t->columns && i < n; i++) {
        if (!(t->columns[t->n_columns] = copy_string(cells[i]))) break;
        t->n_columns++;
    }
    free(cells);
    if (!t->columns || t->n_columns != n - 1) return mc_error(MC_ERR_NOMEM, "%s: out of memory", path);
    return MC_OK;
}

/* One data line into row t->n_rows (space already reserved). */
static mc_status read_row(const char *path, int line_no, char *line, char **cells, mc_metrics_table *t) {
    int n = mc_csv_split(line, cells, t->n_columns + 1);
    double *row = t->values + (size_t)t->n_rows * (size_t)t->n_columns;
    for (int c = 0; c < t->n_columns; c++) {
        const char *cell = c + 1 < n ? cells[c + 1] : "";
        char *end;
        row[c] = *cell ? strtod(cell, &end) : NAN;
        if (*cell && *end)
            return mc_error(MC_ERR_FORMAT, "%s line %d: column %s holds \"%s\", not a number", path, line_no,
                            t->columns[c], cell);
    }
    if (!(t->kinds[t->n_rows] = copy_string(cells[0]))) return mc_error(MC_ERR_NOMEM, "%s: out of memory", path);
    t->n_rows++;
    return MC_OK;
}

static mc_status parse_metrics(const char *path, char *text, mc_metrics_table *t) {
    int lines = 0;
    size_t bytes = 0;
    for (const char *c = text; *c; c++, bytes++) lines += *c == '\n';
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    if (!line) return MC_OK; /* an empty file: no columns, no rows */
    MC_TRY(read_header(path, line, t));
    /* Every row holds a value per column, a missing cell NaN. A file the
     * writer made has a comma per column on each line, so its values are
     * at most about its bytes; lines far shorter than the header (a crafted
     * or damaged file) would ask for rows x columns doubles out of a few
     * bytes each, gigabytes from a small file: refused before allocating. */
    const double values = ((double)lines + 1) * ((double)t->n_columns + 1);
    if (values > 4.0 * (double)bytes + 65536.0)
        return mc_error(MC_ERR_FORMAT, "%s: %d lines of %d columns, far more cells than the file "
                        "holds (its lines are much shorter than its header): not a metrics.csv "
                        "this program wrote", path, lines, t->n_columns);
    t->kinds = calloc((size_t)lines + 1, sizeof *t->kinds);
    t->values = malloc(sizeof *t->values * ((size_t)lines + 1) * (size_t)(t->n_columns + 1));
    char **cells = malloc(sizeof *cells * (size_t)(t->n_columns + 1));
    mc_status s = t->kinds && t->values && cells ? MC_OK : mc_error(MC_ERR_NOMEM, "%s: out of memory", path);
    for (int line_no = 2; s == MC_OK && (line = strtok_r(NULL, "\n", &save)) != NULL; line_no++)
        s = read_row(path, line_no, line, cells, t);
    free(cells);
    return s;
}

mc_status mc_metrics_read(const char *path, mc_metrics_table *t) {
    memset(t, 0, sizeof *t);
    char *text;
    MC_TRY(mc_read_text_file(path, &text, NULL));
    mc_status s = parse_metrics(path, text, t);
    free(text);
    if (s != MC_OK) mc_metrics_free(t);
    return s;
}

/* mmchain show — a contact sheet (PNG) of multispectral tiles.
 *
 *     mmchain show DIR|FILE... --out sheet.png [--per-class K]
 *
 * Every tile is drawn as three composites side by side:
 *   true colour  (B04, B03, B02)  — what a camera sees
 *   false colour (B08, B04, B03)  — vegetation red (high NIR)
 *   SWIR         (B12, B8A, B04)  — soil, built-up and moisture contrasts
 * Each band is divided by a fixed white point and clipped to 0..1 (visible
 * bands 2740 = the EuroSAT RGB release's mapping, NIR 5000, SWIR 4000), the
 * same for every tile, so real and synthetic tiles can be compared by eye.
 * A DIR is a dataset (class folders): one row per class, its first K tiles.
 * FILEs (.tif) are grouped by their folder name. Each argument is a section
 * titled with its path. Labels use a tiny built-in 5x7 bitmap font. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char *const COMMAND = "show";

/* ---- layout ---- */

enum {
    CELL = 64,        /* every composite is drawn 64x64 (resized if the tile is not) */
    COMPOSITE_GAP = 1,
    TILE_GAP = 6,
    ROW_GAP = 6,
    MARGIN = 8,
    LABEL_WIDTH = 132, /* 22 characters of the 6-pixel font */
    TEXT_HEIGHT = 7,
    TITLE_HEIGHT = 16,
    TILE_WIDTH = 3 * CELL + 2 * COMPOSITE_GAP,
};

typedef struct composite {
    int band[3];     /* file band indices for R, G, B */
    float white[3];  /* DN that maps to 1.0 */
} composite;

/* B04,B03,B02 | B08,B04,B03 | B12,B8A,B04 (file order: B8A is index 12). */
static const composite composites[3] = {
    {{3, 2, 1}, {2740.0f, 2740.0f, 2740.0f}},
    {{7, 3, 2}, {5000.0f, 2740.0f, 2740.0f}},
    {{11, 12, 3}, {4000.0f, 5000.0f, 2740.0f}},
};

/* Labels use the application's canvas (mmchain_app/report.h): a 5x7 bitmap font, 6 px a character. */
static void draw_text(mc_canvas *cv, int y, int x, const char *text, int max_chars) {
    static const float white[3] = {0.95f, 0.95f, 0.95f};
    mc_canvas_draw_text(cv, y, x, text, max_chars, 1, white);
}

/* ---- what to draw ---- */

typedef struct sheet_tile {
    char *path;
    char label[64];
} sheet_tile;

typedef struct sheet_row {
    char label[64];
    sheet_tile *tiles; /* count */
    int count;
} sheet_row;

typedef struct sheet_section {
    char title[256];
    sheet_row *rows;
    int row_count;
} sheet_section;

static void free_sections(sheet_section *sections, int n) {
    for (int s = 0; sections && s < n; s++) {
        for (int r = 0; r < sections[s].row_count; r++) {
            for (int t = 0; t < sections[s].rows[r].count; t++) free(sections[s].rows[r].tiles[t].path);
            free(sections[s].rows[r].tiles);
        }
        free(sections[s].rows);
    }
    free(sections);
}

/* Append `path` to the row labelled `label` (made if new). */
static mc_status add_tile(sheet_section *section, const char *label, const char *path) {
    sheet_row *row = NULL;
    for (int r = 0; r < section->row_count; r++)
        if (strcmp(section->rows[r].label, label) == 0) row = &section->rows[r];
    if (!row) {
        sheet_row *rows = realloc(section->rows, sizeof *rows * (size_t)(section->row_count + 1));
        if (!rows) return mc_error(MC_ERR_NOMEM, "show: out of memory");
        section->rows = rows;
        row = &rows[section->row_count++];
        memset(row, 0, sizeof *row);
        snprintf(row->label, sizeof row->label, "%s", label);
    }
    sheet_tile *tiles = realloc(row->tiles, sizeof *tiles * (size_t)(row->count + 1));
    if (!tiles) return mc_error(MC_ERR_NOMEM, "show: out of memory");
    row->tiles = tiles;
    tiles[row->count].path = strdup(path);
    if (!tiles[row->count].path) return mc_error(MC_ERR_NOMEM, "show: out of memory");
    snprintf(tiles[row->count].label, sizeof tiles[row->count].label, "%s", label);
    row->count++;
    return MC_OK;
}

/* A dataset folder: the first `per_class` tiles of every class. */
static mc_status add_dataset(sheet_section *section, const char *dir, int per_class) {
    mc_eurosat *ds;
    MC_TRY(mc_eurosat_open(&ds, dir, NULL));
    int taken[256] = {0};
    mc_status status = MC_OK;
    for (int i = 0; status == MC_OK && i < mc_eurosat_size(ds); i++) {
        int label = mc_eurosat_label(ds, i);
        if (label < 256 && taken[label]++ >= per_class) continue;
        status = add_tile(section, mc_eurosat_class_name(ds, label), mc_eurosat_path(ds, i));
    }
    mc_eurosat_free(ds);
    return status;
}

/* A single file: its label is the name of the folder holding it. */
static mc_status add_file(sheet_section *section, const char *path) {
    char label[64] = "tile";
    const char *slash = strrchr(path, '/');
    if (slash && slash > path) {
        const char *start = slash - 1;
        while (start > path && start[-1] != '/') start--;
        snprintf(label, sizeof label, "%.*s", (int)(slash - start), start);
    }
    return add_tile(section, label, path);
}

/* ---- drawing ---- */

/* The three composites of one tile, each resized to CELL x CELL. */
static mc_status draw_tile(mc_canvas *cv, const char *path, int top, int left) {
    mc_raster raster;
    MC_TRY(mc_tiff_read(path, &raster));
    if (raster.bands < 13) {
        mc_raster_free(&raster);
        return mc_error(MC_ERR_SHAPE, "%s: has %d bands; the composites need EuroSAT's 13", path, raster.bands);
    }
    mc_tensor *view = NULL, *cell = NULL;
    mc_status status = mc_tensor_new(&view, MC_SHAPE(3, raster.height, raster.width), path);
    size_t plane = (size_t)raster.height * raster.width;
    for (int k = 0; status == MC_OK && k < 3; k++) {
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < plane; i++) {
                float v = raster.data[(size_t)composites[k].band[c] * plane + i] / composites[k].white[c];
                view->data[c * plane + i] = v < 0 ? 0 : (v > 1 ? 1 : v);
            }
        const mc_tensor *src = view;
        if (raster.height != CELL || raster.width != CELL) {
            status = mc_image_resize(view, CELL, CELL, true, &cell);
            src = cell;
        }
        if (status == MC_OK) mc_canvas_blit(cv, top, left + k * (CELL + COMPOSITE_GAP), src); /* clamps to 0..1 */
        mc_tensor_free(cell);
        cell = NULL;
    }
    mc_tensor_free(view);
    mc_raster_free(&raster);
    return status;
}

static int section_height(const sheet_section *s) { return TITLE_HEIGHT + s->row_count * (CELL + ROW_GAP); }

static mc_status render(const sheet_section *sections, int n, int per_class, const char *out_path) {
    int widest = 1, height = MARGIN + TITLE_HEIGHT;
    for (int s = 0; s < n; s++) {
        height += section_height(&sections[s]);
        for (int r = 0; r < sections[s].row_count; r++)
            if (sections[s].rows[r].count > widest) widest = sections[s].rows[r].count;
    }
    if (widest > per_class) widest = per_class;
    mc_canvas cv;
    MC_TRY(mc_canvas_new(&cv, height + MARGIN, 2 * MARGIN + LABEL_WIDTH + widest * (TILE_WIDTH + TILE_GAP),
                         0.12f)); /* dark grey background */
    draw_text(&cv, MARGIN, MARGIN, "each tile: true colour (B04,B03,B02) | false colour (B08,B04,B03) | SWIR (B12,B8A,B04)",
              (cv.width - 2 * MARGIN) / 6);
    int y = MARGIN + TITLE_HEIGHT;
    mc_status status = MC_OK;
    for (int s = 0; status == MC_OK && s < n; s++) {
        draw_text(&cv, y + 4, MARGIN, sections[s].title, (cv.width - 2 * MARGIN) / 6);
        y += TITLE_HEIGHT;
        for (int r = 0; status == MC_OK && r < sections[s].row_count; r++) {
            const sheet_row *row = &sections[s].rows[r];
            draw_text(&cv, y + (CELL - TEXT_HEIGHT) / 2, MARGIN, row->label, LABEL_WIDTH / 6);
            for (int t = 0; status == MC_OK && t < row->count && t < per_class; t++)
                status = draw_tile(&cv, row->tiles[t].path, y, MARGIN + LABEL_WIDTH + t * (TILE_WIDTH + TILE_GAP));
            y += CELL + ROW_GAP;
        }
    }
    if (status == MC_OK) status = mc_png_write(out_path, cv.image, 8);
    mc_canvas_free(&cv);
    return status;
}

/* ---- the command ---- */

static void print_help(void) {
    printf("usage: mmchain show DIR|FILE... --out sheet.png [--per-class K]\n\n"
           "Draws a contact sheet of EuroSAT-MS-style tiles (13-band GeoTIFFs): for every tile its\n"
           "true colour (B04,B03,B02), false colour (B08,B04,B03) and SWIR (B12,B8A,B04) composites,\n"
           "labelled by class. Fixed white points (visible 2740, NIR 5000, SWIR 4000) for every tile.\n\n"
           "  DIR            a dataset folder of class folders: one row per class\n"
           "  FILE           a .tif tile; labelled with the name of its folder\n"
           "  --out PATH     the PNG to write (required)\n"
           "  --per-class K  tiles per class row (default 4)\n");
}

/* The sheet of the inputs (folders and files, in command-line order). */
static int show(const char *const *inputs, int n_inputs, const char *out_path, int per_class) {
    if (!out_path) return cli_fail(COMMAND, "--out sheet.png is required");
    if (n_inputs == 0) return cli_fail(COMMAND, "no DIR or FILE given (see mmchain show --help)");
    sheet_section *sections = calloc((size_t)n_inputs, sizeof *sections);
    if (!sections) return cli_fail(COMMAND, "out of memory");
    /* A folder is a section of its own; consecutive files share one. */
    mc_status status = MC_OK;
    int n_sections = 0;
    bool in_files = false;
    for (int i = 0; status == MC_OK && i < n_inputs; i++) {
        const char *input = inputs[i];
        struct stat info;
        if (stat(input, &info) != 0) {
            status = mc_error(MC_ERR_IO, "%s: cannot open: %s", input, strerror(errno));
        } else if (S_ISDIR(info.st_mode)) {
            snprintf(sections[n_sections].title, sizeof sections[n_sections].title, "%s", input);
            status = add_dataset(&sections[n_sections++], input, per_class);
            in_files = false;
        } else {
            if (!in_files) snprintf(sections[n_sections++].title, sizeof sections[0].title, "files");
            in_files = true;
            status = add_file(&sections[n_sections - 1], input);
        }
    }
    if (status == MC_OK) status = render(sections, n_sections, per_class, out_path);
    free_sections(sections, n_inputs);
    if (status != MC_OK) return cli_fail_status(COMMAND, status);
    printf("wrote %s\n", out_path);
    return 0;
}

int cmd_show(int argc, char **argv) {
    const char *out_path = NULL;
    int per_class = 4;
    cli_opt opts[] = { /* documented by print_help */
        CLI_STRING_OPT("--out", &out_path, NULL),
        CLI_INT_OPT("--per-class", &per_class, 1, 100, NULL),
        CLI_END,
    };
    const char **inputs = malloc((size_t)argc * sizeof *inputs);
    if (!inputs) return cli_fail(COMMAND, "out of memory");
    int n_inputs = 0;
    const cli_parser parser = {COMMAND, NULL, print_help, opts, CLI_OPERANDS};
    int code = cli_parse(&parser, argc, argv, inputs, &n_inputs);
    if (code < 0) code = show(inputs, n_inputs, out_path, per_class);
    free(inputs);
    return code;
}

/* A tiny drawing canvas and contact sheets: RGB images (3, H, W) in 0..1
 * with text in a built-in 5x7 bitmap font, written as PNG.
 *
 * `mmchain show` draws its multispectral composites with it, and training
 * runs draw their validation tiles with predicted and true classes for
 * report.html (mc_contact_sheet_write). */
#include <stdlib.h>
#include <string.h>

#include "mmchain/image.h"
#include "mmchain/io.h"
#include "mmchain_app/report.h"

/* ---- the font: capitals, digits, a little punctuation; glyphs are 5
 * pixels wide, drawn on a 6-pixel pitch ---- */

typedef struct glyph {
    char c;
    unsigned char rows[7]; /* 5 bits each, the top bit is the left pixel */
} glyph;

static const glyph font[] = {
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}}, {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}}, {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'|', {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}}, {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}}, {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}}, {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {'!', {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04}}, {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
    {'\'', {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00}},
};


static const glyph *find_glyph(char c) {
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A'); /* lower case drawn as capitals */
    for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
        if (font[i].c == c) return &font[i];
    return NULL; /* a space, or a character the font lacks: left blank */
}

/* ---- the canvas ---- */

mc_status mc_canvas_new(mc_canvas *cv, int height, int width, float background) {
    cv->image = NULL;
    cv->height = height;
    cv->width = width;
    if (height < 1 || width < 1)
        return mc_error(MC_ERR_ARG, "canvas: size %d x %d must be positive", height, width);
    MC_TRY(mc_tensor_new(&cv->image, MC_SHAPE(3, height, width), "canvas"));
    mc_tensor_fill(cv->image, background);
    return MC_OK;
}

void mc_canvas_free(mc_canvas *cv) {
    mc_tensor_free(cv->image);
    cv->image = NULL;
}

void mc_canvas_put_pixel(mc_canvas *cv, int y, int x, const float rgb[3]) {
    if (y < 0 || x < 0 || y >= cv->height || x >= cv->width) return;
    size_t plane = (size_t)cv->height * (size_t)cv->width;
    for (int c = 0; c < 3; c++) cv->image->data[c * plane + (size_t)y * cv->width + x] = rgb[c];
}

void mc_canvas_draw_text(mc_canvas *cv, int y, int x, const char *text, int max_chars, int scale,
                         const float rgb[3]) {
    if (scale < 1) scale = 1;
    for (int i = 0; text[i] && i < max_chars; i++) {
        const glyph *g = find_glyph(text[i]);
        for (int r = 0; g && r < 7 * scale; r++)
            for (int col = 0; col < 5 * scale; col++)
                if (g->rows[r / scale] & (0x10 >> (col / scale)))
                    mc_canvas_put_pixel(cv, y + r, x + 6 * scale * i + col, rgb);
    }
}

// image: (3, h, w)
void mc_canvas_blit(mc_canvas *cv, int y, int x, const mc_tensor *image) {
    int h = (int)image->shape.dim[1], w = (int)image->shape.dim[2];
    size_t plane = (size_t)h * (size_t)w;
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            float rgb[3];
            for (int c = 0; c < 3; c++) {
                float v = image->data[c * plane + (size_t)i * w + j];
                rgb[c] = v < 0 ? 0 : (v > 1 ? 1 : v);
            }
            mc_canvas_put_pixel(cv, y + i, x + j, rgb);
        }
}

/* ---- contact sheets ---- */

enum { SHEET_MARGIN = 8, SHEET_GAP = 8, CAPTION_LINES = 3, LINE_HEIGHT = 9 };

/* The caption under a tile: split at '\n' and wrapped at the tile's width,
 * at most CAPTION_LINES lines. */
static void draw_caption(mc_canvas *cv, int top, int left, int chars_per_line, const char *caption) {
    static const float text_colour[3] = {0.95f, 0.95f, 0.95f};
    int line = 0;
    const char *p = caption;
    while (*p && line < CAPTION_LINES) {
        int n = 0;
        while (p[n] && p[n] != '\n' && n < chars_per_line) n++;
        if (p[n] && p[n] != '\n') { /* break at the last space that fits */
            int space = n;
            while (space > 0 && p[space] != ' ') space--;
            if (space > 0) n = space;
        }
        mc_canvas_draw_text(cv, top + line * LINE_HEIGHT, left, p, n, 1, text_colour);
        p += n;
        while (*p == ' ' || *p == '\n') p++;
        line++;
    }
}

// tiles: (N, 3, H, W)
static mc_status draw_sheet(mc_canvas *cv, const mc_tensor *tiles, const char *const *captions, int columns,
                            int scale) {
    int n = (int)tiles->shape.dim[0], h = (int)tiles->shape.dim[2], w = (int)tiles->shape.dim[3];
    int cell_w = w * scale, cell_h = h * scale + 4 + CAPTION_LINES * LINE_HEIGHT;
    int rows = (n + columns - 1) / columns;
    MC_TRY(mc_canvas_new(cv, 2 * SHEET_MARGIN + rows * cell_h + (rows - 1) * SHEET_GAP,
                         2 * SHEET_MARGIN + columns * cell_w + (columns - 1) * SHEET_GAP, 0.12f));
    size_t tile_size = (size_t)3 * h * w;
    for (int i = 0; i < n; i++) {
        int top = SHEET_MARGIN + (i / columns) * (cell_h + SHEET_GAP);
        int left = SHEET_MARGIN + (i % columns) * (cell_w + SHEET_GAP);
        const float *tile = tiles->data + (size_t)i * tile_size;
        for (int y = 0; y < h * scale; y++)
            for (int x = 0; x < w * scale; x++) {
                float rgb[3]; /* nearest-neighbour zoom: each pixel becomes scale x scale */
                for (int c = 0; c < 3; c++) {
                    float v = tile[((size_t)c * h + y / scale) * w + x / scale];
                    rgb[c] = v < 0 ? 0 : (v > 1 ? 1 : v);
                }
                mc_canvas_put_pixel(cv, top + y, left + x, rgb);
            }
        if (captions && captions[i]) draw_caption(cv, top + h * scale + 4, left, cell_w / 6, captions[i]);
    }
    return MC_OK;
}

mc_status mc_contact_sheet_write(const char *path, const mc_tensor *tiles, const char *const *captions, int columns,
                                 int scale) {
    if (!path || !tiles) return mc_error(MC_ERR_ARG, "contact sheet: a path and tiles are needed");
    if (tiles->shape.ndim != 4 || tiles->shape.dim[1] != 3) {
        char shape[64];
        return mc_error(MC_ERR_SHAPE, "contact sheet %s: tiles %s must be (N, 3, H, W) RGB", path,
                        mc_shape_str(tiles->shape, shape, sizeof shape));
    }
    if (columns < 1 || scale < 1)
        return mc_error(MC_ERR_ARG, "contact sheet %s: columns (%d) and scale (%d) must be >= 1", path, columns, scale);
    if (columns > tiles->shape.dim[0]) columns = (int)tiles->shape.dim[0];
    mc_canvas cv = {0};
    mc_status s = draw_sheet(&cv, tiles, captions, columns, scale);
    if (s == MC_OK) s = mc_png_write(path, cv.image, 8); /* atomic */
    mc_canvas_free(&cv);
    return s;
}

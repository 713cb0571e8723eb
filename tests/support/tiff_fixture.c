#include "tiff_fixture.h"

#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

double mc_test_tiff_pattern(int b, int y, int x, int tile_id) {
    return (b * 4001 + y * 131 + x * 7 + tile_id * 17 + 1) % 65536;
}

double mc_test_tiff_value(const mc_test_tiff_spec *s, int b, int y, int x) {
    double v = mc_test_tiff_pattern(b, y, x, s->tile_id);
    if (s->sample_format == SAMPLEFORMAT_IEEEFP) return v * 0.5 - 100.0;
    return s->bits == 8 ? fmod(v, 256.0) : v;
}

static void put_sample(const mc_test_tiff_spec *s, unsigned char *buf, size_t i, double v) {
    if (s->sample_format == SAMPLEFORMAT_IEEEFP) { float f = (float)v; memcpy(buf + 4 * i, &f, 4); }
    else if (s->bits == 8) buf[i] = (unsigned char)v;
    else { uint16_t u = (uint16_t)v; memcpy(buf + 2 * i, &u, 2); }
}

static void set_tags(TIFF *tif, const mc_test_tiff_spec *s) {
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, (uint32_t)s->w);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, (uint32_t)s->h);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)s->c);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, (uint16_t)s->bits);
    TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, (uint16_t)s->sample_format);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, (uint16_t)s->compression);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, (uint16_t)PHOTOMETRIC_MINISBLACK);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, (uint16_t)s->planar);
    if (!s->tile) TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, (uint32_t)3);
    else TIFFSetField(tif, TIFFTAG_TILEWIDTH, (uint32_t)s->tile), TIFFSetField(tif, TIFFTAG_TILELENGTH, (uint32_t)s->tile);
}

static void write_tiles(TIFF *tif, const mc_test_tiff_spec *s, int planes, int per_pixel, size_t bytes) {
    unsigned char *buf = calloc((size_t)s->tile * s->tile * per_pixel, bytes);
    ck_assert_ptr_nonnull(buf);
    for (int p = 0; p < planes; p++)
        for (int ty = 0; ty < s->h; ty += s->tile)
            for (int tx = 0; tx < s->w; tx += s->tile) {
                for (int y = 0; y < s->tile; y++)
                    for (int x = 0; x < s->tile; x++)
                        for (int k = 0; k < per_pixel; k++) {
                            int b = planes > 1 ? p : k;
                            double v = ty + y < s->h && tx + x < s->w ? mc_test_tiff_value(s, b, ty + y, tx + x) : 0;
                            put_sample(s, buf, ((size_t)y * s->tile + x) * per_pixel + k, v);
                        }
                ck_assert(TIFFWriteTile(tif, buf, (uint32_t)tx, (uint32_t)ty, 0, (uint16_t)p) >= 0);
            }
    free(buf);
}

static void write_strips(TIFF *tif, const mc_test_tiff_spec *s, int planes, int per_pixel, size_t bytes) {
    unsigned char *row = calloc((size_t)s->w * per_pixel, bytes);
    ck_assert_ptr_nonnull(row);
    for (int p = 0; p < planes; p++)
        for (int y = 0; y < s->h; y++) {
            for (int x = 0; x < s->w; x++)
                for (int k = 0; k < per_pixel; k++)
                    put_sample(s, row, (size_t)x * per_pixel + k, mc_test_tiff_value(s, planes > 1 ? p : k, y, x));
            ck_assert(TIFFWriteScanline(tif, row, (uint32_t)y, (uint16_t)p) == 1);
        }
    free(row);
}

void mc_test_write_tiff(const char *path, const mc_test_tiff_spec *s) {
    TIFF *tif = TIFFOpen(path, "w");
    ck_assert_msg(tif != NULL, "cannot create %s", path);
    set_tags(tif, s);
    TIFFCheckpointDirectory(tif);
    int per_pixel = s->planar == PLANARCONFIG_SEPARATE ? 1 : s->c;
    int planes = s->planar == PLANARCONFIG_SEPARATE ? s->c : 1;
    size_t bytes = (size_t)s->bits / 8;
    if (s->tile) write_tiles(tif, s, planes, per_pixel, bytes);
    else write_strips(tif, s, planes, per_pixel, bytes);
    TIFFWriteDirectory(tif); /* in place (TIFFClose alone would append a new one) */
    TIFFClose(tif);
}

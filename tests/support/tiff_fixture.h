/* Test TIFFs written with libtiff directly, in any layout the reader must
 * handle (strips or tiles, contiguous or planar, none/LZW/deflate,
 * 8/16-bit unsigned or 32-bit float), holding a closed-form pattern so a
 * test knows every expected sample without running our reader. Used by
 * test_eurosat.c (reading each layout) and test_fuzz_parsers.c (seeds). */
#ifndef MMCHAIN_TIFF_FIXTURE_H
#define MMCHAIN_TIFF_FIXTURE_H

#include <tiffio.h>

typedef struct mc_test_tiff_spec {
    int h, w, c;
    int bits;          /* 8, 16, 32 */
    int sample_format; /* SAMPLEFORMAT_UINT or SAMPLEFORMAT_IEEEFP */
    int compression;   /* COMPRESSION_NONE, _LZW, _ADOBE_DEFLATE */
    int planar;        /* PLANARCONFIG_CONTIG or _SEPARATE */
    int tile;          /* 0: strips of 3 rows; else square tiles of this size */
    int tile_id;       /* shifts the pattern so tiles differ */
} mc_test_tiff_spec;

/* The value of band b at (y, x) in every test file: distinct per band and
 * pixel, within 0..65535. */
double mc_test_tiff_pattern(int b, int y, int x, int tile_id);
/* The pattern as the file of `s` stores it (mod 256 for 8-bit files,
 * v * 0.5 - 100 for float files: negative values too). */
double mc_test_tiff_value(const mc_test_tiff_spec *s, int b, int y, int x);
/* Write the TIFF `s` describes (fails the test when libtiff cannot). The
 * directory comes first and the pixels after (like EuroSAT's files), so
 * cutting the file short loses pixel data, not the directory. */
void mc_test_write_tiff(const char *path, const mc_test_tiff_spec *s);

#endif

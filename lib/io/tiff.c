/* TIFF rasters with libtiff: a general reader (any size, band count,
 * compression, strip/tile and contiguous/planar layout) and a writer for
 * EuroSAT-MS-style uint16 tiles.
 *
 * libtiff reports problems through handlers. We open every file with
 * TIFFOpenExt and a per-file handler that copies the message into a buffer on
 * our stack, so a failing read becomes an mc_error naming the file (and two
 * threads reading two files never mix their messages). */
#include "mmchain/image.h"
#include "mmchain/io.h"

#include "io/decode_limit.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

/* ---- error capture ---- */

typedef struct tiff_messages {
    char text[512]; /* the first error libtiff reported on this file */
} tiff_messages;

static int capture_error(TIFF *tif, void *user_data, const char *module, const char *fmt,
                         va_list args) {
    (void)tif;
    tiff_messages *messages = user_data;
    if (messages->text[0] == '\0') {
        int n = snprintf(messages->text, sizeof messages->text, "%s: ", module ? module : "libtiff");
        if (n < 0 || (size_t)n >= sizeof messages->text) n = 0;
        vsnprintf(messages->text + n, sizeof messages->text - (size_t)n, fmt, args);
    }
    return 1; /* handled: do not also print to stderr */
}

static int ignore_warning(TIFF *tif, void *user_data, const char *module, const char *fmt,
                          va_list args) {
    /* GeoTIFF tags unknown to libtiff produce warnings; they are harmless. */
    (void)tif, (void)user_data, (void)module, (void)fmt, (void)args;
    return 1;
}

/* max_alloc: the largest single allocation libtiff may make for this file
 * (0: no limit), so a hostile header cannot make libtiff itself allocate
 * what the file could never fill. */
static TIFF *open_tiff(const char *path, const char *mode, tmsize_t max_alloc, tiff_messages *messages) {
    messages->text[0] = '\0';
    TIFFOpenOptions *options = TIFFOpenOptionsAlloc();
    if (!options) return NULL;
    if (max_alloc > 0) TIFFOpenOptionsSetMaxSingleMemAlloc(options, max_alloc);
    TIFFOpenOptionsSetErrorHandlerExtR(options, capture_error, messages);
    TIFFOpenOptionsSetWarningHandlerExtR(options, ignore_warning, messages);
    TIFF *tif = TIFFOpenExt(path, mode, options);
    TIFFOpenOptionsFree(options);
    return tif;
}

/* ---- reading ---- */

void mc_raster_free(mc_raster *raster) {
    if (!raster) return;
    free(raster->data);
    raster->data = NULL;
}

/* The value of sample i of a decoded buffer, as float. libtiff has already
 * swapped the bytes to this machine's order. */
static float sample_value(const unsigned char *buf, size_t i, int bytes, char kind) {
    const unsigned char *p = buf + i * (size_t)bytes;
    switch (kind) {
    case 'u':
        if (bytes == 1) return (float)p[0];
        if (bytes == 2) { uint16_t v; memcpy(&v, p, 2); return (float)v; }
        { uint32_t v; memcpy(&v, p, 4); return (float)v; }
    case 'i':
        if (bytes == 1) return (float)(int8_t)p[0];
        if (bytes == 2) { int16_t v; memcpy(&v, p, 2); return (float)v; }
        { int32_t v; memcpy(&v, p, 4); return (float)v; }
    default:
        if (bytes == 4) { float v; memcpy(&v, p, 4); return v; }
        { double v; memcpy(&v, p, 8); return (float)v; }
    }
}

typedef struct tiff_layout {
    uint32_t width, height;
    uint16_t bands, bits, planar, compression;
    char kind;
    int bytes; /* per sample */
} tiff_layout;

/* The codecs we let libtiff run, and how far each can expand its data.
 * Other codecs (old-style JPEG, ThunderScan, NeXT, ...) appear in no data
 * this library reads and are the least hardened parts of libtiff, so a
 * file (or a flipped bit) asking for one is refused. Ratios: deflate
 * 1032:1 (RFC 1951); LZW 12-bit codes of at most 4096 bytes, < 2731:1;
 * PackBits 2 bytes for 128, 64:1; JPEG 4096:1, far beyond what real
 * rasters reach. zstd writes a run of one byte as an RLE block, 4 bytes
 * for up to 128 KiB (32768:1), and LZMA codes a long run of zeros in
 * fractions of a bit a match: both get 65535:1, so that a mostly-nodata
 * raster is not refused as corrupt (what a decode allocates is bounded
 * in absolute terms too: decode_limit.h). */
static unsigned max_expansion(uint16_t compression) {
    switch (compression) {
    case COMPRESSION_NONE: return 1;
    case COMPRESSION_PACKBITS: return 64;
    case COMPRESSION_ADOBE_DEFLATE: case COMPRESSION_DEFLATE: return MC_DEFLATE_MAX_RATIO;
    case COMPRESSION_LZW: return 2731;
    case COMPRESSION_JPEG: return 4096;
    case COMPRESSION_ZSTD: case COMPRESSION_LZMA: return 65535;
    default: return 0; /* not supported */
    }
}

static mc_status read_layout(TIFF *tif, const char *path, tiff_layout *layout) {
    uint16_t sample_format = SAMPLEFORMAT_UINT;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &layout->width) ||
        !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &layout->height))
        return mc_error(MC_ERR_FORMAT, "%s: TIFF has no image width/length", path);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &layout->bands);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &layout->bits);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &layout->planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &sample_format);
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &layout->compression);
    if (max_expansion(layout->compression) == 0)
        return mc_error(MC_ERR_UNSUPPORTED, "%s: TIFF compression %u is not supported (expected none, "
                        "LZW, deflate, PackBits, JPEG, zstd or LZMA)", path, layout->compression);
    /* Fewer than 2^31 values: the raster's int sizes hold every dimension,
     * and the pixel count, checked first, cannot wrap when the bands
     * multiply it. */
    const uint64_t pixels = (uint64_t)layout->width * layout->height;
    if (layout->width == 0 || layout->height == 0 || layout->bands == 0 || pixels > INT_MAX ||
        pixels * layout->bands > INT_MAX)
        return mc_error(MC_ERR_FORMAT, "%s: TIFF size %ux%u with %u bands is empty or too large",
                        path, layout->width, layout->height, layout->bands);
    switch (sample_format) {
    case SAMPLEFORMAT_UINT: layout->kind = 'u'; break;
    case SAMPLEFORMAT_INT: layout->kind = 'i'; break;
    case SAMPLEFORMAT_IEEEFP: layout->kind = 'f'; break;
    default:
        return mc_error(MC_ERR_UNSUPPORTED, "%s: TIFF sample format %u is not supported "
                        "(expected unsigned, signed or float)", path, sample_format);
    }
    bool integer_ok = layout->kind != 'f' && (layout->bits == 8 || layout->bits == 16 || layout->bits == 32);
    bool float_ok = layout->kind == 'f' && (layout->bits == 32 || layout->bits == 64);
    if (!integer_ok && !float_ok)
        return mc_error(MC_ERR_UNSUPPORTED, "%s: %u-bit %s TIFF samples are not supported "
                        "(expected 8/16/32-bit integers or 32/64-bit floats)", path, layout->bits,
                        layout->kind == 'f' ? "float" : "integer");
    layout->bytes = layout->bits / 8;
    return MC_OK;
}

/* Copy one decoded block (a strip or a tile) into the planar raster.
 * block: (block_rows, block_cols, samples) interleaved, samples = bands for
 * contiguous files and 1 (band `plane`) for planar ones. */
static void scatter_block(const tiff_layout *layout, const unsigned char *block, uint32_t row0,
                          uint32_t col0, uint32_t block_rows, uint32_t block_cols, int plane,
                          float *dst /* (bands, height, width) */) {
    int samples = layout->planar == PLANARCONFIG_SEPARATE ? 1 : layout->bands;
    if (layout->kind == 'u' && layout->bytes == 2) {
        /* EuroSAT's case (uint16), without the per-sample type switch. */
        for (uint32_t r = 0; r < block_rows && row0 + r < layout->height; r++)
            for (uint32_t c = 0; c < block_cols && col0 + c < layout->width; c++) {
                const unsigned char *pixel = block + ((size_t)r * block_cols + c) * (size_t)samples * 2;
                for (int s = 0; s < samples; s++) {
                    uint16_t v;
                    memcpy(&v, pixel + 2 * s, 2);
                    int band = layout->planar == PLANARCONFIG_SEPARATE ? plane : s;
                    dst[((size_t)band * layout->height + row0 + r) * layout->width + col0 + c] = (float)v;
                }
            }
        return;
    }
    for (uint32_t r = 0; r < block_rows && row0 + r < layout->height; r++)
        for (uint32_t c = 0; c < block_cols && col0 + c < layout->width; c++)
            for (int s = 0; s < samples; s++) {
                int band = layout->planar == PLANARCONFIG_SEPARATE ? plane : s;
                size_t src = ((size_t)r * block_cols + c) * (size_t)samples + (size_t)s;
                size_t to = ((size_t)band * layout->height + row0 + r) * layout->width + col0 + c;
                dst[to] = sample_value(block, src, layout->bytes, layout->kind);
            }
}

static mc_status read_failed(const char *path, const char *what, uint32_t n,
                             const tiff_messages *messages) {
    return mc_error(MC_ERR_FORMAT, "%s: cannot decode TIFF %s %u (file truncated or corrupt?): %s",
                    path, what, n, messages->text[0] ? messages->text : "no detail from libtiff");
}

/* The bytes one decoded block must hold for scatter_block: rows x cols
 * pixels of `samples` samples. libtiff's own block size is smaller when the
 * layout is one scatter_block does not handle (subsampled YCbCr). */
static mc_status check_block(const char *path, const tiff_layout *layout, tmsize_t block_size,
                             uint32_t rows, uint32_t cols, const char *what) {
    int samples = layout->planar == PLANARCONFIG_SEPARATE ? 1 : layout->bands;
    uint64_t needed = (uint64_t)rows * cols * (uint64_t)samples * (uint64_t)layout->bytes;
    if (block_size <= 0 || (uint64_t)block_size < needed)
        return mc_error(MC_ERR_UNSUPPORTED, "%s: TIFF %s of %ux%u pixels x %d samples decodes to %lld "
                        "bytes, expected %llu (subsampled or packed layouts are not supported)", path,
                        what, rows, cols, samples, (long long)block_size, (unsigned long long)needed);
    return MC_OK;
}

static mc_status read_strips(TIFF *tif, const char *path, const tiff_layout *layout,
                             const tiff_messages *messages, unsigned char *block, tmsize_t block_size,
                             float *dst) {
    uint32_t rows_per_strip = layout->height;
    TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rows_per_strip);
    if (rows_per_strip == 0) return mc_error(MC_ERR_FORMAT, "%s: TIFF has 0 rows per strip", path);
    if (rows_per_strip > layout->height) rows_per_strip = layout->height;
    MC_TRY(check_block(path, layout, block_size, rows_per_strip, layout->width, "strip"));
    int planes = layout->planar == PLANARCONFIG_SEPARATE ? layout->bands : 1;
    for (int plane = 0; plane < planes; plane++)
        for (uint32_t row = 0; row < layout->height; row += rows_per_strip) {
            uint32_t strip = TIFFComputeStrip(tif, row, (uint16_t)plane);
            if (TIFFReadEncodedStrip(tif, strip, block, block_size) < 0)
                return read_failed(path, "strip", strip, messages);
            scatter_block(layout, block, row, 0, rows_per_strip, layout->width, plane, dst);
        }
    return MC_OK;
}

static mc_status read_tiles(TIFF *tif, const char *path, const tiff_layout *layout,
                            const tiff_messages *messages, unsigned char *block, tmsize_t block_size,
                            float *dst) {
    uint32_t tile_w = 0, tile_h = 0;
    TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tile_w);
    TIFFGetField(tif, TIFFTAG_TILELENGTH, &tile_h);
    if (tile_w == 0 || tile_h == 0)
        return mc_error(MC_ERR_FORMAT, "%s: tiled TIFF without tile width/length", path);
    MC_TRY(check_block(path, layout, block_size, tile_h, tile_w, "tile"));
    int planes = layout->planar == PLANARCONFIG_SEPARATE ? layout->bands : 1;
    for (int plane = 0; plane < planes; plane++)
        for (uint32_t y = 0; y < layout->height; y += tile_h)
            for (uint32_t x = 0; x < layout->width; x += tile_w) {
                uint32_t tile = TIFFComputeTile(tif, x, y, 0, (uint16_t)plane);
                if (TIFFReadEncodedTile(tif, tile, block, block_size) < 0)
                    return read_failed(path, "tile", tile, messages);
                scatter_block(layout, block, y, x, tile_h, tile_w, plane, dst);
            }
    return MC_OK;
}

/* Tell "missing", "unreadable" and "not a TIFF" apart before libtiff does,
 * so each gets its own clear message; *size gets the file's size. */
static mc_status check_tiff_file(const char *path, uint64_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return mc_error(MC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    mc_status status = mc_file_size(f, path, size);
    fclose(f);
    MC_TRY(status);
    bool little = got == 4 && magic[0] == 'I' && magic[1] == 'I' && (magic[2] == 42 || magic[2] == 43) && magic[3] == 0;
    bool big = got == 4 && magic[0] == 'M' && magic[1] == 'M' && magic[2] == 0 && (magic[3] == 42 || magic[3] == 43);
    if (!little && !big)
        return mc_error(MC_ERR_FORMAT, "%s: not a TIFF file (expected 'II*' or 'MM*' magic bytes, "
                        "found %zu bytes %02x %02x %02x %02x)", path, got, magic[0], magic[1],
                        magic[2], magic[3]);
    return MC_OK;
}

/* The most a TIFF of `file_size` bytes may make libtiff allocate in one
 * block (its directories, a codec's buffers): 4096 times the file plus
 * room for directories. The raster and the decode buffer are ours, bounded
 * by max_expansion and decode_limit.h (a zstd strip decodes into our
 * buffer, so its 65535:1 needs no larger budget here). */
static uint64_t tiff_alloc_budget(uint64_t file_size) { return file_size * 4096u + (1u << 20); }

/* Allocate the decode buffer and the raster once the header has passed:
 * both sized from header fields, so both are bounded by the file first. */
static mc_status alloc_buffers(TIFF *tif, const char *path, const tiff_layout *layout,
                               uint64_t file_size, tmsize_t *block_size, unsigned char **block,
                               float **data) {
    const char *format = TIFFIsTiled(tif) ? "TIFF tile" : "TIFF strip";
    *block_size = TIFFIsTiled(tif) ? TIFFTileSize(tif) : TIFFStripSize(tif);
    if (*block_size <= 0) return mc_error(MC_ERR_FORMAT, "%s: TIFF declares no strip/tile data", path);
    uint64_t numel = (uint64_t)layout->width * layout->height * layout->bands;
    unsigned ratio = max_expansion(layout->compression);
    /* A block may hold padding (partial tiles): at most a whole block more. */
    MC_TRY(mc_check_decoded_size(path, "TIFF", numel * (uint64_t)layout->bytes, file_size, ratio, 4096));
    MC_TRY(mc_check_decoded_size(path, format, (uint64_t)*block_size, file_size, ratio, 1u << 16));
    MC_TRY(mc_check_decoded_memory(path, "TIFF", layout->width, layout->height, layout->bands,
                                   (uint64_t)*block_size + numel * sizeof **data));
    *block = malloc((size_t)*block_size);
    *data = malloc((size_t)numel * sizeof **data);
    if (!*block || !*data)
        return mc_error(MC_ERR_NOMEM, "%s: out of memory for a %ux%ux%u raster", path,
                        layout->bands, layout->height, layout->width);
    return MC_OK;
}

mc_status mc_tiff_read(const char *path, mc_raster *out) {
    if (!path || !out) return mc_error(MC_ERR_ARG, "mc_tiff_read: NULL argument");
    memset(out, 0, sizeof *out);
    uint64_t file_size = 0;
    MC_TRY(check_tiff_file(path, &file_size));
    tiff_messages messages;
    TIFF *tif = open_tiff(path, "r", (tmsize_t)tiff_alloc_budget(file_size), &messages);
    if (!tif)
        return mc_error(MC_ERR_FORMAT, "%s: cannot read TIFF header: %s", path,
                        messages.text[0] ? messages.text : "libtiff could not open it");
    tiff_layout layout;
    unsigned char *block = NULL;
    float *data = NULL;
    tmsize_t block_size = 0;
    mc_status status = read_layout(tif, path, &layout);
    if (status == MC_OK) status = alloc_buffers(tif, path, &layout, file_size, &block_size, &block, &data);
    if (status == MC_OK)
        status = TIFFIsTiled(tif) ? read_tiles(tif, path, &layout, &messages, block, block_size, data)
                                  : read_strips(tif, path, &layout, &messages, block, block_size, data);
    /* Float samples may be NaN or Inf (a "no data" marker, a broken
     * export): refused here, naming the file, rather than training on them. */
    if (status == MC_OK && layout.kind == 'f')
        status = mc_check_finite(data, (int64_t)layout.width * layout.height * layout.bands, path);
    TIFFClose(tif);
    free(block);
    if (status != MC_OK) {
        free(data);
        return status;
    }
    out->height = (int)layout.height;
    out->width = (int)layout.width;
    out->bands = layout.bands;
    out->bits_per_sample = layout.bits;
    out->sample_kind = layout.kind;
    out->data = data;
    return MC_OK;
}

/* ---- writing ---- */

enum { EUROSAT_ROWS_PER_STRIP = 4 };

static mc_status set_u16_tags(TIFF *tif, int h, int w, int c) {
    bool ok = TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, (uint32_t)w) &&
              TIFFSetField(tif, TIFFTAG_IMAGELENGTH, (uint32_t)h) &&
              TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)c) &&
              TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, (uint16_t)16) &&
              TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, (uint16_t)SAMPLEFORMAT_UINT) &&
              TIFFSetField(tif, TIFFTAG_COMPRESSION, (uint16_t)COMPRESSION_NONE) &&
              TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, (uint16_t)PHOTOMETRIC_MINISBLACK) &&
              TIFFSetField(tif, TIFFTAG_PLANARCONFIG, (uint16_t)PLANARCONFIG_CONTIG) &&
              TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, (uint32_t)EUROSAT_ROWS_PER_STRIP);
    if (ok && c > 1) {
        /* Like EuroSAT's files: one grey channel plus c-1 "unspecified"
         * extra samples, which keeps readers from guessing a colour model. */
        uint16_t extra[256] = {0};
        ok = TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, (uint16_t)(c - 1), extra);
    }
    return ok ? MC_OK : MC_ERR_FORMAT;
}

/* The pixels to write and the name to report (the destination, not the
 * temporary file libtiff writes). */
typedef struct u16_tile {
    const char *path;
    const uint16_t *pixels; /* (h, w, c) interleaved */
    int h, w, c;
} u16_tile;

static mc_status write_u16_tiff(void *ctx, const char *tmp_path) {
    const u16_tile *t = ctx;
    const char *path = t->path;
    const uint16_t *pixels = t->pixels;
    int h = t->h, w = t->w, c = t->c;
    tiff_messages messages;
    TIFF *tif = open_tiff(tmp_path, "w", 0, &messages);
    if (!tif)
        return mc_error(MC_ERR_IO, "%s: cannot create TIFF: %s", path,
                        messages.text[0] ? messages.text : strerror(errno));
    mc_status status = set_u16_tags(tif, h, w, c);
    /* Write the directory before the pixels, as EuroSAT's files have it (IFD
     * at offset 8); the final TIFFWriteDirectory rewrites it in place. */
    if (status == MC_OK && !TIFFCheckpointDirectory(tif)) status = MC_ERR_IO;
    size_t row_values = (size_t)w * (size_t)c;
    for (int row0 = 0; status == MC_OK && row0 < h; row0 += EUROSAT_ROWS_PER_STRIP) {
        int rows = h - row0 < EUROSAT_ROWS_PER_STRIP ? h - row0 : EUROSAT_ROWS_PER_STRIP;
        /* libtiff does not modify the buffer for uncompressed native-order data. */
        void *strip = (void *)(pixels + (size_t)row0 * row_values);
        tmsize_t bytes = (tmsize_t)((size_t)rows * row_values * sizeof(uint16_t));
        if (TIFFWriteEncodedStrip(tif, (uint32_t)(row0 / EUROSAT_ROWS_PER_STRIP), strip, bytes) != bytes)
            status = MC_ERR_IO;
    }
    if (status == MC_OK && !TIFFWriteDirectory(tif)) status = MC_ERR_IO;
    TIFFClose(tif);
    if (status != MC_OK)
        return mc_error(status, "%s: writing a %dx%dx%d uint16 TIFF failed: %s", path, h, w, c,
                        messages.text[0] ? messages.text : "libtiff gave no detail");
    return MC_OK;
}

/* Atomic (io.h): libtiff writes a temporary file beside `path`, which is
 * renamed over it only once complete, so a failed write (a full disk)
 * leaves no truncated tile and any previous file intact. */
mc_status mc_tiff_write_u16(const char *path, const uint16_t *pixels, int h, int w, int c) {
    if (!path || !pixels) return mc_error(MC_ERR_ARG, "mc_tiff_write_u16: NULL argument");
    if (h <= 0 || w <= 0 || c <= 0 || c > 256)
        return mc_error(MC_ERR_ARG, "mc_tiff_write_u16 %s: size %dx%d with %d bands is invalid "
                        "(expected positive sizes and 1..256 bands)", path, h, w, c);
    u16_tile tile = {path, pixels, h, w, c};
    return mc_write_file_atomic_via(path, write_u16_tiff, &tile);
}

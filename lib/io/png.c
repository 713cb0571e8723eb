/* PNG read and write with libpng.
 *
 * libpng reports a fatal problem (a bad CRC, a truncated stream) by calling
 * an error function that must not return; the documented way out is
 * longjmp back to a setjmp in the caller. Our error function copies
 * libpng's message into a buffer first, so the mc_error we return says what
 * was wrong. Pointers assigned after setjmp and read after the longjmp are
 * `volatile` (C11 7.13.2.1: otherwise their values would be indeterminate). */
#include "mmchain/image.h"
#include "mmchain/io.h"

#include "io/decode_limit.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct png_messages {
    char text[256];
    /* Set (with its mc_error message) when we, not libpng, stop the read. */
    mc_status status;
} png_messages;

static void on_png_error(png_structp png, png_const_charp message) {
    png_messages *messages = png_get_error_ptr(png);
    snprintf(messages->text, sizeof messages->text, "%s", message);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp message) {
    (void)png, (void)message; /* e.g. "iCCP: known incorrect sRGB profile": harmless */
}

/* ---- reading ---- */

/* Ask libpng for 8- or 16-bit grey / grey+alpha / RGB / RGBA, whatever the file holds. */
static void request_plain_samples(png_structp png, png_infop info) {
    int color_type = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* samples: (H, W, C) big-endian 8/16-bit -> image (C, H, W) in 0..1. */
static void samples_to_planes(const unsigned char *samples, int h, int w, int c, int depth,
                              float *image) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) {
                size_t i = ((size_t)y * w + x) * c + ch;
                float v = depth == 16 ? (float)((samples[2 * i] << 8) | samples[2 * i + 1]) / 65535.0f
                                      : (float)samples[i] / 255.0f;
                image[((size_t)ch * h + y) * w + x] = v;
            }
}

mc_status mc_png_read(const char *path, mc_tensor **out, int *bit_depth) {
    if (!path || !out) return mc_error(MC_ERR_ARG, "mc_png_read: NULL argument");
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (!file) return mc_error(MC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char signature[8] = {0};
    if (fread(signature, 1, 8, file) != 8 || png_sig_cmp(signature, 0, 8) != 0) {
        fclose(file);
        return mc_error(MC_ERR_FORMAT, "%s: not a PNG file (bad signature)", path);
    }
    png_messages messages = {{0}, MC_OK};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &messages, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        fclose(file);
        return mc_error(MC_ERR_NOMEM, "%s: out of memory creating the PNG reader", path);
    }
    unsigned char *volatile samples = NULL;
    png_bytep *volatile rows = NULL;
    mc_tensor *volatile image = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(file);
        free(samples);
        free(rows);
        mc_tensor_free(image);
        if (messages.status != MC_OK) return messages.status;
        return mc_error(MC_ERR_FORMAT, "%s: corrupt PNG: %s", path, messages.text);
    }
    png_init_io(png, file);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    /* The rows as stored (one filter byte each) come out of deflate: check
     * the header's size against the file before allocating anything. The
     * expansions below (palette -> RGBA, 1-bit -> 8-bit) are at most 32x,
     * so what is allocated is checked again after them. */
    uint64_t file_size = 0;
    uint64_t stored = ((uint64_t)png_get_rowbytes(png, info) + 1) * png_get_image_height(png, info);
    messages.status = mc_file_size(file, path, &file_size);
    if (messages.status == MC_OK)
        messages.status = mc_check_decoded_size(path, "PNG", stored, file_size, MC_DEFLATE_MAX_RATIO, 4096);
    if (messages.status != MC_OK) png_longjmp(png, 1);
    request_plain_samples(png, info);
    int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    int c = png_get_channels(png, info), depth = png_get_bit_depth(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    /* The decoded samples (up to 32 times the stored bytes: a 1-bit
     * palette image as RGBA) and the floats they become, under the
     * absolute cap that the TIFF and JPEG readers apply to theirs. */
    const uint64_t expanded = (uint64_t)row_bytes * (uint64_t)h;
    const uint64_t floats = (uint64_t)c * (uint64_t)h * (uint64_t)w * sizeof(float);
    messages.status = mc_check_decoded_memory(path, "PNG", (uint64_t)w, (uint64_t)h, (uint64_t)c,
                                              expanded + floats);
    if (messages.status != MC_OK) png_longjmp(png, 1);
    samples = malloc(row_bytes * (size_t)h);
    rows = malloc(sizeof(png_bytep) * (size_t)h);
    mc_tensor *made = NULL;
    if (mc_tensor_new(&made, MC_SHAPE(c, h, w), path) == MC_OK) image = made;
    if (!samples || !rows || !image) {
        messages.status = mc_error(MC_ERR_NOMEM, "%s: out of memory for a PNG of %dx%d, %d channels",
                                   path, w, h, c);
        png_longjmp(png, 1);
    }
    for (int y = 0; y < h; y++) rows[y] = samples + (size_t)y * row_bytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    samples_to_planes(samples, h, w, c, depth, image->data);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(file);
    free(samples);
    free(rows);
    if (bit_depth) *bit_depth = depth;
    *out = image;
    return MC_OK;
}

/* ---- writing ---- */

static unsigned quantize(float v, unsigned max_value) {
    if (!(v > 0.0f)) return 0; /* also NaN -> 0 */
    if (v >= 1.0f) return max_value;
    return (unsigned)(v * (float)max_value + 0.5f);
}

/* image (C, H, W) in 0..1 -> samples (H, W, C), big-endian when 16-bit. */
static void planes_to_samples(const float *image, int h, int w, int c, int depth,
                              unsigned char *samples) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) {
                size_t i = ((size_t)y * w + x) * c + ch;
                float v = image[((size_t)ch * h + y) * w + x];
                if (depth == 16) {
                    unsigned q = quantize(v, 65535);
                    samples[2 * i] = (unsigned char)(q >> 8);
                    samples[2 * i + 1] = (unsigned char)(q & 0xff);
                } else {
                    samples[i] = (unsigned char)quantize(v, 255);
                }
            }
}

static mc_status check_writable_image(const char *path, const mc_tensor *image, int bit_depth) {
    if (!path || !image) return mc_error(MC_ERR_ARG, "mc_png_write: NULL argument");
    char buf[160];
    if (image->shape.ndim != 3 || image->shape.dim[0] < 1 || image->shape.dim[0] > 4)
        return mc_error(MC_ERR_SHAPE, "mc_png_write %s: image %s must be (C, H, W) with C in 1..4",
                        path, mc_tensor_str(image, buf, sizeof buf));
    if (image->shape.dim[1] > 1000000 || image->shape.dim[2] > 1000000)
        return mc_error(MC_ERR_SHAPE, "mc_png_write %s: image %s is too large for PNG", path,
                        mc_tensor_str(image, buf, sizeof buf));
    if (bit_depth != 8 && bit_depth != 16)
        return mc_error(MC_ERR_ARG, "mc_png_write %s: bit depth %d (expected 8 or 16)", path, bit_depth);
    return MC_OK;
}

/* What the streaming writer needs: the image as 8/16-bit rows. */
typedef struct png_rows {
    const char *path;
    int width, height, channels, bit_depth;
    png_bytep *rows;
} png_rows;

/* Encode the rows into the open temporary file of mc_write_file_atomic_with. */
static mc_status write_png_stream(void *ctx, FILE *file) {
    const png_rows *image = ctx;
    static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                       PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    png_messages messages = {{0}, MC_OK};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &messages, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, info ? &info : NULL);
        return mc_error(MC_ERR_IO, "%s: writing PNG failed: %s", image->path,
                        messages.text[0] ? messages.text : "out of memory");
    }
    png_init_io(png, file);
    png_set_IHDR(png, info, (png_uint_32)image->width, (png_uint_32)image->height, image->bit_depth,
                 color_types[image->channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, image->rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return MC_OK;
}

/* Atomic (io.h): a full disk or a failed write leaves any previous file
 * at `path` as it was and no partial PNG behind. */
mc_status mc_png_write(const char *path, const mc_tensor *image, int bit_depth) {
    MC_TRY(check_writable_image(path, image, bit_depth));
    int c = (int)image->shape.dim[0], h = (int)image->shape.dim[1], w = (int)image->shape.dim[2];
    size_t row_bytes = (size_t)w * c * (size_t)(bit_depth / 8);
    unsigned char *samples = malloc(row_bytes * (size_t)h);
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h);
    if (!samples || !rows) {
        free(samples);
        free(rows);
        return mc_error(MC_ERR_NOMEM, "mc_png_write %s: out of memory", path);
    }
    planes_to_samples(image->data, h, w, c, bit_depth, samples);
    for (int y = 0; y < h; y++) rows[y] = samples + (size_t)y * row_bytes;
    png_rows encoded = {path, w, h, c, bit_depth, rows};
    mc_status status = mc_write_file_atomic_with(path, write_png_stream, &encoded);
    free(samples);
    free(rows);
    return status;
}

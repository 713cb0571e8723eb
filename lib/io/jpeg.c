/* JPEG read with libjpeg (libjpeg-turbo).
 *
 * libjpeg's default error manager prints and ends the process — unacceptable in
 * a library. Ours formats the message and longjmps back to mc_jpeg_read.
 * We also treat libjpeg's *warnings* about corrupt data ("Premature end of
 * JPEG file", "Corrupt JPEG data: bad Huffman code") as errors: libjpeg
 * would otherwise fill the missing part with grey and report success, and a
 * silently damaged training image is worse than a clear failure. */
#include "mmchain/image.h"

#include "io/decode_limit.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

typedef struct jpeg_failure {
    struct jpeg_error_mgr manager; /* first: libjpeg casts cinfo->err to this */
    jmp_buf escape;
    char text[JMSG_LENGTH_MAX];
    mc_status status; /* set (with its mc_error message) when we stop the read */
} jpeg_failure;

/* How far a JPEG's samples may outnumber its bytes. Baseline Huffman data
 * needs at least 2 bits (DC + end-of-block) per 8x8 block per component,
 * i.e. at most 256 samples a byte (768 with 4:2:0 chroma); progressive
 * end-of-block runs and arithmetic coding go further on flat images, so we
 * allow 8192:1 — 10x past baseline — and refuse a header that declares
 * more before libjpeg allocates its buffers. */
#define MC_JPEG_MAX_RATIO 8192u

/* The most scans a progressive JPEG may have. Each scan passes over every
 * block of the image again, so a small file of a thousand valid scans
 * (one coefficient each, refined bit by bit) takes minutes to decode
 * without any error or warning. Encoders write about ten (libjpeg's
 * jpeg_simple_progression: 10 for colour); libtiff refuses JPEG data of
 * more than 100, and so does this reader. */
enum { MC_JPEG_MAX_SCANS = 100 };

static void on_jpeg_error(j_common_ptr cinfo) {
    jpeg_failure *failure = (jpeg_failure *)cinfo->err;
    failure->manager.format_message(cinfo, failure->text);
    longjmp(failure->escape, 1);
}

static void on_jpeg_message(j_common_ptr cinfo, int level) {
    if (level < 0) on_jpeg_error(cinfo); /* a warning: corrupt data */
    /* level >= 0: trace messages, ignored */
}

/* libjpeg calls this as it decodes (several times a scan): past
 * MC_JPEG_MAX_SCANS scans the read stops. */
static void on_jpeg_progress(j_common_ptr cinfo) {
    const j_decompress_ptr decompress = (j_decompress_ptr)cinfo;
    if (!cinfo->is_decompressor || decompress->input_scan_number <= MC_JPEG_MAX_SCANS) return;
    jpeg_failure *failure = (jpeg_failure *)cinfo->err;
    snprintf(failure->text, sizeof failure->text,
             "a progressive JPEG of more than %d scans (each scan decodes the whole image again)",
             MC_JPEG_MAX_SCANS);
    longjmp(failure->escape, 1);
}

mc_status mc_jpeg_read(const char *path, mc_tensor **out) {
    if (!path || !out) return mc_error(MC_ERR_ARG, "mc_jpeg_read: NULL argument");
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (!file) return mc_error(MC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct jpeg_decompress_struct cinfo;
    jpeg_failure failure;
    memset(&failure, 0, sizeof failure);
    cinfo.err = jpeg_std_error(&failure.manager);
    failure.manager.error_exit = on_jpeg_error;
    failure.manager.emit_message = on_jpeg_message;
    unsigned char *volatile row = NULL;
    mc_tensor *volatile image = NULL;
    if (setjmp(failure.escape)) {
        jpeg_destroy_decompress(&cinfo);
        fclose(file);
        free(row);
        mc_tensor_free(image);
        if (failure.status != MC_OK) return failure.status;
        return mc_error(MC_ERR_FORMAT, "%s: corrupt or unsupported JPEG: %s", path, failure.text);
    }
    jpeg_create_decompress(&cinfo);
    struct jpeg_progress_mgr progress = {.progress_monitor = on_jpeg_progress};
    cinfo.progress = &progress;
    jpeg_stdio_src(&cinfo, file);
    jpeg_read_header(&cinfo, TRUE);
    uint64_t file_size = 0;
    uint64_t samples = (uint64_t)cinfo.image_width * cinfo.image_height * (uint64_t)cinfo.num_components;
    failure.status = mc_file_size(file, path, &file_size);
    if (failure.status == MC_OK)
        failure.status = mc_check_decoded_size(path, "JPEG", samples, file_size, MC_JPEG_MAX_RATIO, 1u << 16);
    /* What the read allocates: the floats it returns (the 8-bit samples
     * pass a row at a time), and for a progressive file libjpeg's own
     * coefficients of the whole image (2 bytes a sample). */
    if (failure.status == MC_OK)
        failure.status = mc_check_decoded_memory(
            path, "JPEG", cinfo.image_width, cinfo.image_height, (uint64_t)cinfo.num_components,
            samples * sizeof(float) + (cinfo.progressive_mode ? samples * sizeof(JCOEF) : 0));
    if (failure.status != MC_OK) longjmp(failure.escape, 1);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        snprintf(failure.text, sizeof failure.text, "CMYK JPEGs are not supported");
        longjmp(failure.escape, 1);
    }
    /* libjpeg converts YCbCr to RGB; grey stays one channel. */
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, c = cinfo.output_components;
    mc_tensor *made = NULL;
    if (mc_tensor_new(&made, MC_SHAPE(c, h, w), path) == MC_OK) image = made;
    row = malloc((size_t)w * (size_t)c);
    if (!image || !row) {
        failure.status = mc_error(MC_ERR_NOMEM, "%s: out of memory for a JPEG of %dx%d, %d channels",
                                  path, w, h, c);
        longjmp(failure.escape, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        int y = (int)cinfo.output_scanline;
        JSAMPROW rows[1] = {row};
        jpeg_read_scanlines(&cinfo, rows, 1);
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++)
                image->data[((size_t)ch * h + y) * w + x] = (float)row[(size_t)x * c + ch] / 255.0f;
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    fclose(file);
    free(row);
    *out = image;
    return MC_OK;
}

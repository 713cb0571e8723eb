/* mmchain — images: PNG, JPEG and TIFF files, bicubic resize, crops, folders
 * of class folders (CLIP's preprocessing, built on these, is clip.h's).
 *
 * An image is an mc_tensor, not a type of its own: (C, H, W) float, values
 * 0..1 (8-bit v -> v/255, 16-bit v -> v/65535), C = 1 grey, 2 grey+alpha,
 * 3 RGB, 4 RGBA. A batch is (N, C, H, W). This is the NCHW convention of
 * every image at the library's boundary (tensor.h), so an image goes
 * straight into the ops and models without conversion.
 *
 * Resampling is PyTorch's, in two flavours (docs/data.md):
 *   - antialias = false: torch.nn.functional.interpolate(mode="bicubic",
 *     align_corners=False): Keys' cubic convolution with a = -0.75, 4 taps,
 *     borders replicated, source x = (dst + 0.5) * in/out - 0.5;
 *   - antialias = true: interpolate(..., antialias=True), which is PIL's
 *     (and so torchvision's Resize on PIL images) bicubic: a = -0.5, the
 *     kernel stretched by the scale factor when shrinking so every input
 *     pixel contributes, weights clipped to the image and renormalised.
 * Neither clamps the result to 0..1 (torch does not on float tensors). */
#ifndef MMCHAIN_IMAGE_H
#define MMCHAIN_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- files ---- */

/* Read a PNG (8/16-bit, grey, grey+alpha, RGB, RGBA, palette -> RGB(A)) as a
 * heap tensor (C, H, W) in 0..1. *bit_depth (may be NULL) gets 8 or 16.
 * A corrupt or truncated file is an MC_ERR_FORMAT naming it. */
mc_status mc_png_read(const char *path, mc_tensor **out, int *bit_depth);
/* Write image (C, H, W), C in 1..4, values clamped to 0..1 and rounded, as
 * an 8- or 16-bit PNG, atomically (io.h: a failed write leaves any previous
 * file intact and no partial one). */
mc_status mc_png_write(const char *path, const mc_tensor *image, int bit_depth);
/* Read a JPEG (grey or colour; CMYK is refused) as (C, H, W) in 0..1.
 * Corrupt data is an error, never an exit (our own libjpeg error manager). */
mc_status mc_jpeg_read(const char *path, mc_tensor **out);
/* PNG or JPEG, chosen by the file's first bytes, not its name. */
mc_status mc_image_read(const char *path, mc_tensor **out);

/* ---- TIFF files (lib/io/tiff.c) ------------------------------------------ */

/* A decoded raster: every sample converted to float (uint16 values are
 * exact in float). Any size, any band count. */
typedef struct mc_raster {
    int height, width, bands;
    int bits_per_sample;   /* 8, 16, 32, ... as stored in the file */
    char sample_kind;      /* 'u' unsigned int, 'i' signed int, 'f' float */
    float *data;           /* (bands, height, width), band-planar */
} mc_raster;

/* Read a TIFF (strips or tiles, contiguous or planar, none/LZW/deflate/...
 * compression, 8/16/32-bit integer or 32/64-bit float samples). Errors name
 * the file: not a TIFF, truncated, unsupported layout. Free with
 * mc_raster_free. */
mc_status mc_tiff_read(const char *path, mc_raster *out);
void mc_raster_free(mc_raster *raster);

/* Write an uncompressed uint16 TIFF in EuroSAT-MS's layout: pixel-interleaved,
 * `c` samples per pixel, 4 rows per strip, minimal-is-black, no colour model.
 * pixels: (h, w, c) interleaved. Written atomically (io.h). */
mc_status mc_tiff_write_u16(const char *path, const uint16_t *pixels, int h, int w, int c);

/* ---- geometry ---- */

/* Bicubic resize of (C, H, W) or (N, C, H, W) to out_h x out_w (see above). */
mc_status mc_image_resize(const mc_tensor *image, int out_h, int out_w, bool antialias,
                          mc_tensor **out);
/* The same into a caller's out (the image's shape with H, W replaced by
 * out's), with a caller's scratch of mc_image_resize_scratch_floats(image,
 * out's W) floats: no allocation of the image's size, so a caller that
 * resizes a batch every step can keep both in memory it reuses. Results are
 * mc_image_resize's, bit for bit. */
mc_status mc_image_resize_into(const mc_tensor *image, bool antialias, float *scratch, mc_tensor *out);
int64_t mc_image_resize_scratch_floats(const mc_tensor *image, int out_w);
/* The reference: the same resampling computed directly, one output pixel at
 * a time, from the kernel formula (slow; tests compare the two). */
mc_status mc_image_resize_naive(const mc_tensor *image, int out_h, int out_w, bool antialias,
                                mc_tensor **out);
/* The central crop_h x crop_w window (torchvision's CenterCrop offsets:
 * round((H - crop_h) / 2)). Crop must fit inside the image. */
mc_status mc_image_center_crop(const mc_tensor *image, int crop_h, int crop_w, mc_tensor **out);
/* Resize so the shorter side is `size`, the longer side int(size * long /
 * short) (torchvision's Resize(int) rule). */
mc_status mc_image_resize_shorter(const mc_tensor *image, int size, bool antialias, mc_tensor **out);

/* ---- folders of class folders ---- */

/* DIR/<Class>/<image>.{png,jpg,jpeg} (case-insensitive extensions): classes
 * are the sorted sub-folder names, files sorted within each class. */
typedef struct mc_image_folder {
    int num_classes;
    char **class_names; /* num_classes */
    int count;
    char **paths;       /* count */
    int *labels;        /* count */
} mc_image_folder;

mc_status mc_image_folder_open(const char *dir, mc_image_folder *out);
/* The same listing for any file kinds: extensions is a NULL-terminated list
 * of lower-case extensions without the dot ({"tif", "tiff", NULL}). Errors:
 * no class folders, a class folder without matching files, an unreadable
 * folder — each naming the folder. */
mc_status mc_class_folder_scan(const char *dir, const char *const *extensions, mc_image_folder *out);
void mc_image_folder_free(mc_image_folder *folder);
/* Load images indices[0..n) into `out` (n, 3, H, W) in 0..1, resizing
 * (bicubic, antialias as given) any image whose size differs; grey images
 * are repeated to 3 channels, alpha is dropped. */
mc_status mc_image_folder_load(const mc_image_folder *folder, const int *indices, int n,
                               bool antialias, mc_tensor *out);
/* Load one image file into out[n] of an (N, 3, H, W) batch, as above. */
mc_status mc_image_load_into(const char *path, bool antialias, mc_tensor *batch, int n);

#ifdef __cplusplus
}
#endif
#endif

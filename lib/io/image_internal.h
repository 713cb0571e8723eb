/* What lib/io/image.c shares with the rest of the library (internal): the
 * parallel per-image loop that keeps the first failure's message, and the
 * step that puts a decoded image into a batch row. mc_image_folder_load
 * and the images kept as bytes (lib/chain/image_source.c) both go through
 * them, so a batch holds the same floats either way. */
#ifndef MMCHAIN_LIB_IO_IMAGE_INTERNAL_H
#define MMCHAIN_LIB_IO_IMAGE_INTERNAL_H

#include <stdbool.h>

#include "mmchain/error.h"
#include "mmchain/tensor.h"

/* one(ctx, i) for i in 0..n-1 in parallel (OpenMP, dynamic schedule: image
 * sizes vary). Error messages are per thread: the first failure's message
 * (the one that names the file) is copied and re-raised on the calling
 * thread with its status. */
mc_status mc_image_each_in_parallel(int n, mc_status (*one)(void *ctx, int i), void *ctx);

/* Image (1..4, h, w) into row n of batch (N, 3, H, W): resized to H x W
 * (bicubic, PyTorch's antialias flavour or not) when its size differs,
 * grey repeated into the three channels, a fourth (alpha) channel dropped. */
mc_status mc_image_put_row(const mc_tensor *image, bool antialias, mc_tensor *batch, int n);

#endif

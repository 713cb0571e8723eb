/* How large an image a file can honestly hold — internal to lib/io.
 *
 * An image header can declare any width, height and band count; a hostile
 * or corrupt file that says 1,000,000 x 1,000,000 would otherwise make the
 * decoder allocate terabytes before reading a single pixel. Every decoder
 * therefore checks, before allocating, that the declared decoded size could
 * come out of a file of this size: a compressed stream expands at most by
 * its codec's worst-case ratio (deflate: 1032:1, RFC 1951 — a 258-byte
 * match in about 2 bits), and uncompressed data takes exactly its size.
 * What passes is also capped in absolute terms (MC_DECODE_MAX_BYTES). */
#ifndef MMCHAIN_LIB_IO_DECODE_LIMIT_H
#define MMCHAIN_LIB_IO_DECODE_LIMIT_H

#include <stdint.h>
#include <stdio.h>

#include "mmchain/error.h"

/* deflate's worst case (PNG, TIFF deflate): 258 bytes from a 2-bit code. */
#define MC_DEFLATE_MAX_RATIO 1032u
/* 8 GiB of decoded samples: more than any image this library trains on. */
#define MC_DECODE_MAX_BYTES (8ull << 30)

/* MC_OK when `decoded_bytes` can come from a `file_bytes`-byte file whose
 * data expands at most `max_ratio`:1 (plus `slack` bytes for headers and
 * rounding); otherwise MC_ERR_FORMAT naming the path, the format, both
 * sizes and the ratio. */
mc_status mc_check_decoded_size(const char *path, const char *format, uint64_t decoded_bytes,
                                uint64_t file_bytes, uint64_t max_ratio, uint64_t slack);

/* MC_OK when a decode that allocates `bytes` in all for a w x h image of
 * c channels (its samples and the float tensor they become) stays within
 * MC_DECODE_MAX_BYTES; otherwise MC_ERR_FORMAT naming the path, the format
 * and the image's size. The float tensor alone is 4 bytes a sample, so a
 * header must be checked for it too, not only for its samples. */
mc_status mc_check_decoded_memory(const char *path, const char *format, uint64_t w, uint64_t h,
                                  uint64_t c, uint64_t bytes);

/* The size of an open file in bytes (MC_ERR_IO naming `path` when unknown). */
mc_status mc_file_size(FILE *file, const char *path, uint64_t *size);

#endif

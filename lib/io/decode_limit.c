/* Bounds on decoded image sizes (decode_limit.h). */
#include "io/decode_limit.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

mc_status mc_check_decoded_size(const char *path, const char *format, uint64_t decoded_bytes,
                                uint64_t file_bytes, uint64_t max_ratio, uint64_t slack) {
    /* file_bytes * max_ratio cannot overflow: files are < 2^48 bytes and
     * ratios < 2^16. */
    uint64_t possible = file_bytes * max_ratio + slack;
    if (decoded_bytes > MC_DECODE_MAX_BYTES)
        return mc_error(MC_ERR_FORMAT, "%s: %s header declares %llu bytes of pixels, more than the "
                        "%llu this library decodes (corrupt header?)", path, format,
                        (unsigned long long)decoded_bytes, (unsigned long long)MC_DECODE_MAX_BYTES);
    if (decoded_bytes > possible)
        return mc_error(MC_ERR_FORMAT, "%s: %s header declares %llu bytes of pixels, which a "
                        "%llu-byte file cannot hold (its data expands at most %llu:1): the file "
                        "is truncated or its header corrupt", path, format, (unsigned long long)decoded_bytes,
                        (unsigned long long)file_bytes, (unsigned long long)max_ratio);
    return MC_OK;
}

mc_status mc_check_decoded_memory(const char *path, const char *format, uint64_t w, uint64_t h,
                                  uint64_t c, uint64_t bytes) {
    if (bytes <= MC_DECODE_MAX_BYTES) return MC_OK;
    return mc_error(MC_ERR_FORMAT, "%s: %s header declares %llux%llu pixels of %llu channels, "
                    "%llu bytes to decode them into (the samples and their floats), more than "
                    "the %llu this library decodes (corrupt header?)", path, format,
                    (unsigned long long)w, (unsigned long long)h, (unsigned long long)c,
                    (unsigned long long)bytes, (unsigned long long)MC_DECODE_MAX_BYTES);
}

mc_status mc_file_size(FILE *file, const char *path, uint64_t *size) {
    struct stat info;
    if (fstat(fileno(file), &info) != 0)
        return mc_error(MC_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    *size = info.st_size > 0 ? (uint64_t)info.st_size : 0;
    return MC_OK;
}

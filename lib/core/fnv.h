/* FNV-1a, 64 bits (internal): a fast hash for fingerprints and cache keys,
 * where collisions only matter between a user's own files. Start from
 * MC_FNV1A_OFFSET and feed the bytes in order. */
#ifndef MMCHAIN_LIB_CORE_FNV_H
#define MMCHAIN_LIB_CORE_FNV_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MC_FNV1A_OFFSET 0xcbf29ce484222325ULL

static inline uint64_t mc_fnv1a(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* A string with its terminating NUL, so "ab" + "c" differs from "a" + "bc". */
static inline uint64_t mc_fnv1a_string(uint64_t h, const char *s) {
    return mc_fnv1a(h, s, strlen(s) + 1);
}

#endif

/* Hash functions shared by the tokenizer's files (internal): tokens and
 * words by their bytes, merge rules and pair counts by two ids. */
#ifndef MMCHAIN_LIB_TOKENIZER_TOKENIZER_HASH_H
#define MMCHAIN_LIB_TOKENIZER_TOKENIZER_HASH_H

#include <stddef.h>
#include <stdint.h>

/* FNV-1a over len bytes. */
static inline uint64_t mc_tokenizer_hash_bytes(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Two ids packed in 64 bits, mixed by splitmix64's finaliser. */
static inline uint64_t mc_tokenizer_hash_pair(int32_t left, int32_t right) {
    uint64_t h = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

#endif

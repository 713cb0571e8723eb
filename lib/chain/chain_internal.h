/* Private helpers shared by lib/chain/{targets,train}.c. */
#ifndef MMCHAIN_CHAIN_INTERNAL_H
#define MMCHAIN_CHAIN_INTERNAL_H

#include <stdint.h>

/* splitmix64's finaliser (Steele et al., 2014): decorrelates a seed mixed
 * with an index (epoch, step, tile, crop) before seeding a generator, so
 * neighbouring indices give unrelated streams. */
static inline uint64_t mc_chain_mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

#endif

/* xoshiro256** seeded by splitmix64 (https://prng.di.unimi.it/). */
#include "mmchain/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotate_left(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void mc_rng_seed(mc_rng *rng, uint64_t seed) {
    uint64_t state = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&state);
    rng->has_spare_normal = 0;
    rng->spare_normal = 0.0;
}

uint64_t mc_rng_u64(mc_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotate_left(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotate_left(s[3], 45);
    return result;
}

uint64_t mc_rng_below(mc_rng *rng, uint64_t n) {
    /* Reject the top partial block so every residue is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = mc_rng_u64(rng);
    while (x >= limit);
    return x % n;
}

double mc_rng_uniform(mc_rng *rng) {
    return (double)(mc_rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
}

double mc_rng_normal(mc_rng *rng) {
    if (rng->has_spare_normal) {
        rng->has_spare_normal = 0;
        return rng->spare_normal;
    }
    /* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]. */
    double u1 = 1.0 - mc_rng_uniform(rng);
    double u2 = mc_rng_uniform(rng);
    double radius = sqrt(-2.0 * log(u1));
    double angle = 6.283185307179586 * u2;
    rng->spare_normal = radius * sin(angle);
    rng->has_spare_normal = 1;
    return radius * cos(angle);
}

void mc_rng_shuffle(mc_rng *rng, int *items, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)mc_rng_below(rng, (uint64_t)i + 1);
        int tmp = items[i];
        items[i] = items[j];
        items[j] = tmp;
    }
}

/* mmchain — the random number generator.
 *
 * xoshiro256** (Blackman & Vigna, 2018): 256 bits of state, fast, and good
 * enough for initialisation, dropout, shuffling and augmentation. Seeded with
 * splitmix64 as its authors recommend. Its whole state is four integers, so a
 * checkpoint can store it and a resumed run continues the same sequence. */
#ifndef MMCHAIN_RNG_H
#define MMCHAIN_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mc_rng {
    uint64_t s[4];
    /* Box-Muller makes normals in pairs; the second waits here. */
    int has_spare_normal;
    double spare_normal;
} mc_rng;

void mc_rng_seed(mc_rng *rng, uint64_t seed);
uint64_t mc_rng_u64(mc_rng *rng);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint64_t mc_rng_below(mc_rng *rng, uint64_t n);
/* Uniform double in [0, 1) with 53 random bits. */
double mc_rng_uniform(mc_rng *rng);
/* Standard normal. */
double mc_rng_normal(mc_rng *rng);
/* Fisher-Yates shuffle of n ints. */
void mc_rng_shuffle(mc_rng *rng, int *items, int n);

#ifdef __cplusplus
}
#endif
#endif

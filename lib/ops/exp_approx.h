/* exp_approx: a vectorisable e^x, inlined into the loops that need it
 * (activation.c's sigmoid, quick_gelu, gelu and exp; the attention
 * softmax); mc_exp_kernel (ops.h) is the same over an array. */
#ifndef MMCHAIN_OPS_EXP_APPROX_H
#define MMCHAIN_OPS_EXP_APPROX_H

#include <stdint.h>
#include <string.h>

/* ---- a vectorisable e^x ----
 * libm's expf is a function call the compiler cannot vectorise, and exp sits
 * inside sigmoid, quick_gelu, gelu and softmax — the hot activations of
 * CLIP's towers. This one is branch-free straight-line arithmetic, so loops
 * that call it become SIMD loops. Method (Cephes expf, S. L. Moshier):
 *   x = n ln2 + r with n = round(x / ln2), |r| <= ln2/2, r computed with ln2
 *   split in two parts (Cody & Waite) so that n ln2 is exact enough;
 *   e^r = 1 + r + r^2 P(r), P Cephes's degree-5 minimax polynomial;
 *   e^x = e^r 2^n, with 2^n built in the exponent bits. 2^n is applied as two
 *   halves, 2^(n/2) 2^(n - n/2), so that n = 128 (overflow to +inf) and
 *   n < -126 (gradual underflow to 0) come out right without branches.
 * Accuracy: within 2 ulp of expf over the whole float range (tested). */

/* Clamp x to [-104, 89] (beyond, e^x is +inf or 0 in float anyway), leaving
 * NaN alone. Done with integer compares on the bits: under C's default
 * floating-point environment a float compare may trap, and GCC then refuses
 * to turn the select into SIMD code. Positive floats order like their bit
 * patterns; negative ones by their magnitude bits. */
static inline float mc_clamp_exp_argument(float x) {
    const int32_t bits_89 = 0x42B20000, bits_104 = 0x42D00000, bits_inf = 0x7F800000;
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    int32_t magnitude = bits & 0x7FFFFFFF;
    /* Selects written as bit masks (and & rather than &&): with ?: GCC
     * threads the clamped case into a branch and the loop stays scalar. */
    int32_t negative_mask = bits >> 31; /* all ones when x < 0 */
    int32_t limit_magnitude = (bits_104 & negative_mask) | (bits_89 & ~negative_mask);
    int32_t limit = (int32_t)((uint32_t)negative_mask & 0x80000000u) | limit_magnitude;
    int32_t clamp_mask = -((magnitude <= bits_inf) & (magnitude > limit_magnitude));
    bits = (limit & clamp_mask) | (bits & ~clamp_mask);
    memcpy(&x, &bits, sizeof x);
    return x;
}

static inline float exp_approx(float x) {
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    x = mc_clamp_exp_argument(x);
    float t = x * log2e + round_magic;
    float n = t - round_magic;
    float r = x - n * ln2_hi - n * ln2_lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e_r = p * r * r + r + 1.0f;
    /* n as an integer: the low mantissa bits of t (t = 1.5 * 2^23 + n).
     * Unsigned arithmetic: a NaN input gives garbage bits here (the result
     * is NaN through e_r anyway), and unsigned wrap-around is defined. */
    int32_t t_bits, magic_bits;
    memcpy(&t_bits, &t, sizeof t_bits);
    memcpy(&magic_bits, &round_magic, sizeof magic_bits);
    uint32_t n_bits = (uint32_t)t_bits - (uint32_t)magic_bits;
    int32_t half = (int32_t)n_bits >> 1; /* floor(n / 2) */
    uint32_t bits1 = ((uint32_t)half + 127u) << 23, bits2 = (n_bits - (uint32_t)half + 127u) << 23;
    float scale1, scale2;
    memcpy(&scale1, &bits1, sizeof scale1);
    memcpy(&scale2, &bits2, sizeof scale2);
    return e_r * scale1 * scale2;
}

#endif

/* MC_VECTOR_CLONES: compile a loop kernel twice, for baseline x86-64 and
 * for AVX-512F, and let the loader pick one for this CPU (GCC's
 * target_clones, an ifunc; the OpenMP bodies inside are cloned with it).
 *
 * WHY: the library is built for any x86-64 (SSE2), so one build runs on
 * every machine; its element-wise loops (batch norm, the Winograd
 * transforms, Adam, im2col, ...) then vectorise 4 floats at a time, 16 with
 * AVX-512. Both versions compute exactly the same numbers: the library is
 * compiled in ISO C mode (-std=c11), where GCC does not contract a*b + c
 * into an FMA, and without -ffast-math it vectorises only across
 * independent elements, never reordering a sum.
 *
 * Only for loops of plain arithmetic; calls into libm are not vectorised
 * either way. Expands to nothing on other compilers and architectures. */
#ifndef MMCHAIN_CORE_VECTOR_CLONES_H
#define MMCHAIN_CORE_VECTOR_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MC_VECTOR_CLONES __attribute__((target_clones("avx512f", "default")))
#else
#define MC_VECTOR_CLONES
#endif

#endif

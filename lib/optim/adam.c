/* Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), following
 * torch.optim.Adam / AdamW (1.13, _single_tensor_adam[w]) operation by
 * operation, with t this parameter's step count (1 on the first update):
 *
 *     AdamW only:  param = param * (1 - lr * weight_decay)   (decoupled decay)
 *     Adam only:   grad  = grad + weight_decay * param        (L2 in the gradient)
 *     exp_avg    = beta1 * exp_avg    + (1 - beta1) * grad
 *     exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
 *     step_size  = lr / (1 - beta1^t)
 *     denom      = sqrt(exp_avg_sq) / sqrt(1 - beta2^t) + eps  (eps AFTER the
 *                  bias-corrected square root, which is what PyTorch does)
 *     param      = param - step_size * exp_avg / denom
 *
 * The bias corrections are computed in double, as Python computes them;
 * the element-wise work is float32, as in PyTorch's CPU kernels.
 *
 * Two kernels compute the element-wise part: adam_elements, plain C, the
 * reference and the kernel of CPUs without AVX-512; and adam_avx512, the
 * same operations in the same order on 16 floats at a time. GCC does not
 * vectorise the plain loop: sqrtf may set errno (for a negative argument),
 * so it stays a scalar call. Every operation here (+, -, *, /, sqrt) is
 * correctly rounded in IEEE arithmetic and none is fused into an FMA (ISO C
 * mode: no contraction), so both kernels give the same bits (tested). The
 * update streams four arrays in and three out; vectorised it runs at the
 * speed of memory, which the scalar loop was far from. */
#include "optim/optim_internal.h"
#include "core/parallel.h"

#include <math.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ADAM_HAS_AVX512 1
#endif

/* The per-update constants, computed once per parameter. */
typedef struct adam_constants {
    float beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
    float step_size;             /* lr / (1 - beta1^t) */
    float bias_correction2_sqrt; /* sqrt(1 - beta2^t) */
    float shrink;                /* AdamW: 1 - lr * weight_decay; Adam: 1 */
    float l2_decay;              /* Adam: weight_decay; AdamW: 0 */
    bool decoupled_decay;
} adam_constants;

static adam_constants adam_constants_for(const mc_adam_config *config, float lr, int64_t step,
                                         bool decoupled_decay) {
    const double bias_correction1 = 1.0 - pow((double)config->beta1, (double)step);
    const double bias_correction2 = 1.0 - pow((double)config->beta2, (double)step);
    return (adam_constants){
        .beta1 = config->beta1,
        .beta2 = config->beta2,
        .one_minus_beta1 = (float)(1.0 - (double)config->beta1),
        .one_minus_beta2 = (float)(1.0 - (double)config->beta2),
        .eps = config->eps,
        .step_size = (float)((double)lr / bias_correction1),
        .bias_correction2_sqrt = (float)sqrt(bias_correction2),
        /* AdamW shrinks the parameter; Adam adds the decay to the gradient. */
        .shrink = decoupled_decay ? (float)(1.0 - (double)lr * config->weight_decay) : 1.0f,
        .l2_decay = decoupled_decay ? 0.0f : config->weight_decay,
        .decoupled_decay = decoupled_decay,
    };
}

/* Elements [start, end) of the update, one at a time: the reference.
 * param, grad, exp_avg, exp_avg_sq: (n), n >= end. */
static void adam_elements(const adam_constants *k, int64_t start, int64_t end, float *param,
                          const float *grad, float *exp_avg, float *exp_avg_sq) {
    for (int64_t i = start; i < end; i++) {
        float p = param[i];
        if (k->decoupled_decay) p *= k->shrink;
        float g = grad[i];
        if (k->l2_decay != 0.0f) g += k->l2_decay * p;
        float m = k->beta1 * exp_avg[i] + k->one_minus_beta1 * g;
        float v = k->beta2 * exp_avg_sq[i] + k->one_minus_beta2 * g * g;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        float denom = sqrtf(v) / k->bias_correction2_sqrt + k->eps;
        param[i] = p - k->step_size * (m / denom);
    }
}

#ifdef ADAM_HAS_AVX512
/* The lanes of p that `lanes` sets, zeros elsewhere; and their store. Plain
 * loads and stores where all 16 lanes are set: on AMD Zen 5 the masked ones
 * cost more even with every lane set (measured: a step over 32 M parameters
 * at 2 threads took 12.4-13.3 ms with masks for the tail alone, 19.4-20.6
 * with them throughout). */
__attribute__((target("avx512f"))) static inline __m512 load_lanes(const float *p,
                                                                   __mmask16 lanes) {
    return lanes == 0xFFFF ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(lanes, p);
}
__attribute__((target("avx512f"))) static inline void store_lanes(float *p, __mmask16 lanes,
                                                                  __m512 v) {
    if (lanes == 0xFFFF) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, lanes, v);
}

/* adam_elements on 16 lanes at a time, the last (end - start) % 16 under a
 * mask. Each line mirrors the reference's line above it. */
__attribute__((target("avx512f"))) static void adam_avx512(const adam_constants *k,
                                                           int64_t start, int64_t end,
                                                           float *param, const float *grad,
                                                           float *exp_avg, float *exp_avg_sq) {
    const __m512 beta1 = _mm512_set1_ps(k->beta1), beta2 = _mm512_set1_ps(k->beta2);
    const __m512 one_minus_beta1 = _mm512_set1_ps(k->one_minus_beta1);
    const __m512 one_minus_beta2 = _mm512_set1_ps(k->one_minus_beta2);
    const __m512 eps = _mm512_set1_ps(k->eps), step_size = _mm512_set1_ps(k->step_size);
    const __m512 bias_correction2_sqrt = _mm512_set1_ps(k->bias_correction2_sqrt);
    const __m512 shrink = _mm512_set1_ps(k->shrink), l2_decay = _mm512_set1_ps(k->l2_decay);
    for (int64_t i = start; i < end; i += 16) {
        const __mmask16 lanes = end - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (end - i)) - 1);
        __m512 p = load_lanes(param + i, lanes);
        if (k->decoupled_decay) p = _mm512_mul_ps(p, shrink);
        __m512 g = load_lanes(grad + i, lanes);
        if (k->l2_decay != 0.0f) g = _mm512_add_ps(g, _mm512_mul_ps(l2_decay, p));
        const __m512 m = _mm512_add_ps(_mm512_mul_ps(beta1, load_lanes(exp_avg + i, lanes)),
                                       _mm512_mul_ps(one_minus_beta1, g));
        const __m512 v = _mm512_add_ps(_mm512_mul_ps(beta2, load_lanes(exp_avg_sq + i, lanes)),
                                       _mm512_mul_ps(_mm512_mul_ps(one_minus_beta2, g), g));
        store_lanes(exp_avg + i, lanes, m);
        store_lanes(exp_avg_sq + i, lanes, v);
        const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(v), bias_correction2_sqrt), eps);
        store_lanes(param + i, lanes,
                    _mm512_sub_ps(p, _mm512_mul_ps(step_size, _mm512_div_ps(m, denom))));
    }
}
#endif

/* Runtime choice, made once: the AVX-512 kernel where the CPU has it. */
typedef void (*adam_kernel)(const adam_constants *k, int64_t start, int64_t end, float *param,
                            const float *grad, float *exp_avg, float *exp_avg_sq);

static adam_kernel chosen_kernel(void) {
#ifdef ADAM_HAS_AVX512
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return adam_avx512;
#endif
    return adam_elements;
}

/* Parts of 4096 elements (a multiple of 16, so only the last part has a
 * tail), shared out among the threads. */
enum { ADAM_PART = 4096 };

static void adam_run(adam_kernel kernel, float *param, const float *grad, float *exp_avg,
                     float *exp_avg_sq, int64_t n, const adam_constants *k) {
    const int64_t parts = (n + ADAM_PART - 1) / ADAM_PART;
#pragma omp parallel for schedule(static) if (n >= MC_PARALLEL_MIN_WORK)
    for (int64_t part = 0; part < parts; part++) {
        const int64_t start = part * ADAM_PART;
        const int64_t end = start + ADAM_PART < n ? start + ADAM_PART : n;
        kernel(k, start, end, param, grad, exp_avg, exp_avg_sq);
    }
}

void mc_adam_update(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, int64_t n,
                    const mc_adam_config *config, float lr, int64_t step, bool decoupled_decay) {
    const adam_constants k = adam_constants_for(config, lr, step, decoupled_decay);
    adam_run(chosen_kernel(), param, grad, exp_avg, exp_avg_sq, n, &k);
}

void mc_adam_update_reference(float *param, const float *grad, float *exp_avg, float *exp_avg_sq,
                              int64_t n, const mc_adam_config *config, float lr, int64_t step,
                              bool decoupled_decay) {
    const adam_constants k = adam_constants_for(config, lr, step, decoupled_decay);
    adam_run(adam_elements, param, grad, exp_avg, exp_avg_sq, n, &k);
}

/* activation.c's kernel behind mc_linear_activation (matmul.c): an
 * activation applied in place, with a bias added first. */
#ifndef MMCHAIN_OPS_ACTIVATION_INTERNAL_H
#define MMCHAIN_OPS_ACTIVATION_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "mmchain/ops.h"

/* Whether `activation` is one of the mc_activation values. */
bool mc_activation_valid(mc_activation activation);

/* y[r][j] = f(y[r][j] + bias[j]) in place, f the activation's function as
 * mc_gelu / mc_quick_gelu / mc_relu compute it; bias may be NULL.
 * y: (rows, n); bias: (n). Parallel over rows. */
void mc_bias_activation_rows(mc_activation activation, float *y, const float *bias, int64_t rows,
                             int64_t n);
/* Its reference, mc_bias_activation_rows_naive, is in naive.h. */

#endif

/* Group normalisation (Wu & He 2018), with PyTorch's semantics
 * (F.group_norm): the C channels are split into G groups of C/G consecutive
 * channels; each sample's group is normalised by its own mean and biased
 * variance over its channels and every spatial position, then each channel
 * gets its affine weight and bias. No running statistics: training and
 * evaluation are the same.
 *
 * Channels are last (NHWC inside the library): x (N, ..., C), so a group of
 * sample n is, at every spatial position, a run of C/G contiguous floats.
 *
 * Per (n, group), with M = spatial * C/G elements, x^ = (x - mean) * invstd:
 *   y = x^ * weight[c] + bias[c]
 *   dx = invstd * (dx^ - mean(dx^) - x^ * mean(dx^ * x^)),  dx^ = dy * weight[c]
 *   dweight[c] = sum dy * x^,  dbias[c] = sum dy  (over n and the positions)
 * the same derivation as layer norm's (docs/autograd.md), over the group. */
#include "mmchain/ops.h"

#include <math.h>

typedef struct groupnorm_saved {
    int64_t n, spatial, channels, groups;
    double *mean, *invstd; /* (N, G) */
} groupnorm_saved;

/* x^ of element c at position p of sample n. */
static inline double normalized(const groupnorm_saved *s, const float *x, int64_t n, int64_t p,
                                int64_t c) {
    int64_t group = n * s->groups + c / (s->channels / s->groups);
    return ((double)x[(n * s->spatial + p) * s->channels + c] - s->mean[group]) * s->invstd[group];
}

/* The statistics of every (sample, group), in double. */
static void groupnorm_statistics(groupnorm_saved *s, const float *x, double eps) {
    const int64_t per_group = s->channels / s->groups, count = s->spatial * per_group;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t grp = 0; grp < s->groups; grp++) {
            /* Two passes, the mean and then the squares about it, as
             * layer norm's: E[x^2] - mean^2 cancels when the mean is large
             * next to the spread (values 1e5 + 0.1 N(0, 1): 39 % low). */
            double sum = 0.0, squares = 0.0;
            for (int64_t p = 0; p < s->spatial; p++) {
                const float *run = x + (n * s->spatial + p) * s->channels + grp * per_group;
                for (int64_t k = 0; k < per_group; k++) sum += run[k];
            }
            const double mean = sum / (double)count;
            for (int64_t p = 0; p < s->spatial; p++) {
                const float *run = x + (n * s->spatial + p) * s->channels + grp * per_group;
                for (int64_t k = 0; k < per_group; k++) {
                    const double d = run[k] - mean;
                    squares += d * d;
                }
            }
            const double var = squares / (double)count;
            s->mean[n * s->groups + grp] = mean;
            s->invstd[n * s->groups + grp] = 1.0 / sqrt(var + eps);
        }
}

static mc_status groupnorm_backward(mc_node *node) {
    const groupnorm_saved *s = node->saved;
    mc_tensor *x = node->in[0], *weight = node->in[1], *bias = node->in[2];
    const float *dy = node->out->grad;
    float *dx = NULL, *dweight = NULL, *dbias = NULL;
    if (x->requires_grad) MC_TRY(mc_grad_buffer(node->graph, x, &dx));
    if (weight && weight->requires_grad) MC_TRY(mc_grad_buffer(node->graph, weight, &dweight));
    if (bias && bias->requires_grad) MC_TRY(mc_grad_buffer(node->graph, bias, &dbias));
    const int64_t C = s->channels, per_group = C / s->groups, count = s->spatial * per_group;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t grp = 0; grp < s->groups; grp++) {
            /* mean(dx^) and mean(dx^ * x^) over the group */
            double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
            for (int64_t p = 0; p < s->spatial; p++)
                for (int64_t c = grp * per_group; c < (grp + 1) * per_group; c++) {
                    int64_t i = (n * s->spatial + p) * C + c;
                    double xhat = normalized(s, x->data, n, p, c);
                    double dxhat = dy[i] * (weight ? weight->data[c] : 1.0f);
                    sum_dxhat += dxhat;
                    sum_dxhat_xhat += dxhat * xhat;
                    if (dweight) dweight[c] += (float)(dy[i] * xhat);
                    if (dbias) dbias[c] += dy[i];
                }
            if (!dx) continue;
            double mean_dxhat = sum_dxhat / (double)count, mean_dxhat_xhat = sum_dxhat_xhat / (double)count;
            double invstd = s->invstd[n * s->groups + grp];
            for (int64_t p = 0; p < s->spatial; p++)
                for (int64_t c = grp * per_group; c < (grp + 1) * per_group; c++) {
                    int64_t i = (n * s->spatial + p) * C + c;
                    double xhat = normalized(s, x->data, n, p, c);
                    double dxhat = dy[i] * (weight ? weight->data[c] : 1.0f);
                    dx[i] += (float)(invstd * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat));
                }
        }
    return MC_OK;
}

static mc_status check_groupnorm(const mc_tensor *x, int groups, const mc_tensor *weight,
                                 const mc_tensor *bias, float eps) {
    char xs[160], ps[160];
    if (!x) return mc_error(MC_ERR_ARG, "group_norm: x is NULL");
    if (x->shape.ndim < 2)
        return mc_error(MC_ERR_SHAPE,
                        "group_norm: x %s should be (N, ..., C), channels last (NHWC inside the "
                        "library, not PyTorch's NCHW)", mc_tensor_str(x, xs, sizeof xs));
    int64_t c = x->shape.dim[x->shape.ndim - 1];
    if (groups <= 0 || c % groups != 0)
        return mc_error(MC_ERR_ARG, "group_norm: %lld channels (the last dimension of x %s) do not split into %d groups",
                        (long long)c, mc_tensor_str(x, xs, sizeof xs), groups);
    const mc_tensor *affine[2] = {weight, bias};
    for (int k = 0; k < 2; k++)
        if (affine[k] && !(affine[k]->shape.ndim == 1 && affine[k]->shape.dim[0] == c))
            return mc_error(MC_ERR_SHAPE, "group_norm: %s %s should be (%lld), one per channel of x %s",
                            k ? "bias" : "weight", mc_tensor_str(affine[k], ps, sizeof ps),
                            (long long)c, mc_tensor_str(x, xs, sizeof xs));
    if (!(eps > 0.0f)) return mc_error(MC_ERR_ARG, "group_norm: eps %g must be positive", eps);
    return MC_OK;
}

mc_status mc_group_norm(mc_graph *g, mc_tensor *x, int groups, mc_tensor *weight, mc_tensor *bias,
                        float eps, mc_tensor **out) {
    *out = NULL;
    MC_TRY(check_groupnorm(x, groups, weight, bias, eps));
    groupnorm_saved *s;
    MC_TRY(mc_graph_alloc(g, sizeof *s, (void **)&s));
    s->n = x->shape.dim[0];
    s->channels = x->shape.dim[x->shape.ndim - 1];
    s->spatial = x->numel / (s->n * s->channels);
    s->groups = groups;
    MC_TRY(mc_graph_alloc(g, (size_t)(s->n * groups) * sizeof(double), (void **)&s->mean));
    MC_TRY(mc_graph_alloc(g, (size_t)(s->n * groups) * sizeof(double), (void **)&s->invstd));
    groupnorm_statistics(s, x->data, eps);
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, x->shape, "group_norm", &y));
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t p = 0; p < s->spatial; p++)
            for (int64_t c = 0; c < s->channels; c++) {
                double v = normalized(s, x->data, n, p, c);
                if (weight) v *= weight->data[c];
                if (bias) v += bias->data[c];
                y->data[(n * s->spatial + p) * s->channels + c] = (float)v;
            }
    mc_tensor *in[3] = {x, weight, bias}; /* weight, bias may be NULL */
    MC_TRY(mc_graph_record(g, "group_norm", groupnorm_backward, y, 3, in, s));
    *out = y;
    return MC_OK;
}

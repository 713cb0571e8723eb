/* nn.BatchNorm1d over (N, C) and nn.GroupNorm (channels last). */
#include "mmchain/nn.h"

#include "nn/layer_internal.h"

/* ---- BatchNorm1d: the BatchNorm2d of an (N, 1, 1, C) view ----
 * Per-channel statistics over the N rows are exactly BatchNorm2d's over
 * N x 1 x 1 positions, so the layer shares mc_batch_norm (same tensors,
 * names and running-statistics update) and views x as NHWC with H = W = 1. */

mc_status mc_batch_norm1d_forward(mc_graph *g, const mc_batch_norm *bn, bool training,
                                  mc_tensor *x, mc_tensor **out) {
    *out = NULL;
    char xs[160];
    if (!x || x->shape.ndim != 2)
        return mc_error(MC_ERR_SHAPE, "batch_norm1d: x %s should be (N, C)",
                        x ? mc_tensor_str(x, xs, sizeof xs) : "NULL");
    int64_t n = x->shape.dim[0], c = x->shape.dim[1];
    if (training && n < 2) /* PyTorch refuses too: the batch variance of one value is 0 */
        return mc_error(MC_ERR_SHAPE,
                        "batch_norm1d: x %s has one row; training needs more than one value per channel",
                        mc_tensor_str(x, xs, sizeof xs));
    mc_tensor *image, *y;
    MC_TRY(mc_reshape(g, x, MC_SHAPE(n, 1, 1, c), &image));
    MC_TRY(mc_batch_norm_forward(g, bn, training, image, &y));
    return mc_reshape(g, y, MC_SHAPE(n, c), out);
}

/* ---- GroupNorm ---- */

mc_status mc_group_norm_init(mc_param_list *params, const char *prefix, int groups, int channels,
                             float eps, mc_group_norm_layer *out) {
    *out = (mc_group_norm_layer){.groups = groups, .eps = eps};
    if (groups < 1 || channels < 1 || channels % groups != 0 || !(eps > 0.0f))
        return mc_error(MC_ERR_ARG,
                        "group norm %s: %d channels must split into %d groups, eps %g positive",
                        prefix, channels, groups, (double)eps);
    return mc_layer_norm_affine(params, prefix, channels, &out->weight, &out->bias);
}

mc_status mc_group_norm_forward(mc_graph *g, const mc_group_norm_layer *layer, mc_tensor *x,
                                mc_tensor **out) {
    return mc_group_norm(g, x, layer->groups, layer->weight, layer->bias, layer->eps, out);
}

/* nn.Conv2d, nn.BatchNorm2d, and the conv -> BN (-> ReLU) unit that
 * torchvision's CNNs are made of. Activations are NHWC. */
#include "mmchain/nn.h"

#include "nn/layer_internal.h"

/* torchvision's BatchNorm2d defaults. */
static const float BN_MOMENTUM = 0.1f;
static const float BN_EPS = 1e-5f;

/* ---- convolution ---- */

mc_status mc_conv_init(mc_param_list *params, const char *prefix, const mc_conv_config *config,
                       mc_rng *rng, mc_conv_layer *out) {
    *out = (mc_conv_layer){0};
    const mc_conv_config *c = config;
    if (c->in_channels < 1 || c->out_channels < 1 || c->kernel < 1 || c->stride < 1 ||
        c->padding < 0)
        return mc_error(MC_ERR_ARG,
                        "conv %s: channels %d -> %d, kernel %d, stride %d, padding %d (channels, "
                        "kernel and stride must be positive, padding not negative)",
                        prefix, c->in_channels, c->out_channels, c->kernel, c->stride, c->padding);
    const int first = params->count;
    mc_status status = mc_layer_param(
        params, &out->weight, MC_SHAPE(c->out_channels, c->in_channels, c->kernel, c->kernel),
        true, prefix, "weight");
    if (status == MC_OK && c->bias)
        status = mc_layer_param(params, &out->bias, MC_SHAPE(c->out_channels), true, prefix, "bias");
    if (status != MC_OK) {
        *out = (mc_conv_layer){0};
        return mc_layer_init_end(params, first, status);
    }
    out->conv = mc_conv2d_simple(c->stride, c->padding);
    if (!rng) return MC_OK;
    int64_t taps = (int64_t)c->kernel * c->kernel;
    if (c->init == MC_CONV_INIT_KAIMING_FAN_OUT) {
        mc_init_kaiming_normal_fan_out(out->weight, c->out_channels * taps, rng);
    } else {
        mc_init_default_uniform(out->weight, c->in_channels * taps, rng);
        if (out->bias) mc_init_default_uniform(out->bias, c->in_channels * taps, rng);
    }
    return MC_OK;
}

mc_status mc_conv_forward(mc_graph *g, const mc_conv_layer *layer, mc_tensor *x, mc_tensor **out) {
    return mc_conv2d(g, x, layer->weight, layer->bias, layer->conv, out);
}

/* ---- batch norm ---- */

mc_status mc_batch_norm_init(mc_param_list *params, const char *prefix, int channels,
                             mc_batch_norm *out) {
    *out = (mc_batch_norm){.momentum = BN_MOMENTUM, .eps = BN_EPS};
    if (channels < 1)
        return mc_error(MC_ERR_ARG, "batch norm %s: %d channels, expected at least one", prefix,
                        channels);
    const int first = params->count;
    mc_status status = mc_layer_norm_affine(params, prefix, channels, &out->weight, &out->bias);
    if (status == MC_OK)
        status = mc_layer_param(params, &out->running_mean, MC_SHAPE(channels), false, prefix,
                                "running_mean");
    if (status == MC_OK)
        status = mc_layer_param(params, &out->running_var, MC_SHAPE(channels), false, prefix,
                                "running_var");
    if (status == MC_OK)
        status = mc_layer_param(params, &out->num_batches_tracked, MC_SHAPE(1), false, prefix,
                                "num_batches_tracked");
    if (status != MC_OK) {
        *out = (mc_batch_norm){0};
        return mc_layer_init_end(params, first, status);
    }
    mc_tensor_fill(out->running_var, 1.0f);
    return MC_OK;
}

/* BN, then max(., 0) in the same op when relu; with a shortcut (not NULL)
 * relu(BN(x) + shortcut), also one op. */
static mc_status batch_norm_apply(mc_graph *g, const mc_batch_norm *bn, bool training, bool relu,
                                  mc_tensor *shortcut, mc_tensor *x, mc_tensor **out) {
    if (shortcut) {
        MC_TRY(mc_batchnorm2d_add_relu(g, x, bn->weight, bn->bias, bn->running_mean,
                                       bn->running_var, training, bn->momentum, bn->eps, shortcut,
                                       out));
    } else {
        mc_status (*normalize)(mc_graph *, mc_tensor *, mc_tensor *, mc_tensor *, mc_tensor *,
                               mc_tensor *, bool, float, float, mc_tensor **) =
            relu ? mc_batchnorm2d_relu : mc_batchnorm2d;
        MC_TRY(normalize(g, x, bn->weight, bn->bias, bn->running_mean, bn->running_var, training,
                         bn->momentum, bn->eps, out));
    }
    /* PyTorch counts every training-mode forward (it matters only when
     * momentum is None, but a checkpoint should carry the same count). */
    if (training && bn->num_batches_tracked) bn->num_batches_tracked->data[0] += 1.0f;
    return MC_OK;
}

mc_status mc_batch_norm_forward(mc_graph *g, const mc_batch_norm *bn, bool training,
                                mc_tensor *x, mc_tensor **out) {
    return batch_norm_apply(g, bn, training, false, NULL, x, out);
}

/* ---- conv -> BN (-> ReLU) ---- */

mc_status mc_conv_bn_init(mc_param_list *params, const char *conv_name, const char *bn_name,
                          const mc_conv_config *config, bool relu, mc_rng *rng, mc_conv_bn *out) {
    *out = (mc_conv_bn){.relu = relu};
    const int first = params->count;
    mc_status status = mc_conv_init(params, conv_name, config, rng, &out->conv);
    if (status == MC_OK) status = mc_batch_norm_init(params, bn_name, config->out_channels, &out->bn);
    if (status != MC_OK) *out = (mc_conv_bn){0};
    return mc_layer_init_end(params, first, status);
}

mc_status mc_conv_bn_forward(mc_graph *g, const mc_conv_bn *layer, bool training, mc_tensor *x,
                             mc_tensor **out) {
    mc_tensor *h;
    MC_TRY(mc_conv_forward(g, &layer->conv, x, &h));
    return batch_norm_apply(g, &layer->bn, training, layer->relu, NULL, h, out);
}

mc_status mc_conv_bn_add_relu_forward(mc_graph *g, const mc_conv_bn *layer, bool training,
                                      mc_tensor *x, mc_tensor *shortcut, mc_tensor **out) {
    *out = NULL;
    if (layer->relu || !shortcut)
        return mc_error(MC_ERR_ARG, "conv_bn_add_relu: needs a shortcut and a unit without its "
                                    "own ReLU (the ReLU follows the addition)");
    mc_tensor *h;
    MC_TRY(mc_conv_forward(g, &layer->conv, x, &h));
    return batch_norm_apply(g, &layer->bn, training, false, shortcut, h, out);
}

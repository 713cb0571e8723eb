/* ResNet-18/34/50/101/152 with torchvision's topology and names.
 *
 * He et al., "Deep Residual Learning for Image Recognition" (2015), with the
 * bottleneck's stride on its 3x3 convolution as torchvision does ("ResNet
 * v1.5"). The model is a list of named tensors (mc_param_list) plus a
 * layout: conv+BN layers (lib/nn) pointing into that list, grouped into
 * blocks. The forward pass is a short walk over the layout calling the
 * layers; autograd records the tape, so there is no hand-written backward
 * here.
 *
 * Sections: configurations - construction - forward - loading (with the
 * conv1 band rule). Checkpoints with optimizer state are checkpoint.h's. */
#include "mmchain/models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmchain/checkpoint.h"
#include "mmchain/ops.h"
#include "models/models_internal.h"

/* ---------------------------------------------------------------------------
 * configurations
 * ------------------------------------------------------------------------- */

static int block_expansion(mc_resnet_block block) { return block == MC_RESNET_BOTTLENECK ? 4 : 1; }

int mc_resnet_feature_dim(const mc_resnet_config *config) {
    return 8 * config->base_width * block_expansion(config->block);
}

mc_status mc_resnet_config_for_depth(int depth, mc_resnet_config *out) {
    /* The stage depths of He et al., Table 1. */
    static const struct { int depth; mc_resnet_block block; int layers[4]; } table[] = {
        {18, MC_RESNET_BASIC, {2, 2, 2, 2}},       {34, MC_RESNET_BASIC, {3, 4, 6, 3}},
        {50, MC_RESNET_BOTTLENECK, {3, 4, 6, 3}},  {101, MC_RESNET_BOTTLENECK, {3, 4, 23, 3}},
        {152, MC_RESNET_BOTTLENECK, {3, 8, 36, 3}},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].depth != depth) continue;
        memset(out, 0, sizeof *out);
        out->block = table[i].block;
        memcpy(out->layers, table[i].layers, sizeof out->layers);
        out->base_width = 64;
        out->in_channels = 3;
        out->fc_out = 1000;
        return MC_OK;
    }
    return mc_error(MC_ERR_ARG, "resnet: depth %d is not one of 18, 34, 50, 101, 152", depth);
}

mc_status mc_resnet_config_for_name(const char *name, mc_resnet_config *out) {
    int depth = 0;
    char rest = 0;
    if (!name || sscanf(name, "resnet%d%c", &depth, &rest) != 1)
        return mc_error(MC_ERR_ARG,
                        "resnet: unknown model name '%s' (expected resnet18, resnet34, resnet50, "
                        "resnet101 or resnet152)",
                        name ? name : "(null)");
    mc_status status = mc_resnet_config_for_depth(depth, out);
    if (status != MC_OK)
        return mc_error(MC_ERR_ARG,
                        "resnet: unknown model name '%s' (expected resnet18, resnet34, resnet50, "
                        "resnet101 or resnet152)",
                        name);
    return MC_OK;
}

const char *mc_resnet_arch_name(const mc_resnet_config *arch, char *buf, size_t len) {
    static const int depths[] = {18, 34, 50, 101, 152};
    for (size_t i = 0; i < sizeof depths / sizeof depths[0]; i++) {
        mc_resnet_config standard = {0};
        if (mc_resnet_config_for_depth(depths[i], &standard) != MC_OK) continue;
        if (standard.block == arch->block && standard.base_width == arch->base_width &&
            memcmp(standard.layers, arch->layers, sizeof standard.layers) == 0) {
            snprintf(buf, len, "resnet%d", depths[i]);
            return buf;
        }
    }
    snprintf(buf, len, "resnet(%s, %d-%d-%d-%d, width %d)",
             arch->block == MC_RESNET_BASIC ? "basic" : "bottleneck", arch->layers[0],
             arch->layers[1], arch->layers[2], arch->layers[3], arch->base_width);
    return buf;
}

mc_status mc_resnet_config_check(const mc_resnet_config *c) {
    if (c->block != MC_RESNET_BASIC && c->block != MC_RESNET_BOTTLENECK)
        return mc_error(MC_ERR_ARG, "resnet config: block kind %d is neither basic nor bottleneck",
                        (int)c->block);
    for (int i = 0; i < 4; i++)
        if (c->layers[i] < 1 || c->layers[i] > 1000)
            return mc_error(MC_ERR_ARG, "resnet config: layer%d has %d blocks, expected 1 to 1000",
                            i + 1, c->layers[i]);
    if (c->base_width < 1 || c->base_width > 4096)
        return mc_error(MC_ERR_ARG, "resnet config: base_width %d, expected 1 to 4096",
                        c->base_width);
    if (c->in_channels < 1 || c->in_channels > 4096)
        return mc_error(MC_ERR_ARG, "resnet config: in_channels (bands) %d, expected 1 to 4096",
                        c->in_channels);
    if (c->fc_out < 0 || c->fc_out > 1000000)
        return mc_error(MC_ERR_ARG, "resnet config: fc_out %d, expected 0 (no fc) to 1000000",
                        c->fc_out);
    return MC_OK;
}

/* Number of blocks in a stage: the count of "layer<s>.<j>.conv1.weight". */
static int count_blocks_in_file(const mc_safetensors *f, int stage) {
    char prefix[24];
    snprintf(prefix, sizeof prefix, "layer%d.", stage);
    return mc_count_numbered_tensors(f, prefix, ".conv1.weight");
}

mc_status mc_resnet_config_from_file(const mc_safetensors *f, mc_resnet_config *out) {
    const char *path = mc_safetensors_path(f);
    mc_shape conv1;
    if (mc_safetensors_info(f, "conv1.weight", NULL, &conv1) != MC_OK || conv1.ndim != 4)
        return mc_error(MC_ERR_FORMAT, "%s: no 4-D conv1.weight, not a ResNet state_dict", path);
    memset(out, 0, sizeof *out);
    out->block = mc_safetensors_has(f, "layer1.0.conv3.weight") ? MC_RESNET_BOTTLENECK
                                                                : MC_RESNET_BASIC;
    for (int s = 0; s < 4; s++) out->layers[s] = count_blocks_in_file(f, s + 1);
    out->base_width = (int)conv1.dim[0];
    out->in_channels = (int)conv1.dim[1];
    mc_shape fc;
    out->fc_out = mc_safetensors_info(f, "fc.weight", NULL, &fc) == MC_OK ? (int)fc.dim[0] : 0;
    return mc_resnet_check_file(f, out);
}

/* conv `conv`.weight (out_ch, in_ch, k, k) and BN `bn`.* (out_ch); the
 * step counter is optional in a file (mc_checkpoint_load_params). */
static mc_status expect_conv_bn(const mc_safetensors *f, const char *conv, const char *bn,
                                int out_ch, int in_ch, int kernel) {
    static const char *const bn_tensors[] = {"weight", "bias", "running_mean", "running_var"};
    char name[MC_NAME_LEN];
    snprintf(name, sizeof name, "%s.weight", conv);
    MC_TRY(mc_checkpoint_expect(f, name, MC_SHAPE(out_ch, in_ch, kernel, kernel)));
    for (size_t i = 0; i < sizeof bn_tensors / sizeof bn_tensors[0]; i++) {
        snprintf(name, sizeof name, "%s.%s", bn, bn_tensors[i]);
        MC_TRY(mc_checkpoint_expect(f, name, MC_SHAPE(out_ch)));
    }
    return MC_OK;
}

/* The tensors of build() below, as shapes only. */
mc_status mc_resnet_check_file(const mc_safetensors *f, const mc_resnet_config *c) {
    const char *path = mc_safetensors_path(f);
    mc_status status = mc_resnet_config_check(c);
    if (status != MC_OK) return mc_error_context(status, "%s: ", path);
    MC_TRY(expect_conv_bn(f, "conv1", "bn1", c->base_width, c->in_channels, 7));
    int expansion = block_expansion(c->block), in_ch = c->base_width;
    for (int s = 0; s < 4; s++) {
        int width = c->base_width << s, out_ch = width * expansion;
        /* (kernel, in, out) of each conv+BN unit; unit 0's input is in_ch. */
        const int basic[2][3] = {{3, 0, width}, {3, width, width}};
        const int bottleneck[3][3] = {{1, 0, width}, {3, width, width}, {1, width, out_ch}};
        const int(*units)[3] = c->block == MC_RESNET_BASIC ? basic : bottleneck;
        int n_units = c->block == MC_RESNET_BASIC ? 2 : 3;
        for (int j = 0; j < c->layers[s]; j++) {
            char conv[MC_NAME_LEN], bn[MC_NAME_LEN];
            for (int u = 0; u < n_units; u++) {
                snprintf(conv, sizeof conv, "layer%d.%d.conv%d", s + 1, j, u + 1);
                snprintf(bn, sizeof bn, "layer%d.%d.bn%d", s + 1, j, u + 1);
                MC_TRY(expect_conv_bn(f, conv, bn, units[u][2], u == 0 ? in_ch : units[u][1],
                                      units[u][0]));
            }
            bool downsample = (s > 0 && j == 0) || in_ch != out_ch;
            if (downsample) {
                snprintf(conv, sizeof conv, "layer%d.%d.downsample.0", s + 1, j);
                snprintf(bn, sizeof bn, "layer%d.%d.downsample.1", s + 1, j);
                MC_TRY(expect_conv_bn(f, conv, bn, out_ch, in_ch, 1));
            }
            in_ch = out_ch;
        }
    }
    if (c->fc_out > 0) {
        MC_TRY(mc_checkpoint_expect(f, "fc.weight", MC_SHAPE(c->fc_out, mc_resnet_feature_dim(c))));
        MC_TRY(mc_checkpoint_expect(f, "fc.bias", MC_SHAPE(c->fc_out)));
    }
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * construction
 * ------------------------------------------------------------------------- */

/* A residual block: conv+BN units (ReLU after each but the last) and the
 * shortcut. Layers of lib/nn, pointing into the model's parameter list. */
typedef struct resnet_block {
    mc_conv_bn unit[3]; /* conv1/bn1, conv2/bn2 and (bottleneck) conv3/bn3 */
    int n_units;        /* 2 (basic) or 3 (bottleneck) */
    bool has_downsample;
    mc_conv_bn downsample; /* downsample.0 (1x1 conv) + downsample.1 (BN) */
} resnet_block;

struct mc_resnet_layout {
    mc_conv_bn stem; /* conv1 7x7/2 + bn1 + relu */
    resnet_block *blocks;
    int n_blocks;
    mc_linear_layer fc; /* (fc_out, F); weight NULL without fc */
};

/* Conv `conv_name`.weight (no bias) and BN `bn_name`.* in torchvision's
 * order, the conv initialised as torchvision's ResNet does. */
static mc_status add_conv_bn(mc_resnet *m, mc_rng *rng, const char *conv_name, const char *bn_name,
                             int out_ch, int in_ch, int kernel, int stride, int padding, bool relu,
                             mc_conv_bn *u) {
    mc_conv_config conv = {.in_channels = in_ch, .out_channels = out_ch, .kernel = kernel,
                           .stride = stride, .padding = padding,
                           .init = MC_CONV_INIT_KAIMING_FAN_OUT};
    return mc_conv_bn_init(&m->params, conv_name, bn_name, &conv, relu, rng, u);
}

/* Block `index` of stage `stage` (1..4): in_ch -> width -> width*expansion. */
static mc_status add_block(mc_resnet *m, mc_rng *rng, int stage, int index, int in_ch, int width,
                           int stride, resnet_block *b) {
    char conv[MC_NAME_LEN], bn[MC_NAME_LEN];
    int expansion = block_expansion(m->config.block);
    int out_ch = width * expansion;
#define NAME(buf, what, k) snprintf(buf, sizeof buf, "layer%d.%d.%s%d", stage, index, what, k)
    if (m->config.block == MC_RESNET_BASIC) {
        b->n_units = 2;
        NAME(conv, "conv", 1), NAME(bn, "bn", 1);
        MC_TRY(add_conv_bn(m, rng, conv, bn, width, in_ch, 3, stride, 1, true, &b->unit[0]));
        NAME(conv, "conv", 2), NAME(bn, "bn", 2);
        MC_TRY(add_conv_bn(m, rng, conv, bn, width, width, 3, 1, 1, false, &b->unit[1]));
    } else {
        b->n_units = 3;
        NAME(conv, "conv", 1), NAME(bn, "bn", 1);
        MC_TRY(add_conv_bn(m, rng, conv, bn, width, in_ch, 1, 1, 0, true, &b->unit[0]));
        NAME(conv, "conv", 2), NAME(bn, "bn", 2);
        MC_TRY(add_conv_bn(m, rng, conv, bn, width, width, 3, stride, 1, true, &b->unit[1]));
        NAME(conv, "conv", 3), NAME(bn, "bn", 3);
        MC_TRY(add_conv_bn(m, rng, conv, bn, out_ch, width, 1, 1, 0, false, &b->unit[2]));
    }
    b->has_downsample = stride != 1 || in_ch != out_ch;
    if (b->has_downsample) {
        NAME(conv, "downsample.", 0), NAME(bn, "downsample.", 1);
        MC_TRY(add_conv_bn(m, rng, conv, bn, out_ch, in_ch, 1, stride, 0, false, &b->downsample));
    }
#undef NAME
    return MC_OK;
}

static mc_status build(mc_resnet *m, uint64_t seed) {
    const mc_resnet_config *c = &m->config;
    struct mc_resnet_layout *L = m->layout;
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    MC_TRY(add_conv_bn(m, &rng, "conv1", "bn1", c->base_width, c->in_channels, 7, 2, 3, true,
                       &L->stem));
    for (int s = 0; s < 4; s++) L->n_blocks += c->layers[s];
    L->blocks = calloc((size_t)L->n_blocks, sizeof *L->blocks);
    if (!L->blocks) return mc_error(MC_ERR_NOMEM, "resnet: cannot allocate %d blocks", L->n_blocks);
    int in_ch = c->base_width, k = 0;
    for (int s = 0; s < 4; s++) {
        int width = c->base_width << s;
        for (int j = 0; j < c->layers[s]; j++, k++) {
            int stride = (s > 0 && j == 0) ? 2 : 1;
            MC_TRY(add_block(m, &rng, s + 1, j, in_ch, width, stride, &L->blocks[k]));
            in_ch = width * block_expansion(c->block);
        }
    }
    /* nn.Linear's default initialisation. */
    if (c->fc_out > 0)
        MC_TRY(mc_linear_init(&m->params, "fc", m->feature_dim, c->fc_out, true, &rng, &L->fc));
    return MC_OK;
}

mc_status mc_resnet_new(mc_resnet **out, const mc_resnet_config *config, uint64_t seed) {
    *out = NULL;
    MC_TRY(mc_resnet_config_check(config));
    mc_resnet *m = calloc(1, sizeof *m);
    if (!m) return mc_error(MC_ERR_NOMEM, "resnet: out of memory");
    m->layout = calloc(1, sizeof *m->layout);
    if (!m->layout) {
        free(m);
        return mc_error(MC_ERR_NOMEM, "resnet: out of memory");
    }
    m->config = *config;
    m->feature_dim = mc_resnet_feature_dim(config);
    mc_status status = build(m, seed);
    if (status != MC_OK) {
        mc_resnet_free(m);
        return status;
    }
    *out = m;
    return MC_OK;
}

void mc_resnet_free(mc_resnet *m) {
    if (!m) return;
    if (m->layout) {
        free(m->layout->blocks);
        free(m->layout);
    }
    mc_params_free(&m->params);
    free(m);
}

void mc_resnet_set_training(mc_resnet *m, bool training) { m->training = training; }

void mc_resnet_set_recompute(mc_resnet *m, bool recompute) { m->recompute = recompute; }

int mc_resnet_set_trainable(mc_resnet *m, const char *prefix, bool trainable) {
    int changed = 0;
    size_t len = strlen(prefix);
    for (int i = 0; i < m->params.count; i++) {
        mc_tensor *t = m->params.items[i];
        if (strncmp(t->name, prefix, len) == 0 && t->requires_grad != trainable &&
            !strstr(t->name, "running_") && !strstr(t->name, "num_batches_tracked"))
            changed++;
    }
    mc_params_set_trainable(&m->params, prefix, trainable);
    return changed;
}

/* ---------------------------------------------------------------------------
 * forward
 * ------------------------------------------------------------------------- */

/* One residual block: relu(F(x) + shortcut(x)). x, *out NHWC. The last
 * unit's BN, the addition and the ReLU are one op, so the BN output before
 * the addition is never stored (the shortcut is computed first). */
static mc_status block_forward(mc_graph *g, const resnet_block *b, bool training, mc_tensor *x,
                               mc_tensor **out) {
    mc_tensor *h = x;
    for (int i = 0; i < b->n_units - 1; i++)
        MC_TRY(mc_conv_bn_forward(g, &b->unit[i], training, h, &h));
    mc_tensor *shortcut = x;
    if (b->has_downsample) MC_TRY(mc_conv_bn_forward(g, &b->downsample, training, x, &shortcut));
    return mc_conv_bn_add_relu_forward(g, &b->unit[b->n_units - 1], training, h, shortcut, out);
}

/* The stem: NCHW -> NHWC once, conv1 7x7/2, bn1, relu, maxpool 3x3/2. */
static mc_status stem_forward(mc_graph *g, const mc_conv_bn *stem, bool training, mc_tensor *x,
                              mc_tensor **out) {
    mc_tensor *h;
    MC_TRY(mc_nchw_to_nhwc(g, x, &h));
    MC_TRY(mc_conv_bn_forward(g, stem, training, h, &h));
    return mc_maxpool2d(g, h, 3, 2, 1, out);
}

/* The stem or a block as a recomputed segment (mc_recompute, autograd.h). */
typedef struct segment_context {
    const struct mc_resnet_layout *layout;
    int block; /* index into layout->blocks; -1: the stem */
    bool training;
} segment_context;

/* The segment's batch norms, at most four (a block's three units and its
 * downsample). */
static int segment_norms(const segment_context *c, const mc_batch_norm *norms[4]) {
    if (c->block < 0) {
        norms[0] = &c->layout->stem.bn;
        return 1;
    }
    const resnet_block *b = &c->layout->blocks[c->block];
    int n = 0;
    for (int i = 0; i < b->n_units; i++) norms[n++] = &b->unit[i].bn;
    if (b->has_downsample) norms[n++] = &b->downsample.bn;
    return n;
}

/* The batch-norm state a training-mode forward moves (running mean and
 * variance, batches tracked), saved to or restored from `state`; returns
 * the floats it took. */
static int64_t bn_state_copy(const mc_batch_norm *bn, bool save, float *state) {
    mc_tensor *const parts[] = {bn->running_mean, bn->running_var, bn->num_batches_tracked};
    int64_t at = 0;
    for (int i = 0; i < 3; i++) {
        size_t bytes = (size_t)parts[i]->numel * sizeof(float);
        if (save) memcpy(state + at, parts[i]->data, bytes);
        else memcpy(parts[i]->data, state + at, bytes);
        at += parts[i]->numel;
    }
    return at;
}

static mc_status segment_run(mc_graph *g, const segment_context *c, mc_tensor *x, mc_tensor **out) {
    if (c->block < 0) return stem_forward(g, &c->layout->stem, c->training, x, out);
    return block_forward(g, &c->layout->blocks[c->block], c->training, x, out);
}

/* A recomputed training-mode forward normalises with the same batch
 * statistics as the first, but would move the running statistics a second
 * time: they are saved before it and put back after, so the model ends
 * the step as it would without recomputation, bit for bit. */
static mc_status resnet_segment(mc_graph *g, const void *context, bool recomputing, mc_tensor *x,
                                mc_tensor **out) {
    const segment_context *c = context;
    if (!recomputing || !c->training) return segment_run(g, c, x, out);
    const mc_batch_norm *norms[4];
    int n = segment_norms(c, norms);
    int64_t floats = 0;
    for (int i = 0; i < n; i++) floats += 2 * norms[i]->running_mean->numel + 1;
    float *state;
    MC_TRY(mc_graph_alloc(g, (size_t)floats * sizeof(float), (void **)&state));
    for (int i = 0, at = 0; i < n; i++) at += bn_state_copy(norms[i], true, state + at);
    mc_status status = segment_run(g, c, x, out);
    for (int i = 0, at = 0; i < n; i++) at += bn_state_copy(norms[i], false, state + at);
    return status;
}

static mc_status check_input(const mc_resnet *m, const mc_tensor *x) {
    char xs[128], ws[128];
    if (!x) return mc_error(MC_ERR_ARG, "resnet forward: the input is NULL");
    if (x->shape.ndim != 4)
        return mc_error(MC_ERR_SHAPE, "resnet forward: input %s must be 4-D (N, C, H, W)",
                        mc_tensor_str(x, xs, sizeof xs));
    if (x->shape.dim[1] != m->config.in_channels)
        return mc_error(MC_ERR_SHAPE,
                        "resnet forward: input %s has %lld bands, the model's %s expects %d",
                        mc_tensor_str(x, xs, sizeof xs), (long long)x->shape.dim[1],
                        mc_tensor_str(m->layout->stem.conv.weight, ws, sizeof ws),
                        m->config.in_channels);
    return MC_OK;
}

mc_status mc_resnet_forward(mc_resnet *m, mc_graph *g, mc_tensor *x, mc_tensor **out) {
    *out = NULL;
    MC_TRY(check_input(m, x));
    struct mc_resnet_layout *L = m->layout;
    bool training = m->training;

    /* As long as nothing was recorded on the tape (no gradient flows
     * through the stages so far), each stage's output is all that is kept
     * of it. With recomputation, each segment (the stem, then every block)
     * keeps only its output and records one node; backward recomputes it. */
    mc_graph_mark mark = mc_graph_get_mark(g);
    mc_tensor *h = x;
    for (int k = -1; k < L->n_blocks; k++) {
        segment_context context = {L, k, training};
        if (m->recompute) MC_TRY(mc_recompute(g, resnet_segment, &context, sizeof context, h, &h));
        else MC_TRY(segment_run(g, &context, h, &h));
        MC_TRY(mc_release_unrecorded(g, mark, &h));
    }

    /* Head: (N, H, W, F) -> (N, F) -> fc. */
    mc_tensor *pooled;
    MC_TRY(mc_global_avgpool(g, h, &pooled));
    if (!L->fc.weight) {
        *out = pooled;
        return MC_OK;
    }
    return mc_linear_forward(g, &L->fc, pooled, out);
}

/* ---------------------------------------------------------------------------
 * loading
 * ------------------------------------------------------------------------- */

mc_resnet_load_options mc_resnet_load_defaults(void) {
    mc_resnet_load_options o = {.strict = true, .skip_fc = false, .rgb_bands = NULL};
    return o;
}

mc_status mc_resnet_derive_conv1(const mc_tensor *rgb, const int *rgb_bands, mc_tensor *dst) {
    char a[128], b[128];
    if (rgb->shape.ndim != 4 || rgb->shape.dim[1] != 3 || dst->shape.ndim != 4 ||
        dst->shape.dim[0] != rgb->shape.dim[0] || dst->shape.dim[2] != rgb->shape.dim[2] ||
        dst->shape.dim[3] != rgb->shape.dim[3])
        return mc_error(MC_ERR_SHAPE,
                        "conv1 band rule: cannot derive %s from %s (expected (C, 3, KH, KW) -> "
                        "(C, N, KH, KW))",
                        mc_tensor_str(dst, a, sizeof a), mc_tensor_str(rgb, b, sizeof b));
    int64_t out_ch = rgb->shape.dim[0], bands = dst->shape.dim[1];
    int64_t taps = rgb->shape.dim[2] * rgb->shape.dim[3];
    if (rgb_bands)
        for (int c = 0; c < 3; c++)
            if (rgb_bands[c] < -1 || rgb_bands[c] >= bands)
                return mc_error(MC_ERR_ARG,
                                "conv1 band rule: the %c band index %d is outside 0..%lld (or -1)",
                                "RGB"[c], rgb_bands[c], (long long)bands - 1);
    float scale = 3.0f / (float)bands;
    for (int64_t o = 0; o < out_ch; o++) {
        const float *src = rgb->data + o * 3 * taps; /* (3, KH, KW) */
        float *dst_o = dst->data + o * bands * taps; /* (N, KH, KW) */
        for (int64_t n = 0; n < bands; n++) {
            int colour = -1; /* the RGB kernel this band keeps, if any */
            for (int c = 0; rgb_bands && c < 3; c++)
                if (rgb_bands[c] == n) colour = c;
            for (int64_t t = 0; t < taps; t++) {
                float v = colour >= 0
                              ? src[colour * taps + t]
                              : (src[t] + src[taps + t] + src[2 * taps + t]) / 3.0f;
                dst_o[n * taps + t] = v * scale;
            }
        }
    }
    return MC_OK;
}

/* The derive hook: the file's conv1 is an RGB kernel (C, 3, KH, KW) and the
 * model's has N != 3 input bands. */
typedef struct conv1_rule {
    const mc_resnet *model;
    const int *rgb_bands;
} conv1_rule;

static bool conv1_accepts(void *ctx, const mc_tensor *dst, mc_shape file_shape) {
    const conv1_rule *rule = ctx;
    return dst == rule->model->layout->stem.conv.weight && file_shape.ndim == 4 &&
           file_shape.dim[1] == 3 && file_shape.dim[0] == dst->shape.dim[0] &&
           file_shape.dim[2] == dst->shape.dim[2] && file_shape.dim[3] == dst->shape.dim[3];
}

static mc_status conv1_derive(void *ctx, const mc_tensor *src, mc_tensor *dst) {
    const conv1_rule *rule = ctx;
    return mc_resnet_derive_conv1(src, rule->rgb_bands, dst);
}

mc_status mc_resnet_load(mc_resnet *m, const mc_safetensors *f, const mc_resnet_load_options *options,
                         char *report, size_t report_len) {
    mc_resnet_load_options o = options ? *options : mc_resnet_load_defaults();
    /* A new head (or none) keeps its own values; fc.* in the file are for
     * another task then. */
    static const char *const skip_fc[] = {"fc.", NULL};
    conv1_rule rule = {m, o.rgb_bands};
    mc_derive_hook hook = {conv1_accepts, conv1_derive, &rule};
    mc_checkpoint_load_options load = mc_checkpoint_load_defaults();
    load.strict = o.strict;
    load.skip_prefixes = o.skip_fc || !m->layout->fc.weight ? skip_fc : NULL;
    load.derive = &hook;
    return mc_checkpoint_load_params(f, &m->params, &load, report, report_len);
}

mc_status mc_resnet_load_path(mc_resnet *m, const char *path, const mc_resnet_load_options *options,
                              char *report, size_t report_len) {
    mc_safetensors *f;
    MC_TRY(mc_safetensors_open(path, &f));
    mc_status status = mc_resnet_load(m, f, options, report, report_len);
    mc_safetensors_close(f);
    return status;
}

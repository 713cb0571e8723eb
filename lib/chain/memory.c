/* The memory a training run will need, estimated before anything is built
 * (chain.h, "Memory"): `mmchain train --max-memory` refuses a run whose
 * estimate exceeds the limit instead of being killed hours into it.
 *
 * Exact parts: the encoder's parameters, gradients and Adam moments, counted
 * from the architecture the way lib/models/resnet.c builds it; the CLIP
 * weights and the target cache, from their shapes. Modelled parts: one
 * training step's activations, from the feature-map sizes of the network at
 * the batch size (what the graph's arena holds through the backward pass),
 * and CLIP's forward over a batch of images (one transformer block's
 * temporaries at a time: the no-grad forward releases each block's). The
 * model of the step is checked against the arena's measured high-water mark
 * in tests/test_memory_estimate.c. */
#include <string.h>

#include "mmchain/chain.h"

#define FLOAT_BYTES ((int64_t)sizeof(float))

/* Output side of a convolution or pooling window. */
static int conv_out(int side, int kernel, int stride, int pad) {
    return (side + 2 * pad - kernel) / stride + 1;
}

/* A conv + BN unit: its parameter count (conv weight, BN weight and bias),
 * its buffers (BN running mean and variance, batches tracked). */
static void count_conv_bn(int in_ch, int out_ch, int kernel, int64_t *trainable, int64_t *buffers) {
    *trainable += (int64_t)out_ch * in_ch * kernel * kernel + 2 * (int64_t)out_ch;
    *buffers += 2 * (int64_t)out_ch + 1;
}

/* What one sample costs in a training step's arena, in floats: every op's
 * output that the backward pass keeps. A conv + BN (+ ReLU, fused) unit
 * keeps the convolution's output and the normalised one (a residual
 * block's last one with the shortcut added, in the same op); the stem's max pool keeps its output and an index per
 * output element. */
typedef struct network_walk {
    int64_t trainable, buffers; /* parameters, BN buffers */
    int64_t activations;        /* floats per sample kept through backward */
    int64_t scratch;            /* bytes per step whatever the batch: BN's
                                 * per-channel sums and the ops' records */
    int64_t largest_map;        /* the largest feature map, floats per sample */
    /* With recomputation (mc_resnet_set_recompute): what the forward keeps
     * (the input, every segment's output, the head), and the most one
     * segment (the stem or a block) holds while backward recomputes it. */
    int64_t kept;               /* floats per sample */
    int64_t segment, largest_segment; /* floats per sample */
    int64_t segment_scratch, largest_segment_scratch, segments; /* bytes, count */
    int features;               /* F, the pooled feature width */
} network_walk;

static void unit(network_walk *w, int in_ch, int out_ch, int kernel, int out_side) {
    count_conv_bn(in_ch, out_ch, kernel, &w->trainable, &w->buffers);
    int64_t map = (int64_t)out_ch * out_side * out_side;
    w->activations += 2 * map;
    w->segment += 2 * map;
    /* Batch norm's statistics in double per channel, forward and backward
     * (lib/ops/batchnorm.c: blocked partial sums), and the records of the
     * two ops (tensor headers, saved state, 64-byte aligned): measured. */
    w->scratch += 576 * (int64_t)out_ch + 1024;
    w->segment_scratch += 576 * (int64_t)out_ch + 1024;
    if (map > w->largest_map) w->largest_map = map;
}

/* A segment ends with an output of `output` floats per sample. */
static void segment_end(network_walk *w, int64_t output) {
    w->kept += output;
    if (w->segment > w->largest_segment) w->largest_segment = w->segment;
    if (w->segment_scratch > w->largest_segment_scratch) w->largest_segment_scratch = w->segment_scratch;
    w->segment = w->segment_scratch = 0;
    w->segments++;
}

static void walk_resnet(const mc_resnet_config *c, int image_size, network_walk *w) {
    memset(w, 0, sizeof *w);
    int expansion = c->block == MC_RESNET_BOTTLENECK ? 4 : 1;
    int side = conv_out(image_size, 7, 2, 3);
    int64_t input = (int64_t)c->in_channels * image_size * image_size;
    w->activations += 2 * input; /* x and its NHWC copy */
    w->kept += input;
    w->segment += input; /* the stem: the NHWC copy, conv1 + bn1, the max pool */
    unit(w, c->in_channels, c->base_width, 7, side);
    side = conv_out(side, 3, 2, 1);
    w->activations += 2 * (int64_t)c->base_width * side * side; /* max pool: output, argmax */
    w->segment += 2 * (int64_t)c->base_width * side * side;
    segment_end(w, (int64_t)c->base_width * side * side);
    int in_ch = c->base_width;
    for (int s = 0; s < 4; s++) {
        int width = c->base_width << s, out_ch = width * expansion;
        for (int j = 0; j < c->layers[s]; j++) {
            int stride = s > 0 && j == 0 ? 2 : 1, out_side = conv_out(side, 3, stride, 1);
            if (c->block == MC_RESNET_BASIC) {
                unit(w, in_ch, width, 3, out_side);
                unit(w, width, width, 3, out_side);
            } else {
                unit(w, in_ch, width, 1, side);
                unit(w, width, width, 3, out_side);
                unit(w, width, out_ch, 1, out_side);
            }
            if ((s > 0 && j == 0) || in_ch != out_ch) unit(w, in_ch, out_ch, 1, out_side);
            /* The last unit's BN, the shortcut's sum and the ReLU are one op
             * (mc_batchnorm2d_add_relu): its output is the block's, counted. */
            in_ch = out_ch;
            side = out_side;
            segment_end(w, (int64_t)out_ch * side * side);
        }
    }
    w->features = in_ch;
    w->activations += 2 * (int64_t)in_ch; /* pooled features, and their NCHW view */
    w->kept += 2 * (int64_t)in_ch;
    if (c->fc_out > 0) {
        w->trainable += (int64_t)c->fc_out * in_ch + c->fc_out;
        w->activations += 2 * (int64_t)c->fc_out; /* fc output, normalised */
        w->kept += 2 * (int64_t)c->fc_out;
    }
}

mc_status mc_chain_estimate_memory(const mc_chain_memory_plan *p, mc_chain_memory_estimate *out) {
    if (!p || !out) return mc_error(MC_ERR_ARG, "memory estimate: NULL argument");
    memset(out, 0, sizeof *out);
    MC_TRY(mc_resnet_config_check(&p->arch));
    if (p->image_size < 8 || p->batch_size < 1 || p->val_batch_size < 1 || p->train_tiles < 0 ||
        p->val_tiles < 0 || p->target_crops < 0 || p->clip_params < 0 || p->clip_batch < 1)
        return mc_error(MC_ERR_ARG,
                        "memory estimate: tile %d, batch %d, validation batch %d, %d + %d tiles, "
                        "%d crops, CLIP batch %d: out of range",
                        p->image_size, p->batch_size, p->val_batch_size, p->train_tiles, p->val_tiles,
                        p->target_crops, p->clip_batch);
    network_walk w;
    walk_resnet(&p->arch, p->image_size, &w);
    int64_t trainable = w.trainable + 1; /* + logit_scale */
    out->weights = (size_t)((trainable + w.buffers) * FLOAT_BYTES);
    out->gradients = (size_t)(trainable * FLOAT_BYTES);
    out->optimizer = 2 * out->gradients; /* Adam's two moments */
    out->clip = (size_t)(p->clip_params * FLOAT_BYTES);

    /* Targets held in memory: validation always; training unless embedded
     * on the fly (augmentation without precomputed crops). */
    int64_t rows = p->val_tiles;
    bool on_the_fly = p->augment && p->target_crops == 0;
    if (!on_the_fly) rows += (int64_t)p->train_tiles * (p->augment ? p->target_crops : 1);
    out->targets = (size_t)(rows * p->embed_dim * FLOAT_BYTES);

    /* One step: in the arena, the kept activations, InfoNCE's B x B logits
     * and softmax, and the backward pass's temporaries (measured: about two
     * of the largest feature map); beside it the gradients in flight (a
     * feature map's gradient and its input's, in reusable blocks) and the
     * batch's RGB buffer. */
    int64_t b = p->batch_size;
    /* With recomputation the forward keeps only the segments' outputs
     * (handed back as backward passes them), and backward holds one
     * segment's activations and records at a time, run again, with about
     * one largest feature map of temporaries (measured). */
    int64_t held_activations = p->recompute ? w.kept + w.largest_segment + w.largest_map
                                            : w.activations + 2 * w.largest_map;
    int64_t scratch = p->recompute ? w.largest_segment_scratch + 1024 * w.segments : w.scratch;
    out->step = (size_t)((b * held_activations + 4 * b * b) * FLOAT_BYTES + scratch);
    int64_t extra = 3 * b * w.largest_map;
    if (on_the_fly) extra += b * 3 * (int64_t)p->rgb_size * p->rgb_size;
    out->step_extra = (size_t)(extra * FLOAT_BYTES);
    /* Validation: the forward outputs at the validation batch (no tape). */
    out->validation = (size_t)((int64_t)p->val_batch_size * w.activations * FLOAT_BYTES);

    /* CLIP's image tower over clip_batch images: the images resized to its
     * input, the token sequence, one block's temporaries (LN, q, k, v, the
     * attention scores and their softmax, the projection, the MLP's hidden
     * layer before and after GELU, the residual sums). */
    if (p->clip_width > 0 && p->clip_patch > 0) {
        int64_t grid = p->clip_image_size / p->clip_patch, tokens = 1 + grid * grid;
        /* OpenAI's rule; a file recording more heads has more score
         * matrices than this counts */
        int64_t heads = p->clip_width / 64 > 0 ? p->clip_width / 64 : 1;
        int64_t per_image = 3 * (int64_t)p->clip_image_size * p->clip_image_size +
                            tokens * (9 * (int64_t)p->clip_width + 2 * p->clip_mlp_width) +
                            2 * heads * tokens * tokens;
        int batch = on_the_fly && p->batch_size < p->clip_batch ? p->batch_size : p->clip_batch;
        out->clip_forward = (size_t)(batch * per_image * FLOAT_BYTES);
    }

    /* The peak: everything held for the whole run, plus the largest of the
     * phases that do not overlap (embedding the targets before training, a
     * step, validation). With targets made on the fly the trainer keeps
     * CLIP's forward graph (its arena) from step to step, validation
     * included: then it is held for the whole run. */
    size_t held = out->weights + out->gradients + out->optimizer + out->clip + out->targets +
                  (on_the_fly ? out->clip_forward : 0);
    size_t phase = out->step + out->step_extra;
    if (!on_the_fly && out->clip_forward > phase) phase = out->clip_forward;
    if (out->validation > phase) phase = out->validation;
    out->total = held + phase;
    return MC_OK;
}

mc_status mc_chain_memory_plan_clip(const mc_safetensors *f, mc_chain_memory_plan *p) {
    int64_t params = 0;
    for (int i = 0; i < mc_safetensors_count(f); i++) {
        mc_dtype dtype;
        mc_shape shape;
        MC_TRY(mc_safetensors_info(f, mc_safetensors_name(f, i), &dtype, &shape));
        if (mc_dtype_is_float(dtype)) params += mc_shape_numel(shape); /* loaded as float32 */
    }
    p->clip_params = params;
    mc_shape patch, positions, fc1, projection;
    if (mc_safetensors_info(f, "visual_projection.weight", NULL, &projection) == MC_OK && projection.ndim == 2)
        p->embed_dim = (int)projection.dim[0];
    p->clip_width = p->clip_patch = p->clip_image_size = p->clip_mlp_width = 0;
    if (mc_safetensors_info(f, "vision_model.embeddings.patch_embedding.weight", NULL, &patch) == MC_OK &&
        patch.ndim == 4 &&
        mc_safetensors_info(f, "vision_model.embeddings.position_embedding.weight", NULL, &positions) == MC_OK &&
        positions.ndim == 2 &&
        mc_safetensors_info(f, "vision_model.encoder.layers.0.mlp.fc1.weight", NULL, &fc1) == MC_OK &&
        fc1.ndim == 2) {
        /* The grid side from the number of positions (1 + grid^2). */
        int grid = 0;
        while ((int64_t)(grid + 1) * (grid + 1) <= positions.dim[0] - 1 && grid < 4096) grid++;
        p->clip_width = (int)patch.dim[0];
        p->clip_patch = (int)patch.dim[3];
        p->clip_image_size = grid * p->clip_patch;
        p->clip_mlp_width = (int)fc1.dim[0];
    }
    return MC_OK;
}

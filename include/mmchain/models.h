/* mmchain — ResNet (torchvision's ResNet-18/34/50/101/152). CLIP is in
 * clip.h.
 *
 * Each model owns its tensors in an mc_param_list (nn.h) under the names of
 * the PyTorch state_dict it mirrors, so pretrained safetensors load by name
 * and the optimizer and checkpoints are flat loops over the list. Forward
 * functions take images NCHW (as PyTorch) and convert to NHWC once inside. */
#ifndef MMCHAIN_MODELS_H
#define MMCHAIN_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* =========================================================================
 * ResNet (lib/models/resnet.c) — torchvision's topology and names
 * =========================================================================
 *
 *   conv1 7x7/2 (bands -> W) - bn1 - relu - maxpool 3x3/2
 *   layer1..layer4: blocks of width W, 2W, 4W, 8W (W = base_width, 64 in
 *     torchvision); the first block of layer2..4 has stride 2
 *   global average pool -> (N, F), F = 8W * expansion (512 or 2048)
 *   fc: Linear(F, fc_out), or none (the pooled feature is the output)
 *
 *   basic block (ResNet-18/34, expansion 1):
 *     conv1 3x3/s - bn1 - relu - conv2 3x3 - bn2 - (+ shortcut) - relu
 *   bottleneck (ResNet-50/101/152, expansion 4; the stride on the 3x3 as in
 *   torchvision, "ResNet v1.5"):
 *     conv1 1x1 - bn1 - relu - conv2 3x3/s - bn2 - relu - conv3 1x1 - bn3
 *     - (+ shortcut) - relu
 *   shortcut: identity, or downsample.0 (1x1/s conv) + downsample.1 (BN) when
 *   the stride or the channel count changes.
 *
 * Names: conv1.weight, bn1.{weight,bias,running_mean,running_var,
 * num_batches_tracked}, layer3.4.conv2.weight, layer2.0.downsample.1.weight,
 * fc.weight, fc.bias, ... in torchvision's state_dict order. BatchNorm uses
 * eps 1e-5 and momentum 0.1. num_batches_tracked is held as a one-element
 * float tensor (torchvision: an int64 scalar) and counts training forwards. */

typedef enum mc_resnet_block { MC_RESNET_BASIC, MC_RESNET_BOTTLENECK } mc_resnet_block;

typedef struct mc_resnet_config {
    mc_resnet_block block;
    int layers[4];   /* blocks per stage: ResNet-50 is {3, 4, 6, 3} */
    int base_width;  /* stem width and layer1 width: 64 in torchvision */
    int in_channels; /* input bands: 3 for RGB, 13 for Sentinel-2 */
    int fc_out;      /* 0: no fc, the output is the pooled (N, F) feature;
                      * > 0: fc = Linear(F, fc_out), e.g. 1000 ImageNet
                      * classes or the method's 512-d projection head */
} mc_resnet_config;

/* torchvision's resnet18/34/50/101/152: RGB input, fc with 1000 classes.
 * Change in_channels and fc_out afterwards as needed. */
mc_status mc_resnet_config_for_depth(int depth, mc_resnet_config *out);
/* The same from a name: "resnet18", ..., "resnet152". */
mc_status mc_resnet_config_for_name(const char *name, mc_resnet_config *out);
/* Read the architecture off a state_dict's names and shapes: the block kind
 * (layer1.0.conv3 present or not), blocks per stage, base width and bands
 * (conv1.weight), fc_out (fc.weight, or 0 without one); then check every
 * tensor of that architecture against the file (mc_resnet_check_file), so
 * a file that declares a huge network is refused before it is built. */
mc_status mc_resnet_config_from_file(const mc_safetensors *f, mc_resnet_config *out);
/* MC_OK when the file holds every tensor of a ResNet with this configuration
 * with its shape (the num_batches_tracked counters may be absent); else an
 * MC_ERR_FORMAT naming the first tensor that is missing or of another
 * shape. Allocates nothing. */
mc_status mc_resnet_check_file(const mc_safetensors *f, const mc_resnet_config *config);
/* "resnet50" for the standard configurations, else a description
 * "resnet(bottleneck, 3-4-6-3, width 64)". Writes into buf; returns buf. */
const char *mc_resnet_arch_name(const mc_resnet_config *arch, char *buf, size_t len);
/* Checks the fields; the message names the wrong one. */
mc_status mc_resnet_config_check(const mc_resnet_config *config);
/* F, the width of the pooled feature: 8 * base_width * expansion. */
int mc_resnet_feature_dim(const mc_resnet_config *config);

struct mc_resnet_layout; /* private: the blocks, as pointers into params */

typedef struct mc_resnet {
    mc_resnet_config config;
    int feature_dim;      /* F */
    mc_param_list params; /* every parameter and buffer, torchvision's order */
    bool training;        /* BN: batch statistics (and running-stat updates) */
    bool recompute;       /* keep only each block's input in a training step
                           * (mc_resnet_set_recompute) */
    struct mc_resnet_layout *layout;
} mc_resnet;

/* A new model with PyTorch's (torchvision's) initialisation drawn from a
 * generator seeded with `seed`: convolutions kaiming_normal(fan_out, relu),
 * BN weight 1, bias 0, running mean 0, var 1; fc U(-1/sqrt(F), 1/sqrt(F)).
 * It starts in eval mode, every parameter trainable. */
mc_status mc_resnet_new(mc_resnet **out, const mc_resnet_config *config, uint64_t seed);
void mc_resnet_free(mc_resnet *model);

/* Train mode (BN normalises with batch statistics and updates its running
 * statistics) or eval mode (BN uses the running statistics). */
void mc_resnet_set_training(mc_resnet *model, bool training);

/* Recomputation (autograd.h, mc_recompute) for a training step: the forward
 * keeps each residual block's input and output only, and backward runs the
 * block's forward again to get the rest. The step's activations then take
 * a fraction of the memory (one block's at a time instead of every
 * block's) for about one more forward pass of time; gradients, parameters
 * and BN's running statistics after the step are the same, bit for bit.
 * Off by default; it changes nothing where no gradient is recorded. */
void mc_resnet_set_recompute(mc_resnet *model, bool recompute);

/* Freeze (trainable = false) or unfreeze every parameter whose name starts
 * with `prefix` ("" = all, "layer1." = one stage, "fc." = the head). BN
 * buffers are never trainable. Returns how many tensors changed setting. */
int mc_resnet_set_trainable(mc_resnet *model, const char *prefix, bool trainable);

/* x (N, in_channels, H, W) NCHW -> *out (N, fc_out), or (N, F) without fc.
 * Records on g's tape when gradients are enabled and something requires one.
 * Where nothing needs a gradient (g's grad switch off, or a frozen prefix of
 * the network) each block's intermediates are given back to g as soon as its
 * output exists (mc_release_unrecorded, nn.h), so inference memory is
 * bounded by one block's activations rather than the whole network's. */
mc_status mc_resnet_forward(mc_resnet *model, mc_graph *g, mc_tensor *x, mc_tensor **out);

/* ---- pretrained weights ---- */

/* How an RGB conv1 kernel (C, 3, KH, KW) becomes an N-band one
 * (C, N, KH, KW) when the file's conv1 has 3 input channels and the model
 * has N != 3 (docs/models.md):
 *   every band n gets mean(R, G, B kernels) * 3/N; with rgb_bands given, the
 *   bands rgb_bands[0..2] (the inputs that are R, G, B; -1 = not present)
 *   get the R, G, B kernels themselves * 3/N instead.
 * Either way (with rgb_bands naming three distinct inputs, or not given)
 * an image whose N bands are all equal to v gives the same conv1 response
 * as the RGB network on an RGB image equal to v; with rgb_bands naming only
 * some of R, G, B (-1 for the others) the kernels no longer sum to R+G+B
 * and that response changes. */
typedef struct mc_resnet_load_options {
    bool strict;          /* every name must match (see mc_resnet_load) */
    bool skip_fc;         /* keep the model's own fc (a new head): fc.* in
                           * the file are ignored */
    const int *rgb_bands; /* NULL, or 3 band indices for R, G, B */
} mc_resnet_load_options;

/* strict = true, skip_fc = false, rgb_bands = NULL. */
mc_resnet_load_options mc_resnet_load_defaults(void);

/* Load the model's tensors from a safetensors state_dict (timm's resnet50.*
 * model.safetensors, a torchvision checkpoint converted to safetensors, or
 * a checkpoint of ours) through mc_checkpoint_load_params (checkpoint.h):
 * F32/F16/BF16 tensors; num_batches_tracked may be an integer or absent
 * (some exporters drop it; with momentum 0.1 it does not affect the
 * result). Ignored in the file: "optimizer.*" (a checkpoint's optimizer
 * state), fc.* when the model has no fc or options->skip_fc.
 * strict: a missing tensor, an unexpected one or a shape mismatch is an
 *   MC_ERR_FORMAT whose message lists every offending name with both shapes;
 *   nothing is loaded then.
 * not strict: loads every tensor that matches and lists the rest in report.
 * report (may be NULL) receives a one-line summary either way. */
mc_status mc_resnet_load(mc_resnet *model, const mc_safetensors *f,
                         const mc_resnet_load_options *options, char *report, size_t report_len);
/* Open `path`, mc_resnet_load, close. */
mc_status mc_resnet_load_path(mc_resnet *model, const char *path,
                              const mc_resnet_load_options *options, char *report,
                              size_t report_len);

/* The conv1 rule above: rgb (C, 3, KH, KW) -> dst (C, N, KH, KW). */
mc_status mc_resnet_derive_conv1(const mc_tensor *rgb, const int *rgb_bands, mc_tensor *dst);

/* A ResNet checkpoint with optimizer state is an mc_checkpoint_save of
 * model->params (checkpoint.h); it loads back with
 * mc_resnet_config_from_file + mc_resnet_new + mc_resnet_load, and the
 * optimizer's state with mc_checkpoint_load_optimizer. */

/* ========================= end of ResNet ================================= */

#ifdef __cplusplus
}
#endif
#endif

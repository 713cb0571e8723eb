/* mmchain — parameters and layers.
 *
 * A model's state is an mc_param_list: an ordered list of named heap tensors
 * that it owns. Trainable parameters have requires_grad set; buffers (batch
 * norm running statistics) do not. Names follow the PyTorch state_dict of the
 * model's source ("layer1.0.conv1.weight"), so checkpoints load by name, the
 * optimizer and checkpointing are flat loops, and freezing is
 * mc_tensor_set_requires_grad(t, false).
 *
 * Layers (lib/nn/<layer>.c) are small structs of pointers into such a list,
 * one per PyTorch module a model is built from:
 *
 *   mc_linear_layer       nn.Linear                 linear.c
 *   mc_conv_layer         nn.Conv2d                 conv_bn.c
 *   mc_batch_norm         nn.BatchNorm2d            conv_bn.c
 *                         nn.BatchNorm1d            norm.c (mc_batch_norm1d_forward)
 *   mc_group_norm_layer   nn.GroupNorm              norm.c
 *   mc_conv_bn            conv -> BN (-> ReLU)      conv_bn.c
 *   mc_layer_norm         nn.LayerNorm              layer_norm.c
 *   mc_self_attention     multi-head self-attention attention.c
 *   mc_mlp                Linear -> act -> Linear   mlp.c
 *   mc_transformer_block  pre-norm residual block   transformer.c
 *
 * Each has the same two functions:
 *
 *   mc_<layer>_init(params, prefix, <sizes>, rng, &layer)
 *       adds the layer's tensors to `params` as "<prefix>.weight", ... (in
 *       the order of PyTorch's state_dict) and initialises them as PyTorch's
 *       reset_parameters() does, drawing from `rng`. rng NULL leaves them as
 *       a checkpoint is about to overwrite them: weights 0 (norm gains 1).
 *       All or nothing: an init that fails (a bad size, a name longer than
 *       MC_NAME_LEN - 1 bytes, no memory) leaves `params` as it was.
 *   mc_<layer>_forward(g, &layer, x, &out)
 *       the layer's ops on g (autograd records them when needed).
 *
 * Layers whose PyTorch module has a training mode (batch norm) take
 * `training` as a forward argument. The two types whose natural name is
 * already an op's (mc_linear, mc_conv2d in ops.h) are called
 * mc_linear_layer and mc_conv_layer. docs/architecture.md, "How to add a
 * model", builds a small network from these layers. */
#ifndef MMCHAIN_NN_H
#define MMCHAIN_NN_H

#include <stdbool.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mc_param_list {
    mc_tensor **items;
    int count;
    int capacity;
} mc_param_list;

/* Create a zeroed heap tensor named `name` (a printf format), add it to the
 * list (which owns it) and return it in *out. trainable sets requires_grad. */
mc_status mc_params_new(mc_param_list *list, mc_tensor **out, mc_shape shape, bool trainable,
                        const char *name_fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
/* Add an existing heap tensor; the list takes ownership. */
mc_status mc_params_add(mc_param_list *list, mc_tensor *t);
/* The tensor named `name`, or NULL. */
mc_tensor *mc_params_find(const mc_param_list *list, const char *name);
/* Free every tensor and the list's storage. */
void mc_params_free(mc_param_list *list);
void mc_params_zero_grad(mc_param_list *list);
/* Number of elements over trainable tensors (or all, when all is true). */
int64_t mc_params_numel(const mc_param_list *list, bool all);
/* requires_grad on every tensor whose name starts with `prefix` ("" = all)
 * and that is a parameter (not a buffer: names ending in running_mean,
 * running_var, num_batches_tracked are left alone). Returns how many. */
int mc_params_set_trainable(mc_param_list *list, const char *prefix, bool trainable);

/* PyTorch's default initialisations, from `rng`. */
/* nn.Linear / nn.Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the
 * weight (kaiming_uniform with a = sqrt(5)) and the bias. */
void mc_init_default_uniform(mc_tensor *t, int64_t fan_in, mc_rng *rng);
/* kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, 2 / fan_out). */
void mc_init_kaiming_normal_fan_out(mc_tensor *t, int64_t fan_out, mc_rng *rng);

/* ---- memory: releasing what finished layers no longer need ----
 * Where layers ran without recording anything on g's tape (g's grad switch
 * is off, or their parameters are frozen and their input needs no gradient),
 * their intermediate activations, and their inputs, are dead once the last
 * one's output exists. Take a mark before the first of a chain of layers and
 * call this after each one: when nothing was recorded since the mark, the
 * memory allocated since is given back, except *x, which moves just after
 * the mark. Once something was recorded it does nothing (the tape needs that
 * memory). A network that does this between its blocks holds one block's
 * activations at a time in inference, not the whole network's:
 *
 *     mc_graph_mark mark = mc_graph_get_mark(g);
 *     for (int i = 0; i < n; i++) {
 *         MC_TRY(mc_transformer_block_forward(g, &blocks[i], x, &x));
 *         MC_TRY(mc_release_unrecorded(g, mark, &x));
 *     } */
mc_status mc_release_unrecorded(mc_graph *g, mc_graph_mark mark, mc_tensor **x);

/* ---- linear.c: nn.Linear ---- */
typedef struct mc_linear_layer {
    mc_tensor *weight; /* (out_features, in_features) */
    mc_tensor *bias;   /* (out_features), or NULL (bias=False) */
} mc_linear_layer;
/* "<prefix>.weight", "<prefix>.bias" (when bias). rng: weight, then bias,
 * U(-1/sqrt(in_features), 1/sqrt(in_features)). */
mc_status mc_linear_init(mc_param_list *params, const char *prefix, int in_features,
                         int out_features, bool bias, mc_rng *rng, mc_linear_layer *out);
/* x (..., in_features) -> *out (..., out_features) = x W^T + b. */
mc_status mc_linear_forward(mc_graph *g, const mc_linear_layer *layer, mc_tensor *x,
                            mc_tensor **out);
/* Redraw the weight from N(0, std) and zero the bias: the initialisation
 * transformers use instead of nn.Linear's (Hugging Face, timm). */
void mc_linear_init_normal(mc_linear_layer *layer, float std, mc_rng *rng);

/* ---- conv_bn.c: nn.Conv2d, nn.BatchNorm2d and the conv -> BN (-> ReLU)
 * unit of torchvision's CNNs. Activations are NHWC inside the library. ---- */
typedef enum mc_conv_weight_init {
    MC_CONV_INIT_DEFAULT,         /* nn.Conv2d: U(+-1/sqrt(fan_in)), fan_in = C*KH*KW */
    MC_CONV_INIT_KAIMING_FAN_OUT, /* torchvision's CNNs: kaiming_normal_(mode="fan_out",
                                   * nonlinearity="relu"), N(0, 2/(OC*KH*KW)); bias 0 */
} mc_conv_weight_init;

typedef struct mc_conv_config {
    int in_channels, out_channels;
    int kernel;  /* square kernel */
    int stride;
    int padding;
    bool bias;
    mc_conv_weight_init init;
} mc_conv_config;

typedef struct mc_conv_layer {
    mc_tensor *weight; /* (OC, C, K, K) */
    mc_tensor *bias;   /* (OC) or NULL */
    mc_conv2d_params conv;
} mc_conv_layer;
/* "<prefix>.weight" (and "<prefix>.bias"). rng: the weight (then the bias,
 * under MC_CONV_INIT_DEFAULT) as config->init says. */
mc_status mc_conv_init(mc_param_list *params, const char *prefix, const mc_conv_config *config,
                       mc_rng *rng, mc_conv_layer *out);
/* x (N, H, W, C) -> *out (N, OH, OW, OC). */
mc_status mc_conv_forward(mc_graph *g, const mc_conv_layer *layer, mc_tensor *x, mc_tensor **out);

typedef struct mc_batch_norm {
    mc_tensor *weight, *bias;            /* (C): gamma 1, beta 0 */
    mc_tensor *running_mean;             /* (C): 0 */
    mc_tensor *running_var;              /* (C): 1 */
    mc_tensor *num_batches_tracked;      /* (1): training forwards, as a float */
    float momentum;                      /* 0.1 */
    float eps;                           /* 1e-5 */
} mc_batch_norm;
/* "<prefix>.weight", .bias, .running_mean, .running_var,
 * .num_batches_tracked (torchvision's order and defaults; nothing random). */
mc_status mc_batch_norm_init(mc_param_list *params, const char *prefix, int channels,
                             mc_batch_norm *out);
/* x (N, H, W, C) -> *out. training: batch statistics, running statistics and
 * num_batches_tracked updated; otherwise the running statistics. */
mc_status mc_batch_norm_forward(mc_graph *g, const mc_batch_norm *bn, bool training,
                                mc_tensor *x, mc_tensor **out);

typedef struct mc_conv_bn {
    mc_conv_layer conv;
    mc_batch_norm bn;
    bool relu; /* ReLU after the BN (fused with it: ops.h mc_batchnorm2d_relu) */
} mc_conv_bn;
/* The conv under `conv_name`, the BN under `bn_name` (torchvision names them
 * apart: "conv1" + "bn1", "downsample.0" + "downsample.1"). */
mc_status mc_conv_bn_init(mc_param_list *params, const char *conv_name, const char *bn_name,
                          const mc_conv_config *config, bool relu, mc_rng *rng, mc_conv_bn *out);
/* x (N, H, W, C) -> *out (N, OH, OW, OC) = [relu](BN(conv(x))). With relu
 * the BN output before the ReLU is never stored: one tensor less per unit in
 * a training step (what PyTorch's ReLU(inplace=True) saves). */
mc_status mc_conv_bn_forward(mc_graph *g, const mc_conv_bn *layer, bool training, mc_tensor *x,
                             mc_tensor **out);
/* x -> *out = relu(BN(conv(x)) + shortcut), the last unit of a residual
 * block (layer->relu must be false: the ReLU comes after the addition). The
 * BN output before the addition is never stored (ops.h,
 * mc_batchnorm2d_add_relu). shortcut: the shape of *out. */
mc_status mc_conv_bn_add_relu_forward(mc_graph *g, const mc_conv_bn *layer, bool training,
                                      mc_tensor *x, mc_tensor *shortcut, mc_tensor **out);

/* ---- norm.c: nn.BatchNorm1d and nn.GroupNorm ---- */
/* BatchNorm1d is an mc_batch_norm (mc_batch_norm_init: the same tensors and
 * names) run on x (N, C) -> *out (N, C); training needs N >= 2. */
mc_status mc_batch_norm1d_forward(mc_graph *g, const mc_batch_norm *bn, bool training,
                                  mc_tensor *x, mc_tensor **out);

typedef struct mc_group_norm_layer {
    mc_tensor *weight, *bias; /* (C): 1 and 0 */
    int groups;
    float eps; /* PyTorch's default 1e-5 */
} mc_group_norm_layer;
/* "<prefix>.weight", "<prefix>.bias" (nothing random); channels % groups == 0. */
mc_status mc_group_norm_init(mc_param_list *params, const char *prefix, int groups, int channels,
                             float eps, mc_group_norm_layer *out);
/* x (N, ..., C), channels last (NHWC for images) -> *out, same shape. */
mc_status mc_group_norm_forward(mc_graph *g, const mc_group_norm_layer *layer, mc_tensor *x,
                                mc_tensor **out);

/* ---- layer_norm.c: nn.LayerNorm over the last dimension ---- */
typedef struct mc_layer_norm {
    mc_tensor *weight, *bias; /* (D): 1 and 0 */
    float eps;
} mc_layer_norm;
/* "<prefix>.weight", "<prefix>.bias" (nothing random). */
mc_status mc_layer_norm_init(mc_param_list *params, const char *prefix, int width, float eps,
                             mc_layer_norm *out);
/* x (..., D) -> *out (..., D). */
mc_status mc_layer_norm_forward(mc_graph *g, const mc_layer_norm *layer, mc_tensor *x,
                                mc_tensor **out);

/* ---- attention.c: multi-head self-attention with separate q, k, v and
 * output projections (Hugging Face's CLIPAttention / ViTSelfAttention) ---- */
typedef struct mc_self_attention {
    mc_linear_layer k_proj, v_proj, q_proj, out_proj; /* (W, W) each, with bias */
    int heads;   /* W / heads is the head size */
    bool causal; /* a token attends only to itself and earlier ones (text) */
} mc_self_attention;
/* "<prefix>.k_proj.*", v_proj, q_proj, out_proj, in that order; rng: each
 * nn.Linear's default. width must divide by heads. */
mc_status mc_self_attention_init(mc_param_list *params, const char *prefix, int width, int heads,
                                 bool causal, mc_rng *rng, mc_self_attention *out);
/* x (B, T, W) -> *out (B, T, W) = out_proj(attention(q_proj x, k_proj x, v_proj x)). */
mc_status mc_self_attention_forward(mc_graph *g, const mc_self_attention *layer, mc_tensor *x,
                                    mc_tensor **out);

/* ---- mlp.c: fc1 -> activation -> fc2 (CLIPMLP, timm's Mlp) ----
 * (mc_activation, the choice of activation, is in ops.h.) */

typedef struct mc_mlp {
    mc_linear_layer fc1; /* (hidden, in) */
    mc_linear_layer fc2; /* (out, hidden) */
    mc_activation activation;
} mc_mlp;
/* "<prefix>.fc1.*", "<prefix>.fc2.*"; rng: nn.Linear's default for each. */
mc_status mc_mlp_init(mc_param_list *params, const char *prefix, int in_features,
                      int hidden_features, int out_features, mc_activation activation,
                      mc_rng *rng, mc_mlp *out);
/* x (..., in) -> *out (..., out). */
mc_status mc_mlp_forward(mc_graph *g, const mc_mlp *layer, mc_tensor *x, mc_tensor **out);
/* The activation alone (the one an mc_mlp applies): mc_activate (ops.h),
 * kept under this name for the layer kit's users. */
mc_status mc_activation_forward(mc_graph *g, mc_activation activation, mc_tensor *x,
                                mc_tensor **out);

/* ---- transformer.c: the pre-norm residual block of CLIP and ViT ----
 *   x = x + self_attn(layer_norm1(x))
 *   x = x + mlp(layer_norm2(x))
 * (Hugging Face's CLIPEncoderLayer; OpenAI CLIP's ResidualAttentionBlock.) */
typedef struct mc_transformer_config {
    int width;     /* W, the token width */
    int heads;     /* attention heads; W must divide by it */
    int mlp_width; /* the MLP's hidden width (4 W in CLIP and ViT) */
    mc_activation activation;
    bool causal;
    float eps;     /* the LayerNorms' epsilon (1e-5 in CLIP, 1e-6 in timm's ViT) */
} mc_transformer_config;

typedef struct mc_transformer_block {
    mc_self_attention self_attn;
    mc_layer_norm layer_norm1;
    mc_mlp mlp;
    mc_layer_norm layer_norm2;
} mc_transformer_block;
/* "<prefix>.self_attn.*", "<prefix>.layer_norm1.*", "<prefix>.mlp.*",
 * "<prefix>.layer_norm2.*" (Hugging Face's order); rng: each nn.Linear's
 * default, drawn in that order. Checks the sizes. */
mc_status mc_transformer_block_init(mc_param_list *params, const char *prefix,
                                    const mc_transformer_config *config, mc_rng *rng,
                                    mc_transformer_block *out);
/* x (B, T, W) -> *out (B, T, W). */
mc_status mc_transformer_block_forward(mc_graph *g, const mc_transformer_block *block,
                                       mc_tensor *x, mc_tensor **out);
/* n blocks in turn, each block's intermediates released when nothing was
 * recorded (mc_release_unrecorded): x (B, T, W) -> *out (B, T, W). */
mc_status mc_transformer_forward(mc_graph *g, const mc_transformer_block *blocks, int n,
                                 mc_tensor *x, mc_tensor **out);

#ifdef __cplusplus
}
#endif
#endif

/* example_tiny_vit — a small Vision Transformer (Dosovitskiy et al., 2021)
 * built from the layer kit (nn.h) and trained on generated images: which
 * quadrant of a noisy 16x16 picture holds a bright square.
 *
 *   example_tiny_vit [STEPS]
 *
 * Prints the loss as it falls, "final loss X" (the mean of the last 10
 * steps) and "accuracy A" on 256 fresh images classified without gradients.
 * tests/script_example_tiny_vit.sh requires X < 0.25 and A >= 0.9 (chance:
 * ln 4 = 1.39 and 0.25). docs/architecture.md, "How to add a model", walks
 * through this file. Images are NHWC, as inside the library. */
#include <stdio.h>
#include <stdlib.h>

#include "mmchain/mmchain.h"

#define EXAMPLE_NAME "example_tiny_vit"
#include "../common/classifier.h" /* CHECK, example_train_classifier */

enum {
    BATCH = 32,
    SIDE = 16,                     /* images are SIDE x SIDE, one band */
    PATCH = 4,                     /* each PATCH x PATCH patch is one token */
    GRID = SIDE / PATCH,           /* 4 x 4 patches */
    TOKENS = 1 + GRID * GRID,      /* the class token, then the patches */
    WIDTH = 32,                    /* the token width W */
    HEADS = 2,
    LAYERS = 2,
    CLASSES = 4,
};

/* ---- the model ---- */

/* Every tensor lives in `params` (which owns them) under a timm-like name;
 * the layer structs point into it. */
typedef struct tiny_vit {
    mc_param_list params;
    mc_conv_layer patch_embed;           /* "patch_embed.proj": PATCH x PATCH, stride PATCH */
    mc_tensor *cls_token;                /* "cls_token" (W) */
    mc_tensor *pos_embed;                /* "pos_embed" (TOKENS, W) */
    mc_transformer_block blocks[LAYERS]; /* "blocks.<i>.*" */
    mc_layer_norm norm;                  /* "norm" */
    mc_linear_layer head;                /* "head": W -> CLASSES */
} tiny_vit;

static mc_status tiny_vit_init(tiny_vit *m, mc_rng *rng) {
    /* Patch embedding: a convolution whose kernel and stride are the patch
     * size turns each patch into one W-wide token. */
    mc_conv_config patch = {.in_channels = 1, .out_channels = WIDTH, .kernel = PATCH,
                            .stride = PATCH, .padding = 0, .bias = true};
    MC_TRY(mc_conv_init(&m->params, "patch_embed.proj", &patch, rng, &m->patch_embed));
    /* Tensors that are no layer: created by name, initialised by hand
     * (timm draws both from N(0, 0.02)). */
    MC_TRY(mc_params_new(&m->params, &m->cls_token, MC_SHAPE(WIDTH), true, "cls_token"));
    MC_TRY(mc_params_new(&m->params, &m->pos_embed, MC_SHAPE(TOKENS, WIDTH), true, "pos_embed"));
    mc_tensor_normal(m->cls_token, rng, 0.0f, 0.02f);
    mc_tensor_normal(m->pos_embed, rng, 0.0f, 0.02f);
    /* The blocks: pre-norm attention + MLP, GELU, LayerNorm eps 1e-6 as ViT. */
    mc_transformer_config block = {.width = WIDTH, .heads = HEADS, .mlp_width = 4 * WIDTH,
                                   .activation = MC_ACT_GELU, .causal = false, .eps = 1e-6f};
    for (int i = 0; i < LAYERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "blocks.%d", i);
        MC_TRY(mc_transformer_block_init(&m->params, name, &block, rng, &m->blocks[i]));
    }
    MC_TRY(mc_layer_norm_init(&m->params, "norm", WIDTH, 1e-6f, &m->norm));
    return mc_linear_init(&m->params, "head", WIDTH, CLASSES, true, rng, &m->head);
}

/* images (N, SIDE, SIDE, 1) -> logits (N, CLASSES). */
static mc_status tiny_vit_forward(tiny_vit *m, mc_graph *g, mc_tensor *images,
                                  mc_tensor **logits) {
    int64_t n = images->shape.dim[0];
    mc_tensor *x, *zeros, *cls, *cls_tokens, *cls_out;
    /* Patches -> tokens: (N, GRID, GRID, W) -> (N, GRID*GRID, W). */
    MC_TRY(mc_conv_forward(g, &m->patch_embed, images, &x));
    MC_TRY(mc_reshape(g, x, MC_SHAPE(n, GRID * GRID, WIDTH), &x));
    /* Prepend the class token, broadcast to (N, 1, W) by adding zeros, and
     * add the position embedding (TOKENS, W) to every image's tokens. */
    MC_TRY(mc_graph_tensor(g, MC_SHAPE(n, 1, WIDTH), "zeros", &zeros));
    MC_TRY(mc_reshape(g, m->cls_token, MC_SHAPE(1, 1, WIDTH), &cls));
    MC_TRY(mc_add(g, zeros, cls, &cls_tokens));
    mc_tensor *parts[2] = {cls_tokens, x};
    MC_TRY(mc_concat(g, 2, parts, 1, &x));
    MC_TRY(mc_add(g, x, m->pos_embed, &x)); /* (N, TOKENS, W) */
    /* The blocks; without gradients each one's intermediates are freed as
     * soon as its output exists. */
    MC_TRY(mc_transformer_forward(g, m->blocks, LAYERS, x, &x));
    /* The class token's final feature -> LayerNorm -> the classifier. */
    MC_TRY(mc_slice(g, x, 1, 0, 1, &cls_out));
    MC_TRY(mc_reshape(g, cls_out, MC_SHAPE(n, WIDTH), &x));
    MC_TRY(mc_layer_norm_forward(g, &m->norm, x, &x));
    return mc_linear_forward(g, &m->head, x, logits);
}

/* The training loop's view of the model (examples/common/classifier.h). */
static mc_status forward(void *model, mc_graph *g, mc_tensor *images, mc_tensor **logits) {
    return tiny_vit_forward(model, g, images, logits);
}

/* ---- the data ---- */

/* A 4x4 bright square somewhere inside quadrant `label` (0 top left, 1 top
 * right, 2 bottom left, 3 bottom right) of image (SIDE, SIDE, 1), over
 * Gaussian noise. */
static void draw_image(float *image, int label, mc_rng *rng) {
    for (int i = 0; i < SIDE * SIDE; i++) image[i] = 0.3f * (float)mc_rng_normal(rng);
    int half = SIDE / 2;
    int top = (label / 2) * half + (int)mc_rng_below(rng, half - 3);
    int left = (label % 2) * half + (int)mc_rng_below(rng, half - 3);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) image[(top + r) * SIDE + left + c] += 1.0f;
}

static void draw_batch(mc_tensor *images, int32_t *labels, mc_rng *rng) {
    for (int i = 0; i < images->shape.dim[0]; i++) {
        labels[i] = (int32_t)mc_rng_below(rng, CLASSES);
        draw_image(images->data + (int64_t)i * SIDE * SIDE, labels[i], rng);
    }
}

/* ---- training, then inference ---- */

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 400;
    mc_rng rng;
    mc_rng_seed(&rng, 5);
    tiny_vit model = {0};
    CHECK(tiny_vit_init(&model, &rng));
    printf("tiny ViT: %lld parameters in %d tensors\n",
           (long long)mc_params_numel(&model.params, false), model.params.count);

    mc_graph *g;
    CHECK(mc_graph_new(&g));
    example_classifier classifier = {&model.params, &model, forward, draw_batch};
    CHECK(example_train_classifier(&classifier, g, MC_SHAPE(BATCH, SIDE, SIDE, 1), steps, 3e-3f,
                                   &rng));
    printf("training arena peak %.1f KiB\n", mc_graph_arena_peak_bytes(g) / 1024.0);

    /* Inference: a graph with the grad switch off records nothing. */
    mc_tensor *images;
    CHECK(mc_tensor_new(&images, MC_SHAPE(BATCH, SIDE, SIDE, 1), "images"));
    int32_t labels[BATCH];
    mc_graph *eval;
    CHECK(mc_graph_new(&eval));
    mc_graph_set_grad_enabled(eval, false);
    int correct = 0, total = 0;
    for (int batch = 0; batch < 8; batch++) {
        draw_batch(images, labels, &rng);
        mc_graph_reset(eval);
        mc_tensor *logits;
        CHECK(tiny_vit_forward(&model, eval, images, &logits));
        for (int i = 0; i < BATCH; i++, total++) {
            const float *row = logits->data + (int64_t)i * CLASSES;
            int best = 0;
            for (int k = 1; k < CLASSES; k++)
                if (row[k] > row[best]) best = k;
            correct += best == labels[i];
        }
    }
    printf("accuracy %.4f (%d of %d)\n", (double)correct / total, correct, total);
    printf("inference arena peak %.1f KiB\n", mc_graph_arena_peak_bytes(eval) / 1024.0);

    mc_graph_free(eval);
    mc_graph_free(g);
    mc_tensor_free(images);
    mc_params_free(&model.params);
    return 0;
}

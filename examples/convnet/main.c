/* example_convnet — a small convolutional network trained end to end on
 * generated images: which of four patterns (a horizontal bar, a vertical
 * bar, a diagonal, a square ring) is hidden in a noisy 16x16 picture.
 *
 *   example_convnet [STEPS]
 *
 * Prints the loss as it falls and ends with "final loss X" (the mean of the
 * last 10 steps). tests/script_example_convnet.sh requires X < 0.25
 * (chance is ln 4 = 1.39). Images are NHWC, as inside the library. */
#include <stdio.h>
#include <stdlib.h>

#include "mmchain/mmchain.h"

#define EXAMPLE_NAME "example_convnet"
#include "../common/classifier.h" /* CHECK, example_train_classifier */

enum { BATCH = 32, SIDE = 16, CLASSES = 4, C1 = 8, C2 = 16 };

/* Draw pattern `label` at a random place into image (SIDE, SIDE, 1), over
 * Gaussian noise. */
static void draw_pattern(float *image, int label, mc_rng *rng) {
    for (int i = 0; i < SIDE * SIDE; i++) image[i] = 0.3f * (float)mc_rng_normal(rng);
    int r = 3 + (int)mc_rng_below(rng, SIDE - 6), c = 3 + (int)mc_rng_below(rng, SIDE - 6);
    for (int k = -3; k <= 3; k++) {
        switch (label) {
        case 0: image[r * SIDE + c + k] += 1.0f; break;            /* horizontal bar */
        case 1: image[(r + k) * SIDE + c] += 1.0f; break;          /* vertical bar */
        case 2: image[(r + k) * SIDE + c + k] += 1.0f; break;      /* diagonal */
        default:                                                   /* square ring */
            if (k >= -2 && k <= 2) {
                image[(r - 2) * SIDE + c + k] += 1.0f;
                image[(r + 2) * SIDE + c + k] += 1.0f;
                if (k > -2 && k < 2) {
                    image[(r + k) * SIDE + c - 2] += 1.0f;
                    image[(r + k) * SIDE + c + 2] += 1.0f;
                }
            }
        }
    }
}

static void draw_batch(mc_tensor *images, int32_t *labels, mc_rng *rng) {
    for (int i = 0; i < images->shape.dim[0]; i++) {
        labels[i] = (int32_t)mc_rng_below(rng, CLASSES);
        draw_pattern(images->data + (int64_t)i * SIDE * SIDE, labels[i], rng);
    }
}

/* The network, from the layer kit (nn.h): each layer's tensors live in
 * net.params under PyTorch-style names ("conv1.weight", "bn1.running_var"). */
typedef struct convnet {
    mc_param_list params;
    mc_conv_bn unit1, unit2; /* conv3x3 -> BN -> ReLU */
    mc_linear_layer fc;
} convnet;

static mc_status convnet_init(convnet *net, mc_rng *rng) {
    /* Convolutions initialised as torchvision's CNNs: kaiming_normal_(fan_out). */
    mc_conv_config conv1 = {.in_channels = 1, .out_channels = C1, .kernel = 3, .stride = 1,
                            .padding = 1, .init = MC_CONV_INIT_KAIMING_FAN_OUT};
    mc_conv_config conv2 = conv1;
    conv2.in_channels = C1;
    conv2.out_channels = C2;
    MC_TRY(mc_conv_bn_init(&net->params, "conv1", "bn1", &conv1, true, rng, &net->unit1));
    MC_TRY(mc_conv_bn_init(&net->params, "conv2", "bn2", &conv2, true, rng, &net->unit2));
    return mc_linear_init(&net->params, "fc", C2, CLASSES, true, rng, &net->fc);
}

/* images (N, 16, 16, 1) -> logits (N, 4):
 * conv3x3 -> BN -> ReLU -> maxpool 2 -> conv3x3 -> BN -> ReLU -> global mean -> linear.
 * BN always normalises with the batch statistics here (training mode). */
static mc_status convnet_forward(convnet *net, mc_graph *g, mc_tensor *images, mc_tensor **logits) {
    mc_tensor *x;
    MC_TRY(mc_conv_bn_forward(g, &net->unit1, true, images, &x));
    MC_TRY(mc_maxpool2d(g, x, 2, 2, 0, &x));
    MC_TRY(mc_conv_bn_forward(g, &net->unit2, true, x, &x));
    MC_TRY(mc_global_avgpool(g, x, &x));
    return mc_linear_forward(g, &net->fc, x, logits);
}

static mc_status forward(void *net, mc_graph *g, mc_tensor *images, mc_tensor **logits) {
    return convnet_forward(net, g, images, logits);
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 300;
    mc_rng rng;
    mc_rng_seed(&rng, 7);
    convnet net = {0};
    CHECK(convnet_init(&net, &rng));
    mc_graph *g;
    CHECK(mc_graph_new(&g));
    example_classifier classifier = {&net.params, &net, forward, draw_batch};
    CHECK(example_train_classifier(&classifier, g, MC_SHAPE(BATCH, SIDE, SIDE, 1), steps, 1e-2f,
                                   &rng));
    printf("arena peak %.1f KiB, process peak %.1f MiB\n", mc_graph_arena_peak_bytes(g) / 1024.0,
           mc_peak_rss_bytes() / 1048576.0);
    mc_graph_free(g);
    mc_params_free(&net.params);
    return 0;
}

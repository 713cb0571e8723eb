/* What the example classifiers (examples/convnet, examples/tiny_vit)
 * share: CHECK for their main(), and the training loop, Adam on the
 * cross-entropy of freshly drawn batches. Header-only, so that each example
 * stays one program built from its own folder. A step is what
 * docs/architecture.md ("How to add a model", step 6) describes: reset the
 * graph, zero the gradients, forward, loss, backward, optimizer step.
 *
 * The including file defines EXAMPLE_NAME (its program's name) first. */
#ifndef MMCHAIN_EXAMPLES_CLASSIFIER_H
#define MMCHAIN_EXAMPLES_CLASSIFIER_H

#include <stdio.h>
#include <stdlib.h>

#include "mmchain/mmchain.h"

/* CHECK(call) in main(): on failure, say why and exit with status 1. */
#define CHECK(call)                                                     \
    do {                                                                \
        if ((call) != MC_OK) {                                          \
            fprintf(stderr, "%s: %s\n", EXAMPLE_NAME, mc_last_error()); \
            return 1;                                                   \
        }                                                               \
    } while (0)

/* What the loop needs to know about a model and its data. */
typedef struct example_classifier {
    mc_param_list *params; /* the model's tensors, all trained */
    void *model;           /* handed to forward */
    /* images (N, ...) -> logits (N, classes) on g */
    mc_status (*forward)(void *model, mc_graph *g, mc_tensor *images, mc_tensor **logits);
    /* fills images (N, ...) and labels (N) with a new labelled batch */
    void (*draw_batch)(mc_tensor *images, int32_t *labels, mc_rng *rng);
} example_classifier;

/* Trains for `steps` steps with Adam at learning rate `lr` (otherwise
 * PyTorch's defaults) on g, with batches of images of `batch_shape`
 * (N, ...). Prints the loss at step 1 and every 25 steps, then
 * "final loss X": the mean over the last 10 steps, steadier than the last. */
static mc_status example_train_classifier(const example_classifier *c, mc_graph *g,
                                          mc_shape batch_shape, int steps, float lr, mc_rng *rng) {
    mc_tensor *images;
    MC_TRY(mc_tensor_new(&images, batch_shape, "images"));
    int32_t *labels = malloc((size_t)batch_shape.dim[0] * sizeof *labels);
    mc_adam_config config = mc_adam_defaults();
    config.lr = lr;
    mc_optimizer *adam = NULL;
    mc_status status = labels ? mc_optimizer_adam(&adam, c->params, config)
                              : mc_error(MC_ERR_NOMEM, "no memory for %lld labels",
                                         (long long)batch_shape.dim[0]);
    float recent[10] = {0};
    for (int step = 1; step <= steps && status == MC_OK; step++) {
        c->draw_batch(images, labels, rng);
        mc_graph_reset(g);
        mc_params_zero_grad(c->params);
        mc_tensor *logits, *loss;
        status = c->forward(c->model, g, images, &logits);
        if (status == MC_OK) status = mc_cross_entropy(g, logits, labels, 0.0f, &loss);
        if (status == MC_OK) status = mc_backward(g, loss);
        if (status == MC_OK) status = mc_optimizer_step(adam);
        if (status != MC_OK) break;
        recent[step % 10] = loss->data[0];
        if (step % 25 == 0 || step == 1) printf("step %4d  loss %.4f\n", step, loss->data[0]);
    }
    mc_optimizer_free(adam);
    free(labels);
    mc_tensor_free(images);
    if (status != MC_OK) return status;
    float mean = 0.0f;
    for (int i = 0; i < 10; i++) mean += recent[i] / 10.0f;
    printf("final loss %.4f\n", mean);
    return MC_OK;
}

#endif

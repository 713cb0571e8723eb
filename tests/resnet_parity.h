/* ResNet parity against a PyTorch twin (tests/golden/gen_resnet.py), shared by
 * test_resnet.c (the committed small fixtures) and test_resnet_parity.c (the
 * full-size ResNet-50/18 fixtures generated at test time).
 *
 * A case is two files, resnet_<case>_weights.safetensors (a torchvision
 * state_dict) and resnet_<case>_expected.safetensors (see gen_resnet.py).
 * Tolerances, each a relative error of the whole tensor,
 * ||ours - torch|| / ||torch||:
 *   derived conv1                   1e-6  (same arithmetic, float rounding)
 *   eval logits and features        1e-4  (the project's parity bar; sums of up to 4608
 *                                          products in another order)
 *   training loss                   1e-4
 *   every parameter gradient        1e-3  (the project's parity bar)
 *   BN running mean / var after     1e-4; num_batches_tracked exactly
 *   5 Adam steps' losses            1e-3 each
 */
#ifndef MMCHAIN_TEST_RESNET_PARITY_H
#define MMCHAIN_TEST_RESNET_PARITY_H

#include <stdlib.h>

#include "mmchain/models.h"
#include "mmchain/optim.h"
#include "testutil.h"

/* A test may define its own bars before including this file (the bf16
 * parity test, test_resnet_bf16.c, does); these are the fp32 ones. */
#ifndef PARITY_TOL_EVAL
#define PARITY_TOL_CONV1 1e-6
#define PARITY_TOL_EVAL 1e-4
#define PARITY_TOL_LOSS 1e-4
#define PARITY_TOL_GRAD 1e-3
#define PARITY_TOL_STATS 1e-4
#define PARITY_TOL_ADAM 1e-3
#endif
/* Gradients are compared relative to max(their norm, PARITY_GRAD_FLOOR):
 * 0 in fp32, so plain relative errors. */
#ifndef PARITY_GRAD_FLOOR
#define PARITY_GRAD_FLOOR 0.0
#endif
/* Called with every measured error (a test may record them). */
#ifndef PARITY_NOTE
#define PARITY_NOTE(what, err, tol) ((void)0)
#endif

typedef struct parity_case {
    mc_safetensors *weights;
    mc_safetensors *expected;
    mc_resnet_config config; /* with fc = the fixture's classifier */
    int head_dim;
    float adam_lr;
    int eval_count;
    char name[64];
} parity_case;

static int parity_meta_int(const mc_safetensors *f, const char *key) {
    const char *v = mc_safetensors_metadata(f, key);
    ck_assert_msg(v != NULL, "%s: metadata '%s' missing", mc_safetensors_path(f), key);
    return atoi(v);
}

static void parity_open(parity_case *c, const char *dir, const char *name) {
    char path[1200];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(path, sizeof path, "%s/resnet_%s_weights.safetensors", dir, name);
    MC_CHECK_OK(mc_safetensors_open(path, &c->weights));
    snprintf(path, sizeof path, "%s/resnet_%s_expected.safetensors", dir, name);
    MC_CHECK_OK(mc_safetensors_open(path, &c->expected));
    const char *block = mc_safetensors_metadata(c->expected, "block");
    ck_assert_ptr_nonnull(block);
    c->config.block = strcmp(block, "bottleneck") == 0 ? MC_RESNET_BOTTLENECK : MC_RESNET_BASIC;
    const char *layers = mc_safetensors_metadata(c->expected, "layers");
    ck_assert_ptr_nonnull(layers);
    ck_assert_int_eq(sscanf(layers, "%d,%d,%d,%d", &c->config.layers[0], &c->config.layers[1],
                            &c->config.layers[2], &c->config.layers[3]),
                     4);
    c->config.base_width = parity_meta_int(c->expected, "base_width");
    c->config.in_channels = parity_meta_int(c->expected, "bands");
    c->config.fc_out = parity_meta_int(c->expected, "num_classes");
    c->head_dim = parity_meta_int(c->expected, "head_dim");
    c->adam_lr = (float)atof(mc_safetensors_metadata(c->expected, "adam_lr"));
    c->eval_count = parity_meta_int(c->expected, "eval_count");
}

static void parity_close(parity_case *c) {
    mc_safetensors_close(c->weights);
    mc_safetensors_close(c->expected);
}

static mc_tensor *parity_read(const parity_case *c, const char *name) {
    mc_tensor *t;
    MC_CHECK_OK(mc_safetensors_read(c->expected, name, &t));
    return t;
}

/* Assert ||actual - expected|| / max(||expected||, floor) < tol for the
 * tensor `name` (floor 0: the relative error). */
static void parity_compare_floor(const parity_case *c, const char *what, const float *actual,
                                 const mc_tensor *expected, double tol, double floor) {
    double err = mc_test_rel_error(actual, expected->data, (long)expected->numel);
    if (floor > 0.0) {
        double norm = 0.0;
        for (int64_t i = 0; i < expected->numel; i++) norm += (double)expected->data[i] * expected->data[i];
        err *= fmax(sqrt(norm), 1e-30) / fmax(sqrt(norm), floor);
    }
    PARITY_NOTE(what, err, tol);
    ck_assert_msg(err < tol, "%s: %s relative error %.3g, tolerance %.1g", c->name, what, err, tol);
}

static void parity_compare(const parity_case *c, const char *what, const float *actual,
                           const mc_tensor *expected, double tol) {
    parity_compare_floor(c, what, actual, expected, tol, 0.0);
}

/* Eval forward with fc (logits) and without (features); checks the derived conv1. */
static void parity_check_eval(const parity_case *c) {
    mc_resnet *with_fc, *features_only;
    MC_CHECK_OK(mc_resnet_new(&with_fc, &c->config, 1));
    MC_CHECK_OK(mc_resnet_load(with_fc, c->weights, NULL, NULL, 0));
    mc_resnet_config no_fc = c->config;
    no_fc.fc_out = 0;
    MC_CHECK_OK(mc_resnet_new(&features_only, &no_fc, 2));
    MC_CHECK_OK(mc_resnet_load(features_only, c->weights, NULL, NULL, 0));

    mc_tensor *conv1 = parity_read(c, "conv1.derived");
    parity_compare(c, "derived conv1", mc_params_find(&with_fc->params, "conv1.weight")->data,
                   conv1, PARITY_TOL_CONV1);
    mc_tensor_free(conv1);

    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    for (int i = 0; i < c->eval_count; i++) {
        char name[64];
        snprintf(name, sizeof name, "eval%d.input", i);
        mc_tensor *x = parity_read(c, name);
        mc_tensor *out;
        /* Logits through the no-grad path (scratch arenas) ... */
        mc_graph_set_grad_enabled(g, false);
        MC_CHECK_OK(mc_resnet_forward(with_fc, g, x, &out));
        snprintf(name, sizeof name, "eval%d.logits", i);
        mc_tensor *logits = parity_read(c, name);
        parity_compare(c, name, out->data, logits, PARITY_TOL_EVAL);
        /* ... features through the recording path. */
        mc_graph_set_grad_enabled(g, true);
        MC_CHECK_OK(mc_resnet_forward(features_only, g, x, &out));
        snprintf(name, sizeof name, "eval%d.features", i);
        mc_tensor *features = parity_read(c, name);
        ck_assert_int_eq(out->numel, features->numel);
        parity_compare(c, name, out->data, features, PARITY_TOL_EVAL);
        mc_graph_reset(g);
        mc_tensor_free(x);
        mc_tensor_free(logits);
        mc_tensor_free(features);
    }
    mc_graph_free(g);
    mc_resnet_free(with_fc);
    mc_resnet_free(features_only);
}

/* The training model: fixture weights, fc = the fixture's new Linear(F, D). */
static mc_resnet *parity_train_model(const parity_case *c) {
    mc_resnet_config config = c->config;
    config.fc_out = c->head_dim;
    mc_resnet *m;
    MC_CHECK_OK(mc_resnet_new(&m, &config, 3));
    mc_resnet_load_options o = mc_resnet_load_defaults();
    o.skip_fc = true;
    MC_CHECK_OK(mc_resnet_load(m, c->weights, &o, NULL, 0));
    MC_CHECK_OK(mc_safetensors_read_into(c->expected, "train.fc.weight",
                                         mc_params_find(&m->params, "fc.weight")));
    MC_CHECK_OK(mc_safetensors_read_into(c->expected, "train.fc.bias",
                                         mc_params_find(&m->params, "fc.bias")));
    mc_resnet_set_training(m, true);
    return m;
}

static float parity_train_loss(mc_resnet *m, mc_graph *g, mc_tensor *x, mc_tensor *targets,
                               mc_tensor *log_scale) {
    mc_tensor *embedding, *loss;
    MC_CHECK_OK(mc_resnet_forward(m, g, x, &embedding));
    MC_CHECK_OK(mc_infonce(g, embedding, targets, log_scale, false, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    return loss->data[0];
}

/* Gradients of EVERY parameter and the BN buffers after one training step. */
static void parity_check_step(const parity_case *c, mc_resnet *m) {
    int grads = 0, buffers = 0;
    char name[MC_NAME_LEN + 16];
    for (int i = 0; i < m->params.count; i++) {
        mc_tensor *t = m->params.items[i];
        if (t->requires_grad) {
            snprintf(name, sizeof name, "grad.%s", t->name);
            mc_tensor *expected = parity_read(c, name);
            ck_assert_msg(t->grad != NULL, "%s: %s got no gradient", c->name, t->name);
            parity_compare_floor(c, name, t->grad, expected, PARITY_TOL_GRAD, PARITY_GRAD_FLOOR);
            mc_tensor_free(expected);
            grads++;
        } else {
            snprintf(name, sizeof name, "after.%s", t->name);
            mc_tensor *expected = parity_read(c, name);
            if (strstr(t->name, "num_batches_tracked"))
                ck_assert_msg(t->data[0] == expected->data[0], "%s: %s is %g, expected %g",
                              c->name, t->name, t->data[0], expected->data[0]);
            else
                parity_compare(c, name, t->data, expected, PARITY_TOL_STATS);
            mc_tensor_free(expected);
            buffers++;
        }
    }
    /* Every gradient the twin wrote was compared: none is left out. */
    int expected_grads = 0;
    for (int i = 0; i < mc_safetensors_count(c->expected); i++)
        expected_grads += strncmp(mc_safetensors_name(c->expected, i), "grad.", 5) == 0;
    ck_assert_int_eq(grads, expected_grads);
    ck_assert_int_eq(grads + buffers, m->params.count);
}

/* One training step (loss, gradients, BN buffers), then Adam for 5 steps. */
static void parity_check_train(const parity_case *c) {
    mc_resnet *m = parity_train_model(c);
    mc_tensor *x = parity_read(c, "train.input");
    mc_tensor *targets = parity_read(c, "train.targets");
    mc_tensor *log_scale = parity_read(c, "train.log_scale");
    mc_tensor *expected_loss = parity_read(c, "train.loss");
    mc_tensor *adam_losses = parity_read(c, "train.adam_losses");
    mc_adam_config adam = mc_adam_defaults();
    adam.lr = c->adam_lr;
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &m->params, adam));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));

    float losses[16];
    for (int step = 0; step < (int)adam_losses->numel && step < 16; step++) {
        mc_optimizer_zero_grad(opt);
        losses[step] = parity_train_loss(m, g, x, targets, log_scale);
        if (step == 0) {
            parity_compare(c, "train.loss", losses, expected_loss, PARITY_TOL_LOSS);
            parity_check_step(c, m);
        }
        MC_CHECK_OK(mc_optimizer_step(opt));
        mc_graph_reset(g);
    }
    for (int step = 0; step < (int)adam_losses->numel && step < 16; step++) {
        double err = fabs(losses[step] - adam_losses->data[step]) / fabs(adam_losses->data[step]);
        PARITY_NOTE("train.adam_losses", err, PARITY_TOL_ADAM);
        ck_assert_msg(err < PARITY_TOL_ADAM, "%s: Adam step %d loss %.7g, torch %.7g", c->name,
                      step + 1, losses[step], adam_losses->data[step]);
    }
    mc_graph_free(g);
    mc_optimizer_free(opt);
    mc_tensor_free(x);
    mc_tensor_free(targets);
    mc_tensor_free(log_scale);
    mc_tensor_free(expected_loss);
    mc_tensor_free(adam_losses);
    mc_resnet_free(m);
}

/* The case `name` of the fixtures in `dir`: one training step and Adam
 * (train), or inference. */
static void parity_run(const char *dir, const char *name, bool train) {
    parity_case c;
    parity_open(&c, dir, name);
    if (train)
        parity_check_train(&c);
    else
        parity_check_eval(&c);
    parity_close(&c);
}

/* Run i of a Check loop test over the cases `names` of the fixtures in
 * `dir`, two runs a case: inference (even i), then training (odd i);
 * PARITY_N_RUNS(names) runs in all. */
#define PARITY_N_RUNS(names) ((int)(2 * (sizeof(names) / sizeof((names)[0]))))
static void parity_run_nth(const char *dir, const char *const names[], int i) {
    const bool train = i % 2 == 1;
    printf("%s, %s:\n", names[i / 2], train ? "training" : "eval");
    parity_run(dir, names[i / 2], train);
}

#endif

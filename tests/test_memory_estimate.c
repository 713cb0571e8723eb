/* The training run's memory estimate (lib/chain/memory.c) against what a
 * run really takes:
 *   - the encoder's weights, gradients and Adam state: equal, byte for
 *     byte, to the tensors of the encoder the library builds;
 *   - one training step's arena: within [0.8, 1.25] of the graph's measured
 *     high-water mark (mc_graph_arena_peak_bytes), for basic and bottleneck
 *     encoders at two tile sizes;
 *   - the whole step: the process's peak resident memory grown by a
 *     training step in a fresh child (getrusage's max RSS) within
 *     [0.5, 1.5] of the estimate's total. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmchain/mmchain.h"
#include "testutil.h"

typedef struct encoder_case {
    mc_resnet_config arch;
    const char *bands;
    int image_size, embed_dim, batch;
} encoder_case;

static const encoder_case cases[] = {
    {{.block = MC_RESNET_BASIC, .layers = {1, 1, 1, 1}, .base_width = 4}, "B04,B03,B02", 32, 8, 6},
    {{.block = MC_RESNET_BASIC, .layers = {2, 1, 1, 2}, .base_width = 8}, "B08,B11", 64, 16, 4},
    {{.block = MC_RESNET_BOTTLENECK, .layers = {1, 2, 1, 1}, .base_width = 2}, "all", 32, 8, 5},
    {{.block = MC_RESNET_BOTTLENECK, .layers = {1, 1, 1, 1}, .base_width = 4}, "B08,B11,B12", 64, 12, 3},
    /* activations dominate */
    {{.block = MC_RESNET_BASIC, .layers = {2, 2, 2, 2}, .base_width = 16}, "all", 64, 32, 24},
    {{.block = MC_RESNET_BOTTLENECK, .layers = {2, 1, 1, 1}, .base_width = 8}, "B02,B03,B04,B08", 64, 16, 16},
};

static mc_spectral_encoder *make_encoder(const encoder_case *c) {
    mc_bands bands;
    mc_norm norm;
    MC_CHECK_OK(mc_bands_parse(c->bands, &bands));
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_TORCHGEO));
    mc_spectral_encoder *enc;
    MC_CHECK_OK(mc_spectral_encoder_new(&enc, &c->arch, &bands, &norm, c->image_size, c->embed_dim,
                                        logf(1 / 0.07f), true, 1));
    return enc;
}

/* The plan of a training run of this encoder: targets precomputed, no CLIP
 * (the step alone). */
static mc_chain_memory_estimate estimate_for(const encoder_case *c, const mc_spectral_encoder *enc) {
    mc_chain_memory_plan plan = {
        .arch = enc->resnet->config,
        .image_size = c->image_size,
        .rgb_size = c->image_size,
        .embed_dim = c->embed_dim,
        .batch_size = c->batch,
        .val_batch_size = c->batch,
        .clip_batch = 1,
        .train_tiles = 0,
        .val_tiles = 0,
        .augment = false,
        .recompute = enc->resnet->recompute,
    };
    mc_chain_memory_estimate e;
    MC_CHECK_OK(mc_chain_estimate_memory(&plan, &e));
    return e;
}

/* One training step as the trainer makes it: forward in training mode,
 * InfoNCE against fixed targets, backward, Adam. Returns the arena's peak. */
static size_t train_one_step(mc_spectral_encoder *enc, const encoder_case *c) {
    mc_rng rng;
    mc_rng_seed(&rng, 7);
    mc_tensor *targets;
    MC_CHECK_OK(mc_tensor_new(&targets, MC_SHAPE(c->batch, c->embed_dim), "targets"));
    mc_tensor_uniform(targets, &rng, -1.0f, 1.0f);
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &enc->params, mc_adam_defaults()));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *x, *embeds, *loss;
    MC_CHECK_OK(mc_graph_tensor(g, MC_SHAPE(c->batch, enc->bands.count, c->image_size, c->image_size), "x", &x));
    mc_tensor_uniform(x, &rng, -1.0f, 1.0f);
    mc_resnet_set_training(enc->resnet, true);
    MC_CHECK_OK(mc_spectral_encoder_forward(enc, g, x, &embeds));
    MC_CHECK_OK(mc_infonce(g, embeds, targets, enc->logit_scale, false, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    MC_CHECK_OK(mc_optimizer_step(opt));
    size_t peak = mc_graph_arena_peak_bytes(g);
    mc_graph_free(g);
    mc_optimizer_free(opt);
    mc_tensor_free(targets);
    return peak;
}

START_TEST(test_parameters_gradients_and_adam_state_are_exact) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mc_spectral_encoder *enc = make_encoder(&cases[i]);
        size_t all = 0, trainable = 0;
        for (int k = 0; k < enc->params.count; k++) {
            const mc_tensor *t = enc->params.items[k];
            all += (size_t)t->numel * sizeof(float);
            if (t->requires_grad) trainable += (size_t)t->numel * sizeof(float);
        }
        mc_chain_memory_estimate e = estimate_for(&cases[i], enc);
        ck_assert_uint_eq(e.weights, all);
        ck_assert_uint_eq(e.gradients, trainable);
        ck_assert_uint_eq(e.optimizer, 2 * trainable);
        mc_spectral_encoder_free(enc);
    }
}
END_TEST

/* _i = 0: as the trainer runs by default; 1: with recomputation. */
START_TEST(test_step_arena_within_band) {
    int outside = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mc_spectral_encoder *enc = make_encoder(&cases[i]);
        mc_resnet_set_recompute(enc->resnet, _i == 1);
        mc_chain_memory_estimate e = estimate_for(&cases[i], enc);
        size_t measured = train_one_step(enc, &cases[i]);
        double ratio = (double)measured / (double)e.step;
        fprintf(stderr, "case %zu%s: arena peak %zu bytes, estimate %zu (measured / estimate %.3f)\n", i,
                _i ? " (recompute)" : "", measured, e.step, ratio);
        outside += ratio < 0.8 || ratio > 1.25;
        mc_spectral_encoder_free(enc);
    }
    ck_assert_msg(outside == 0, "%d cases outside [0.8, 1.25] x the estimate (numbers above)", outside);
}
END_TEST

/* Resident memory now, from /proc (bytes). */
static size_t resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages_total = 0, pages_resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2) pages_resident = 0;
        fclose(f);
    }
    return (size_t)pages_resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* In a fresh child (so earlier tests' peaks do not count): build the
 * encoder and train one step; the growth of the peak resident memory over
 * the resident memory before it, against the estimate's total. */
START_TEST(test_peak_resident_memory_within_band) {
    const encoder_case big = {{.block = MC_RESNET_BASIC, .layers = {1, 1, 1, 1}, .base_width = 32},
                              "B08,B11,B12", 64, 16, 64};
    fflush(NULL);
    pid_t child = fork();
    ck_assert(child >= 0);
    if (child == 0) {
        size_t before = resident_bytes();
        if (mc_peak_rss_bytes() > before) before = mc_peak_rss_bytes();
        mc_spectral_encoder *enc = make_encoder(&big);
        mc_chain_memory_estimate e = estimate_for(&big, enc);
        train_one_step(enc, &big);
        size_t grown = mc_peak_rss_bytes() - before;
        double ratio = (double)grown / (double)e.total;
        fprintf(stderr, "peak resident memory grew by %zu bytes, estimate %zu (measured / estimate %.3f)\n",
                grown, e.total, ratio);
        mc_spectral_encoder_free(enc);
        _exit(ratio >= 0.5 && ratio <= 1.5 ? 0 : 1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "the measured peak is outside [0.5, 1.5] x the estimate (numbers above)");
}
END_TEST

START_TEST(test_refuses_bad_plans) {
    mc_chain_memory_plan plan = {.arch = {.block = MC_RESNET_BASIC, .layers = {1, 1, 1, 1}, .base_width = 0,
                                          .in_channels = 3, .fc_out = 8},
                                 .image_size = 64, .batch_size = 4, .val_batch_size = 4, .clip_batch = 4};
    mc_chain_memory_estimate e;
    MC_CHECK_FAILS(mc_chain_estimate_memory(&plan, &e), MC_ERR_ARG, "base_width 0");
    plan.arch.base_width = 4;
    plan.batch_size = 0;
    MC_CHECK_FAILS(mc_chain_estimate_memory(&plan, &e), MC_ERR_ARG, "batch 0");
}
END_TEST

int main(void) {
    Suite *s = suite_create("memory_estimate");
    const TTest *const tests[] = {test_parameters_gradients_and_adam_state_are_exact,
                                  test_peak_resident_memory_within_band, test_refuses_bad_plans, NULL};
    TCase *tc = mc_test_add_case(s, "estimate", tests);
    const mc_test_loop loops[] = {{test_step_arena_within_band, 0, 2}, {NULL, 0, 0}};
    mc_test_add_loops(tc, loops);
    tcase_set_timeout(tc, 300);
    return mc_test_run_suite(s);
}

/* ResNet: configurations, torchvision names, the conv1 band rule, strict
 * loading errors, heads, freezing, checkpoints, and parity with the
 * committed PyTorch fixtures (a narrow ResNet-18 topology and a narrow
 * 5-band bottleneck ResNet; tests/golden/gen_resnet.py). */
#include "limited.h"
#include "resnet_parity.h"

/* ---- configurations and names (reference numbers from torchvision 0.14:
 * len(resnetXX().state_dict()), sum of parameter numel, key positions) ---- */

START_TEST(test_config_presets) {
    mc_resnet_config c;
    MC_CHECK_OK(mc_resnet_config_for_depth(50, &c));
    ck_assert_int_eq(c.block, MC_RESNET_BOTTLENECK);
    ck_assert_int_eq(c.layers[2], 6);
    ck_assert_int_eq(mc_resnet_feature_dim(&c), 2048);
    MC_CHECK_OK(mc_resnet_config_for_name("resnet34", &c));
    ck_assert_int_eq(c.block, MC_RESNET_BASIC);
    ck_assert_int_eq(mc_resnet_feature_dim(&c), 512);
    MC_CHECK_FAILS(mc_resnet_config_for_depth(42, &c), MC_ERR_ARG, "depth 42");
    MC_CHECK_FAILS(mc_resnet_config_for_name("resnet50x", &c), MC_ERR_ARG, "resnet50x");
    MC_CHECK_FAILS(mc_resnet_config_for_name("vgg16", &c), MC_ERR_ARG, "vgg16");
    char name[96];
    ck_assert_str_eq(mc_resnet_arch_name(&c, name, sizeof name), "resnet34");
    c.base_width = 32;
    ck_assert_str_eq(mc_resnet_arch_name(&c, name, sizeof name), "resnet(basic, 3-4-6-3, width 32)");
    c.layers[1] = 0;
    MC_CHECK_FAILS(mc_resnet_config_check(&c), MC_ERR_ARG, "layer2");
}
END_TEST

static void check_torchvision_layout(int depth, int width, int count, int64_t numel) {
    mc_resnet_config c;
    MC_CHECK_OK(mc_resnet_config_for_depth(depth, &c));
    c.base_width = width;
    mc_resnet *m;
    MC_CHECK_OK(mc_resnet_new(&m, &c, 0));
    ck_assert_int_eq(m->params.count, count);
    if (numel) ck_assert_int_eq(mc_params_numel(&m->params, false), numel);
    ck_assert_str_eq(m->params.items[0]->name, "conv1.weight");
    ck_assert_str_eq(m->params.items[5]->name, "bn1.num_batches_tracked");
    ck_assert_str_eq(m->params.items[6]->name, "layer1.0.conv1.weight");
    ck_assert_str_eq(m->params.items[count - 2]->name, "fc.weight");
    ck_assert_str_eq(m->params.items[count - 1]->name, "fc.bias");
    mc_resnet_free(m);
}

START_TEST(test_torchvision_names_and_sizes) {
    check_torchvision_layout(18, 64, 122, 11689512);
    check_torchvision_layout(34, 64, 218, 21797672);
    check_torchvision_layout(50, 64, 320, 25557032);
    /* 101 and 152 narrowed to keep the test light: same names, fewer numbers. */
    check_torchvision_layout(101, 8, 626, 0);
    check_torchvision_layout(152, 8, 932, 0);

    mc_resnet_config c;
    MC_CHECK_OK(mc_resnet_config_for_depth(50, &c));
    mc_resnet *m;
    MC_CHECK_OK(mc_resnet_new(&m, &c, 0));
    /* Positions in resnet50().state_dict(): 85 and 228. */
    ck_assert_str_eq(m->params.items[85]->name, "layer2.0.downsample.1.weight");
    ck_assert_str_eq(m->params.items[228]->name, "layer3.4.conv2.weight");
    mc_tensor *t = mc_params_find(&m->params, "layer3.4.conv2.weight");
    ck_assert(mc_shape_equal(t->shape, MC_SHAPE(256, 256, 3, 3)));
    t = mc_params_find(&m->params, "layer4.0.downsample.0.weight");
    ck_assert(mc_shape_equal(t->shape, MC_SHAPE(2048, 1024, 1, 1)));
    ck_assert(!mc_params_find(&m->params, "layer4.0.bn1.running_mean")->requires_grad);
    mc_resnet_free(m);
}
END_TEST

/* Initialisation statistics: kaiming_normal fan_out gives conv1 (64, 3, 7, 7)
 * std sqrt(2 / (64*49)) = 0.02526; fc U(-1/sqrt(2048), 1/sqrt(2048)). */
START_TEST(test_default_init) {
    mc_resnet_config c;
    MC_CHECK_OK(mc_resnet_config_for_depth(18, &c));
    c.fc_out = 10;
    mc_resnet *a, *b;
    MC_CHECK_OK(mc_resnet_new(&a, &c, 7));
    MC_CHECK_OK(mc_resnet_new(&b, &c, 7));
    mc_tensor *w = mc_params_find(&a->params, "conv1.weight");
    double sum2 = 0;
    for (int64_t i = 0; i < w->numel; i++) sum2 += (double)w->data[i] * w->data[i];
    double std = sqrt(sum2 / (double)w->numel);
    ck_assert_msg(fabs(std - 0.02526) < 0.002, "conv1 std %g", std);
    mc_tensor *fc = mc_params_find(&a->params, "fc.weight");
    float bound = 1.0f / sqrtf(512.0f), max_abs = 0;
    for (int64_t i = 0; i < fc->numel; i++) max_abs = fmaxf(max_abs, fabsf(fc->data[i]));
    ck_assert(max_abs <= bound && max_abs > 0.9f * bound);
    ck_assert_float_eq(mc_params_find(&a->params, "layer1.0.bn1.weight")->data[3], 1.0f);
    ck_assert_float_eq(mc_params_find(&a->params, "layer1.0.bn1.running_var")->data[3], 1.0f);
    /* Same seed, same weights. */
    mc_test_assert_same_params("same seed", &a->params, &b->params);
    mc_resnet_free(a);
    mc_resnet_free(b);
}
END_TEST

/* ---- forward shapes, heads, input errors ---- */

static mc_resnet *narrow(mc_resnet_block block, int bands, int fc_out) {
    mc_resnet_config c = {.block = block, .layers = {1, 1, 1, 1}, .base_width = 4,
                          .in_channels = bands, .fc_out = fc_out};
    mc_resnet *m;
    MC_CHECK_OK(mc_resnet_new(&m, &c, 5));
    return m;
}

static mc_tensor *random_input(int n, int c, int h, int w, uint64_t seed) {
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(n, c, h, w), "x"));
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    mc_tensor_normal(x, &rng, 0.0f, 1.0f);
    return x;
}

START_TEST(test_forward_shapes_and_heads) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *x = random_input(2, 5, 40, 33, 1), *out;
    mc_resnet *m = narrow(MC_RESNET_BOTTLENECK, 5, 0); /* fc removed: pooled 4*8*4 = 128 */
    MC_CHECK_OK(mc_resnet_forward(m, g, x, &out));
    ck_assert(mc_shape_equal(out->shape, MC_SHAPE(2, 128)));
    mc_resnet_free(m);
    m = narrow(MC_RESNET_BASIC, 5, 7); /* fc Linear(32, 7) */
    MC_CHECK_OK(mc_resnet_forward(m, g, x, &out));
    ck_assert(mc_shape_equal(out->shape, MC_SHAPE(2, 7)));
    /* Wrong band count and wrong rank are clear errors. */
    mc_tensor *rgb = random_input(2, 3, 40, 33, 2);
    MC_CHECK_FAILS(mc_resnet_forward(m, g, rgb, &out), MC_ERR_SHAPE, "has 3 bands");
    MC_CHECK_FAILS(mc_resnet_forward(m, g, rgb, &out), MC_ERR_SHAPE, "conv1.weight");
    MC_CHECK_OK(mc_tensor_reshape_inplace(rgb, MC_SHAPE(6, 40, 33)));
    MC_CHECK_FAILS(mc_resnet_forward(m, g, rgb, &out), MC_ERR_SHAPE, "4-D");
    MC_CHECK_FAILS(mc_resnet_forward(m, g, NULL, &out), MC_ERR_ARG, "input is NULL");
    mc_resnet_free(m);
    mc_tensor_free(rgb);
    mc_tensor_free(x);
    mc_graph_free(g);
}
END_TEST

/* A training forward records the fused ops (docs/architecture.md): BN+ReLU and the
 * block's last BN + add + ReLU are one node each, so the tape (and the
 * tensors it keeps) is as long as this hand count, not longer:
 *   stem: conv, bn+relu, maxpool                                       3
 *   basic block: conv, bn+relu, [ds conv, ds bn], conv, bn+add+relu    4 (6)
 *   bottleneck:  conv, bn+relu, conv, bn+relu, [ds 2], conv, bn+add+relu 6 (8)
 *   global average pool (no fc)                                        1
 * layers {1, 1, 1, 1}, width 4: layer1's basic block has no downsample
 * (stride 1, 4 -> 4 channels), every other block has one.
 * (The input needs no gradient, so its NCHW -> NHWC copy is not recorded.) */
START_TEST(test_training_tape_uses_fused_ops) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *x = random_input(2, 3, 32, 32, 3), *out;
    mc_resnet *m = narrow(MC_RESNET_BASIC, 3, 0);
    mc_resnet_set_training(m, true);
    MC_CHECK_OK(mc_resnet_forward(m, g, x, &out));
    ck_assert_int_eq(mc_graph_tape_length(g), 3 + 4 + 3 * 6 + 1);
    mc_resnet_free(m);
    mc_graph_reset(g);
    m = narrow(MC_RESNET_BOTTLENECK, 3, 0);
    mc_resnet_set_training(m, true);
    MC_CHECK_OK(mc_resnet_forward(m, g, x, &out));
    ck_assert_int_eq(mc_graph_tape_length(g), 3 + 4 * 8 + 1);
    mc_resnet_free(m);
    mc_tensor_free(x);
    mc_graph_free(g);
}
END_TEST

/* Inference without gradients runs in the model's scratch arenas: the
 * caller's arena only holds the result, and the values are the same as on
 * the recording path. Training mode counts num_batches_tracked. */
START_TEST(test_no_grad_forward_uses_scratch) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_resnet *m = narrow(MC_RESNET_BOTTLENECK, 3, 10);
    mc_tensor *x = random_input(4, 3, 64, 64, 3), *recorded, *scratch, *out;
    MC_CHECK_OK(mc_resnet_forward(m, g, x, &out));
    size_t recording_bytes = mc_graph_arena_bytes(g);
    MC_CHECK_OK(mc_tensor_clone(&recorded, out, "recorded"));
    mc_graph *g2;
    MC_CHECK_OK(mc_graph_new(&g2));
    mc_graph_set_grad_enabled(g2, false);
    MC_CHECK_OK(mc_resnet_forward(m, g2, x, &scratch));
    size_t scratch_bytes = mc_graph_arena_bytes(g2);
    ck_assert_msg(scratch_bytes * 20 < recording_bytes, "no-grad arena %zu vs recording %zu",
                  scratch_bytes, recording_bytes);
    mc_test_assert_close("no-grad forward", scratch->data, recorded->data, (long)recorded->numel,
                         1e-6, 1e-7);
    /* Frozen except fc: the trunk runs in scratch, fc still gets a gradient. */
    mc_resnet_set_trainable(m, "", false);
    ck_assert_int_eq(mc_resnet_set_trainable(m, "fc.", true), 2);
    mc_graph_reset(g);
    MC_CHECK_OK(mc_resnet_forward(m, g, x, &out));
    ck_assert(out->requires_grad);
    mc_test_assert_close("frozen trunk", out->data, recorded->data, (long)out->numel, 1e-6, 1e-7);

    float before = mc_params_find(&m->params, "bn1.num_batches_tracked")->data[0];
    mc_resnet_set_training(m, true);
    MC_CHECK_OK(mc_resnet_forward(m, g2, x, &out));
    MC_CHECK_OK(mc_resnet_forward(m, g2, x, &out));
    ck_assert_float_eq(mc_params_find(&m->params, "layer4.0.bn3.num_batches_tracked")->data[0],
                       before + 2.0f);
    mc_tensor_free(x);
    mc_tensor_free(recorded);
    mc_resnet_free(m);
    mc_graph_free(g);
    mc_graph_free(g2);
}
END_TEST

/* ---- freezing ---- */

START_TEST(test_freezing) {
    mc_resnet *m = narrow(MC_RESNET_BASIC, 3, 6);
    /* layer1.0: conv1, bn1.{weight,bias}, conv2, bn2.{weight,bias} = 6 parameters. */
    ck_assert_int_eq(mc_resnet_set_trainable(m, "layer1.", false), 6);
    ck_assert_int_eq(mc_resnet_set_trainable(m, "layer1.", false), 0);
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *x = random_input(3, 3, 32, 32, 4), *out, *loss;
    MC_CHECK_OK(mc_resnet_forward(m, g, x, &out));
    MC_CHECK_OK(mc_sum_all(g, out, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    for (int i = 0; i < m->params.count; i++) {
        mc_tensor *t = m->params.items[i];
        if (!t->requires_grad) {
            ck_assert_msg(strncmp(t->name, "layer1.", 7) == 0 || strstr(t->name, "running_") ||
                              strstr(t->name, "num_batches"),
                          "%s should be trainable", t->name);
            continue;
        }
        double norm = 0;
        for (int64_t j = 0; j < t->numel; j++) norm += fabs(t->grad[j]);
        ck_assert_msg(norm > 0, "%s got no gradient", t->name);
    }
    ck_assert(!mc_params_find(&m->params, "layer1.0.conv2.weight")->requires_grad);
    mc_tensor_free(x);
    mc_graph_free(g);
    mc_resnet_free(m);
}
END_TEST

/* ---- the conv1 band rule, by hand ----
 * One output channel, 1x1 kernel: R = 0.3, G = 0.6, B = 0.9, mean 0.6.
 * 5 bands, mean rule: every band 0.6 * 3/5 = 0.36.
 * With rgb_bands {3, 2, 1}: band 3 = R * 3/5 = 0.18, band 2 = G * 3/5 = 0.36,
 * band 1 = B * 3/5 = 0.54, bands 0 and 4 = 0.36.
 * 1 band: 0.6 * 3 = 1.8 (the sum of R, G, B). */
START_TEST(test_conv1_band_rule) {
    mc_tensor *rgb, *five, *one;
    MC_CHECK_OK(mc_tensor_new(&rgb, MC_SHAPE(1, 3, 1, 1), "rgb"));
    MC_CHECK_OK(mc_tensor_new(&five, MC_SHAPE(1, 5, 1, 1), "five"));
    MC_CHECK_OK(mc_tensor_new(&one, MC_SHAPE(1, 1, 1, 1), "one"));
    const float values[3] = {0.3f, 0.6f, 0.9f};
    MC_CHECK_OK(mc_tensor_load(rgb, values, 3));
    MC_CHECK_OK(mc_resnet_derive_conv1(rgb, NULL, five));
    const float mean_rule[5] = {0.36f, 0.36f, 0.36f, 0.36f, 0.36f};
    mc_test_assert_close("mean rule", five->data, mean_rule, 5, 1e-6, 1e-7);
    const int rgb_bands[3] = {3, 2, 1};
    MC_CHECK_OK(mc_resnet_derive_conv1(rgb, rgb_bands, five));
    const float keep_rule[5] = {0.36f, 0.54f, 0.36f, 0.18f, 0.36f};
    mc_test_assert_close("keep-RGB rule", five->data, keep_rule, 5, 1e-6, 1e-7);
    MC_CHECK_OK(mc_resnet_derive_conv1(rgb, NULL, one));
    ck_assert_float_eq_tol(one->data[0], 1.8f, 1e-6f);
    const int bad[3] = {0, 1, 5};
    MC_CHECK_FAILS(mc_resnet_derive_conv1(rgb, bad, five), MC_ERR_ARG, "band index 5");
    MC_CHECK_FAILS(mc_resnet_derive_conv1(five, NULL, rgb), MC_ERR_SHAPE, "conv1 band rule");
    mc_tensor_free(rgb);
    mc_tensor_free(five);
    mc_tensor_free(one);
}
END_TEST

/* ---- strict loading ---- */

static void temp_file(char *buf, size_t len, const char *name) {
    char dir[512];
    snprintf(buf, len, "%s/%s", mc_test_temp_dir(dir, sizeof dir), name);
}

/* Write `m`'s tensors, leaving out `skip` and adding `extra` (may be NULL). */
static void write_variant(const mc_resnet *m, const char *path, const char *skip, mc_tensor *extra) {
    mc_tensor *list[1024];
    int n = 0;
    for (int i = 0; i < m->params.count; i++)
        if (!skip || strcmp(m->params.items[i]->name, skip) != 0) list[n++] = m->params.items[i];
    if (extra) list[n++] = extra;
    MC_CHECK_OK(mc_safetensors_write(path, n, list, 0, NULL));
}

START_TEST(test_strict_loading_errors) {
    mc_resnet *src = narrow(MC_RESNET_BOTTLENECK, 3, 10);
    mc_resnet *dst = narrow(MC_RESNET_BOTTLENECK, 3, 10);
    char path[1024];
    temp_file(path, sizeof path, "variant.safetensors");
    char report[2048];

    write_variant(src, path, "layer2.0.bn2.bias", NULL);
    MC_CHECK_FAILS(mc_resnet_load_path(dst, path, NULL, NULL, 0), MC_ERR_FORMAT,
                   "missing (1): layer2.0.bn2.bias");

    mc_tensor *extra;
    MC_CHECK_OK(mc_tensor_new(&extra, MC_SHAPE(3), "layer9.0.conv1.weight"));
    write_variant(src, path, NULL, extra);
    MC_CHECK_FAILS(mc_resnet_load_path(dst, path, NULL, NULL, 0), MC_ERR_FORMAT,
                   "unexpected (1): layer9.0.conv1.weight");
    mc_tensor_free(extra);

    /* A mis-shaped tensor: the message gives both shapes. */
    mc_resnet *wide = narrow(MC_RESNET_BOTTLENECK, 3, 12);
    write_variant(wide, path, NULL, NULL);
    MC_CHECK_FAILS(mc_resnet_load_path(dst, path, NULL, NULL, 0), MC_ERR_FORMAT,
                   "fc.weight (file (12, 128), model (10, 128))");
    /* Not strict: everything else loads, the report says what did not. */
    mc_resnet_load_options o = mc_resnet_load_defaults();
    o.strict = false;
    MC_CHECK_OK(mc_resnet_load_path(dst, path, &o, report, sizeof report));
    ck_assert_msg(strstr(report, "wrong shape (2)") != NULL, "report: %s", report);
    /* With the head skipped the same file loads strictly. */
    o.strict = true;
    o.skip_fc = true;
    MC_CHECK_OK(mc_resnet_load_path(dst, path, &o, report, sizeof report));
    mc_tensor *w_src = mc_params_find(&wide->params, "layer3.0.conv2.weight");
    mc_tensor *w_dst = mc_params_find(&dst->params, "layer3.0.conv2.weight");
    ck_assert_int_eq(memcmp(w_src->data, w_dst->data, (size_t)w_src->numel * sizeof(float)), 0);

    /* Several problems at once are all named. */
    mc_resnet *basic = narrow(MC_RESNET_BASIC, 3, 10);
    write_variant(basic, path, NULL, NULL);
    mc_clear_error();
    ck_assert_int_eq(mc_resnet_load_path(dst, path, NULL, NULL, 0), MC_ERR_FORMAT);
    ck_assert_msg(strstr(mc_last_error(), "layer1.0.conv3.weight") &&
                      strstr(mc_last_error(),
                             "layer1.0.conv1.weight (file (4, 4, 3, 3), model (4, 4, 1, 1))"),
                  "%s", mc_last_error());
    ck_assert_msg(strstr(mc_last_error(), "missing (") && strstr(mc_last_error(), "wrong shape ("),
                  "%s", mc_last_error());
    mc_resnet_free(basic);
    mc_resnet_free(wide);
    mc_resnet_free(src);
    mc_resnet_free(dst);
}
END_TEST

/* ---- configurations read from a file, under a memory limit ---- */

/* What `mmchain embed` does with a ResNet file: configuration from the
 * file, a model of that configuration, a strict load. */
static mc_status load_from_file_alone(void *path) {
    mc_safetensors *f;
    MC_TRY(mc_safetensors_open(path, &f));
    mc_resnet_config c;
    mc_resnet *m = NULL;
    mc_status status = mc_resnet_config_from_file(f, &c);
    if (status == MC_OK) status = mc_resnet_new(&m, &c, 1);
    if (status == MC_OK) status = mc_resnet_load(m, f, NULL, NULL, 0);
    mc_resnet_free(m);
    mc_safetensors_close(f);
    return status;
}

START_TEST(test_file_declaring_a_huge_network) {
    char path[1024];
    temp_file(path, sizeof path, "declared.safetensors");
    /* Genuine files of both block kinds, with and without fc, pass the
     * check of every tensor against the configuration. */
    mc_resnet *basic = narrow(MC_RESNET_BASIC, 5, 0), *bottleneck = narrow(MC_RESNET_BOTTLENECK, 3, 10);
    write_variant(basic, path, NULL, NULL);
    MC_CHECK_OK(load_from_file_alone(path));
    write_variant(bottleneck, path, NULL, NULL);
    MC_CHECK_OK(load_from_file_alone(path));
    /* A conv1.weight of (4000, 3, 7, 7) over that network declares a stem
     * 4000 wide: hundreds of gigabytes of layers. The file's other shapes
     * refuse it within 256 MB and a few seconds, before anything is built. */
    mc_tensor *stem;
    MC_CHECK_OK(mc_tensor_new(&stem, MC_SHAPE(4000, 3, 7, 7), "conv1.weight"));
    write_variant(bottleneck, path, "conv1.weight", stem);
    mc_test_expect_fails_limited(load_from_file_alone, path, 256u << 20, 20, MC_ERR_FORMAT,
                                 "needs tensor bn1.weight (4000), the file holds (4)");
    mc_tensor_free(stem);
    mc_resnet_free(basic);
    mc_resnet_free(bottleneck);
}
END_TEST

/* ---- checkpoints with optimizer state ---- */

static float adam_step(mc_resnet *m, mc_optimizer *opt, mc_graph *g, mc_tensor *x) {
    mc_tensor *out, *loss;
    mc_optimizer_zero_grad(opt);
    MC_CHECK_OK(mc_resnet_forward(m, g, x, &out));
    MC_CHECK_OK(mc_mean_all(g, out, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    MC_CHECK_OK(mc_optimizer_step(opt));
    float value = loss->data[0];
    mc_graph_reset(g);
    return value;
}

START_TEST(test_save_and_resume) {
    mc_resnet *m = narrow(MC_RESNET_BOTTLENECK, 4, 6);
    mc_resnet_set_training(m, true);
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &m->params, mc_adam_defaults()));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *x = random_input(3, 4, 32, 32, 9);
    adam_step(m, opt, g, x);
    adam_step(m, opt, g, x);
    char path[1024];
    temp_file(path, sizeof path, "checkpoint.safetensors");
    const mc_metadata_entry meta[] = {{"epoch", "2"}};
    MC_CHECK_OK(mc_checkpoint_save(path, &m->params, opt, 1, meta));

    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    ck_assert_str_eq(mc_safetensors_metadata(f, "mmchain.optimizer"), "adam");
    ck_assert_str_eq(mc_safetensors_metadata(f, "epoch"), "2");
    mc_resnet_config c;
    MC_CHECK_OK(mc_resnet_config_from_file(f, &c));
    ck_assert_int_eq(c.block, MC_RESNET_BOTTLENECK);
    ck_assert_int_eq(c.in_channels, 4);
    ck_assert_int_eq(c.base_width, 4);
    ck_assert_int_eq(c.fc_out, 6);
    ck_assert_int_eq(c.layers[3], 1);
    mc_resnet *r;
    MC_CHECK_OK(mc_resnet_new(&r, &c, 99));
    MC_CHECK_OK(mc_resnet_load(r, f, NULL, NULL, 0));
    mc_resnet_set_training(r, true);
    mc_optimizer *ropt;
    MC_CHECK_OK(mc_optimizer_adam(&ropt, &r->params, mc_adam_defaults()));
    MC_CHECK_OK(mc_checkpoint_load_optimizer(f, ropt));
    mc_safetensors_close(f);
    ck_assert_float_eq(mc_params_find(&r->params, "bn1.num_batches_tracked")->data[0], 2.0f);

    /* The resumed run continues exactly like the original. */
    float a = adam_step(m, opt, g, x), b = adam_step(r, ropt, g, x);
    ck_assert_float_eq(a, b);
    mc_test_assert_same_params("after resuming", &m->params, &r->params);
    mc_optimizer_free(opt);
    mc_optimizer_free(ropt);
    mc_resnet_free(m);
    mc_resnet_free(r);
    mc_tensor_free(x);
    mc_graph_free(g);
}
END_TEST

/* ---- parity with the committed PyTorch fixtures ---- */

static const char *const committed_cases[] = {"basic", "bottleneck5"};

START_TEST(test_parity_committed_case) {
    char dir[1024];
    parity_run_nth(mc_test_fixture_path("", dir, sizeof dir), committed_cases, _i);
}
END_TEST

int main(void) {
    Suite *s = suite_create("resnet");
    const TTest *const tests[] = {test_config_presets, test_torchvision_names_and_sizes,
                                  test_default_init, test_forward_shapes_and_heads,
                                  test_training_tape_uses_fused_ops,
                                  test_no_grad_forward_uses_scratch, test_freezing,
                                  test_conv1_band_rule, test_strict_loading_errors,
                                  test_save_and_resume, test_file_declaring_a_huge_network, NULL};
    tcase_set_timeout(mc_test_add_case(s, "model", tests), 120);
    const TTest *const none[] = {NULL};
    const mc_test_loop parity[] = {{test_parity_committed_case, 0, PARITY_N_RUNS(committed_cases)},
                                   {NULL, 0, 0}};
    tcase_set_timeout(mc_test_add_loops(mc_test_add_case(s, "parity", none), parity), 120);
    return mc_test_run_suite(s);
}

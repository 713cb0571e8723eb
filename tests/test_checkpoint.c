/* The checkpoint module (checkpoint.h): loading a parameter list by name
 * (strict, with a report, skipped prefixes, the derive hook, step
 * counters), checking a file against a configuration before allocating,
 * checkpoints with optimizer state (today's metadata and older ResNet
 * checkpoints), and the spectral-encoder checkpoint loader refusing
 * metadata that declares a huge network. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limited.h"
#include "testutil.h"

/* ---- helpers ---- */

static mc_tensor *filled(mc_shape shape, const char *name, float value) {
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, shape, name));
    mc_tensor_fill(t, value);
    return t;
}

/* mc_checkpoint_load_params with only `strict` set. */
static mc_status load_params(const mc_safetensors *f, mc_param_list *params, bool strict,
                             char *report, size_t report_len) {
    mc_checkpoint_load_options o = mc_checkpoint_load_defaults();
    o.strict = strict;
    return mc_checkpoint_load_params(f, params, &o, report, report_len);
}

/* ---- loading by name ---- */

/* A model's parameter list: two trainable tensors and a buffer. */
static void make_model(mc_param_list *list, float value) {
    mc_tensor *t;
    MC_CHECK_OK(mc_params_new(list, &t, MC_SHAPE(4, 3), true, "fc.weight"));
    mc_tensor_fill(t, value);
    MC_CHECK_OK(mc_params_new(list, &t, MC_SHAPE(4), true, "fc.bias"));
    mc_tensor_fill(t, value + 1);
    MC_CHECK_OK(mc_params_new(list, &t, MC_SHAPE(4), false, "bn.running_var"));
    mc_tensor_fill(t, value + 2);
}

START_TEST(test_params_round_trip) {
    char path[600];
    mc_test_dir_path("params.safetensors", path, sizeof path);
    mc_param_list saved = {0}, loaded = {0};
    make_model(&saved, 0.5f);
    saved.items[0]->data[7] = -9.0f;
    mc_metadata_entry meta[] = {{"bands", "B04,B03,B02"}};
    MC_CHECK_OK(mc_safetensors_write(path, saved.count, saved.items, 1, meta));

    make_model(&loaded, 0.0f);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    char report[512];
    MC_CHECK_OK(load_params(f, &loaded, true, report, sizeof report));
    ck_assert_msg(strstr(report, "loaded 3 of 3 tensors") != NULL, "report: %s", report);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(memcmp(loaded.items[i]->data, saved.items[i]->data,
                                (size_t)saved.items[i]->numel * 4), 0);
    ck_assert_str_eq(mc_safetensors_metadata(f, "bands"), "B04,B03,B02");
    mc_safetensors_close(f);
    mc_params_free(&saved);
    mc_params_free(&loaded);
}
END_TEST

START_TEST(test_params_strict_lists_every_problem) {
    char path[600];
    mc_test_dir_path("mismatch.safetensors", path, sizeof path);
    /* The file: fc.weight (3, 4) instead of (4, 3), fc.bias, an extra
     * head.weight; no bn.running_var. */
    mc_tensor *file_tensors[3] = {
        filled(MC_SHAPE(3, 4), "fc.weight", 1),
        filled(MC_SHAPE(4), "fc.bias", 7),
        filled(MC_SHAPE(2), "head.weight", 1),
    };
    MC_CHECK_OK(mc_safetensors_write(path, 3, file_tensors, 0, NULL));
    for (int i = 0; i < 3; i++) mc_tensor_free(file_tensors[i]);

    mc_param_list model = {0};
    make_model(&model, 0.0f);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    char report[512];
    mc_clear_error();
    ck_assert_int_eq(load_params(f, &model, true, report, sizeof report), MC_ERR_FORMAT);
    const char *msg = mc_last_error();
    ck_assert_msg(strstr(msg, "3 problem(s)"), "%s", msg);
    ck_assert_msg(strstr(msg, "missing (1): bn.running_var"), "%s", msg);
    ck_assert_msg(strstr(msg, "wrong shape (1): fc.weight (file (3, 4), model (4, 3))"), "%s", msg);
    ck_assert_msg(strstr(msg, "unexpected (1): head.weight"), "%s", msg);
    /* Nothing was loaded, not even the tensor that matched. */
    ck_assert_float_eq(model.items[1]->data[0], 1.0f);

    /* Non-strict: loads fc.bias, reports the rest, succeeds. */
    MC_CHECK_OK(load_params(f, &model, false, report, sizeof report));
    ck_assert_float_eq(model.items[1]->data[0], 7.0f);
    ck_assert_float_eq(model.items[0]->data[0], 0.0f);
    ck_assert_msg(strstr(report, "loaded 1 of 3 tensors"), "%s", report);
    ck_assert_msg(strstr(report, "missing (1): bn.running_var"), "%s", report);
    ck_assert_msg(strstr(report, "unexpected (1): head.weight"), "%s", report);
    /* A tiny report buffer is truncated, never overrun; NULL is allowed. */
    char tiny[8];
    MC_CHECK_OK(load_params(f, &model, false, tiny, sizeof tiny));
    ck_assert_uint_eq(strlen(tiny), 7);
    MC_CHECK_OK(load_params(f, &model, false, NULL, 0));
    mc_safetensors_close(f);
    mc_params_free(&model);
}
END_TEST

START_TEST(test_params_dtype_and_ignored_buffers) {
    char path[600];
    mc_test_dir_path("dtype.safetensors", path, sizeof path);
    /* fc.bias stored as I64 (wrong for a float parameter); a BatchNorm step
     * counter the model does not keep (ignored); fc.weight as BF16 (fine). */
    const char *header =
        "{\"fc.bias\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[0,32]},"
        "\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[32,40]},"
        "\"fc.weight\":{\"dtype\":\"BF16\",\"shape\":[4,3],\"data_offsets\":[40,64]},"
        "\"bn.running_var\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[64,72]}}";
    unsigned char data[72] = {0};
    /* fc.weight: every element bf16 0x4040 = float 0x40400000 = 3.0. */
    for (int i = 40; i < 64; i += 2) data[i] = 0x40, data[i + 1] = 0x40;
    /* bn.running_var: half 0x3800 = 2^(14-15) = 0.5. */
    for (int i = 64; i < 72; i += 2) data[i] = 0x00, data[i + 1] = 0x38;
    mc_test_write_safetensors(path, header, data, sizeof data, UINT64_MAX);

    mc_param_list model = {0};
    make_model(&model, 0.0f);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    MC_CHECK_FAILS(load_params(f, &model, true, NULL, 0), MC_ERR_FORMAT,
                   "not a float dtype (1): fc.bias (file I64)");
    ck_assert_msg(strstr(mc_last_error(), "unexpected") == NULL, "%s", mc_last_error());
    char report[512];
    MC_CHECK_OK(load_params(f, &model, false, report, sizeof report));
    ck_assert_msg(strstr(report, "loaded 2 of 3") && strstr(report, "ignored 1 integer buffer"),
                  "%s", report);
    ck_assert_float_eq(model.items[0]->data[11], 3.0f);
    ck_assert_float_eq(model.items[2]->data[3], 0.5f);
    mc_safetensors_close(f);
    mc_params_free(&model);
}
END_TEST

/* ---- checkpoints: kill and resume ---- */

/* A tiny model, Linear(3, 4) -> tanh -> Linear(4, 2), deterministic init. */
static void make_mlp(mc_param_list *p) {
    const mc_shape shapes[4] = {MC_SHAPE(4, 3), MC_SHAPE(4), MC_SHAPE(2, 4), MC_SHAPE(2)};
    const char *names[4] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
    mc_rng rng;
    mc_rng_seed(&rng, 5);
    for (int i = 0; i < 4; i++) {
        mc_tensor *t;
        MC_CHECK_OK(mc_params_new(p, &t, shapes[i], true, "%s", names[i]));
        mc_tensor_uniform(t, &rng, -0.5f, 0.5f);
    }
}

static void train_steps(mc_param_list *p, mc_optimizer *opt, int steps) {
    static const float x_values[6 * 3] = {0.1f, -0.2f, 0.3f, 1.0f, 0.5f, -0.5f, -1.0f, 0.2f, 0.0f,
                                          0.7f, -0.7f, 0.1f, 0.3f, 0.3f, 0.3f, -0.4f, 0.9f, -0.1f};
    static const int32_t targets[6] = {0, 1, 1, 0, 1, 0};
    mc_tensor *x;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(6, 3), "x"));
    MC_CHECK_OK(mc_tensor_load(x, x_values, 18));
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    for (int s = 0; s < steps; s++) {
        mc_optimizer_zero_grad(opt);
        mc_tensor *h, *a, *logits, *loss;
        MC_CHECK_OK(mc_linear(g, x, p->items[0], p->items[1], &h));
        MC_CHECK_OK(mc_tanh(g, h, &a));
        MC_CHECK_OK(mc_linear(g, a, p->items[2], p->items[3], &logits));
        MC_CHECK_OK(mc_cross_entropy(g, logits, targets, 0.0f, &loss));
        MC_CHECK_OK(mc_backward(g, loss));
        MC_CHECK_OK(mc_optimizer_step(opt));
        mc_graph_reset(g);
    }
    mc_graph_free(g);
    mc_tensor_free(x);
}

START_TEST(test_checkpoint_resume_is_exact) {
    char path[600];
    mc_test_dir_path("run.ckpt.safetensors", path, sizeof path);
    mc_adam_config config = mc_adam_defaults();
    config.lr = 0.05f;

    /* The uninterrupted run: 3 steps, a checkpoint, 2 more steps. */
    mc_param_list straight = {0};
    make_mlp(&straight);
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &straight, config));
    train_steps(&straight, opt, 3);
    mc_metadata_entry meta[] = {{"step", "3"}};
    MC_CHECK_OK(mc_checkpoint_save(path, &straight, opt, 1, meta));
    train_steps(&straight, opt, 2);
    mc_optimizer_free(opt);

    /* The resumed run: a fresh model and optimizer, loaded, 2 steps. */
    mc_param_list resumed = {0};
    make_mlp(&resumed);
    mc_tensor_fill(resumed.items[0], 0.0f); /* must be overwritten */
    MC_CHECK_OK(mc_optimizer_adam(&opt, &resumed, config));
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    ck_assert_str_eq(mc_safetensors_metadata(f, "step"), "3");
    ck_assert_str_eq(mc_safetensors_metadata(f, "mmchain.optimizer"), "adam");
    ck_assert(mc_safetensors_has(f, "optimizer.exp_avg.fc1.weight"));
    MC_CHECK_OK(mc_checkpoint_load(f, &resumed, opt));
    ck_assert_int_eq(mc_optimizer_steps(opt), 3);
    train_steps(&resumed, opt, 2);
    /* Same arithmetic in the same order: bit-identical parameters. */
    for (int i = 0; i < 4; i++)
        ck_assert_msg(memcmp(resumed.items[i]->data, straight.items[i]->data,
                             (size_t)straight.items[i]->numel * 4) == 0,
                      "%s differs after resuming", straight.items[i]->name);
    mc_optimizer_free(opt);

    /* The wrong optimizer kind, and a model that does not fit, are errors. */
    mc_sgd_config sgd = {.lr = 0.1f};
    MC_CHECK_OK(mc_optimizer_sgd(&opt, &resumed, sgd));
    MC_CHECK_FAILS(mc_checkpoint_load(f, &resumed, opt), MC_ERR_FORMAT, "holds adam optimizer state, expected sgd");
    mc_optimizer_free(opt);
    /* An Adam over parameters of the same shapes but other names (another
     * model's) would find none of the file's moments: refused, not reset. */
    mc_param_list renamed = {0};
    make_mlp(&renamed);
    for (int i = 0; i < renamed.count; i++) {
        char name[MC_NAME_LEN + 8];
        snprintf(name, sizeof name, "encoder.%.80s", renamed.items[i]->name);
        mc_tensor_set_name(renamed.items[i], name);
    }
    MC_CHECK_OK(mc_optimizer_adam(&opt, &renamed, config));
    MC_CHECK_FAILS(mc_checkpoint_load_optimizer(f, opt), MC_ERR_FORMAT,
                   "optimizer state optimizer.exp_avg.fc1.weight belongs to no parameter");
    ck_assert_int_eq(mc_optimizer_steps(opt), 0);
    mc_optimizer_free(opt);
    mc_params_free(&renamed);
    mc_param_list other = {0};
    mc_tensor *t;
    MC_CHECK_OK(mc_params_new(&other, &t, MC_SHAPE(4, 3), true, "fc1.weight"));
    MC_CHECK_FAILS(mc_checkpoint_load(f, &other, NULL), MC_ERR_FORMAT, "unexpected (3): fc1.bias");
    ck_assert(strstr(mc_last_error(), "optimizer.") == NULL);
    mc_safetensors_close(f);

    /* A plain weights file is not a checkpoint. */
    MC_CHECK_OK(mc_safetensors_write(path, other.count, other.items, 0, NULL));
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    MC_CHECK_FAILS(mc_checkpoint_load(f, &other, NULL), MC_ERR_FORMAT, "not an mmchain checkpoint");
    mc_safetensors_close(f);
    mc_params_free(&other);
    mc_params_free(&straight);
    mc_params_free(&resumed);
}
END_TEST

/* ---- dtype decoding, against values worked out by hand ---- */

/* The derive hook used below: a (2, N, 1, 1) kernel from a (2, 3, 1, 1) one,
 * every band getting the mean of the three. */
static bool mean_accepts(void *ctx, const mc_tensor *dst, mc_shape file_shape) {
    int *calls = ctx;
    (*calls)++;
    return strcmp(dst->name, "conv.weight") == 0 && file_shape.ndim == 4 && file_shape.dim[1] == 3;
}

static mc_status mean_derive(void *ctx, const mc_tensor *src, mc_tensor *dst) {
    (void)ctx;
    int64_t bands = dst->shape.dim[1];
    for (int64_t o = 0; o < dst->shape.dim[0]; o++)
        for (int64_t n = 0; n < bands; n++)
            dst->data[o * bands + n] =
                (src->data[o * 3] + src->data[o * 3 + 1] + src->data[o * 3 + 2]) / 3.0f;
    return MC_OK;
}

START_TEST(test_skip_prefixes_and_derive_hook) {
    char path[600];
    mc_test_dir_path("derive.safetensors", path, sizeof path);
    /* The file: an RGB kernel, a 4-class head, and an extra head bias. */
    mc_tensor *file_tensors[3] = {filled(MC_SHAPE(2, 3, 1, 1), "conv.weight", 0),
                                  filled(MC_SHAPE(4), "head.weight", 9),
                                  filled(MC_SHAPE(4), "head.bias", 9)};
    for (int i = 0; i < 6; i++) file_tensors[0]->data[i] = (float)(i * i); /* 0 1 4 | 9 16 25 */
    MC_CHECK_OK(mc_safetensors_write(path, 3, file_tensors, 0, NULL));
    for (int i = 0; i < 3; i++) mc_tensor_free(file_tensors[i]);

    /* The model: 5 bands, a 2-class head. */
    mc_param_list model = {0};
    mc_tensor *conv, *head;
    MC_CHECK_OK(mc_params_new(&model, &conv, MC_SHAPE(2, 5, 1, 1), true, "conv.weight"));
    MC_CHECK_OK(mc_params_new(&model, &head, MC_SHAPE(2), true, "head.weight"));
    mc_tensor_fill(head, -1.0f);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));

    /* Without the options: both mismatches and the extra tensor are named. */
    MC_CHECK_FAILS(load_params(f, &model, true, NULL, 0), MC_ERR_FORMAT,
                   "wrong shape (2): conv.weight (file (2, 3, 1, 1), model (2, 5, 1, 1)), "
                   "head.weight (file (4), model (2))");
    ck_assert_msg(strstr(mc_last_error(), "unexpected (1): head.bias"), "%s", mc_last_error());

    /* Skipping "head." on both sides and deriving conv: a strict load. */
    int calls = 0;
    static const char *const skip[] = {"head.", NULL};
    mc_derive_hook hook = {mean_accepts, mean_derive, &calls};
    mc_checkpoint_load_options o = mc_checkpoint_load_defaults();
    o.skip_prefixes = skip;
    o.derive = &hook;
    char report[512];
    MC_CHECK_OK(mc_checkpoint_load_params(f, &model, &o, report, sizeof report));
    ck_assert_int_eq(calls, 1);
    ck_assert_msg(strstr(report, "loaded 1 of 2 tensors; derived (1): conv.weight"), "%s", report);
    for (int n = 0; n < 5; n++) {
        ck_assert_float_eq_tol(conv->data[n], 5.0f / 3.0f, 1e-6f);
        ck_assert_float_eq_tol(conv->data[5 + n], 50.0f / 3.0f, 1e-6f);
    }
    ck_assert_float_eq(head->data[0], -1.0f); /* kept: a new head */
    mc_safetensors_close(f);
    mc_params_free(&model);
}
END_TEST

START_TEST(test_step_counters) {
    char path[600];
    mc_test_dir_path("counter.safetensors", path, sizeof path);
    mc_param_list model = {0};
    mc_tensor *mean, *counter;
    MC_CHECK_OK(mc_params_new(&model, &mean, MC_SHAPE(2), false, "bn.running_mean"));
    MC_CHECK_OK(mc_params_new(&model, &counter, MC_SHAPE(1), false, "bn.num_batches_tracked"));
    counter->data[0] = 3.0f;

    /* A file without the counter: a strict load keeps the model's. */
    mc_tensor *only_mean = filled(MC_SHAPE(2), "bn.running_mean", 0.5f);
    MC_CHECK_OK(mc_safetensors_write(path, 1, &only_mean, 0, NULL));
    mc_tensor_free(only_mean);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    MC_CHECK_OK(load_params(f, &model, true, NULL, 0));
    mc_safetensors_close(f);
    ck_assert_float_eq(mean->data[1], 0.5f);
    ck_assert_float_eq(counter->data[0], 3.0f);

    /* PyTorch's int64 scalar counter (value 7) loads as a float. */
    const char *header =
        "{\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
        "\"bn.running_mean\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
    unsigned char data[16] = {7};
    mc_test_write_safetensors(path, header, data, sizeof data, UINT64_MAX);
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    MC_CHECK_OK(load_params(f, &model, true, NULL, 0));
    mc_safetensors_close(f);
    ck_assert_float_eq(counter->data[0], 7.0f);
    ck_assert_float_eq(mean->data[0], 0.0f);
    mc_params_free(&model);
}
END_TEST

START_TEST(test_expect) {
    char path[600];
    mc_test_dir_path("expect.safetensors", path, sizeof path);
    const char *header =
        "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
        "\"ids\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[12,20]}}";
    unsigned char data[20] = {0};
    mc_test_write_safetensors(path, header, data, sizeof data, UINT64_MAX);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    MC_CHECK_OK(mc_checkpoint_expect(f, "a", MC_SHAPE(2, 3)));
    MC_CHECK_FAILS(mc_checkpoint_expect(f, "a", MC_SHAPE(3, 2)), MC_ERR_FORMAT,
                   "needs tensor a (3, 2), the file holds (2, 3)");
    MC_CHECK_FAILS(mc_checkpoint_expect(f, "b", MC_SHAPE(1)), MC_ERR_FORMAT,
                   "needs tensor b (1), which the file does not hold");
    MC_CHECK_FAILS(mc_checkpoint_expect(f, "ids", MC_SHAPE(2)), MC_ERR_FORMAT, "dtype I32");
    ck_assert_msg(strstr(mc_last_error(), path) != NULL, "%s", mc_last_error());
    mc_safetensors_close(f);
}
END_TEST

/* A checkpoint as mmchain's ResNet writer used to save it: metadata
 * "format" = "mmchain.resnet" and the optimizer's name under "optimizer",
 * no "mmchain.checkpoint" / "mmchain.optimizer". It must still load. */
START_TEST(test_older_resnet_checkpoint_loads) {
    char path[600];
    mc_test_dir_path("older.safetensors", path, sizeof path);
    mc_param_list model = {0};
    make_mlp(&model);
    mc_adam_config config = mc_adam_defaults();
    config.lr = 0.05f;
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &model, config));
    train_steps(&model, opt, 2);
    mc_param_list state = {0};
    MC_CHECK_OK(mc_optimizer_export_state(opt, &state));
    mc_tensor *all[64];
    int n = 0;
    for (int i = 0; i < model.count; i++) all[n++] = model.items[i];
    for (int i = 0; i < state.count; i++) all[n++] = state.items[i];
    const mc_metadata_entry meta[] = {{"format", "mmchain.resnet"}, {"format_version", "1"},
                                      {"optimizer", "adam"}, {"optimizer_steps", "2"}};
    MC_CHECK_OK(mc_safetensors_write(path, n, all, 4, meta));
    mc_params_free(&state);
    train_steps(&model, opt, 1);

    mc_param_list resumed = {0};
    make_mlp(&resumed);
    mc_optimizer *ropt;
    MC_CHECK_OK(mc_optimizer_adam(&ropt, &resumed, config));
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    MC_CHECK_OK(mc_checkpoint_load(f, &resumed, ropt));
    ck_assert_int_eq(mc_optimizer_steps(ropt), 2);
    train_steps(&resumed, ropt, 1);
    for (int i = 0; i < model.count; i++)
        ck_assert_msg(memcmp(resumed.items[i]->data, model.items[i]->data,
                             (size_t)model.items[i]->numel * 4) == 0,
                      "%s differs after resuming", model.items[i]->name);
    mc_optimizer *sgd;
    MC_CHECK_OK(mc_optimizer_sgd(&sgd, &resumed, (mc_sgd_config){.lr = 0.1f}));
    MC_CHECK_FAILS(mc_checkpoint_load_optimizer(f, sgd), MC_ERR_FORMAT,
                   "holds adam optimizer state, expected sgd");
    mc_optimizer_free(sgd);
    mc_safetensors_close(f);
    mc_optimizer_free(opt);
    mc_optimizer_free(ropt);
    mc_params_free(&model);
    mc_params_free(&resumed);
}
END_TEST

/* ---- the spectral-encoder checkpoint loader under a memory limit ---- */

static mc_status load_encoder(void *path) {
    mc_spectral_encoder *enc = NULL;
    mc_status status = mc_spectral_encoder_load(path, &enc, NULL);
    mc_spectral_encoder_free(enc);
    return status;
}

/* Metadata claiming a 4096-wide stem or 1000 blocks per stage (networks of
 * hundreds of gigabytes) over the tensors of a tiny encoder: refused from
 * the file's shapes within 256 MB and a few seconds, before building. */
START_TEST(test_spectral_checkpoint_claiming_a_huge_network) {
    char path[600], forged[600];
    mc_test_dir_path("encoder.safetensors", path, sizeof path);
    mc_test_dir_path("forged.safetensors", forged, sizeof forged);
    mc_resnet_config arch = {.block = MC_RESNET_BASIC, .layers = {1, 1, 1, 1}, .base_width = 4};
    mc_bands bands;
    mc_norm norm;
    MC_CHECK_OK(mc_bands_parse("B04,B03,B02", &bands));
    MC_CHECK_OK(mc_norm_init(&norm, MC_NORM_TORCHGEO));
    mc_spectral_encoder *enc;
    MC_CHECK_OK(mc_spectral_encoder_new(&enc, &arch, &bands, &norm, 32, 8, logf(1 / 0.07f), true, 1));
    MC_CHECK_OK(mc_spectral_encoder_save(enc, path, NULL, NULL, 0, NULL));
    mc_spectral_encoder_free(enc);
    MC_CHECK_OK(load_encoder(path)); /* the genuine file loads */
    if (!mc_test_memory_limit_applies()) fprintf(stderr, "note: no memory limit under ASan\n");

    mc_test_copy_with_metadata(path, forged, "base_width", "4096");
    mc_test_expect_fails_limited(load_encoder, forged, 256u << 20, 20, MC_ERR_FORMAT,
                                 "needs tensor conv1.weight (4096, 3, 7, 7), the file holds (4, 3, 7, 7)");
    mc_test_copy_with_metadata(path, forged, "layers", "1000,1000,1000,1000");
    mc_test_expect_fails_limited(load_encoder, forged, 256u << 20, 20, MC_ERR_FORMAT,
                                 "needs tensor layer1.1.conv1.weight");
}
END_TEST

/* Every value of every tensor in the list, as floats (for "unchanged"). */
static float *snapshot(const mc_param_list *list) {
    int64_t total = 0;
    for (int i = 0; i < list->count; i++) total += list->items[i]->numel;
    float *values = malloc((size_t)total * sizeof *values), *at = values;
    ck_assert_ptr_nonnull(values);
    for (int i = 0; i < list->count; i++) {
        memcpy(at, list->items[i]->data, (size_t)list->items[i]->numel * sizeof *at);
        at += list->items[i]->numel;
    }
    return values;
}

static void assert_unchanged(const char *what, const mc_param_list *list, const float *before) {
    float *now = snapshot(list);
    int64_t total = 0;
    for (int i = 0; i < list->count; i++) total += list->items[i]->numel;
    ck_assert_msg(memcmp(now, before, (size_t)total * sizeof *now) == 0, "%s changed the model", what);
    free(now);
}

/* NaN or Inf in a file's weights or optimizer state is refused on load,
 * naming the file and the tensor; a refused load of the weights (the NaN
 * in the second tensor) and a checkpoint of another optimizer change no
 * value of the model. */
START_TEST(test_non_finite_values_refused) {
    char path[600];
    mc_test_dir_path("nan.safetensors", path, sizeof path);
    mc_param_list saved = {0}, loaded = {0};
    make_model(&saved, 0.5f);
    saved.items[1]->data[2] = NAN;
    MC_CHECK_OK(mc_safetensors_write(path, saved.count, saved.items, 0, NULL));
    make_model(&loaded, 0.0f);
    float *before = snapshot(&loaded);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    MC_CHECK_FAILS(load_params(f, &loaded, true, NULL, 0), MC_ERR_NUMERIC, "nan.safetensors: tensor fc.bias holds NaN at element 2");
    assert_unchanged("a strict load refused for a NaN", &loaded, before);
    char report[512];
    MC_CHECK_FAILS(load_params(f, &loaded, false, report, sizeof report), MC_ERR_NUMERIC, "fc.bias holds NaN");
    assert_unchanged("a load refused for a NaN", &loaded, before);
    ck_assert_msg(strstr(report, "loaded 0 of"), "the report of a refused load: %s", report);
    mc_safetensors_close(f);

    /* A checkpoint of SGD restored into Adam. */
    mc_optimizer *sgd, *adam;
    saved.items[1]->data[2] = 0.0f;
    MC_CHECK_OK(mc_optimizer_sgd(&sgd, &saved, (mc_sgd_config){.lr = 0.1f}));
    MC_CHECK_OK(mc_checkpoint_save(path, &saved, sgd, 0, NULL));
    mc_optimizer_free(sgd);
    MC_CHECK_OK(mc_optimizer_adam(&adam, &loaded, mc_adam_defaults()));
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    MC_CHECK_FAILS(mc_checkpoint_load(f, &loaded, adam), MC_ERR_FORMAT,
                   "nan.safetensors holds sgd optimizer state, expected adam");
    assert_unchanged("a checkpoint of another optimizer", &loaded, before);
    mc_safetensors_close(f);
    mc_optimizer_free(adam);
    free(before);

    /* A checkpoint whose Adam state holds Inf. */
    saved.items[1]->data[2] = 0.0f;
    mc_optimizer *opt;
    MC_CHECK_OK(mc_optimizer_adam(&opt, &saved, mc_adam_defaults()));
    MC_CHECK_OK(mc_checkpoint_save(path, &saved, opt, 0, NULL));
    mc_optimizer_free(opt);
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    int n = mc_safetensors_count(f);
    mc_tensor **all = calloc((size_t)n, sizeof *all);
    mc_metadata_entry meta[8];
    int n_meta = mc_safetensors_metadata_count(f);
    ck_assert_int_le(n_meta, 8);
    for (int i = 0; i < n_meta; i++)
        meta[i] = (mc_metadata_entry){mc_safetensors_metadata_key(f, i), mc_safetensors_metadata(f, mc_safetensors_metadata_key(f, i))};
    bool poisoned = false;
    for (int i = 0; i < n; i++) {
        MC_CHECK_OK(mc_safetensors_read(f, mc_safetensors_name(f, i), &all[i]));
        if (!poisoned && strncmp(all[i]->name, "optimizer.", 10) == 0 && all[i]->numel > 0)
            all[i]->data[0] = INFINITY, poisoned = true;
    }
    ck_assert(poisoned);
    char forged[600];
    mc_test_dir_path("inf.safetensors", forged, sizeof forged);
    MC_CHECK_OK(mc_safetensors_write(forged, n, all, n_meta, meta));
    mc_safetensors_close(f);
    for (int i = 0; i < n; i++) mc_tensor_free(all[i]);
    free(all);
    MC_CHECK_OK(mc_optimizer_adam(&opt, &loaded, mc_adam_defaults()));
    MC_CHECK_OK(mc_safetensors_open(forged, &f));
    float *before_inf = snapshot(&loaded);
    MC_CHECK_FAILS(mc_checkpoint_load(f, &loaded, opt), MC_ERR_NUMERIC, "inf.safetensors: tensor optimizer.");
    assert_unchanged("a checkpoint whose optimizer state holds Inf", &loaded, before_inf);
    free(before_inf);
    mc_safetensors_close(f);
    mc_optimizer_free(opt);

    /* A checkpoint whose Adam state lacks a tensor: the model's tensors
     * load first and the import refuses after them; the model gets its
     * values back. */
    MC_CHECK_OK(mc_optimizer_adam(&opt, &saved, mc_adam_defaults()));
    MC_CHECK_OK(mc_checkpoint_save(path, &saved, opt, 0, NULL));
    mc_optimizer_free(opt);
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    n = mc_safetensors_count(f);
    n_meta = mc_safetensors_metadata_count(f);
    for (int i = 0; i < n_meta; i++)
        meta[i] = (mc_metadata_entry){mc_safetensors_metadata_key(f, i), mc_safetensors_metadata(f, mc_safetensors_metadata_key(f, i))};
    all = calloc((size_t)n, sizeof *all);
    int kept = 0;
    bool dropped = false;
    for (int i = 0; i < n; i++) {
        const char *name = mc_safetensors_name(f, i);
        if (!dropped && strncmp(name, "optimizer.", 10) == 0) {
            dropped = true;
            continue;
        }
        MC_CHECK_OK(mc_safetensors_read(f, name, &all[kept++]));
    }
    ck_assert(dropped);
    mc_test_dir_path("short.safetensors", forged, sizeof forged);
    MC_CHECK_OK(mc_safetensors_write(forged, kept, all, n_meta, meta));
    mc_safetensors_close(f);
    for (int i = 0; i < kept; i++) mc_tensor_free(all[i]);
    free(all);
    for (int i = 0; i < loaded.count; i++) /* values the file's differ from */
        for (int64_t j = 0; j < loaded.items[i]->numel; j++) loaded.items[i]->data[j] = -2.0f;
    float *before_short = snapshot(&loaded);
    MC_CHECK_OK(mc_optimizer_adam(&opt, &loaded, mc_adam_defaults()));
    MC_CHECK_OK(mc_safetensors_open(forged, &f));
    MC_CHECK_FAILS(mc_checkpoint_load(f, &loaded, opt), MC_ERR_FORMAT, "optimizer state");
    assert_unchanged("a checkpoint whose optimizer state lacks a tensor", &loaded, before_short);
    free(before_short);
    mc_safetensors_close(f);
    mc_optimizer_free(opt);
    mc_params_free(&saved);
    mc_params_free(&loaded);
}
END_TEST

static Suite *checkpoint_suite(void) {
    Suite *s = suite_create("checkpoint");
    const TTest *const load[] = {test_params_round_trip, test_params_strict_lists_every_problem,
                                 test_params_dtype_and_ignored_buffers,
                                 test_skip_prefixes_and_derive_hook, test_step_counters, test_expect,
                                 test_non_finite_values_refused, NULL};
    mc_test_use_temp_dir(mc_test_add_case(s, "load_params", load));
    const TTest *const checkpoints[] = {test_checkpoint_resume_is_exact,
                                        test_older_resnet_checkpoint_loads,
                                        test_spectral_checkpoint_claiming_a_huge_network, NULL};
    tcase_set_timeout(mc_test_use_temp_dir(mc_test_add_case(s, "checkpoints", checkpoints)), 120);
    return s;
}

int main(void) { return mc_test_run_suite(checkpoint_suite()); }

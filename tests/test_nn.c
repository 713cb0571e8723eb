/* The layer kit (nn.h): parameter names and shapes in PyTorch's order, the
 * initialisations (bounds, statistics, the order of the draws), each
 * layer's forward against plain loops or the ops it stands for, and the
 * release of finished blocks' memory in inference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- helpers ---- */

static mc_tensor *random_tensor(mc_shape shape, const char *name, uint64_t seed) {
    mc_tensor *t;
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    MC_CHECK_OK(mc_tensor_new(&t, shape, name));
    mc_tensor_normal(t, &rng, 0.0f, 1.0f);
    return t;
}

/* Assert the list holds exactly `names`, in order, with the given numels. */
static void assert_names(const mc_param_list *params, int n, const char *const *names,
                         const int64_t *numels) {
    ck_assert_int_eq(params->count, n);
    for (int i = 0; i < n; i++) {
        ck_assert_str_eq(params->items[i]->name, names[i]);
        ck_assert_int_eq(params->items[i]->numel, numels[i]);
    }
}

static void assert_all_equal(const mc_tensor *t, float value) {
    for (int64_t i = 0; i < t->numel; i++)
        ck_assert_msg(t->data[i] == value, "%s[%lld] = %g, expected %g", t->name, (long long)i,
                      (double)t->data[i], (double)value);
}

/* Mean and (biased) variance of a tensor's values, in double. */
static void moments(const mc_tensor *t, double *mean, double *var) {
    double sum = 0.0, sum2 = 0.0;
    for (int64_t i = 0; i < t->numel; i++) sum += t->data[i];
    *mean = sum / (double)t->numel;
    for (int64_t i = 0; i < t->numel; i++) sum2 += (t->data[i] - *mean) * (t->data[i] - *mean);
    *var = sum2 / (double)t->numel;
}

/* U(-bound, bound): every value inside, the extremes close to the bound,
 * mean 0 and variance bound^2 / 3 within sampling error. */
static void assert_uniform(const mc_tensor *t, double bound) {
    double lo = 0.0, hi = 0.0, mean, var;
    for (int64_t i = 0; i < t->numel; i++) {
        lo = fmin(lo, t->data[i]);
        hi = fmax(hi, t->data[i]);
    }
    ck_assert_msg(lo >= -bound && hi <= bound, "%s spans [%g, %g], bound %g", t->name, lo, hi, bound);
    ck_assert_msg(lo < -0.98 * bound && hi > 0.98 * bound, "%s spans only [%g, %g] of +-%g",
                  t->name, lo, hi, bound);
    moments(t, &mean, &var);
    double n = (double)t->numel, expected_var = bound * bound / 3.0;
    ck_assert_msg(fabs(mean) < 5.0 * sqrt(expected_var / n), "%s mean %g", t->name, mean);
    ck_assert_msg(fabs(var / expected_var - 1.0) < 0.05, "%s variance %g, expected %g", t->name,
                  var, expected_var);
}

/* ---- plain-loop references (double accumulation) ---- */

/* y (rows, out) = x (rows, in) W^T (W: (out, in)) + b (out, or NULL). */
static void ref_linear(const float *x, int rows, int in, const mc_linear_layer *layer, float *y) {
    int out = (int)layer->weight->shape.dim[0];
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double acc = layer->bias ? layer->bias->data[o] : 0.0;
            for (int i = 0; i < in; i++)
                acc += (double)x[r * in + i] * layer->weight->data[o * in + i];
            y[r * out + o] = (float)acc;
        }
}

static float ref_activation(mc_activation a, float v) {
    switch (a) {
    case MC_ACT_GELU: return (float)(0.5 * v * (1.0 + erf(v / sqrt(2.0))));
    case MC_ACT_QUICK_GELU: return (float)(v / (1.0 + exp(-1.702 * v)));
    default: return v > 0.0f ? v : 0.0f;
    }
}

static void ref_mlp(const float *x, int rows, int in, const mc_mlp *mlp, float *y) {
    int hidden = (int)mlp->fc1.weight->shape.dim[0];
    float *h = malloc(sizeof *h * (size_t)rows * hidden);
    ref_linear(x, rows, in, &mlp->fc1, h);
    for (int i = 0; i < rows * hidden; i++) h[i] = ref_activation(mlp->activation, h[i]);
    ref_linear(h, rows, hidden, &mlp->fc2, y);
    free(h);
}

static void ref_layer_norm(const float *x, int rows, int d, const mc_layer_norm *ln, float *y) {
    for (int r = 0; r < rows; r++) {
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < d; i++) mean += x[r * d + i];
        mean /= d;
        for (int i = 0; i < d; i++) var += (x[r * d + i] - mean) * (x[r * d + i] - mean);
        var /= d;
        double inv = 1.0 / sqrt(var + ln->eps);
        for (int i = 0; i < d; i++)
            y[r * d + i] = (float)((x[r * d + i] - mean) * inv * ln->weight->data[i] +
                                   ln->bias->data[i]);
    }
}

/* x (b, t, w) -> y (b, t, w). */
static void ref_self_attention(const float *x, int b, int t, int w, const mc_self_attention *a,
                               float *y) {
    size_t n = (size_t)b * t * w;
    float *q = malloc(sizeof *q * n * 4), *k = q + n, *v = k + n, *mixed = v + n;
    ref_linear(x, b * t, w, &a->q_proj, q);
    ref_linear(x, b * t, w, &a->k_proj, k);
    ref_linear(x, b * t, w, &a->v_proj, v);
    int hd = w / a->heads;
    double *p = malloc(sizeof *p * (size_t)t);
    for (int bi = 0; bi < b; bi++)
        for (int h = 0; h < a->heads; h++)
            for (int i = 0; i < t; i++) {
                const float *qi = q + ((size_t)bi * t + i) * w + h * hd;
                int keys = a->causal ? i + 1 : t;
                double top = -INFINITY, sum = 0.0;
                for (int j = 0; j < keys; j++) {
                    const float *kj = k + ((size_t)bi * t + j) * w + h * hd;
                    double dot = 0.0;
                    for (int e = 0; e < hd; e++) dot += (double)qi[e] * kj[e];
                    p[j] = dot / sqrt((double)hd);
                    top = fmax(top, p[j]);
                }
                for (int j = 0; j < keys; j++) sum += p[j] = exp(p[j] - top);
                for (int e = 0; e < hd; e++) {
                    double acc = 0.0;
                    for (int j = 0; j < keys; j++)
                        acc += p[j] / sum * v[((size_t)bi * t + j) * w + h * hd + e];
                    mixed[((size_t)bi * t + i) * w + h * hd + e] = (float)acc;
                }
            }
    ref_linear(mixed, b * t, w, &a->out_proj, y);
    free(p);
    free(q);
}

/* x + self_attn(ln1(x)), then + mlp(ln2(.)). */
static void ref_transformer_block(const float *x, int b, int t, int w,
                                  const mc_transformer_block *blk, float *y) {
    size_t n = (size_t)b * t * w;
    float *normed = malloc(sizeof *normed * n * 3), *branch = normed + n, *mid = branch + n;
    ref_layer_norm(x, b * t, w, &blk->layer_norm1, normed);
    ref_self_attention(normed, b, t, w, &blk->self_attn, branch);
    for (size_t i = 0; i < n; i++) mid[i] = x[i] + branch[i];
    ref_layer_norm(mid, b * t, w, &blk->layer_norm2, normed);
    ref_mlp(normed, b * t, w, &blk->mlp, branch);
    for (size_t i = 0; i < n; i++) y[i] = mid[i] + branch[i];
    free(normed);
}

/* Give every bias and norm parameter of a list random values, so that a
 * reference that ignored one of them would disagree. */
static void randomise(mc_param_list *params, uint64_t seed) {
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    for (int i = 0; i < params->count; i++)
        mc_tensor_uniform(params->items[i], &rng, -0.5f, 0.5f);
}

/* ---- linear ---- */

START_TEST(test_linear_names_init_and_forward) {
    mc_param_list params = {0};
    mc_linear_layer fc, bare, head;
    mc_rng rng;
    mc_rng_seed(&rng, 11);
    MC_CHECK_OK(mc_linear_init(&params, "encoder.fc", 400, 300, true, &rng, &fc));
    MC_CHECK_OK(mc_linear_init(&params, "", 4, 3, false, &rng, &bare));
    MC_CHECK_OK(mc_linear_init(&params, "head", 5, 2, true, NULL, &head));
    const char *names[] = {"encoder.fc.weight", "encoder.fc.bias", "weight", "head.weight",
                           "head.bias"};
    const int64_t numels[] = {120000, 300, 12, 10, 2};
    assert_names(&params, 5, names, numels);
    ck_assert_ptr_null(bare.bias);
    ck_assert(fc.weight->requires_grad && fc.bias->requires_grad);
    ck_assert_int_eq(fc.weight->shape.dim[0], 300);

    /* nn.Linear's reset_parameters: U(+-1/sqrt(in)) for weight and bias. */
    assert_uniform(fc.weight, 1.0 / sqrt(400.0));
    for (int64_t i = 0; i < fc.bias->numel; i++)
        ck_assert(fabsf(fc.bias->data[i]) <= 1.0f / sqrtf(400.0f));
    assert_all_equal(head.weight, 0.0f); /* no rng: left for a checkpoint */
    assert_all_equal(head.bias, 0.0f);

    /* The draws: the weight first, then the bias, from the same generator. */
    mc_tensor *w, *b;
    MC_CHECK_OK(mc_tensor_new(&w, MC_SHAPE(300, 400), "w"));
    MC_CHECK_OK(mc_tensor_new(&b, MC_SHAPE(300), "b"));
    mc_rng_seed(&rng, 11);
    mc_init_default_uniform(w, 400, &rng);
    mc_init_default_uniform(b, 400, &rng);
    ck_assert(memcmp(w->data, fc.weight->data, sizeof(float) * 120000) == 0);
    ck_assert(memcmp(b->data, fc.bias->data, sizeof(float) * 300) == 0);

    /* Forward: x (2, 3, 5) -> (2, 3, 2) = x W^T + b. */
    randomise(&params, 12);
    mc_tensor *x = random_tensor(MC_SHAPE(2, 3, 5), "x", 13), *y;
    mc_graph *g = mc_test_new_graph();
    MC_CHECK_OK(mc_linear_forward(g, &head, x, &y));
    ck_assert_int_eq(y->shape.ndim, 3);
    ck_assert_int_eq(y->shape.dim[2], 2);
    float expected[12];
    ref_linear(x->data, 6, 5, &head, expected);
    mc_test_assert_close("linear", y->data, expected, 12, 1e-5, 1e-6);

    /* Transformers' normal initialisation. */
    mc_linear_init_normal(&fc, 0.02f, &rng);
    double mean, var;
    moments(fc.weight, &mean, &var);
    ck_assert_msg(fabs(sqrt(var) / 0.02 - 1.0) < 0.02 && fabs(mean) < 3e-4, "std %g mean %g",
                  sqrt(var), mean);
    assert_all_equal(fc.bias, 0.0f);

    MC_CHECK_FAILS(mc_linear_init(&params, "broken", 0, 3, true, &rng, &bare), MC_ERR_ARG,
                   "broken");
    mc_graph_free(g);
    mc_tensor_free(x);
    mc_tensor_free(w);
    mc_tensor_free(b);
    mc_params_free(&params);
}
END_TEST

/* ---- convolution, batch norm, conv+BN(+ReLU) ---- */

START_TEST(test_conv_init) {
    mc_param_list params = {0};
    mc_rng rng;
    mc_rng_seed(&rng, 21);
    mc_conv_layer plain, kaiming;
    mc_conv_config c = {.in_channels = 32, .out_channels = 64, .kernel = 3, .stride = 2,
                        .padding = 1, .bias = true};
    MC_CHECK_OK(mc_conv_init(&params, "features.0", &c, &rng, &plain));
    c.bias = false;
    c.init = MC_CONV_INIT_KAIMING_FAN_OUT;
    MC_CHECK_OK(mc_conv_init(&params, "features.3", &c, &rng, &kaiming));
    const char *names[] = {"features.0.weight", "features.0.bias", "features.3.weight"};
    const int64_t numels[] = {64 * 32 * 9, 64, 64 * 32 * 9};
    assert_names(&params, 3, names, numels);
    ck_assert_int_eq(plain.conv.stride_h, 2);
    ck_assert_int_eq(plain.conv.pad_w, 1);
    /* nn.Conv2d: U(+-1/sqrt(C*K*K)); torchvision: N(0, 2/(OC*K*K)). */
    assert_uniform(plain.weight, 1.0 / sqrt(32.0 * 9.0));
    double mean, var;
    moments(kaiming.weight, &mean, &var);
    ck_assert_msg(fabs(sqrt(var) / sqrt(2.0 / (64.0 * 9.0)) - 1.0) < 0.03, "kaiming std %g",
                  sqrt(var));
    ck_assert_msg(fabs(mean) < 2e-3, "kaiming mean %g", mean);
    c.stride = 0;
    MC_CHECK_FAILS(mc_conv_init(&params, "bad", &c, &rng, &plain), MC_ERR_ARG, "stride 0");
    mc_params_free(&params);
}
END_TEST

/* conv -> BN (-> ReLU) as a layer gives the values and the running
 * statistics of the ops run one by one, in both modes. */
START_TEST(test_conv_bn_matches_its_ops) {
    for (int relu = 0; relu <= 1; relu++)
        for (int training = 0; training <= 1; training++) {
            mc_param_list params = {0};
            mc_rng rng;
            mc_rng_seed(&rng, 31);
            mc_conv_bn unit;
            mc_conv_config c = {.in_channels = 3, .out_channels = 5, .kernel = 3, .stride = 1,
                                .padding = 1, .init = MC_CONV_INIT_KAIMING_FAN_OUT};
            MC_CHECK_OK(mc_conv_bn_init(&params, "conv1", "bn1", &c, relu, &rng, &unit));
            const char *names[] = {"conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                   "bn1.running_var", "bn1.num_batches_tracked"};
            const int64_t numels[] = {5 * 3 * 9, 5, 5, 5, 5, 1};
            assert_names(&params, 6, names, numels);
            assert_all_equal(unit.bn.weight, 1.0f);
            assert_all_equal(unit.bn.running_var, 1.0f);
            assert_all_equal(unit.bn.running_mean, 0.0f);
            ck_assert(!unit.bn.running_mean->requires_grad);
            ck_assert_float_eq(unit.bn.momentum, 0.1f);
            ck_assert_float_eq(unit.bn.eps, 1e-5f);
            for (int i = 1; i < 3; i++) /* gamma, beta away from 1 and 0 */
                mc_tensor_uniform(params.items[i], &rng, 0.5f, 1.5f);
            mc_tensor_uniform(unit.bn.running_var, &rng, 0.5f, 1.5f);

            mc_tensor *x = random_tensor(MC_SHAPE(2, 6, 6, 3), "x", 32);
            float mean0[5], var0[5];
            memcpy(mean0, unit.bn.running_mean->data, sizeof mean0);
            memcpy(var0, unit.bn.running_var->data, sizeof var0);
            mc_graph *g = mc_test_new_graph();
            mc_tensor *y, *h, *expected;
            MC_CHECK_OK(mc_conv_bn_forward(g, &unit, training, x, &y));
            ck_assert_float_eq(unit.bn.num_batches_tracked->data[0], training ? 1.0f : 0.0f);
            float mean1[5], var1[5];
            memcpy(mean1, unit.bn.running_mean->data, sizeof mean1);
            memcpy(var1, unit.bn.running_var->data, sizeof var1);
            /* The same from the statistics as they were. */
            memcpy(unit.bn.running_mean->data, mean0, sizeof mean0);
            memcpy(unit.bn.running_var->data, var0, sizeof var0);
            MC_CHECK_OK(mc_conv2d(g, x, unit.conv.weight, NULL, mc_conv2d_simple(1, 1), &h));
            MC_CHECK_OK(mc_batchnorm2d(g, h, unit.bn.weight, unit.bn.bias, unit.bn.running_mean,
                                       unit.bn.running_var, training, 0.1f, 1e-5f, &h));
            if (relu) MC_CHECK_OK(mc_relu(g, h, &h));
            expected = h;
            mc_test_assert_close("conv_bn", y->data, expected->data, (long)y->numel, 0.0, 1e-7);
            mc_test_assert_close("running_mean", unit.bn.running_mean->data, mean1, 5, 0.0, 1e-7);
            mc_test_assert_close("running_var", unit.bn.running_var->data, var1, 5, 0.0, 1e-7);
            mc_graph_free(g);
            mc_tensor_free(x);
            mc_params_free(&params);
        }
}
END_TEST

START_TEST(test_batch_norm_layer) {
    mc_param_list params = {0};
    mc_batch_norm bn;
    MC_CHECK_OK(mc_batch_norm_init(&params, "downsample.1", 4, &bn));
    const char *names[] = {"downsample.1.weight", "downsample.1.bias", "downsample.1.running_mean",
                           "downsample.1.running_var", "downsample.1.num_batches_tracked"};
    const int64_t numels[] = {4, 4, 4, 4, 1};
    assert_names(&params, 5, names, numels);
    randomise(&params, 41);
    for (int i = 0; i < 4; i++) bn.running_var->data[i] = 0.5f + 0.25f * (float)i;
    mc_tensor *x = random_tensor(MC_SHAPE(3, 2, 2, 4), "x", 42), *y;
    mc_graph *g = mc_test_new_graph();
    MC_CHECK_OK(mc_batch_norm_forward(g, &bn, false, x, &y));
    /* Eval mode: (x - running_mean) / sqrt(running_var + eps) * gamma + beta. */
    for (int64_t i = 0; i < x->numel; i++) {
        int c = (int)(i % 4);
        double e = (x->data[i] - bn.running_mean->data[c]) /
                       sqrt((double)bn.running_var->data[c] + 1e-5) * bn.weight->data[c] +
                   bn.bias->data[c];
        ck_assert_msg(fabs(y->data[i] - e) < 1e-5, "bn[%lld] %g vs %g", (long long)i,
                      (double)y->data[i], e);
    }
    float tracked = bn.num_batches_tracked->data[0];
    MC_CHECK_OK(mc_batch_norm_forward(g, &bn, true, x, &y));
    ck_assert_float_eq(bn.num_batches_tracked->data[0], tracked + 1.0f);
    /* Without running statistics (track_running_stats=False), training
     * normalises by the batch and counts nothing. */
    const mc_batch_norm batch_only = {.weight = bn.weight, .bias = bn.bias, .momentum = 0.1f,
                                      .eps = 1e-5f};
    MC_CHECK_OK(mc_batch_norm_forward(g, &batch_only, true, x, &y));
    mc_graph_free(g);
    mc_tensor_free(x);
    mc_params_free(&params);
}
END_TEST

/* ---- layer norm, MLP, self-attention ---- */

START_TEST(test_layer_norm_and_mlp) {
    mc_param_list params = {0};
    mc_layer_norm ln;
    mc_mlp mlp[3];
    mc_rng rng;
    mc_rng_seed(&rng, 51);
    MC_CHECK_OK(mc_layer_norm_init(&params, "final_layer_norm", 6, 1e-6f, &ln));
    assert_all_equal(ln.weight, 1.0f);
    assert_all_equal(ln.bias, 0.0f);
    const mc_activation acts[3] = {MC_ACT_GELU, MC_ACT_QUICK_GELU, MC_ACT_RELU};
    for (int a = 0; a < 3; a++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "mlp%d", a);
        MC_CHECK_OK(mc_mlp_init(&params, prefix, 6, 10, 4, acts[a], &rng, &mlp[a]));
    }
    const char *names[] = {"final_layer_norm.weight", "final_layer_norm.bias",
                           "mlp0.fc1.weight", "mlp0.fc1.bias", "mlp0.fc2.weight", "mlp0.fc2.bias"};
    const int64_t numels[] = {6, 6, 60, 10, 40, 4};
    ck_assert_int_eq(params.count, 2 + 3 * 4);
    for (int i = 0; i < 6; i++) {
        ck_assert_str_eq(params.items[i]->name, names[i]);
        ck_assert_int_eq(params.items[i]->numel, numels[i]);
    }
    for (int64_t i = 0; i < mlp[0].fc2.weight->numel; i++) /* nn.Linear(10, 4) */
        ck_assert(fabsf(mlp[0].fc2.weight->data[i]) <= 1.0f / sqrtf(10.0f));
    randomise(&params, 52);

    mc_tensor *x = random_tensor(MC_SHAPE(3, 6), "x", 53), *y;
    mc_graph *g = mc_test_new_graph();
    float expected[18];
    MC_CHECK_OK(mc_layer_norm_forward(g, &ln, x, &y));
    ref_layer_norm(x->data, 3, 6, &ln, expected);
    mc_test_assert_close("layer norm", y->data, expected, 18, 1e-4, 1e-5);
    for (int a = 0; a < 3; a++) {
        MC_CHECK_OK(mc_mlp_forward(g, &mlp[a], x, &y));
        ck_assert_int_eq(y->shape.dim[1], 4);
        ref_mlp(x->data, 3, 6, &mlp[a], expected);
        mc_test_assert_close("mlp", y->data, expected, 12, 1e-4, 1e-5);
    }
    mc_mlp bad;
    MC_CHECK_FAILS(mc_mlp_init(&params, "bad", 6, 10, 4, (mc_activation)7, &rng, &bad), MC_ERR_ARG,
                   "activation 7");
    MC_CHECK_FAILS(mc_layer_norm_init(&params, "bad_ln", 6, 0.0f, &ln), MC_ERR_ARG, "bad_ln");
    mc_graph_free(g);
    mc_tensor_free(x);
    mc_params_free(&params);
}
END_TEST

/* Hugging Face's CLIPEncoderLayer state_dict, in order: its attention's
 * tensors (CLIPAttention, as self_attn), then the rest; their sizes at width
 * 8 with an MLP of 16. */
static const char *const attention_names[] = {
    "self_attn.k_proj.weight", "self_attn.k_proj.bias", "self_attn.v_proj.weight",
    "self_attn.v_proj.bias",   "self_attn.q_proj.weight", "self_attn.q_proj.bias",
    "self_attn.out_proj.weight", "self_attn.out_proj.bias"};
static const char *const block_names_after_attention[] = {
    "layer_norm1.weight", "layer_norm1.bias", "mlp.fc1.weight",     "mlp.fc1.bias",
    "mlp.fc2.weight",     "mlp.fc2.bias",     "layer_norm2.weight", "layer_norm2.bias"};
static const int64_t block_numels[] = {64, 8, 64, 8, 64, 8, 64, 8, 8, 8, 128, 16, 128, 8, 8, 8};

START_TEST(test_self_attention) {
    for (int causal = 0; causal <= 1; causal++) {
        mc_param_list params = {0};
        mc_self_attention attn;
        mc_rng rng;
        mc_rng_seed(&rng, 61);
        MC_CHECK_OK(mc_self_attention_init(&params, "self_attn", 8, 2, causal, &rng, &attn));
        assert_names(&params, 8, attention_names, block_numels);
        mc_tensor *x = random_tensor(MC_SHAPE(2, 5, 8), "x", 62), *y;
        mc_graph *g = mc_test_new_graph();
        MC_CHECK_OK(mc_self_attention_forward(g, &attn, x, &y));
        float expected[80];
        ref_self_attention(x->data, 2, 5, 8, &attn, expected);
        mc_test_assert_close(causal ? "causal attention" : "attention", y->data, expected, 80,
                             1e-4, 1e-5);
        mc_self_attention bad;
        MC_CHECK_FAILS(mc_self_attention_init(&params, "bad", 8, 3, false, &rng, &bad), MC_ERR_ARG,
                       "heads 3");
        mc_graph_free(g);
        mc_tensor_free(x);
        mc_params_free(&params);
    }
}
END_TEST

/* ---- transformer block ---- */

static mc_transformer_config small_block(bool causal) {
    mc_transformer_config c = {.width = 8, .heads = 2, .mlp_width = 16,
                               .activation = MC_ACT_QUICK_GELU, .causal = causal, .eps = 1e-5f};
    return c;
}

START_TEST(test_transformer_block_names_and_forward) {
    mc_param_list params = {0};
    mc_transformer_block block;
    mc_rng rng;
    mc_rng_seed(&rng, 71);
    mc_transformer_config config = small_block(true);
    MC_CHECK_OK(mc_transformer_block_init(&params, "text_model.encoder.layers.0", &config, &rng,
                                          &block));
    char full[16][MC_NAME_LEN];
    const char *names[16];
    for (int i = 0; i < 16; i++) {
        snprintf(full[i], sizeof full[i], "text_model.encoder.layers.0.%s",
                 i < 8 ? attention_names[i] : block_names_after_attention[i - 8]);
        names[i] = full[i];
    }
    assert_names(&params, 16, names, block_numels);
    ck_assert(block.self_attn.causal);
    ck_assert_int_eq(block.self_attn.heads, 2);
    randomise(&params, 72);

    mc_tensor *x = random_tensor(MC_SHAPE(2, 4, 8), "x", 73), *y;
    mc_graph *g = mc_test_new_graph();
    MC_CHECK_OK(mc_transformer_block_forward(g, &block, x, &y));
    float expected[64];
    ref_transformer_block(x->data, 2, 4, 8, &block, expected);
    mc_test_assert_close("transformer block", y->data, expected, 64, 1e-4, 1e-5);

    config.heads = 3;
    MC_CHECK_FAILS(mc_transformer_block_init(&params, "bad", &config, &rng, &block), MC_ERR_ARG,
                   "heads 3");
    mc_graph_free(g);
    mc_tensor_free(x);
    mc_params_free(&params);
}
END_TEST

static mc_status block_forward_for_gradcheck(mc_graph *g, mc_tensor **inputs, void *ctx,
                                             mc_tensor **out) {
    return mc_transformer_block_forward(g, ctx, inputs[0], out);
}

START_TEST(test_transformer_block_gradient) {
    mc_param_list params = {0};
    mc_transformer_block block;
    mc_rng rng;
    mc_rng_seed(&rng, 81);
    mc_transformer_config config = small_block(false);
    config.width = 4;
    config.mlp_width = 6;
    config.activation = MC_ACT_GELU;
    MC_CHECK_OK(mc_transformer_block_init(&params, "", &config, &rng, &block));
    mc_tensor *x = random_tensor(MC_SHAPE(2, 3, 4), "x", 82);
    MC_CHECK_OK(mc_tensor_set_requires_grad(x, true));
    mc_assert_gradcheck("transformer block", 1, &x, block_forward_for_gradcheck, &block, NULL);
    mc_tensor_free(x);
    mc_params_free(&params);
}
END_TEST

/* A stack of blocks gives the same values with and without gradients; the
 * no-grad run keeps only the output in the arena. With gradients nothing is
 * released and the backward pass reaches the first block. */
START_TEST(test_transformer_stack_releases_memory_in_inference) {
    enum { LAYERS = 4 };
    mc_param_list params = {0};
    mc_transformer_block blocks[LAYERS];
    mc_rng rng;
    mc_rng_seed(&rng, 91);
    mc_transformer_config config = small_block(false);
    for (int i = 0; i < LAYERS; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "layers.%d", i);
        MC_CHECK_OK(mc_transformer_block_init(&params, prefix, &config, &rng, &blocks[i]));
    }
    mc_tensor *x = random_tensor(MC_SHAPE(3, 6, 8), "x", 92), *recorded, *inferred, *loss;
    mc_graph *g, *g2;
    MC_CHECK_OK(mc_graph_new(&g));
    MC_CHECK_OK(mc_graph_new(&g2));
    MC_CHECK_OK(mc_transformer_forward(g, blocks, LAYERS, x, &recorded));
    size_t recording_bytes = mc_graph_arena_bytes(g);
    /* 10 ops per block: 2 layer norms, q, k, v, attention, out_proj + x,
     * fc1, its activation, fc2 + residual */
    ck_assert_int_ge(mc_graph_tape_length(g), 10 * LAYERS);
    mc_graph_set_grad_enabled(g2, false);
    MC_CHECK_OK(mc_transformer_forward(g2, blocks, LAYERS, x, &inferred));
    ck_assert_int_eq(mc_graph_tape_length(g2), 0);
    /* In use at the end: the output (and at most alignment padding). */
    size_t output_bytes = (size_t)inferred->numel * sizeof(float);
    ck_assert_msg(mc_graph_arena_bytes(g2) <= output_bytes + 1024, "no-grad arena %zu, output %zu",
                  mc_graph_arena_bytes(g2), output_bytes);
    ck_assert(mc_graph_arena_bytes(g2) * 10 < recording_bytes);
    mc_test_assert_close("no-grad stack", inferred->data, recorded->data, (long)recorded->numel,
                         0.0, 1e-7);
    MC_CHECK_OK(mc_sum_all(g, recorded, &loss));
    MC_CHECK_OK(mc_backward(g, loss));
    ck_assert_ptr_nonnull(blocks[0].self_attn.q_proj.weight->grad);

    /* A released mark after a recorded op does nothing. */
    mc_graph_reset(g);
    mc_graph_mark mark = mc_graph_get_mark(g);
    mc_tensor *h;
    MC_CHECK_OK(mc_linear_forward(g, &blocks[0].mlp.fc1, x, &h));
    size_t before = mc_graph_arena_bytes(g);
    MC_CHECK_OK(mc_release_unrecorded(g, mark, &h));
    ck_assert_uint_eq(mc_graph_arena_bytes(g), before);
    ck_assert_int_eq(mc_graph_tape_length(g), 1);
    mc_graph_free(g);
    mc_graph_free(g2);
    mc_tensor_free(x);
    mc_params_free(&params);
}
END_TEST

/* An init that fails leaves the list as it was: a retry under the same
 * prefix then makes no second tensor of a name. A name too long for
 * MC_NAME_LEN is refused, not cut short into another's (a 94-byte prefix
 * would make both "<prefix>.weight" and "<prefix>.bias" "<prefix>."). */
START_TEST(test_failed_inits_add_nothing) {
    mc_param_list params = {0};
    mc_rng rng;
    mc_rng_seed(&rng, 3);
    mc_linear_layer kept;
    MC_CHECK_OK(mc_linear_init(&params, "kept", 2, 2, true, &rng, &kept));
    mc_mlp mlp;
    MC_CHECK_FAILS(mc_mlp_init(&params, "mlp", 4, 8, 0, MC_ACT_GELU, &rng, &mlp), MC_ERR_ARG,
                   "mlp.fc2");
    ck_assert_int_eq(params.count, 2);
    mc_transformer_block block;
    const mc_transformer_config no_eps = {.width = 4, .heads = 2, .mlp_width = 8,
                                          .activation = MC_ACT_GELU, .eps = 0.0f};
    MC_CHECK_FAILS(mc_transformer_block_init(&params, "block", &no_eps, &rng, &block), MC_ERR_ARG,
                   "block.layer_norm1");
    ck_assert_int_eq(params.count, 2);
    char prefix[95];
    memset(prefix, 'p', sizeof prefix - 1);
    prefix[sizeof prefix - 1] = '\0';
    mc_linear_layer long_named;
    MC_CHECK_FAILS(mc_linear_init(&params, prefix, 2, 2, true, &rng, &long_named), MC_ERR_ARG,
                   "at most 95");
    /* 80 bytes: room for "<prefix>.weight", not for ".num_batches_tracked",
     * the fifth tensor: the four before it go again. */
    mc_batch_norm bn;
    MC_CHECK_FAILS(mc_batch_norm_init(&params, prefix + 14, 2, &bn), MC_ERR_ARG, "at most 95");
    ck_assert_int_eq(params.count, 2);
    MC_CHECK_OK(mc_mlp_init(&params, "mlp", 4, 8, 4, MC_ACT_GELU, &rng, &mlp));
    ck_assert_int_eq(params.count, 6);
    mc_params_free(&params);
}
END_TEST

int main(void) {
    Suite *s = suite_create("nn");
    const TTest *const tests[] = {test_linear_names_init_and_forward, test_conv_init,
                                  test_conv_bn_matches_its_ops, test_batch_norm_layer,
                                  test_layer_norm_and_mlp, test_self_attention,
                                  test_transformer_block_names_and_forward,
                                  test_transformer_block_gradient,
                                  test_transformer_stack_releases_memory_in_inference,
                                  test_failed_inits_add_nothing, NULL};
    tcase_set_timeout(mc_test_add_case(s, "layers", tests), 120);
    return mc_test_run_suite(s);
}

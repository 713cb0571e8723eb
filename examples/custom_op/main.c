/* example_custom_op — the worked examples of docs/autograd.md and
 * docs/guide.md, as one program:
 *
 *   1. the tape traced by hand (autograd.md, "The tape, traced");
 *   2. a custom op with its own backward, checked against finite differences
 *      with mc_gradcheck, and a deliberately wrong backward that the check
 *      catches (guide.md, "Custom ops");
 *   3. a small model built from the layer kit: named parameters, training,
 *      no-grad evaluation, a checkpoint with the optimizer's state that
 *      resumes exactly (guide.md, sections 1-6);
 *   4. NHWC inside, NCHW outside: a PyTorch Linear weight converted for a
 *      flatten of an NHWC map (guide.md, "NHWC inside, NCHW outside").
 *
 *   example_custom_op [CHECKPOINT_PATH]
 *
 * tests/script_example_custom_op.sh runs it and reads its report lines; the
 * C blocks of docs/autograd.md and docs/guide.md are copies of lines of
 * this file (tests/script_docs_snippets.sh checks that they still are). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmchain/mmchain.h"

/* ==== 1. the tape, traced ==== */

static void print_tensor(const char *label, const mc_tensor *t, const float *values) {
    char shape[64];
    printf("  %-8s %-8s", label, mc_shape_str(t->shape, shape, sizeof shape));
    for (int64_t i = 0; i < t->numel && i < 8; i++) printf(" %7.4f", values[i]);
    printf("%s\n", t->numel > 8 ? " ..." : "");
}

/* h = linear(x, w, b); a = relu(h); loss = mean_all(a); backward. */
static mc_status trace_tape(mc_graph *g, mc_rng *rng) {
    mc_tensor *x, *w, *b;
    MC_TRY(mc_tensor_new(&x, MC_SHAPE(2, 3), "x"));
    MC_TRY(mc_tensor_new(&w, MC_SHAPE(4, 3), "w"));
    MC_TRY(mc_tensor_new(&b, MC_SHAPE(4), "b"));
    mc_tensor_uniform(x, rng, -1.0f, 1.0f);
    mc_tensor_uniform(w, rng, -1.0f, 1.0f);
    MC_TRY(mc_tensor_set_requires_grad(w, true));
    MC_TRY(mc_tensor_set_requires_grad(b, true));

    mc_tensor *h, *a, *loss;
    MC_TRY(mc_linear(g, x, w, b, &h));   /* node 0 */
    MC_TRY(mc_relu(g, h, &a));           /* node 1 */
    MC_TRY(mc_mean_all(g, a, &loss));    /* node 2 */
    int recorded = mc_graph_tape_length(g);
    size_t arena = mc_graph_arena_bytes(g);
    MC_TRY(mc_backward(g, loss));

    printf("forward: %d nodes recorded, arena %zu bytes in use\n", recorded, arena);
    print_tensor("h", h, h->data);
    print_tensor("a", a, a->data);
    print_tensor("loss", loss, loss->data);
    printf("backward: tape consumed (length %d); the activations' gradients were handed back:\n",
           mc_graph_tape_length(g));
    printf("  h->grad %s, a->grad %s, loss->grad %s\n", h->grad ? "kept" : "NULL",
           a->grad ? "kept" : "NULL", loss->grad ? "kept" : "NULL");
    printf("  x->grad %s (x needs no gradient)\n", x->grad ? "kept" : "NULL");
    print_tensor("dw", w, w->grad);
    print_tensor("db", b, b->grad);
    mc_graph_reset(g);
    mc_tensor_free(x);
    mc_tensor_free(w);
    mc_tensor_free(b);
    return MC_OK;
}

/* ==== 2. a custom op: y = s * x / (1 + |x|), s a learnable scale per feature ==== */

/* What the backward needs beyond the inputs and the output. */
typedef struct scaled_softsign_saved {
    float *inverse; /* (numel): 1 / (1 + |x|), computed once by the forward */
} scaled_softsign_saved;

/* x (rows, D), s (D), y = s * x * inverse:
 *   dx = dy * s * inverse^2      (d/dx of x / (1 + |x|) is 1 / (1 + |x|)^2)
 *   ds = sum over rows of dy * x * inverse */
static mc_status scaled_softsign_backward(mc_node *node) {
    mc_tensor *x = node->in[0], *s = node->in[1], *y = node->out;
    const scaled_softsign_saved *saved = node->saved;
    const int64_t D = s->numel, rows = x->numel / D;
    float *dx = NULL, *ds = NULL; /* created zeroed on first use; we add into them */
    if (x->requires_grad) MC_TRY(mc_grad_buffer(node->graph, x, &dx));
    if (s->requires_grad) MC_TRY(mc_grad_buffer(node->graph, s, &ds));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < D; j++) {
            int64_t i = r * D + j;
            float inverse = saved->inverse[i];
            if (dx) dx[i] += y->grad[i] * s->data[j] * inverse * inverse;
            if (ds) ds[j] += y->grad[i] * x->data[i] * inverse;
        }
    return MC_OK;
}

/* x (rows, D), s (D) -> *out (rows, D); `backward` is the function the
 * node will call (scaled_softsign_backward; check_custom_op also passes a
 * wrong one, to see the check fail). */
static mc_status scaled_softsign_with(mc_graph *g, mc_tensor *x, mc_tensor *s,
                                      mc_backward_fn backward, mc_tensor **out) {
    *out = NULL;
    const int64_t D = s->numel;
    if (mc_tensor_dim(x, -1) != D)
        return mc_error(MC_ERR_SHAPE, "scaled_softsign: %s has %lld features, the scale %lld",
                        x->name, (long long)mc_tensor_dim(x, -1), (long long)D);
    scaled_softsign_saved *saved;
    MC_TRY(mc_graph_alloc(g, sizeof *saved, (void **)&saved));
    MC_TRY(mc_graph_alloc(g, (size_t)x->numel * sizeof(float), (void **)&saved->inverse));
    mc_tensor *y;
    MC_TRY(mc_graph_tensor_uninit(g, x->shape, "scaled_softsign", &y)); /* all written below */
    for (int64_t i = 0; i < x->numel; i++) {
        saved->inverse[i] = 1.0f / (1.0f + fabsf(x->data[i]));
        y->data[i] = s->data[i % D] * x->data[i] * saved->inverse[i];
    }
    mc_tensor *inputs[2] = {x, s};
    /* Records a node only when gradients are on and x or s needs one. */
    MC_TRY(mc_graph_record(g, "scaled_softsign", backward, y, 2, inputs, saved));
    *out = y;
    return MC_OK;
}

static mc_status scaled_softsign(mc_graph *g, mc_tensor *x, mc_tensor *s, mc_tensor **out) {
    return scaled_softsign_with(g, x, s, scaled_softsign_backward, out);
}

/* A mistake a backward could make: dx without the square of inverse. */
static mc_status wrong_backward(mc_node *node) {
    mc_tensor *x = node->in[0], *s = node->in[1], *y = node->out; /* s is held fixed */
    const scaled_softsign_saved *saved = node->saved;
    float *dx;
    MC_TRY(mc_grad_buffer(node->graph, x, &dx));
    for (int64_t i = 0; i < x->numel; i++)
        dx[i] += y->grad[i] * s->data[i % s->numel] * saved->inverse[i];
    return MC_OK;
}

/* mc_gradcheck's view of the op: inputs in, output out. ctx: NULL, or an
 * mc_backward_fn to use instead of the right one. */
static mc_status softsign_for_check(mc_graph *g, mc_tensor **in, void *ctx, mc_tensor **out) {
    if (!ctx) return scaled_softsign(g, in[0], in[1], out);
    return scaled_softsign_with(g, in[0], in[1], *(mc_backward_fn *)ctx, out);
}

static mc_status check_custom_op(mc_rng *rng) {
    mc_tensor *x, *s;
    MC_TRY(mc_tensor_new(&x, MC_SHAPE(3, 5), "x"));
    MC_TRY(mc_tensor_new(&s, MC_SHAPE(5), "s"));
    mc_tensor_uniform(x, rng, -2.0f, 2.0f);
    mc_tensor_uniform(s, rng, 0.5f, 1.5f);
    MC_TRY(mc_tensor_set_requires_grad(x, true));
    MC_TRY(mc_tensor_set_requires_grad(s, true));

    mc_tensor *in[2] = {x, s};
    mc_gradcheck_report report;
    MC_TRY(mc_gradcheck("scaled_softsign", 2, in, softsign_for_check, NULL, NULL, &report));
    printf("custom op: gradient check passed (%lld elements, worst error %.3f of its tolerance)\n",
           (long long)report.checked, report.worst_violation);

    MC_TRY(mc_tensor_set_requires_grad(s, false)); /* the wrong backward computes dx only */
    mc_backward_fn wrong = wrong_backward;
    mc_status status = mc_gradcheck("wrong backward", 2, in, softsign_for_check, &wrong, NULL, &report);
    mc_tensor_free(x);
    mc_tensor_free(s);
    if (status == MC_OK)
        return mc_error(MC_ERR_STATE, "the gradient check passed a wrong backward");
    printf("custom op: a wrong backward is caught: %s\n", mc_last_error());
    return MC_OK;
}

/* ==== 3. a model of your own: tiny_net ==== */

enum { SIDE = 8, CHANNELS = 4, CLASSES = 2, BATCH = 16 };

/* conv3x3 (1 -> 4) -> BN -> ReLU -> flatten -> linear (8*8*4 -> 2). */
typedef struct tiny_net {
    mc_param_list params; /* owns every tensor, under PyTorch state_dict names */
    mc_conv_bn unit;      /* "conv.weight", "bn.weight", "bn.bias", "bn.running_mean", ... */
    mc_linear_layer fc;   /* "fc.weight", "fc.bias" */
} tiny_net;

/* rng NULL: weights 0 (norm gains 1), as a checkpoint is about to overwrite them. */
static mc_status tiny_net_init(tiny_net *net, mc_rng *rng) {
    mc_conv_config conv = {.in_channels = 1, .out_channels = CHANNELS, .kernel = 3, .stride = 1,
                           .padding = 1, .bias = false, .init = MC_CONV_INIT_KAIMING_FAN_OUT};
    MC_TRY(mc_conv_bn_init(&net->params, "conv", "bn", &conv, true, rng, &net->unit));
    return mc_linear_init(&net->params, "fc", SIDE * SIDE * CHANNELS, CLASSES, true, rng, &net->fc);
}

/* images (N, 8, 8, 1) NHWC -> logits (N, 2). */
static mc_status tiny_net_forward(tiny_net *net, mc_graph *g, bool training, mc_tensor *images,
                                  mc_tensor **logits) {
    mc_tensor *x;
    MC_TRY(mc_conv_bn_forward(g, &net->unit, training, images, &x)); /* (N, 8, 8, 4) */
    /* Flatten: features in (h, w, c) order, not PyTorch's (c, h, w). */
    MC_TRY(mc_reshape(g, x, MC_SHAPE(x->shape.dim[0], SIDE * SIDE * CHANNELS), &x));
    return mc_linear_forward(g, &net->fc, x, logits);
}

/* A batch: label 1 when the bright square is in the left half. */
static void make_batch(mc_tensor *images, int32_t *labels, mc_rng *rng) {
    for (int i = 0; i < BATCH; i++) {
        float *image = images->data + (int64_t)i * SIDE * SIDE;
        for (int p = 0; p < SIDE * SIDE; p++) image[p] = 0.2f * (float)mc_rng_normal(rng);
        int row = (int)mc_rng_below(rng, SIDE - 1), col = (int)mc_rng_below(rng, SIDE - 1);
        for (int dr = 0; dr < 2; dr++)
            for (int dc = 0; dc < 2; dc++) image[(row + dr) * SIDE + col + dc] += 1.0f;
        labels[i] = col + 1 < SIDE / 2;
    }
}

/* One training step on g; *loss_value gets the loss. */
static mc_status train_step(tiny_net *net, mc_optimizer *opt, mc_graph *g, mc_tensor *images,
                            const int32_t *labels, float *loss_value) {
    mc_tensor *logits, *loss;
    mc_graph_reset(g);                      /* the previous step's tensors go */
    mc_params_zero_grad(&net->params);      /* gradients accumulate until cleared */
    MC_TRY(tiny_net_forward(net, g, true, images, &logits));
    MC_TRY(mc_cross_entropy(g, logits, labels, 0.0f, &loss));
    MC_TRY(mc_backward(g, loss));
    MC_TRY(mc_optimizer_step(opt));
    *loss_value = loss->data[0];            /* readable until the next reset */
    return MC_OK;
}

/* Fraction of `images` classified right, without recording anything. */
static mc_status accuracy(tiny_net *net, mc_graph *g, mc_tensor *images, const int32_t *labels,
                          float *out) {
    bool was_enabled = mc_graph_set_grad_enabled(g, false); /* no tape, nothing saved */
    mc_graph_reset(g);
    mc_tensor *logits;
    mc_status status = tiny_net_forward(net, g, false, images, &logits); /* BN: running stats */
    mc_graph_set_grad_enabled(g, was_enabled);
    MC_TRY(status);
    int right = 0;
    for (int i = 0; i < BATCH; i++)
        right += (logits->data[2 * i + 1] > logits->data[2 * i]) == (labels[i] == 1);
    *out = (float)right / BATCH;
    return MC_OK;
}

/* Train, evaluate, save a checkpoint with the optimizer's state, load it
 * into a second model and check that both take the same next step. */
static mc_status train_and_resume(mc_graph *g, mc_rng *rng, const char *path) {
    tiny_net net = {0}, resumed = {0};
    mc_optimizer *opt = NULL, *resumed_opt = NULL;
    mc_tensor *images = NULL;
    mc_status status = MC_OK;
    int32_t labels[BATCH];
    float loss = 0.0f, resumed_loss = 0.0f, acc = 0.0f;
    mc_adam_config config = mc_adam_defaults();
    config.lr = 1e-2f;
#define STEP(call) do { if ((status = (call)) != MC_OK) goto done; } while (0)
    STEP(tiny_net_init(&net, rng));
    STEP(mc_optimizer_adam(&opt, &net.params, config));
    STEP(mc_tensor_new(&images, MC_SHAPE(BATCH, SIDE, SIDE, 1), "images"));
    for (int step = 1; step <= 200; step++) {
        make_batch(images, labels, rng);
        STEP(train_step(&net, opt, g, images, labels, &loss));
        if (step == 1 || step % 50 == 0) printf("step %4d  loss %.4f\n", step, loss);
    }
    printf("final loss %.4f\n", loss);
    make_batch(images, labels, rng);
    STEP(accuracy(&net, g, images, labels, &acc));
    printf("accuracy %.3f\n", acc);

    STEP(mc_checkpoint_save(path, &net.params, opt, 0, NULL));
    STEP(tiny_net_init(&resumed, NULL));
    STEP(mc_optimizer_adam(&resumed_opt, &resumed.params, config));
    mc_safetensors *f;
    STEP(mc_safetensors_open(path, &f));
    status = mc_checkpoint_load(f, &resumed.params, resumed_opt); /* weights, buffers, Adam state */
    mc_safetensors_close(f);
    if (status != MC_OK) goto done;

    make_batch(images, labels, rng);
    STEP(train_step(&net, opt, g, images, labels, &loss));
    STEP(train_step(&resumed, resumed_opt, g, images, labels, &resumed_loss));
    bool same = loss == resumed_loss;
    for (int i = 0; i < net.params.count; i++)
        same = same && memcmp(net.params.items[i]->data, resumed.params.items[i]->data,
                              (size_t)net.params.items[i]->numel * sizeof(float)) == 0;
    printf("checkpoint: the resumed model's next step is %s\n", same ? "identical" : "DIFFERENT");
#undef STEP
done:
    mc_tensor_free(images);
    mc_optimizer_free(opt);
    mc_optimizer_free(resumed_opt);
    mc_params_free(&net.params);
    mc_params_free(&resumed.params);
    return status;
}

/* ==== 4. NHWC inside, NCHW outside ==== */

/* A PyTorch Linear after nn.Flatten of an NCHW map (C, H, W) reads feature
 * (c*H + h)*W + w; ours, after flattening an NHWC map (H, W, C), reads
 * (h*W + w)*C + c. The same layer needs its weight's columns permuted:
 * torch_weight, our_weight: (out, C*H*W). */
static void linear_weight_from_nchw(const float *torch_weight, float *our_weight, int64_t out,
                                    int64_t C, int64_t H, int64_t W) {
    for (int64_t o = 0; o < out; o++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t w = 0; w < W; w++)
                    our_weight[o * C * H * W + (h * W + w) * C + c] =
                        torch_weight[o * C * H * W + (c * H + h) * W + w];
}

/* The same features through both layouts: PyTorch's order (NHWC -> NCHW,
 * flatten, the original weight) and ours (flatten NHWC, converted weight). */
static mc_status check_layouts(mc_graph *g, mc_rng *rng) {
    const int64_t N = 2, H = 3, W = 4, C = 5, OUT = 6;
    mc_tensor *features, *torch_weight, *our_weight;
    MC_TRY(mc_tensor_new(&features, MC_SHAPE(N, H, W, C), "features"));
    MC_TRY(mc_tensor_new(&torch_weight, MC_SHAPE(OUT, C * H * W), "fc.weight"));
    MC_TRY(mc_tensor_new(&our_weight, MC_SHAPE(OUT, C * H * W), "fc.weight"));
    mc_tensor_uniform(features, rng, -1.0f, 1.0f);
    mc_tensor_uniform(torch_weight, rng, -1.0f, 1.0f);
    linear_weight_from_nchw(torch_weight->data, our_weight->data, OUT, C, H, W);

    mc_graph_reset(g);
    mc_tensor *nchw, *flat_torch, *flat_ours, *y_torch, *y_ours;
    MC_TRY(mc_nhwc_to_nchw(g, features, &nchw));
    MC_TRY(mc_reshape(g, nchw, MC_SHAPE(N, C * H * W), &flat_torch));
    MC_TRY(mc_linear(g, flat_torch, torch_weight, NULL, &y_torch));
    MC_TRY(mc_reshape(g, features, MC_SHAPE(N, H * W * C), &flat_ours));
    MC_TRY(mc_linear(g, flat_ours, our_weight, NULL, &y_ours));
    double worst = 0.0;
    for (int64_t i = 0; i < y_ours->numel; i++)
        worst = fmax(worst, fabs((double)y_ours->data[i] - y_torch->data[i]));
    printf("layouts: converted weight matches PyTorch's order (max difference %.1e)\n", worst);
    mc_tensor_free(features);
    mc_tensor_free(torch_weight);
    mc_tensor_free(our_weight);
    return worst < 1e-5 ? MC_OK : mc_error(MC_ERR_NUMERIC, "layouts differ by %g", worst);
}

int main(int argc, char **argv) {
    const char *checkpoint = argc > 1 ? argv[1] : "custom_op_example.safetensors";
    mc_rng rng;
    mc_rng_seed(&rng, 1);
    mc_graph *g;
    if (mc_graph_new(&g) != MC_OK || trace_tape(g, &rng) != MC_OK ||
        check_custom_op(&rng) != MC_OK || train_and_resume(g, &rng, checkpoint) != MC_OK ||
        check_layouts(g, &rng) != MC_OK) {
        fprintf(stderr, "example_custom_op: %s\n", mc_last_error());
        mc_graph_free(g);
        return 1;
    }
    mc_graph_free(g);
    return 0;
}

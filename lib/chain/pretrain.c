/* Contrastive pretraining of a CLIP from scratch.
 *
 * CLIP's recipe (Radford et al., 2021, section 2.5 and appendix F), scaled
 * down: a batch of N images and one caption of each; both towers embed
 * them; the N x N cosine similarities times exp(logit_scale) are the logits
 * of two cross-entropies, image -> caption over the rows and caption ->
 * image over the columns, whose mean is the loss (ops.h mc_infonce,
 * symmetric). The temperature is learned (logit_scale starts at log(1/0.07))
 * and clamped at log(100). AdamW with decoupled weight decay on the weight
 * matrices only (gains, biases, the class embedding and the temperature are
 * not decayed, as in CLIP and open_clip), a linear warmup then a cosine
 * schedule, and gradient-norm clipping for a steady start from scratch.
 *
 * Data parallel (config.distributed, docs/distributed.md): every rank draws
 * the same global batch, captions and augmentations, embeds its slice with
 * both towers, and all-gathers both embeddings, so that each rank computes
 * the loss over the whole batch; the gradients are averaged before they are
 * clipped, and identical AdamW steps keep the ranks identical. */
#include "mmchain/pretrain.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "chain/chain_internal.h"
#include "mmchain/augment.h"
#include "mmchain/dist.h"
#include "mmchain/image.h"
#include "mmchain/optim.h"

mc_clip_pretrain_config mc_clip_pretrain_defaults(void) {
    return (mc_clip_pretrain_config){
        .epochs = 20, .batch_size = 128, .lr = 2e-3f, .weight_decay = 0.1f,
        .warmup_fraction = 0.1f, .min_lr_fraction = 0.02f, .max_grad_norm = 1.0f,
        .augment = true, .seed = 0, .distributed = false,
    };
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------
 * checks
 * ------------------------------------------------------------------------- */

static mc_status check_config(const mc_clip_pretrain_config *c) {
    if (c->epochs < 1 || c->batch_size < 2 || !(c->lr > 0.0f) || !(c->weight_decay >= 0.0f) ||
        !(c->warmup_fraction >= 0.0f && c->warmup_fraction < 1.0f) ||
        !(c->min_lr_fraction >= 0.0f && c->min_lr_fraction <= 1.0f) || !(c->max_grad_norm >= 0.0f))
        return mc_error(MC_ERR_ARG,
                        "CLIP pretraining: epochs %d, batch %d, lr %g, weight decay %g, warmup %g, "
                        "min lr fraction %g, max grad norm %g (expected epochs >= 1, batch >= 2, "
                        "lr > 0, decay >= 0, warmup in [0, 1), fraction in [0, 1], norm >= 0)",
                        c->epochs, c->batch_size, (double)c->lr, (double)c->weight_decay,
                        (double)c->warmup_fraction, (double)c->min_lr_fraction,
                        (double)c->max_grad_norm);
    return MC_OK;
}

/* How many images: the pixels' rows or the source's. */
static int64_t data_count(const mc_clip_pretrain_data *d) {
    return d->pixels ? d->pixels->shape.dim[0] : d->source->count;
}

static mc_status check_data(const mc_clip *clip, const mc_clip_pretrain_data *d) {
    char a[128];
    if (!clip->config.has_vision || !clip->config.has_text)
        return mc_error(MC_ERR_ARG, "CLIP pretraining needs both towers");
    const int s = clip->config.vision.image_size;
    const mc_tensor *p = d->pixels;
    if (!p && d->source) {
        if (!d->source->read || d->source->height != s || d->source->width != s)
            return mc_error(MC_ERR_SHAPE, "CLIP pretraining: images read as %dx%d, expected %dx%d for the image "
                            "tower", d->source->height, d->source->width, s, s);
    } else if (!p || p->shape.ndim != 4 || p->shape.dim[1] != 3 || p->shape.dim[2] != s || p->shape.dim[3] != s) {
        return mc_error(MC_ERR_SHAPE, "CLIP pretraining: images %s, expected (N, 3, %d, %d) for the image tower",
                        p ? mc_tensor_str(p, a, sizeof a) : "(none)", s, s);
    }
    const int64_t count = data_count(d);
    if (count < 2) return mc_error(MC_ERR_ARG, "CLIP pretraining needs at least 2 images");
    if (count > INT32_MAX / 2) return mc_error(MC_ERR_ARG, "CLIP pretraining: too many images");
    if (d->captions_per_image < 1 || !d->ids)
        return mc_error(MC_ERR_ARG, "CLIP pretraining: %d captions per image, expected token ids of >= 1",
                        d->captions_per_image);
    const int64_t n_ids = count * d->captions_per_image * clip->config.text.context;
    for (int64_t i = 0; i < n_ids; i++)
        if (d->ids[i] < 0 || d->ids[i] >= clip->config.text.vocab)
            return mc_error(MC_ERR_ARG, "CLIP pretraining: token id %d at %lld is outside the text tower's "
                            "vocabulary of %d", d->ids[i], (long long)i, clip->config.text.vocab);
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * the optimizers: decayed and not decayed
 * ------------------------------------------------------------------------- */

/* Two views of clip->params (they do not own their tensors): weight
 * matrices and everything else, the two groups of one AdamW. */
typedef struct param_groups {
    mc_param_list decayed, plain;
    mc_optimizer *opt; /* group 0: decayed, group 1: plain (weight decay 0) */
} param_groups;

static void groups_free(param_groups *g) {
    mc_optimizer_free(g->opt);
    free(g->decayed.items); /* views: the arrays only */
    free(g->plain.items);
}

static mc_status groups_init(param_groups *g, mc_clip *clip, const mc_clip_pretrain_config *c) {
    memset(g, 0, sizeof *g);
    const int count = clip->params.count;
    g->decayed.items = malloc((size_t)count * sizeof *g->decayed.items);
    g->plain.items = malloc((size_t)count * sizeof *g->plain.items);
    if (!g->decayed.items || !g->plain.items) return mc_error(MC_ERR_NOMEM, "CLIP pretraining: out of memory");
    g->decayed.capacity = g->plain.capacity = count;
    for (int i = 0; i < count; i++) {
        mc_tensor *t = clip->params.items[i];
        mc_param_list *group = t->shape.ndim >= 2 ? &g->decayed : &g->plain;
        group->items[group->count++] = t;
    }
    mc_adam_config adamw = mc_adamw_defaults();
    adamw.lr = c->lr;
    adamw.beta2 = 0.98f; /* CLIP's choice for stability with large batches (appendix F) */
    adamw.eps = 1e-6f;
    adamw.weight_decay = c->weight_decay;
    MC_TRY(mc_optimizer_adamw(&g->opt, &g->decayed, adamw));
    return mc_optimizer_add_group(g->opt, &g->plain, adamw.lr, 0.0f);
}

/* ---------------------------------------------------------------------------
 * one step
 * ------------------------------------------------------------------------- */

typedef struct batch_buffers {
    mc_tensor *images;         /* (B, 3, S, S) */
    int32_t *ids;              /* (B, context) */
    mc_augment_params *params; /* (B) */
} batch_buffers;

/* Copy the batch's images (augmented) and one caption of each. */
static mc_status fill_batch(const mc_clip *clip, const mc_clip_pretrain_data *d,
                            const mc_clip_pretrain_config *c, const int *items, int n, mc_rng *rng,
                            batch_buffers *b) {
    const int context = clip->config.text.context, k = d->captions_per_image;
    mc_tensor view = mc_tensor_rows(b->images, 0, n);
    if (d->pixels) {
        mc_image_source rows = mc_image_source_of_tensor(d->pixels);
        MC_TRY(rows.read(rows.ctx, items, n, &view));
    } else {
        MC_TRY(d->source->read(d->source->ctx, items, n, &view));
    }
    for (int i = 0; i < n; i++) {
        int64_t caption = (int64_t)items[i] * k + (int64_t)mc_rng_below(rng, (uint64_t)k);
        memcpy(b->ids + (int64_t)i * context, d->ids + caption * context, (size_t)context * sizeof(int32_t));
    }
    if (!c->augment) return MC_OK;
    mc_augment_config flips = {.mode = MC_CROP_RESIZE, .crop_min = 1.0f, .crop_max = 1.0f,
                               .hflip = true, .vflip = true, .rot90 = true};
    for (int i = 0; i < n; i++) mc_augment_sample(rng, &flips, &b->params[i]);
    return mc_augment_apply(&view, b->params, n, &view);
}

/* CLIP clamps the learnable logit scale at log(100) so that the softmax
 * cannot become arbitrarily sharp (Radford et al., 2021, section 2.5). */
static void clamp_logit_scale(mc_clip *clip) {
    const float max_scale = logf(100.0f);
    if (clip->logit_scale->data[0] > max_scale) clip->logit_scale->data[0] = max_scale;
}

/* Forward, backward, clip, update: the images and ids already in b; this
 * process embeds rows [first, first + m) of them (all rows alone, its slice
 * of the batch in a distributed run, where `reducer` averages the gradients). */
static mc_status train_step(mc_clip *clip, mc_graph *g, param_groups *groups, batch_buffers *b, int first,
                            int m, mc_dist_reducer *reducer, float lr, float max_grad_norm, double *loss_out) {
    const bool gather = reducer != NULL;
    mc_tensor images = mc_tensor_rows(b->images, first, m);
    const int32_t *ids = b->ids + (int64_t)first * clip->config.text.context;
    mc_tensor *image_embeds, *text_embeds, *loss;
    mc_optimizer_zero_grad(groups->opt);
    MC_TRY(mc_clip_encode_image(clip, g, &images, &image_embeds));
    MC_TRY(mc_clip_encode_text(clip, g, ids, m, &text_embeds));
    if (gather) { /* the whole batch's pairs, rows in rank order = batch order */
        MC_TRY(mc_dist_all_gather_op(g, image_embeds, &image_embeds));
        MC_TRY(mc_dist_all_gather_op(g, text_embeds, &text_embeds));
    }
    MC_TRY(mc_infonce(g, image_embeds, text_embeds, clip->logit_scale, true, &loss));
    *loss_out = loss->data[0];
    if (!isfinite(*loss_out)) return mc_error(MC_ERR_NUMERIC, "the loss became %g", *loss_out);
    /* Averaged (in buckets sent while backward runs) before clipping: the
     * norm is the one-process gradient's. */
    MC_TRY(gather ? mc_dist_backward_average(reducer, g, loss) : mc_backward(g, loss));
    if (max_grad_norm > 0.0f) MC_TRY(mc_grad_clip_norm(&clip->params, max_grad_norm, NULL));
    MC_TRY(mc_optimizer_set_lr(groups->opt, lr));
    MC_TRY(mc_optimizer_step(groups->opt));
    clamp_logit_scale(clip);
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * the loop
 * ------------------------------------------------------------------------- */

typedef struct pretrain_run {
    mc_clip *clip;
    const mc_clip_pretrain_data *data;
    const mc_clip_pretrain_config *cfg;
    const mc_clip_pretrain_hooks *hooks;
    param_groups groups;
    batch_buffers batch;
    mc_graph *g;
    int *order;        /* (N) this epoch's permutation */
    mc_lr_schedule schedule;
    int64_t steps_per_epoch, total_steps, step;
    mc_rng rng;
    int rank, world;   /* data parallel: this process among `world` (0 of 1 alone) */
    mc_dist_reducer *reducer; /* data parallel: the gradient average */
} pretrain_run;

static mc_status run_epoch(pretrain_run *r, int epoch) {
    const int count = (int)data_count(r->data), bsize = r->cfg->batch_size;
    double started = now_seconds(), loss_sum = 0.0;
    mc_rng_shuffle(&r->rng, r->order, count);
    for (int64_t s = 0; s < r->steps_per_epoch; s++) {
        int first = (int)(s * bsize), n = count - first < bsize ? count - first : bsize;
        float lr = mc_lr_at(&r->schedule, r->step);
        double loss;
        int64_t slice_first, slice_count; /* this rank's rows of the batch */
        mc_dist_slice(n, r->rank, r->world, &slice_first, &slice_count);
        /* Every rank fills the whole batch: the same draws from r->rng. */
        mc_status status = fill_batch(r->clip, r->data, r->cfg, r->order + first, n, &r->rng, &r->batch);
        if (status == MC_OK)
            status = train_step(r->clip, r->g, &r->groups, &r->batch, (int)slice_first, (int)slice_count,
                                r->reducer, lr, r->cfg->max_grad_norm, &loss);
        mc_graph_reset(r->g);
        if (status != MC_OK)
            return mc_error_context(status, "CLIP pretraining, epoch %d, step %lld: ", epoch + 1,
                                    (long long)r->step + 1);
        r->step++;
        loss_sum += loss;
        if (r->hooks && r->hooks->on_step) {
            mc_clip_pretrain_step_info info = {
                .epoch = epoch, .step = r->step, .total_steps = r->total_steps, .batch_items = n,
                .loss = loss, .lr = lr, .logit_scale = r->clip->logit_scale->data[0],
            };
            r->hooks->on_step(r->hooks->ctx, &info);
        }
    }
    if (r->world > 1) {
        char when[64];
        snprintf(when, sizeof when, "CLIP pretraining, after epoch %d", epoch + 1);
        MC_TRY(mc_dist_check_params_agree(&r->clip->params, when));
    }
    if (r->hooks && r->hooks->on_epoch)
        return r->hooks->on_epoch(r->hooks->ctx, epoch, loss_sum / (double)r->steps_per_epoch,
                                  now_seconds() - started);
    return MC_OK;
}

/* Data parallel: every rank must pretrain with rank 0's options on as many
 * images, or the ranks would train apart, or wait in different collectives
 * (a rank with more epochs in the next step's gather, another done). */
static mc_status check_ranks_agree(const pretrain_run *r) {
    const mc_clip_pretrain_config *c = r->cfg;
    const mc_dist_setting settings[] = {
        {"--epochs", c->epochs}, {"--batch", c->batch_size}, {"--lr", c->lr},
        {"--weight-decay", c->weight_decay}, {"the warm-up fraction", c->warmup_fraction},
        {"the final learning rate's fraction", c->min_lr_fraction},
        {"the gradient clipping norm", c->max_grad_norm}, {"--no-augment", !c->augment},
        {"--seed (low half)", (double)(uint32_t)c->seed}, {"--seed (high half)", (double)(c->seed >> 32)},
        {"--precision", mc_default_precision()}, {"images", (double)data_count(r->data)},
        {"image size", r->clip->config.vision.image_size},
    };
    return mc_dist_check_settings("the ranks disagree", settings, (int)(sizeof settings / sizeof settings[0]));
}

static mc_status run_init(pretrain_run *r) {
    const int count = (int)data_count(r->data), bsize = r->cfg->batch_size;
    const int s = r->clip->config.vision.image_size;
    /* Full batches, plus the remainder when it holds at least 2 images
     * (a contrastive batch of one has nothing to contrast). */
    r->steps_per_epoch = count / bsize + (count % bsize >= 2 ? 1 : 0);
    if (r->world > 1) {
        MC_TRY(check_ranks_agree(r));
        MC_TRY(mc_dist_check_batches(count, bsize, r->world));
        MC_TRY(mc_dist_broadcast_params(&r->clip->params)); /* every rank starts from rank 0's */
        MC_TRY(mc_dist_reducer_new(&r->clip->params, MC_DIST_BUCKET_BYTES, &r->reducer));
    }
    r->total_steps = r->steps_per_epoch * r->cfg->epochs;
    int64_t warmup = (int64_t)(r->cfg->warmup_fraction * (float)r->total_steps);
    if (warmup >= r->total_steps) warmup = r->total_steps - 1;
    r->schedule = mc_lr_cosine(r->cfg->lr, warmup, r->total_steps, r->cfg->lr * r->cfg->min_lr_fraction);
    mc_rng_seed(&r->rng, r->cfg->seed);
    r->order = malloc((size_t)count * sizeof *r->order);
    r->batch.ids = malloc((size_t)bsize * (size_t)r->clip->config.text.context * sizeof *r->batch.ids);
    r->batch.params = malloc((size_t)bsize * sizeof *r->batch.params);
    if (!r->order || !r->batch.ids || !r->batch.params)
        return mc_error(MC_ERR_NOMEM, "CLIP pretraining: out of memory");
    for (int i = 0; i < count; i++) r->order[i] = i;
    MC_TRY(mc_tensor_new(&r->batch.images, MC_SHAPE(bsize, 3, s, s), "pretrain_images"));
    MC_TRY(mc_graph_new(&r->g));
    return groups_init(&r->groups, r->clip, r->cfg);
}

static void run_free(pretrain_run *r) {
    groups_free(&r->groups);
    mc_tensor_free(r->batch.images);
    free(r->batch.ids);
    free(r->batch.params);
    free(r->order);
    mc_graph_free(r->g);
    mc_dist_reducer_free(r->reducer);
}

mc_status mc_clip_pretrain(mc_clip *clip, const mc_clip_pretrain_data *data,
                           const mc_clip_pretrain_config *config, const mc_clip_pretrain_hooks *hooks) {
    if (!clip || !data || !config) return mc_error(MC_ERR_ARG, "CLIP pretraining: missing argument");
    MC_TRY(check_config(config));
    MC_TRY(check_data(clip, data));
    mc_clip_set_trainable(clip, true);
    pretrain_run r = {.clip = clip, .data = data, .cfg = config, .hooks = hooks, .rank = 0, .world = 1};
    if (config->distributed) {
        r.rank = mc_dist_rank();
        r.world = mc_dist_world_size();
    }
    mc_status status = run_init(&r);
    for (int epoch = 0; epoch < config->epochs && status == MC_OK; epoch++) status = run_epoch(&r, epoch);
    run_free(&r);
    return status;
}

/* ---------------------------------------------------------------------------
 * the RGB view
 * ------------------------------------------------------------------------- */

mc_status mc_rgb_from_reflectance(const mc_tensor *tiles, mc_tensor *rgb) {
    char a[128], b[128];
    if (!tiles || !rgb || tiles->shape.ndim != 4 || tiles->shape.dim[1] != MC_EUROSAT_NUM_BANDS ||
        rgb->shape.ndim != 4 || rgb->shape.dim[0] != tiles->shape.dim[0] || rgb->shape.dim[1] != 3 ||
        rgb->shape.dim[2] != tiles->shape.dim[2] || rgb->shape.dim[3] != tiles->shape.dim[3])
        return mc_error(MC_ERR_SHAPE, "RGB view: tiles %s -> rgb %s, expected (N, 13, H, W) -> (N, 3, H, W)",
                        tiles ? mc_tensor_str(tiles, a, sizeof a) : "(none)",
                        rgb ? mc_tensor_str(rgb, b, sizeof b) : "(none)");
    static const int rgb_bands[3] = {3, 2, 1}; /* B04, B03, B02 in file order */
    const int64_t n = tiles->shape.dim[0], plane = tiles->shape.dim[2] * tiles->shape.dim[3];
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            const float *src = tiles->data + (i * MC_EUROSAT_NUM_BANDS + rgb_bands[c]) * plane;
            float *dst = rgb->data + (i * 3 + c) * plane;
            /* reflectance -> the digital number the release's scale is for */
            for (int64_t p = 0; p < plane; p++) dst[p] = mc_eurosat_rgb_value(src[p] * 10000.0f);
        }
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * the recipe: labelled images -> captions -> vocabulary -> a trained CLIP
 * ------------------------------------------------------------------------- */

mc_clip_recipe mc_clip_recipe_defaults(void) {
    return (mc_clip_recipe){
        .image_size = 32, .patch = 4, .width = 64, .layers = 2, .text_width = 64, .text_layers = 2,
        .max_context = MC_CLIP_CONTEXT, .embed_dim = 64, .merges = 200, .captions_per_image = 4,
        .train = mc_clip_pretrain_defaults(),
    };
}

static void say(const mc_clip_pretrain_hooks *hooks, const char *line) {
    if (hooks && hooks->on_message) hooks->on_message(hooks->ctx, line);
}

/* The longest of n texts in tokens, sot and eot included, into *longest. */
static mc_status longest_tokens(mc_tokenizer *tok, const char *const *texts, int n, int *longest) {
    for (int i = 0; i < n; i++) {
        int32_t *ids;
        int n_ids;
        MC_TRY(mc_tokenizer_encode(tok, texts[i], &ids, &n_ids));
        free(ids);
        if (n_ids + 2 > *longest) *longest = n_ids + 2;
    }
    return MC_OK;
}

/* A context that holds every caption and every class's EuroSAT prompts
 * (the zero-shot classifier tokenizes those to the same context). */
static mc_status choose_context(mc_tokenizer *tok, const mc_clip_recipe *r, const mc_labelled_images *im,
                                char **captions, int n_captions, int *context) {
    int longest = 2;
    MC_TRY(longest_tokens(tok, (const char *const *)captions, n_captions, &longest));
    for (int k = 0; k < im->num_classes; k++)
        for (int t = 0; t < MC_CHAIN_NUM_TEMPLATES; t++) {
            char prompt[512];
            const char *template = mc_chain_eurosat_templates[t], *slot = strstr(template, "{}");
            snprintf(prompt, sizeof prompt, "%.*s%s%s", (int)(slot - template), template,
                     im->class_phrases[k], slot + 2);
            const char *one[1] = {prompt};
            MC_TRY(longest_tokens(tok, one, 1, &longest));
        }
    if (longest > r->max_context)
        return mc_error(MC_ERR_ARG, "CLIP recipe: captions and prompts need %d tokens, the context is at most %d",
                        longest, r->max_context);
    *context = longest;
    return MC_OK;
}

static mc_status recipe_clip(const mc_clip_recipe *r, int context, int vocab, mc_clip **out) {
    mc_clip_config config = {
        .has_vision = true, .has_text = true, .embed_dim = r->embed_dim, .layernorm_eps = 1e-5f,
        /* heads = width / 64, as OpenAI's CLIPs (mc_clip_save records them) */
        .vision = {.width = r->width, .layers = r->layers, .heads = r->width >= 64 ? r->width / 64 : 1,
                   .mlp_width = 4 * r->width, .patch = r->patch, .image_size = r->image_size},
        .text = {.width = r->text_width, .layers = r->text_layers,
                 .heads = r->text_width >= 64 ? r->text_width / 64 : 1, .mlp_width = 4 * r->text_width,
                 .context = context, .vocab = vocab},
    };
    mc_rng rng;
    mc_rng_seed(&rng, r->train.seed ^ 0x636c6970ULL); /* "clip" */
    return mc_clip_new(out, &config, &rng);
}

static mc_status check_images(const mc_clip_recipe *r, const mc_labelled_images *im) {
    char a[128];
    if ((!im->rgb && (!im->source || !im->source->read)) || !im->labels || !im->class_phrases ||
        im->num_classes < 1)
        return mc_error(MC_ERR_ARG, "CLIP recipe: need RGB images, labels and class phrases");
    if (im->rgb && (im->rgb->shape.ndim != 4 || im->rgb->shape.dim[1] != 3 || im->rgb->shape.dim[0] < 2))
        return mc_error(MC_ERR_SHAPE, "CLIP recipe: images %s, expected (N >= 2, 3, H, W)",
                        mc_tensor_str(im->rgb, a, sizeof a));
    if (!im->rgb && (im->source->count < 2 || im->source->height < 1 || im->source->width < 1))
        return mc_error(MC_ERR_SHAPE, "CLIP recipe: %d images of %dx%d, expected >= 2 images", im->source->count,
                        im->source->height, im->source->width);
    if (r->captions_per_image < 1 || r->merges < 0 || r->max_context < 2 ||
        (int64_t)(im->rgb ? im->rgb->shape.dim[0] : im->source->count) * r->captions_per_image > INT32_MAX / 2)
        return mc_error(MC_ERR_ARG, "CLIP recipe: %d captions per image, %d merges, context %d "
                        "(expected >= 1, >= 0, >= 2)", r->captions_per_image, r->merges, r->max_context);
    return MC_OK;
}

/* Vocabulary, CLIP and token ids from the captions. */
static mc_status recipe_text(const mc_clip_recipe *r, const mc_labelled_images *im, char **captions,
                             int n_captions, const mc_clip_pretrain_hooks *hooks, mc_clip **clip,
                             mc_tokenizer **tok, int32_t **ids) {
    MC_TRY(mc_tokenizer_train((const char *const *)captions, n_captions, r->merges, tok));
    int context = 0;
    MC_TRY(choose_context(*tok, r, im, captions, n_captions, &context));
    MC_TRY(recipe_clip(r, context, mc_tokenizer_vocab_size(*tok), clip));
    char line[512];
    snprintf(line, sizeof line, "%d captions (\"%s\", ...), %d BPE merges, text context %d", n_captions,
             captions[0], mc_tokenizer_merge_count(*tok), context);
    say(hooks, line);
    *ids = malloc((size_t)n_captions * (size_t)context * sizeof **ids);
    if (!*ids) return mc_error(MC_ERR_NOMEM, "CLIP recipe: out of memory for %d captions", n_captions);
    return mc_tokenizer_tokenize_batch(*tok, (const char *const *)captions, n_captions, context, true, *ids);
}

/* The RGB images CLIP-normalised at the tower's size, a batch at a time:
 * mc_clip_preprocess works image by image, so a batch of it holds the same
 * floats as the same rows of the whole set preprocessed at once. */
typedef struct clip_pixels {
    const mc_image_source *rgb;
    int size;
    mc_tensor *scratch; /* (capacity, 3, H, W) RGB rows */
} clip_pixels;

static mc_status clip_pixels_read(void *ctx, const int *indices, int n, mc_tensor *rows) {
    clip_pixels *p = ctx;
    if (!p->scratch || p->scratch->shape.dim[0] < n) {
        mc_tensor_free(p->scratch);
        p->scratch = NULL;
        MC_TRY(mc_tensor_new(&p->scratch, MC_SHAPE(n, 3, p->rgb->height, p->rgb->width), "rgb_batch"));
    }
    mc_tensor rgb = mc_tensor_rows(p->scratch, 0, n), *pixels;
    MC_TRY(p->rgb->read(p->rgb->ctx, indices, n, &rgb));
    MC_TRY(mc_clip_preprocess(&rgb, p->size, true, &pixels));
    memcpy(rows->data, pixels->data, (size_t)pixels->numel * sizeof(float));
    mc_tensor_free(pixels);
    return MC_OK;
}

mc_status mc_clip_from_captions(const mc_clip_recipe *recipe, const mc_labelled_images *images,
                                const mc_clip_pretrain_hooks *hooks, mc_clip **clip, mc_tokenizer **tok) {
    if (!recipe || !images || !clip || !tok) return mc_error(MC_ERR_ARG, "CLIP recipe: missing argument");
    *clip = NULL;
    *tok = NULL;
    MC_TRY(check_images(recipe, images));
    const mc_image_source rgb = images->rgb ? mc_image_source_of_tensor(images->rgb) : *images->source;
    const int n = rgb.count, n_captions = n * recipe->captions_per_image;
    char **captions;
    MC_TRY(mc_captions_make(images->class_phrases, images->num_classes, images->labels, images->attrs, n,
                            recipe->captions_per_image, recipe->train.seed ^ 0x63617073ULL /* "caps" */,
                            &captions));
    int32_t *ids = NULL;
    mc_status status = recipe_text(recipe, images, captions, n_captions, hooks, clip, tok, &ids);
    mc_chain_strings_free(captions, n_captions);
    clip_pixels pixels = {&rgb, recipe->image_size, NULL};
    const mc_image_source source = {n, recipe->image_size, recipe->image_size, &pixels, clip_pixels_read};
    if (status == MC_OK) {
        mc_clip_pretrain_data data = {NULL, recipe->captions_per_image, ids, &source};
        status = mc_clip_pretrain(*clip, &data, &recipe->train, hooks);
    }
    mc_tensor_free(pixels.scratch);
    free(ids);
    if (status != MC_OK) {
        mc_clip_free(*clip);
        mc_tokenizer_free(*tok);
        *clip = NULL;
        *tok = NULL;
    }
    return status;
}

mc_status mc_clip_save_folder(const mc_clip *clip, const mc_tokenizer *tok, const char *dir) {
    if (!clip || !tok || !dir) return mc_error(MC_ERR_ARG, "CLIP folder: missing argument");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return mc_error(MC_ERR_IO, "cannot create the CLIP folder %s: %s", dir, strerror(errno));
    char model[4096];
    if (snprintf(model, sizeof model, "%s/model.safetensors", dir) >= (int)sizeof model)
        return mc_error(MC_ERR_ARG, "CLIP folder: path %s is too long", dir);
    /* "format": "pt" is what Hugging Face's loaders look for in the metadata. */
    mc_metadata_entry meta[2] = {{"format", "pt"}, {"mmchain.source", "pretrained from scratch (mmchain)"}};
    MC_TRY(mc_clip_save(clip, model, 2, meta));
    return mc_tokenizer_save(tok, dir); /* merges.txt + vocab.json */
}

/* Images per forward of the zero-shot accuracy. A distributed run's ranks
 * take whole batches of it (shards.c), so each image's embedding is the one
 * one process computes. */
enum { ZERO_SHOT_BATCH = 64 };

/* Embed images [begin, end) of rgb into embeds (end - begin, E), a batch of
 * ZERO_SHOT_BATCH at a time: the batches mc_chain_embed_rgb makes of the
 * same rows in one tensor. */
static mc_status embed_source(mc_clip *clip, const mc_image_source *rgb, int begin, int end, mc_tensor *embeds) {
    mc_tensor *batch;
    MC_TRY(mc_tensor_new(&batch, MC_SHAPE(ZERO_SHOT_BATCH, 3, rgb->height, rgb->width), "zero_shot_rgb"));
    int indices[ZERO_SHOT_BATCH];
    mc_status status = MC_OK;
    for (int first = begin; first < end && status == MC_OK; first += ZERO_SHOT_BATCH) {
        const int n = end - first < ZERO_SHOT_BATCH ? end - first : ZERO_SHOT_BATCH;
        for (int i = 0; i < n; i++) indices[i] = first + i;
        mc_tensor images = mc_tensor_rows(batch, 0, n), out = mc_tensor_rows(embeds, first - begin, n);
        status = rgb->read(rgb->ctx, indices, n, &images);
        if (status == MC_OK) status = mc_chain_embed_rgb(clip, &images, ZERO_SHOT_BATCH, &out);
    }
    mc_tensor_free(batch);
    return status;
}

static mc_status zero_shot_accuracy(mc_clip *clip, mc_tokenizer *tok, const mc_image_source *rgb, const int *labels,
                                    const char *const *class_phrases, int num_classes, bool sharded,
                                    double *accuracy) {
    if (!clip || !tok || !rgb || !rgb->read || !labels || !class_phrases || !accuracy)
        return mc_error(MC_ERR_ARG, "zero-shot accuracy: missing argument");
    const int n = rgb->count;
    int begin = 0, end = n; /* this rank's images */
    if (sharded) mc_chain_shard_of_tiles(n, ZERO_SHOT_BATCH, &begin, &end);
    mc_tensor *classes = NULL, *embeds = NULL, *probs = NULL;
    double correct = 0.0; /* a count: exact in double, whatever the order of the sum over ranks */
    mc_status status = mc_chain_text_classifier(clip, tok, class_phrases, num_classes,
                                                mc_chain_eurosat_templates, MC_CHAIN_NUM_TEMPLATES, &classes);
    if (status == MC_OK && end > begin) {
        status = mc_tensor_new(&embeds, MC_SHAPE(end - begin, clip->config.embed_dim), "embeds");
        if (status == MC_OK) status = embed_source(clip, rgb, begin, end, embeds);
        if (status == MC_OK) status = mc_chain_zero_shot_probs(embeds, classes, 0.0f, &probs);
        for (int i = 0; status == MC_OK && i < end - begin; i++) {
            const float *row = probs->data + (int64_t)i * num_classes;
            int best = 0;
            for (int k = 1; k < num_classes; k++)
                if (row[k] > row[best]) best = k;
            correct += best == labels[begin + i];
        }
    }
    if (status == MC_OK && sharded) status = mc_dist_allreduce_doubles(&correct, 1, MC_DIST_SUM);
    if (status == MC_OK) *accuracy = correct / n;
    mc_tensor_free(probs);
    mc_tensor_free(embeds);
    mc_tensor_free(classes);
    return status;
}

/* A tensor's rows as a source, after the checks a tensor needs. */
static mc_status rows_of(const mc_tensor *rgb, mc_image_source *out) {
    if (!rgb || rgb->shape.ndim != 4)
        return mc_error(MC_ERR_ARG, "zero-shot accuracy: missing argument or images not (N, 3, H, W)");
    *out = mc_image_source_of_tensor(rgb);
    return MC_OK;
}

mc_status mc_clip_zero_shot_accuracy(mc_clip *clip, mc_tokenizer *tok, const mc_tensor *rgb,
                                     const int *labels, const char *const *class_phrases,
                                     int num_classes, double *accuracy) {
    mc_image_source rows;
    MC_TRY(rows_of(rgb, &rows));
    return zero_shot_accuracy(clip, tok, &rows, labels, class_phrases, num_classes, false, accuracy);
}

mc_status mc_clip_zero_shot_accuracy_source(mc_clip *clip, mc_tokenizer *tok, const mc_image_source *rgb,
                                            const int *labels, const char *const *class_phrases,
                                            int num_classes, bool distributed, double *accuracy) {
    return zero_shot_accuracy(clip, tok, rgb, labels, class_phrases, num_classes,
                              distributed && mc_dist_world_size() > 1, accuracy);
}

mc_status mc_clip_zero_shot_accuracy_distributed(mc_clip *clip, mc_tokenizer *tok, const mc_tensor *rgb,
                                                 const int *labels, const char *const *class_phrases,
                                                 int num_classes, double *accuracy) {
    mc_image_source rows;
    MC_TRY(rows_of(rgb, &rows));
    return mc_clip_zero_shot_accuracy_source(clip, tok, &rows, labels, class_phrases, num_classes, true,
                                             accuracy);
}

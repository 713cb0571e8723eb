/* mmchain pretrain-clip — a CLIP of our own, when there is no pretrained one.
 *
 *     mmchain pretrain-clip --out DIR [--synth N | --data DIR] [sizes...] [--epochs E] ...
 *
 * Labelled RGB images -> captions from the class names (and scene
 * attributes) -> a BPE vocabulary -> both towers trained contrastively
 * (lib/chain/pretrain.c). Writes DIR/model.safetensors (Hugging Face
 * CLIPModel names), DIR/merges.txt and DIR/vocab.json, which `mmchain train
 * --clip DIR/model.safetensors --vocab DIR/merges.txt` loads like OpenAI's,
 * plus the run folder's config.json, log.txt, metrics.csv and report.html.
 * The images come from
 *   - the synthetic world, in memory (--synth N, the default);
 *   - a folder of class folders of .tif tiles (EuroSAT-MS, `mmchain synth`):
 *     the RGB view B04,B03,B02, attributes measured on all 13 bands;
 *   - a folder of class folders of PNG/JPEG images (EuroSAT's RGB release):
 *     attributes from the RGB alone (brightness); the images are kept as
 *     the decoder's bytes and converted a batch at a time.
 * One image in 10 (--val-every) is held out for a zero-shot accuracy: the
 * held-out and training images are indices into the one set, not copies. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain_cli.h"
#include "core/grow.h"
#include "mmchain/dist.h"
#include "mmchain/pretrain.h"

static const char *const COMMAND = "pretrain-clip";
static const char *const USAGE =
    "usage: mmchain pretrain-clip --out DIR [--synth N | --data DIR] [options]\n\n"
    "Trains a CLIP (ViT image tower + text tower) from scratch, contrastively, on labelled RGB\n"
    "images with captions generated from the class names and attributes of each scene. --data is a\n"
    "folder of class folders of .tif tiles (EuroSAT-MS, mmchain synth) or of PNG/JPEG images\n"
    "(EuroSAT's RGB release); without it, N tiles of the synthetic world. Writes DIR/model.safetensors,\n"
    "DIR/merges.txt, DIR/vocab.json (load with mmchain train --clip ... --vocab ...), config.json,\n"
    "log.txt, metrics.csv, report.html.";

typedef struct pretrain_args {
    const char *out, *data, *precision;
    int synth, val_every;
    bool quiet;
    bool overwrite; /* --overwrite: the run may replace the one in --out */
    mc_clip_recipe recipe; /* the sizes and the training, bound by the option table */
} pretrain_args;

/* The recipe's defaults are the library's (mc_clip_recipe_defaults). */
static void default_args(pretrain_args *a) {
    *a = (pretrain_args){.synth = 4000, .val_every = 10, .precision = "fp32", .recipe = mc_clip_recipe_defaults()};
}

/* The recipe as the options made it, distributed under an MPI launcher. */
static mc_clip_recipe make_recipe(const pretrain_args *a) {
    mc_clip_recipe r = a->recipe;
    r.train.distributed = mc_dist_world_size() > 1;
    return r;
}

/* ---------------------------------------------------------------------------
 * the images
 * ------------------------------------------------------------------------- */

/* Every image, read at the tower's size, with labels, attributes and class
 * names. The pixels are held once: as floats (the synthetic world, .tif
 * tiles) or, for PNG/JPEG images, as the decoder's bytes, converted a batch
 * at a time. */
typedef struct image_set {
    int count, num_classes;
    mc_tensor *rgb;               /* (N, 3, S, S) in 0..1, or NULL */
    mc_byte_images *bytes;        /* or the images kept as bytes */
    mc_image_source source;       /* either, as (N, 3, S, S) in 0..1 */
    int *labels;
    mc_scene_attributes *attrs;
    char **class_names;           /* (num_classes) folder names */
} image_set;

static void image_set_free(image_set *s) {
    mc_tensor_free(s->rgb);
    mc_byte_images_free(s->bytes);
    free(s->labels);
    free(s->attrs);
    mc_chain_strings_free(s->class_names, s->num_classes);
}

static mc_status copy_names(const char *const *names, int n, char ***out) {
    *out = calloc((size_t)n, sizeof **out);
    if (!*out) return mc_error(MC_ERR_NOMEM, "out of memory");
    for (int k = 0; k < n; k++)
        if (!((*out)[k] = strdup(names[k]))) return mc_error(MC_ERR_NOMEM, "out of memory");
    return MC_OK;
}

static mc_status load_synth(const pretrain_args *a, image_set *s) {
    mc_synth_views v;
    MC_TRY(mc_synth_views_make(a->recipe.train.seed, 0, a->synth, a->recipe.image_size, NULL, NULL, true, &v));
    *s = (image_set){.count = v.count, .num_classes = MC_SYNTH_CLASSES, .rgb = v.rgb, .labels = v.labels,
                     .attrs = v.attrs, .source = mc_image_source_of_tensor(v.rgb)};
    const char *names[MC_SYNTH_CLASSES];
    for (int k = 0; k < MC_SYNTH_CLASSES; k++) names[k] = mc_synth_class_name(k);
    return copy_names(names, MC_SYNTH_CLASSES, &s->class_names);
}

/* The attributes of tiles [first, first + n) from their 13 bands. */
static mc_status tif_attributes(const mc_eurosat *ds, const int *indices, int n, mc_scene_attributes *attrs) {
    int h, w, bands;
    mc_eurosat_tile_shape(ds, &h, &w, &bands);
    mc_bands all;
    mc_norm reflectance;
    MC_TRY(mc_bands_parse("all", &all));
    MC_TRY(mc_norm_init(&reflectance, MC_NORM_REFLECTANCE));
    mc_tensor *tiles;
    MC_TRY(mc_tensor_new(&tiles, MC_SHAPE(n, MC_EUROSAT_NUM_BANDS, h, w), "tiles"));
    mc_status status = mc_eurosat_load_batch(ds, indices, n, &all, &reflectance, tiles);
    for (int i = 0; i < n && status == MC_OK; i++)
        status = mc_scene_attributes_from_tile(tiles->data + (int64_t)i * MC_EUROSAT_NUM_BANDS * h * w, h, w,
                                               &attrs[i]);
    mc_tensor_free(tiles);
    return status;
}

/* Tiles [first, first + n) into rows of s: the RGB view resized, attributes. */
static mc_status load_tif_chunk(const mc_eurosat *ds, const int *indices, int first, int n, int size,
                                image_set *s) {
    int h, w, bands;
    mc_eurosat_tile_shape(ds, &h, &w, &bands);
    mc_tensor *rgb, *resized = NULL;
    MC_TRY(mc_tensor_new(&rgb, MC_SHAPE(n, 3, h, w), "rgb"));
    mc_status status = mc_eurosat_load_rgb(ds, indices + first, n, rgb);
    if (status == MC_OK) status = mc_image_resize(rgb, size, size, true, &resized);
    if (status == MC_OK)
        memcpy(s->rgb->data + (int64_t)first * 3 * size * size, resized->data,
               (size_t)resized->numel * sizeof(float));
    if (status == MC_OK) status = tif_attributes(ds, indices + first, n, s->attrs + first);
    for (int i = 0; i < n; i++) s->labels[first + i] = mc_eurosat_label(ds, indices[first + i]);
    mc_tensor_free(resized);
    mc_tensor_free(rgb);
    return status;
}

static mc_status load_tif_folder(const pretrain_args *a, image_set *s) {
    const int size = a->recipe.image_size;
    mc_eurosat *ds;
    mc_eurosat_options options = mc_eurosat_default_options();
    MC_TRY(mc_eurosat_open(&ds, a->data, &options));
    const int *indices;
    int count;
    mc_status status = mc_eurosat_split(ds, MC_SPLIT_ALL, &indices, &count);
    if (status == MC_OK) {
        s->count = count;
        s->num_classes = mc_eurosat_num_classes(ds);
        s->labels = malloc((size_t)count * sizeof *s->labels);
        s->attrs = malloc((size_t)count * sizeof *s->attrs);
        const char *names[1024];
        for (int k = 0; k < s->num_classes && k < 1024; k++) names[k] = mc_eurosat_class_name(ds, k);
        if (!s->labels || !s->attrs || s->num_classes > 1024) status = mc_error(MC_ERR_NOMEM, "out of memory");
        if (status == MC_OK) status = copy_names(names, s->num_classes, &s->class_names);
        if (status == MC_OK) status = mc_tensor_new(&s->rgb, MC_SHAPE(count, 3, size, size), "rgb");
        if (status == MC_OK) s->source = mc_image_source_of_tensor(s->rgb);
    }
    for (int first = 0; first < s->count && status == MC_OK; first += 256)
        status = load_tif_chunk(ds, indices, first, s->count - first < 256 ? s->count - first : 256,
                                size, s);
    mc_eurosat_free(ds);
    return status;
}

/* The attributes of every image, measured on the images as training sees
 * them (at the tower's size), read 256 at a time. */
static mc_status rgb_attributes(image_set *s) {
    enum { CHUNK = 256 };
    const int size = s->source.height;
    mc_tensor *chunk;
    MC_TRY(mc_tensor_new(&chunk, MC_SHAPE(CHUNK, 3, size, size), "rgb"));
    int indices[CHUNK];
    const int64_t image_floats = 3 * (int64_t)size * size;
    mc_status status = MC_OK;
    for (int first = 0; first < s->count && status == MC_OK; first += CHUNK) {
        const int n = s->count - first < CHUNK ? s->count - first : CHUNK;
        for (int i = 0; i < n; i++) indices[i] = first + i;
        mc_tensor rows = mc_tensor_rows(chunk, 0, n);
        status = s->source.read(s->source.ctx, indices, n, &rows);
        for (int i = 0; status == MC_OK && i < n; i++)
            status = mc_scene_attributes_from_rgb(chunk->data + i * image_floats, size, size, &s->attrs[first + i]);
    }
    mc_tensor_free(chunk);
    return status;
}

static mc_status load_image_folder(const pretrain_args *a, image_set *s) {
    const int size = a->recipe.image_size;
    mc_image_folder folder;
    MC_TRY(mc_image_folder_open(a->data, &folder));
    s->count = folder.count;
    s->num_classes = folder.num_classes;
    s->labels = malloc((size_t)folder.count * sizeof *s->labels);
    s->attrs = malloc((size_t)folder.count * sizeof *s->attrs);
    mc_status status = s->labels && s->attrs ? MC_OK : mc_error(MC_ERR_NOMEM, "out of memory");
    if (status == MC_OK) status = copy_names((const char *const *)folder.class_names, folder.num_classes, &s->class_names);
    if (status == MC_OK) status = mc_byte_images_load(&folder, true, &s->bytes);
    if (status == MC_OK) s->source = mc_byte_images_source(s->bytes, size, size);
    for (int i = 0; status == MC_OK && i < folder.count; i++) s->labels[i] = folder.labels[i];
    if (status == MC_OK) status = rgb_attributes(s);
    mc_image_folder_free(&folder);
    return status;
}

/* --data: .tif tiles when the folder holds them, images otherwise. */
static mc_status load_images(const pretrain_args *a, image_set *s) {
    memset(s, 0, sizeof *s);
    if (!a->data) return load_synth(a, s);
    const char *const tif[] = {"tif", "tiff", NULL};
    mc_image_folder listing;
    if (mc_class_folder_scan(a->data, tif, &listing) == MC_OK) {
        mc_image_folder_free(&listing);
        return load_tif_folder(a, s);
    }
    return load_image_folder(a, s);
}

/* ---------------------------------------------------------------------------
 * training and the run folder
 * ------------------------------------------------------------------------- */

/* Part of an image set, by index: its rows are the whole set's rows
 * index[0..count) (no copy of the pixels), its labels and attributes its own. */
typedef struct image_part {
    int count, num_classes;
    int *index;                   /* (count) rows of the whole set */
    int *labels;
    mc_scene_attributes *attrs;
    const mc_image_source *all;
    mc_image_source source;       /* the rows index[0..count) of all */
    int *scratch;                 /* indices into all of one read */
    size_t scratch_capacity;
} image_part;

static void image_part_free(image_part *p) {
    free(p->index);
    free(p->labels);
    free(p->attrs);
    free(p->scratch);
}

static mc_status part_read(void *ctx, const int *indices, int n, mc_tensor *rows) {
    image_part *p = ctx;
    MC_TRY(mc_grow((void **)&p->scratch, &p->scratch_capacity, (size_t)n, sizeof *p->scratch, 64,
                   "image indices"));
    for (int i = 0; i < n; i++) {
        if (indices[i] < 0 || indices[i] >= p->count)
            return mc_error(MC_ERR_ARG, "image %d outside 0..%d", indices[i], p->count - 1);
        p->scratch[i] = p->index[indices[i]];
    }
    return p->all->read(p->all->ctx, p->scratch, n, rows);
}

/* The two parts: held_out[i] says where image i goes. */
static mc_status split_into(const image_set *all, const bool *held_out, int n_val, image_part *train,
                            image_part *val) {
    const int n_train = all->count - n_val;
    if (n_train < 2) return mc_error(MC_ERR_ARG, "%d images leave fewer than 2 to train on", all->count);
    image_part *parts[2] = {train, val};
    const int counts[2] = {n_train, n_val};
    for (int p = 0; p < 2; p++) {
        *parts[p] = (image_part){.count = 0, .num_classes = all->num_classes, .all = &all->source};
        parts[p]->source = (mc_image_source){counts[p], all->source.height, all->source.width, parts[p], part_read};
        if (counts[p] == 0) continue;
        parts[p]->index = malloc((size_t)counts[p] * sizeof(int));
        parts[p]->labels = malloc((size_t)counts[p] * sizeof(int));
        parts[p]->attrs = malloc((size_t)counts[p] * sizeof(mc_scene_attributes));
        if (!parts[p]->index || !parts[p]->labels || !parts[p]->attrs)
            return mc_error(MC_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < all->count; i++) {
        image_part *to = held_out[i] ? val : train;
        int row = to->count++;
        to->index[row] = i;
        to->labels[row] = all->labels[i];
        to->attrs[row] = all->attrs[i];
    }
    return MC_OK;
}

/* Whether image i is held out: the val_every-th, 2 val_every-th, ... image
 * OF ITS CLASS (stratified, whatever order the source lists classes in). */
static mc_status held_out_flags(const image_set *all, int val_every, bool *held_out, int *n_val) {
    int *seen = calloc((size_t)all->num_classes, sizeof *seen);
    if (!seen) return mc_error(MC_ERR_NOMEM, "out of memory");
    *n_val = 0;
    for (int i = 0; i < all->count; i++) {
        held_out[i] = val_every > 0 && ++seen[all->labels[i]] % val_every == 0;
        *n_val += held_out[i];
    }
    free(seen);
    return MC_OK;
}

/* Split into training images and the held-out ones. */
static mc_status split_images(const image_set *all, int val_every, image_part *train, image_part *val) {
    bool *held_out = malloc((size_t)all->count * sizeof *held_out);
    if (!held_out) return mc_error(MC_ERR_NOMEM, "out of memory");
    int n_val = 0;
    mc_status status = held_out_flags(all, val_every, held_out, &n_val);
    if (status == MC_OK) status = split_into(all, held_out, n_val, train, val);
    free(held_out);
    return status;
}

typedef struct ui {
    mc_run *run;
    mc_progress bar;
    bool quiet, started;
    int64_t items;
    int epochs;
} ui;

static void on_step(void *ctx, const mc_clip_pretrain_step_info *info) {
    ui *u = ctx;
    if (!u->started) mc_progress_begin(&u->bar, "clip", info->total_steps, u->quiet);
    u->started = true;
    u->items += info->batch_items;
    mc_progress_update(&u->bar, info->epoch + 1, info->step, info->loss, u->items);
    const char *cols[4] = {"step", "loss", "logit_scale", "lr"};
    double vals[4] = {(double)info->step, info->loss, info->logit_scale, info->lr};
    (void)mc_run_metrics_row(u->run, "step", cols, vals, 4); /* best effort, as a log */
}

static mc_status on_epoch(void *ctx, int epoch, double mean_loss, double seconds) {
    ui *u = ctx;
    const char *cols[2] = {"epoch", "loss"};
    double vals[2] = {epoch + 1, mean_loss};
    MC_TRY(mc_run_metrics_row(u->run, "epoch", cols, vals, 2));
    return mc_run_log(u->run, "epoch %d/%d: loss %.4f (%.1f s)", epoch + 1, u->epochs, mean_loss, seconds);
}

static void on_message(void *ctx, const char *line) {
    ui *u = ctx;
    (void)mc_run_log(u->run, "%s", line);
}

/* Train, save, evaluate the held-out images (in shards with the other ranks
 * of a distributed run), write the report. */
static mc_status pretrain(const pretrain_args *a, mc_run *run, const image_part *train, const image_part *val,
                          char **phrases) {
    mc_clip_recipe recipe = make_recipe(a);
    mc_labelled_images images = {NULL, train->labels, train->attrs, train->num_classes,
                                 (const char *const *)phrases, &train->source};
    ui u = {.run = run, .quiet = a->quiet, .epochs = recipe.train.epochs};
    mc_clip_pretrain_hooks hooks = {&u, on_step, on_epoch, on_message};
    mc_clip *clip;
    mc_tokenizer *tok;
    mc_status status = mc_clip_from_captions(&recipe, &images, &hooks, &clip, &tok);
    if (u.started) mc_progress_end(&u.bar, NULL);
    if (status != MC_OK) return status;
    status = mc_clip_save_folder(clip, tok, mc_run_dir(run));
    double accuracy = NAN;
    if (status == MC_OK && val->count > 0)
        status = mc_clip_zero_shot_accuracy_source(clip, tok, &val->source, val->labels,
                                                   (const char *const *)phrases, val->num_classes, true, &accuracy);
    char acc_text[64], held_out[32];
    snprintf(acc_text, sizeof acc_text, "%.1f %% (chance %.1f %%)", 100.0 * accuracy, 100.0 / val->num_classes);
    snprintf(held_out, sizeof held_out, "%d", val->count);
    if (status == MC_OK && val->count > 0)
        status = mc_run_log(run, "zero-shot RGB -> text on %d held-out images: %s", val->count, acc_text);
    mc_metadata_entry summary[2] = {{"held-out images", held_out}, {"zero-shot RGB -> text", acc_text}};
    mc_report report = {.title = "mmchain pretrain-clip", .n_summary = val->count > 0 ? 2 : 0,
                        .summary = summary};
    if (status == MC_OK) status = mc_run_write_report(run, &report);
    mc_clip_free(clip);
    mc_tokenizer_free(tok);
    return status;
}

/* A rank other than 0 under mpirun: the same pretraining in step with rank
 * 0, without hooks, and its share of the held-out images' zero-shot
 * accuracy, writing nothing (rank 0 writes the run folder and the CLIP). */
static mc_status follow_pretraining(const pretrain_args *a, const image_part *train, const image_part *val,
                                    char **phrases) {
    mc_clip_recipe recipe = make_recipe(a);
    mc_labelled_images images = {NULL, train->labels, train->attrs, train->num_classes,
                                 (const char *const *)phrases, &train->source};
    mc_clip *clip;
    mc_tokenizer *tok;
    MC_TRY(mc_clip_from_captions(&recipe, &images, NULL, &clip, &tok));
    double accuracy; /* rank 0 reports it */
    mc_status status = MC_OK;
    if (val->count > 0)
        status = mc_clip_zero_shot_accuracy_source(clip, tok, &val->source, val->labels,
                                                   (const char *const *)phrases, val->num_classes, true, &accuracy);
    mc_clip_free(clip);
    mc_tokenizer_free(tok);
    return status;
}

/* Options that are not the run's but the invocation's: not in config.json. */
static bool not_stored(const char *name) { return strcmp(name, "--overwrite") == 0; }

static int run_command(const pretrain_args *a, const cli_opt *opts) {
    image_set all;
    image_part train = {0}, val = {0};
    mc_status status = load_images(a, &all);
    if (status != MC_OK) {
        image_set_free(&all);
        return a->data ? cli_fail(COMMAND, "--data %s: %s", a->data, mc_last_error())
                       : cli_fail_status(COMMAND, status);
    }
    char **phrases = NULL;
    mc_run *run = NULL;
    int code = 0;
    status = split_images(&all, a->val_every, &train, &val);
    if (status == MC_OK) status = mc_chain_class_prompts((const char *const *)all.class_names, all.num_classes, &phrases);
    bool leader = mc_dist_rank() == 0;
    if (status == MC_OK && !leader) status = follow_pretraining(a, &train, &val, phrases);
    if (status == MC_OK && leader) status = mc_run_open(&run, a->out, chain_cli_run_mode(a->overwrite));
    /* the previous run's CLIP, which mc_run_open does not know of */
    static const char *const model_files[] = {"model.safetensors", "merges.txt", "vocab.json"};
    for (int i = 0; i < 3 && status == MC_OK && leader && a->overwrite; i++)
        status = mc_run_remove(run, model_files[i]);
    if (status != MC_OK) code = cli_fail_status(COMMAND, status);
    if (!code && leader) {
        mc_run_set_quiet(run, a->quiet);
        code = chain_cli_write_config(COMMAND, run, opts, not_stored);
    }
    if (!code && leader) {
        (void)mc_run_log(run, "%d training and %d held-out images of %d classes (%s, ...)", train.count,
                         val.count, all.num_classes, phrases[0]);
        status = pretrain(a, run, &train, &val, phrases);
        if (status != MC_OK) code = cli_fail_status(COMMAND, status);
    }
    if (!code && leader && !a->quiet)
        printf("CLIP written: %s/model.safetensors, %s/merges.txt\n"
               "use it with: mmchain train --clip %s/model.safetensors --vocab %s/merges.txt ...\n",
               a->out, a->out, a->out, a->out);
    mc_run_close(run);
    mc_chain_strings_free(phrases, all.num_classes);
    image_part_free(&train);
    image_part_free(&val);
    image_set_free(&all);
    return code;
}

int cmd_pretrain_clip(int argc, char **argv) {
    pretrain_args a;
    default_args(&a);
    cli_opt opts[] = {
        CLI_STRING_OPT("--out", &a.out, "DIR: where the CLIP and the run's files go"),
        CLI_STRING_OPT("--data", &a.data, "DIR: class folders of .tif tiles or PNG/JPEG images"),
        CLI_INT_OPT("--synth", &a.synth, 2, 10000000, "N: tiles of the synthetic world"),
        CLI_INT_OPT("--image-size", &a.recipe.image_size, 8, 1024, "S: the image tower's input side"),
        CLI_INT_OPT("--patch", &a.recipe.patch, 1, 256, "P: ViT patch size"),
        CLI_INT_OPT("--width", &a.recipe.width, 8, 4096, "W: image tower width"),
        CLI_INT_OPT("--layers", &a.recipe.layers, 1, 64, "L: image tower blocks"),
        CLI_INT_OPT("--text-width", &a.recipe.text_width, 8, 4096, "W: text tower width"),
        CLI_INT_OPT("--text-layers", &a.recipe.text_layers, 1, 64, "L: text tower blocks"),
        CLI_INT_OPT("--context", &a.recipe.max_context, 2, 77, "T: longest text context allowed"),
        CLI_INT_OPT("--embed-dim", &a.recipe.embed_dim, 1, 4096, "E: joint space width"),
        CLI_INT_OPT("--merges", &a.recipe.merges, 0, 48894, "K: BPE merges learned from the captions"),
        CLI_INT_OPT("--captions", &a.recipe.captions_per_image, 1, 1000, "K: captions per image"),
        CLI_INT_OPT("--epochs", &a.recipe.train.epochs, 1, 100000, "E: epochs"),
        CLI_INT_OPT("--batch", &a.recipe.train.batch_size, 2, 100000, "B: batch"),
        CLI_FLOAT_OPT("--lr", &a.recipe.train.lr, 1e-10, 10, "LR: AdamW's peak learning rate"),
        CLI_FLOAT_OPT("--weight-decay", &a.recipe.train.weight_decay, 0, 10, "WD: decoupled weight decay"),
        CLI_FLAG_OFF_OPT("--no-augment", &a.recipe.train.augment, "no random flips and quarter turns"),
        CLI_INT_OPT("--val-every", &a.val_every, 0, 1000000, "N: hold out every N-th image of each class (0: none)"),
        CLI_U64_OPT("--seed", &a.recipe.train.seed, "S: captions, weights, order, augmentation"),
        CLI_FLAG_OPT("--quiet", &a.quiet, "no progress line or log on stdout"),
        CHAIN_CLI_OVERWRITE_OPT(&a.overwrite),
        CLI_PRECISION_OPT(&a.precision),
        CLI_END,
    };
    int code = cli_parse_options(COMMAND, USAGE, opts, argc, argv);
    if (code >= 0) return code;
    if (cli_apply_precision(COMMAND, a.precision)) return 1;
    if (!a.out) return cli_fail(COMMAND, "--out DIR is required");
    if (a.data && cli_opt_find(opts, "--synth")->given)
        return cli_fail(COMMAND, "--data and --synth are two sources: give one");
    if (a.recipe.image_size % a.recipe.patch != 0)
        return cli_fail(COMMAND, "--image-size %d is not a multiple of --patch %d", a.recipe.image_size,
                        a.recipe.patch);
    if (chain_cli_check_tower_width(COMMAND, "--width", a.recipe.width) ||
        chain_cli_check_tower_width(COMMAND, "--text-width", a.recipe.text_width))
        return 1;
    code = chain_cli_dist_start(COMMAND);
    if (!code && mc_dist_rank() == 0) /* before the images load; the others read no folder */
        code = chain_cli_check_out(COMMAND, a.out, a.overwrite, false);
    if (!code) code = run_command(&a, opts);
    return chain_cli_dist_end(code);
}

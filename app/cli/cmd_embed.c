/* mmchain embed — run one tower on a tensor file (or on texts / images).
 *
 *     mmchain embed --model MODEL [--weights W.safetensors] --input IN.safetensors
 *                   --output OUT.safetensors [--bands N] [--head D] [--train-mode] [--seed S]
 *     mmchain embed --model clip-text --weights W --vocab V --text TEXT [--text ...]
 *                   [--truncate] --output OUT.safetensors
 *     mmchain embed --model clip-vision --weights W --image FILE [--image ...]
 *                   --output OUT.safetensors
 *     mmchain embed --checkpoint RUN_DIR/checkpoints/best.safetensors TILE.tif...
 *                   --output OUT.safetensors [--batch B]
 *
 * The last form runs a trained spectral encoder (mmchain train) on tiles, its
 * bands and normalisation read from the checkpoint, and writes the
 * embeddings with the tile paths (chain_cli_write_embeddings): the vectors
 * `mmchain eval` computes its metrics from.
 *
 * Reads the tensor "input" of IN (or builds it from --text / --image) and
 * writes the float32 tensor "output" to OUT. Each model family has one entry
 * in the table `towers` below (name, function, help line); a new tower adds a
 * row and an embed_<family> function taking the same options. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain_cli.h"
#include "mmchain/clip.h"
#include "mmchain/image.h"
#include "mmchain/models.h"
#include "mmchain/tokenizer.h"

static const char *const COMMAND = "embed";

/* Rows per forward pass of a CLIP tower: bounds the activation memory
 * (ViT-B/32 at 32 images is ~0.2 GB in no-grad mode) while keeping the
 * matrix products large enough to run at full speed. */
enum { CLIP_BATCH = 32 };

typedef struct embed_options {
    const char *model;
    const char *weights; /* NULL: seeded random initialisation (ResNet only) */
    const char *input;   /* NULL when the input comes from --text / --image */
    const char *output;
    int bands;           /* -1: from the input */
    int head;            /* -1: as the weights say; 0: no head; D: new Linear(F, D) */
    bool train_mode;
    long long seed;
    bool seed_given;
    /* CLIP conveniences: argv pointers, in command-line order */
    const char *vocab;
    const char **texts;
    int n_texts;
    const char **images;
    int n_images;
    bool truncate;
    /* a trained spectral encoder on tile files */
    const char *checkpoint;
    const char **tiles;
    int n_tiles;
    int batch;
    const char *precision; /* "fp32" or "bf16" */
} embed_options;

/* What a tower hands back: the output tensor and the metadata that
 * describes it (values point at static strings or at `text`). */
typedef struct embed_result {
    mc_tensor *output;
    mc_metadata_entry meta[6];
    int n_meta;
    char text[64];
} embed_result;

/* Runs the tower; fills result->output (a new heap tensor) and any extra
 * metadata. Returns an exit code (0 = success) after printing any error. */
typedef int (*embed_fn)(const embed_options *o, embed_result *result);

static int embed_resnet(const embed_options *o, embed_result *result);
static int embed_clip(const embed_options *o, embed_result *result);

static const struct tower {
    const char *name;
    embed_fn run;
    const char *help;
} towers[] = {
    {"resnet18", embed_resnet, "torchvision ResNet-18"},
    {"resnet34", embed_resnet, "torchvision ResNet-34"},
    {"resnet50", embed_resnet, "torchvision ResNet-50"},
    {"resnet101", embed_resnet, "torchvision ResNet-101"},
    {"resnet152", embed_resnet, "torchvision ResNet-152"},
    {"resnet", embed_resnet, "any ResNet, its architecture read from --weights (our checkpoints)"},
    {"clip-vision", embed_clip, "CLIP's image tower (a Hugging Face CLIPModel file as --weights)"},
    {"clip-text", embed_clip, "CLIP's text tower (a Hugging Face CLIPModel file as --weights)"},
};
enum { N_TOWERS = sizeof towers / sizeof towers[0] };

static void print_help(void) {
    printf("usage: mmchain embed --model MODEL [--weights W.safetensors] --input IN.safetensors\n"
           "                     --output OUT.safetensors [options]\n"
           "       mmchain embed --model clip-text --weights W --vocab V --text TEXT [--text ...]\n"
           "                     [--truncate] --output OUT.safetensors\n"
           "       mmchain embed --model clip-vision --weights W --image FILE [--image ...]\n"
           "                     --output OUT.safetensors\n"
           "       mmchain embed --checkpoint C.safetensors TILE.tif... --output OUT.safetensors\n"
           "                     [--batch B]\n\n"
           "Runs MODEL on the tensor \"input\" of IN and writes the float32 tensor \"output\"\n"
           "(N x D) to OUT.\n\n"
           "  --model MODEL    one of:\n");
    for (int i = 0; i < N_TOWERS; i++) printf("                     %-11s %s\n", towers[i].name, towers[i].help);
    printf("  --input IN       resnet*, clip-vision: float \"input\" N x C x H x W (for clip-vision\n"
           "                   N x 3 x S x S, already CLIP-preprocessed); clip-text: int32 or int64\n"
           "                   \"input\" N x T token ids (sot, ids, eot, zeros; T = the tower's context)\n"
           "  --weights W      a safetensors file. ResNet: a state_dict (torchvision/timm names),\n"
           "                   without it a seeded random initialisation (PyTorch's default scheme);\n"
           "                   CLIP (required): a Hugging Face CLIPModel file, e.g.\n"
           "                   openai/clip-vit-base-patch32's model.safetensors (weights/README.md)\n\n"
           "CLIP towers (the output is projected, not normalised):\n"
           "  --text TEXT      clip-text: a text to embed (repeatable), tokenized with --vocab\n"
           "  --vocab V        merges.txt, vocab.json, bpe_simple_vocab_16e6.txt.gz or their folder\n"
           "  --truncate       cut texts longer than the context (without it they are an error)\n"
           "  --image FILE     clip-vision: a PNG or JPEG to embed (repeatable); CLIP's preprocessing:\n"
           "                   bicubic resize of the shorter side, centre crop, CLIP normalisation\n\n"
           "ResNet towers:\n"
           "  --bands N        input bands (default: the input's C); an RGB conv1 in W is\n"
           "                   turned into an N-band one (docs/models.md)\n"
           "  --head D         0: output the pooled feature (2048-d for ResNet-50); D > 0: a new\n"
           "                   Linear(F, D) head (seeded); default: the fc in W if it has one,\n"
           "                   else the pooled feature (1000 logits without --weights)\n"
           "  --train-mode     BatchNorm with batch statistics (PyTorch's model.train())\n"
           "  --seed S         seed of the random initialisation (default 0)\n\n"
           "A trained spectral encoder (no --model):\n"
           "  --checkpoint C   a checkpoint of mmchain train (RUN_DIR/checkpoints/best.safetensors);\n"
           "                   its bands and normalisation are applied to each TILE.tif, and OUT gets\n"
           "                   \"output\" (N x E, not normalised) and the tile paths (metadata \"tiles\",\n"
           "                   one per line)\n"
           "  --batch B        tiles per forward pass (default 64; the run's --val-batch gives the\n"
           "                   vectors of mmchain eval bit for bit)\n\n"
           "Every model:\n"
           "  --precision P    fp32 (default) or bf16: matrix products on bf16 operands with fp32\n"
           "                   sums (docs/architecture.md)\n");
}

static int spectral_reject_options(cli_opt *opts);

/* Returns -1 to go on, otherwise the exit code. o->texts and o->images must
 * have room for argc pointers each. */
static int parse_options(int argc, char **argv, embed_options *o) {
    cli_list texts = {o->texts, 0}, images = {o->images, 0};
    uint64_t seed = 0;
    cli_opt opts[] = { /* documented by print_help */
        CLI_STRING_OPT("--model", &o->model, NULL),
        CLI_STRING_OPT("--weights", &o->weights, NULL),
        CLI_STRING_OPT("--input", &o->input, NULL),
        CLI_STRING_OPT("--output", &o->output, NULL),
        CLI_INT_OPT("--bands", &o->bands, 1, 4096, NULL),
        CLI_INT_OPT("--head", &o->head, 0, 1000000, NULL),
        CLI_U64_OPT("--seed", &seed, NULL),
        CLI_FLAG_OPT("--train-mode", &o->train_mode, NULL),
        CLI_STRING_OPT("--vocab", &o->vocab, NULL),
        CLI_LIST_OPT("--text", &texts, NULL),
        CLI_LIST_OPT("--image", &images, NULL),
        CLI_FLAG_OPT("--truncate", &o->truncate, NULL),
        CLI_STRING_OPT("--checkpoint", &o->checkpoint, NULL),
        CLI_INT_OPT("--batch", &o->batch, 1, 100000, NULL),
        CLI_PRECISION_OPT(&o->precision),
        CLI_END,
    };
    const cli_parser parser = {COMMAND, NULL, print_help, opts, CLI_OPERANDS};
    int code = cli_parse(&parser, argc, argv, o->tiles, &o->n_tiles);
    if (code >= 0) return code;
    if (cli_apply_precision(COMMAND, o->precision)) return 1;
    if (o->checkpoint) return spectral_reject_options(opts);
    if (cli_opt_find(opts, "--batch")->given) /* the towers embed their input in one forward */
        return cli_fail(COMMAND, "--batch goes with --checkpoint (tiles through a spectral encoder)");
    if (o->n_tiles > 0)
        return cli_fail(COMMAND, "unexpected argument '%s': tile files go with --checkpoint", o->tiles[0]);
    o->n_texts = texts.n;
    o->n_images = images.n;
    o->seed = (long long)seed;
    o->seed_given = cli_opt_find(opts, "--seed")->given;
    if (!o->model) return cli_fail(COMMAND, "--model is required (see mmchain embed --help)");
    bool convenience = o->n_texts > 0 || o->n_images > 0;
    if (!o->input && !convenience) return cli_fail(COMMAND, "--input IN.safetensors is required");
    if (o->input && convenience)
        return cli_fail(COMMAND, "--input and --%s are alternatives: give one of them",
                        o->n_texts ? "text" : "image");
    if (o->n_texts && o->n_images)
        return cli_fail(COMMAND, "--text is for clip-text and --image for clip-vision: not both at once");
    if (!o->output) return cli_fail(COMMAND, "--output OUT.safetensors is required");
    return -1;
}

/* With --checkpoint: tiles and --output, and nothing meant for a tower. */
static int spectral_reject_options(cli_opt *opts) {
    for (cli_opt *opt = opts; opt->name; opt++)
        if (opt->given && strcmp(opt->name, "--checkpoint") != 0 && strcmp(opt->name, "--output") != 0 &&
            strcmp(opt->name, "--batch") != 0 && strcmp(opt->name, "--precision") != 0)
            return cli_fail(COMMAND, "%s does not apply to --checkpoint (a trained spectral encoder)", opt->name);
    return -1;
}

/* An option that does not apply to the chosen model: an error, not ignored. */
static int reject_options(const embed_options *o, const char *const *names, const bool *given, int n) {
    for (int i = 0; i < n; i++)
        if (given[i]) return cli_fail(COMMAND, "%s does not apply to --model %s", names[i], o->model);
    return -1;
}

/* ---- the float tensor "input" (image towers) ---- */

static int read_float_input(const char *path, mc_tensor **input) {
    mc_safetensors *f;
    mc_status status = mc_safetensors_open(path, &f);
    if (status != MC_OK) return cli_fail_status(COMMAND, status);
    if (!mc_safetensors_has(f, "input")) {
        mc_safetensors_close(f);
        return cli_fail(COMMAND, "%s has no tensor named 'input'", path);
    }
    status = mc_safetensors_read(f, "input", input);
    mc_safetensors_close(f);
    char what[4200];
    snprintf(what, sizeof what, "%s: tensor input", path);
    if (status == MC_OK && (status = mc_check_finite((*input)->data, (*input)->numel, what)) != MC_OK) {
        mc_tensor_free(*input);
        *input = NULL;
    }
    return status == MC_OK ? 0 : cli_fail_status(COMMAND, status);
}

/* ---- ResNet ---- */

/* The architecture: the named preset, or ("resnet") the one in the file. */
static mc_status resnet_config(const embed_options *o, const mc_safetensors *weights,
                               int input_bands, mc_resnet_config *c) {
    if (strcmp(o->model, "resnet") == 0) {
        if (!weights)
            return mc_error(MC_ERR_ARG, "--model resnet reads the architecture from --weights, "
                                        "which is missing");
        MC_TRY(mc_resnet_config_from_file(weights, c));
    } else {
        MC_TRY(mc_resnet_config_for_name(o->model, c));
    }
    c->in_channels = input_bands;
    /* fc: --head decides; otherwise the file's fc (its class count) or none;
     * without weights, torchvision's 1000 classes. */
    if (o->head >= 0) {
        c->fc_out = o->head;
    } else if (weights) {
        mc_shape fc;
        c->fc_out = mc_safetensors_info(weights, "fc.weight", NULL, &fc) == MC_OK ? (int)fc.dim[0] : 0;
    }
    return MC_OK;
}

static mc_status resnet_run(const embed_options *o, const mc_safetensors *weights, mc_tensor *input,
                            mc_tensor **output) {
    mc_resnet_config config;
    MC_TRY(resnet_config(o, weights, (int)input->shape.dim[1], &config));
    mc_resnet *model;
    MC_TRY(mc_resnet_new(&model, &config, (uint64_t)o->seed));
    mc_status status = MC_OK;
    if (weights) {
        mc_resnet_load_options load = mc_resnet_load_defaults();
        load.skip_fc = o->head >= 0; /* --head D: a new head, --head 0: none */
        status = mc_resnet_load(model, weights, &load, NULL, 0);
        if (status != MC_OK) status = mc_error_context(status, "loading as %s: ", o->model);
    }
    mc_graph *g = NULL;
    if (status == MC_OK) status = mc_graph_new(&g);
    mc_tensor *out = NULL;
    if (status == MC_OK) {
        mc_graph_set_grad_enabled(g, false);
        mc_resnet_set_training(model, o->train_mode);
        status = mc_resnet_forward(model, g, input, &out);
    }
    if (status == MC_OK) status = mc_tensor_clone(output, out, "output");
    mc_graph_free(g);
    mc_resnet_free(model);
    return status;
}

static int resnet_check_input(const embed_options *o, const mc_tensor *input) {
    char shape[96];
    if (input->shape.ndim != 4)
        return cli_fail(COMMAND, "%s: tensor 'input' is %s, expected 4-D N x C x H x W", o->input,
                        mc_shape_str(input->shape, shape, sizeof shape));
    if (o->bands >= 0 && o->bands != input->shape.dim[1])
        return cli_fail(COMMAND, "--bands %d, but tensor 'input' in %s has %lld channels (%s)",
                        o->bands, o->input, (long long)input->shape.dim[1],
                        mc_shape_str(input->shape, shape, sizeof shape));
    return 0;
}

static int embed_resnet(const embed_options *o, embed_result *result) {
    const char *const names[] = {"--text", "--image", "--vocab", "--truncate"};
    const bool given[] = {o->n_texts > 0, o->n_images > 0, o->vocab != NULL, o->truncate};
    int code = reject_options(o, names, given, 4);
    if (code >= 0) return code;
    mc_tensor *input = NULL;
    code = read_float_input(o->input, &input);
    if (code == 0) code = resnet_check_input(o, input);
    mc_safetensors *weights = NULL;
    if (code == 0 && o->weights) {
        mc_status status = mc_safetensors_open(o->weights, &weights);
        if (status != MC_OK) code = cli_fail_status(COMMAND, status);
    }
    if (code == 0) {
        mc_status status = resnet_run(o, weights, input, &result->output);
        if (status != MC_OK) code = cli_fail_status(COMMAND, status);
    }
    mc_safetensors_close(weights);
    mc_tensor_free(input);
    snprintf(result->text, sizeof result->text, "%d", o->head);
    result->meta[result->n_meta++] = (mc_metadata_entry){"head", o->head < 0 ? "from weights" : result->text};
    result->meta[result->n_meta++] = (mc_metadata_entry){"mode", o->train_mode ? "train" : "eval"};
    return code;
}

/* ---- CLIP ----
 * Both towers run without gradients, CLIP_BATCH rows per forward pass
 * (mc_clip_embed_images / _texts), so memory holds one batch's activations. */

/* A tower's input, either pixels (N, 3, S, S) or ids (N, T). */
typedef struct clip_input {
    mc_tensor *pixels;
    int32_t *ids;
    int64_t rows;
} clip_input;

/* Every row of `in` through the tower -> *output, a heap (N, E) tensor. */
static mc_status clip_embed_rows(mc_clip *clip, const clip_input *in, mc_tensor **output) {
    MC_TRY(mc_tensor_new(output, MC_SHAPE(in->rows, clip->config.embed_dim), "output"));
    mc_status status = in->pixels ? mc_clip_embed_images(clip, in->pixels, false, CLIP_BATCH, *output)
                                  : mc_clip_embed_texts(clip, in->ids, in->rows, CLIP_BATCH, *output);
    if (status != MC_OK) {
        mc_tensor_free(*output);
        *output = NULL;
    }
    return status;
}

/* --input for clip-vision: float "input" (N, 3, S, S), S the tower's size. */
static int clip_pixels_from_file(const embed_options *o, const mc_clip *clip, mc_tensor **pixels) {
    int code = read_float_input(o->input, pixels);
    if (code) return code;
    int size = clip->config.vision.image_size;
    const mc_shape *s = &(*pixels)->shape;
    if (s->ndim != 4 || s->dim[1] != 3 || s->dim[2] != size || s->dim[3] != size) {
        char shape[96];
        return cli_fail(COMMAND, "%s: tensor 'input' is %s, expected N x 3 x %d x %d (CLIP-preprocessed "
                        "pixels for the image tower of %s)", o->input,
                        mc_shape_str(*s, shape, sizeof shape), size, size, o->weights);
    }
    return 0;
}

/* One image file -> CLIP-preprocessed row i of pixels (N, 3, S, S). */
static mc_status clip_load_image(const char *path, int size, mc_tensor *pixels, int i) {
    mc_tensor *image = NULL, *rgb = NULL, *preprocessed = NULL;
    mc_status status = mc_image_read(path, &image);
    if (status == MC_OK && image->shape.dim[0] != 3) {
        /* Grey or with alpha: mc_image_load_into makes the RGB planes the way
         * CLIP's PIL convert("RGB") does (grey repeated, alpha dropped); at
         * the image's own size it does not resample. */
        status = mc_tensor_new(&rgb, MC_SHAPE(1, 3, image->shape.dim[1], image->shape.dim[2]), "rgb");
        if (status == MC_OK) status = mc_image_load_into(path, true, rgb, 0);
    }
    if (status == MC_OK) status = mc_clip_preprocess(rgb ? rgb : image, size, true, &preprocessed);
    if (status == MC_OK) {
        int64_t floats = 3 * (int64_t)size * size;
        memcpy(pixels->data + i * floats, preprocessed->data, (size_t)floats * sizeof(float));
    }
    mc_tensor_free(image);
    mc_tensor_free(rgb);
    mc_tensor_free(preprocessed);
    return status == MC_OK ? MC_OK : mc_error_context(status, "--image: "); /* the message names the file */
}

static int clip_pixels_from_images(const embed_options *o, const mc_clip *clip, mc_tensor **pixels) {
    int size = clip->config.vision.image_size;
    mc_status status = mc_tensor_new(pixels, MC_SHAPE(o->n_images, 3, size, size), "pixels");
    for (int i = 0; status == MC_OK && i < o->n_images; i++)
        status = clip_load_image(o->images[i], size, *pixels, i);
    return status == MC_OK ? 0 : cli_fail_status(COMMAND, status);
}

/* The tensor "input" of f must be I32/I64 token ids (N, T), T the context
 * of the text tower. Returns 0 or the exit code. */
static int clip_check_ids_tensor(const embed_options *o, const mc_safetensors *f, const mc_clip_text_config *t,
                                 mc_shape *shape) {
    mc_dtype dtype;
    char text[96];
    if (!mc_safetensors_has(f, "input")) return cli_fail(COMMAND, "%s has no tensor named 'input'", o->input);
    mc_status status = mc_safetensors_info(f, "input", &dtype, shape);
    if (status != MC_OK) return cli_fail_status(COMMAND, status);
    if (dtype != MC_DTYPE_I32 && dtype != MC_DTYPE_I64)
        return cli_fail(COMMAND, "%s: tensor 'input' has dtype %s, expected token ids as I32 or I64 (N x %d)",
                        o->input, mc_dtype_name(dtype), t->context);
    if (shape->ndim != 2 || shape->dim[1] != t->context)
        return cli_fail(COMMAND, "%s: tensor 'input' is %s, expected N x %d token ids (the context of the "
                        "text tower of %s)", o->input, mc_shape_str(*shape, text, sizeof text), t->context,
                        o->weights);
    return 0;
}

/* Token ids as int64 -> int32, each inside the tower's vocabulary. */
static int clip_ids_narrow(const embed_options *o, const int64_t *values, int64_t n, const mc_clip_text_config *t,
                           int32_t **ids) {
    for (int64_t i = 0; i < n; i++)
        if (values[i] < 0 || values[i] >= t->vocab)
            return cli_fail(COMMAND, "%s: tensor 'input' holds id %lld at row %lld, column %lld: expected "
                            "0 <= id < %d (the vocabulary of %s)", o->input, (long long)values[i],
                            (long long)(i / t->context), (long long)(i % t->context), t->vocab, o->weights);
    if (!(*ids = malloc((size_t)n * sizeof **ids)))
        return cli_fail(COMMAND, "cannot allocate %lld token ids", (long long)n);
    for (int64_t i = 0; i < n; i++) (*ids)[i] = (int32_t)values[i];
    return 0;
}

/* --input for clip-text: int32/int64 "input" (N, T) -> int32 ids. */
static int clip_ids_from_file(const embed_options *o, const mc_clip *clip, int32_t **ids, int64_t *rows) {
    mc_safetensors *f;
    mc_status status = mc_safetensors_open(o->input, &f);
    if (status != MC_OK) return cli_fail_status(COMMAND, status);
    const mc_clip_text_config *t = &clip->config.text;
    mc_shape shape;
    int64_t *values = NULL;
    int code = clip_check_ids_tensor(o, f, t, &shape);
    if (!code && (status = mc_safetensors_read_ints(f, "input", &values, NULL)) != MC_OK)
        code = cli_fail_status(COMMAND, status);
    mc_safetensors_close(f);
    if (!code) code = clip_ids_narrow(o, values, shape.dim[0] * shape.dim[1], t, ids);
    *rows = code ? 0 : shape.dim[0];
    free(values);
    return code;
}

/* --text with --vocab: CLIP's tokenizer, context and vocabulary of the tower. */
static int clip_ids_from_texts(const embed_options *o, const mc_clip *clip, int32_t **ids, int64_t *rows) {
    const mc_clip_text_config *t = &clip->config.text;
    if (!o->vocab)
        return cli_fail(COMMAND, "--text needs --vocab V (merges.txt, vocab.json, "
                        "bpe_simple_vocab_16e6.txt.gz or their folder)");
    mc_tokenizer *tok;
    mc_status status = mc_tokenizer_load(o->vocab, &tok);
    if (status != MC_OK) return cli_fail(COMMAND, "--vocab %s: %s", o->vocab, mc_last_error());
    int code = 0;
    if (mc_tokenizer_vocab_size(tok) != t->vocab)
        code = cli_fail(COMMAND, "--vocab %s has %d tokens, but the text tower of %s has a vocabulary of %d",
                        o->vocab, mc_tokenizer_vocab_size(tok), o->weights, t->vocab);
    else if (!(*ids = malloc((size_t)o->n_texts * (size_t)t->context * sizeof **ids)))
        code = cli_fail(COMMAND, "cannot allocate token ids for %d texts", o->n_texts);
    else if (mc_tokenizer_tokenize_batch(tok, o->texts, o->n_texts, t->context, o->truncate, *ids) != MC_OK)
        code = cli_fail(COMMAND, "--text: %s%s", mc_last_error(),
                        o->truncate ? "" : " (pass --truncate to cut it)");
    mc_tokenizer_free(tok);
    *rows = o->n_texts;
    return code;
}

/* The file must hold the chosen tower. Returns 0 or the exit code. */
static int clip_check(const embed_options *o, const mc_clip *clip, bool vision) {
    if (vision && !clip->config.has_vision)
        return cli_fail(COMMAND, "%s has no image tower (no vision_model.* tensors; a text-only file?): "
                        "--model clip-vision needs one", o->weights);
    if (!vision && !clip->config.has_text)
        return cli_fail(COMMAND, "%s has no text tower (no text_model.* tensors; an image-only file?): "
                        "--model clip-text needs one", o->weights);
    return 0;
}

static int clip_reject_options(const embed_options *o, bool vision) {
    const char *const names[] = {"--bands", "--head", "--train-mode", "--seed", vision ? "--text" : "--image",
                                 "--vocab", "--truncate"};
    const bool given[] = {o->bands >= 0, o->head >= 0, o->train_mode, o->seed_given,
                          vision ? o->n_texts > 0 : o->n_images > 0, vision && o->vocab, vision && o->truncate};
    int code = reject_options(o, names, given, 7);
    if (code >= 0) return code;
    if (!o->weights)
        return cli_fail(COMMAND, "--model %s needs --weights W.safetensors (a Hugging Face CLIPModel "
                        "file, see weights/README.md)", o->model);
    return -1;
}

static int embed_clip(const embed_options *o, embed_result *result) {
    bool vision = strcmp(o->model, "clip-vision") == 0;
    int code = clip_reject_options(o, vision);
    if (code >= 0) return code;
    mc_clip *clip;
    mc_status status = mc_clip_load(o->weights, &clip);
    if (status != MC_OK) return cli_fail_status(COMMAND, status); /* "loading CLIP from W: ..." */
    code = clip_check(o, clip, vision);
    clip_input in = {0};
    if (!code && vision) {
        code = o->input ? clip_pixels_from_file(o, clip, &in.pixels) : clip_pixels_from_images(o, clip, &in.pixels);
        in.rows = code ? 0 : in.pixels->shape.dim[0];
    } else if (!code) {
        code = o->input ? clip_ids_from_file(o, clip, &in.ids, &in.rows) : clip_ids_from_texts(o, clip, &in.ids, &in.rows);
    }
    if (!code && (status = clip_embed_rows(clip, &in, &result->output)) != MC_OK)
        code = cli_fail_status(COMMAND, status);
    mc_tensor_free(in.pixels);
    free(in.ids);
    mc_clip_free(clip);
    const char *source = o->input ? "input" : vision ? "image" : "text";
    result->meta[result->n_meta++] = (mc_metadata_entry){"source", source};
    result->meta[result->n_meta++] = (mc_metadata_entry){"normalized", "false"};
    return code;
}

/* ---- a trained spectral encoder on tile files ---- */

/* Tiles [first, first + n) into x (n, C, H, W): the checkpoint's bands and
 * normalisation, the encoder's tile size. */
static mc_status spectral_load_tiles(const embed_options *o, const mc_spectral_encoder *enc, int first,
                                     int n, mc_tensor *x) {
    int64_t per_tile = x->numel / n;
    for (int i = 0; i < n; i++) {
        const char *path = o->tiles[first + i];
        mc_tensor *tile;
        MC_TRY(mc_tile_load(path, &enc->bands, &enc->norm, &tile));
        bool fits = tile->numel == per_tile && tile->shape.dim[2] == enc->image_size;
        if (fits) memcpy(x->data + i * per_tile, tile->data, (size_t)per_tile * sizeof(float));
        int h = (int)tile->shape.dim[2], w = (int)tile->shape.dim[3];
        mc_tensor_free(tile);
        if (!fits)
            return mc_error(MC_ERR_SHAPE, "%s is %dx%d, the encoder takes %dx%d tiles", path, h, w,
                            enc->image_size, enc->image_size);
    }
    return MC_OK;
}

/* embeds (n_tiles, E) <- the encoder in eval mode, o->batch tiles at a time. */
static mc_status spectral_embed_all(const embed_options *o, mc_spectral_encoder *enc, float *embeds) {
    mc_graph *g;
    MC_TRY(mc_graph_new(&g));
    mc_graph_set_grad_enabled(g, false);
    mc_resnet_set_training(enc->resnet, false);
    mc_status st = MC_OK;
    for (int first = 0; first < o->n_tiles && st == MC_OK; first += o->batch) {
        int n = o->n_tiles - first < o->batch ? o->n_tiles - first : o->batch;
        mc_tensor *x, *out;
        st = mc_graph_tensor(g, MC_SHAPE(n, enc->bands.count, enc->image_size, enc->image_size), "x", &x);
        if (st == MC_OK) st = spectral_load_tiles(o, enc, first, n, x);
        if (st == MC_OK) st = mc_spectral_encoder_forward(enc, g, x, &out);
        if (st == MC_OK)
            memcpy(embeds + (int64_t)first * enc->embed_dim, out->data,
                   (size_t)n * (size_t)enc->embed_dim * sizeof(float));
        mc_graph_reset(g);
    }
    mc_graph_free(g);
    return st;
}

static int embed_spectral(const embed_options *o) {
    if (o->n_tiles == 0) return cli_fail(COMMAND, "no tile given (mmchain embed --checkpoint C TILE.tif... --output OUT)");
    if (!o->output) return cli_fail(COMMAND, "--output OUT.safetensors is required");
    mc_spectral_encoder *enc;
    mc_status st = mc_spectral_encoder_load(o->checkpoint, &enc, NULL);
    if (st != MC_OK) return cli_fail(COMMAND, "--checkpoint %s: %s", o->checkpoint, mc_last_error());
    float *embeds = malloc((size_t)o->n_tiles * (size_t)enc->embed_dim * sizeof *embeds);
    st = embeds ? spectral_embed_all(o, enc, embeds) : mc_error(MC_ERR_NOMEM, "embed: out of memory");
    int code = st == MC_OK ? 0 : cli_fail_status(COMMAND, st);
    if (!code) {
        st = chain_cli_write_embeddings(o->output, embeds, o->n_tiles, enc->embed_dim, o->tiles,
                                        o->checkpoint, &enc->bands);
        if (st != MC_OK) code = cli_fail(COMMAND, "--output %s: %s", o->output, mc_last_error());
    }
    free(embeds);
    mc_spectral_encoder_free(enc);
    return code;
}

/* ---- the command ---- */

static int run_tower(const embed_options *o) {
    const struct tower *tower = NULL;
    for (int i = 0; i < N_TOWERS; i++)
        if (strcmp(o->model, towers[i].name) == 0) tower = &towers[i];
    if (!tower) return cli_fail(COMMAND, "unknown --model '%s' (see mmchain embed --help)", o->model);
    embed_result result = {.n_meta = 2};
    result.meta[0] = (mc_metadata_entry){"model", o->model};
    result.meta[1] = (mc_metadata_entry){"weights", o->weights ? o->weights : "random"};
    int code = tower->run(o, &result);
    if (code == 0) {
        mc_tensor_set_name(result.output, "output");
        mc_status status = mc_safetensors_write(o->output, 1, &result.output, result.n_meta, result.meta);
        if (status != MC_OK) code = cli_fail_status(COMMAND, status);
    }
    mc_tensor_free(result.output);
    return code;
}

int cmd_embed(int argc, char **argv) {
    embed_options o = {.bands = -1, .head = -1, .batch = 64, .precision = "fp32"};
    /* Every --text / --image value or tile is one argv entry: argc slots suffice. */
    o.texts = malloc((size_t)argc * sizeof *o.texts);
    o.images = malloc((size_t)argc * sizeof *o.images);
    o.tiles = malloc((size_t)argc * sizeof *o.tiles);
    int code = !o.texts || !o.images || !o.tiles ? cli_fail(COMMAND, "out of memory")
                                                : parse_options(argc, argv, &o);
    if (code < 0) code = o.checkpoint ? embed_spectral(&o) : run_tower(&o);
    free(o.texts);
    free(o.images);
    free(o.tiles);
    return code;
}

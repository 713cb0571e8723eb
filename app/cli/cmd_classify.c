/* mmchain classify — zero-shot classes for multispectral tiles.
 *
 *     mmchain classify --checkpoint C --clip CLIP --vocab V FILE.tif... [--top k] [--json]
 *                      [--classes "forest,river,..."] [--templates "a photo of {}.|..."]
 *
 * The encoder embeds each tile's bands (the checkpoint says which, and how
 * they were normalised); CLIP's text tower embeds the class prompts; the
 * scores are CLIP's zero-shot probabilities, softmax(100 * cos). Any labels
 * work: zero-shot means the classes need not be EuroSAT's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain_cli.h"

static const char *const COMMAND = "classify";
static const char *const USAGE =
    "usage: mmchain classify --checkpoint C.safetensors --clip CLIP --vocab V FILE.tif... [options]\n\n"
    "Prints the top-k classes with their probabilities for each tile. Default classes: EuroSAT's\n"
    "ten, with CLIP's prompt names and templates.";

typedef struct classify_args {
    const char *checkpoint, *precision;
    chain_data_args d; /* --clip, --vocab, --classes, --templates (no data) */
    int top;
    bool json;
} classify_args;

static const char *const eurosat_folders[MC_EUROSAT_NUM_CLASSES] = {
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
};

typedef struct classify_setup {
    mc_spectral_encoder *enc;
    mc_clip *clip;
    mc_tensor *classes;
    char **names;
    int n_names;
    mc_graph *g;
} classify_setup;

static void free_setup(classify_setup *s) {
    mc_graph_free(s->g);
    mc_chain_strings_free(s->names, s->n_names);
    mc_tensor_free(s->classes);
    mc_clip_free(s->clip);
    mc_spectral_encoder_free(s->enc);
}

static int open_inputs(const classify_args *a, classify_setup *s) {
    if (!a->checkpoint) return cli_fail(COMMAND, "--checkpoint FILE is required (see mmchain classify --help)");
    mc_status st = mc_spectral_encoder_load(a->checkpoint, &s->enc, NULL);
    if (st != MC_OK) return cli_fail(COMMAND, "--checkpoint %s: %s", a->checkpoint, mc_last_error());
    int code = chain_cli_load_clip(COMMAND, a->d.clip, &s->clip);
    if (!code && s->clip->config.embed_dim != s->enc->embed_dim)
        code = cli_fail(COMMAND, "--checkpoint %s outputs %d values, the CLIP %s has a %d-d joint space",
                        a->checkpoint, s->enc->embed_dim, a->d.clip, s->clip->config.embed_dim);
    if (!code)
        code = chain_cli_classifier(COMMAND, s->clip, &a->d, a->d.classes ? NULL : eurosat_folders,
                                    a->d.classes ? 0 : MC_EUROSAT_NUM_CLASSES, &s->classes, &s->names,
                                    &s->n_names);
    if (!code && mc_graph_new(&s->g) != MC_OK) code = cli_fail_status(COMMAND, MC_ERR_NOMEM);
    if (!code) {
        mc_graph_set_grad_enabled(s->g, false);
        mc_resnet_set_training(s->enc->resnet, false);
    }
    return code;
}

/* The probabilities of one tile over the classes: *probs heap (1, K). */
static mc_status classify_tile(classify_setup *s, const char *path, mc_tensor **probs) {
    mc_tensor *x, *embed;
    MC_TRY(mc_tile_load(path, &s->enc->bands, &s->enc->norm, &x));
    mc_status st = mc_spectral_encoder_forward(s->enc, s->g, x, &embed);
    /* CLIP's own zero-shot scale (100 for OpenAI's checkpoints). */
    float scale = s->clip->logit_scale ? s->clip->logit_scale->data[0] : logf(100.0f);
    if (st == MC_OK) st = mc_chain_zero_shot_probs(embed, s->classes, scale, probs);
    mc_graph_reset(s->g);
    mc_tensor_free(x);
    if (st != MC_OK) return mc_error_context(st, "%s: ", path);
    return MC_OK;
}

/* order[0..k) = indices of the k largest probabilities, largest first. */
static void top_k(const float *p, int n, int k, int *order) {
    for (int i = 0; i < k; i++) {
        int best = -1;
        for (int c = 0; c < n; c++) {
            bool taken = false;
            for (int j = 0; j < i; j++) taken = taken || order[j] == c;
            if (!taken && (best < 0 || p[c] > p[best])) best = c;
        }
        order[i] = best;
    }
}

static void print_result(const classify_args *a, const classify_setup *s, const char *path,
                         const float *p, const int *order, int k, bool first) {
    if (!a->json) {
        printf("%s\n", path);
        for (int i = 0; i < k; i++) printf("  %6.2f %%  %s\n", 100.0 * p[order[i]], s->names[order[i]]);
        return;
    }
    printf("%s  {\"file\": ", first ? "" : ",\n");
    chain_cli_print_json_string(path);
    printf(", \"top\": [");
    for (int i = 0; i < k; i++) {
        printf("%s{\"class\": ", i ? ", " : "");
        chain_cli_print_json_string(s->names[order[i]]);
        printf(", \"score\": %.6f}", (double)p[order[i]]);
    }
    printf("]}");
}

int cmd_classify(int argc, char **argv) {
    classify_args a = {.d = chain_cli_data_defaults(), .top = 3, .precision = "fp32"};
    cli_opt opts[] = {
        CLI_STRING_OPT("--checkpoint", &a.checkpoint, "FILE: encoder checkpoint (mmchain train)"),
        CLI_STRING_OPT("--clip", &a.d.clip, "FILE: the CLIP the encoder was trained against"),
        CLI_STRING_OPT("--vocab", &a.d.vocab, "FILE: CLIP vocabulary (merges)"),
        CLI_INT_OPT("--top", &a.top, 1, 1000, "K: classes to show per tile"),
        CLI_FLAG_OPT("--json", &a.json, "JSON output"),
        CLI_STRING_OPT("--classes", &a.d.classes, "LIST: class names, comma-separated"),
        CLI_STRING_OPT("--templates", &a.d.templates, "LIST: templates with {}, '|'-separated"),
        CLI_PRECISION_OPT(&a.precision),
        CLI_END,
    };
    const char **files = calloc((size_t)argc, sizeof *files);
    if (!files) return cli_fail(COMMAND, "out of memory");
    int n_files = 0;
    const cli_parser parser = {COMMAND, USAGE, NULL, opts, CLI_OPERANDS};
    int code = cli_parse(&parser, argc, argv, files, &n_files);
    if (code >= 0) {
        free(files);
        return code;
    }
    classify_setup s = {0};
    code = cli_apply_precision(COMMAND, a.precision);
    if (!code) code = n_files == 0 ? cli_fail(COMMAND, "no tile given (mmchain classify ... FILE.tif...)")
                        : open_inputs(&a, &s);
    int k = code == 0 && a.top < s.n_names ? a.top : s.n_names;
    int *order = code == 0 ? calloc((size_t)s.n_names, sizeof *order) : NULL;
    if (code == 0 && !order) code = cli_fail(COMMAND, "out of memory");
    if (code == 0 && a.json) printf("[\n");
    for (int i = 0; i < n_files && code == 0; i++) {
        mc_tensor *probs;
        mc_status st = classify_tile(&s, files[i], &probs);
        if (st != MC_OK) {
            code = cli_fail_status(COMMAND, st);
            break;
        }
        top_k(probs->data, s.n_names, k, order);
        print_result(&a, &s, files[i], probs->data, order, k, i == 0);
        mc_tensor_free(probs);
    }
    if (code == 0 && a.json) printf("\n]\n");
    free(order);
    free_setup(&s);
    free(files);
    return code;
}

/* mmchain embed — run one tower on a tensor file.
 *
 *     mmchain embed --model MODEL [--weights W.safetensors] --input IN.safetensors
 *                   --output OUT.safetensors [--bands N] [--head D] [--train-mode] [--seed S]
 *
 * Reads the float32 tensor "input" of IN and writes the tensor "output" to
 * OUT. Each model family has one entry in the table `towers` below (name,
 * function, help line); a new tower (clip-vision, clip-text, ...) adds a row
 * and an embed_<family> function taking the same options. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mmchain/models.h"

static const char *const COMMAND = "embed";

typedef struct embed_options {
    const char *model;
    const char *weights; /* NULL: seeded random initialisation */
    const char *input;
    const char *output;
    int bands;           /* -1: from the input */
    int head;            /* -1: as the weights say; 0: no head; D: new Linear(F, D) */
    bool train_mode;
    long long seed;
} embed_options;

/* Runs the tower on `input`; *output is a new heap tensor. Returns an exit
 * code (0 = success) after printing any error. */
typedef int (*embed_fn)(const embed_options *o, mc_tensor *input, mc_tensor **output);

static int embed_resnet(const embed_options *o, mc_tensor *input, mc_tensor **output);

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
};
enum { N_TOWERS = sizeof towers / sizeof towers[0] };

static void print_help(void) {
    printf("usage: mmchain embed --model MODEL [--weights W.safetensors] --input IN.safetensors\n"
           "                     --output OUT.safetensors [--bands N] [--head D] [--train-mode]\n\n"
           "Runs MODEL on the float32 tensor \"input\" of IN (N x C x H x W for image towers)\n"
           "and writes the tensor \"output\" to OUT.\n\n"
           "  --model MODEL    one of:\n");
    for (int i = 0; i < N_TOWERS; i++) printf("                     %-10s %s\n", towers[i].name, towers[i].help);
    printf("  --weights W      a safetensors state_dict (torchvision/timm names); without it a\n"
           "                   seeded random initialisation (PyTorch's default scheme)\n"
           "  --bands N        input bands (default: the input's C); an RGB conv1 in W is\n"
           "                   turned into an N-band one (docs/models.md)\n"
           "  --head D         0: output the pooled feature (2048-d for ResNet-50); D > 0: a new\n"
           "                   Linear(F, D) head (seeded); default: the fc in W if it has one,\n"
           "                   else the pooled feature (1000 logits without --weights)\n"
           "  --train-mode     BatchNorm with batch statistics (PyTorch's model.train())\n"
           "  --seed S         seed of the random initialisation (default 0)\n");
}

static bool parse_long(const char *text, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || end == text || *end || value < lo || value > hi) return false;
    *out = value;
    return true;
}

/* Returns -1 to go on, otherwise the exit code. */
static int parse_options(int argc, char **argv, embed_options *o) {
    *o = (embed_options){.bands = -1, .head = -1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help();
            return 0;
        }
        if (strcmp(arg, "--train-mode") == 0) {
            o->train_mode = true;
            continue;
        }
        static const char *const valued[] = {"--model", "--weights", "--input", "--output",
                                             "--bands", "--head", "--seed"};
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) known |= !strcmp(arg, valued[k]);
        if (!known) return cli_fail(COMMAND, "unknown option '%s' (see mmchain embed --help)", arg);
        if (i + 1 >= argc) return cli_fail(COMMAND, "option %s needs a value", arg);
        const char *value = argv[++i];
        long long number = 0;
        if (!strcmp(arg, "--model")) o->model = value;
        else if (!strcmp(arg, "--weights")) o->weights = value;
        else if (!strcmp(arg, "--input")) o->input = value;
        else if (!strcmp(arg, "--output")) o->output = value;
        else if (!strcmp(arg, "--seed")) {
            if (!parse_long(value, 0, (long long)1 << 62, &number))
                return cli_fail(COMMAND, "--seed must be a whole number >= 0, not '%s'", value);
            o->seed = number;
        } else if (!strcmp(arg, "--bands")) {
            if (!parse_long(value, 1, 4096, &number))
                return cli_fail(COMMAND, "--bands must be a whole number from 1 to 4096, not '%s'", value);
            o->bands = (int)number;
        } else {
            if (!parse_long(value, 0, 1000000, &number))
                return cli_fail(COMMAND, "--head must be 0 (no head) or a width up to 1000000, not '%s'",
                                value);
            o->head = (int)number;
        }
    }
    if (!o->model) return cli_fail(COMMAND, "--model is required (see mmchain embed --help)");
    if (!o->input) return cli_fail(COMMAND, "--input IN.safetensors is required");
    if (!o->output) return cli_fail(COMMAND, "--output OUT.safetensors is required");
    return -1;
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

static int embed_resnet(const embed_options *o, mc_tensor *input, mc_tensor **output) {
    char shape[96];
    if (input->shape.ndim != 4)
        return cli_fail(COMMAND, "%s: tensor 'input' is %s, expected 4-D N x C x H x W", o->input,
                        mc_shape_str(input->shape, shape, sizeof shape));
    if (o->bands >= 0 && o->bands != input->shape.dim[1])
        return cli_fail(COMMAND, "--bands %d, but tensor 'input' in %s has %lld channels (%s)",
                        o->bands, o->input, (long long)input->shape.dim[1],
                        mc_shape_str(input->shape, shape, sizeof shape));
    mc_safetensors *weights = NULL;
    if (o->weights) {
        mc_status status = mc_safetensors_open(o->weights, &weights);
        if (status != MC_OK) return cli_fail_status(COMMAND, status);
    }
    mc_status status = resnet_run(o, weights, input, output);
    mc_safetensors_close(weights);
    return status == MC_OK ? 0 : cli_fail_status(COMMAND, status);
}

/* ---- the command ---- */

static int read_input(const char *path, mc_tensor **input) {
    mc_safetensors *f;
    mc_status status = mc_safetensors_open(path, &f);
    if (status != MC_OK) return cli_fail_status(COMMAND, status);
    if (!mc_safetensors_has(f, "input")) {
        mc_safetensors_close(f);
        return cli_fail(COMMAND, "%s has no tensor named 'input'", path);
    }
    status = mc_safetensors_read(f, "input", input);
    mc_safetensors_close(f);
    return status == MC_OK ? 0 : cli_fail_status(COMMAND, status);
}

int cmd_embed(int argc, char **argv) {
    embed_options o;
    int code = parse_options(argc, argv, &o);
    if (code >= 0) return code;
    const struct tower *tower = NULL;
    for (int i = 0; i < N_TOWERS; i++)
        if (strcmp(o.model, towers[i].name) == 0) tower = &towers[i];
    if (!tower) return cli_fail(COMMAND, "unknown --model '%s' (see mmchain embed --help)", o.model);

    mc_tensor *input = NULL, *output = NULL;
    code = read_input(o.input, &input);
    if (code == 0) code = tower->run(&o, input, &output);
    if (code == 0) {
        char head[32];
        snprintf(head, sizeof head, "%d", o.head);
        const mc_metadata_entry meta[] = {
            {"model", o.model},
            {"weights", o.weights ? o.weights : "random"},
            {"head", o.head < 0 ? "from weights" : head},
            {"mode", o.train_mode ? "train" : "eval"},
        };
        mc_status status = mc_safetensors_write(o.output, 1, &output, 4, meta);
        if (status != MC_OK) code = cli_fail_status(COMMAND, status);
    }
    mc_tensor_free(input);
    mc_tensor_free(output);
    return code;
}

/* Shared by cmd_train.c, cmd_eval.c and cmd_classify.c (see chain_cli.h). */
#include "chain_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cli_opt *cli_opt_find(cli_opt *opts, const char *name) {
    for (cli_opt *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0) return o;
    return NULL;
}

int cli_opt_set(const char *command, cli_opt *o, const char *text) {
    char *end;
    errno = 0;
    switch (o->kind) {
    case CLI_FLAG:
        if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0) *(bool *)o->value = true;
        else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0) *(bool *)o->value = false;
        else return cli_fail(command, "%s: '%s' is not true or false", o->name, text);
        return 0;
    case CLI_STRING:
        *(const char **)o->value = text;
        return 0;
    case CLI_INT: {
        long v = strtol(text, &end, 10);
        if (errno || end == text || *end || v < o->min || v > o->max)
            return cli_fail(command, "%s '%s' is not a whole number in %.0f..%.0f", o->name, text,
                            o->min, o->max);
        *(int *)o->value = (int)v;
        return 0;
    }
    case CLI_FLOAT: {
        double v = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(v) || v < o->min || v > o->max)
            return cli_fail(command, "%s '%s' is not a number in %g..%g", o->name, text, o->min, o->max);
        *(float *)o->value = (float)v;
        return 0;
    }
    case CLI_U64: {
        unsigned long long v = strtoull(text, &end, 10);
        if (errno || end == text || *end || text[0] == '-')
            return cli_fail(command, "%s '%s' is not a whole number >= 0", o->name, text);
        *(uint64_t *)o->value = (uint64_t)v;
        return 0;
    }
    }
    return cli_fail(command, "%s: unknown option kind", o->name);
}

void cli_opt_format(const cli_opt *o, char *buf, size_t len) {
    switch (o->kind) {
    case CLI_FLAG: snprintf(buf, len, "%s", *(const bool *)o->value ? "true" : "false"); break;
    case CLI_STRING: {
        const char *s = *(const char *const *)o->value;
        snprintf(buf, len, "%s", s ? s : "");
        break;
    }
    case CLI_INT: snprintf(buf, len, "%d", *(const int *)o->value); break;
    case CLI_FLOAT: { /* the shortest text that reads back as the same float */
        float v = *(const float *)o->value;
        for (int digits = 6; digits <= 9; digits++) {
            snprintf(buf, len, "%.*g", digits, (double)v);
            if (strtof(buf, NULL) == v) break;
        }
        break;
    }
    case CLI_U64: snprintf(buf, len, "%" PRIu64, *(const uint64_t *)o->value); break;
    }
}

void cli_opts_help(const char *usage, const cli_opt *opts) {
    printf("%s\n\n", usage);
    for (const cli_opt *o = opts; o->name; o++) {
        char value[256] = "";
        if (o->kind != CLI_FLAG) cli_opt_format(o, value, sizeof value);
        printf("  %-22s %s%s%s%s\n", o->name, o->help, value[0] ? " (default " : "", value,
               value[0] ? ")" : "");
    }
}

int cli_opts_parse(const char *command, const char *usage, cli_opt *opts, int argc, char **argv,
                   const char ***positional, int *n_positional) {
    if (n_positional) *n_positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cli_opts_help(usage, opts);
            return 0;
        }
        if (strncmp(arg, "--", 2) != 0) {
            if (!positional) return cli_fail(command, "unexpected argument '%s' (see mmchain %s --help)", arg, command);
            (*positional)[(*n_positional)++] = arg;
            continue;
        }
        cli_opt *o = cli_opt_find(opts, arg);
        if (!o) return cli_fail(command, "unknown option '%s' (see mmchain %s --help)", arg, command);
        o->given = true;
        if (o->kind == CLI_FLAG) {
            *(bool *)o->value = true;
            continue;
        }
        if (i + 1 >= argc) return cli_fail(command, "%s needs a value", arg);
        int code = cli_opt_set(command, o, argv[++i]);
        if (code) return code;
    }
    return -1;
}

void chain_cli_data_options(chain_data_args *d, cli_opt *o, int *n) {
#define OPT(...) CLI_OPT(o, *n, __VA_ARGS__)
    OPT("--data", CLI_STRING, &d->data, 0, 0, "DIR: EuroSAT-MS folder of class folders of .tif");
    OPT("--rgb", CLI_STRING, &d->rgb, 0, 0, "DIR: EuroSAT RGB release (default: RGB from B04,B03,B02)");
    OPT("--clip", CLI_STRING, &d->clip, 0, 0, "FILE: CLIP (Hugging Face CLIPModel safetensors)");
    OPT("--vocab", CLI_STRING, &d->vocab, 0, 0, "FILE: CLIP's merges.txt or bpe_simple_vocab_16e6.txt.gz");
    OPT("--splits", CLI_STRING, &d->splits, 0, 0, "DIR: torchgeo's eurosat-{train,val,test}.txt");
    OPT("--train-size", CLI_INT, &d->train_size, 0, 100000000, "N: training tiles (0 = 2600 or scaled)");
    OPT("--val-size", CLI_INT, &d->val_size, 0, 100000000, "N: validation tiles (0 = 1000 or scaled)");
    OPT("--seed", CLI_U64, &d->seed, 0, 0, "S: the split's seed (train: also order, augmentation, init)");
    OPT("--classes", CLI_STRING, &d->classes, 0, 0, "LIST: prompt names, one per class folder, commas");
    OPT("--templates", CLI_STRING, &d->templates, 0, 0, "LIST: prompt templates with {}, '|'-separated");
#undef OPT
}

int chain_cli_open_eurosat(const char *command, const chain_data_args *d, mc_eurosat **ds) {
    mc_eurosat_options options = mc_eurosat_default_options();
    options.rgb_dir = d->rgb;
    options.split_dir = d->splits;
    options.seed = d->seed;
    options.train_size = d->train_size;
    options.val_size = d->val_size;
    mc_status s = mc_eurosat_open(ds, d->data, &options);
    if (s != MC_OK) return cli_fail(command, "--data %s: %s", d->data, mc_last_error());
    return 0;
}

int chain_cli_load_clip(const char *command, const char *path, mc_clip **clip) {
    if (!path) return cli_fail(command, "--clip CLIP.safetensors is required (a Hugging Face CLIPModel)");
    mc_status s = mc_clip_load(path, clip);
    if (s != MC_OK) return cli_fail(command, "--clip %s: %s", path, mc_last_error());
    return 0;
}

/* The prompt names: the user's list, or the folder names mapped by name. */
static int prompt_names(const char *command, const char *classes_list,
                        const char *const *folder_names, int n_folders, char ***names, int *n) {
    mc_status s;
    if (classes_list) {
        s = mc_chain_split_list(classes_list, ',', "--classes", names, n);
        if (s != MC_OK) return cli_fail_status(command, s);
        if (n_folders > 0 && *n != n_folders) {
            mc_chain_strings_free(*names, *n);
            int given = *n;
            *names = NULL;
            *n = 0;
            return cli_fail(command, "--classes has %d names, the dataset has %d classes (in order: %s, ...)",
                            given, n_folders, folder_names[0]);
        }
        return 0;
    }
    if (n_folders < 1) return cli_fail(command, "no class names (give --classes)");
    s = mc_chain_class_prompts(folder_names, n_folders, names);
    if (s != MC_OK) return cli_fail_status(command, s);
    *n = n_folders;
    return 0;
}

int chain_cli_classifier(const char *command, mc_clip *clip, const char *vocab_path,
                         const char *classes_list, const char *templates_list,
                         const char *const *folder_names, int n_folders, mc_tensor **classes,
                         char ***names, int *n_names) {
    if (!vocab_path) return cli_fail(command, "--vocab is required (CLIP's merges.txt / bpe_simple_vocab_16e6.txt.gz)");
    int code = prompt_names(command, classes_list, folder_names, n_folders, names, n_names);
    if (code) return code;
    char **templates = NULL;
    int n_templates = MC_CHAIN_NUM_TEMPLATES;
    mc_status s = MC_OK;
    if (templates_list) s = mc_chain_split_list(templates_list, '|', "--templates", &templates, &n_templates);
    mc_tokenizer *tok = NULL;
    if (s == MC_OK) {
        s = mc_tokenizer_load(vocab_path, &tok);
        if (s != MC_OK) mc_error_context(s, "--vocab %s: ", vocab_path);
    }
    if (s == MC_OK)
        s = mc_chain_text_classifier(clip, tok, (const char *const *)*names, *n_names,
                                     templates ? (const char *const *)templates : mc_chain_eurosat_templates,
                                     n_templates, classes);
    mc_tokenizer_free(tok);
    mc_chain_strings_free(templates, templates ? n_templates : 0);
    if (s != MC_OK) {
        mc_chain_strings_free(*names, *n_names);
        *names = NULL;
        *n_names = 0;
        return cli_fail_status(command, s);
    }
    return 0;
}

void chain_cli_print_confusion(const char *title, const int64_t *confusion, const double *class_acc,
                               int k, const char *const *names) {
    printf("%s (rows: true class, columns: predicted)\n", title);
    printf("  %-22s", "");
    for (int p = 0; p < k; p++) printf(" %5d", p);
    printf("   accuracy\n");
    for (int t = 0; t < k; t++) {
        printf("  %2d %-19.19s", t, names[t]);
        for (int p = 0; p < k; p++) printf(" %5lld", (long long)confusion[t * k + p]);
        if (isnan(class_acc[t])) printf("   -\n");
        else printf("   %5.1f %%\n", 100.0 * class_acc[t]);
    }
}

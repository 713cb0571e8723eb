/* Shared by the commands that train, evaluate or use a spectral encoder (see chain_cli.h). */
#include "chain_cli.h"
#include "mmchain/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

chain_data_args chain_cli_data_defaults(void) {
    return (chain_data_args){.eurosat = mc_eurosat_default_options()};
}

int chain_cli_open_eurosat(const char *command, const chain_data_args *d, mc_eurosat **ds) {
    mc_status s = mc_eurosat_open(ds, d->data, &d->eurosat);
    if (s != MC_OK) return cli_fail(command, "--data %s: %s", d->data, mc_last_error());
    return 0;
}

chain_encoder_args chain_cli_encoder_defaults(void) {
    return (chain_encoder_args){.depth = 50, .width = 64};
}

int chain_cli_encoder_arch(const char *command, const chain_encoder_args *e, mc_resnet_config *arch) {
    if (mc_resnet_config_for_depth(e->depth, arch) != MC_OK)
        return cli_fail(command, "--depth %d: %s", e->depth, mc_last_error());
    arch->base_width = e->width;
    if (e->layers) {
        char tail;
        if (sscanf(e->layers, "%d,%d,%d,%d%c", &arch->layers[0], &arch->layers[1], &arch->layers[2],
                   &arch->layers[3], &tail) != 4)
            return cli_fail(command, "--layers '%s' is not four block counts like 3,4,6,3", e->layers);
    }
    arch->in_channels = 1; /* set from the bands by the encoder */
    arch->fc_out = 1;
    if (mc_resnet_config_check(arch) != MC_OK) return cli_fail(command, "%s", mc_last_error());
    return 0;
}

int chain_cli_memory_limit(const char *command, const cli_opt *flag, uint64_t *limit) {
    if (flag->given) return 0; /* the parser has set *limit */
    const char *env = getenv("MMCHAIN_MAX_MEMORY");
    *limit = 0;
    if (!env || !env[0]) return 0;
    if (!cli_parse_bytes(env, limit))
        return cli_fail(command, "MMCHAIN_MAX_MEMORY must be a size like 512M or 2G (K, M, G, T: "
                                 "powers of 1024; 0: no limit), not '%s'",
                        env);
    return 0;
}

/* bytes as "1.25 GiB", "312.0 MiB" or "900 KiB". */
static const char *size_text(size_t bytes, char *buf, size_t len) {
    if (bytes >= (size_t)1 << 30) snprintf(buf, len, "%.2f GiB", (double)bytes / (double)(1u << 30));
    else if (bytes >= (size_t)1 << 20) snprintf(buf, len, "%.1f MiB", (double)bytes / (double)(1u << 20));
    else snprintf(buf, len, "%zu KiB", (bytes + 1023) / 1024);
    return buf;
}

int chain_cli_check_memory(const char *command, uint64_t limit, const mc_chain_memory_plan *plan) {
    if (limit == 0) return 0;
    mc_chain_memory_estimate e;
    mc_status s = mc_chain_estimate_memory(plan, &e);
    if (s != MC_OK) return cli_fail_status(command, s);
    char total[32], lim[32], parts[9][32];
    char line[1024];
    snprintf(line, sizeof line,
             "encoder weights %s, gradients %s, Adam state %s, CLIP weights %s, CLIP targets %s; "
             "largest phase of: training step %s (+ %s beside the arena), validation %s, CLIP forward %s",
             size_text(e.weights, parts[0], sizeof parts[0]), size_text(e.gradients, parts[1], sizeof parts[1]),
             size_text(e.optimizer, parts[2], sizeof parts[2]), size_text(e.clip, parts[3], sizeof parts[3]),
             size_text(e.targets, parts[4], sizeof parts[4]), size_text(e.step, parts[5], sizeof parts[5]),
             size_text(e.step_extra, parts[6], sizeof parts[6]),
             size_text(e.validation, parts[7], sizeof parts[7]),
             size_text(e.clip_forward, parts[8], sizeof parts[8]));
    size_text(e.total, total, sizeof total);
    size_text((size_t)limit, lim, sizeof lim);
    if (e.total > limit)
        return cli_fail(command,
                        "the run needs an estimated %s, more than --max-memory %s (%s); nothing was "
                        "started. Lower --batch, --val-batch or --clip-batch, or raise the limit",
                        total, lim, line);
    fprintf(stderr, "mmchain %s: memory estimate %s of the %s allowed (%s)\n", command, total, lim, line);
    return 0;
}

/* The longest value config.json keeps, with its NUL: what the commands
 * that read a run back (resume, eval, classify) have room for. */
enum { CONFIG_VALUE_LEN = 4096 };

int chain_cli_write_config(const char *command, mc_run *run, const cli_opt *opts,
                           bool (*not_stored)(const char *name)) {
    const int count = cli_opts_count(opts);
    mc_metadata_entry *kv = calloc((size_t)count, sizeof *kv);
    char *values = calloc((size_t)count, CONFIG_VALUE_LEN);
    if (!kv || !values) {
        free(kv);
        free(values);
        return cli_fail(command, "out of memory");
    }
    int n = 0;
    for (const cli_opt *o = opts; o->name; o++) {
        if (not_stored && not_stored(o->name)) continue;
        char *value = values + (size_t)n * CONFIG_VALUE_LEN;
        cli_opt_format(o, value, CONFIG_VALUE_LEN);
        if (strlen(value) >= CONFIG_VALUE_LEN - 1) { /* kept cut short, the run would resume another */
            free(kv);
            free(values);
            return cli_fail(command, "%s is too long to keep in the run's config.json (at most %d "
                            "characters)", o->name, CONFIG_VALUE_LEN - 2);
        }
        kv[n++] = (mc_metadata_entry){o->name + 2, value};
    }
    mc_status s = mc_run_write_config(run, n, kv);
    free(kv);
    free(values);
    return s == MC_OK ? 0 : cli_fail_status(command, s);
}

int chain_cli_check_out(const char *command, const char *out, bool overwrite, bool has_resume) {
    if (overwrite || mc_run_check_new(out) == MC_OK) return 0;
    /* --resume continues a run (a config.json); a folder holding only a
     * model (a downloaded CLIP) has none to continue. pretrain-clip's
     * --overwrite deletes its model files too; the others' leave them. */
    char config[4096];
    snprintf(config, sizeof config, "%s/config.json", out);
    const bool resumable = has_resume && access(config, F_OK) == 0;
    const bool models = strcmp(command, "pretrain-clip") == 0;
    return cli_fail(command, "--out %s: %s: %schoose another folder, or pass --overwrite to start "
                    "afresh there (the old run's config.json and checkpoints are deleted%s)",
                    out, mc_last_error(), resumable ? "continue it with --resume, " : "",
                    models ? ", and its model files" : "");
}

int chain_cli_check_tower_width(const char *command, const char *flag, int width) {
    const int heads = width >= 64 ? width / 64 : 1; /* the rule of the CLIP recipes (pretrain.h) */
    if (width % heads != 0)
        return cli_fail(command, "%s %d: the tower's %d attention heads (width / 64) must divide "
                        "its width; use a multiple of 64, or a width below 64", flag, width, heads);
    return 0;
}

int chain_cli_load_clip(const char *command, const char *path, mc_clip **clip) {
    if (!path) return cli_fail(command, "--clip CLIP.safetensors is required (a Hugging Face CLIPModel)");
    mc_status s = mc_clip_load(path, clip);
    if (s != MC_OK) return cli_fail(command, "--clip %s: %s", path, mc_last_error());
    return 0;
}

int chain_cli_check_which(const char *command, const char *which, bool which_given,
                          const char *checkpoint) {
    if (strcmp(which, "best") != 0 && strcmp(which, "last") != 0)
        return cli_fail(command, "--which '%s' is not best or last", which);
    if (which_given && checkpoint)
        return cli_fail(command, "--which picks one of the run's checkpoints: it cannot go with "
                        "--checkpoint %s", checkpoint);
    return 0;
}

void chain_cli_run_checkpoint(const mc_run *run, const char *which, const char *given, char *path, size_t len) {
    if (given) {
        snprintf(path, len, "%s", given);
        return;
    }
    char rel[64];
    snprintf(rel, sizeof rel, "checkpoints/%s.safetensors", which);
    mc_run_path(run, rel, path, len);
}

int chain_cli_load_teacher(const char *command, const char *given, int embed_dim,
                           mc_spectral_encoder **teacher, char *path, size_t len) {
    struct stat info;
    if (stat(given, &info) != 0)
        return cli_fail(command, "--teacher %s: no such run folder or checkpoint", given);
    if (S_ISDIR(info.st_mode)) { /* a run folder: its best checkpoint */
        snprintf(path, len, "%s/checkpoints/best.safetensors", given);
        if (stat(path, &info) != 0)
            return cli_fail(command, "--teacher %s: not a run folder of mmchain train (no checkpoints/best.safetensors)",
                            given);
    } else {
        snprintf(path, len, "%s", given);
    }
    if (mc_spectral_encoder_load(path, teacher, NULL) != MC_OK)
        return cli_fail(command, "--teacher %s: %s", given, mc_last_error());
    if ((*teacher)->embed_dim != embed_dim) {
        int width = (*teacher)->embed_dim;
        mc_spectral_encoder_free(*teacher);
        *teacher = NULL;
        return cli_fail(command, "--teacher %s embeds into %d values, the CLIP's joint space has %d", given, width,
                        embed_dim);
    }
    return 0;
}

mc_status chain_cli_teacher_view(const mc_spectral_encoder *teacher, const mc_eurosat *ds, mc_split split,
                                 const mc_chain_data *student, chain_teacher_view *tv) {
    MC_TRY(mc_chain_data_from_eurosat(&tv->view, ds, split, &teacher->bands, &teacher->norm));
    return mc_chain_data_with_teacher_view(&tv->pairs, student, &tv->view);
}

void chain_cli_teacher_view_free(chain_teacher_view *tv) {
    mc_chain_data_free(&tv->pairs);
    mc_chain_data_free(&tv->view);
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

int chain_cli_classifier(const char *command, mc_clip *clip, const chain_data_args *d,
                         const char *const *folder_names, int n_folders, mc_tensor **classes,
                         char ***names, int *n_names) {
    const char *vocab_path = d->vocab, *templates_list = d->templates;
    if (!vocab_path) return cli_fail(command, "--vocab is required (CLIP's merges.txt / bpe_simple_vocab_16e6.txt.gz)");
    int code = prompt_names(command, d->classes, folder_names, n_folders, names, n_names);
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

void chain_cli_print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

int chain_cli_dist_start(const char *command) {
    if (!mc_dist_launched()) return 0;
    if (!mc_dist_built_with_mpi())
        return cli_fail(command, "started by an MPI launcher, but this mmchain was built without MPI "
                                 "(CMake option MMCHAIN_MPI): each process would train alone");
    return mc_dist_init(NULL, NULL) == MC_OK ? 0 : cli_fail(command, "%s", mc_last_error());
}

int chain_cli_dist_end(int code) {
    if (code != 0) mc_dist_abort_job(code, "the command failed (its message is above)");
    mc_dist_finalize();
    return code;
}

mc_status chain_cli_write_embeddings(const char *path, const float *embeds, int n, int e,
                                     const char *const *tiles, const char *checkpoint,
                                     const mc_bands *bands) {
    size_t names_len = 1;
    for (int i = 0; i < n; i++) names_len += strlen(tiles[i]) + 1;
    char *names = malloc(names_len), band_list[128];
    mc_tensor *output = NULL;
    mc_status st = names ? mc_tensor_new(&output, MC_SHAPE(n, e), "output")
                         : mc_error(MC_ERR_NOMEM, "embeddings: out of memory");
    if (st == MC_OK) {
        char *at = names;
        for (int i = 0; i < n; i++) at += sprintf(at, "%s%s", i ? "\n" : "", tiles[i]);
        *at = '\0';
        memcpy(output->data, embeds, (size_t)n * (size_t)e * sizeof(float));
        mc_bands_str(bands, band_list, sizeof band_list);
        mc_metadata_entry meta[] = {{"model", "spectral"}, {"checkpoint", checkpoint}, {"bands", band_list},
                                    {"normalized", "false"}, {"tiles", names}};
        st = mc_safetensors_write(path, 1, &output, 5, meta);
    }
    mc_tensor_free(output);
    free(names);
    return st;
}

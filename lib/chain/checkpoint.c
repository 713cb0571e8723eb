/* Spectral-encoder checkpoints: the weights, the optimizer state and where
 * training stands, in one safetensors file (mc_checkpoint_save, atomic).
 *
 * Everything needed to use the encoder on its own is in the metadata — the
 * architecture, the bands, the normalisation with its 13 per-band numbers,
 * the tile size — so `mmchain classify` needs nothing but the file (and
 * CLIP's text tower for the class prompts). */
#include "mmchain/chain.h"
#include "mmchain/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPECTRAL_FORMAT "mmchain.spectral"
#define SPECTRAL_FORMAT_VERSION "1"

/* ---------------------------------------------------------------------------
 * writing
 * ------------------------------------------------------------------------- */

/* The metadata strings live in one struct so the entries can point at them. */
typedef struct meta_text {
    char arch[96], block[16], layers[64], base_width[16], bands[96], norm[16];
    char norm_mean[MC_EUROSAT_NUM_BANDS * 18], norm_std[MC_EUROSAT_NUM_BANDS * 18];
    char image_size[16], embed_dim[16], learnable[4];
    char epoch[24], step_in_epoch[24], global_step[24], best_metric[32], best_epoch[24];
    char rng[128];
} meta_text;

static void format_floats(const float *values, int n, char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%.9g", i ? "," : "", (double)values[i]);
}

/* The generator as "s0:s1:s2:s3:has_spare:bits of the spare normal" (hex). */
static void format_rng(const mc_rng *rng, char *buf, size_t len) {
    uint64_t spare_bits;
    memcpy(&spare_bits, &rng->spare_normal, sizeof spare_bits);
    snprintf(buf, len, "%016" PRIx64 ":%016" PRIx64 ":%016" PRIx64 ":%016" PRIx64 ":%d:%016" PRIx64,
             rng->s[0], rng->s[1], rng->s[2], rng->s[3], rng->has_spare_normal, spare_bits);
}

static int fill_meta(const mc_spectral_encoder *enc, const mc_chain_state *state, meta_text *t,
                     mc_metadata_entry *meta) {
    const mc_resnet_config *c = &enc->resnet->config;
    mc_resnet_arch_name(c, t->arch, sizeof t->arch);
    snprintf(t->block, sizeof t->block, "%s", c->block == MC_RESNET_BASIC ? "basic" : "bottleneck");
    snprintf(t->layers, sizeof t->layers, "%d,%d,%d,%d", c->layers[0], c->layers[1], c->layers[2],
             c->layers[3]);
    snprintf(t->base_width, sizeof t->base_width, "%d", c->base_width);
    mc_bands_str(&enc->bands, t->bands, sizeof t->bands);
    snprintf(t->norm, sizeof t->norm, "%s", mc_norm_name(enc->norm.kind));
    format_floats(enc->norm.mean, MC_EUROSAT_NUM_BANDS, t->norm_mean, sizeof t->norm_mean);
    format_floats(enc->norm.std, MC_EUROSAT_NUM_BANDS, t->norm_std, sizeof t->norm_std);
    snprintf(t->image_size, sizeof t->image_size, "%d", enc->image_size);
    snprintf(t->embed_dim, sizeof t->embed_dim, "%d", enc->embed_dim);
    snprintf(t->learnable, sizeof t->learnable, "%d", enc->logit_scale->requires_grad ? 1 : 0);
    mc_chain_state none = {.best_metric = -1};
    if (!state) state = &none;
    snprintf(t->epoch, sizeof t->epoch, "%d", state->epoch);
    snprintf(t->step_in_epoch, sizeof t->step_in_epoch, "%" PRId64, state->step_in_epoch);
    snprintf(t->global_step, sizeof t->global_step, "%" PRId64, state->global_step);
    snprintf(t->best_metric, sizeof t->best_metric, "%.17g", state->best_metric);
    snprintf(t->best_epoch, sizeof t->best_epoch, "%d", state->best_epoch);
    format_rng(&state->rng, t->rng, sizeof t->rng);
    const mc_metadata_entry entries[] = {
        {"format", SPECTRAL_FORMAT}, {"format_version", SPECTRAL_FORMAT_VERSION},
        {"arch", t->arch}, {"block", t->block}, {"layers", t->layers},
        {"base_width", t->base_width}, {"bands", t->bands}, {"norm", t->norm},
        {"norm_mean", t->norm_mean}, {"norm_std", t->norm_std}, {"image_size", t->image_size},
        {"embed_dim", t->embed_dim}, {"head", "fc"}, {"learnable_temperature", t->learnable},
        {"epoch", t->epoch}, {"step_in_epoch", t->step_in_epoch},
        {"global_step", t->global_step}, {"best_metric", t->best_metric},
        {"best_epoch", t->best_epoch}, {"rng", t->rng},
    };
    int n = (int)(sizeof entries / sizeof entries[0]);
    memcpy(meta, entries, sizeof entries);
    return n;
}

#define MAX_OWN_META 24

mc_status mc_spectral_encoder_save(const mc_spectral_encoder *enc, const char *path,
                                   const mc_optimizer *opt, const mc_chain_state *state,
                                   int n_extra, const mc_metadata_entry *extra) {
    if (!enc || !path || n_extra < 0 || (n_extra > 0 && !extra))
        return mc_error(MC_ERR_ARG, "spectral checkpoint: bad arguments");
    meta_text text;
    mc_metadata_entry *meta = malloc(((size_t)MAX_OWN_META + (size_t)n_extra) * sizeof *meta);
    if (!meta) return mc_error(MC_ERR_NOMEM, "spectral checkpoint %s: out of memory", path);
    int n = fill_meta(enc, state, &text, meta);
    /* The caller's entries may not shadow ours (a duplicate key is refused
     * by the writer): ours win, theirs with the same key are left out. */
    for (int i = 0; i < n_extra; i++) {
        bool taken = false;
        for (int j = 0; j < n && !taken; j++) taken = strcmp(meta[j].key, extra[i].key) == 0;
        if (!taken) meta[n++] = extra[i];
    }
    mc_status status = mc_checkpoint_save(path, &enc->params, opt, n, meta);
    free(meta);
    return status;
}

/* ---------------------------------------------------------------------------
 * reading
 * ------------------------------------------------------------------------- */

static mc_status meta_string(const mc_safetensors *f, const char *key, const char **out) {
    *out = mc_safetensors_metadata(f, key);
    if (!*out)
        return mc_error(MC_ERR_FORMAT, "checkpoint %s: metadata '%s' is missing",
                        mc_safetensors_path(f), key);
    return MC_OK;
}

static mc_status meta_int64(const mc_safetensors *f, const char *key, int64_t min, int64_t max,
                            int64_t *out) {
    const char *text;
    MC_TRY(meta_string(f, key, &text));
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno || end == text || *end || value < min || value > max)
        return mc_error(MC_ERR_FORMAT, "checkpoint %s: metadata %s = '%s', expected an integer in %lld..%lld",
                        mc_safetensors_path(f), key, text, (long long)min, (long long)max);
    *out = value;
    return MC_OK;
}

static mc_status meta_int(const mc_safetensors *f, const char *key, int min, int max, int *out) {
    int64_t value = 0;
    MC_TRY(meta_int64(f, key, min, max, &value));
    *out = (int)value;
    return MC_OK;
}

/* n comma-separated floats. */
static mc_status meta_floats(const mc_safetensors *f, const char *key, int n, float *out) {
    const char *text;
    MC_TRY(meta_string(f, key, &text));
    const char *p = text;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        out[i] = strtof(p, &end);
        bool separator_ok = i + 1 < n ? *end == ',' : *end == '\0';
        if (errno || end == p || !separator_ok || !isfinite(out[i]))
            return mc_error(MC_ERR_FORMAT, "checkpoint %s: metadata %s = '%s', expected %d numbers",
                            mc_safetensors_path(f), key, text, n);
        p = end + 1;
    }
    return MC_OK;
}

static mc_status parse_arch(const mc_safetensors *f, mc_resnet_config *arch) {
    const char *block, *layers;
    memset(arch, 0, sizeof *arch);
    MC_TRY(meta_string(f, "block", &block));
    MC_TRY(meta_string(f, "layers", &layers));
    if (strcmp(block, "basic") != 0 && strcmp(block, "bottleneck") != 0)
        return mc_error(MC_ERR_FORMAT, "checkpoint %s: block '%s', expected basic or bottleneck",
                        mc_safetensors_path(f), block);
    arch->block = block[0] == 'b' && block[1] == 'a' ? MC_RESNET_BASIC : MC_RESNET_BOTTLENECK;
    char tail;
    if (sscanf(layers, "%d,%d,%d,%d%c", &arch->layers[0], &arch->layers[1], &arch->layers[2],
               &arch->layers[3], &tail) != 4)
        return mc_error(MC_ERR_FORMAT, "checkpoint %s: layers '%s', expected four counts like 3,4,6,3",
                        mc_safetensors_path(f), layers);
    return meta_int(f, "base_width", 1, 4096, &arch->base_width);
}

static mc_status parse_norm(const mc_safetensors *f, mc_norm *norm) {
    const char *kind;
    MC_TRY(meta_string(f, "norm", &kind));
    mc_norm_kind k;
    mc_status status = mc_norm_parse(kind, &k);
    if (status != MC_OK) return mc_error_context(status, "checkpoint %s: ", mc_safetensors_path(f));
    norm->kind = k;
    MC_TRY(meta_floats(f, "norm_mean", MC_EUROSAT_NUM_BANDS, norm->mean));
    return meta_floats(f, "norm_std", MC_EUROSAT_NUM_BANDS, norm->std);
}

static mc_status parse_rng(const mc_safetensors *f, mc_rng *rng) {
    const char *text;
    MC_TRY(meta_string(f, "rng", &text));
    uint64_t s[4], spare_bits;
    int has_spare;
    char tail;
    if (sscanf(text, "%" SCNx64 ":%" SCNx64 ":%" SCNx64 ":%" SCNx64 ":%d:%" SCNx64 "%c", &s[0],
               &s[1], &s[2], &s[3], &has_spare, &spare_bits, &tail) != 6)
        return mc_error(MC_ERR_FORMAT, "checkpoint %s: rng '%s' is not a generator state",
                        mc_safetensors_path(f), text);
    memcpy(rng->s, s, sizeof s);
    rng->has_spare_normal = has_spare;
    memcpy(&rng->spare_normal, &spare_bits, sizeof spare_bits);
    return MC_OK;
}

static mc_status parse_state(const mc_safetensors *f, mc_chain_state *state) {
    const char *best;
    MC_TRY(meta_int(f, "epoch", 0, 1000000, &state->epoch));
    MC_TRY(meta_int64(f, "step_in_epoch", 0, INT64_MAX, &state->step_in_epoch));
    MC_TRY(meta_int64(f, "global_step", 0, INT64_MAX, &state->global_step));
    MC_TRY(meta_int(f, "best_epoch", 0, 1000000, &state->best_epoch));
    MC_TRY(meta_string(f, "best_metric", &best));
    char *end;
    state->best_metric = strtod(best, &end);
    /* Read as 0, a damaged value would keep every later epoch from being
     * the best one. */
    if (end == best || *end || !isfinite(state->best_metric))
        return mc_error(MC_ERR_FORMAT, "checkpoint %s: best_metric '%.40s' is not a number",
                        mc_safetensors_path(f), best);
    return parse_rng(f, &state->rng);
}

/* What a checkpoint's metadata says the encoder is. */
typedef struct saved_encoder {
    mc_resnet_config arch; /* in_channels = the bands, fc_out = embed_dim */
    mc_bands bands;
    mc_norm norm;
    int image_size, embed_dim, learnable;
} saved_encoder;

/* Read the encoder's description from the metadata of an open checkpoint,
 * then check every tensor of that encoder against the file before anything
 * is built: metadata claiming a huge network is refused here. */
static mc_status read_saved_encoder(const mc_safetensors *f, saved_encoder *saved) {
    const char *format, *bands_text;
    MC_TRY(meta_string(f, "format", &format));
    if (strcmp(format, SPECTRAL_FORMAT) != 0)
        return mc_error(MC_ERR_FORMAT, "%s is a '%s' file, not a spectral-encoder checkpoint (%s)",
                        mc_safetensors_path(f), format, SPECTRAL_FORMAT);
    MC_TRY(parse_arch(f, &saved->arch));
    MC_TRY(meta_string(f, "bands", &bands_text));
    mc_status status = mc_bands_parse(bands_text, &saved->bands);
    if (status != MC_OK) return mc_error_context(status, "checkpoint %s: ", mc_safetensors_path(f));
    MC_TRY(parse_norm(f, &saved->norm));
    MC_TRY(meta_int(f, "image_size", 8, 1 << 16, &saved->image_size));
    MC_TRY(meta_int(f, "embed_dim", 1, 1 << 16, &saved->embed_dim));
    MC_TRY(meta_int(f, "learnable_temperature", 0, 1, &saved->learnable));
    saved->arch.in_channels = saved->bands.count;
    saved->arch.fc_out = saved->embed_dim;
    MC_TRY(mc_resnet_check_file(f, &saved->arch));
    return mc_checkpoint_expect(f, "logit_scale", MC_SHAPE(1));
}

/* Build an encoder from the metadata of an open checkpoint. */
static mc_status encoder_from_file(const mc_safetensors *f, mc_spectral_encoder **out) {
    saved_encoder saved;
    MC_TRY(read_saved_encoder(f, &saved));
    return mc_spectral_encoder_new(out, &saved.arch, &saved.bands, &saved.norm, saved.image_size,
                                   saved.embed_dim, 0.0f, saved.learnable != 0, 0);
}

static mc_status open_encoder_checkpoint(const char *path, mc_safetensors **f) {
    mc_status status = mc_safetensors_open(path, f);
    if (status != MC_OK) return status;
    if (!mc_safetensors_metadata(*f, "format")) {
        mc_safetensors_close(*f);
        return mc_error(MC_ERR_FORMAT,
                        "%s is not a spectral-encoder checkpoint (no 'format' metadata; written by "
                        "mmchain train?)",
                        path);
    }
    return MC_OK;
}

mc_status mc_spectral_encoder_load(const char *path, mc_spectral_encoder **out,
                                   mc_chain_state *state) {
    if (!path || !out) return mc_error(MC_ERR_ARG, "spectral checkpoint: no path");
    mc_safetensors *f;
    MC_TRY(open_encoder_checkpoint(path, &f));
    mc_spectral_encoder *enc = NULL;
    mc_status status = encoder_from_file(f, &enc);
    if (status == MC_OK) status = mc_checkpoint_load(f, &enc->params, NULL);
    if (status == MC_OK && state) {
        memset(state, 0, sizeof *state);
        status = parse_state(f, state);
    }
    mc_safetensors_close(f);
    if (status != MC_OK) {
        mc_spectral_encoder_free(enc);
        return status;
    }
    *out = enc;
    return MC_OK;
}

/* The architecture, bands and tile size of the file must be the encoder's. */
static mc_status check_same_encoder(const mc_safetensors *f, const mc_spectral_encoder *enc) {
    saved_encoder saved;
    MC_TRY(read_saved_encoder(f, &saved));
    char want[96], got[96], want_bands[96], got_bands[96];
    const mc_resnet_config *a = &enc->resnet->config, *b = &saved.arch;
    if (a->block != b->block || a->base_width != b->base_width ||
        memcmp(a->layers, b->layers, sizeof a->layers) != 0)
        return mc_error(MC_ERR_FORMAT, "checkpoint %s holds a %s encoder, this run builds a %s",
                        mc_safetensors_path(f), mc_resnet_arch_name(b, got, sizeof got),
                        mc_resnet_arch_name(a, want, sizeof want));
    if (saved.bands.count != enc->bands.count ||
        memcmp(saved.bands.index, enc->bands.index,
               (size_t)enc->bands.count * sizeof enc->bands.index[0]) != 0)
        return mc_error(MC_ERR_FORMAT, "checkpoint %s was trained on bands %s, this run uses %s",
                        mc_safetensors_path(f), mc_bands_str(&saved.bands, got_bands, sizeof got_bands),
                        mc_bands_str(&enc->bands, want_bands, sizeof want_bands));
    if (saved.image_size != enc->image_size || saved.embed_dim != enc->embed_dim)
        return mc_error(MC_ERR_FORMAT,
                        "checkpoint %s: tiles %d, embedding width %d; this run: tiles %d, width %d",
                        mc_safetensors_path(f), saved.image_size, saved.embed_dim, enc->image_size,
                        enc->embed_dim);
    /* The weights were trained on tiles normalised this way: another
     * normalisation (another --norm, or --norm dataset measured on changed
     * data: its statistics are computed in a fixed order, so the same
     * data gives the same bits) would feed them other inputs. */
    if (saved.norm.kind != enc->norm.kind ||
        memcmp(saved.norm.mean, enc->norm.mean, sizeof saved.norm.mean) != 0 ||
        memcmp(saved.norm.std, enc->norm.std, sizeof saved.norm.std) != 0)
        return mc_error(MC_ERR_FORMAT,
                        "checkpoint %s was trained with the %s normalisation%s; this run's differs "
                        "(another --norm, or the data changed)", mc_safetensors_path(f),
                        mc_norm_name(saved.norm.kind),
                        saved.norm.kind == enc->norm.kind ? " of other band statistics" : "");
    return MC_OK;
}

mc_status mc_spectral_encoder_check_fits(const mc_spectral_encoder *enc, const char *path,
                                         mc_chain_state *state) {
    mc_safetensors *f;
    MC_TRY(open_encoder_checkpoint(path, &f));
    mc_status status = check_same_encoder(f, enc);
    memset(state, 0, sizeof *state);
    if (status == MC_OK) status = parse_state(f, state);
    mc_safetensors_close(f);
    return status;
}

mc_status mc_spectral_encoder_restore(mc_spectral_encoder *enc, const char *path, mc_optimizer *opt,
                                      mc_chain_state *state) {
    if (!enc || !path) return mc_error(MC_ERR_ARG, "spectral checkpoint: no path");
    mc_safetensors *f;
    MC_TRY(open_encoder_checkpoint(path, &f));
    mc_status status = check_same_encoder(f, enc);
    /* The training state first: metadata it cannot read refuses the file
     * before the encoder or the optimizer change. */
    mc_chain_state read;
    memset(&read, 0, sizeof read);
    if (status == MC_OK && state) status = parse_state(f, &read);
    if (status == MC_OK) status = mc_checkpoint_load(f, &enc->params, opt);
    if (status == MC_OK && state) *state = read;
    mc_safetensors_close(f);
    return status;
}

mc_status mc_checkpoint_metadata_get(const char *path, const char *key, char *buf, size_t len) {
    mc_safetensors *f;
    MC_TRY(mc_safetensors_open(path, &f));
    const char *value;
    mc_status status = meta_string(f, key, &value);
    if (status == MC_OK) snprintf(buf, len, "%s", value);
    mc_safetensors_close(f);
    return status;
}

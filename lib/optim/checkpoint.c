/* Loading a parameter list by name (strict or with a report, skipped
 * prefixes, a derive hook), checking a file against a configuration before
 * allocating, and checkpoints with optimizer state. The rules are in
 * include/mmchain/checkpoint.h. */
#include "mmchain/checkpoint.h"
#include "optim/optim_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPTIMIZER_PREFIX "optimizer."
/* The metadata written today, and the keys older ResNet checkpoints used. */
#define KEY_CHECKPOINT "mmchain.checkpoint"
#define KEY_OPTIMIZER "mmchain.optimizer"
#define LEGACY_KEY_OPTIMIZER "optimizer"
#define LEGACY_KEY_FORMAT "format"
#define LEGACY_RESNET_FORMAT "mmchain.resnet"

static bool has_prefix(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool is_skipped(const mc_checkpoint_load_options *o, const char *name) {
    for (const char *const *p = o->skip_prefixes; p && *p; p++)
        if (has_prefix(name, *p)) return true;
    return false;
}

/* BatchNorm's step counter: optional in a file, possibly an integer. */
static bool is_counter(const char *name) { return ends_with(name, "num_batches_tracked"); }

/* PyTorch buffers that a model may not keep: BatchNorm's step counter and
 * the constant position ids of Hugging Face CLIP's embeddings. */
static bool is_ignorable_buffer(const mc_safetensors *f, const char *name) {
    mc_dtype dtype;
    if (mc_safetensors_info(f, name, &dtype, NULL) != MC_OK || mc_dtype_is_float(dtype)) return false;
    return is_counter(name) || ends_with(name, "position_ids");
}

mc_checkpoint_load_options mc_checkpoint_load_defaults(void) {
    mc_checkpoint_load_options o = {.strict = true, .skip_prefixes = NULL, .derive = NULL};
    return o;
}

/* ---- the report ---- */

/* A bounded comma-separated list of names: every list of a failed strict
 * load must fit in one error message together, so each keeps its first
 * entries and counts the rest. */
typedef struct name_list {
    const char *label;
    char text[240];
    int count;
    int shown;
} name_list;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void name_list_add(name_list *l, const char *fmt, ...) {
    char entry[256];
    va_list args;
    va_start(args, fmt);
    vsnprintf(entry, sizeof entry, fmt, args);
    va_end(args);
    l->count++;
    size_t used = strlen(l->text), length = strlen(entry);
    if (used + length + 2 >= sizeof l->text) return; /* the count still says how many */
    if (used) memcpy(l->text + used, ", ", 2), used += 2;
    memcpy(l->text + used, entry, length + 1);
    l->shown++;
}

/* Append "; <label> (n): a, b, c" when the list is not empty. */
static void append_list(char *buf, size_t len, const name_list *l) {
    size_t used = strlen(buf);
    if (!l->count || used + 1 >= len) return;
    snprintf(buf + used, len - used, "; %s (%d): %s%s", l->label, l->count, l->text,
             l->shown < l->count ? ", ..." : "");
}

/* ---- planning: how each model tensor gets its value ---- */

typedef enum load_action {
    LOAD_KEEP,    /* skipped, or an absent step counter: keeps its value */
    LOAD_FLOAT,   /* same shape, a float dtype */
    LOAD_COUNTER, /* a step counter stored as an integer */
    LOAD_DERIVE,  /* made by the derive hook */
    LOAD_BAD      /* missing or mismatched: reported */
} load_action;

typedef struct load_lists {
    name_list missing, shape, dtype, unexpected, derived;
} load_lists;

static load_action plan_tensor(const mc_safetensors *f, const mc_checkpoint_load_options *o,
                               const mc_tensor *t, load_lists *lists) {
    if (is_skipped(o, t->name)) return LOAD_KEEP;
    mc_dtype dtype;
    mc_shape shape;
    if (!mc_safetensors_has(f, t->name)) {
        if (is_counter(t->name)) return LOAD_KEEP;
        name_list_add(&lists->missing, "%s", t->name);
        return LOAD_BAD;
    }
    char file_text[96], model_text[96];
    if (mc_safetensors_info(f, t->name, &dtype, &shape) != MC_OK) {
        /* More dimensions than mmchain handles (mc_safetensors_info says). */
        name_list_add(&lists->shape, "%s (file unsupported, model %s)", t->name,
                      mc_shape_str(t->shape, model_text, sizeof model_text));
        return LOAD_BAD;
    }
    bool same_shape = mc_shape_equal(shape, t->shape);
    if (!mc_dtype_is_float(dtype)) {
        if (is_counter(t->name) && same_shape) return LOAD_COUNTER;
        name_list_add(&lists->dtype, "%s (file %s)", t->name, mc_dtype_name(dtype));
        return LOAD_BAD;
    }
    if (same_shape) return LOAD_FLOAT;
    if (o->derive && o->derive->accepts(o->derive->ctx, t, shape)) {
        name_list_add(&lists->derived, "%s", t->name);
        return LOAD_DERIVE;
    }
    name_list_add(&lists->shape, "%s (file %s, model %s)", t->name,
                  mc_shape_str(shape, file_text, sizeof file_text),
                  mc_shape_str(t->shape, model_text, sizeof model_text));
    return LOAD_BAD;
}

static mc_status load_values(const mc_safetensors *f, const mc_checkpoint_load_options *o,
                             mc_tensor *t, load_action action) {
    switch (action) {
    case LOAD_FLOAT: return mc_safetensors_read_into(f, t->name, t);
    case LOAD_COUNTER: {
        int64_t *values;
        MC_TRY(mc_safetensors_read_ints(f, t->name, &values, NULL));
        for (int64_t i = 0; i < t->numel; i++) t->data[i] = (float)values[i];
        free(values);
        return MC_OK;
    }
    case LOAD_DERIVE: {
        mc_tensor *src;
        MC_TRY(mc_safetensors_read(f, t->name, &src));
        mc_status status = o->derive->derive(o->derive->ctx, src, t);
        mc_tensor_free(src);
        return status;
    }
    default: return MC_OK;
    }
}

/* Every loaded tensor must be finite: a NaN weight would only show up
 * steps later as a NaN loss, and a resumed run would keep it forever. */
static mc_status check_loaded(const mc_safetensors *f, const mc_tensor *t) {
    char what[320];
    snprintf(what, sizeof what, "%s: tensor %s", mc_safetensors_path(f), t->name);
    return mc_check_finite(t->data, t->numel, what);
}

/* The file values a load of t would read, checked finite before any
 * tensor is written, so that a refused file changes nothing. (load_one
 * checks again what it wrote: a derived tensor is computed from these.) */
static mc_status check_file_values(const mc_safetensors *f, const mc_tensor *t,
                                   load_action action) {
    if (action != LOAD_FLOAT && action != LOAD_DERIVE) return MC_OK;
    mc_tensor *values;
    MC_TRY(mc_safetensors_read(f, t->name, &values));
    mc_status status = check_loaded(f, values);
    mc_tensor_free(values);
    return status;
}

static mc_status load_one(const mc_safetensors *f, const mc_checkpoint_load_options *o,
                          mc_tensor *t, load_action action) {
    mc_status status = load_values(f, o, t, action);
    mc_tensor_touch(t); /* written, or partly written before an error */
    return status == MC_OK && action != LOAD_KEEP && action != LOAD_BAD ? check_loaded(f, t) : status;
}

mc_status mc_checkpoint_load_params(const mc_safetensors *f, mc_param_list *params,
                                    const mc_checkpoint_load_options *options, char *report,
                                    size_t report_len) {
    mc_checkpoint_load_options o = options ? *options : mc_checkpoint_load_defaults();
    const char *path = mc_safetensors_path(f);
    if (report && report_len) report[0] = '\0';
    int n = params->count;
    load_action *plan = calloc((size_t)n + 1, sizeof *plan);
    load_lists *lists = calloc(1, sizeof *lists);
    if (!plan || !lists) {
        free(plan);
        free(lists);
        return mc_error(MC_ERR_NOMEM, "loading %s: out of memory", path);
    }
    lists->missing.label = "missing";
    lists->shape.label = "wrong shape";
    lists->dtype.label = "not a float dtype";
    lists->unexpected.label = "unexpected";
    lists->derived.label = "derived";

    for (int i = 0; i < n; i++) plan[i] = plan_tensor(f, &o, params->items[i], lists);
    int ignored = 0;
    for (int i = 0; i < mc_safetensors_count(f); i++) {
        const char *name = mc_safetensors_name(f, i);
        if (mc_params_find(params, name) || is_skipped(&o, name) || has_prefix(name, OPTIMIZER_PREFIX))
            continue;
        if (is_ignorable_buffer(f, name)) ignored++;
        else name_list_add(&lists->unexpected, "%s", name);
    }
    int problems = lists->missing.count + lists->shape.count + lists->dtype.count +
                   lists->unexpected.count;

    /* The details after the counts, shared by the report and the error. */
    char details[1200] = "";
    append_list(details, sizeof details, &lists->derived);
    append_list(details, sizeof details, &lists->missing);
    append_list(details, sizeof details, &lists->shape);
    append_list(details, sizeof details, &lists->dtype);
    append_list(details, sizeof details, &lists->unexpected);
    if (ignored) {
        size_t used = strlen(details);
        snprintf(details + used, sizeof details - used,
                 "; ignored %d integer buffer(s) (num_batches_tracked/position_ids)", ignored);
    }

    mc_status status = MC_OK;
    bool refused = o.strict && problems > 0;
    int written = 0; /* the tensors whose values were replaced */
    if (refused) {
        /* Everything was checked first, so a failed strict load changes nothing. */
        status = mc_error(MC_ERR_FORMAT, "%s: strict load failed, %d problem(s)%s", path, problems,
                          details);
    } else {
        for (int i = 0; i < n && status == MC_OK; i++)
            status = check_file_values(f, params->items[i], plan[i]);
        for (int i = 0; i < n && status == MC_OK; i++) {
            status = load_one(f, &o, params->items[i], plan[i]);
            written += status == MC_OK && plan[i] != LOAD_KEEP && plan[i] != LOAD_BAD;
        }
    }
    /* The count written: none when a value check refused the file first,
     * those before the failure when a load failed part of the way. */
    if (report && report_len)
        snprintf(report, report_len, "%s: loaded %d of %d tensors%s", path, written, n, details);
    free(plan);
    free(lists);
    return status;
}

mc_status mc_checkpoint_expect(const mc_safetensors *f, const char *name, mc_shape shape) {
    const char *path = mc_safetensors_path(f);
    char need[96], have[96];
    mc_shape_str(shape, need, sizeof need);
    if (!mc_safetensors_has(f, name))
        return mc_error(MC_ERR_FORMAT,
                        "%s: the configuration read from the file needs tensor %s %s, which the "
                        "file does not hold",
                        path, name, need);
    mc_dtype dtype;
    mc_shape file_shape;
    mc_status status = mc_safetensors_info(f, name, &dtype, &file_shape);
    if (status != MC_OK) return status;
    if (!mc_shape_equal(shape, file_shape))
        return mc_error(MC_ERR_FORMAT,
                        "%s: the configuration read from the file needs tensor %s %s, the file "
                        "holds %s",
                        path, name, need, mc_shape_str(file_shape, have, sizeof have));
    if (!mc_dtype_is_float(dtype))
        return mc_error(MC_ERR_FORMAT, "%s: tensor %s has dtype %s, expected a float type", path,
                        name, mc_dtype_name(dtype));
    return MC_OK;
}

/* ---- checkpoints ---- */

mc_status mc_checkpoint_save(const char *path, const mc_param_list *model, const mc_optimizer *opt,
                             int n_meta, const mc_metadata_entry *meta) {
    if (!path || !model || n_meta < 0 || (n_meta > 0 && !meta))
        return mc_error(MC_ERR_ARG, "checkpoint %s: bad arguments", path ? path : "(null)");
    mc_param_list state = {0};
    mc_status status = opt ? mc_optimizer_export_state(opt, &state) : MC_OK;
    mc_tensor **tensors = malloc(((size_t)model->count + (size_t)state.count + 1) * sizeof *tensors);
    mc_metadata_entry *all_meta = malloc(((size_t)n_meta + 2) * sizeof *all_meta);
    if (status == MC_OK && (!tensors || !all_meta))
        status = mc_error(MC_ERR_NOMEM, "checkpoint %s: out of memory", path);
    if (status == MC_OK) {
        int n = 0;
        for (int i = 0; i < model->count; i++) tensors[n++] = model->items[i];
        for (int i = 0; i < state.count; i++) tensors[n++] = state.items[i];
        for (int i = 0; i < n_meta; i++) all_meta[i] = meta[i];
        all_meta[n_meta] = (mc_metadata_entry){KEY_CHECKPOINT, "1"};
        all_meta[n_meta + 1] = (mc_metadata_entry){KEY_OPTIMIZER, opt ? mc_optimizer_name(opt) : "none"};
        status = mc_safetensors_write(path, n, tensors, n_meta + 2, all_meta);
    }
    free(all_meta);
    free(tensors);
    mc_params_free(&state);
    return status;
}

/* Optimizer state lookup: reads "optimizer.*" tensors from the file on
 * demand and keeps them until the import is done. A tensor that is there
 * but cannot be read (an integer dtype, say) is reported with the reader's
 * message, not as missing, which the import would call it. */
typedef struct file_lookup {
    const mc_safetensors *f;
    mc_param_list cache;
    mc_status status;  /* the first tensor that did not read or was not finite */
    char message[400]; /* ... and its message, which the import would overwrite */
} file_lookup;

static const mc_tensor *lookup_in_file(void *ctx, const char *name) {
    file_lookup *l = ctx;
    mc_tensor *t = mc_params_find(&l->cache, name);
    if (t || !mc_safetensors_has(l->f, name)) return t;
    mc_status read = mc_safetensors_read(l->f, name, &t);
    if (read != MC_OK) {
        if (l->status == MC_OK) {
            l->status = read;
            snprintf(l->message, sizeof l->message, "%s", mc_last_error());
        }
        return NULL;
    }
    if (l->status == MC_OK && (l->status = check_loaded(l->f, t)) != MC_OK)
        snprintf(l->message, sizeof l->message, "%s", mc_last_error());
    if (l->status != MC_OK || mc_params_add(&l->cache, t) != MC_OK) {
        mc_tensor_free(t);
        return NULL;
    }
    return t;
}

/* Every "optimizer.*" tensor of the file that reads as floats, checked
 * finite before anything is written: the import would take a non-finite
 * one for an absent one and carry on with the rest (the lookup's check
 * then fails the load after the fact). One that does not read is left to
 * the import, whose lookup reports the reader's message (lookup_in_file). */
static mc_status check_optimizer_values(const mc_safetensors *f) {
    for (int i = 0; i < mc_safetensors_count(f); i++) {
        const char *name = mc_safetensors_name(f, i);
        mc_tensor *values;
        if (!has_prefix(name, OPTIMIZER_PREFIX)) continue;
        if (mc_safetensors_read(f, name, &values) != MC_OK) {
            mc_clear_error(); /* the import's to report */
            continue;
        }
        mc_status status = check_loaded(f, values);
        mc_tensor_free(values);
        MC_TRY(status);
    }
    return MC_OK;
}

/* Every "optimizer.*" tensor of the file must be one the import reads:
 * state of a parameter this optimizer does not have (another model's
 * names) or of a buffer it does not keep (momentum for an SGD without it)
 * would otherwise be dropped without a word, and the run go on with fresh
 * moments. */
static mc_status check_optimizer_names(const mc_safetensors *f, const mc_optimizer *opt) {
    for (int i = 0; i < mc_safetensors_count(f); i++) {
        const char *name = mc_safetensors_name(f, i);
        if (has_prefix(name, OPTIMIZER_PREFIX) && !mc_optimizer_reads_state(opt, name))
            return mc_error(MC_ERR_FORMAT, "checkpoint %s: its optimizer state %s belongs to no "
                            "parameter or buffer of this %s optimizer (another model's, or "
                            "other settings'?)", mc_safetensors_path(f), name,
                            mc_optimizer_name(opt));
    }
    return MC_OK;
}

/* The file's optimizer must be of opt's kind. */
static mc_status check_optimizer_kind(const mc_safetensors *f, const mc_optimizer *opt) {
    const char *saved = mc_safetensors_metadata(f, KEY_OPTIMIZER);
    if (!saved) saved = mc_safetensors_metadata(f, LEGACY_KEY_OPTIMIZER);
    if (!saved || strcmp(saved, mc_optimizer_name(opt)) != 0)
        return mc_error(MC_ERR_FORMAT, "checkpoint %s holds %s optimizer state, expected %s",
                        mc_safetensors_path(f), saved ? saved : "no", mc_optimizer_name(opt));
    return MC_OK;
}

mc_status mc_checkpoint_load_optimizer(const mc_safetensors *f, mc_optimizer *opt) {
    const char *path = mc_safetensors_path(f);
    MC_TRY(check_optimizer_kind(f, opt));
    MC_TRY(check_optimizer_names(f, opt));
    MC_TRY(check_optimizer_values(f));
    file_lookup l = {.f = f};
    mc_status status = mc_optimizer_import_state(opt, lookup_in_file, &l);
    if (l.status != MC_OK) status = mc_error(l.status, "%s", l.message);
    mc_params_free(&l.cache);
    if (status != MC_OK) return mc_error_context(status, "checkpoint %s: optimizer state: ", path);
    return MC_OK;
}

/* The values of every tensor of `model`, kept while the optimizer's state
 * loads after them, to be put back should it fail. values: the tensors'
 * floats one after another; NULL when the copy could not be made. */
static float *copy_values(const mc_param_list *model) {
    size_t total = 0;
    for (int i = 0; i < model->count; i++) total += (size_t)model->items[i]->numel;
    float *values = malloc((total ? total : 1) * sizeof *values);
    float *at = values;
    for (int i = 0; values && i < model->count; i++) {
        memcpy(at, model->items[i]->data, (size_t)model->items[i]->numel * sizeof *at);
        at += model->items[i]->numel;
    }
    return values;
}

static void put_back_values(mc_param_list *model, const float *values) {
    for (int i = 0; i < model->count; i++) {
        memcpy(model->items[i]->data, values, (size_t)model->items[i]->numel * sizeof *values);
        values += model->items[i]->numel;
        mc_tensor_touch(model->items[i]); /* what was derived from the loaded values goes */
    }
}

mc_status mc_checkpoint_load(const mc_safetensors *f, mc_param_list *model, mc_optimizer *opt) {
    const char *format = mc_safetensors_metadata(f, LEGACY_KEY_FORMAT);
    bool legacy_resnet = format && strcmp(format, LEGACY_RESNET_FORMAT) == 0;
    if (!mc_safetensors_metadata(f, KEY_CHECKPOINT) && !legacy_resnet)
        return mc_error(MC_ERR_FORMAT, "%s is not an mmchain checkpoint (no %s metadata)",
                        mc_safetensors_path(f), KEY_CHECKPOINT);
    /* The optimizer's kind and values first: a checkpoint of another
     * optimizer, or one whose state holds a NaN, changes nothing. */
    if (opt) {
        MC_TRY(check_optimizer_kind(f, opt));
        MC_TRY(check_optimizer_names(f, opt));
        MC_TRY(check_optimizer_values(f));
    }
    if (!opt) return mc_checkpoint_load_params(f, model, NULL, NULL, 0);
    /* The optimizer's state can still be refused after the model's tensors
     * are in (a tensor missing or of another shape, a step that is not a
     * count): the model then gets its values back, so that a failed load
     * changes nothing (the import itself changes nothing when it fails). */
    float *before = copy_values(model);
    if (!before)
        return mc_error(MC_ERR_NOMEM, "checkpoint %s: no memory to keep the model's values while "
                        "it loads", mc_safetensors_path(f));
    mc_status status = mc_checkpoint_load_params(f, model, NULL, NULL, 0);
    if (status == MC_OK) status = mc_checkpoint_load_optimizer(f, opt);
    if (status != MC_OK) put_back_values(model, before);
    free(before);
    return status;
}

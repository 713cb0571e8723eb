/* Parameter lists: named heap tensors owned by a model; the default
 * initialisations; releasing what a finished layer no longer needs. */
#include "mmchain/nn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layer_internal.h"

mc_status mc_params_add(mc_param_list *list, mc_tensor *t) {
    if (list->count == list->capacity) {
        int capacity = list->capacity ? list->capacity * 2 : 64;
        mc_tensor **items = realloc(list->items, (size_t)capacity * sizeof *items);
        if (!items) return mc_error(MC_ERR_NOMEM, "parameter list: cannot grow to %d", capacity);
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count++] = t;
    return MC_OK;
}

mc_status mc_params_new(mc_param_list *list, mc_tensor **out, mc_shape shape, bool trainable,
                        const char *name_fmt, ...) {
    char name[MC_NAME_LEN];
    va_list args;
    va_start(args, name_fmt);
    int length = vsnprintf(name, sizeof name, name_fmt, args);
    va_end(args);
    /* Cut short, two names could become one (a weight and a bias both
     * "<prefix>."), and a state_dict would hold the name twice. */
    if (length < 0 || length >= (int)sizeof name)
        return mc_error(MC_ERR_ARG, "parameter %.60s...: a name of %d bytes, at most %d", name,
                        length, (int)sizeof name - 1);
    mc_tensor *t;
    MC_TRY(mc_tensor_new(&t, shape, name));
    mc_status status = trainable ? mc_tensor_set_requires_grad(t, true) : MC_OK;
    if (status == MC_OK) status = mc_params_add(list, t);
    if (status != MC_OK) {
        mc_tensor_free(t);
        return status;
    }
    if (out) *out = t;
    return MC_OK;
}

static const char *name_separator(const char *prefix) { return prefix[0] ? "." : ""; }

mc_status mc_layer_param(mc_param_list *params, mc_tensor **out, mc_shape shape, bool trainable,
                         const char *prefix, const char *leaf) {
    return mc_params_new(params, out, shape, trainable, "%s%s%s", prefix, name_separator(prefix),
                         leaf);
}

mc_status mc_layer_norm_affine(mc_param_list *params, const char *prefix, int width,
                               mc_tensor **weight, mc_tensor **bias) {
    const int first = params->count;
    mc_status status = mc_layer_param(params, weight, MC_SHAPE(width), true, prefix, "weight");
    if (status == MC_OK) status = mc_layer_param(params, bias, MC_SHAPE(width), true, prefix, "bias");
    if (status != MC_OK) {
        *weight = *bias = NULL;
        return mc_layer_init_end(params, first, status);
    }
    mc_tensor_fill(*weight, 1.0f);
    return MC_OK;
}

mc_status mc_layer_init_end(mc_param_list *params, int first, mc_status status) {
    if (status == MC_OK) return MC_OK;
    for (int i = first; i < params->count; i++) mc_tensor_free(params->items[i]);
    if (first < params->count) params->count = first;
    return status;
}

const char *mc_layer_child(char *buf, size_t len, const char *prefix, const char *child) {
    snprintf(buf, len, "%s%s%s", prefix, name_separator(prefix), child);
    return buf;
}

mc_tensor *mc_params_find(const mc_param_list *list, const char *name) {
    for (int i = 0; i < list->count; i++)
        if (strcmp(list->items[i]->name, name) == 0) return list->items[i];
    return NULL;
}

void mc_params_free(mc_param_list *list) {
    for (int i = 0; i < list->count; i++) mc_tensor_free(list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

void mc_params_zero_grad(mc_param_list *list) {
    for (int i = 0; i < list->count; i++) mc_tensor_zero_grad(list->items[i]);
}

int64_t mc_params_numel(const mc_param_list *list, bool all) {
    int64_t n = 0;
    for (int i = 0; i < list->count; i++)
        if (all || list->items[i]->requires_grad) n += list->items[i]->numel;
    return n;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static bool is_buffer_name(const char *name) {
    return ends_with(name, "running_mean") || ends_with(name, "running_var") ||
           ends_with(name, "num_batches_tracked") || ends_with(name, "position_ids");
}

int mc_params_set_trainable(mc_param_list *list, const char *prefix, bool trainable) {
    int changed = 0;
    size_t prefix_len = strlen(prefix);
    for (int i = 0; i < list->count; i++) {
        mc_tensor *t = list->items[i];
        if (strncmp(t->name, prefix, prefix_len) != 0 || is_buffer_name(t->name)) continue;
        if (mc_tensor_set_requires_grad(t, trainable) == MC_OK) changed++;
    }
    return changed;
}

void mc_init_default_uniform(mc_tensor *t, int64_t fan_in, mc_rng *rng) {
    float bound = fan_in > 0 ? 1.0f / sqrtf((float)fan_in) : 0.0f;
    mc_tensor_uniform(t, rng, -bound, bound);
}

void mc_init_kaiming_normal_fan_out(mc_tensor *t, int64_t fan_out, mc_rng *rng) {
    float std = fan_out > 0 ? sqrtf(2.0f / (float)fan_out) : 0.0f;
    mc_tensor_normal(t, rng, 0.0f, std);
}

mc_status mc_release_unrecorded(mc_graph *g, mc_graph_mark mark, mc_tensor **x) {
    if (mc_graph_tape_length(g) != mark.tape_length) return MC_OK; /* the tape needs it all */
    return mc_graph_release_keep(g, mark, x);
}

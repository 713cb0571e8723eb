/* The optimizer object: settings, per-parameter state, the step loop that
 * hands each trainable parameter to its update kernel (sgd.c, adam.c), and
 * the state's export to / import from named tensors for checkpoints. */
#include "optim/optim_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- settings ---- */

mc_adam_config mc_adam_defaults(void) {
    return (mc_adam_config){
        .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
}

mc_adam_config mc_adamw_defaults(void) {
    mc_adam_config config = mc_adam_defaults();
    config.weight_decay = 1e-2f;
    return config;
}

static bool finite_nonnegative(float x) { return isfinite(x) && x >= 0.0f; }

/* The same checks (and messages) as torch.optim's constructors. */
static mc_status check_sgd(const mc_sgd_config *c) {
    if (!finite_nonnegative(c->lr))
        return mc_error(MC_ERR_ARG, "sgd: lr is %g, expected >= 0", c->lr);
    if (!finite_nonnegative(c->momentum))
        return mc_error(MC_ERR_ARG, "sgd: momentum is %g, expected >= 0", c->momentum);
    if (!finite_nonnegative(c->weight_decay))
        return mc_error(MC_ERR_ARG, "sgd: weight_decay is %g, expected >= 0", c->weight_decay);
    if (!isfinite(c->dampening)) return mc_error(MC_ERR_ARG, "sgd: dampening is %g", c->dampening);
    if (c->nesterov && (c->momentum <= 0.0f || c->dampening != 0.0f))
        return mc_error(MC_ERR_ARG,
                        "sgd: nesterov needs momentum > 0 and dampening 0 (got momentum %g, "
                        "dampening %g)",
                        c->momentum, c->dampening);
    return MC_OK;
}

static mc_status check_adam(const char *name, const mc_adam_config *c) {
    if (!finite_nonnegative(c->lr))
        return mc_error(MC_ERR_ARG, "%s: lr is %g, expected >= 0", name, c->lr);
    if (!finite_nonnegative(c->eps))
        return mc_error(MC_ERR_ARG, "%s: eps is %g, expected >= 0", name, c->eps);
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f))
        return mc_error(MC_ERR_ARG, "%s: beta1 is %g, expected in [0, 1)", name, c->beta1);
    if (!(c->beta2 >= 0.0f && c->beta2 < 1.0f))
        return mc_error(MC_ERR_ARG, "%s: beta2 is %g, expected in [0, 1)", name, c->beta2);
    if (!finite_nonnegative(c->weight_decay))
        return mc_error(MC_ERR_ARG, "%s: weight_decay is %g, expected >= 0", name, c->weight_decay);
    return MC_OK;
}

static void state_clear(mc_param_state *state) {
    free(state->buf1);
    free(state->buf2);
    memset(state, 0, sizeof *state);
}

/* A zeroed state table for n parameters (at least one entry, so calloc never
 * sees 0), or NULL when memory is short. */
static mc_param_state *state_table_new(int n) {
    return calloc((size_t)(n > 0 ? n : 1), sizeof(mc_param_state));
}

static void state_table_free(mc_param_state *table, int n) {
    if (!table) return;
    for (int i = 0; i < n; i++) state_clear(&table[i]);
    free(table);
}

static mc_status optimizer_new(mc_optimizer **out, mc_param_list *params, mc_optimizer_kind kind,
                               float lr, float weight_decay) {
    *out = NULL;
    mc_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) return mc_error(MC_ERR_NOMEM, "optimizer: out of memory");
    opt->kind = kind;
    mc_status status = mc_optimizer_add_group(opt, params, lr, weight_decay);
    if (status != MC_OK) {
        free(opt->groups); /* grown before the group's state could be had */
        free(opt);
        return status;
    }
    *out = opt;
    return MC_OK;
}

mc_status mc_optimizer_sgd(mc_optimizer **out, mc_param_list *params, mc_sgd_config config) {
    *out = NULL;
    MC_TRY(check_sgd(&config));
    MC_TRY(optimizer_new(out, params, MC_OPTIM_SGD, config.lr, config.weight_decay));
    (*out)->sgd = config;
    return MC_OK;
}

static mc_status adam_new(mc_optimizer **out, mc_param_list *params, mc_adam_config config,
                          mc_optimizer_kind kind) {
    *out = NULL;
    MC_TRY(check_adam(kind == MC_OPTIM_ADAM ? "adam" : "adamw", &config));
    MC_TRY(optimizer_new(out, params, kind, config.lr, config.weight_decay));
    (*out)->adam = config;
    return MC_OK;
}

mc_status mc_optimizer_adam(mc_optimizer **out, mc_param_list *params, mc_adam_config config) {
    return adam_new(out, params, config, MC_OPTIM_ADAM);
}

mc_status mc_optimizer_adamw(mc_optimizer **out, mc_param_list *params, mc_adam_config config) {
    return adam_new(out, params, config, MC_OPTIM_ADAMW);
}

mc_status mc_optimizer_add_group(mc_optimizer *opt, mc_param_list *params, float lr,
                                 float weight_decay) {
    const char *name = mc_optimizer_name(opt);
    if (!params) return mc_error(MC_ERR_ARG, "%s: the parameter list is NULL", name);
    if (!finite_nonnegative(lr))
        return mc_error(MC_ERR_ARG, "%s: group %d: lr is %g, expected >= 0", name, opt->n_groups,
                        lr);
    if (!finite_nonnegative(weight_decay))
        return mc_error(MC_ERR_ARG, "%s: group %d: weight_decay is %g, expected >= 0", name,
                        opt->n_groups, weight_decay);
    if (opt->steps > 0)
        return mc_error(MC_ERR_STATE, "%s: a group is added after %lld steps", name,
                        (long long)opt->steps);
    /* A tensor in two groups would be stepped twice per step, with two
     * states under one name (PyTorch refuses it too). */
    for (int i = 0; i < params->count; i++) {
        for (int j = 0; j < i; j++)
            if (params->items[j] == params->items[i])
                return mc_error(MC_ERR_ARG, "%s: group %d lists %s twice", name, opt->n_groups,
                                params->items[i]->name);
        for (int k = 0; k < opt->n_groups; k++)
            for (int j = 0; j < opt->groups[k].n_params; j++)
                if (opt->groups[k].params->items[j] == params->items[i])
                    return mc_error(MC_ERR_ARG, "%s: %s is in group %d already; a tensor belongs "
                                    "to one group", name, params->items[i]->name, k);
    }
    mc_param_state *state = state_table_new(params->count);
    mc_param_group *groups = realloc(opt->groups, (size_t)(opt->n_groups + 1) * sizeof *groups);
    if (!state || !groups) {
        free(state);
        if (groups) opt->groups = groups;
        return mc_error(MC_ERR_NOMEM, "%s: no memory for a group of %d parameters", name,
                        params->count);
    }
    opt->groups = groups;
    opt->groups[opt->n_groups++] = (mc_param_group){
        .params = params, .n_params = params->count, .state = state, .lr = lr,
        .weight_decay = weight_decay};
    return MC_OK;
}

void mc_optimizer_free(mc_optimizer *opt) {
    if (!opt) return;
    for (int k = 0; k < opt->n_groups; k++)
        state_table_free(opt->groups[k].state, opt->groups[k].n_params);
    free(opt->groups);
    free(opt);
}

mc_optimizer_kind mc_optimizer_get_kind(const mc_optimizer *opt) { return opt->kind; }

const char *mc_optimizer_name(const mc_optimizer *opt) {
    switch (opt->kind) {
    case MC_OPTIM_SGD: return "sgd";
    case MC_OPTIM_ADAM: return "adam";
    case MC_OPTIM_ADAMW: return "adamw";
    }
    return "unknown";
}

/* One schedule for every group; mc_optimizer_set_group_lr sets one group. */
mc_status mc_optimizer_set_lr(mc_optimizer *opt, float lr) {
    if (!finite_nonnegative(lr))
        return mc_error(MC_ERR_ARG, "%s: lr is %g, expected >= 0", mc_optimizer_name(opt), lr);
    for (int k = 0; k < opt->n_groups; k++) opt->groups[k].lr = lr;
    return MC_OK;
}
float mc_optimizer_get_lr(const mc_optimizer *opt) { return opt->groups[0].lr; }
int64_t mc_optimizer_steps(const mc_optimizer *opt) { return opt->steps; }

int mc_optimizer_group_count(const mc_optimizer *opt) { return opt->n_groups; }

mc_status mc_optimizer_set_group_lr(mc_optimizer *opt, int group, float lr) {
    if (group < 0 || group >= opt->n_groups)
        return mc_error(MC_ERR_ARG, "%s: group %d does not exist (there are %d)",
                        mc_optimizer_name(opt), group, opt->n_groups);
    if (!finite_nonnegative(lr))
        return mc_error(MC_ERR_ARG, "%s: group %d: lr is %g, expected >= 0",
                        mc_optimizer_name(opt), group, lr);
    opt->groups[group].lr = lr;
    return MC_OK;
}

float mc_optimizer_get_group_lr(const mc_optimizer *opt, int group) {
    return group >= 0 && group < opt->n_groups ? opt->groups[group].lr : NAN;
}

void mc_optimizer_zero_grad(mc_optimizer *opt) {
    for (int k = 0; k < opt->n_groups; k++) mc_params_zero_grad(opt->groups[k].params);
}

/* ---- the step ---- */

/* How many state buffers a parameter needs: 0 (plain SGD), 1 or 2. */
static int buffers_needed(const mc_optimizer *opt) {
    if (opt->kind == MC_OPTIM_SGD) return opt->sgd.momentum != 0.0f ? 1 : 0;
    return 2;
}

static bool is_updated(const mc_tensor *t) { return t->requires_grad && t->grad != NULL; }

static mc_status check_group_unchanged(const mc_optimizer *opt, const mc_param_group *group) {
    if (group->params->count != group->n_params)
        return mc_error(MC_ERR_STATE,
                        "%s: the parameter list had %d tensors when the optimizer was made and "
                        "has %d now",
                        mc_optimizer_name(opt), group->n_params, group->params->count);
    for (int i = 0; i < group->n_params; i++) {
        const mc_param_state *state = &group->state[i];
        const mc_tensor *t = group->params->items[i];
        if ((state->buf1 || state->buf2) && state->numel != t->numel)
            return mc_error(MC_ERR_STATE, "%s: parameter %s has %lld elements, its state %lld",
                            mc_optimizer_name(opt), t->name, (long long)t->numel,
                            (long long)state->numel);
    }
    return MC_OK;
}

static mc_status check_list_unchanged(const mc_optimizer *opt) {
    for (int k = 0; k < opt->n_groups; k++) MC_TRY(check_group_unchanged(opt, &opt->groups[k]));
    return MC_OK;
}

/* Zeroed buffers for every parameter about to get its first update, all made
 * before any parameter changes, so a failed allocation leaves all untouched. */
static mc_status allocate_missing_state(mc_optimizer *opt, mc_param_group *group) {
    int needed = buffers_needed(opt);
    for (int i = 0; i < group->n_params && needed > 0; i++) {
        mc_tensor *t = group->params->items[i];
        mc_param_state *state = &group->state[i];
        if (!is_updated(t) || state->buf1) continue;
        state->buf1 = calloc((size_t)t->numel, sizeof(float));
        state->buf2 = needed == 2 ? calloc((size_t)t->numel, sizeof(float)) : NULL;
        if (!state->buf1 || (needed == 2 && !state->buf2)) {
            state_clear(state);
            return mc_error(MC_ERR_NOMEM, "%s: no memory for the state of %s",
                            mc_optimizer_name(opt), t->name);
        }
        state->numel = t->numel;
    }
    return MC_OK;
}

/* Update one group's parameters with its own lr and weight decay. */
static void step_group(const mc_optimizer *opt, mc_param_group *group) {
    mc_sgd_config sgd = opt->sgd;
    mc_adam_config adam = opt->adam;
    sgd.weight_decay = adam.weight_decay = group->weight_decay;
    for (int i = 0; i < group->n_params; i++) {
        mc_tensor *t = group->params->items[i];
        mc_param_state *state = &group->state[i];
        if (!is_updated(t)) continue;
        state->steps++;
        if (opt->kind == MC_OPTIM_SGD)
            mc_sgd_update(t->data, t->grad, state->buf1, t->numel, &sgd, group->lr,
                          state->steps == 1);
        else
            mc_adam_update(t->data, t->grad, state->buf1, state->buf2, t->numel, &adam,
                           group->lr, state->steps, opt->kind == MC_OPTIM_ADAMW);
        mc_tensor_touch(t); /* its bf16 copy, if any, is remade at its next use */
    }
}

mc_status mc_optimizer_step(mc_optimizer *opt) {
    MC_TRY(check_list_unchanged(opt));
    for (int k = 0; k < opt->n_groups; k++) MC_TRY(allocate_missing_state(opt, &opt->groups[k]));
    for (int k = 0; k < opt->n_groups; k++) step_group(opt, &opt->groups[k]);
    opt->steps++;
    return MC_OK;
}

/* ---- state export ---- */

/* The state buffers' names for this optimizer, in order; returns how many. */
static int buffer_names(const mc_optimizer *opt, const char *names[2]) {
    if (opt->kind == MC_OPTIM_SGD) {
        names[0] = "momentum_buffer";
        return buffers_needed(opt);
    }
    names[0] = "exp_avg";
    names[1] = "exp_avg_sq";
    return 2;
}

static mc_status state_name(char *buf, size_t len, const char *what, const char *param) {
    int n = snprintf(buf, len, "optimizer.%s%s%s", what, param ? "." : "", param ? param : "");
    if (n < 0 || (size_t)n >= len)
        return mc_error(MC_ERR_ARG, "optimizer state: the name optimizer.%s.%s is longer than %zu",
                        what, param ? param : "", len - 1);
    return MC_OK;
}

/* A heap tensor `name` of `shape` holding `values` (n floats), added to out. */
static mc_status export_tensor(mc_param_list *out, const char *name, mc_shape shape,
                               const float *values, int64_t n) {
    mc_tensor *t;
    MC_TRY(mc_tensor_new(&t, shape, name));
    memcpy(t->data, values, (size_t)n * sizeof(float));
    mc_status status = mc_params_add(out, t);
    if (status != MC_OK) mc_tensor_free(t);
    return status;
}

/* Steps are stored as float32, exact up to 2^24 (16.7 million steps). */
enum { MAX_EXACT_STEPS = 1 << 24 };

/* One parameter's state tensors (none before its first update). */
static mc_status export_param(const mc_optimizer *opt, const mc_tensor *t,
                              const mc_param_state *state, const char *names[2], int n_buffers,
                              mc_param_list *out) {
    /* Nothing before the first update; except that an optimizer without
     * buffers writes a 0 step count for a parameter that never had a
     * gradient, which the import would otherwise take for one updated at
     * every step. */
    if (state->steps == 0 && (n_buffers > 0 || opt->steps == 0)) return MC_OK;
    char name[MC_NAME_LEN];
    const float *buffers[2] = {state->buf1, state->buf2};
    for (int b = 0; b < n_buffers; b++) {
        MC_TRY(state_name(name, sizeof name, names[b], t->name));
        MC_TRY(export_tensor(out, name, t->shape, buffers[b], t->numel));
    }
    if (state->steps != opt->steps) {
        float own_steps = (float)state->steps;
        MC_TRY(state_name(name, sizeof name, "step", t->name));
        MC_TRY(export_tensor(out, name, MC_SHAPE(1), &own_steps, 1));
    }
    return MC_OK;
}

mc_status mc_optimizer_export_state(const mc_optimizer *opt, mc_param_list *out) {
    MC_TRY(check_list_unchanged(opt));
    if (opt->steps > MAX_EXACT_STEPS)
        return mc_error(MC_ERR_UNSUPPORTED, "optimizer state: %lld steps do not fit a float32",
                        (long long)opt->steps);
    float steps = (float)opt->steps;
    MC_TRY(export_tensor(out, "optimizer.step", MC_SHAPE(1), &steps, 1));
    const char *names[2];
    int n_buffers = buffer_names(opt, names);
    for (int k = 0; k < opt->n_groups; k++) {
        const mc_param_group *group = &opt->groups[k];
        for (int i = 0; i < group->n_params; i++)
            MC_TRY(export_param(opt, group->params->items[i], &group->state[i], names, n_buffers,
                                out));
    }
    return MC_OK;
}

/* ---- state import ---- */

/* A step count stored as a one-element float tensor. */
static mc_status read_steps(const mc_tensor *t, int64_t *steps) {
    *steps = 0;
    float value = t->numel == 1 ? t->data[0] : -1.0f;
    if (!(value >= 0.0f && value <= (float)MAX_EXACT_STEPS && value == floorf(value)))
        return mc_error(MC_ERR_FORMAT,
                        "optimizer state: %s should hold one whole number of steps in [0, %d]",
                        t->name, MAX_EXACT_STEPS);
    *steps = (int64_t)value;
    return MC_OK;
}

/* Read one parameter's state into `state` (fresh buffers). */
static mc_status import_param(const mc_optimizer *opt, const mc_tensor *param, int64_t global_steps,
                              mc_tensor_lookup_fn lookup, void *ctx, mc_param_state *state) {
    char name[MC_NAME_LEN];
    MC_TRY(state_name(name, sizeof name, "step", param->name));
    const mc_tensor *own_steps = lookup(ctx, name);
    state->steps = global_steps;
    if (own_steps) MC_TRY(read_steps(own_steps, &state->steps));
    if (state->steps > global_steps)
        return mc_error(MC_ERR_FORMAT, "optimizer state: %s counts %lld steps, more than the "
                        "optimizer's %lld", name, (long long)state->steps, (long long)global_steps);
    if (state->steps == 0) return MC_OK;

    const char *names[2];
    int n_buffers = buffer_names(opt, names);
    const mc_tensor *saved[2] = {NULL, NULL};
    int n_found = 0;
    for (int b = 0; b < n_buffers; b++) {
        MC_TRY(state_name(name, sizeof name, names[b], param->name));
        saved[b] = lookup(ctx, name);
        n_found += saved[b] != NULL;
    }
    /* An optimizer without buffers (SGD without momentum) keeps only the
     * step count, which the export leaves out when it is the global one. */
    if (n_buffers == 0) return MC_OK;
    /* None at all: the parameter never had a gradient (PyTorch keeps no
     * state for it either), unless its own step count says otherwise. */
    if (n_found == 0 && !own_steps) {
        state->steps = 0;
        return MC_OK;
    }
    float **buffers[2] = {&state->buf1, &state->buf2};
    for (int b = 0; b < n_buffers; b++) {
        MC_TRY(state_name(name, sizeof name, names[b], param->name));
        if (!saved[b])
            return mc_error(MC_ERR_FORMAT,
                            "optimizer state: %s is missing (the state of %s is incomplete)", name,
                            param->name);
        if (!mc_shape_equal(saved[b]->shape, param->shape)) {
            char a[96], p[96];
            return mc_error(MC_ERR_SHAPE, "optimizer state: %s has shape %s, parameter %s has %s",
                            name, mc_shape_str(saved[b]->shape, a, sizeof a), param->name,
                            mc_shape_str(param->shape, p, sizeof p));
        }
        /* Adam's second moment is a mean of squares: a negative one
         * (a damaged file) would make every update of the parameter NaN. */
        if (b == 1)
            for (int64_t i = 0; i < param->numel; i++)
                if (saved[b]->data[i] < 0.0f)
                    return mc_error(MC_ERR_FORMAT, "optimizer state: %s holds %g at element %lld; "
                                    "a mean of squares cannot be negative", name,
                                    (double)saved[b]->data[i], (long long)i);
        *buffers[b] = malloc((size_t)param->numel * sizeof(float));
        if (!*buffers[b]) return mc_error(MC_ERR_NOMEM, "optimizer state: no memory for %s", name);
        memcpy(*buffers[b], saved[b]->data, (size_t)param->numel * sizeof(float));
    }
    state->numel = param->numel;
    return MC_OK;
}

mc_status mc_optimizer_import_state(mc_optimizer *opt, mc_tensor_lookup_fn lookup, void *ctx) {
    MC_TRY(check_list_unchanged(opt));
    const mc_tensor *step_tensor = lookup(ctx, "optimizer.step");
    if (!step_tensor) return mc_error(MC_ERR_FORMAT, "optimizer state: optimizer.step is missing");
    int64_t global_steps = 0;
    MC_TRY(read_steps(step_tensor, &global_steps));

    /* Read everything into fresh tables, one per group; swap them in only
     * when all is well. */
    mc_param_state **fresh = calloc((size_t)opt->n_groups, sizeof *fresh);
    if (!fresh) return mc_error(MC_ERR_NOMEM, "optimizer state: out of memory");
    mc_status status = MC_OK;
    for (int k = 0; k < opt->n_groups && status == MC_OK; k++) {
        const mc_param_group *group = &opt->groups[k];
        fresh[k] = state_table_new(group->n_params);
        if (!fresh[k]) status = mc_error(MC_ERR_NOMEM, "optimizer state: out of memory");
        for (int i = 0; i < group->n_params && status == MC_OK; i++)
            status = import_param(opt, group->params->items[i], global_steps, lookup, ctx,
                                  &fresh[k][i]);
    }
    for (int k = 0; k < opt->n_groups; k++) {
        mc_param_group *group = &opt->groups[k];
        if (status == MC_OK) { /* the old table goes, the fresh one takes its place */
            mc_param_state *old = group->state;
            group->state = fresh[k];
            fresh[k] = old;
        }
        state_table_free(fresh[k], group->n_params);
    }
    free(fresh);
    if (status != MC_OK) return status;
    opt->steps = global_steps;
    return MC_OK;
}

bool mc_optimizer_reads_state(const mc_optimizer *opt, const char *name) {
    if (strcmp(name, "optimizer.step") == 0) return true;
    const char *names[3] = {"step"};
    const int n_names = 1 + buffer_names(opt, names + 1);
    for (int w = 0; w < n_names; w++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "optimizer.%s.", names[w]);
        const size_t len = strlen(prefix);
        if (strncmp(name, prefix, len) != 0) continue;
        for (int k = 0; k < opt->n_groups; k++)
            for (int i = 0; i < opt->groups[k].n_params; i++)
                if (strcmp(name + len, opt->groups[k].params->items[i]->name) == 0) return true;
    }
    return false;
}

static const mc_tensor *lookup_in_list(void *ctx, const char *name) {
    return mc_params_find((const mc_param_list *)ctx, name);
}

mc_status mc_optimizer_import_state_from_list(mc_optimizer *opt, const mc_param_list *state) {
    for (int i = 0; i < state->count; i++) {
        const char *name = state->items[i]->name;
        if (strncmp(name, "optimizer.", strlen("optimizer.")) == 0 &&
            !mc_optimizer_reads_state(opt, name))
            return mc_error(MC_ERR_FORMAT, "optimizer state: %s belongs to no parameter or buffer "
                            "of this %s optimizer", name, mc_optimizer_name(opt));
    }
    return mc_optimizer_import_state(opt, lookup_in_list, (void *)state);
}

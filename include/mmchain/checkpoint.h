/* mmchain — loading parameters by name, and checkpoints.
 *
 * One module for everything that moves a model's tensors (an
 * mc_param_list, nn.h) in or out of a safetensors file (io.h):
 *
 *   mc_checkpoint_load_params   a state_dict by name: strict, or not strict
 *                               with a report of what did not match; skipped
 *                               prefixes; a hook that derives a tensor from a
 *                               file tensor of another shape (the N-band conv1
 *                               from an RGB one, models.h)
 *   mc_checkpoint_expect        one tensor's shape, checked against a file
 *                               before a model built from that file's
 *                               configuration is allocated
 *   mc_checkpoint_save / _load  a model, its optimizer's state (optim.h) and
 *                               metadata in one file, written atomically
 *
 *     mc_safetensors *f;
 *     MC_TRY(mc_safetensors_open("resnet50.safetensors", &f));
 *     char report[4096];
 *     mc_checkpoint_load_options o = mc_checkpoint_load_defaults();
 *     mc_status s = mc_checkpoint_load_params(f, &model->params, &o, report, sizeof report);
 *     mc_safetensors_close(f);
 *
 * It sits above nn and optim (it needs both) and below the models, which
 * load and save through it. */
#ifndef MMCHAIN_CHECKPOINT_H
#define MMCHAIN_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "io.h"
#include "nn.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- loading parameters by name ---- */

/* Makes a model tensor from a file tensor of a different shape. */
typedef struct mc_derive_hook {
    /* Whether `dst` can be made from the file tensor of the same name, whose
     * shape is `file_shape`. */
    bool (*accepts)(void *ctx, const mc_tensor *dst, mc_shape file_shape);
    /* Make it: src holds the file tensor as float32. */
    mc_status (*derive)(void *ctx, const mc_tensor *src, mc_tensor *dst);
    void *ctx;
} mc_derive_hook;

typedef struct mc_checkpoint_load_options {
    /* strict: any missing tensor, unexpected file tensor, shape mismatch or
     * non-float dtype is an MC_ERR_FORMAT whose message lists every offending
     * name (with both shapes); nothing is loaded unless everything matches.
     * not strict: loads every tensor that matches and lists the rest in the
     * report. Either way a NaN or Inf among the values to load is an
     * MC_ERR_NUMERIC naming the tensor, found before anything is written. */
    bool strict;
    /* NULL, or a NULL-terminated list: a name (model's or file's) starting
     * with one of these is neither loaded nor reported (a new head keeps its
     * own values: "fc."). */
    const char *const *skip_prefixes;
    /* NULL, or how to make a tensor whose file shape differs. */
    const mc_derive_hook *derive;
} mc_checkpoint_load_options;

/* strict, nothing skipped, no hook. */
mc_checkpoint_load_options mc_checkpoint_load_defaults(void);

/* Load every tensor of `params` from the file tensor of the same name
 * (F32, F16, BF16 or F64, converted to float32). Besides the options:
 *   - file tensors under "optimizer." (a checkpoint's optimizer state) are
 *     never unexpected;
 *   - integer num_batches_tracked / position_ids buffers in the file that
 *     the model does not keep (PyTorch's BatchNorm step counter, Hugging
 *     Face CLIP's constant position ids) are ignored, and counted;
 *   - a model tensor named *num_batches_tracked may be absent from the file
 *     (some exporters drop it; it keeps its value) or stored as an integer.
 * report (may be NULL, is truncated to report_len) receives a summary either
 * way: "PATH: loaded 159 of 161 tensors; missing (2): a, b; ...". */
mc_status mc_checkpoint_load_params(const mc_safetensors *f, mc_param_list *params,
                                    const mc_checkpoint_load_options *options, char *report,
                                    size_t report_len);

/* For a configuration read from a file: MC_OK when the file holds `name`
 * with exactly `shape` and a float dtype, else an MC_ERR_FORMAT naming the
 * tensor, what the configuration needs and what the file has. Loaders
 * check every tensor this way before they allocate the model, so a file
 * whose first tensors declare a huge configuration is refused at once
 * instead of building that model. */
mc_status mc_checkpoint_expect(const mc_safetensors *f, const char *name, mc_shape shape);

/* ---- checkpoints: a model, its optimizer's state and metadata ----
 * One safetensors file holding the model's tensors under their own names,
 * the optimizer's state under "optimizer.*" (the names of optim.h), the
 * caller's metadata (step, bands, normalisation, ...) and two entries of
 * ours: "mmchain.checkpoint" = "1" (the format version) and
 * "mmchain.optimizer" = "sgd" / "adam" / "adamw" / "none". Written
 * atomically, so a run killed while saving keeps its previous checkpoint.
 * Older ResNet checkpoints (metadata "format" = "mmchain.resnet", the
 * optimizer's name under "optimizer") load too. */

/* opt may be NULL (weights only). */
mc_status mc_checkpoint_save(const char *path, const mc_param_list *model, const mc_optimizer *opt,
                             int n_meta, const mc_metadata_entry *meta);
/* Load the model strictly, then, when opt is not NULL, the optimizer's
 * state (mc_checkpoint_load_optimizer); a file of another optimizer is
 * refused before the model is touched, and an optimizer state refused
 * after the model's tensors loaded puts their values back: a failed load
 * changes neither (a copy of the model's values is held meanwhile). The
 * caller opened f, so it can read its own metadata (mc_safetensors_metadata). */
mc_status mc_checkpoint_load(const mc_safetensors *f, mc_param_list *model, mc_optimizer *opt);
/* Restore the "optimizer.*" tensors into `opt` (created over the model's
 * parameters with the same settings); the file's optimizer must be of the
 * same kind. */
mc_status mc_checkpoint_load_optimizer(const mc_safetensors *f, mc_optimizer *opt);

#ifdef __cplusplus
}
#endif
#endif

/* mmchain's application layer — the demo: the whole method on the synthetic
 * world, with no download (`mmchain demo`).
 *
 *     mc_demo_config config = mc_demo_defaults();
 *     config.out_dir = "runs/demo";
 *     mc_demo_result result;
 *     MC_TRY(mc_demo_run(&config, &result));
 *     printf("zero-shot %.3f\n", result.spectral_text_acc);
 */
#ifndef MMCHAIN_APP_DEMO_H
#define MMCHAIN_APP_DEMO_H

#include <stdbool.h>
#include <stdint.h>

#include "mmchain/chain.h"
#include "mmchain/error.h"
#include "mmchain/pretrain.h"
#include "mmchain_app/run.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mc_demo_config {
    uint64_t seed;          /* the world and every other seed */
    /* Disjoint sets of the synthetic world's tiles (balanced over classes):
     * CLIP learns from the first, the encoder from the second, the third
     * picks nothing (per-epoch curves), the fourth is the held-out test. */
    int clip_tiles, train_tiles, val_tiles, test_tiles;
    int tile_size;          /* both views are resampled to this side (64 = as made) */
    mc_clip_recipe clip;    /* the CLIP and its pretraining */
    /* The spectral encoder and its training (chain.h). */
    const char *bands;      /* "B08,B11,B12": three infrared bands */
    mc_resnet_config encoder; /* in_channels and fc_out are set by the chain */
    mc_chain_train_config train; /* epochs, batch, lr, temperature, augmentation */
    bool control;           /* also train on shuffled pairs (the negative control) */
    /* 1: the seed paper's chain. 2: also a further hop: a student encoder on
     * hop2_bands trained against the encoder above (not against CLIP; it
     * never sees RGB, a caption or a label), with its own control when
     * control is set (shuffled pairs at the second hop). */
    int hops;
    const char *hop2_bands; /* "B05,B06,B07": the red edge */
    /* Run folder (NULL: nothing written). A demo's earlier run there is
     * replaced; another command's run is refused (mc_run_open's
     * MC_RUN_NEW) unless `overwrite` is set, which deletes its config.json
     * and checkpoints (MC_RUN_OVERWRITE). */
    const char *out_dir;
    bool overwrite;
    bool quiet; /* no progress lines or log on stdout */
} mc_demo_config;

/* How mc_demo_run opens config->out_dir: MC_RUN_OVERWRITE when
 * `overwrite` is set or the folder holds an earlier demo's run (its
 * config.json says "command": "demo"), else MC_RUN_NEW. */
mc_run_mode mc_demo_run_mode(const mc_demo_config *config);

/* The sizes `mmchain demo` runs with (docs/method.md, "The demo"). */
mc_demo_config mc_demo_defaults(void);
/* A tiny version for tests: seconds, not minutes. */
mc_demo_config mc_demo_tiny(void);

typedef struct mc_demo_result {
    int test_tiles, num_classes;
    double rgb_text_acc;       /* CLIP's image tower, zero-shot, held-out tiles */
    double spectral_text_acc;  /* the spectral encoder, zero-shot, same tiles */
    double control_text_acc;   /* the encoder trained on shuffled pairs (NaN: not run) */
    double match_acc;          /* spectral -> RGB matching inside batches */
    /* hops = 2 (NaN otherwise): the student, zero-shot through the encoder;
     * the student trained on shuffled pairs; student -> encoder matching. */
    double hop2_text_acc, hop2_control_text_acc, hop2_match_acc;
    double seconds_data, seconds_clip, seconds_encoder, seconds_control, seconds_hop2, seconds_total;
    char run_dir[1024];        /* "" when no out_dir */
    char report_path[1024];
} mc_demo_result;

/* Make the world, pretrain the CLIP on its RGB views with captions, train
 * the spectral encoder on the infrared bands against that CLIP's image
 * embeddings (it never sees a caption or a label), optionally the control,
 * and evaluate zero-shot on the test tiles. With out_dir: a run folder with
 * config.json, log.txt, metrics.csv, clip/model.safetensors + clip/merges.txt
 * (loadable by `mmchain train`), checkpoints/ of the encoder, report.html. */
mc_status mc_demo_run(const mc_demo_config *config, mc_demo_result *out);

/* ---- the band-set ablation (`mmchain ablate`) ----------------------------
 * Which bands carry the signal: the same encoder, schedule and seed trained
 * on several band sets against the same CLIP, each also on shuffled pairs
 * (the control), scored zero-shot on the same held-out tiles. */

typedef struct mc_ablate_row {
    char bands[128];          /* "B08,B11,B12" */
    double text_acc;          /* spectral -> text, test tiles */
    double match_acc;         /* spectral -> RGB matching inside batches */
    double control_text_acc;  /* the same encoder on shuffled pairs (NaN: not run) */
    double rgb_text_acc;      /* CLIP's own RGB -> text on the same tiles */
    int num_classes;
    double class_acc[MC_EUROSAT_NUM_CLASSES]; /* spectral -> text per class (NaN: no tile) */
} mc_ablate_row;

/* One seed of the ablation on the synthetic world: the demo's world and
 * CLIP (config, with config->seed), then for each of the n_sets band lists
 * ("B04,B03,B02") the demo's encoder and schedule on those bands and, with
 * config->control, on shuffled pairs. rows: n_sets, filled in order.
 * config->bands, hops and out_dir are ignored (nothing is written). */
mc_status mc_demo_ablate(const mc_demo_config *config, const char *const *sets, int n_sets, mc_ablate_row *rows);

#ifdef __cplusplus
}
#endif
#endif

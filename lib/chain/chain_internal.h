/* Private helpers shared by lib/chain/{targets,teacher,train,evaluate,shards}.c. */
#ifndef MMCHAIN_CHAIN_INTERNAL_H
#define MMCHAIN_CHAIN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "mmchain/chain.h"

/* splitmix64's finaliser (Steele et al., 2014): decorrelates a seed mixed
 * with an index (epoch, step, tile, crop) before seeding a generator, so
 * neighbouring indices give unrelated streams. */
static inline uint64_t mc_chain_mix64(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* What makes the targets the encoder learns: CLIP's image tower on the RGB
 * views (the seed paper), or a trained spectral encoder on its own bands of
 * the tiles (a further hop). Exactly one of the two is set; both borrowed. */
typedef struct mc_chain_tower {
    mc_clip *clip;
    mc_spectral_encoder *teacher;
} mc_chain_tower;

/* E: the width of the tower's embeddings. */
int mc_chain_tower_dim(const mc_chain_tower *tower);
/* views (N, C, H, W), the second views of a source -> out (N, E), frozen. */
mc_status mc_chain_tower_embed(const mc_chain_tower *tower, const mc_tensor *views, int batch,
                               mc_tensor *out);
/* The same on g, a graph without gradients kept by a caller that embeds
 * every step (the trainer on the fly): its arena, grown by the first call,
 * holds every later batch, where a graph per call filled fresh pages every
 * time. g is reset after each batch. */
mc_status mc_chain_tower_embed_on(const mc_chain_tower *tower, mc_graph *g, const mc_tensor *views,
                                  int batch, mc_tensor *out);
/* mc_spectral_encoder_embed on such a graph (teacher.c). */
mc_status mc_chain_teacher_embed_on(mc_spectral_encoder *enc, mc_graph *g, const mc_tensor *x, int batch,
                                    mc_tensor *out);
/* mc_chain_targets and mc_chain_crop_targets for either tower (targets.c). */
mc_status mc_chain_tower_targets(const mc_chain_tower *tower, const mc_chain_data *data,
                                 const char *cache_dir, int batch, mc_tensor **out,
                                 bool *from_cache);
mc_status mc_chain_tower_crop_targets(const mc_chain_tower *tower, const mc_chain_data *data,
                                      const char *cache_dir, int batch, int crops, uint64_t seed,
                                      const mc_augment_config *config, mc_tensor **out,
                                      bool *from_cache);
/* A 16-hex-digit fingerprint of a teacher: its weights, buffers, bands and
 * normalisation (teacher.c), for the target cache's key. */
void mc_chain_teacher_fingerprint(const mc_spectral_encoder *teacher, char out[17]);

/* Data parallel (shards.c, docs/distributed.md): this rank's tiles
 * [*begin, *end) of `count` tiles done in batches of `batch` — its slice of
 * the batches, in whole batches, so that every batch holds the tiles it
 * holds in one process and what is computed from it is the one-process
 * result bit for bit. A rank left without a batch gets [count, count). In a
 * world of one: [0, count). Not collective. */
void mc_chain_shard_of_tiles(int count, int batch, int *begin, int *end);
/* Every rank's rows [begin, end) x rows_per_tile of out (rows, W), gathered
 * into out on every rank (rank order is tile order). `what` names the work
 * in messages ("CLIP targets"). Collective. */
mc_status mc_chain_gather_shards(mc_tensor *out, int begin, int end, int64_t rows_per_tile, const char *what);

/* Whether the checkpoint at `path` holds this encoder (architecture, bands,
 * tile size, embedding width, normalisation): MC_OK with the training
 * state it records in *state, or the error mc_spectral_encoder_restore
 * would give, with nothing restored. */
mc_status mc_spectral_encoder_check_fits(const mc_spectral_encoder *enc, const char *path,
                                         mc_chain_state *state);

#endif

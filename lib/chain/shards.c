/* Data-parallel shards of a set of tiles (docs/distributed.md).
 *
 * Work over every tile of a source — CLIP's or a teacher's targets, the
 * validation metrics — is done in batches. In a distributed run each rank
 * takes its slice of the BATCHES, not of the tiles: a batch then holds the
 * tiles it holds in one process, so what is computed from it (an
 * embedding, a batch's loss) is the one-process result bit for bit, and the
 * gathered whole is the one-process whole. */
#include "chain/chain_internal.h"

#include <stdlib.h>
#include <string.h>

#include "mmchain/dist.h"

void mc_chain_shard_of_tiles(int count, int batch, int *begin, int *end) {
    int64_t batches = (count + batch - 1) / batch, first, n;
    mc_dist_slice(batches, mc_dist_rank(), mc_dist_world_size(), &first, &n);
    /* A rank left without a batch (fewer batches than ranks) gets [count, count). */
    *begin = (int)(first * batch < count ? first * batch : count);
    *end = (int)((first + n) * batch < count ? (first + n) * batch : count);
}

mc_status mc_chain_gather_shards(mc_tensor *out, int begin, int end, int64_t rows_per_tile, const char *what) {
    const int64_t width = out->shape.dim[1], first = begin * rows_per_tile, rows = (end - begin) * rows_per_tile;
    const int world = mc_dist_world_size();
    float *mine = malloc((size_t)(rows * width + 1) * sizeof *mine);
    int64_t *counts = malloc((size_t)world * sizeof *counts), total;
    mc_status status = mine && counts ? MC_OK : mc_error(MC_ERR_NOMEM, "%s: out of memory", what);
    if (status == MC_OK) { /* the gather's send and receive buffers must not overlap */
        memcpy(mine, out->data + first * width, (size_t)(rows * width) * sizeof *mine);
        status = mc_dist_allgather_counts(rows, counts, &total);
    }
    if (status == MC_OK && total != out->shape.dim[0])
        status = mc_error(MC_ERR_STATE, "%s: the ranks' shards hold %lld rows, not %lld", what,
                          (long long)total, (long long)out->shape.dim[0]);
    if (status == MC_OK) status = mc_dist_allgather_rows(mine, rows, width, counts, out->data);
    free(mine);
    free(counts);
    return status;
}

/* Growing a heap array by doubling (internal): the buffers that collect
 * an unknown number of items (the tokenizer's ids, bytes, characters and
 * token strings, the graph's gradient blocks) or indices for batches of
 * varying size. Doubling keeps appending amortised O(1). */
#ifndef MMCHAIN_CORE_GROW_H
#define MMCHAIN_CORE_GROW_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "mmchain/error.h"

/* Room for `need` items of item_size bytes in *items, an array of
 * *capacity items: the capacity doubles (from `first` when 0; a `first` of
 * 0 counts as 1, so the doubling always ends) until it
 * holds `need`, and the contents are kept. When memory runs out (or `need`
 * is past what size_t can count in bytes, e.g. a negative count cast),
 * *items and *capacity are unchanged and the error names `what` (e.g.
 * "token ids"). */
static inline mc_status mc_grow(void **items, size_t *capacity, size_t need, size_t item_size,
                                size_t first, const char *what) {
    if (need <= *capacity) return MC_OK;
    /* Doubling stays below 2 * need: no overflow, and the loop ends. */
    if (need > SIZE_MAX / 2 / item_size)
        return mc_error(MC_ERR_NOMEM, "out of memory for %zu %s", need, what);
    size_t grown_capacity = *capacity ? *capacity : (first ? first : 1);
    while (grown_capacity < need) grown_capacity *= 2;
    void *grown = realloc(*items, grown_capacity * item_size);
    if (!grown) return mc_error(MC_ERR_NOMEM, "out of memory for %zu %s", grown_capacity, what);
    *items = grown;
    *capacity = grown_capacity;
    return MC_OK;
}

#endif

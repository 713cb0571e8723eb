/* Shared by the models of lib/models (not public). */
#ifndef MMCHAIN_MODELS_INTERNAL_H
#define MMCHAIN_MODELS_INTERNAL_H

#include <stdio.h>

#include "mmchain/io.h"

/* How many numbered blocks a checkpoint holds: the n for which
 * "<prefix><i><suffix>" exists for every i in 0..n-1 (prefix "layer2.",
 * suffix ".conv1.weight" counts the blocks of a ResNet stage). */
static inline int mc_count_numbered_tensors(const mc_safetensors *f, const char *prefix,
                                            const char *suffix) {
    char name[MC_NAME_LEN];
    int n = 0;
    for (;;) {
        snprintf(name, sizeof name, "%s%d%s", prefix, n, suffix);
        if (!mc_safetensors_has(f, name)) return n;
        n++;
    }
}

#endif

/* The BPE merges reader (CLIP's bpe_simple_vocab and Hugging Face
 * merges.txt), then an encode with whatever tokenizer it built. */
#include <stdlib.h>

#include "fuzz_common.h"
#include "mmchain/mmchain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_tokenizer *tok = NULL;
    if (mc_tokenizer_load(fuzz_write("merges.txt", data, size), &tok) != MC_OK) return 0;
    int32_t *ids = NULL;
    int n_ids = 0;
    if (mc_tokenizer_encode(tok, "a forest beside a river, seen from orbit", &ids, &n_ids) == MC_OK) free(ids);
    mc_tokenizer_free(tok);
    return 0;
}

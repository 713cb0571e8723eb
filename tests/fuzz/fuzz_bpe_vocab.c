/* The vocab.json reader: a file checked against a small tokenizer's
 * vocabulary (what mc_tokenizer_load does when vocab.json lies beside the
 * merges). */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_common.h"
#include "mmchain/mmchain.h"

static mc_tokenizer *tokenizer(void) {
    static mc_tokenizer *tok;
    if (!tok) {
        const char *merges[] = {"f o", "fo r", "r i", "ri v", "e s", "es t</w>"};
        /* without it the target would test nothing while passing */
        if (mc_tokenizer_from_merges(merges, 6, &tok) != MC_OK) {
            fprintf(stderr, "fuzz_bpe_vocab: cannot build the tokenizer: %s\n", mc_last_error());
            exit(1);
        }
    }
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)mc_tokenizer_check_vocab_json(tokenizer(), fuzz_write("vocab.json", data, size));
    return 0;
}

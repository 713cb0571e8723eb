/* The vocab.json reader: a file checked against a small tokenizer's
 * vocabulary (what mc_tokenizer_load does when vocab.json lies beside the
 * merges). */
#include "fuzz_common.h"
#include "mmchain/mmchain.h"

static mc_tokenizer *tokenizer(void) {
    static mc_tokenizer *tok;
    if (!tok) {
        const char *merges[] = {"f o", "fo r", "r i", "ri v", "e s", "es t</w>"};
        if (mc_tokenizer_from_merges(merges, 6, &tok) != MC_OK) return NULL;
    }
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_tokenizer *tok = tokenizer();
    if (tok) (void)mc_tokenizer_check_vocab_json(tok, fuzz_write("vocab.json", data, size));
    return 0;
}

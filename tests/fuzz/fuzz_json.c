/* The strict JSON parser under config.json, safetensors headers and
 * vocab.json; the tree it builds is walked to the last leaf. */
#include "fuzz_common.h"
#include "io/json.h"

static void walk(const mc_json *node, int depth) {
    for (; node; node = node->next) {
        (void)mc_json_type_name(node->type);
        if (depth < 64) walk(node->child, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_json_doc *doc = NULL;
    if (mc_json_parse((const char *)data, size, "fuzz input", &doc) != MC_OK) return 0;
    walk(mc_json_root(doc), 0);
    mc_json_free(doc);
    return 0;
}

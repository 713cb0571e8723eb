/* CLIP's EuroSAT prompts and the zero-shot text classifier.
 *
 * The templates and class names are OpenAI CLIP's for EuroSAT (Radford et
 * al., 2021, the prompt list published with the paper's zero-shot
 * evaluation). Class names are matched to the dataset's folder names BY NAME,
 * never by position, so a folder listing in another order (or a subset of
 * the classes) still gets the right prompt for each label. */
#include "mmchain/chain.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

const char *const mc_chain_eurosat_templates[MC_CHAIN_NUM_TEMPLATES] = {
    "a centered satellite photo of {}.",
    "a centered satellite photo of a {}.",
    "a centered satellite photo of the {}.",
};

/* EuroSAT folder name -> CLIP's class name. */
static const struct {
    const char *folder;
    const char *prompt;
} eurosat_names[] = {
    {"AnnualCrop", "annual crop land"},
    {"Forest", "forest"},
    {"HerbaceousVegetation", "brushland or shrubland"},
    {"Highway", "highway or road"},
    {"Industrial", "industrial buildings or commercial buildings"},
    {"Pasture", "pasture land"},
    {"PermanentCrop", "permanent crop land"},
    {"Residential", "residential buildings or homes or apartments"},
    {"River", "river"},
    {"SeaLake", "lake or sea"},
};

static bool equal_ignoring_case(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

const char *mc_chain_eurosat_class_prompt(const char *folder_name) {
    if (!folder_name) return NULL;
    for (size_t i = 0; i < sizeof eurosat_names / sizeof eurosat_names[0]; i++)
        if (equal_ignoring_case(folder_name, eurosat_names[i].folder)) return eurosat_names[i].prompt;
    return NULL;
}

void mc_chain_strings_free(char **strings, int n) {
    if (!strings) return;
    for (int i = 0; i < n; i++) free(strings[i]);
    free(strings);
}

static char *copy_string(const char *s, size_t len) {
    char *copy = malloc(len + 1);
    if (!copy) return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

/* "MixedForest" -> "mixed forest": a space before each upper-case letter
 * that follows a lower-case one, '_' and '-' become spaces, all lowercased. */
static char *words_of_folder_name(const char *name) {
    size_t len = strlen(name);
    char *out = malloc(2 * len + 1);
    if (!out) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (i > 0 && isupper(c) && islower((unsigned char)name[i - 1])) out[n++] = ' ';
        out[n++] = (c == '_' || c == '-') ? ' ' : (char)tolower(c);
    }
    out[n] = '\0';
    return out;
}

mc_status mc_chain_class_prompts(const char *const *folder_names, int n, char ***out) {
    if (!folder_names || n < 1 || !out)
        return mc_error(MC_ERR_ARG, "class prompts: need at least one class name");
    char **names = calloc((size_t)n, sizeof *names);
    if (!names) return mc_error(MC_ERR_NOMEM, "class prompts: out of memory");
    for (int i = 0; i < n; i++) {
        const char *known = mc_chain_eurosat_class_prompt(folder_names[i]);
        names[i] = known ? copy_string(known, strlen(known)) : words_of_folder_name(folder_names[i]);
        if (!names[i]) {
            mc_chain_strings_free(names, n);
            return mc_error(MC_ERR_NOMEM, "class prompts: out of memory");
        }
    }
    *out = names;
    return MC_OK;
}

mc_status mc_chain_split_list(const char *list, char separator, const char *what, char ***out,
                              int *n) {
    if (!list) return mc_error(MC_ERR_ARG, "%s: no list given", what);
    int capacity = 1;
    for (const char *p = list; *p; p++) capacity += *p == separator;
    char **items = calloc((size_t)capacity, sizeof *items);
    if (!items) return mc_error(MC_ERR_NOMEM, "%s: out of memory", what);
    int count = 0;
    const char *start = list;
    for (;;) {
        const char *end = strchr(start, separator);
        if (!end) end = start + strlen(start);
        const char *a = start, *b = end;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        if (a == b) {
            mc_chain_strings_free(items, count);
            return mc_error(MC_ERR_ARG, "%s '%s': item %d is empty (expected items separated by '%c')",
                            what, list, count + 1, separator);
        }
        items[count] = copy_string(a, (size_t)(b - a));
        if (!items[count]) {
            mc_chain_strings_free(items, count);
            return mc_error(MC_ERR_NOMEM, "%s: out of memory", what);
        }
        count++;
        if (!*end) break;
        start = end + 1;
    }
    *out = items;
    *n = count;
    return MC_OK;
}

/* template with its "{}" replaced by name, malloc'd. */
static mc_status fill_template(const char *template_text, const char *name, char **out) {
    const char *hole = strstr(template_text, "{}");
    if (!hole)
        return mc_error(MC_ERR_ARG, "prompt template '%s' has no '{}' where the class name goes",
                        template_text);
    size_t before = (size_t)(hole - template_text), name_len = strlen(name);
    size_t after = strlen(hole + 2);
    char *text = malloc(before + name_len + after + 1);
    if (!text) return mc_error(MC_ERR_NOMEM, "prompts: out of memory");
    memcpy(text, template_text, before);
    memcpy(text + before, name, name_len);
    memcpy(text + before + name_len, hole + 2, after + 1);
    *out = text;
    return MC_OK;
}

/* Token ids of every (class, template) prompt, class-major:
 * ids (n_classes * n_templates, context). */
static mc_status tokenize_prompts(mc_tokenizer *tok, const char *const *class_names, int n_classes,
                                  const char *const *templates, int n_templates, int context,
                                  int32_t *ids) {
    mc_status status = MC_OK;
    for (int c = 0; c < n_classes && status == MC_OK; c++)
        for (int t = 0; t < n_templates && status == MC_OK; t++) {
            char *text = NULL;
            status = fill_template(templates[t], class_names[c], &text);
            if (status == MC_OK)
                status = mc_tokenizer_tokenize(tok, text, context, false,
                                               ids + ((int64_t)c * n_templates + t) * context);
            free(text);
        }
    return status;
}

mc_status mc_chain_text_classifier(mc_clip *clip, mc_tokenizer *tok, const char *const *class_names,
                                   int n_classes, const char *const *templates, int n_templates,
                                   mc_tensor **out) {
    if (!clip || !tok || !class_names || n_classes < 1 || !templates || n_templates < 1 || !out)
        return mc_error(MC_ERR_ARG, "text classifier: need a CLIP, a tokenizer, classes and templates");
    if (!clip->config.has_text)
        return mc_error(MC_ERR_ARG, "text classifier: the CLIP checkpoint has no text tower");
    int context = clip->config.text.context;
    int32_t *ids = malloc((size_t)n_classes * (size_t)n_templates * (size_t)context * sizeof *ids);
    if (!ids) return mc_error(MC_ERR_NOMEM, "text classifier: out of memory");
    mc_status status =
        tokenize_prompts(tok, class_names, n_classes, templates, n_templates, context, ids);
    if (status == MC_OK) {
        /* The tokenizer's ids must exist in the text tower's embedding table
         * (a vocabulary file that does not belong to this CLIP otherwise
         * reads out of bounds). */
        int64_t total = (int64_t)n_classes * n_templates * context;
        for (int64_t i = 0; i < total && status == MC_OK; i++)
            if (ids[i] < 0 || ids[i] >= clip->config.text.vocab)
                status = mc_error(MC_ERR_ARG,
                                  "text classifier: token id %d is outside the CLIP text tower's "
                                  "vocabulary of %d (is the vocabulary file the one of this CLIP?)",
                                  (int)ids[i], clip->config.text.vocab);
    }
    if (status == MC_OK)
        status = mc_clip_class_embeddings(clip, ids, n_classes, n_templates, out);
    free(ids);
    return status;
}

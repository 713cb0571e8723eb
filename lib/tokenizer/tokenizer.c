/* The CLIP tokenizer: merges file -> vocabulary, byte-level BPE, tokenize,
 * decode. The text stages (cleaning, the split pattern) are in
 * tokenizer_text.c; docs/tokenizer.md walks through the whole thing.
 *
 * Facts used (from OpenAI CLIP's clip/simple_tokenizer.py and clip/clip.py,
 * re-implemented, not copied):
 *   - bytes_to_unicode(): the 188 printable bytes '!'..'~', 0xA1..0xAC and
 *     0xAE..0xFF stand for themselves; the other 68 bytes, in increasing
 *     order, stand for U+0100, U+0101, ...; the vocabulary starts with the
 *     stand-ins in that order (printable first).
 *   - vocabulary = stand-ins, stand-ins + "</w>", the first 49152-256-2
 *     merges joined, "<|startoftext|>", "<|endoftext|>" (ids in that order;
 *     a repeated string keeps its last id, as Python's dict does).
 *   - the merges are the lines after line 1 of the merges file.
 * A smaller vocabulary (K merges, from a short merges.txt, a list in memory
 * or mc_tokenizer_train in tokenizer_train.c) is built the same way: the
 * same code, 512 + K + 2 ids. */
#include "mmchain/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "io/json.h"
#include "mmchain/io.h"
#include "tokenizer/tokenizer_hash.h"
#include "core/grow.h"
#include "core/utf8.h"

enum {
    BYTE_STANDINS = 256,
    STANDIN_LIMIT = 0x100 + 68, /* stand-in code points are below this */
    MIN_SLOTS = 1 << 10,        /* the smallest hash table */
    CACHE_MAX_WORDS = 1 << 15,  /* the word cache is emptied when it holds this many */
    MERGES_LINE_MAX = 4096
};

static const char SOT_TEXT[] = "<|startoftext|>";
static const char EOT_TEXT[] = "<|endoftext|>";
static const char END_OF_WORD[] = "</w>";

// ---------------------------------------------------------------------------
// Growable byte pool: strings stored back to back, addressed by offset

typedef struct string_pool {
    char *data;
    size_t len, cap;
} string_pool;

static mc_status pool_add(string_pool *pool, const char *a, size_t a_len, const char *b,
                          size_t b_len, size_t *offset) {
    size_t need = pool->len + a_len + b_len + 1;
    MC_TRY(mc_grow((void **)&pool->data, &pool->cap, need, 1, 1 << 16, "bytes of tokens"));
    *offset = pool->len;
    memcpy(pool->data + pool->len, a, a_len);
    memcpy(pool->data + pool->len + a_len, b, b_len);
    pool->len = need;
    pool->data[need - 1] = '\0';
    return MC_OK;
}

// ---------------------------------------------------------------------------
// The tokenizer

/* A merge rule: the adjacent symbols (left, right) become `merged`; the
 * lowest rank is merged first. */
typedef struct pair_slot {
    int32_t left, right; /* left == -1: empty slot */
    int32_t rank, merged;
} pair_slot;

/* A cached word: its bytes and its ids. */
typedef struct cache_slot {
    char *word; /* NULL: empty slot */
    size_t word_len;
    int32_t *ids;
    int n_ids;
} cache_slot;

struct mc_tokenizer {
    int vocab_size;                      /* 512 + n_merges + 2 */
    int n_merges;
    string_pool pool;                    /* every token's text */
    const char **tokens;                 /* (vocab_size) pointers into pool */
    int32_t *merge_left, *merge_right;   /* (n_merges) the ids merge r joins */
    int32_t *token_slots;                /* (token_mask + 1) token text -> id, -1 empty */
    pair_slot *pairs;                    /* (pair_mask + 1) merge rules by symbol pair */
    uint64_t token_mask, pair_mask;      /* table sizes - 1 (powers of two) */
    int32_t byte_symbol[BYTE_STANDINS];  /* id of byte b's stand-in */
    int32_t byte_symbol_end[BYTE_STANDINS]; /* ... and of stand-in + "</w>" */
    int16_t standin_byte[STANDIN_LIMIT]; /* stand-in code point -> byte, -1 none */
    cache_slot *cache;                   /* (CACHE_SLOTS) */
    long cache_count;
};

enum { CACHE_SLOTS = 2 * CACHE_MAX_WORDS };

/* The stand-in code point of every byte (GPT-2's bytes_to_unicode). Fills
 * order[] with the bytes in vocabulary order. */
static void byte_standins(uint32_t standin[256], uint8_t order[256]) {
    int n = 0, extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (printable) {
            standin[b] = (uint32_t)b;
            order[n++] = (uint8_t)b;
        }
    }
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (!printable) {
            standin[b] = 0x100u + (uint32_t)extra++;
            order[n++] = (uint8_t)b;
        }
    }
}

static int32_t find_token(const mc_tokenizer *tok, const char *text, size_t len) {
    for (uint64_t i = mc_tokenizer_hash_bytes(text, len);; i++) {
        int32_t id = tok->token_slots[i & tok->token_mask];
        if (id < 0) return -1;
        if (strlen(tok->tokens[id]) == len && memcmp(tok->tokens[id], text, len) == 0) return id;
    }
}

/* Insert or overwrite: a repeated text keeps its last id, like dict(zip(vocab, ids)). */
static void add_token(mc_tokenizer *tok, int32_t id) {
    const char *text = tok->tokens[id];
    size_t len = strlen(text);
    for (uint64_t i = mc_tokenizer_hash_bytes(text, len);; i++) {
        int32_t *slot = &tok->token_slots[i & tok->token_mask];
        if (*slot < 0 || strcmp(tok->tokens[*slot], text) == 0) {
            *slot = id;
            return;
        }
    }
}

static const pair_slot *find_pair(const mc_tokenizer *tok, int32_t left, int32_t right) {
    for (uint64_t i = mc_tokenizer_hash_pair(left, right);; i++) {
        const pair_slot *slot = &tok->pairs[i & tok->pair_mask];
        if (slot->left < 0) return NULL;
        if (slot->left == left && slot->right == right) return slot;
    }
}

/* Insert or overwrite: a repeated merge keeps its last rank, like dict(zip(merges, ranks)). */
static void add_pair(mc_tokenizer *tok, int32_t left, int32_t right, int32_t rank, int32_t merged) {
    for (uint64_t i = mc_tokenizer_hash_pair(left, right);; i++) {
        pair_slot *slot = &tok->pairs[i & tok->pair_mask];
        if (slot->left < 0 || (slot->left == left && slot->right == right)) {
            *slot = (pair_slot){left, right, rank, merged};
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Reading the merges file (gzip or plain text, both through zlib)

/* The merges as offsets into a pool: merge r is left[r] and right[r]. */
typedef struct merge_list {
    string_pool text;
    size_t *left, *right; /* (cap) */
    int count, cap;
} merge_list;

static void merge_list_free(merge_list *merges) {
    free(merges->text.data);
    free(merges->left);
    free(merges->right);
    *merges = (merge_list){0};
}

/* Room for one more merge (never more than MC_CLIP_MERGES). */
static mc_status merge_list_reserve(merge_list *merges) {
    if (merges->count < merges->cap) return MC_OK;
    if (merges->count >= MC_CLIP_MERGES)
        return mc_error(MC_ERR_ARG, "tokenizer: more than %d merges", MC_CLIP_MERGES);
    int cap = merges->cap ? 2 * merges->cap : 1024;
    if (cap > MC_CLIP_MERGES) cap = MC_CLIP_MERGES;
    size_t *left = realloc(merges->left, (size_t)cap * sizeof *left);
    if (left) merges->left = left;
    size_t *right = left ? realloc(merges->right, (size_t)cap * sizeof *right) : NULL;
    if (right) merges->right = right;
    if (!left || !right) return mc_error(MC_ERR_NOMEM, "tokenizer: out of memory for %d merges", cap);
    merges->cap = cap;
    return MC_OK;
}

/* Split a merge line on ASCII whitespace (Python's merge.split() for these
 * lines) into exactly two symbols, each stored in the pool. `where` names
 * the line in messages ("merges file 'x' line 5"). */
static mc_status parse_merge_line(const char *where, char *line, merge_list *merges) {
    char *parts[3] = {NULL, NULL, NULL};
    int n_parts = 0;
    for (char *p = line; *p;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f') *p++ = '\0';
        if (!*p) break;
        if (n_parts < 3) parts[n_parts] = p;
        n_parts++;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\v' && *p != '\f') p++;
    }
    if (n_parts != 2)
        return mc_error(MC_ERR_FORMAT,
                        "tokenizer: %s: expected two symbols separated by a space, found %d", where,
                        n_parts);
    char what[1200];
    snprintf(what, sizeof what, "tokenizer: %s", where);
    MC_TRY(merge_list_reserve(merges));
    for (int k = 0; k < 2; k++) {
        MC_TRY(mc_utf8_check(parts[k], strlen(parts[k]), what));
        MC_TRY(pool_add(&merges->text, parts[k], strlen(parts[k]), "", 0,
                        k == 0 ? &merges->left[merges->count] : &merges->right[merges->count]));
    }
    merges->count++;
    return MC_OK;
}

/* Read one line (without its '\n') into buf; false at the end of the file. */
static mc_status read_line(gzFile file, const char *path, long line_number, char *buf, size_t size,
                           bool *got) {
    *got = gzgets(file, buf, (int)size) != NULL;
    int errnum = Z_OK;
    const char *message = gzerror(file, &errnum);
    if (errnum != Z_OK && errnum != Z_STREAM_END)
        return mc_error(MC_ERR_FORMAT, "tokenizer: merges file '%s' is damaged near line %ld: %s", path,
                        line_number, message);
    if (!*got) return MC_OK;
    size_t len = strlen(buf);
    if (len > 0 && buf[len - 1] == '\n') buf[--len] = '\0';
    else if (len == size - 1 && !gzeof(file))
        return mc_error(MC_ERR_FORMAT, "tokenizer: merges file '%s' line %ld is longer than %zu bytes",
                        path, line_number, size - 2);
    return MC_OK;
}

/* How many merges a file must hold follows from its header line:
 *   - OpenAI's file starts "\"bpe_simple_vocab_16e6.txt#version: 0.2": a
 *     file name before "#version" means the full CLIP vocabulary, so fewer
 *     than MC_CLIP_MERGES merges is a truncated file, an error;
 *   - Hugging Face's merges.txt (and ours) starts "#version": any number
 *     of merges is a vocabulary, up to MC_CLIP_MERGES (more are ignored, as
 *     CLIP ignores the rest of OpenAI's 262,144 lines). */
static mc_status read_merges_from(gzFile file, const char *path, merge_list *merges) {
    char line[MERGES_LINE_MAX];
    bool got;
    MC_TRY(read_line(file, path, 1, line, sizeof line, &got));
    if (!got)
        return mc_error(MC_ERR_FORMAT, "tokenizer: merges file '%s' is empty (expected a '#version' "
                        "header line and the merges)", path);
    const char *version = strstr(line, "#version");
    if (!version)
        return mc_error(MC_ERR_FORMAT,
                        "tokenizer: '%s' is not a BPE merges file: line 1 is not a '#version' header "
                        "(expected bpe_simple_vocab_16e6.txt.gz or merges.txt)",
                        path);
    bool full_clip = version != line;
    while (merges->count < MC_CLIP_MERGES) {
        long line_number = merges->count + 2;
        MC_TRY(read_line(file, path, line_number, line, sizeof line, &got));
        if (!got && !full_clip) break;
        if (!got)
            return mc_error(MC_ERR_FORMAT,
                            "tokenizer: merges file '%s' has only %d merges, but its header says it is "
                            "OpenAI's, whose CLIP vocabulary needs %d (truncated?)",
                            path, merges->count, MC_CLIP_MERGES);
        char where[1200];
        snprintf(where, sizeof where, "merges file '%s' line %ld", path, line_number);
        MC_TRY(parse_merge_line(where, line, merges));
    }
    return MC_OK;
}

static mc_status read_merges(const char *path, merge_list *merges) {
    errno = 0;
    gzFile file = gzopen(path, "rb"); /* reads plain text as it is */
    if (!file)
        return mc_error(MC_ERR_IO, "tokenizer: cannot open merges file '%s': %s", path,
                        errno ? strerror(errno) : "out of memory");
    gzbuffer(file, 1 << 16);
    mc_status s = read_merges_from(file, path, merges);
    gzclose(file);
    return s;
}

// ---------------------------------------------------------------------------
// Building the vocabulary

static mc_status add_vocab_entry(mc_tokenizer *tok, size_t offsets[], int32_t id, const char *a,
                                 size_t a_len, const char *b, size_t b_len) {
    return pool_add(&tok->pool, a, a_len, b, b_len, &offsets[id]);
}

static mc_status build_vocabulary(mc_tokenizer *tok, const merge_list *merges, size_t offsets[]) {
    uint32_t standin[256];
    uint8_t order[256];
    byte_standins(standin, order);
    for (int k = 0; k < 2 * BYTE_STANDINS; k++) { /* stand-ins, then stand-ins + "</w>" */
        char utf8[4];
        int n = mc_utf8_encode_one(standin[order[k % BYTE_STANDINS]], utf8);
        MC_TRY(add_vocab_entry(tok, offsets, k, utf8, (size_t)n, END_OF_WORD,
                               k < BYTE_STANDINS ? 0 : strlen(END_OF_WORD)));
    }
    for (int r = 0; r < merges->count; r++) {
        const char *left = merges->text.data + merges->left[r];
        const char *right = merges->text.data + merges->right[r];
        MC_TRY(add_vocab_entry(tok, offsets, 2 * BYTE_STANDINS + r, left, strlen(left), right,
                               strlen(right)));
    }
    MC_TRY(add_vocab_entry(tok, offsets, mc_tokenizer_sot(tok), SOT_TEXT, strlen(SOT_TEXT), "", 0));
    MC_TRY(add_vocab_entry(tok, offsets, mc_tokenizer_eot(tok), EOT_TEXT, strlen(EOT_TEXT), "", 0));
    for (int id = 0; id < tok->vocab_size; id++) tok->tokens[id] = tok->pool.data + offsets[id];
    for (int id = 0; id < tok->vocab_size; id++) add_token(tok, id);

    for (int b = 0; b < 256; b++) { /* ids as the vocabulary (last id wins) spells them */
        char text[8];
        int n = mc_utf8_encode_one(standin[b], text);
        memcpy(text + n, END_OF_WORD, sizeof END_OF_WORD);
        tok->byte_symbol_end[b] = find_token(tok, text, strlen(text));
        tok->byte_symbol[b] = find_token(tok, text, (size_t)n);
        tok->standin_byte[standin[b]] = (int16_t)b;
    }
    return MC_OK;
}

/* `source` names where merge r came from in messages: source + " " +
 * (first_number + r), e.g. "merges file 'x' line 2" for r = 0. */
static mc_status build_merge_rules(mc_tokenizer *tok, const char *source, int first_number,
                                   const merge_list *merges) {
    for (int r = 0; r < merges->count; r++) {
        const char *left = merges->text.data + merges->left[r];
        const char *right = merges->text.data + merges->right[r];
        int32_t left_id = find_token(tok, left, strlen(left));
        int32_t right_id = find_token(tok, right, strlen(right));
        const char *merged_text = tok->tokens[2 * BYTE_STANDINS + r];
        int32_t merged_id = find_token(tok, merged_text, strlen(merged_text));
        if (left_id < 0 || right_id < 0)
            return mc_error(MC_ERR_FORMAT,
                            "tokenizer: %s %d: symbol '%s' is neither a byte symbol nor made by a "
                            "merge",
                            source, first_number + r, left_id < 0 ? left : right);
        add_pair(tok, left_id, right_id, r, merged_id);
        tok->merge_left[r] = left_id;
        tok->merge_right[r] = right_id;
    }
    return MC_OK;
}

/* A power of two at least twice n (hash tables stay at most half full, so
 * probe chains are short). */
static uint64_t table_size(int n) {
    uint64_t size = MIN_SLOTS;
    while (size < 2 * (uint64_t)n) size *= 2;
    return size;
}

/* An empty tokenizer sized for n_merges merges. */
static mc_status tokenizer_alloc(int n_merges, mc_tokenizer **out) {
    mc_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return mc_error(MC_ERR_NOMEM, "tokenizer: out of memory");
    tok->n_merges = n_merges;
    tok->vocab_size = MC_TOKENIZER_BYTE_TOKENS + n_merges + 2;
    tok->token_mask = table_size(tok->vocab_size) - 1;
    tok->pair_mask = table_size(n_merges) - 1;
    tok->tokens = calloc((size_t)tok->vocab_size, sizeof *tok->tokens);
    tok->merge_left = malloc(((size_t)n_merges + 1) * sizeof *tok->merge_left);
    tok->merge_right = malloc(((size_t)n_merges + 1) * sizeof *tok->merge_right);
    tok->token_slots = malloc((tok->token_mask + 1) * sizeof *tok->token_slots);
    tok->pairs = malloc((tok->pair_mask + 1) * sizeof *tok->pairs);
    tok->cache = calloc(CACHE_SLOTS, sizeof *tok->cache);
    if (!tok->tokens || !tok->merge_left || !tok->merge_right || !tok->token_slots || !tok->pairs ||
        !tok->cache) {
        mc_tokenizer_free(tok);
        return mc_error(MC_ERR_NOMEM, "tokenizer: out of memory for its tables");
    }
    for (uint64_t i = 0; i <= tok->token_mask; i++) tok->token_slots[i] = -1;
    for (uint64_t i = 0; i <= tok->pair_mask; i++) tok->pairs[i].left = -1;
    for (int i = 0; i < STANDIN_LIMIT; i++) tok->standin_byte[i] = -1;
    *out = tok;
    return MC_OK;
}

/* The tokenizer of a list of merges; source and first_number name them in
 * messages (build_merge_rules). */
static mc_status tokenizer_build(const merge_list *merges, const char *source, int first_number,
                                 mc_tokenizer **out) {
    mc_tokenizer *tok = NULL;
    MC_TRY(tokenizer_alloc(merges->count, &tok));
    size_t *offsets = malloc((size_t)tok->vocab_size * sizeof *offsets);
    mc_status s = offsets ? MC_OK : mc_error(MC_ERR_NOMEM, "tokenizer: out of memory");
    if (s == MC_OK) s = build_vocabulary(tok, merges, offsets);
    if (s == MC_OK) s = build_merge_rules(tok, source, first_number, merges);
    free(offsets);
    if (s != MC_OK) {
        mc_tokenizer_free(tok);
        return s;
    }
    *out = tok;
    return MC_OK;
}

static mc_status load_merges_file(const char *path, mc_tokenizer **out) {
    merge_list merges = {0};
    mc_status s = read_merges(path, &merges);
    char source[1100];
    snprintf(source, sizeof source, "merges file '%s' line", path);
    if (s == MC_OK) s = tokenizer_build(&merges, source, 2, out); /* merge 0 is on line 2 */
    merge_list_free(&merges);
    return s;
}

mc_status mc_tokenizer_from_merges(const char *const *merges, int n_merges, mc_tokenizer **out) {
    if (!out) return mc_error(MC_ERR_ARG, "tokenizer: output is NULL");
    *out = NULL;
    if (n_merges < 0 || n_merges > MC_CLIP_MERGES || (n_merges > 0 && !merges))
        return mc_error(MC_ERR_ARG, "tokenizer: %d merges (expected 0 to %d, and a list when not 0)",
                        n_merges, MC_CLIP_MERGES);
    merge_list list = {0};
    mc_status s = MC_OK;
    for (int r = 0; r < n_merges && s == MC_OK; r++) {
        char where[64];
        snprintf(where, sizeof where, "merge list entry %d", r);
        if (!merges[r]) {
            s = mc_error(MC_ERR_ARG, "tokenizer: %s is NULL", where);
            break;
        }
        char *line = strdup(merges[r]); /* parse_merge_line cuts it in place */
        s = line ? parse_merge_line(where, line, &list)
                 : mc_error(MC_ERR_NOMEM, "tokenizer: out of memory for %s", where);
        free(line);
    }
    if (s == MC_OK) s = tokenizer_build(&list, "merge list entry", 0, out);
    merge_list_free(&list);
    return s;
}

// ---------------------------------------------------------------------------
// Finding the files: a folder, a merges file, or a vocab.json

static bool is_folder(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* folder + "/" + name into a malloc'ed string; folder "" means ".". */
static mc_status join_path(const char *folder, size_t folder_len, const char *name, char **out) {
    if (folder_len == 0) folder = ".", folder_len = 1;
    size_t len = folder_len + 1 + strlen(name) + 1;
    *out = malloc(len);
    if (!*out) return mc_error(MC_ERR_NOMEM, "tokenizer: out of memory for a path");
    snprintf(*out, len, "%.*s/%s", (int)folder_len, folder, name);
    return MC_OK;
}

static size_t folder_length(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? (size_t)(slash - path) : 0;
}

/* The merges file in a folder: merges.txt, else OpenAI's .gz. */
static mc_status merges_in_folder(const char *folder, size_t folder_len, char **out) {
    static const char *const names[] = {"merges.txt", "bpe_simple_vocab_16e6.txt.gz"};
    for (int k = 0; k < 2; k++) {
        MC_TRY(join_path(folder, folder_len, names[k], out));
        if (is_file(*out)) return MC_OK;
        free(*out);
        *out = NULL;
    }
    return mc_error(MC_ERR_IO, "tokenizer: folder '%.*s' has neither merges.txt nor "
                    "bpe_simple_vocab_16e6.txt.gz", (int)(folder_len ? folder_len : 1),
                    folder_len ? folder : ".");
}

static mc_status resolve_merges_path(const char *path, char **out) {
    size_t len = strlen(path);
    if (is_folder(path)) return merges_in_folder(path, len, out);
    if (len >= 5 && strcmp(path + len - 5, ".json") == 0)
        return merges_in_folder(path, folder_length(path), out);
    *out = strdup(path);
    if (!*out) return mc_error(MC_ERR_NOMEM, "tokenizer: out of memory for a path");
    return MC_OK;
}

/* Check against the vocab.json beside the merges file, when there is one. */
static mc_status check_neighbour_vocab(const mc_tokenizer *tok, const char *merges_path) {
    char *vocab_path = NULL;
    MC_TRY(join_path(merges_path, folder_length(merges_path), "vocab.json", &vocab_path));
    mc_status s = is_file(vocab_path) ? mc_tokenizer_check_vocab_json(tok, vocab_path) : MC_OK;
    free(vocab_path);
    return s;
}

mc_status mc_tokenizer_load(const char *path, mc_tokenizer **out) {
    if (!path || !out) return mc_error(MC_ERR_ARG, "tokenizer: path or output is NULL");
    *out = NULL;
    /* A .json named is the vocabulary to check the merges beside it
     * against: it must be there, and it is the one checked (not whatever
     * vocab.json the folder holds). */
    const size_t len = strlen(path);
    const bool named_json = len >= 5 && strcmp(path + len - 5, ".json") == 0 && !is_folder(path);
    if (named_json && !is_file(path))
        return mc_error(MC_ERR_IO, "tokenizer: %s is not a file (a vocab.json beside merges.txt "
                        "was named)", path);
    char *merges_path = NULL;
    MC_TRY(resolve_merges_path(path, &merges_path));
    mc_tokenizer *tok = NULL;
    mc_status s = load_merges_file(merges_path, &tok);
    if (s == MC_OK)
        s = named_json ? mc_tokenizer_check_vocab_json(tok, path) : check_neighbour_vocab(tok, merges_path);
    free(merges_path);
    if (s != MC_OK) {
        mc_tokenizer_free(tok);
        return s;
    }
    *out = tok;
    return MC_OK;
}

static void cache_clear(mc_tokenizer *tok) {
    for (int i = 0; i < CACHE_SLOTS; i++) {
        free(tok->cache[i].word);
        free(tok->cache[i].ids);
        tok->cache[i] = (cache_slot){0};
    }
    tok->cache_count = 0;
}

void mc_tokenizer_free(mc_tokenizer *tok) {
    if (!tok) return;
    if (tok->cache) cache_clear(tok);
    free(tok->cache);
    free(tok->pairs);
    free(tok->token_slots);
    free(tok->merge_left);
    free(tok->merge_right);
    free(tok->tokens);
    free(tok->pool.data);
    free(tok);
}

// ---------------------------------------------------------------------------
// Checking against vocab.json

static mc_status read_whole_file(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return mc_error(MC_ERR_IO, "tokenizer: cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 20, used = 0;
    char *buf = malloc(cap);
    while (buf) {
        used += fread(buf + used, 1, cap - used, f);
        if (used < cap) break;
        char *grown = realloc(buf, 2 * cap);
        if (!grown) free(buf);
        buf = grown;
        cap *= 2;
    }
    bool failed = buf && ferror(f);
    fclose(f);
    if (!buf) return mc_error(MC_ERR_NOMEM, "tokenizer: out of memory reading '%s'", path);
    if (failed) {
        free(buf);
        return mc_error(MC_ERR_IO, "tokenizer: cannot read '%s'", path);
    }
    *data = buf;
    *len = used;
    return MC_OK;
}

static mc_status compare_vocab(const mc_tokenizer *tok, const char *path, const mc_json *root) {
    if (!root || root->type != MC_JSON_OBJECT)
        return mc_error(MC_ERR_FORMAT, "tokenizer: vocab.json '%s' is not a JSON object of token: id",
                        path);
    if (root->count != tok->vocab_size)
        return mc_error(MC_ERR_FORMAT, "tokenizer: vocab.json '%s' has %d tokens, the merges give %d",
                        path, root->count, tok->vocab_size);
    for (const mc_json *m = root->child; m; m = m->next) {
        if (m->type != MC_JSON_NUMBER || !m->is_int || m->integer < 0 ||
            m->integer >= tok->vocab_size)
            return mc_error(MC_ERR_FORMAT, "tokenizer: vocab.json '%s': token \"%s\" has no id in 0..%d",
                            path, m->key, tok->vocab_size - 1);
        const char *ours = tok->tokens[m->integer];
        if (strlen(ours) != m->key_len || memcmp(ours, m->key, m->key_len) != 0)
            return mc_error(MC_ERR_FORMAT,
                            "tokenizer: vocab.json '%s' disagrees with the merges: id %lld is \"%s\" "
                            "there, \"%s\" here",
                            path, (long long)m->integer, m->key, ours);
    }
    return MC_OK;
}

mc_status mc_tokenizer_check_vocab_json(const mc_tokenizer *tok, const char *vocab_json_path) {
    if (!tok || !vocab_json_path) return mc_error(MC_ERR_ARG, "tokenizer: tokenizer or path is NULL");
    char *text = NULL;
    size_t len = 0;
    MC_TRY(read_whole_file(vocab_json_path, &text, &len));
    mc_json_doc *doc = NULL;
    mc_status s = mc_json_parse(text, len, vocab_json_path, &doc);
    free(text);
    if (s == MC_OK) s = compare_vocab(tok, vocab_json_path, mc_json_root(doc));
    mc_json_free(doc);
    return s;
}

// ---------------------------------------------------------------------------
// Saving: merges.txt and vocab.json, as Hugging Face writes them

static mc_status write_merges(void *ctx, FILE *f) {
    const mc_tokenizer *tok = ctx;
    fputs("#version: 0.2\n", f); /* a bare header: any number of merges (read_merges_from) */
    for (int r = 0; r < tok->n_merges; r++)
        fprintf(f, "%s %s\n", tok->tokens[tok->merge_left[r]], tok->tokens[tok->merge_right[r]]);
    return ferror(f) ? mc_error(MC_ERR_IO, "writing failed: %s", strerror(errno)) : MC_OK;
}

/* A JSON string: tokens hold no control characters (those bytes have
 * stand-ins), so only '"' and '\' need escaping; UTF-8 is written as is. */
static void write_json_string(FILE *f, const char *text) {
    fputc('"', f);
    for (const char *p = text; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

static mc_status write_vocab(void *ctx, FILE *f) {
    const mc_tokenizer *tok = ctx;
    fputc('{', f);
    for (int id = 0; id < tok->vocab_size; id++) {
        if (id) fputc(',', f);
        write_json_string(f, tok->tokens[id]);
        fprintf(f, ":%d", id);
    }
    fputs("}\n", f);
    return ferror(f) ? mc_error(MC_ERR_IO, "writing failed: %s", strerror(errno)) : MC_OK;
}

mc_status mc_tokenizer_save_vocab_json(const mc_tokenizer *tok, const char *path) {
    if (!tok || !path) return mc_error(MC_ERR_ARG, "tokenizer: save got a NULL tokenizer or path");
    mc_status s = mc_write_file_atomic_with(path, write_vocab, (void *)tok);
    return s == MC_OK ? s : mc_error_context(s, "tokenizer: saving the vocabulary to %s: ", path);
}

static bool is_folder(const char *path);
static mc_status join_path(const char *folder, size_t folder_len, const char *name, char **out);

/* A folder gets merges.txt and vocab.json together
 * (mc_write_files_atomic): a failed write of either leaves the old pair.
 * A crash between the two renames leaves a pair that mc_tokenizer_load
 * rejects (the check), never wrong ids. */
static mc_status save_to_folder(const mc_tokenizer *tok, const char *folder) {
    char *merges_path = NULL, *vocab_path = NULL;
    mc_status s = join_path(folder, strlen(folder), "merges.txt", &merges_path);
    if (s == MC_OK) s = join_path(folder, strlen(folder), "vocab.json", &vocab_path);
    if (s == MC_OK) {
        const mc_atomic_file pair[] = {{merges_path, write_merges, (void *)tok},
                                       {vocab_path, write_vocab, (void *)tok}};
        s = mc_write_files_atomic(2, pair);
        if (s != MC_OK) s = mc_error_context(s, "tokenizer: saving into the folder %s: ", folder);
    }
    free(merges_path);
    free(vocab_path);
    return s;
}

mc_status mc_tokenizer_save(const mc_tokenizer *tok, const char *path) {
    if (!tok || !path) return mc_error(MC_ERR_ARG, "tokenizer: save got a NULL tokenizer or path");
    if (is_folder(path)) return save_to_folder(tok, path);
    mc_status s = mc_write_file_atomic_with(path, write_merges, (void *)tok);
    return s == MC_OK ? s : mc_error_context(s, "tokenizer: saving the merges to %s: ", path);
}

// ---------------------------------------------------------------------------
// The vocabulary

int mc_tokenizer_vocab_size(const mc_tokenizer *tok) { return tok ? tok->vocab_size : 0; }

int mc_tokenizer_merge_count(const mc_tokenizer *tok) { return tok ? tok->n_merges : 0; }

/* The specials come last, as in CLIP: eot is the largest id. */
int32_t mc_tokenizer_sot(const mc_tokenizer *tok) { return tok ? tok->vocab_size - 2 : -1; }

int32_t mc_tokenizer_eot(const mc_tokenizer *tok) { return tok ? tok->vocab_size - 1 : -1; }

mc_status mc_tokenizer_merge(const mc_tokenizer *tok, int rank, const char **left, const char **right) {
    if (!tok || !left || !right) return mc_error(MC_ERR_ARG, "tokenizer: merge got a NULL argument");
    if (rank < 0 || rank >= tok->n_merges)
        return mc_error(MC_ERR_ARG, "tokenizer: merge rank %d is outside 0..%d", rank, tok->n_merges - 1);
    *left = tok->tokens[tok->merge_left[rank]];
    *right = tok->tokens[tok->merge_right[rank]];
    return MC_OK;
}

const char *mc_tokenizer_token(const mc_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->vocab_size) return NULL;
    return tok->tokens[id];
}

int32_t mc_tokenizer_token_id(const mc_tokenizer *tok, const char *token) {
    if (!tok || !token) return -1;
    return find_token(tok, token, strlen(token));
}

long mc_tokenizer_cache_count(const mc_tokenizer *tok) { return tok ? tok->cache_count : 0; }

// ---------------------------------------------------------------------------
// BPE of one word

/* symbols: (n) ids of the word's symbols, merged in place; returns the new
 * count. The textbook loop: find the adjacent pair with the lowest merge
 * rank, merge every occurrence of it left to right, repeat until no
 * adjacent pair has a rank. O(n^2) per word, like the reference; words are
 * short and cached. */
static int bpe_merge(const mc_tokenizer *tok, int32_t *symbols, int n) {
    while (n > 1) {
        const pair_slot *best = NULL;
        for (int i = 0; i + 1 < n; i++) {
            const pair_slot *rule = find_pair(tok, symbols[i], symbols[i + 1]);
            if (rule && (!best || rule->rank < best->rank)) best = rule;
        }
        if (!best) break;
        int kept = 0;
        for (int i = 0; i < n;) {
            if (i + 1 < n && symbols[i] == best->left && symbols[i + 1] == best->right) {
                symbols[kept++] = best->merged;
                i += 2;
            } else {
                symbols[kept++] = symbols[i++];
            }
        }
        n = kept;
    }
    return n;
}

/* The ids of one piece of the split (its UTF-8 bytes), without the cache. */
static mc_status bpe_word(const mc_tokenizer *tok, const char *word, size_t len, int32_t **ids,
                          int *n_ids) {
    if (len > INT_MAX / 2)
        return mc_error(MC_ERR_ARG, "tokenizer: a word of %zu bytes is too long", len);
    int32_t *symbols = malloc(len * sizeof *symbols);
    if (!symbols) return mc_error(MC_ERR_NOMEM, "tokenizer: out of memory for a %zu-byte word", len);
    for (size_t i = 0; i < len; i++) { /* bytes -> stand-ins, "</w>" on the last */
        unsigned char b = (unsigned char)word[i];
        symbols[i] = i + 1 == len ? tok->byte_symbol_end[b] : tok->byte_symbol[b];
    }
    *n_ids = bpe_merge(tok, symbols, (int)len);
    *ids = symbols;
    return MC_OK;
}

static cache_slot *cache_find(mc_tokenizer *tok, const char *word, size_t len) {
    for (uint64_t i = mc_tokenizer_hash_bytes(word, len);; i++) {
        cache_slot *slot = &tok->cache[i & (CACHE_SLOTS - 1)];
        if (!slot->word || (slot->word_len == len && memcmp(slot->word, word, len) == 0)) return slot;
    }
}

/* The ids of one word through the cache: *ids points into the cache (or,
 * when the cache could not take it, to *scratch, which the caller frees). */
static mc_status bpe_cached(mc_tokenizer *tok, const char *word, size_t len, const int32_t **ids,
                            int *n_ids, int32_t **scratch) {
    cache_slot *slot = cache_find(tok, word, len);
    if (!slot->word) {
        int32_t *computed = NULL;
        int n = 0;
        MC_TRY(bpe_word(tok, word, len, &computed, &n));
        if (tok->cache_count >= CACHE_MAX_WORDS) { /* bounded memory: start over */
            cache_clear(tok);
            slot = cache_find(tok, word, len);
        }
        char *key = malloc(len + 1);
        if (!key) { /* still correct without caching */
            *scratch = computed;
            *ids = computed;
            *n_ids = n;
            return MC_OK;
        }
        memcpy(key, word, len);
        key[len] = '\0';
        *slot = (cache_slot){key, len, computed, n};
        tok->cache_count++;
    }
    *ids = slot->ids;
    *n_ids = slot->n_ids;
    return MC_OK;
}

// ---------------------------------------------------------------------------
// Text to ids

typedef struct id_list {
    int32_t *ids;
    int n;
    size_t cap;
} id_list;

static mc_status id_list_append(id_list *list, const int32_t *ids, int n) {
    MC_TRY(mc_grow((void **)&list->ids, &list->cap, (size_t)(list->n + n), sizeof *list->ids, 32,
                   "token ids"));
    memcpy(list->ids + list->n, ids, (size_t)n * sizeof *ids);
    list->n += n;
    return MC_OK;
}

/* One piece: the specials by their exact text (the reference seeds its BPE
 * cache with them), everything else by BPE. */
static mc_status encode_piece(mc_tokenizer *tok, const char *piece, size_t len, id_list *out) {
    const int32_t sot = mc_tokenizer_sot(tok), eot = mc_tokenizer_eot(tok);
    if (len == strlen(SOT_TEXT) && memcmp(piece, SOT_TEXT, len) == 0) return id_list_append(out, &sot, 1);
    if (len == strlen(EOT_TEXT) && memcmp(piece, EOT_TEXT, len) == 0) return id_list_append(out, &eot, 1);
    const int32_t *ids = NULL;
    int n = 0;
    int32_t *scratch = NULL;
    MC_TRY(bpe_cached(tok, piece, len, &ids, &n, &scratch));
    mc_status s = id_list_append(out, ids, n);
    free(scratch);
    return s;
}

static mc_status encode_clean(mc_tokenizer *tok, const char *clean, id_list *out) {
    mc_text_span *spans = NULL;
    int n_spans = 0;
    MC_TRY(mc_text_pretokenize(clean, &spans, &n_spans));
    mc_status s = MC_OK;
    for (int k = 0; k < n_spans && s == MC_OK; k++)
        s = encode_piece(tok, clean + spans[k].start, spans[k].length, out);
    free(spans);
    return s;
}

mc_status mc_tokenizer_encode(mc_tokenizer *tok, const char *text, int32_t **ids, int *n_ids) {
    if (!tok || !text || !ids || !n_ids)
        return mc_error(MC_ERR_ARG, "tokenizer: encode got a NULL argument");
    *ids = NULL;
    *n_ids = 0;
    char *clean = NULL;
    MC_TRY(mc_text_clean(text, &clean));
    id_list list = {0};
    mc_status s = encode_clean(tok, clean, &list);
    free(clean);
    if (s != MC_OK) {
        free(list.ids);
        return s;
    }
    *ids = list.ids;
    *n_ids = list.n;
    return MC_OK;
}

mc_status mc_tokenizer_tokenize(mc_tokenizer *tok, const char *text, int context, bool truncate,
                                int32_t *ids) {
    if (!ids) return mc_error(MC_ERR_ARG, "tokenize: output ids is NULL");
    if (context < 2)
        return mc_error(MC_ERR_ARG, "tokenize: context length %d cannot hold sot and eot (need >= 2)",
                        context);
    int32_t *body = NULL;
    int n_body = 0;
    MC_TRY(mc_tokenizer_encode(tok, text, &body, &n_body));
    if (n_body + 2 > context && !truncate) {
        free(body);
        return mc_error(MC_ERR_ARG,
                        "tokenizer: text \"%.60s%s\" is too long for context length %d: %d tokens "
                        "with sot and eot (ask for truncation to keep the first %d and end with eot)",
                        text, strlen(text) > 60 ? "..." : "", context, n_body + 2, context - 1);
    }
    int kept = n_body + 2 > context ? context - 2 : n_body; /* truncation keeps eot last */
    ids[0] = mc_tokenizer_sot(tok);
    if (kept > 0) memcpy(ids + 1, body, (size_t)kept * sizeof *ids); /* body is NULL when empty */
    ids[kept + 1] = mc_tokenizer_eot(tok);
    for (int i = kept + 2; i < context; i++) ids[i] = 0;
    free(body);
    return MC_OK;
}

mc_status mc_tokenizer_tokenize_batch(mc_tokenizer *tok, const char *const *texts, int n,
                                      int context, bool truncate, int32_t *ids) {
    if (n < 0 || (n > 0 && !texts)) return mc_error(MC_ERR_ARG, "tokenize: %d texts, or texts is NULL", n);
    for (int i = 0; i < n; i++) {
        mc_status s = mc_tokenizer_tokenize(tok, texts[i], context, truncate, ids + (size_t)i * (size_t)context);
        if (s != MC_OK) return mc_error_context(s, "text %d of %d: ", i, n);
    }
    return MC_OK;
}

// ---------------------------------------------------------------------------
// Ids to text

typedef struct byte_list {
    char *data;
    size_t len, cap;
} byte_list;

static mc_status bytes_push(byte_list *b, const char *data, size_t len) {
    MC_TRY(mc_grow((void **)&b->data, &b->cap, b->len + len + 1, 1, 256, "bytes of decoded text"));
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return MC_OK;
}

/* A token's raw bytes: each stand-in character back to its byte. */
static mc_status token_bytes(const mc_tokenizer *tok, int32_t id, byte_list *out) {
    const unsigned char *s = (const unsigned char *)tok->tokens[id];
    size_t len = strlen(tok->tokens[id]);
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        int n = mc_utf8_decode_one(s + i, len - i, &cp);
        if (n == 0 || cp >= STANDIN_LIMIT || tok->standin_byte[cp] < 0)
            return mc_error(MC_ERR_FORMAT, "decode: token %d \"%s\" has a character that stands for no byte",
                            id, tok->tokens[id]);
        char byte = (char)tok->standin_byte[cp];
        MC_TRY(bytes_push(out, &byte, 1));
        i += (size_t)n;
    }
    return MC_OK;
}

/* Bytes -> text as Python's .decode("utf-8", errors="replace").replace("</w>", " "). */
static mc_status finish_text(const byte_list *raw, byte_list *text) {
    static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */
    const unsigned char *s = (const unsigned char *)raw->data;
    MC_TRY(bytes_push(text, "", 0));
    for (size_t i = 0; i < raw->len;) {
        uint32_t cp;
        int n = mc_utf8_decode_one(s + i, raw->len - i, &cp);
        if (raw->len - i >= 4 && memcmp(s + i, END_OF_WORD, 4) == 0) {
            MC_TRY(bytes_push(text, " ", 1));
            n = 4;
        } else if (n > 0) {
            MC_TRY(bytes_push(text, (const char *)s + i, (size_t)n));
        } else {
            MC_TRY(bytes_push(text, replacement, 3));
            n = mc_utf8_invalid_length(s + i, raw->len - i);
        }
        i += (size_t)n;
    }
    return MC_OK;
}

mc_status mc_tokenizer_decode(const mc_tokenizer *tok, const int32_t *ids, int n, bool skip_special,
                              char **text) {
    if (!tok || !text || n < 0 || (n > 0 && !ids))
        return mc_error(MC_ERR_ARG, "decode: NULL argument or negative count %d", n);
    *text = NULL;
    byte_list raw = {0}, out = {0};
    mc_status s = MC_OK;
    for (int i = 0; i < n && s == MC_OK; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size) {
            s = mc_error(MC_ERR_ARG, "decode: id %d at position %d is outside the vocabulary 0..%d",
                         ids[i], i, tok->vocab_size - 1);
            break;
        }
        if (skip_special && ids[i] == mc_tokenizer_eot(tok)) break; /* the rest is padding */
        if (skip_special && ids[i] == mc_tokenizer_sot(tok)) continue;
        s = token_bytes(tok, ids[i], &raw);
    }
    if (s == MC_OK) s = finish_text(&raw, &out);
    free(raw.data);
    if (s != MC_OK) {
        free(out.data);
        return s;
    }
    *text = out.data;
    return MC_OK;
}

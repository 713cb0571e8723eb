/* Learning BPE merges from texts: mc_tokenizer_train.
 *
 * The algorithm is byte-pair encoding as Sennrich, Haddow and Birch used it
 * for subword units ("Neural Machine Translation of Rare Words with Subword
 * Units", ACL 2016, Algorithm 1), which is how GPT-2's and CLIP's merges
 * were learned (on bytes, with "</w>" marking word ends in CLIP's case):
 *
 *   1. split the texts into words and count how often each occurs;
 *   2. write every word as its symbols (one per byte, the last with "</w>");
 *   3. count every adjacent symbol pair, each word weighted by its count;
 *   4. the most frequent pair becomes the next merge: in every word, each
 *      occurrence of it (left to right, not overlapping) becomes one new
 *      symbol; repeat from 3 until enough merges, or no pair occurs twice.
 *
 * Step 1 is exactly the tokenizer's own pre-tokenisation: a tokenizer with
 * no merges encodes each piece of the split as its byte symbols, the last
 * one with "</w>" (ids 256..511), so its encode() gives the words already in
 * symbols, and the trainer sees words exactly as tokenizing will. The
 * merges are then handed to mc_tokenizer_from_merges, so a trained
 * tokenizer and one loaded from the saved merges.txt are built by the same
 * code.
 *
 * Choices where the paper leaves freedom:
 *   - ties: the pair whose (left, right) texts, as merges.txt spells them,
 *     sort first (byte order) wins — a total order, so the result does not
 *     depend on the order of the texts or of any hash table;
 *   - pair counts are kept up to date incrementally: only words that
 *     contain the merged pair are recounted.
 *
 * Every merge makes a token text that did not exist before, so the
 * vocabulary has no duplicate strings (tested). Why: suppose a string s were
 * made twice, by (x1, y1) at rank r1 and later by (x2, y2) in a word W. In
 * W, s ends up as whole tokens, and tokens only grow, so until then no
 * token of W crossed the edges of s: the merges W saw inside s depended on
 * s's own symbols only — the same ones as in the word where s was made at
 * r1. So at r1, W's s was also x1 y1 and was merged then. (Base tokens are
 * one character, specials mix letters and punctuation, which the split
 * never puts in one word: no merge can spell either.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmchain/tokenizer.h"
#include "tokenizer/tokenizer_hash.h"

enum { BASE_TOKENS = MC_TOKENIZER_BYTE_TOKENS };

// ---------------------------------------------------------------------------
// The trainer's state

/* A distinct word: its current symbols and how often it occurs. */
typedef struct word {
    int32_t *symbols; /* (n) token ids */
    int n;
    int64_t count;
} word;

/* An adjacent pair and its total count over all words. */
typedef struct pair_count {
    int32_t left, right; /* left == -1: empty slot */
    int64_t count;
} pair_count;

typedef struct trainer {
    mc_tokenizer *base; /* no merges: the split and the byte symbols */

    word *words; /* (n_words) */
    int n_words, words_cap;
    int32_t *word_slots; /* (word_mask + 1) symbols -> word index, -1 empty */
    uint64_t word_mask;

    /* Every token's text by id: the 512 byte symbols, then the merges
     * (512 + rank, as mc_tokenizer_from_merges numbers them). */
    char **texts; /* (n_tokens) */
    int n_tokens, texts_cap;

    pair_count *pairs; /* (pair_mask + 1) */
    uint64_t pair_mask;
    int n_pairs; /* used slots */
} trainer;

static void trainer_free(trainer *t) {
    mc_tokenizer_free(t->base);
    for (int i = 0; i < t->n_words; i++) free(t->words[i].symbols);
    free(t->words);
    free(t->word_slots);
    for (int i = 0; i < t->n_tokens; i++) free(t->texts[i]);
    free(t->texts);
    free(t->pairs);
}

/* A table of `size` int32 slots, all -1. */
static int32_t *new_index_table(uint64_t size) {
    int32_t *slots = malloc(size * sizeof *slots);
    if (slots)
        for (uint64_t i = 0; i < size; i++) slots[i] = -1;
    return slots;
}

// ---------------------------------------------------------------------------
// Token texts (to break ties and to spell the merges)

/* Append a token's text (taken over by the trainer); its id is the next. */
static mc_status add_text(trainer *t, char *text) {
    if (!text) return mc_error(MC_ERR_NOMEM, "tokenizer train: out of memory for a token");
    t->texts[t->n_tokens++] = text;
    return MC_OK;
}

/* Room for the base tokens and every merge; the base texts. */
static mc_status init_texts(trainer *t, int n_merges) {
    t->texts_cap = BASE_TOKENS + n_merges;
    t->texts = calloc((size_t)t->texts_cap, sizeof *t->texts);
    if (!t->texts) return mc_error(MC_ERR_NOMEM, "tokenizer train: out of memory");
    for (int32_t id = 0; id < BASE_TOKENS; id++)
        MC_TRY(add_text(t, strdup(mc_tokenizer_token(t->base, id))));
    return MC_OK;
}

// ---------------------------------------------------------------------------
// Words and their counts

static bool same_symbols(const word *w, const int32_t *symbols, int n) {
    return w->n == n && memcmp(w->symbols, symbols, (size_t)n * sizeof *symbols) == 0;
}

static mc_status grow_words(trainer *t) {
    int cap = t->words_cap ? 2 * t->words_cap : 1024;
    word *words = realloc(t->words, (size_t)cap * sizeof *words);
    uint64_t size = 2 * (uint64_t)cap;
    int32_t *slots = words ? new_index_table(size) : NULL;
    if (words) t->words = words;
    if (!slots) return mc_error(MC_ERR_NOMEM, "tokenizer train: out of memory for %d words", cap);
    free(t->word_slots);
    t->word_slots = slots;
    t->word_mask = size - 1;
    t->words_cap = cap;
    for (int32_t k = 0; k < t->n_words; k++) { /* re-index */
        uint64_t i = mc_tokenizer_hash_bytes(t->words[k].symbols, (size_t)t->words[k].n * sizeof(int32_t));
        while (t->word_slots[i & t->word_mask] >= 0) i++;
        t->word_slots[i & t->word_mask] = k;
    }
    return MC_OK;
}

/* Count one occurrence of the word symbols[0..n). */
static mc_status count_word(trainer *t, const int32_t *symbols, int n) {
    if (t->n_words >= t->words_cap) MC_TRY(grow_words(t)); /* word_slots stays <= half full */
    uint64_t i = mc_tokenizer_hash_bytes(symbols, (size_t)n * sizeof *symbols);
    for (;; i++) {
        int32_t k = t->word_slots[i & t->word_mask];
        if (k < 0) break;
        if (same_symbols(&t->words[k], symbols, n)) {
            t->words[k].count++;
            return MC_OK;
        }
    }
    int32_t *copy = malloc((size_t)n * sizeof *copy);
    if (!copy) return mc_error(MC_ERR_NOMEM, "tokenizer train: out of memory for a %d-byte word", n);
    memcpy(copy, symbols, (size_t)n * sizeof *copy);
    t->words[t->n_words] = (word){copy, n, 1};
    t->word_slots[i & t->word_mask] = t->n_words++;
    return MC_OK;
}

/* The words of one text. The no-merge tokenizer gives one byte symbol per
 * byte and ends every piece of the split with a "</w>" symbol (256..511);
 * ids above 511 are <|startoftext|> / <|endoftext|> pieces, skipped. */
static mc_status count_text_words(trainer *t, const char *text, int index) {
    int32_t *ids = NULL;
    int n = 0;
    mc_status s = mc_tokenizer_encode(t->base, text, &ids, &n);
    if (s != MC_OK) {
        free(ids);
        return mc_error_context(s, "tokenizer train: text %d: ", index);
    }
    int start = 0;
    for (int i = 0; i < n && s == MC_OK; i++) {
        if (ids[i] >= BASE_TOKENS) { /* a special: a piece of its own */
            start = i + 1;
        } else if (ids[i] >= BASE_TOKENS / 2) { /* "</w>": the word ends here */
            s = count_word(t, ids + start, i + 1 - start);
            start = i + 1;
        }
    }
    free(ids);
    return s;
}

// ---------------------------------------------------------------------------
// Pair counts

static pair_count *find_pair_slot(const trainer *t, int32_t left, int32_t right) {
    for (uint64_t i = mc_tokenizer_hash_pair(left, right);; i++) {
        pair_count *slot = &t->pairs[i & t->pair_mask];
        if (slot->left < 0 || (slot->left == left && slot->right == right)) return slot;
    }
}

static mc_status grow_pairs(trainer *t) {
    uint64_t old_size = t->pairs ? t->pair_mask + 1 : 0;
    uint64_t size = old_size ? 2 * old_size : 1 << 12;
    pair_count *old = t->pairs;
    t->pairs = malloc(size * sizeof *t->pairs);
    if (!t->pairs) {
        t->pairs = old;
        return mc_error(MC_ERR_NOMEM, "tokenizer train: out of memory for %llu symbol pairs",
                        (unsigned long long)size);
    }
    t->pair_mask = size - 1;
    for (uint64_t i = 0; i < size; i++) t->pairs[i].left = -1;
    for (uint64_t i = 0; i < old_size; i++)
        if (old[i].left >= 0) *find_pair_slot(t, old[i].left, old[i].right) = old[i];
    free(old);
    return MC_OK;
}

/* Add `delta` to the count of (left, right). Slots are never removed: a
 * pair whose count falls to 0 keeps its slot. */
static mc_status add_pair_count(trainer *t, int32_t left, int32_t right, int64_t delta) {
    if (!t->pairs || 2 * (uint64_t)(t->n_pairs + 1) > t->pair_mask + 1) MC_TRY(grow_pairs(t));
    pair_count *slot = find_pair_slot(t, left, right);
    if (slot->left < 0) {
        *slot = (pair_count){left, right, 0};
        t->n_pairs++;
    }
    slot->count += delta;
    return MC_OK;
}

/* Add sign * (the word's count) for every adjacent pair of the word. */
static mc_status count_word_pairs(trainer *t, const word *w, int sign) {
    for (int i = 0; i + 1 < w->n; i++)
        MC_TRY(add_pair_count(t, w->symbols[i], w->symbols[i + 1], sign * w->count));
    return MC_OK;
}

/* true when a should be merged before b (both with counts >= 2): the larger
 * count, then the (left, right) texts in byte order. */
static bool pair_before(const trainer *t, const pair_count *a, const pair_count *b) {
    if (a->count != b->count) return a->count > b->count;
    int order = strcmp(t->texts[a->left], t->texts[b->left]);
    if (order != 0) return order < 0;
    return strcmp(t->texts[a->right], t->texts[b->right]) < 0;
}

/* The joined text of a pair (malloc'ed). */
static char *join_texts(const trainer *t, const pair_count *p) {
    size_t left_len = strlen(t->texts[p->left]), right_len = strlen(t->texts[p->right]);
    char *joined = malloc(left_len + right_len + 1);
    if (!joined) return NULL;
    memcpy(joined, t->texts[p->left], left_len);
    memcpy(joined + left_len, t->texts[p->right], right_len + 1);
    return joined;
}

/* The next merge: the first pair by pair_before among those that occur at
 * least twice; NULL when there is none. A linear scan: simple, and cheap
 * next to recounting the words. */
static const pair_count *best_pair(const trainer *t) {
    const pair_count *best = NULL;
    for (uint64_t i = 0; i <= t->pair_mask; i++) {
        const pair_count *p = &t->pairs[i];
        if (p->left < 0 || p->count < 2) continue;
        if (!best || pair_before(t, p, best)) best = p;
    }
    return best;
}

// ---------------------------------------------------------------------------
// Merging

static bool word_has_pair(const word *w, int32_t left, int32_t right) {
    for (int i = 0; i + 1 < w->n; i++)
        if (w->symbols[i] == left && w->symbols[i + 1] == right) return true;
    return false;
}

/* Every occurrence of (left, right) in the word, left to right and not
 * overlapping (so "a a a" with (a, a) becomes "aa a"), as bpe_merge does
 * when tokenizing. */
static void merge_in_word(word *w, int32_t left, int32_t right, int32_t merged) {
    int kept = 0;
    for (int i = 0; i < w->n;) {
        if (i + 1 < w->n && w->symbols[i] == left && w->symbols[i + 1] == right) {
            w->symbols[kept++] = merged;
            i += 2;
        } else {
            w->symbols[kept++] = w->symbols[i++];
        }
    }
    w->n = kept;
}

/* Make (left, right) the token `merged` everywhere, keeping pair counts
 * exact: a word that holds the pair takes its pairs out, merges, and puts
 * its new pairs in. */
static mc_status apply_merge(trainer *t, int32_t left, int32_t right, int32_t merged) {
    for (int k = 0; k < t->n_words; k++) {
        word *w = &t->words[k];
        if (!word_has_pair(w, left, right)) continue;
        MC_TRY(count_word_pairs(t, w, -1));
        merge_in_word(w, left, right, merged);
        MC_TRY(count_word_pairs(t, w, +1));
    }
    return MC_OK;
}

/* The learned merges as "left right" lines; *lines[r] malloc'ed. */
static mc_status merge_lines(const trainer *t, const int32_t *merge_pairs, int n, char ***lines) {
    *lines = calloc((size_t)n + 1, sizeof **lines);
    if (!*lines) return mc_error(MC_ERR_NOMEM, "tokenizer train: out of memory");
    for (int r = 0; r < n; r++) {
        const char *left = t->texts[merge_pairs[2 * r]], *right = t->texts[merge_pairs[2 * r + 1]];
        size_t len = strlen(left) + 1 + strlen(right) + 1;
        (*lines)[r] = malloc(len);
        if (!(*lines)[r]) return mc_error(MC_ERR_NOMEM, "tokenizer train: out of memory");
        snprintf((*lines)[r], len, "%s %s", left, right);
    }
    return MC_OK;
}

/* Steps 3-4: learn up to n_merges merges into merge_pairs ((n_merges, 2)
 * token ids); *learned says how many. */
static mc_status learn_merges(trainer *t, int n_merges, int32_t *merge_pairs, int *learned) {
    for (int k = 0; k < t->n_words; k++) MC_TRY(count_word_pairs(t, &t->words[k], +1));
    *learned = 0;
    for (int m = 0; m < n_merges; m++) {
        const pair_count *best = t->pairs ? best_pair(t) : NULL;
        if (!best) break; /* no pair occurs twice: more merges would only memorise words */
        int32_t left = best->left, right = best->right; /* best moves when the table grows */
        MC_TRY(add_text(t, join_texts(t, best)));
        int32_t merged = (int32_t)(t->n_tokens - 1); /* = 512 + m */
        merge_pairs[2 * m] = left;
        merge_pairs[2 * m + 1] = right;
        MC_TRY(apply_merge(t, left, right, merged));
        *learned = m + 1;
    }
    return MC_OK;
}

mc_status mc_tokenizer_train(const char *const *texts, int n_texts, int n_merges,
                             mc_tokenizer **out) {
    if (!out) return mc_error(MC_ERR_ARG, "tokenizer train: output is NULL");
    *out = NULL;
    if (n_texts < 0 || (n_texts > 0 && !texts))
        return mc_error(MC_ERR_ARG, "tokenizer train: %d texts, or texts is NULL", n_texts);
    if (n_merges < 0 || n_merges > MC_CLIP_MERGES)
        return mc_error(MC_ERR_ARG, "tokenizer train: %d merges asked, expected 0 to %d", n_merges,
                        MC_CLIP_MERGES);
    for (int i = 0; i < n_texts; i++)
        if (!texts[i]) return mc_error(MC_ERR_ARG, "tokenizer train: text %d is NULL", i);

    trainer t = {0};
    int32_t *merge_pairs = malloc(((size_t)n_merges + 1) * 2 * sizeof *merge_pairs);
    char **lines = NULL;
    int learned = 0;
    mc_status s = merge_pairs ? MC_OK : mc_error(MC_ERR_NOMEM, "tokenizer train: out of memory");
    if (s == MC_OK) s = mc_tokenizer_from_merges(NULL, 0, &t.base);
    if (s == MC_OK) s = init_texts(&t, n_merges);
    for (int i = 0; i < n_texts && s == MC_OK; i++) s = count_text_words(&t, texts[i], i);
    if (s == MC_OK) s = learn_merges(&t, n_merges, merge_pairs, &learned);
    if (s == MC_OK) s = merge_lines(&t, merge_pairs, learned, &lines);
    if (s == MC_OK) s = mc_tokenizer_from_merges((const char *const *)lines, learned, out);
    for (int r = 0; lines && r < learned; r++) free(lines[r]);
    free(lines);
    free(merge_pairs);
    trainer_free(&t);
    return s;
}

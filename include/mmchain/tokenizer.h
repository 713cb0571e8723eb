/* mmchain — the CLIP tokenizer: text to token ids, exactly as OpenAI CLIP.
 *
 * This is OpenAI CLIP's SimpleTokenizer (clip/simple_tokenizer.py and
 * clip.tokenize), re-implemented from its description (docs/tokenizer.md):
 *
 *   1. clean:     html-unescape twice, strip, collapse whitespace runs to
 *                 one space, lowercase (Python's str.lower rules);
 *   2. split:     CLIP's pattern, tried in this order at each position:
 *                 <|startoftext|> | <|endoftext|> | 's 't 're 've 'm 'll 'd |
 *                 a run of letters \p{L} | ONE number \p{N} |
 *                 a run of anything else that is not whitespace;
 *   3. bytes:     each piece's UTF-8 bytes become printable stand-in
 *                 characters (GPT-2's byte-to-unicode map), "</w>" is put
 *                 on the last one;
 *   4. BPE:       repeatedly merge the adjacent pair with the lowest merge
 *                 rank until none is in the merge list;
 *   5. ids:       look the symbols up in the vocabulary: 256 bytes,
 *                 256 bytes + "</w>", the K merges, then <|startoftext|>
 *                 and <|endoftext|> — for OpenAI's CLIP K = 48,894, a
 *                 49,408-entry vocabulary with sot 49406 and eot 49407;
 *   6. tokenize:  sot + ids + eot, zero-padded to the context length (77);
 *                 too long is an error unless truncation is asked for, which
 *                 keeps the first context-1 tokens and puts eot last.
 *
 * Small vocabularies: any K from 0 to 48,894 works the same way (vocabulary
 * 512 + K + 2, sot = vocabulary - 2, eot = vocabulary - 1: always ask the
 * tokenizer, mc_tokenizer_sot/eot, never use MC_CLIP_SOT/EOT for a tokenizer
 * you did not load from CLIP's files). mc_tokenizer_train learns K merges
 * from your own texts (byte-pair encoding, Sennrich et al. 2016) and
 * mc_tokenizer_save writes them as a Hugging Face merges.txt that
 * mc_tokenizer_load reads back to identical ids.
 *
 *     mc_tokenizer *tok;
 *     MC_TRY(mc_tokenizer_load("bpe_simple_vocab_16e6.txt.gz", &tok));
 *     int32_t ids[MC_CLIP_CONTEXT];
 *     MC_TRY(mc_tokenizer_tokenize(tok, "a photo of a fox", MC_CLIP_CONTEXT, false, ids));
 *     // ids = 49406 320 1125 539 320 3240 49407 0 0 ... 0
 *     mc_tokenizer_free(tok);
 *
 * Text must be valid UTF-8: invalid bytes are an error (MC_ERR_FORMAT,
 * naming the byte and its offset), never silently replaced. The one known
 * difference from the Python tokenizer is that ftfy's text repair is not
 * done (see docs/tokenizer.md). A tokenizer caches the BPE of words it has
 * seen, so one mc_tokenizer must not be used by two threads at once. */
#ifndef MMCHAIN_TOKENIZER_H
#define MMCHAIN_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* OpenAI CLIP's full vocabulary. A tokenizer with fewer merges has its own
 * sizes: use mc_tokenizer_vocab_size / _sot / _eot / _merge_count. */
#define MC_CLIP_VOCAB_SIZE 49408 /* 256 + 256 + 48894 + 2 */
#define MC_CLIP_MERGES 48894     /* merges CLIP uses: 49152 - 256 - 2; the most any tokenizer has */
#define MC_CLIP_SOT 49406        /* <|startoftext|> of the full vocabulary */
#define MC_CLIP_EOT 49407        /* <|endoftext|> of the full vocabulary */
#define MC_CLIP_CONTEXT 77       /* CLIP's text context length */
#define MC_TOKENIZER_BYTE_TOKENS 512 /* 256 byte symbols + the same with "</w>": ids 0..511 */

typedef struct mc_tokenizer mc_tokenizer;

/* ---- loading ---- */

/* Load BPE merges and build the vocabulary. `path` may be
 *   - OpenAI's bpe_simple_vocab_16e6.txt.gz (gzip; line 1 is a header), or
 *   - a Hugging Face merges.txt (plain text, or gzip; line 1 is
 *     "#version: ..."), or
 *   - a folder holding one of those (merges.txt is preferred), or
 *   - a .json file (a vocab.json, by any name), in which case the merges
 *     beside it are read and checked against that file, which must exist.
 * How many merges (the rule, docs/tokenizer.md "Small vocabularies"):
 *   - a header with a file name before "#version" (OpenAI's
 *     "\"bpe_simple_vocab_16e6.txt#version: 0.2") declares CLIP's full
 *     vocabulary: at least MC_CLIP_MERGES merge lines must follow (fewer is
 *     a truncated file: MC_ERR_FORMAT), and the first MC_CLIP_MERGES are used;
 *   - a bare "#version" header (Hugging Face, and what mc_tokenizer_save
 *     writes): every merge line is used, 0 to MC_CLIP_MERGES of them (more:
 *     the first MC_CLIP_MERGES, as CLIP does).
 * Otherwise, when a vocab.json lies in the same folder, the built vocabulary is checked
 * against it (mc_tokenizer_check_vocab_json) — which is also what catches a
 * Hugging Face merges.txt cut short beside its vocab.json. */
mc_status mc_tokenizer_load(const char *path, mc_tokenizer **out);

/* Build a tokenizer from merges in memory, in rank order, each "left right"
 * (two symbols spelled as in merges.txt, e.g. "h e", "he llo</w>").
 * 0 <= n_merges <= MC_CLIP_MERGES. */
mc_status mc_tokenizer_from_merges(const char *const *merges, int n_merges, mc_tokenizer **out);

/* Learn up to n_merges (0..MC_CLIP_MERGES) BPE merges from texts
 * (Sennrich et al. 2016, the way GPT-2's and CLIP's vocabularies were made):
 * the texts go through the same cleaning, split and byte stand-ins as
 * tokenizing ("<|startoftext|>"/"<|endoftext|>" pieces are skipped); each
 * distinct word is weighted by how often it occurs; then, repeatedly, the
 * adjacent symbol pair with the highest total count becomes a merge (ties
 * go to the pair whose (left, right) texts sort first in byte order). It
 * stops early when no pair occurs at least twice; mc_tokenizer_merge_count
 * says how many were learned. Deterministic: the same texts, in any order,
 * give the same merges. Every merge is a new token string. */
mc_status mc_tokenizer_train(const char *const *texts, int n_texts, int n_merges,
                             mc_tokenizer **out);

/* Write the merges as a Hugging Face merges.txt ("#version: 0.2", then one
 * "left right" line per merge in rank order), atomically (temporary file,
 * fsync, rename). When `path` is an existing folder, writes
 * PATH/merges.txt and PATH/vocab.json. mc_tokenizer_load gives back
 * identical ids. */
mc_status mc_tokenizer_save(const mc_tokenizer *tok, const char *path);

/* Write the vocabulary as a Hugging Face vocab.json ({"token": id, ...},
 * ids in order), atomically. */
mc_status mc_tokenizer_save_vocab_json(const mc_tokenizer *tok, const char *path);

/* Check that every entry of a Hugging Face vocab.json ({"token": id, ...})
 * is the same token at the same id here, and that the sizes agree. */
mc_status mc_tokenizer_check_vocab_json(const mc_tokenizer *tok, const char *vocab_json_path);

void mc_tokenizer_free(mc_tokenizer *tok);

/* ---- the vocabulary ---- */

/* 512 + merges + 2 (MC_CLIP_VOCAB_SIZE for CLIP's files); 0 for NULL. */
int mc_tokenizer_vocab_size(const mc_tokenizer *tok);
/* The number of merges K (MC_CLIP_MERGES for CLIP's files). */
int mc_tokenizer_merge_count(const mc_tokenizer *tok);
/* <|startoftext|> = vocab_size - 2 and <|endoftext|> = vocab_size - 1
 * (49406 and 49407 for CLIP's files); -1 for NULL. eot is the largest id,
 * which is how CLIP's text tower finds it. */
int32_t mc_tokenizer_sot(const mc_tokenizer *tok);
int32_t mc_tokenizer_eot(const mc_tokenizer *tok);
/* Merge `rank` (0 <= rank < merge_count): its two symbols' texts, as the
 * merges file spells them. MC_ERR_ARG when out of range. */
mc_status mc_tokenizer_merge(const mc_tokenizer *tok, int rank, const char **left,
                             const char **right);
/* The token string of an id as the vocabulary spells it (byte stand-in
 * characters, "</w>" ending a word), or NULL when out of range. */
const char *mc_tokenizer_token(const mc_tokenizer *tok, int32_t id);
/* The id of a token string, or -1 when it is not in the vocabulary. */
int32_t mc_tokenizer_token_id(const mc_tokenizer *tok, const char *token);
/* Words whose BPE is cached (a word's BPE is computed once). */
long mc_tokenizer_cache_count(const mc_tokenizer *tok);

/* ---- text to ids ---- */

/* The BPE ids of `text` without sot/eot or padding, as CLIP's
 * SimpleTokenizer.encode. *ids is malloc'ed (free it; NULL when *n_ids is
 * 0). */
mc_status mc_tokenizer_encode(mc_tokenizer *tok, const char *text, int32_t **ids, int *n_ids);

/* CLIP's tokenize for one text: ids[0..context) = sot, the ids, eot, then
 * zeros. When sot + ids + eot is longer than `context`: MC_ERR_ARG naming the
 * text, or with `truncate` the first context-1 and eot. context >= 2. */
mc_status mc_tokenizer_tokenize(mc_tokenizer *tok, const char *text, int context, bool truncate,
                                int32_t *ids /* (context) */);

/* mc_tokenizer_tokenize for n texts into rows of `ids`. */
mc_status mc_tokenizer_tokenize_batch(mc_tokenizer *tok, const char *const *texts, int n,
                                      int context, bool truncate, int32_t *ids /* (n, context) */);

/* ---- ids to text ---- */

/* Decode ids to UTF-8 text, as CLIP's SimpleTokenizer.decode: the tokens'
 * bytes are joined, invalid UTF-8 becomes U+FFFD (one per maximal invalid
 * sequence), and every "</w>" becomes a space — so "a photo" comes back as
 * "a photo " and specials as "<|startoftext|>". With `skip_special`, sot is
 * dropped and decoding stops at the first eot (so padding is ignored).
 * *text is malloc'ed. */
mc_status mc_tokenizer_decode(const mc_tokenizer *tok, const int32_t *ids, int n,
                              bool skip_special, char **text);

/* ---- the stages, for tests and for readers who want to see each step ---- */

/* Unicode classes of CLIP's pattern: \p{L} (categories L*), \p{N} (N*), and
 * whitespace as Python's str.isspace(). Tables generated from Python's
 * unicodedata by tests/golden/gen_unicode_tables.py. */
bool mc_unicode_is_letter(uint32_t cp);
bool mc_unicode_is_number(uint32_t cp);
bool mc_unicode_is_space(uint32_t cp);
/* Where the tables came from: "Python 3.11.2, Unicode 14.0.0". */
const char *mc_unicode_version(void);

/* MC_OK when text[0..len) is valid UTF-8 (no overlong forms, surrogates or
 * code points above U+10FFFF); otherwise MC_ERR_FORMAT naming `what`, the
 * offending byte and its offset. */
mc_status mc_utf8_check(const char *text, size_t len, const char *what);

/* Python's html.unescape: named references (all HTML5 names, and the legacy
 * ones without ';'), &#NNN; and &#xHH; with HTML5's fix-ups. *out malloc'ed. */
mc_status mc_text_html_unescape(const char *text, char **out);
/* Python's str.lower(), including İ -> i + U+0307 and Greek final sigma. */
mc_status mc_text_lower(const char *text, char **out);
/* CLIP's cleaning: unescape twice, whitespace collapse and strip, lower. */
mc_status mc_text_clean(const char *text, char **out);

/* One piece of CLIP's split: text[start, start + length). */
typedef struct mc_text_span {
    size_t start, length;
} mc_text_span;
/* Split (already cleaned) text with CLIP's pattern. *spans is malloc'ed
 * (NULL when *n_spans is 0). */
mc_status mc_text_pretokenize(const char *text, mc_text_span **spans, int *n_spans);

#ifdef __cplusplus
}
#endif
#endif

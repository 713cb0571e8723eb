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
 *   5. ids:       look the symbols up in the 49,408-entry vocabulary
 *                 (256 bytes, 256 bytes + "</w>", 48,894 merges, then
 *                 <|startoftext|> 49406 and <|endoftext|> 49407);
 *   6. tokenize:  sot + ids + eot, zero-padded to the context length (77);
 *                 too long is an error unless truncation is asked for, which
 *                 keeps the first context-1 tokens and puts eot last.
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

#define MC_CLIP_VOCAB_SIZE 49408 /* 256 + 256 + 48894 + 2 */
#define MC_CLIP_MERGES 48894     /* merges CLIP uses: 49152 - 256 - 2 */
#define MC_CLIP_SOT 49406        /* <|startoftext|> */
#define MC_CLIP_EOT 49407        /* <|endoftext|> */
#define MC_CLIP_CONTEXT 77       /* CLIP's text context length */

typedef struct mc_tokenizer mc_tokenizer;

/* ---- loading ---- */

/* Load CLIP's BPE merges and build the vocabulary. `path` may be
 *   - OpenAI's bpe_simple_vocab_16e6.txt.gz (gzip; line 1 is a header), or
 *   - a Hugging Face merges.txt (plain text; line 1 is "#version: ..."), or
 *   - a folder holding one of those (merges.txt is preferred), or
 *   - a vocab.json, in which case the merges.txt beside it is read.
 * The first MC_CLIP_MERGES merge lines are used; fewer is an error. When a
 * vocab.json lies in the same folder, the built vocabulary is checked
 * against it (mc_tokenizer_check_vocab_json). */
mc_status mc_tokenizer_load(const char *path, mc_tokenizer **out);

/* Check that every entry of a Hugging Face vocab.json ({"token": id, ...})
 * is the same token at the same id here, and that the sizes agree. */
mc_status mc_tokenizer_check_vocab_json(const mc_tokenizer *tok, const char *vocab_json_path);

void mc_tokenizer_free(mc_tokenizer *tok);

/* ---- the vocabulary ---- */

/* MC_CLIP_VOCAB_SIZE. */
int mc_tokenizer_vocab_size(const mc_tokenizer *tok);
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

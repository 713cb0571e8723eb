/* The CLIP tokenizer's text stages: UTF-8, Unicode classes, HTML unescape,
 * cleaning, lowercasing and CLIP's pre-tokenisation pattern.
 *
 * Everything here mirrors what OpenAI's Python tokenizer gets from Python's
 * standard library and the `regex` module; the tables that carry Python's
 * Unicode knowledge are generated (tokenizer_tables.c). The BPE itself is in
 * tokenizer.c. Internally text is an array of code points (cp_text), which
 * is what Python's str is, so "32 characters" or "the previous character"
 * mean the same thing here as there. */
#include "mmchain/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_tables.h"
#include "core/grow.h"
#include "core/utf8.h"

// ---------------------------------------------------------------------------
// UTF-8 (the decoder itself is lib/core/utf8.c)

mc_status mc_utf8_check(const char *text, size_t len, const char *what) {
    if (!text) return mc_error(MC_ERR_ARG, "%s: text is NULL", what);
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int n = mc_utf8_decode_one(s + i, len - i, &cp);
        if (n == 0)
            return mc_error(MC_ERR_FORMAT,
                            "%s: text is not valid UTF-8: byte 0x%02x at offset %zu %s", what,
                            s[i], i,
                            (s[i] >= 0x80 && s[i] < 0xC0) ? "is a stray continuation byte"
                                                          : "does not start a well-formed sequence");
        i += (size_t)n;
    }
    return MC_OK;
}

// ---------------------------------------------------------------------------
// Unicode classes (binary search over the generated range tables)

static bool in_ranges(const mc_cp_range *ranges, int count, uint32_t cp) {
    int lo = 0, hi = count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (cp < ranges[mid].first) hi = mid - 1;
        else if (cp > ranges[mid].last) lo = mid + 1;
        else return true;
    }
    return false;
}

bool mc_unicode_is_letter(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z'; /* the common case */
    return in_ranges(mc_unicode_letters, mc_unicode_letters_count, cp);
}

bool mc_unicode_is_number(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    return in_ranges(mc_unicode_numbers, mc_unicode_numbers_count, cp);
}

bool mc_unicode_is_space(uint32_t cp) {
    return in_ranges(mc_unicode_spaces, mc_unicode_spaces_count, cp);
}

const char *mc_unicode_version(void) { return mc_unicode_tables_version; }

/* str.lower() of one code point (not U+0130 or U+03A3: see text_lower). */
static uint32_t lower_one(uint32_t cp) {
    int lo = 0, hi = mc_unicode_lower_runs_count - 1, found = -1;
    while (lo <= hi) { /* the last run starting at or before cp */
        int mid = lo + (hi - lo) / 2;
        if (mc_unicode_lower_runs[mid].first <= cp) {
            found = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    if (found < 0) return cp;
    const mc_lower_run *run = &mc_unicode_lower_runs[found];
    if (cp > run->last || (cp - run->first) % (uint32_t)run->step != 0) return cp;
    return (uint32_t)((int64_t)cp + run->delta);
}

// ---------------------------------------------------------------------------
// Text as code points

typedef struct cp_text {
    uint32_t *cp;
    size_t n, cap;
} cp_text;

static void cp_free(cp_text *t) {
    free(t->cp);
    t->cp = NULL;
    t->n = t->cap = 0;
}

static mc_status cp_push(cp_text *t, uint32_t cp) {
    MC_TRY(mc_grow((void **)&t->cp, &t->cap, t->n + 1, sizeof *t->cp, 64, "characters"));
    t->cp[t->n++] = cp;
    return MC_OK;
}

static mc_status cp_push_utf8(cp_text *t, const char *utf8) {
    const unsigned char *s = (const unsigned char *)utf8;
    size_t len = strlen(utf8);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int n = mc_utf8_decode_one(s + i, len - i, &cp);
        if (n == 0) return mc_error(MC_ERR_FORMAT, "tokenizer: internal table text is not UTF-8");
        MC_TRY(cp_push(t, cp));
        i += (size_t)n;
    }
    return MC_OK;
}

/* Checked UTF-8 -> code points; `what` names the text in errors. */
static mc_status cp_from_utf8(const char *text, const char *what, cp_text *out) {
    MC_TRY(mc_utf8_check(text, strlen(text), what));
    mc_status s = cp_push_utf8(out, text);
    if (s != MC_OK) cp_free(out);
    return s;
}

static mc_status cp_to_utf8(const cp_text *t, char **out) {
    char *text = malloc(4 * t->n + 1);
    if (!text) return mc_error(MC_ERR_NOMEM, "tokenizer: out of memory for %zu characters", t->n);
    size_t len = 0;
    for (size_t i = 0; i < t->n; i++) len += (size_t)mc_utf8_encode_one(t->cp[i], text + len);
    text[len] = '\0';
    *out = text;
    return MC_OK;
}

/* Run a code-point stage on a UTF-8 string. */
typedef mc_status (*cp_stage)(const cp_text *in, cp_text *out);

static mc_status run_stage(const char *text, const char *what, cp_stage stage, char **out) {
    if (!out) return mc_error(MC_ERR_ARG, "%s: output pointer is NULL", what);
    *out = NULL;
    cp_text in = {0}, result = {0};
    MC_TRY(cp_from_utf8(text, what, &in));
    mc_status s = stage(&in, &result);
    if (s == MC_OK) s = cp_to_utf8(&result, out);
    cp_free(&in);
    cp_free(&result);
    return s;
}

// ---------------------------------------------------------------------------
// HTML unescape, as Python's html.unescape: the pattern
//     &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
// replaced left to right, and what each match becomes.

enum { HTML_NAME_MAX = 32 }; /* a named reference is at most 32 characters (+ ';') */

static int hex_value(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (int)((c | 0x20) - 'a' + 10);
    return -1;
}

/* The text a numeric reference becomes (HTML5's rules, as html.unescape). */
static mc_status emit_charref(cp_text *out, uint32_t number) {
    for (int i = 0; i < mc_html_charref_fixes_count; i++)
        if (mc_html_charref_fixes[i].number == number)
            return cp_push(out, mc_html_charref_fixes[i].replacement);
    if ((number >= 0xD800 && number <= 0xDFFF) || number > 0x10FFFF) return cp_push(out, 0xFFFD);
    if (in_ranges(mc_html_dropped_codepoints, mc_html_dropped_codepoints_count, number)) return MC_OK;
    return cp_push(out, number);
}

/* &#NNN; or &#xHH; at in[at] ('&'); returns the characters consumed, 0 when
 * there is none. Numbers saturate just above U+10FFFF (Python's int never
 * overflows; anything that large becomes U+FFFD either way). */
static size_t numeric_reference(const cp_text *in, size_t at, cp_text *out, mc_status *s) {
    size_t i = at + 1;
    if (i >= in->n || in->cp[i] != '#') return 0;
    i++;
    int base = 10;
    if (i < in->n && (in->cp[i] == 'x' || in->cp[i] == 'X')) {
        base = 16;
        i++;
    }
    size_t first_digit = i;
    uint32_t number = 0;
    for (; i < in->n; i++) {
        int digit = base == 16 ? hex_value(in->cp[i])
                               : (in->cp[i] >= '0' && in->cp[i] <= '9' ? (int)(in->cp[i] - '0') : -1);
        if (digit < 0) break;
        number = number > 0x10FFFF ? 0x110000 : number * (uint32_t)base + (uint32_t)digit;
    }
    if (i == first_digit) return 0;
    if (i < in->n && in->cp[i] == ';') i++;
    *s = emit_charref(out, number);
    return i - at;
}

static int entity_compare(const void *key, const void *element) {
    return strcmp((const char *)key, ((const mc_html_entity *)element)->name);
}

/* The entity named by name[0..len) (ASCII), or NULL. */
static const mc_html_entity *find_entity(const uint32_t *name, size_t len) {
    char key[HTML_NAME_MAX + 2];
    if (len > HTML_NAME_MAX + 1) return NULL;
    for (size_t i = 0; i < len; i++) {
        if (name[i] >= 0x80) return NULL; /* every HTML5 name is ASCII */
        key[i] = (char)name[i];
    }
    key[len] = '\0';
    return bsearch(key, mc_html_entities, (size_t)mc_html_entities_count, sizeof mc_html_entities[0],
                   entity_compare);
}

static bool ends_entity_name(uint32_t c) {
    return c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' ||
           c == ';';
}

/* A named reference at in[at] ('&'): the name is the longest run (<= 32) of
 * characters that may be in one, plus a ';' after it. An exact match wins;
 * otherwise the longest known prefix of at least 2 characters (the legacy
 * names like "&amp" that need no ';'), the rest kept; otherwise the text
 * stays as it was. Returns the characters consumed (0: no name here). */
static size_t named_reference(const cp_text *in, size_t at, cp_text *out, mc_status *s) {
    size_t start = at + 1, end = start;
    while (end < in->n && end - start < HTML_NAME_MAX && !ends_entity_name(in->cp[end])) end++;
    if (end == start) return 0;
    if (end < in->n && in->cp[end] == ';') end++;
    size_t len = end - start;
    const uint32_t *name = in->cp + start;
    const mc_html_entity *entity = find_entity(name, len);
    size_t used = len; /* characters of the name the entity replaces */
    for (size_t prefix = len - 1; !entity && prefix >= 2; prefix--) {
        entity = find_entity(name, prefix);
        used = prefix;
    }
    *s = entity ? cp_push_utf8(out, entity->utf8) : cp_push(out, '&');
    for (size_t i = entity ? used : 0; *s == MC_OK && i < len; i++) *s = cp_push(out, name[i]);
    return len + 1;
}

static mc_status html_unescape_stage(const cp_text *in, cp_text *out) {
    for (size_t i = 0; i < in->n;) {
        mc_status s = MC_OK;
        size_t used = 0;
        if (in->cp[i] == '&') {
            used = numeric_reference(in, i, out, &s);
            if (used == 0) used = named_reference(in, i, out, &s);
        }
        if (used == 0) {
            s = cp_push(out, in->cp[i]);
            used = 1;
        }
        MC_TRY(s);
        i += used;
    }
    return MC_OK;
}

mc_status mc_text_html_unescape(const char *text, char **out) {
    return run_stage(text, "html unescape", html_unescape_stage, out);
}

// ---------------------------------------------------------------------------
// Lowercase, as Python's str.lower(): the simple mapping of each code point,
// plus the two rules Python applies beyond it:
//   U+0130 (capital I with dot above) -> "i" U+0307 (SpecialCasing.txt);
//   U+03A3 (capital sigma) -> final sigma U+03C2 when a cased letter comes
//   before it (skipping case-ignorable ones such as accents and
//   apostrophes) and none comes after it; U+03C3 otherwise.

static bool is_case_ignorable(uint32_t cp) {
    return in_ranges(mc_unicode_case_ignorable, mc_unicode_case_ignorable_count, cp);
}

static bool is_cased(uint32_t cp) { return in_ranges(mc_unicode_cased, mc_unicode_cased_count, cp); }

static uint32_t lower_sigma(const cp_text *in, size_t at) {
    size_t j = at;
    while (j > 0 && is_case_ignorable(in->cp[j - 1])) j--;
    if (j == 0 || !is_cased(in->cp[j - 1])) return 0x03C3;
    j = at + 1;
    while (j < in->n && is_case_ignorable(in->cp[j])) j++;
    return (j < in->n && is_cased(in->cp[j])) ? 0x03C3 : 0x03C2;
}

static mc_status lower_stage(const cp_text *in, cp_text *out) {
    for (size_t i = 0; i < in->n; i++) {
        uint32_t cp = in->cp[i];
        if (cp == 0x0130) {
            MC_TRY(cp_push(out, 'i'));
            MC_TRY(cp_push(out, 0x0307));
        } else if (cp == 0x03A3) {
            MC_TRY(cp_push(out, lower_sigma(in, i)));
        } else {
            MC_TRY(cp_push(out, lower_one(cp)));
        }
    }
    return MC_OK;
}

mc_status mc_text_lower(const char *text, char **out) {
    return run_stage(text, "lowercase", lower_stage, out);
}

// ---------------------------------------------------------------------------
// Cleaning, as CLIP's basic_clean + whitespace_clean + lower():
//     html.unescape(html.unescape(text)).strip()
//     re.sub(r"\s+", " ", text).strip()
//     .lower()
// Strip-then-collapse-then-strip is the same as splitting on whitespace runs
// and joining the parts with one space.

static mc_status collapse_whitespace_stage(const cp_text *in, cp_text *out) {
    bool pending_space = false;
    for (size_t i = 0; i < in->n; i++) {
        if (mc_unicode_is_space(in->cp[i])) {
            pending_space = out->n > 0; /* no space at the start */
            continue;
        }
        if (pending_space) MC_TRY(cp_push(out, ' '));
        pending_space = false;
        MC_TRY(cp_push(out, in->cp[i]));
    }
    return MC_OK; /* a trailing run is never written */
}

static mc_status clean_stage(const cp_text *in, cp_text *out) {
    cp_text once = {0}, twice = {0}, collapsed = {0};
    mc_status s = html_unescape_stage(in, &once);
    if (s == MC_OK) s = html_unescape_stage(&once, &twice);
    if (s == MC_OK) s = collapse_whitespace_stage(&twice, &collapsed);
    if (s == MC_OK) s = lower_stage(&collapsed, out);
    cp_free(&once);
    cp_free(&twice);
    cp_free(&collapsed);
    return s;
}

mc_status mc_text_clean(const char *text, char **out) {
    return run_stage(text, "tokenizer", clean_stage, out);
}

// ---------------------------------------------------------------------------
// CLIP's pre-tokenisation pattern (compiled in Python with IGNORECASE):
//     <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// findall semantics: at each position the first alternative that matches
// wins, taking as much as it can; where none matches (whitespace) the scan
// moves one character on.

/* Length of `literal` (lowercase ASCII) at s[0..len) compared without case
 * as the pattern's IGNORECASE does: ASCII letters in either case, and 's'
 * also matching U+017F (long s, which case-folds to 's'). 0 if no match. */
static size_t match_ignore_case(const char *s, size_t len, const char *literal) {
    size_t i = 0;
    for (; *literal; literal++) {
        if (i < len && (s[i] == *literal || ((s[i] | 0x20) == *literal && *literal >= 'a' &&
                                             *literal <= 'z'))) {
            i += 1;
        } else if (*literal == 's' && i + 1 < len && (unsigned char)s[i] == 0xC5 &&
                   (unsigned char)s[i + 1] == 0xBF) {
            i += 2;
        } else {
            return 0;
        }
    }
    return i;
}

/* The first alternative among the specials and contractions at s: its
 * length in bytes, or 0. */
static size_t match_literal(const char *s, size_t len) {
    static const char *const literals[] = {"<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re",
                                           "'ve", "'m", "'ll", "'d"};
    for (size_t k = 0; k < sizeof literals / sizeof literals[0]; k++) {
        size_t n = match_ignore_case(s, len, literals[k]);
        if (n) return n;
    }
    return 0;
}

typedef enum char_class { CLASS_SPACE, CLASS_LETTER, CLASS_NUMBER, CLASS_OTHER } char_class;

/* As the reference pattern, compiled by the `regex` module with
 * IGNORECASE, classes a character. Two differ from the tables: U+0345
 * (combining ypogegrammeni, a mark) case-folds to a letter, iota, so
 * under IGNORECASE it is out of [^\s\p{L}\p{N}] while not in [\p{L}]:
 * no alternative matches it, and it is dropped between pieces like a
 * space. U+001C..U+001F are not White_Space to `regex`'s \s (they are to
 * Python's str methods, so the cleaning step turns them into spaces first:
 * this shows only in mc_text_pretokenize called directly). Compared once
 * over every code point of Unicode 14.0 with regex 2026.5.9: the same
 * pieces (tests/test_tokenizer.c keeps the cases that differed). */
static char_class classify(uint32_t cp) {
    if (cp == 0x0345) return CLASS_SPACE;
    if (cp >= 0x1C && cp <= 0x1F) return CLASS_OTHER;
    if (mc_unicode_is_letter(cp)) return CLASS_LETTER;
    if (mc_unicode_is_number(cp)) return CLASS_NUMBER;
    if (mc_unicode_is_space(cp)) return CLASS_SPACE;
    return CLASS_OTHER;
}

/* Bytes from s[0] while the characters are of class `cls`. */
static size_t run_length(const unsigned char *s, size_t len, char_class cls) {
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int n = mc_utf8_decode_one(s + i, len - i, &cp);
        if (n == 0 || classify(cp) != cls) break;
        i += (size_t)n;
    }
    return i;
}

static mc_status push_span(mc_text_span **spans, int *n, size_t *cap, size_t start, size_t length) {
    MC_TRY(mc_grow((void **)spans, cap, (size_t)*n + 1, sizeof **spans, 16, "pretokenized pieces"));
    (*spans)[(*n)++] = (mc_text_span){start, length};
    return MC_OK;
}

static mc_status pretokenize_checked(const char *text, size_t len, mc_text_span **spans,
                                     int *n_spans) {
    size_t cap = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t pos = 0; pos < len;) {
        uint32_t cp;
        int cp_len = mc_utf8_decode_one(s + pos, len - pos, &cp);
        size_t length = match_literal(text + pos, len - pos);
        char_class cls = classify(cp);
        if (length == 0 && cls == CLASS_NUMBER) length = (size_t)cp_len; /* one digit at a time */
        else if (length == 0 && cls != CLASS_SPACE) length = run_length(s + pos, len - pos, cls);
        if (length == 0) {
            pos += (size_t)cp_len; /* whitespace separates pieces and is dropped */
            continue;
        }
        MC_TRY(push_span(spans, n_spans, &cap, pos, length));
        pos += length;
    }
    return MC_OK;
}

mc_status mc_text_pretokenize(const char *text, mc_text_span **spans, int *n_spans) {
    if (!spans || !n_spans) return mc_error(MC_ERR_ARG, "pretokenize: output pointer is NULL");
    *spans = NULL;
    *n_spans = 0;
    size_t len = text ? strlen(text) : 0;
    MC_TRY(mc_utf8_check(text, len, "pretokenize"));
    mc_status s = pretokenize_checked(text, len, spans, n_spans);
    if (s != MC_OK) {
        free(*spans);
        *spans = NULL;
        *n_spans = 0;
    }
    return s;
}

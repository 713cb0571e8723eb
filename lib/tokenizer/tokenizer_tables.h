/* The generated tables behind the CLIP tokenizer (internal).
 *
 * lib/tokenizer/tokenizer_tables.c is written by tests/golden/gen_unicode_tables.py
 * from Python's own unicodedata, str.isspace/str.lower and html modules, so
 * that the C tokenizer classifies, lowercases and unescapes text exactly as
 * OpenAI's Python tokenizer does on that Python (version in
 * mc_unicode_tables_version). Regenerate, never edit. */
#ifndef MMCHAIN_LIB_TOKENIZER_TOKENIZER_TABLES_H
#define MMCHAIN_LIB_TOKENIZER_TOKENIZER_TABLES_H

#include <stdint.h>

/* An inclusive range of code points; tables are sorted and disjoint. */
typedef struct mc_cp_range {
    uint32_t first, last;
} mc_cp_range;

/* Code points first, first+step, ..., last lowercase to (code point + delta). */
typedef struct mc_lower_run {
    uint32_t first, last;
    int32_t step, delta;
} mc_lower_run;

/* An HTML named character reference: the name after '&' (with its ';' when
 * the reference needs one) and its replacement text in UTF-8. */
typedef struct mc_html_entity {
    const char *name;
    const char *utf8;
} mc_html_entity;

/* A numeric reference that html.unescape replaces by another code point. */
typedef struct mc_charref_fix {
    uint32_t number, replacement;
} mc_charref_fix;

extern const char mc_unicode_tables_version[];

extern const mc_cp_range mc_unicode_letters[];        /* \p{L} */
extern const int mc_unicode_letters_count;
extern const mc_cp_range mc_unicode_numbers[];        /* \p{N} */
extern const int mc_unicode_numbers_count;
extern const mc_cp_range mc_unicode_spaces[];         /* str.isspace() */
extern const int mc_unicode_spaces_count;
extern const mc_cp_range mc_unicode_cased[];          /* final sigma: cased */
extern const int mc_unicode_cased_count;
extern const mc_cp_range mc_unicode_case_ignorable[]; /* final sigma: skipped */
extern const int mc_unicode_case_ignorable_count;
extern const mc_lower_run mc_unicode_lower_runs[];    /* str.lower(), sorted by first */
extern const int mc_unicode_lower_runs_count;

extern const mc_html_entity mc_html_entities[];       /* sorted by name (bytewise) */
extern const int mc_html_entities_count;
extern const mc_charref_fix mc_html_charref_fixes[];  /* sorted by number */
extern const int mc_html_charref_fixes_count;
extern const mc_cp_range mc_html_dropped_codepoints[];
extern const int mc_html_dropped_codepoints_count;

#endif

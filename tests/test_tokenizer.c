/* The CLIP tokenizer's stages, and BPE on a synthetic merges file written
 * by the test — nothing here needs the real CLIP files (those are in
 * test_tokenizer_golden.c).
 *
 * Expected values are facts of the Unicode standard, the WHATWG HTML
 * entity list, Python's documented str/html behaviour (cited per test),
 * CLIP's published split pattern, or hand-derived BPE on the tiny merge
 * list below. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "testutil.h"

// ---- Unicode classes ----

START_TEST(test_letters) {
    const uint32_t letters[] = {'a', 'Z', 0x00E9 /* é */, 0x00DF /* ß */, 0x0416 /* Ж */,
                                0x03B1 /* α */, 0x05D0 /* א */, 0x0627 /* ا */, 0x6771 /* 東 */,
                                0x30FC /* ー, Lm */, 0xAC00 /* 가 */, 0x01C5 /* ǅ, Lt */,
                                0x02B0 /* ʰ, Lm */, 0x1D400 /* 𝐀 */, 0x017F /* ſ */};
    for (size_t i = 0; i < sizeof letters / sizeof letters[0]; i++)
        ck_assert_msg(mc_unicode_is_letter(letters[i]), "U+%04X is a letter", letters[i]);
    const uint32_t not_letters[] = {'0', '!', ' ', '_', 0x00B2 /* ² */, 0x0301 /* combining acute, Mn */,
                                    0x1F600 /* 😀 */, 0xFE0F /* variation selector */, 0x2160 /* Ⅰ, Nl */,
                                    0x00D7 /* × */, 0x3000, 0x10FFFF};
    for (size_t i = 0; i < sizeof not_letters / sizeof not_letters[0]; i++)
        ck_assert_msg(!mc_unicode_is_letter(not_letters[i]), "U+%04X is not a letter", not_letters[i]);
}
END_TEST

START_TEST(test_numbers_and_spaces) {
    const uint32_t numbers[] = {'0', '9', 0x00B2 /* ², No */, 0x00BD /* ½ */, 0x0663 /* ٣, Nd */,
                                0x216B /* Ⅻ, Nl */, 0xFF15 /* ５ */, 0x2460 /* ① */, 0x1D7CE /* 𝟎 */};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        ck_assert_msg(mc_unicode_is_number(numbers[i]), "U+%04X is a number", numbers[i]);
    ck_assert(!mc_unicode_is_number('a') && !mc_unicode_is_number('.') && !mc_unicode_is_number(0x4E00));

    /* str.isspace(): bidi WS/B/S or Zs — so the ASCII separators 0x1C..0x1F
     * are spaces and the zero-width space U+200B (Cf) is not */
    const uint32_t spaces[] = {' ', '\t', '\n', '\v', '\f', '\r', 0x1C, 0x1F, 0x85, 0xA0, 0x1680,
                               0x2003, 0x2028, 0x202F, 0x3000};
    for (size_t i = 0; i < sizeof spaces / sizeof spaces[0]; i++)
        ck_assert_msg(mc_unicode_is_space(spaces[i]), "U+%04X is a space", spaces[i]);
    const uint32_t not_spaces[] = {'a', '_', 0x200B, 0xFEFF, 0x180E};
    for (size_t i = 0; i < sizeof not_spaces / sizeof not_spaces[0]; i++)
        ck_assert_msg(!mc_unicode_is_space(not_spaces[i]), "U+%04X is not a space", not_spaces[i]);
    ck_assert(strstr(mc_unicode_version(), "Unicode ") != NULL);
}
END_TEST

// ---- UTF-8 ----

START_TEST(test_utf8_errors) {
    const char *good = "h\xc3\xa9llo \xf0\x9f\x98\x80 \xe6\x9d\xb1";
    MC_CHECK_OK(mc_utf8_check(good, strlen(good), "t"));
    MC_CHECK_FAILS(mc_utf8_check("abc\xff", 4, "text"), MC_ERR_FORMAT, "byte 0xff at offset 3");
    MC_CHECK_FAILS(mc_utf8_check("\x80", 1, "text"), MC_ERR_FORMAT, "stray continuation byte");
    MC_CHECK_FAILS(mc_utf8_check("ab\xc3", 3, "text"), MC_ERR_FORMAT, "offset 2"); /* cut short */
    MC_CHECK_FAILS(mc_utf8_check("\xc0\xaf", 2, "text"), MC_ERR_FORMAT, "0xc0");   /* overlong '/' */
    MC_CHECK_FAILS(mc_utf8_check("\xe0\x80\xaf", 3, "text"), MC_ERR_FORMAT, "0xe0"); /* overlong */
    MC_CHECK_FAILS(mc_utf8_check("\xed\xa0\x80", 3, "text"), MC_ERR_FORMAT, "0xed"); /* surrogate */
    MC_CHECK_FAILS(mc_utf8_check("\xf4\x90\x80\x80", 4, "text"), MC_ERR_FORMAT, "0xf4"); /* > 10FFFF */
    char *out = (char *)1;
    MC_CHECK_FAILS(mc_text_clean("fine, then \xfe", &out), MC_ERR_FORMAT, "offset 11");
    ck_assert_ptr_null(out);
    mc_text_span *spans;
    int n;
    MC_CHECK_FAILS(mc_text_pretokenize("x\xe2\x82", &spans, &n), MC_ERR_FORMAT, "offset 1");
    MC_CHECK_FAILS(mc_text_html_unescape("&amp;\xc3(", &out), MC_ERR_FORMAT, "offset 5");
}
END_TEST

/* Assert that the text transform `transform` (named `what` in the message)
 * turns `in` into `expected`. */
static void check_text(const char *what, mc_status (*transform)(const char *, char **),
                       const char *in, const char *expected) {
    char *out;
    MC_CHECK_OK(transform(in, &out));
    ck_assert_msg(strcmp(out, expected) == 0, "%s(\"%s\") = \"%s\", expected \"%s\"", what, in,
                  out, expected);
    free(out);
}

// ---- HTML unescape (Python's html.unescape; names from the WHATWG list) ----

static void check_unescape(const char *in, const char *expected) {
    check_text("unescape", mc_text_html_unescape, in, expected);
}

START_TEST(test_html_unescape) {
    check_unescape("no entities", "no entities");
    check_unescape("&amp; &lt;b&gt; &quot;q&quot; &apos;", "& <b> \"q\" '");
    check_unescape("caf&eacute; &Eacute;&AElig;&szlig;", "caf\xc3\xa9 \xc3\x89\xc3\x86\xc3\x9f");
    check_unescape("&#39;&#x27;&#X41;&#65&#x42", "''AAB");   /* ';' optional on numbers */
    check_unescape("&nbsp;", "\xc2\xa0");
    check_unescape("&NotNestedGreaterGreater;", "\xe2\xaa\xa2\xcc\xb8"); /* two code points */
    check_unescape("&ampx &amp &notit; &copy2021", "&x & \xc2\xacit; \xc2\xa9" "2021"); /* legacy names */
    check_unescape("&unknown; & amp; &; &#; &#x; &#xg; &&amp;", "&unknown; & amp; &; &#; &#x; &#xg; &&");
    check_unescape("&#0;&#xD800;&#x110000;&#99999999999999999999;",
                   "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* -> U+FFFD */
    check_unescape("&#128;&#x9f;&#13;", "\xe2\x82\xac\xc5\xb8\r");      /* C1 read as cp1252 */
    check_unescape("a&#1;b&#xb;c&#xFFFF;d", "abcd");                      /* dropped */
    check_unescape("&amp;amp;", "&amp;");                                 /* one pass only */
    check_unescape("&\xc3\xa9t\xc3\xa9;", "&\xc3\xa9t\xc3\xa9;");         /* non-ASCII name */
    /* a name is at most 32 characters: the 33rd ends it */
    check_unescape("&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;", "&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;");
}
END_TEST

// ---- lowercase (Python's str.lower) ----

static void check_lower(const char *in, const char *expected) {
    check_text("lower", mc_text_lower, in, expected);
}

START_TEST(test_lower) {
    check_lower("Hello WORLD 123 !?", "hello world 123 !?");
    check_lower("ÀÉÎÕÜÝÞ Ÿ", "àéîõüýþ ÿ");                 /* Latin-1 */
    check_lower("ŁÓDŹ ČEŠKÝ ǅ Ǆ", "łódź češký ǆ ǆ");         /* Latin Extended, titlecase */
    check_lower("МОСКВА Ёж Ї", "москва ёж ї");                 /* Cyrillic */
    check_lower("ΑΘΉΝΑ", "αθήνα");                             /* Greek */
    check_lower("ΟΔΟΣ ΣΑ Σ ΑΣ. Α'Σ", "οδος σα σ ας. α'ς");     /* final sigma rule */
    check_lower("ΑΣ\xcc\x81", "ας\xcc\x81");                   /* an accent after it is skipped */
    check_lower("İstanbul", "i\xcc\x87stanbul");               /* U+0130 -> i + U+0307 */
    check_lower("ẞ \xe2\x84\xaa \xe2\x84\xa6", "ß k ω");        /* U+1E9E, Kelvin, Ohm */
    check_lower("東京 😀 ß", "東京 😀 ß");                       /* no case: unchanged */
}
END_TEST

// ---- cleaning ----

static void check_clean(const char *in, const char *expected) {
    check_text("clean", mc_text_clean, in, expected);
}

START_TEST(test_clean) {
    check_clean("  A  Photo \t of\n a  FOX  ", "a photo of a fox");
    check_clean("", "");
    check_clean(" \t\n\r\v\f ", "");
    check_clean("&amp;amp; &amp;lt;", "& <"); /* unescaped twice */
    check_clean("a&nbsp;&nbsp;b\xe3\x80\x80" "c", "a b c"); /* NBSP and ideographic space collapse */
    check_clean("x\xe2\x80\x8by", "x\xe2\x80\x8by");         /* zero-width space is not whitespace */
}
END_TEST

// ---- CLIP's split pattern ----

/* pretokenize(text) must give the pieces in `expected`, "|"-separated. */
static void check_split(const char *text, const char *expected) {
    mc_text_span *spans;
    int n;
    MC_CHECK_OK(mc_text_pretokenize(text, &spans, &n));
    char joined[1024] = "";
    for (int i = 0; i < n; i++) {
        if (i) strcat(joined, "|");
        strncat(joined, text + spans[i].start, spans[i].length);
    }
    ck_assert_msg(strcmp(joined, expected) == 0, "split(\"%s\") = \"%s\", expected \"%s\"", text, joined,
                  expected);
    free(spans);
}

START_TEST(test_split) {
    check_split("a photo of a fox", "a|photo|of|a|fox");
    check_split("", "");
    check_split("it's they're we've i'm you'll he'd can't", "it|'s|they|'re|we|'ve|i|'m|you|'ll|he|'d|can|'t");
    check_split("'sup x'sy 'll'd", "'s|up|x|'s|y|'ll|'d"); /* a contraction needs no word end */
    check_split("''s 'x", "''|s|'|x");                     /* a punctuation run takes the quote */
    check_split("2600 ab12cd", "2|6|0|0|ab|1|2|cd");       /* numbers one at a time */
    check_split("hello!!! world...?", "hello|!!!|world|...?");
    check_split("km\xc2\xb2 \xc2\xbd", "km|\xc2\xb2|\xc2\xbd");  /* ² and ½ are numbers */
    check_split("<|startoftext|>hi<|endoftext|>", "<|startoftext|>|hi|<|endoftext|>");
    check_split("!<|endoftext|>", "!<||endoftext||>");    /* specials only where a piece starts */
    check_split("naïve café", "naïve|café");
    /* Where the pattern under IGNORECASE parts from the character tables
     * (what the `regex` module's findall gives, 2026.5.9): U+0345 folds to
     * a letter but is none, so nothing matches it and it is dropped; U+001C
     * is no White_Space to `regex`, so it is a piece. */
    check_split("a\xcd\x85" "b", "a|b");
    check_split("a\x1c" "b", "a|\x1c|b");
    check_split("東京タワー", "東京タワー");                  /* ー (Lm) is a letter */
    check_split("emoji 🚀🛰️🌍 x", "emoji|🚀🛰️🌍|x");          /* symbols + VS16: one run */
    check_split("a\xc2\xa0" "b", "a|b");                   /* NBSP separates */
    check_split("don'T 'S \xe2\x80\x99s", "don|'T|'S|\xe2\x80\x99|s"); /* IGNORECASE; ’ is no ' */
    check_split("'\xc5\xbf", "'\xc5\xbf");                 /* 'ſ: long s case-folds to s */
    check_split("snake_case x-ray", "snake|_|case|x|-|ray");
}
END_TEST

// ---- the stages against Python itself (tests/golden/gen_tokenizer_text.py) ----

/* Hex text to a NUL-terminated byte string, in place. */
static void unhex(char *s) {
    char *out = s;
    for (; s[0] && s[1]; s += 2) {
        unsigned value;
        ck_assert_msg(sscanf(s, "%2x", &value) == 1, "bad hex in the fixture");
        *out++ = (char)value;
    }
    *out = '\0';
}

/* The stage named `stage` applied to `in`, as a malloc'ed string (split
 * pieces joined with U+0001, as the fixture writes them). */
static char *run_text_stage(const char *stage, const char *in) {
    char *out = NULL;
    if (strcmp(stage, "clean") == 0) {
        MC_CHECK_OK(mc_text_clean(in, &out));
    } else if (strcmp(stage, "lower") == 0) {
        MC_CHECK_OK(mc_text_lower(in, &out));
    } else {
        ck_assert_str_eq(stage, "split");
        mc_text_span *spans;
        int n;
        MC_CHECK_OK(mc_text_pretokenize(in, &spans, &n));
        out = malloc(2 * strlen(in) + 1);
        ck_assert_ptr_nonnull(out);
        out[0] = '\0';
        for (int i = 0; i < n; i++) {
            if (i) strcat(out, "\x01");
            strncat(out, in + spans[i].start, spans[i].length);
        }
        free(spans);
    }
    return out;
}

START_TEST(test_stages_match_python) {
    char path[1024];
    mc_test_fixture_path("tokenizer_text.tsv", path, sizeof path);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open the committed fixture %s", path);
    static char line[1 << 16];
    int cases[3] = {0, 0, 0}; /* clean, lower, split */
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        line[strcspn(line, "\n")] = '\0';
        char *stage = line, *in = strchr(line, '\t'), *expected = in ? strchr(in + 1, '\t') : NULL;
        ck_assert_msg(in && expected, "malformed fixture line: %s", line);
        *in++ = '\0'; /* fields may be empty */
        *expected++ = '\0';
        unhex(in);
        unhex(expected);
        char *out = run_text_stage(stage, in);
        ck_assert_msg(strcmp(out, expected) == 0, "%s(\"%s\") = \"%s\", Python gives \"%s\"", stage, in,
                      out, expected);
        free(out);
        cases[stage[0] == 'c' ? 0 : stage[0] == 'l' ? 1 : 2]++;
    }
    fclose(f);
    ck_assert_int_ge(cases[0], 500);
    ck_assert_int_ge(cases[1], 100);
    ck_assert_int_ge(cases[2], 500);
}
END_TEST

// ---- a synthetic merges file: BPE by rank, hand-derived ----
//
// The merge list (rank: pair -> new symbol, id = 512 + rank):
//     0: h e      -> he        512
//     1: l l      -> ll        513
//     2: l o</w>  -> lo</w>    514
//     3: he ll    -> hell      515
//     4: hell o</w> -> hello</w> 516
// then 48,889 filler merges of two stand-in characters other than h, e, l, o
// (they never touch the words tested). Byte ids (byte table): printable
// ASCII c is c - 33, c + "</w>" is c - 33 + 256: 'l' = 75, "l</w>" = 331,
// "o</w>" = 334, 'h' = 71.

enum { ID_HE = 512, ID_LL = 513, ID_LO_END = 514, ID_HELL = 515, ID_HELLO_END = 516 };

static bool filler_char(int b) { /* printable stand-ins except h, e, l, o */
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    return printable && b != 'h' && b != 'e' && b != 'l' && b != 'o';
}

static void put_char(char **p, int b) { /* a stand-in character as UTF-8 (all < U+0100 here) */
    if (b < 0x80) {
        *(*p)++ = (char)b;
    } else {
        *(*p)++ = (char)(0xC0 | (b >> 6));
        *(*p)++ = (char)(0x80 | (b & 0x3F));
    }
}

/* The whole file as text: header + `n_merges` merge lines (<= 48,894). */
static char *synthetic_merges(int n_merges, const char *header) {
    size_t cap = 64 + (size_t)MC_CLIP_MERGES * 16;
    char *text = malloc(cap), *p = text;
    ck_assert_ptr_nonnull(text);
    p += sprintf(p, "%s\n", header);
    static const char *const rules[] = {"h e", "l l", "l o</w>", "he ll", "hell o</w>"};
    int written = 0;
    for (; written < 5 && written < n_merges; written++) p += sprintf(p, "%s\n", rules[written]);
    for (int end = 0; end < 2; end++)
        for (int a = 0; a < 256; a++)
            for (int b = 0; b < 256 && written < n_merges; b++) {
                if (!filler_char(a) || !filler_char(b)) continue;
                put_char(&p, a);
                *p++ = ' ';
                put_char(&p, b);
                p += sprintf(p, "%s\n", end ? "</w>" : "");
                written++;
            }
    ck_assert_int_eq(written, n_merges);
    *p = '\0';
    return text;
}

static void write_gz(const char *path, const char *data, size_t len) {
    gzFile f = gzopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(gzwrite(f, data, (unsigned)len), (int)len);
    ck_assert_int_eq(gzclose(f), Z_OK);
}

static mc_tokenizer *load_synthetic(const char *name, bool gz) {
    char path[700];
    char *text = synthetic_merges(MC_CLIP_MERGES, gz ? "\"synthetic.txt#version: 0.2" : "#version: 0.2");
    mc_test_dir_path(name, path, sizeof path);
    if (gz) write_gz(path, text, strlen(text));
    else mc_test_write_file(path, text, strlen(text));
    free(text);
    mc_tokenizer *tok = NULL;
    MC_CHECK_OK(mc_tokenizer_load(path, &tok));
    return tok;
}

static void check_encode(mc_tokenizer *tok, const char *text, const int32_t *expected, int n) {
    int32_t *ids;
    int n_ids;
    MC_CHECK_OK(mc_tokenizer_encode(tok, text, &ids, &n_ids));
    ck_assert_msg(n_ids == n, "\"%s\": %d ids, expected %d", text, n_ids, n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(ids[i] == expected[i], "\"%s\": id %d is %d, expected %d", text, i, ids[i],
                      expected[i]);
    free(ids);
}

#define CHECK_ENCODE(tok, text, ...)                                                     \
    do {                                                                                 \
        static const int32_t expected_[] = {__VA_ARGS__};                                \
        check_encode(tok, text, expected_, (int)(sizeof expected_ / sizeof expected_[0])); \
    } while (0)

START_TEST(test_bpe_by_rank) {
    mc_tokenizer *tok = load_synthetic("merges.txt", false);
    ck_assert_str_eq(mc_tokenizer_token(tok, ID_HELLO_END), "hello</w>");
    ck_assert_str_eq(mc_tokenizer_token(tok, MC_CLIP_SOT), "<|startoftext|>");
    CHECK_ENCODE(tok, "Hello", ID_HELLO_END);                /* he, ll, hell, hello</w> */
    CHECK_ENCODE(tok, "hell", ID_HE, 75, 331);               /* he l l</w>: no rule for l + l</w> */
    CHECK_ENCODE(tok, "llo", ID_LL, 334);                    /* rank 1 (ll) beats rank 2 (lo</w>) */
    CHECK_ENCODE(tok, "lo", ID_LO_END);
    CHECK_ENCODE(tok, "hehe", ID_HE, 71, 324);              /* he h e</w>: e</w> is not e */
    CHECK_ENCODE(tok, "o", 334);                             /* one byte: byte + "</w>" */
    CHECK_ENCODE(tok, "hello, hello!", ID_HELLO_END, 11 + 256, ID_HELLO_END, 256);
    /* hello hell llo lo hehe o , ! : each word's BPE was computed once */
    ck_assert_int_eq(mc_tokenizer_cache_count(tok), 8);
    int32_t ids[6];
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, "hello", 6, false, ids));
    ck_assert(ids[0] == MC_CLIP_SOT && ids[1] == ID_HELLO_END && ids[2] == MC_CLIP_EOT && ids[3] == 0 &&
              ids[5] == 0);
    char *text;
    MC_CHECK_OK(mc_tokenizer_decode(tok, ids, 6, true, &text));
    ck_assert_str_eq(text, "hello ");
    free(text);
    mc_tokenizer_free(tok);
}
END_TEST

START_TEST(test_gz_and_text_agree) {
    mc_tokenizer *plain = load_synthetic("merges.txt", false);
    mc_tokenizer *gz = load_synthetic("synthetic.txt.gz", true);
    for (int id = 0; id < MC_CLIP_VOCAB_SIZE; id++)
        ck_assert_str_eq(mc_tokenizer_token(plain, id), mc_tokenizer_token(gz, id));
    CHECK_ENCODE(gz, "hello llo", ID_HELLO_END, ID_LL, 334);
    mc_tokenizer_free(plain);
    mc_tokenizer_free(gz);
    /* the folder finds merges.txt */
    mc_tokenizer *by_folder = NULL;
    MC_CHECK_OK(mc_tokenizer_load(mc_test_dir, &by_folder));
    mc_tokenizer_free(by_folder);
}
END_TEST

/* A vocab.json beside the merges is checked while loading. */
START_TEST(test_vocab_json_beside) {
    mc_tokenizer *tok = load_synthetic("merges.txt", false);
    mc_tokenizer_free(tok);
    char path[700];
    const char *small = "{\"!\": 0, \"\\\"\": 1}";
    mc_test_write_file(mc_test_dir_path("vocab.json", path, sizeof path), small, strlen(small));
    tok = NULL;
    MC_CHECK_FAILS(mc_tokenizer_load(mc_test_dir_path("merges.txt", path, sizeof path), &tok), MC_ERR_FORMAT,
                   "has 2 tokens, the merges give 49408");
    ck_assert_ptr_null(tok);
    mc_test_write_file(mc_test_dir_path("vocab.json", path, sizeof path), "[1, 2", 5);
    MC_CHECK_FAILS(mc_tokenizer_load(mc_test_dir_path("merges.txt", path, sizeof path), &tok), MC_ERR_FORMAT,
                   "vocab.json");
    /* A .json named is the one checked, and must exist: a misspelt name
     * does not fall back to the folder's merges unchecked. */
    mc_test_write_file(mc_test_dir_path("my_vocab.json", path, sizeof path), small, strlen(small));
    MC_CHECK_FAILS(mc_tokenizer_load(path, &tok), MC_ERR_FORMAT, "my_vocab.json' has 2 tokens");
    MC_CHECK_FAILS(mc_tokenizer_load(mc_test_dir_path("vocab.jsno.json", path, sizeof path), &tok), MC_ERR_IO,
                   "vocab.jsno.json is not a file");
    ck_assert_ptr_null(tok);
}
END_TEST

// ---- bad merges files ----

static void check_load_fails(const char *name, const char *data, size_t len, bool gz, mc_status code,
                             const char *needle) {
    char path[700];
    mc_test_dir_path(name, path, sizeof path);
    if (gz) write_gz(path, data, len);
    else mc_test_write_file(path, data, len);
    mc_tokenizer *tok = (mc_tokenizer *)1;
    mc_status status = mc_tokenizer_load(path, &tok);
    ck_assert_msg(status == code, "loading %s returned %s, expected %s (%s)", name,
                  mc_status_name(status), mc_status_name(code), mc_last_error());
    ck_assert_msg(strstr(mc_last_error(), needle) != NULL, "loading %s: \"%s\" does not mention \"%s\"",
                  name, mc_last_error(), needle);
    ck_assert_ptr_null(tok);
    ck_assert(strstr(mc_last_error(), name) != NULL); /* the message names the file */
}

START_TEST(test_bad_merges_files) {
    check_load_fails("empty.txt", "", 0, false, MC_ERR_FORMAT, "is empty");
    check_load_fails("empty.gz", "", 0, true, MC_ERR_FORMAT, "is empty");
    static const char garbage[] = "\x01\x02\xff\xfe garbage\n\x00\x13";
    check_load_fails("garbage.bin", garbage, sizeof garbage - 1, false, MC_ERR_FORMAT,
                     "not a BPE merges file");
    /* OpenAI's header declares the full vocabulary: fewer merges is a
     * truncated file (a bare "#version" header is a small vocabulary, see
     * test_short_merges_file) */
    static const char openai_header[] = "\"bpe_simple_vocab_16e6.txt#version: 0.2";
    char header_only[64];
    snprintf(header_only, sizeof header_only, "%s\n", openai_header);
    check_load_fails("header.txt", header_only, strlen(header_only), false, MC_ERR_FORMAT,
                     "has only 0 merges, but its header says it is OpenAI's");
    char *text = synthetic_merges(1000, openai_header);
    check_load_fails("short.gz", text, strlen(text), true, MC_ERR_FORMAT,
                     "has only 1000 merges, but its header says it is OpenAI's, whose CLIP vocabulary "
                     "needs 48894 (truncated?)");
    free(text);

    /* a real gzip stream cut in half */
    text = synthetic_merges(MC_CLIP_MERGES, "#version: 0.2");
    char path[700];
    write_gz(mc_test_dir_path("whole.gz", path, sizeof path), text, strlen(text));
    free(text);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static char compressed[1 << 20];
    size_t len = fread(compressed, 1, sizeof compressed, f);
    fclose(f);
    ck_assert_uint_gt(len, 1000);
    mc_test_write_file(mc_test_dir_path("truncated.gz", path, sizeof path), compressed, len / 2);
    mc_tokenizer *tok = NULL;
    MC_CHECK_FAILS(mc_tokenizer_load(path, &tok), MC_ERR_FORMAT, "damaged");
    /* ... and with its middle overwritten */
    memset(compressed + len / 3, 0x55, 64);
    mc_test_write_file(mc_test_dir_path("corrupt.gz", path, sizeof path), compressed, len);
    MC_CHECK_FAILS(mc_tokenizer_load(path, &tok), MC_ERR_FORMAT, "corrupt.gz");

    /* malformed merge lines */
    check_load_fails("three.txt", "#version: 0.2\na b c\n", 20, false, MC_ERR_FORMAT,
                     "line 2: expected two symbols");
    check_load_fails("blank.txt", "#version: 0.2\nh e\n\n", 19, false, MC_ERR_FORMAT,
                     "line 3: expected two symbols separated by a space, found 0");
    check_load_fails("utf8.txt", "#version: 0.2\nh \xff\n", 18, false, MC_ERR_FORMAT, "not valid UTF-8");
    text = synthetic_merges(MC_CLIP_MERGES, "#version: 0.2\n@@@"); /* line 2: one symbol */
    check_load_fails("one.txt", text, strlen(text), false, MC_ERR_FORMAT,
                     "line 2: expected two symbols separated by a space, found 1");
    free(text);
    /* the fillers make two-character symbols at most, so none makes "@@@" */
    text = synthetic_merges(MC_CLIP_MERGES, "#version: 0.2\n@@@ @");
    check_load_fails("unknown.txt", text, strlen(text), false, MC_ERR_FORMAT,
                     "line 2: symbol '@@@' is neither a byte symbol nor made by a merge");
    free(text);
}
END_TEST

START_TEST(test_missing_paths) {
    mc_tokenizer *tok = NULL;
    MC_CHECK_FAILS(mc_tokenizer_load("/nonexistent/merges.txt", &tok), MC_ERR_IO,
                   "cannot open merges file '/nonexistent/merges.txt'");
    MC_CHECK_FAILS(mc_tokenizer_load(mc_test_dir, &tok), MC_ERR_IO,
                   "has neither merges.txt nor bpe_simple_vocab_16e6.txt.gz");
    MC_CHECK_FAILS(mc_tokenizer_load(NULL, &tok), MC_ERR_ARG, "NULL");
    ck_assert_ptr_null(tok);
    mc_tokenizer_free(NULL); /* allowed */
}
END_TEST

// ---- small vocabularies: K merges, sot = 512 + K, eot = 513 + K ----
//
// Byte ids as above: printable ASCII c is c - 33, c + "</w>" is c - 33 + 256.

/* A tokenizer from an in-memory merge list (must succeed). */
static mc_tokenizer *from_list(const char *const *merges, int n) {
    mc_tokenizer *tok = NULL;
    MC_CHECK_OK(mc_tokenizer_from_merges(merges, n, &tok));
    ck_assert_ptr_nonnull(tok);
    return tok;
}

static void check_tokenize(mc_tokenizer *tok, const char *text, int context, const int32_t *expected,
                           int n) {
    int32_t ids[16];
    ck_assert_int_le(context, 16);
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, text, context, false, ids));
    for (int i = 0; i < context; i++)
        ck_assert_msg(ids[i] == (i < n ? expected[i] : 0), "\"%s\": position %d is %d, expected %d",
                      text, i, ids[i], i < n ? expected[i] : 0);
}

/* Zero merges: every piece is its bytes, the last with "</w>". By hand:
 * a</w> = 'a' - 33 + 256 = 320; photo = p h o t o</w> = 79 71 78 83 334;
 * of = o f</w> = 78 325; fox = f o x</w> = 69 78 343; sot = 512 + 0,
 * eot = 513 + 0. */
START_TEST(test_zero_merges) {
    mc_tokenizer *tok = from_list(NULL, 0);
    ck_assert_int_eq(mc_tokenizer_vocab_size(tok), 514);
    ck_assert_int_eq(mc_tokenizer_merge_count(tok), 0);
    ck_assert_int_eq(mc_tokenizer_sot(tok), 512);
    ck_assert_int_eq(mc_tokenizer_eot(tok), 513);
    ck_assert_str_eq(mc_tokenizer_token(tok, 512), "<|startoftext|>");
    ck_assert_str_eq(mc_tokenizer_token(tok, 513), "<|endoftext|>");
    ck_assert_ptr_null(mc_tokenizer_token(tok, 514));
    static const int32_t fox[] = {512, 320, 79, 71, 78, 83, 334, 78, 325, 320, 69, 78, 343, 513};
    check_tokenize(tok, "a photo of a fox", 16, fox, 14);
    /* the specials written in the text are the small vocabulary's */
    CHECK_ENCODE(tok, "<|endoftext|>a", 513, 320);
    int32_t ids[16];
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, "a photo of a fox", 16, false, ids));
    char *text;
    MC_CHECK_OK(mc_tokenizer_decode(tok, ids, 16, true, &text)); /* stops at eot 513 */
    ck_assert_str_eq(text, "a photo of a fox ");
    free(text);
    const int32_t outside = 514;
    MC_CHECK_FAILS(mc_tokenizer_decode(tok, &outside, 1, false, &text), MC_ERR_ARG,
                   "id 514 at position 0 is outside the vocabulary 0..513");
    const char *left, *right;
    MC_CHECK_FAILS(mc_tokenizer_merge(tok, 0, &left, &right), MC_ERR_ARG, "rank 0 is outside");
    mc_tokenizer_free(tok);
    ck_assert_int_eq(mc_tokenizer_sot(NULL), -1);
    ck_assert_int_eq(mc_tokenizer_vocab_size(NULL), 0);
}
END_TEST

/* The hand-derived list of test_bpe_by_rank without the fillers: the same
 * ids for the merges (512 + rank), sot and eot right after them. */
static const char *const HELLO_MERGES[] = {"h e", "l l", "l o</w>", "he ll", "hell o</w>"};

START_TEST(test_merges_in_memory) {
    mc_tokenizer *tok = from_list(HELLO_MERGES, 5);
    ck_assert_int_eq(mc_tokenizer_vocab_size(tok), 519);
    ck_assert_int_eq(mc_tokenizer_sot(tok), 517);
    ck_assert_int_eq(mc_tokenizer_eot(tok), 518);
    CHECK_ENCODE(tok, "Hello", ID_HELLO_END);
    CHECK_ENCODE(tok, "llo hehe", ID_LL, 334, ID_HE, 71, 324);
    static const int32_t hello[] = {517, ID_HELLO_END, 518};
    check_tokenize(tok, "hello", 5, hello, 3);
    const char *left, *right;
    MC_CHECK_OK(mc_tokenizer_merge(tok, 3, &left, &right));
    ck_assert_str_eq(left, "he");
    ck_assert_str_eq(right, "ll");
    mc_tokenizer_free(tok);

    tok = (mc_tokenizer *)1;
    static const char *const one_symbol[] = {"h e", "hel"};
    MC_CHECK_FAILS(mc_tokenizer_from_merges(one_symbol, 2, &tok), MC_ERR_FORMAT,
                   "merge list entry 1: expected two symbols separated by a space, found 1");
    ck_assert_ptr_null(tok);
    static const char *const unknown[] = {"h e", "hel lo"};
    MC_CHECK_FAILS(mc_tokenizer_from_merges(unknown, 2, &tok), MC_ERR_FORMAT,
                   "merge list entry 1: symbol 'hel' is neither a byte symbol nor made by a merge");
    static const char *const null_entry[] = {"h e", NULL};
    MC_CHECK_FAILS(mc_tokenizer_from_merges(null_entry, 2, &tok), MC_ERR_ARG, "entry 1 is NULL");
    MC_CHECK_FAILS(mc_tokenizer_from_merges(HELLO_MERGES, -1, &tok), MC_ERR_ARG, "-1 merges");
    MC_CHECK_FAILS(mc_tokenizer_from_merges(HELLO_MERGES, MC_CLIP_MERGES + 1, &tok), MC_ERR_ARG,
                   "expected 0 to 48894");
    MC_CHECK_FAILS(mc_tokenizer_from_merges(NULL, 3, &tok), MC_ERR_ARG, "3 merges");
}
END_TEST

/* A Hugging Face header ("#version" first) says nothing about the count:
 * K lines are a vocabulary of 512 + K + 2, gzip'ed or not. */
START_TEST(test_short_merges_file) {
    char path[700];
    static const char five[] = "#version: 0.2\nh e\nl l\nl o</w>\nhe ll\nhell o</w>\n";
    mc_test_write_file(mc_test_dir_path("five.txt", path, sizeof path), five, strlen(five));
    mc_tokenizer *plain = NULL, *gz = NULL, *empty = NULL;
    MC_CHECK_OK(mc_tokenizer_load(path, &plain));
    write_gz(mc_test_dir_path("five.txt.gz", path, sizeof path), five, strlen(five));
    MC_CHECK_OK(mc_tokenizer_load(path, &gz));
    mc_tokenizer *memory = from_list(HELLO_MERGES, 5);
    ck_assert_int_eq(mc_tokenizer_vocab_size(plain), 519);
    for (int id = 0; id < 519; id++) {
        ck_assert_str_eq(mc_tokenizer_token(plain, id), mc_tokenizer_token(memory, id));
        ck_assert_str_eq(mc_tokenizer_token(gz, id), mc_tokenizer_token(memory, id));
    }
    CHECK_ENCODE(gz, "hello llo", ID_HELLO_END, ID_LL, 334);
    mc_test_write_file(mc_test_dir_path("none.txt", path, sizeof path), "#version: 0.2\n", 14);
    MC_CHECK_OK(mc_tokenizer_load(path, &empty));
    ck_assert_int_eq(mc_tokenizer_vocab_size(empty), 514);
    ck_assert_int_eq(mc_tokenizer_eot(empty), 513);
    mc_tokenizer_free(plain);
    mc_tokenizer_free(gz);
    mc_tokenizer_free(memory);
    mc_tokenizer_free(empty);

    /* 1000 merges: 1514 tokens */
    char *text = synthetic_merges(1000, "#version: 0.2");
    write_gz(mc_test_dir_path("thousand.gz", path, sizeof path), text, strlen(text));
    free(text);
    mc_tokenizer *tok = NULL;
    MC_CHECK_OK(mc_tokenizer_load(path, &tok));
    ck_assert_int_eq(mc_tokenizer_vocab_size(tok), 1514);
    ck_assert_int_eq(mc_tokenizer_sot(tok), 1512);
    CHECK_ENCODE(tok, "hello", ID_HELLO_END);
    mc_tokenizer_free(tok);
}
END_TEST

/* The classic BPE example of Sennrich et al. (2016): low x5, lower x2,
 * newest x6, widest x3 (here with CLIP's "</w>" on the last symbol, and
 * mixed case, which cleaning lowercases). Derived by hand, (count) per step:
 *   0: e s (9; ties with s t</w> 9, "e" < "s")   7: d est</w> (3; d < i < w)
 *   1: es t</w> (9)                               8: i dest</w> (3)
 *   2: l o (7)                                    9: w idest</w> (3)
 *   3: e w (6; ties n e, w est</w>: e < n < w)   10: e r</w> (2; e < lo < w)
 *   4: ew est</w> (6; ties n ew: "ew" < "n")     11: lo w (2; lo < w)
 *   5: n ewest</w> (6)                            12: low er</w> (2)
 *   6: lo w</w> (5)
 * after which every word is one token: no pair is left, training stops. */
static const char *const SENNRICH[] = {"Low low LOW low low", "lower lower", "newest newest newest",
                                       "NEWEST newest newest", "widest widest widest"};
static const char *const SENNRICH_MERGES[] = {
    "e s",     "es t</w>", "l o",        "e w",    "ew est</w>", "n ewest</w>", "lo w</w>",
    "d est</w>", "i dest</w>", "w idest</w>", "e r</w>", "lo w",     "low er</w>"};

static void check_merges(const mc_tokenizer *tok, const char *const *expected, int n) {
    ck_assert_int_eq(mc_tokenizer_merge_count(tok), n);
    for (int r = 0; r < n; r++) {
        const char *left, *right;
        MC_CHECK_OK(mc_tokenizer_merge(tok, r, &left, &right));
        char line[128];
        snprintf(line, sizeof line, "%s %s", left, right);
        ck_assert_msg(strcmp(line, expected[r]) == 0, "merge %d is \"%s\", expected \"%s\"", r, line,
                      expected[r]);
    }
}

START_TEST(test_train_sennrich) {
    mc_tokenizer *tok = NULL;
    MC_CHECK_OK(mc_tokenizer_train(SENNRICH, 5, 100, &tok));
    check_merges(tok, SENNRICH_MERGES, 13);
    ck_assert_int_eq(mc_tokenizer_vocab_size(tok), 527);
    ck_assert_int_eq(mc_tokenizer_sot(tok), 525);
    ck_assert_int_eq(mc_tokenizer_eot(tok), 526);
    ck_assert_str_eq(mc_tokenizer_token(tok, 517), "newest</w>");
    /* the training words are one token each; new words use the merges by rank:
     * lowest = lo w est</w> -> low est</w> (523, 513);
     * newer = n e w e r</w> -> n ew e r</w> (rank 3) -> n ew er</w> (rank 10) */
    CHECK_ENCODE(tok, "low lower newest widest", 518, 524, 517, 521);
    CHECK_ENCODE(tok, "lowest newer", 523, 513, 'n' - 33, 515, 522);
    static const int32_t ids[] = {525, 517, 518, 526};
    check_tokenize(tok, "Newest low", 6, ids, 4);
    mc_tokenizer_free(tok);

    /* the same texts in another order: the same merges (counts do not
     * depend on order, and ties have a total order) */
    const char *reversed[5];
    for (int i = 0; i < 5; i++) reversed[i] = SENNRICH[4 - i];
    MC_CHECK_OK(mc_tokenizer_train(reversed, 5, 100, &tok));
    check_merges(tok, SENNRICH_MERGES, 13);
    mc_tokenizer_free(tok);

    /* asked for fewer: exactly that many, the specials right after them;
     * newest = n e w est</w> after ranks 0 and 1 */
    MC_CHECK_OK(mc_tokenizer_train(SENNRICH, 5, 2, &tok));
    check_merges(tok, SENNRICH_MERGES, 2);
    ck_assert_int_eq(mc_tokenizer_sot(tok), 514);
    ck_assert_int_eq(mc_tokenizer_eot(tok), 515);
    CHECK_ENCODE(tok, "newest", 'n' - 33, 'e' - 33, 'w' - 33, 513);
    mc_tokenizer_free(tok);
}
END_TEST

/* Ties on the right symbol, and stopping when no pair occurs twice. By
 * hand, "abab" twice = a b a b</w> (x2): (a,b) (b,a) (a,b</w>) all 2;
 * (a, b) sorts before (a, b</w>) ("b" is a prefix of "b</w>") -> ab a b</w>;
 * then (a, b</w>) 2 beats (ab, a) 2 ("a" < "ab") -> ab ab</w>; then
 * (ab, ab</w>) 2 -> abab</w> (id 514); then nothing is left. */
START_TEST(test_train_ties_and_stop) {
    static const char *const abab[] = {"abab ABAB"};
    static const char *const expected[] = {"a b", "a b</w>", "ab ab</w>"};
    mc_tokenizer *tok = NULL;
    MC_CHECK_OK(mc_tokenizer_train(abab, 1, 10, &tok));
    check_merges(tok, expected, 3);
    CHECK_ENCODE(tok, "abab", 514);
    mc_tokenizer_free(tok);

    /* every pair once: nothing worth merging */
    static const char *const once[] = {"abc", "def"};
    MC_CHECK_OK(mc_tokenizer_train(once, 2, 10, &tok));
    ck_assert_int_eq(mc_tokenizer_merge_count(tok), 0);
    ck_assert_int_eq(mc_tokenizer_vocab_size(tok), 514);
    mc_tokenizer_free(tok);
    /* no texts, zero merges: the byte-level vocabulary */
    MC_CHECK_OK(mc_tokenizer_train(NULL, 0, 0, &tok));
    ck_assert_int_eq(mc_tokenizer_vocab_size(tok), 514);
    mc_tokenizer_free(tok);
    /* specials in the texts are not words */
    static const char *const specials[] = {"<|startoftext|><|startoftext|> ab <|endoftext|>"};
    MC_CHECK_OK(mc_tokenizer_train(specials, 1, 10, &tok));
    ck_assert_int_eq(mc_tokenizer_merge_count(tok), 0);
    mc_tokenizer_free(tok);

    tok = (mc_tokenizer *)1;
    MC_CHECK_FAILS(mc_tokenizer_train(abab, 1, -1, &tok), MC_ERR_ARG, "-1 merges asked");
    ck_assert_ptr_null(tok);
    MC_CHECK_FAILS(mc_tokenizer_train(abab, 1, MC_CLIP_MERGES + 1, &tok), MC_ERR_ARG, "0 to 48894");
    MC_CHECK_FAILS(mc_tokenizer_train(NULL, 2, 5, &tok), MC_ERR_ARG, "texts is NULL");
    static const char *const with_null[] = {"a", NULL};
    MC_CHECK_FAILS(mc_tokenizer_train(with_null, 2, 5, &tok), MC_ERR_ARG, "text 1 is NULL");
    static const char *const bad_utf8[] = {"fine", "caf\xc3"};
    MC_CHECK_FAILS(mc_tokenizer_train(bad_utf8, 2, 5, &tok), MC_ERR_FORMAT, "text 1");
    ck_assert_ptr_null(tok);
}
END_TEST

/* On a varied corpus (CLIP-style prompts built from EuroSAT's class names,
 * with numbers, punctuation and accents): every merge adds a token that did
 * not exist (tokenizer_train.c argues why), so each token string has one
 * id; training is repeatable; the texts take well under half as many
 * tokens as bytes; and they decode to what the byte-level ids decode to. */
START_TEST(test_train_prompts) {
    static const char *const classes[] = {
        "annual crop land", "forest", "brushland or shrubland", "highway or road",
        "industrial buildings or commercial buildings", "pasture land", "permanent crop land",
        "residential buildings or homes or apartments", "river", "lake or sea"};
    static const char *const templates[] = {"a centered satellite photo of %s.",
                                            "a centered satellite photo of a %s.",
                                            "A satellite photo of the %s, tile #%d!",
                                            "r\xc3\xa9sum\xc3\xa9: %s (%d%%)"};
    enum { N = 10 * 4 };
    char buf[N][160];
    const char *texts[N];
    for (int c = 0; c < 10; c++)
        for (int k = 0; k < 4; k++) {
            snprintf(buf[4 * c + k], sizeof buf[0], templates[k], classes[c], 17 * c + k);
            texts[4 * c + k] = buf[4 * c + k];
        }
    mc_tokenizer *tok = NULL, *again = NULL;
    MC_CHECK_OK(mc_tokenizer_train(texts, N, 400, &tok));
    MC_CHECK_OK(mc_tokenizer_train(texts, N, 400, &again));
    int n = mc_tokenizer_vocab_size(tok);
    ck_assert_int_gt(mc_tokenizer_merge_count(tok), 100);
    ck_assert_int_eq(n, mc_tokenizer_vocab_size(again));
    for (int32_t id = 0; id < n; id++) {
        ck_assert_int_eq(mc_tokenizer_token_id(tok, mc_tokenizer_token(tok, id)), id);
        ck_assert_str_eq(mc_tokenizer_token(tok, id), mc_tokenizer_token(again, id));
    }
    mc_tokenizer *bytes = from_list(NULL, 0);
    for (int i = 0; i < N; i++) {
        int32_t *ids, *byte_ids;
        int n_ids, n_bytes;
        MC_CHECK_OK(mc_tokenizer_encode(tok, texts[i], &ids, &n_ids));
        MC_CHECK_OK(mc_tokenizer_encode(bytes, texts[i], &byte_ids, &n_bytes));
        ck_assert_msg(2 * n_ids < n_bytes, "\"%s\": %d tokens, %d bytes", texts[i], n_ids, n_bytes);
        char *text, *byte_text; /* the same pieces, each ending in a space */
        MC_CHECK_OK(mc_tokenizer_decode(tok, ids, n_ids, false, &text));
        MC_CHECK_OK(mc_tokenizer_decode(bytes, byte_ids, n_bytes, false, &byte_text));
        ck_assert_str_eq(text, byte_text);
        free(text);
        free(byte_text);
        free(ids);
        free(byte_ids);
    }
    mc_tokenizer_free(bytes);
    mc_tokenizer_free(tok);
    mc_tokenizer_free(again);
}
END_TEST

/* mc_tokenizer_save writes what a Hugging Face merges.txt holds, and
 * loading it gives the same vocabulary and ids. */
START_TEST(test_save_and_load) {
    mc_tokenizer *trained = NULL;
    MC_CHECK_OK(mc_tokenizer_train(SENNRICH, 5, 100, &trained));

    /* a folder: merges.txt and vocab.json */
    MC_CHECK_OK(mc_tokenizer_save(trained, mc_test_dir));
    char path[700];
    mc_test_assert_file_text(mc_test_dir_path("merges.txt", path, sizeof path),
                     "#version: 0.2\ne s\nes t</w>\nl o\ne w\new est</w>\nn ewest</w>\nlo w</w>\n"
                     "d est</w>\ni dest</w>\nw idest</w>\ne r</w>\nlo w\nlow er</w>\n");
    char *vocab = mc_test_read_file(mc_test_dir_path("vocab.json", path, sizeof path), NULL);
    ck_assert_msg(strncmp(vocab, "{\"!\":0,\"\\\"\":1,\"#\":2,", 20) == 0, "vocab.json starts %.40s", vocab);
    ck_assert_ptr_nonnull(strstr(vocab, ",\"\\\\\":59,")); /* '\' is byte 92 = id 59, escaped */
    ck_assert_ptr_nonnull(strstr(vocab, ",\"lower</w>\":524,\"<|startoftext|>\":525,"
                                        "\"<|endoftext|>\":526}\n"));
    mc_tokenizer *loaded = NULL;
    MC_CHECK_OK(mc_tokenizer_load(mc_test_dir, &loaded)); /* checks the vocab.json beside it */
    ck_assert_int_eq(mc_tokenizer_vocab_size(loaded), 527);
    for (int id = 0; id < 527; id++)
        ck_assert_str_eq(mc_tokenizer_token(loaded, id), mc_tokenizer_token(trained, id));
    static const char *const texts[] = {"Low lower newest widest", "lowest newer wider", "a photo of a fox",
                                        "r\xc3\xa9sum\xc3\xa9 \xe6\x9d\xb1 <|endoftext|> 42!"};
    int32_t a[4 * 32], b[4 * 32];
    MC_CHECK_OK(mc_tokenizer_tokenize_batch(trained, texts, 4, 32, false, a));
    MC_CHECK_OK(mc_tokenizer_tokenize_batch(loaded, texts, 4, 32, false, b));
    ck_assert_mem_eq(a, b, sizeof a);
    mc_tokenizer_free(loaded);

    /* a file path: the merges only, and they load on their own */
    MC_CHECK_OK(mc_tokenizer_save(trained, mc_test_dir_path("small.txt", path, sizeof path)));
    MC_CHECK_OK(mc_tokenizer_load(path, &loaded));
    MC_CHECK_OK(mc_tokenizer_tokenize_batch(loaded, texts, 4, 32, false, b));
    ck_assert_mem_eq(a, b, sizeof a);
    mc_tokenizer_free(loaded);

    /* a vocab.json that disagrees (another tokenizer's) is caught */
    mc_tokenizer *other = from_list(HELLO_MERGES, 5);
    MC_CHECK_OK(mc_tokenizer_save_vocab_json(other, mc_test_dir_path("vocab.json", path, sizeof path)));
    MC_CHECK_FAILS(mc_tokenizer_load(mc_test_dir, &loaded), MC_ERR_FORMAT,
                   "has 519 tokens, the merges give 527");
    mc_tokenizer_free(other);

    MC_CHECK_FAILS(mc_tokenizer_save(trained, "/nonexistent/folder/merges.txt"), MC_ERR_IO,
                   "/nonexistent/folder/merges.txt");
    MC_CHECK_FAILS(mc_tokenizer_save(NULL, path), MC_ERR_ARG, "NULL");
    mc_tokenizer_free(trained);
    free(vocab);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tokenizer");
    const TTest *const text[] = {test_letters, test_numbers_and_spaces, test_utf8_errors,
                                 test_html_unescape, test_lower, test_clean, test_split,
                                 test_stages_match_python, NULL};
    mc_test_add_case(s, "text", text);
    const TTest *const files[] = {test_bpe_by_rank, test_gz_and_text_agree, test_vocab_json_beside,
                                  test_bad_merges_files, test_missing_paths, NULL};
    TCase *files_case = mc_test_add_case(s, "files", files);
    mc_test_use_temp_dir(files_case);
    tcase_set_timeout(files_case, 60);
    const TTest *const small[] = {test_zero_merges, test_merges_in_memory, test_short_merges_file,
                                  test_train_sennrich, test_train_ties_and_stop, test_train_prompts,
                                  test_save_and_load, NULL};
    TCase *small_case = mc_test_add_case(s, "small vocabularies", small);
    mc_test_use_temp_dir(small_case);
    tcase_set_timeout(small_case, 60);
    return mc_test_run_suite(s);
}

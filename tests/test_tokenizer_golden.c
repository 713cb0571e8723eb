/* The CLIP tokenizer against the real CLIP merges and the golden ids in
 * ../shared/data/clip-tokenizer (skipped when that folder is absent).
 *
 * Expected ids come from outside this code: golden.tsv (written by OpenAI's
 * Python tokenizer), the two values quoted in the data README, and
 * hand derivations from the byte table (noted where used): a printable
 * ASCII character c is vocabulary entry c - 33, and c + "</w>" is entry
 * c - 33 + 256. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static char data_dir[1024];
static mc_tokenizer *tok; /* loaded from the .gz for each test */

static const char *data_file(const char *name, char *buf, size_t len) {
    snprintf(buf, len, "%s/%s", data_dir, name);
    return buf;
}

static void load_gz(void) {
    char path[1200];
    MC_CHECK_OK(mc_tokenizer_load(data_file("bpe_simple_vocab_16e6.txt.gz", path, sizeof path), &tok));
}

static void free_tok(void) {
    mc_tokenizer_free(tok);
    tok = NULL;
}

/* tokenize(text) with context 77 must be `expected` (sot..eot) then zeros. */
static void check_ids(const char *text, const int32_t *expected, int n_expected) {
    int32_t ids[MC_CLIP_CONTEXT];
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, text, MC_CLIP_CONTEXT, false, ids));
    for (int i = 0; i < MC_CLIP_CONTEXT; i++) {
        int32_t want = i < n_expected ? expected[i] : 0;
        ck_assert_msg(ids[i] == want, "\"%s\": id %d is %d, expected %d", text, i, ids[i], want);
    }
}

#define CHECK_IDS(text, ...)                                                       \
    do {                                                                           \
        static const int32_t expected_[] = {__VA_ARGS__};                          \
        check_ids(text, expected_, (int)(sizeof expected_ / sizeof expected_[0])); \
    } while (0)

START_TEST(test_known_values) {
    /* quoted in the reference data's README.md */
    CHECK_IDS("Hello World!", 49406, 3306, 1002, 256, 49407);
    CHECK_IDS("a photo of a fox", 49406, 320, 1125, 539, 320, 3240, 49407);
    CHECK_IDS("", 49406, 49407);
    CHECK_IDS(" \t\n ", 49406, 49407); /* only whitespace: nothing between sot and eot */
}
END_TEST

// ---- golden.tsv: "text<TAB>ids" per line, text with C escapes \\ \t \n ----

static void unescape_c(char *s) {
    char *out = s;
    for (; *s; s++) {
        if (*s == '\\' && (s[1] == '\\' || s[1] == 't' || s[1] == 'n')) {
            s++;
            *out++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : '\\';
        } else {
            *out++ = *s;
        }
    }
    *out = '\0';
}

static int parse_ids(char *text, int32_t *ids, int cap) {
    int n = 0;
    for (char *p = strtok(text, " \n"); p && n < cap; p = strtok(NULL, " \n")) ids[n++] = atoi(p);
    return n;
}

/* Calls `each` for every golden line; returns the number of lines. */
static int for_each_golden(void (*each)(const char *text, const int32_t *ids, int n, int line)) {
    char path[1200];
    FILE *f = fopen(data_file("golden.tsv", path, sizeof path), "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[8192];
    int lines = 0, number = 0;
    while (fgets(line, sizeof line, f)) {
        number++;
        if (line[0] == '#') continue; /* the header */
        char *tab = strchr(line, '\t');
        ck_assert_msg(tab != NULL, "golden.tsv line %d has no tab", number);
        *tab = '\0';
        unescape_c(line);
        int32_t ids[512];
        int n = parse_ids(tab + 1, ids, 512);
        ck_assert_msg(n >= 2 && ids[0] == MC_CLIP_SOT && ids[n - 1] == MC_CLIP_EOT,
                      "golden.tsv line %d: ids do not run from sot to eot", number);
        each(line, ids, n, number);
        lines++;
    }
    fclose(f);
    return lines;
}

static void check_golden_line(const char *text, const int32_t *ids, int n, int line) {
    (void)line;
    check_ids(text, ids, n);
}

START_TEST(test_every_golden_line) {
    int lines = for_each_golden(check_golden_line);
    ck_assert_int_ge(lines, 100); /* the file has 112 cases; all of them must be read */
}
END_TEST

START_TEST(test_categories) {
    /* digits one at a time: '2','6','0' + "</w>" = 273, 277, 271 (byte table) */
    CHECK_IDS("2600", 49406, 273, 277, 271, 271, 49407);
    /* contractions and case (golden.tsv) */
    CHECK_IDS("IT'S WE'LL", 49406, 585, 568, 649, 1342, 49407);
    /* punctuation runs, unicode, emoji, a very long word (golden.tsv) */
    CHECK_IDS("!!!???...", 49406, 11194, 5195, 22641, 49407);
    CHECK_IDS("naïve café résumé", 49406, 1097, 35689, 563, 15304, 29106, 7054, 4166, 49407);
    CHECK_IDS("😀😃😄", 49406, 12832, 14079, 7624, 49407);
    CHECK_IDS("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 49406, 23126, 23126,
              23126, 23126, 23126, 23126, 23126, 19336, 49407);
    CHECK_IDS("&amp;amp;", 49406, 261, 49407); /* unescaped twice: "&" + "</w>" = 5 + 256 */
    /* the specials written in the text are the specials (the reference's BPE
     * cache is seeded with them) */
    CHECK_IDS("a <|endoftext|>", 49406, 320, 49407, 49407);
}
END_TEST

START_TEST(test_huge_word) {
    /* 20,000 letters: BPE must finish and the word must not fit in 77 */
    size_t n = 20000;
    char *text = malloc(n + 1);
    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < n; i++) text[i] = (char)('a' + (i * 7 + i / 13) % 26);
    text[n] = '\0';
    int32_t *ids;
    int n_ids;
    MC_CHECK_OK(mc_tokenizer_encode(tok, text, &ids, &n_ids));
    ck_assert_int_gt(n_ids, 75);
    for (int i = 0; i < n_ids; i++) ck_assert(ids[i] >= 0 && ids[i] < MC_CLIP_SOT);
    /* the word's ids spell the word back */
    char *back;
    MC_CHECK_OK(mc_tokenizer_decode(tok, ids, n_ids, true, &back));
    ck_assert_uint_eq(strlen(back), n + 1); /* + the space "</w>" becomes */
    ck_assert(memcmp(back, text, n) == 0 && back[n] == ' ');
    free(back);
    free(ids);
    free(text);
}
END_TEST

START_TEST(test_truncation) {
    /* 100 x "a" (320): 102 tokens with sot and eot */
    char text[256] = "";
    for (int i = 0; i < 100; i++) strcat(text, "a ");
    int32_t ids[MC_CLIP_CONTEXT];
    MC_CHECK_FAILS(mc_tokenizer_tokenize(tok, text, MC_CLIP_CONTEXT, false, ids), MC_ERR_ARG,
                   "too long for context length 77: 102 tokens");
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, text, MC_CLIP_CONTEXT, true, ids));
    ck_assert_int_eq(ids[0], MC_CLIP_SOT);
    for (int i = 1; i < 76; i++) ck_assert_int_eq(ids[i], 320);
    ck_assert_int_eq(ids[76], MC_CLIP_EOT); /* eot kept last */

    /* 75 words fit exactly (no padding); 76 do not */
    text[150] = '\0';
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, text, MC_CLIP_CONTEXT, false, ids));
    ck_assert_int_eq(ids[75], 320);
    ck_assert_int_eq(ids[76], MC_CLIP_EOT);
    strcat(text, "a");
    MC_CHECK_FAILS(mc_tokenizer_tokenize(tok, text, MC_CLIP_CONTEXT, false, ids), MC_ERR_ARG,
                   "78 tokens");

    /* a short context, and one too short for sot + eot */
    int32_t short_ids[4];
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, "a photo of a fox", 4, true, short_ids));
    ck_assert(short_ids[0] == 49406 && short_ids[1] == 320 && short_ids[2] == 1125 &&
              short_ids[3] == 49407);
    MC_CHECK_FAILS(mc_tokenizer_tokenize(tok, "a", 1, true, short_ids), MC_ERR_ARG, "context length 1");
}
END_TEST

START_TEST(test_batch) {
    const char *texts[] = {"Hello World!", "a photo of a fox", ""};
    int32_t ids[3 * MC_CLIP_CONTEXT];
    MC_CHECK_OK(mc_tokenizer_tokenize_batch(tok, texts, 3, MC_CLIP_CONTEXT, false, ids));
    ck_assert_int_eq(ids[4], 49407);
    ck_assert_int_eq(ids[5], 0);
    ck_assert_int_eq(ids[MC_CLIP_CONTEXT + 5], 3240);
    ck_assert_int_eq(ids[2 * MC_CLIP_CONTEXT + 1], 49407);
    const char *bad[] = {"fine", "not \xff UTF-8"};
    MC_CHECK_FAILS(mc_tokenizer_tokenize_batch(tok, bad, 2, MC_CLIP_CONTEXT, false, ids),
                   MC_ERR_FORMAT, "text 1 of 2");
}
END_TEST

START_TEST(test_invalid_utf8) {
    int32_t ids[MC_CLIP_CONTEXT];
    MC_CHECK_FAILS(mc_tokenizer_tokenize(tok, "caf\xc3", MC_CLIP_CONTEXT, false, ids), MC_ERR_FORMAT,
                   "byte 0xc3 at offset 3");
}
END_TEST

START_TEST(test_vocabulary) {
    ck_assert_int_eq(mc_tokenizer_vocab_size(tok), 49408);
    ck_assert_str_eq(mc_tokenizer_token(tok, 0), "!");          /* the first printable byte */
    ck_assert_str_eq(mc_tokenizer_token(tok, 256), "!</w>");
    ck_assert_str_eq(mc_tokenizer_token(tok, 188), "\xc4\x80"); /* byte 0 stands as U+0100 */
    ck_assert_str_eq(mc_tokenizer_token(tok, 512), "in");       /* merge 1: "i n" */
    ck_assert_str_eq(mc_tokenizer_token(tok, 49406), "<|startoftext|>");
    ck_assert_str_eq(mc_tokenizer_token(tok, 49407), "<|endoftext|>");
    ck_assert_ptr_null(mc_tokenizer_token(tok, 49408));
    ck_assert_ptr_null(mc_tokenizer_token(tok, -1));
    ck_assert_int_eq(mc_tokenizer_token_id(tok, "a</w>"), 320);
    ck_assert_int_eq(mc_tokenizer_token_id(tok, "photo</w>"), 1125);
    ck_assert_int_eq(mc_tokenizer_token_id(tok, "no such token"), -1);
    /* the per-tokenizer values are CLIP's constants for CLIP's file */
    ck_assert_int_eq(mc_tokenizer_merge_count(tok), MC_CLIP_MERGES);
    ck_assert_int_eq(mc_tokenizer_sot(tok), MC_CLIP_SOT);
    ck_assert_int_eq(mc_tokenizer_eot(tok), MC_CLIP_EOT);
    const char *left, *right;
    MC_CHECK_OK(mc_tokenizer_merge(tok, 0, &left, &right)); /* line 2 of the file: "i n" */
    ck_assert_str_eq(left, "i");
    ck_assert_str_eq(right, "n");
    MC_CHECK_OK(mc_tokenizer_merge(tok, MC_CLIP_MERGES - 1, &left, &right));
    ck_assert_str_eq(left, "jeky"); /* the last line used: "jeky ll</w>" */
    ck_assert_str_eq(right, "ll</w>");
}
END_TEST

START_TEST(test_vocab_json_agrees) {
    char path[1200];
    MC_CHECK_OK(mc_tokenizer_check_vocab_json(tok, data_file("vocab.json", path, sizeof path)));
}
END_TEST

/* A copy of vocab.json with two ids swapped, beside a copy of the merges:
 * loading must notice. */
START_TEST(test_vocab_json_disagreement) {
    char path[1200], dir[512], copy[1200], cmd[4096];
    data_file("vocab.json", path, sizeof path);
    ck_assert(mc_test_temp_dir(dir, sizeof dir)[0]);
    snprintf(cmd, sizeof cmd,
             "sed 's/\"!\":0,\"\\\\\"\":1,/\"!\":1,\"\\\\\"\":0,/' '%s' > '%s/vocab.json' && "
             "cp '%s/merges.txt' '%s/merges.txt'",
             path, dir, data_dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(copy, sizeof copy, "%s/vocab.json", dir);
    MC_CHECK_FAILS(mc_tokenizer_check_vocab_json(tok, copy), MC_ERR_FORMAT, "id 1 is \"!\" there");
    mc_tokenizer *other = NULL;
    snprintf(copy, sizeof copy, "%s/merges.txt", dir);
    MC_CHECK_FAILS(mc_tokenizer_load(copy, &other), MC_ERR_FORMAT, "disagrees with the merges");
    ck_assert_ptr_null(other);
    snprintf(cmd, sizeof cmd, "rm -r '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* The .gz and merges.txt (and the folder, and vocab.json as the path) build
 * the same vocabulary and give the same ids for every golden text. */
static mc_tokenizer *hf_tok;

static void compare_line(const char *text, const int32_t *ids, int n, int line) {
    (void)ids;
    (void)n;
    int32_t a[MC_CLIP_CONTEXT], b[MC_CLIP_CONTEXT];
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, text, MC_CLIP_CONTEXT, false, a));
    MC_CHECK_OK(mc_tokenizer_tokenize(hf_tok, text, MC_CLIP_CONTEXT, false, b));
    ck_assert_msg(memcmp(a, b, sizeof a) == 0, "golden line %d differs between .gz and merges.txt", line);
}

START_TEST(test_gz_and_merges_txt_agree) {
    const char *paths[3];
    char txt[1200], json[1200];
    paths[0] = data_file("merges.txt", txt, sizeof txt);
    paths[1] = data_dir;
    paths[2] = data_file("vocab.json", json, sizeof json);
    for (int p = 0; p < 3; p++) {
        MC_CHECK_OK(mc_tokenizer_load(paths[p], &hf_tok));
        for (int id = 0; id < MC_CLIP_VOCAB_SIZE; id++)
            ck_assert_str_eq(mc_tokenizer_token(hf_tok, id), mc_tokenizer_token(tok, id));
        for_each_golden(compare_line);
        mc_tokenizer_free(hf_tok);
        hf_tok = NULL;
    }
}
END_TEST

// ---- saving ----

/* The file's bytes without '\r' (Hugging Face's merges.txt has CRLF lines). */
static char *read_without_cr(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    for (int c; (c = fgetc(f)) != EOF;) {
        if (c == '\r') continue;
        if (n + 1 >= cap) {
            buf = realloc(buf, cap *= 2);
            ck_assert_ptr_nonnull(buf);
        }
        buf[n++] = (char)c;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Saving CLIP's merges writes Hugging Face's merges.txt (up to its CRLF
 * line ends) and a vocab.json that agrees with theirs; loading the saved
 * folder gives every golden line the same ids. */
START_TEST(test_save_round_trip) {
    char dir[512], path[1200], theirs[1200];
    ck_assert(mc_test_temp_dir(dir, sizeof dir)[0]);
    MC_CHECK_OK(mc_tokenizer_save(tok, dir));
    size_t ours_len, theirs_len;
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    char *ours_text = read_without_cr(path, &ours_len);
    char *theirs_text = read_without_cr(data_file("merges.txt", theirs, sizeof theirs), &theirs_len);
    if (theirs_len > 0 && theirs_text[theirs_len - 1] != '\n') theirs_text[theirs_len++] = '\n';
    ck_assert_uint_eq(ours_len, theirs_len);
    ck_assert(memcmp(ours_text, theirs_text, ours_len) == 0);
    free(ours_text);
    free(theirs_text);

    MC_CHECK_OK(mc_tokenizer_load(dir, &hf_tok)); /* also checks our vocab.json beside it */
    MC_CHECK_OK(mc_tokenizer_check_vocab_json(hf_tok, data_file("vocab.json", theirs, sizeof theirs)));
    ck_assert_int_eq(mc_tokenizer_eot(hf_tok), MC_CLIP_EOT);
    for_each_golden(compare_line);
    mc_tokenizer_free(hf_tok);
    hf_tok = NULL;

    /* a Hugging Face merges.txt cut short is a valid small vocabulary on its
     * own, but beside CLIP's vocab.json the sizes disagree */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "head -n 1001 '%s/merges.txt' > '%s/merges.txt' && cp '%s/vocab.json' '%s/'",
             data_dir, dir, data_dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    MC_CHECK_FAILS(mc_tokenizer_load(dir, &hf_tok), MC_ERR_FORMAT, "has 49408 tokens, the merges give 1514");
    snprintf(cmd, sizeof cmd, "rm -r '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

// ---- decoding ----

START_TEST(test_decode) {
    int32_t ids[MC_CLIP_CONTEXT];
    char *text;
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, "a photo of a fox", MC_CLIP_CONTEXT, false, ids));
    /* as the reference's decode: "</w>" -> " ", specials spelled out */
    MC_CHECK_OK(mc_tokenizer_decode(tok, ids, 7, false, &text));
    ck_assert_str_eq(text, "<|startoftext|>a photo of a fox <|endoftext|>");
    free(text);
    MC_CHECK_OK(mc_tokenizer_decode(tok, ids, MC_CLIP_CONTEXT, true, &text));
    ck_assert_str_eq(text, "a photo of a fox ");
    free(text);
    /* half of a character: U+FFFD, as errors="replace" ("é" = c3 a9; byte 0xc3 alone) */
    int32_t half[] = {mc_tokenizer_token_id(tok, "\xc3\x83")};
    ck_assert_int_ge(half[0], 0);
    MC_CHECK_OK(mc_tokenizer_decode(tok, half, 1, true, &text));
    ck_assert_str_eq(text, "\xef\xbf\xbd");
    free(text);
    int32_t bad[] = {320, 49408};
    MC_CHECK_FAILS(mc_tokenizer_decode(tok, bad, 2, true, &text), MC_ERR_ARG, "id 49408 at position 1");
}
END_TEST

/* decode(encode(text)) is the cleaned text with spaces only where words
 * ended: compare both with every space removed. */
static void strip_spaces(char *s) {
    char *out = s;
    for (; *s; s++)
        if (*s != ' ') *out++ = *s;
    *out = '\0';
}

static void round_trip_line(const char *text, const int32_t *golden, int n, int line) {
    char *clean, *back;
    MC_CHECK_OK(mc_text_clean(text, &clean));
    MC_CHECK_OK(mc_tokenizer_decode(tok, golden, n, true, &back));
    strip_spaces(clean);
    strip_spaces(back);
    ck_assert_msg(strcmp(clean, back) == 0, "golden line %d: decode gives \"%s\", expected \"%s\"", line,
                  back, clean);
    free(clean);
    free(back);
}

START_TEST(test_decode_round_trip) { for_each_golden(round_trip_line); }
END_TEST

START_TEST(test_cache) {
    int32_t first[MC_CLIP_CONTEXT], second[MC_CLIP_CONTEXT];
    ck_assert_int_eq(mc_tokenizer_cache_count(tok), 0);
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, "the the the the the", MC_CLIP_CONTEXT, false, first));
    ck_assert_int_eq(mc_tokenizer_cache_count(tok), 1); /* one word, computed once */
    MC_CHECK_OK(mc_tokenizer_tokenize(tok, "the the the the the", MC_CLIP_CONTEXT, false, second));
    ck_assert(memcmp(first, second, sizeof first) == 0);
    CHECK_IDS("the the the the the", 49406, 518, 518, 518, 518, 518, 49407); /* golden.tsv */
}
END_TEST

int main(void) {
    mc_test_shared_path("clip-tokenizer", data_dir, sizeof data_dir);
    char probe[1200];
    const char *needed[] = {"bpe_simple_vocab_16e6.txt.gz", "merges.txt", "vocab.json", "golden.tsv"};
    for (int i = 0; i < 4; i++)
        if (!mc_test_file_exists(data_file(needed[i], probe, sizeof probe))) {
            char reason[1400];
            snprintf(reason, sizeof reason, "CLIP tokenizer data not found (%s)", probe);
            return mc_test_skip(reason);
        }
    Suite *s = suite_create("tokenizer_golden");
    const TTest *const tests[] = {test_known_values, test_every_golden_line, test_categories,
                                  test_huge_word, test_truncation, test_batch, test_invalid_utf8,
                                  test_vocabulary, test_vocab_json_agrees,
                                  test_vocab_json_disagreement, test_gz_and_merges_txt_agree,
                                  test_save_round_trip, test_decode, test_decode_round_trip,
                                  test_cache, NULL};
    TCase *tests_case = mc_test_add_case(s, "clip", tests);
    tcase_add_checked_fixture(tests_case, load_gz, free_tok);
    tcase_set_timeout(tests_case, 60);
    return mc_test_run_suite(s);
}

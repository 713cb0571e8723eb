/* Every file the library writes survives a failed write: each writer
 * first makes a good file, then writes a larger one into the same path
 * while writes past a few hundred bytes fail with EFBIG (RLIMIT_FSIZE, the
 * same error path as a full disk). The writer must report the failure, the
 * good file must be intact byte for byte, and no partial temporary file may
 * remain in the folder. */
#include <stdlib.h>

#include "limited.h"
#include "testutil.h"

/* Bytes a file may grow to while the failure is injected: more than the
 * first (small) file of each writer needs, less than the second. */
enum { WRITE_LIMIT = 1024 };

/* One writer under test: write(path, large) makes a small file when large
 * is false and a file far above WRITE_LIMIT when it is true. */
typedef mc_status (*sized_writer)(const char *path, bool large);

typedef struct large_write {
    const char *path;
    sized_writer write;
} large_write;

static mc_status write_large(void *ctx) {
    const large_write *w = ctx;
    return w->write(w->path, true);
}

static void check_writer_survives_failure(const char *file_name, sized_writer write) {
    char dir[512], path[1024], message[1024];
    mc_test_temp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s", dir, file_name);
    MC_CHECK_OK(write(path, false));
    size_t good_len = 0;
    char *good = mc_test_read_file(path, &good_len);
    ck_assert_msg(good_len > 0 && good_len < WRITE_LIMIT, "%s: the small file has %zu bytes", file_name, good_len);
    mc_status status = mc_test_with_file_size_limit(WRITE_LIMIT, write_large, &(large_write){path, write},
                                                    message, sizeof message);
    ck_assert_msg(status != MC_OK, "%s: the write past the limit was reported as a success", file_name);
    ck_assert_msg(strstr(message, file_name) != NULL, "%s: the error does not name the file: %s", file_name, message);
    mc_test_assert_survived(path, good, good_len, dir);
    /* The same writer without the limit succeeds: the failure was the limit. */
    MC_CHECK_OK(write(path, true));
    free(good);
    mc_test_remove_tree(dir);
}

/* A (3, n, n) image of a smooth gradient plus noise (noise so that the
 * large one does not compress below the limit). */
static mc_tensor *test_image(int n) {
    mc_tensor *image = NULL;
    MC_CHECK_OK(mc_tensor_new(&image, MC_SHAPE(3, n, n), NULL));
    uint64_t state = 42;
    for (int64_t i = 0; i < image->numel; i++)
        image->data[i] = (float)(mc_test_fuzz_next(&state) % 1000) / 1000.0f;
    return image;
}

static mc_status write_png(const char *path, bool large) {
    mc_tensor *image = test_image(large ? 64 : 4);
    mc_status status = mc_png_write(path, image, 8);
    mc_tensor_free(image);
    return status;
}

static mc_status write_tiff(const char *path, bool large) {
    int n = large ? 64 : 4, bands = 13;
    uint16_t *pixels = calloc((size_t)n * n * bands, sizeof *pixels);
    ck_assert_ptr_nonnull(pixels);
    mc_status status = mc_tiff_write_u16(path, pixels, n, n, bands);
    free(pixels);
    return status;
}

static mc_status write_safetensors(const char *path, bool large) {
    mc_tensor *t = NULL;
    MC_CHECK_OK(mc_tensor_new(&t, MC_SHAPE(large ? 4096 : 8), "weights"));
    mc_status status = mc_safetensors_write(path, 1, &t, 0, NULL);
    mc_tensor_free(t);
    return status;
}

/* Two words learn two merges; many distinct random words repeated learn
 * thousands, whose merges.txt passes the limit and stdio's buffer (so the
 * failure shows while the merges are written, not only at the flush). */
static mc_status write_merges(const char *path, bool large) {
    static char text[65536];
    snprintf(text, sizeof text, "forest forest");
    if (large) {
        uint64_t state = 7;
        size_t n = 0;
        while (n + 16 < sizeof text) {
            char word[8];
            for (int i = 0; i < 7; i++) word[i] = (char)('a' + mc_test_fuzz_next(&state) % 26);
            word[7] = '\0';
            n += (size_t)snprintf(text + n, sizeof text - n, "%s %s ", word, word);
        }
    }
    const char *texts[] = {text};
    mc_tokenizer *tok = NULL;
    MC_CHECK_OK(mc_tokenizer_train(texts, 1, large ? 4000 : 2, &tok));
    mc_status status = mc_tokenizer_save(tok, path);
    mc_tokenizer_free(tok);
    return status;
}

/* The writers under test and the file each makes (its failures name it). */
static const struct {
    const char *file_name;
    sized_writer write;
} writers[] = {
    {"image.png", write_png},
    {"tile.tif", write_tiff},
    {"model.safetensors", write_safetensors},
    {"merges.txt", write_merges},
};
enum { N_WRITERS = sizeof writers / sizeof writers[0] };

START_TEST(writer_is_atomic) { check_writer_survives_failure(writers[_i].file_name, writers[_i].write); }
END_TEST

/* A tokenizer saved into a folder writes merges.txt and vocab.json as a
 * pair: when vocab.json's write fails (here: merges.txt fits under the
 * limit, vocab.json does not), the old pair stays whole, and the folder
 * still loads as the old tokenizer. */
static mc_status save_into_folder(void *ctx) {
    const char *dir = ((void **)ctx)[0];
    const mc_tokenizer *tok = ((void **)ctx)[1];
    return mc_tokenizer_save(tok, dir);
}

START_TEST(tokenizer_folder_keeps_its_pair) {
    char dir[512], merges[1024], vocab[1024], message[1024];
    mc_test_temp_dir(dir, sizeof dir);
    snprintf(merges, sizeof merges, "%s/merges.txt", dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    const char *old_text[] = {"forest forest"}, *new_text[] = {"river river lake lake"};
    mc_tokenizer *old = NULL, *new = NULL;
    MC_CHECK_OK(mc_tokenizer_train(old_text, 1, 2, &old));
    MC_CHECK_OK(mc_tokenizer_train(new_text, 1, 4, &new));
    MC_CHECK_OK(mc_tokenizer_save(old, dir));
    size_t merges_len = 0, vocab_len = 0;
    char *old_merges = mc_test_read_file(merges, &merges_len);
    char *old_vocab = mc_test_read_file(vocab, &vocab_len);
    ck_assert_msg(merges_len < WRITE_LIMIT && vocab_len > WRITE_LIMIT, "merges.txt %zu, vocab.json %zu bytes",
                  merges_len, vocab_len);
    void *ctx[] = {dir, new};
    mc_status status = mc_test_with_file_size_limit(WRITE_LIMIT, save_into_folder, ctx, message, sizeof message);
    ck_assert_int_ne(status, MC_OK);
    ck_assert_msg(strstr(message, "vocab.json") != NULL, "the error does not name vocab.json: %s", message);
    mc_test_assert_survived(merges, old_merges, merges_len, dir);
    mc_test_assert_survived(vocab, old_vocab, vocab_len, dir);
    mc_tokenizer *back = NULL;
    MC_CHECK_OK(mc_tokenizer_load(dir, &back));
    ck_assert_int_eq(mc_tokenizer_merge_count(back), mc_tokenizer_merge_count(old));
    mc_tokenizer_free(back);
    free(old_merges);
    free(old_vocab);
    mc_tokenizer_free(old);
    mc_tokenizer_free(new);
    mc_test_remove_tree(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("atomic_writers");
    const TTest *const pairs[] = {tokenizer_folder_keeps_its_pair, NULL};
    mc_test_add_loops(mc_test_add_case(s, "failed_writes", pairs),
                      (const mc_test_loop[]){{writer_is_atomic, 0, N_WRITERS}, {NULL, 0, 0}});
    return mc_test_run_suite(s);
}

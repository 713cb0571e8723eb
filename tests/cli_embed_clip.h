/* Helpers for the tests of `mmchain embed --model clip-vision|clip-text`:
 * run the CLI program ($MMCHAIN_CLI) with system(), write its input files
 * (float "input" through io.h; integer "input" by hand, because io.h writes
 * float32 only) and read its output back.
 *
 * Included by test_cli_embed_clip*.c (static functions: one copy per
 * executable). */
#ifndef MMCHAIN_CLI_EMBED_CLIP_H
#define MMCHAIN_CLI_EMBED_CLIP_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testutil.h"

/* The folder for one executable's files: main() runs the suite through
 * embed_test_run_suite(), which makes it before the suite runs (so that
 * every forked test case shares it) and removes it after. No Check
 * assertions there: main is not inside a test. */
static char embed_test_folder[512];

static bool embed_test_make_dir(void) {
    return mc_test_temp_dir(embed_test_folder, sizeof embed_test_folder)[0] != '\0';
}

static const char *embed_test_dir(void) { return embed_test_folder; }

/* DIR/name in a static rotating buffer: the last 32 results stay valid,
 * plenty for one test case. */
static const char *embed_test_path(const char *name) {
    static char paths[32][1024];
    static int next;
    char *path = paths[next++ % 32];
    snprintf(path, sizeof paths[0], "%s/%s", embed_test_dir(), name);
    return path;
}

/* Run `$MMCHAIN_CLI embed ARGS` (ARGS printf-formatted, already quoted as
 * the shell needs), stdout and stderr to DIR/stdout and DIR/stderr.
 * Returns the exit code. */
static int run_embed(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static int run_embed(const char *fmt, ...) {
    const char *cli = getenv("MMCHAIN_CLI");
    ck_assert_msg(cli != NULL, "MMCHAIN_CLI is not set");
    char args[4096], command[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(command, sizeof command, "'%s' embed %s >'%s/stdout' 2>'%s/stderr'", cli, args, embed_test_dir(),
             embed_test_dir());
    int status = system(command);
    ck_assert_msg(status != -1 && WIFEXITED(status), "could not run: %s", command);
    return WEXITSTATUS(status);
}

/* What the last run printed on stderr (static buffer). */
static const char *embed_stderr(void) {
    static char text[4096];
    char path[1024];
    snprintf(path, sizeof path, "%s/stderr", embed_test_dir());
    text[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = '\0';
        fclose(f);
    }
    return text;
}

/* The last run failed (exit 1) with ONE line of stderr that mentions `needle`. */
static void assert_embed_error(int code, const char *needle) {
    const char *text = embed_stderr();
    ck_assert_msg(code == 1, "exit code %d, expected 1 (stderr: %s)", code, text);
    const char *newline = strchr(text, '\n');
    ck_assert_msg(newline && newline[1] == '\0', "the error is not one line: %s", text);
    ck_assert_msg(strstr(text, needle) != NULL, "error '%s' does not mention '%s'", text, needle);
}

/* The tensor `name` of a safetensors file, as float32. */
static mc_tensor *read_tensor(const char *path, const char *name) {
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    mc_tensor *t;
    MC_CHECK_OK(mc_safetensors_read(f, name, &t));
    mc_safetensors_close(f);
    return t;
}

/* Write `values` as the float32 tensor "input" of `path`. */
static void write_float_input(const char *path, const mc_tensor *values) {
    mc_tensor *input;
    MC_CHECK_OK(mc_tensor_clone(&input, values, "input"));
    MC_CHECK_OK(mc_safetensors_write(path, 1, &input, 0, NULL));
    mc_tensor_free(input);
}

/* Write the integer tensor "input" (rows, cols) as I64 or I32, following
 * the format's description (io.h): 8-byte little-endian header length, the
 * JSON header (padded with spaces to a multiple of 8), little-endian data. */
static void write_ids_input(const char *path, bool as_int32, int64_t rows, int64_t cols,
                            const int64_t *values) {
    int width = as_int32 ? 4 : 8;
    char header[256];
    int len = snprintf(header, sizeof header,
                       "{\"input\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[0,%lld]}}",
                       as_int32 ? "I32" : "I64", (long long)rows, (long long)cols,
                       (long long)(rows * cols * width));
    while (len % 8) header[len++] = ' ';
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    for (int b = 0; b < 8; b++) fputc((int)(((uint64_t)len >> (8 * b)) & 0xff), f);
    fwrite(header, 1, (size_t)len, f);
    for (int64_t i = 0; i < rows * cols; i++)
        for (int b = 0; b < width; b++) fputc((int)(((uint64_t)values[i] >> (8 * b)) & 0xff), f);
    ck_assert_int_eq(fclose(f), 0);
}

/* The rows of `actual` against `expected`, both (N, E): the shape, the
 * relative error of the whole, and each element (one wrong row cannot
 * hide in the norm). */
static void assert_embeddings_close(const char *what, const mc_tensor *actual, const mc_tensor *expected,
                                    double tolerance) {
    char a[128], e[128];
    ck_assert_msg(mc_shape_equal(actual->shape, expected->shape), "%s: output %s, expected %s", what,
                  mc_tensor_str(actual, a, sizeof a), mc_tensor_str(expected, e, sizeof e));
    double error = mc_test_rel_error(actual->data, expected->data, (long)actual->numel);
    ck_assert_msg(error < tolerance, "%s: relative error %.3g (tolerance %.3g)", what, error, tolerance);
    mc_test_assert_close(what, actual->data, expected->data, (long)actual->numel, 10 * tolerance, 1e-4);
}

/* The "output" tensor of the file `path` that embed wrote, against
 * `expected` (assert_embeddings_close). */
static void assert_output_close(const char *what, const char *path, const mc_tensor *expected,
                                double tolerance) {
    mc_tensor *output = read_tensor(path, "output");
    assert_embeddings_close(what, output, expected, tolerance);
    mc_tensor_free(output);
}

/* Remove the folder and what the tests left in it. */
static void embed_test_cleanup(void) {
    char command[1100];
    snprintf(command, sizeof command, "rm -rf '%s'", embed_test_dir());
    if (system(command) != 0) fprintf(stderr, "warning: could not remove %s\n", embed_test_dir());
}

/* main()'s part: run `suite` between making the folder and removing it.
 * Returns the process exit code. */
static int embed_test_run_suite(Suite *suite) {
    if (!embed_test_make_dir()) {
        fprintf(stderr, "cannot make a temporary folder\n");
        return 1;
    }
    int code = mc_test_run_suite(suite);
    embed_test_cleanup();
    return code;
}

#endif

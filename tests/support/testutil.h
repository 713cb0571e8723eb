/* Test support shared by the Check suites: status assertions, array
 * comparison, an assertion around the gradient checker, reference-data paths
 * and the skip convention. */
#ifndef MMCHAIN_TESTUTIL_H
#define MMCHAIN_TESTUTIL_H

#include <check.h>
#include <stdbool.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mmchain/mmchain.h"

/* ctest reports a suite that exits with this code as skipped. */
#define MC_TEST_SKIP_CODE 77

/* Assert a call succeeded; on failure print mmchain's message. */
#define MC_CHECK_OK(expr)                                                              \
    do {                                                                               \
        mc_status mc_check_status_ = (expr);                                           \
        ck_assert_msg(mc_check_status_ == MC_OK, "%s failed: %s (%s)", #expr,         \
                      mc_status_name(mc_check_status_), mc_last_error());              \
    } while (0)

/* Assert a call failed with `code` and that its message contains `needle`. */
#define MC_CHECK_FAILS(expr, code, needle)                                             \
    do {                                                                               \
        mc_clear_error();                                                              \
        mc_status mc_check_status_ = (expr);                                           \
        ck_assert_msg(mc_check_status_ == (code), "%s returned %s, expected %s (%s)",  \
                      #expr, mc_status_name(mc_check_status_), mc_status_name(code),   \
                      mc_last_error());                                                \
        ck_assert_msg(strstr(mc_last_error(), (needle)) != NULL,                       \
                      "%s: message \"%s\" does not mention \"%s\"", #expr,              \
                      mc_last_error(), (needle));                                      \
    } while (0)

/* Largest |a-b| / (atol + rtol*|b|) over n values; <= 1 means "close".
 * Writes the worst index to *worst (may be NULL). */
double mc_test_max_violation(const float *actual, const float *expected, long n, double rtol,
                             double atol, long *worst);
/* Assert every actual[i] is close to expected[i]; `what` names them. */
void mc_test_assert_close(const char *what, const float *actual, const float *expected, long n,
                          double rtol, double atol);
/* Relative error of the whole array: ||a - b|| / max(||b||, tiny). */
double mc_test_rel_error(const float *actual, const float *expected, long n);
/* A malloc'ed copy of n floats (free it), to keep results a later run
 * overwrites. */
float *mc_test_copy_floats(const float *values, int64_t n);
/* Assert two parameter lists hold the same tensors in the same order: names,
 * sizes and values bit for bit; `what` says which (e.g. "after resuming"). */
void mc_test_assert_same_params(const char *what, const mc_param_list *a, const mc_param_list *b);

/* A new graph (the test fails when it cannot be made). */
mc_graph *mc_test_new_graph(void);

/* ---- gradient checking ----
 * ck_assert wrapper around the library's mc_gradcheck (mmchain/gradcheck.h):
 * fails the test with its message when the gradients disagree or the check
 * could not run. */
void mc_assert_gradcheck(const char *name, int n_inputs, mc_tensor **inputs,
                         mc_gradcheck_forward forward, void *ctx, const mc_gradcheck_options *options);

/* ---- paths ---- */
/* $MMCHAIN_SHARED_DATA/<relative>, or the reference folder CMake was given
 * (MMCHAIN_SHARED_DATA, by default ../shared/data beside the sources). */
const char *mc_test_shared_path(const char *relative, char *buf, size_t len);
/* $MMCHAIN_FIXTURES/<relative>, or tests/golden/fixtures/<relative> in the
 * source tree (an absolute path either way). */
const char *mc_test_fixture_path(const char *relative, char *buf, size_t len);
/* A fresh empty temporary folder for this test run. */
const char *mc_test_temp_dir(char *buf, size_t len);
/* A fresh temporary folder (into dir) and the path of `name` inside it
 * (into path); returns path. */
const char *mc_test_temp_file(char *dir, size_t dir_len, char *path, size_t path_len,
                              const char *name);
bool mc_test_file_exists(const char *path);

/* ---- a fresh temporary folder for every test of a case ----
 * After mc_test_use_temp_dir(tc), each test of `tc` starts with an empty
 * folder named by mc_test_dir, removed with all it holds when the test
 * ends (a Check fixture, so the test itself neither makes nor removes it). */
extern char mc_test_dir[512];
TCase *mc_test_use_temp_dir(TCase *tc); /* returns tc */
/* mc_test_dir/<name> into buf (len bytes); returns buf. */
const char *mc_test_dir_path(const char *name, char *buf, size_t len);

/* ---- files (each fails the test when the file system says no) ---- */
/* The whole file, malloc'ed and NUL-terminated (free it); *len (may be
 * NULL) gets its size in bytes. */
char *mc_test_read_file(const char *path, size_t *len);
/* Create or replace `path` with n bytes / a NUL-terminated text. */
void mc_test_write_file(const char *path, const void *bytes, size_t n);
void mc_test_write_text(const char *path, const char *text);
/* A safetensors file from a header string and a data buffer, the header
 * length stated as stated_header_len (UINT64_MAX: the header's real length;
 * anything else forges it). */
void mc_test_write_safetensors(const char *path, const char *header, const void *data,
                               size_t data_len, uint64_t stated_header_len);
/* Copy the safetensors file `src` to `dst` with metadata `key` set to
 * `value` (a checkpoint damaged or forged one field at a time). */
void mc_test_copy_with_metadata(const char *src, const char *dst, const char *key,
                                const char *value);
/* Assert `text` (its name in messages: `what`) contains every one of
 * `needles` / none of them; both lists end with NULL. */
void mc_test_assert_contains(const char *what, const char *text, const char *const needles[]);
void mc_test_assert_lacks(const char *what, const char *text, const char *const needles[]);
/* Assert the file holds exactly `expected`. */
void mc_test_assert_file_text(const char *path, const char *expected);
/* Remove `dir` and everything below it (links are removed, not followed;
 * read-only entries are made writable first). */
void mc_test_remove_tree(const char *dir);

/* ---- after an injected failure (limited.h) ---- */
/* Assert `path` holds exactly the `n` bytes `expected` and that `dir` holds
 * no "NAME.tmp.XXXXXX" left behind by an atomic writer. */
void mc_test_assert_survived(const char *path, const void *expected, size_t n, const char *dir);

/* ---- deterministic fuzzing ----
 * xorshift64* (Vigna 2016): a reproducible stream, independent of the
 * library's RNG, so a failing fuzz iteration replays exactly. `state` must
 * start non-zero. */
uint32_t mc_test_fuzz_next(uint64_t *state);

/* Add a test case called `name` to `suite`, holding `tests` in order (the
 * list ends with NULL); returns it, for a timeout or a fixture. */
TCase *mc_test_add_case(Suite *suite, const char *name, const TTest *const tests[]);
/* A loop test: Check runs `test` once for each _i in [from, to). */
typedef struct mc_test_loop {
    const TTest *test;
    int from, to;
} mc_test_loop;
/* Add the loop tests `loops` to `tc` in order (the list ends with an entry
 * whose test is NULL); returns tc. */
TCase *mc_test_add_loops(TCase *tc, const mc_test_loop loops[]);
/* Run a suite; returns the process exit code (0 when all pass). */
int mc_test_run_suite(Suite *suite);
/* Print "SKIPPED: <reason>" and return MC_TEST_SKIP_CODE, for main(). */
int mc_test_skip(const char *reason);

#endif

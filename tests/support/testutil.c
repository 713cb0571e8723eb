/* nftw is an X/Open function. */
#define _XOPEN_SOURCE 700
#include "testutil.h"

#include <dirent.h>
#include <ftw.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

double mc_test_max_violation(const float *actual, const float *expected, long n, double rtol,
                             double atol, long *worst) {
    double max_violation = 0.0;
    long worst_index = -1;
    for (long i = 0; i < n; i++) {
        double diff = fabs((double)actual[i] - (double)expected[i]);
        double allowed = atol + rtol * fabs((double)expected[i]);
        double violation = isnan(diff) ? INFINITY : diff / allowed;
        if (violation > max_violation || worst_index < 0) {
            max_violation = violation;
            worst_index = i;
        }
    }
    if (worst) *worst = worst_index;
    return max_violation;
}

void mc_test_assert_close(const char *what, const float *actual, const float *expected, long n,
                          double rtol, double atol) {
    long worst;
    double violation = mc_test_max_violation(actual, expected, n, rtol, atol, &worst);
    ck_assert_msg(violation <= 1.0, "%s: element %ld is %.8g, expected %.8g (rtol %g, atol %g)",
                  what, worst, worst >= 0 ? actual[worst] : 0.0f,
                  worst >= 0 ? expected[worst] : 0.0f, rtol, atol);
}

double mc_test_rel_error(const float *actual, const float *expected, long n) {
    double diff2 = 0.0, ref2 = 0.0;
    for (long i = 0; i < n; i++) {
        double d = (double)actual[i] - (double)expected[i];
        diff2 += d * d;
        ref2 += (double)expected[i] * expected[i];
    }
    if (isnan(diff2)) return INFINITY;
    return sqrt(diff2) / fmax(sqrt(ref2), 1e-30);
}

mc_graph *mc_test_new_graph(void) {
    mc_graph *g = NULL;
    MC_CHECK_OK(mc_graph_new(&g));
    return g;
}

float *mc_test_copy_floats(const float *values, int64_t n) {
    float *copy = malloc((size_t)n * sizeof(float));
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, values, (size_t)n * sizeof(float));
    return copy;
}

void mc_test_assert_same_params(const char *what, const mc_param_list *a, const mc_param_list *b) {
    ck_assert_msg(a->count == b->count, "%s: %d parameters, expected %d", what, b->count, a->count);
    for (int i = 0; i < a->count; i++) {
        const mc_tensor *x = a->items[i], *y = b->items[i];
        ck_assert_msg(strcmp(x->name, y->name) == 0 && x->numel == y->numel,
                      "%s: parameter %d is %s (%lld values), expected %s (%lld)", what, i, y->name,
                      (long long)y->numel, x->name, (long long)x->numel);
        ck_assert_msg(memcmp(x->data, y->data, (size_t)x->numel * sizeof(float)) == 0, "%s: %s differs",
                      what, x->name);
    }
}

/* ---- gradient checking ---- */

void mc_assert_gradcheck(const char *name, int n_inputs, mc_tensor **inputs,
                         mc_gradcheck_forward forward, void *ctx, const mc_gradcheck_options *options) {
    mc_clear_error();
    mc_status status = mc_gradcheck(name, n_inputs, inputs, forward, ctx, options, NULL);
    ck_assert_msg(status == MC_OK, "gradient check failed (%s): %s", mc_status_name(status),
                  mc_last_error());
}

/* ---- paths ---- */

static const char *env_path(const char *variable, const char *fallback, const char *relative,
                            char *buf, size_t len) {
    const char *root = getenv(variable);
    snprintf(buf, len, "%s/%s", root && root[0] ? root : fallback, relative);
    return buf;
}

/* Without the environment ctest sets, the absolute folders CMake compiled
 * in: a suite run by hand finds its files from any working directory. */
const char *mc_test_shared_path(const char *relative, char *buf, size_t len) {
    return env_path("MMCHAIN_SHARED_DATA", MMCHAIN_TEST_SHARED_DATA, relative, buf, len);
}

const char *mc_test_fixture_path(const char *relative, char *buf, size_t len) {
    return env_path("MMCHAIN_FIXTURES", MMCHAIN_TEST_FIXTURES, relative, buf, len);
}

const char *mc_test_temp_dir(char *buf, size_t len) {
    const char *base = getenv("TMPDIR");
    snprintf(buf, len, "%s/mmchain-test-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(buf)) buf[0] = '\0';
    return buf;
}

const char *mc_test_temp_file(char *dir, size_t dir_len, char *path, size_t path_len,
                              const char *name) {
    snprintf(path, path_len, "%s/%s", mc_test_temp_dir(dir, dir_len), name);
    return path;
}

bool mc_test_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

char mc_test_dir[512];

static void make_test_dir(void) {
    ck_assert_msg(mc_test_temp_dir(mc_test_dir, sizeof mc_test_dir)[0] != '\0',
                  "cannot create a temporary folder");
}

static void remove_test_dir(void) {
    if (mc_test_dir[0] != '\0') mc_test_remove_tree(mc_test_dir);
    mc_test_dir[0] = '\0';
}

TCase *mc_test_use_temp_dir(TCase *tc) {
    tcase_add_checked_fixture(tc, make_test_dir, remove_test_dir);
    return tc;
}

const char *mc_test_dir_path(const char *name, char *buf, size_t len) {
    snprintf(buf, len, "%s/%s", mc_test_dir, name);
    return buf;
}

/* ---- files ---- */

char *mc_test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t size = 0, capacity = 4096;
    char *data = malloc(capacity);
    ck_assert_ptr_nonnull(data);
    for (size_t got; (got = fread(data + size, 1, capacity - 1 - size, f)) > 0;) {
        size += got;
        if (capacity - 1 - size == 0) {
            capacity *= 2;
            data = realloc(data, capacity);
            ck_assert_ptr_nonnull(data);
        }
    }
    ck_assert_msg(!ferror(f), "cannot read %s", path);
    fclose(f);
    data[size] = '\0';
    if (len) *len = size;
    return data;
}

void mc_test_write_file(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(bytes, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

void mc_test_write_text(const char *path, const char *text) { mc_test_write_file(path, text, strlen(text)); }

void mc_test_copy_with_metadata(const char *src, const char *dst, const char *key, const char *value) {
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(src, &f));
    int n = mc_safetensors_count(f), n_meta = mc_safetensors_metadata_count(f);
    mc_tensor **tensors = calloc((size_t)n, sizeof *tensors);
    mc_metadata_entry *meta = calloc((size_t)n_meta, sizeof *meta);
    ck_assert(tensors && meta);
    for (int i = 0; i < n; i++) MC_CHECK_OK(mc_safetensors_read(f, mc_safetensors_name(f, i), &tensors[i]));
    for (int i = 0; i < n_meta; i++) {
        meta[i].key = mc_safetensors_metadata_key(f, i);
        meta[i].value = strcmp(meta[i].key, key) == 0 ? value : mc_safetensors_metadata(f, meta[i].key);
    }
    MC_CHECK_OK(mc_safetensors_write(dst, n, tensors, n_meta, meta));
    for (int i = 0; i < n; i++) mc_tensor_free(tensors[i]);
    free(tensors);
    free(meta);
    mc_safetensors_close(f);
}

void mc_test_write_safetensors(const char *path, const char *header, const void *data,
                               size_t data_len, uint64_t stated_header_len) {
    size_t hl = strlen(header);
    uint64_t stated = stated_header_len != UINT64_MAX ? stated_header_len : hl;
    size_t total = 8 + hl + data_len;
    unsigned char *buf = malloc(total);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(stated >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (data_len) memcpy(buf + 8 + hl, data, data_len);
    mc_test_write_file(path, buf, total);
    free(buf);
}

void mc_test_assert_contains(const char *what, const char *text, const char *const needles[]) {
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(text, needles[i]) != NULL, "%s lacks \"%s\"", what, needles[i]);
}

void mc_test_assert_lacks(const char *what, const char *text, const char *const needles[]) {
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(text, needles[i]) == NULL, "%s contains \"%s\"", what, needles[i]);
}

void mc_test_assert_file_text(const char *path, const char *expected) {
    char *text = mc_test_read_file(path, NULL);
    ck_assert_msg(strcmp(text, expected) == 0, "%s holds \"%s\", expected \"%s\"", path, text, expected);
    free(text);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)ftw;
    if (flag != FTW_SL && flag != FTW_SLN) chmod(path, 0700); /* chmod would follow a link */
    return remove(path);
}

void mc_test_remove_tree(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* ---- fuzzing ---- */

uint32_t mc_test_fuzz_next(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

TCase *mc_test_add_case(Suite *suite, const char *name, const TTest *const tests[]) {
    TCase *tc = tcase_create(name);
    for (size_t i = 0; tests[i] != NULL; ++i)
        tcase_add_test(tc, tests[i]);
    suite_add_tcase(suite, tc);
    return tc;
}

TCase *mc_test_add_loops(TCase *tc, const mc_test_loop loops[]) {
    for (size_t i = 0; loops[i].test != NULL; ++i)
        tcase_add_loop_test(tc, loops[i].test, loops[i].from, loops[i].to);
    return tc;
}

int mc_test_run_suite(Suite *suite) {
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? 0 : 1;
}

int mc_test_skip(const char *reason) {
    printf("SKIPPED: %s\n", reason);
    return MC_TEST_SKIP_CODE;
}

/* ---- after an injected failure ---- */

void mc_test_assert_survived(const char *path, const void *expected, size_t n, const char *dir) {
    size_t len = 0;
    char *now = mc_test_read_file(path, &len);
    ck_assert_msg(len == n && memcmp(now, expected, n) == 0,
                  "%s was changed by a failed write (%zu bytes, was %zu)", path, len, n);
    free(now);
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot list %s", dir);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        ck_assert_msg(strstr(e->d_name, ".tmp.") == NULL, "a failed write left %s/%s behind", dir, e->d_name);
    closedir(d);
}

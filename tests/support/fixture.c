/* Fixture helpers: see fixture.h. */
#include "fixture.h"

#include <stdlib.h>

#include "testutil.h"

mc_fixture *mc_fixture_open(const char *relative) {
    mc_fixture *fx = calloc(1, sizeof *fx);
    ck_assert_ptr_nonnull(fx);
    mc_test_fixture_path(relative, fx->path, sizeof fx->path);
    mc_status status = mc_safetensors_open(fx->path, &fx->file);
    ck_assert_msg(status == MC_OK, "fixture %s: %s (regenerate with /usr/bin/python3 tests/golden/gen_ops.py)",
                  fx->path, mc_last_error());
    return fx;
}

void mc_fixture_close(mc_fixture *fx) {
    if (!fx) return;
    mc_safetensors_close(fx->file);
    mc_params_free(&fx->owned);
    for (int i = 0; i < fx->n_blocks; i++) free(fx->blocks[i]);
    free(fx->blocks);
    free(fx);
}

mc_tensor *mc_fixture_tensor(mc_fixture *fx, const char *name, bool requires_grad) {
    mc_tensor *t = NULL;
    mc_status status = mc_safetensors_read(fx->file, name, &t);
    ck_assert_msg(status == MC_OK, "fixture %s: %s", fx->path, mc_last_error());
    status = mc_params_add(&fx->owned, t);
    if (status != MC_OK) mc_tensor_free(t);
    ck_assert_msg(status == MC_OK, "fixture %s: %s", fx->path, mc_last_error());
    if (requires_grad) ck_assert_int_eq(mc_tensor_set_requires_grad(t, true), MC_OK);
    return t;
}

int32_t *mc_fixture_ints(mc_fixture *fx, const char *name, int64_t *n) {
    int64_t *values = NULL;
    mc_shape shape;
    mc_status status = mc_safetensors_read_ints(fx->file, name, &values, &shape);
    ck_assert_msg(status == MC_OK, "fixture %s: %s", fx->path, mc_last_error());
    int64_t count = mc_shape_numel(shape);
    int32_t *out = malloc((size_t)count * sizeof *out + 1);
    ck_assert_ptr_nonnull(out);
    for (int64_t i = 0; i < count; i++) out[i] = (int32_t)values[i];
    free(values);
    if (fx->n_blocks == fx->cap_blocks) {
        fx->cap_blocks = fx->cap_blocks ? 2 * fx->cap_blocks : 8;
        void **blocks = realloc(fx->blocks, (size_t)fx->cap_blocks * sizeof *blocks);
        ck_assert_ptr_nonnull(blocks);
        fx->blocks = blocks;
    }
    fx->blocks[fx->n_blocks++] = out;
    if (n) *n = count;
    return out;
}

const char *mc_fixture_metadata(mc_fixture *fx, const char *key) {
    const char *value = mc_safetensors_metadata(fx->file, key);
    ck_assert_msg(value != NULL, "fixture %s: no metadata \"%s\"", fx->path, key);
    return value;
}

void mc_fixture_expect(mc_fixture *fx, const char *expected_name, const float *actual, int64_t n,
                       double rtol, double atol) {
    mc_tensor *expected = NULL;
    mc_status status = mc_safetensors_read(fx->file, expected_name, &expected);
    ck_assert_msg(status == MC_OK, "fixture %s: %s", fx->path, mc_last_error());
    int64_t expected_n = expected->numel;
    if (expected_n != n) mc_tensor_free(expected);
    ck_assert_msg(expected_n == n, "fixture %s: \"%s\" has %lld values, the result %lld", fx->path,
                  expected_name, (long long)expected_n, (long long)n);
    long worst = 0;
    double violation = mc_test_max_violation(actual, expected->data, (long)n, rtol, atol, &worst);
    double a = actual[worst], e = expected->data[worst];
    mc_tensor_free(expected);
    ck_assert_msg(violation <= 1.0,
                  "%s, \"%s\": element %ld is %.8g, expected %.8g (%.2f x the tolerance rtol %g atol %g)",
                  fx->path, expected_name, worst, a, e, violation, rtol, atol);
}

void mc_fixture_backward(mc_fixture *fx, mc_graph *g, mc_tensor *out, const char *dout_name) {
    mc_tensor *dout = mc_fixture_tensor(fx, dout_name, false);
    ck_assert_msg(dout->numel == out->numel, "fixture %s: \"%s\" has %lld values, the output %lld",
                  fx->path, dout_name, (long long)dout->numel, (long long)out->numel);
    MC_CHECK_OK(mc_backward_with_grad(g, out, dout->data));
}

void mc_fixture_expect_output(mc_fixture *fx, const char *name, const mc_tensor *t) {
    mc_fixture_expect(fx, name, t->data, t->numel, MC_PARITY_OUT_RTOL, MC_PARITY_OUT_ATOL);
}

void mc_fixture_expect_grad(mc_fixture *fx, const char *name, const mc_tensor *t) {
    ck_assert_msg(t->grad != NULL, "%s: no gradient was computed", t->name);
    mc_fixture_expect(fx, name, t->grad, t->numel, MC_PARITY_GRAD_RTOL, MC_PARITY_GRAD_ATOL);
}

/* MMCHAIN_PROFILE=1 makes any program that links the library print, at exit,
 * its ops (calls, forward and backward time), its matrix products by shape
 * and the packing share — without a call to anything.
 *
 * The suite runs itself again as a child (--child-steps) that makes a known
 * number of training steps of a tiny graph, sum(relu(A @ B)), and checks the
 * structure of the tables the child prints on stderr: every op is there with
 * exactly the calls made, and the three products of each step (the forward
 * and the two gradients, three distinct shapes) each with one call per step.
 * A second child (--child-recompute) runs the same steps with relu(A @ B)
 * as a recomputed segment (mc_recompute): backward runs its forward again,
 * and those calls must land in the recomputed columns, not in the forward
 * ones, so that the forward calls stay those of the steps. A third
 * (--child-reset) calls mc_profile_reset after its first step: the tables
 * must count only the steps after it.
 * Times are never checked: they depend on the machine. */
#include <stdlib.h>
#include <unistd.h>

#include "testutil.h"

enum { STEPS = 3, M = 5, N = 7, K = 3, RESET_AFTER = 1 };

/* The children's product: relu(x @ B), B the context; a segment for
 * mc_recompute. */
static mc_status product_relu(mc_graph *g, const void *context, bool recomputing, mc_tensor *x,
                              mc_tensor **out) {
    (void)recomputing;
    mc_tensor *const *b = context, *c;
    MC_TRY(mc_matmul(g, x, *b, false, &c));
    return mc_relu(g, c, out);
}

/* A child: STEPS steps of sum(relu(A (M, K) @ B (K, N))) and backward,
 * relu(A @ B) recomputed or not; with reset_after > 0, mc_profile_reset
 * after that many steps. */
static int child_steps(bool recompute, int reset_after) {
    mc_graph *g = NULL;
    mc_tensor *a = NULL, *b = NULL;
    if (mc_graph_new(&g) != MC_OK || mc_tensor_new(&a, MC_SHAPE(M, K), "a") != MC_OK ||
        mc_tensor_new(&b, MC_SHAPE(K, N), "b") != MC_OK)
        return 1;
    for (int64_t i = 0; i < a->numel; i++) a->data[i] = (float)(i % 5) - 2.0f;
    for (int64_t i = 0; i < b->numel; i++) b->data[i] = (float)(i % 3) - 0.5f;
    a->requires_grad = b->requires_grad = true;
    for (int step = 0; step < STEPS; step++) {
        if (reset_after > 0 && step == reset_after) mc_profile_reset();
        mc_tensor *r, *loss;
        mc_status status = recompute ? mc_recompute(g, product_relu, &b, sizeof b, a, &r)
                                     : product_relu(g, &b, false, a, &r);
        if (status != MC_OK || mc_sum_all(g, r, &loss) != MC_OK || mc_backward(g, loss) != MC_OK)
            return 1;
        mc_graph_reset(g);
    }
    mc_tensor_free(a);
    mc_tensor_free(b);
    mc_graph_free(g);
    return 0;
}

/* The child's stderr (the report), run with MMCHAIN_PROFILE=value and
 * the child's flag. */
static char *run_child_as(const char *flag, const char *value) {
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    ck_assert_msg(len > 0, "cannot read /proc/self/exe");
    self[len] = '\0';
    char command[4300];
    snprintf(command, sizeof command, "MMCHAIN_PROFILE=%s '%s' %s 2>&1", value, self, flag);
    FILE *child = popen(command, "r");
    ck_assert_msg(child != NULL, "cannot run %s", command);
    size_t capacity = 1 << 16, used = 0;
    char *text = malloc(capacity);
    ck_assert(text != NULL);
    size_t got;
    while ((got = fread(text + used, 1, capacity - 1 - used, child)) > 0) used += got;
    text[used] = '\0';
    int status = pclose(child);
    ck_assert_msg(status == 0, "%s: exit status %d, output:\n%s", command, status, text);
    return text;
}

static char *run_child(const char *value) { return run_child_as("--child-steps", value); }

/* The table row that starts with "| name |", or NULL. */
static const char *row_of(const char *text, const char *name) {
    char start[128];
    snprintf(start, sizeof start, "\n| %s |", name);
    const char *row = strstr(text, start);
    return row ? row + 1 : NULL;
}

START_TEST(op_rows_count_every_call) {
    char *text = run_child("1");
    ck_assert_msg(strstr(text, "mmchain profile (MMCHAIN_PROFILE=1)") != NULL, "no report:\n%s", text);
    ck_assert_msg(strstr(text, "| op | forward calls | forward s | backward calls | backward s |") != NULL,
                  "no op table header:\n%s", text);
    const char *ops[] = {"matmul", "relu", "sum_all"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        const char *row = row_of(text, ops[i]);
        ck_assert_msg(row != NULL, "no row for %s:\n%s", ops[i], text);
        long long forward_calls = -1, backward_calls = -1;
        double forward_s = -1, backward_s = -1;
        char name[64];
        int fields = sscanf(row, "| %63s | %lld | %lf | %lld | %lf |", name, &forward_calls,
                            &forward_s, &backward_calls, &backward_s);
        ck_assert_msg(fields == 5, "row of %s unreadable: %.120s", ops[i], row);
        ck_assert_int_eq(forward_calls, STEPS);
        ck_assert_int_eq(backward_calls, STEPS);
        ck_assert_msg(forward_s >= 0 && backward_s >= 0, "negative time in %.120s", row);
    }
    const char *all = row_of(text, "all ops");
    long long forward_calls = -1, backward_calls = -1;
    ck_assert_msg(all && sscanf(all, "| all ops | %lld | %*f | %lld |", &forward_calls,
                                &backward_calls) == 2,
                  "no total row:\n%s", text);
    ck_assert_int_eq(forward_calls, 3 * STEPS);
    ck_assert_int_eq(backward_calls, 3 * STEPS);
    free(text);
}
END_TEST

/* Calls in one op row: forward, backward, recomputed. */
static void op_calls(const char *text, const char *op, long long calls[3]) {
    const char *row = row_of(text, op);
    ck_assert_msg(row != NULL, "no row for %s:\n%s", op, text);
    char start[80];
    snprintf(start, sizeof start, "| %s | %%lld | %%*f | %%lld | %%*f | %%lld |", op);
    ck_assert_msg(sscanf(row, start, &calls[0], &calls[1], &calls[2]) == 3, "row of %s unreadable: %.160s",
                  op, row);
}

START_TEST(recomputed_forwards_counted_apart) {
    char *text = run_child_as("--child-recompute", "1");
    ck_assert_msg(strstr(text, "| backward s | recomputed calls | recomputed s |") != NULL,
                  "no recomputed columns:\n%s", text);
    /* The segment's ops: one forward, one backward and one forward again
     * per step; the loss's: no forward again; "recompute" (the node that
     * recomputes): a backward only. */
    const struct { const char *op; long long forward, backward, recomputed; } expected[] = {
        {"matmul", STEPS, STEPS, STEPS},
        {"relu", STEPS, STEPS, STEPS},
        {"sum_all", STEPS, STEPS, 0},
        {"recompute", 0, STEPS, 0},
        {"all ops", 3 * STEPS, 4 * STEPS, 2 * STEPS},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        long long calls[3];
        op_calls(text, expected[i].op, calls);
        ck_assert_msg(calls[0] == expected[i].forward && calls[1] == expected[i].backward &&
                          calls[2] == expected[i].recomputed,
                      "%s: calls %lld forward, %lld backward, %lld recomputed; expected %lld, %lld, %lld",
                      expected[i].op, calls[0], calls[1], calls[2], expected[i].forward,
                      expected[i].backward, expected[i].recomputed);
    }
    free(text);
}
END_TEST

/* The product table holds the three shapes of a step (forward C = A B;
 * dA = dC B^T; dB = A^T dC), each with `steps` calls, and a total row of
 * 3 * steps calls. */
static void check_product_rows(const char *text, long long steps) {
    const struct { int m, n, k; const char *ab; } shapes[] = {
        {M, N, K, "N N"}, {M, K, N, "N T"}, {K, N, M, "T N"}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char start[96];
        snprintf(start, sizeof start, "| %d | %d | %d | %s | 1 | fp32 | %lld |", shapes[i].m,
                 shapes[i].n, shapes[i].k, shapes[i].ab, steps);
        ck_assert_msg(strstr(text, start) != NULL, "no row \"%s\" in:\n%s", start, text);
    }
    long long calls = -1;
    const char *all = row_of(text, "all products");
    ck_assert_msg(all && sscanf(all, "| all products | | | | | | %lld |", &calls) == 1,
                  "no total row:\n%s", text);
    ck_assert_int_eq(calls, 3 * steps);
}

START_TEST(gemm_rows_by_shape) {
    char *text = run_child("1");
    ck_assert_msg(strstr(text, "| M | N | K | A B | batch | precision | calls | s | GFLOP/s |") != NULL,
                  "no product table header:\n%s", text);
    check_product_rows(text, STEPS);
    ck_assert_msg(strstr(text, "\npacking: ") != NULL, "no packing line:\n%s", text);
    ck_assert_msg(strstr(text, "largest graph peak (arena + gradients)") != NULL,
                  "no memory line:\n%s", text);
    free(text);
}
END_TEST

/* mc_profile_reset after RESET_AFTER steps: the report counts only the
 * steps after it, in the op table and in the product table, and says
 * where its time starts. */
START_TEST(reset_forgets_earlier_steps) {
    char *text = run_child_as("--child-reset", "1");
    ck_assert_msg(strstr(text, "s from the last mc_profile_reset to exit") != NULL,
                  "the header does not name the reset:\n%s", text);
    const long long after = STEPS - RESET_AFTER;
    const char *ops[] = {"matmul", "relu", "sum_all"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        long long calls[3];
        op_calls(text, ops[i], calls);
        ck_assert_msg(calls[0] == after && calls[1] == after,
                      "%s: %lld forward and %lld backward calls after the reset; expected %lld",
                      ops[i], calls[0], calls[1], after);
    }
    check_product_rows(text, after);
    free(text);
}
END_TEST

START_TEST(off_prints_nothing) {
    char *text = run_child("0");
    ck_assert_msg(strstr(text, "mmchain profile") == NULL, "MMCHAIN_PROFILE=0 printed:\n%s", text);
    free(text);
}
END_TEST

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--child-steps") == 0) return child_steps(false, 0);
    if (argc > 1 && strcmp(argv[1], "--child-recompute") == 0) return child_steps(true, 0);
    if (argc > 1 && strcmp(argv[1], "--child-reset") == 0) return child_steps(false, RESET_AFTER);
    Suite *s = suite_create("profile");
    const TTest *const tests[] = {op_rows_count_every_call, recomputed_forwards_counted_apart,
                                  gemm_rows_by_shape, reset_forgets_earlier_steps,
                                  off_prints_nothing, NULL};
    mc_test_add_case(s, "environment", tests);
    return mc_test_run_suite(s);
}

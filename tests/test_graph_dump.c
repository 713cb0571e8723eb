/* mc_graph_dump and mc_graph_node (autograd.h) on a 3-op graph:
 * linear -> relu -> mean_all. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

START_TEST(test_dump_of_three_ops) {
    mc_graph *g;
    MC_CHECK_OK(mc_graph_new(&g));
    mc_tensor *x, *w, *b, *h, *a, *loss;
    MC_CHECK_OK(mc_tensor_new(&x, MC_SHAPE(2, 3), "x"));
    MC_CHECK_OK(mc_tensor_new(&w, MC_SHAPE(4, 3), "w"));
    MC_CHECK_OK(mc_tensor_new(&b, MC_SHAPE(4), "b"));
    MC_CHECK_OK(mc_tensor_set_requires_grad(w, true));
    MC_CHECK_OK(mc_linear(g, x, w, b, &h));
    MC_CHECK_OK(mc_relu(g, h, &a));
    MC_CHECK_OK(mc_mean_all(g, a, &loss));

    /* The nodes, in execution order, with what each took from the arena:
     * at least its output (2*4, 2*4 and 1 floats). */
    ck_assert_int_eq(mc_graph_tape_length(g), 3);
    const char *ops[3] = {"linear", "relu", "mean_all"};
    const int64_t out_numel[3] = {8, 8, 1};
    size_t arena_total = 0;
    for (int i = 0; i < 3; i++) {
        const mc_node *node = mc_graph_node(g, i);
        ck_assert_ptr_nonnull(node);
        ck_assert_str_eq(node->op, ops[i]);
        ck_assert_int_eq(node->out->numel, out_numel[i]);
        ck_assert_uint_ge(node->arena_bytes, (size_t)out_numel[i] * sizeof(float));
        arena_total += node->arena_bytes;
    }
    ck_assert_uint_le(arena_total, mc_graph_arena_bytes(g));
    ck_assert_ptr_null(mc_graph_node(g, 3));
    ck_assert_ptr_null(mc_graph_node(g, -1));

    char dir[512], path[600];
    mc_test_temp_file(dir, sizeof dir, path, sizeof path, "dump.txt");
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    MC_CHECK_OK(mc_graph_dump(g, f));
    fclose(f);
    char *text = mc_test_read_file(path, NULL);
    ck_assert_msg(strstr(text, "graph: 3 nodes\n") != NULL, "%s", text);
    /* One line per node: index, op, output name, shape, output bytes. */
    char *line = strchr(strchr(text, '\n') + 1, '\n') + 1; /* past the header */
    const char *shapes[3] = {"(2, 4)", "(2, 4)", "(1)"};
    for (int i = 0; i < 3; i++) {
        int index;
        char op[32], name[32];
        ck_assert_int_eq(sscanf(line, "%d %31s %31s", &index, op, name), 3);
        ck_assert_int_eq(index, i);
        ck_assert_str_eq(op, ops[i]);
        char *end = strchr(line, '\n');
        *end = '\0';
        ck_assert_msg(strstr(line, shapes[i]) != NULL, "line %d: %s", i, line);
        char bytes[32];
        snprintf(bytes, sizeof bytes, " %lld ", (long long)out_numel[i] * 4);
        ck_assert_msg(strstr(line, bytes) != NULL, "line %d: %s", i, line);
        line = end + 1;
    }
    ck_assert_msg(strstr(line, "total: 3 nodes, outputs 68 bytes") == line, "%s", line);
    /* The inputs of linear: x needs no gradient, w does. */
    ck_assert(strstr(text, " x (no grad) w b (no grad)") != NULL);
    free(text);
    mc_test_remove_tree(dir);

    MC_CHECK_FAILS(mc_graph_dump(g, NULL), MC_ERR_ARG, "graph dump");
    MC_CHECK_OK(mc_backward(g, loss));
    ck_assert_int_eq(mc_graph_tape_length(g), 0);
    mc_tensor_free(x);
    mc_tensor_free(w);
    mc_tensor_free(b);
    mc_graph_free(g);
}
END_TEST

int main(void) {
    Suite *s = suite_create("graph_dump");
    const TTest *const tests[] = {test_dump_of_three_ops, NULL};
    mc_test_add_case(s, "graph_dump", tests);
    return mc_test_run_suite(s);
}

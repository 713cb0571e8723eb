/* example_custom_op — the tape traced by hand (docs/autograd.md, "The tape,
 * traced"), then a custom op with its own backward, checked against finite
 * differences (docs/guide.md, "Custom ops").
 *
 *   example_custom_op
 *
 * Prints what each step of the tape does and ends with "custom op: gradient
 * check passed". tests/script_example_custom_op.sh runs it; the code blocks
 * of docs/autograd.md and docs/guide.md are copied from this file
 * (tests/script_docs_snippets.sh checks that they still are). */
#include <stdio.h>

#include "mmchain/mmchain.h"

/* ---- the tape, traced ---- */

static void print_tensor(const char *label, const mc_tensor *t, const float *values) {
    char shape[64];
    printf("  %-8s %-8s", label, mc_shape_str(t->shape, shape, sizeof shape));
    for (int64_t i = 0; i < t->numel && i < 8; i++) printf(" %7.4f", values[i]);
    printf("%s\n", t->numel > 8 ? " ..." : "");
}

/* h = linear(x, w, b); a = relu(h); loss = mean_all(a); backward. */
static mc_status trace_tape(mc_graph *g, mc_rng *rng) {
    mc_tensor *x, *w, *b;
    MC_TRY(mc_tensor_new(&x, MC_SHAPE(2, 3), "x"));
    MC_TRY(mc_tensor_new(&w, MC_SHAPE(4, 3), "w"));
    MC_TRY(mc_tensor_new(&b, MC_SHAPE(4), "b"));
    mc_tensor_uniform(x, rng, -1.0f, 1.0f);
    mc_tensor_uniform(w, rng, -1.0f, 1.0f);
    MC_TRY(mc_tensor_set_requires_grad(w, true));
    MC_TRY(mc_tensor_set_requires_grad(b, true));

    mc_tensor *h, *a, *loss;
    MC_TRY(mc_linear(g, x, w, b, &h));   /* node 0 */
    MC_TRY(mc_relu(g, h, &a));           /* node 1 */
    MC_TRY(mc_mean_all(g, a, &loss));    /* node 2 */
    int recorded = mc_graph_tape_length(g);
    size_t arena = mc_graph_arena_bytes(g);
    MC_TRY(mc_backward(g, loss));

    printf("forward: %d nodes recorded, arena %zu bytes in use\n", recorded, arena);
    print_tensor("h", h, h->data);
    print_tensor("a", a, a->data);
    print_tensor("loss", loss, loss->data);
    printf("backward: tape consumed (length %d); the activations' gradients were handed back:\n",
           mc_graph_tape_length(g));
    printf("  h->grad %s, a->grad %s, loss->grad %s\n", h->grad ? "kept" : "NULL",
           a->grad ? "kept" : "NULL", loss->grad ? "kept" : "NULL");
    printf("  x->grad %s (x needs no gradient)\n", x->grad ? "kept" : "NULL");
    print_tensor("dw", w, w->grad);
    print_tensor("db", b, b->grad);
    mc_tensor_free(x);
    mc_tensor_free(w);
    mc_tensor_free(b);
    return MC_OK;
}

int main(void) {
    mc_rng rng;
    mc_rng_seed(&rng, 1);
    mc_graph *g;
    if (mc_graph_new(&g) != MC_OK || trace_tape(g, &rng) != MC_OK) {
        fprintf(stderr, "example_custom_op: %s\n", mc_last_error());
        return 1;
    }
    mc_graph_free(g);
    return 0;
}

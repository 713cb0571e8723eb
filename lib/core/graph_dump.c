/* mc_graph_dump (autograd.h): the tape as text, for debugging — what ran,
 * what each node produced and what it keeps for the backward pass. */
#include "mmchain/autograd.h"

mc_status mc_graph_dump(const mc_graph *g, FILE *f) {
    if (!g || !f) return mc_error(MC_ERR_ARG, "graph dump: graph and file must not be NULL");
    int n = mc_graph_tape_length(g);
    fprintf(f, "graph: %d node%s\n", n, n == 1 ? "" : "s");
    fprintf(f, "%4s  %-16s %-20s %-18s %12s %12s  %s\n", "#", "op", "output", "shape", "out bytes",
            "arena bytes", "inputs");
    size_t total_out = 0, total_arena = 0;
    for (int i = 0; i < n; i++) {
        const mc_node *node = mc_graph_node(g, i);
        char shape[64];
        size_t out_bytes = (size_t)node->out->numel * sizeof(float);
        total_out += out_bytes;
        total_arena += node->arena_bytes;
        fprintf(f, "%4d  %-16s %-20s %-18s %12zu %12zu ", i, node->op, node->out->name,
                mc_shape_str(node->out->shape, shape, sizeof shape), out_bytes, node->arena_bytes);
        for (int k = 0; k < node->n_in; k++)
            if (node->in[k])
                fprintf(f, " %s%s", node->in[k]->name, node->in[k]->requires_grad ? "" : " (no grad)");
        fputc('\n', f);
    }
    fprintf(f, "total: %d nodes, outputs %zu bytes, arena %zu bytes by the nodes; "
               "arena %zu bytes in use, peak %zu\n",
            n, total_out, total_arena, mc_graph_arena_bytes(g), mc_graph_arena_peak_bytes(g));
    return ferror(f) ? mc_error(MC_ERR_IO, "graph dump: write failed") : MC_OK;
}

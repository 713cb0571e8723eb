/* mmchain — the graph: an arena for one step's tensors, and the tape.
 *
 * Reverse-mode automatic differentiation as a tape (a Wengert list). Every op
 * that runs while gradients are enabled, on an input that requires a gradient,
 * appends one node to its graph's tape:
 *
 *     { op name, backward function, inputs, output, saved state }
 *
 * Ops run in program order, so the tape is already a topological order:
 * mc_backward() seeds d(loss)/d(loss) = 1 and walks the tape from the end,
 * each node adding its inputs' gradients (+=, so a tensor used twice gets the
 * sum). Gradients of heap tensors (parameters) accumulate across backward
 * calls until mc_tensor_zero_grad(), as in PyTorch.
 *
 * Memory: op outputs and every node's saved state come from the graph's
 * arena, a bump allocator. Gradients of these step tensors do not: they come
 * from reusable gradient blocks that mc_backward() hands back as soon as the
 * node that produced the tensor has run (the gradient is complete and dead
 * then; PyTorch likewise keeps no .grad of a non-leaf tensor). Gradients of
 * heap tensors live on the heap with the tensor. mc_graph_reset() forgets
 * the step's tensors all at once: call it once per training step, at its
 * start, before the forward (the previous step's results, its loss
 * included, stay readable until then). Reset merges the step's arena
 * chunks into one of their total size, so a steady training loop stops
 * allocating after the first step (docs/architecture.md, "The arena"). */
#ifndef MMCHAIN_AUTOGRAD_H
#define MMCHAIN_AUTOGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MC_MAX_INPUTS 4

typedef struct mc_graph mc_graph;
typedef struct mc_node mc_node;

/* A backward function reads node->out->grad and adds into the gradients of
 * node->in[i] (mc_grad_buffer gives each one). */
typedef mc_status (*mc_backward_fn)(mc_node *node);

struct mc_node {
    const char *op;               /* "conv2d", "relu", ... (static string) */
    mc_backward_fn backward;
    mc_graph *graph;
    mc_tensor *out;
    mc_tensor *in[MC_MAX_INPUTS];
    int n_in;
    void *saved;                  /* op-specific state, in the arena */
    size_t arena_bytes;           /* arena bytes taken since the previous node was
                                     recorded: this op's output and saved state
                                     (and any unrecorded work just before it) */
};

mc_status mc_graph_new(mc_graph **out);
void mc_graph_free(mc_graph *g);
/* Forget the tape and every tensor allocated from this graph. */
void mc_graph_reset(mc_graph *g);

/* The no-grad switch: while disabled, ops record nothing and their outputs
 * do not require gradients (inference, frozen towers). Returns the previous
 * setting so a scope can restore it:
 *     bool was = mc_graph_set_grad_enabled(g, false); ...;
 *     mc_graph_set_grad_enabled(g, was); */
bool mc_graph_set_grad_enabled(mc_graph *g, bool enabled);
bool mc_graph_grad_enabled(const mc_graph *g);

/* The precision of the operands of every matrix product an op runs on this
 * graph: convolutions (forward and both gradients), linear, matmul and
 * attention's two products (Q K^T and P V, and their gradients). fp32 by
 * default. With MC_PRECISION_BF16 those products round their operands to
 * bf16 and sum in fp32 (mc_gemm, ops.h); everything else stays fp32:
 * tensors, weights, gradients, optimizer state, normalisation statistics,
 * softmax and the losses (InfoNCE's logits product included). A bf16
 * graph's 3x3 stride-1 convolutions with at least 128 tiles of 2x2 outputs
 * run by Winograd with bf16 operands (fp32 ones from 64 tiles;
 * conv_winograd.c says why and what it costs in accuracy).
 * Returns the previous setting, like mc_graph_set_grad_enabled. */
typedef enum mc_precision { MC_PRECISION_FP32, MC_PRECISION_BF16 } mc_precision;
mc_precision mc_graph_set_precision(mc_graph *g, mc_precision precision);
mc_precision mc_graph_precision(const mc_graph *g);

/* The precision every graph made from now on starts with (mc_graph_new),
 * fp32 unless set. The library's own graphs (the trainers', evaluation's,
 * CLIP's embedding helpers') are made inside its calls, so this one call
 * puts a whole program in bf16, as `mmchain ... --precision bf16` does:
 *     mc_set_default_precision(MC_PRECISION_BF16);
 * Graphs that exist keep theirs; mc_graph_set_precision still overrides
 * one graph. Returns the previous default. */
mc_precision mc_set_default_precision(mc_precision precision);
mc_precision mc_default_precision(void);

/* A zero-filled step tensor from the arena. */
mc_status mc_graph_tensor(mc_graph *g, mc_shape shape, const char *name, mc_tensor **out);
/* The same without zero-filling, for ops that overwrite every element of
 * their output (saves a pass over memory). Its contents are undefined. */
mc_status mc_graph_tensor_uninit(mc_graph *g, mc_shape shape, const char *name, mc_tensor **out);
/* A step tensor sharing `base`'s data under another shape of equal numel.
 * It gets its own gradient buffer and records nothing: mc_reshape (ops.h)
 * wraps it in a node that routes the gradient back to `base`. */
mc_status mc_graph_view(mc_graph *g, mc_tensor *base, mc_shape shape, mc_tensor **out);
/* Raw arena memory for saved state (64-byte aligned, zeroed). */
mc_status mc_graph_alloc(mc_graph *g, size_t bytes, void **out);

/* True when an op with these inputs must record itself. */
bool mc_graph_should_record(const mc_graph *g, int n_in, mc_tensor *const *in);
/* Append a node. Call after computing `out`; sets out->requires_grad.
 * `saved` must come from mc_graph_alloc (or be NULL). If recording is not
 * needed (mc_graph_should_record is false) this does nothing. */
mc_status mc_graph_record(mc_graph *g, const char *op, mc_backward_fn backward,
                          mc_tensor *out, int n_in, mc_tensor *const *in, void *saved);

/* The gradient buffer of t, created zero-filled on first use (a gradient
 * block of g for step tensors, on the heap for heap tensors). NULL result +
 * error on allocation failure. Backward functions add into it. */
mc_status mc_grad_buffer(mc_graph *g, mc_tensor *t, float **grad);
/* mc_grad_buffer for a backward that can write the whole gradient instead
 * of adding to it: a step tensor's buffer made by this call is NOT zeroed
 * (a pass over memory less) and *fresh is true; the caller must then store
 * every element. *fresh is false for a buffer that held a gradient already
 * (add into it) and for heap tensors (zero-filled as by mc_grad_buffer). */
mc_status mc_grad_buffer_fresh(mc_graph *g, mc_tensor *t, float **grad, bool *fresh);

/* Backpropagate from a one-element `loss`: d loss = 1. Walks the tape in
 * reverse. The tape is consumed (a second call without new ops is an error);
 * the step tensors' values stay readable until mc_graph_reset(), but the
 * gradient of each recorded op's output is handed back once used (its
 * ->grad is NULL afterwards): the gradients that remain are those of the
 * leaves, tensors no recorded op produced (parameters, inputs). */
mc_status mc_backward(mc_graph *g, mc_tensor *loss);

/* The general form: backpropagate from any tensor `t`, given d(loss)/d(t)
 * as `t_grad` (t->numel floats) — a vector-Jacobian product. */
mc_status mc_backward_with_grad(mc_graph *g, mc_tensor *t, const float *t_grad);

/* A hook that backward calls after it has walked each node of the tape
 * (run, or skipped because nothing downstream of it reached the loss),
 * last-recorded node first, with the node's position on the tape. Once a
 * backward has passed every node that takes a tensor as input, that
 * tensor's gradient is final: a data-parallel trainer starts sending a
 * parameter's gradient from here while the rest of backward runs. An error
 * from the hook stops backward. NULL removes it. The tape is readable from
 * the hook's `user` state through mc_graph_tape_node before backward starts. */
typedef mc_status (*mc_backward_hook)(void *user, int position, const mc_node *node);
void mc_graph_set_backward_hook(mc_graph *g, mc_backward_hook hook, void *user);
/* Node `position` (0 = first recorded) of the tape, or NULL past its end. */
const mc_node *mc_graph_tape_node(const mc_graph *g, int position);

/* Scoped release, for inference: everything allocated after a mark can be
 * given back at once. Used between the blocks of a network in no-grad mode
 * so that memory holds one block's activations, not all of them:
 *
 *     mc_graph_mark mark = mc_graph_get_mark(g);
 *     ... ops producing x ...
 *     MC_TRY(mc_graph_release_keep(g, mark, &x));   (x survives, moved)
 *
 * Refused (MC_ERR_STATE) if ops were recorded on the tape since the mark:
 * their saved state would be freed under them. */
typedef struct mc_graph_mark {
    const void *chunk;  /* the newest chunk at the mark */
    size_t chunk_used;  /* its fill at the mark */
    size_t bytes_in_use;
    int tape_length;
} mc_graph_mark;
mc_graph_mark mc_graph_get_mark(const mc_graph *g);
/* Free everything allocated after `mark`, except *keep (may be NULL), which
 * moves to the arena's first free place after the release (just after the
 * mark in its chunk, or the start of a spare or new chunk); *keep then
 * points to it, a new header with the same shape, name, values and
 * requires_grad. A *keep that holds a gradient buffer is refused
 * (MC_ERR_ARG), before anything is freed. */
mc_status mc_graph_release_keep(mc_graph *g, mc_graph_mark mark, mc_tensor **keep);

/* Recomputation (gradient checkpointing, as torch.utils.checkpoint): run a
 * segment of the network keeping only its input and output, and run the
 * segment's forward again during backward to get the tensors its backward
 * needs. A step then holds one segment's activations at a time instead of
 * every segment's, for about one more forward pass of time.
 *
 *     mc_tensor *y;
 *     MC_TRY(mc_recompute(g, block_fn, &ctx, sizeof ctx, x, &y));
 *
 * `segment` computes *out from `in` with ops on g; mc_recompute calls it
 * once now and once more when backward reaches the segment, with
 * `recomputing` true that time. Both calls must compute the same values
 * from the same input (so no random draws without restoring the
 * generator); the second must leave every state the first one changed as
 * the first left it (batch norm's running statistics: a training-mode
 * segment puts them back when recomputing). `context` (context_bytes) is
 * copied into the graph, so it may live on the caller's stack; it must not
 * point to step tensors that the segment creates. The parameters a segment
 * uses (heap tensors) get their gradients when backward recomputes it;
 * step tensors other than `in` that it reads must stay unchanged until
 * then. The gradients are those of running the segment directly, bit for
 * bit: the same ops run on the same values. The output is kept beside the
 * arena and handed back once backward has passed the segment (its values
 * are not readable after backward, unlike other step tensors'). With g's
 * gradients disabled the segment simply runs once. A segment whose output
 * needs a gradient must record an op: one that returns its input (or a
 * view of a tensor of before it) is an MC_ERR_ARG. */
typedef mc_status (*mc_segment_fn)(mc_graph *g, const void *context, bool recomputing,
                                   mc_tensor *in, mc_tensor **out);
mc_status mc_recompute(mc_graph *g, mc_segment_fn segment, const void *context, size_t context_bytes,
                       mc_tensor *in, mc_tensor **out);

/* Memory accounting. */
size_t mc_graph_arena_bytes(const mc_graph *g);      /* in use now */
size_t mc_graph_arena_peak_bytes(const mc_graph *g); /* most ever in use */
/* The arena's chunks, in use or kept for reuse: its memory taken from the
 * system (places a recomputed segment borrows from the gradient blocks'
 * region are not counted). After mc_graph_reset, usually one chunk of at
 * least 1 MiB that holds the step's peak (docs/architecture.md, "The arena"). */
size_t mc_graph_arena_reserved_bytes(const mc_graph *g);
int mc_graph_tape_length(const mc_graph *g);
/* Node `index` of the tape (0 is the first op recorded), or NULL when out of
 * range; the tape is empty after mc_backward and mc_graph_reset. */
const mc_node *mc_graph_node(const mc_graph *g, int index);
/* Print the tape to f, one line per node, in execution order, like ggml's
 * graph print: index, op, output name and shape, output bytes, arena bytes
 * (output + saved state, mc_node.arena_bytes) and the inputs' names; then
 * the totals and the arena's use and peak. For debugging: the format may
 * change. Call it before mc_backward, which consumes the tape. */
mc_status mc_graph_dump(const mc_graph *g, FILE *f);
/* Peak resident set size of the whole process, in bytes (from the OS). */
size_t mc_peak_rss_bytes(void);
/* MMCHAIN_PROFILE=1 (docs/architecture.md): forget the time and calls
 * counted so far, so that the report at exit covers only what runs after
 * this call (a benchmark calls it after its warm-up step, whose first-touch
 * page faults and pool growth are not the steady state). The graph-peak
 * and peak-resident-memory figures are kept. Without profiling it does
 * nothing. Not thread-safe against products running at the same time. */
void mc_profile_reset(void);

#ifdef __cplusplus
}
#endif
#endif

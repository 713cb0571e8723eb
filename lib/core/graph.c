/* The graph: a bump-allocating arena for one step, and the tape. */
#include "mmchain/autograd.h"
#include "core/grow.h"
#include "core/parallel.h"
#include "core/profile.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- the arena ---- */

enum { ARENA_ALIGN = 64, ARENA_MIN_CHUNK = 1 << 20 };

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t capacity;
    size_t used;
    unsigned char *memory; /* ARENA_ALIGN-aligned */
    bool borrowed; /* a recomputed segment's room in the planned region, not ours to free */
} arena_chunk;

/* Gradient buffers of step tensors live outside the arena, in blocks that
 * are handed back as soon as backward has consumed them (see mc_backward):
 * an activation's gradient is dead once the node that produced the
 * activation has run. The outputs that recomputed segments keep live in
 * the same blocks, for the same reason (mc_recompute, below).
 *
 * A training loop asks for the same blocks in the same order every step.
 * So the graph writes down each step's requests (size, when taken, when
 * handed back) and, at mc_graph_reset, lays them out once in one region:
 * requests alive at the same time get disjoint places, the others share
 * memory (placed largest first, each at the lowest offset free during its
 * lifetime). The next steps take their blocks from that plan as long as
 * they repeat the planned step event for event; the region stays mapped,
 * so a steady step touches no fresh page, and it is about as large as the
 * most gradient memory alive at once. A step that departs from the plan
 * (another batch size, another model) takes blocks of their own from then
 * on (grad_block_acquire, leave_plan) and is planned anew at its reset. */
typedef struct grad_block {
    float *memory;
    size_t bytes;
    int request; /* the step's request it serves, while in use */
    bool in_use;
    bool planned; /* a place in the planned region, not a mapping of its own */
} grad_block;

/* One request of a step: events are numbered in order, takes and
 * hand-backs alike; released_at is the step's event count for a block
 * still in use at the reset. */
typedef struct block_request {
    size_t bytes;
    int acquired_at, released_at;
    size_t offset; /* in the planned region */
    bool segment_room; /* the arena memory of a recomputed segment (segment_room_begin) */
} block_request;

struct mc_graph {
    arena_chunk *chunks; /* newest first */
    arena_chunk *spare;  /* chunks given back by a release, kept for reuse */
    size_t bytes_in_use; /* sum of allocations since the last reset */
    size_t step_arena_peak; /* most bytes_in_use since the last reset, segment rooms left out */
    size_t step_arena_peak_all; /* most bytes_in_use since the last reset, segment rooms included */
    bool step_began_on_plan;    /* the gradient blocks' plan was there when this step began */
    bool chunk_holds_segments;  /* the kept chunk was sized for segments run in the arena */
    size_t peak_bytes;   /* most ever held by the arena and live gradients together */
    grad_block *grad_blocks;
    int grad_block_count;
    size_t grad_block_capacity;
    /* Set once a recomputed segment has run on this graph: from then on
     * blocks of their own are fitted tightly and free ones given back to
     * the OS (block_of_its_own), as memory is what recomputation is for. */
    bool fits_blocks_tightly;
    size_t grad_bytes_in_use;
    block_request *requests; /* this step's, in order */
    int request_count;
    size_t request_capacity;
    int event_count;         /* this step's takes and hand-backs */
    block_request *plan;     /* the planned step's requests, with offsets */
    int plan_count, plan_events;
    size_t plan_capacity;
    unsigned char *plan_region; /* mapped, plan_region_bytes long */
    size_t plan_region_bytes;
    bool following_plan;     /* every event of this step so far as planned */
    mc_node *tape;
    int tape_length;
    int tape_capacity;
    bool grad_enabled;
    mc_precision precision; /* of the ops' matrix products */
    int64_t profile_op_start_ns; /* MMCHAIN_PROFILE: the running op's first allocation, or 0 */
    int64_t profile_counted_ns;  /* MMCHAIN_PROFILE: op time counted so far (see walk_tape) */
    bool recomputing;            /* a recomputed segment's forward runs again in backward */
    bool in_segment_room;        /* between segment_room_begin and _end */
    mc_backward_hook backward_hook; /* called after each node backward walks */
    void *backward_hook_user;
    size_t bytes_at_last_record; /* bytes_in_use when the newest node was recorded */
};

static bool grad_blocks_end_step(mc_graph *g);

static arena_chunk *chunk_new(size_t capacity) {
    arena_chunk *chunk = malloc(sizeof *chunk);
    if (!chunk) return NULL;
    chunk->memory = aligned_alloc(ARENA_ALIGN, capacity);
    if (!chunk->memory) {
        free(chunk);
        return NULL;
    }
    chunk->next = NULL;
    chunk->capacity = capacity;
    chunk->used = 0;
    chunk->borrowed = false;
    return chunk;
}

static void chunks_free(arena_chunk *chunk) {
    while (chunk) {
        arena_chunk *next = chunk->next;
        if (!chunk->borrowed) free(chunk->memory);
        free(chunk);
        chunk = next;
    }
}

static size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

static mc_status arena_alloc(mc_graph *g, size_t bytes, bool zero, void **out);

/* The arena and the live gradients together reached a new high? */
static void note_peak(mc_graph *g) {
    if (g->bytes_in_use + g->grad_bytes_in_use <= g->peak_bytes) return;
    g->peak_bytes = g->bytes_in_use + g->grad_bytes_in_use;
    if (mc_profile_enabled) mc_profile_graph_peak(g->peak_bytes);
}

/* A spare chunk that holds `size` bytes, emptied, or NULL. Reusing chunks
 * that a release gave back saves the page faults of fresh memory: inference
 * releases every block's activations, and the next block needs as much. */
static arena_chunk *spare_take(mc_graph *g, size_t size) {
    for (arena_chunk **link = &g->spare; *link; link = &(*link)->next) {
        arena_chunk *chunk = *link;
        if (chunk->capacity >= size) {
            *link = chunk->next;
            chunk->next = NULL;
            chunk->used = 0;
            return chunk;
        }
    }
    return NULL;
}

mc_status mc_graph_alloc(mc_graph *g, size_t bytes, void **out) { return arena_alloc(g, bytes, true, out); }

static mc_status arena_alloc(mc_graph *g, size_t bytes, bool zero, void **out) {
    *out = NULL;
    size_t size = round_up(bytes ? bytes : 1, ARENA_ALIGN);
    if (size < bytes) return mc_error(MC_ERR_NOMEM, "arena: request of %zu bytes overflows", bytes);
    arena_chunk *chunk = g->chunks;
    if (!chunk || chunk->capacity - chunk->used < size) {
        /* Grow geometrically so a step needs few chunks; reset merges them. */
        size_t capacity = chunk ? chunk->capacity * 2 : ARENA_MIN_CHUNK;
        if (capacity < size) capacity = size;
        arena_chunk *fresh = spare_take(g, size);
        if (!fresh) fresh = chunk_new(capacity);
        if (!fresh) return mc_error(MC_ERR_NOMEM, "arena: cannot allocate %zu bytes", capacity);
        fresh->next = g->chunks;
        g->chunks = fresh;
        chunk = fresh;
    }
    void *memory = chunk->memory + chunk->used;
    chunk->used += size;
    g->bytes_in_use += size;
    if (g->bytes_in_use > g->step_arena_peak) g->step_arena_peak = g->bytes_in_use;
    if (g->bytes_in_use > g->step_arena_peak_all) g->step_arena_peak_all = g->bytes_in_use;
    note_peak(g);
    /* An op allocates its saved state and output first and records itself
     * last: its forward time runs from here to mc_graph_record. */
    if (mc_profile_enabled && g->grad_enabled && !g->profile_op_start_ns)
        g->profile_op_start_ns = mc_profile_now_ns();
    if (zero) mc_zero_parallel(memory, size);
    *out = memory;
    return MC_OK;
}

/* Give back the arena memory allocated after `mark` (no survivor). */
static void arena_release_to(mc_graph *g, mc_graph_mark mark) {
    while (g->chunks && g->chunks != mark.chunk) {
        arena_chunk *newer = g->chunks;
        g->chunks = newer->next;
        if (newer->borrowed) { /* a segment's room: its place goes back with the plan's request */
            free(newer);
            continue;
        }
        newer->next = g->spare;
        g->spare = newer;
    }
    if (g->chunks) g->chunks->used = mark.chunk_used;
    g->bytes_in_use = mark.bytes_in_use;
}

/* ---- the graph ---- */

/* The precision new graphs start with (an mc_precision; atomic: a graph
 * may be made on one thread while another sets it). */
static atomic_int default_precision = MC_PRECISION_FP32;

mc_precision mc_set_default_precision(mc_precision precision) {
    return (mc_precision)atomic_exchange(&default_precision, (int)precision);
}

mc_precision mc_default_precision(void) { return (mc_precision)atomic_load(&default_precision); }

mc_status mc_graph_new(mc_graph **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return mc_error(MC_ERR_NOMEM, "graph: out of memory");
    (*out)->grad_enabled = true;
    (*out)->precision = mc_default_precision();
    return MC_OK;
}

void mc_graph_free(mc_graph *g) {
    if (!g) return;
    chunks_free(g->chunks);
    chunks_free(g->spare);
    for (int i = 0; i < g->grad_block_count; i++)
        if (!g->grad_blocks[i].planned) munmap(g->grad_blocks[i].memory, g->grad_blocks[i].bytes);
    if (g->plan_region) munmap(g->plan_region, g->plan_region_bytes);
    free(g->grad_blocks);
    free(g->requests);
    free(g->plan);
    free(g->tape);
    free(g);
}

void mc_graph_reset(mc_graph *g) {
    const size_t step_peak = g->step_arena_peak, step_peak_all = g->step_arena_peak_all;
    const bool began_on_plan = g->step_began_on_plan;
    g->tape_length = 0;
    g->profile_op_start_ns = 0;
    g->bytes_in_use = 0;
    g->step_arena_peak = 0;
    g->step_arena_peak_all = 0;
    g->bytes_at_last_record = 0;
    const bool as_planned = grad_blocks_end_step(g);
    g->step_began_on_plan = g->following_plan;
    g->grad_bytes_in_use = 0;
    if (!g->chunks) return;
    /* The chunk to keep. A step that departed from the plan it began with
     * ran its segments in arena chunks (no place was lent to them): steps
     * of changing shapes (batches of 64 and 36) would each grow and free
     * those chunks anew, fresh pages every time, so the arena keeps room
     * for the segments too. Otherwise the next step is expected to follow
     * the plan, which places the segments in the gradient blocks' region. */
    const bool for_segments = began_on_plan && !as_planned && step_peak_all > step_peak;
    size_t keep = for_segments ? step_peak_all : step_peak;
    if (keep < ARENA_MIN_CHUNK) keep = ARENA_MIN_CHUNK;
    /* Back on the plan after such steps, the segments' room is not needed.
     * Only that room is given back: a chunk larger for another reason (an
     * evaluation without gradients on the same graph) stays, or each
     * evaluation would grow the arena anew. */
    const bool oversized = as_planned && g->chunk_holds_segments && g->chunks->capacity > keep;
    if (g->chunks->next || g->spare || g->chunks->borrowed || oversized) {
        /* Several chunks (spares too): replace them all by one that holds
         * the step's peak, so the next step of the same size allocates
         * nothing. The peak, not the chunks' total: chunks double as they
         * grow and a released one waits on the spare list, so their total
         * can be far above what was ever in use at once (the ResNet-50
         * step at batch 100 with recomputation: 190 MiB of chunks for a
         * peak of 127 MiB). One chunk holds the peak exactly: within a
         * single chunk, what is in use is one prefix, bytes_in_use long. */
        chunks_free(g->chunks);
        chunks_free(g->spare);
        g->spare = NULL;
        g->chunks = chunk_new(keep);
        /* NULL is fine: mc_graph_alloc makes a chunk when it needs one */
        g->chunk_holds_segments = for_segments;
    } else {
        g->chunks->used = 0;
    }
}

bool mc_graph_set_grad_enabled(mc_graph *g, bool enabled) {
    bool previous = g->grad_enabled;
    g->profile_op_start_ns = 0; /* untaped work is no recorded op's forward */
    g->grad_enabled = enabled;
    return previous;
}

bool mc_graph_grad_enabled(const mc_graph *g) { return g->grad_enabled; }

mc_precision mc_graph_set_precision(mc_graph *g, mc_precision precision) {
    mc_precision previous = g->precision;
    g->precision = precision;
    return previous;
}

mc_precision mc_graph_precision(const mc_graph *g) { return g->precision; }

/* The arena header of a tensor whose data the arena holds; data is left
 * for the caller to set. */
static mc_status tensor_header(mc_graph *g, mc_shape shape, const char *name, mc_tensor **out) {
    void *header;
    MC_TRY(arena_alloc(g, sizeof(mc_tensor), true, &header));
    mc_tensor *t = header;
    t->shape = shape;
    t->numel = mc_shape_numel(shape);
    t->owns_data = true;
    mc_tensor_set_name(t, name);
    *out = t;
    return MC_OK;
}

static mc_status graph_tensor(mc_graph *g, mc_shape shape, const char *name, bool zero, mc_tensor **out) {
    *out = NULL;
    MC_TRY(mc_shape_check(shape, name));
    mc_tensor *t;
    MC_TRY(tensor_header(g, shape, name, &t));
    void *data;
    MC_TRY(arena_alloc(g, (size_t)t->numel * sizeof(float), zero, &data));
    t->data = data;
    *out = t;
    return MC_OK;
}

mc_status mc_graph_tensor(mc_graph *g, mc_shape shape, const char *name, mc_tensor **out) {
    return graph_tensor(g, shape, name, true, out);
}

mc_status mc_graph_tensor_uninit(mc_graph *g, mc_shape shape, const char *name, mc_tensor **out) {
    return graph_tensor(g, shape, name, false, out);
}

mc_status mc_graph_view(mc_graph *g, mc_tensor *base, mc_shape shape, mc_tensor **out) {
    *out = NULL;
    if (!base) return mc_error(MC_ERR_ARG, "view: the tensor to view is NULL");
    MC_TRY(mc_shape_check(shape, base->name));
    if (mc_shape_numel(shape) != base->numel) {
        char a[96], b[96];
        return mc_error(MC_ERR_SHAPE, "view of %s: shape %s has a different element count than %s",
                        base->name, mc_shape_str(shape, a, sizeof a),
                        mc_shape_str(base->shape, b, sizeof b));
    }
    void *header;
    MC_TRY(mc_graph_alloc(g, sizeof(mc_tensor), &header));
    mc_tensor *t = header;
    t->shape = shape;
    t->numel = base->numel;
    t->data = base->data;
    t->owns_data = false;
    mc_tensor_set_name(t, base->name);
    *out = t;
    return MC_OK;
}

mc_graph_mark mc_graph_get_mark(const mc_graph *g) {
    mc_graph_mark mark = {g->chunks, g->chunks ? g->chunks->used : 0, g->bytes_in_use, g->tape_length};
    return mark;
}

mc_status mc_graph_release_keep(mc_graph *g, mc_graph_mark mark, mc_tensor **keep) {
    if (g->tape_length != mark.tape_length)
        return mc_error(MC_ERR_STATE, "graph: cannot release memory that %d recorded op(s) still use",
                        g->tape_length - mark.tape_length);
    /* A gradient buffer would be left behind in the freed memory. */
    if (keep && *keep && (*keep)->grad)
        return mc_error(MC_ERR_ARG, "graph: release_keep of %s, which holds a gradient: the "
                        "release would free it (keep tensors of inference, or copy it first)",
                        (*keep)->name);
    arena_release_to(g, mark); /* chunks newer than the mark's go; its chunk rewinds */
    if (!keep || !*keep) return MC_OK;
    /* The release frees nothing: newer chunks become spares and the mark's
     * chunk only rewinds, so the survivor's values are still in place. Its
     * data moves once, straight to its new place (memmove: the two may
     * overlap), and only then does its header take arena memory, which
     * the old data may occupy. Inference calls this after every block:
     * parking the data on the heap and copying it back (and zero-filling
     * the new place first) cost three passes and fresh pages each time. */
    const mc_tensor survivor = **keep;
    const size_t bytes = (size_t)survivor.numel * sizeof(float);
    void *data;
    MC_TRY(arena_alloc(g, bytes, false, &data));
    if (data != survivor.data) memmove(data, survivor.data, bytes);
    mc_tensor *moved;
    MC_TRY(tensor_header(g, survivor.shape, survivor.name, &moved));
    moved->data = data;
    moved->requires_grad = survivor.requires_grad; /* a leaf the caller marked stays marked */
    *keep = moved;
    return MC_OK;
}

size_t mc_graph_arena_bytes(const mc_graph *g) { return g->bytes_in_use; }
size_t mc_graph_arena_peak_bytes(const mc_graph *g) { return g->peak_bytes; }
size_t mc_graph_arena_reserved_bytes(const mc_graph *g) {
    size_t total = 0;
    for (const arena_chunk *c = g->chunks; c; c = c->next) total += c->borrowed ? 0 : c->capacity;
    for (const arena_chunk *c = g->spare; c; c = c->next) total += c->capacity;
    return total;
}
int mc_graph_tape_length(const mc_graph *g) { return g->tape_length; }
const mc_node *mc_graph_node(const mc_graph *g, int index) {
    return index >= 0 && index < g->tape_length ? &g->tape[index] : NULL;
}

void mc_graph_set_backward_hook(mc_graph *g, mc_backward_hook hook, void *user) {
    g->backward_hook = hook;
    g->backward_hook_user = user;
}

const mc_node *mc_graph_tape_node(const mc_graph *g, int position) {
    return position >= 0 && position < g->tape_length ? &g->tape[position] : NULL;
}

size_t mc_peak_rss_bytes(void) {
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
    return (size_t)usage.ru_maxrss * 1024; /* Linux reports kilobytes */
}

/* ---- the tape ---- */

bool mc_graph_should_record(const mc_graph *g, int n_in, mc_tensor *const *in) {
    if (!g->grad_enabled) return false;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

/* Append a node whether or not its inputs require a gradient. */
static mc_status tape_append(mc_graph *g, const char *op, mc_backward_fn backward, mc_tensor *out,
                             int n_in, mc_tensor *const *in, void *saved);

mc_status mc_graph_record(mc_graph *g, const char *op, mc_backward_fn backward, mc_tensor *out,
                          int n_in, mc_tensor *const *in, void *saved) {
    if (mc_profile_enabled) {
        int64_t start = g->profile_op_start_ns;
        g->profile_op_start_ns = 0;
        if (start && mc_graph_should_record(g, n_in, in)) {
            int64_t ns = mc_profile_now_ns() - start;
            g->profile_counted_ns += ns;
            /* Counted apart: the forward of the first run has its row. */
            if (g->recomputing) mc_profile_op_recomputed(op, ns);
            else mc_profile_op_forward(op, ns);
        }
    }
    if (!mc_graph_should_record(g, n_in, in)) return MC_OK;
    return tape_append(g, op, backward, out, n_in, in, saved);
}

static mc_status tape_append(mc_graph *g, const char *op, mc_backward_fn backward, mc_tensor *out,
                             int n_in, mc_tensor *const *in, void *saved) {
    if (n_in > MC_MAX_INPUTS)
        return mc_error(MC_ERR_ARG, "%s: %d inputs, the tape holds at most %d", op, n_in,
                        MC_MAX_INPUTS);
    if (g->tape_length == g->tape_capacity) {
        int capacity = g->tape_capacity ? g->tape_capacity * 2 : 256;
        mc_node *tape = realloc(g->tape, (size_t)capacity * sizeof *tape);
        if (!tape) return mc_error(MC_ERR_NOMEM, "tape: cannot grow to %d nodes", capacity);
        g->tape = tape;
        g->tape_capacity = capacity;
    }
    mc_node *node = &g->tape[g->tape_length++];
    memset(node, 0, sizeof *node);
    node->op = op;
    node->backward = backward;
    node->graph = g;
    node->out = out;
    node->n_in = n_in;
    for (int i = 0; i < n_in; i++) node->in[i] = in[i];
    node->saved = saved;
    /* A release since the last node may have taken the arena below it. */
    node->arena_bytes = g->bytes_in_use > g->bytes_at_last_record
                            ? g->bytes_in_use - g->bytes_at_last_record : 0;
    g->bytes_at_last_record = g->bytes_in_use;
    out->requires_grad = true;
    return MC_OK;
}

/* Blocks are mapped from the OS directly, not malloc'd, so that unmapping
 * one gives its memory back at once (malloc keeps freed memory of most
 * sizes in the process). Fresh mappings read as zeros. */
static void *block_map(size_t bytes) {
    void *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return memory == MAP_FAILED ? NULL : memory;
}

/* Unmap every free block of its own; the table keeps the blocks in use, in
 * order. */
static void blocks_unmap_free(mc_graph *g) {
    int kept = 0;
    for (int i = 0; i < g->grad_block_count; i++) {
        grad_block *b = &g->grad_blocks[i];
        if (b->in_use) g->grad_blocks[kept++] = *b;
        else if (!b->planned) munmap(b->memory, b->bytes);
    }
    g->grad_block_count = kept;
}

/* Places in the plan are multiples of a cache line. */
static size_t plan_size(size_t bytes) { return round_up(bytes, ARENA_ALIGN); }

/* Does request x go before y: larger, or as large and taken earlier? */
static bool larger_first(const block_request *x, const block_request *y) {
    return x->bytes != y->bytes ? x->bytes > y->bytes : x->acquired_at < y->acquired_at;
}

/* Sets every request's offset so that requests alive at the same time do
 * not overlap: the largest first, each at the lowest offset where it fits
 * between those placed before it that are alive with it (greedy by size;
 * measured on the ResNet-50 step at batch 100: a region of 187.5 MB for
 * 187.5 MB alive at most with recomputation before segment rooms, 257 MiB
 * with them; 81.2 MB for 75.0 MB without recomputation). `placed` lists the requests placed
 * so far in the order of their offsets. Returns the region's size in *total. */
static mc_status plan_offsets(block_request *r, int n, size_t *total) {
    *total = 0;
    int *order = malloc((size_t)n * sizeof *order);
    int *placed = malloc((size_t)n * sizeof *placed);
    if (!order || !placed) {
        free(order);
        free(placed);
        return mc_error(MC_ERR_NOMEM, "gradient blocks: cannot plan %d requests", n);
    }
    for (int i = 0; i < n; i++) { /* insertion sort: a few hundred requests, once */
        int j = i;
        for (; j > 0 && larger_first(&r[i], &r[order[j - 1]]); j--) order[j] = order[j - 1];
        order[j] = i;
    }
    int n_placed = 0;
    for (int k = 0; k < n; k++) {
        block_request *q = &r[order[k]];
        size_t size = plan_size(q->bytes), offset = 0;
        int at = 0; /* where q goes in `placed` */
        for (int p = 0; p < n_placed; p++) {
            const block_request *o = &r[placed[p]];
            bool alive_together = o->acquired_at < q->released_at && q->acquired_at < o->released_at;
            if (!alive_together) continue;
            if (o->offset >= offset + size) break; /* the gap before o holds q */
            size_t end = o->offset + plan_size(o->bytes);
            if (end > offset) offset = end;
            at = p + 1;
        }
        while (at < n_placed && r[placed[at]].offset < offset) at++;
        memmove(placed + at + 1, placed + at, (size_t)(n_placed - at) * sizeof *placed);
        placed[at] = order[k];
        n_placed++;
        q->offset = offset;
        if (offset + size > *total) *total = offset + size;
    }
    free(order);
    free(placed);
    return MC_OK;
}

/* mc_graph_reset: the step's blocks are all free. Unless the step went as
 * planned, plan its requests for the next steps, in a region mapped anew
 * only when the old one is too small. The blocks of their own go back to
 * the OS: the plan serves their requests now. When planning fails (out
 * of memory), the next step takes blocks of its own. Returns whether the
 * step went as planned. */
static bool grad_blocks_end_step(mc_graph *g) {
    for (int i = 0; i < g->grad_block_count; i++)
        if (g->grad_blocks[i].in_use) g->requests[g->grad_blocks[i].request].released_at = g->event_count;
    bool as_planned = g->following_plan && g->request_count == g->plan_count &&
                      g->event_count == g->plan_events;
    int kept = 0; /* the blocks of their own, free now */
    for (int i = 0; i < g->grad_block_count; i++) {
        grad_block *b = &g->grad_blocks[i];
        if (b->planned) continue;
        b->in_use = false;
        if (as_planned || g->request_count == 0) g->grad_blocks[kept++] = *b;
        else munmap(b->memory, b->bytes);
    }
    g->grad_block_count = kept;
    if (!as_planned && g->request_count > 0) {
        size_t total;
        g->plan_count = 0;
        if (plan_offsets(g->requests, g->request_count, &total) == MC_OK) {
            if (total > g->plan_region_bytes) {
                if (g->plan_region) munmap(g->plan_region, g->plan_region_bytes);
                g->plan_region = block_map(total);
                g->plan_region_bytes = g->plan_region ? total : 0;
            }
            if (g->plan_region) {
                /* The plan takes the requests' array; the next step writes
                 * its own into the old plan's. */
                block_request *plan = g->requests;
                g->requests = g->plan;
                g->plan = plan;
                size_t capacity = g->request_capacity;
                g->request_capacity = g->plan_capacity;
                g->plan_capacity = capacity;
                g->plan_count = g->request_count;
                g->plan_events = g->event_count;
            }
        }
    }
    g->request_count = 0;
    g->event_count = 0;
    g->following_plan = g->plan_count > 0;
    return as_planned;
}

/* Page-aligned [from, to) of the region back to the OS, if not empty: the
 * mapping stays and its pages read as zeros when touched again. */
static void region_drop(mc_graph *g, size_t from, size_t to, size_t page) {
    from = round_up(from, page);
    to = to / page * page;
    if (from < to) madvise(g->plan_region + from, to - from, MADV_DONTNEED);
}

/* The step departs from the plan: it takes blocks of its own from now on,
 * while the planned blocks in use stay where they are. The rest of the
 * region goes back to the OS, so that a step of another shape holds its
 * own blocks instead of, not on top of, the plan's memory; the next
 * planned step touches those pages again (faults in one step per change). */
static void leave_plan(mc_graph *g) {
    g->following_plan = false;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int n = 0;
    for (int i = 0; i < g->grad_block_count; i++) n += g->grad_blocks[i].planned;
    /* The places in use by offset (insertion sort: a handful). Without
     * room to sort them, the region keeps its pages: only memory is lost. */
    const grad_block **used = malloc((size_t)(n ? n : 1) * sizeof *used);
    if (!used) return;
    n = 0;
    for (int i = 0; i < g->grad_block_count; i++) {
        const grad_block *b = &g->grad_blocks[i];
        if (!b->planned) continue;
        int j = n++;
        for (; j > 0 && used[j - 1]->memory > b->memory; j--) used[j] = used[j - 1];
        used[j] = b;
    }
    size_t free_from = 0;
    for (int j = 0; j < n; j++) {
        size_t start = (size_t)((unsigned char *)used[j]->memory - g->plan_region);
        region_drop(g, free_from, start, page);
        if (start + used[j]->bytes > free_from) free_from = start + used[j]->bytes;
    }
    region_drop(g, free_from, round_up(g->plan_region_bytes, page), page);
    free(used);
}

/* A block of its own of at least `bytes` for a request the plan does not
 * serve: the smallest free one that holds it, else a new one. Taking a
 * larger free block rather than making one of the exact size keeps the
 * blocks ever made close to the most alive at once.
 *
 * A graph that recomputes segments trades speed for memory, so it fits
 * tighter: a free block is taken only if it wastes at most a fifth of
 * itself, and when none fits the free blocks are unmapped before a new one
 * is made (backward walks towards the input, where feature maps grow, so a
 * block that does not fit now is seldom wanted again in this backward).
 * This costs page faults on every block, but only in the steps the plan
 * does not serve: the first, and one after each change of shape. */
static mc_status block_of_its_own(mc_graph *g, size_t bytes, const char *name, bool zero,
                                  grad_block *out) {
    grad_block *best = NULL;
    for (int i = 0; i < g->grad_block_count; i++) {
        grad_block *b = &g->grad_blocks[i];
        bool fits = !g->fits_blocks_tightly || b->bytes / 5 * 4 <= bytes;
        if (!b->in_use && !b->planned && b->bytes >= bytes && fits && (!best || b->bytes < best->bytes))
            best = b;
    }
    if (best) {
        if (zero) mc_zero_parallel(best->memory, bytes);
        best->in_use = true;
        *out = *best;
        return MC_OK;
    }
    if (g->fits_blocks_tightly) blocks_unmap_free(g);
    float *memory = block_map(bytes);
    if (!memory) return mc_error(MC_ERR_NOMEM, "gradient of %s: cannot allocate %zu bytes", name, bytes);
    *out = (grad_block){memory, bytes, 0, true, false};
    return MC_OK;
}

/* A gradient block of at least `bytes`, zeroed if `zero`: the planned
 * place while the step follows the plan, else a block of its own. */
static mc_status grad_block_acquire(mc_graph *g, size_t bytes, const char *name, bool zero,
                                    float **out) {
    if (bytes == 0) bytes = sizeof(float); /* a mapping is never empty */
    /* Room for one more block and one more request first, so that nothing
     * below fails half done. */
    mc_status status = mc_grow((void **)&g->grad_blocks, &g->grad_block_capacity,
                               (size_t)g->grad_block_count + 1, sizeof *g->grad_blocks, 64,
                               "gradient blocks");
    if (status == MC_OK)
        status = mc_grow((void **)&g->requests, &g->request_capacity, (size_t)g->request_count + 1,
                         sizeof *g->requests, 256, "gradient block requests");
    if (status != MC_OK) return mc_error_context(status, "gradient of %s: ", name);
    int k = g->request_count;
    block_request request = {bytes, g->event_count, -1, 0, false};
    if (g->following_plan && (k >= g->plan_count || g->plan[k].bytes != bytes || g->plan[k].segment_room ||
                              g->plan[k].acquired_at != request.acquired_at))
        leave_plan(g);
    grad_block block;
    if (g->following_plan) {
        block = (grad_block){(float *)(g->plan_region + g->plan[k].offset), bytes, k, true, true};
        if (zero) mc_zero_parallel(block.memory, bytes);
    } else {
        /* blocks_unmap_free may compact the table: add after it. */
        MC_TRY(block_of_its_own(g, bytes, name, zero, &block));
        block.request = k;
    }
    bool reused = false;
    for (int i = 0; i < g->grad_block_count && !reused; i++) {
        if (g->grad_blocks[i].memory == block.memory && !block.planned) {
            g->grad_blocks[i] = block; /* a free block of its own, taken again */
            reused = true;
        }
    }
    if (!reused) g->grad_blocks[g->grad_block_count++] = block;
    g->requests[g->request_count++] = request;
    g->event_count++;
    g->grad_bytes_in_use += block.bytes;
    *out = block.memory;
    note_peak(g);
    return MC_OK;
}

static void grad_block_release(mc_graph *g, float *memory) {
    for (int i = g->grad_block_count - 1; i >= 0; i--) {
        grad_block *b = &g->grad_blocks[i];
        if (b->memory != memory || !b->in_use) continue;
        int at = g->event_count++;
        g->requests[b->request].released_at = at;
        g->grad_bytes_in_use -= b->bytes;
        if (!b->planned) {
            b->in_use = false;
            return;
        }
        /* Handed back out of the plan's order: later requests might be
         * placed where a block still in use lies. */
        /* A planned place is no block to keep: drop it from the table. */
        int request = b->request;
        g->grad_blocks[i] = g->grad_blocks[--g->grad_block_count];
        if (g->following_plan && g->plan[request].released_at != at) leave_plan(g);
        return;
    }
}

/* t's gradient buffer, made if t has none: zero-filled, or for a step
 * tensor when `fresh` is not NULL left as it is (*fresh then says so). */
static mc_status grad_buffer(mc_graph *g, mc_tensor *t, float **grad, bool *fresh) {
    *grad = NULL;
    if (fresh) *fresh = false;
    if (!t->grad) {
        if (t->on_heap) {
            t->grad = calloc((size_t)t->numel, sizeof(float));
            if (!t->grad) return mc_error(MC_ERR_NOMEM, "gradient of %s: out of memory", t->name);
        } else {
            MC_TRY(grad_block_acquire(g, (size_t)t->numel * sizeof(float), t->name, !fresh, &t->grad));
            if (fresh) *fresh = true;
        }
    }
    *grad = t->grad;
    return MC_OK;
}

mc_status mc_grad_buffer(mc_graph *g, mc_tensor *t, float **grad) { return grad_buffer(g, t, grad, NULL); }

mc_status mc_grad_buffer_fresh(mc_graph *g, mc_tensor *t, float **grad, bool *fresh) {
    return grad_buffer(g, t, grad, fresh);
}


static mc_status walk_tape(mc_graph *g);

mc_status mc_backward(mc_graph *g, mc_tensor *loss) {
    if (!loss) return mc_error(MC_ERR_ARG, "backward: the loss is NULL");
    if (loss->numel != 1)
        return mc_error(MC_ERR_SHAPE, "backward: loss %s has %lld elements, expected one",
                        loss->name, (long long)loss->numel);
    static const float one = 1.0f;
    return mc_backward_with_grad(g, loss, &one);
}

mc_status mc_backward_with_grad(mc_graph *g, mc_tensor *t, const float *t_grad) {
    if (!t || !t_grad)
        return mc_error(MC_ERR_ARG, "backward: the %s is NULL", t ? "gradient to start from" : "tensor");
    if (!t->requires_grad || g->tape_length == 0)
        return mc_error(MC_ERR_STATE,
                        "backward: %s was not computed from anything that requires a gradient "
                        "(or backward already ran on this tape)",
                        t->name);
    float *seed;
    MC_TRY(mc_grad_buffer(g, t, &seed));
    for (int64_t i = 0; i < t->numel; i++) seed[i] += t_grad[i];
    return walk_tape(g);
}

/* The walk itself: every node of the tape, last first, once the gradient
 * of the loss is in place. Consumes the tape. */
static mc_status walk_tape(mc_graph *g) {
    /* Backward functions record nothing (no higher-order gradients). */
    bool was_enabled = mc_graph_set_grad_enabled(g, false);
    mc_status status = MC_OK;
    for (int i = g->tape_length - 1; i >= 0 && status == MC_OK; i--) {
        mc_node *node = &g->tape[i];
        if (!node->out->grad) { /* nothing downstream of it reached the loss */
            if (g->backward_hook) status = g->backward_hook(g->backward_hook_user, i, node);
            continue;
        }
        /* Scratch memory a backward function takes from the arena is dead
         * when it returns; the gradients it produces live in grad blocks. */
        mc_graph_mark mark = mc_graph_get_mark(g);
        int64_t start = mc_profile_enabled ? mc_profile_now_ns() : 0;
        int64_t counted_before = g->profile_counted_ns;
        status = node->backward(node);
        if (mc_profile_enabled) {
            /* A backward that runs ops of its own ("recompute": the
             * segment's forward and backward again) is charged only the
             * time they leave over, which their rows do not count. */
            int64_t ns = mc_profile_now_ns() - start - (g->profile_counted_ns - counted_before);
            g->profile_counted_ns += ns;
            mc_profile_op_backward(node->op, ns);
        }
        arena_release_to(g, mark);
        if (status != MC_OK) {
            mc_error_context(status, "backward of %s: ", node->op);
            break;
        }
        /* Every consumer of node->out ran before its producer: its gradient
         * is complete, used, and no longer needed (as PyTorch, which keeps
         * no gradient of a non-leaf tensor). */
        if (!node->out->on_heap) {
            grad_block_release(g, node->out->grad);
            node->out->grad = NULL;
        }
        if (g->backward_hook) status = g->backward_hook(g->backward_hook_user, i, node);
    }
    mc_graph_set_grad_enabled(g, was_enabled);
    g->tape_length = 0;
    return status;
}

/* ---- recomputation ----
 *
 * mc_recompute runs the segment once with the tape on, to learn what it
 * records (whether its output needs a gradient, and which parameters it
 * uses), then rewinds the tape and the arena to where the segment began,
 * keeping only its output. On the tape it leaves
 *
 *     "recompute_params" nodes   the segment's parameters, four a node
 *     "recompute" node           input -> output, backward below
 *
 * The output is kept in a block beside the arena, like a gradient, not in
 * the arena: backward hands it back once past the segment, so a step's
 * kept outputs shrink as backward goes rather than staying to the end.
 *
 * Backward reaches "recompute" first: it runs the segment again with the
 * tape on, on a tape of its own, and backpropagates the output's gradient
 * through it; the parameters' gradients accumulate in place and the
 * input's gradient is added to the input's buffer. The walk over the outer
 * tape then gives the arena back to where it was before the node ran, so
 * the recomputed activations live for this one node. The kept output is
 * handed back then too: every node reading it ran before this one. The
 * "recompute_params" nodes never run (the output's gradient is handed back
 * by then); they exist so that a backward hook, which counts the nodes
 * taking each parameter (lib/dist's gradient buckets), sees the segment's
 * parameters pass right after their gradients are complete. */

/* A segment's room: the arena memory its run takes (intermediates, saved
 * state, a backward's scratch) is dead once the run is over, while the
 * kept outputs and the gradients (blocks) live around it. The segment's
 * most memory at once above the arena's mark is recorded as one more
 * request of the step, taken where the run starts and handed back where it
 * ends; so the plan lays it out with the blocks, where blocks not alive
 * at that moment are, rather than in arena chunks of its own beside the
 * region. A planned step lends the run its place as a chunk
 * ("borrowed"): the arena allocates the segment's memory there (a run that
 * needs more continues in ordinary chunks and the step leaves the plan).
 * Without a plan (the first step) the run uses ordinary chunks and its
 * peak is only measured; either way the segment's memory is not counted
 * in the arena's step peak, which sizes the chunk that reset keeps.
 * Nested segments run inside their outer room. */
typedef struct segment_room {
    bool active;         /* this call opened a room (not nested) */
    mc_graph_mark mark;  /* the arena where the run began */
    size_t outer_peak;   /* the step's arena peak before the run */
    int request;         /* its request this step */
    float *place;        /* the borrowed place in the region, or NULL */
} segment_room;

static mc_status segment_room_begin(mc_graph *g, segment_room *room) {
    *room = (segment_room){0};
    if (g->in_segment_room) return MC_OK;
    MC_TRY(mc_grow((void **)&g->grad_blocks, &g->grad_block_capacity, (size_t)g->grad_block_count + 1,
                   sizeof *g->grad_blocks, 64, "gradient blocks"));
    MC_TRY(mc_grow((void **)&g->requests, &g->request_capacity, (size_t)g->request_count + 1,
                   sizeof *g->requests, 256, "gradient block requests"));
    const int k = g->request_count;
    if (g->following_plan &&
        (k >= g->plan_count || !g->plan[k].segment_room || g->plan[k].acquired_at != g->event_count))
        leave_plan(g);
    room->mark = mc_graph_get_mark(g); /* below the lent place, if any: releasing to it ends the loan */
    if (g->following_plan) {
        arena_chunk *chunk = malloc(sizeof *chunk);
        if (!chunk) return mc_error(MC_ERR_NOMEM, "recompute: out of memory");
        *chunk = (arena_chunk){g->chunks, g->plan[k].bytes, 0, g->plan_region + g->plan[k].offset, true};
        room->place = (float *)chunk->memory;
        /* Listed as a planned block in use, so that leaving the plan keeps
         * its pages (leave_plan). */
        g->grad_blocks[g->grad_block_count++] =
            (grad_block){room->place, g->plan[k].bytes, k, true, true};
        g->chunks = chunk;
    }
    room->active = true;
    room->request = k;
    room->outer_peak = g->step_arena_peak;
    g->step_arena_peak = g->bytes_in_use;
    g->requests[g->request_count++] = (block_request){0, g->event_count++, -1, 0, true};
    g->in_segment_room = true;
    return MC_OK;
}

/* The run is over and the arena released to room->mark (the borrowed
 * chunk is gone with it): the request ends here. */
static void segment_room_end(mc_graph *g, segment_room *room) {
    if (!room->active) return;
    size_t peak = g->step_arena_peak > room->mark.bytes_in_use ? g->step_arena_peak - room->mark.bytes_in_use : 0;
    if (peak < ARENA_ALIGN) peak = ARENA_ALIGN;
    g->step_arena_peak = room->outer_peak > g->bytes_in_use ? room->outer_peak : g->bytes_in_use;
    const int k = room->request, at = g->event_count++;
    block_request *request = &g->requests[k];
    request->released_at = at;
    request->bytes = peak;
    if (room->place) {
        for (int i = g->grad_block_count - 1; i >= 0; i--)
            if (g->grad_blocks[i].memory == room->place && g->grad_blocks[i].planned) {
                g->grad_blocks[i] = g->grad_blocks[--g->grad_block_count];
                break;
            }
        /* Still on the plan: its place, which held the run. A step that
         * left the plan records what the run needed, so that the next plan
         * does not keep a larger shape's place. */
        if (g->following_plan && peak <= g->plan[k].bytes) request->bytes = g->plan[k].bytes;
    }
    if (g->following_plan && (request->bytes != g->plan[k].bytes || g->plan[k].released_at != at))
        leave_plan(g);
    g->in_segment_room = false;
}

typedef struct recompute_saved {
    mc_segment_fn segment;
    void *context; /* the caller's context, copied into the arena */
    mc_tensor *in;
} recompute_saved;

static mc_status recompute_params_backward(mc_node *node) {
    (void)node; /* nothing to do: "recompute" computed these gradients */
    return MC_OK;
}

static mc_status recompute_backward(mc_node *node) {
    mc_graph *g = node->graph;
    const recompute_saved *saved = node->saved;
    /* The segment records on a tape of its own while the outer backward,
     * in the middle of its walk, waits; the outer hook sees only the outer
     * tape. */
    mc_node *outer_tape = g->tape;
    int outer_length = g->tape_length, outer_capacity = g->tape_capacity;
    size_t outer_bytes_at_last_record = g->bytes_at_last_record;
    mc_backward_hook hook = g->backward_hook;
    void *hook_user = g->backward_hook_user;
    g->tape = NULL;
    g->tape_length = g->tape_capacity = 0;
    g->backward_hook = NULL;
    g->backward_hook_user = NULL;

    bool was_enabled = mc_graph_set_grad_enabled(g, true);
    bool was_recomputing = g->recomputing;
    g->recomputing = true;
    mc_tensor *y = NULL;
    segment_room room;
    mc_status status = segment_room_begin(g, &room);
    if (status == MC_OK) status = saved->segment(g, saved->context, true, saved->in, &y);
    g->recomputing = was_recomputing;
    if (status == MC_OK && y->numel != node->out->numel) {
        char a[96], b[96];
        status = mc_error(MC_ERR_STATE, "recompute of %s: the second run gave %s, the first %s",
                          saved->in->name, mc_shape_str(y->shape, a, sizeof a),
                          mc_shape_str(node->out->shape, b, sizeof b));
    }
    if (status == MC_OK && y->requires_grad && g->tape_length > 0) {
        if (!y->grad && !y->on_heap) {
            /* The usual case, a fresh output: it takes over the outer
             * output's gradient block rather than a copy of it (the outer
             * walk has nothing left to hand back then). */
            y->grad = node->out->grad;
            node->out->grad = NULL;
            status = walk_tape(g);
        } else {
            status = mc_backward_with_grad(g, y, node->out->grad);
        }
    }
    mc_graph_set_grad_enabled(g, was_enabled);
    /* The recomputed activations and the backward's scratch are dead. */
    if (room.active) arena_release_to(g, room.mark);
    segment_room_end(g, &room);

    free(g->tape);
    g->tape = outer_tape;
    g->tape_length = outer_length;
    g->tape_capacity = outer_capacity;
    g->bytes_at_last_record = outer_bytes_at_last_record;
    g->backward_hook = hook;
    g->backward_hook_user = hook_user;
    grad_block_release(g, node->out->data);
    return status;
}

/* The heap tensors requiring a gradient that nodes first..g->tape_length-1
 * take as inputs, each once, in first use order, into a malloc'd array. */
static mc_status segment_params(const mc_graph *g, int first, mc_tensor ***out, int *count) {
    *out = NULL;
    *count = 0;
    int capacity = 0;
    for (int i = first; i < g->tape_length; i++) {
        const mc_node *node = &g->tape[i];
        for (int j = 0; j < node->n_in; j++) {
            mc_tensor *t = node->in[j];
            if (!t || !t->on_heap || !t->requires_grad) continue;
            bool seen = false;
            for (int k = 0; k < *count && !seen; k++) seen = (*out)[k] == t;
            if (seen) continue;
            if (*count == capacity) {
                capacity = capacity ? 2 * capacity : 16;
                mc_tensor **grown = realloc(*out, (size_t)capacity * sizeof *grown);
                if (!grown) {
                    free(*out);
                    *out = NULL;
                    return mc_error(MC_ERR_NOMEM, "recompute: cannot list the parameters of %s",
                                    node->op);
                }
                *out = grown;
            }
            (*out)[(*count)++] = t;
        }
    }
    return MC_OK;
}

/* Give back the arena memory allocated after `mark`, except *y's values,
 * which move to a block beside the arena (a gradient block); *y becomes a
 * fresh header in the arena pointing at them. */
static mc_status keep_in_block(mc_graph *g, mc_graph_mark mark, mc_tensor **y) {
    mc_tensor kept = **y;
    float *block;
    MC_TRY(grad_block_acquire(g, (size_t)kept.numel * sizeof(float), kept.name, false, &block));
    memcpy(block, kept.data, (size_t)kept.numel * sizeof(float));
    arena_release_to(g, mark);
    mc_tensor *header;
    mc_status status = mc_graph_alloc(g, sizeof *header, (void **)&header);
    if (status != MC_OK) {
        grad_block_release(g, block);
        return status;
    }
    header->shape = kept.shape;
    header->numel = kept.numel;
    header->data = block;
    header->owns_data = false; /* the graph's block, handed back by backward */
    mc_tensor_set_name(header, kept.name);
    *y = header;
    return MC_OK;
}

mc_status mc_recompute(mc_graph *g, mc_segment_fn segment, const void *context, size_t context_bytes,
                       mc_tensor *in, mc_tensor **out) {
    *out = NULL;
    if (!g->grad_enabled) return segment(g, context, false, in, out);
    g->fits_blocks_tightly = true;

    segment_room room;
    MC_TRY(segment_room_begin(g, &room));
    mc_graph_mark mark = room.active ? room.mark : mc_graph_get_mark(g);
    size_t bytes_at_last_record = g->bytes_at_last_record;
    mc_tensor *y = NULL;
    mc_status status = segment(g, context, false, in, &y);
    if (status == MC_OK && !y)
        status = mc_error(MC_ERR_ARG, "the segment returned MC_OK and no tensor");
    mc_tensor **params = NULL;
    int n_params = 0;
    if (status == MC_OK) status = segment_params(g, mark.tape_length, &params, &n_params);
    /* A segment that records nothing yet returns a tensor that needs a
     * gradient returned one of before it (its input, or a view of it):
     * moved below as an unrecorded result, it would lose its gradient
     * without a word. */
    if (status == MC_OK && y->requires_grad && g->tape_length == mark.tape_length)
        status = mc_error(MC_ERR_ARG, "the segment recorded no op but returned %s, which needs a "
                          "gradient (its input?): run it without mc_recompute", y->name);
    bool needs_grad = status == MC_OK && y->requires_grad && g->tape_length > mark.tape_length;
    /* Forget what the segment recorded: backward records it again. */
    g->tape_length = mark.tape_length;
    g->bytes_at_last_record = bytes_at_last_record;
    if (status != MC_OK) {
        arena_release_to(g, mark);
        segment_room_end(g, &room);
        return mc_error_context(status, "recompute of %s: ", in ? in->name : "(no input)");
    }
    if (needs_grad) status = keep_in_block(g, mark, &y);
    else status = mc_graph_release_keep(g, mark, &y);
    /* A failure may leave the run's memory (a lent place among it) in the
     * arena: give it back before the room's request ends. */
    if (status != MC_OK) arena_release_to(g, mark);
    segment_room_end(g, &room);
    recompute_saved *saved = NULL;
    if (status == MC_OK && needs_grad) status = mc_graph_alloc(g, sizeof *saved, (void **)&saved);
    if (status == MC_OK && needs_grad) {
        saved->segment = segment;
        saved->in = in;
        status = mc_graph_alloc(g, context_bytes, &saved->context);
        if (status == MC_OK && context_bytes) memcpy(saved->context, context, context_bytes);
    }
    for (int k = 0; status == MC_OK && needs_grad && k < n_params; k += MC_MAX_INPUTS) {
        int n = n_params - k < MC_MAX_INPUTS ? n_params - k : MC_MAX_INPUTS;
        status = tape_append(g, "recompute_params", recompute_params_backward, y, n, params + k, NULL);
    }
    free(params);
    /* Recorded even when `in` needs no gradient: the parameters do. */
    if (status == MC_OK && needs_grad)
        status = tape_append(g, "recompute", recompute_backward, y, 1, &in, saved);
    if (status == MC_OK) *out = y;
    return status;
}

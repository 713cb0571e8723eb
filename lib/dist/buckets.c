/* Gradient averaging in buckets, overlapped with backward (dist.h,
 * mc_dist_reducer): the trainable tensors in reverse list order, cut into
 * buckets of about a given size. A hook on the graph's backward counts down
 * the tape nodes that still have to add into each tensor's gradient; when a
 * bucket's count reaches zero, its gradients are packed and the two phases
 * of the rank-order all-reduce (reduce.h) run as non-blocking collectives on
 * the bucket's own channel, tested after every node. */
#include "mmchain/dist.h"

#include "dist/comm.h"
#include "dist/reduce.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum bucket_phase {
    BUCKET_WAITING,   /* some gradient is not final yet */
    BUCKET_SCATTERING, /* phase 1 in flight: chunks to the ranks that sum them */
    BUCKET_GATHERING, /* phase 2 in flight: the summed chunks back to every rank */
    BUCKET_DONE       /* averaged and unpacked into the gradients */
} bucket_phase;

typedef struct bucket {
    int first, count;        /* its tensors: members[first .. first + count) */
    int64_t numel;           /* their elements, packed */
    int pending;             /* tensors whose gradient is not final yet */
    float *packed;           /* (numel) this rank's gradients, then their average */
    float *received;         /* (world, my_count) phase 1's chunks, row k from rank k */
    float *mine;             /* (my_count) their average */
    int64_t my_count;        /* elements of the chunk this rank sums */
    int64_t *table;          /* (4, world) byte counts and offsets */
    mc_comm_channel *channel;
    bucket_phase phase;
} bucket;

struct mc_dist_reducer {
    const mc_param_list *params;
    int *members;        /* indices into params of the trainable tensors, reverse order */
    int member_count;
    int *bucket_of;      /* (params->count): each tensor's bucket, -1 if not trainable */
    int *uses_left;      /* (params->count): tape nodes that still add into its gradient */
    mc_tensor **sorted;  /* the tensors sorted by address, to find a node's inputs */
    int *sorted_index;   /* their indices into params */
    bucket *buckets;
    int bucket_count;
    int next_start;      /* buckets start in bucket order: the first not started */
    mc_graph *graph;     /* the graph of the backward under way */
    mc_dist_reducer_stats stats;
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------
 * building the buckets
 * ------------------------------------------------------------------------- */

static int compare_tensor_address(const void *a, const void *b) {
    const mc_tensor *x = *(mc_tensor *const *)a, *y = *(mc_tensor *const *)b;
    return (x > y) - (x < y);
}

/* The index into params of tensor t, or -1 (binary search by address). */
static int param_index(const mc_dist_reducer *r, const mc_tensor *t) {
    int lo = 0, hi = r->params->count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (r->sorted[mid] == t) return r->sorted_index[mid];
        if ((const void *)r->sorted[mid] < (const void *)t) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

static mc_status bucket_alloc(bucket *b) {
    const int world = mc_dist_world_size();
    b->my_count = mc_dist_chunk_count(b->numel, mc_dist_rank(), world);
    b->packed = malloc((size_t)b->numel * sizeof(float));
    b->received = malloc((size_t)(world * b->my_count + 1) * sizeof(float));
    b->mine = malloc((size_t)(b->my_count + 1) * sizeof(float));
    b->table = malloc(4 * (size_t)world * sizeof *b->table);
    if (!b->packed || !b->received || !b->mine || !b->table)
        return mc_error(MC_ERR_NOMEM, "gradient buckets: out of memory for %lld floats", (long long)b->numel);
    return mc_comm_channel_new(&b->channel);
}

/* Cut the members (reverse list order) into buckets of about bucket_bytes:
 * a bucket closes once it holds at least that much, so a tensor larger
 * than the size has a bucket of its own. */
static mc_status make_buckets(mc_dist_reducer *r, int64_t bucket_bytes) {
    r->buckets = calloc((size_t)r->member_count + 1, sizeof *r->buckets);
    if (!r->buckets) return mc_error(MC_ERR_NOMEM, "gradient buckets: out of memory");
    bucket *b = NULL;
    for (int m = 0; m < r->member_count; m++) {
        const mc_tensor *t = r->params->items[r->members[m]];
        if (!b || b->numel * (int64_t)sizeof(float) >= bucket_bytes) {
            b = &r->buckets[r->bucket_count++];
            b->first = m;
        }
        b->count++;
        b->numel += t->numel;
        r->bucket_of[r->members[m]] = r->bucket_count - 1;
    }
    for (int k = 0; k < r->bucket_count; k++) MC_TRY(bucket_alloc(&r->buckets[k]));
    return MC_OK;
}

mc_status mc_dist_reducer_new(const mc_param_list *params, int64_t bucket_bytes, mc_dist_reducer **out) {
    *out = NULL;
    if (!params || bucket_bytes <= 0)
        return mc_error(MC_ERR_ARG, "gradient buckets: a parameter list and a positive bucket size are needed");
    mc_dist_reducer *r = calloc(1, sizeof *r);
    if (!r) return mc_error(MC_ERR_NOMEM, "gradient buckets: out of memory");
    r->params = params;
    const size_t n = (size_t)params->count + 1;
    r->members = malloc(n * sizeof *r->members);
    r->bucket_of = malloc(n * sizeof *r->bucket_of);
    r->uses_left = malloc(n * sizeof *r->uses_left);
    r->sorted = malloc(n * sizeof *r->sorted);
    r->sorted_index = malloc(n * sizeof *r->sorted_index);
    mc_status status = MC_OK;
    if (!r->members || !r->bucket_of || !r->uses_left || !r->sorted || !r->sorted_index)
        status = mc_error(MC_ERR_NOMEM, "gradient buckets: out of memory");
    if (status == MC_OK) {
        for (int i = params->count - 1; i >= 0; i--) {
            r->bucket_of[i] = -1;
            if (params->items[i]->requires_grad) r->members[r->member_count++] = i;
        }
        memcpy(r->sorted, params->items, (size_t)params->count * sizeof *r->sorted);
        qsort(r->sorted, (size_t)params->count, sizeof *r->sorted, compare_tensor_address);
        for (int i = 0; i < params->count; i++) r->sorted_index[i] = -1;
        for (int i = 0; i < params->count; i++) {
            /* Find each tensor's slot by address (tensors are distinct). */
            mc_tensor **slot = bsearch(&params->items[i], r->sorted, (size_t)params->count, sizeof *r->sorted,
                                       compare_tensor_address);
            r->sorted_index[slot - r->sorted] = i;
        }
        status = make_buckets(r, bucket_bytes);
    }
    if (status != MC_OK) {
        mc_dist_reducer_free(r);
        return status;
    }
    *out = r;
    return MC_OK;
}

void mc_dist_reducer_free(mc_dist_reducer *r) {
    if (!r) return;
    for (int k = 0; k < r->bucket_count; k++) {
        bucket *b = &r->buckets[k];
        /* A bucket whose exchange is still in flight (a rank that failed
         * in backward, on its way to MPI_Abort) leaves its buffers to MPI,
         * which may still write into them: leaked, not freed. */
        const bool in_flight = b->channel && mc_comm_channel_busy(b->channel);
        mc_comm_channel_free(b->channel);
        if (!in_flight) {
            free(b->packed);
            free(b->received);
            free(b->mine);
        }
        free(b->table);
    }
    free(r->buckets);
    free(r->members);
    free(r->bucket_of);
    free(r->uses_left);
    free(r->sorted);
    free(r->sorted_index);
    free(r);
}

/* ---------------------------------------------------------------------------
 * one bucket's all-reduce, in phases
 * ------------------------------------------------------------------------- */

/* Pack the bucket's gradients (a gradient never created counts as zeros)
 * and start phase 1. */
static mc_status bucket_start(mc_dist_reducer *r, bucket *b) {
    /* A reducer used again after a failed step may hold an exchange still
     * in flight: its buffers are MPI's until it completes. */
    if (mc_comm_channel_busy(b->channel))
        return mc_error(MC_ERR_STATE, "gradient bucket: the previous step's exchange is still in "
                        "flight (after an error, the reducer cannot be used again)");
    int64_t at = 0;
    for (int m = b->first; m < b->first + b->count; m++) {
        const mc_tensor *t = r->params->items[r->members[m]];
        if (t->grad) memcpy(b->packed + at, t->grad, (size_t)t->numel * sizeof(float));
        else memset(b->packed + at, 0, (size_t)t->numel * sizeof(float));
        at += t->numel;
    }
    const int world = mc_dist_world_size();
    mc_dist_scatter_table(b->numel, sizeof(float), b->table);
    for (int k = 0; k < world; k++)
        if (k != mc_dist_rank()) r->stats.bytes_sent += b->table[k];
    b->phase = BUCKET_SCATTERING;
    return mc_comm_channel_alltoallv_start(b->channel, b->packed, b->table, b->table + world, b->received,
                                           b->table + 2 * world, b->table + 3 * world);
}

/* Phase 1 is complete: sum this rank's chunk and start phase 2. */
static mc_status bucket_sum(mc_dist_reducer *r, bucket *b) {
    const int world = mc_dist_world_size();
    mc_dist_sum_received(b->received, b->my_count, sizeof(float), MC_DIST_AVERAGE, b->mine);
    mc_dist_gather_table(b->numel, sizeof(float), b->table);
    r->stats.bytes_sent += (int64_t)(world - 1) * b->my_count * (int64_t)sizeof(float);
    b->phase = BUCKET_GATHERING;
    return mc_comm_channel_allgatherv_start(b->channel, b->mine, b->my_count * (int64_t)sizeof(float), b->packed,
                                            b->table, b->table + world);
}

/* Phase 2 is complete: the averages into the gradients. */
static mc_status bucket_unpack(mc_dist_reducer *r, bucket *b) {
    int64_t at = 0;
    for (int m = b->first; m < b->first + b->count; m++) {
        mc_tensor *t = r->params->items[r->members[m]];
        float *grad;
        MC_TRY(mc_grad_buffer(r->graph, t, &grad));
        memcpy(grad, b->packed + at, (size_t)t->numel * sizeof(float));
        at += t->numel;
    }
    b->phase = BUCKET_DONE;
    return MC_OK;
}

/* Move a bucket on by one phase if its collective is complete (wait: block
 * until it is). */
static mc_status bucket_advance(mc_dist_reducer *r, bucket *b, bool wait) {
    if (b->phase != BUCKET_SCATTERING && b->phase != BUCKET_GATHERING) return MC_OK;
    bool done = true;
    if (wait) MC_TRY(mc_comm_channel_wait(b->channel));
    else MC_TRY(mc_comm_channel_test(b->channel, &done));
    if (!done) return MC_OK;
    return b->phase == BUCKET_SCATTERING ? bucket_sum(r, b) : bucket_unpack(r, b);
}

/* Start every bucket that is ready, in bucket order (a ready bucket waits
 * for the earlier ones: every rank then starts them in the same order),
 * and move on the ones in flight. */
static mc_status progress(mc_dist_reducer *r) {
    while (r->next_start < r->bucket_count && r->buckets[r->next_start].pending == 0)
        MC_TRY(bucket_start(r, &r->buckets[r->next_start++]));
    for (int k = 0; k < r->next_start; k++) MC_TRY(bucket_advance(r, &r->buckets[k], false));
    return MC_OK;
}

/* ---------------------------------------------------------------------------
 * the backward hook
 * ------------------------------------------------------------------------- */

/* Before backward: how many tape nodes use each trainable tensor, and so
 * how many tensors each bucket waits for. */
static mc_status count_uses(mc_dist_reducer *r, const mc_graph *g) {
    for (int i = 0; i < r->params->count; i++) {
        bool trainable = r->params->items[i]->requires_grad;
        if (trainable != (r->bucket_of[i] >= 0))
            return mc_error(MC_ERR_STATE,
                            "gradient buckets: %s %s a gradient since the buckets were made: make them again",
                            r->params->items[i]->name, trainable ? "now requires" : "no longer requires");
        r->uses_left[i] = 0;
    }
    const mc_node *node;
    for (int p = 0; (node = mc_graph_tape_node(g, p)) != NULL; p++)
        for (int j = 0; j < node->n_in; j++) {
            int i = node->in[j] ? param_index(r, node->in[j]) : -1;
            if (i >= 0 && r->bucket_of[i] >= 0) r->uses_left[i]++;
        }
    for (int k = 0; k < r->bucket_count; k++) {
        bucket *b = &r->buckets[k];
        b->pending = 0;
        b->phase = BUCKET_WAITING;
        for (int m = b->first; m < b->first + b->count; m++) b->pending += r->uses_left[r->members[m]] > 0;
    }
    r->next_start = 0;
    return MC_OK;
}

/* After backward walked `node`: its inputs have one user fewer to wait for. */
static mc_status node_walked(void *user, int position, const mc_node *node) {
    (void)position;
    mc_dist_reducer *r = user;
    for (int j = 0; j < node->n_in; j++) {
        int i = node->in[j] ? param_index(r, node->in[j]) : -1;
        if (i < 0 || r->bucket_of[i] < 0) continue;
        if (--r->uses_left[i] == 0) r->buckets[r->bucket_of[i]].pending--;
    }
    return progress(r);
}

mc_status mc_dist_backward_average(mc_dist_reducer *r, mc_graph *g, mc_tensor *loss) {
    if (!r || !g || !loss) return mc_error(MC_ERR_ARG, "distributed backward: missing argument");
    r->graph = g;
    r->stats = (mc_dist_reducer_stats){.buckets = r->bucket_count};
    for (int k = 0; k < r->bucket_count; k++) r->stats.gradient_bytes += r->buckets[k].numel * (int64_t)sizeof(float);
    if (r->bucket_count > 0)
        r->stats.last_bucket_bytes = r->buckets[r->bucket_count - 1].numel * (int64_t)sizeof(float);
    MC_TRY(count_uses(r, g));
    double started = now_seconds();
    mc_graph_set_backward_hook(g, node_walked, r);
    mc_status status = mc_backward(g, loss);
    mc_graph_set_backward_hook(g, NULL, NULL);
    double backward_ended = now_seconds();
    r->stats.backward_seconds = backward_ended - started;
    MC_TRY(status);
    /* Every node walked: every bucket is ready (those of tensors no node
     * used included). Start the rest and wait for all, in bucket order. */
    for (int k = 0; k < r->bucket_count; k++) r->stats.buckets_overlapped += k < r->next_start;
    MC_TRY(progress(r));
    if (r->next_start < r->bucket_count)
        return mc_error(MC_ERR_STATE, "gradient buckets: bucket %d still waits for a gradient after backward",
                        r->next_start);
    for (int k = 0; k < r->bucket_count; k++)
        while (r->buckets[k].phase != BUCKET_DONE) MC_TRY(bucket_advance(r, &r->buckets[k], true));
    r->stats.exposed_seconds = now_seconds() - backward_ended;
    return MC_OK;
}

void mc_dist_reducer_stats_get(const mc_dist_reducer *r, mc_dist_reducer_stats *out) { *out = r->stats; }

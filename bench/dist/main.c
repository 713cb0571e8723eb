/* bench_dist — data parallelism on one machine: what N ranks of T threads
 * give against one process, per step, with the time split into compute and
 * exposed communication and the bytes each rank sends.
 *
 *     bench_dist --row train100|train100_after|clip_targets [--steps K]
 *     mpirun -np 2 -x MMCHAIN_THREADS=1 bench_dist --row train100
 *     bench/dist/run.sh          (both configurations side by side, with ratios)
 *
 * Rows:
 *   train100        one ResNet-50 training step at global batch 100 (3x64x64,
 *                   fc -> 512, InfoNCE against random targets, Adam), each rank
 *                   on its slice: embeddings and targets all-gathered, the
 *                   gradients averaged in buckets during backward (as `mmchain
 *                   train`; batch norm per rank, DDP's default)
 *   train100_after  the same with the gradients averaged after backward in
 *                   one all-reduce (what the buckets' overlap saves)
 *   clip_targets    the CLIP target embedding: ViT-B/32 (random weights) over
 *                   32 images of 224x224, each rank embedding its shard in
 *                   batches of 16, then all-gathered
 *
 * Rank 0 prints one line of medians over K timed steps after a warm-up step
 * (every step starts at a barrier; the collectives make rank 0 wait for the
 * slowest rank, so its step time is the job's):
 *   row=... ranks=N threads=T items_per_s=... items_per_cpu_s=... step_s=...
 *   compute_s=... exposed_comm_s=... backward_s=... bytes_sent_per_rank=...
 *   buckets=... last_bucket_bytes=... gradient_bytes=... steps=K
 * items_per_cpu_s counts the CPU time of every rank (on a machine shared
 * with other work, the wall clock says more about the others than about
 * us; an MPI rank waiting in a collective polls, so waits cost CPU too).
 * compute_s is the step less the exposed communication: the time spent in
 * collectives that nothing overlapped (the gathers, and the wait for the
 * gradient buckets after backward). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common.h"
#include "mmchain/mmchain.h"

static void die(const char *what) {
    fprintf(stderr, "bench_dist (rank %d): %s: %s\n", mc_dist_rank(), what, mc_last_error());
    mc_dist_abort_job(1, "bench_dist failed");
    exit(1);
}

/* One step's measurements on this rank. */
typedef struct step_times {
    double step, cpu, backward, exposed; /* cpu: this process's CPU seconds */
    int64_t bytes_sent, gradient_bytes, last_bucket_bytes;
    int buckets;
} step_times;

/* ---- ResNet-50 training at global batch 100 ---- */

enum { TRAIN_BATCH = 100, TRAIN_SIZE = 64, EMBED = 512 };

typedef struct train_bench {
    bool overlap; /* buckets during backward, or one all-reduce after it */
    mc_resnet *model;
    mc_graph *g;
    mc_optimizer *adam;
    mc_dist_reducer *reducer;
    mc_tensor *x, *targets, *log_scale;
    int64_t first, count; /* this rank's slice of the batch */
} train_bench;

static void train_setup(train_bench *b, bool overlap) {
    *b = (train_bench){.overlap = overlap};
    mc_resnet_config config;
    CHECK(mc_resnet_config_for_depth(50, &config));
    config.fc_out = EMBED;
    CHECK(mc_resnet_new(&b->model, &config, 0));
    mc_resnet_set_training(b->model, true);
    CHECK(mc_dist_broadcast_params(&b->model->params));
    CHECK(mc_graph_new(&b->g));
    mc_dist_slice(TRAIN_BATCH, mc_dist_rank(), mc_dist_world_size(), &b->first, &b->count);
    mc_rng rng;
    mc_rng_seed(&rng, 1);
    mc_tensor *x_all, *targets_all;
    CHECK(mc_tensor_new(&x_all, MC_SHAPE(TRAIN_BATCH, 3, TRAIN_SIZE, TRAIN_SIZE), "x"));
    mc_tensor_normal(x_all, &rng, 0.0f, 1.0f);
    CHECK(mc_tensor_new(&targets_all, MC_SHAPE(TRAIN_BATCH, EMBED), "targets"));
    mc_tensor_normal(targets_all, &rng, 0.0f, 1.0f);
    mc_tensor rows = mc_tensor_rows(x_all, b->first, b->count);
    CHECK(mc_tensor_clone(&b->x, &rows, "x"));
    rows = mc_tensor_rows(targets_all, b->first, b->count);
    CHECK(mc_tensor_clone(&b->targets, &rows, "targets"));
    mc_tensor_free(x_all);
    mc_tensor_free(targets_all);
    CHECK(mc_tensor_new(&b->log_scale, MC_SHAPE(1), "log_scale"));
    b->log_scale->data[0] = logf(1.0f / 0.07f);
    mc_adam_config adam = mc_adam_defaults();
    adam.lr = 1e-4f;
    CHECK(mc_optimizer_adam(&b->adam, &b->model->params, adam));
    if (overlap) CHECK(mc_dist_reducer_new(&b->model->params, MC_DIST_BUCKET_BYTES, &b->reducer));
}

static void train_free(train_bench *b) {
    mc_dist_reducer_free(b->reducer);
    mc_optimizer_free(b->adam);
    mc_tensor_free(b->x);
    mc_tensor_free(b->targets);
    mc_tensor_free(b->log_scale);
    mc_graph_free(b->g);
    mc_resnet_free(b->model);
}

static int64_t gradient_floats(const mc_param_list *params) {
    int64_t n = 0;
    for (int i = 0; i < params->count; i++)
        if (params->items[i]->requires_grad) n += params->items[i]->numel;
    return n;
}

static step_times train_step(train_bench *b) {
    const int world = mc_dist_world_size();
    step_times t = {0};
    double start = bench_now_seconds();
    mc_tensor *out, *targets = b->targets, *loss;
    mc_optimizer_zero_grad(b->adam);
    CHECK(mc_resnet_forward(b->model, b->g, b->x, &out));
    double gather_start = bench_now_seconds();
    if (world > 1) {
        CHECK(mc_dist_all_gather_op(b->g, out, &out));
        CHECK(mc_dist_all_gather_op(b->g, targets, &targets));
        /* Both gathers: this rank's rows to each other rank. */
        t.bytes_sent += 2 * (world - 1) * b->count * EMBED * (int64_t)sizeof(float);
    }
    t.exposed += bench_now_seconds() - gather_start;
    CHECK(mc_infonce(b->g, out, targets, b->log_scale, false, &loss));
    double backward_start = bench_now_seconds();
    if (world == 1 || !b->overlap) {
        CHECK(mc_backward(b->g, loss));
        t.backward = bench_now_seconds() - backward_start;
    }
    if (world > 1 && b->overlap) {
        CHECK(mc_dist_backward_average(b->reducer, b->g, loss));
        mc_dist_reducer_stats stats;
        mc_dist_reducer_stats_get(b->reducer, &stats);
        t.backward = stats.backward_seconds;
        t.exposed += stats.exposed_seconds;
        t.bytes_sent += stats.bytes_sent;
        t.buckets = stats.buckets;
        t.gradient_bytes = stats.gradient_bytes;
        t.last_bucket_bytes = stats.last_bucket_bytes;
    } else if (world > 1) {
        double average_start = bench_now_seconds();
        CHECK(mc_dist_average_gradients(b->g, &b->model->params));
        t.exposed += bench_now_seconds() - average_start;
        /* The rank-order all-reduce: 2 (N-1)/N of the buffer (rounding aside). */
        t.gradient_bytes = gradient_floats(&b->model->params) * (int64_t)sizeof(float);
        t.bytes_sent += 2 * (world - 1) * (t.gradient_bytes / world);
        t.last_bucket_bytes = t.gradient_bytes; /* one buffer, sent after backward */
        t.buckets = 1;
    }
    CHECK(mc_optimizer_step(b->adam));
    mc_graph_reset(b->g);
    t.step = bench_now_seconds() - start;
    return t;
}

/* ---- the CLIP target embedding, sharded ---- */

enum { CLIP_IMAGES = 32, CLIP_BATCH = 16, CLIP_SIZE = 224 };

typedef struct clip_bench {
    mc_clip *clip;
    mc_graph *g;
    mc_tensor *pixels; /* this rank's shard */
    mc_tensor *all;    /* (CLIP_IMAGES, 512): every rank's embeddings */
    int64_t first, count;
} clip_bench;

static void clip_setup(clip_bench *b) {
    *b = (clip_bench){0};
    mc_clip_config config = bench_clip_vit_b32();
    config.has_text = false; /* the image tower alone embeds the targets */
    mc_rng rng;
    mc_rng_seed(&rng, 2);
    CHECK(mc_clip_new(&b->clip, &config, &rng));
    mc_clip_set_trainable(b->clip, false);
    CHECK(mc_graph_new(&b->g));
    mc_graph_set_grad_enabled(b->g, false);
    mc_dist_slice(CLIP_IMAGES, mc_dist_rank(), mc_dist_world_size(), &b->first, &b->count);
    CHECK(mc_tensor_new(&b->pixels, MC_SHAPE(b->count, 3, CLIP_SIZE, CLIP_SIZE), "pixels"));
    mc_tensor_normal(b->pixels, &rng, 0.0f, 1.0f);
    CHECK(mc_tensor_new(&b->all, MC_SHAPE(CLIP_IMAGES, 512), "embeddings"));
}

static void clip_free(clip_bench *b) {
    mc_tensor_free(b->pixels);
    mc_tensor_free(b->all);
    mc_graph_free(b->g);
    mc_clip_free(b->clip);
}

static step_times clip_step(clip_bench *b) {
    const int world = mc_dist_world_size();
    step_times t = {0};
    double start = bench_now_seconds();
    float *mine = malloc((size_t)(b->count * 512 + 1) * sizeof *mine);
    if (!mine) CHECK(mc_error(MC_ERR_NOMEM, "out of memory"));
    for (int64_t i = 0; i < b->count; i += CLIP_BATCH) {
        int64_t n = b->count - i < CLIP_BATCH ? b->count - i : CLIP_BATCH;
        mc_tensor batch = mc_tensor_rows(b->pixels, i, n), *out;
        CHECK(mc_clip_encode_image(b->clip, b->g, &batch, &out));
        memcpy(mine + i * 512, out->data, (size_t)out->numel * sizeof(float));
        mc_graph_reset(b->g);
    }
    double gather_start = bench_now_seconds();
    int64_t counts[64], total;
    CHECK(mc_dist_allgather_counts(b->count, counts, &total));
    CHECK(mc_dist_allgather_rows(mine, b->count, 512, counts, b->all->data));
    t.exposed = bench_now_seconds() - gather_start;
    t.bytes_sent = (world - 1) * b->count * 512 * (int64_t)sizeof(float);
    free(mine);
    t.step = bench_now_seconds() - start;
    return t;
}

/* ---- the driver ---- */

int main(int argc, char **argv) {
    const char *row = "train100";
    int steps = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--row") == 0 && i + 1 < argc) row = argv[++i];
        else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: see the comment at the top of bench/dist/main.c\n");
            return 2;
        }
    }
    if (steps < 1 || steps > 50) steps = 5;
    CHECK(mc_dist_init(&argc, &argv)); /* alone: a world of one process */
    const int world = mc_dist_world_size();
    if (world > 64) {
        fprintf(stderr, "bench_dist: at most 64 ranks\n");
        return 2;
    }
    bool is_train = strncmp(row, "train100", 8) == 0, overlap = strcmp(row, "train100") == 0;
    if (!is_train && strcmp(row, "clip_targets") != 0) {
        fprintf(stderr, "bench_dist: unknown row %s\n", row);
        return 2;
    }
    train_bench tb;
    clip_bench cb;
    if (is_train) train_setup(&tb, overlap);
    else clip_setup(&cb);
    double step[50], cpu[50], backward[50], exposed[50];
    step_times t = {0};
    for (int s = -1; s < steps; s++) { /* step -1: the warm-up */
        CHECK(mc_dist_barrier()); /* every rank starts the step together */
        double cpu_start = bench_clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
        t = is_train ? train_step(&tb) : clip_step(&cb);
        /* The job's CPU time: every rank's, summed. */
        t.cpu = bench_clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
        CHECK(mc_dist_allreduce_doubles(&t.cpu, 1, MC_DIST_SUM));
        if (s < 0) continue;
        cpu[s] = t.cpu;
        step[s] = t.step;
        backward[s] = t.backward;
        exposed[s] = t.exposed;
    }
    double step_median = bench_median(step, steps), exposed_median = bench_median(exposed, steps);
    double backward_median = bench_median(backward, steps), cpu_median = bench_median(cpu, steps);
    int items = is_train ? TRAIN_BATCH : CLIP_IMAGES;
    if (mc_dist_rank() == 0)
        printf("row=%s ranks=%d threads=%d items_per_s=%.3f items_per_cpu_s=%.3f step_s=%.4f compute_s=%.4f "
               "exposed_comm_s=%.4f "
               "backward_s=%.4f bytes_sent_per_rank=%lld buckets=%d last_bucket_bytes=%lld gradient_bytes=%lld "
               "steps=%d\n",
               row, world, mc_get_num_threads(), items / step_median, items / cpu_median, step_median,
               step_median - exposed_median,
               exposed_median, backward_median, (long long)t.bytes_sent, t.buckets, (long long)t.last_bucket_bytes,
               (long long)t.gradient_bytes, steps);
    if (is_train) train_free(&tb);
    else clip_free(&cb);
    mc_dist_finalize();
    return 0;
}

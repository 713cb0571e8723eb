/* bench_clip: CLIP ViT-B/32 towers, mmchain next to PyTorch in one run.
 *
 *   bench_clip [THREADS] [REPEATS]
 *
 * Rows: image embeddings/s at batch 16 (224x224), the same with the graph's
 * products on bf16 operands (mc_graph_set_precision; the peer under
 * torch.autocast("cpu", dtype=torch.bfloat16)), text embeddings/s for 10 and
 * 100 prompts in rows of 77 token ids, peak resident memory. The text rows
 * come twice: prompts of 5, 12 and 20 words (end-of-text at positions 6, 13,
 * 21, like real prompts), and prompts of 75 words that fill the whole
 * context (end-of-text at 76), which keep the kernels' rate at full length
 * visible. The peer runs all 77 positions of every row, as OpenAI's and
 * open_clip's code do; mmchain's tower is causal and reads the feature at
 * end-of-text, so it runs only positions up to the batch's last end-of-text
 * token (22 of 77 on the short rows, all 77 on the full ones). Random
 * weights (the speed does not depend on them). The PyTorch peer,
 * bench/peer/torch_clip.py, runs as a child process with the same thread
 * count; the table prints the ratio mmchain / PyTorch (above 1: we are
 * faster; for memory, below 1: we use less) and, for each side, the fraction
 * of the CPU's fp32 peak its rate is, counting the FLOP that side performs:
 * GFLOP per embedding (clip_image_gflop, clip_text_gflop: the products of the
 * towers' shapes; for text, over the positions that side runs; for the
 * image, mmchain's last block runs its output projection and MLP on the
 * class token alone, 8.30 GFLOP against PyTorch's 8.82) x
 * embeddings/s / (threads x bench_peak_gflops_per_thread()). Run from the
 * source tree root or set MMCHAIN_SOURCE_DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common.h"
#include "mmchain/mmchain.h"

typedef struct workload {
    mc_clip *clip;
    mc_graph *graph;
    mc_tensor *pixels;
    int32_t *ids;
    int n_texts;
    int image; /* 1: the image tower, 0: the text tower */
} workload;

static mc_status run_once(workload *w) {
    mc_tensor *out;
    mc_graph_reset(w->graph);
    if (w->image) return mc_clip_encode_image(w->clip, w->graph, w->pixels, &out);
    return mc_clip_encode_text(w->clip, w->graph, w->ids, w->n_texts, &out);
}

/* FLOP (2 per multiply-add) of one transformer layer over `tokens` tokens of
 * `width` with an MLP of `mlp`: the Q, K, V and output projections (4 w^2
 * per token), the MLP (2 w mlp per token) and attention's two products
 * (Q K^T and P V: tokens^2 w each, all heads together). Layer norms,
 * softmax, biases and GELU are left out (a few percent). */
static double transformer_layer_flop(double tokens, double width, double mlp) {
    return 2.0 * (tokens * (4.0 * width * width + 2.0 * width * mlp) + 2.0 * tokens * tokens * width);
}

/* GFLOP of one image embedding: the patch embedding (a conv of patch x
 * patch x 3 per grid cell), the layers over grid^2 + 1 tokens (the class
 * token), the projection of the class token. ViT-B/32 at 224: 8.82.
 * class_only_last: the last block's output projection and MLP on the class
 * token alone, as mmchain runs it (only that row reaches the output):
 * 8.30; PyTorch runs them on every token. */
static double clip_image_gflop(const mc_clip_config *c, int class_only_last) {
    double grid = c->vision.image_size / c->vision.patch, tokens = grid * grid + 1.0;
    double width = c->vision.width, mlp = c->vision.mlp_width;
    double patch = 2.0 * grid * grid * 3.0 * c->vision.patch * c->vision.patch * width;
    double layers = c->vision.layers * transformer_layer_flop(tokens, width, mlp);
    if (class_only_last) /* Q, K, V and attention on every token; the rest on one */
        layers += 2.0 * (tokens * 3.0 * width * width + 2.0 * tokens * tokens * width +
                         width * width + 2.0 * width * mlp) -
                  transformer_layer_flop(tokens, width, mlp);
    return (patch + layers + 2.0 * width * c->embed_dim) * 1e-9;
}

/* GFLOP of one prompt's embedding: the layers over the `positions` tokens
 * the tower runs (PyTorch: the padded context, 77; mmchain: up to the
 * batch's last end-of-text token) and the projection of the end token.
 * ViT-B/32's text tower: 5.96 over 77 positions, 1.67 over 22. */
static double clip_text_gflop(const mc_clip_config *c, int positions) {
    return (c->text.layers * transformer_layer_flop(positions, c->text.width, c->text.mlp_width) +
            2.0 * c->text.width * c->embed_dim) * 1e-9;
}

/* Median wall time of `repeats` runs after one warm-up run. */
static double median_seconds(workload *w, int repeats) {
    double times[64];
    if (repeats > 64) repeats = 64;
    if (run_once(w) != MC_OK) return -1.0;
    for (int i = 0; i < repeats; i++) {
        double start = bench_now_seconds();
        if (run_once(w) != MC_OK) return -1.0;
        times[i] = bench_now_seconds() - start;
    }
    bench_sort(times, repeats);
    return times[repeats / 2];
}

/* The prompts' word counts: short ones like real prompts, and ones that
 * fill the context (sot, 75 words, eot). */
static const int short_lengths[3] = {5, 12, 20}, full_lengths[1] = {75};

/* Token rows like the tokenizer's: sot, words, eot, padding; row i has
 * lengths[i % n_lengths] words. */
static void fill_ids(int32_t *ids, int n, const int *lengths, int n_lengths, mc_rng *rng) {
    for (int i = 0; i < n; i++) {
        int32_t *row = ids + i * 77;
        memset(row, 0, 77 * sizeof *row);
        int length = lengths[i % n_lengths];
        row[0] = 49406;
        for (int t = 1; t <= length; t++) row[t] = 1 + (int32_t)mc_rng_below(rng, 49000);
        row[length + 1] = 49407;
    }
}

/* Run bench/peer/torch_clip.py with the same threads and repeats. */
static int run_peer(int threads, int repeats, bench_peer_row *rows, int capacity, char *version, size_t version_len) {
    const char *source = getenv("MMCHAIN_SOURCE_DIR");
    char command[1024];
    snprintf(command, sizeof command, "/usr/bin/python3 '%s/bench/peer/torch_clip.py' %d %d", source ? source : ".",
             threads, repeats);
    return bench_run_peer(command, rows, capacity, version, version_len);
}

int main(int argc, char **argv) {
    /* Passive OpenMP waiting for us and the peer (which inherits it). */
    mc_threads_reexec_with_passive_wait(argv);
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int repeats = argc > 2 ? atoi(argv[2]) : 5;
    if (argc > 3 || threads < 1 || repeats < 1) {
        fprintf(stderr, "usage: bench_clip [THREADS] [REPEATS] (both at least 1; defaults 2 and 5)\n");
        return 2;
    }
    mc_set_num_threads(threads);
    mc_clip_config config = bench_clip_vit_b32();
    mc_rng rng;
    mc_rng_seed(&rng, 0);
    workload w = {0};
    if (mc_clip_new(&w.clip, &config, &rng) != MC_OK || mc_graph_new(&w.graph) != MC_OK ||
        mc_tensor_new(&w.pixels, MC_SHAPE(16, 3, 224, 224), "pixels") != MC_OK) {
        fprintf(stderr, "bench_clip: %s\n", mc_last_error());
        return 1;
    }
    mc_graph_set_grad_enabled(w.graph, false);
    mc_tensor_normal(w.pixels, &rng, 0.0f, 1.0f);
    w.ids = malloc(100 * 77 * sizeof *w.ids);
    if (!w.ids) return 1;

    enum { ROWS = 6 };
    const char *rows[ROWS] = {"image_b16", "image_b16_bf16", "text_10", "text_100", "text_10_full", "text_100_full"};
    double ours[ROWS];
    w.image = 1;
    ours[0] = 16.0 / median_seconds(&w, repeats);
    mc_graph_set_precision(w.graph, MC_PRECISION_BF16);
    ours[1] = 16.0 / median_seconds(&w, repeats);
    mc_graph_set_precision(w.graph, MC_PRECISION_FP32);
    w.image = 0;
    for (int i = 0; i < 4; i++) {
        w.n_texts = i % 2 == 0 ? 10 : 100;
        if (i < 2) fill_ids(w.ids, w.n_texts, short_lengths, 3, &rng);
        else fill_ids(w.ids, w.n_texts, full_lengths, 1, &rng);
        ours[2 + i] = w.n_texts / median_seconds(&w, repeats);
    }
    double our_peak_mib = (double)mc_peak_rss_bytes() / (1024.0 * 1024.0);

    bench_peer_row peer[16];
    char version[256];
    int n_peer = run_peer(threads, repeats, peer, 16, version, sizeof version);

    char cpu[512], commit[128];
    bench_cpu_model(cpu, sizeof cpu);
    bench_commit(commit, sizeof commit);
    const char *wait = getenv("OMP_WAIT_POLICY");
    double peak = threads * bench_peak_gflops_per_thread();
    /* The positions each side runs: the longest short prompt's end-of-text
     * is at 20 + 1, so mmchain's tower runs 22 (see the header). */
    int short_positions = short_lengths[2] + 2, context = config.text.context;
    double text_all = clip_text_gflop(&config, context), text_short = clip_text_gflop(&config, short_positions);
    double gflop_ours[ROWS] = {clip_image_gflop(&config, 1), clip_image_gflop(&config, 1), text_short, text_short,
                               text_all, text_all};
    double gflop_theirs[ROWS] = {clip_image_gflop(&config, 0), clip_image_gflop(&config, 0), text_all, text_all,
                                 text_all, text_all};
    printf("CLIP ViT-B/32, random weights, %d thread(s), OpenBLAS core %s, bf16 on %s, median of %d; "
           "mmchain %s (commit %s), OMP_WAIT_POLICY=%s\n",
           threads, mc_blas_core_name(), mc_gemm_bf16_kernel_name(), repeats, mc_version(), commit,
           wait ? wait : "(unset)");
    printf("CPU: %s; peak: %d x %.0f GFLOP/s fp32 (bf16 products can reach twice it); %.2f GFLOP per "
           "image (mmchain, whose last block runs its projection and MLP on the class token alone: "
           "%.2f), %.2f per prompt over all %d positions\n", cpu, threads, bench_peak_gflops_per_thread(),
           gflop_theirs[0], gflop_ours[0], text_all, context);
    printf("text: PyTorch runs all %d positions of every row; mmchain runs positions up to the batch's last "
           "end-of-text token: %d on the 5-20 word rows (%.2f GFLOP per prompt), %d on the full rows. "
           "%% of peak counts the FLOP each side performs\n", context, short_positions, text_short, context);
    printf("peer: %s\n\n", n_peer ? version : "(PyTorch peer unavailable)");
    printf("| row | mmchain | PyTorch | ratio | mmchain, %% of fp32 peak (its FLOP) | "
           "PyTorch, %% of fp32 peak (its FLOP) |\n"
           "|---|---|---|---|---|---|\n");
    const char *labels[ROWS] = {"image embeddings/s, batch 16, 224x224",
                                "image embeddings/s, batch 16, 224x224, bf16 (PyTorch: autocast)",
                                "text embeddings/s, 10 prompts x 77, 5-20 words (ours: 22 positions)",
                                "text embeddings/s, 100 prompts x 77, 5-20 words (ours: 22 positions)",
                                "text embeddings/s, 10 prompts x 77, 75 words (full context)",
                                "text embeddings/s, 100 prompts x 77, 75 words (full context)"};
    for (int i = 0; i < ROWS; i++) {
        double theirs = bench_peer_value(peer, n_peer, rows[i]);
        printf("| %s | %.2f | %.2f | %.2f | %.1f | %.1f |\n", labels[i], ours[i], theirs,
               theirs > 0 ? ours[i] / theirs : 0.0, 100.0 * gflop_ours[i] * ours[i] / peak,
               100.0 * gflop_theirs[i] * theirs / peak);
    }
    double their_peak = bench_peer_value(peer, n_peer, "peak_mib");
    printf("| peak resident memory, MiB | %.0f | %.0f | %.2f | | |\n", our_peak_mib, their_peak,
           their_peak > 0 ? our_peak_mib / their_peak : 0.0);
    /* The image rows side by side: what bf16 buys each side. */
    double their_fp32 = bench_peer_value(peer, n_peer, rows[0]), their_bf16 = bench_peer_value(peer, n_peer, rows[1]);
    printf("\nimage batch 16, bf16 / fp32: mmchain %.2f, PyTorch autocast / PyTorch fp32 %.2f; "
           "mmchain bf16 / PyTorch autocast %.2f, mmchain bf16 / PyTorch fp32 %.2f\n",
           ours[1] / ours[0], their_fp32 > 0 ? their_bf16 / their_fp32 : 0.0,
           their_bf16 > 0 ? ours[1] / their_bf16 : 0.0, their_fp32 > 0 ? ours[1] / their_fp32 : 0.0);
    free(w.ids);
    mc_tensor_free(w.pixels);
    mc_graph_free(w.graph);
    mc_clip_free(w.clip);
    return 0;
}

/* bench_clip: CLIP ViT-B/32 towers, mmchain next to PyTorch in one run.
 *
 *   bench_clip [THREADS] [REPEATS]
 *
 * Rows: image embeddings/s at batch 16 (224x224), the same with the graph's
 * products on bf16 operands (mc_graph_set_precision; the peer under
 * torch.autocast("cpu", dtype=torch.bfloat16)), text embeddings/s for 10 and 100 prompts of 77
 * tokens, peak resident memory. Random weights (the
 * speed does not depend on them). The PyTorch peer, bench/peer/torch_clip.py,
 * runs as a child process with the same thread count; the table prints the
 * ratio mmchain / PyTorch (above 1: we are faster; for memory, below 1: we
 * use less). Run from the source tree root or set MMCHAIN_SOURCE_DIR. */
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

/* Token rows like the tokenizer's: sot, words, eot, padding. */
static void fill_ids(int32_t *ids, int n, mc_rng *rng) {
    const int lengths[3] = {5, 12, 20};
    for (int i = 0; i < n; i++) {
        int32_t *row = ids + i * 77;
        memset(row, 0, 77 * sizeof *row);
        int length = lengths[i % 3];
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

    const char *rows[4] = {"image_b16", "image_b16_bf16", "text_10", "text_100"};
    double ours[4];
    w.image = 1;
    ours[0] = 16.0 / median_seconds(&w, repeats);
    mc_graph_set_precision(w.graph, MC_PRECISION_BF16);
    ours[1] = 16.0 / median_seconds(&w, repeats);
    mc_graph_set_precision(w.graph, MC_PRECISION_FP32);
    w.image = 0;
    for (int i = 0; i < 2; i++) {
        w.n_texts = i == 0 ? 10 : 100;
        fill_ids(w.ids, w.n_texts, &rng);
        ours[2 + i] = w.n_texts / median_seconds(&w, repeats);
    }
    double our_peak_mib = (double)mc_peak_rss_bytes() / (1024.0 * 1024.0);

    bench_peer_row peer[8];
    char version[256];
    int n_peer = run_peer(threads, repeats, peer, 8, version, sizeof version);

    printf("CLIP ViT-B/32, random weights, %d thread(s), OpenBLAS core %s, bf16 on %s, median of %d\n",
           threads, mc_blas_core_name(), mc_gemm_bf16_kernel_name(), repeats);
    printf("peer: %s\n\n", n_peer ? version : "(PyTorch peer unavailable)");
    printf("| row | mmchain | PyTorch | ratio |\n|---|---|---|---|\n");
    const char *labels[4] = {"image embeddings/s, batch 16, 224x224",
                             "image embeddings/s, batch 16, 224x224, bf16 (PyTorch: autocast)",
                             "text embeddings/s, 10 prompts x 77", "text embeddings/s, 100 prompts x 77"};
    for (int i = 0; i < 4; i++) {
        double theirs = bench_peer_value(peer, n_peer, rows[i]);
        printf("| %s | %.2f | %.2f | %.2f |\n", labels[i], ours[i], theirs, theirs > 0 ? ours[i] / theirs : 0.0);
    }
    double their_peak = bench_peer_value(peer, n_peer, "peak_mib");
    printf("| peak resident memory, MiB | %.0f | %.0f | %.2f |\n", our_peak_mib, their_peak,
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

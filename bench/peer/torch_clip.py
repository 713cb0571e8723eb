#!/usr/bin/python3
"""PyTorch peer of bench/clip: the same ViT-B/32 towers (random weights,
written from CLIP's description as in tests/golden/gen_clip.py), the same
batch sizes, the same thread count. Prints one "row value" line per
measurement, which bench_clip reads.

usage: torch_clip.py THREADS REPEATS
"""
import os
import resource
import statistics
import sys
import time

# torch.set_num_threads does not reach the BLAS that Debian's torch calls
# (OpenBLAS, its own thread pool): without these, a "1 thread" peer still ran
# its GEMMs on every core. They must be set before torch is imported.
if len(sys.argv) > 1 and sys.argv[1].isdigit():
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[1]

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden"))
import gen_clip  # noqa: E402


def median_seconds(fn, repeats):
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    threads, repeats = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    cfg = gen_clip.VIT_B_32
    gen = torch.Generator().manual_seed(0)
    params = gen_clip.make_params(cfg, gen)
    pixels = torch.randn(16, 3, 224, 224, generator=gen)
    with torch.no_grad():
        t = median_seconds(lambda: gen_clip.encode_image(params, cfg, pixels), repeats)
        print(f"image_b16 {16 / t:.3f}", flush=True)
        # The bf16 peer: PyTorch's one-line mixed precision.
        with torch.autocast("cpu", dtype=torch.bfloat16):
            t = median_seconds(lambda: gen_clip.encode_image(params, cfg, pixels), repeats)
        print(f"image_b16_bf16 {16 / t:.3f}", flush=True)
        # Prompts of 5-20 words, then 75 words that fill the context; like
        # OpenAI's and open_clip's code, every row runs all 77 positions.
        for suffix, lengths in (("", [5, 12, 20]), ("_full", [75])):
            for n in (10, 100):
                ids = gen_clip.random_ids(gen, n, 77, 49408, lengths)
                t = median_seconds(lambda: gen_clip.encode_text(params, cfg, ids), repeats)
                print(f"text_{n}{suffix} {n / t:.3f}", flush=True)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak_mib {peak_mib:.1f}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"MKL-DNN {'on' if torch.backends.mkldnn.is_available() else 'off'}")


if __name__ == "__main__":
    main()

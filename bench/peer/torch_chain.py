#!/usr/bin/python3
"""PyTorch peer of bench/chain: the real recipe's four costs, same shapes and threads.

    /usr/bin/python3 bench/peer/torch_chain.py --threads 2 --steps 2 [--precision bf16]
        [--clip-batch N] [--keep-heap]

A ViT-B/32 of CLIP's shape (random weights, written from CLIP's description
in tests/golden/gen_clip.py) embeds RGB views: bicubic from 64x64 to 224x224,
CLIP's normalisation, batches of 64, under torch.no_grad(). torchvision's
resnet50 on three bands at 64x64 with fc = Linear(2048, 512) trains against
the embeddings (InfoNCE with t = log(1/0.07), Adam lr 1e-4, batch 100).
--precision bf16 runs the CLIP embedding and the ResNet forward (so its backward)
under torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's one-line mixed
precision; the embeddings and the loss stay float32.
Two settings a PyTorch user might choose, both off by default (the peer then runs
as the recipe is configured): --clip-batch N embeds N images at a time instead of
64; --keep-heap has glibc's malloc serve every block from the heap and keep what
is freed (mallopt M_MMAP_MAX = 0, M_TRIM_THRESHOLD = 1 GiB), for the whole
process (the ResNet steps too). At batches of 55 or more the fp32 ViT's MLP
tensors (N x 50 x 3072 floats, 37.5 MiB at 64) are above the largest block
glibc learns to keep (32 MiB), so by default each is a fresh mmap whose pages
the kernel faults in and zeroes, unmapped again when freed; smaller batches
lose less to the heap's trimmed top (bench/README.md).
Random tiles: speed does not depend on the content. Prints "row value" lines:
    target_tile_s  seconds per tile to embed un-augmented views (the target cache)
    crops_tile_s   seconds per tile to embed 4 random crops of it (--target-crops 4;
                   64 tiles, the CLIP batch, one crop of each per batch as mmchain)
    step_cached_s  a training step with precomputed targets (median of --steps after a warm-up)
    step_fly_s     a training step that crops both views with one box (side 0.8..1, resized
                   back to 64x64) and embeds the RGB crop first (median)
    peak_mib       this process's peak resident memory (interpreter and torch included)
    cpu_s          this process's CPU time, all threads, from its start
and a "torch ..." version line. bench_chain runs it and prints both sides.
"""
import argparse
import math
import os
import random
import resource
import statistics
import sys
import time

# torch.set_num_threads does not reach the BLAS that Debian's torch calls (its
# own OpenBLAS pool): pin it before torch is imported.
for _i, _arg in enumerate(sys.argv):
    if _arg == "--threads" and _i + 1 < len(sys.argv) and sys.argv[_i + 1].isdigit():
        os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[_i + 1]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden"))
import gen_clip  # noqa: E402

BATCH, SIZE, CROPS, CROP_TILES, CLIP_BATCH = 100, 64, 4, 64, 64
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def keep_heap():
    """glibc malloc: no mmap for large blocks, no trimming of the heap's free top,
    so freed activations are reused instead of faulted in again."""
    import ctypes
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_max = -1, -4  # malloc.h
    if not (libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, 1 << 30)):
        raise SystemExit("torch_chain.py: --keep-heap: mallopt refused")


def embed(params, cfg, rgb, autocast, clip_batch=CLIP_BATCH):
    """rgb (N, 3, 64, 64) in 0..1 -> (N, 512) float32, clip_batch images at a time."""
    out = []
    with torch.no_grad():
        for first in range(0, rgb.shape[0], clip_batch):
            x = F.interpolate(rgb[first:first + clip_batch], size=224, mode="bicubic", align_corners=False)
            with autocast:
                out.append(gen_clip.encode_image(params, cfg, (x - CLIP_MEAN) / CLIP_STD).float())
    return torch.cat(out)


def crop(x, box):
    """One box (top, left, side) of x (N, C, 64, 64), resized back to 64x64."""
    top, left, side = box
    return F.interpolate(x[:, :, top:top + side, left:left + side], size=SIZE, mode="bilinear",
                         align_corners=False)


def random_box(rng):
    side = int(round(SIZE * rng.uniform(0.8, 1.0)))  # the side, as mc_augment_config
    return rng.randrange(SIZE - side + 1), rng.randrange(SIZE - side + 1), side


def infonce(embeddings, targets, log_scale):
    a = F.normalize(embeddings, dim=1)
    b = F.normalize(targets, dim=1)
    return F.cross_entropy(math.exp(log_scale) * a @ b.t(), torch.arange(a.shape[0]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--clip-batch", type=int, default=CLIP_BATCH,
                        help="images per ViT call (default: the recipe's CLIP batch, 64)")
    parser.add_argument("--keep-heap", action="store_true",
                        help="glibc malloc keeps freed memory and never mmaps (default: glibc's own policy)")
    args = parser.parse_args()
    if args.clip_batch < 1:
        parser.error("--clip-batch must be at least 1")
    if args.keep_heap:
        keep_heap()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    cfg = gen_clip.VIT_B_32
    params = gen_clip.make_params(cfg, gen)
    tiles = BATCH * (args.steps + 1)
    rgb = torch.rand(tiles, 3, SIZE, SIZE, generator=gen)
    spectral = torch.randn(tiles, 3, SIZE, SIZE, generator=gen)

    start = time.perf_counter()
    targets = embed(params, cfg, rgb, autocast, args.clip_batch)
    print(f"target_tile_s {(time.perf_counter() - start) / tiles:.6f}", flush=True)

    start = time.perf_counter()
    for _ in range(CROPS):
        embed(params, cfg, torch.cat([crop(rgb[i:i + 1], random_box(rng)) for i in range(CROP_TILES)]), autocast,
              args.clip_batch)
    print(f"crops_tile_s {(time.perf_counter() - start) / CROP_TILES:.6f}", flush=True)

    def median_step(on_the_fly):
        model = torchvision.models.resnet50()
        model.fc = torch.nn.Linear(2048, 512)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        times = []
        for step in range(args.steps + 1):  # the first is the warm-up
            t0 = time.perf_counter()
            items = slice(step * BATCH, (step + 1) * BATCH)
            x, batch_targets = spectral[items], targets[items]
            if on_the_fly:
                box = [random_box(rng) for _ in range(BATCH)]
                x = torch.cat([crop(spectral[i:i + 1], b) for i, b in zip(range(items.start, items.stop), box)])
                views = torch.cat([crop(rgb[i:i + 1], b) for i, b in zip(range(items.start, items.stop), box)])
                batch_targets = embed(params, cfg, views, autocast, args.clip_batch)
            optimizer.zero_grad()
            with autocast:
                embeddings = model(x)
            loss = infonce(embeddings.float(), batch_targets, math.log(1 / 0.07))
            loss.backward()
            optimizer.step()
            if step > 0:
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    print(f"step_cached_s {median_step(False):.6f}", flush=True)
    print(f"step_fly_s {median_step(True):.6f}", flush=True)
    print(f"peak_mib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")
    print(f"cpu_s {time.process_time():.3f}")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {torch.get_num_threads()} thread(s)"
          + (f", CLIP batch {args.clip_batch}" if args.clip_batch != CLIP_BATCH else "")
          + (", --keep-heap" if args.keep_heap else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

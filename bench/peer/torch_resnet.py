#!/usr/bin/python3
"""PyTorch peer of bench/resnet/main.c: one benchmark row, one result line.

    /usr/bin/python3 bench/peer/torch_resnet.py --row train100 --threads 2

Rows (ResNet-50, torchvision, random weights, CPU float32):
    eval32     eval forward, batch 32, 3x64x64, under torch.no_grad()
    train32    one training step, batch 32, 3x64x64: forward with fc = Linear(2048, 512),
               InfoNCE against fixed targets (exp(t) * cos-similarity, t = log(1/0.07),
               cross-entropy with diagonal labels), backward, Adam(lr 1e-4)
    train100   the same at batch 100
    eval224    eval forward, batch 8, 3x224x224

--precision bf16 runs the forward (and so the backward) under
torch.autocast("cpu", dtype=torch.bfloat16), PyTorch's one-line mixed precision.

Prints: "row=<row> threads=<n> images_per_s=<x> seconds_per_iter=<median>
cpu_seconds_per_iter=<median> images_per_cpu_s=<y> iters=<k> peak_rss_mb=<m>" (CPU time is
the process's, all threads: the measure other tenants of a shared machine cannot inflate), the peak resident set of this whole process (interpreter and torch
included) as getrusage reports it. Run by bench_resnet, which runs mmchain's twin of
the same row with the same thread count and prints both side by side.
"""
import argparse
import math
import resource
import statistics
import sys
import time

# torch.set_num_threads does not reach the BLAS that Debian's torch calls
# (OpenBLAS, its own thread pool): without these, a "1 thread" peer still
# ran its GEMMs on every core. They must be set before torch is imported.
def _pin_blas_threads(argv):
    import os
    for i, arg in enumerate(argv):
        value = None
        if arg == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--threads="):
            value = arg.split("=", 1)[1]
        if value and value.isdigit():
            for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                os.environ[name] = value


_pin_blas_threads(sys.argv)

import torch
import torch.nn.functional as F
import torchvision

ROWS = {  # name: (train?, batch, size)
    "eval32": (False, 32, 64),
    "train32": (True, 32, 64),
    "train100": (True, 100, 64),
    "eval224": (False, 8, 224),
}


def infonce(embeddings, targets, log_scale):
    a = F.normalize(embeddings, dim=1)
    b = F.normalize(targets, dim=1)
    logits = math.exp(log_scale) * a @ b.t()
    return F.cross_entropy(logits, torch.arange(a.shape[0]))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--row", required=True, choices=sorted(ROWS))
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--min-iters", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=4.0)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train, batch, size = ROWS[args.row]
    model = torchvision.models.resnet50()
    x = torch.randn(batch, 3, size, size)
    if train:
        model.fc = torch.nn.Linear(2048, 512)
        model.train()
        targets = torch.randn(batch, 512)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            optimizer.zero_grad()
            with autocast:
                embeddings = model(x)
            loss = infonce(embeddings.float(), targets, math.log(1 / 0.07))
            loss.backward()
            optimizer.step()
    else:
        model.eval()

        def step():
            with torch.no_grad(), autocast:
                model(x)

    # Two warm-up steps, as bench_resnet takes for our side: allocations,
    # thread pools, Adam state, and the second step's first touch of memory.
    step()
    step()
    times, cpu_times = [], []
    start = time.perf_counter()
    while len(times) < args.min_iters or time.perf_counter() - start < args.min_seconds:
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)  # all threads of this process
        if len(times) >= 50:
            break
    median, cpu_median = statistics.median(times), statistics.median(cpu_times)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"row={args.row} threads={args.threads} images_per_s={batch / median:.3f} "
          f"seconds_per_iter={median:.4f} cpu_seconds_per_iter={cpu_median:.4f} "
          f"images_per_cpu_s={batch / cpu_median:.3f} iters={len(times)} peak_rss_mb={peak_mb:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

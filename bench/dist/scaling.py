#!/usr/bin/env python3
"""The scaling model of docs/distributed.md: the step time of ResNet-50 data
parallel training at global batch 100 x N on N nodes, from one node's
measured step (bench_dist, row train100, one process) and a model of the
network.

    bench/dist/scaling.py --step S --backward B [--last-bucket F]
                          [--gradients 25.6e6] [--latency 25e-6]

S: one node's step at batch 100 (seconds), B: the backward part of it,
F: the share of the gradients in the bucket that backward finishes last
(its exchange cannot overlap anything). Every number printed is projected.

The model: each node computes a step of batch 100 (S, unchanged by N), and
the gradients are all-reduced with the traffic of a ring, 2 (N-1)/N of the
gradient bytes per node each way, plus 2 (N-1) latencies per bucket:

    T_comm(N) = 2 (N-1)/N * bytes / bandwidth + buckets * 2 (N-1) * latency

The buckets' exchanges run while backward computes; what cannot hide is
whatever outlasts backward, and at least the last bucket's share:

    exposed(N) = max(F * T_comm(N), T_comm(N) - B)
    step(N) = S + exposed(N),  images/s = 100 N / step(N)
"""
import argparse


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--step", type=float, required=True, help="one node's step at batch 100, seconds")
    p.add_argument("--backward", type=float, required=True, help="its backward, seconds")
    p.add_argument("--last-bucket", type=float, default=0.25, help="share of the gradients in the last bucket")
    p.add_argument("--gradients", type=float, default=25.6e6, help="gradients all-reduced (floats)")
    p.add_argument("--buckets", type=int, default=4, help="buckets")
    p.add_argument("--latency", type=float, default=25e-6, help="seconds per message")
    a = p.parse_args()
    grad_bytes = 4 * a.gradients
    print("| N | link | all-reduce (s) | exposed (s) | step (s) | images/s | efficiency |")
    print("|---|---|---|---|---|---|---|")
    for gbit in (10, 100):
        bandwidth = gbit * 1e9 / 8
        for n in (1, 2, 4, 8, 16, 32, 64):
            comm = 0.0 if n == 1 else 2 * (n - 1) / n * grad_bytes / bandwidth + a.buckets * 2 * (n - 1) * a.latency
            exposed = max(a.last_bucket * comm, comm - a.backward)
            step = a.step + exposed
            print(f"| {n} | {gbit} Gb/s | {comm:.3f} | {exposed:.3f} | {step:.3f} | {100 * n / step:.0f} | "
                  f"{a.step / step:.2f} |")


if __name__ == "__main__":
    main()

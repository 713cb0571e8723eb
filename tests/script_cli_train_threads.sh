#!/usr/bin/env bash
# Determinism across thread counts: one epoch of `mmchain train` with
# MMCHAIN_THREADS=1 and =2 writes bit-identical checkpoints (weights, BN
# statistics, Adam state, training state) when the matrix products are our
# own GEMM. OpenBLAS's GEMM is not thread-count deterministic
# (docs/architecture.md, Determinism): skipped where ours is not in use.
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
if ! "$cli" --version | grep -q "GEMM: mmchain"; then
    echo "SKIP: the matrix products are OpenBLAS's here (no AVX-512F): not thread-count deterministic"
    exit 77
fi
. "$(dirname "$0")/support/script_common.sh"

chain_fixture 8
args=("${tiny_run[@]}" --width 8 --batch 4 --val-batch 8 --epochs 1 --seed 5 --quiet)
for threads in 1 2; do
    MMCHAIN_THREADS=$threads "$cli" train "${args[@]}" --out "$tmp/t$threads" >/dev/null 2>"$tmp/err" ||
        fail "train with $threads thread(s): $(cat "$tmp/err")"
    grep -q "\"threads\": $threads," "$tmp/t$threads/config.json" || fail "config.json does not record $threads thread(s)"
done
for f in last best; do
    cmp "$tmp/t1/checkpoints/$f.safetensors" "$tmp/t2/checkpoints/$f.safetensors" ||
        fail "$f.safetensors differs between 1 and 2 threads"
done
finish "1 and 2 threads give bit-identical checkpoints"

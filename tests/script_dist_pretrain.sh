#!/usr/bin/env bash
# `mpirun -np 2 mmchain pretrain-clip ...` against the same command in one
# process (a tiny CLIP on 40 synthetic tiles): both towers' embeddings are
# gathered, the gradients averaged before clipping, so the two runs write
# the same model.safetensors (within 1e-4 of each tensor's largest value),
# for an even and an odd global batch. Rank 0 alone writes the folder.
# The attention key biases are left out of the comparison: their gradient is
# zero in exact arithmetic (a key bias adds q.b to a whole row of logits, and
# softmax ignores that), so what backward computes for them is rounding noise
# of ~1e-7, which Adam turns into steps; they differ as much between one
# process on 1 and on 2 threads.
# Skipped without MPI or without the mmchain program.
set -u
. "$(dirname "$0")/support/script_dist_common.sh"
require_cli
tiny=(--synth 40 --image-size 16 --patch 8 --width 16 --layers 1 --text-width 16 --text-layers 1
      --embed-dim 16 --merges 30 --captions 2 --epochs 2 --quiet)

for batch in 20 13; do
    MMCHAIN_THREADS=2 "$cli" pretrain-clip "${tiny[@]}" --batch "$batch" --out "$tmp/one-$batch" >"$tmp/out" 2>&1 ||
        { fail "batch $batch, one process: $(cat "$tmp/out")"; continue; }
    timeout 600 "${mpirun[@]}" -np 2 "$cli" pretrain-clip "${tiny[@]}" --batch "$batch" --out "$tmp/two-$batch" \
        >"$tmp/out" 2>&1 || { fail "batch $batch, 2 ranks: $(cat "$tmp/out")"; continue; }
    "$compare" "$tmp/two-$batch/model.safetensors" "$tmp/one-$batch/model.safetensors" 1e-4 \
        self_attn.k_proj.bias >"$tmp/cmp" 2>&1 ||
        fail "batch $batch: 2 ranks differ from one process: $(cat "$tmp/cmp")"
    echo "batch $batch: $(cat "$tmp/cmp")"
    cmp -s "$tmp/two-$batch/merges.txt" "$tmp/one-$batch/merges.txt" || fail "batch $batch: merges.txt differs"
    [ "$(grep -c '^epoch,' "$tmp/two-$batch/metrics.csv")" = 2 ] ||
        fail "batch $batch, 2 ranks: metrics.csv: $(cat "$tmp/two-$batch/metrics.csv")"
done
finish "pretrain-clip on 2 ranks ends where one process ends"

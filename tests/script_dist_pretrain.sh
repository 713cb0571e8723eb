#!/usr/bin/env bash
# `mpirun -np 2 mmchain pretrain-clip ...` against the same command in one
# process (a tiny CLIP on 40 synthetic tiles): both towers' embeddings are
# gathered, the gradients averaged before clipping, so the two runs write
# the same model.safetensors (within 1e-4 of each tensor's largest value),
# for an even and an odd global batch. Rank 0 alone writes the folder.
# The zero-shot accuracy on 100 held-out images, computed by the 2 ranks in
# shards (whole batches of 64 images, one per rank; the counts summed), is
# the one-process run's. Ranks started with other options are refused.
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

# zero_shot RUN: the log's line with the held-out zero-shot accuracy, without its time.
zero_shot() { sed -n 's/^\[[^]]*\] \(zero-shot RGB -> text on .*\)/\1/p' "$1/log.txt"; }

# same_zero_shot NAME ONE TWO: the same held-out accuracy in both runs.
same_zero_shot() {
    local one two
    one=$(zero_shot "$2") two=$(zero_shot "$3")
    [ -n "$one" ] && [ "$one" = "$two" ] || { fail "$1: ${one:-none} alone, ${two:-none} on 2 ranks"; return; }
    echo "$1: $two (both)"
}

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
# 200 images, every second held out: 100 held-out images, 2 batches of 64.
held_out=(--synth 200 --val-every 2 --merges 200 --batch 20)
if MMCHAIN_THREADS=2 "$cli" pretrain-clip "${tiny[@]}" "${held_out[@]}" --out "$tmp/one-held" >"$tmp/out" 2>&1 &&
    timeout 600 "${mpirun[@]}" -np 2 "$cli" pretrain-clip "${tiny[@]}" "${held_out[@]}" --out "$tmp/two-held" \
        >"$tmp/out" 2>&1; then
    same_zero_shot "100 held-out images" "$tmp/one-held" "$tmp/two-held"
    zero_shot "$tmp/two-held" | grep -q "on 100 held-out" || fail "held-out images: $(zero_shot "$tmp/two-held")"
else
    fail "100 held-out images: $(cat "$tmp/out")"
fi
# Ranks started with other epochs (Open MPI's MPMD form: one program line
# per rank) are refused before the first step, not left waiting in
# different collectives.
if "$MMCHAIN_MPIEXEC" --version 2>/dev/null | grep -qiE "open-?mpi|OpenRTE"; then
    if timeout 300 "${mpirun[@]}" -np 1 "$cli" pretrain-clip "${tiny[@]}" --batch 20 --out "$tmp/disagree" \
            : -np 1 "$cli" pretrain-clip "${tiny[@]}" --batch 20 --epochs 3 --out "$tmp/disagree" \
            >"$tmp/out" 2>&1; then
        fail "other epochs on rank 1: the job succeeded"
    fi
    grep -q -- "--epochs is 3 on rank 1 but 2 on rank 0" "$tmp/out" ||
        fail "other epochs on rank 1: the message does not say it: $(cat "$tmp/out")"
else
    echo "(the disagreeing-ranks case uses Open MPI's MPMD form: not run with this launcher)"
fi
finish "pretrain-clip on 2 ranks ends where one process ends; disagreeing ranks are refused"

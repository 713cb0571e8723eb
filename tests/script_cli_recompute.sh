#!/usr/bin/env bash
# `mmchain train --recompute` (each ResNet block's forward run again in
# backward) ends where the same run without it ends, byte for byte: the
# checkpoints (weights, BN statistics and batch counts, Adam state) and the
# metrics but their timings; and a run may turn it on when resumed.
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"

chain_fixture 8
# A bottleneck encoder with a downsampling block per stage, 2 epochs.
args=(--data "$data" --clip "$clip" --vocab "$vocab" --depth 50 --width 4 --layers 1,2,1,1
      --batch 4 --val-batch 8 --epochs 2 --seed 5 --checkpoint-every 1 --quiet)

"$cli" train "${args[@]}" --out "$tmp/plain" >/dev/null 2>"$tmp/err" || fail "run without --recompute: $(cat "$tmp/err")"
"$cli" train "${args[@]}" --recompute --out "$tmp/recompute" >/dev/null 2>"$tmp/err" ||
    fail "run with --recompute: $(cat "$tmp/err")"
for f in last best; do
    cmp "$tmp/plain/checkpoints/$f.safetensors" "$tmp/recompute/checkpoints/$f.safetensors" ||
        fail "$f.safetensors differs with --recompute"
done
# metrics.csv without its timing columns (step_seconds, epoch_seconds).
untimed() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) timed[i] = $i ~ /_seconds$/ }
             { line = ""; for (i = 1; i <= NF; i++) if (!timed[i]) line = line $i ","; print line }' "$1"
}
[ "$(untimed "$tmp/plain/metrics.csv" | grep -c .)" -ge 5 ] || fail "metrics.csv has too few rows"
diff <(untimed "$tmp/plain/metrics.csv") <(untimed "$tmp/recompute/metrics.csv") ||
    fail "metrics.csv differs with --recompute (timing columns aside)"

# Stopped after 5 steps without it, resumed with it: the same end again.
"$cli" train "${args[@]}" --out "$tmp/switched" --stop-after-steps 5 >/dev/null 2>"$tmp/err" ||
    fail "first part: $(cat "$tmp/err")"
"$cli" train --resume "$tmp/switched" --recompute >/dev/null 2>"$tmp/err" || fail "resume with --recompute: $(cat "$tmp/err")"
cmp "$tmp/plain/checkpoints/last.safetensors" "$tmp/switched/checkpoints/last.safetensors" ||
    fail "last.safetensors differs when --recompute is turned on at the resume"

finish "--recompute changes no result"

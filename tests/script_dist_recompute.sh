#!/usr/bin/env bash
# `mpirun -np 2 mmchain train --recompute` (each ResNet block's forward run
# again in backward) against the same 2-rank run without it: the same
# checkpoints byte for byte (weights, BN statistics, Adam state) and the same
# metrics but their timings, with --sync-bn (whose statistics the recomputed
# forward gathers from the ranks again, while the gradient buckets are under
# way) and without. Skipped without MPI.
set -u
. "$(dirname "$0")/support/script_dist_common.sh"
require_cli

chain_fixture 4
# A bottleneck encoder with a downsampling block per stage.
tiny=(--data "$data" --clip "$clip" --vocab "$vocab" --depth 50 --width 4 --layers 1,2,1,1
      --val-batch 6 --seed 3 --epochs 2 --batch 8 --no-augment --quiet)

# metrics.csv without its timing columns (step_seconds, epoch_seconds).
untimed() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) timed[i] = $i ~ /_seconds$/ }
             { line = ""; for (i = 1; i <= NF; i++) if (!timed[i]) line = line $i ","; print line }' "$1"
}

for bn in sync-bn local-bn; do
    extra=()
    [ "$bn" = sync-bn ] && extra=(--sync-bn)
    for mode in plain recompute; do
        flag=()
        [ "$mode" = recompute ] && flag=(--recompute)
        timeout 600 "${mpirun[@]}" -np 2 "$cli" train "${tiny[@]}" "${extra[@]}" "${flag[@]}" \
            --out "$tmp/$bn-$mode" >"$tmp/out" 2>&1 || fail "$bn, $mode, 2 ranks: $(cat "$tmp/out")"
    done
    cmp "$tmp/$bn-plain/checkpoints/last.safetensors" "$tmp/$bn-recompute/checkpoints/last.safetensors" ||
        fail "$bn: last.safetensors differs with --recompute on 2 ranks"
    [ "$(untimed "$tmp/$bn-plain/metrics.csv" | grep -c .)" -ge 3 ] || fail "$bn: metrics.csv has too few rows"
    diff <(untimed "$tmp/$bn-plain/metrics.csv") <(untimed "$tmp/$bn-recompute/metrics.csv") ||
        fail "$bn: metrics.csv differs with --recompute on 2 ranks (timing columns aside)"
done

finish "--recompute on 2 ranks changes no result"

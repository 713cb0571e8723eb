#!/usr/bin/env bash
# Kill-and-resume: `mmchain train` is SIGKILLed in the middle of an epoch,
# `mmchain train --resume` finishes the run, and the final checkpoints are
# byte-for-byte those of an uninterrupted run with the same seed and thread
# count (weights, BN statistics, Adam state, training state, metadata).
set -u
# Passive OpenMP waiting: on a machine busier than its cores, spinning
# threads burn the time slices their peers need (5-10x slower here); the
# results do not depend on it.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"

chain_fixture 8
# 80 tiles: 58 train / 22 val (26:10) -> 15 steps of 4 per epoch, 2 epochs.
args=("${tiny_run[@]}" --width 8
      --batch 4 --val-batch 8 --epochs 2 --seed 5 --checkpoint-every 1 --learnable-temperature --quiet)

"$cli" train "${args[@]}" --out "$tmp/whole" >/dev/null 2>"$tmp/err" || fail "uninterrupted run: $(cat "$tmp/err")"

# global_step of a checkpoint, read from its JSON header ("global_step":"7").
step_of() { head -c 65536 "$1" 2>/dev/null | grep -ao '"global_step":"[0-9]*"' | grep -o '[0-9][0-9]*'; }

"$cli" train "${args[@]}" --out "$tmp/killed" >/dev/null 2>"$tmp/err" &
pid=$!
last=$tmp/killed/checkpoints/last.safetensors
killed=no
for _ in $(seq 1 6000); do   # poll for up to ~60 s
    s=$(step_of "$last")
    if [ -n "$s" ] && [ "$s" -ge 4 ]; then
        kill -KILL "$pid" 2>/dev/null && killed=yes
        break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
done
wait "$pid" 2>/dev/null
[ "$killed" = yes ] || fail "the run ended before it could be killed"
s=$(step_of "$last")
echo "killed at global step ${s:-?} (the last checkpoint)"
[ -n "$s" ] && [ "$s" -lt 15 ] || fail "the kill was not in the first epoch (last checkpoint at step ${s:-none})"

"$cli" train --resume "$tmp/killed" >/dev/null 2>"$tmp/err" || fail "resume: $(cat "$tmp/err")"
grep -q "resumed from" "$tmp/killed/log.txt" || fail "log.txt does not mention the resume"
for f in last best; do
    cmp "$tmp/whole/checkpoints/$f.safetensors" "$tmp/killed/checkpoints/$f.safetensors" ||
        fail "$f.safetensors differs between the uninterrupted and the resumed run"
done
[ "$(grep -c '^epoch,' "$tmp/killed/metrics.csv")" = 2 ] || fail "metrics.csv of the resumed run: $(cat "$tmp/killed/metrics.csv")"

# Stopped before its first checkpoint: the resume starts from the beginning,
# and the step rows the stopped run logged are not written twice.
early=("${tiny_run[@]}" --width 8 --batch 4 --val-batch 8 --epochs 1 --seed 5 --checkpoint-every 100
       --log-every 1 --quiet)
"$cli" train "${early[@]}" --out "$tmp/early-whole" >/dev/null 2>"$tmp/err" || fail "early, whole: $(cat "$tmp/err")"
"$cli" train "${early[@]}" --stop-after-steps 3 --out "$tmp/early" >/dev/null 2>"$tmp/err" ||
    fail "early, stopped: $(cat "$tmp/err")"
[ ! -e "$tmp/early/checkpoints/last.safetensors" ] || fail "early: a checkpoint before step 100"
"$cli" train --resume "$tmp/early" >"$tmp/resumed.out" 2>"$tmp/err" || fail "early, resumed: $(cat "$tmp/err")"
# The run was started with --quiet: resumed, it stays quiet (config.json keeps it).
[ ! -s "$tmp/resumed.out" ] || fail "a --quiet run printed when resumed: $(head -3 "$tmp/resumed.out")"
whole_rows=$(grep -c '^step,' "$tmp/early-whole/metrics.csv")
resumed_rows=$(grep -c '^step,' "$tmp/early/metrics.csv")
[ "$whole_rows" -gt 3 ] && [ "$resumed_rows" = "$whole_rows" ] ||
    fail "early: $resumed_rows step rows after the resume, $whole_rows in the whole run"

# --epochs raised on --resume is the run's from then on: a second, plain
# resume goes on to it instead of finding the run done.
"$cli" train --resume "$tmp/early-whole" --epochs 2 --stop-after-steps 18 >/dev/null 2>"$tmp/err" ||
    fail "more epochs, stopped: $(cat "$tmp/err")"
grep -q '"epochs": *2' "$tmp/early-whole/config.json" ||
    fail "more epochs: config.json: $(grep epochs "$tmp/early-whole/config.json")"
"$cli" train --resume "$tmp/early-whole" >/dev/null 2>"$tmp/err" || fail "more epochs, resumed: $(cat "$tmp/err")"
[ "$(grep -c '^epoch,' "$tmp/early-whole/metrics.csv")" = 2 ] ||
    fail "more epochs: $(grep -c '^epoch,' "$tmp/early-whole/metrics.csv") epoch rows, not 2"
# Fewer epochs than the checkpoint has trained: refused, config.json as it was.
expect_error "--epochs below the checkpoint's" "has trained 2 epochs already, more than this run's 1 (--epochs)" \
    "$cli" train --resume "$tmp/early-whole" --epochs 1
grep -q '"epochs": *2' "$tmp/early-whole/config.json" ||
    fail "a refused resume changed config.json: $(grep epochs "$tmp/early-whole/config.json")"

finish "resumed run is bit-identical to the uninterrupted one; a run stopped before its first checkpoint logs each step once"

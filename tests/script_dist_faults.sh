#!/usr/bin/env bash
# Faults of a 2-rank `mmchain train` job (a tiny fixture made here):
# - the whole job killed with SIGKILL in the middle of training, then
#   `mpirun -np 2 mmchain train --resume`: it continues from the last
#   checkpoint and ends bit for bit where the uninterrupted job ends;
# - ranks started with different options, or on different data folders,
#   are refused at start with a message naming the difference.
# Skipped without MPI.
set -u
. "$(dirname "$0")/support/script_dist_common.sh"
require_cli

chain_fixture 4
model=(--clip "$clip" --vocab "$vocab" --depth 18 --width 4 --layers 1,1,1,1 --val-batch 6 --seed 3 --quiet)
tiny=(--data "$data" "${model[@]}")
job=(--batch 8 --sync-bn --epochs 4 --checkpoint-every 1 --log-every 1)

timeout 600 "${mpirun[@]}" -np 2 "$cli" train "${tiny[@]}" "${job[@]}" --out "$tmp/whole" >"$tmp/out" 2>&1 ||
    fail "uninterrupted job: $(cat "$tmp/out")"

# The killed job: started in the background; once 3 steps are logged, every
# process of it (mpirun and all its descendants) gets SIGKILL at once.
descendants() {
    local pid
    for pid in $(pgrep -P "$1"); do
        echo "$pid"
        descendants "$pid"
    done
}
"${mpirun[@]}" -np 2 "$cli" train "${tiny[@]}" "${job[@]}" --out "$tmp/killed" >"$tmp/killed.out" 2>&1 &
launcher=$!
for _ in $(seq 600); do
    [ "$(grep -c '^step,' "$tmp/killed/metrics.csv" 2>/dev/null)" -ge 3 ] 2>/dev/null && break
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.1
done
# shellcheck disable=SC2046
kill -KILL "$launcher" $(descendants "$launcher") 2>/dev/null
wait "$launcher" 2>/dev/null
# Rank 0 held the run folder's lock: it is free once every rank is gone.
flock -w 60 "$tmp/killed/.lock" true || fail "the killed job's ranks still hold its run folder"
if grep -q "^\[.*\] done" "$tmp/killed/log.txt" 2>/dev/null; then
    fail "the job finished before it was killed: $(cat "$tmp/killed/log.txt")"
fi
if timeout 600 "${mpirun[@]}" -np 2 "$cli" train --resume "$tmp/killed" >"$tmp/out" 2>&1; then
    grep "resumed from" "$tmp/killed/log.txt" || fail "no resume in the log: $(cat "$tmp/killed/log.txt")"
    "$compare" "$tmp/killed/checkpoints/last.safetensors" "$tmp/whole/checkpoints/last.safetensors" 0 \
        >"$tmp/cmp" 2>&1 || fail "killed and resumed: not the uninterrupted job's checkpoint: $(cat "$tmp/cmp")"
    cmp -s "$tmp/killed/checkpoints/best.safetensors" "$tmp/whole/checkpoints/best.safetensors" ||
        fail "killed and resumed: best.safetensors differs from the uninterrupted job's"
else
    fail "resume after SIGKILL: $(cat "$tmp/out")"
fi

# Ranks that disagree (Open MPI's MPMD form: one program line per rank).
# refused WHAT PATTERN ARGS0 -- ARGS1: rank 0 runs with ARGS0, rank 1 with
# ARGS1; the job must fail with a message matching PATTERN.
refused() {
    local what=$1 pattern=$2 a=() b=()
    shift 2
    while [ "$1" != -- ]; do a+=("$1"); shift; done
    shift
    b=("$@")
    if timeout 300 "${mpirun[@]}" -np 1 "$cli" train "${model[@]}" "${a[@]}" --out "$tmp/$what" \
            : -np 1 "$cli" train "${model[@]}" "${b[@]}" --out "$tmp/$what" >"$tmp/out" 2>&1; then
        fail "$what: the ranks disagree but the job succeeded"
    fi
    grep -q -- "$pattern" "$tmp/out" || fail "$what: the message does not say it: $(cat "$tmp/out")"
}
if "$MMCHAIN_MPIEXEC" --version 2>/dev/null | grep -qiE "open-?mpi|OpenRTE"; then
    refused batch "--batch is 8 on rank 1 but 16 on rank 0" --data "$data" --batch 16 -- --data "$data" --batch 8
    read -r other _ < <("$MMCHAIN_BINARY_DIR/tests/test_chain_fixture" --write "$tmp/other" 4) ||
        fail "second fixture"
    refused data "training tile paths" --data "$data" --batch 8 -- --data "$other" --batch 8
    # The same number of bands, other bands: the weights stay equal (the
    # gradients are averaged), so only the check can tell.
    refused bands "bands, normalisation, tile size, embedding" --data "$data" --batch 8 --bands B08,B11,B12 \
        -- --data "$data" --batch 8 --bands B02,B03,B04
    refused precision "--precision is 1 on rank 1 but 0 on rank 0" --data "$data" --batch 8 \
        -- --data "$data" --batch 8 --precision bf16
    # With --sync-bn, a rank that recomputes runs its batch norms'
    # all-reduces again in backward: the collectives would not pair up.
    refused recompute "--recompute (with --sync-bn) is 0 on rank 1 but 1 on rank 0" \
        --data "$data" --batch 8 --sync-bn --recompute -- --data "$data" --batch 8 --sync-bn
else
    echo "(the disagreeing-ranks cases use Open MPI's MPMD form: not run with this launcher)"
fi

finish "a killed job resumes to the same end; disagreeing ranks are refused"

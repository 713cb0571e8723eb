#!/usr/bin/env bash
# `mpirun -np 2 mmchain train ...` against the same command in one process
# (a tiny fixture made here, a tiny ResNet): with --sync-bn the two runs end
# with the same checkpoints/last.safetensors (every tensor, optimizer state
# included, within 1e-4 of its largest value) and the same validation
# metrics in metrics.csv (validated in shards by the 2 ranks; within 1e-4
# relative), with and without augmentation, for an even and an odd global
# batch; without --sync-bn (each rank normalises its own slice) they must
# differ — the comparison can fail. Rank 0 alone writes the run folder. A
# command that runs in one process refuses 2 ranks. Skipped without MPI.
set -u
. "$(dirname "$0")/support/script_dist_common.sh"
require_cli

chain_fixture 4
tiny=("${tiny_run[@]}" --width 4 --val-batch 6 --seed 3 --epochs 2 --quiet)

# validation RUN: the validation columns of the epoch rows of RUN's
# metrics.csv (epoch, val_loss, val_match_acc, spectral_text_acc, rgb_text_acc).
validation() {
    awk -F, '$1 == "kind" { for (i = 1; i <= NF; i++) c[$i] = i }
             $1 == "epoch" { print $c["epoch"], $c["val_loss"], $c["val_match_acc"],
                             $c["spectral_text_acc"], $c["rgb_text_acc"] }' "$1/metrics.csv"
}

# same NAME: the two runs' last checkpoints and validation metrics agree.
same() {
    "$compare" "$tmp/$1-2/checkpoints/last.safetensors" "$tmp/$1-1/checkpoints/last.safetensors" 1e-4 \
        >"$tmp/cmp" 2>&1 || fail "$1: 2 ranks differ from one process: $(cat "$tmp/cmp")"
    echo "$1: $(cat "$tmp/cmp")"
    validation "$tmp/$1-1" >"$tmp/v1"
    validation "$tmp/$1-2" >"$tmp/v2"
    [ -s "$tmp/v1" ] && [ "$(wc -l <"$tmp/v1")" = "$(wc -l <"$tmp/v2")" ] ||
        { fail "$1: validation rows: $(cat "$tmp/v1") alone, $(cat "$tmp/v2") on 2 ranks"; return; }
    paste -d' ' "$tmp/v1" "$tmp/v2" | awk -v name="$1" '
        { for (i = 1; i <= 5; i++) { d = $i - $(i + 5); if (d < 0) d = -d; s = $i < 0 ? -$i : $i
              if (d > 1e-4 * s) { print name ": epoch " $1 ": " $0 " (alone, then on 2 ranks)"; bad = 1 } } }
        END { exit bad }' >"$tmp/cmp" || fail "$(cat "$tmp/cmp")"
    echo "$1: validation metrics agree: $(paste -d' ' "$tmp/v1" | tr '\n' ';')"
}

train plain --batch 16 --sync-bn --no-augment && same plain
train augment --batch 16 --sync-bn && same augment
# 13 = 7 + 6 per step; symmetric loss and a learnable temperature
train odd --batch 13 --sync-bn --no-augment --symmetric --learnable-temperature && same odd

# Resumed with another number of ranks: 2 ranks stop after 3 steps (a
# checkpoint each step), 3 ranks finish the run; it ends where one process does.
resume=(--batch 8 --sync-bn --no-augment --checkpoint-every 1)
MMCHAIN_THREADS=2 "$cli" train "${tiny[@]}" "${resume[@]}" --out "$tmp/resume-1" >"$tmp/out" 2>&1 ||
    fail "resume, one process: $(cat "$tmp/out")"
if timeout 600 "${mpirun[@]}" -np 2 "$cli" train "${tiny[@]}" "${resume[@]}" --stop-after-steps 3 \
        --out "$tmp/resume-2" >"$tmp/out" 2>&1; then
    timeout 600 "${mpirun[@]}" -np 3 "$cli" train --resume "$tmp/resume-2" >"$tmp/out" 2>&1 ||
        fail "resume on 3 ranks: $(cat "$tmp/out")"
    grep -q "resumed from .*global step 3" "$tmp/resume-2/log.txt" || fail "resume: $(cat "$tmp/resume-2/log.txt")"
    same resume
else
    fail "resume, 2 ranks stopping after 3 steps: $(cat "$tmp/out")"
fi

# Without --sync-bn each rank normalises by its half of the batch: not the
# one-process result (this is what makes the comparisons above mean something).
if train per-rank-bn --batch 16 --no-augment; then
    if "$compare" "$tmp/per-rank-bn-2/checkpoints/last.safetensors" \
            "$tmp/per-rank-bn-1/checkpoints/last.safetensors" 1e-4 >"$tmp/cmp" 2>&1; then
        fail "per-rank batch norm gave the one-process result: $(cat "$tmp/cmp")"
    fi
fi

# Without --sync-bn each rank's running statistics follow its own slice, so
# rank 0's are shared before every validation: the metrics are those of rank
# 0's model, the one its checkpoint holds. One process's eval of that
# checkpoint gives the last epoch's validation row.
run=$tmp/per-rank-bn-2
if [ -s "$run/checkpoints/last.safetensors" ]; then
    if "$cli" eval --run "$run" --which last --split val --batch 6 --json >"$tmp/eval.json" 2>"$tmp/out"; then
        field() { sed -n "s/.*\"$1\": \([^,}]*\).*/\1/p" "$tmp/eval.json"; }
        echo "$(validation "$run" | tail -n 1) $(field loss) $(field match_acc) $(field spectral_text_acc) $(field rgb_text_acc)" |
            awk '{ for (i = 2; i <= 5; i++) { d = $i - $(i + 4); if (d < 0) d = -d; s = $i < 0 ? -$i : $i
                       if (d > 1e-4 * s + 1e-6) bad = 1 } }
                 END { exit bad }' ||
            fail "per-rank batch norm: the last epoch's validation (epoch, loss, match, spectral, rgb) and one process's eval of last.safetensors differ: $(validation "$run" | tail -n 1) / $(cat "$tmp/eval.json")"
    else
        fail "eval of the per-rank-bn run: $(cat "$tmp/out")"
    fi
fi

# Rank 0 wrote the run folder: every artefact, one set of epoch rows, one log.
run=$tmp/plain-2
for f in config.json metrics.csv log.txt report.html checkpoints/last.safetensors checkpoints/best.safetensors; do
    [ -s "$run/$f" ] || fail "2 ranks: $f missing or empty"
done
[ "$(grep -c '^epoch,' "$run/metrics.csv")" = 2 ] || fail "2 ranks: metrics.csv: $(cat "$run/metrics.csv")"
grep -q '"sync-bn": *true' "$run/config.json" || fail "config.json lacks sync-bn: $(cat "$run/config.json")"

# A command that runs in one process (here eval) refuses 2 ranks: one line,
# a failure, and nothing written into the run folder.
ls -R "$run" >"$tmp/before"
if timeout 300 "${mpirun[@]}" -np 2 "$cli" eval --run "$run" >"$tmp/out" 2>&1; then
    fail "eval on 2 ranks: succeeded: $(cat "$tmp/out")"
fi
[ "$(grep -c 'mmchain eval: error: eval runs in one process; start it without mpirun (2 ranks)' "$tmp/out")" = 1 ] ||
    fail "eval on 2 ranks: $(cat "$tmp/out")"
ls -R "$run" | cmp -s - "$tmp/before" || fail "eval on 2 ranks wrote into the run folder"

# A batch that cannot give every rank a tile is refused by every rank.
if timeout 300 "${mpirun[@]}" -np 3 "$cli" train "${tiny[@]}" --batch 2 --out "$tmp/x" >"$tmp/out" 2>&1; then
    fail "batch 2 on 3 ranks: succeeded"
fi
grep -q "cannot be shared by 3 ranks" "$tmp/out" || fail "batch 2 on 3 ranks: $(cat "$tmp/out")"

# A rank that fails (here on corrupt tiles) ends the whole job with its
# message instead of leaving the other ranks waiting.
read -r bad _ < <("$MMCHAIN_BINARY_DIR/tests/test_chain_fixture" --write "$tmp/bad" 4) || fail "second fixture"
for f in "$bad"/Forest/*.tif; do head -c 300 "$f" >"$f.part" && mv "$f.part" "$f"; done
if timeout 300 "${mpirun[@]}" -np 2 "$cli" train "${tiny[@]}" --data "$bad" --batch 8 --no-augment \
        --out "$tmp/bad-run" >"$tmp/out" 2>&1; then
    fail "corrupt tiles: succeeded"
fi
grep -q "Forest_[0-9]*.tif" "$tmp/out" || fail "corrupt tiles: the message does not name the tile: $(cat "$tmp/out")"

finish "2 ranks end where one process ends"

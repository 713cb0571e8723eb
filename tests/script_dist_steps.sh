#!/usr/bin/env bash
# Step by step, 2 ranks against one process (a tiny fixture made here, a
# tiny ResNet):
# - 20 steps at global batch 32 (16 + 16) and 33 (17 + 16) with --sync-bn:
#   the same loss at every step (metrics.csv, within 1e-5 relative) and the
#   same checkpoint after step 20 (every tensor within 1e-5 of its largest
#   value, Adam's moments included);
# - without --sync-bn (each rank normalises its own half of the batch): not
#   the same numbers, but the same training — after 4 epochs the validation
#   loss below chance and within 5 % of the one-process run's, the matching
#   accuracy within 0.2 of it;
# - the CLIP target caches (plain and K crops per tile) and a teacher's
#   (train --teacher), embedded in shards by the 2 ranks: the one-process
#   files byte for byte.
# Skipped without MPI.
set -u
. "$(dirname "$0")/support/script_dist_common.sh"
require_cli

chain_fixture 8
tiny=("${tiny_run[@]}" --width 4 --val-batch 8 --clip-batch 8 --seed 5 --quiet --log-every 1)

# losses RUN: the step and loss of each step row of metrics.csv, one per line.
losses() { awk -F, '$1 == "step" { print $3, $4 }' "$1/metrics.csv"; }

# same_steps NAME: 20 step rows each, the same losses within 1e-5 relative,
# the same checkpoint within 1e-5.
same_steps() {
    local name=$1
    losses "$tmp/$name-1" >"$tmp/l1"
    losses "$tmp/$name-2" >"$tmp/l2"
    [ "$(wc -l <"$tmp/l1")" = 20 ] || { fail "$name: $(wc -l <"$tmp/l1") step rows, expected 20"; return; }
    paste -d' ' "$tmp/l1" "$tmp/l2" | awk -v name="$name" '
        $1 != $3 { print name ": step rows out of order: " $0; bad = 1 }
        { d = $2 - $4; if (d < 0) d = -d; s = $2 < 0 ? -$2 : $2
          if (d > 1e-5 * s) { print name ": step " $1 ": loss " $4 " on 2 ranks, " $2 " alone"; bad = 1 } }
        END { exit bad }' >"$tmp/cmp" || fail "$(cat "$tmp/cmp")"
    "$compare" "$tmp/$name-2/checkpoints/last.safetensors" "$tmp/$name-1/checkpoints/last.safetensors" 1e-5 \
        >"$tmp/cmp" 2>&1 || fail "$name: 2 ranks differ from one process after 20 steps: $(cat "$tmp/cmp")"
    echo "$name: 20 losses agree; checkpoint: $(cat "$tmp/cmp")"
}

steps=(--no-augment --sync-bn --epochs 100 --stop-after-steps 20 --checkpoint-every 20 --val-every 1000)
train b32 --batch 32 "${steps[@]}" && same_steps b32
train b33 --batch 33 "${steps[@]}" && same_steps b33

# Per-rank batch norm: it trains as well. On 23 validation tiles the
# matching accuracy moves in steps of 1/23, so the loss says more: chance is
# ln(23) (every tile equally likely to be any other's match).
# last_epoch RUN COLUMN: COLUMN of the last epoch row of RUN's metrics.csv.
last_epoch() {
    awk -F, -v want="$2" '$1 == "kind" { for (i = 1; i <= NF; i++) if ($i == want) c = i }
                          $1 == "epoch" { v = $c } END { print v }' "$1/metrics.csv"
}
if train per-rank --no-augment --batch 16 --epochs 4 --val-every 4; then
    loss1=$(last_epoch "$tmp/per-rank-1" val_loss) loss2=$(last_epoch "$tmp/per-rank-2" val_loss)
    acc1=$(last_epoch "$tmp/per-rank-1" val_match_acc) acc2=$(last_epoch "$tmp/per-rank-2" val_match_acc)
    val_tiles=$(sed -n 's/.*CLIP targets: \([0-9]*\) validation tiles.*/\1/p' "$tmp/per-rank-1/log.txt" | head -1)
    result="validation loss $loss2 on 2 ranks, $loss1 alone (chance ln $val_tiles); matching accuracy $acc2 and $acc1"
    echo "per-rank batch norm: $result"
    awk -v l1="$loss1" -v l2="$loss2" -v a1="$acc1" -v a2="$acc2" -v n="$val_tiles" 'BEGIN {
        chance = log(n); dl = l1 - l2; if (dl < 0) dl = -dl; da = a1 - a2; if (da < 0) da = -da
        exit !(n > 1 && l1 < chance && l2 < chance && dl <= 0.05 * l1 && da <= 0.2) }' ||
        fail "per-rank batch norm does not train as one process does: $result"
fi

# The CLIP targets, embedded by 2 ranks in shards of batches of 8 tiles
# (--clip-batch: 23 validation tiles make 3 batches, 57 training tiles 8)
# and gathered: the cache
# files (validation and training tiles above, K crops per tile and a
# teacher's targets here) are the one-process run's byte for byte.
# same_cache NAME COUNT [TOWER]: TOWER clip (default) or teacher.
same_cache() {
    local files=0 f
    for f in "$tmp/$1-1/cache"/"${3:-clip}"-targets-*.safetensors; do
        [ -f "$f" ] || continue
        files=$((files + 1))
        cmp -s "$f" "$tmp/$1-2/cache/${f##*/}" || fail "$1: ${f##*/} differs between 2 ranks and one process"
    done
    [ "$files" -ge "$2" ] || fail "$1: $files cache file(s), expected $2"
    echo "$1: $files ${3:-clip} target cache file(s) identical"
}
same_cache b32 2
train crops --batch 16 --epochs 1 --target-crops 2 --stop-after-steps 1 && same_cache crops 2
# The per-rank run above (one process) as the teacher of a student on other
# bands: the teacher's targets of the validation and training tiles, and
# CLIP's of the teacher's validation tiles (its hop, for the report).
if train teacher --no-augment --batch 16 --epochs 1 --stop-after-steps 1 --bands B05,B06,B07 \
    --teacher "$tmp/per-rank-1"; then
    same_cache teacher 2 teacher
    same_cache teacher 1 clip
fi

finish "2 ranks take the one-process steps (--sync-bn) and train as well without it"

#!/usr/bin/env bash
# `mmchain classify` on the real EuroSAT-MS sample tiles in ../shared/data
# (skipped, exit 77, when absent), with an encoder trained here for one epoch
# on the synthetic world against a tiny random CLIP: it must run on real
# files and give a well-formed answer for every tile, not be accurate.
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
sample=${MMCHAIN_SHARED_DATA:-../shared/data}/eurosat-ms-sample
if [ ! -d "$sample" ]; then
    echo "SKIPPED: no EuroSAT-MS sample in $sample"
    exit 77
fi
. "$(dirname "$0")/support/script_common.sh"

chain_fixture 3
"$cli" train "${tiny_run[@]}" --width 4 \
    --batch 8 --val-batch 8 --epochs 1 --bands B08,B11,B12,B8A --quiet --out "$tmp/run" \
    >/dev/null 2>"$tmp/err" || fail "train: $(cat "$tmp/err")"
tiles=("$sample"/*/*.tif)
"$cli" classify --checkpoint "$tmp/run/checkpoints/best.safetensors" --clip "$clip" --vocab "$vocab" \
    --json --top 3 "${tiles[@]}" >"$tmp/out" 2>"$tmp/err" || fail "classify: $(cat "$tmp/err")"
n=$(grep -c '"file"' "$tmp/out")
[ "$n" = "${#tiles[@]}" ] || fail "classify: $n answers for ${#tiles[@]} tiles"
# every answer: three classes with scores in [0, 1]
bad=$(grep -o '"score": [^}]*' "$tmp/out" | awk '{ if ($2 < 0 || $2 > 1) print }' | head -1)
[ -z "$bad" ] || fail "a score outside [0, 1]: $bad"
[ "$(grep -o '"score"' "$tmp/out" | wc -l)" = $((3 * ${#tiles[@]})) ] || fail "not 3 scores per tile"
"$cli" classify --checkpoint "$tmp/run/checkpoints/best.safetensors" --clip "$clip" --vocab "$vocab" \
    "${tiles[0]}" >"$tmp/out" 2>"$tmp/err" || fail "classify (text): $(cat "$tmp/err")"
grep -q " %  " "$tmp/out" || fail "classify text output: $(cat "$tmp/out")"

finish "classified ${#tiles[@]} real tiles"

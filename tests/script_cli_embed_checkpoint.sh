#!/usr/bin/env bash
# `mmchain embed --checkpoint`: a training checkpoint's spectral embeddings of
# tile files are the vectors `mmchain eval` computes its metrics from (eval
# --embeddings writes those, with the tiles in the split's order; embed of
# the same tiles in the same batches must give the same bytes). Bad input:
# one clear line and a non-zero exit.
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"

chain_fixture 4
run=$tmp/run
"$cli" train "${tiny_run[@]}" --width 4 \
    --batch 8 --val-batch 6 --seed 3 --epochs 2 --quiet --out "$run" >/dev/null 2>"$tmp/err" ||
    { echo "train failed: $(cat "$tmp/err")"; exit 1; }
best=$run/checkpoints/best.safetensors

"$cli" eval --run "$run" --split val --embeddings "$tmp/eval.safetensors" >/dev/null 2>"$tmp/err" ||
    fail "eval --embeddings: $(cat "$tmp/err")"
# The tiles in eval's order, from its metadata (paths one per line: \n in JSON).
mapfile -t tiles < <(safetensors_header "$tmp/eval.safetensors" | grep -o '"tiles":"[^"]*"' | cut -d'"' -f4 |
                     sed 's/\\n/\n/g')
[ "${#tiles[@]}" -ge 2 ] || fail "eval --embeddings: tiles metadata: $(safetensors_header "$tmp/eval.safetensors")"
"$cli" embed --checkpoint "$best" --batch 6 --output "$tmp/embed.safetensors" "${tiles[@]}" \
    >/dev/null 2>"$tmp/err" || fail "embed --checkpoint: $(cat "$tmp/err")"
[ "$(safetensors_data "$tmp/eval.safetensors" | wc -c)" -gt 0 ] || fail "eval --embeddings wrote no tensor data"
cmp -s <(safetensors_data "$tmp/eval.safetensors") <(safetensors_data "$tmp/embed.safetensors") ||
    fail "embed --checkpoint and eval give different vectors for the same tiles"
safetensors_header "$tmp/embed.safetensors" | grep -q '"output":{"dtype":"F32","shape":\['"${#tiles[@]}"',' ||
    fail "embed output header: $(safetensors_header "$tmp/embed.safetensors")"
# One tile alone (another batch) gives the same vector up to rounding: check
# only that it runs and writes one row.
"$cli" embed --checkpoint "$best" --output "$tmp/one.safetensors" "${tiles[0]}" >/dev/null 2>"$tmp/err" ||
    fail "embed --checkpoint one tile: $(cat "$tmp/err")"
safetensors_header "$tmp/one.safetensors" | grep -q '"shape":\[1,' || fail "one tile: $(safetensors_header "$tmp/one.safetensors")"

# ---- bad input ----
expect_error "no tiles" "no tile given" "$cli" embed --checkpoint "$best" --output "$tmp/x.safetensors"
expect_error "not a training checkpoint" "not a spectral-encoder checkpoint" \
    "$cli" embed --checkpoint "$clip" --output "$tmp/x.safetensors" "${tiles[0]}"
expect_error "a tower option" "--model does not apply to --checkpoint" \
    "$cli" embed --checkpoint "$best" --model resnet18 --output "$tmp/x.safetensors" "${tiles[0]}"
expect_error "a missing tile" "$tmp/none.tif" \
    "$cli" embed --checkpoint "$best" --output "$tmp/x.safetensors" "$tmp/none.tif"
expect_error "tiles without --checkpoint" "tile files go with --checkpoint" \
    "$cli" embed --model resnet18 --input "$tmp/x" --output "$tmp/x.safetensors" "${tiles[0]}"
[ ! -e "$tmp/x.safetensors" ] || fail "a failed embed left $tmp/x.safetensors"
finish "embed --checkpoint gives eval's vectors"

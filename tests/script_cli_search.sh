#!/usr/bin/env bash
# Text -> tile search on the synthetic world: a CLIP of our own (the tiny
# demo), an encoder trained against it on the world written in EuroSAT-MS's
# layout, then `mmchain search` with a caption of one class must put tiles
# of that class first. The index of embeddings is cached in the run folder
# and made again when the checkpoint changes. Bad input: one clear line.
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"

"$cli" demo --tiny --no-control --quiet --out "$tmp/demo" >/dev/null 2>"$tmp/err" || { echo "demo failed: $(cat "$tmp/err")"; exit 1; }
# Without a control its row says "-" (not measured), as the report's other tables do.
! grep -q "nan %" "$tmp/demo/report.html" || fail "report.html of a demo without a control prints NaN"
"$cli" synth --out "$tmp/world" --per-class 20 --no-png >/dev/null 2>"$tmp/err" || { echo "synth failed: $(cat "$tmp/err")"; exit 1; }
"$cli" train --data "$tmp/world" --clip "$tmp/demo/clip/model.safetensors" --vocab "$tmp/demo/clip/merges.txt" \
    --depth 18 --width 8 --layers 1,1,1,1 --epochs 6 --batch 50 --lr 1e-3 --temperature 0.25 --quiet \
    --out "$tmp/run" >/dev/null 2>"$tmp/err" || { echo "train failed: $(cat "$tmp/err")"; exit 1; }

# Captions as the demo's CLIP learned them (lib/chain/captions.c: a template,
# CLIP's EuroSAT name of the class, a scene attribute) for the two classes
# the tiny chain tells best. Measured: the top 5 of 200 tiles were 5 forest
# and 4 industrial tiles, each led by one of its class. Chance: 0.5 of 5.
for pair in "Forest:an aerial view of forest, with lush green vegetation" \
            "Industrial:a satellite photo of industrial buildings"; do
    folder=${pair%%:*} caption=${pair#*:}
    "$cli" search --run "$tmp/run" --text "$caption" --top 5 >"$tmp/out" 2>"$tmp/err" ||
        fail "search '$caption': $(cat "$tmp/err")"
    hits=$(grep -c "/$folder/" "$tmp/out")
    [ "$hits" -ge 3 ] || fail "search '$caption': $hits of the top 5 are $folder tiles: $(cat "$tmp/out")"
    sed -n 2p "$tmp/out" | grep -q "/$folder/" || fail "search '$caption': the first result is not a $folder tile: $(cat "$tmp/out")"
done
[ -s "$tmp/run/search.png" ] || fail "no contact sheet"
grep -q "from the cache" "$tmp/out" || fail "the second search did not use the cached index: $(head -1 "$tmp/out")"
[ -s "$tmp/run/search-index.safetensors" ] || fail "no index in the run folder"
# Another checkpoint: the index is made again.
"$cli" search --run "$tmp/run" --which last --text "forest" --top 3 >"$tmp/out" 2>"$tmp/err" || fail "search --which last: $(cat "$tmp/err")"
grep -q "made now" "$tmp/out" || fail "a different checkpoint reused the index: $(head -1 "$tmp/out")"

# ---- bad input ----
expect_error "an empty query" "the query is empty" "$cli" search --run "$tmp/run" --text "  "
expect_error "no query" "the query is empty" "$cli" search --run "$tmp/run"
expect_error "no run" "--run" "$cli" search --run "$tmp/none" --text "forest"
finish "text -> tile search finds the queried class"

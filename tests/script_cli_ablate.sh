#!/usr/bin/env bash
# `mmchain ablate`: the same encoder and schedule on two band sets of the
# synthetic world (tiny sizes, one seed) writes one table — markdown on
# stdout, ablation.csv, report.html — with a row per set. Bad input: an
# unknown band or an empty set is one clear line, before anything runs.
# With --data, the same on a EuroSAT-MS layout folder (the test fixture:
# synthetic tiles, a random tiny CLIP — the plumbing, not the accuracy).
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"

"$cli" ablate --tiny --sets "B04,B03,B02;B05,B06,B07" --seeds 1 --epochs 3 --quiet --out "$tmp/ab" \
    >"$tmp/out" 2>"$tmp/err" || fail "ablate: $(cat "$tmp/err")"
grep -q '^| bands | spectral->text | matching | control | RGB->text | AnnualCrop |' "$tmp/out" ||
    fail "no markdown table header: $(cat "$tmp/out")"
for set in B04,B03,B02 B05,B06,B07; do
    grep -q "^| $set | [0-9.]* ± 0.0 | " "$tmp/out" || fail "no table row for $set: $(cat "$tmp/out")"
    grep -q "^\"$set\",1," "$tmp/ab/ablation.csv" || fail "no CSV row for $set: $(cat "$tmp/ab/ablation.csv")"
    grep -qF ">$set<" "$tmp/ab/report.html" || fail "report.html does not name $set"
done
[ "$(wc -l <"$tmp/ab/ablation.csv")" = 3 ] || fail "ablation.csv: expected a header and 2 rows: $(cat "$tmp/ab/ablation.csv")"
head -1 "$tmp/ab/ablation.csv" | grep -q "^bands,seeds,spectral_text_acc,spectral_text_sd,match_acc,match_sd,control_text_acc" ||
    fail "ablation.csv header: $(head -1 "$tmp/ab/ablation.csv")"
# Both sets saw the same CLIP on the same tiles: one RGB->text column value.
rgb=$(cut -d, -f9 "$tmp/ab/ablation.csv" | tail -2 | sort -u | wc -l)
[ "$rgb" = 1 ] || fail "the sets were scored against different CLIPs or tiles: $(cat "$tmp/ab/ablation.csv")"

# ---- --data: EuroSAT-MS layout, two seeds ----
chain_fixture 4
"$cli" ablate "${tiny_run[@]}" --width 4 \
    --train-size 20 --val-size 10 --batch 8 --epochs 1 --sets "B04,B03,B02;B05,B06,B07" --seeds 1,2 --quiet \
    --out "$tmp/real" >"$tmp/out" 2>"$tmp/err" || fail "ablate --data: $(cat "$tmp/err")"
for set in B04,B03,B02 B05,B06,B07; do
    grep -q "^\"$set\",2," "$tmp/real/ablation.csv" || fail "ablate --data: no CSV row for $set over 2 seeds"
done
grep -q "^| B05,B06,B07 | " "$tmp/out" || fail "ablate --data: no table row: $(cat "$tmp/out")"

# ---- bad input ----
expect_error "an unknown band" 'unknown band "B99"' "$cli" ablate --sets "B04,B03,B02;B99" --out "$tmp/x"
expect_error "an empty set" "is empty" "$cli" ablate --sets "B04,B03,B02;" --out "$tmp/x"
expect_error "a bad seed" "'x' is not a seed" "$cli" ablate --seeds 1,x --out "$tmp/x"
expect_error "an encoder option without --data" "--depth goes with --data" "$cli" ablate --tiny --depth 18 --out "$tmp/x"
expect_error "--tiny with --data" "cannot go with --data" "$cli" ablate "${tiny_run[@]}" --tiny --out "$tmp/x"
expect_error "--data with an unknown depth" "--depth" "$cli" ablate "${tiny_run[@]}" --depth 19 --out "$tmp/x"
[ ! -e "$tmp/x" ] || fail "a refused ablation left $tmp/x"
# A second ablation into a folder that holds one is refused (its table
# stays) unless --overwrite.
cp "$tmp/ab/ablation.csv" "$tmp/ab.kept"
expect_error "a second ablation into the same folder" "pass --overwrite" \
    "$cli" ablate --tiny --sets "B04,B03,B02" --seeds 1 --epochs 1 --quiet --out "$tmp/ab"
cmp -s "$tmp/ab/ablation.csv" "$tmp/ab.kept" || fail "a refused ablation changed ablation.csv"
"$cli" ablate --tiny --sets "B04,B03,B02" --seeds 1 --epochs 1 --quiet --out "$tmp/ab" --overwrite \
    >/dev/null 2>"$tmp/err" || fail "ablate --overwrite: $(cat "$tmp/err")"
[ "$(wc -l <"$tmp/ab/ablation.csv")" = 2 ] || fail "ablate --overwrite: expected one row: $(cat "$tmp/ab/ablation.csv")"
finish "ablate writes its table for two band sets"

#!/usr/bin/env bash
# `mmchain train`, `eval` and `classify` end to end on a tiny fixture made
# here (test_chain_fixture --write: synthetic-world tiles, a random tiny CLIP,
# a vocabulary): a run that writes every artefact, eval and classify on it,
# and every kind of bad input (one clear line on stderr, non-zero exit).
set -u
# Passive OpenMP waiting: on a machine busier than its cores, spinning
# threads burn the time slices their peers need (5-10x slower here); the
# results do not depend on it.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"

chain_fixture 4
tiny=("${tiny_run[@]}" --width 4 --batch 8 --val-batch 6 --seed 3 --quiet)

# ---- a run that completes and writes every artefact ----
run=$tmp/run
if ! "$cli" train "${tiny[@]}" --epochs 2 --out "$run" >"$tmp/out" 2>"$tmp/err"; then
    fail "train: $(cat "$tmp/err")"
fi
for f in config.json metrics.csv log.txt report.html contact_sheet.png \
         checkpoints/last.safetensors checkpoints/best.safetensors; do
    [ -s "$run/$f" ] || fail "train: $f missing or empty"
done
epochs=$(grep -c '^epoch,' "$run/metrics.csv" 2>/dev/null)
[ "$epochs" = 2 ] || fail "metrics.csv: $epochs epoch rows, expected 2"
grep -q '"epochs": *2' "$run/config.json" || fail "config.json lacks epochs 2: $(cat "$run/config.json")"
grep -q 'confusion\|Confusion' "$run/report.html" || fail "report.html has no confusion matrix"

# ---- eval on the run ----
if ! "$cli" eval --run "$run" >"$tmp/out" 2>"$tmp/err"; then
    fail "eval --run: $(cat "$tmp/err")"
fi
grep -q "spectral -> text top-1" "$tmp/out" || fail "eval output: $(cat "$tmp/out")"
"$cli" eval --run "$run" --json >"$tmp/out" 2>"$tmp/err" || fail "eval --json: $(cat "$tmp/err")"
grep -q '"spectral_text_acc"' "$tmp/out" || fail "eval --json output: $(cat "$tmp/out")"

# ---- classify ----
tiles=("$data"/Forest/Forest_1.tif "$data"/River/River_2.tif)
if ! "$cli" classify --checkpoint "$run/checkpoints/best.safetensors" --clip "$clip" --vocab "$vocab" \
        --top 2 --json "${tiles[@]}" >"$tmp/out" 2>"$tmp/err"; then
    fail "classify: $(cat "$tmp/err")"
fi
[ "$(grep -c '"file"' "$tmp/out")" = 2 ] || fail "classify --json: $(cat "$tmp/out")"
"$cli" classify --checkpoint "$run/checkpoints/best.safetensors" --clip "$clip" --vocab "$vocab" \
    --classes "forest,river,snow" --templates "a photo of {}." --top 1 "${tiles[0]}" >"$tmp/out" 2>"$tmp/err" ||
    fail "classify --classes: $(cat "$tmp/err")"
grep -Eq "forest|river|snow" "$tmp/out" || fail "classify --classes output: $(cat "$tmp/out")"

# ---- bad input: one line on stderr, non-zero exit, the message names the problem ----
# (expect_error "what" "text in the message" command args...: support/script_common.sh)
base=("${tiny[@]}" --epochs 1)
expect_error "missing --data" "--data" "$cli" train --clip "$clip" --vocab "$vocab" --out "$tmp/x"
expect_error "missing CLIP file" "--clip" "$cli" train "${base[@]}" --clip "$tmp/none.safetensors" --out "$tmp/x"
expect_error "CLIP that is a tile" "--clip" "$cli" train "${base[@]}" --clip "${tiles[0]}" --out "$tmp/x"
expect_error "wrong ResNet weights" "--resnet" "$cli" train "${base[@]}" --resnet "$clip" --out "$tmp/x"
expect_error "missing vocabulary" "--vocab" "$cli" train "${base[@]}" --vocab "$tmp/none.txt" --out "$tmp/x"
expect_error "dataset without the bands" "band B08" "$cli" train "${base[@]}" --data "$data3" --out "$tmp/x"
expect_error "unknown flag" "unknown option '--bogus'" "$cli" train "${base[@]}" --bogus --out "$tmp/x"
expect_error "bad number" "--epochs must be a whole number from 1 to 100000, not '0'" "$cli" train "${base[@]}" --epochs 0 --out "$tmp/x"
expect_error "bad band" "B99" "$cli" train "${base[@]}" --bands B08,B99 --out "$tmp/x"
expect_error "bad normalisation" "--norm" "$cli" train "${base[@]}" --norm fancy --out "$tmp/x"
expect_error "wrong class count" "--classes has 2 names" "$cli" train "${base[@]}" --classes a,b --out "$tmp/x"
touch "$tmp/a-file"
expect_error "unwritable run folder" "--out $tmp/a-file/run" "$cli" train "${base[@]}" --out "$tmp/a-file/run"
expect_error "changed flag on resume" "--depth cannot change" "$cli" train --resume "$run" --depth 34
expect_error "resume of a missing run" "--resume" "$cli" train --resume "$tmp/no-run"
# a checkpoint from another architecture: a width-8 run given a width-4 checkpoint
"$cli" train "${base[@]}" --width 8 --stop-after-steps 1 --checkpoint-every 1 --out "$tmp/run8" \
    >/dev/null 2>"$tmp/err" || fail "width-8 run: $(cat "$tmp/err")"
cp "$run/checkpoints/last.safetensors" "$tmp/run8/checkpoints/last.safetensors"
expect_error "checkpoint of another architecture" "holds a resnet(basic, 1-1-1-1, width 4) encoder" \
    "$cli" train --resume "$tmp/run8"
expect_error "eval of a non-checkpoint" "not a spectral-encoder checkpoint" \
    "$cli" eval --checkpoint "$clip" --data "$data" --clip "$clip" --vocab "$vocab"
expect_error "classify of a non-checkpoint" "not a spectral-encoder checkpoint" \
    "$cli" classify --checkpoint "$clip" --clip "$clip" --vocab "$vocab" "${tiles[0]}"
expect_error "classify without tiles" "no tile" \
    "$cli" classify --checkpoint "$run/checkpoints/best.safetensors" --clip "$clip" --vocab "$vocab"
expect_error "classify of a missing tile" "$tmp/none.tif" \
    "$cli" classify --checkpoint "$run/checkpoints/best.safetensors" --clip "$clip" --vocab "$vocab" "$tmp/none.tif"
expect_error "eval split" "--split 'nope'" "$cli" eval --run "$run" --split nope
expect_error "a seed after a blank" "--seed must be a whole number >= 0, not ' -1'" \
    "$cli" train "${base[@]}" --seed " -1" --out "$tmp/x"
# A value longer than config.json keeps is refused before the run starts
# (kept cut short, a resumed run would use other prompts).
long_templates=$(printf 'a satellite photo of {}|%.0s' $(seq 1 200))
expect_error "templates too long to keep" "--templates is too long to keep in the run's config.json" \
    "$cli" train "${base[@]}" --templates "${long_templates%|}" --out "$tmp/x"
# The largest seed survives config.json (as a string: a JSON number that
# large reads back rounded): the run resumes, and eval takes its seed.
"$cli" train "${base[@]}" --seed 18446744073709551615 --stop-after-steps 1 --checkpoint-every 1 \
    --out "$tmp/big-seed" >/dev/null 2>"$tmp/err" || fail "largest seed: $(cat "$tmp/err")"
grep -q '"seed": *"18446744073709551615"' "$tmp/big-seed/config.json" ||
    fail "largest seed: config.json: $(grep seed "$tmp/big-seed/config.json")"
"$cli" train --resume "$tmp/big-seed" --stop-after-steps 2 >/dev/null 2>"$tmp/err" ||
    fail "largest seed, resumed: $(cat "$tmp/err")"
"$cli" eval --run "$tmp/big-seed" --which last --json >"$tmp/out" 2>"$tmp/err" ||
    fail "largest seed, eval: $(cat "$tmp/err")"
# A run whose config.json holds a seed eval cannot read is an error, not
# an evaluation with another seed (another split).
sed 's/"seed": *"18446744073709551615"/"seed": "x"/' "$tmp/big-seed/config.json" >"$tmp/config" &&
    mv "$tmp/config" "$tmp/big-seed/config.json"
expect_error "a run's unreadable seed" "--seed must be a whole number >= 0, not 'x'" \
    "$cli" eval --run "$tmp/big-seed" --which last

finish "all train/eval/classify CLI checks passed"

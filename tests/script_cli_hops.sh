#!/usr/bin/env bash
# Multi-hop chaining. `mmchain demo --hops 2` trains a student on the red
# edge against the trained infrared encoder (never against CLIP, never on
# RGB): its zero-shot accuracy through two hops must be well above chance,
# and the same student on shuffled pairs at the second hop must not be.
# `mmchain train --teacher` does the same on a EuroSAT-MS layout folder, and
# `mmchain eval` of the student reports every hop. Bad input: one clear line.
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"

# ---- two hops on the synthetic world (chance: 10 %) ----
"$cli" demo --tiny --hops 2 --quiet --out "$tmp/demo" >"$tmp/demo.out" 2>"$tmp/err" ||
    fail "demo --hops 2: $(cat "$tmp/err")"
hop2=$(awk '/^  second hop /{print $3}' "$tmp/demo.out")
control=$(awk '/^  second control /{print $3}' "$tmp/demo.out")
# Measured with the tiny sizes, seed 1: second hop 37.5 %, its control 4.0 %.
awk -v h="$hop2" 'BEGIN { exit !(h + 0 >= 25) }' || fail "second hop '$hop2' %% is not above chance: $(cat "$tmp/demo.out")"
awk -v c="$control" 'BEGIN { exit !(c != "" && c + 0 <= 20) }' || fail "second control '$control' %% is above chance"
grep -q "<h2>The chain</h2>" "$tmp/demo/report.html" || fail "demo report has no chain diagram"
grep -q "test_hop2_text_acc" "$tmp/demo/metrics.csv" || fail "demo metrics.csv lacks the second hop"

# ---- train --teacher and eval of every hop (a random tiny CLIP: plumbing only) ----
chain_fixture 4
tiny=("${tiny_run[@]}" --width 4
      --train-size 20 --val-size 10 --batch 8 --val-batch 6 --seed 3 --lr 3e-3 --epochs 2 --quiet)
"$cli" train "${tiny[@]}" --out "$tmp/hop1" >/dev/null 2>"$tmp/err" || fail "train hop 1: $(cat "$tmp/err")"
"$cli" train "${tiny[@]}" --bands B05,B06,B07 --teacher "$tmp/hop1" --out "$tmp/hop2" >/dev/null 2>"$tmp/err" ||
    fail "train --teacher: $(cat "$tmp/err")"
grep -q "teacher targets: 10 validation tiles" "$tmp/hop2/log.txt" || fail "the student's targets are not the teacher's"
grep -q "<h2>The chain</h2>" "$tmp/hop2/report.html" || fail "train --teacher: report has no chain diagram"
"$cli" eval --run "$tmp/hop2" >"$tmp/out" 2>"$tmp/err" || fail "eval of the student: $(cat "$tmp/err")"
for line in "hop 2: student -> teacher matching" "hop 1: teacher -> CLIP image matching" \
            "student -> text" "teacher -> text" "RGB -> text (CLIP)"; do
    grep -qF "$line" "$tmp/out" || fail "eval of the student lacks '$line': $(head -20 "$tmp/out")"
done
"$cli" eval --run "$tmp/hop2" --json >"$tmp/out" 2>"$tmp/err" || fail "eval --json: $(cat "$tmp/err")"
grep -q '"hops": {"student_text_acc": ' "$tmp/out" || fail "eval --json lacks the hops: $(cat "$tmp/out")"
# The teacher given as a checkpoint file trains the same student.
"$cli" train "${tiny[@]}" --bands B05,B06,B07 --teacher "$tmp/hop1/checkpoints/best.safetensors" \
    --out "$tmp/hop2b" >/dev/null 2>"$tmp/err" || fail "train --teacher FILE: $(cat "$tmp/err")"
cmp -s <(safetensors_data "$tmp/hop2/checkpoints/last.safetensors") \
       <(safetensors_data "$tmp/hop2b/checkpoints/last.safetensors") ||
    fail "--teacher RUN_DIR and --teacher RUN_DIR/checkpoints/best.safetensors train different students"

# ---- bad input ----
expect_error "a teacher of another width" "embeds into 32 values, the CLIP's joint space has 16" \
    "$cli" train "${tiny[@]}" --teacher "$tmp/demo/checkpoints/best.safetensors" --out "$tmp/x"
expect_error "a teacher that is no checkpoint" "--teacher $vocab" \
    "$cli" train "${tiny[@]}" --teacher "$vocab" --out "$tmp/x"
mkdir -p "$tmp/empty"
expect_error "a folder that is no run" "not a run folder of mmchain train" \
    "$cli" train "${tiny[@]}" --teacher "$tmp/empty" --out "$tmp/x"
expect_error "a missing teacher" "no such run folder or checkpoint" \
    "$cli" train "${tiny[@]}" --teacher "$tmp/none" --out "$tmp/x"
[ ! -e "$tmp/x" ] || fail "a refused run left $tmp/x"
finish "two hops above chance (${hop2} %), their control not (${control} %)"

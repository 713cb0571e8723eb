#!/usr/bin/env bash
# --precision fp32|bf16 on every command that runs a model (train,
# pretrain-clip, embed, eval, classify, demo), at tiny sizes: each runs in
# bf16, a run folder's config.json records the precision, a resumed bf16
# run stays bf16 (its checkpoints are those of an uninterrupted bf16 run,
# which differ from an fp32 run's), changing it on --resume is refused, and
# a value other than fp32 or bf16 is one line on stderr and exit status 1.
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"

chain_fixture 4
# 40 tiles: 29 train / 11 val -> 4 steps of 8 per epoch.
tiny=("${tiny_run[@]}" --width 4 --batch 8 --val-batch 6 --seed 3 --epochs 2 --checkpoint-every 1 --quiet)
tiles=("$data"/Forest/Forest_1.tif "$data"/River/River_2.tif)

# bf16 products fall back to fp32 under MMCHAIN_GEMM=openblas or without
# AVX-512F (the program says so): then bf16 and fp32 results are equal.
bf16_runs=yes
[ "${MMCHAIN_GEMM:-auto}" = openblas ] && bf16_runs=no
grep -qw avx512f /proc/cpuinfo 2>/dev/null || bf16_runs=no

config_precision() { grep -o '"precision": *"[a-z0-9]*"' "$1/config.json" | grep -o '[a-z0-9]*"$' | tr -d '"'; }

# ---- train: config.json, resume keeps bf16 ----
"$cli" train "${tiny[@]}" --precision bf16 --out "$tmp/whole" >/dev/null 2>"$tmp/err" ||
    fail "train --precision bf16: $(cat "$tmp/err")"
[ "$(config_precision "$tmp/whole")" = bf16 ] || fail "config.json: $(cat "$tmp/whole/config.json")"
grep -q "precision bf16" "$tmp/whole/log.txt" || fail "log.txt does not state the precision"
"$cli" train "${tiny[@]}" --out "$tmp/fp32" >/dev/null 2>"$tmp/err" || fail "train (fp32): $(cat "$tmp/err")"
[ "$(config_precision "$tmp/fp32")" = fp32 ] || fail "fp32 config.json: $(cat "$tmp/fp32/config.json")"
if [ "$bf16_runs" = yes ]; then
    ! cmp -s "$tmp/whole/checkpoints/last.safetensors" "$tmp/fp32/checkpoints/last.safetensors" ||
        fail "bf16 and fp32 training wrote the same checkpoint"
fi

"$cli" train "${tiny[@]}" --precision bf16 --stop-after-steps 3 --out "$tmp/resumed" >/dev/null 2>"$tmp/err" ||
    fail "train --stop-after-steps: $(cat "$tmp/err")"
expect_error "--precision changed on --resume" "--precision cannot change when resuming" \
    "$cli" train --resume "$tmp/resumed" --precision fp32
"$cli" train --resume "$tmp/resumed" >/dev/null 2>"$tmp/err" || fail "resume: $(cat "$tmp/err")"
[ "$(grep -c "precision bf16" "$tmp/resumed/log.txt")" = 2 ] || fail "the resumed run's log: $(cat "$tmp/resumed/log.txt")"
for f in last best; do
    cmp -s "$tmp/whole/checkpoints/$f.safetensors" "$tmp/resumed/checkpoints/$f.safetensors" ||
        fail "$f.safetensors of the resumed bf16 run differs from the uninterrupted bf16 run's"
done

# ---- eval, classify, embed on the bf16 run ----
best=$tmp/whole/checkpoints/best.safetensors
"$cli" eval --run "$tmp/whole" --split val --json >"$tmp/eval-bf16" 2>"$tmp/err" || fail "eval --run (bf16): $(cat "$tmp/err")"
"$cli" eval --run "$tmp/whole" --split val --json --precision fp32 >"$tmp/eval-fp32" 2>"$tmp/err" ||
    fail "eval --precision fp32: $(cat "$tmp/err")"
grep -q '"spectral_text_acc"' "$tmp/eval-bf16" || fail "eval output: $(cat "$tmp/eval-bf16")"
if [ "$bf16_runs" = yes ]; then
    ! cmp -s "$tmp/eval-bf16" "$tmp/eval-fp32" || fail "eval: the run's bf16 gave the fp32 numbers"
fi
"$cli" classify --checkpoint "$best" --clip "$clip" --vocab "$vocab" --precision bf16 --json "${tiles[@]}" \
    >"$tmp/out" 2>"$tmp/err" || fail "classify --precision bf16: $(cat "$tmp/err")"
[ "$(grep -c '"file"' "$tmp/out")" = 2 ] || fail "classify --json: $(cat "$tmp/out")"
"$cli" embed --checkpoint "$best" --precision bf16 --output "$tmp/bf16.safetensors" "${tiles[@]}" \
    >/dev/null 2>"$tmp/err" || fail "embed --precision bf16: $(cat "$tmp/err")"
"$cli" embed --checkpoint "$best" --output "$tmp/fp32.safetensors" "${tiles[@]}" >/dev/null 2>"$tmp/err" ||
    fail "embed: $(cat "$tmp/err")"
if [ "$bf16_runs" = yes ]; then
    ! cmp -s "$tmp/bf16.safetensors" "$tmp/fp32.safetensors" || fail "embed: bf16 gave the fp32 vectors"
fi

# ---- pretrain-clip and demo ----
"$cli" pretrain-clip --synth 40 --image-size 16 --patch 8 --width 16 --layers 1 --text-width 16 \
    --text-layers 1 --embed-dim 16 --merges 30 --captions 2 --epochs 1 --batch 20 --quiet \
    --precision bf16 --out "$tmp/clip" >/dev/null 2>"$tmp/err" || fail "pretrain-clip --precision bf16: $(cat "$tmp/err")"
[ "$(config_precision "$tmp/clip")" = bf16 ] || fail "pretrain-clip config.json: $(cat "$tmp/clip/config.json")"
"$cli" demo --tiny --no-control --clip-epochs 1 --encoder-epochs 1 --quiet --precision bf16 \
    --out "$tmp/demo" >"$tmp/out" 2>"$tmp/err" || fail "demo --precision bf16: $(cat "$tmp/err")"
grep -q "spectral -> text" "$tmp/out" || fail "demo output: $(cat "$tmp/out")"
[ "$(config_precision "$tmp/demo")" = bf16 ] || fail "demo config.json: $(cat "$tmp/demo/config.json")"

# ---- a bad value, on every command ----
for command in train pretrain-clip embed eval classify demo; do
    expect_error "$command --precision fp16" "--precision 'fp16' is not fp32 or bf16" \
        "$cli" "$command" --precision fp16
done

finish "--precision bf16 runs on every command, is recorded and kept on resume"

#!/usr/bin/env bash
# `mmchain embed` with ResNets: every error is one line on stderr and a
# non-zero exit; the output agrees with PyTorch on the committed fixture
# (tests/golden/gen_resnet.py: the narrow ResNet-18 topology "basic", logits
# and pooled features, relative error < 1e-4); heads, seeds and train mode.
set -u
CLI=${MMCHAIN_CLI:?run through ctest (MMCHAIN_CLI is not set)}
FIX=${MMCHAIN_FIXTURES:?run through ctest (MMCHAIN_FIXTURES is not set)}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

WEIGHTS=$FIX/resnet_basic_weights.safetensors
INPUT=$FIX/resnet_cli_input.safetensors

fail() {
    echo "FAIL: $*"
    exit 1
}

# expect_error NEEDLE ARGS...: `mmchain embed ARGS` fails with one line containing NEEDLE.
expect_error() {
    local needle=$1
    shift
    if "$CLI" embed "$@" >"$TMP/stdout" 2>"$TMP/stderr"; then
        fail "embed $* succeeded"
    fi
    [ "$(wc -l <"$TMP/stderr")" -eq 1 ] || fail "embed $*: the error is not one line: $(cat "$TMP/stderr")"
    grep -qF -- "$needle" "$TMP/stderr" || fail "embed $*: '$(cat "$TMP/stderr")' does not mention '$needle'"
    echo "ok: error mentions '$needle'"
}

# The float32 values of a safetensors file holding one F32 tensor, one per line.
values() {
    local header_len
    header_len=$(od -A n -t u8 -N 8 "$1" | tr -d ' ')
    od -A n -v -t f4 -j $((8 + header_len)) "$1" | tr -s ' ' '\n' | sed '/^$/d'
}

# compare ACTUAL EXPECTED TOL: ||a - e|| / ||e|| < TOL over the same number of values.
compare() {
    values "$1" >"$TMP/a"
    values "$2" >"$TMP/e"
    [ "$(wc -l <"$TMP/a")" -eq "$(wc -l <"$TMP/e")" ] ||
        fail "$1 has $(wc -l <"$TMP/a") values, $2 has $(wc -l <"$TMP/e")"
    paste "$TMP/a" "$TMP/e" | awk -v tol="$3" -v what="$1" '
        { d = $1 - $2; num += d * d; den += $2 * $2; n++ }
        END { rel = sqrt(num / den); printf "%s: relative error %.3g over %d values\n", what, rel, n;
              exit !(n > 0 && rel < tol) }' || fail "$1 differs from $2"
}

# The "shape":[...] of tensor "output" in a safetensors header.
output_shape() {
    head -c 4096 "$1" | grep -ao '"output":{"dtype":"F32","shape":\[[0-9,]*\]' | sed 's/.*shape"://'
}

# ---- errors ----
expect_error "--model is required" --input "$INPUT" --output "$TMP/o.safetensors"
expect_error "unknown --model 'vgg16'" --model vgg16 --input "$INPUT" --output "$TMP/o.safetensors"
expect_error "unknown option '--colour'" --model resnet18 --colour red
expect_error "--head must be" --model resnet18 --head wide --input "$INPUT" --output "$TMP/o.safetensors"
expect_error "--output OUT.safetensors is required" --model resnet18 --input "$INPUT"
expect_error "$TMP/absent.safetensors" --model resnet18 --input "$TMP/absent.safetensors" --output "$TMP/o.safetensors"
expect_error "has no tensor named 'input'" --model resnet18 --input "$FIX/resnet_cli_logits.safetensors" --output "$TMP/o.safetensors"
expect_error "--bands 5, but tensor 'input'" --model resnet18 --bands 5 --input "$INPUT" --output "$TMP/o.safetensors"
expect_error "reads the architecture from --weights" --model resnet --input "$INPUT" --output "$TMP/o.safetensors"
# A narrow ResNet's weights are not resnet18's: the mismatch names tensors and shapes.
expect_error "conv1.weight (file (8, 3, 7, 7), model (64, 3, 7, 7))" --model resnet18 --weights "$WEIGHTS" --input "$INPUT" --output "$TMP/o.safetensors"
expect_error "$TMP/absent.safetensors" --model resnet --weights "$TMP/absent.safetensors" --input "$INPUT" --output "$TMP/o.safetensors"
[ ! -e "$TMP/o.safetensors" ] || fail "a failed run left an output file"

# ---- parity with PyTorch on the committed fixture ----
"$CLI" embed --model resnet --weights "$WEIGHTS" --input "$INPUT" --output "$TMP/logits.safetensors" ||
    fail "embed with the fixture's weights"
[ "$(output_shape "$TMP/logits.safetensors")" = "[2,10]" ] || fail "logits shape $(output_shape "$TMP/logits.safetensors")"
compare "$TMP/logits.safetensors" "$FIX/resnet_cli_logits.safetensors" 1e-4
"$CLI" embed --model resnet --weights "$WEIGHTS" --head 0 --input "$INPUT" --output "$TMP/features.safetensors" ||
    fail "embed --head 0"
[ "$(output_shape "$TMP/features.safetensors")" = "[2,64]" ] || fail "features shape"
compare "$TMP/features.safetensors" "$FIX/resnet_cli_features.safetensors" 1e-4

# ---- heads, seeds, train mode (random initialisation) ----
"$CLI" embed --model resnet18 --head 16 --input "$INPUT" --output "$TMP/a.safetensors" || fail "--head 16"
"$CLI" embed --model resnet18 --head 16 --input "$INPUT" --output "$TMP/b.safetensors" || fail "--head 16 again"
[ "$(output_shape "$TMP/a.safetensors")" = "[2,16]" ] || fail "--head 16 shape"
cmp -s "$TMP/a.safetensors" "$TMP/b.safetensors" || fail "the same seed gave different outputs"
"$CLI" embed --model resnet18 --head 16 --seed 1 --input "$INPUT" --output "$TMP/c.safetensors" || fail "--seed 1"
cmp -s "$TMP/a.safetensors" "$TMP/c.safetensors" && fail "--seed 1 gave the same output as seed 0"
"$CLI" embed --model resnet18 --input "$INPUT" --output "$TMP/d.safetensors" || fail "default head"
[ "$(output_shape "$TMP/d.safetensors")" = "[2,1000]" ] || fail "without weights the default is 1000 logits"
"$CLI" embed --model resnet --weights "$WEIGHTS" --train-mode --input "$INPUT" --output "$TMP/t.safetensors" ||
    fail "--train-mode"
cmp -s "$TMP/t.safetensors" "$TMP/logits.safetensors" && fail "--train-mode gave the eval output"
echo "all embed checks passed"

#!/usr/bin/env bash
# `mmchain embed` with ResNets: every error is one line on stderr and a
# non-zero exit; the output agrees with PyTorch on the committed fixture
# (tests/golden/gen_resnet.py: the narrow ResNet-18 topology "basic", logits
# and pooled features, relative error < 1e-4); heads, seeds and train mode.
set -u
CLI=${MMCHAIN_CLI:?run through ctest (MMCHAIN_CLI is not set)}
FIX=${MMCHAIN_FIXTURES:?run through ctest (MMCHAIN_FIXTURES is not set)}
. "$(dirname "$0")/support/script_common.sh"

WEIGHTS=$FIX/resnet_basic_weights.safetensors
INPUT=$FIX/resnet_cli_input.safetensors

# expect_embed_error NEEDLE ARGS...: `mmchain embed ARGS` fails with one line containing NEEDLE.
expect_embed_error() {
    local needle=$1
    shift
    expect_error "embed $*" "$needle" "$CLI" embed "$@"
}

# The float32 values of a safetensors file holding one F32 tensor, one per line.
values() {
    local header_len
    header_len=$(od -A n -t u8 -N 8 "$1" | tr -d ' ')
    od -A n -v -t f4 -j $((8 + header_len)) "$1" | tr -s ' ' '\n' | sed '/^$/d'
}

# compare ACTUAL EXPECTED TOL: ||a - e|| / ||e|| < TOL over the same number of values.
compare() {
    values "$1" >"$tmp/a"
    values "$2" >"$tmp/e"
    [ "$(wc -l <"$tmp/a")" -eq "$(wc -l <"$tmp/e")" ] ||
        fail "$1 has $(wc -l <"$tmp/a") values, $2 has $(wc -l <"$tmp/e")"
    paste "$tmp/a" "$tmp/e" | awk -v tol="$3" -v what="$1" '
        { d = $1 - $2; num += d * d; den += $2 * $2; n++ }
        END { rel = sqrt(num / den); printf "%s: relative error %.3g over %d values\n", what, rel, n;
              exit !(n > 0 && rel < tol) }' || fail "$1 differs from $2"
}

# The "shape":[...] of tensor "output" in a safetensors header.
output_shape() {
    head -c 4096 "$1" | grep -ao '"output":{"dtype":"F32","shape":\[[0-9,]*\]' | sed 's/.*shape"://'
}

# ---- errors ----
expect_embed_error "--model is required" --input "$INPUT" --output "$tmp/o.safetensors"
expect_embed_error "unknown --model 'vgg16'" --model vgg16 --input "$INPUT" --output "$tmp/o.safetensors"
expect_embed_error "unknown option '--colour'" --model resnet18 --colour red
expect_embed_error "--head must be" --model resnet18 --head wide --input "$INPUT" --output "$tmp/o.safetensors"
expect_embed_error "--output OUT.safetensors is required" --model resnet18 --input "$INPUT"
expect_embed_error "$tmp/absent.safetensors" --model resnet18 --input "$tmp/absent.safetensors" --output "$tmp/o.safetensors"
expect_embed_error "has no tensor named 'input'" --model resnet18 --input "$FIX/resnet_cli_logits.safetensors" --output "$tmp/o.safetensors"
expect_embed_error "--bands 5, but tensor 'input'" --model resnet18 --bands 5 --input "$INPUT" --output "$tmp/o.safetensors"
expect_embed_error "reads the architecture from --weights" --model resnet --input "$INPUT" --output "$tmp/o.safetensors"
# A narrow ResNet's weights are not resnet18's: the mismatch names tensors and shapes.
expect_embed_error "conv1.weight (file (8, 3, 7, 7), model (64, 3, 7, 7))" --model resnet18 --weights "$WEIGHTS" --input "$INPUT" --output "$tmp/o.safetensors"
expect_embed_error "$tmp/absent.safetensors" --model resnet --weights "$tmp/absent.safetensors" --input "$INPUT" --output "$tmp/o.safetensors"
[ ! -e "$tmp/o.safetensors" ] || fail "a failed run left an output file"

# ---- parity with PyTorch on the committed fixture ----
"$CLI" embed --model resnet --weights "$WEIGHTS" --input "$INPUT" --output "$tmp/logits.safetensors" ||
    fail "embed with the fixture's weights"
[ "$(output_shape "$tmp/logits.safetensors")" = "[2,10]" ] || fail "logits shape $(output_shape "$tmp/logits.safetensors")"
compare "$tmp/logits.safetensors" "$FIX/resnet_cli_logits.safetensors" 1e-4
"$CLI" embed --model resnet --weights "$WEIGHTS" --head 0 --input "$INPUT" --output "$tmp/features.safetensors" ||
    fail "embed --head 0"
[ "$(output_shape "$tmp/features.safetensors")" = "[2,64]" ] || fail "features shape"
compare "$tmp/features.safetensors" "$FIX/resnet_cli_features.safetensors" 1e-4

# ---- heads, seeds, train mode (random initialisation) ----
"$CLI" embed --model resnet18 --head 16 --input "$INPUT" --output "$tmp/a.safetensors" || fail "--head 16"
"$CLI" embed --model resnet18 --head 16 --input "$INPUT" --output "$tmp/b.safetensors" || fail "--head 16 again"
[ "$(output_shape "$tmp/a.safetensors")" = "[2,16]" ] || fail "--head 16 shape"
cmp -s "$tmp/a.safetensors" "$tmp/b.safetensors" || fail "the same seed gave different outputs"
"$CLI" embed --model resnet18 --head 16 --seed 1 --input "$INPUT" --output "$tmp/c.safetensors" || fail "--seed 1"
cmp -s "$tmp/a.safetensors" "$tmp/c.safetensors" && fail "--seed 1 gave the same output as seed 0"
"$CLI" embed --model resnet18 --input "$INPUT" --output "$tmp/d.safetensors" || fail "default head"
[ "$(output_shape "$tmp/d.safetensors")" = "[2,1000]" ] || fail "without weights the default is 1000 logits"
"$CLI" embed --model resnet --weights "$WEIGHTS" --train-mode --input "$INPUT" --output "$tmp/t.safetensors" ||
    fail "--train-mode"
cmp -s "$tmp/t.safetensors" "$tmp/logits.safetensors" && fail "--train-mode gave the eval output"
finish "all embed checks passed"

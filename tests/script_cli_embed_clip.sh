#!/usr/bin/env bash
# `mmchain embed --model clip-vision|clip-text`: every error is one line on
# stderr and a non-zero exit, and a failed run writes no output; --image and
# --text smoke runs on the committed tiny CLIP.
#
# The numbers are checked by two C programs that drive the same CLI (a shell
# cannot pick one tensor out of a multi-tensor file without a JSON parser):
#   test_cli_embed_clip         the committed fixture tests/golden/fixtures/
#                               clip_tiny.{model,io}.safetensors (PyTorch,
#                               tests/golden/gen_clip.py): both towers, I32 and
#                               I64 ids, batches, --text, --truncate, --image,
#                               one-tower files, bad dtypes / shapes / ids
#   test_cli_embed_clip_golden  ../shared/data/clip-golden (OpenAI's clip code)
#                               with --vocab ../shared/data/clip-tokenizer;
#                               skipped when absent
set -u
CLI=${MMCHAIN_CLI:?run through ctest (MMCHAIN_CLI is not set)}
FIX=${MMCHAIN_FIXTURES:?run through ctest (MMCHAIN_FIXTURES is not set)}
SHARED=${MMCHAIN_SHARED_DATA:-}
. "$(dirname "$0")/support/script_common.sh"

MODEL=$FIX/clip_tiny.model.safetensors
IO=$FIX/clip_tiny.io.safetensors
FLOATS=$FIX/resnet_cli_input.safetensors # float "input" (2, 3, 48, 48)
OUT=$tmp/out.safetensors

# expect_embed_error NEEDLE ARGS...: `mmchain embed ARGS` fails with one line containing NEEDLE and
# writes no output file.
expect_embed_error() {
    local needle=$1
    shift
    if expect_error "embed $*" "$needle" "$CLI" embed "$@"; then
        [ ! -e "$OUT" ] || fail "embed $*: a failed run left $OUT"
    fi
}

# The "shape":[...] of tensor "output" in a safetensors header.
output_shape() {
    head -c 4096 "$1" | grep -ao '"output":{"dtype":"F32","shape":\[[0-9,]*\]' | sed 's/.*shape"://'
}

# ---- help ----
"$CLI" embed --help >"$tmp/help" || fail "embed --help"
grep -q "clip-vision" "$tmp/help" && grep -q "clip-text" "$tmp/help" && grep -q -- "--truncate" "$tmp/help" ||
    fail "embed --help does not list the CLIP towers and their options"

# ---- the command line ----
expect_embed_error "unknown --model 'clip-audio'" --model clip-audio --input "$FLOATS" --output "$OUT"
expect_embed_error "--model clip-vision needs --weights" --model clip-vision --input "$FLOATS" --output "$OUT"
expect_embed_error "--model clip-text needs --weights" --model clip-text --text "a fox" --vocab "$tmp" --output "$OUT"
expect_embed_error "--input IN.safetensors is required" --model clip-text --weights "$MODEL" --output "$OUT"
expect_embed_error "--output OUT.safetensors is required" --model clip-vision --weights "$MODEL" --input "$FLOATS"
expect_embed_error "option --text needs a value" --model clip-text --weights "$MODEL" --output "$OUT" --text
expect_embed_error "--input and --text are alternatives" --model clip-text --weights "$MODEL" --input "$FLOATS" --text "a fox" --output "$OUT"
expect_embed_error "--input and --image are alternatives" --model clip-vision --weights "$MODEL" --input "$FLOATS" --image "$FIX/image_rgb8.png" --output "$OUT"
expect_embed_error "not both at once" --model clip-text --weights "$MODEL" --text "a fox" --image "$FIX/image_rgb8.png" --output "$OUT"
expect_embed_error "--text needs --vocab" --model clip-text --weights "$MODEL" --text "a fox" --output "$OUT"
# Options of the other family are refused, not ignored.
expect_embed_error "--image does not apply to --model clip-text" --model clip-text --weights "$MODEL" --image "$FIX/image_rgb8.png" --output "$OUT"
expect_embed_error "--text does not apply to --model clip-vision" --model clip-vision --weights "$MODEL" --text "a fox" --output "$OUT"
expect_embed_error "--vocab does not apply to --model clip-vision" --model clip-vision --weights "$MODEL" --vocab "$tmp" --input "$FLOATS" --output "$OUT"
expect_embed_error "--head does not apply to --model clip-vision" --model clip-vision --weights "$MODEL" --head 3 --input "$FLOATS" --output "$OUT"
expect_embed_error "--bands does not apply to --model clip-text" --model clip-text --weights "$MODEL" --bands 3 --input "$FLOATS" --output "$OUT"
expect_embed_error "--seed does not apply to --model clip-text" --model clip-text --weights "$MODEL" --seed 1 --input "$FLOATS" --output "$OUT"
expect_embed_error "--train-mode does not apply to --model clip-vision" --model clip-vision --weights "$MODEL" --train-mode --input "$FLOATS" --output "$OUT"
expect_embed_error "--truncate does not apply to --model resnet18" --model resnet18 --truncate --input "$FLOATS" --output "$OUT"
expect_embed_error "--text does not apply to --model resnet18" --model resnet18 --text "a fox" --output "$OUT"

# ---- files ----
expect_embed_error "$tmp/absent.safetensors" --model clip-vision --weights "$tmp/absent.safetensors" --input "$FLOATS" --output "$OUT"
expect_embed_error "not a CLIPModel file" --model clip-vision --weights "$FIX/resnet_basic_weights.safetensors" --input "$FLOATS" --output "$OUT"
expect_embed_error "$tmp/absent-input.safetensors" --model clip-vision --weights "$MODEL" --input "$tmp/absent-input.safetensors" --output "$OUT"
expect_embed_error "$tmp/absent-input.safetensors" --model clip-text --weights "$MODEL" --input "$tmp/absent-input.safetensors" --output "$OUT"
expect_embed_error "has no tensor named 'input'" --model clip-vision --weights "$MODEL" --input "$IO" --output "$OUT"
expect_embed_error "has no tensor named 'input'" --model clip-text --weights "$MODEL" --input "$IO" --output "$OUT"
expect_embed_error "tensor 'input' is (2, 3, 48, 48), expected N x 3 x 32 x 32" --model clip-vision --weights "$MODEL" --input "$FLOATS" --output "$OUT"
expect_embed_error "tensor 'input' has dtype F32, expected token ids as I32 or I64" --model clip-text --weights "$MODEL" --input "$FLOATS" --output "$OUT"
expect_embed_error "--image: $tmp/absent.png" --model clip-vision --weights "$MODEL" --image "$FIX/image_rgb8.png" --image "$tmp/absent.png" --output "$OUT"
expect_embed_error "--image: $MODEL: neither a PNG nor a JPEG" --model clip-vision --weights "$MODEL" --image "$MODEL" --output "$OUT"
expect_embed_error "--vocab $tmp/absent" --model clip-text --weights "$MODEL" --vocab "$tmp/absent" --text "a fox" --output "$OUT"
if [ -n "$SHARED" ] && [ -f "$SHARED/clip-tokenizer/merges.txt" ]; then
    # CLIP's real vocabulary does not fit the fixture's 600-token tower.
    expect_embed_error "has 49408 tokens, but the text tower of $MODEL has a vocabulary of 600" --model clip-text --weights "$MODEL" --vocab "$SHARED/clip-tokenizer" --text "a fox" --output "$OUT"
else
    echo "skipped: the vocabulary-size check with CLIP's real vocabulary (no ../shared/data/clip-tokenizer)"
fi
# Writing to a folder that does not exist.
expect_embed_error "$tmp/no/such/folder/out.safetensors" --model clip-vision --weights "$MODEL" --image "$FIX/image_rgb8.png" --output "$tmp/no/such/folder/out.safetensors"

# ---- --image: RGB, grey and grey+alpha PNGs and a JPEG in one batch ----
"$CLI" embed --model clip-vision --weights "$MODEL" --image "$FIX/image_rgb8.png" --image "$FIX/image_gray16.png" \
    --image "$FIX/image_la8.png" --image "$FIX/image_photo.jpg" --output "$tmp/a.safetensors" || fail "embed --image"
[ "$(output_shape "$tmp/a.safetensors")" = "[4,48]" ] || fail "--image output shape $(output_shape "$tmp/a.safetensors")"
grep -aq '"source":"image"' "$tmp/a.safetensors" || fail "--image output lacks source=image metadata"
"$CLI" embed --model clip-vision --weights "$MODEL" --image "$FIX/image_rgb8.png" --image "$FIX/image_gray16.png" \
    --image "$FIX/image_la8.png" --image "$FIX/image_photo.jpg" --output "$tmp/b.safetensors" || fail "embed --image again"
cmp -s "$tmp/a.safetensors" "$tmp/b.safetensors" || fail "the same images gave different outputs"
echo "ok: --image"
finish "all clip embed checks passed"

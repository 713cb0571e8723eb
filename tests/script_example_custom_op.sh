#!/usr/bin/env bash
# The example behind docs/autograd.md's traced tape and docs/guide.md
# (examples/custom_op/main.c). Each of its report lines is a check it made:
# the traced fragment hands back every activation gradient and keeps the
# parameters'; the custom op passes mc_gradcheck and a wrong backward fails
# it; the small model learns; a checkpoint resumes to the identical next
# step; the converted Linear weight reproduces PyTorch's flatten order.
set -euo pipefail
: "${MMCHAIN_EXAMPLE_CUSTOM_OP:?run through ctest}"
. "$(dirname "$0")/support/script_common.sh"
output=$("$MMCHAIN_EXAMPLE_CUSTOM_OP" "$tmp/checkpoint.safetensors")
echo "$output"
expect_line() { echo "$output" | grep -q -- "$1" || fail "no line '$1'"; }
expect_line "^forward: 3 nodes recorded"
expect_line "h->grad NULL, a->grad NULL, loss->grad NULL"
expect_line "^  db "
expect_line "^custom op: gradient check passed"
expect_line "^custom op: a wrong backward is caught: wrong backward: gradient of input 0 (x)"
final_loss=$(echo "$output" | awk '/^final loss/{print $3}')
awk -v f="$final_loss" 'BEGIN { exit !(f != "" && f < 0.1) }' || fail "final loss '$final_loss' is not below 0.1"
accuracy=$(echo "$output" | awk '/^accuracy/{print $2}')
awk -v a="$accuracy" 'BEGIN { exit !(a != "" && a >= 0.8) }' || fail "accuracy '$accuracy' is below 0.8"
expect_line "^checkpoint: the resumed model's next step is identical"
expect_line "^layouts: converted weight matches PyTorch's order"
[ -s "$tmp/checkpoint.safetensors" ] || fail "no checkpoint written"
finish "PASS: tape, custom op, gradient check, training, checkpoint and layouts as the docs say"

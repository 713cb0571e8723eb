#!/usr/bin/env bash
# The worked example of docs/architecture.md ("How to add a model"): a small
# Vision Transformer built from the layer kit, trained on generated images.
# Its loss starts at chance (ln 4 = 1.39) and must end below 0.25; fresh
# images classified without gradients must be at least 90% right (chance 25%).
set -euo pipefail
: "${MMCHAIN_EXAMPLE_TINY_VIT:?run through ctest}"
. "$(dirname "$0")/support/script_common.sh"
output=$("$MMCHAIN_EXAMPLE_TINY_VIT" 400)
echo "$output"
expect_loss_fell "$output" 0.25
accuracy=$(echo "$output" | awk '/^accuracy/{print $2}')
awk -v a="$accuracy" 'BEGIN { exit !(a >= 0.9) }' || fail "accuracy '$accuracy' is below 0.9"
finish "PASS: loss fell from $first_loss to $final_loss, accuracy $accuracy"

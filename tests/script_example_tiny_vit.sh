#!/usr/bin/env bash
# The worked example of docs/architecture.md ("How to add a model"): a small
# Vision Transformer built from the layer kit, trained on generated images.
# Its loss starts at chance (ln 4 = 1.39) and must end below 0.25; fresh
# images classified without gradients must be at least 90% right (chance 25%).
set -euo pipefail
: "${MMCHAIN_EXAMPLE_TINY_VIT:?run through ctest}"
output=$("$MMCHAIN_EXAMPLE_TINY_VIT" 400)
echo "$output"
first=$(echo "$output" | awk '/^step +1 /{print $4}')
final=$(echo "$output" | awk '/^final loss/{print $3}')
accuracy=$(echo "$output" | awk '/^accuracy/{print $2}')
awk -v f="$first" 'BEGIN { exit !(f > 1.0) }' || { echo "FAIL: first loss $first is not near chance"; exit 1; }
awk -v f="$final" 'BEGIN { exit !(f < 0.25) }' || { echo "FAIL: final loss $final is not below 0.25"; exit 1; }
awk -v a="$accuracy" 'BEGIN { exit !(a >= 0.9) }' || { echo "FAIL: accuracy $accuracy is below 0.9"; exit 1; }
echo "PASS: loss fell from $first to $final, accuracy $accuracy"

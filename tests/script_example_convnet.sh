#!/usr/bin/env bash
# The end-to-end example: a small convnet (conv, batchnorm, relu, maxpool,
# global pooling, linear, cross-entropy, Adam) trained on generated patterns.
# Its loss starts at chance (ln 4 = 1.39) and must end below 0.25.
set -euo pipefail
: "${MMCHAIN_EXAMPLE_CONVNET:?run through ctest}"
. "$(dirname "$0")/support/script_common.sh"
output=$("$MMCHAIN_EXAMPLE_CONVNET" 300)
echo "$output"
expect_loss_fell "$output" 0.25
finish "PASS: loss fell from $first_loss to $final_loss"

#!/usr/bin/env bash
# The end-to-end example: a small convnet (conv, batchnorm, relu, maxpool,
# global pooling, linear, cross-entropy, Adam) trained on generated patterns.
# Its loss starts at chance (ln 4 = 1.39) and must end below 0.25.
set -euo pipefail
: "${MMCHAIN_EXAMPLE_CONVNET:?run through ctest}"
output=$("$MMCHAIN_EXAMPLE_CONVNET" 300)
echo "$output"
first=$(echo "$output" | awk '/^step +1 /{print $4}')
final=$(echo "$output" | awk '/^final loss/{print $3}')
awk -v f="$first" 'BEGIN { exit !(f > 1.0) }' || { echo "FAIL: first loss $first is not near chance"; exit 1; }
awk -v f="$final" 'BEGIN { exit !(f < 0.25) }' || { echo "FAIL: final loss $final is not below 0.25"; exit 1; }
echo "PASS: loss fell from $first to $final"

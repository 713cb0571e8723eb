#!/usr/bin/env bash
# The example behind docs/autograd.md's traced tape and docs/guide.md's
# custom op: the traced fragment must hand back every activation gradient
# and keep the parameters' ones.
set -euo pipefail
: "${MMCHAIN_EXAMPLE_CUSTOM_OP:?run through ctest}"
. "$(dirname "$0")/support/script_common.sh"
output=$("$MMCHAIN_EXAMPLE_CUSTOM_OP")
echo "$output"
echo "$output" | grep -q "^forward: 3 nodes recorded" || fail "the forward did not record 3 nodes"
echo "$output" | grep -q "h->grad NULL, a->grad NULL, loss->grad NULL" ||
    fail "an activation's gradient survived backward"
echo "$output" | grep -q "^  db " || fail "no gradient for b"
finish "PASS: the traced tape behaves as docs/autograd.md says"

#!/usr/bin/env bash
# Every C code block (```c) of docs/autograd.md and docs/guide.md is a copy
# of lines of a program that is built and run (examples/*/main.c): each
# block's lines must appear, in order and contiguous, in one of them. So a
# snippet in the docs compiles as long as this test passes.
set -euo pipefail
: "${MMCHAIN_SOURCE_DIR:?run through ctest}"
. "$(dirname "$0")/support/script_common.sh"
cd "$MMCHAIN_SOURCE_DIR"
blocks=0
for doc in docs/autograd.md docs/guide.md; do
    [ -f "$doc" ] || { fail "$doc is missing"; continue; }
    # Write block k of $doc to $tmp/block.k (lines between ```c and ```).
    rm -f "$tmp"/block.*
    awk -v out="$tmp/block." '
        /^```c[[:space:]]*$/ { inside = 1; k++; next }
        /^```/ && inside     { inside = 0; next }
        inside               { print > (out k) }' "$doc"
    for block in "$tmp"/block.*; do
        [ -e "$block" ] || continue
        blocks=$((blocks + 1))
        found=""
        for source in examples/*/main.c; do
            # Is the block a run of consecutive lines of $source?
            if awk 'NR == FNR { want[++n] = $0; next }
                    { line[++m] = $0 }
                    END {
                        for (s = 1; s + n - 1 <= m; s++) {
                            ok = 1
                            for (i = 1; i <= n && ok; i++) if (line[s + i - 1] != want[i]) ok = 0
                            if (ok) exit 0
                        }
                        exit 1
                    }' "$block" "$source"; then
                found=$source
                break
            fi
        done
        [ -n "$found" ] || fail "$doc: this code block is in no examples/*/main.c: $(head -3 "$block")"
    done
done
[ "$blocks" -gt 0 ] || fail "no C code blocks found"
finish "PASS: $blocks code blocks, each copied from a built example"

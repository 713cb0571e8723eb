#!/usr/bin/env bash
# `mmchain tokenize` with small vocabularies written here by hand (needs no
# data, never skipped): a Hugging Face style merges.txt with 5 merges, one
# with none, and OpenAI's header on a file cut short (an error).
# Expected ids, derived by hand from the byte table (printable ASCII c is
# c - 33, c + "</w>" is c - 33 + 256) and the vocabulary rule (merge r is
# 512 + r; sot and eot follow the K merges: 512 + K and 513 + K).
set -u
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"


# expect_output "description" "expected stdout" args...: of `mmchain tokenize args...`
expect_output() { expect_stdout "$1" "$2" "$cli" tokenize "${@:3}"; }

# 5 merges: he 512, ll 513, lo</w> 514, hell 515, hello</w> 516; sot 517, eot 518
printf '#version: 0.2\nh e\nl l\nl o</w>\nhe ll\nhell o</w>\n' >"$tmp/merges.txt"
expect_output "five merges" "517 516 518 0 0 0 0
517 513 334 512 71 324 518" --vocab "$tmp/merges.txt" --context 7 "Hello" "llo hehe"
expect_output "the folder" "517 516 518" --vocab "$tmp" --context 3 "hello"

# no merges: bytes only; "a fox" = a</w> 320, f 69, o 78, x</w> 343; sot 512, eot 513
mkdir "$tmp/bytes"
printf '#version: 0.2\n' >"$tmp/bytes/merges.txt"
expect_output "zero merges" "512 320 69 78 343 513 0" --vocab "$tmp/bytes" --context 7 "a fox"
expect_output "zero merges, truncated" "512 320 513" --vocab "$tmp/bytes" --context 3 --truncate "a fox"

# OpenAI's header promises CLIP's 48,894 merges: 5 is a truncated file
printf '"bpe_simple_vocab_16e6.txt#version: 0.2\nh e\nl l\nl o</w>\nhe ll\nhell o</w>\n' | gzip >"$tmp/cut.txt.gz"
if "$cli" tokenize --vocab "$tmp/cut.txt.gz" "hello" >"$tmp/out" 2>"$tmp/err"; then
    fail "a cut OpenAI file was accepted"
else
    grep -qF "has only 5 merges" "$tmp/err" || fail "cut file: message '$(cat "$tmp/err")'"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "cut file: error is not one line"
fi

finish "all small-vocabulary mmchain tokenize checks passed"

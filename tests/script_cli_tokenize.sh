#!/usr/bin/env bash
# `mmchain tokenize` end to end against the real CLIP merges
# ($MMCHAIN_SHARED_DATA/clip-tokenizer; skipped, exit 77, when absent).
# Expected ids: the reference data's README ("Hello World!", "a photo of a
# fox") and the byte table ('-' + "</w>" = 268, '5' + "</w>" = 276).
set -u
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
vocab=${MMCHAIN_SHARED_DATA:-../shared/data}/clip-tokenizer
if [ ! -f "$vocab/bpe_simple_vocab_16e6.txt.gz" ]; then
    echo "SKIPPED: CLIP tokenizer data not found in $vocab"
    exit 77
fi
. "$(dirname "$0")/support/script_common.sh"


# zeros N: N zeros separated by spaces, with a leading space
zeros() { local i out=""; for ((i = 0; i < $1; i++)); do out+=" 0"; done; printf '%s' "$out"; }

# expect_ids "description" "expected output" -- args...
expect_ids() { expect_stdout "$1" "$2" "$cli" tokenize "${@:4}"; }

# expect_tokenize_error "description" "text in the message" -- args...: the
# shared expect_error, and no ids printed before the failure.
expect_tokenize_error() {
    local what=$1 needle=$2
    shift 3
    if expect_error "$what" "$needle" "$cli" tokenize "$@"; then
        [ ! -s "$tmp/out" ] || fail "$what: printed ids before failing"
    fi
}

expect_ids "hello" "49406 3306 1002 256 49407$(zeros 72)" -- --vocab "$vocab/bpe_simple_vocab_16e6.txt.gz" "Hello World!"
expect_ids "two texts, merges.txt" "49406 320 1125 539 320 3240 49407$(zeros 70)
49406 49407$(zeros 75)" -- --vocab "$vocab/merges.txt" "a photo of a fox" ""
expect_ids "folder, -- before a dash text" "49406 268 276 49407$(zeros 73)" -- --vocab "$vocab" -- "-5"
expect_ids "short context" "49406 320 1125 539 320 3240 49407 0 0 0" -- --vocab "$vocab" --context 10 "a photo of a fox"
expect_ids "truncate" "49406 320 1125 539 49407" -- --vocab "$vocab" --context 5 --truncate "a photo of a fox"

expect_tokenize_error "too long" "too long for context length 5: 7 tokens with sot and eot (ask for truncation to keep the first 4 and end with eot)" -- --vocab "$vocab" --context 5 "a photo of a fox"
expect_tokenize_error "unknown flag" "unknown option '--frobnicate'" -- --vocab "$vocab" --frobnicate "x"
expect_tokenize_error "dash text without --" "unknown option '-5'" -- --vocab "$vocab" "-5"
expect_tokenize_error "missing --vocab" "--vocab PATH is required" -- "a photo"
expect_tokenize_error "--vocab without a value" "option --vocab needs a value" -- --vocab
expect_tokenize_error "bad context" "--context must be a whole number" -- --vocab "$vocab" --context 1x "a"
expect_tokenize_error "no text" "no TEXT given" -- --vocab "$vocab"
printf 'this is not a merges file\n' >"$tmp/bad.txt"
expect_tokenize_error "bad file" "$tmp/bad.txt" -- --vocab "$tmp/bad.txt" "a"
expect_tokenize_error "missing file" "cannot open merges file '$tmp/none.gz'" -- --vocab "$tmp/none.gz" "a"
expect_tokenize_error "invalid UTF-8" "not valid UTF-8" -- --vocab "$vocab" "$(printf 'caf\xc3')"

"$cli" tokenize --help >"$tmp/help" 2>&1 || fail "--help failed"
grep -q "usage: mmchain tokenize" "$tmp/help" || fail "--help prints no usage"

finish "all mmchain tokenize checks passed"

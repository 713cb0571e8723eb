# Sourced by the script tests (tests/script_*.sh) after their own setup:
#   $tmp      a fresh folder, removed when the script exits
#   fail MSG  report a failed check; the script goes on, finish then exits 1
#   expect_error WHAT NEEDLE COMMAND [ARGS...]
#             COMMAND must fail with exit status 1 (mmchain's one status
#             for every error) and exactly one line on stderr, containing
#             NEEDLE (the project's rule for bad input). Its stdout is left in
#             $tmp/out, its stderr in $tmp/err. Returns 1 when COMMAND
#             succeeded, so that callers can skip checks of a failed run.
#   expect_stdout WHAT EXPECTED COMMAND [ARGS...]
#             COMMAND must succeed and print exactly EXPECTED on stdout (its
#             stderr is left in $tmp/err)
#   expect_loss_fell OUTPUT BOUND
#             OUTPUT is an example's training log ("step    1  loss X" ...
#             "final loss Y"): X must be near chance (above 1.0) and Y below
#             BOUND. Sets $first_loss and $final_loss.
#   chain_fixture TILES_PER_CLASS
#             write the chain's tiny fixture (test_chain_fixture --write:
#             synthetic-world tiles, a random tiny CLIP, a vocabulary) into
#             $tmp/fx and set $data, $data3, $clip and $vocab to its parts,
#             and tiny_run=(...) to the options of a run on it with a tiny
#             encoder (ResNet-18, one block per stage; the caller adds
#             --width and the rest); the script exits when it cannot
#   safetensors_header FILE / safetensors_data FILE
#             the JSON header / the tensor bytes of a safetensors file
#   finish [MESSAGE]
#             exit 1 with a count if any check failed, else print MESSAGE
#             and exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

expect_error() {
    local what=$1 needle=$2
    shift 2
    local status=0
    "$@" >"$tmp/out" 2>"$tmp/err" || status=$?
    if [ "$status" -eq 0 ]; then
        fail "$what: succeeded, expected an error"
        return 1
    fi
    [ "$status" -eq 1 ] || fail "$what: exit status $status, expected 1"
    [ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$what: expected one line on stderr, got: $(cat "$tmp/err")"
    grep -qF -- "$needle" "$tmp/err" || fail "$what: message lacks '$needle': $(cat "$tmp/err")"
    return 0
}

expect_stdout() {
    local what=$1 expected=$2
    shift 2
    local got
    if ! got=$("$@" 2>"$tmp/err"); then
        fail "$what: exit status non-zero: $(cat "$tmp/err")"
        return
    fi
    [ "$got" = "$expected" ] || fail "$what: got '$got', expected '$expected'"
}

expect_loss_fell() {
    local output=$1 bound=$2
    first_loss=$(echo "$output" | awk '/^step +1 /{print $4}')
    final_loss=$(echo "$output" | awk '/^final loss/{print $3}')
    awk -v f="$first_loss" 'BEGIN { exit !(f > 1.0) }' || fail "first loss '$first_loss' is not near chance"
    [ -n "$final_loss" ] && awk -v f="$final_loss" -v b="$bound" 'BEGIN { exit !(f < b) }' ||
        fail "final loss '$final_loss' is not below $bound"
}

finish() {
    if [ "$failures" -ne 0 ]; then
        echo "$failures check(s) failed"
        exit 1
    fi
    [ $# -eq 0 ] || echo "$*"
    exit 0
}

chain_fixture() {
    read -r data data3 clip vocab < <("${MMCHAIN_BINARY_DIR:?}/tests/test_chain_fixture" --write "$tmp/fx" "$1") ||
        { echo "fixture failed"; exit 1; }
    tiny_run=(--data "$data" --clip "$clip" --vocab "$vocab" --depth 18 --layers 1,1,1,1)
}

# safetensors_header FILE: the JSON header of a safetensors file;
# safetensors_data FILE: the tensor bytes after it (to compare weights of
# files whose metadata differ).
safetensors_header() {
    local len
    len=$(od -An -t u8 -N8 "$1" | tr -d ' ')
    head -c $((8 + len)) "$1" | tail -c "$len"
}
safetensors_data() {
    local len
    len=$(od -An -t u8 -N8 "$1" | tr -d ' ')
    tail -c +$((8 + len + 1)) "$1"
}

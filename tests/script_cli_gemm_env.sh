#!/usr/bin/env bash
# MMCHAIN_GEMM picks the kernel behind every matrix product, and
# `mmchain --version` names it: openblas always works; avx512 works where
# the CPU has AVX-512F and otherwise falls back to OpenBLAS with a warning;
# anything else is reported on stderr and auto is used. Never skipped.
set -u
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"


version() { # MMCHAIN_GEMM value -> stdout in $tmp/out, stderr in $tmp/err
    MMCHAIN_GEMM=$1 "$cli" --version >"$tmp/out" 2>"$tmp/err" || fail "MMCHAIN_GEMM=$1: non-zero exit"
}

version openblas
grep -q "GEMM: OpenBLAS" "$tmp/out" || fail "openblas: $(cat "$tmp/out")"
[ -s "$tmp/err" ] && fail "openblas: unexpected stderr: $(cat "$tmp/err")"

version auto
grep -q "GEMM: " "$tmp/out" || fail "auto: $(cat "$tmp/out")"
auto_kernel=$(sed 's/.*GEMM: \([^;]*\);.*/\1/' "$tmp/out")

version avx512
if grep -q "GEMM: mmchain AVX-512" "$tmp/out"; then
    [ -s "$tmp/err" ] && fail "avx512: unexpected stderr: $(cat "$tmp/err")"
    case $auto_kernel in *AVX-512*) ;; *) fail "auto chose '$auto_kernel' although AVX-512 works" ;; esac
else
    grep -q "no AVX-512F" "$tmp/err" || fail "avx512 fell back without saying why: $(cat "$tmp/err")"
fi

version bogus
grep -q "MMCHAIN_GEMM=bogus: expected auto, openblas or avx512" "$tmp/err" ||
    fail "bogus: no clear message: $(cat "$tmp/err")"
grep -q "GEMM: $auto_kernel" "$tmp/out" || fail "bogus: did not fall back to auto: $(cat "$tmp/out")"

finish "all MMCHAIN_GEMM checks passed (auto: $auto_kernel)"

#!/usr/bin/env bash
# The mmchain program runs under valgrind with no OpenMP setting in the
# environment: it must not try to start itself again through
# /proc/self/exe, which under valgrind is valgrind's own tool. Skipped
# (exit 77) where valgrind is not installed, and in the sanitizer build
# (valgrind cannot run AddressSanitizer's programs).
set -u
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
if ! command -v valgrind >/dev/null 2>&1; then
    echo "SKIP: valgrind is not installed"
    exit 77
fi
if [ -n "${MMCHAIN_SANITIZER_RUN:-}" ]; then
    echo "SKIP: valgrind cannot run a sanitizer build"
    exit 77
fi
. "$(dirname "$0")/support/script_common.sh"

env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT MMCHAIN_THREADS=2 \
    valgrind -q --error-exitcode=99 "$cli" --version >"$tmp/out" 2>"$tmp/err"
status=$?
[ "$status" -eq 0 ] || fail "valgrind mmchain --version: exit status $status: $(cat "$tmp/err")"
grep -q "^mmchain " "$tmp/out" || fail "no version line: $(cat "$tmp/out") $(cat "$tmp/err")"
finish "PASS: mmchain runs under valgrind"

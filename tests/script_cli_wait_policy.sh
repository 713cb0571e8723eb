#!/usr/bin/env bash
# The mmchain program asks libgomp for passive waiting (idle threads sleep
# instead of spinning) by starting itself once more with
# OMP_WAIT_POLICY=PASSIVE, since libgomp reads the policy only when it is
# loaded. It must not do so when that cannot help or cannot work:
#   - the user chose a policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT set);
#   - it runs on one thread (nothing ever waits);
#   - another program loaded it (here the dynamic loader run by hand, where
#     /proc/self/exe is the loader; valgrind is the same case, see
#     script_cli_valgrind.sh).
# libgomp prints its settings at each start with OMP_DISPLAY_ENV=VERBOSE:
# one block per start, and GOMP_SPINCOUNT 0 means passive.
set -u
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"

run() { # what, then environment assignments; stdout+stderr in $tmp/out
    local what=$1
    shift
    env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT OMP_DISPLAY_ENV=VERBOSE "$@" >"$tmp/out" 2>&1 ||
        fail "$what: non-zero exit: $(cat "$tmp/out")"
    grep -q "^mmchain " "$tmp/out" || fail "$what: no version line: $(cat "$tmp/out")"
}
starts() { grep -c "OPENMP DISPLAY ENVIRONMENT BEGIN" "$tmp/out"; }
last_spincount() { grep "GOMP_SPINCOUNT" "$tmp/out" | tail -n 1 | tr -d " '" | cut -d= -f2; }

run "two threads" MMCHAIN_THREADS=2 "$cli" --version
[ "$(starts)" -eq 2 ] || fail "two threads: expected a second start, got $(starts) start(s)"
[ "$(last_spincount)" = 0 ] || fail "two threads: the running program spins ($(last_spincount))"

run "one thread" MMCHAIN_THREADS=1 "$cli" --version
[ "$(starts)" -eq 1 ] || fail "one thread: started $(starts) times, expected once"

run "user's policy" MMCHAIN_THREADS=2 OMP_WAIT_POLICY=ACTIVE "$cli" --version
[ "$(starts)" -eq 1 ] || fail "OMP_WAIT_POLICY=ACTIVE: started $(starts) times, expected once"
grep -q "OMP_WAIT_POLICY = 'ACTIVE'" "$tmp/out" || fail "OMP_WAIT_POLICY=ACTIVE was not kept"

run "user's spin count" MMCHAIN_THREADS=2 GOMP_SPINCOUNT=1000 "$cli" --version
[ "$(starts)" -eq 1 ] || fail "GOMP_SPINCOUNT=1000: started $(starts) times, expected once"

loader=$(readelf -l "$cli" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
if [ -n "${MMCHAIN_SANITIZER_RUN:-}" ]; then
    # Started by the loader by hand, the sanitizer build does not reach
    # mmchain's main() (the loader prints its own version): the case would
    # test the sanitizer runtime, not mmchain.
    echo "note: the loader case is not run in the sanitizer build"
elif [ -n "$loader" ] && [ -x "$loader" ]; then
    run "started by the loader" MMCHAIN_THREADS=2 "$loader" "$cli" --version
    [ "$(starts)" -eq 1 ] || fail "started by $loader: started $(starts) times, expected once"
else
    echo "note: no program interpreter found in $cli; the loader case was not run"
fi

finish "PASS: passive waiting only where it helps and works"

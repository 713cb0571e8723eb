# Sourced by the distributed script tests (tests/script_dist_*.sh): skips
# the script when the library was built without MPI (ctest sets
# MMCHAIN_MPIEXEC, the launcher, only with MPI), sources script_common.sh,
# and sets mpirun=(...) to run a program on several ranks of this machine.
# Open MPI wants --oversubscribe to start more ranks than cores and refuses
# to run as root without its two variables; each rank gets one thread
# (MMCHAIN_THREADS=1, passed on with -x).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
: "${MMCHAIN_BINARY_DIR:?run through ctest}"
if [ -z "${MMCHAIN_MPIEXEC:-}" ]; then
    echo "SKIPPED: built without MPI (CMake option MMCHAIN_MPI)"
    exit 77
fi
. "$(dirname "${BASH_SOURCE[0]}")/script_common.sh"
mpirun=("$MMCHAIN_MPIEXEC")
if "$MMCHAIN_MPIEXEC" --version 2>/dev/null | grep -qiE "open-?mpi|OpenRTE"; then
    mpirun+=(--oversubscribe --bind-to none -x MMCHAIN_THREADS=1 -x OMP_WAIT_POLICY)
    if [ "$(id -u)" = 0 ]; then
        export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    fi
fi

# For the scripts that run the mmchain program: skips them when it is not
# built; sets cli (the program) and compare (test_dist_compare).
require_cli() {
    if [ -z "${MMCHAIN_CLI:-}" ]; then
        echo "SKIPPED: the mmchain program is not built (MMCHAIN_BUILD_CLI=OFF)"
        exit 77
    fi
    cli=$MMCHAIN_CLI
    compare=$MMCHAIN_BINARY_DIR/tests/test_dist_compare
}

# train NAME ARGS...: `mmchain train` with the caller's tiny=(...) options and
# ARGS, in one process into $tmp/NAME-1 and on 2 ranks into $tmp/NAME-2; 0
# when both succeeded (a failure is reported with its output).
train() {
    local name=$1
    shift
    MMCHAIN_THREADS=2 "$cli" train "${tiny[@]}" "$@" --out "$tmp/$name-1" >"$tmp/out" 2>&1 ||
        { fail "$name, one process: $(cat "$tmp/out")"; return 1; }
    timeout 600 "${mpirun[@]}" -np 2 "$cli" train "${tiny[@]}" "$@" --out "$tmp/$name-2" >"$tmp/out" 2>&1 ||
        { fail "$name, 2 ranks: $(cat "$tmp/out")"; return 1; }
}

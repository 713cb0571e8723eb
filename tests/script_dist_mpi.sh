#!/usr/bin/env bash
# The distributed layer's suite (test_dist) under `mpiexec -np 2` and
# `-np 3`: odd sizes, slices that do not divide, a rank with no rows, the
# gathered InfoNCE and synchronised batch norm against one process. Skipped
# when the library was built without MPI.
set -u
. "$(dirname "$0")/support/script_dist_common.sh"

suite=$MMCHAIN_BINARY_DIR/tests/test_dist
for ranks in 2 3; do
    # A failed check on one rank can leave the others waiting in a
    # collective: the time limit turns that into a failure.
    if ! timeout 600 "${mpirun[@]}" -np "$ranks" "$suite" >"$tmp/out" 2>&1; then
        fail "test_dist on $ranks ranks: $(cat "$tmp/out")"
    fi
    grep -q "rank 0 of $ranks" "$tmp/out" || fail "test_dist on $ranks ranks did not run $ranks ranks: $(cat "$tmp/out")"
done
finish "test_dist passed on 2 and 3 ranks"

#!/usr/bin/env bash
# --max-memory and MMCHAIN_MAX_MEMORY: a limit below the run's estimated peak
# refuses the run before anything is created, with the estimate and its
# parts in the one error line (exit 1); a limit above it lets the run start
# and says the estimate; the flag wins over the variable; malformed sizes
# are refused naming the flag or the variable. (The estimate against the
# measured peak: tests/test_memory_estimate.c.)
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"

chain_fixture 8
args=("${tiny_run[@]}" --width 8 --batch 4 --val-batch 8 --epochs 1 --seed 5 --quiet)
before=$(find "$tmp/fx" | sort | md5sum)

unset MMCHAIN_MAX_MEMORY
if expect_error "a 1M limit" "more than --max-memory 1.0 MiB" "$cli" train "${args[@]}" --out "$tmp/run" --max-memory 1M; then
    for part in "encoder weights" "gradients" "Adam state" "CLIP weights" "CLIP targets" "training step" "nothing was started"; do
        grep -qF "$part" "$tmp/err" || fail "the refusal does not give '$part': $(cat "$tmp/err")"
    done
fi
[ ! -e "$tmp/run" ] || fail "the refused run created $tmp/run"
MMCHAIN_MAX_MEMORY=1M expect_error "MMCHAIN_MAX_MEMORY=1M" "more than --max-memory" \
    "$cli" train "${args[@]}" --out "$tmp/run"
[ ! -e "$tmp/run" ] || fail "the run refused through MMCHAIN_MAX_MEMORY created $tmp/run"
[ "$(find "$tmp/fx" | sort | md5sum)" = "$before" ] || fail "a refused run changed the data or fixture folder"

expect_error "--max-memory 2X" "--max-memory must be a size like 512M" "$cli" train "${args[@]}" --out "$tmp/run" --max-memory 2X
expect_error "--max-memory -1G" "--max-memory must be a size" "$cli" train "${args[@]}" --out "$tmp/run" --max-memory -1G
MMCHAIN_MAX_MEMORY=lots expect_error "MMCHAIN_MAX_MEMORY=lots" "MMCHAIN_MAX_MEMORY must be a size" \
    "$cli" train "${args[@]}" --out "$tmp/run"
[ ! -e "$tmp/run" ] || fail "a malformed limit created $tmp/run"

# The flag wins over the variable; a run within its limit starts and says
# the estimate; the limit is not the run's (not in config.json).
MMCHAIN_MAX_MEMORY=1M "$cli" train "${args[@]}" --out "$tmp/run" --max-memory 4G --stop-after-steps 1 \
    >/dev/null 2>"$tmp/err" || fail "a run within --max-memory 4G failed: $(cat "$tmp/err")"
grep -q "memory estimate .* of the 4.00 GiB allowed" "$tmp/err" || fail "no estimate on stderr: $(cat "$tmp/err")"
[ -f "$tmp/run/config.json" ] && ! grep -q "max-memory" "$tmp/run/config.json" ||
    fail "config.json missing or records the memory limit"
# A resumed run may be given another limit, and is refused by it.
expect_error "resume under 1M" "more than --max-memory" "$cli" train --resume "$tmp/run" --max-memory 1M --quiet
# A teacher makes the targets instead of CLIP: the estimate does not model
# it, so a limit is refused rather than checked against the wrong run.
expect_error "--max-memory with --teacher" "cannot estimate a run with --teacher" \
    "$cli" train "${args[@]}" --teacher "$tmp/no-teacher.safetensors" --bands B05,B06,B07 \
    --out "$tmp/hop" --max-memory 8G
[ ! -e "$tmp/hop" ] || fail "a refused teacher run created its folder"
finish "--max-memory refuses before creating anything and lets a run within it start"

#!/usr/bin/env bash
# bench_dist's driver: each row as 1 process x 2 threads and as 2 ranks x 1
# thread (mpirun), side by side, with the ratios of throughputs (items per
# wall-clock second, and per CPU-second of the whole job) to the first.
#
#     bench/dist/run.sh [BUILD_DIR] [STEPS]       (default build/release, 5)
#
# Extra mpirun options (binding, ...) come from MPIRUN_ARGS; the default is
# --bind-to none, as the one-process run is not bound either.
set -eu
build=${1:-build/release}
steps=${2:-5}
bench=$build/bench/bench_dist
[ -x "$bench" ] || { echo "no $bench: cmake --build $build --target bench_dist" >&2; exit 1; }
export OMP_WAIT_POLICY=passive
mpirun=(mpirun --oversubscribe ${MPIRUN_ARGS:---bind-to none} -x OMP_WAIT_POLICY -x MMCHAIN_THREADS=1)
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

# field LINE NAME: the value of NAME=... in LINE.
field() { sed -n "s/.*[[:space:]]$2=\([^[:space:]]*\).*/\1/p" <<<" $1"; }

printf '%-15s %-6s %8s %10s %7s %10s %10s %11s %15s %6s %8s\n' row config items/s items/cpu-s step_s compute_s exposed_s backward_s bytes_sent/rank ratio cpu_ratio
for row in train100 train100_after clip_targets; do
    one=$(MMCHAIN_THREADS=2 "$bench" --row "$row" --steps "$steps")
    two=$("${mpirun[@]}" -np 2 "$bench" --row "$row" --steps "$steps")
    base=$(field "$one" items_per_s) cpu_base=$(field "$one" items_per_cpu_s)
    for line in "$one" "$two"; do
        config="$(field "$line" ranks) x $(field "$line" threads)"
        ratio=$(awk -v a="$(field "$line" items_per_s)" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
        cpu_ratio=$(awk -v a="$(field "$line" items_per_cpu_s)" -v b="$cpu_base" 'BEGIN { printf "%.2f", a / b }')
        printf '%-15s %-6s %8s %10s %7s %10s %10s %11s %15s %6s %8s\n' "$row" "$config" \
            "$(field "$line" items_per_s)" "$(field "$line" items_per_cpu_s)" "$(field "$line" step_s)" \
            "$(field "$line" compute_s)" "$(field "$line" exposed_comm_s)" "$(field "$line" backward_s)" \
            "$(field "$line" bytes_sent_per_rank)" "$ratio" "$cpu_ratio"
        if [ "$line" = "$two" ] && [ "$(field "$two" buckets)" != 0 ]; then
            echo "    ($(field "$two" buckets) bucket(s); the last $(field "$two" last_bucket_bytes) of $(field "$two" gradient_bytes) gradient bytes)"
        fi
    done
done

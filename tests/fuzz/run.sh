#!/usr/bin/env bash
# Run the libFuzzer targets for a fixed time each (README.md here).
#
#   cmake --workflow --preset fuzz          # build them (clang)
#   tests/fuzz/run.sh [SECONDS] [TARGET...] # default: 60 s, every target
#
# Each target starts from its committed corpus (tests/fuzz/corpus/NAME, only
# read) plus the inputs earlier runs found (build/fuzz/corpus-work/NAME).
# A crash, sanitizer report, leak, timeout (10 s per input) or out-of-memory
# (2 GB; the model loaders: 512 MB in all, 64 MB per allocation, besides
# their own bound of the heap by the file's size, fuzz_common.h) stops that
# target and leaves the input in build/fuzz/crashes/;
# the script then exits 1 after the others ran. To make it a regression
# test, copy the input into tests/fuzz/corpus/NAME/ (README.md).
#
# It prints one Markdown row per target: seconds, executions, executions
# per second, libFuzzer's final counters (cov: edges reached in everything
# instrumented, ft: features, corpus: inputs and bytes), and the edges of the
# parser's own source file that the run covered (-print_coverage).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${MMCHAIN_FUZZ_BUILD:-$root/build/fuzz}
seconds=${1:-60}
shift || true
# The source file each target exists to exercise.
declare -A parser=(
    [safetensors]=lib/io/safetensors.c [tiff]=lib/io/tiff.c [png]=lib/io/png.c [jpeg]=lib/io/jpeg.c
    [bpe_merges]=lib/tokenizer/tokenizer.c [bpe_vocab]=lib/tokenizer/tokenizer.c [json]=lib/io/json.c
    [split_file]=lib/data/eurosat.c [cli_options]=app/cli/options.c
    [clip]=lib/models/clip.c [resnet]=lib/models/resnet.c [checkpoint]=lib/chain/checkpoint.c
)
# The model loaders run under a tighter cap: a model built from a file of at
# most -max_len bytes has no business near it.
declare -A memory=(
    [clip]="-rss_limit_mb=512 -malloc_limit_mb=64" [resnet]="-rss_limit_mb=512 -malloc_limit_mb=64"
    [checkpoint]="-rss_limit_mb=512 -malloc_limit_mb=64"
)
targets=("$@")
[ ${#targets[@]} -gt 0 ] ||
    targets=(safetensors tiff png jpeg bpe_merges bpe_vocab json split_file cli_options clip resnet checkpoint)
# -print_coverage names files and functions through llvm-symbolizer.
for dir in /usr/lib/llvm-*/bin; do [ -x "$dir/llvm-symbolizer" ] && PATH=$PATH:$dir; done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export MMCHAIN_THREADS=1 OMP_NUM_THREADS=1

mkdir -p "$build/crashes" "$build/logs"
failed=()
echo "| target | seconds | executions | executions/s | cov | ft | corpus | edges covered in the parser's file |"
echo "|---|---:|---:|---:|---:|---:|---|---|"
for name in "${targets[@]}"; do
    binary=$build/tests/fuzz/fuzz_$name
    if [ ! -x "$binary" ]; then
        echo "run.sh: $binary is missing (build it: cmake --workflow --preset fuzz)" >&2
        exit 1
    fi
    work=$build/corpus-work/$name
    log=$build/logs/$name.log
    mkdir -p "$work"
    # shellcheck disable=SC2086 # the limits are separate words
    "$binary" -max_total_time="$seconds" -timeout=10 ${memory[$name]:--rss_limit_mb=2048} -max_len=65536 \
        -print_final_stats=1 -print_coverage=1 -artifact_prefix="$build/crashes/$name-" \
        "$work" "$root/tests/fuzz/corpus/$name" >"$log" 2>&1
    status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    file=${parser[$name]:-}
    edges=$(awk -v file="$file" '$1 ~ /_FUNC:$/ && index($0, file) {
                split($5, e, "/"); covered += e[1]; total += e[2] }
            END { if (total) printf "%d of %d (%.0f%%)", covered, total, 100 * covered / total; else print "n/a" }' "$log")
    rate=$(awk -v r="${runs:-0}" -v s="$seconds" 'BEGIN { printf "%.0f", r / s }')
    # The last status line: "#N DONE cov: C ft: F corp: I/SIZE ...".
    counters=$(awk '{ for (i = 1; i < NF; i++) {
                         if ($i == "cov:") cov = $(i + 1); if ($i == "ft:") ft = $(i + 1)
                         if ($i == "corp:") corp = $(i + 1) } }
                    END { printf "%s | %s | %s", cov ? cov : "?", ft ? ft : "?", corp ? corp : "?" }' "$log")
    echo "| $name | $seconds | ${runs:-?} | $rate | $counters | $edges ($file) |"
    if [ $status -ne 0 ]; then
        failed+=("$name")
        echo "run.sh: fuzz_$name FAILED (exit $status); the input is in $build/crashes/, the log in $log:" >&2
        grep -E "ERROR|SUMMARY|Test unit written" "$log" | head -20 >&2
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: failures in: ${failed[*]}" >&2
    exit 1
fi

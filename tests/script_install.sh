#!/usr/bin/env bash
# Install the library into a temporary prefix, then build the README's
# example program against the INSTALLED library twice — once with CMake's
# find_package(mmchain), once with pkg-config — and run both. Proves the
# install rules, the CMake package, mmchain.pc and the README example.
set -euo pipefail
: "${MMCHAIN_SOURCE_DIR:?run through ctest}" "${MMCHAIN_BINARY_DIR:?run through ctest}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"
# An instrumented library (the asan preset) needs an instrumented program.
extra_flags=""
[ -n "${MMCHAIN_SANITIZER_RUN:-}" ] && extra_flags="-fsanitize=address,undefined"

"${CMAKE_COMMAND:-cmake}" --install "$MMCHAIN_BINARY_DIR" --prefix "$prefix" >/dev/null
for f in include/mmchain/mmchain.h lib/libmmchain.a lib/cmake/mmchain/mmchainConfig.cmake lib/pkgconfig/mmchain.pc; do
    [ -f "$prefix/$f" ] || { echo "FAIL: $f was not installed"; exit 1; }
done

# The C block between the readme-example markers.
awk '/<!-- readme-example:begin -->/{on=1; next} /<!-- readme-example:end -->/{on=0} on' \
    "$MMCHAIN_SOURCE_DIR/README.md" | sed '/^```/d' > "$work/example.c"
[ -s "$work/example.c" ] || { echo "FAIL: no example block in README.md"; exit 1; }

check_run() { # $1: binary; the loss must fall well below chance (ln 2 = 0.69)
    local output
    output=$("$1")
    echo "$output"
    echo "$output" | awk '/^final loss/ { exit !($3 < 0.15) }' || { echo "FAIL: $1 did not learn"; exit 1; }
}

# 1. CMake package.
mkdir -p "$work/cmake-app"
cp "$work/example.c" "$work/cmake-app/example.c"
cat > "$work/cmake-app/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(readme_example C)
find_package(mmchain REQUIRED)
add_executable(example example.c)
target_link_libraries(example PRIVATE mmchain::mmchain)
CMAKE
"${CMAKE_COMMAND:-cmake}" -S "$work/cmake-app" -B "$work/cmake-app/build" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="$extra_flags" -DCMAKE_EXE_LINKER_FLAGS="$extra_flags" >/dev/null
"${CMAKE_COMMAND:-cmake}" --build "$work/cmake-app/build" >/dev/null
check_run "$work/cmake-app/build/example"

# 2. pkg-config.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046
# shellcheck disable=SC2086
"${CMAKE_C_COMPILER:-cc}" -std=c11 -Wall -Wextra -O2 $extra_flags "$work/example.c" -o "$work/example-pc" \
    $(pkg-config --static --cflags --libs mmchain)
check_run "$work/example-pc"
echo "PASS: installed library works with find_package and pkg-config"

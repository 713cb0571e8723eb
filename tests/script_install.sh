#!/usr/bin/env bash
# The install rules, the CMake package and mmchain.pc, checked with the
# README's example program built against the INSTALLED library.
#
# 1. The library alone: a fresh build tree where only the library target is
#    built, installed with `--component library`; then the same tree
#    reconfigured with MMCHAIN_BUILD_CLI=OFF and installed whole. Against
#    that prefix the example is built three ways — CMake's
#    find_package(mmchain), `pkg-config --cflags --libs mmchain` and the same
#    with --static — and each must link and run.
# 2. Everything (this build tree): library and program; the installed
#    program runs.
set -euo pipefail
: "${MMCHAIN_SOURCE_DIR:?run through ctest}" "${MMCHAIN_BINARY_DIR:?run through ctest}"
cmake_cmd=${CMAKE_COMMAND:-cmake}
cc=${CMAKE_C_COMPILER:-cc}
. "$(dirname "$0")/support/script_common.sh"

library_files="include/mmchain/mmchain.h lib/libmmchain.a lib/cmake/mmchain/mmchainConfig.cmake lib/pkgconfig/mmchain.pc"
expect_library() { # $1: prefix
    local f
    for f in $library_files; do
        [ -f "$1/$f" ] || fail "$f was not installed in $1"
    done
}

# ---- 1. the library alone ----
# A build tree of its own, without sanitizers: the consumers below are
# plain programs. Tests and benchmarks are not configured.
lib_build="$tmp/lib-build"
"$cmake_cmd" -S "$MMCHAIN_SOURCE_DIR" -B "$lib_build" -DCMAKE_BUILD_TYPE=Release \
    -DMMCHAIN_BUILD_TESTS=OFF -DMMCHAIN_BUILD_BENCH=OFF >"$tmp/configure.log" 2>&1 ||
    { cat "$tmp/configure.log"; echo "FAIL: configure"; exit 1; }
"$cmake_cmd" --build "$lib_build" --target mmchain -j 2 >"$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log"; echo "FAIL: build of the library target"; exit 1; }
[ -e "$lib_build/mmchain" ] && fail "building the library target built the program too"

# (a) Only the library was built: its component installs.
component_prefix="$tmp/component-prefix"
"$cmake_cmd" --install "$lib_build" --component library --prefix "$component_prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "cmake --install --component library after building only the library"; }
expect_library "$component_prefix"
[ -e "$component_prefix/bin/mmchain" ] && fail "the library component installed the program"

# (b) MMCHAIN_BUILD_CLI=OFF: a plain install is the library alone.
prefix="$tmp/prefix"
"$cmake_cmd" -S "$MMCHAIN_SOURCE_DIR" -B "$lib_build" -DMMCHAIN_BUILD_CLI=OFF >"$tmp/configure.log" 2>&1 ||
    { cat "$tmp/configure.log"; echo "FAIL: configure with MMCHAIN_BUILD_CLI=OFF"; exit 1; }
"$cmake_cmd" --build "$lib_build" -j 2 >"$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log"; echo "FAIL: build with MMCHAIN_BUILD_CLI=OFF"; exit 1; }
"$cmake_cmd" --install "$lib_build" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "cmake --install with MMCHAIN_BUILD_CLI=OFF"; }
expect_library "$prefix"
[ -e "$prefix/bin/mmchain" ] && fail "MMCHAIN_BUILD_CLI=OFF installed a program"
# No header of the application layer is installed, and no public header
# includes one.
grep -rl "mmchain_app" "$prefix/include" && fail "an installed header names the application layer"

# The C block between the readme-example markers.
awk '/<!-- readme-example:begin -->/{on=1; next} /<!-- readme-example:end -->/{on=0} on' \
    "$MMCHAIN_SOURCE_DIR/README.md" | sed '/^```/d' > "$tmp/example.c"
[ -s "$tmp/example.c" ] || { echo "FAIL: no example block in README.md"; exit 1; }

check_run() { # $1: binary; the loss must fall well below chance (ln 2 = 0.69)
    local output
    if ! output=$("$1"); then
        fail "$1 exited with an error"
        return
    fi
    echo "$output"
    echo "$output" | awk '/^final loss/ { found = 1; ok = ($3 < 0.15) } END { exit !(found && ok) }' ||
        fail "$1 did not learn"
}

# CMake package.
mkdir -p "$tmp/cmake-app"
cp "$tmp/example.c" "$tmp/cmake-app/example.c"
cat > "$tmp/cmake-app/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(readme_example C)
find_package(mmchain REQUIRED)
add_executable(example example.c)
target_link_libraries(example PRIVATE mmchain::mmchain)
CMAKE
if "$cmake_cmd" -S "$tmp/cmake-app" -B "$tmp/cmake-app/build" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/consumer.log" 2>&1 &&
    "$cmake_cmd" --build "$tmp/cmake-app/build" >>"$tmp/consumer.log" 2>&1; then
    check_run "$tmp/cmake-app/build/example"
else
    cat "$tmp/consumer.log"
    fail "find_package(mmchain) consumer did not build"
fi

# pkg-config, without and with --static: the library is static only, so
# both must give everything the link needs.
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
for static in "" "--static"; do
    name="example-pc${static:+-static}"
    # shellcheck disable=SC2046,SC2086
    if "$cc" -std=c11 -Wall -Wextra -O2 "$tmp/example.c" -o "$tmp/$name" \
        $(pkg-config $static --cflags --libs mmchain); then
        check_run "$tmp/$name"
    else
        fail "pkg-config ${static:-(no --static)} consumer did not link"
    fi
done

# ---- 2. everything: this build tree's library and program ----
full_prefix="$tmp/full-prefix"
"$cmake_cmd" --install "$MMCHAIN_BINARY_DIR" --prefix "$full_prefix" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "cmake --install of this build tree"; }
expect_library "$full_prefix"
if [ -e "$MMCHAIN_BINARY_DIR/mmchain" ]; then
    "$full_prefix/bin/mmchain" --version >/dev/null || fail "the installed program does not run"
fi

finish "PASS: the library installs alone and works with find_package and pkg-config (with and without --static)"

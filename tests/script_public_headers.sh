#!/usr/bin/env bash
# The umbrella header include/mmchain/mmchain.h names every public header
# twice — in its reading-order comment and in an #include — and the
# library's headers and sources never reach into the application layer
# (app/, mmchain_app/).
set -euo pipefail
: "${MMCHAIN_SOURCE_DIR:?run through ctest}"
# shellcheck source=tests/support/script_common.sh
source "$MMCHAIN_SOURCE_DIR/tests/support/script_common.sh"

umbrella="$MMCHAIN_SOURCE_DIR/include/mmchain/mmchain.h"
# The comment: everything before the include guard.
comment=$(sed '/^#ifndef/,$d' "$umbrella")
for header in "$MMCHAIN_SOURCE_DIR"/include/mmchain/*.h; do
    name=$(basename "$header")
    [ "$name" = mmchain.h ] && continue
    grep -qE "(^|[ ,])$name([ ,.]|$)" <<<"$comment" || fail "mmchain.h's reading order does not list $name"
    grep -qx "#include \"$name\"" "$umbrella" || fail "mmchain.h does not include $name"
done
# Each header in the reading order before the headers it includes.
order=$(grep -oE '[a-z_]+\.h' <<<"$comment" | grep -v '^mmchain\.h$' || true)
position() { grep -nx "$1" <<<"$order" | cut -d: -f1; }
for header in "$MMCHAIN_SOURCE_DIR"/include/mmchain/*.h; do
    name=$(basename "$header")
    [ "$name" = mmchain.h ] && continue
    mine=$(position "$name")
    [ -n "$mine" ] || continue
    for dep in $(sed -n 's/^#include "\([a-z_]*\.h\)"$/\1/p' "$header"); do
        theirs=$(position "$dep")
        [ -n "$theirs" ] && [ "$theirs" -lt "$mine" ] || fail "$name includes $dep, which the reading order puts after it"
    done
done

leaks=$(grep -rlE '#include[[:space:]]*"(mmchain_app/|(\.\./)*app/)' \
    "$MMCHAIN_SOURCE_DIR/include/mmchain" "$MMCHAIN_SOURCE_DIR/lib" || true)
[ -z "$leaks" ] || fail "the library includes the application layer: $leaks"
finish "PASS: mmchain.h lists every public header in dependency order; the library does not include app/"

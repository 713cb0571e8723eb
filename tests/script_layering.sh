#!/usr/bin/env bash
# The library's folders depend on each other in one direction only
# (docs/architecture.md, "Layout"). This test reads every #include in lib/
# and include/mmchain/, maps each included header to the layer (folder) that
# provides it, and fails on any edge the table below does not allow — so a
# new upward include is caught here, not by a reader months later.
set -euo pipefail
: "${MMCHAIN_SOURCE_DIR:?run through ctest}"
# shellcheck source=tests/support/script_common.sh
source "$MMCHAIN_SOURCE_DIR/tests/support/script_common.sh"
cd "$MMCHAIN_SOURCE_DIR"

# The layer of each public header (include/mmchain/NAME.h).
declare -A header_layer=(
    [version.h]=core [error.h]=core [rng.h]=core [tensor.h]=core
    [autograd.h]=core [gradcheck.h]=core [threads.h]=core
    [ops.h]=ops
    [nn.h]=nn
    [optim.h]=optim [checkpoint.h]=optim
    [io.h]=io [image.h]=io
    [tokenizer.h]=tokenizer
    [models.h]=models [clip.h]=models
    [data.h]=data [augment.h]=data [synth.h]=data
    [dist.h]=dist
    [chain.h]=chain [pretrain.h]=chain
)
# The layers each layer may include besides itself. Read bottom-up:
# core <- io, ops <- nn <- optim (optimizers, checkpoints) <- models <- chain.
declare -A allowed=(
    [core]=""
    [io]="core"
    [ops]="core"
    [nn]="core ops"
    [optim]="core ops nn io"
    [tokenizer]="core io"
    [dist]="core ops nn"
    [data]="core ops io"
    [models]="core ops nn optim io tokenizer"
    [chain]="core ops nn optim io tokenizer models data dist"
)

# layer_of INCLUDED-PATH INCLUDING-LAYER: the layer an #include "..." names.
layer_of() {
    local inc=$1 here=$2
    case $inc in
        mmchain/*) echo "${header_layer[${inc#mmchain/}]:-unknown:$inc}" ;;
        ../*/*) local rest=${inc#../}; echo "${rest%%/*}" ;;
        */*) echo "${inc%%/*}" ;;
        *) echo "$here" ;; # a header beside the file
    esac
}

checked=0
check_file() { # FILE LAYER [NAME-IN-MESSAGES]
    local file=$1 here=$2 shown=${3:-$1} inc there
    while read -r inc; do
        there=$(layer_of "$inc" "$here")
        checked=$((checked + 1))
        [ "$there" = "$here" ] && continue
        case " ${allowed[$here]} " in
            *" $there "*) ;;
            *) fail "$shown ($here) includes $inc ($there): not allowed" ;;
        esac
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
}

for file in lib/*/*.c lib/*/*.h; do
    layer=${file#lib/}
    layer=${layer%%/*}
    [ -n "${allowed[$layer]+set}" ] || { fail "$file: lib/$layer is not in the layer table"; continue; }
    check_file "$file" "$layer"
done
for file in include/mmchain/*.h; do
    name=$(basename "$file")
    [ "$name" = mmchain.h ] && continue # the umbrella includes everything
    layer=${header_layer[$name]:-}
    [ -n "$layer" ] || { fail "$file is not in the header table"; continue; }
    # A public header may only include public headers: "x.h" beside it.
    while read -r inc; do
        case $inc in */*) fail "$file includes a non-public header $inc" ;; esac
    done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$file")
    sed 's/^#include "\([a-z_0-9]*\.h\)"/#include "mmchain\/\1"/' "$file" >"$tmp/$name"
    check_file "$tmp/$name" "$layer" "$file"
done
# Two rules the layers above imply but that are worth stating by name.
grep -qE '#include "(nn|optim|checkpoint)\.h"' include/mmchain/io.h && fail "io.h includes nn.h/optim.h"
grep -qE '#include "(optim|checkpoint)\.h"' include/mmchain/models.h && fail "models.h includes optim.h"
# The umbrella header is for users: inside lib/ each file names what it uses.
uses=$(grep -rl '#include "mmchain/mmchain.h"' lib || true)
[ -z "$uses" ] || fail "lib/ includes the umbrella header: $uses"
[ "$checked" -gt 100 ] || fail "only $checked includes read: is the source tree where MMCHAIN_SOURCE_DIR says?"
finish "PASS: $checked includes in lib/ and include/mmchain/ follow the layer table"

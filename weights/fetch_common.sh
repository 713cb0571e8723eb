# Shared by the fetch_*.sh scripts, which source it (it is not run alone):
# stopping with an error, fetching a file from the network or from a --from
# folder, and checking its size and SHA-256.
#
# The sourcing script sets FETCH_NAME (its name, for messages) and FROM_DIR
# ("" to download, else the folder given with --from) before calling these.

die() {
    echo "$FETCH_NAME: error: $*" >&2
    exit 1
}

# fetch_to URL PART: download URL (or, with --from, copy the file of the same
# name from FROM_DIR) into PART.
fetch_to() {
    local url=$1 part=$2 name
    name=$(basename "$url")
    if [ -n "$FROM_DIR" ]; then
        [ -f "$FROM_DIR/$name" ] || die "$FROM_DIR/$name not found (--from expects the original file names)"
        cp "$FROM_DIR/$name" "$part"
    elif command -v curl >/dev/null; then
        curl --fail --location --retry 3 --output "$part" "$url" || die "download of $url failed"
    elif command -v wget >/dev/null; then
        wget --tries=3 -O "$part" "$url" || die "download of $url failed"
    else
        die "neither curl nor wget is installed (or use --from DIR)"
    fi
}

# reject PART WHY: remove the file and stop.
reject() {
    rm -f "$1"
    die "$(basename "${1%.part}"): $2 (file removed)"
}

# verify_digest PART SHA256 [BYTES]: the byte size (when given) and the
# SHA-256 must match, else the file is removed.
verify_digest() {
    local part=$1 expected=$2 bytes=${3:-} actual size
    size=$(wc -c <"$part" | tr -d ' ')
    if [ -n "$bytes" ] && [ "$size" != "$bytes" ]; then
        reject "$part" "$size bytes, expected $bytes"
    fi
    actual=$(sha256sum "$part" | cut -d' ' -f1)
    [ "$actual" = "$expected" ] || reject "$part" "SHA-256 is $actual, expected $expected"
    echo "verified $(basename "${part%.part}") (sha256 $expected, $size bytes)"
}

#!/usr/bin/env bash
# weights/fetch_clip.sh offline, through --from DIR: the tokenizer files
# verified by SHA-256 and size (with the reference copies in
# ../shared/data/clip-tokenizer when present), a tampered or missing file
# refused and removed, and the header check of model.safetensors (on a
# header-only stand-in with ViT-B/32's tensor table, and on the tiny fixture,
# which must be refused).
set -u
SRC=${MMCHAIN_SOURCE_DIR:?run through ctest (MMCHAIN_SOURCE_DIR is not set)}
FIX=${MMCHAIN_FIXTURES:?run through ctest (MMCHAIN_FIXTURES is not set)}
SHARED=${MMCHAIN_SHARED_DATA:-}
FETCH=$SRC/weights/fetch_clip.sh
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

fail() {
    echo "FAIL: $*"
    exit 1
}

# expect_failure NEEDLE ARGS...: fetch_clip.sh ARGS fails and says NEEDLE.
expect_failure() {
    local needle=$1
    shift
    if bash "$FETCH" "$@" >"$TMP/stdout" 2>"$TMP/stderr"; then
        fail "fetch_clip.sh $* succeeded"
    fi
    grep -qF -- "$needle" "$TMP/stderr" || fail "fetch_clip.sh $*: '$(cat "$TMP/stderr")' does not mention '$needle'"
    echo "ok: refused, mentioning '$needle'"
}

# A header-only safetensors file whose tensor table is ViT-B/32's (the
# entries fetch_clip.sh looks for, plus one more): enough for the header check.
write_fake_vit_b32() {
    local header='{"logit_scale":{"dtype":"F32","shape":[],"data_offsets":[0,4]},'
    header+='"text_model.embeddings.token_embedding.weight":{"dtype":"F32","shape":[49408,512],"data_offsets":[4,4]},'
    header+='"text_model.encoder.layers.11.mlp.fc1.weight":{"dtype":"F32","shape":[2048,512],"data_offsets":[4,4]},'
    header+='"text_projection.weight":{"dtype":"F32","shape":[512,512],"data_offsets":[4,4]},'
    header+='"vision_model.embeddings.class_embedding":{"dtype":"F32","shape":[768],"data_offsets":[4,4]},'
    header+='"vision_model.embeddings.patch_embedding.weight":{"dtype":"F32","shape":[768,3,32,32],"data_offsets":[4,4]},'
    header+='"vision_model.embeddings.position_embedding.weight":{"dtype":"F32","shape":[50,768],"data_offsets":[4,4]},'
    header+='"vision_model.encoder.layers.11.self_attn.q_proj.weight":{"dtype":"F32","shape":[768,768],"data_offsets":[4,4]},'
    header+='"visual_projection.weight":{"dtype":"F32","shape":[512,768],"data_offsets":[4,4]}}'
    while [ $((${#header} % 8)) -ne 0 ]; do header+=' '; done
    /usr/bin/printf "$(printf '\\%03o' $((${#header} & 255)) $((${#header} >> 8 & 255)) 0 0 0 0 0 0)" >"$1"
    printf '%s' "$header" >>"$1"
    printf '\0\0\0\0' >>"$1"
}

bash "$FETCH" --help | grep -q -- "--from DIR" || fail "--help does not describe --from"
expect_failure "unknown option '--colour'" --colour
expect_failure "--only must be tokenizer or model" --only weights --from "$TMP" "$TMP/dest"
expect_failure "$TMP/empty/merges.txt not found" --from "$TMP/empty" "$TMP/dest"

# ---- model.safetensors: the header check ----
mkdir -p "$TMP/model" "$TMP/tiny"
write_fake_vit_b32 "$TMP/model/model.safetensors"
bash "$FETCH" --only model --from "$TMP/model" "$TMP/dest" >"$TMP/stdout" 2>&1 || fail "the ViT-B/32 header was refused: $(cat "$TMP/stdout")"
grep -q "not verified: the SHA-256 of model.safetensors is" "$TMP/stdout" || fail "no 'not verified' note without CLIP_MODEL_SHA256"
[ -f "$TMP/dest/model.safetensors" ] && [ ! -e "$TMP/dest/model.safetensors.part" ] || fail "model.safetensors not in place"
echo "ok: the ViT-B/32 header is accepted, the digest reported as not verified"
DIGEST=$(sha256sum "$TMP/model/model.safetensors" | cut -d' ' -f1)
CLIP_MODEL_SHA256=$DIGEST bash "$FETCH" --only model --from "$TMP/model" "$TMP/dest2" >"$TMP/stdout" 2>&1 ||
    fail "CLIP_MODEL_SHA256 with the right digest: $(cat "$TMP/stdout")"
grep -q "verified model.safetensors (sha256 $DIGEST" "$TMP/stdout" || fail "the digest given was not checked"
echo "ok: CLIP_MODEL_SHA256 is checked"
export CLIP_MODEL_SHA256=0000000000000000000000000000000000000000000000000000000000000000
expect_failure "model.safetensors: SHA-256 is $DIGEST, expected 0000" --only model --from "$TMP/model" "$TMP/dest3"
unset CLIP_MODEL_SHA256
[ ! -e "$TMP/dest3/model.safetensors" ] && [ ! -e "$TMP/dest3/model.safetensors.part" ] || fail "a refused model was kept"
cp "$FIX/clip_tiny.model.safetensors" "$TMP/tiny/model.safetensors"
expect_failure "not openai/clip-vit-base-patch32's CLIPModel: its header lacks \"vision_model.embeddings.patch_embedding.weight\"" \
    --only model --from "$TMP/tiny" "$TMP/dest4"
[ ! -e "$TMP/dest4/model.safetensors.part" ] || fail "a refused model was kept"
printf 'not a safetensors file' >"$TMP/tiny/model.safetensors"
expect_failure "model.safetensors: not a safetensors file" --only model --from "$TMP/tiny" "$TMP/dest4"

# ---- merges.txt and vocab.json ----
if [ -z "$SHARED" ] || [ ! -f "$SHARED/clip-tokenizer/vocab.json" ]; then
    echo "skipped: the tokenizer checks (no ../shared/data/clip-tokenizer)"
    exit 0
fi
mkdir -p "$TMP/tok"
cp "$SHARED/clip-tokenizer/vocab.json" "$TMP/tok/vocab.json"
# The reference copy of merges.txt has CRLF line ends; Hugging Face's has LF.
tr -d '\r' <"$SHARED/clip-tokenizer/merges.txt" >"$TMP/tok/merges.txt"
bash "$FETCH" --only tokenizer --from "$TMP/tok" "$TMP/dest5" >"$TMP/stdout" 2>&1 || fail "tokenizer files refused: $(cat "$TMP/stdout")"
grep -q "verified merges.txt" "$TMP/stdout" && grep -q "verified vocab.json" "$TMP/stdout" || fail "no verification reported"
cmp -s "$TMP/tok/vocab.json" "$TMP/dest5/vocab.json" && cmp -s "$TMP/tok/merges.txt" "$TMP/dest5/merges.txt" || fail "copies differ"
echo "ok: merges.txt and vocab.json verified"
# One changed byte is refused, and the bad copy is removed.
sed -i '2s/^i n$/i m/' "$TMP/tok/merges.txt"
expect_failure "merges.txt: SHA-256 is" --only tokenizer --from "$TMP/tok" "$TMP/dest6"
[ ! -e "$TMP/dest6/merges.txt" ] && [ ! -e "$TMP/dest6/merges.txt.part" ] || fail "a refused merges.txt was kept"
cp "$SHARED/clip-tokenizer/merges.txt" "$TMP/tok/merges.txt" # CRLF: another size
expect_failure "merges.txt: 573514 bytes, expected 524619" --only tokenizer --from "$TMP/tok" "$TMP/dest6"
echo "all fetch_clip checks passed"

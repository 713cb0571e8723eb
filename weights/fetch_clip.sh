#!/usr/bin/env bash
# Download OpenAI's CLIP ViT-B/32 in Hugging Face layout (openai/clip-vit-base-patch32)
# and verify it: model.safetensors (the CLIPModel weights mmchain loads),
# merges.txt and vocab.json (the tokenizer).
#
#   weights/fetch_clip.sh [DEST]              (default DEST: weights/clip-vit-base-patch32)
#   weights/fetch_clip.sh --from DIR [DEST]   files already downloaded into DIR (offline
#                                             machines), verified exactly like downloads
#   --only tokenizer|model                    just merges.txt + vocab.json, or just the weights
#
# Then:
#   mmchain embed --model clip-text --weights DEST/model.safetensors --vocab DEST \
#                 --text "a photo of a fox" --output fox.safetensors
#
# Checks (weights/README.md says where each value comes from):
#   merges.txt, vocab.json   SHA-256 and byte size
#   model.safetensors        the safetensors header must describe ViT-B/32's CLIPModel
#                            (patch embedding (768, 3, 32, 32), token embedding
#                            (49408, 512), projections (512, 768) and (512, 512),
#                            logit_scale); its SHA-256 is checked when known: set
#                            CLIP_MODEL_SHA256 (no verified digest is built in)
# A file that fails a check is removed and the script stops with an error.
set -euo pipefail

REPO="openai/clip-vit-base-patch32"
# The commit that added model.safetensors ("Adding `safetensors` variant of
# this model"); merges.txt and vocab.json are unchanged since "add files".
COMMIT="b527df4b30e5cc18bde1cc712833a741d2d8c362"
BASE_URL="https://huggingface.co/$REPO/resolve/$COMMIT"

MERGES_SHA256="9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a"
MERGES_BYTES=524619
VOCAB_SHA256="5047b556ce86ccaf6aa22b3ffccfc52d391ea4accdab9c2f2407da5b742d4363"
VOCAB_BYTES=862328
MODEL_SHA256=${CLIP_MODEL_SHA256:-} # UNVERIFIED: not built in (weights/README.md)

FETCH_NAME=fetch_clip
FROM_DIR=""
ONLY=all
while [ $# -gt 0 ]; do
    case "$1" in
    --from)
        FROM_DIR=${2:?--from needs a folder}
        shift 2
        ;;
    --only)
        ONLY=${2:?--only needs tokenizer or model}
        shift 2
        ;;
    -h | --help)
        sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "fetch_clip: error: unknown option '$1' (see --help)" >&2
        exit 2
        ;;
    *) break ;;
    esac
done
DEST=${1:-$(dirname "$0")/clip-vit-base-patch32}

# die, fetch_to, reject, verify_digest
. "$(dirname "$0")/fetch_common.sh"

case "$ONLY" in
all | tokenizer | model) ;;
*) die "--only must be tokenizer or model, not '$ONLY'" ;;
esac

# The safetensors header of a file (its first 8 bytes are the header length,
# little-endian), without whitespace.
safetensors_header() {
    local len
    len=$(od -A n -t u8 -N 8 "$1" | tr -d ' ')
    [ -n "$len" ] && [ "$len" -gt 1 ] && [ "$len" -lt 100000000 ] || return 1
    head -c "$((len + 8))" "$1" | tail -c +9 | tr -d ' \n\r\t'
}

# verify_model PART: the header describes ViT-B/32's CLIPModel; the digest when known.
verify_model() {
    local part=$1 header entry
    header=$(safetensors_header "$part") || reject "$part" "not a safetensors file"
    for entry in \
        '"vision_model.embeddings.patch_embedding.weight":{"dtype":"F32","shape":[768,3,32,32]' \
        '"vision_model.embeddings.position_embedding.weight":{"dtype":"F32","shape":[50,768]' \
        '"vision_model.encoder.layers.11.self_attn.q_proj.weight":{"dtype":"F32","shape":[768,768]' \
        '"text_model.embeddings.token_embedding.weight":{"dtype":"F32","shape":[49408,512]' \
        '"text_model.encoder.layers.11.mlp.fc1.weight":{"dtype":"F32","shape":[2048,512]' \
        '"visual_projection.weight":{"dtype":"F32","shape":[512,768]' \
        '"text_projection.weight":{"dtype":"F32","shape":[512,512]' \
        '"logit_scale":{"dtype":"F32","shape":[]'; do
        case "$header" in
        *"$entry"*) ;;
        *) reject "$part" "not $REPO's CLIPModel: its header lacks ${entry%%:\{*} with ${entry#*\{}" ;;
        esac
    done
    echo "verified $(basename "${part%.part}"): the tensors of $REPO's CLIPModel (ViT-B/32)"
    if [ -n "$MODEL_SHA256" ]; then
        verify_digest "$part" "$MODEL_SHA256"
    else
        echo "not verified: the SHA-256 of model.safetensors is $(sha256sum "$part" | cut -d' ' -f1);" \
            "compare it with 'SHA256' under 'Git LFS Details' on" \
            "https://huggingface.co/$REPO/blob/$COMMIT/model.safetensors (or set CLIP_MODEL_SHA256)"
    fi
}

# get NAME CHECK ARGS...: fetch, check, then move into place.
get() {
    local name=$1
    shift
    fetch_to "$BASE_URL/$name" "$DEST/$name.part"
    "$@" "$DEST/$name.part"
    mv "$DEST/$name.part" "$DEST/$name"
    echo "ready: $DEST/$name"
}
check_merges() { verify_digest "$1" "$MERGES_SHA256" "$MERGES_BYTES"; }
check_vocab() { verify_digest "$1" "$VOCAB_SHA256" "$VOCAB_BYTES"; }

mkdir -p "$DEST"
if [ "$ONLY" != model ]; then
    get merges.txt check_merges
    get vocab.json check_vocab
fi
if [ "$ONLY" != tokenizer ]; then
    get model.safetensors verify_model
fi

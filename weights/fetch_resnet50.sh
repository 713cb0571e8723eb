#!/usr/bin/env bash
# Download ImageNet ResNet-50 weights, verify their SHA-256, and (for
# torchvision's pickled .pth files) convert them to safetensors, which is
# what mmchain loads (`mmchain embed --model resnet50 --weights FILE`).
#
#   weights/fetch_resnet50.sh [timm|tv1|tv2|all] [DEST]      (default: timm, weights/)
#   weights/fetch_resnet50.sh --from DIR [timm|tv1|tv2|all] [DEST]
#                      use files already downloaded into DIR (offline machines);
#                      they are verified exactly like downloads
#
#   timm  timm/resnet50.a1_in1k model.safetensors (Hugging Face), 80.4 % top-1,
#         already safetensors: verified and copied as resnet50.a1_in1k.safetensors
#   tv1   torchvision ResNet50_Weights.IMAGENET1K_V1, resnet50-0676ba61.pth, 76.13 %
#   tv2   torchvision ResNet50_Weights.IMAGENET1K_V2, resnet50-11ad3fa6.pth, 80.86 %
#         -> resnet50-tv1.safetensors / resnet50-tv2.safetensors
#
# The conversion needs Debian's python3-torch (/usr/bin/python3). It uses the
# `safetensors` package when installed and otherwise writes the format
# directly (a JSON header and the raw little-endian data), in both cases from
# the same state_dict, so the names are torchvision's (conv1.weight,
# layer1.0.bn1.running_mean, ..., num_batches_tracked as I64).
set -euo pipefail

# ---- what we fetch, and the SHA-256 each file must have ----
# timm: the Git LFS object of model.safetensors at the "Add model" commit
# (unchanged since); the hash is the LFS object id shown by Hugging Face.
TIMM_URL="https://huggingface.co/timm/resnet50.a1_in1k/resolve/93271f4677dbf7b4d7f7e7d9d7811bd66c327e56/model.safetensors"
TIMM_SHA256="773525d5821de224f8f30c33377b7a795d7863e08522698200d3217d3f2a41bb"
# torchvision: the file name carries the first 8 hex digits of the SHA-256
# (torch.hub's check_hash convention); the full digests below start with them.
TV1_URL="https://download.pytorch.org/models/resnet50-0676ba61.pth"
TV1_SHA256="0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a"
TV2_URL="https://download.pytorch.org/models/resnet50-11ad3fa6.pth"
TV2_SHA256="11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca"

PYTHON=${PYTHON:-/usr/bin/python3}
FETCH_NAME=fetch_resnet50
FROM_DIR=""
if [ "${1:-}" = "--from" ]; then
    FROM_DIR=${2:?--from needs a folder}
    shift 2
fi
WHICH=${1:-timm}
DEST=${2:-$(dirname "$0")}

# die, fetch_to, reject, verify_digest
. "$(dirname "$0")/fetch_common.sh"

# convert PTH SAFETENSORS: torchvision state_dict -> safetensors.
convert() {
    "$PYTHON" - "$1" "$2" <<'EOF' || die "conversion of $1 failed (needs /usr/bin/python3 with torch)"
import json, os, struct, sys
import torch
src, dst = sys.argv[1], sys.argv[2]
state = torch.load(src, map_location="cpu")
state = {k: v.contiguous() for k, v in state.items()}
try:
    from safetensors.torch import save_file  # the reference writer, when installed
    save_file(state, dst + ".part")
except ImportError:
    dtypes = {torch.float32: "F32", torch.int64: "I64", torch.float16: "F16"}
    header, offset = {}, 0
    for k, v in state.items():
        n = v.numel() * v.element_size()
        header[k] = {"dtype": dtypes[v.dtype], "shape": list(v.shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(dst + ".part", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for v in state.values():
            f.write(v.numpy().tobytes())
os.replace(dst + ".part", dst)
print(f"converted {os.path.basename(src)} -> {os.path.basename(dst)} ({len(state)} tensors)")
EOF
}

get_timm() {
    local out="$DEST/resnet50.a1_in1k.safetensors"
    fetch_to "$TIMM_URL" "$out.part"
    verify_digest "$out.part" "$TIMM_SHA256"
    mv "$out.part" "$out"
    echo "ready: $out"
}

get_torchvision() { # URL SHA256 NAME
    local pth="$DEST/$(basename "$1")" out="$DEST/$3.safetensors"
    fetch_to "$1" "$pth.part"
    verify_digest "$pth.part" "$2"
    mv "$pth.part" "$pth"
    convert "$pth" "$out"
    echo "ready: $out"
}

mkdir -p "$DEST"
case "$WHICH" in
timm) get_timm ;;
tv1) get_torchvision "$TV1_URL" "$TV1_SHA256" resnet50-tv1 ;;
tv2) get_torchvision "$TV2_URL" "$TV2_SHA256" resnet50-tv2 ;;
all)
    get_timm
    get_torchvision "$TV1_URL" "$TV1_SHA256" resnet50-tv1
    get_torchvision "$TV2_URL" "$TV2_SHA256" resnet50-tv2
    ;;
*) die "unknown weights '$WHICH' (expected timm, tv1, tv2 or all)" ;;
esac

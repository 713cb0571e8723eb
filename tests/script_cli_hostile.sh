#!/usr/bin/env bash
# Hostile use of the program, one case per class of failure it must survive:
# each ends in exit status 1, one clear line on stderr, and nothing lost.
#   - a full disk (writes past a small size fail: ulimit -f, with SIGXFSZ
#     ignored so that write() returns EFBIG as it would return ENOSPC):
#     show --out keeps the old PNG, synth leaves no partial tile;
#   - resuming a folder that is not a run creates nothing in it;
#   - a second train on a run folder in use is refused (eval of it is not);
#   - NaN in an input tile, in CLIP's weights or in a checkpoint is refused,
#     naming the file (and the tensor);
#   - model files declaring a network far larger than they hold (CLIP's
#     token embedding stored transposed; a checkpoint whose metadata claims
#     a 4096-wide stem or 1000 blocks per stage) are refused from the
#     tensors' shapes within seconds, under a memory limit, before any of it
#     is built; a tensor name given twice is named as such;
#   - a full disk while training stops the run and keeps the last checkpoint;
#   - garbage, duplicated and leaking split files, duplicate --bands, CLIP
#     widths its attention heads do not divide;
#   - usage errors exit 1 like every other error.
# Killed runs resuming bit-identically: script_cli_train_resume.sh; the
# program under valgrind: script_cli_valgrind.sh; a run's memory limit:
# script_cli_max_memory.sh; every parser and model loader under libFuzzer:
# tests/fuzz.
set -u
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cli=${MMCHAIN_CLI:?MMCHAIN_CLI must name the mmchain program}
. "$(dirname "$0")/support/script_common.sh"

# No file may keep an atomic writer's temporary name.
no_temporaries() {
    local left
    left=$(find "$1" -name '*.tmp.*' | head -3)
    [ -z "$left" ] || fail "$2: temporary files left behind: $left"
}

# Run a command where no file may grow past $1 KiB (bash's ulimit -f unit).
with_full_disk() {
    local kib=$1
    shift
    (trap '' XFSZ; ulimit -f "$kib"; exec "$@")
}

# ---- a full disk ----
"$cli" synth --out "$tmp/world" --per-class 1 --seed 3 --no-png >/dev/null 2>"$tmp/err" ||
    fail "synth: $(cat "$tmp/err")"
tile=$(find "$tmp/world" -name '*.tif' | sort | head -1)
tile_size=$(stat -c %s "$tile")
"$cli" show "$tile" --out "$tmp/sheet.png" >/dev/null 2>"$tmp/err" || fail "show: $(cat "$tmp/err")"
cp "$tmp/sheet.png" "$tmp/sheet.good"
# Two tiles make a larger sheet, which does not fit in 4 KiB.
if expect_error "show --out on a full disk" "sheet.png" \
    with_full_disk 4 "$cli" show "$tmp/world" --out "$tmp/sheet.png"; then
    cmp -s "$tmp/sheet.png" "$tmp/sheet.good" || fail "show --out replaced the good PNG after a failed write"
fi
no_temporaries "$tmp" "show --out"
expect_error "synth on a full disk" ".tif" with_full_disk 16 "$cli" synth --out "$tmp/world2" --per-class 2 --no-png
no_temporaries "$tmp/world2" "synth"
while IFS= read -r f; do
    [ "$(stat -c %s "$f")" = "$tile_size" ] || fail "synth left a partial tile $f ($(stat -c %s "$f") bytes)"
done < <(find "$tmp/world2" -name '*.tif')

# ---- run folders ----
mkdir -p "$tmp/notes"
echo "my own notes" >"$tmp/notes/notes.txt"
expect_error "train --resume on a folder that is not a run" "config.json" "$cli" train --resume "$tmp/notes"
[ "$(ls -A "$tmp/notes")" = "notes.txt" ] || fail "train --resume created files in a non-run folder: $(ls -A "$tmp/notes")"

chain_fixture 8
args=("${tiny_run[@]}" --width 8 --batch 4 --val-batch 8 --epochs 50 --seed 5 --quiet)
"$cli" train "${args[@]}" --out "$tmp/run" >/dev/null 2>"$tmp/first.err" &
first=$!
for _ in $(seq 1 3000); do # until the first has taken its lock (up to ~30 s)
    [ -e "$tmp/run/.lock" ] && break
    sleep 0.01
done
expect_error "a second train on the same run folder" "in use by another mmchain process" \
    "$cli" train "${args[@]}" --out "$tmp/run" --overwrite
# eval only reads a run: it may evaluate one that is still training.
for _ in $(seq 1 3000); do # until the first has written a checkpoint (up to ~30 s)
    [ -e "$tmp/run/checkpoints/last.safetensors" ] && break
    sleep 0.01
done
"$cli" eval --run "$tmp/run" --which last >/dev/null 2>"$tmp/err" ||
    fail "eval of a run that is training: $(cat "$tmp/err")"
kill -KILL "$first" 2>/dev/null
wait "$first" 2>/dev/null
# A new run in that folder (no --resume) is refused, and the killed run's
# checkpoint stays: a later --resume would load it under the new config.
cp "$tmp/run/checkpoints/last.safetensors" "$tmp/last.kept"
expect_error "a new train on a folder that holds a run" "pass --overwrite" \
    "$cli" train "${args[@]}" --epochs 1 --out "$tmp/run"
cmp -s "$tmp/run/checkpoints/last.safetensors" "$tmp/last.kept" ||
    fail "a refused train changed the run's checkpoint"
expect_error "train --resume with --overwrite" "cannot go with --resume" \
    "$cli" train --resume "$tmp/run" --overwrite
expect_error "pretrain-clip into a folder that holds a run" "pass --overwrite" \
    "$cli" pretrain-clip --synth 20 --epochs 1 --out "$tmp/run"
if expect_error "demo into a train's run folder" "pass --overwrite" "$cli" demo --tiny --out "$tmp/run"; then
    if grep -q -- "--resume" "$tmp/err"; then fail "demo's refusal offers --resume, which demo has not"; fi
fi
cmp -s "$tmp/run/checkpoints/last.safetensors" "$tmp/last.kept" ||
    fail "a refused pretrain-clip changed the run's checkpoint"

# ---- non-finite input ----
python3 - "$tmp/nan.tif" <<'EOF' || fail "could not write nan.tif"
import struct, sys
# A 2x2 single-band float32 TIFF whose second sample is NaN.
entries = [(256, 3, 2), (257, 3, 2), (258, 3, 32), (259, 3, 1), (262, 3, 1), (273, 4, 0),
           (277, 3, 1), (278, 3, 2), (279, 4, 16), (339, 3, 3)]
data_offset = 8 + 2 + 12 * len(entries) + 4
out = b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", len(entries))
for tag, kind, value in entries:
    value = data_offset if tag == 273 else value
    out += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
out += struct.pack("<I", 0) + struct.pack("<4f", 0.5, float("nan"), 0.25, 1.0)
open(sys.argv[1], "wb").write(out)
EOF
expect_error "a tile holding NaN" "nan.tif holds NaN" "$cli" show "$tmp/nan.tif" --out "$tmp/nan.png"
[ ! -e "$tmp/nan.png" ] || fail "show wrote a sheet of a NaN tile"

# ---- hostile model files ----
# A copy of safetensors file $1 as $2 with its header edited by python
# code $3 (h: the header as a dict; data: the tensor bytes).
forge() {
    python3 - "$1" "$2" "$3" <<'EOF'
import json, struct, sys
src, dst, code = sys.argv[1:4]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h, data = json.loads(raw[8:8 + n]), bytearray(raw[8 + n:])
exec(code)
header = json.dumps(h).encode()
open(dst, "wb").write(struct.pack("<Q", len(header)) + header + bytes(data))
EOF
}
# Run a command under a 4 GB address-space limit and 60 s (the unchecked
# loaders took 13-31 s and tens of GB); no address-space limit under ASan,
# which reserves terabytes of shadow memory.
with_limits() {
    if [ -n "${MMCHAIN_SANITIZER_RUN:-}" ]; then
        timeout 60 "$@"
    else
        (ulimit -v 4000000; exec timeout 60 "$@")
    fi
}
tile=$(find "$data" -name '*.tif' | sort | head -1)
forge "$clip" "$tmp/transposed.safetensors" '
e = h["text_model.embeddings.token_embedding.weight"]; e["shape"] = e["shape"][::-1]'
expect_error "CLIP with a transposed token embedding" "needs tensor text_model." \
    with_limits "$cli" train "${args[@]}" --clip "$tmp/transposed.safetensors" --out "$tmp/m1"
[ ! -e "$tmp/m1" ] || fail "a refused CLIP file left a run folder"
forge "$clip" "$tmp/nan_clip.safetensors" '
o = h["text_projection.weight"]["data_offsets"][0]; data[o:o + 4] = struct.pack("<f", float("nan"))'
expect_error "CLIP weights holding NaN" "tensor text_projection.weight holds NaN" \
    "$cli" train "${args[@]}" --clip "$tmp/nan_clip.safetensors" --out "$tmp/m2"
printf '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' >"$tmp/dup.json"
python3 -c 'import struct, sys; h = open(sys.argv[1], "rb").read(); open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + bytes(8))' \
    "$tmp/dup.json" "$tmp/dup.safetensors"
expect_error "a tensor name given twice" 'the tensor name "a" appears twice' \
    "$cli" embed --checkpoint "$tmp/dup.safetensors" "$tile" --output "$tmp/dup.out"

# A genuine checkpoint (two steps), then copies claiming a huge encoder,
# and one whose weights hold NaN.
"$cli" train "${args[@]}" --out "$tmp/ck" --stop-after-steps 2 --checkpoint-every 1 >/dev/null 2>"$tmp/err" ||
    fail "train for a checkpoint: $(cat "$tmp/err")"
ck=$tmp/ck/checkpoints/last.safetensors
forge "$ck" "$tmp/wide.safetensors" 'h["__metadata__"]["base_width"] = "4096"'
expect_error "a checkpoint claiming width 4096" "needs tensor conv1.weight (4096," \
    with_limits "$cli" embed --checkpoint "$tmp/wide.safetensors" "$tile" --output "$tmp/wide.out"
forge "$ck" "$tmp/deep.safetensors" 'h["__metadata__"]["layers"] = "1000,1000,1000,1000"'
expect_error "a checkpoint claiming 1000 blocks per stage" "needs tensor layer1.1.conv1.weight" \
    with_limits "$cli" embed --checkpoint "$tmp/deep.safetensors" "$tile" --output "$tmp/deep.out"
forge "$ck" "$tmp/nan_ck.safetensors" '
o = h["fc.weight"]["data_offsets"][0]; data[o:o + 4] = struct.pack("<f", float("inf"))'
expect_error "a checkpoint holding Inf" "tensor fc.weight holds" \
    "$cli" embed --checkpoint "$tmp/nan_ck.safetensors" "$tile" --output "$tmp/nan.out"

# ---- a full disk while training ----
# The resumed run writes its next checkpoint at step 3: it cannot (no file
# may grow to half a checkpoint), so it stops with the last one intact.
cp "$ck" "$tmp/last.good"
half_kib=$(( $(stat -c %s "$ck") / 2048 ))
expect_error "training on a full disk" "last.safetensors" \
    with_full_disk "$half_kib" "$cli" train --resume "$tmp/ck" --stop-after-steps 3 --quiet
cmp -s "$ck" "$tmp/last.good" || fail "a failed checkpoint write replaced the last checkpoint"
no_temporaries "$tmp/ck" "train on a full disk"

# ---- split files and bands ----
mkdir -p "$tmp/splits"
first_tile=$(basename "$(find "$data" -name '*.tif' | sort | head -1)")
printf '\033[2J\007\377garbage\n' >"$tmp/splits/eurosat-train.txt"
: >"$tmp/splits/eurosat-val.txt"
if expect_error "a garbage split file" "is not in" "$cli" train "${args[@]}" --splits "$tmp/splits" --out "$tmp/s1"; then
    if grep -q $'\033' "$tmp/err"; then fail "the split file's raw bytes reached the terminal"; fi
    grep -qF '\x1b[2J\x07\xffgarbage' "$tmp/err" || fail "no sanitised excerpt: $(cat -v "$tmp/err")"
fi
echo "$first_tile" >"$tmp/splits/eurosat-train.txt"
echo "$first_tile" >"$tmp/splits/eurosat-val.txt"
expect_error "a tile in both train and val" "also in the train split" \
    "$cli" train "${args[@]}" --splits "$tmp/splits" --out "$tmp/s2"
expect_error "--bands B08,B08" "named twice" "$cli" train "${args[@]}" --bands B08,B08 --out "$tmp/s3"

# A CLIP tower width whose attention heads (width / 64) do not divide it:
# refused naming the flag, before a run folder exists.
expect_error "pretrain-clip --width 200" "--width 200: the tower's 3 attention heads" \
    "$cli" pretrain-clip --synth 20 --width 200 --out "$tmp/w200"
[ ! -e "$tmp/w200" ] || fail "pretrain-clip --width 200 created its run folder"
expect_error "demo --text-width 199" "--text-width 199: the tower's 3 attention heads" \
    "$cli" demo --tiny --text-width 199 --out "$tmp/d199"
[ ! -e "$tmp/d199" ] || fail "demo --text-width 199 created its run folder"

# ---- options that would be ignored: refused instead ----
expect_error "embed --batch without --checkpoint" "--batch goes with --checkpoint" \
    "$cli" embed --model resnet --weights "$tmp/none.safetensors" --input "$tmp/none.safetensors" \
    --output "$tmp/e.safetensors" --batch 8
expect_error "synth --rgb-out with --no-png" "cannot go with --no-png" \
    "$cli" synth --out "$tmp/w3" --per-class 1 --rgb-out "$tmp/w3-rgb" --no-png
[ ! -e "$tmp/w3" ] || fail "a refused synth created $tmp/w3"
expect_error "demo --hop2-bands with one hop" "need --hops 2" \
    "$cli" demo --tiny --hop2-bands B01,B09,B10 --out "$tmp/d2"
[ ! -e "$tmp/d2" ] || fail "a refused demo created its run folder"
expect_error "demo with patches that do not tile the tiles" "is not a multiple of --clip-patch 5" \
    "$cli" demo --tiny --clip-patch 5 --out "$tmp/d3"
[ ! -e "$tmp/d3" ] || fail "a demo refused for its --clip-patch created its run folder"
expect_error "train --target-crops without augmentation" "--target-crops cannot go with --no-augment" \
    "$cli" train "${args[@]}" --no-augment --target-crops 4 --out "$tmp/na"
expect_error "train --crop-min without augmentation" "--crop-min cannot go with --no-augment" \
    "$cli" train "${args[@]}" --no-augment --crop-min 0.5 --out "$tmp/na"
[ ! -e "$tmp/na" ] || fail "a refused train created its run folder"
expect_error "eval --which with --checkpoint" "cannot go with --checkpoint" \
    "$cli" eval --run "$tmp/run" --which last --checkpoint "$tmp/last.kept"
expect_error "search --which with --checkpoint" "cannot go with --checkpoint" \
    "$cli" search --run "$tmp/run" --which last --checkpoint "$tmp/last.kept" --text forest

# ---- names from the data in JSON: a class folder named with a quote and a comma ----
cp -r "$data" "$tmp/odd"
first=$(ls "$tmp/odd" | head -1)
mv "$tmp/odd/$first" "$tmp/odd/Sea\"La,ke"
for f in "$tmp/odd/Sea\"La,ke"/*; do mv "$f" "$tmp/odd/Sea\"La,ke/Sea\"La,ke_${f##*_}"; done
"$cli" eval --checkpoint "$tmp/run/checkpoints/last.safetensors" --data "$tmp/odd" --clip "$clip" \
    --vocab "$vocab" --json >"$tmp/odd.json" 2>"$tmp/err" || fail "eval of the odd names: $(cat "$tmp/err")"
if command -v python3 >/dev/null; then
    python3 -c 'import json, sys; names = [c["name"] for c in json.load(sys.stdin)["classes"]]; assert "Sea\"La,ke" in names, names' \
        <"$tmp/odd.json" 2>"$tmp/err" || fail "eval --json with a quote in a class name: $(cat "$tmp/err")"
else
    echo "SKIPPED (python3 is absent): parsing eval's JSON"
fi
"$cli" ablate --data "$tmp/odd" --clip "$clip" --vocab "$vocab" --sets B08,B11,B12 --seeds 1 --epochs 1 \
    --depth 18 --width 4 --layers 1,1,1,1 --quiet --out "$tmp/odd-ablation" >/dev/null 2>"$tmp/err" ||
    fail "ablate of the odd names: $(cat "$tmp/err")"
if command -v python3 >/dev/null; then
    python3 -c 'import csv, sys; rows = list(csv.reader(sys.stdin)); assert "Sea\"La,ke_acc" in rows[0], rows[0]; assert all(len(r) == len(rows[0]) for r in rows), [len(r) for r in rows]' \
        <"$tmp/odd-ablation/ablation.csv" 2>"$tmp/err" || fail "ablation.csv with a comma in a class name: $(cat "$tmp/err")"
fi

# ---- a downloaded CLIP's folder is no place for a new run, and no run to resume ----
mkdir -p "$tmp/clip-folder"
printf 'weights' >"$tmp/clip-folder/model.safetensors"
printf 'merges' >"$tmp/clip-folder/merges.txt"
expect_error "pretrain-clip into a CLIP's folder" "holds a run already (model.safetensors, merges.txt)" \
    "$cli" pretrain-clip --synth 40 --epochs 1 --out "$tmp/clip-folder"
! grep -q -- "--resume" "$tmp/err" || fail "a model's folder was offered --resume: $(cat "$tmp/err")"
[ "$(cat "$tmp/clip-folder/model.safetensors")" = weights ] || fail "pretrain-clip changed a CLIP's weights"

# ---- a full standard output: an error, not a truncated result and status 0 ----
"$cli" eval --run "$tmp/run" --which last --json >/dev/full 2>"$tmp/err"
[ $? -eq 1 ] || fail "eval --json into a full device: exit status is not 1"
grep -q "cannot write to standard output" "$tmp/err" || fail "eval into a full device: $(cat "$tmp/err")"

# ---- usage errors: status 1 like any other error ----
expect_error "ablate with a seed past 2^64" "is not a seed" \
    "$cli" ablate --tiny --seeds 1,99999999999999999999 --out "$tmp/ab"
[ ! -e "$tmp/ab" ] || fail "a refused ablate created its run folder"
expect_error "synth with an unknown option" "unknown option" "$cli" synth --bogus
expect_error "synth without --per-class" "--per-class" "$cli" synth --out "$tmp/x"
"$cli" >/dev/null 2>&1
[ $? -eq 1 ] || fail "mmchain without a command: exit status is not 1"
"$cli" no-such-command >/dev/null 2>&1
[ $? -eq 1 ] || fail "mmchain with an unknown command: exit status is not 1"

finish "every hostile case ended in a clear error with nothing lost"

#!/usr/bin/env bash
# cgrpo convert: HF dir -> checkpoint -> HF dir is bit-identical (f32; the import at 1 and 3 ranks), and a bf16 export sharded at a size
# limit writes an index and loads back; a damaged checkpoint is refused.
set -euo pipefail
cgrpo=$1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 HDF5_USE_FILE_LOCKING=FALSE
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$cgrpo" init --preset tiny --out "$d/hf" --dtype f32 --seed 3 >/dev/null
mpirun -n 1 --bind-to none "$cgrpo" convert --from "$d/hf" --to "$d/ckpt"
ck="$d/ckpt/$(cat "$d/ckpt/latest")"
"$cgrpo" inspect "$ck" | grep "checksums all hold" >/dev/null
"$cgrpo" convert --from "$ck" --to "$d/back" --dtype f32
cmp "$d/hf/model.safetensors" "$d/back/model.safetensors" || { echo "FAIL: f32 round trip changed the weights"; exit 1; }
# the import at 3 ranks (ZeRO-3: each rank reads and writes its shard of every unit) exports the same bytes
mpirun -n 3 --oversubscribe --bind-to none "$cgrpo" convert --from "$d/hf" --to "$d/ckpt3" >/dev/null
"$cgrpo" convert --from "$d/ckpt3/$(cat "$d/ckpt3/latest")" --to "$d/back3" --dtype f32 >/dev/null
cmp "$d/hf/model.safetensors" "$d/back3/model.safetensors" || { echo "FAIL: 3-rank import changed the weights"; exit 1; }
"$cgrpo" convert --from "$ck" --to "$d/bf16" --dtype bf16 --shard-size-mb 0.05
test -f "$d/bf16/model.safetensors.index.json" || { echo "FAIL: no index for a sharded export"; exit 1; }
n=$(ls "$d/bf16"/model-*.safetensors | wc -l)
((n > 1)) || { echo "FAIL: expected several shards, got $n"; exit 1; }
"$cgrpo" inspect "$d/bf16" | grep "bf16" >/dev/null
# a flipped byte in the data is refused
python3 - "$ck" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) - 4096] ^= 0x20
open(p, "wb").write(bytes(b))
PY
if "$cgrpo" convert --from "$ck" --to "$d/bad" 2>"$d/err"; then echo "FAIL: damaged checkpoint exported"; exit 1; fi
grep -q "checksum mismatch" "$d/err" || { cat "$d/err"; echo "FAIL: no checksum message"; exit 1; }
echo "PASS ($n bf16 shards)"

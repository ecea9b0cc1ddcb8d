#!/usr/bin/env bash
# Checkpoint write/read MB/s at 1 and 2 ranks, beside dd to the same disk (with fdatasync), in one run.
# Usage: bench/checkpoint.sh [params_millions=32] [dir=runs/bench_ckpt]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mp=${1:-32} dir=${2:-$root/runs/bench_ckpt}
mkdir -p "$dir"
mb=$(python3 -c "print(int($mp * 12))")
for np in 1 2; do
  rm -rf "$dir/ck"
  "$root/launch/cgrpo-run" -n "$np" -- "$root/build/bench/bench_checkpoint" "$dir/ck" "$mp" 2 | grep checkpoint
done
echo "dd (same disk): $(dd if=/dev/zero of="$dir/dd.bin" bs=1M count="$mb" conv=fdatasync 2>&1 | tail -1)"
echo "dd read (cached): $(dd if="$dir/dd.bin" of=/dev/null bs=1M 2>&1 | tail -1)"
rm -rf "$dir"

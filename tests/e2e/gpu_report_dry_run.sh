#!/usr/bin/env bash
# bench/gpu_report.sh, the one command a GPU lease runs, planned on this machine: every step is there and finds
# its program (a renamed binary or a typo would otherwise cost device time). Usage: gpu_report_dry_run.sh BUILD_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CGRPO_REPORT_DRY_RUN=1 "$root/bench/gpu_report.sh" "$1" "$out" >/dev/null || { cat "$out/summary.txt"; echo "FAIL: plan"; exit 1; }
for s in selfcheck gpu_tests gpu_train gemm_best attention mfu_bf16 mfu_bf16_recompute mfu_tf32 generate_bf16 \
         generate_f32; do
  grep -q "^== $s: planned: " "$out/summary.txt" || { cat "$out/summary.txt"; echo "FAIL: step $s not planned"; exit 1; }
done
grep -q "^== nccl: " "$out/summary.txt" || { echo "FAIL: no nccl line"; exit 1; }
echo "PASS ($(grep -c planned "$out/summary.txt") steps planned)"

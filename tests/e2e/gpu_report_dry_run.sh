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
# a second call's selection (CGRPO_REPORT_STEPS): those steps, the rest listed as not selected
CGRPO_REPORT_DRY_RUN=1 CGRPO_REPORT_STEPS="mfu_bf16 generate_bf16" "$root/bench/gpu_report.sh" "$1" "$out" >/dev/null ||
  { cat "$out/summary.txt"; echo "FAIL: plan with a selection"; exit 1; }
[[ "$(grep -c ': planned: ' "$out/summary.txt")" == 2 ]] || { cat "$out/summary.txt"; echo "FAIL: selection"; exit 1; }
grep -q "^== mfu_bf16: planned: " "$out/summary.txt" && grep -q "^== gpu_tests: not selected" "$out/summary.txt" ||
  { cat "$out/summary.txt"; echo "FAIL: selection"; exit 1; }
# the time limits, with stand-in programs that take 6 s each: a step is cut at CGRPO_REPORT_STEP_S, and once under
# 15 s of CGRPO_REPORT_TOTAL_S are left the remaining steps are listed as not run (the report ends in time)
fake=$out/fake
mkdir -p "$fake"
for b in cgrpo cgrpo_gpu_tests bench_cuda_gemm_best bench_cuda_attention bench_model bench_generate bench_cuda_nccl; do
  printf '#!/bin/sh\ncase "$1" in --list-test-names-only) exit 0;; esac\nsleep 6\necho done\n' >"$fake/$b"
  chmod +x "$fake/$b"
done
t0=$SECONDS
CGRPO_REPORT_TOTAL_S=25 CGRPO_REPORT_STEP_S=4 CGRPO_REPORT_STEPS="selfcheck gpu_tests gemm_best mfu_bf16" \
  "$root/bench/gpu_report.sh" "$fake" "$out/timed" >/dev/null && { echo "FAIL: timed-out steps passed"; exit 1; }
s=$out/timed/summary.txt
grep -q "^== selfcheck: TIMED OUT after 4 s" "$s" && grep -q "^== gemm_best: TIMED OUT after 4 s" "$s" &&
  grep -q "^== mfu_bf16: not run (the report's 25 s are spent)" "$s" || { cat "$s"; echo "FAIL: time limits"; exit 1; }
((SECONDS - t0 < 20)) || { echo "FAIL: the report took $((SECONDS - t0)) s of its 25"; exit 1; }
echo "PASS ($(grep -c planned "$out/summary.txt") steps planned; time limits hold)"

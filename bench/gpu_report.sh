#!/usr/bin/env bash
# Everything issue 12 asks to measure on a GPU, in one command: bench/gpu_report.sh BIN_DIR OUT_DIR
#   BIN_DIR: a folder holding cgrpo, cgrpo_gpu_tests and the bench_* binaries (an unpacked launch/device-bundle's
#            bin/), or a build tree (build/: binaries under ., tests/ and bench/).
#   OUT_DIR: summary.txt (each step's exit status, wall seconds and its key lines) and all.log (every step's whole
#            output, one after another): two files, so a device lease's output folder takes them both.
# Steps, in the order of the README's GPU table: selfcheck --gpu (numerics against the CPU), the GPU tests, the
# end-to-end gpu_train (SFT, GRPO, resume, bf16 on CUDA against the CPU), GEMM against cuBLASLt's best, attention
# TFLOP/s, training-step MFU on the 1b preset (bf16 without and with recompute, then TF32), generation tokens/s at
# batch 1-16 (bf16, fp32), then the tensor-core attention tests under compute-sanitizer memcheck (when the node has
# it; its own limit, CGRPO_REPORT_SANITIZER_S, default 180 s: the kernels run 10-100x slower there), and NCCL bus
# bandwidth when mpirun and two or more GPUs are there. A step that needs a GPU and finds none exits 77 and is
# listed as skipped; every step runs under a time limit (CGRPO_REPORT_STEP_S, default 300 s) so one hang cannot
# eat a device lease, and the whole report within CGRPO_REPORT_TOTAL_S (default 570 s, inside a lease's 600 s
# command): a step gets at most the time left, and once under 15 s are left the rest are listed as not run.
# CGRPO_REPORT_STEPS="gemm_best mfu_bf16 ...": run only those steps (the others are listed as not selected), e.g.
# the remainder on a second call.
# CGRPO_REPORT_DRY_RUN=1: no GPU probe and nothing run; each step is listed as "planned" after checking that its
# program exists (tests/e2e/gpu_report_dry_run.sh runs this on every machine, so a lease never finds a typo).
set -uo pipefail
bin=$1 out=$2
mkdir -p "$out"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
find_bin() {  # find_bin NAME: the binary in BIN_DIR or its build-tree subfolders
  local n
  for n in "$bin/$1" "$bin/tests/$1" "$bin/bench/$1"; do [[ -x $n ]] && { echo "$n"; return; }; done
  echo "gpu_report: $1 not found under $bin" >&2
  return 1
}
limit=${CGRPO_REPORT_STEP_S:-300}
summary=$out/summary.txt all=$out/all.log
: >"$summary"
: >"$all"
dry=${CGRPO_REPORT_DRY_RUN:-0}
total=${CGRPO_REPORT_TOTAL_S:-570} only=${CGRPO_REPORT_STEPS:-}
step() {  # step NAME GREP_PATTERN CMD...: run CMD with a limit, log it, summarise its status and key lines
  local name=$1 pat=$2 rc=0 t0=$SECONDS
  shift 2
  if [[ -n $only && " $only " != *" $name "* ]]; then
    printf '== %s: not selected (CGRPO_REPORT_STEPS)\n' "$name" | tee -a "$summary"
    return
  fi
  local left=$((total - SECONDS))
  if ((!dry && left < 15)); then
    printf '== %s: not run (the report'"'"'s %d s are spent)\n' "$name" "$total" | tee -a "$summary"
    return
  fi
  if ((dry)); then
    if [[ -n ${1:-} ]] && command -v "$1" >/dev/null; then
      printf '== %s: planned: %s\n' "$name" "$*" | tee -a "$summary"
    else
      printf '== %s: FAILED (no program: %s)\n' "$name" "${1:-<none>}" | tee -a "$summary"
    fi
    return
  fi
  local cap=$((limit < left ? limit : left))
  timeout "$cap" "$@" >"$log" 2>&1 || rc=$?
  { echo "==== $name: $*"; cat "$log"; } >>"$all"
  local state=ok
  ((rc == 77)) && state=skipped
  ((rc != 0 && rc != 77)) && state="FAILED (exit $rc)"
  ((rc == 124)) && state="TIMED OUT after $cap s"
  printf '== %s: %s, %d s\n' "$name" "$state" $((SECONDS - t0)) | tee -a "$summary"
  grep -E "$pat" "$log" | tail -40 >>"$summary" || true
}
cgrpo=$(find_bin cgrpo) && tests=$(find_bin cgrpo_gpu_tests) || exit 2
probe=0
((dry)) || "$tests" --list-test-names-only >"$log" 2>&1 || probe=$?
if ((probe == 77)); then
  echo "== no usable GPU: nothing to measure ($(grep SKIP "$log"))" | tee -a "$summary"
  exit 77
fi
root=$(cd "$(dirname "$0")/.." && pwd)
step selfcheck 'rank|selfcheck' "$cgrpo" selfcheck --gpu
step gpu_tests 'device 0|test cases|assertions|FAILED|SKIP' "$tests"
step gpu_train '^[A-D]:|step|PASS|FAIL' "$root/tests/e2e/gpu_train.sh" "$cgrpo" "$root" "$tests"
step gemm_best 'TF|tf|%|SKIP' "$(find_bin bench_cuda_gemm_best)" 1b 4096
step attention 'simt|tc|SKIP' "$(find_bin bench_cuda_attention)" 1b 4 512 1024 2048
step mfu_bf16 'MFU|tokens/s|peak|SKIP|preset|of the step|AdamW' "$(find_bin bench_model)" 1b 4 1024 3 0 cuda bf16
step mfu_bf16_recompute 'MFU|tokens/s|peak|SKIP|preset|of the step|AdamW' "$(find_bin bench_model)" 1b 4 1024 3 1 cuda bf16
step mfu_tf32 'MFU|tokens/s|peak|SKIP|preset|of the step|AdamW' "$(find_bin bench_model)" 1b 4 1024 3 0 cuda tf32
step generate_bf16 '^ *[0-9]+ |preset|SKIP' "$(find_bin bench_generate)" 1b 32 32 cuda bf16
step generate_f32 '^ *[0-9]+ |preset|SKIP' "$(find_bin bench_generate)" 1b 32 32 cuda f32
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [[ -x $sanitizer ]]; then
  limit_before=$limit
  limit=${CGRPO_REPORT_SANITIZER_S:-180}
  step memcheck_tc 'ERROR SUMMARY|Invalid|test cases|assertions|FAILED' \
    "$sanitizer" --tool memcheck --error-exitcode 1 "$tests" '[tc]'
  limit=$limit_before
else
  echo "== memcheck_tc: skipped (no compute-sanitizer)" | tee -a "$summary"
fi
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if mpirun --version >/dev/null 2>&1 && ((gpus >= 2)); then
  step nccl 'busbw|MiB|SKIP' mpirun --allow-run-as-root -n "$gpus" --bind-to none "$(find_bin bench_cuda_nccl)" 1024
else
  printf '== nccl: skipped (%s GPU(s), mpirun %s)\n' "${gpus:-0}" "$(mpirun --version >/dev/null 2>&1 && echo found || echo missing)" |
    tee -a "$summary"
fi
! grep -q 'FAILED\|TIMED OUT' "$summary"

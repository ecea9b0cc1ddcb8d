#!/usr/bin/env bash
# cgrpo train on the CUDA backend against the CPU backend, end to end through the real binary (label gpu):
#  A. SFT: per-step loss and gradient norm on CUDA match the CPU run (1e-4 relative), final parameters close.
#  B. Two Coupled-GRPO rounds after 40 SFT steps: the rollouts draw the same Philox numbers, so the completions,
#     and with them the rewards, are identical unless a draw lands within ~1e-6 of a category boundary (rare), and
#     the loss agrees within 1e-3.
#  C. Resume: the CUDA run restarted from its step-2 checkpoint ends bit-identical to the uninterrupted CUDA run
#     (the kernels are deterministic), and the same checkpoint resumes on the CPU backend and trains on
#     (test_gpu_model checks that device and host engines load a checkpoint to the same bits).
#  D. Mixed precision (bf16 parameters and activations, fp32 master): SFT losses on CUDA within 2e-2 of the same
#     precision on the CPU oracle, and a bit-exact CUDA resume.
# Exits 77 (skipped) when the node has no usable CUDA device (probe: the gpu test binary's own check).
# CGRPO_GPU_TRAIN_BACKEND (default cuda) exists to dry-run this script's logic on a CPU-only machine.
set -euo pipefail
cgrpo=$1 root=$2 probe=$3
gpu=${CGRPO_GPU_TRAIN_BACKEND:-cuda}
rc=0
"$probe" --list-test-names-only >/dev/null 2>&1 || rc=$?
[ "$rc" = 77 ] && { echo "SKIP: no usable CUDA device"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# one rank: under launch/cgrpo-run, or as an MPI singleton where there is no mpirun (a GPU node running the
# launch/device-bundle binaries)
launch=("$root/launch/cgrpo-run" -n 1 --)
mpirun --version >/dev/null 2>&1 || launch=()
run() {  # run DIR BACKEND SUBCOMMAND [overrides...]
  local dir=$1 be=$2 sub=$3
  shift 3
  "${launch[@]}" "$cgrpo" "$sub" --config "$root/configs/tiny_cpu.ini" --run.dir "$dir" \
    --parallel.backend "$be" --run.eval_prompts 0 --run.logging_steps 1000 "$@" >"$dir.log" 2>&1 ||
    { cat "$dir.log"; fail "run $dir ($be)"; }
}
final() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")"; }
# compare KEY PHASE TOL A B: every step's KEY of PHASE agrees within TOL relative (0 = exactly)
compare() {
  python3 - "$@" <<'EOF'
import json, sys
key, phase, tol, a, b = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
rows = lambda f: [json.loads(l) for l in open(f) if f'"phase":"{phase}"' in l]
ra, rb = rows(a), rows(b)
assert ra and len(ra) == len(rb), f"{len(ra)} vs {len(rb)} {phase} rows"
for x, y in zip(ra, rb):
    va, vb = x[key], y[key]
    ok = va == vb if tol == 0 else abs(va - vb) <= tol * max(1.0, abs(va))
    print(f"{phase} step {x['step']}: {key} cpu {va:.7g} cuda {vb:.7g}")
    assert ok, f"{key} differs at {phase} step {x['step']}: {va} vs {vb} (tol {tol})"
EOF
}

# ---- A: SFT
sft=(--sft.steps 6 --checkpoint.every_steps 1000 --parallel.zero_stage 2)
run "$work/sft_cpu" cpu sft "${sft[@]}"
run "$work/sft_gpu" "$gpu" sft "${sft[@]}"
compare loss sft 1e-4 "$work/sft_cpu/metrics.jsonl" "$work/sft_gpu/metrics.jsonl" || fail "SFT loss differs"
compare grad_norm sft 1e-4 "$work/sft_cpu/metrics.jsonl" "$work/sft_gpu/metrics.jsonl" || fail "SFT grad norm differs"
"$cgrpo" inspect "$(final "$work/sft_cpu")" --diff "$(final "$work/sft_gpu")" --tol 5e-3 | tail -1
"$cgrpo" inspect "$(final "$work/sft_cpu")" --diff "$(final "$work/sft_gpu")" --tol 5e-3 >/dev/null ||
  fail "SFT parameters on CUDA differ from CPU by more than 5e-3"
echo "A: SFT on CUDA matches the CPU backend"

# ---- B: GRPO rounds
grpo=(--sft.steps 40 --run.max_steps 2 --grpo.grad_accum 1 --checkpoint.every_steps 1000)
run "$work/grpo_cpu" cpu train "${grpo[@]}"
run "$work/grpo_gpu" "$gpu" train "${grpo[@]}"
compare reward_mean grpo 0 "$work/grpo_cpu/metrics.jsonl" "$work/grpo_gpu/metrics.jsonl" || fail "GRPO rewards differ"
compare loss grpo 1e-3 "$work/grpo_cpu/metrics.jsonl" "$work/grpo_gpu/metrics.jsonl" || fail "GRPO loss differs"
echo "B: a Coupled-GRPO round on CUDA matches the CPU backend"

# ---- C: resume
res=(--sft.steps 10 --run.max_steps 4 --grpo.grad_accum 1 --checkpoint.every_steps 2 --checkpoint.keep_last 5
     --parallel.zero_stage 3)
run "$work/full" "$gpu" train "${res[@]}"
for be in gpu cpu; do
  mkdir -p "$work/res_$be/checkpoints"
  cp "$work/full/checkpoints/step_00000002.h5" "$work/res_$be/checkpoints/"
  echo step_00000002.h5 >"$work/res_$be/checkpoints/latest"
  run "$work/res_$be" "$([ $be = gpu ] && echo "$gpu" || echo cpu)" train "${res[@]}" --resume auto
  grep -q "resumed from .*step_00000002.h5 (grpo step 2" "$work/res_$be/logs/rank_0.log" || fail "no resume line ($be)"
done
"$cgrpo" inspect "$(final "$work/full")" --diff "$(final "$work/res_gpu")" --tol 0 >/dev/null ||
  fail "the resumed CUDA run is not bit-identical to the uninterrupted one"
[ "$(cat "$work/res_cpu/checkpoints/latest")" = step_00000004.h5 ] || fail "the CPU resume did not reach step 4"
echo "C: CUDA resume is bit-exact; a CUDA checkpoint resumes on the CPU backend"

# ---- D: bf16 parameters and activations
mp=(--parallel.param_dtype bf16 --parallel.compute_dtype bf16 --sft.steps 6 --checkpoint.every_steps 3
    --checkpoint.keep_last 5 --parallel.zero_stage 2)
run "$work/mp_cpu" cpu sft "${mp[@]}"
run "$work/mp_gpu" "$gpu" sft "${mp[@]}"
compare loss sft 2e-2 "$work/mp_cpu/metrics.jsonl" "$work/mp_gpu/metrics.jsonl" || fail "bf16 SFT loss differs"
mkdir -p "$work/mp_res/checkpoints"
cp "$work/mp_gpu/checkpoints/sft_step_00000003.h5" "$work/mp_res/checkpoints/"
echo sft_step_00000003.h5 >"$work/mp_res/checkpoints/latest"
run "$work/mp_res" "$gpu" sft "${mp[@]}" --resume auto
"$cgrpo" inspect "$(final "$work/mp_gpu")" --diff "$(final "$work/mp_res")" --tol 0 >/dev/null ||
  fail "the resumed bf16 CUDA SFT run is not bit-identical to the uninterrupted one"
echo "D: bf16 parameters and activations on CUDA match the CPU oracle; bit-exact resume"
echo "PASS"

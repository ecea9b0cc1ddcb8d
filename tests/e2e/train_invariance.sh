#!/usr/bin/env bash
# cgrpo train end to end under real mpirun (issue: Coupled-GRPO "works at every ZeRO stage and any world size"):
#  A. The same global batch (4 prompts x G = 8 per round; SFT 16 sequences per step) run at 1, 2 and 4 ranks
#     and ZeRO stages 0-3 ends with the same parameters (fp32 reduction-order tolerance), and at 4 ranks with one
#     micro-batch per rank the four stages agree bit for bit.
#  B. Resume: a run restarted from its step-2 checkpoint ends bit-identical to the uninterrupted run, with the
#     same per-step losses; the same checkpoint also resumes at 1 and 4 ranks at another stage and trains on.
#  C-H: bf16 traffic, SFT resume, bf16 precision and resume, ranks without work, uneven evaluation, and the
#     reference model's sharding (each section says what it shows).
set -euo pipefail
cgrpo=$1 root=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() {  # run NP DIR [overrides...]
  local np=$1 dir=$2
  shift 2
  "$root/launch/cgrpo-run" -n "$np" -- "$cgrpo" train --config "$root/configs/tiny_cpu.ini" --run.dir "$dir" \
    --run.eval_prompts 0 --run.logging_steps 1000 "$@" >"$dir.log" 2>&1 || { cat "$dir.log"; echo "FAIL: run $dir"; exit 1; }
}
final() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")"; }
fail() { echo "FAIL: $*"; exit 1; }

# ---- A: world sizes and stages
common=(--sft.steps 40 --run.max_steps 2 --grpo.per_device_batch 8)
for np in 1 2 4; do
  ga=$((4 / np)) sft_b=$((16 / np))
  for st in 0 1 2 3; do
    run "$np" "$work/w${np}s${st}" "${common[@]}" --grpo.grad_accum "$ga" --sft.batch_size "$sft_b" --parallel.zero_stage "$st"
  done
done
ref=$(final "$work/w1s0")
for np in 1 2 4; do
  for st in 0 1 2 3; do
    "$cgrpo" inspect "$ref" --diff "$(final "$work/w${np}s${st}")" --tol 2e-5 | tail -1
    "$cgrpo" inspect "$ref" --diff "$(final "$work/w${np}s${st}")" --tol 2e-5 >/dev/null ||
      fail "W=$np stage $st differs from W=1 stage 0 by more than 2e-5"
  done
done
for st in 1 2 3; do
  "$cgrpo" inspect "$(final "$work/w4s0")" --diff "$(final "$work/w4s${st}")" --tol 0 >/dev/null ||
    fail "W=4 stage $st is not bit-identical to stage 0"
done
echo "A: 1/2/4 ranks x stages 0-3 agree (2e-5); stages bit-identical at 4 ranks"
# ZeRO-3 rollouts: every unit gathered once per rollout, or unit by unit in every denoising forward: same bits
run 2 "$work/w2s3pu" "${common[@]}" --grpo.grad_accum 2 --sft.batch_size 8 --parallel.zero_stage 3 \
  --parallel.zero3_rollout_gather per_unit
"$cgrpo" inspect "$(final "$work/w2s3")" --diff "$(final "$work/w2s3pu")" --tol 0 >/dev/null ||
  fail "zero3_rollout_gather per_unit differs from once"
echo "A: ZeRO-3 rollout gathers once / per_unit give identical parameters"

# ---- B: bit-exact resume
b=(--sft.steps 40 --run.max_steps 6 --checkpoint.every_steps 2 --checkpoint.keep_last 5)
run 2 "$work/full" "${b[@]}"
mkdir -p "$work/resumed/checkpoints"
cp "$work/full/checkpoints/step_00000002.h5" "$work/resumed/checkpoints/"
echo step_00000002.h5 >"$work/resumed/checkpoints/latest"
run 2 "$work/resumed" "${b[@]}" --resume auto
grep -q "resumed from .*step_00000002.h5 (grpo step 2" "$work/resumed/logs/rank_0.log" || fail "no resume line"
"$cgrpo" inspect "$(final "$work/full")" --diff "$(final "$work/resumed")" --tol 0 >/dev/null ||
  fail "resumed params or moments differ"
strip() { grep '"phase":"grpo"' "$1" | sed 's/"ms_[a-z]*":[0-9.e+-]*,//g; s/"step_ms":[0-9.e+-]*,//; s/"tokens_per_s":[0-9.e+-]*//' | tail -4; }
diff <(strip "$work/full/metrics.jsonl") <(strip "$work/resumed/metrics.jsonl") || fail "per-step metrics differ after resume"
echo "B: resume from step 2 is bit-exact (params, moments, losses of steps 3-6)"
for np in 1 4; do
  mkdir -p "$work/reshard$np/checkpoints"
  cp "$work/full/checkpoints/step_00000002.h5" "$work/reshard$np/checkpoints/"
  run "$np" "$work/reshard$np" "${b[@]}" --resume auto --parallel.zero_stage 3 --grpo.per_device_batch $((32 / np)) --grpo.grad_accum 1
  grep -q "saved at 2 ranks, ZeRO-2" "$work/reshard$np/logs/rank_0.log" || fail "reshard $np did not resume"
  test -f "$work/reshard$np/checkpoints/step_00000006.h5" || fail "reshard $np did not finish"
done
echo "B: the 2-rank ZeRO-2 checkpoint resumes at 1 and 4 ranks under ZeRO-3 and trains to the end"

# ---- C: per-rank bytes sent in an SFT step (one micro-batch) = cgrpo plan's traffic for the stage
for np in 2 4; do
  for st in 0 1 2 3; do
    d="$work/traffic$np$st"
    mkdir -p "$d"
    "$root/launch/cgrpo-run" -n "$np" -- "$cgrpo" sft --config "$root/configs/tiny_cpu.ini" --run.dir "$d" \
      --sft.steps 2 --sft.batch_size 2 --parallel.zero_stage "$st" --run.eval_prompts 0 >"$d.log" 2>&1 || { cat "$d.log"; fail "sft $np/$st"; }
    sent=$(grep '"phase":"sft"' "$d/metrics.jsonl" | tail -1 | sed 's/.*"comm_bytes_sent":\([0-9]*\).*/\1/')
    plan=$("$cgrpo" plan --config "$root/configs/tiny_cpu.ini" --mode sft --world-size "$np" --stage "$st" --json |
      grep sent_bytes_per_step | tr -dc 0-9)
    # the only extra traffic is the gradient-norm scalar all-reduce (stages 1-3): a few bytes
    ((sent >= plan && sent <= plan + 16)) || fail "W=$np stage $st sent $sent bytes per step, plan says $plan"
  done
done
echo "C: bytes sent per step match cgrpo plan at 2 and 4 ranks, stages 0-3"
mp=(--parallel.param_dtype bf16 --parallel.compute_dtype bf16 --parallel.reduce_dtype bf16)
for st in 0 2 3; do  # bf16 gathers and bf16 gradient reductions: 2-byte elements both ways
  d="$work/traffic_bf16_$st"
  mkdir -p "$d"
  "$root/launch/cgrpo-run" -n 2 -- "$cgrpo" sft --config "$root/configs/tiny_cpu.ini" --run.dir "$d" \
    --sft.steps 2 --sft.batch_size 2 --parallel.zero_stage "$st" --run.eval_prompts 0 "${mp[@]}" >"$d.log" 2>&1 ||
    { cat "$d.log"; fail "sft bf16 $st"; }
  sent=$(grep '"phase":"sft"' "$d/metrics.jsonl" | tail -1 | sed 's/.*"comm_bytes_sent":\([0-9]*\).*/\1/')
  plan=$("$cgrpo" plan --config "$root/configs/tiny_cpu.ini" --mode sft --world-size 2 --stage "$st" --json "${mp[@]}" |
    grep sent_bytes_per_step | tr -dc 0-9)
  f32=$(grep '"phase":"sft"' "$work/traffic2$st/metrics.jsonl" | tail -1 | sed 's/.*"comm_bytes_sent":\([0-9]*\).*/\1/')
  ((sent >= plan && sent <= plan + 16)) || fail "bf16 W=2 stage $st sent $sent bytes per step, plan says $plan"
  ((2 * sent <= f32 + 32)) || fail "bf16 W=2 stage $st sent $sent bytes, not half of f32's $f32"
done
echo "C: bf16 parameters and reduction: bytes sent match cgrpo plan and halve f32's"

# ---- D: SFT checkpoints every checkpoint.every_steps and resumes mid-SFT bit-exactly
s=(--sft.steps 6 --checkpoint.every_steps 2 --checkpoint.keep_last 5)
mkdir -p "$work/sftfull" "$work/sftres/checkpoints"
"$root/launch/cgrpo-run" -n 2 -- "$cgrpo" sft --config "$root/configs/tiny_cpu.ini" --run.dir "$work/sftfull" \
  --run.eval_prompts 0 "${s[@]}" >"$work/sftfull.log" 2>&1 || { cat "$work/sftfull.log"; fail "sft full"; }
for k in 2 4 6; do test -f "$work/sftfull/checkpoints/sft_step_0000000$k.h5" || fail "no SFT checkpoint at step $k"; done
cp "$work/sftfull/checkpoints/sft_step_00000004.h5" "$work/sftres/checkpoints/"
echo sft_step_00000004.h5 >"$work/sftres/checkpoints/latest"
"$root/launch/cgrpo-run" -n 2 -- "$cgrpo" sft --config "$root/configs/tiny_cpu.ini" --run.dir "$work/sftres" \
  --run.eval_prompts 0 "${s[@]}" --resume auto >"$work/sftres.log" 2>&1 || { cat "$work/sftres.log"; fail "sft resume"; }
"$cgrpo" inspect "$(final "$work/sftfull")" --diff "$(final "$work/sftres")" --tol 0 >/dev/null ||
  fail "SFT resumed at step 4 is not bit-identical to the uninterrupted run"
echo "D: SFT checkpoints every 2 steps; resuming at step 4 ends bit-identical"

# ---- E: bf16 parameters (fp32 master), then bf16 activations, then bf16 gradient reduction on top: first SFT loss
#      within bf16 rounding of fp32, and a bit-exact resume (SFT, then GRPO rollouts and updates in that precision,
#      the reference, which keeps no fp32 master, mixed into at every step and restored from its bf16 values)
mkdir -p "$work/f32ref"
"$root/launch/cgrpo-run" -n 2 -- "$cgrpo" sft --config "$root/configs/tiny_cpu.ini" --run.dir "$work/f32ref" \
  --run.eval_prompts 0 --sft.steps 1 >"$work/f32ref.log" 2>&1 || { cat "$work/f32ref.log"; fail "f32 reference"; }
first() { grep '"phase":"sft"' "$1/metrics.jsonl" | head -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/'; }
for prec in f32:f32 bf16:f32 bf16:bf16; do  # activations:reduction, over bf16 parameters
  acts=${prec%:*} red=${prec#*:}
  d="$work/bf16_${acts}_$red"
  e=(--parallel.param_dtype bf16 --parallel.compute_dtype "$acts" --parallel.reduce_dtype "$red" --sft.steps 10
     --run.max_steps 4 --checkpoint.every_steps 2 --checkpoint.keep_last 5 --grpo.ref_model_sync_steps 1)
  run 2 "$d" "${e[@]}"
  mkdir -p "$d.res/checkpoints"
  cp "$d/checkpoints/step_00000002.h5" "$d.res/checkpoints/"
  echo step_00000002.h5 >"$d.res/checkpoints/latest"
  run 2 "$d.res" "${e[@]}" --resume auto
  "$cgrpo" inspect "$(final "$d")" --diff "$(final "$d.res")" --tol 0 >/dev/null ||
    fail "bf16 params, $acts activations, $red reduction: the resumed run is not bit-identical to the uninterrupted one"
  python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if abs(a - b) <= 2e-2 * abs(a) and a != b else 1)" \
    "$(first "$work/f32ref")" "$(first "$d")" ||
    fail "bf16 params, $acts activations, $red reduction: first SFT loss $(first "$d") is not within 2% of fp32's $(first "$work/f32ref") (or identical)"
  echo "E: bf16 parameters, $acts activations, $red reduction: first loss $(first "$d") vs fp32 $(first "$work/f32ref"); bit-exact resume"
done
[[ "$(first "$work/bf16_f32_f32")" != "$(first "$work/bf16_bf16_f32")" ]] || fail "bf16 activations changed nothing"

# ---- F: SFT steps in which a rank has no masked token (one answer token, one sequence per rank): that rank still
#      joins each unit's gradient collective in backward order, so 2 ranks end as 1 rank does (stages 2 and 3)
for st in 2 3; do
  for np in 1 2; do
    mkdir -p "$work/empty$np$st"
    "$root/launch/cgrpo-run" -n "$np" -- "$cgrpo" sft --config "$root/configs/tiny_cpu.ini" --run.dir "$work/empty$np$st" \
      --run.eval_prompts 0 --rollout.max_new_tokens 1 --rollout.steps 1 --sft.batch_size $((2 / np)) --sft.steps 12 \
      --parallel.zero_stage "$st" >"$work/empty$np$st.log" 2>&1 || { tail -20 "$work/empty$np$st.log"; fail "sft with empty ranks, $np ranks, stage $st"; }
  done
  "$cgrpo" inspect "$(final "$work/empty1$st")" --diff "$(final "$work/empty2$st")" --tol 2e-5 >/dev/null ||
    fail "stage $st: SFT with a rank lacking masked tokens differs between 1 and 2 ranks"
done
echo "F: SFT steps where one rank has no masked token: 2 ranks match 1 rank at stages 2 and 3"

# ---- G: the held-out evaluation at ZeRO-3 with prompts that do not split evenly over the ranks (31 on 2: 16 and
#      15, in generation batches of 5: 4 and 3 batches before padding): every rank runs the same forwards, so the
#      per-unit gathers pair up, and the mean reward after SFT equals one rank's
for np in 1 2; do
  mkdir -p "$work/eval$np"
  "$root/launch/cgrpo-run" -n "$np" -- "$cgrpo" train --config "$root/configs/tiny_cpu.ini" --run.dir "$work/eval$np" \
    --sft.steps 300 --sft.batch_size $((16 / np)) --grpo.per_device_batch $((16 / np)) --grpo.grad_accum 1 \
    --run.max_steps 2 --run.eval_prompts 31 --rollout.batch_size 5 --parallel.zero_stage 3 --run.logging_steps 1000 \
    >"$work/eval$np.log" 2>&1 || { tail -20 "$work/eval$np.log"; fail "ZeRO-3 evaluation with uneven prompts, $np ranks"; }
done
ev() { grep '"when":"before GRPO"' "$1/metrics.jsonl" | sed 's/.*"eval_reward":\([0-9.e+-]*\).*/\1/'; }
[[ -n "$(ev "$work/eval1")" && "$(ev "$work/eval1")" == "$(ev "$work/eval2")" ]] ||
  fail "ZeRO-3 evaluation: 2 ranks score $(ev "$work/eval2"), 1 rank $(ev "$work/eval1")"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)" "$(ev "$work/eval1")" || fail "the evaluation scored 0"
echo "G: ZeRO-3 evaluation over 31 prompts on 2 ranks: reward $(ev "$work/eval2") as on 1 rank"
# ---- H: the GRPO reference fully sharded (the default) or at the policy's ZeRO-2, mixed into at every step: the
#      same values, so the same run bit for bit, with and without its fp32 master in bf16
for m in "f32 false" "bf16 true" "bf16 false"; do
  set -- $m
  h=(--sft.steps 20 --run.max_steps 3 --grpo.ref_model_sync_steps 1 --parallel.zero_stage 2
     --parallel.param_dtype "$1" --parallel.ref_fp32_master "$2")
  mkdir -p "$work/ref3_$1$2" "$work/ref2_$1$2"
  run 2 "$work/ref3_$1$2" "${h[@]}"
  run 2 "$work/ref2_$1$2" "${h[@]}" --parallel.ref_full_shard false
  "$cgrpo" inspect "$(final "$work/ref3_$1$2")" --diff "$(final "$work/ref2_$1$2")" --tol 0 >/dev/null ||
    fail "$1 parameters, ref_fp32_master $2: a fully sharded reference changed the run"
done
echo "H: GRPO's reference fully sharded or at the policy's stage: bit-identical runs (f32; bf16 with and without its master)"
echo PASS

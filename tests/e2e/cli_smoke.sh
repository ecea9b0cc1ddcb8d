#!/usr/bin/env bash
# The binary answers --version, --help on every subcommand, and rejects an unknown subcommand.
set -euo pipefail
cgrpo=$1
"$cgrpo" --version | grep "^cgrpo [0-9]" >/dev/null
"$cgrpo" --version | grep "cuda=" >/dev/null
"$cgrpo" --help >/dev/null
for cmd in $("$cgrpo" --help | awk '/^commands:/{on=1; next} on && NF && $1 !~ /^--/ {print $1}'); do
  "$cgrpo" "$cmd" --help | grep "usage:" >/dev/null || { echo "FAIL: '$cmd --help' printed no usage"; exit 1; }
  echo "ok: $cmd --help"
done
if "$cgrpo" no-such-command 2>/dev/null; then echo "FAIL: unknown command accepted"; exit 1; fi
# every shipped config resolves and plans (the 7B recipe on 8 x 80 GB among them)
configs=$(cd "$(dirname "$0")/../../configs" && pwd)
for f in "$configs"/*.ini; do
  "$cgrpo" config -c "$f" >/dev/null
  "$cgrpo" plan -c "$f" --world-size 8 --device-mem-gb 80 | grep "ZeRO-3 per rank" >/dev/null || { echo "FAIL: plan $f"; exit 1; }
  echo "ok: plan $(basename "$f")"
done
"$cgrpo" plan -c "$configs/diffucoder_7b_grpo.ini" --world-size 8 --stage 2 --json | grep '"params_numel": 7615616512' >/dev/null ||
  { echo "FAIL: the 7B recipe does not plan 7,615,616,512 parameters"; exit 1; }
# mixed precision is checked with the config, so plan (like generate and eval) refuses what training would refuse
refused() {  # refused MESSAGE OVERRIDE...: plan of the 1B config with OVERRIDE fails and prints MESSAGE
  local msg=$1 err; shift
  err=$("$cgrpo" plan -c "$configs/1b_gpu.ini" -n 8 "$@" 2>&1 >/dev/null) && { echo "FAIL: plan accepted $*"; exit 1; }
  grep -qF -- "$msg" <<<"$err" || { echo "$err"; echo "FAIL: plan $* did not say: $msg"; exit 1; }
}
refused "parallel.param_dtype (command line) = 'f16' is not supported (f16 is not implemented)" --parallel.param_dtype f16
refused "parallel.compute_dtype (command line) = 'f16' is not supported" --parallel.compute_dtype f16
refused "parallel.compute_dtype ($configs/1b_gpu.ini:15) = bf16 needs parallel.param_dtype = bf16, which is f32 (command line)" \
  --parallel.param_dtype f32
echo "ok: plan refuses f16 and bf16 activations over f32 parameters"
# cgrpo report: metrics.jsonl -> HTML with one SVG plot per numeric metric; bad lines name file:line
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
printf '%s\n' '{"phase":"grpo","step":1,"loss":0.5,"reward_mean":0.1}' '{"phase":"grpo","step":2,"loss":0.4,"reward_mean":0.3}' \
  '{"phase":"summary","reward_before":0.1,"reward_after":0.3}' >"$run/metrics.jsonl"
"$cgrpo" report "$run" | grep "2 plots" >/dev/null
grep -q "reward_after" "$run/report.html"
[[ $(grep -o "<polyline" "$run/report.html" | wc -l) -eq 2 ]] || { echo "FAIL: report plots"; exit 1; }
echo 'not json' >>"$run/metrics.jsonl"
if "$cgrpo" report "$run" 2>"$run/err"; then echo "FAIL: bad metrics accepted"; exit 1; fi
grep -q "metrics.jsonl:4" "$run/err" || { echo "FAIL: no file:line"; exit 1; }
# train refuses sequences longer than the model's context (the tiny preset's 4096), before building anything
for args in "--grpo.max_prompt_length 4000 --rollout.max_new_tokens 200:= 4200 exceeds the model's max_position_embeddings 4096" \
            "--sft.max_length 5000:sft.max_length (5000) exceeds the model's max_position_embeddings 4096"; do
  msg=${args#*:}
  # shellcheck disable=SC2086
  if "$cgrpo" train -c "$configs/tiny_cpu.ini" --run.dir "$run/ctx" ${args%%:*} 2>"$run/err" >/dev/null; then
    echo "FAIL: train accepted ${args%%:*}"; exit 1
  fi
  grep -qF -- "$msg" "$run/err" || { cat "$run/err"; echo "FAIL: no '$msg'"; exit 1; }
done
echo "ok: train refuses sequences past max_position_embeddings"
# selfcheck --gpu: "GPU ok: <name>" and exit 0 on a working GPU, else "GPU FAILED: <why>" and exit 1
rc=0
"$cgrpo" selfcheck --numel 1000 --gpu >"$run/gpu" 2>&1 || rc=$?
if grep -q "GPU ok: " "$run/gpu"; then
  [ "$rc" = 0 ] || { cat "$run/gpu"; echo "FAIL: GPU ok but exit $rc"; exit 1; }
else
  grep -q "GPU FAILED: " "$run/gpu" && [ "$rc" = 1 ] || { cat "$run/gpu"; echo "FAIL: selfcheck --gpu without a GPU"; exit 1; }
fi
echo "ok: selfcheck --gpu ($(grep -o 'GPU [A-Z]*[a-z]*: .*' "$run/gpu" | head -1))"
echo PASS

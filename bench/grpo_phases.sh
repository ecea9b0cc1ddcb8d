#!/usr/bin/env bash
# GRPO step time by phase (rollout, reward, score, train, optim, comm) for a config at 1 and 2 ranks, from the
# trainer's own metrics.jsonl. Usage: bench/grpo_phases.sh [config=configs/small_cpu.ini] [steps=4]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cfg=${1:-$root/configs/small_cpu.ini} steps=${2:-4}
for np in 1 2; do
  dir=$(mktemp -d)
  "$root/launch/cgrpo-run" -n "$np" -- "$root/build/cgrpo" train --config "$cfg" --run.dir "$dir" --sft.steps 2 \
    --run.max_steps "$steps" --run.eval_prompts 0 --checkpoint.every_steps 0 >/dev/null
  /usr/bin/python3 - "$dir/metrics.jsonl" "$np" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"phase":"grpo"' in l]
rows = rows[2:] or rows  # skip the first round (warm-up allocations)
keys = ["rollout", "reward", "score", "train", "optim", "comm"]
tot = sum(r["step_ms"] for r in rows) / len(rows)
ph = {k: sum(r.get("ms_" + k, 0) for r in rows) / len(rows) for k in keys}
print(f"{sys.argv[2]} rank(s): {tot:.0f} ms/step  " + "  ".join(f"{k} {v:.0f}" for k, v in ph.items()) +
      f"  | {rows[-1]['tokens_per_s']:.0f} generated tok/s, {rows[-1]['comm_bytes_sent'] / 1e6:.1f} MB sent/step/rank")
PY
  rm -rf "$dir"
done

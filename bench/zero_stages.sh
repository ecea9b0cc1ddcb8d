#!/usr/bin/env bash
# ZeRO stages 0-3 at 1 and 2 ranks on a config's model: SFT step time, communication time, and bytes sent per
# step per rank against the theory (cgrpo plan). Usage: bench/zero_stages.sh [config=configs/small_cpu.ini]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cfg=${1:-$root/configs/small_cpu.ini}
printf "%-6s %-6s %10s %10s %14s %14s\n" ranks stage "step ms" "comm ms" "sent MB/step" "theory MB"
for np in 1 2; do
  for st in 0 1 2 3; do
    dir=$(mktemp -d)
    "$root/launch/cgrpo-run" -n "$np" -- "$root/build/cgrpo" sft --config "$cfg" --run.dir "$dir" --sft.steps 5 \
      --sft.batch_size $((8 / np)) --parallel.zero_stage "$st" --run.eval_prompts 0 >/dev/null
    theory=$("$root/build/cgrpo" plan --config "$cfg" --world-size "$np" --stage "$st" --json |
      /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)[0]['sent_bytes_per_step'] / 1e6)")
    /usr/bin/python3 - "$dir/metrics.jsonl" "$np" "$st" "$theory" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"phase":"sft"' in l][1:]  # skip the warm-up step
ms = sum(r["step_ms"] for r in rows) / len(rows)
comm = sum(r.get("ms_comm", 0) for r in rows) / len(rows)
sent = rows[-1]["comm_bytes_sent"] / 1e6
print(f"{sys.argv[2]:<6} {sys.argv[3]:<6} {ms:10.0f} {comm:10.0f} {sent:14.1f} {float(sys.argv[4]):14.1f}")
PY
    rm -rf "$dir"
  done
done

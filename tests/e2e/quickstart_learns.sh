#!/usr/bin/env bash
# The quickstart's job, exactly as launched by launch/quickstart (2 ranks, configs/tiny_cpu.ini, fixed seeds):
# the held-out reward after Coupled-GRPO must exceed the reward after the SFT warm-up by a clear margin.
set -euo pipefail
cgrpo=$1 root=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$root/launch/cgrpo-run" -n 2 -- "$cgrpo" train --config "$root/configs/tiny_cpu.ini" --run.dir "$dir" | tail -5
summary=$(grep '"phase":"summary"' "$dir/metrics.jsonl")
echo "$summary"
before=$(echo "$summary" | sed 's/.*"reward_before":\([0-9.e-]*\).*/\1/')
after=$(echo "$summary" | sed 's/.*"reward_after":\([0-9.e-]*\).*/\1/')
python3 - "$before" "$after" <<'PY'
import sys
b, a = float(sys.argv[1]), float(sys.argv[2])
print(f"held-out reward {b:.4f} -> {a:.4f}")
assert a >= b + 0.04, f"reward did not rise measurably: {b} -> {a}"
PY
test -f "$dir/config.resolved.ini" && test -f "$dir/logs/rank_0.log" && test -f "$dir/logs/rank_1.log"
test -f "$dir/checkpoints/latest"
[[ $(grep -c '"phase":"grpo"' "$dir/metrics.jsonl") == 400 ]]
echo PASS

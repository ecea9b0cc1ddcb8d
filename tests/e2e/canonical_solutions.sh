#!/usr/bin/env bash
# Every canonical solution of ../shared/data (HumanEval 164, MBPP 974, MBPP sanitized 427) must pass its tests
# through the eval harness (the reward Sandbox + CodeExecReward: code + "\n" + test with the sentinel), with
# 2 sandbox workers. The per-test timeout is raised to 20 s: MBPP task 123 needs ~3-5 s (shared/data/README.md).
# $1 = cgrpo binary.
set -euo pipefail
CGRPO=${1:?usage: canonical_solutions.sh path/to/cgrpo}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
for spec in humaneval:164 mbpp:974 mbpp_sanitized:427; do
  ds=${spec%%:*} n=${spec##*:}
  "$CGRPO" eval --canonical --dataset "$ds" --reward.workers 2 --reward.test_timeout_s 20 \
    --output "$T/$ds.jsonl" | tee "$T/$ds.txt"
  if ! grep -q "^eval $ds: $n problems x 1 samples.*passed $n/$n samples" "$T/$ds.txt"; then
    echo "FAIL: $ds canonical solutions that did not pass:"
    python3 -c 'import json,sys; [print("  ", r["id"], r["samples"][0]["status"]) for r in map(json.loads, open(sys.argv[1])) if not r["correct"]]' "$T/$ds.jsonl"
    fail=1
  fi
done
[ "$fail" = 0 ] && echo "canonical_solutions: all pass"
exit $fail

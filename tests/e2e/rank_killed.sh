#!/usr/bin/env bash
# rank_killed: SIGKILL to one rank of a running 2-rank `cgrpo train` ends the whole job promptly (< 15 s),
# with a non-zero status and a message naming the failed rank; it must never hang (a 90 s guard ends it; exit 124).
#   tests/e2e/rank_killed.sh path/to/cgrpo
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/tests/lib/common.sh"
bin=$(realpath "${1:?usage: rank_killed.sh path/to/cgrpo}")
t_start=$(now_ms)
D=$(mktemp -d /tmp/cgrpo-rank-killed.XXXXXX)
job=""
TEST_NAME=rank_killed
TEST_DUMP=("$D/out.txt" "$D/run/logs/rank_0.log" "$D/run/logs/rank_1.log")
trap test_cleanup EXIT
trap 'exit 130' INT TERM

# long enough that it is certainly still running when we kill rank 1 (the full quickstart takes ~1 min)
timeout -k 5 90 "$root/launch/cgrpo-run" -n 2 -- "$bin" train --config "$root/configs/tiny_cpu.ini" \
  --run.eval_prompts 0 --run.logging_steps 1 --run.dir "$D/run" >"$D/out.txt" 2>&1 &
job=$!
rank1_pid() { grep -o 'rank 1/2 .*pid [0-9]*' "$D/run/logs/rank_1.log" 2>/dev/null | grep -o '[0-9]*$'; }
training() { [[ -n "$(rank1_pid)" ]] && [[ $(grep -c '"phase":"sft"' "$D/run/metrics.jsonl" 2>/dev/null) -ge 3 ]]; }
wait_for 60 "rank 1's pid and 3 SFT steps" training
pid1=$(rank1_pid)
kill -0 "$pid1" || fail "rank 1 (pid $pid1) is not running"
t0=$(now_ms)
kill -KILL "$pid1"
rc=0
wait "$job" || rc=$?
job=""
ms=$(($(now_ms) - t0))
echo "job ended with rc=$rc ${ms} ms after SIGKILL to rank 1 (pid $pid1)"
((rc != 124)) || fail "the job hung and was ended by the 90 s guard"
((rc != 0)) || fail "the job exited 0 although rank 1 was killed"
((ms < 15000)) || fail "the job took ${ms} ms to end (must be < 15 s)"
grep -Eq "process rank 1 with PID [0-9]+ on node .* exited on signal 9" "$D/out.txt" || fail "no message naming rank 1 as killed by signal 9"
grep -m1 -E "process rank 1 with PID" "$D/out.txt"
! grep -q '] done: ' "$D/run/logs/rank_0.log" || fail "rank 0 claims the run finished"
echo "PASS: rc=$rc after ${ms} ms, failed rank named"

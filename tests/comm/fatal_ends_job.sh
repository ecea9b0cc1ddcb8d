#!/usr/bin/env bash
# One rank calling fatal() in a 4-rank job must end the whole job within seconds, print its message with
# rank, host and file:line, and never hang (the other three ranks wait in a barrier).
set -uo pipefail
cgrpo=$1 mpirun=$2
out=$(mktemp)
start_ms=$(($(date +%s%N) / 1000000))
timeout -s KILL 45 "$mpirun" -n 4 --oversubscribe --bind-to none "$cgrpo" selfcheck --inject-fatal-on-rank 2 >"$out" 2>&1
rc=$?
elapsed_ms=$(($(date +%s%N) / 1000000 - start_ms))
cat "$out"
fail() { echo "FAIL: $*"; rm -f "$out"; exit 1; }
[[ $rc -ne 0 ]] || fail "the job exited 0"
[[ $rc -ne 137 ]] || fail "the job hung and was killed by the 45 s guard"
grep -q "cgrpo: FATAL on rank 2/4" "$out" || fail "no fatal message naming rank 2/4"
grep -q "src/cli/cmd_selfcheck.cpp:" "$out" || fail "no file:line in the message"
grep -q "injected failure on rank 2" "$out" || fail "the message lost its text"
((elapsed_ms < 15000)) || fail "took ${elapsed_ms} ms (must end within seconds)"
echo "PASS: rc=$rc after ${elapsed_ms} ms"
rm -f "$out"

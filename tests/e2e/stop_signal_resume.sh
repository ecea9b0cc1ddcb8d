#!/usr/bin/env bash
# stop_signal_resume: a stop signal makes a running 2-rank `cgrpo train` checkpoint and exit 0, and
# `--resume auto` continues from that step.
#   tests/e2e/stop_signal_resume.sh path/to/cgrpo
# 1. start the run with launch/cgrpo-run; during SFT send SIGTERM to cgrpo-run (it turns it into SIGUSR1 for
#    mpirun, which forwards it to the ranks); expect exit 0 and "checkpoint written at sft step K"
# 2. `--resume auto`: expect "resumed from ... sft step K"; during GRPO SIGTERM again: checkpoint at step N
# 3. `--resume auto`: expect "resumed from ... grpo step N" (the GRPO checkpoint, not the older SFT one whose
#    step number may be larger); during GRPO send SIGUSR1 straight to both ranks (what srun --signal=USR1@..
#    does); expect exit 0 and a checkpoint at step M > N
# 4. `--resume auto` to the end: expect "resumed from ... grpo step M" and "done:".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/tests/lib/common.sh"
bin=$(realpath "${1:?usage: stop_signal_resume.sh path/to/cgrpo}")
t_start=$(now_ms)
D=$(mktemp -d /tmp/cgrpo-stop-signal.XXXXXX)
job=""
TEST_NAME=stop_signal_resume
TEST_DUMP=("$D/out*.txt" "$D/run/logs/rank_0.log")
trap test_cleanup EXIT
trap 'exit 130' INT TERM
MAX=200
ARGS=(train --config "$root/configs/tiny_cpu.ini" --sft.steps 60 --run.eval_prompts 0
      --checkpoint.every_steps 1000 --run.logging_steps 1 --run.dir "$D/run")
log0=$D/run/logs/rank_0.log
steps_of() { local n; n=$(grep -c "\"phase\":\"$1\"" "$D/run/metrics.jsonl" 2>/dev/null) || true; echo "${n:-0}"; }

# run_and_signal NAME SIGNAL launcher|ranks sft|grpo AFTER_LINES [extra args]: start, wait for AFTER_LINES more
# metrics lines of that phase, signal cgrpo-run or both ranks, expect
# exit 0 and a stop checkpoint; sets STOP_STEP to the step it stopped at
run_and_signal() {
  local name=$1 sig=$2 target=$3 phase=$4 after=$5; shift 5
  local base; base=$(steps_of "$phase")
  "$root/launch/cgrpo-run" -n 2 -- "$bin" "${ARGS[@]}" "$@" >"$D/out_$name.txt" 2>&1 &
  job=$!
  progressed() { (($(steps_of "$phase") >= base + after)); }
  wait_for 90 "$name: $after $phase steps" progressed
  local t0 targets; t0=$(now_ms)
  if [[ $target == ranks ]]; then   # the pids this start logged (the logs append across starts)
    targets=$(for r in 0 1; do grep -o "rank $r/2 .*pid [0-9]*" "$D/run/logs/rank_$r.log" | tail -1 | grep -o '[0-9]*$'; done)
  else
    targets=$job
  fi
  kill -s "$sig" $targets
  # guard: the run must end within 30 s of the signal
  local end=$((t0 + 30000))
  while kill -0 "$job" 2>/dev/null && (($(now_ms) < end)); do sleep 0.1; done
  kill -0 "$job" 2>/dev/null && fail "$name: still running 30 s after SIG$sig"
  local rc=0
  wait "$job" || rc=$?
  job=""
  echo "$name: SIG$sig to $target -> exit $rc after $(($(now_ms) - t0)) ms"
  ((rc == 0)) || fail "$name: exit status $rc after SIG$sig (expected 0)"
  local n
  local what="step" file="step_%08d.h5"
  [[ $phase == sft ]] && what="sft step" file="sft_step_%08d.h5"
  n=$(grep -o "stop signal: checkpoint written at .*step [0-9]*" "$log0" | tail -1 | grep -o "$what [0-9]*$" | grep -o '[0-9]*$' || true)
  [[ -n "$n" ]] || fail "$name: no 'stop signal: checkpoint written at $what N' line after SIG$sig"
  [[ -f "$D/run/checkpoints/$(printf "$file" "$n")" ]] || fail "$name: checkpoint file of $what $n missing"
  STOP_STEP=$n
}

run_and_signal sft TERM launcher sft 30 --run.max_steps $MAX   # sft step ~30 > the GRPO stop step below
k=$STOP_STEP
((k > 0 && k < 60)) || fail "SFT stop at step $k"
run_and_signal first TERM launcher grpo 3 --run.max_steps $MAX --resume auto
n1=$STOP_STEP
grep -q "resumed from .*(sft step $k," "$log0" || fail "the second start did not resume from sft step $k"
((n1 > 0 && n1 < MAX)) || fail "stopped at step $n1"
run_and_signal second USR1 ranks grpo 3 --run.max_steps $MAX --resume auto
n2=$STOP_STEP
r=$(resumed_step "$log0")
[[ "$r" == "$n1" ]] || fail "third start resumed from step '$r' ($(grep 'resumed from' "$log0" | tail -1 | sed 's/.*resumed/resumed/')), expected grpo step $n1"
((n2 > n1)) || fail "second stop at step $n2 is not after the first ($n1)"
echo "SIGTERM in SFT: checkpoint at sft step $k; resumed; SIGTERM in GRPO: checkpoint at step $n1; resumed from $r;" \
     "SIGUSR1: checkpoint at step $n2"

rc=0
timeout -s KILL 120 "$root/launch/cgrpo-run" -n 2 -- "$bin" "${ARGS[@]}" --run.max_steps $((n2 + 4)) --resume auto \
  >"$D/out_third.txt" 2>&1 || rc=$?
((rc == 0)) || fail "third run (resume to the end) failed with rc=$rc"
r=$(resumed_step "$log0")
[[ "$r" == "$n2" ]] || fail "third run resumed from step '$r', expected $n2"
grep -q "] done: .* $((n2 + 4)) GRPO steps" "$log0" || fail "third run did not finish at GRPO step $((n2 + 4))"
echo "PASS: SIGTERM to cgrpo-run -> checkpoint (sft step $k, then grpo step $n1) + exit 0; resume;" \
     "SIGUSR1 to the ranks -> checkpoint at $n2 + exit 0; resume to $((n2 + 4))"

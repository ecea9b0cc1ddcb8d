#!/usr/bin/env bash
# slurm_requeue: a Slurm job that is requeued mid-run resumes from its checkpoint and ends with exactly the
# parameters of an uninterrupted run.
#   tests/slurm/run_slurm_test.sh path/to/cgrpo
# 1. starts munge + slurmctld + slurmd (Slurm 22.05, one node "localhost", CPUs=2) with a generated config and
#    all state under a temp dir, on free ports; a trap stops every daemon and job on exit, pass or fail
# 2. reference: the tiny config on 2 ranks with launch/cgrpo-run, uninterrupted
# 3. the same config through `sbatch -n 2 slurm/train.sbatch` into another run dir; once its first GRPO
#    checkpoint exists: `scontrol requeue`, then `scontrol update JobId=.. StartTime=now`
# 4. checks: the job completed with Restarts=1; the second start saw SLURM_RESTART_COUNT=1 on every rank and
#    resumed from a checkpoint at step 0 < N < max (rank_0.log), the first start did not finish; the final
#    checkpoints' /params (and the AdamW moments and /ref) are bit-identical (h5diff).
# Needs root (SlurmUser=root); exits 77 (skipped) without root or without the Slurm/munge/hdf5 tools.
# CGRPO_KEEP_TMP=1 keeps the temp dir. Env: CGRPO_TEST_MAX_STEPS (GRPO steps, default 40),
# CGRPO_TEST_LAUNCHER=srun (launch the job with srun --mpi=pmix instead of mpirun; default mpirun),
# CGRPO_TEST_SBATCH=train_multinode.sbatch (submit that script, on the one local node; default train.sbatch),
# CGRPO_TEST_INSTALLED=1 (submit the `cmake --install`ed tree's script, finding cgrpo and cgrpo-run on PATH),
# CGRPO_PREFLIGHT=1 (passed to the job: each start runs `cgrpo selfcheck` on its ranks first; checked here).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/tests/lib/common.sh"
bin=$(realpath "${1:?usage: run_slurm_test.sh path/to/cgrpo}")
[[ $(id -u) == 0 ]] || { echo "SKIP: needs root (SlurmUser=root)"; exit 77; }
for t in munged mungekey slurmctld slurmd sbatch scontrol squeue sinfo h5diff mpirun ss; do
  command -v "$t" >/dev/null || { echo "SKIP: $t not installed (launch/install-deps)"; exit 77; }
done

t_start=$(now_ms)
MAX=${CGRPO_TEST_MAX_STEPS:-40}
OVR=(--sft.steps 30 --run.max_steps "$MAX" --run.eval_prompts 0 --checkpoint.every_steps 2 --checkpoint.keep_last 3
     --run.logging_steps 1)
CFG=$root/configs/tiny_cpu.ini
D=$(mktemp -d /tmp/cgrpo-slurm-test.XXXXXX)
chmod 755 "$D"                       # munged wants o+x on every directory above its socket
S=$D/slurm                           # slurm state
jid=""
daemons=()                            # daemons we started, stopped in reverse order

for v in $(compgen -e | grep '^SLURM_' || true); do unset "$v"; done   # never talk to an outer cluster
export SLURM_CONF=$S/slurm.conf

dump_logs() {
  local f
  for f in "$S"/log/munged.out "$S"/log/slurmctld.log "$S"/log/slurmd.log "$D"/job-*.out "$D"/run/logs/slurm-*.out \
           "$D"/run/logs/rank_0.log "$D"/run/logs/rank_1.log "$D"/ref.out; do
    [[ -f "$f" ]] && { echo "----- $f (last 40 lines)"; tail -n 40 "$f"; }
  done
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n "$jid" ]]; then
    scancel "$jid" 2>/dev/null
    for _ in $(seq 100); do [[ -z "$(squeue -h -j "$jid" -o %T 2>/dev/null)" ]] && break; sleep 0.2; done
  fi
  ((rc == 0)) || dump_logs
  for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do stop_pid "${daemons[i]}" 15; done
  # anything still running from this test (its temp dir is unique) is a leak: report it, then end it by pid
  local left
  local procs; procs=$(ps -eo pid=,args=)
  left=$(awk -v d="$D" -v me=$$ 'index($0, d) && $1 != me {print $1}' <<<"$procs")
  if [[ -n "$left" ]]; then
    echo "FAIL: processes left behind: $(echo $left)"; ps -o pid,args -p $(echo $left | tr ' ' ,)
    for p in $left; do kill -9 "$p" 2>/dev/null; done
    ((rc == 0)) && rc=1
  fi
  if [[ "${CGRPO_KEEP_TMP:-0}" == 1 ]]; then echo "kept $D"; else rm -rf "$D"; fi
  echo "slurm_requeue: total $(( ($(now_ms) - t_start) / 1000 )) s, rc=$rc"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---------------------------------------------------------------- 1. munge + slurmctld + slurmd
port_free() { [[ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]]; }
for _ in $(seq 50); do
  P=$((20000 + RANDOM % 30000))
  port_free "$P" && port_free $((P + 1)) && break
done
mkdir -p "$S"/{munge,munge-run,state,spool,log}
chmod 700 "$S/munge"; chmod 755 "$S/munge-run"   # munged: the socket dir must be o+x, the key dir private
mungekey -c -k "$S/munge/munge.key"
munged -F --socket="$S/munge-run/munge.socket.2" --key-file="$S/munge/munge.key" \
  --pid-file="$S/munge-run/munged.pid" --log-file="$S/log/munged.log" --seed-file="$S/munge/munged.seed" \
  >"$S/log/munged.out" 2>&1 &
daemons+=($!)
wait_for 10 "munged socket" test -S "$S/munge-run/munge.socket.2"
cat >"$SLURM_CONF" <<CONF
ClusterName=cgrpotest
SlurmctldHost=localhost
SlurmctldPort=$P
SlurmdPort=$((P + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$S/munge-run/munge.socket.2
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
PlugStackConfig=$S/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
JobRequeue=1
SchedulerParameters=sched_interval=1
KillWait=5
InactiveLimit=0
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
: >"$S/plugstack.conf"
slurmctld -D -f "$SLURM_CONF" >"$S/log/slurmctld.out" 2>&1 &
daemons+=($!)
slurmd -D -N localhost -f "$SLURM_CONF" >"$S/log/slurmd.out" 2>&1 &
daemons+=($!)
node_idle() { sinfo -h -o %T | grep '^idle' >/dev/null; }
wait_for 30 "slurm node idle (ports $P/$((P + 1)))" node_idle
echo "slurm up on ports $P/$((P + 1)) after $(( ($(now_ms) - t_start) / 1000 )) s; state in $S"

# ---------------------------------------------------------------- 2. uninterrupted reference
t0=$(now_ms)
timeout -s KILL 240 "$root/launch/cgrpo-run" -n 2 -- "$bin" train --config "$CFG" "${OVR[@]}" --run.dir "$D/ref" \
  >"$D/ref.out" 2>&1 || fail "reference run failed (rc $?); see $D/ref.out"
echo "reference run: $(( ($(now_ms) - t0) / 1000 )) s"
REF=$D/ref/checkpoints/$(printf "step_%08d.h5" "$MAX")
[[ -f "$REF" ]] || fail "reference run wrote no final checkpoint $REF"

# ---------------------------------------------------------------- 3. the same run as a Slurm job, requeued
t0=$(now_ms)
script=${CGRPO_TEST_SBATCH:-train.sbatch}
case "$script" in
  train.sbatch) shape=(-n 2) ;;
  train_multinode.sbatch) shape=(-N 1 --ntasks-per-node=2) ;;   # one node here: the script's mpirun path
  *) fail "CGRPO_TEST_SBATCH=$script: expected train.sbatch or train_multinode.sbatch" ;;
esac
if [[ ${CGRPO_TEST_INSTALLED:-0} == 1 ]]; then
  # as a site runs it: the installed tree's sbatch script, with the environment `module load cgrpo` gives (bin/ on
  # PATH, CGRPO_ROOT = share/cgrpo) and no CGRPO_BIN: the script finds cgrpo and cgrpo-run on PATH
  cmake --install "$(dirname "$bin")" --prefix "$D/site" >"$D/install.log" || fail "cmake --install (see $D/install.log)"
  job_bin=$D/site/bin/cgrpo
  job_env=PATH="$D/site/bin:$PATH",CGRPO_ROOT="$D/site/share/cgrpo"
  job_script=$D/site/share/cgrpo/slurm/$script
else
  job_bin=$bin job_env=CGRPO_BIN="$bin",CGRPO_ROOT="$root" job_script=$root/slurm/$script
fi
jid=$(sbatch --parsable "${shape[@]}" -o "$D/job-%j.out" --chdir "$root" \
        --export=ALL,"$job_env",CGRPO_LAUNCHER="${CGRPO_TEST_LAUNCHER:-mpirun}" \
        "$job_script" "$CFG" "${OVR[@]}" --run.dir "$D/run")
jid=${jid%%;*}
echo "submitted job $jid: $job_script ${shape[*]}, launcher ${CGRPO_TEST_LAUNCHER:-mpirun}"
job_field() { scontrol show job "$jid" 2>/dev/null | awk -v k="$1" '{for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) {print substr($i, length(k) + 2); exit}}'; }
first_ckpt() { compgen -G "$D/run/checkpoints/step_*.h5" >/dev/null; }
ended() { [[ "$(job_field JobState)" =~ ^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED)$ ]]; }
log0=$D/run/logs/rank_0.log
# pids of the ranks of the newest start (their logs append across starts)
start_pids() { for r in 0 1; do grep -o "rank $r/2 .*pid [0-9]*" "$D/run/logs/rank_$r.log" | tail -1 | grep -o '[0-9]*$'; done; }
started() { grep -q "SLURM_RESTART_COUNT=$1\$" "$log0" 2>/dev/null; }
# release_requeued T_REQUEUE_MS PIDS: once the job is PENDING again and the old ranks are gone, start it now
release_requeued() {
  local t_rq=$1 old=$2
  pending() { [[ "$(job_field JobState)" == PENDING ]]; }
  wait_for 60 "job $jid back to PENDING after the requeue" pending
  gone() { ! kill -0 $old 2>/dev/null; }
  wait_for 30 "the previous start's ranks ($(echo $old)) to exit" gone
  # slurmd revokes the old credential with a 1-second timestamp: a restart within the same second is refused
  # ("Job credential revoked"), so let the clock pass the requeue's second first
  while (( $(now_ms) / 1000 <= t_rq / 1000 + 1 )); do sleep 0.1; done
  scontrol update JobId="$jid" StartTime=now
}
still_running() { [[ "$(job_field JobState)" == RUNNING ]] || fail "job is $(job_field JobState) before $1 (raise CGRPO_TEST_MAX_STEPS)"; }

# interruption 1: an administrator's / preemption-style requeue (SIGTERM to every process of the job)
ckpt_or_end() { first_ckpt || ended; }
wait_for 240 "the job's first checkpoint" ckpt_or_end
still_running "the requeue"
echo "first checkpoint $(cd "$D/run/checkpoints" && ls step_*.h5) $(( ($(now_ms) - t0) / 1000 )) s after submit; scontrol requeue"
rank_pids=$(start_pids)
t_rq=$(now_ms)
scontrol requeue "$jid"
release_requeued "$t_rq" "$rank_pids"
started1() { started 1; }
wait_for 120 "the second start" started1
# interruption 2: the time-limit warning (--signal=B:USR1@..., sent here at once with scancel --batch): the ranks
# checkpoint and stop, the batch script requeues the job itself
n1=""
resumed1() { n1=$(awk '/SLURM_RESTART_COUNT=1$/ {s = 1} s && /resumed from/' "$log0" | grep -o 'step [0-9]*' | tail -1 | grep -o '[0-9]*'); [[ -n "$n1" ]]; }
wait_for 60 "the second start to resume" resumed1
newer_ckpt() { compgen -G "$D/run/checkpoints/$(printf 'step_%08d.h5' $((n1 + 2)))" >/dev/null || ended; }
wait_for 120 "a checkpoint after step $n1 in the second start" newer_ckpt
still_running "the USR1 stop"
rank_pids=$(start_pids)
t_rq=$(now_ms)
scancel --batch --signal=USR1 "$jid"
echo "second start resumed from step $n1; sent USR1 to the batch script"
stop_line() { grep -q 'requeueing job' "$D/run/logs/slurm-$jid.out" || ended; }
wait_for 60 "the batch script to requeue the job after SIGUSR1" stop_line
release_requeued "$t_rq" "$rank_pids"
wait_for 300 "job $jid to finish" ended
echo "slurm job: $(( ($(now_ms) - t0) / 1000 )) s including two interruptions"

# ---------------------------------------------------------------- 4. checks
sout=$D/run/logs/slurm-$jid.out
[[ "$(job_field JobState)" == COMPLETED ]] || fail "job ended $(job_field JobState), exit $(job_field ExitCode)"
[[ "$(job_field ExitCode)" == 0:0 ]] || fail "job exit code $(job_field ExitCode)"
[[ "$(job_field Restarts)" == 2 ]] || fail "Restarts=$(job_field Restarts), expected 2"
for k in 0 1 2; do
  grep -q "restart $k " "$sout" || fail "run-dir job output lacks the start with restart $k (--open-mode=append?)"
done
grep -q "requeueing job $jid to continue" "$sout" || fail "the batch script did not requeue itself after SIGUSR1"
grep -q "restart 0 .* bin $job_bin, " "$sout" || fail "the job did not run $job_bin"
if [[ "${CGRPO_PREFLIGHT:-0}" == 1 ]]; then  # every start checked its ranks first
  (($(grep -c "^selfcheck PASSED: .*, 2 ranks" "$sout") == 3)) || fail "expected 3 preflight self-checks in $sout"
fi
for r in 0 1; do
  for k in 1 2; do
    grep -q "rank $r/2 .*SLURM_JOB_ID=$jid, SLURM_RESTART_COUNT=$k\$" "$D/run/logs/rank_$r.log" ||
      fail "rank $r never saw SLURM_RESTART_COUNT=$k"
  done
done
# per start (0, 1, 2) of rank 0's log: what it resumed from, where it stopped, whether it finished
seg() { awk -v k="$1" '/SLURM_RESTART_COUNT=/ {c = $0; sub(/.*SLURM_RESTART_COUNT=/, "", c)} c == k' "$log0"; }
num() { grep -o "$1 [0-9]*" | tail -1 | grep -o '[0-9]*$' || true; }
r1=$(seg 1 | num 'grpo step') r2=$(seg 2 | num 'grpo step') m1=$(seg 1 | num 'checkpoint written at step')
[[ -n "$r1" ]] && ((r1 > 0 && r1 < MAX)) || fail "start 1 resumed from step '$r1', expected 0 < step < $MAX"
[[ -n "$m1" ]] || fail "start 1 wrote no stop checkpoint on SIGUSR1"
[[ "$r2" == "$m1" ]] || fail "start 2 resumed from step '$r2', expected the SIGUSR1 checkpoint at step $m1"
[[ $(seg 0 | grep -c '] done: ') == 0 && $(seg 1 | grep -c '] done: ') == 0 && $(seg 2 | grep -c '] done: ') == 1 ]] ||
  fail "expected one 'done:' line, in the last start only"
seg 1 | awk '/resumed from/ && !d {print; d = 1}'
seg 2 | awk '/resumed from/ && !d {print; d = 1}'
seg 0 | grep 'stop signal: checkpoint written' >/dev/null && echo "note: the requeue's SIGTERM produced a stop checkpoint" \
  || echo "note: no stop checkpoint on the requeue's SIGTERM (mpirun ends the ranks ~1-2 s after it); resumed from a periodic one"
n="$r1 and $r2"
OUT=$D/run/checkpoints/$(printf "step_%08d.h5" "$MAX")
[[ -f "$OUT" ]] || fail "the Slurm run wrote no final checkpoint $OUT"
if ! final_params_equal "$REF" "$OUT" >"$D/h5diff.txt" 2>&1; then
  head -n 30 "$D/h5diff.txt"
  fail "final /params differ between the uninterrupted run and the requeued run (resumed at step $n)"
fi
for g in exp_avg exp_avg_sq ref; do
  h5diff -r "$REF" "$OUT" /$g /$g >"$D/h5diff_$g.txt" 2>&1 || { head -n 20 "$D/h5diff_$g.txt"; fail "/$g differs"; }
done
echo "PASS: requeued (resumed at step $r1), stopped by SIGUSR1 and self-requeued (resumed at step $r2), of $MAX;" \
     "SLURM_RESTART_COUNT 1 and 2 on both ranks; final /params, /exp_avg, /exp_avg_sq and /ref bit-identical" \
     "to the uninterrupted run"

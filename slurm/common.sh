# Sourced by slurm/train.sbatch and slurm/train_multinode.sbatch (not a job script itself).
# cgrpo_slurm_main CONFIG [--section.key VALUE ...]
#   finds the binary, resolves run.dir, appends this job's output to <run.dir>/logs/slurm-<jobid>.out,
#   launches `cgrpo train --resume auto` with mpirun (default) or `srun --mpi=pmix` (CGRPO_LAUNCHER=srun),
#   forwards SIGUSR1 and SIGTERM to the launcher, requeues the job after a clean stop on SIGUSR1, and returns
#   the trainer's exit status.
# Environment: CGRPO_PREFLIGHT=1 (run `cgrpo selfcheck [--gpu]` on every rank before training),
#   CGRPO_BIN (binary; default ROOT/build/cgrpo, ROOT/build-cpu/cgrpo, then cgrpo on PATH),
#   CGRPO_ROOT (the checkout, or an installed tree's share/cgrpo as `module load cgrpo` sets it; default
#   $SLURM_SUBMIT_DIR), CGRPO_LAUNCHER (mpirun|srun),
#   CGRPO_MPIRUN_ARGS (extra mpirun arguments, word-split), CGRPO_REQUEUE_ON_USR1 (default 1), plus everything
#   launch/cgrpo-run reads.

cgrpo_find_bin() {
  local root=$1 c
  if [[ -n "${CGRPO_BIN:-}" ]]; then
    [[ -x "$CGRPO_BIN" ]] || { echo "cgrpo-slurm: CGRPO_BIN=$CGRPO_BIN is not an executable" >&2; return 1; }
    echo "$CGRPO_BIN"; return 0
  fi
  for c in "$root/build/cgrpo" "$root/build-cpu/cgrpo"; do [[ -x "$c" ]] && { echo "$c"; return 0; }; done
  c=$(command -v cgrpo) && { echo "$c"; return 0; }   # an installed tree on PATH (module load cgrpo)
  echo "cgrpo-slurm: no cgrpo binary under $root/build or $root/build-cpu, nor on PATH; set CGRPO_BIN or" \
       "module load cgrpo" >&2
  return 1
}

# cgrpo_find_launcher ROOT BIN: the checkout's launch/cgrpo-run, else the one beside the binary (an installed
# tree's bin/), else the one on PATH
cgrpo_find_launcher() {
  local root=$1 bin=$2 c
  for c in "$root/launch/cgrpo-run" "$(dirname "$bin")/cgrpo-run"; do [[ -x "$c" ]] && { echo "$c"; return 0; }; done
  c=$(command -v cgrpo-run) && { echo "$c"; return 0; }
  echo "cgrpo-slurm: no launch/cgrpo-run under $root nor beside $bin nor on PATH" >&2
  return 1
}

# cgrpo_config_value BIN SECTION KEY CONFIG [--section.key VALUE ...]: the resolved value, as the trainer will see
# it (config file + overrides), via the singleton `cgrpo config`
cgrpo_config_value() {
  local bin=$1 section=$2 key=$3
  shift 3
  "$bin" config -c "$@" | awk -v s0="[$section]" -v k="$key" '/^\[/{s=$0} s==s0 && $1==k{sub(/^[^=]*=[ \t]*/,""); print; exit}'
}

cgrpo_count_done() { local n; n=$(grep -c '] done: ' "$1" 2>/dev/null) || true; echo "${n:-0}"; }

cgrpo_slurm_main() {
  local cfg=${1:?"usage: sbatch [options] slurm/train.sbatch CONFIG [--section.key VALUE ...]"}; shift
  local root=${CGRPO_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
  cd "${SLURM_SUBMIT_DIR:-$PWD}"   # relative config and run.dir paths are relative to the submit dir
  local bin; bin=$(cgrpo_find_bin "$root")
  [[ -f "$cfg" ]] || { echo "cgrpo-slurm: config $cfg not found (cwd $PWD)" >&2; return 2; }
  local run_dir
  run_dir=$(cgrpo_config_value "$bin" run dir "$cfg" "$@")
  [[ -n "$run_dir" ]] || { echo "cgrpo-slurm: could not resolve run.dir from $cfg" >&2; return 2; }
  mkdir -p "$run_dir/logs"
  exec >>"$run_dir/logs/slurm-${SLURM_JOB_ID:-nojob}.out" 2>&1
  echo "cgrpo-slurm: job ${SLURM_JOB_ID:-?} restart ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST:-$(hostname)}:" \
       "${SLURM_NTASKS:-?} tasks, launcher ${CGRPO_LAUNCHER:-mpirun}, bin $bin, config $cfg $*, run dir $run_dir"

  # Slurm sends USR1 (from --signal=B:USR1@<s>) to this shell only: pass it on; cgrpo-run/mpirun (or srun)
  # pass it to the ranks, which checkpoint at the next round boundary and exit 0. TERM (time limit, scancel,
  # requeue, preemption) usually reaches every process of the job anyway; we pass it on as USR1 ("checkpoint
  # and stop"), never as a second TERM: cgrpo-run escalates a repeated TERM to an abort, and mpirun exits at
  # once on a second TERM, orphaning ranks that proctrack/linuxproc then no longer tracks.
  # The traps go in before the launch, so a signal in between is not lost (nor kills this shell).
  CGRPO_PID="" CGRPO_GOT_USR1=0 CGRPO_STOP=0
  cgrpo_on_signal() {
    [[ $1 == USR1 ]] && CGRPO_GOT_USR1=1
    CGRPO_STOP=1
    echo "cgrpo-slurm: SIG$1, forwarding as SIGUSR1 to ${CGRPO_PID:-(not started yet)}"
    [[ -n "$CGRPO_PID" ]] && kill -USR1 "$CGRPO_PID" 2>/dev/null || true
  }
  trap 'cgrpo_on_signal USR1' USR1
  trap 'cgrpo_on_signal TERM' TERM

  local -a launch cmd
  if [[ "${CGRPO_LAUNCHER:-mpirun}" == srun ]]; then
    # srun signals the ranks itself (use --signal=USR1@<s> without B: if you rely on it) and gives them the
    # full KillWait after SIGTERM. One rank per task; --kill-on-bad-exit ends the step when a rank fails.
    export HDF5_USE_FILE_LOCKING=${HDF5_USE_FILE_LOCKING:-FALSE}
    export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
    launch=(srun --mpi=pmix --kill-on-bad-exit=1)
  else
    local -a extra=()
    [[ -n "${CGRPO_MPIRUN_ARGS:-}" ]] && read -r -a extra <<<"$CGRPO_MPIRUN_ARGS"
    local launcher; launcher=$(cgrpo_find_launcher "$root" "$bin")
    launch=("$launcher" -n "${SLURM_NTASKS:?not inside a Slurm allocation}" "${extra[@]}" --)
  fi
  cmd=("${launch[@]}" "$bin" train --config "$cfg" --resume auto "$@")
  # CGRPO_PREFLIGHT=1: `cgrpo selfcheck` (with --gpu for parallel.backend = cuda) on every rank of this
  # allocation first; a node with a broken MPI, GPU, driver or library fails the job in seconds, before training.
  if [[ "${CGRPO_PREFLIGHT:-0}" == 1 ]] && ((!CGRPO_STOP)); then
    local backend
    backend=$(cgrpo_config_value "$bin" parallel backend "$cfg" "$@")
    local -a check=("${launch[@]}" "$bin" selfcheck)
    [[ "$backend" == cuda ]] && check+=(--gpu)
    echo "cgrpo-slurm: preflight: ${check[*]}"
    local prc=0
    "${check[@]}" || prc=$?
    ((prc == 0)) || { echo "cgrpo-slurm: preflight selfcheck failed (status $prc); not training on these nodes"; return 3; }
  fi
  local log0="$run_dir/logs/rank_0.log" done_before
  done_before=$(cgrpo_count_done "$log0")
  local rc=0
  if ((CGRPO_STOP)); then
    echo "cgrpo-slurm: stop requested before the launch; not starting"
  else
    echo "cgrpo-slurm: ${cmd[*]}"
    "${cmd[@]}" &
    CGRPO_PID=$!
    local pid=$CGRPO_PID
    while kill -0 "$pid" 2>/dev/null; do wait "$pid" || true; done  # wait returns early for each trapped signal
    wait "$pid" || rc=$?                                            # the launcher's saved exit status
    echo "cgrpo-slurm: trainer exited with status $rc"
  fi
  # Stopped early on SIGUSR1 (time limit near, or `scancel --batch --signal=USR1`): the checkpoint is written,
  # so put the job back in the queue to continue (off with CGRPO_REQUEUE_ON_USR1=0). Not when the run
  # finished meanwhile (a new "done:" line) or failed. Slurm holds a requeued job ~2 min before restarting it.
  if ((rc == 0 && CGRPO_GOT_USR1)) && [[ "${CGRPO_REQUEUE_ON_USR1:-1}" == 1 && -n "${SLURM_JOB_ID:-}" ]] &&
     (($(cgrpo_count_done "$log0") == done_before)); then
    echo "cgrpo-slurm: stopped on SIGUSR1 before the end; requeueing job $SLURM_JOB_ID to continue"
    trap '' TERM   # the requeue signals this job, this shell included
    scontrol requeue "$SLURM_JOB_ID" || echo "cgrpo-slurm: scontrol requeue failed; resubmit the job to continue"
  fi
  return "$rc"
}

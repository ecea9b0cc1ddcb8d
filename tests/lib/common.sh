# Helpers sourced by the shell tests under tests/ (not a test itself).
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# wait_for DEADLINE_S DESCRIPTION CMD...: poll CMD every 0.2 s until it succeeds; fail after DEADLINE_S seconds
wait_for() {
  local limit=$1 what=$2; shift 2
  local end=$(($(now_ms) + limit * 1000))
  until "$@" >/dev/null 2>&1; do
    (($(now_ms) < end)) || { echo "FAIL: timed out after ${limit}s waiting for: $what" >&2; return 1; }
    sleep 0.2
  done
}
# stop_pid PID [GRACE_S]: SIGTERM, wait up to GRACE_S (default 10), then SIGKILL; only this one process
stop_pid() {
  local p=$1 grace=${2:-10} i
  [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null || return 0
  kill "$p" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
}
# final_params_equal A.h5 B.h5: /params bit-identical (h5diff without tolerance compares exactly)
final_params_equal() { h5diff -r "$1" "$2" /params /params; }
# the newest GRPO/SFT step the trainer resumed from, from a rank-0 log ("resumed from ... (grpo step N, ...")
resumed_step() { grep -o 'resumed from .* step [0-9]*' "$1" | tail -1 | grep -o '[0-9]*$'; }
# test_cleanup: the EXIT trap of the shell tests. Uses the caller's globals: D (temp dir, removed unless
# CGRPO_KEEP_TMP=1), job (a background PID to stop), TEST_NAME, TEST_DUMP (glob patterns of files whose tails
# are printed when the test fails) and t_start (from now_ms).
test_cleanup() {
  local rc=$? pat f
  trap - EXIT INT TERM
  set +e
  [[ -n "${job:-}" ]] && stop_pid "$job" 3
  if ((rc != 0)); then
    for pat in "${TEST_DUMP[@]}"; do
      for f in $pat; do
        [[ -f "$f" ]] && { echo "----- $f (last 30 lines)"; tail -n 30 "$f"; }
      done
    done
  fi
  [[ "${CGRPO_KEEP_TMP:-0}" == 1 ]] && echo "kept $D" || rm -rf "$D"
  echo "$TEST_NAME: total $(( ($(now_ms) - t_start) / 1000 )) s, rc=$rc"
  exit $rc
}
fail() { echo "FAIL: $*" >&2; exit 1; }

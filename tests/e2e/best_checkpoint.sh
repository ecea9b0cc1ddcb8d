#!/usr/bin/env bash
# run.eval_every_steps + checkpoint.keep_best end to end under mpirun (2 ranks, tiny config):
#  1. periodic held-out evaluation does not perturb training: final parameters bit-identical to a run without it
#  2. metrics.jsonl has an eval line before GRPO, every 2 steps, and after GRPO
#  3. best.json names the first step with the highest periodic/final eval reward; best.h5 is that checkpoint (its
#     step attribute, checksums hold) and survives keep_last = 1 rotation; resume auto still picks step_N.h5
#  4. a resumed run keeps the best record (a better-than-reachable record is not replaced) and a damaged record
#     fails clearly
#   tests/e2e/best_checkpoint.sh path/to/cgrpo SOURCE_DIR
set -euo pipefail
cgrpo=$1 root=$2
work=$(mktemp -d)
trap '[[ -n ${CGRPO_KEEP_TMP:-} ]] || rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
run() {  # run DIR [overrides...]
  local dir=$1
  shift
  "$root/launch/cgrpo-run" -n 2 -- "$cgrpo" train --config "$root/configs/tiny_cpu.ini" --run.dir "$dir" \
    --sft.steps 300 --run.logging_steps 1000 --checkpoint.keep_last 1 "$@" >"$dir.log" 2>&1
}
ev=(--checkpoint.every_steps 4 --run.eval_every_steps 2 --run.eval_prompts 16)
run "$work/ev" "${ev[@]}" --run.max_steps 8 || { cat "$work/ev.log"; fail "run with periodic eval"; }
run "$work/plain" --run.max_steps 8 --checkpoint.every_steps 4 --run.eval_prompts 0 || { cat "$work/plain.log"; fail "plain run"; }
ck=$work/ev/checkpoints
"$cgrpo" inspect "$ck/step_00000008.h5" --diff "$work/plain/checkpoints/step_00000008.h5" --tol 0 >/dev/null ||
  fail "periodic evaluation changed the training (final parameters differ)"
echo "1. periodic eval leaves training bit-identical"

read -r want_step want_reward n_eval < <(python3 - "$work/ev/metrics.jsonl" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"phase":"eval"' in l]
steps = [e["step"] for e in ev]
assert steps == [0, 2, 4, 6, 8], steps
assert [e["when"] for e in ev] == ["before GRPO", "at step 2", "at step 4", "at step 6", "after GRPO"], ev
best = None
for e in ev[1:]:  # candidates: the periodic evaluations and the final one; the first of equal rewards wins
    if best is None or e["eval_reward"] > best["eval_reward"]:
        best = e
print(best["step"], repr(best["eval_reward"]), len(ev))
PY
) || fail "eval lines in metrics.jsonl (see above)"
[[ -f $ck/best.json && -f $ck/best.h5 ]] || fail "no best.json / best.h5 in $ck: $(ls "$ck")"
python3 - "$ck/best.json" "$want_step" "$want_reward" <<'PY' || fail "best.json does not record the best evaluation"
import json, sys
b = json.load(open(sys.argv[1]))
assert b["step"] == int(sys.argv[2]) and b["eval_reward"] == float(sys.argv[3]), (b, sys.argv[2:])
assert b["file"] == "step_%08d.h5" % b["step"], b
PY
"$cgrpo" inspect "$ck/best.h5" >"$work/best.txt" || { cat "$work/best.txt"; fail "inspect best.h5"; }
grep -q "grpo step $want_step " "$work/best.txt" && grep -q "checksums all hold" "$work/best.txt" ||
  { cat "$work/best.txt"; fail "best.h5 is not the step-$want_step checkpoint"; }
[[ $(ls "$ck" | grep -c '^step_.*\.h5$') == 1 ]] || fail "keep_last 1 kept: $(ls "$ck")"
echo "2-3. $n_eval eval lines; best.json/best.h5 = step $want_step (reward $want_reward), kept beside keep_last 1"

# 4. resume keeps the record: a record no evaluation can beat (reward 99) stays; then a damaged one is fatal
echo '{"step": 3, "eval_reward": 99.0, "file": "step_00000003.h5"}' >"$ck/best.json"
run "$work/ev" "${ev[@]}" --run.max_steps 12 --checkpoint.resume auto || { cat "$work/ev.log"; fail "resumed run"; }
grep -q "resumed from .*step_00000008.h5" "$work/ev/logs/rank_0.log" || fail "resume auto did not pick step_00000008.h5"
grep -q '"step": *3, *"eval_reward": *99' "$ck/best.json" || grep -q '"eval_reward":99.0,"file":"step_00000003.h5","step":3' "$ck/best.json" ||
  fail "the resumed run replaced a better best record: $(cat "$ck/best.json")"
echo '{"step": 3, "eval_rew' >"$ck/best.json"
if run "$work/ev" "${ev[@]}" --run.max_steps 16 --checkpoint.resume auto; then fail "a damaged best.json was accepted"; fi
grep -q "best-checkpoint record .*best.json is damaged" "$work/ev.log" || { tail -20 "$work/ev.log"; fail "unclear error for a damaged best.json"; }
echo "4. resume keeps the best record; a damaged record is a clear error"

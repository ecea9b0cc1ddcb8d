#!/usr/bin/env bash
# cgrpo train on a code dataset with the code rewards, end to end under mpirun (2 ranks, tiny byte-level model):
# masked-diffusion SFT on canonical solutions (spec §4.1 target: fence, code, fence + newline, end token), then
# Coupled-GRPO whose rollouts are scored by code_format and by executing the tests in the sandbox (spec §4.3).
# Checks: the SFT'd model writes formatted code that passes its tests under greedy decoding (eval reward, max 2.5,
# clearly above the 0.25 a formatted-but-failing answer would get); every GRPO step logs reward_code and
# reward_code_format; the sandbox ran tests and some passed (runs_ok); run.eval_dataset scores a separate held-out
# file (named in the log), and a toy evaluation set with code rewards is refused.
#   tests/e2e/code_grpo.sh path/to/cgrpo SOURCE_DIR
set -euo pipefail
cgrpo=$1 root=$2
work=$(mktemp -d)
trap '[[ -n ${CGRPO_KEEP_TMP:-} ]] || rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
python3 - "$work" <<'PY'
import json, sys
def write(name, probs):
    with open(f"{sys.argv[1]}/{name}", "w") as f:
        for i, (fn, what, body, tests) in enumerate(probs):
            f.write(json.dumps({"id": f"{name}/{i}", "kind": "mbpp",
                                "prompt": f"Write a function {fn} that returns {what}.",
                                "tests": tests, "canonical_solution": f"def {fn}:\n    return {body}"}) + "\n")
write("train.jsonl", [
    ("add(a, b)", "a + b", "a + b", ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]),
    ("sub(a, b)", "a - b", "a - b", ["assert sub(3, 2) == 1", "assert sub(0, 5) == -5"]),
    ("neg(a)", "-a", "-a", ["assert neg(1) == -1", "assert neg(-4) == 4"]),
    ("sq(a)", "a * a", "a * a", ["assert sq(3) == 9", "assert sq(-2) == 4"]),
    ("inc(a)", "a + 1", "a + 1", ["assert inc(1) == 2", "assert inc(-1) == 0"]),
    ("dbl(a)", "2 * a", "2 * a", ["assert dbl(4) == 8", "assert dbl(0) == 0"]),
])
write("heldout.jsonl", [
    ("mul(a, b)", "a * b", "a * b", ["assert mul(2, 3) == 6"]),
    ("dec(a)", "a - 1", "a - 1", ["assert dec(1) == 0"]),
])
PY
common=(--config "$root/configs/tiny_cpu.ini" --data.dataset "$work/train.jsonl" --reward.funcs code,code_format
        --reward.weights 2.0,0.5 --rollout.max_new_tokens 48 --rollout.steps 24 --sft.max_length 48 --sft.steps 300
        --sft.batch_size 3 --grpo.per_device_batch 8 --grpo.grad_accum 1 --run.eval_prompts 6
        --run.logging_steps 1 --checkpoint.every_steps 0)
"$root/launch/cgrpo-run" -n 2 -- "$cgrpo" train "${common[@]}" --run.max_steps 4 --run.dir "$work/run" >"$work/run.log" 2>&1 ||
  { tail -30 "$work/run.log"; fail "code GRPO run"; }
grep -q '\] done: 300 SFT + 4 GRPO steps' "$work/run.log" || { tail -20 "$work/run.log"; fail "no done line"; }
grep -q 'on 6 prompts of .*train.jsonl (training prompts)' "$work/run.log" || fail "the eval does not name its prompts"
python3 - "$work/run/metrics.jsonl" <<'PY' || { tail -20 "$work/run.log"; fail "code rewards in metrics.jsonl"; }
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
grpo = [x for x in m if x["phase"] == "grpo"]
ev = [x for x in m if x["phase"] == "eval"]
assert len(grpo) == 4 and all("reward_code" in x and "reward_code_format" in x for x in grpo), grpo
before = ev[0]["eval_reward"]
assert before >= 1.0, f"greedy eval after SFT: {before} (the format and the tests should mostly pass)"
ok = sum(x.get("runs_ok", 0) for x in grpo)
assert ok > 0, "no sandboxed test passed during GRPO"
fmt = max(x["reward_code_format"] for x in grpo)
assert fmt > 0.5, f"rollouts rarely formatted: {fmt}"
print(f"code GRPO: eval after SFT {before:.3f}, sandbox runs ok {ok:.0f}, best format reward {fmt:.2f}")
PY
"$root/launch/cgrpo-run" -n 2 -- "$cgrpo" train "${common[@]}" --run.dir "$work/ev" --run.max_steps 2 \
  --run.eval_dataset "$work/heldout.jsonl" >"$work/ev.log" 2>&1 || { tail -30 "$work/ev.log"; fail "run with eval_dataset"; }
grep -q "eval (before GRPO): mean reward [0-9.e-]* on 2 prompts of $work/heldout.jsonl\$" "$work/ev.log" ||
  { grep 'eval (' "$work/ev.log"; fail "run.eval_dataset was not the evaluation set"; }
if "$root/launch/cgrpo-run" -n 2 -- "$cgrpo" train "${common[@]}" --run.dir "$work/bad" --run.max_steps 2 --run.eval_dataset toy:arith \
     >"$work/bad.log" 2>&1; then fail "a toy evaluation set with code rewards was accepted"; fi
grep -q "run.eval_dataset = toy:arith cannot be scored with the rewards" "$work/bad.log" || { tail "$work/bad.log"; fail "unclear error"; }
# the fatal message is also in the rank's own log (mpirun's output of a dying job can be cut short)
grep -q "^\[fatal\] cgrpo: FATAL on rank 0/2 .*" "$work/bad/logs/rank_0.log" &&
  grep -q "run.eval_dataset = toy:arith cannot be scored" "$work/bad/logs/rank_0.log" || fail "the fatal error is not in rank_0.log"
echo "code GRPO: SFT -> formatted, passing code; GRPO with sandboxed rewards; eval_dataset used; toy/code mix refused"

# The same with the Qwen2 / DiffuCoder tokenizer: a 2-layer model with DiffuCoder's 151936-row vocabulary (cgrpo
# init --config), so prompts go through the ChatML template, answers end in <|im_end|> + <|dlm_pad|> padding, the
# rewards read the decoded text with special tokens skipped, and sampled embedding padding rows (no token) decode
# to nothing. Its SFT must teach the format (eval reward > 0: format 0.5 x weight 0.5 per formatted answer).
cat >"$work/qwen_config.json" <<'JSON'
{"architectures": ["DreamModel"], "model_type": "Dream", "vocab_size": 151936, "hidden_size": 64,
 "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "max_position_embeddings": 4096, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
 "mask_token_id": 151666, "pad_token_id": 151643, "bos_token_id": 151643, "eos_token_id": 151643}
JSON
"$cgrpo" init --config "$work/qwen_config.json" --out "$work/qm" --seed 1 >/dev/null || fail "init --config"
"$root/launch/cgrpo-run" -n 2 -- "$cgrpo" train --config "$root/configs/tiny_cpu.ini" --model.path "$work/qm" \
  --run.dir "$work/q" --data.dataset "$work/train.jsonl" --reward.funcs code,code_format --reward.weights 2.0,0.5 \
  --rollout.max_new_tokens 24 --rollout.steps 12 --sft.max_length 24 --sft.steps 200 --sft.batch_size 3 \
  --run.max_steps 2 --grpo.per_device_batch 8 --grpo.grad_accum 1 --run.eval_prompts 6 --run.logging_steps 50 \
  --checkpoint.every_steps 0 >"$work/q.log" 2>&1 || { tail -30 "$work/q.log"; fail "Qwen-vocabulary code GRPO run"; }
python3 - "$work/q/metrics.jsonl" <<'PY' || { tail -20 "$work/q.log"; fail "Qwen-vocabulary run did not learn the format"; }
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"phase":"eval"' in l]
assert ev and ev[0]["eval_reward"] >= 0.1, ev
print(f"Qwen2 tokenizer: eval reward after SFT {ev[0]['eval_reward']:.3f}")
PY
echo "code GRPO with the Qwen2 tokenizer and a 151936-row vocabulary: ok"

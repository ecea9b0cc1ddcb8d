#!/usr/bin/env bash
# cgrpo generate / reward / eval end to end on a tiny random model: one streamed prompt, JSONL generation at
# 1 and 2 ranks (identical files), rewards of a hand-made JSONL (exact totals), eval of a toy task and of a
# 3-problem code file at 1 and 2 ranks, the canonical-solution harness catching a wrong solution, and clear
# errors for bad flags and bad lines. $1 = cgrpo binary, $2 = mpiexec.
set -euo pipefail
CGRPO=${1:?usage: gen_eval_cli.sh path/to/cgrpo mpiexec}
MPIEXEC=${2:-mpirun}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
MPI="$MPIEXEC -n 2 --oversubscribe --bind-to none"
ulimit -c 0  # no core files should CGRPO_ABORT be set
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
GEN=(--rollout.max_new_tokens 16 --rollout.steps 8 --rollout.batch_size 3)
fails() {  # fails PATTERN CMD...: CMD must exit non-zero and print PATTERN on stderr
  local pat=$1; shift
  if "$@" > /dev/null 2> "$T/err.txt"; then echo "FAIL: accepted: $*"; exit 1; fi
  grep -q -- "$pat" "$T/err.txt" || { echo "FAIL: '$*' did not say '$pat':"; cat "$T/err.txt"; exit 1; }
}

"$CGRPO" init --preset tiny --out "$T/m" --seed 1 > /dev/null

# --- one prompt, streamed: every step redraws the canvas; stdout is the completion of sample id 0
"$CGRPO" generate --model "$T/m" --prompt "Compute 2+3." --stream "${GEN[@]}" > "$T/one.txt" 2> "$T/stream.txt"
[ "$(grep -c "step " "$T/stream.txt")" = 8 ] || { echo "FAIL: expected 8 frames"; cat "$T/stream.txt"; exit 1; }
"$CGRPO" generate --model "$T/m" --prompt "Compute 2+3." "${GEN[@]}" > "$T/one_again.txt"
cmp "$T/one.txt" "$T/one_again.txt"
"$CGRPO" generate --model "$T/m" --prompt "Compute 2+3." --chat "${GEN[@]}" --run.seed 7 > "$T/one_chat.txt"

# sampler knobs are --rollout.* flags: every unmasking rule runs; greedy (temperature 0) ignores the seed
for alg in origin maskgit_plus topk_margin entropy confidence_threshold; do
  "$CGRPO" generate --model "$T/m" --prompt "hi" "${GEN[@]}" --rollout.alg $alg --rollout.top_k 20 > /dev/null
done
"$CGRPO" generate --model "$T/m" --prompt "hi" "${GEN[@]}" --rollout.temperature 0 --run.seed 1 > "$T/greedy1.txt"
"$CGRPO" generate --model "$T/m" --prompt "hi" "${GEN[@]}" --rollout.temperature 0 --run.seed 2 > "$T/greedy2.txt"
cmp "$T/greedy1.txt" "$T/greedy2.txt"
"$CGRPO" generate --model "$T/m" --prompt "hi" "${GEN[@]}" --rollout.tokens_per_step 4 --stream 2> "$T/tps.txt" >/dev/null
[ "$(grep -c "step " "$T/tps.txt")" = 4 ] || { echo "FAIL: tokens_per_step 4 of 16 should give 4 steps"; exit 1; }

# --- JSONL at 1 and 2 ranks: identical files; ids are the completion up to the end token (510 in tiny)
cat > "$T/in.jsonl" <<'JSONL'
{"prompt": "Compute 2+3."}
{"text": "Reverse the string abc. Answer with the string only."}
{"prompt": "hi"}

{"prompt": "Sort the digits 3 9 1 in ascending order. Answer with the digits only."}
{"prompt": "def f(x):"}
JSONL
"$CGRPO" generate --model "$T/m" --input "$T/in.jsonl" --output "$T/g1.jsonl" "${GEN[@]}"
$MPI "$CGRPO" generate --model "$T/m" --input "$T/in.jsonl" --output "$T/g2.jsonl" "${GEN[@]}"
cmp "$T/g1.jsonl" "$T/g2.jsonl"
# bf16 weights and activations: the same file format, 1 and 2 ranks identical again; bf16 activations over fp32
# weights are refused with the fix named
BF=(--parallel.param_dtype bf16 --parallel.compute_dtype bf16)
"$CGRPO" generate --model "$T/m" --input "$T/in.jsonl" --output "$T/b1.jsonl" "${GEN[@]}" "${BF[@]}"
$MPI "$CGRPO" generate --model "$T/m" --input "$T/in.jsonl" --output "$T/b2.jsonl" "${GEN[@]}" "${BF[@]}"
cmp "$T/b1.jsonl" "$T/b2.jsonl"
[ "$(wc -l < "$T/b1.jsonl")" = 5 ] || { echo "FAIL: bf16 generate wrote $(wc -l < "$T/b1.jsonl") lines"; exit 1; }
fails "parallel.compute_dtype (command line) = bf16 needs parallel.param_dtype = bf16" "$CGRPO" generate --model "$T/m" --prompt x "${GEN[@]}" \
  --parallel.compute_dtype bf16
"$CGRPO" generate --model "$T/m" --input "$T/in.jsonl" --output "$T/g3.jsonl" "${GEN[@]}" --run.seed 7
python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
ins = [json.loads(l) for l in open(t + "/in.jsonl") if l.strip()]
outs = [json.loads(l) for l in open(t + "/g1.jsonl")]
assert len(outs) == len(ins) == 5, len(outs)
for i, o in zip(ins, outs):
    assert o["prompt"] == i.get("prompt", i.get("text")), o
    ids = o["ids"]
    assert len(ids) <= 16 and all(0 <= x < 512 and x != 510 for x in ids), ids
    want = bytes(x for x in ids if x < 256).decode("utf-8", "replace")
    assert o["completion"] == want, (o["completion"], want)
assert sum(len(o["ids"]) for o in outs) > 0
one = open(t + "/one.txt", "rb").read()
assert one == bytes(x for x in outs[0]["ids"] if x < 256) + b"\n", (one, outs[0])  # same sample id 0
other = [json.loads(l) for l in open(t + "/g3.jsonl")]
assert [o["ids"] for o in other] != [o["ids"] for o in outs], "run.seed changed nothing"
print("generate: ok")
PY

# --- rewards: code (pass, half pass), toy, a dataset reference, no fence, bad syntax
cat > "$T/r.ini" <<'INI'
[reward]
funcs = code,code_format,toy
weights = 2.0,0.5,1.0
INI
python3 - "$T/c.jsonl" <<'PY'
import json, sys
fence = lambda c: "Here is the code:\n```python\n" + c + "```\n"
tests = ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
recs = [
    {"completion": fence("def add(a, b):\n    return a + b\n"), "tests": tests},
    {"completion": fence("def add(a, b):\n    return a - b\n"), "tests": tests},
    {"completion": " 42\n", "task": "toy:arith", "answer": "42"},
    {"completion": fence("def has_close_elements(numbers, threshold):\n    return any(abs(a - b) < threshold "
                         "for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"),
     "dataset": "humaneval", "problem_id": "HumanEval/0"},
    {"completion": fence("def add(a, b):\n    import sys; sys.exit(0)\n"), "tests": tests},
    {"completion": "def add(a, b): return a + b", "tests": tests},
    {"completion": fence("def add(a, b)\n    return a + b\n"), "dataset": "mbpp", "problem_id": 11},
]
open(sys.argv[1], "w").write("".join(json.dumps(r) + "\n" for r in recs))
PY
"$CGRPO" reward --config "$T/r.ini" --input "$T/c.jsonl" --output "$T/rw.jsonl"
python3 - "$T/rw.jsonl" <<'PY'
import json, sys
got = [json.loads(l) for l in open(sys.argv[1])]
want = [(2.5, "ok"), (1.5, "failed"), (1.0, "ok"), (2.5, "ok"), (0.5, "failed"), (0.0, None), (0.25, None)]
assert len(got) == len(want), got
for g, (total, status) in zip(got, want):
    assert abs(g["total"] - total) < 1e-6, (g, total)
    assert abs(sum(w * g["rewards"].get(k, 0) for k, w in {"code": 2, "code_format": .5, "toy": 1}.items()) - total) < 1e-6, g
    assert status is None or g["status"] == status, (g, status)
assert set(got[0]["rewards"]) == {"code", "code_format"} and set(got[2]["rewards"]) == {"toy"}
print("reward: ok")
PY
echo '{"completion": "x", "tests": ["assert True"]}' > "$T/bad.jsonl"
echo '{"completion": "x"}' >> "$T/bad.jsonl"
fails "bad.jsonl:2" "$CGRPO" reward --config "$T/r.ini" --input "$T/bad.jsonl" --output "$T/bad.out"
echo '{"completion": "x", "task": "toy:arith", "answer": "1"}' > "$T/bad2.jsonl"
fails "no toy" "$CGRPO" reward --input "$T/bad2.jsonl" --output "$T/bad.out"
echo '{"completion": "x", "dataset": "humaneval", "problem_id": "HumanEval/999"}' > "$T/bad3.jsonl"
fails "bad3.jsonl:1" "$CGRPO" reward --input "$T/bad3.jsonl" --output "$T/bad.out"

# --- eval: a toy task, and a 3-problem code file at 1 and 2 ranks (same results)
"$CGRPO" eval --model "$T/m" --dataset toy:arith --limit 3 --samples 2 "${GEN[@]}" --output "$T/e_toy.jsonl" \
  | tee "$T/e_toy.txt"
grep -q "^pass@1 = " "$T/e_toy.txt" && grep -q "^pass@2 = " "$T/e_toy.txt"
[ "$(wc -l < "$T/e_toy.jsonl")" = 3 ]
cat > "$T/code.jsonl" <<'JSONL'
{"id": "p0", "kind": "mbpp", "prompt": "Write add(a, b).", "tests": ["assert add(1, 2) == 3"], "canonical_solution": "def add(a, b):\n    return a + b"}
{"id": "p1", "kind": "mbpp", "prompt": "Write neg(a).", "tests": ["assert neg(1) == -1", "assert neg(0) == 0"], "canonical_solution": "def neg(a):\n    return a"}
{"id": "p2", "kind": "mbpp", "prompt": "Write sq(a).", "tests": ["assert sq(3) == 9"], "canonical_solution": "def sq(a):\n    return a * a"}
JSONL
"$CGRPO" eval --model "$T/m" --dataset "$T/code.jsonl" --samples 3 "${GEN[@]}" --output "$T/e1.jsonl" | tee "$T/e1.txt"
grep -q "^eval .*: 3 problems x 3 samples on 1 rank" "$T/e1.txt" && grep -q "^pass@3 = " "$T/e1.txt"
$MPI "$CGRPO" eval --model "$T/m" --dataset "$T/code.jsonl" --samples 3 "${GEN[@]}" --output "$T/e2.jsonl"
cmp "$T/e1.jsonl" "$T/e2.jsonl"
# the harness fails a wrong reference solution (p1) and passes the others
"$CGRPO" eval --canonical --dataset "$T/code.jsonl" --output "$T/ec.jsonl" | tee "$T/ec.txt"
grep -q "passed 2/3 samples" "$T/ec.txt"
grep -q '"id":"p1".*"passed":false,"status":"failed"' "$T/ec.jsonl"
grep -q "^pass@1 = 0.6667" "$T/ec.txt"

# --- bad flags
fails "exactly one of --prompt" "$CGRPO" generate --model "$T/m"
fails "bogus" "$CGRPO" generate --model "$T/m" --prompt x --bogus
for sub in init inspect score tokenize; do  # a usage error is a message and exit status 1, not a signal
  rc=0
  "$CGRPO" "$sub" --bogus >/dev/null 2>"$T/err.txt" || rc=$?
  [[ $rc -eq 1 ]] || { echo "FAIL: cgrpo $sub --bogus exited $rc, expected 1"; exit 1; }
  grep -q "cgrpo $sub: unrecognised option '--bogus'" "$T/err.txt" || { echo "FAIL: cgrpo $sub --bogus said:"; cat "$T/err.txt"; exit 1; }
done
fails "rollout.nosuch" "$CGRPO" generate --model "$T/m" --prompt x --rollout.nosuch 3
fails "max_position_embeddings\|max_new_tokens" "$CGRPO" generate --model "$T/m" --prompt x --rollout.max_new_tokens 5000
fails "no config.json" "$CGRPO" generate --model "$T/nope" --prompt x
fails "needs --limit" "$CGRPO" eval --model "$T/m" --dataset toy:arith
fails "samples must be" "$CGRPO" eval --model "$T/m" --dataset toy:arith --limit 2 --samples 0
fails "required" "$CGRPO" reward --input "$T/c.jsonl"
echo "gen_eval_cli: ok"

#!/usr/bin/env bash
# cgrpo init tiny -> inspect -> score a small JSONL; checks that the output is well-formed, aligned with the
# input, that scored log-probs are finite and <= 0, and that -100 / position 0 give null. $1 = cgrpo binary.
set -euo pipefail
CGRPO=${1:?usage: model_cli.sh path/to/cgrpo}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

"$CGRPO" init --help | grep -- --preset >/dev/null
"$CGRPO" inspect --help | grep DIR >/dev/null
"$CGRPO" score --help | grep -- --dump-logits >/dev/null
"$CGRPO" init --preset diffucoder-7b --dry-run | grep "parameters: 7615616512" >/dev/null

"$CGRPO" init --preset tiny --out "$T/m" --seed 3 --dtype bf16
"$CGRPO" inspect "$T/m" > "$T/inspect.txt"
grep -q "layers.1" "$T/inspect.txt"
grep -q "bf16" "$T/inspect.txt"
grep -Eq "^total +([0-9]+) +\(config.json implies \1\)" "$T/inspect.txt"

cat > "$T/in.jsonl" <<'JSONL'
{"input_ids": [5, 17, 300, 42, 511, 511, 7], "labels": [5, 17, 300, 42, 9, -100, 7]}
{"input_ids": [1, 2], "labels": [-100, -100]}

{"input_ids": [508, 100, 200, 300], "labels": [508, 100, 200, 300]}
JSONL
"$CGRPO" score --model "$T/m" --input "$T/in.jsonl" --output "$T/out.jsonl" --dump-logits 3
python3 - "$T/in.jsonl" "$T/out.jsonl" <<'PY'
import json, math, sys
ins = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
outs = [json.loads(l) for l in open(sys.argv[2])]
assert len(ins) == len(outs), (len(ins), len(outs))
for i, o in zip(ins, outs):
    lp = o["logprobs"]
    assert len(lp) == len(i["input_ids"])
    want = [j > 0 and lab != -100 for j, lab in enumerate(i["labels"])]
    assert [v is not None for v in lp] == want, (lp, want)
    vals = [v for v in lp if v is not None]
    assert all(math.isfinite(v) and v <= 0 for v in vals), vals
    assert o["num_scored"] == len(vals) and abs(o["sum_logprob"] - sum(vals)) < 1e-3
    if vals:
        assert len(o["top_logits"]) == len(vals) and all(len(t["top"]) == 3 for t in o["top_logits"])
print("model_cli: ok")
PY
# --backend: the same log-probs on the node's GPU when there is one, else a clear error naming the missing device
if "$CGRPO" score --model "$T/m" --input "$T/in.jsonl" --output "$T/out_cuda.jsonl" --backend cuda 2> "$T/err.txt"; then
  python3 - "$T/out.jsonl" "$T/out_cuda.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b)
for x, y in zip(a, b):
    for u, v in zip(x["logprobs"], y["logprobs"]):
        assert (u is None) == (v is None) and (u is None or abs(u - v) <= 1e-4 * (1 + abs(u))), (u, v)
print("model_cli: cuda scores match the cpu")
PY
else
  grep -qi "cuda" "$T/err.txt" || { echo "score --backend cuda failed without naming CUDA:"; cat "$T/err.txt"; exit 1; }
fi
# a bad input is a clear error, not a crash
echo '{"input_ids": [1, 2, 3], "labels": [1, 2]}' > "$T/bad.jsonl"
if "$CGRPO" score --model "$T/m" --input "$T/bad.jsonl" --output "$T/bad.out" 2> "$T/err.txt"; then
  echo "score accepted mismatched labels"; exit 1
fi
grep -q "bad.jsonl:1" "$T/err.txt"

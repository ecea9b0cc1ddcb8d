#!/usr/bin/env bash
# cgrpo tokenize: encode and decode round trips with ids from shared/data/tokenizer/golden.jsonl, and a clear
# error naming the line for malformed JSONL. Usage: tokenize_cli.sh path/to/cgrpo
set -euo pipefail
cgrpo="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

expect() {  # expect NAME GOT WANT
  if [[ "$2" != "$3" ]]; then
    echo "FAIL $1: got [$2], want [$3]" >&2
    exit 1
  fi
  echo "ok   $1"
}

# encode: golden.jsonl lines 1 and 34 (ChatML with specials)
got="$(printf '%s\n' '{"text": "Hello world"}' '' '{"text": "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>"}' | "$cgrpo" tokenize)"
expect encode "$got" $'{"ids":[9707,1879]}\n{"ids":[151644,872,198,6023,151645,198,151643]}'

# decode, with and without the special tokens
got="$(printf '%s\n' '{"ids":[9707,1879]}' '{"ids":[151644,872,198,6023,151645,198,151643]}' | "$cgrpo" tokenize --decode)"
expect decode "$got" $'{"text":"Hello world"}\n{"text":"<|im_start|>user\\nhi<|im_end|>\\n<|endoftext|>"}'
got="$(echo '{"ids":[151644,872,198,6023,151645,198,151643]}' | "$cgrpo" tokenize --decode --skip-special)"
expect decode_skip_special "$got" '{"text":"user\nhi\n"}'

# full round trip through both directions
got="$(echo '{"text": "def add(a, b):\n    return a + b  # 你好"}' | "$cgrpo" tokenize | "$cgrpo" tokenize --decode)"
expect round_trip "$got" '{"text":"def add(a, b):\n    return a + b  # 你好"}'

# --model DIR reads DIR/tokenizer.json; --text prints ids and spellings
mkdir "$tmp/model"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
tokjson="$repo/../shared/data/tokenizer/diffucoder_tokenizer.json"
[[ -f "$tokjson" ]] || tokjson="$repo/data/tokenizer/diffucoder_tokenizer.json"
ln -s "$tokjson" "$tmp/model/tokenizer.json"
got="$("$cgrpo" tokenize --model "$tmp/model" --text 'Hello world' | sed -n 1p)"
expect text "$got" '2 ids: [9707,1879]'

# malformed input: exit 1 with the line number
if printf '%s\n' '{"text": "ok"}' '{"text": ' | "$cgrpo" tokenize >"$tmp/out" 2>"$tmp/err"; then
  echo "FAIL malformed input was accepted" >&2
  exit 1
fi
grep -q 'stdin line 2: not valid JSON' "$tmp/err" || { echo "FAIL error text: $(cat "$tmp/err")" >&2; exit 1; }
echo "ok   malformed line named"
if echo '{"ids":[1,999999]}' | "$cgrpo" tokenize --decode >/dev/null 2>"$tmp/err"; then
  echo "FAIL out-of-range id was accepted" >&2
  exit 1
fi
grep -q 'id 999999 at position 1' "$tmp/err" || { echo "FAIL error text: $(cat "$tmp/err")" >&2; exit 1; }
echo "ok   bad id named"
"$cgrpo" tokenize --help | grep -- '--skip-special' >/dev/null
echo "ok   --help"

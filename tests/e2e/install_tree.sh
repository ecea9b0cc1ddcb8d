#!/usr/bin/env bash
# `cmake --install` gives a relocatable tree that runs without the source checkout, as a site would deploy it.
#   tests/e2e/install_tree.sh BUILD_DIR
# 1. installs BUILD_DIR into a temp prefix, then moves the tree elsewhere (relocation)
# 2. in a private mount namespace, hides the checkout's data (../shared/data and data/, the roots compiled into
#    the binary) and the build dir, then from the moved tree, through its modulefile under Lmod:
#    `module load cgrpo` puts bin/ on PATH and sets CGRPO_ROOT; `cgrpo --version` lists the tree's data root first;
#    the tokenizer (ids equal to the build tree's), HumanEval (its canonical solutions pass in the sandbox) and
#    a 2-rank SFT + GRPO run of the installed tiny config with an HDF5 checkpoint all come from the tree;
#    with the tree's data moved away, a run that needs the tokenizer fails with a message naming every root.
# Skips (77) without root or unshare (nothing can be hidden) or without Lmod (launch/install-deps installs it).
set -euo pipefail
build=$(realpath "${1:?usage: install_tree.sh BUILD_DIR}")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[[ $(id -u) = 0 ]] && command -v unshare >/dev/null || { echo "SKIP: needs root and unshare"; exit 77; }
lmod_init=/usr/share/lmod/lmod/init/bash
[[ -f $lmod_init ]] || { echo "SKIP: Lmod not installed (launch/install-deps)"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/stage" >"$work/install.log" || { cat "$work/install.log"; exit 1; }
site=$work/apps/cgrpo-moved
mkdir -p "$work/apps" && mv "$work/stage" "$site"
text='def add(a, b):\n    return a + b  # 42'
want=$("$build/cgrpo" tokenize --text "$(printf "$text")")

cat >"$work/site.sh" <<'SITE'
set -euo pipefail
site=$1 root=$2 build=$3 lmod_init=$4 work=$5 text=$6 want=$7
fail() { echo "FAIL: $*"; exit 1; }
empty=$(mktemp -d)
for d in "$root/../shared/data" "$root/data" "$build"; do [[ -d $d ]] && mount --bind "$empty" "$d"; done
[[ ! -e $build/cgrpo ]] || fail "the build dir is still visible"
unset CGRPO_DATA_DIR CGRPO_ROOT
source "$lmod_init"
module use "$site/share/modulefiles"
module load cgrpo
[[ $(command -v cgrpo) == "$site/bin/cgrpo" ]] || fail "module load put $(command -v cgrpo) first on PATH"
[[ $(command -v cgrpo-run) == "$site/bin/cgrpo-run" ]] || fail "cgrpo-run is not the tree's"
[[ ${CGRPO_ROOT:-} == "$site/share/cgrpo" ]] || fail "CGRPO_ROOT=${CGRPO_ROOT:-unset}, expected $site/share/cgrpo"
first_root=$(cgrpo --version | sed -n '/^data roots:/{n;p}' | tr -d ' ')
[[ $first_root == "$site/share/cgrpo/data" ]] || fail "first data root is '$first_root'"
got=$(cgrpo tokenize --text "$(printf "$text")")
[[ "$got" == "$want" ]] || fail "tokenizer from the tree differs from the build tree's: $got vs $want"
cgrpo eval --canonical --dataset humaneval --limit 4 --reward.workers 2 --output "$work/he.jsonl" >"$work/eval.log" 2>&1 ||
  { cat "$work/eval.log"; fail "eval --canonical from the tree"; }
grep -qx 'pass@1 = 1.0000' "$work/eval.log" && (($(wc -l <"$work/he.jsonl") == 4)) ||
  { cat "$work/eval.log"; fail "canonical HumanEval solutions did not all pass"; }
cgrpo-run -n 2 -- cgrpo train -c "$CGRPO_ROOT/configs/tiny_cpu.ini" --sft.steps 6 --run.max_steps 2 \
  --run.eval_prompts 0 --run.dir "$work/run" >"$work/train.log" 2>&1 || { tail -30 "$work/train.log"; fail "train from the tree"; }
grep -q '\] done: ' "$work/train.log" || { tail -30 "$work/train.log"; fail "no done line"; }
[[ -f $work/run/checkpoints/step_00000002.h5 ]] || fail "no checkpoint step_00000002.h5 in $work/run/checkpoints"
# without any data root holding it, a tokenizer model fails clearly, naming what it tried
mv "$site/share/cgrpo/data" "$site/share/cgrpo/data.away"
if cgrpo tokenize --text x >"$work/nodata.log" 2>&1; then fail "tokenize without data succeeded"; fi
grep -q "no copy of the default tokenizer" "$work/nodata.log" && grep -q "$site/share/cgrpo/data/tokenizer" "$work/nodata.log" &&
  grep -q CGRPO_DATA_DIR "$work/nodata.log" || { cat "$work/nodata.log"; fail "unclear error without data"; }
CGRPO_DATA_DIR=$site/share/cgrpo/data.away cgrpo tokenize --text "$(printf "$text")" >"$work/env.out"
[[ "$(cat "$work/env.out")" == "$want" ]] || fail "CGRPO_DATA_DIR did not serve the tokenizer"
module unload cgrpo
! command -v cgrpo >/dev/null || fail "module unload left cgrpo on PATH"
echo "installed tree: module load, tokenizer, HumanEval canonical, 2-rank train + checkpoint, clear error without data"
SITE
unshare -m bash "$work/site.sh" "$site" "$root" "$build" "$lmod_init" "$work" "$text" "$want"

#!/usr/bin/env bash
# The binary answers --version, --help on every subcommand, and rejects an unknown subcommand.
set -euo pipefail
cgrpo=$1
"$cgrpo" --version | grep -q "^cgrpo [0-9]"
"$cgrpo" --version | grep -q "cuda="
"$cgrpo" --help >/dev/null
for cmd in $("$cgrpo" --help | awk '/^commands:/{on=1; next} on && NF && $1 !~ /^--/ {print $1}'); do
  "$cgrpo" "$cmd" --help | grep -q "usage:" || { echo "FAIL: '$cmd --help' printed no usage"; exit 1; }
  echo "ok: $cmd --help"
done
if "$cgrpo" no-such-command 2>/dev/null; then echo "FAIL: unknown command accepted"; exit 1; fi
echo PASS

#!/usr/bin/env bash
# netns_two_hosts: a 2-rank `cgrpo train` whose ranks run on two simulated hosts.
#   tests/e2e/netns_two_hosts.sh path/to/cgrpo
# Two network namespaces joined only by a veth pair carry a private /24 that exists nowhere else (no default
# route, no end in the host namespace); each "host" also gets its own hostname (UTS namespace). mpirun runs in
# host A and starts its daemon on host B through Open MPI's rsh launcher with this script as the agent
# (`plm_rsh_agent "<this script> agent"`), so no sshd is needed. MPI runs over TCP on the veth only
# (launch/cgrpo-run with CGRPO_MPI_TCP_IF=<the /24>). Checks: the run finishes with a final checkpoint, rank 0
# logged host A and rank 1 host B, and rank 1's namespace received the training traffic over the veth.
# Names (namespaces, veth, hostnames, subnet) are unique per run; a trap deletes the namespaces (and the veth).
# Needs root and iproute2/unshare; exits 77 (skipped) where namespaces cannot be created.
set -euo pipefail
SELF=$(realpath "${BASH_SOURCE[0]}")

if [[ "${1:-}" == agent ]]; then
  # Open MPI calls: AGENT [ssh-style options] HOST COMMAND...; map HOST to its namespace and hostname
  shift
  while [[ "${1:-}" == -* ]]; do shift; done
  host=$1; shift
  case "$host" in
    "$CGNS_IP_A") ns=$CGNS_A hn=$CGNS_HOST_A ;;
    "$CGNS_IP_B") ns=$CGNS_B hn=$CGNS_HOST_B ;;
    *) echo "netns agent: unknown host '$host'" >&2; exit 1 ;;
  esac
  exec ip netns exec "$ns" unshare --uts sh -c "hostname $hn; $*"
fi

here=$(cd "$(dirname "$SELF")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/tests/lib/common.sh"
bin=$(realpath "${1:?usage: netns_two_hosts.sh path/to/cgrpo}")
[[ $(id -u) == 0 ]] || { echo "SKIP: needs root (ip netns)"; exit 77; }
for t in ip unshare mpirun; do command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }; done

t_start=$(now_ms)
id=$(printf '%05d' $((($$ + RANDOM) % 100000)))
export CGNS_A=cgA$id CGNS_B=cgB$id CGNS_HOST_A=cghostA$id CGNS_HOST_B=cghostB$id
vA=cgvA$id vB=cgvB$id                          # interface names: at most 15 characters
NET=10.$((100 + RANDOM % 100)).$((RANDOM % 250))
export CGNS_IP_A=$NET.1 CGNS_IP_B=$NET.2
D=$(mktemp -d /tmp/cgrpo-netns-test.XXXXXX)
created=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if ((rc != 0)); then
    for f in "$D/out.txt" "$D/run/logs/rank_0.log" "$D/run/logs/rank_1.log"; do
      [[ -f "$f" ]] && { echo "----- $f (last 30 lines)"; tail -n 30 "$f"; }
    done
  fi
  local ns p
  for ns in "$CGNS_A" "$CGNS_B"; do             # anything still inside our namespaces is ours: end it by pid
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  if ((created)); then ip netns del "$CGNS_A" 2>/dev/null; ip netns del "$CGNS_B" 2>/dev/null; fi
  ip link del "$vA" 2>/dev/null                 # only if it never moved into a namespace
  [[ "${CGRPO_KEEP_TMP:-0}" == 1 ]] && echo "kept $D" || rm -rf "$D"
  echo "netns_two_hosts: total $(( ($(now_ms) - t_start) / 1000 )) s, rc=$rc"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! ip netns add "$CGNS_A" 2>"$D/err.txt"; then
  echo "SKIP: cannot create network namespaces here: $(cat "$D/err.txt")"; exit 77
fi
created=1
ip netns add "$CGNS_B"
ip link add "$vA" type veth peer name "$vB"
ip link set "$vA" netns "$CGNS_A"
ip link set "$vB" netns "$CGNS_B"
ip -n "$CGNS_A" addr add "$CGNS_IP_A/24" dev "$vA"
ip -n "$CGNS_B" addr add "$CGNS_IP_B/24" dev "$vB"
for ns in "$CGNS_A" "$CGNS_B"; do ip -n "$ns" link set lo up; done
ip -n "$CGNS_A" link set "$vA" up
ip -n "$CGNS_B" link set "$vB" up
# the /24 must be reachable between the namespaces and nowhere else
routes_a=$(ip -n "$CGNS_A" route) routes_host=$(ip route)
grep -q "^$NET.0/24" <<<"$routes_a" || fail "no /24 route in $CGNS_A"
grep -q '^default' <<<"$routes_a" && fail "namespace $CGNS_A has a default route"
grep -q "^$NET.0/24" <<<"$routes_host" && fail "$NET.0/24 leaked into the host namespace"
echo "namespaces $CGNS_A ($CGNS_IP_A) <-> $CGNS_B ($CGNS_IP_B) over $vA/$vB"

rx0=$(ip netns exec "$CGNS_B" cat "/sys/class/net/$vB/statistics/rx_bytes")
t0=$(now_ms)
rc=0
# rank 0 in host A (mpirun's host), rank 1 in host B (daemon started through the agent); TCP on the /24 only
timeout -k 5 180 ip netns exec "$CGNS_A" unshare --uts sh -c "hostname $CGNS_HOST_A; exec env \
    CGRPO_MPI_TCP_IF=$NET.0/24 CGRPO_RANKS_PER_NODE=1 OPENBLAS_NUM_THREADS=1 \
    '$root/launch/cgrpo-run' -n 2 --host $CGNS_IP_A:1,$CGNS_IP_B:1 --mca plm_rsh_agent '$SELF agent' -- \
    '$bin' train --config '$root/configs/tiny_cpu.ini' --sft.steps 10 --run.max_steps 4 --run.eval_prompts 0 \
    --checkpoint.every_steps 2 --run.dir '$D/run'" >"$D/out.txt" 2>&1 || rc=$?
echo "2-host train: $(( ($(now_ms) - t0) / 1000 )) s, rc=$rc"
((rc != 124)) || fail "the 2-host run hung (ended by the 180 s guard)"
((rc == 0)) || fail "the 2-host run failed with rc=$rc"
rx=$(( $(ip netns exec "$CGNS_B" cat "/sys/class/net/$vB/statistics/rx_bytes") - rx0 ))

grep -q "rank 0/2 .* on host $CGNS_HOST_A," "$D/run/logs/rank_0.log" || fail "rank 0 did not log host $CGNS_HOST_A"
grep -q "rank 1/2 (local rank 0) on host $CGNS_HOST_B," "$D/run/logs/rank_1.log" || fail "rank 1 did not log host $CGNS_HOST_B as local rank 0 (a node of its own)"
grep -q '] done: ' "$D/run/logs/rank_0.log" || fail "no 'done:' line in rank_0.log"
[[ -f "$D/run/checkpoints/step_00000004.h5" ]] || fail "no final checkpoint step_00000004.h5"
((rx > 1000000)) || fail "only $rx bytes reached $CGNS_B over the veth; the ranks did not talk across it"
grep -h 'on host' "$D/run/logs/rank_0.log" "$D/run/logs/rank_1.log" | sed 's/^.*\] //'
echo "PASS: rank 0 on $CGNS_HOST_A, rank 1 on $CGNS_HOST_B, $((rx / 1000000)) MB over the veth"

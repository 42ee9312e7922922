#!/usr/bin/env bash
# The fixed cost of a replication cycle is two snapshot creations (the primary's at the start,
# the seal on the secondary at the end) and, beside the copy, the removals of retention. Each
# waits for the monitors to publish a new OSD map (a self-managed snapshot id), and the
# monitors publish at most once per `paxos_propose_interval` (Ceph's default: 1 s). This times
# COUNT `rbd snap create` and `rbd snap rm` calls on one sandbox site, spaced by a random
# 0.1-0.9 s as cycles of many images are, with the interval as shipped and then with 0.05 s.
#
#   bench/snap-latency.sh [--count 12] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=12 DIR=/tmp/imgstore-bench-snap
. tests/lib/bench.sh
options "[--count 12] [--dir DIR]" count=COUNT dir=DIR -- "$@"
SB=$DIR/sandbox
fresh_sandbox "$SB"
scripts/sandbox up "$SB" --sites 1 --store bluestore --no-daemons >/dev/null
trap 'scripts/sandbox down "$SB" >/dev/null 2>&1 || true' EXIT
. "$SB/env"
A=$CEPH_CONF_A
rbd -c "$A" create --size 64M rbd/s
now() { date +%s.%N; }
stats() { tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { printf "median %.2f (%.2f-%.2f)", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR] }'; }
echo "| paxos_propose_interval | rbd snap create s | rbd snap rm s |"
echo "|---|---|---|"
for iv in shipped 0.05; do
  [ $iv = shipped ] && iv_s=$(ceph -c "$A" config get mon paxos_propose_interval) || { ceph -c "$A" config set mon paxos_propose_interval $iv; iv_s=$iv; }
  c=() d=()
  for i in $(seq 1 "$COUNT"); do
    t0=$(now); rbd -c "$A" snap create "rbd/s@$iv-$i" >/dev/null 2>&1; t1=$(now)
    c+=("$(echo "$t1 - $t0" | bc -l)")
    sleep "0.$((RANDOM % 9 + 1))"
  done
  for i in $(seq 1 "$COUNT"); do
    t0=$(now); rbd -c "$A" snap rm --no-progress "rbd/s@$iv-$i" >/dev/null 2>&1; t1=$(now)
    d+=("$(echo "$t1 - $t0" | bc -l)")
    sleep "0.$((RANDOM % 9 + 1))"
  done
  echo "| $iv_s ($iv) | $(echo "${c[*]}" | stats) | $(echo "${d[*]}" | stats) |"
done
t0=$(now); for i in 1 2 3 4 5; do rbd -c "$A" info rbd/s >/dev/null; done; t1=$(now)
printf '\nan rbd command that changes nothing (rbd info), for the tool'"'"'s own start-up: %.2f s\n' "$(echo "($t1 - $t0) / 5" | bc -l)"

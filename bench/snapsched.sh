#!/usr/bin/env bash
# The snapshot schedules' idle cost: N images on site a of a running sandbox, each with a
# schedule not due for an hour; site a's imgstored's CPU seconds over SECS seconds, per build.
#   bash bench/snapsched.sh SANDBOX_DIR [N] [SECS] [IMGSTORED ...]
# Each IMGSTORED (default: the sandbox's own) is started in turn as site a's daemon, measured
# after a 10 s settle, and the sandbox's own put back. Prints one line per binary and run.
set -euo pipefail
SB=${1:?sandbox dir}
N=${2:-100}
SECS=${3:-60}
shift $(($# < 3 ? $# : 3))
HERE=$(cd "$(dirname "$0")/.." && pwd)
CLI=${CLI:-$HERE/build/cli/imgstore}
. "$SB/env"
conf=$(ls "$SB"/site-a/ceph.conf)
own=$(cat "$SB/imgstored.path")
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$own")
prefix=ssb$$
cleanup() {
  for i in $(seq 1 "$N"); do
    IMGSTORE_SERVER=$IMGSTORE_SERVER_A "$CLI" snap schedule rm "rbd/$prefix-$i" >/dev/null 2>&1 || true
    timeout 60 rbd -c "$conf" rm --no-progress "rbd/$prefix-$i" >/dev/null 2>&1 || true
  done
}
trap 'cleanup; echo "$own" >"$SB/imgstored.path"' EXIT
for i in $(seq 1 "$N"); do
  timeout 60 rbd -c "$conf" create --size 1M "rbd/$prefix-$i"
  IMGSTORE_SERVER=$IMGSTORE_SERVER_A "$CLI" snap schedule add "rbd/$prefix-$i" --every 1h --keep hourly=2 >/dev/null
done
cpu_of() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
for b in "${bins[@]}"; do
  "$HERE/scripts/sandbox" stop-daemon "$SB" a >/dev/null
  echo "$b" >"$SB/imgstored.path" # start-daemon starts the sandbox's recorded binary
  "$HERE/scripts/sandbox" start-daemon "$SB" a >/dev/null
  pid=$(cat "$SB/site-a/run/imgstored.pid")
  sleep 10
  t0=$(cpu_of "$pid")
  sleep "$SECS"
  t1=$(cpu_of "$pid")
  hz=$(getconf CLK_TCK)
  echo "$b: $N idle schedules, ${SECS}s: $(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }') CPU s"
done
echo "$own" >"$SB/imgstored.path"
"$HERE/scripts/sandbox" stop-daemon "$SB" a >/dev/null
"$HERE/scripts/sandbox" start-daemon "$SB" a >/dev/null

#!/usr/bin/env bash
# Snapshot schedules that come due together: N images on site a of a running sandbox, each
# given a schedule `--every EVERY` in one go (as a script enabling a whole pool does), so all
# are due in the same second. Timed, per imgstored binary: from the first scheduled snapshot
# of the round to the last (their names carry the time each was taken), and how long after
# the round was due the last one came. Beside it, in the same run, what a cron job would do
# instead: `rbd snap create` of the N images one after the other, and 8 at a time (xargs -P 8).
#   bash bench/snapsched-burst.sh SANDBOX_DIR [N] [EVERY_S] [IMGSTORED ...]
# Each IMGSTORED (default: the sandbox's own) is started in turn as site a's daemon; the
# sandbox's own is put back at the end. Prints one line per binary and per cron variant.
set -euo pipefail
SB=${1:?sandbox dir}
N=${2:-100}
EVERY=${3:-30}
shift $(($# < 3 ? $# : 3))
HERE=$(cd "$(dirname "$0")/.." && pwd)
CLI=${CLI:-$HERE/build/cli/imgstore}
. "$SB/env"
conf=$SB/site-a/ceph.conf
own=$(cat "$SB/imgstored.path")
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=("$own")
prefix=ssx$$
rbd_a() { timeout 120 rbd -c "$conf" "$@"; }
unschedule() {
  local i
  for i in $(seq 1 "$N"); do
    IMGSTORE_SERVER=$IMGSTORE_SERVER_A "$CLI" snap schedule rm "rbd/$prefix-$i" >/dev/null 2>&1 || true
  done
}
purge() {
  local i
  for i in $(seq 1 "$N"); do rbd_a snap purge "rbd/$prefix-$i" >/dev/null 2>&1 || true; done
}
cleanup() {
  unschedule
  purge
  for i in $(seq 1 "$N"); do rbd_a rm --no-progress "rbd/$prefix-$i" >/dev/null 2>&1 || true; done
  echo "$own" >"$SB/imgstored.path"
}
trap cleanup EXIT
for i in $(seq 1 "$N"); do rbd_a create --size 1M "rbd/$prefix-$i"; done

# the scheduled snapshots' times (ms), one a line
sched_times() {
  local i
  for i in $(seq 1 "$N"); do
    rbd_a snap ls --format json "rbd/$prefix-$i" 2>/dev/null |
      jq -r '.[] | select(.name | startswith("imgstore-sched-")) | .name | ltrimstr("imgstore-sched-")'
  done
}
for b in "${bins[@]}"; do
  "$HERE/scripts/sandbox" stop-daemon "$SB" a >/dev/null
  echo "$b" >"$SB/imgstored.path" # start-daemon starts the sandbox's recorded binary
  "$HERE/scripts/sandbox" start-daemon "$SB" a >/dev/null
  t_add=$(date +%s%3N)
  for i in $(seq 1 "$N"); do
    IMGSTORE_SERVER=$IMGSTORE_SERVER_A "$CLI" snap schedule add "rbd/$prefix-$i" --every "${EVERY}s" --keep hourly=2 >/dev/null
  done
  t_added=$(date +%s%3N)
  # the round: every image's first scheduled snapshot, at most 20 minutes
  for _ in $(seq 1 600); do
    got=$(sched_times | wc -l)
    [ "$got" -ge "$N" ] && break
    sleep 2
  done
  unschedule # before the next round comes due
  times=$(sched_times | sort -n)
  first=$(head -1 <<<"$times") last=$(tail -1 <<<"$times") count=$(wc -l <<<"$times")
  # the first schedule added was due EVERY s after its add; the last one after t_added
  echo "$b: $N schedules due together (added in $(((t_added - t_add) / 1000)).$(((t_added - t_add) % 1000 / 100)) s): $count snapshots, first to last $(awk -v a="$first" -v b="$last" 'BEGIN { printf "%.1f", (b - a) / 1000 }') s, the last $(awk -v a="$t_added" -v b="$last" -v e="$EVERY" 'BEGIN { printf "%.1f", (b - a) / 1000 - e }') s after the last was due"
  purge
done
echo "$own" >"$SB/imgstored.path"
"$HERE/scripts/sandbox" stop-daemon "$SB" a >/dev/null
"$HERE/scripts/sandbox" start-daemon "$SB" a >/dev/null

# what cron would do instead
t0=$(date +%s%3N)
for i in $(seq 1 "$N"); do rbd_a snap create "rbd/$prefix-$i@cron-1" >/dev/null 2>&1; done
t1=$(date +%s%3N)
echo "cron, rbd snap create one after the other: $N snapshots in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }') s"
t0=$(date +%s%3N)
seq 1 "$N" | xargs -P 8 -I{} timeout 120 rbd -c "$conf" snap create "rbd/$prefix-{}@cron-2" >/dev/null 2>&1
t1=$(date +%s%3N)
echo "cron, rbd snap create 8 at a time (xargs -P 8): $N snapshots in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1000 }') s"

#!/usr/bin/env bash
# Snapshot schedules (imgstore snap schedule add/ls/rm) on site a, with the retention rule's
# hour shortened to 2 s ([defaults] snapshot_schedule_hour = 2s, so a "day" is 48 s): a
# schedule every second takes snapshots and prunes them by --keep; a protected one stays; a
# second imgstored of the site does not run them too, and takes over when the first stops; the
# schedule survives a restart; rm stops it and leaves its snapshots; a group has one too; 12
# schedules due together all run (a tick runs them 8 at a time). Bad
# input (unknown image, --every 0, --keep garbage) and a host's token are refused and change
# nothing.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
BIN=${IMS_BINARY_DIR:?}/daemon/imgstored
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
workdir W

img=ss$$ g=ssg$$ gi=ssgi$$
A=$IMGSTORE_SANDBOX/site-a
PID2=
many=()
cleanup() {
  on_a snap schedule rm "rbd/$img" >/dev/null 2>&1
  for m in "${many[@]}"; do on_a snap schedule rm "rbd/$m" >/dev/null 2>&1; done
  [ ${#many[@]} = 0 ] || forget_images "${many[@]}"
  on_a snap schedule rm --group "rbd/$g" >/dev/null 2>&1
  if [ -n "$PID2" ] && kill -0 "$PID2" 2>/dev/null; then
    kill "$PID2"
    wait_until 100 0.1 pid_gone "$PID2"
  fi
  rm -f "$A/imgstored-ss.conf" "$A/run/snapsched-2.sock" "$A/run/audit-snapsched-2.log"
  rm -rf "$A/run/spool-snapsched-2"
  for s in $(rbd -c "$CEPH_CONF_A" snap ls "rbd/$img" 2>/dev/null | awk '/imgstore-sched-/ {print $2}'); do
    rbd -c "$CEPH_CONF_A" snap unprotect "rbd/$img@$s" >/dev/null 2>&1
  done
  forget_group "$g" "$gi"
  forget_images "$img"
  config_restore a
  rm -rf "$W"
}
trap cleanup EXIT

sched_snaps() { rbd -c "$CEPH_CONF_A" snap ls --format json "rbd/$1" 2>/dev/null | jq -r '[.[].name | select(startswith("imgstore-sched-"))] | sort | .[]'; }
count() { sched_snaps "$1" | grep -c . ; }
listed() { on_a --format json snap schedule ls | jq -e --arg n "$1" '.[] | select(.name == $n)' >/dev/null; }
not_listed() { ! listed "$1"; }
sched_is() { on_a --format json snap schedule ls | jq -e --arg n "$1" ".[] | select(.name == \$n) | $2" >/dev/null; }
took() { grep -c "snapshot schedule of image 'rbd/$img': took" "$1" 2>/dev/null || true; }
# a log's lines from line $2 on
since() { tail -n "+$2" "$1" 2>/dev/null; }

expect_rc 0 "create rbd/$img" on_a image create "rbd/$img" --size 16M

# ---- bad input changes nothing
expect_rc 1 "an unknown image is refused" on_a snap schedule add "rbd/nosuch$$" --every 1s --keep hourly=2
check "  naming it" grep -q "no image or group 'rbd/nosuch$$'" "$T_ERR"
expect_rc 2 "--every 0 is refused" on_a snap schedule add "rbd/$img" --every 0 --keep hourly=2
check "  saying so" grep -q -- "--every: must be at least 1s" "$T_ERR"
expect_rc 1 "--keep garbage is refused" on_a snap schedule add "rbd/$img" --every 1s --keep garbage
check "  saying what is wrong" grep -q -- "--keep 'garbage': 'garbage' is not hourly=N" "$T_ERR"
expect_rc 1 "--keep hourly=0 is refused" on_a snap schedule add "rbd/$img" --every 1s --keep hourly=0
check "  it keeps nothing" grep -q "keeps no snapshot" "$T_ERR"
expect_rc 1 "a host's token may not add a schedule" env IMGSTORE_TOKEN_FILE="$IMGSTORE_HOST_TOKEN_FILE" "$CLI" snap schedule add "rbd/$img" --every 1s --keep hourly=2
check "  it needs role admin" grep -q "may not call SnapshotService/AddSnapshotSchedule, which needs role admin" "$T_ERR"
expect_rc 0 "a reader may list the schedules" env IMGSTORE_TOKEN_FILE="$IMGSTORE_READER_TOKEN_FILE" "$CLI" snap schedule ls
check "none of those refused was recorded" not_listed "$img"
check "  nor the unknown image" not_listed "nosuch$$"
expect_rc 1 "rm of a schedule that does not exist" on_a snap schedule rm "rbd/$img"
check "  says there is none" grep -q "'rbd/$img' has no snapshot schedule" "$T_ERR"

# ---- the rule's hour shortened to 2 s (site a's daemon restarted with it)
config_keep a
sed -i 's|^\[defaults\]$|[defaults]\nsnapshot_schedule_hour = 2s|' "$(site_conf a)"
daemon_stop a
daemon_start a
check "site a's imgstored restarted with snapshot_schedule_hour = 2s" wait_until 100 0.2 daemon_up a
wait_until 100 0.2 on_a site ls >/dev/null
LOG1=$(site_log a)
from1=$(($(wc -l <"$LOG1") + 1))

expect_rc 0 "schedule add every 1s, keep hourly=2,daily=1" on_a snap schedule add "rbd/$img" --every 1s --keep hourly=2,daily=1
check "  listed" listed "$img"
check "snapshots appear" wait_until 40 0.5 bash -c "[ \$(rbd -c '$CEPH_CONF_A' snap ls 'rbd/$img' | grep -c imgstore-sched-) -ge 2 ]"
first=$(sched_snaps "$img" | head -1)
rbd -c "$CEPH_CONF_A" snap protect "rbd/$img@$first" >/dev/null 2>&1
# counted, not timed: every 1 s is a floor, and a loaded machine takes longer per snapshot
took1() { since "$LOG1" "$from1" | grep -c "snapshot schedule of image 'rbd/$img': took"; }
removed1() { since "$LOG1" "$from1" | grep -c "snapshot schedule of image 'rbd/$img': removed"; }
t0=$SECONDS
while [ $((SECONDS - t0)) -lt 120 ] && { [ "$(took1)" -lt 5 ] || [ "$(removed1)" -lt 2 ]; }; do sleep 0.5; done
n_took=$(took1)
n_removed=$(removed1)
n_now=$(count "$img")
check "several taken ($n_took in $((SECONDS - t0)) s)" test "$n_took" -ge 5
check "and pruned ($n_removed removed)" test "$n_removed" -ge 2
# hourly=2: the newest of each of the last two 2 s buckets; daily=1: the newest of the 48 s
# bucket (the newest of all); plus the protected one
check "at most 2 + 1 + the protected one kept ($n_now)" test "$n_now" -le 4
check "the protected snapshot $first stayed" bash -c "rbd -c '$CEPH_CONF_A' snap ls 'rbd/$img' | grep -q '$first'"
newest_taken=$(since "$LOG1" "$from1" | grep "snapshot schedule of image 'rbd/$img': took" | tail -1 | sed "s/.*took '\(.*\)'.*/\1/")
check "the newest taken ($newest_taken) is kept" bash -c "rbd -c '$CEPH_CONF_A' snap ls 'rbd/$img' | grep -q '$newest_taken'"
check "schedule ls shows its last snapshot" sched_is "$img" '.last_unix_ms > 0 and .every_seconds == 1 and .keep == "hourly=2,daily=1,weekly=0"'

# ---- a second imgstored of site a (its own port, socket, spool, audit log): one runs them
SOCK2=$A/run/snapsched-2.sock
LOG2=$A/log/imgstored-ss.log
second_conf a "$A/run" snapsched-2 >"$A/imgstored-ss.conf"
: >"$LOG2"
"$BIN" --config "$A/imgstored-ss.conf" </dev/null >>"$LOG2" 2>&1 9>&- &
PID2=$!
disown "$PID2"
healthy2() { curl -sf --max-time 2 --unix-socket "$SOCK2" http://localhost/healthz >/dev/null; }
check "a second imgstored on site a" wait_until 100 0.2 healthy2
from1=$(($(wc -l <"$LOG1") + 1))
t0=$SECONDS
while [ $((SECONDS - t0)) -lt 60 ] && [ "$(took1)" -lt 3 ]; do sleep 0.5; done
sleep 1 # a second's worth more for the other daemon to show itself, if it runs them too
t1=$(took1)
t2=$(took "$LOG2")
check "the first keeps running the schedule ($t1 in $((SECONDS - t0)) s)" test "$t1" -ge 3
check "the second does not run it too ($t2)" test "$t2" -eq 0
# one runner: no two snapshots taken less than 0.9 s apart over these 6 s
gaps_ok() {
  since "$LOG1" "$from1" | grep "rbd/$img': took" | sed "s/.*took 'imgstore-sched-\([0-9]*\)'.*/\1/" | sort -n |
    awk 'NR > 1 && $1 - p < 900 { bad = 1 } { p = $1 } END { exit bad }'
}
check "no snapshot taken twice in an interval" gaps_ok

# the first stops (its lock released): the second takes over at once
daemon_stop a
check "the second takes over within 5 s" wait_until 25 0.2 bash -c "[ \$(grep -c \"rbd/$img': took\" '$LOG2') -ge 1 ]"
check "  saying it runs them" grep -q "snapshot schedules of site 'a' run by this daemon" "$LOG2"
kill "$PID2"
check "the second stopped" wait_until 100 0.1 pid_gone "$PID2"
PID2=

# ---- restart: the schedule is in RADOS
daemon_start a
check "site a's imgstored started again" wait_until 100 0.2 daemon_up a
from1=$(($(wc -l <"$LOG1") + 1))
check "the schedule survived the restart" wait_until 50 0.2 listed "$img"
check "and runs again" wait_until 30 0.5 bash -c "tail -n +$from1 '$LOG1' | grep -q \"rbd/$img': took\""

# ---- a group
expect_rc 0 "create rbd/$gi" on_a image create "rbd/$gi" --size 16M
expect_rc 0 "group create rbd/$g" on_a group create "rbd/$g"
expect_rc 0 "group add" on_a group add "rbd/$g" "rbd/$gi"
expect_rc 0 "schedule add of the group (found by name)" on_a snap schedule add "rbd/$g" --every 1s --keep hourly=1
check "  recorded as a group" sched_is "$g" '.group'
check "group snapshots appear" wait_until 40 0.5 bash -c "rbd -c '$CEPH_CONF_A' group snap ls 'rbd/$g' | grep -q imgstore-sched-"
check "  each gets a digest of its member" wait_until 40 0.25 grep -q "digest [0-9]* of 'rbd/$gi@$g@imgstore-sched-[0-9]*' (schedule)" "$LOG1"
sleep 4
gn=$(rbd -c "$CEPH_CONF_A" group snap ls "rbd/$g" | grep -c imgstore-sched-)
check "  pruned to the newest of each of the last hours: at most 2 ($gn)" test "$gn" -le 2
expect_rc 0 "schedule rm --group" on_a snap schedule rm --group "rbd/$g"

# ---- many due together: a tick runs them several at once (IMS_SNAPSCHED_WORKERS, 8); each
# takes its snapshots, gets its digests and records its state
for k in $(seq 1 12); do many+=("$img-m$k"); done
for m in "${many[@]}"; do on_a image create "rbd/$m" --size 4M >/dev/null 2>&1 || not_ok "create rbd/$m"; done
for m in "${many[@]}"; do on_a snap schedule add "rbd/$m" --every 2s --keep hourly=2 >/dev/null 2>&1 || not_ok "schedule rbd/$m"; done
all_took() { local m; for m in "${many[@]}"; do [ "$(count "$m")" -ge 2 ] || return 1; done; }
check "12 schedules added at once: each took at least 2 snapshots" wait_until 120 0.5 all_took
all_digested() { local m; for m in "${many[@]}"; do grep -q "digest [0-9]* of 'rbd/$m@imgstore-sched-[0-9]*' (schedule)" "$LOG1" || return 1; done; }
check "  each got its digests" wait_until 40 0.25 all_digested
all_recorded() { on_a --format json snap schedule ls | jq -e --arg p "$img-m" '[.[] | select((.name | startswith($p)) and .last_unix_ms > 0 and (.last_error // "") == "")] | length == 12' >/dev/null; }
check "  and each shows its last snapshot and no error in schedule ls" wait_until 20 0.5 all_recorded
for m in "${many[@]}"; do on_a snap schedule rm "rbd/$m" >/dev/null 2>&1 || not_ok "schedule rm rbd/$m"; done
sleep 3
forget_images "${many[@]}"
many=()

# ---- rm: no more snapshots, the ones taken stay
expect_rc 0 "schedule rm" on_a snap schedule rm "rbd/$img"
check "  no longer listed" not_listed "$img"
# a run already under way when rm landed may still end (slowly, on a loaded machine): wait,
# bounded, until the list holds still for 1.5 s, then it must stay so
before=$(sched_snaps "$img" | tr '\n' ,)
t0=$SECONDS
while [ $((SECONDS - t0)) -lt 30 ]; do
  sleep 1.5
  now=$(sched_snaps "$img" | tr '\n' ,)
  [ "$now" = "$before" ] && break
  before=$now
done
sleep 3
after=$(sched_snaps "$img" | tr '\n' ,)
check "no snapshot taken or removed after rm (still after $((SECONDS - t0)) s)" test "$after" = "$before"
[ "$after" = "$before" ] || { echo "# before: $before"; echo "# after:  $after"; grep -h "rbd/$img'" "$LOG1" "$LOG2" | tail -8 | sed 's/^/# /'; }
check "  the ones taken stay" test -n "$before"

finish

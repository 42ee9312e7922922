#!/usr/bin/env bash
# imgstored killed with SIGKILL in the middle of a large delta, then restarted: the cycle
# resumes from its checkpoint (fewer bytes shipped after the restart than the whole delta),
# converges, and no sealed snapshot on site b ever differs from its primary. Site a's daemon
# runs with a bandwidth limit for the first part, which both tests the limit (the delta takes
# the time the rate says) and keeps the copy slow enough to cut in the middle.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
CONF=$(site_conf a)

img=kill$$
DELTA_MB=160
RATE_MB=16

# whatever happens: site a's daemon back on its own configuration, the images gone
config_keep a
cleanup() {
  config_restore a
  rm -f "/tmp/kill-diff.$$"
  forget_replica "$img"
}
trap cleanup EXIT

status() { "$CLI" --format json repl status "rbd/$img"; }
sealed() { status | jq -r '.[0].last_sealed_snapshot // ""'; }
same_at() { snap_equal "$img" "$1"; }
# every replication snapshot sealed on site b that site a still has is equal on both
all_sealed_equal() {
  local s n=0
  for s in $(rbd -c "$CEPH_CONF_B" snap ls --format json "rbd/$img" | jq -r '.[].name'); do
    rbd -c "$CEPH_CONF_A" snap ls --format json "rbd/$img" | jq -e --arg s "$s" 'any(.[]; .name == $s)' >/dev/null || continue
    same_at "$s" || { echo "  $s differs" >&2; return 1; }
    n=$((n + 1))
  done
  echo "  $n sealed snapshots compared" >&2
  [ $n -gt 0 ]
}
checkpoint_done() {
  rados -c "$CEPH_CONF_A" -p rbd getomapval imgstore.repl.checkpoints "$img@b" /dev/stdout 2>/dev/null |
    jq -r '.done // 0' 2>/dev/null || echo 0
}

"$CLI" image create "rbd/$img" --size 512M >/dev/null || { echo "cannot create rbd/$img"; exit 1; }
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 4M --io-total 16M --io-pattern seq "rbd/$img" >/dev/null 2>&1
# a long RPO: only explicit syncs run, so the test decides when cycles happen
"$CLI" repl enable "rbd/$img" --to b --rpo 1h >/dev/null
first=""
for i in $(seq 1 120); do first=$(sealed); [ -n "$first" ] && break; sleep 0.5; done
check "initial sync sealed ($first)" test -n "$first"

# the large delta: DELTA_MB of new data
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 4M --io-threads 1 --io-total "${DELTA_MB}M" --io-pattern seq "rbd/$img" >/dev/null 2>&1
rbd -c "$CEPH_CONF_A" diff --from-snap "$first" --format json "rbd/$img" >"/tmp/kill-diff.$$"
# delta_below OFFSET: bytes of the delta below OFFSET (a checkpoint is an offset below which
# every extent of the delta is copied)
delta_below() {
  jq --argjson o "$1" '[.[] | select(.exists == "true" or .exists == true) |
    if .offset + .length <= $o then .length elif .offset < $o then $o - .offset else 0 end] | add // 0' "/tmp/kill-diff.$$"
}
delta_bytes=$(delta_below 1e18)
echo "# delta since $first: $delta_bytes bytes"

# site a's daemon with a bandwidth limit
sed -i "/^\[defaults\]/a bandwidth_limit = ${RATE_MB}M" "$CONF"
daemon_stop a && daemon_start a
check "site a's daemon restarted with a ${RATE_MB}M/s limit" grep -q "^bandwidth_limit = ${RATE_MB}M" "$CONF"

t0=$(date +%s.%N)
"$CLI" repl sync "rbd/$img" --no-wait >/dev/null
done_at_kill=0 copied_at_kill=0
for i in $(seq 1 300); do
  done_at_kill=$(checkpoint_done)
  copied_at_kill=$(delta_below "$done_at_kill")
  [ "$copied_at_kill" -ge $((48 << 20)) ] && break
  sleep 0.1
done
t1=$(date +%s.%N)
daemon_stop a --kill
echo "# killed with the checkpoint at offset $done_at_kill ($copied_at_kill bytes of the delta) after $(echo "$t1 - $t0" | bc) s"
check "a checkpoint was written before the kill ($copied_at_kill bytes copied)" test "$copied_at_kill" -ge $((48 << 20))
# the limit held: what was copied, less one second's burst, took at least its time at the rate
check "the bandwidth limit held the copy back" \
  awk "BEGIN { exit !($t1 - $t0 >= ($copied_at_kill / 1048576 - $RATE_MB) / $RATE_MB) }"
check "the checkpoint is still there after the kill" test "$(checkpoint_done)" -ge "$done_at_kill"

# restart without the limit and sync: it resumes
mv "$CONF.orig" "$CONF" && cp "$CONF" "$CONF.orig"
daemon_start a
check "repl sync after the restart" "$CLI" repl sync "rbd/$img"
after=$(sealed)
shipped=$(status | jq -r '.[0].last_sync_bytes')
echo "# sealed $after, shipped $shipped bytes after the restart (delta $delta_bytes)"
check "a new snapshot is sealed ($after)" test -n "$after" -a "$after" != "$first"
check "the daemon says it resumed" grep -q "replication of 'rbd/$img@b' resumed a cut cycle" "$(site_log a)"
check "bytes shipped after the restart ($shipped) < the whole delta ($delta_bytes)" test "$shipped" -lt "$delta_bytes"
check "and at most the delta minus what the checkpoint covers" test "$shipped" -le $((delta_bytes - copied_at_kill))
check "the checkpoint is gone once sealed" test "$(checkpoint_done)" = 0
check "the sealed snapshot equals the primary's" same_at "$after"
check "no sealed snapshot on site b differs from its primary" all_sealed_equal

finish

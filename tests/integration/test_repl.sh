#!/usr/bin/env bash
# Replication through the daemon and the CLI, site a to site b: enable with an RPO, the
# scheduler seals snapshots that equal the primary's, `repl sync` seals the state at the call,
# lag stays under the RPO, metrics, disable keeps the secondary, errors.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
workdir
# never leave site b frozen, whatever happens
trap 'rm -rf "$W"; thaw_site b 2>/dev/null' EXIT

img=repl$$
status() { "$CLI" --format json repl status "rbd/$img"; }
sealed() { status | jq -r '.[0].last_sealed_snapshot // ""'; }
# same_at SNAP: the snapshot has the same content on both sites
same_at() { snap_equal "$img" "$1"; }
write_some() { rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 64K --io-total "$1" --io-pattern rand "rbd/$img" >/dev/null 2>&1; }

expect_rc 0 "create" "$CLI" image create "rbd/$img" --size 128M
write_some 16M
expect_rc 0 "enable to site b with an 8s RPO" "$CLI" repl enable "rbd/$img" --to b --rpo 8s
check "status names the pair" bash -c "'$CLI' --format json repl status 'rbd/$img' | jq -e '.[0].target == \"b\" and .[0].role == \"primary\" and .[0].rpo_seconds == 8' >/dev/null"

s1=""
for i in $(seq 1 60); do s1=$(sealed); [ -n "$s1" ] && break; sleep 0.5; done
check "the scheduler sealed a first snapshot ($s1)" test -n "$s1"
check "it equals the primary's" same_at "$s1"

# writes, then an explicit sync: the state at the call is sealed when it returns
write_some 8M
expect_rc 0 "repl sync" "$CLI" repl sync "rbd/$img"
s2=$(sealed)
check "a newer snapshot is sealed ($s2)" test -n "$s2" -a "$s2" != "$s1"
check "and equals the primary's" same_at "$s2"
check "the secondary is marked" bash -c "rbd -c '$CEPH_CONF_B' image-meta get 'rbd/$img' imgstore.repl.role | grep -qx secondary"

# the scheduler keeps lag under the RPO while writes go on
for i in 1 2 3; do write_some 2M; sleep 2; done
sleep 3
lag=$(status | jq -r '.[0].lag_seconds')
check "lag ${lag}s is within the 8s RPO" bash -c "awk 'BEGIN { exit !($lag >= 0 && $lag <= 8) }'"
s3=$(sealed)
check "the newest sealed snapshot equals the primary's" same_at "$s3"
# 3 kept, plus at most the one sealed a moment before retention removes the oldest
check "retention: at most 3 (+1 in passing) replication snapshots on b" bash -c "[ \$(rbd -c '$CEPH_CONF_B' snap ls 'rbd/$img' | grep -c imgstore-repl-) -le 4 ]"
check "lag is a metric" bash -c "curl -sf --cacert '$IMGSTORE_CA_FILE' '$IMGSTORE_SERVER_A/metrics' | grep -q 'imgstore_replication_lag_seconds{image=\"rbd/$img\",target=\"b\"}'"
check "no RPO violation" bash -c "curl -sf --cacert '$IMGSTORE_CA_FILE' '$IMGSTORE_SERVER_A/metrics' | grep -q 'imgstore_rpo_violation{image=\"rbd/$img\",target=\"b\"} 0'"

# errors change nothing
expect_rc 1 "enable to an unknown site" "$CLI" repl enable "rbd/$img" --to nowhere
check "says so" grep -q "no peer site 'nowhere'" "$T_ERR"
expect_rc 1 "enable a missing image" "$CLI" repl enable "rbd/$img-none" --to b
expect_rc 1 "sync a pair that does not exist" "$CLI" repl sync "rbd/$img-none"
expect_rc 2 "a bad RPO" "$CLI" repl enable "rbd/$img" --to b --rpo soon

# disable: the secondary keeps its consistent copy
expect_rc 0 "disable" "$CLI" repl disable "rbd/$img" --to b
check "status is empty" bash -c "[ \"\$('$CLI' --format json repl status 'rbd/$img' | jq length)\" = 0 ]"
check "site b keeps the image" rbd -c "$CEPH_CONF_B" info "rbd/$img"
check "and its sealed snapshot" bash -c "rbd -c '$CEPH_CONF_B' snap ls 'rbd/$img' | grep -q imgstore-repl-"
check "site a has no replication snapshot left" bash -c "! rbd -c '$CEPH_CONF_A' snap ls 'rbd/$img' | grep -q imgstore-repl-"

# the secondary site stops answering: retries, the RPO alert fires; it comes back: converges
down=$img-down
expect_rc 0 "create another" "$CLI" image create "rbd/$down" --size 64M
expect_rc 0 "enable it with a 6s RPO" "$CLI" repl enable "rbd/$down" --to b --rpo 6s
before=""
for i in $(seq 1 60); do before=$("$CLI" --format json repl status "rbd/$down" | jq -r '.[0].last_sealed_snapshot // ""'); [ -n "$before" ] && break; sleep 0.5; done
check "first snapshot sealed before the outage" test -n "$before"
freeze_site b
img_save=$img; img=$down
write_some 4M
violation=0 errored=0
for i in $(seq 1 40); do
  curl -sf --cacert "$IMGSTORE_CA_FILE" "$IMGSTORE_SERVER_A/metrics" | grep -q "imgstore_rpo_violation{image=\"rbd/$down\",target=\"b\"} 1" && violation=1
  [ -n "$(status | jq -r '.[0].error')" ] && errored=1
  [ $violation = 1 ] && [ $errored = 1 ] && break
  sleep 1
done
check "the RPO alert fired while site b was down" test $violation = 1
check "the status says why ($(status | jq -r '.[0].error' | head -c 120))" test $errored = 1
check "and the daemon logged it" grep -q "rbd/$down' to site 'b' is .* behind, over its RPO" "$IMGSTORE_SANDBOX/site-a/log/imgstored.log"
thaw_site b
after=""
for i in $(seq 1 120); do
  after=$(sealed)
  lag=$(status | jq -r '.[0].lag_seconds')
  [ -n "$after" ] && [ "$after" != "$before" ] && awk "BEGIN { exit !($lag <= 6) }" && break
  sleep 1
done
check "after the outage a newer snapshot is sealed ($after)" test -n "$after" -a "$after" != "$before"
check "and equals the primary's" same_at "$after"
check "the alert cleared" bash -c "curl -sf --cacert '$IMGSTORE_CA_FILE' '$IMGSTORE_SERVER_A/metrics' | grep -q 'imgstore_rpo_violation{image=\"rbd/$down\",target=\"b\"} 0'"
forget_replica "$down"
img=$img_save

"$CLI" image rm --purge "rbd/$img" >/dev/null 2>&1
rbd -c "$CEPH_CONF_B" snap purge "rbd/$img" >/dev/null 2>&1
rbd -c "$CEPH_CONF_B" rm --no-progress "rbd/$img" >/dev/null 2>&1
finish

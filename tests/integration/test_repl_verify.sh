#!/usr/bin/env bash
# repl verify through the daemon and the CLI: a faithful copy is equal (exit 0) and the
# scheduler verifies it by itself with --verify-every; a copy damaged on site b (its sealed
# snapshot re-taken over a damaged head) is found by the next automatic verify (state error,
# metric) and by `repl verify` (exit 1, the damaged extent); usage errors.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
SANDBOX=${IMS_SOURCE_DIR:?}/scripts/sandbox
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
T_OUT=/tmp/verify-out.$$ T_ERR=/tmp/verify-err.$$
img=verify$$
cleanup() {
  "$SANDBOX" start-daemon "$IMGSTORE_SANDBOX" a >/dev/null 2>&1 # if the test stopped half-way
  "$CLI" repl disable "rbd/$img" --to b >/dev/null 2>&1
  "$CLI" image rm --purge "rbd/$img" >/dev/null 2>&1
  rbd -c "$CEPH_CONF_B" snap purge "rbd/$img" >/dev/null 2>&1
  rbd -c "$CEPH_CONF_B" rm --no-progress "rbd/$img" >/dev/null 2>&1
  rm -f /tmp/verify-out.$$ /tmp/verify-err.$$
}
trap cleanup EXIT
status() { "$CLI" --format json repl status "rbd/$img" | jq -c '.[0]'; }
metric() { curl -sf --cacert "$IMGSTORE_CA_FILE" "$IMGSTORE_SERVER_A/metrics" | grep "^$1{image=\"rbd/$img\",target=\"b\"}" | awk '{print $2}'; }

expect_rc 0 "create" "$CLI" image create "rbd/$img" --size 32M
# writes of a known pattern through qemu's rbd driver
qwrite() { qemu-io -f raw -c "write -P $3 $4 $5" "rbd:rbd/$img:conf=$2" >/dev/null; }
qwrite a "$CEPH_CONF_A" 0x11 0 8M
expect_rc 0 "enable with --verify-every 1" "$CLI" repl enable "rbd/$img" --to b --rpo 30s --verify-every 1
for i in $(seq 1 60); do [ "$(status | jq -r .last_verify)" = equal ] && break; sleep 0.5; done
check "the scheduler verified the first copy: $(status | jq -c '{verify_every, last_verify, last_verified}')" \
  test "$(status | jq '.verify_every == 1 and .last_verify == "equal" and .last_verified == .last_sealed_snapshot')" = true

expect_rc 0 "repl verify of a faithful copy" "$CLI" --format json repl verify "rbd/$img"
check "reports equal, every object, the sealed snapshot" test "$(jq --arg s "$(status | jq -r .last_sealed_snapshot)" \
  '.equal and .objects == 8 and .mismatch_count == 0 and .snapshot == $s and .bytes_covered == 33554432 and .target == "b"' /tmp/verify-out.$$)" = true
expect_rc 0 "text output" "$CLI" repl verify "rbd/$img" --to b
check "with a verdict line" grep -q "^verdict: *equal" /tmp/verify-out.$$

# damage b: 64K at 4M+128K of its head, then re-take its sealed snapshot over it
sealed=$(status | jq -r .last_sealed_snapshot)
# (site a's daemon holds the secondary against every other writer: the damage is done while
# it is stopped, as a tamperer would have to)
check "while site a's daemon holds the secondary, a write to it is refused" bash -c "! qemu-io -f raw -c 'write -P 0xab 0 4k' 'rbd:rbd/$img:conf=$CEPH_CONF_B' >/dev/null 2>&1"
"$SANDBOX" stop-daemon "$IMGSTORE_SANDBOX" a >/dev/null
qwrite b "$CEPH_CONF_B" 0xab 4325376 64k
rbd -c "$CEPH_CONF_B" snap rm --no-progress "rbd/$img@$sealed" >/dev/null 2>&1
rbd -c "$CEPH_CONF_B" snap create --no-progress "rbd/$img@$sealed" >/dev/null 2>&1
"$SANDBOX" start-daemon "$IMGSTORE_SANDBOX" a >/dev/null

expect_rc 1 "repl verify of the damaged copy" "$CLI" --format json repl verify "rbd/$img" --snap "$sealed"
check "reports the damaged extent: $(jq -c '{equal, mismatches, mismatch_count}' /tmp/verify-out.$$)" \
  test "$(jq '(.equal | not) and .mismatch_count == 1 and .mismatches[0].offset == 4325376 and .mismatches[0].length == 65536' /tmp/verify-out.$$)" = true
check "the pair is in error, saying why: $(status | jq -r .error)" \
  test "$(status | jq '.state == "error" and .last_verify == "mismatch" and (.error | test("differs from the primary at .* 65536 bytes at offset 4325376"))')" = true
check "verify failures are a metric" test "$(metric imgstore_replication_verify_failures_total)" = 1

# the next cycle seals on top of the damaged head: its automatic verify finds it too
qwrite a "$CEPH_CONF_A" 0x22 16M 1M
expect_rc 0 "repl sync" "$CLI" repl sync "rbd/$img"
check "the automatic verify of the new snapshot found it: $(status | jq -c '{last_verified, last_verify}')" \
  test "$(status | jq --arg s "$sealed" '.last_verify == "mismatch" and .last_verified != $s and .state == "error"')" = true
check "two verify failures now" test "$(metric imgstore_replication_verify_failures_total)" = 2

expect_rc 1 "verify at a snapshot site b does not have" "$CLI" repl verify "rbd/$img" --snap nosuch
check "says so" grep -q "has no 'rbd/$img@nosuch'" /tmp/verify-err.$$
expect_rc 2 "a chunk that is not a power of two" "$CLI" repl verify "rbd/$img" --chunk 3000
expect_rc 2 "a bad --verify-every" "$CLI" repl enable "rbd/$img" --to b --verify-every many
expect_rc 1 "verify of an image that is not replicated" "$CLI" repl verify "rbd/$img-none"

finish

#!/usr/bin/env bash
# One primary, two targets, through the daemons: a->b and a->c, site c frozen while site b runs
# more cycles than retention keeps, then thawed. Retention on the primary is per target, so
# c's next cycle ships a delta (about what was written), not the whole image again, and both
# copies verify equal. Disabling b leaves c replicating from its base.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
SANDBOX=${IMS_SOURCE_DIR:?}/scripts/sandbox
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
T_OUT=/tmp/tg-out.$$ T_ERR=/tmp/tg-err.$$

[ -n "${CEPH_CONF_C:-}" ] || { echo "not ok - the sandbox has no site c (sandbox up --sites 3)"; exit 1; }
img=tg$$ img2=tg$$-fo
cleanup() {
  for srv in "$IMGSTORE_SERVER_A" "$IMGSTORE_SERVER_B"; do
    for t in a b c; do IMGSTORE_SERVER=$srv "$CLI" repl disable "rbd/$img2" --to $t >/dev/null 2>&1; done
  done
  for conf in "$CEPH_CONF_A" "$CEPH_CONF_B" "$CEPH_CONF_C"; do
    timeout 60 rbd -c "$conf" snap purge "rbd/$img2" >/dev/null 2>&1
    timeout 60 rbd -c "$conf" rm --no-progress "rbd/$img2" >/dev/null 2>&1
  done
  "$SANDBOX" thaw-site "$IMGSTORE_SANDBOX" c >/dev/null 2>&1
  rm -f /tmp/tg-out.$$ /tmp/tg-err.$$
  "$CLI" repl disable "rbd/$img" --to b >/dev/null 2>&1
  "$CLI" repl disable "rbd/$img" --to c >/dev/null 2>&1
  "$CLI" image rm --purge "rbd/$img" >/dev/null 2>&1
  for conf in "$CEPH_CONF_B" "$CEPH_CONF_C"; do
    timeout 60 rbd -c "$conf" snap purge "rbd/$img" >/dev/null 2>&1
    timeout 60 rbd -c "$conf" rm --no-progress "rbd/$img" >/dev/null 2>&1
  done
}
trap cleanup EXIT

RBD_BIN=$(type -P rbd)
rbd() { timeout 120 "$RBD_BIN" "$@"; }
write_a() { rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 64K --io-total "$1" --io-pattern rand "rbd/$img" >/dev/null 2>&1; }
status_of() { "$CLI" --format json repl status "rbd/$img" 2>/dev/null | jq -r --arg t "$1" ".[] | select(.target == \$t) | .$2 // \"\""; }
repl_snaps_a() { rbd -c "$CEPH_CONF_A" snap ls --format json "rbd/$img" | jq -r '.[].name | select(startswith("imgstore-repl-"))'; }

expect_rc 0 "create a 64 MiB image with 32 MiB written" "$CLI" image create "rbd/$img" --size 64M
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 4M --io-total 32M --io-pattern seq "rbd/$img" >/dev/null 2>&1
expect_rc 0 "replicate it to site b" "$CLI" repl enable "rbd/$img" --to b --rpo 1h
expect_rc 0 "and to site c" "$CLI" repl enable "rbd/$img" --to c --rpo 1h
expect_rc 0 "first cycle to b" "$CLI" repl sync "rbd/$img" --to b
expect_rc 0 "first cycle to c" "$CLI" repl sync "rbd/$img" --to c
c_base=$(status_of c last_sealed_snapshot)
check "site c sealed its base ($c_base)" test -n "$c_base"

# site c stops answering; site b runs five cycles (retention keeps 3)
"$SANDBOX" freeze-site "$IMGSTORE_SANDBOX" c >/dev/null
b_cycles=0
for i in 1 2 3 4 5; do
  write_a 1M
  "$CLI" repl sync "rbd/$img" --to b >/dev/null 2>&1 && b_cycles=$((b_cycles + 1))
done
check "five cycles to b while c was frozen ($b_cycles)" test $b_cycles = 5
check "the primary still has site c's base after them" grep -qx "$c_base" <(repl_snaps_a)
check "site c thaws" "$SANDBOX" thaw-site "$IMGSTORE_SANDBOX" c

# c's next cycle is a delta: 5 MiB were written, the image holds 37 MiB
ok_sync=0
for i in 1 2 3; do "$CLI" repl sync "rbd/$img" --to c >/tmp/tg-out.$$ 2>/tmp/tg-err.$$ && { ok_sync=1; break; }; sleep 5; done
check "a cycle to c after the thaw" test $ok_sync = 1
bytes=$(status_of c last_sync_bytes)
echo "# site c's cycle after the thaw shipped $bytes bytes"
check "it shipped the delta ($bytes bytes), not the image (32 MiB and more)" \
  test -n "$bytes" -a "${bytes:-0}" -gt 0 -a "${bytes:-0}" -le $((6 * 1024 * 1024))
expect_rc 0 "site b's copy verifies equal" "$CLI" repl verify "rbd/$img" --to b
expect_rc 0 "site c's copy verifies equal" "$CLI" repl verify "rbd/$img" --to c

# syncing without naming the target: refused while there are two, as `repl sync --help` says
expect_rc 1 "repl sync without --to, two targets: refused" "$CLI" repl sync "rbd/$img"
check "  it says to name one" grep -q "replicates to 2 sites: name one" /tmp/tg-err.$$
check "  and repl sync --help says so" bash -c "'$CLI' repl sync --help | grep -q 'name one if it has several'"
# disabling without naming the target: refused while there are two
expect_rc 1 "repl disable without --to, two targets: refused" "$CLI" repl disable "rbd/$img"
check "  it says to name one" grep -q "replicates to 2 sites: name one" /tmp/tg-err.$$
check "  both pairs are still there" test "$(status_of b target),$(status_of c target)" = "b,c"
# disabling b drops only what c does not need: c's next cycle is still a delta
expect_rc 0 "disable replication to b" "$CLI" repl disable "rbd/$img" --to b
write_a 1M
expect_rc 0 "a cycle to c" "$CLI" repl sync "rbd/$img" --to c
bytes=$(status_of c last_sync_bytes)
check "still a delta ($bytes bytes)" test -n "$bytes" -a "${bytes:-0}" -gt 0 -a "${bytes:-0}" -le $((2 * 1024 * 1024))
expect_rc 0 "site c's copy verifies equal" "$CLI" repl verify "rbd/$img" --to c

expect_rc 0 "repl disable without --to: the only target, c" "$CLI" repl disable "rbd/$img"
check "  nothing is replicated any more" test -z "$(status_of c target)"

# a planned failover to b while a cycle to c runs: the image's other pairs are paused (the
# running cycle ends first), and the fence spares this daemon's own clients
expect_rc 0 "a second image, 256 MiB with 192 MiB written" "$CLI" image create "rbd/$img2" --size 256M
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 4M --io-total 192M --io-pattern seq "rbd/$img2" >/dev/null 2>&1
expect_rc 0 "replicated to b" bash -c "'$CLI' repl enable rbd/$img2 --to b --rpo 1h && '$CLI' repl sync rbd/$img2 --to b"
expect_rc 0 "and to c" "$CLI" repl enable "rbd/$img2" --to c --rpo 1h
# entries made by earlier tests (test_reconnect blocklists this daemon's clients for an hour)
# are not this failover's: only what it adds counts
bl_before=$(timeout 60 ceph -c "$CEPH_CONF_A" osd blocklist ls 2>/dev/null | awk '{ print $1 }' | sort)
"$CLI" repl sync "rbd/$img2" --to c >/tmp/tg-sync.$$ 2>&1 &
sync_pid=$!
# the failover starts once that cycle runs (or is over already)
for _ in $(seq 1 100); do
  kill -0 $sync_pid 2>/dev/null || break
  [ "$("$CLI" --format json repl status "rbd/$img2" 2>/dev/null | jq -r '.[] | select(.target == "c") | .state')" = syncing ] && break
  sleep 0.1
done
expect_rc 0 "a planned failover to b while the first cycle to c runs" "$CLI" repl failover "rbd/$img2" --to b
wait $sync_pid
sync_rc=$?
# it ran before the failover (the failover waited for it), or it waited for the failover and
# then found site a's copy a secondary: never at the same time
echo "# the sync to c: exit $sync_rc: $(tail -1 /tmp/tg-sync.$$)"
check "the sync to c ran before the failover or after it, with a clear answer" \
  bash -c "[ $sync_rc = 0 ] || grep -q \"'rbd/$img2' on site 'a' is a secondary\" /tmp/tg-sync.$$"
rm -f /tmp/tg-sync.$$
check "site b is the primary" test "$(rbd -c "$CEPH_CONF_B" image-meta get "rbd/$img2" imgstore.repl.role 2>/dev/null || echo primary)" = primary
mine=$(grep -o "site 'a': connected as [^ ]* (client\.[0-9]* at [^)]*)" "$IMGSTORE_SANDBOX/site-a/log/imgstored.log" | sed 's/.* at \(.*\))$/\1/' | sort -u)
added=$(comm -13 <(echo "$bl_before") <(timeout 60 ceph -c "$CEPH_CONF_A" osd blocklist ls 2>/dev/null | awk '{ print $1 }' | sort))
echo "# blocklist entries the failover added on site a: ${added:-none}"
fenced_self=0
for x in $mine; do grep -qF "$x" <<<"$added" && fenced_self=1; done
check "site a's daemon did not blocklist its own clients ($(wc -w <<<"$mine") address(es) checked)" test -n "$mine" -a $fenced_self = 0
expect_rc 0 "site a's daemon still answers for site a" "$CLI" image info "rbd/$img"

finish

#!/usr/bin/env bash
# One primary, two targets, through the daemons: a->b and a->c, site c frozen while site b runs
# more cycles than retention keeps, then thawed. Retention on the primary is per target, so
# c's next cycle ships a delta (about what was written), not the whole image again, and both
# copies verify equal. Disabling b leaves c replicating from its base.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
SANDBOX=${IMS_SOURCE_DIR:?}/scripts/sandbox
fails=0 passes=0
ok() { echo "ok - $*"; passes=$((passes + 1)); }
not_ok() { echo "not ok - $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }
expect_rc() { local rc=$1 what=$2; shift 2; "$@" >/tmp/tg-out.$$ 2>/tmp/tg-err.$$; local got=$?
  if [ "$got" = "$rc" ]; then ok "$what (exit $rc)"; else not_ok "$what: exit $got, wanted $rc: $(head -c 300 /tmp/tg-err.$$)"; fi; }

[ -n "${CEPH_CONF_C:-}" ] || { echo "not ok - the sandbox has no site c (sandbox up --sites 3)"; exit 1; }
img=tg$$
cleanup() {
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

# disabling b drops only what c does not need: c's next cycle is still a delta
expect_rc 0 "disable replication to b" "$CLI" repl disable "rbd/$img" --to b
write_a 1M
expect_rc 0 "a cycle to c" "$CLI" repl sync "rbd/$img" --to c
bytes=$(status_of c last_sync_bytes)
check "still a delta ($bytes bytes)" test -n "$bytes" -a "${bytes:-0}" -gt 0 -a "${bytes:-0}" -le $((2 * 1024 * 1024))
expect_rc 0 "site c's copy verifies equal" "$CLI" repl verify "rbd/$img" --to c

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ] && [ "$passes" -gt 0 ]

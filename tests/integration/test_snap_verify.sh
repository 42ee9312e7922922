#!/usr/bin/env bash
# Tamper evidence on site a: a snapshot taken through the API, a sealed replication snapshot
# and a scheduled one each get a digest in the site's hash-chained digest log; snap verify
# finds them intact, and names the object that changed when the snapshot is removed and taken
# again under its name over altered data with rbd behind imgstore's back; the sealed
# snapshot's copy on site b and a scheduled snapshot shipped there get digests in site b's own
# log (verified on site b, an altered copy named there); an edited entry of
# the digest log breaks its chain; a host may not verify. The audit log is hash-chained: a copy
# verifies, and an edited line breaks the chain at that line.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
workdir W

img=sv$$ alt=svalt$$
LOG=$(site_log a)
AUDIT=$IMGSTORE_SANDBOX/site-a/log/audit.log
saved_key= saved_val=
cleanup() {
  # the digest log as it was: other tests verify snapshots too
  if [ -n "$saved_key" ]; then
    rados -c "$CEPH_CONF_A" -p rbd setomapval imgstore.digests "$saved_key" --input-file "$W/saved" >/dev/null 2>&1
  fi
  on_a snap schedule rm "rbd/$img" >/dev/null 2>&1
  forget_replica "$img"
  forget_images "$img" "$alt"
  rm -rf "$W"
}
trap cleanup EXIT

digested() { grep -q "digest [0-9]* of 'rbd/$img@$1' ($2)" "$LOG"; }

expect_rc 0 "create rbd/$img" on_a image create "rbd/$img" --size 16M
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 1M --io-total 12M --io-pattern seq "rbd/$img" >/dev/null 2>&1
id=$(rbd -c "$CEPH_CONF_A" info --format json "rbd/$img" | jq -r .block_name_prefix)

# ---- a snapshot through the API
expect_rc 0 "snap create @s1" on_a snap create "rbd/$img@s1"
check "  its digest is recorded (off the call's path)" wait_until 50 0.2 digested s1 manual
check "  and in the audit log" wait_until 20 0.2 grep -q "digest seq=[0-9]* snapshot='rbd/$img@s1' for=manual objects=3 hash=" "$AUDIT"
expect_rc 0 "snap verify @s1: intact" on_a snap verify "rbd/$img@s1"
check "  says so" grep -q "rbd/$img@s1: intact (digest [0-9]*, taken for manual, 3 objects recorded, 3 now)" "$T_OUT"
expect_rc 1 "a host may not verify" env IMGSTORE_TOKEN_FILE="$IMGSTORE_HOST_TOKEN_FILE" "$CLI" snap verify "rbd/$img@s1"
check "  it needs role admin" grep -q "which needs role admin" "$T_ERR"
expect_rc 1 "a snapshot never digested: exit 1" bash -c "rbd -c '$CEPH_CONF_A' snap create 'rbd/$img@bare' >/dev/null 2>&1 && '$CLI' snap verify 'rbd/$img@bare'"
check "  no digest recorded" grep -q "rbd/$img@bare: no digest recorded" "$T_OUT"
expect_rc 1 "an unknown snapshot" on_a snap verify "rbd/$img@nosuch"

# ---- removed and taken again under its name over altered data, with rbd
rbd -c "$CEPH_CONF_A" snap rm "rbd/$img@s1" >/dev/null 2>&1
truncate -s 16M "$W/alt"
dd if=/dev/urandom of="$W/alt" bs=4K count=1 seek=1100 conv=notrunc status=none # in object 1
rbd -c "$CEPH_CONF_A" import --no-progress "$W/alt" "rbd/$alt" >/dev/null 2>&1
rbd -c "$CEPH_CONF_A" snap create "rbd/$alt@s1" >/dev/null 2>&1
rbd -c "$CEPH_CONF_A" export-diff --no-progress "rbd/$alt@s1" - 2>/dev/null |
  rbd -c "$CEPH_CONF_A" import-diff --no-progress - "rbd/$img" >/dev/null 2>&1
check "rbd re-created @s1 behind imgstore's back" bash -c "rbd -c '$CEPH_CONF_A' snap ls 'rbd/$img' | grep -qw s1"
expect_rc 1 "snap verify @s1: changed" on_a snap verify "rbd/$img@s1"
check "  names the object that changed" grep -qx "  changed $id.0000000000000001 (object 1)" "$T_OUT"
check "  and only that one" test "$(grep -c '^  ' "$T_OUT")" = 1
check "  and that the snapshot was re-created" grep -q "the snapshot was re-created: its id differs" "$T_OUT"
expect_rc 1 "as JSON too" on_a --format json snap verify "rbd/$img@s1"
json_says() { jq -e "$1" "$T_OUT" >/dev/null; }
check "  intact false, chain intact, object 1 changed" json_says '.intact == false and .chain_intact and .changes[0].object_number == 1 and .changes[0].change == "changed"'

# ---- a sealed replication snapshot
expect_rc 0 "replicate to site b" on_a repl enable "rbd/$img" --to b --rpo 1h
expect_rc 0 "sync" on_a repl sync "rbd/$img"
sealed=$(on_a --format json repl status "rbd/$img" | jq -r '.[0].last_sealed_snapshot')
check "a snapshot was sealed ($sealed)" test -n "$sealed" -a "$sealed" != null
check "  its digest is recorded" wait_until 50 0.2 digested "$sealed" replication
expect_rc 0 "snap verify of the sealed snapshot: intact" on_a snap verify "rbd/$img@$sealed"
check "  taken for replication" grep -q "taken for replication" "$T_OUT"

# ---- a scheduled snapshot
expect_rc 0 "a schedule every second" on_a snap schedule add "rbd/$img" --every 1s --keep hourly=1
check "  its snapshots get digests" wait_until 50 0.2 grep -q "digest [0-9]* of 'rbd/$img@imgstore-sched-[0-9]*' (schedule)" "$LOG"
expect_rc 0 "schedule rm" on_a snap schedule rm "rbd/$img"
schedsnap=$(grep -o "digest [0-9]* of 'rbd/$img@imgstore-sched-[0-9]*' (schedule)" "$LOG" | tail -1 | sed "s/.*@\(imgstore-sched-[0-9]*\)'.*/\1/")
if rbd -c "$CEPH_CONF_A" snap ls "rbd/$img" | grep -qw "$schedsnap"; then
  expect_rc 0 "snap verify of a scheduled snapshot: intact" on_a snap verify "rbd/$img@$schedsnap"
else
  ok "the scheduled snapshot digested was pruned since (retention): nothing to verify"
fi

# ---- the copies on site b: digests in site b's own log, so that a failover keeps them
# verifiable; the scheduled snapshot shipped by the next cycle too; an altered copy named
check "the sealed snapshot's copy on site b is digested into site b's log" \
  wait_until 50 0.2 grep -q "digest [0-9]* of 'rbd/$img@$sealed' on site 'b' (replica)" "$LOG"
check "  with an audit line on site a naming site b" wait_until 20 0.2 \
  grep -q "digest seq=[0-9]* snapshot='rbd/$img@$sealed' for=replica objects=[0-9]* hash=[0-9a-f]* site=b " "$AUDIT"
expect_rc 0 "snap verify on site b of its copy: intact" on_b snap verify "rbd/$img@$sealed"
check "  taken for replica" grep -q "rbd/$img@$sealed: intact (digest [0-9]*, taken for replica" "$T_OUT"
expect_rc 0 "sync again (ships the scheduled snapshots taken since)" on_a repl sync "rbd/$img"
shipped=$(grep -o "digest [0-9]* of 'rbd/$img@imgstore-sched-[0-9]*' on site 'b' (replica-schedule)" "$LOG" | tail -1 | sed "s/.*@\(imgstore-sched-[0-9]*\)'.*/\1/")
check "  a shipped scheduled snapshot is digested on site b (${shipped:-none})" \
  wait_until 50 0.2 grep -q "digest [0-9]* of 'rbd/$img@imgstore-sched-[0-9]*' on site 'b' (replica-schedule)" "$LOG"
shipped=$(grep -o "digest [0-9]* of 'rbd/$img@imgstore-sched-[0-9]*' on site 'b' (replica-schedule)" "$LOG" | tail -1 | sed "s/.*@\(imgstore-sched-[0-9]*\)'.*/\1/")
if rbd -c "$CEPH_CONF_B" snap ls "rbd/$img" | grep -qw "$shipped"; then
  expect_rc 0 "  snap verify on site b of $shipped: intact" on_b snap verify "rbd/$img@$shipped"
else
  ok "the shipped scheduled snapshot was pruned since (the primary's retention): nothing to verify"
fi
# ---- an edited entry of the digest log
saved_key=$(rados -c "$CEPH_CONF_A" -p rbd listomapkeys imgstore.digests | grep -v head | sort | tail -1)
rados -c "$CEPH_CONF_A" -p rbd getomapval imgstore.digests "$saved_key" "$W/saved" >/dev/null 2>&1
sed 's/"objects":\([0-9]*\)/"objects":99\1/' "$W/saved" >"$W/edited"
check "the last entry edited with rados ($saved_key)" bash -c "! cmp -s '$W/saved' '$W/edited' && rados -c '$CEPH_CONF_A' -p rbd setomapval imgstore.digests '$saved_key' --input-file '$W/edited'"
expect_rc 1 "snap verify then says the log is broken" on_a snap verify "rbd/$img@$sealed"
check "  at that entry" grep -q "digest log BROKEN: entry $((10#$saved_key)) was edited" "$T_OUT"
rados -c "$CEPH_CONF_A" -p rbd setomapval imgstore.digests "$saved_key" --input-file "$W/saved" >/dev/null 2>&1
saved_key=
expect_rc 0 "put back, it holds again" on_a snap verify "rbd/$img@$sealed"

# ---- an altered copy on site b, named there (the primary's sealed snapshots go with repl disable)
expect_rc 0 "repl disable (the copy stays on site b, no longer held)" on_a repl disable "rbd/$img"
rbd -c "$CEPH_CONF_B" snap rm "rbd/$img@$sealed" >/dev/null 2>&1
truncate -s 16M "$W/alt2"
dd if=/dev/urandom of="$W/alt2" bs=4K count=1 seek=1100 conv=notrunc status=none # in object 1
rbd -c "$CEPH_CONF_B" import --no-progress "$W/alt2" "rbd/$alt" >/dev/null 2>&1
rbd -c "$CEPH_CONF_B" snap create "rbd/$alt@s1" >/dev/null 2>&1
rbd -c "$CEPH_CONF_B" export-diff --no-progress "rbd/$alt@s1" - 2>/dev/null |
  rbd -c "$CEPH_CONF_B" import-diff --no-progress - "rbd/$img" >/dev/null 2>&1
rbd -c "$CEPH_CONF_B" snap rm "rbd/$img@s1" >/dev/null 2>&1 # import-diff's own
rbd -c "$CEPH_CONF_B" snap create "rbd/$img@$sealed" >/dev/null 2>&1
check "rbd re-created the copy's @$sealed on site b over altered data" bash -c "rbd -c '$CEPH_CONF_B' snap ls 'rbd/$img' | grep -qw '$sealed'"
expect_rc 1 "snap verify on site b: changed" on_b snap verify "rbd/$img@$sealed"
sed 's/^/# /' "$T_OUT"
check "  names object 1 and the re-creation" bash -c "grep -q '  changed .*\.0000000000000001 (object 1)' '$T_OUT' && grep -q 'the snapshot was re-created: its id differs' '$T_OUT'"

# ---- the audit log's chain
cp "$AUDIT" "$W/audit.log"
n=$(wc -l <"$W/audit.log")
expect_rc 0 "audit verify of site a's audit log ($n lines)" "$CLI" audit verify "$W/audit.log"
check "  says the chain is intact" grep -q "^$n lines, chain intact" "$T_OUT"
line=$(grep -n "method=SnapshotService/CreateSnapshot target=rbd/$img@s1 " "$W/audit.log" | tail -1 | cut -d: -f1)
check "our snap create has a line ($line)" test -n "$line"
sed -i "${line}s/result=ok/result=no/" "$W/audit.log"
expect_rc 1 "an edited line breaks the chain" "$CLI" audit verify "$W/audit.log"
check "  at that line" grep -q "audit.log:$line: the chain is broken" "$T_ERR"
cp "$AUDIT" "$W/audit.log"
sed -i "${line}d" "$W/audit.log"
expect_rc 1 "a removed line breaks it at the next one" "$CLI" audit verify "$W/audit.log"
check "  at line $line" grep -q "audit.log:$line: the chain is broken" "$T_ERR"
expect_rc 1 "a file that cannot be read" "$CLI" audit verify "$W/nosuch.log"

finish

#!/usr/bin/env bash
# Compaction of the digest log (replicator/digest.h) on site a, its daemon restarted with
# [defaults] digest_log_compact_after = 4: after four digests the entries of snapshots removed
# since are replaced by a checkpoint (their object lists removed too); the snapshots kept still
# verify intact and the chain holds; an entry edited after the compaction, and the checkpoint's
# list of what it replaced, are named by snap verify; an entry edited before a compaction stops
# it (nothing removed) and is still named after; a second compaction replaces the first
# checkpoint; a group snapshot gets a digest per member, verified as a group and per member,
# kept by a compaction, a member's re-creation named; site b's log, where site a's daemon
# records the digests of its replicas, compacted by it too. The log is restored at every step.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
workdir W

img=dc$$ m1=dcm1$$ m2=dcm2$$ g=dcg$$
LOG=$(site_log a)
AUDIT=$IMGSTORE_SANDBOX/site-a/log/audit.log
saved_key= saved_obj=
cleanup() {
  # the digest log as it was: other tests verify snapshots too
  [ -n "$saved_key" ] && rados -c "$CEPH_CONF_A" -p rbd setomapval imgstore.digests "$saved_key" --input-file "$W/saved" >/dev/null 2>&1
  [ -n "$saved_obj" ] && rados -c "$CEPH_CONF_A" -p rbd put "$saved_obj" "$W/saved-obj" >/dev/null 2>&1
  forget_group "$g" "$m1" "$m2"
  forget_images "$img"
  config_restore a
  rm -rf "$W"
}
trap cleanup EXIT

radosa() { rados -c "$CEPH_CONF_A" -p rbd "$@"; }
key_of() { printf '%020d' "$1"; }
has_key() { radosa getomapval imgstore.digests "$(key_of "$1")" "$W/probe" >/dev/null 2>&1; }
lacks_key() { ! has_key "$1"; }
seq_of() { on_a --format json snap verify "rbd/$img@$1" 2>/dev/null | jq -r '.digest_seq // 0'; }
digested() { grep -q "digest [0-9]* of 'rbd/$img@$1' (manual)" "$LOG"; }
log_from() { tail -n "+$1" "$LOG"; }
# edit the "objects" field of entry $1 in place (the original kept in $W/saved)
edit_entry() {
  saved_key=$(key_of "$1")
  radosa getomapval imgstore.digests "$saved_key" "$W/saved" >/dev/null 2>&1 &&
    sed 's/"objects":\([0-9]*\)/"objects":99\1/' "$W/saved" >"$W/edited" &&
    ! cmp -s "$W/saved" "$W/edited" &&
    radosa setomapval imgstore.digests "$saved_key" --input-file "$W/edited"
}
restore_entry() { radosa setomapval imgstore.digests "$saved_key" --input-file "$W/saved" && saved_key=; }

# ---- site a compacts after every 4 digests
config_keep a
sed -i 's|^\[defaults\]$|[defaults]\ndigest_log_compact_after = 4|' "$(site_conf a)"
daemon_stop a
daemon_start a
check "site a's imgstored restarted with digest_log_compact_after = 4" wait_until 100 0.2 daemon_up a
wait_until 100 0.2 on_a site ls >/dev/null
from=$(($(wc -l <"$LOG") + 1))

expect_rc 0 "create rbd/$img" on_a image create "rbd/$img" --size 16M
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 1M --io-total 8M --io-pattern seq "rbd/$img" >/dev/null 2>&1
for s in s1 s2 s3; do
  expect_rc 0 "snap create @$s" on_a snap create "rbd/$img@$s"
  check "  digested" wait_until 50 0.2 digested "$s"
done
q1=$(seq_of s1) q2=$(seq_of s2) q3=$(seq_of s3)
check "digests $q1, $q2, $q3 in the log" test "$q1" -gt 0 -a "$q2" -gt "$q1" -a "$q3" -gt "$q2"
expect_rc 0 "snap rm @s1" on_a snap rm "rbd/$img@s1"
expect_rc 0 "snap rm @s2" on_a snap rm "rbd/$img@s2"
expect_rc 0 "snap create @s4 (the fourth digest)" on_a snap create "rbd/$img@s4"
check "the log is compacted" wait_until 100 0.2 bash -c "tail -n +$from '$LOG' | grep -q 'digest log compacted'"
line=$(log_from "$from" | grep 'digest log compacted' | tail -1)
echo "# $line"
cp_seq=$(echo "$line" | sed -n 's/.*by checkpoint \([0-9]*\).*/\1/p')
check "  by checkpoint $cp_seq" test -n "$cp_seq"
check "  an entry of the log (why checkpoint)" bash -c "rados -c '$CEPH_CONF_A' -p rbd getomapval imgstore.digests $(key_of "${cp_seq:-0}") '$W/cp' >/dev/null 2>&1 && grep -q '\"why\":\"checkpoint\"' '$W/cp'"
check "  and in the audit log" wait_until 20 0.2 grep -q "digest seq=$cp_seq checkpoint replaces=[0-9]* runs=[0-9]* hash=" "$AUDIT"
check "the entries of the removed @s1 ($q1) and @s2 ($q2) are gone" bash -c "! rados -c '$CEPH_CONF_A' -p rbd getomapval imgstore.digests $(key_of "$q1") '$W/p' >/dev/null 2>&1 && ! rados -c '$CEPH_CONF_A' -p rbd getomapval imgstore.digests $(key_of "$q2") '$W/p' >/dev/null 2>&1"
check "  with their object lists" bash -c "! rados -c '$CEPH_CONF_A' -p rbd stat imgstore.digest.$(key_of "$q1") >/dev/null 2>&1"
check "the entry of the kept @s3 stays" has_key "$q3"
expect_rc 0 "snap verify @s3 after the compaction: intact, the chain holds" on_a snap verify "rbd/$img@s3"
check "  digest $q3" grep -q "rbd/$img@s3: intact (digest $q3," "$T_OUT"
expect_rc 0 "snap verify @s4: intact" on_a snap verify "rbd/$img@s4"

# ---- an entry edited after the compaction is named
check "entry $q3 (@s3) edited with rados" edit_entry "$q3"
expect_rc 1 "snap verify @s4: the chain is broken" on_a snap verify "rbd/$img@s4"
check "  at that entry" grep -q "digest log BROKEN: entry $q3 was edited" "$T_OUT"
check "entry $q3 restored" restore_entry
expect_rc 0 "snap verify @s4: intact again" on_a snap verify "rbd/$img@s4"

# ---- the checkpoint's list of what it replaced, edited
saved_obj=imgstore.digest.$(key_of "$cp_seq")
radosa get "$saved_obj" "$W/saved-obj" >/dev/null 2>&1
# the first digit of the first run's hash changed: 0 to 1, anything else to 0
sed '1s/ 0\([0-9a-f]*\)$/ 1\1/; t; 1s/ [0-9a-f]\([0-9a-f]*\)$/ 0\1/' "$W/saved-obj" >"$W/edited-obj"
check "the checkpoint's list edited with rados" bash -c "! cmp -s '$W/saved-obj' '$W/edited-obj' && rados -c '$CEPH_CONF_A' -p rbd put '$saved_obj' '$W/edited-obj'"
expect_rc 1 "snap verify @s3: the chain is broken" on_a snap verify "rbd/$img@s3"
check "  at the checkpoint's list" grep -q "digest log BROKEN: the list of entries checkpoint $cp_seq replaced was edited" "$T_OUT"
radosa put "$saved_obj" "$W/saved-obj" && saved_obj=
expect_rc 0 "restored: intact again" on_a snap verify "rbd/$img@s3"

# ---- an entry edited before a compaction: the compaction refuses, the entry is still named
check "entry $q3 (@s3) edited again" edit_entry "$q3"
from=$(($(wc -l <"$LOG") + 1))
for s in s5 s6 s7 s8; do on_a snap create "rbd/$img@$s" >/dev/null 2>&1; done
check "the next compaction refuses" wait_until 100 0.2 bash -c "tail -n +$from '$LOG' | grep -q 'digest log not compacted: the digest log is broken (entry $q3 was edited'"
check "  and removed nothing (entry $q3 is there)" has_key "$q3"
check "  no new checkpoint" bash -c "! tail -n +$from '$LOG' | grep -q 'digest log compacted'"
expect_rc 1 "snap verify @s4 still names the edited entry" on_a snap verify "rbd/$img@s4"
check "  entry $q3" grep -q "digest log BROKEN: entry $q3 was edited" "$T_OUT"
check "entry $q3 restored" restore_entry
expect_rc 0 "snap verify @s8: intact, the chain holds" on_a snap verify "rbd/$img@s8"

# ---- a second compaction replaces the first checkpoint, its runs merged with the new ones
q5=$(seq_of s5) q6=$(seq_of s6)
expect_rc 0 "snap rm @s5 ($q5), @s6 ($q6)" bash -c "'$CLI' snap rm 'rbd/$img@s5' && '$CLI' snap rm 'rbd/$img@s6'"
from=$(($(wc -l <"$LOG") + 1))
for s in s9 s10 s11 s12; do on_a snap create "rbd/$img@$s" >/dev/null 2>&1; done
check "a second compaction" wait_until 100 0.2 bash -c "tail -n +$from '$LOG' | grep -q 'digest log compacted'"
echo "# $(log_from "$from" | grep 'digest log compacted' | tail -1)"
check "  removed the first checkpoint $cp_seq and the entries of @s5, @s6" bash -c "! rados -c '$CEPH_CONF_A' -p rbd getomapval imgstore.digests $(key_of "$cp_seq") '$W/p' >/dev/null 2>&1 && ! rados -c '$CEPH_CONF_A' -p rbd getomapval imgstore.digests $(key_of "$q5") '$W/p' >/dev/null 2>&1 && ! rados -c '$CEPH_CONF_A' -p rbd getomapval imgstore.digests $(key_of "$q6") '$W/p' >/dev/null 2>&1"
expect_rc 0 "snap verify @s3 (before both checkpoints' runs): intact" on_a snap verify "rbd/$img@s3"
expect_rc 0 "snap verify @s12: intact" on_a snap verify "rbd/$img@s12"

# ---- a group snapshot: a digest per member, verified as a group and per member, kept by a
# compaction while the group snapshot exists, a member's re-creation named
expect_rc 0 "create rbd/$m1, rbd/$m2 and group rbd/$g of them" bash -c "'$CLI' image create 'rbd/$m1' --size 32M && '$CLI' image create 'rbd/$m2' --size 8M && '$CLI' group create 'rbd/$g' && '$CLI' group add 'rbd/$g' 'rbd/$m1' 'rbd/$m2'"
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 1M --io-total 4M --io-pattern seq "rbd/$m1" >/dev/null 2>&1
m1id=$(rbd -c "$CEPH_CONF_A" info --format json "rbd/$m1" | jq -r .block_name_prefix)
expect_rc 0 "group snap rbd/$g@gs1" on_a group snap "rbd/$g@gs1"
check "  a digest of each member" wait_until 50 0.2 bash -c "grep -q \"digest [0-9]* of 'rbd/$m1@$g@gs1' (manual)\" '$LOG' && grep -q \"digest [0-9]* of 'rbd/$m2@$g@gs1' (manual)\" '$LOG'"
expect_rc 0 "snap verify rbd/$g@gs1 (the group): intact" on_a snap verify "rbd/$g@gs1"
check "  its members' objects recorded" grep -q "rbd/$g@gs1: intact (digest [0-9]*, taken for manual, [1-9][0-9]* objects recorded, [1-9][0-9]* now)" "$T_OUT"
expect_rc 0 "snap verify rbd/$m2@gs1 (one member): intact" on_a snap verify "rbd/$m2@gs1"
from=$(($(wc -l <"$LOG") + 1))
for s in s13 s14; do on_a snap create "rbd/$img@$s" >/dev/null 2>&1; done
check "a third compaction" wait_until 100 0.2 bash -c "tail -n +$from '$LOG' | grep -q 'digest log compacted\|nothing to compact'"
expect_rc 0 "  the group snapshot still verifies intact" on_a snap verify "rbd/$g@gs1"
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 1M --io-total 16M --io-pattern seq "rbd/$m1" >/dev/null 2>&1 # objects 1.. too
check "rbd re-created the group snapshot gs1 behind imgstore's back, member 1 altered" bash -c "rbd -c '$CEPH_CONF_A' group snap rm 'rbd/$g@gs1' && rbd -c '$CEPH_CONF_A' group snap create 'rbd/$g@gs1'"
expect_rc 1 "snap verify rbd/$g@gs1: changed" on_a snap verify "rbd/$g@gs1"
check "  names member 1's objects added" grep -q "^  added $m1id.00000000000000" "$T_OUT"
check "  and the re-creation" grep -q "the snapshot was re-created" "$T_OUT"

# ---- site b's log, which site a's daemon appends the replicas' digests to, is compacted by it
# after four of them too (site b's own daemon may never append there)
from=$(($(wc -l <"$LOG") + 1))
expect_rc 0 "replicate rbd/$img to site b" on_a repl enable "rbd/$img" --to b --rpo 1h
for i in 1 2 3 4 5; do
  rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 64K --io-total 64K --io-pattern rand "rbd/$img" >/dev/null 2>&1
  on_a repl sync "rbd/$img" >/dev/null 2>&1
done
check "  five syncs: five copies digested into site b's log" wait_until 100 0.2 bash -c "[ \$(tail -n +$from '$LOG' | grep -c \"digest [0-9]* of 'rbd/$img@imgstore-repl-[0-9]*' on site 'b' (replica)\") -ge 5 ]"
check "  and site b's log compacted by site a's daemon" wait_until 100 0.2 bash -c "tail -n +$from '$LOG' | grep -q \"digest log of site 'b' compacted\\|digest log of site 'b': nothing to compact\""
echo "# $(log_from "$from" | grep "digest log of site 'b'" | tail -1)"
sealed=$(on_a --format json repl status "rbd/$img" | jq -r '.[0].last_sealed_snapshot')
expect_rc 0 "  snap verify on site b of the newest copy ($sealed): intact, the chain holds" on_b snap verify "rbd/$img@$sealed"

finish

#!/usr/bin/env bash
# Snapshot schedules of a replicated image (replicator/snapsched.h, replicator/replicator.h):
# site a's schedule (every 1 s, the rule's hour shortened to 2 s on site a) with writes between
# its snapshots; a sync ships the scheduled snapshots to site b, each byte-identical to site a's;
# site b knows the schedule but takes no snapshot of a secondary; those site a's retention
# removed go from site b at the next sync, never a replication snapshot, never a protected one;
# after a planned failover site b takes the snapshots and site a stops, and the reverse cycle
# ships site b's to site a. A replicated group the same way: its scheduled group snapshots
# (writes between them) arrive as group snapshots of site b's group, each member byte-identical
# (tests/integration/group_snap_cat.c reads a member at its group snapshot), those site a's
# retention removed go from site b, and after a group failover they read back on site b and its
# schedule runs there.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
GCAT=${IMS_BINARY_DIR:?}/tests/group_snap_cat
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
workdir W
# a sync that never ends (seen twice in CI, 2026-12-06) fails its check, with the daemons'
# stacks, and the cleanup still runs
IMS_CALL_LIMIT=150

img=ssr$$ g=ssrg$$ d1=ssrd1$$ d2=ssrd2$$
P=
cleanup() {
  on_a snap schedule rm "rbd/$img" >/dev/null 2>&1
  on_b snap schedule rm "rbd/$img" >/dev/null 2>&1
  for s in a b; do
    for p in $(rbd_on $s snap ls --format json "rbd/$img" 2>/dev/null | jq -r '.[] | select(.protected == "true") | .name'); do
      rbd_on $s snap unprotect "rbd/$img@$p" >/dev/null 2>&1
    done
  done
  on_a snap schedule rm --group "rbd/$g" >/dev/null 2>&1
  on_b snap schedule rm --group "rbd/$g" >/dev/null 2>&1
  forget_group "$g" "$d1" "$d2"
  forget_images "$img"
  config_restore a
  config_restore b
  rm -rf "$W"
}
trap cleanup EXIT

sched_snaps() { rbd_on "$1" snap ls --format json "rbd/$img" 2>/dev/null | jq -r '[.[].name | select(startswith("imgstore-sched-"))] | sort | .[]'; }
repl_snaps() { rbd_on "$1" snap ls --format json "rbd/$img" 2>/dev/null | jq -r '[.[].name | select(startswith("imgstore-repl-"))] | .[]'; }
has_snap() { sched_snaps "$1" | grep -qx "$2"; }
lacks_snap() { ! has_snap "$1" "$2"; }
snap_sum() { # SITE SNAP: sha256 of the snapshot's bytes, "" if it cannot be read
  local out
  out=$(set -o pipefail; rbd_on "$1" export --no-progress "rbd/$img@$2" - 2>/dev/null | sha256sum) || return 0
  echo "${out%% *}"
}
same_bytes() { local x y; x=$(snap_sum a "$1"); y=$(snap_sum b "$1"); [ -n "$x" ] && [ "$x" = "$y" ]; }
write_on() { rbd_on "$1" bench --io-type write --io-size 64K --io-total "$2" --io-pattern rand "rbd/$img" >/dev/null 2>&1; }
took_on() { grep -c "snapshot schedule of image 'rbd/$img': took" "$(site_log "$1")" 2>/dev/null || true; }
listed_on() { on_$1 --format json snap schedule ls | jq -e --arg n "$img" '.[] | select(.name == $n and .every_seconds == 1)' >/dev/null; }

# ---- the rule has a 2 s hour on both sites
for s in a b; do
  config_keep $s
  sed -i 's|^\[defaults\]$|[defaults]\nsnapshot_schedule_hour = 2s|' "$(site_conf $s)"
  daemon_stop $s
  daemon_start $s
done
both_up() { daemon_up a && daemon_up b; }
check "site a's and b's imgstored restarted with snapshot_schedule_hour = 2s" wait_until 100 0.2 both_up
wait_until 100 0.2 on_a site ls >/dev/null
wait_until 100 0.2 on_b site ls >/dev/null

expect_rc 0 "create rbd/$img on site a" on_a image create "rbd/$img" --size 32M
write_on a 4M
expect_rc 0 "enable replication to site b" on_a repl enable "rbd/$img" --to b --rpo 1h
expect_rc 0 "first sync" on_a repl sync "rbd/$img"
expect_rc 0 "schedule add every 1s, keep hourly=2" on_a snap schedule add "rbd/$img" --every 1s --keep hourly=2

# writes between the scheduled snapshots, so that each holds other bytes
check "a first scheduled snapshot on site a" wait_until 40 0.25 bash -c "[ -n \"\$(rbd -c '$CEPH_CONF_A' snap ls 'rbd/$img' | grep imgstore-sched-)\" ]"
P=$(sched_snaps a | head -1)
rbd_on a snap protect "rbd/$img@$P" >/dev/null 2>&1
check "  $P protected on site a" bash -c "rbd -c '$CEPH_CONF_A' snap ls --format json 'rbd/$img' | jq -e '.[] | select(.name == \"$P\" and .protected == \"true\")' >/dev/null"
for _ in 1 2 3; do
  write_on a 1M
  sleep 1
done
# a second one kept by site a's retention, then more writes: both must arrive as they were
protect_newest_a() {
  Q=$(sched_snaps a | tail -1)
  [ -n "$Q" ] && [ "$Q" != "$P" ] && rbd_on a snap protect "rbd/$img@$Q" >/dev/null 2>&1
}
Q=
check "a later one protected on site a too" wait_until 20 0.1 protect_newest_a
write_on a 1M
took_b0=$(took_on b)
# one taken after Q and not protected, for site a's retention to remove once shipped (below)
newer_than_q() { [ "$(sched_snaps a | tail -1)" \> "$Q" ]; }
check "  and a newer one, not protected" wait_until 40 0.1 newer_than_q

expect_rc 0 "sync" on_a repl sync "rbd/$img"
shipped=$(sched_snaps b | tr '\n' ' ')
n_shipped=$(echo "$shipped" | wc -w)
check "scheduled snapshots shipped to site b ($n_shipped: $shipped)" test "$n_shipped" -ge 2
check "  the protected ones among them" bash -c "rbd -c '$CEPH_CONF_B' snap ls 'rbd/$img' | grep -q '$P' && rbd -c '$CEPH_CONF_B' snap ls 'rbd/$img' | grep -q '$Q'"
check "  $P and $Q byte-identical on both sites, and different from each other" bash -c "[ -n \"\$1\" ] && [ \"\$1\" = \"\$2\" ] && [ -n \"\$3\" ] && [ \"\$3\" = \"\$4\" ] && [ \"\$1\" != \"\$3\" ]" _ "$(snap_sum a "$P")" "$(snap_sum b "$P")" "$(snap_sum a "$Q")" "$(snap_sum b "$Q")"
# each shipped snapshot still on site a holds the same bytes on both sites
n_same=0 n_diff=0
for s in $shipped; do
  x=$(snap_sum a "$s")
  [ -n "$x" ] || continue # pruned on site a meanwhile
  if [ "$x" = "$(snap_sum b "$s")" ]; then n_same=$((n_same + 1)); else n_diff=$((n_diff + 1)); fi
done
check "  each one still on site a byte-identical to it ($n_same compared, $n_diff differ)" test "$n_same" -ge 2 -a "$n_diff" -eq 0
check "site b knows the schedule" wait_until 20 0.25 listed_on b
sleep 2
check "  and takes no snapshot of its secondary" test "$(took_on b)" -eq "$took_b0"
n_repl_b=$(repl_snaps b | wc -l)

# ---- retention on the secondary: what site a pruned goes from site b at the next sync
sleep 5
gone=""
for s in $shipped; do lacks_snap a "$s" && gone="$gone $s"; done
check "site a's retention removed some of the shipped ones ($gone)" test -n "$gone"
write_on a 1M
expect_rc 0 "sync" on_a repl sync "rbd/$img"
left=""
for s in $gone; do has_snap b "$s" && left="$left $s"; done
check "  removed from site b too (left: '$left')" test -z "$left"
check "  the protected one stays on both sites" bash -c "rbd -c '$CEPH_CONF_A' snap ls 'rbd/$img' | grep -q '$P' && rbd -c '$CEPH_CONF_B' snap ls 'rbd/$img' | grep -q '$P'"
check "  replication snapshots untouched on site b ($(repl_snaps b | wc -l), $n_repl_b before)" test "$(repl_snaps b | wc -l)" -ge 1
# every scheduled snapshot site a took before the target sealed on site b is there (1 s margin)
sealed=$(repl_snaps b | sed 's/imgstore-repl-0*//' | sort -n | tail -1)
missing=""
for s in $(sched_snaps a); do
  [ "${s#imgstore-sched-}" -lt $((sealed - 1000)) ] && lacks_snap b "$s" && missing="$missing $s"
done
check "  site b holds each scheduled snapshot site a took before its seal (missing: '$missing')" test -z "$missing"

# ---- a planned failover: site b runs the schedule, site a stops
took_a0=$(took_on a)
t_fo=$(date +%s%3N)
expect_rc 0 "planned failover to site b" on_a repl failover "rbd/$img" --to b
check "  site b is the primary, site a its secondary" test "$(role_of b "$img")/$(role_of a "$img")" = primary/secondary
new_on_b() { sched_snaps b | awk -F- -v t="$t_fo" '$3 > t { f = 1 } END { exit !f }'; }
check "site b takes scheduled snapshots after the failover" wait_until 40 0.25 new_on_b
check "  saying so in its log" wait_until 20 0.25 bash -c "[ \$(grep -c \"snapshot schedule of image 'rbd/$img': took\" '$(site_log b)') -gt $took_b0 ]"
took_a1=$(took_on a)
sleep 3
check "site a takes none after the failover ($took_a0 before, $took_a1, $(took_on a) 3 s later)" test "$(took_on a)" -eq "$took_a1"
# the newest on site b, protected against site b's retention (which may prune it first: retried)
protect_newest_b() {
  new_b=$(sched_snaps b | tail -1)
  [ -n "$new_b" ] && rbd_on b snap protect "rbd/$img@$new_b" >/dev/null 2>&1
}
new_b=
check "site b's newest scheduled snapshot protected" wait_until 20 0.1 protect_newest_b
expect_rc 0 "the reverse sync, from site b" on_b repl sync "rbd/$img"
check "  ships site b's scheduled snapshot $new_b to site a" has_snap a "$new_b"
check "  byte-identical" same_bytes "$new_b"
check "  the protected one stays on site a, now a secondary" has_snap a "$P"

# ---- a replicated group: its schedule follows a group failover too
expect_rc 0 "group rbd/$g of rbd/$d1, rbd/$d2 on site a, replicated to site b" bash -c "'$CLI' image create 'rbd/$d1' --size 8M && '$CLI' image create 'rbd/$d2' --size 8M && '$CLI' group create 'rbd/$g' && '$CLI' group add 'rbd/$g' 'rbd/$d1' 'rbd/$d2' && '$CLI' group repl enable 'rbd/$g' --to b --rpo 1h && '$CLI' group repl sync 'rbd/$g'"
check "the group's cut sealed by replication got a digest of each member" wait_until 40 0.25 bash -c "grep -q \"digest [0-9]* of 'rbd/$d1@$g@imgstore-repl-[0-9]*' (replication)\" '$(site_log a)' && grep -q \"digest [0-9]* of 'rbd/$d2@$g@imgstore-repl-[0-9]*' (replication)\" '$(site_log a)'"
cut=$(grep -o "digest [0-9]* of 'rbd/$d1@$g@imgstore-repl-[0-9]*'" "$(site_log a)" | tail -1 | sed "s/.*@\(imgstore-repl-[0-9]*\)'/\1/")
expect_rc 0 "snap verify rbd/$g@$cut: intact" on_a snap verify "rbd/$g@$cut"
check "  its copy on site b got a digest of each member in site b's log" wait_until 40 0.25 bash -c "grep -q \"digest [0-9]* of 'rbd/$d1@$g@$cut' on site 'b' (replica)\" '$(site_log a)' && grep -q \"digest [0-9]* of 'rbd/$d2@$g@$cut' on site 'b' (replica)\" '$(site_log a)'"
expect_rc 0 "  snap verify on site b of rbd/$g@$cut: intact" on_b snap verify "rbd/$g@$cut"
# every 2 s with 2 s hours: hourly=N keeps the last N (each in an hour of its own)
expect_rc 0 "schedule add of the group every 2s, keep hourly=30" on_a snap schedule add --group "rbd/$g" --every 2s --keep hourly=30
check "  group snapshots on site a" wait_until 40 0.25 bash -c "rbd -c '$CEPH_CONF_A' group snap ls 'rbd/$g' | grep -q imgstore-sched-"
expect_rc 0 "group repl sync" on_a group repl sync "rbd/$g"
glisted_b() { on_b --format json snap schedule ls | jq -e --arg n "$g" '.[] | select(.name == $n and .group)' >/dev/null; }
check "site b knows the group's schedule" glisted_b
gtook() { grep -c "snapshot schedule of group 'rbd/$g': took" "$(site_log "$1")" 2>/dev/null || true; }
check "  and takes no group snapshot there" test "$(gtook b)" -eq 0
check "site a takes them (twice at least)" wait_until 40 0.25 bash -c "[ \$(grep -c \"snapshot schedule of group 'rbd/$g': took\" '$(site_log a)') -ge 2 ]"

# ---- the scheduled group snapshots shipped, writes to both members between them
gwrite() {
  for d in "$d1" "$d2"; do
    rbd_on a bench --io-type write --io-size 64K --io-total "$1" --io-pattern rand "rbd/$d" >/dev/null 2>&1 || return 1
  done
}
gsnaps() { rbd_on "$1" group snap ls --format json "rbd/$g" 2>/dev/null | jq -r '.[] | (.snapshot // .name)' | grep '^imgstore-sched-' | sort; }
gcuts() { rbd_on "$1" group snap ls --format json "rbd/$g" 2>/dev/null | jq -r '.[] | (.snapshot // .name)' | grep -c '^imgstore-repl-'; }
gsum() { # SITE MEMBER SNAP: sha256 of the member at the group snapshot, "" if it cannot be read
  local out
  out=$(set -o pipefail; "$GCAT" "$(conf_of "$1")" rbd "$2" "$g" "$3" 2>/dev/null | sha256sum) || return 0
  echo "${out%% *}"
}
for _ in 1 2 3; do
  gwrite 512K
  sleep 2
done
expect_rc 0 "group repl sync" on_a group repl sync "rbd/$g"
gshipped=$(gsnaps b | tr '\n' ' ')
n_gshipped=$(echo "$gshipped" | wc -w)
check "scheduled group snapshots shipped to site b's group ($n_gshipped: $gshipped)" test "$n_gshipped" -ge 2
check "  as group snapshots, not user snapshots of the members" bash -c "! rbd -c '$CEPH_CONF_B' snap ls 'rbd/$d1' | grep -q imgstore-sched-"
check "  site a's log says so" grep -q "shipped the scheduled snapshot 'imgstore-sched-[0-9]*' of group 'rbd/$g' to site 'b'" "$(site_log a)"
n_same=0 n_diff=0 sums1=""
for s in $gshipped; do
  for d in "$d1" "$d2"; do
    x=$(gsum a "$d" "$s")
    [ -n "$x" ] || continue # pruned on site a meanwhile
    if [ "$x" = "$(gsum b "$d" "$s")" ]; then n_same=$((n_same + 1)); else n_diff=$((n_diff + 1)); fi
    [ "$d" = "$d1" ] && sums1="$sums1 $x"
  done
done
n_distinct=$(echo "$sums1" | tr ' ' '\n' | grep -v '^$' | sort -u | wc -l)
check "  each member of each one byte-identical on site b ($n_same compared, $n_diff differ)" test "$n_same" -ge 6 -a "$n_diff" -eq 0
check "  holding different bytes ($n_distinct distinct of rbd/$d1)" test "$n_distinct" -ge 2

# site a's retention, down to hourly=1, removes them; the next sync removes them from site b
expect_rc 0 "the group's schedule keeps hourly=1 now" on_a snap schedule add --group "rbd/$g" --every 2s --keep hourly=1
gone_a() { for s in $gshipped; do gsnaps a | grep -qx "$s" || echo "$s"; done; }
pruned_a() { [ "$(gone_a | wc -l)" -ge 4 ]; }
check "site a's retention removes the shipped group snapshots (all but one at least)" wait_until 40 0.25 pruned_a
ggone=$(gone_a | tr '\n' ' ')
check "  gone from site a: $ggone" test "$(echo "$ggone" | wc -w)" -ge 4
gwrite 512K
expect_rc 0 "group repl sync" on_a group repl sync "rbd/$g"
gleft=""
for s in $ggone; do gsnaps b | grep -qx "$s" && gleft="$gleft $s"; done
check "  removed from site b's group too (left: '$gleft')" test -z "$gleft"
check "  the group's cuts untouched on site b ($(gcuts b))" test "$(gcuts b)" -ge 1
gsealed=$(rbd_on b group snap ls --format json "rbd/$g" | jq -r '.[] | (.snapshot // .name)' | grep '^imgstore-repl-' | sed 's/imgstore-repl-0*//' | sort -n | tail -1)
gmissing=""
for s in $(gsnaps a); do
  [ "${s#imgstore-sched-}" -lt $((gsealed - 1000)) ] && ! gsnaps b | grep -qx "$s" && gmissing="$gmissing $s"
done
check "  site b holds each one site a took before the cut it sealed (missing: '$gmissing')" test -z "$gmissing"

# before the failover the rule keeps more (site b's hour is 2 s too): what site b holds stays
expect_rc 0 "the group's schedule keeps hourly=30 now" on_a snap schedule add --group "rbd/$g" --every 2s --keep hourly=30
gwrite 512K
n_a=$(gsnaps a | wc -l)
check "  site a takes one more" wait_until 40 0.25 bash -c "[ \$(rbd -c '$CEPH_CONF_A' group snap ls 'rbd/$g' | grep -c imgstore-sched-) -gt $n_a ]"
expect_rc 0 "group repl sync" on_a group repl sync "rbd/$g"
gkept=$(gsnaps b | tail -1)
k1=$(gsum a "$d1" "$gkept") k2=$(gsum a "$d2" "$gkept")
check "site b holds $gkept, read on site a" test -n "$gkept" -a -n "$k1" -a -n "$k2"
t_gfo=$(date +%s%3N)
expect_rc 0 "group failover to site b" on_a group repl failover "rbd/$g" --to b --wait 2s
gnew_on_b() { rbd_on b group snap ls --format json "rbd/$g" 2>/dev/null | jq -r '.[].snapshot // .[].name' | awk -F- -v t="$t_gfo" '/imgstore-sched-/ && $3 > t { f = 1 } END { exit !f }'; }
check "site b takes the group's scheduled snapshots after the failover" wait_until 40 0.25 gnew_on_b
check "  $gkept listed on site b, the primary now" bash -c "rbd -c '$CEPH_CONF_B' group snap ls 'rbd/$g' | grep -q '$gkept'"
check "  each member reads back on site b as site a's" test "$(gsum b "$d1" "$gkept")/$(gsum b "$d2" "$gkept")" = "$k1/$k2" -a -n "$k1"
ga=$(gtook a)
sleep 3
check "site a takes none after it ($ga, $(gtook a) 3 s later)" test "$(gtook a)" -eq "$ga"

finish

#!/usr/bin/env bash
# Consistency groups through the daemon and the CLI, site a to site b: create, add, snap, ls,
# show, rm and their refusals; a group replicated as one unit (one status row, its images
# refused alone), group repl sync seals a cut of every image on site b and prints it.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
out=/tmp/group-out.$$ err=/tmp/group-err.$$
trap 'rm -f $out $err' EXIT
T_OUT=$out T_ERR=$err

g=grp$$ d1=grp$$-d1 d2=grp$$-d2 other=grp$$-other
members() { "$CLI" --format json group show "rbd/$g" | jq -r '[.images[].image] | join(",")'; }

expect_rc 0 "create disk 1" "$CLI" image create "rbd/$d1" --size 32M
expect_rc 0 "create disk 2" "$CLI" image create "rbd/$d2" --size 32M
expect_rc 0 "group create" "$CLI" group create "rbd/$g"
expect_rc 1 "group create again" "$CLI" group create "rbd/$g"
check "says it exists" grep -q "already exists" $err
expect_rc 0 "group add both disks" "$CLI" group add "rbd/$g" "rbd/$d1" "rbd/$d2"
check "show lists them" test "$(members)" = "$d1,$d2"
check "ls lists the group" bash -c "'$CLI' --format json group ls rbd | jq -e '.[] | select(.name == \"$g\") | .images | length == 2' >/dev/null"
check "ls table" bash -c "'$CLI' group ls | grep -q '$g'"

# refusals change nothing
expect_rc 1 "add to an unknown group" "$CLI" group add "rbd/$g-none" "rbd/$d1"
check "names the group" grep -q "no group 'rbd/$g-none'" $err
expect_rc 0 "another group" "$CLI" group create "rbd/$other"
expect_rc 1 "add an image of another group" "$CLI" group add "rbd/$other" "rbd/$d1"
check "names the other group" grep -q "in group 'rbd/$g'" $err
expect_rc 1 "add a missing image" "$CLI" group add "rbd/$g" "rbd/$d1-none"
check "the other group is still empty" bash -c "[ \"\$('$CLI' --format json group show 'rbd/$other' | jq '.images | length')\" = 0 ]"
check "members unchanged" test "$(members)" = "$d1,$d2"
expect_rc 1 "remove a group with images" "$CLI" group rm "rbd/$g"
check "says it has images" grep -q "has 2 images" $err
expect_rc 1 "remove an image that is not a member" "$CLI" group rm "rbd/$other" "rbd/$d1"
expect_rc 2 "snap needs @SNAP" "$CLI" group snap "rbd/$g"

# group snapshots
expect_rc 0 "group snap" "$CLI" group snap "rbd/$g@s1"
check "prints it" grep -qx "rbd/$g@s1" $out
check "show lists it" bash -c "'$CLI' --format json group show 'rbd/$g' | jq -e '.snapshots[0].name == \"s1\" and .snapshots[0].complete' >/dev/null"
expect_rc 1 "group snap again" "$CLI" group snap "rbd/$g@s1"
expect_rc 0 "group snap --rm" "$CLI" group snap "rbd/$g@s1" --rm

# replication as one unit
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 64K --io-total 2M --io-pattern rand "rbd/$d1" >/dev/null 2>&1
expect_rc 0 "group repl enable" "$CLI" group repl enable "rbd/$g" --to b --rpo 6s
check "its status row says group" bash -c "'$CLI' --format json repl status | jq -e '.[] | select(.image == \"rbd/$g\") | .group and .target == \"b\" and .rpo_seconds == 6' >/dev/null"
expect_rc 1 "a member alone is refused" "$CLI" repl enable "rbd/$d1" --to b
check "says why" grep -q "replicated as one unit" $err
expect_rc 1 "a replicated group is not removed" "$CLI" group rm "rbd/$g" --force
first=""
for i in $(seq 1 60); do first=$("$CLI" --format json group repl status "rbd/$g" | jq -r '.[0].last_sealed_snapshot // ""'); [ -n "$first" ] && break; sleep 0.5; done
check "the scheduler sealed a first cut ($first)" test -n "$first"
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 64K --io-total 2M --io-pattern rand "rbd/$d2" >/dev/null 2>&1
expect_rc 0 "group repl sync" "$CLI" group repl sync "rbd/$g"
cut=$(grep -o "imgstore-repl-[0-9]*" $out | head -1)
check "prints the cut ($cut)" test -n "$cut" -a "$cut" != "$first"
for d in "$d1" "$d2"; do
  check "site b's $d has the cut" bash -c "rbd -c '$CEPH_CONF_B' snap ls 'rbd/$d' | grep -q '$cut'"
done
check "site b's group has the cut" bash -c "rbd -c '$CEPH_CONF_B' group snap ls 'rbd/$g' | grep -q '$cut'"
check "group repl status shows it" bash -c "'$CLI' group repl status 'rbd/$g' | grep -q '$cut'"
check "group show shows the replication" bash -c "'$CLI' group show 'rbd/$g' | grep -q 'replicated to b'"
expect_rc 0 "group repl disable" "$CLI" group repl disable "rbd/$g"
check "site a keeps no cut" bash -c "! rbd -c '$CEPH_CONF_A' group snap ls 'rbd/$g' | grep -q imgstore-repl-"
check "site a keeps no anchor" bash -c "! rbd -c '$CEPH_CONF_A' snap ls --all 'rbd/$d1' | grep -q imgstore-anchor-"
check "site b keeps its copy" bash -c "rbd -c '$CEPH_CONF_B' snap ls 'rbd/$d1' | grep -q '$cut'"

# members out, then the group
expect_rc 0 "group rm an image" "$CLI" group rm "rbd/$g" "rbd/$d2"
check "one member left" test "$(members)" = "$d1"
expect_rc 0 "group rm --force" "$CLI" group rm "rbd/$g" --force
check "the image stays" "$CLI" image info "rbd/$d1"
expect_rc 0 "group rm the empty one" "$CLI" group rm "rbd/$other"

for d in "$d1" "$d2"; do
  "$CLI" image rm --purge "rbd/$d" >/dev/null 2>&1
  rbd -c "$CEPH_CONF_B" group rm "rbd/$g" >/dev/null 2>&1
  rbd -c "$CEPH_CONF_B" snap purge "rbd/$d" >/dev/null 2>&1
  rbd -c "$CEPH_CONF_B" rm --no-progress "rbd/$d" >/dev/null 2>&1
done
finish

#!/usr/bin/env bash
# A consistency group failed over as one unit between the two sandbox sites:
#  - planned failover a -> b, asked of site a, with a host lease and a writer holding the
#    exclusive lock of one disk: the lease is broken, the writer fenced, every disk of site b
#    equals site a's last state, the roles and generation of every disk swap, and replication
#    runs b -> a shipping only what changed (no full copy);
#  - failback b -> a, asked of site b, with writes in between, for a few rounds;
#  - forced failover to site b asked of site b while site a answers, with late writes on site a
#    that never reached b: every disk of b is promoted at the newest cut sealed on both, site a
#    is fenced and rejoined, keeping its late writes as recovery snapshots, and converges;
#  - forced failover to site b with site a's cluster frozen; site a back with late writes:
#    split-brain in status, group repl resync keeps them as a recovery snapshot, converges;
#  - group repl verify: equal at the last cut, then a damaged disk on site b named with its extent;
#  - the refusals: --to missing, a planned failover asked of the secondary, a forced one of a
#    primary;
#  - a planned failover pauses the group's pair to a third site: a sync to site c asked while
#    the failover waits for a lease runs after it, and finds site a a secondary.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
SANDBOX=${IMS_SOURCE_DIR:?}/scripts/sandbox
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
out=/tmp/gfo-out.$$ err=/tmp/gfo-err.$$
T_OUT=$out T_ERR=$err

g=gfo$$ d1=gfo$$-d1 d2=gfo$$-d2
WRITER_PID="" FROZEN="" C_PAIR=""
cleanup() {
  [ -n "$FROZEN" ] && "$SANDBOX" thaw-site "$IMGSTORE_SANDBOX" "$FROZEN" >/dev/null 2>&1
  [ -n "$WRITER_PID" ] && kill "$WRITER_PID" 2>/dev/null
  if [ -n "$C_PAIR" ]; then
    on_a group repl disable "rbd/$g" --to c >/dev/null 2>&1
    on_b group repl disable "rbd/$g" --to c >/dev/null 2>&1
    for d in $d1 $d2; do RBD_TIMEOUT=60 rbd_on c group image rm "rbd/$g" "rbd/$d" >/dev/null 2>&1; done
    RBD_TIMEOUT=60 rbd_on c group rm "rbd/$g" >/dev/null 2>&1
    for d in $d1 $d2; do
      RBD_TIMEOUT=60 rbd_on c snap purge "rbd/$d" >/dev/null 2>&1
      RBD_TIMEOUT=60 rbd_on c rm --no-progress "rbd/$d" >/dev/null 2>&1
    done
  fi
  forget_group "$g" $d1 $d2
  rm -f $out $err /tmp/gfo-writer.$$ /tmp/gfo-fo.$$ /tmp/gfo-fo-end.$$ /tmp/gfo-c.$$
}
trap cleanup EXIT

role_of() { local r; r=$(rbd_on "$1" image-meta get "rbd/$2" imgstore.repl.role 2>/dev/null); echo "${r:-primary}"; }
gen_of() { rbd_on "$1" image-meta get "rbd/$2" imgstore.generation 2>/dev/null || echo 0; }
sum_of() { rbd_on "$1" export --no-progress "rbd/$2${3:+@$3}" - 2>/dev/null | sha256sum | cut -d' ' -f1; }
group_sum() { echo "$(sum_of "$1" $d1 "${2:-}") $(sum_of "$1" $d2 "${2:-}")"; }
roles() { echo "$(role_of "$1" $d1),$(role_of "$1" $d2)"; }
refused() { ! "$@"; }
write_on() { rbd_on "$1" bench --io-type write --io-size 64K --io-threads 1 --io-total "$3" --io-pattern rand "rbd/$2" >/dev/null 2>&1; }
# the site whose daemon replicates the group, and to where
replicates() { IMGSTORE_SERVER=$1 "$CLI" --format json group repl status "rbd/$g" 2>/dev/null | jq -r '.[0].target // ""'; }
replicates_to() { [ "$(replicates "$1")" = "$2" ]; }
wait_replicates() { wait_until 60 0.5 replicates_to "$@"; } # SERVER TARGET

# a group of two 32 MiB disks on site a, replicated to site b
expect_rc 0 "create disk 1" on_a image create "rbd/$d1" --size 32M
expect_rc 0 "create disk 2" on_a image create "rbd/$d2" --size 32M
write_on a $d1 8M
write_on a $d2 8M
expect_rc 0 "group create" on_a group create "rbd/$g"
expect_rc 0 "group add" on_a group add "rbd/$g" "rbd/$d1" "rbd/$d2"
expect_rc 0 "group repl enable to site b (RPO 1h: cuts only when asked)" on_a group repl enable "rbd/$g" --to b --rpo 1h
expect_rc 0 "group repl sync" on_a group repl sync "rbd/$g"
# the secondary's disks are held between cycles by the daemon that replicates into them
b_d2=$(sum_of b $d2)
check "  a plain writer on a disk of site b (the secondary) is refused between cycles" refused write_on b $d2 64K
check "  which left it as it was" test "$(sum_of b $d2)" = "$b_d2"

# refusals change nothing
expect_rc 2 "failover without --to" on_a group repl failover "rbd/$g"
expect_rc 1 "a planned failover asked of the secondary's site" on_b group repl failover "rbd/$g" --to b
check "  says to ask the primary's site" grep -q "primary's site" $err
expect_rc 1 "a forced failover asked of the primary's site" on_a group repl failover "rbd/$g" --to a --force
expect_rc 1 "a failover of an unknown group" on_a group repl failover "rbd/$g-none" --to b
check "nothing changed: site a holds the primaries" test "$(roles a)/$(roles b)" = "primary,primary/secondary,secondary"

# a host lease on disk 1 and a writer holding disk 2's exclusive lock, on site a
host=gfo-host-$$
on_a host register "$host" >/dev/null 2>&1
lease=$(on_a --format json host lease acquire "rbd/$d1" --host "$host" --ttl 5m 2>/dev/null | jq -r '.id // ""')
check "a host holds a lease on disk 1 ($lease)" test -n "$lease"
writer_start a "$d2" /tmp/gfo-writer.$$
sleep 1
expect_rc 0 "planned failover of the group to site b (a lease, a writer, --wait 2s)" \
  on_a group repl failover "rbd/$g" --to b --wait 2s
cat $out
check "  it reports the broken lease and the fenced writer" grep -q "1 lease(s) broken, 1 writer(s) fenced" $out
gone=0
wait_until 100 0.2 pid_gone "$WRITER_PID" && gone=1
check "  the fenced writer stopped" test $gone = 1
wait "$WRITER_PID" 2>/dev/null
check "  with an error" test $? != 0
WRITER_PID=""
check "  every disk is primary on site b, secondary on site a" \
  test "$(roles b)/$(roles a)" = "primary,primary/secondary,secondary"
check "  every disk is at the same new generation on both sites" \
  test "$(gen_of a $d1)$(gen_of a $d2)$(gen_of b $d1)$(gen_of b $d2)" = "1111"
sums_a=$(group_sum a)
check "  every disk of site b equals site a's last state (nothing lost)" test "$(group_sum b)" = "$sums_a"
expect_rc 1 "a lease on a secondary disk (site a) is refused" on_a host lease acquire "rbd/$d1" --host "$host"
check "replication runs b -> a" wait_replicates "$IMGSTORE_SERVER_B" a
check "  and no longer a -> b" test -z "$(replicates "$IMGSTORE_SERVER_A")"

# writes on the new primary ship as a delta
write_on b $d1 1M
expect_rc 0 "group repl sync on site b" on_b group repl sync "rbd/$g"
shipped=$(on_b --format json group repl status "rbd/$g" | jq -r '.[0].last_sync_bytes')
check "  shipped only the delta ($shipped bytes), no full copy" test "${shipped:-0}" -gt 0 -a "${shipped:-0}" -lt $((8 * 1048576))
check "  site a's disks equal site b's" test "$(group_sum a)" = "$(group_sum b)"

# rounds of failback and failover with writes in between
here=b there=a
for round in 1 2 3 4; do
  write_on $here $d1 512K
  write_on $here $d2 512K
  sums=$(group_sum $here)
  srv=IMGSTORE_SERVER_${here^^}
  expect_rc 0 "round $round: failover $here -> $there" env IMGSTORE_SERVER="${!srv}" "$CLI" group repl failover "rbd/$g" --to $there
  check "  roles swapped" test "$(roles $there)/$(roles $here)" = "primary,primary/secondary,secondary"
  check "  data equal and nothing lost" test "$(group_sum $there)" = "$sums"
  tsrv=IMGSTORE_SERVER_${there^^}
  check "  replication runs $there -> $here" wait_replicates "${!tsrv}" $here
  tmp=$here here=$there there=$tmp
done
check "after 4 rounds site b is the primary again at generation 5" \
  test "$(roles b)/$(gen_of b $d1)/$(gen_of a $d2)" = "primary,primary/5/5"

# forced failover asked of site a while site b (the primary) answers, b writing after its last
# cut: a is promoted at that cut; b is fenced, keeps its late writes and becomes a secondary
expect_rc 0 "group repl sync on site b" on_b group repl sync "rbd/$g"
cut_sums=$(group_sum b)
write_on b $d2 1M
late=$(sum_of b $d2)
expect_rc 0 "forced failover to site a, asked of site a" on_a group repl failover "rbd/$g" --to a --force
cat $out
check "  site a is the primary of every disk, site b their secondary" \
  test "$(roles a)/$(roles b)" = "primary,primary/secondary,secondary"
b_d1=$(sum_of b $d1)
check "  a plain writer on a disk of site b is refused at once (held by site a's daemon)" refused write_on b $d1 64K
check "  which left it as it was" test "$(sum_of b $d1)" = "$b_d1"
check "  at the last cut sealed on both disks" test "$(group_sum a)" = "$cut_sums"
check "  it says site b answered and was rejoined" grep -q "site 'b' answered" $out
recovery=$(rbd_on b snap ls --format json "rbd/$d2" | jq -r '.[] | select(.name | startswith("imgstore-recovery-")) | .name' | head -1)
check "site b kept disk 2's late writes as $recovery" test -n "$recovery"
check "  byte for byte" test "$(sum_of b $d2 "$recovery")" = "$late"
check "replication runs a -> b" wait_replicates "$IMGSTORE_SERVER_A" b
write_on a $d1 512K
expect_rc 0 "group repl sync on site a" on_a group repl sync "rbd/$g"
shipped=$(on_a --format json group repl status "rbd/$g" | jq -r '.[0].last_sync_bytes')
check "  ships a delta ($shipped bytes), no full copy" test "${shipped:-0}" -gt 0 -a "${shipped:-0}" -lt $((8 * 1048576))
check "  the sites converged" test "$(group_sum b)" = "$(group_sum a)"
expect_rc 1 "a second forced failover to site a is refused (already primary)" on_a group repl failover "rbd/$g" --to a --force

# forced failover to site b asked of site b while site a's cluster is frozen (unreachable):
# every disk of b promoted at the newest cut sealed on both disks; site a, back with its own
# late writes (made after the last cut, before the freeze), is split-brain until group repl
# resync keeps them and makes it a secondary; meanwhile its writers are fenced and its disks
# held against new ones
expect_rc 0 "group repl sync on site a" on_a group repl sync "rbd/$g"
write_on a $d1 1M
a_late=$(sum_of a $d1)
check "site a's cluster stops answering" "$SANDBOX" freeze-site "$IMGSTORE_SANDBOX" a
FROZEN=a
expect_rc 0 "forced failover to site b while site a is down" on_b group repl failover "rbd/$g" --to b --force
cat $out
check "  it says site a did not answer and was not fenced" grep -q "site 'a' did not answer" $out
cut=$(grep -o "at 'imgstore-repl-[0-9]*'" $out | head -1 | cut -d"'" -f2)
check "  every disk of site b is primary" test "$(roles b)" = "primary,primary"
check "  at the cut it names ($cut), on both disks" test -n "$cut" -a "$(group_sum b)" = "$(group_sum b "$cut")"
write_on b $d2 512K
b_heads=$(group_sum b)
check "site a serves I/O again after the thaw" "$SANDBOX" thaw-site "$IMGSTORE_SANDBOX" a
FROZEN=""
state=""
split_brain() { state=$(on_b --format json group repl status "rbd/$g" 2>/dev/null | jq -r '.[0].state // ""'); [ "$state" = split-brain ]; }
wait_until 90 1 split_brain
check "site b's group status shows split-brain" test "$state" = split-brain
b_error=$(on_b --format json group repl status "rbd/$g" 2>/dev/null | jq -r '.[0].error // ""')
check "  naming group repl resync ($(head -c 160 <<<"$b_error"))" grep -q "group repl resync" <<<"$b_error"
check "  and site b's disks were not overwritten" test "$(group_sum b)" = "$b_heads"
a_d2=$(sum_of a $d2)
check "  a new writer on a disk of site a is refused (fenced, held by site b's daemon)" refused write_on a $d2 64K
check "  which left it as it was" test "$(sum_of a $d2)" = "$a_d2"
expect_rc 0 "group repl resync on site b" on_b group repl resync "rbd/$g"
cat $out
recovery=$(rbd_on a snap ls --format json "rbd/$d1" | jq -r '.[] | select(.name | startswith("imgstore-recovery-")) | .name' | tail -1)
check "site a kept disk 1's late writes as $recovery" test -n "$recovery" -a "$(sum_of a $d1 "$recovery")" = "$a_late"
check "  every disk of site a is a secondary" test "$(roles a)" = "secondary,secondary"
check "  and the sites converged to site b's data" test "$(group_sum a)" = "$b_heads" -a "$(group_sum b)" = "$b_heads"
shipped=$(on_b --format json group repl status "rbd/$g" | jq -r '.[0].last_sync_bytes')
check "  shipping a delta ($shipped bytes), no full copy" test "${shipped:-0}" -gt 0 -a "${shipped:-0}" -lt $((8 * 1048576))
expect_rc 0 "planned failover back to site a" on_b group repl failover "rbd/$g" --to a
check "  site a is the primary again" test "$(roles a)/$(roles b)" = "primary,primary/secondary,secondary"
check "  replication runs a -> b" wait_replicates "$IMGSTORE_SERVER_A" b

# verify of the group: every disk compared at one cut by checksums on each site
qwrite() { qemu-io -f raw -c "write -P $3 $4 $5" "rbd:rbd/$2:conf=$(conf_of "$1")" >/dev/null; }
qwrite a $d2 0x11 4325376 64k
expect_rc 0 "group repl sync on site a" on_a group repl sync "rbd/$g"
sealed=$(on_a --format json group repl status "rbd/$g" | jq -r '.[0].last_sealed_snapshot')
expect_rc 0 "group repl verify of a faithful copy" on_a --format json group repl verify "rbd/$g"
check "  every disk equal at the last cut ($(jq -c '{cut, equal}' $out))" \
  test "$(jq --arg c "$sealed" '.equal and .cut == $c and (.images | length) == 2 and all(.images[]; .equal and .snapshot == $c)' $out)" = true
expect_rc 0 "  text output" on_a group repl verify "rbd/$g"
check "  names the cut and says equal" grep -q "at '$sealed' on site 'b': equal" $out
# damage disk 2 on site b: 64K at 4M+128K of its head, then its sealed cut re-taken over it
# (site a's daemon holds the secondary's disks against every other writer: the damage is done
# while it is stopped, as a tamperer would have to)
"$SANDBOX" stop-daemon "$IMGSTORE_SANDBOX" a >/dev/null
qwrite b $d2 0xab 4325376 64k
rbd_on b snap rm --no-progress "rbd/$d2@$sealed" >/dev/null 2>&1
rbd_on b snap create --no-progress "rbd/$d2@$sealed" >/dev/null 2>&1
"$SANDBOX" start-daemon "$IMGSTORE_SANDBOX" a >/dev/null
expect_rc 1 "group repl verify of a damaged copy" on_a --format json group repl verify "rbd/$g"
check "  names the damaged disk and extent ($(jq -c '[.images[] | {image, equal, mismatches}]' $out))" \
  test "$(jq --arg d "rbd/$d2" '(.equal | not) and ([.images[] | select(.equal | not) | .image] == [$d]) and
    (.images[] | select(.image == $d) | .mismatch_count == 1 and .mismatches[0].offset == 4325376 and .mismatches[0].length == 65536)' $out)" = true
expect_rc 1 "verify of an unknown group" on_a group repl verify "rbd/$g-none"

# a planned failover pauses the group's other pairs: a sync of the group to site c asked while
# the failover to b waits for a host's lease starts only once the failover is over, and then
# finds site a's disks secondaries (before, it ran beside the failover)
expect_rc 0 "group repl enable to site c too" on_a group repl enable "rbd/$g" --to c --rpo 1h
C_PAIR=1
expect_rc 0 "  a first sync to c" on_a group repl sync "rbd/$g" --to c
lease=$(on_a --format json host lease acquire "rbd/$d1" --host "$host" --ttl 5m 2>/dev/null | jq -r '.id // ""')
check "a host holds a lease on disk 1 again ($lease)" test -n "$lease"
(on_a group repl failover "rbd/$g" --to b --wait 4s >/tmp/gfo-fo.$$ 2>&1; echo "$? $(date +%s.%N)" >/tmp/gfo-fo-end.$$) &
fo=$!
fo_running() { on_a --format json op ls 2>/dev/null | jq -e --arg g "$g" '[.[] | select(.state == "running" and (.target | tostring | contains($g)))] | length > 0' >/dev/null; }
check "the failover to b runs (it waits for the lease)" wait_until 50 0.1 fo_running
on_a group repl sync "rbd/$g" --to c >/tmp/gfo-c.$$ 2>&1
c_rc=$?
wait $fo
read -r fo_rc _ </tmp/gfo-fo-end.$$
check "  it succeeded ($(tail -1 /tmp/gfo-fo.$$))" test "$fo_rc" = 0
# it waited for the failover: run beside it, during the wait for the lease, it would have
# shipped from site a, the primary then
check "the sync to c asked meanwhile ran after it, refused: site a's disks are secondaries now ($(tail -1 /tmp/gfo-c.$$))" \
  bash -c "[ $c_rc != 0 ] && grep -q secondary /tmp/gfo-c.$$"
check "  every disk is primary on site b" test "$(roles b)" = "primary,primary"

finish

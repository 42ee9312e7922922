#!/usr/bin/env bash
# Planned failover and failback between sites a and b, through the daemons and the CLI:
# ROUNDS rounds with writes in between, checksums equal after every round, the old primary
# ends demoted; a writer holding the exclusive lock on the old primary is fenced (its lock
# broken, its address blocklisted, its writes refused); a host's lease from before the
# failover is refused; new leases on a secondary are refused; errors change nothing.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
ROUNDS=${FAILOVER_ROUNDS:-20}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
T_OUT=/tmp/fo-out.$$ T_ERR=/tmp/fo-err.$$

img=fo$$
WRITER_PID=""
cleanup() {
  [ -n "$WRITER_PID" ] && kill "$WRITER_PID" 2>/dev/null && wait "$WRITER_PID" 2>/dev/null
  rm -f /tmp/fo-out.$$ /tmp/fo-err.$$
  forget_images "$img"
}
trap cleanup EXIT

role_of() { # SITE: primary or secondary, from the copy's metadata
  local r
  r=$(rbd -c "$(conf_of "$1")" image-meta get "rbd/$img" imgstore.repl.role 2>/dev/null)
  echo "${r:-primary}"
}
gen_of() { rbd -c "$(conf_of "$1")" image-meta get "rbd/$img" imgstore.generation 2>/dev/null || echo 0; }
head_sum() { rbd -c "$(conf_of "$1")" export --no-progress "rbd/$img" - 2>/dev/null | sha256sum | cut -d' ' -f1; }
refused() { ! "$@"; }
write_on() { rbd -c "$(conf_of "$1")" bench --io-type write --io-size 64K --io-total "$2" --io-pattern rand "rbd/$img" >/dev/null 2>&1; }

expect_rc 0 "create rbd/$img on site a" on_a image create "rbd/$img" --size 64M
write_on a 8M
expect_rc 0 "enable replication to site b" on_a repl enable "rbd/$img" --to b --rpo 30s
expect_rc 0 "first sync" on_a repl sync "rbd/$img"
# the secondary refuses every writer but site a's replication (it holds its lock)
check "a plain rbd write to the secondary on site b is refused" refused write_on b 1M

# refusals that change nothing
expect_rc 1 "a planned failover asked of the secondary's site is refused" on_b repl failover "rbd/$img" --to b
check "  and says where to ask" grep -q "run the planned failover on its primary's site 'a'" /tmp/fo-err.$$
expect_rc 1 "failover to an unknown site is refused" on_a repl failover "rbd/$img" --to nowhere
expect_rc 2 "failover without --to is a usage error" on_a repl failover "rbd/$img"
expect_rc 1 "a forced failover asked of the wrong site is refused" on_a repl failover "rbd/$img" --to b --force
check "  site a is still the primary" test "$(role_of a)" = primary
check "  site b is still the secondary" test "$(role_of b)" = secondary

# a host's lease, held across the failover
host=host$$
on_a host register "$host" --address 127.0.0.2 >/dev/null 2>&1
lease=$(on_a --format json host lease acquire "rbd/$img" --host "$host" --ttl 5m 2>/dev/null | jq -r '.id // ""')
check "a host holds a lease on site a ($lease)" test -n "$lease"

# a writer holding the exclusive lock on site a: it is fenced by the failover
writer_start a "$img" /tmp/fo-writer.$$
sleep 1
sum_before=$(head_sum a)
expect_rc 0 "planned failover to site b (round 0, with a writer and a lease, --wait 2s)" \
  on_a repl failover "rbd/$img" --to b --wait 2s
cat /tmp/fo-out.$$
check "  it reports the fenced writer and the broken lease" grep -q "1 lease(s) broken, 1 writer(s) fenced" /tmp/fo-out.$$
writer_gone=0
wait_until 100 0.2 pid_gone "$WRITER_PID" && writer_gone=1
check "  the fenced writer stopped (its writes are refused)" test $writer_gone = 1
wait "$WRITER_PID" 2>/dev/null
writer_rc=$?
WRITER_PID=""
check "  with an error (exit $writer_rc)" test "$writer_rc" != 0
check "  its address is blocklisted on site a" bash -c "ceph -c '$CEPH_CONF_A' osd blocklist ls 2>/dev/null | grep -q ."
check "  site b is the primary, site a its secondary" test "$(role_of b)/$(role_of a)" = primary/secondary
check "  the generation went up on both sites" test "$(gen_of a)" = "$(gen_of b)" -a "$(gen_of b)" -ge 1
check "  site b's copy equals site a's last state (nothing lost)" test "$(head_sum b)" = "$(head_sum a)"
expect_rc 1 "the lease from before the failover is refused on renewal" on_a host lease renew "$lease"
check "  as stale, a failover broke it: its host is fenced (FENCED)" \
  grep -q "is stale: a failover of 'rbd/$img' broke it and fenced host '$host'.*(FENCED)\$" /tmp/fo-err.$$
expect_rc 1 "a new lease on the secondary (site a) is refused" on_a host lease acquire "rbd/$img" --host "$host"
check "  and says it is a secondary" grep -q "is a secondary" /tmp/fo-err.$$
expect_rc 0 "a new lease on the new primary (site b)" on_b host lease acquire "rbd/$img" --host "$host" --ttl 1m
on_b host lease release "$(on_b --format json host lease ls "rbd/$img" | jq -r '.[0].id')" >/dev/null 2>&1

# replication now runs b -> a: site b's daemon knew the pair when the failover returned
check "site b's daemon replicates to site a now, at once" bash -c "IMGSTORE_SERVER=$IMGSTORE_SERVER_B '$CLI' --format json repl status 'rbd/$img' | jq -e '.[0].target == \"a\"' >/dev/null"
expect_rc 0 "a cycle b -> a" on_b repl sync "rbd/$img"
check "a plain rbd write to the new secondary (site a) is refused" refused write_on a 1M
check "a plain rbd write to the new primary (site b) goes through" write_on b 1M
check "site a's daemon no longer replicates it" bash -c "! IMGSTORE_SERVER=$IMGSTORE_SERVER_A '$CLI' --format json repl status 'rbd/$img' | jq -e 'length > 0' >/dev/null"

# ROUNDS rounds of failback and failover, writes in between
round_fail=0 primary=b
for round in $(seq 1 "$ROUNDS"); do
  write_on "$primary" 2M
  before=$(head_sum "$primary")
  other=$([ $primary = a ] && echo b || echo a)
  # asked right after the last switch: the new primary's daemon has the pair already
  if ! IMGSTORE_SERVER=$(eval echo "\$IMGSTORE_SERVER_${primary^^}") "$CLI" repl failback "rbd/$img" >/tmp/fo-out.$$ 2>/tmp/fo-err.$$; then
    not_ok "round $round: failback from $primary to $other: $(head -c 300 /tmp/fo-err.$$)"
    round_fail=1
    break
  fi
  after_new=$(head_sum "$other") after_old=$(head_sum "$primary")
  if [ "$after_new" != "$before" ] || [ "$after_old" != "$before" ] ||
     [ "$(role_of "$other")/$(role_of "$primary")" != primary/secondary ]; then
    not_ok "round $round: $primary -> $other: checksums $before / $after_new / $after_old, roles $(role_of "$other")/$(role_of "$primary")"
    round_fail=1
    break
  fi
  primary=$other
done
check "$ROUNDS rounds of failover and failback with writes in between: checksums equal, roles swapped each time" test $round_fail = 0
check "the old primary ends demoted" test "$(role_of "$([ $primary = a ] && echo b || echo a)")" = secondary
echo "# generation after the rounds: $(gen_of a) / $(gen_of b)"
check "the generation counted every failover" test "$(gen_of "$primary")" -ge $((ROUNDS + 1))

# sync mode: a host's snapshot is sealed on the target before the call returns
sm=$img-sync
on_a image create "rbd/$sm" --size 32M >/dev/null 2>&1
expect_rc 0 "enable replication in sync mode" on_a repl enable "rbd/$sm" --to b --mode sync
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 64K --io-total 4M --io-pattern rand "rbd/$sm" >/dev/null 2>&1
expect_rc 0 "a host snapshot of a sync-mode image" on_a snap create "rbd/$sm@host-snap-1"
check "  is on site b when the call returns" bash -c "rbd -c '$CEPH_CONF_B' snap ls --format json 'rbd/$sm' | jq -e 'any(.[]; .name == \"host-snap-1\")' >/dev/null"
check "  with the same data as site a's" test "$(rbd -c "$CEPH_CONF_A" export --no-progress "rbd/$sm@host-snap-1" - | sha256sum)" = \
  "$(rbd -c "$CEPH_CONF_B" export --no-progress "rbd/$sm@host-snap-1" - 2>/dev/null | sha256sum)"
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 64K --io-total 2M --io-pattern rand "rbd/$sm" >/dev/null 2>&1
expect_rc 0 "a second one after more writes" on_a snap create "rbd/$sm@host-snap-2"
check "  is sealed too, equal" test "$(rbd -c "$CEPH_CONF_A" export --no-progress "rbd/$sm@host-snap-2" - | sha256sum)" = \
  "$(rbd -c "$CEPH_CONF_B" export --no-progress "rbd/$sm@host-snap-2" - 2>/dev/null | sha256sum)"
check "  its copy digested into site b's log" wait_until 100 0.2 \
  grep -q "digest [0-9]* of 'rbd/$sm@host-snap-2' on site 'b' (replica)" "$(site_log a)"
expect_rc 0 "  snap verify on site b: intact" on_b snap verify "rbd/$sm@host-snap-2"
forget_images "$sm"

# every image whose primary is a site, at once: planned (asked of that site), then forced back
# (asked of the other site, with the first one answering: it is fenced and rejoined at once)
bulk1=$img-x bulk2=$img-y
for b in $bulk1 $bulk2; do
  on_a image create "rbd/$b" --size 16M >/dev/null 2>&1
  rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 64K --io-total 2M --io-pattern rand "rbd/$b" >/dev/null 2>&1
  on_a repl enable "rbd/$b" --to b --rpo 30s >/dev/null
done
expect_rc 0 "failover --from a --to b (every image whose primary is site a)" on_a repl failover --from a --to b
cat /tmp/fo-out.$$
# PRIMARY SECONDARY IMAGE...: every image is the primary on site PRIMARY, a secondary on SECONDARY
roles_are() {
  local p=$1 s=$2 i; shift 2
  for i in "$@"; do
    [ "$(rbd -c "$(conf_of "$p")" image-meta get "rbd/$i" imgstore.repl.role)" = primary ] || return 1
    [ "$(rbd -c "$(conf_of "$s")" image-meta get "rbd/$i" imgstore.repl.role)" = secondary ] || return 1
  done
}
check "  both images are primary on site b and secondary on site a" roles_are b a $bulk1 $bulk2
check "  with equal data" bash -c "
  for b in $bulk1 $bulk2; do
    [ \"\$(rbd -c '$CEPH_CONF_A' export --no-progress rbd/\$b - | sha256sum)\" = \"\$(rbd -c '$CEPH_CONF_B' export --no-progress rbd/\$b - | sha256sum)\" ] || exit 1
  done"
expect_rc 1 "failover --from b asked of site b without --force is refused" on_b repl failover --from a --to b
expect_rc 2 "an image and --from together is a usage error" on_a repl failover "rbd/$bulk1" --from a --to b
expect_rc 0 "failover --from b --to a --force, asked of site a" on_a repl failover --from b --to a --force
cat /tmp/fo-out.$$
check "  both images are primary on site a again, site b rejoined as their secondary" roles_are a b $bulk1 $bulk2
forget_images $bulk1 $bulk2

finish

#!/usr/bin/env bash
# A planned failover whose daemon is killed half-way (SIGKILL at a recorded step, through
# IMGSTORE_CRASH_AT) is finished by running the same command again: every step is recorded in
# RADOS before it is done. Killed after the demote, before the promote, both copies are
# secondaries; `repl status` says a failover is in progress and at which step; the second run
# promotes site b, hands replication back to site a, and the data is equal on both sites.
# Killed before the demote, the second run does the whole failover; killed at the first step,
# the image stays primary on site a and the second run starts over.
# While a failover is recorded and unfinished, imgstore_failovers_in_progress of the site that
# recorded it counts it; once finished, it does not.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
SANDBOX=${IMS_SOURCE_DIR:?}/scripts/sandbox
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
out=/tmp/fr-out.$$ err=/tmp/fr-err.$$
T_OUT=$out T_ERR=$err

img=fr$$
cleanup() {
  # whatever happened, site a's daemon runs again without the crash point
  if ! "$SANDBOX" status "$IMGSTORE_SANDBOX" 2>/dev/null | grep -A3 "^site a" | grep -q "imgstored running"; then
    daemon_start a
  fi
  if ! "$SANDBOX" status "$IMGSTORE_SANDBOX" 2>/dev/null | grep -A3 "^site b" | grep -q "imgstored running"; then
    daemon_start b
  fi
  forget_images "$img"
  rm -f $out $err
}
trap cleanup EXIT

role_of() { local r; r=$(rbd_on "$1" image-meta get "rbd/$img" imgstore.repl.role 2>/dev/null); echo "${r:-primary}"; }
gen_of() { rbd_on "$1" image-meta get "rbd/$img" imgstore.generation 2>/dev/null || echo 0; }
sum_of() { rbd_on "$1" export --no-progress "rbd/$img" - 2>/dev/null | sha256sum | cut -d' ' -f1; }
write_on() { rbd_on "$1" bench --io-type write --io-size 64K --io-total "$2" --io-pattern rand "rbd/$img" >/dev/null 2>&1; }
# STEP [SITE]: restart site a's (SITE's) daemon so that it kills itself at STEP of a failover
arm() { daemon_stop "${2:-a}"; daemon_start "${2:-a}" IMGSTORE_CRASH_AT="failover:$1"; }
restart_a() { daemon_start a; }
dead() { wait_until 50 0.2 pid_gone "$1"; }
# SITE: the primary site replicates to the other one, and the data is equal
converged() {
  local primary=$1 other=$([ "$1" = a ] && echo b || echo a)
  [ "$(role_of "$primary")/$(role_of "$other")" = primary/secondary ] &&
    IMGSTORE_SERVER=$(eval echo "\$IMGSTORE_SERVER_${primary^^}") "$CLI" repl sync "rbd/$img" >/dev/null 2>&1 &&
    [ "$(sum_of a)" = "$(sum_of b)" ]
}

expect_rc 0 "create rbd/$img on site a" on_a image create "rbd/$img" --size 32M
write_on a 8M
expect_rc 0 "enable replication to site b" on_a repl enable "rbd/$img" --to b --rpo 1h
expect_rc 0 "sync" on_a repl sync "rbd/$img"

# imgstore_failovers_in_progress{site}: the failovers recorded on a site and not finished (the
# daemon counts them every 10 s). Other tests may have left records behind: compare with the
# value before.
failovers_of() { # SITE: the gauge of that site's daemon, empty while it is not exported
  local url=$(server_of "$1")
  curl -sf --max-time 10 --cacert "$IMGSTORE_CA_FILE" "$url/metrics" |
    awk -v k="imgstore_failovers_in_progress{site=\"$1\"}" '$1 == k { print $2 }'
}
failovers_become() { # SITE N: wait up to 40 s for the gauge to read N
  local v
  for _ in $(seq 1 40); do v=$(failovers_of "$1"); [ "$v" = "$2" ] && return 0; sleep 1; done
  echo "# imgstore_failovers_in_progress{site=\"$1\"} is '$v', wanted $2"; return 1
}
base_a="" base_b=""
for _ in $(seq 1 40); do
  base_a=$(failovers_of a) base_b=$(failovers_of b)
  [ -n "$base_a" ] && [ -n "$base_b" ] && break
  sleep 1
done
check "imgstore_failovers_in_progress is exported by both daemons (a: '$base_a', b: '$base_b')" \
  test -n "$base_a" -a -n "$base_b"

# ---- killed after the demote, before the promote: both copies are secondaries
arm promote
pid=$(daemon_pid a)
gen0=$(gen_of a)
write_on a 2M
on_a repl failover "rbd/$img" --to b >$out 2>$err
check "the failover's daemon died at the promote step" dead "$pid"
check "  site a's copy was demoted, site b's not promoted yet: both secondaries" \
  test "$(role_of a)/$(role_of b)" = secondary/secondary
restart_a
st=$(on_a --format json repl status "rbd/$img" 2>/dev/null | jq -r '.[0] | "\(.state) \(.error)"')
echo "# status: $st"
check "repl status on site a shows the failover in progress at step 'promote'" \
  bash -c "grep -q '^failing-over .*step .promote.' <<<\"\$1\"" _ "$st"
check "  imgstore_failovers_in_progress on site a counts it ($base_a + 1)" failovers_become a $((base_a + 1))
expect_rc 0 "the same command again finishes it" on_a repl failover "rbd/$img" --to b
cat $out
check "  it says it finished an interrupted failover" grep -q "finished the failover interrupted at step 'promote'" $out
check "  site b is the primary at the recorded generation ($(gen_of b) = $gen0 + 1)" \
  test "$(role_of b)/$(gen_of b)" = "primary/$((gen0 + 1))"
check "  site b's daemon replicates back to site a, and the data is equal" converged b
check "  site a's status no longer shows a failover" \
  bash -c "! IMGSTORE_SERVER=$IMGSTORE_SERVER_A '$CLI' --format json repl status rbd/$img | grep -q failing-over"
check "  imgstore_failovers_in_progress on site a is back to $base_a" failovers_become a "$base_a"

# ---- back to site a (a failback asked of site b), then killed at the demote step
expect_rc 0 "failback to site a" on_b repl failback "rbd/$img"
check "  site a is the primary again" converged a
arm demote
pid=$(daemon_pid a)
before=$(sum_of a)
on_a repl failover "rbd/$img" --to b >$out 2>$err
check "the failover's daemon died at the demote step" dead "$pid"
restart_a
expect_rc 0 "the same command again finishes it" on_a repl failover "rbd/$img" --to b
check "  site b is the primary" test "$(role_of b)" = primary
check "  and the data is what site a held" test "$(sum_of b)" = "$before"
check "  site b replicates back to site a" converged b

# ---- killed at the first step: nothing changed, and the command runs again from the start
expect_rc 0 "failback to site a" on_b repl failback "rbd/$img"
arm sync
pid=$(daemon_pid a)
on_a repl failover "rbd/$img" --to b >$out 2>$err
check "the failover's daemon died at the sync step" dead "$pid"
check "  site a is still the primary" test "$(role_of a)/$(role_of b)" = primary/secondary
restart_a
expect_rc 0 "the same command again does the whole failover" on_a repl failover "rbd/$img" --to b
check "  site b is the primary" converged b

# ---- a forced failover (asked of site b) killed right after the promotion, before the way back
expect_rc 0 "failback to site a" on_b repl failback "rbd/$img"
arm promoted b
pid=$(daemon_pid b)
on_b repl failover "rbd/$img" --to b --force >$out 2>$err
check "the forced failover's daemon died right after the promotion" dead "$pid"
daemon_start b
check "  site b is the primary" test "$(role_of b)" = primary
st=$(on_b --format json repl status "rbd/$img" 2>/dev/null | jq -r '.[0] | "\(.state) \(.error)"')
echo "# status: $st"
check "  repl status on site b shows the forced failover unfinished" bash -c "grep -q '^failing-over a forced failover' <<<\"\$1\"" _ "$st"
check "  imgstore_failovers_in_progress on site b counts it ($base_b + 1)" failovers_become b $((base_b + 1))
expect_rc 0 "the same command again finishes it" on_b repl failover "rbd/$img" --to b --force
cat $out
check "  it says so" grep -q "finished the forced failover interrupted after the promotion" $out
check "  site b's daemon replicates to site a again" \
  bash -c "IMGSTORE_SERVER=$IMGSTORE_SERVER_B '$CLI' --format json repl status rbd/$img | jq -e '.[0].target == \"a\" and .[0].state != \"failing-over\"' >/dev/null"
check "  imgstore_failovers_in_progress on site b is back to $base_b" failovers_become b "$base_b"

# ---- a failover record that cannot be read (corrupted, or written by hand): the failover is
# refused with a one-line error that names the record and how to drop it, and changes nothing
rados_b() { timeout 60 rados -c "$CEPH_CONF_B" -p rbd "$@"; }
for bad in 'not json{' '{"target":"a"}'; do
  rados_b setomapval imgstore.repl.failovers "rbd/$img" "$bad"
  expect_rc 1 "a failover over a bad record ($bad) is refused" on_b repl failover "rbd/$img" --to a
  check "  one line naming the record and the command that drops it" \
    bash -c "grep \"failover record of 'rbd/$img' on site 'b'\" $err | grep -q \"rmomapkey imgstore.repl.failovers 'rbd/$img'\""
  check "  nothing changed: primary on site b, secondary on site a" test "$(role_of b),$(role_of a)" = "primary,secondary"
done
expect_rc 0 "  repl status still answers" on_b repl status "rbd/$img"
rados_b rmomapkey imgstore.repl.failovers "rbd/$img"
expect_rc 0 "once it is removed as the error says, the failover runs" on_b repl failover "rbd/$img" --to a
check "  site a is the primary again" test "$(role_of a),$(role_of b)" = "primary,secondary"

# ---- a consistency group's planned failover killed after the demote: finished at its cut
g=$img-g d1=$img-d1 d2=$img-d2
gcleanup() {
  for s in A B; do
    local conf=CEPH_CONF_$s server=IMGSTORE_SERVER_$s
    IMGSTORE_SERVER=${!server} "$CLI" group repl disable "rbd/$g" >/dev/null 2>&1
  done
  for s in A B; do
    local conf=CEPH_CONF_$s
    for d in $d1 $d2; do timeout 60 rbd -c "${!conf}" group image rm "rbd/$g" "rbd/$d" >/dev/null 2>&1; done
    timeout 60 rbd -c "${!conf}" group rm "rbd/$g" >/dev/null 2>&1
    for d in $d1 $d2; do
      timeout 60 rbd -c "${!conf}" snap purge "rbd/$d" >/dev/null 2>&1
      timeout 60 rbd -c "${!conf}" rm --no-progress "rbd/$d" >/dev/null 2>&1
    done
  done
}
trap 'gcleanup; cleanup' EXIT
grole() { local r; r=$(rbd_on "$1" image-meta get "rbd/$2" imgstore.repl.role 2>/dev/null); echo "${r:-primary}"; }
for d in $d1 $d2; do
  on_a image create "rbd/$d" --size 16M >/dev/null 2>&1
  rbd_on a bench --io-type write --io-size 64K --io-total 1M --io-pattern rand "rbd/$d" >/dev/null 2>&1
done
expect_rc 0 "group create, add, enable and sync" bash -c "IMGSTORE_SERVER=$IMGSTORE_SERVER_A '$CLI' group create rbd/$g &&
  IMGSTORE_SERVER=$IMGSTORE_SERVER_A '$CLI' group add rbd/$g rbd/$d1 rbd/$d2 &&
  IMGSTORE_SERVER=$IMGSTORE_SERVER_A '$CLI' group repl enable rbd/$g --to b --rpo 1h &&
  IMGSTORE_SERVER=$IMGSTORE_SERVER_A '$CLI' group repl sync rbd/$g"
arm promote
pid=$(daemon_pid a)
on_a group repl failover "rbd/$g" --to b >$out 2>$err
check "the group failover's daemon died at the promote step" dead "$pid"
check "  both members demoted on site a, not yet promoted on site b" \
  test "$(grole a $d1),$(grole a $d2),$(grole b $d1),$(grole b $d2)" = "secondary,secondary,secondary,secondary"
restart_a
st=$(on_a --format json group repl status "rbd/$g" 2>/dev/null | jq -r '.[0] | "\(.state) \(.error)"')
echo "# group status: $st"
check "group repl status shows the failover in progress" bash -c "grep -q '^failing-over .*imgstore group repl failover' <<<\"\$1\"" _ "$st"
expect_rc 0 "the same group command again finishes it" on_a group repl failover "rbd/$g" --to b
cat $out
check "  it says it finished an interrupted failover" grep -q "finished the failover interrupted at step 'promote'" $out
check "  both members are primary on site b, secondary on site a" \
  test "$(grole b $d1),$(grole b $d2),$(grole a $d1),$(grole a $d2)" = "primary,primary,secondary,secondary"
check "  site b's daemon replicates the group back to site a" \
  bash -c "IMGSTORE_SERVER=$IMGSTORE_SERVER_B '$CLI' --format json group repl status rbd/$g | jq -e '.[0].target == \"a\"' >/dev/null"

# ---- a forced group failover (asked of site b) killed after it promoted the members: the same
# command again finishes it; a member the kill left a secondary is promoted, one already the
# primary keeps what was written to it since
expect_rc 0 "the group back to site a" on_b group repl failover "rbd/$g" --to a
expect_rc 0 "  and synced" on_a group repl sync "rbd/$g"
arm promoted b
pid=$(daemon_pid b)
on_b group repl failover "rbd/$g" --to b --force >$out 2>$err
check "the forced group failover's daemon died right after the promotion" dead "$pid"
daemon_start b
check "  both members are primary on site b" test "$(grole b $d1),$(grole b $d2)" = "primary,primary"
# as a kill between the two members' promotions leaves it: the second one still a secondary
rbd_on b image-meta set "rbd/$d2" imgstore.repl.role secondary >/dev/null
rbd_on b bench --io-type write --io-size 64K --io-total 512K --io-pattern rand "rbd/$d1" >/dev/null 2>&1
written=$(rbd_on b export --no-progress "rbd/$d1" - 2>/dev/null | sha256sum | cut -d' ' -f1)
st=$(on_b --format json group repl status "rbd/$g" 2>/dev/null | jq -r '.[0] | "\(.state) \(.error)"')
echo "# group status: $st"
check "  group repl status on site b shows the forced failover unfinished" \
  bash -c "grep -q '^failing-over a forced failover from site .a.' <<<\"\$1\"" _ "$st"
expect_rc 0 "the same command again finishes it" on_b group repl failover "rbd/$g" --to b --force
cat $out
check "  it says so" grep -q "finished the forced failover interrupted after its record" $out
check "  both members are primary on site b" test "$(grole b $d1),$(grole b $d2)" = "primary,primary"
check "  the member already promoted kept what was written to it" \
  test "$(rbd_on b export --no-progress "rbd/$d1" - 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$written"
check "  site b's daemon replicates the group back to site a" \
  bash -c "IMGSTORE_SERVER=$IMGSTORE_SERVER_B '$CLI' --format json group repl status rbd/$g | jq -e '.[0].target == \"a\" and .[0].state != \"failing-over\"' >/dev/null"
check "  the record is gone" bash -c "! timeout 60 rados -c '$CEPH_CONF_B' -p rbd listomapkeys imgstore.repl.failovers | grep -q 'group:rbd/$g'"

finish

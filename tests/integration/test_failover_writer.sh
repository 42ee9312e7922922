#!/usr/bin/env bash
# Planned failover and failback with a writer running (ROUNDS, default 5; the fault campaign
# runs 20): a writer on the primary writes N = 1, 2, ... at offset 0 and waits for each write
# (tests/integration/group_seq_writer.c); the failover fences it, so its write of some N fails
# and every write before was acknowledged. No acknowledged write may be lost: the new primary
# holds at least N - 1 at offset 0 (and at most N), after every switch.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
WRITER=${IMS_BINARY_DIR:?}/tests/group_seq_writer
ROUNDS=${ROUNDS:-5}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
out=/tmp/fw-out.$$ err=/tmp/fw-err.$$ wout=/tmp/fw-writer.$$
T_OUT=$out T_ERR=$err

img=fw$$
WPID=""
cleanup() {
  [ -n "$WPID" ] && kill "$WPID" 2>/dev/null && wait "$WPID" 2>/dev/null
  forget_images "$img"
  rm -f $out $err $wout
}
trap cleanup EXIT

role_of() { local r; r=$(timeout 60 rbd -c "$(conf_of "$1")" image-meta get "rbd/$img" imgstore.repl.role 2>/dev/null); echo "${r:-primary}"; }
# the counter at offset 0 of the image on SITE (8 bytes, little endian)
counter_on() { timeout 120 rbd -c "$(conf_of "$1")" export --no-progress "rbd/$img" - 2>/dev/null | head -c 8 | od -An -tu8 | tr -d ' '; }

expect_rc 0 "create rbd/$img on site a" env IMGSTORE_SERVER="$IMGSTORE_SERVER_A" "$CLI" image create "rbd/$img" --size 16M
expect_rc 0 "enable replication to site b" env IMGSTORE_SERVER="$IMGSTORE_SERVER_A" "$CLI" repl enable "rbd/$img" --to b --rpo 1h
expect_rc 0 "sync" env IMGSTORE_SERVER="$IMGSTORE_SERVER_A" "$CLI" repl sync "rbd/$img"

primary=a lost=0 rounds_ok=0
for round in $(seq 1 "$ROUNDS"); do
  other=$([ $primary = a ] && echo b || echo a)
  "$WRITER" "$(conf_of $primary)" rbd "$img" >$wout 2>/dev/null &
  WPID=$!
  sleep 1
  # from site a: a failover asked of it; back from site b: a failback asked of site b
  if [ $primary = a ]; then
    verb=(repl failover "rbd/$img" --to "$other" --wait 1s)
  else
    verb=(repl failback "rbd/$img")
  fi
  if ! IMGSTORE_SERVER=$(server_of $primary) "$CLI" "${verb[@]}" >$out 2>$err; then
    not_ok "round $round: ${verb[*]} from $primary: $(head -c 300 $err)"
    break
  fi
  # the writer was fenced: its next write failed; give it a moment, then stop it if it did not
  wait_until 50 0.2 pid_gone "$WPID"
  kill "$WPID" 2>/dev/null
  wait "$WPID" 2>/dev/null
  WPID=""
  failed=$(tail -1 $wout)
  acked=$((failed - 1))
  got=$(counter_on "$other")
  echo "# round $round: $primary -> $other, writer's last acknowledged write $acked, new primary holds ${got:-?}"
  if [ -z "$got" ] || [ "$got" -lt "$acked" ] || [ "$got" -gt "$failed" ]; then
    not_ok "round $round: an acknowledged write was lost (acknowledged $acked, the new primary holds ${got:-nothing})"
    lost=$((lost + 1))
    break
  fi
  if [ "$(role_of "$other")/$(role_of "$primary")" != primary/secondary ]; then
    not_ok "round $round: roles $(role_of "$other")/$(role_of "$primary") after the switch"
    break
  fi
  rounds_ok=$((rounds_ok + 1))
  primary=$other
done
check "$ROUNDS rounds of failover and failback with a writer running: no acknowledged write lost" \
  test "$rounds_ok" = "$ROUNDS" -a "$lost" = 0

finish

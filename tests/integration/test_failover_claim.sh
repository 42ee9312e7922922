#!/usr/bin/env bash
# One failover of an image at a time among the imgstored of a site (ims_repl_sched_claim(): a
# RADOS lock per image or group, held while its failover, failback or resync runs):
#   - a planned failover of an image runs on site a's daemon, waiting for a host's lease (up to
#     60 s: the host releases it once the checks are done); the
#     same failover asked meanwhile of a second imgstored of site a is refused in one line
#     naming the lock, and changes nothing; the first ends with site b the primary;
#   - the same daemon asked twice refuses the second too (its own operations: one line naming
#     the operation), and a failover of the site's images asked of it meanwhile says why it
#     does not fail that image over (never "unknown error");
#   - once it ended (and a failback asked of site b), a failover asked of the second daemon of
#     site a runs (the lock was let go);
#   - a planned failover of site a's images (`--from a`) runs on the first daemon, waiting for
#     a lease (up to 60 s: the host releases it once the checks are done); the same asked of
#     the second daemon is refused in one line naming the site's lock and runs no image, and
#     the first moves every image.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
BIN=${IMS_BINARY_DIR:?}/daemon/imgstored
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
workdir W
T_OUT=$W/out T_ERR=$W/err

img=fcl$$
A=$IMGSTORE_SANDBOX/site-a
NAME2=fclaim-$$
SOCK2=$A/run/$NAME2.sock
PID2="" FO_PID=""
cleanup() {
  [ -n "$FO_PID" ] && kill "$FO_PID" 2>/dev/null
  if [ -n "$PID2" ] && kill -0 "$PID2" 2>/dev/null; then
    kill "$PID2"
    wait_until 100 0.1 pid_gone "$PID2"
  fi
  rm -f "$A/$NAME2.conf" "$SOCK2" "$A/run/audit-$NAME2.log"
  rm -rf "$A/run/spool-$NAME2"
  forget_images "$img" "$img-2"
  rm -rf "$W"
}
trap cleanup EXIT

role_of() { local r; r=$(rbd_on "$1" image-meta get "rbd/$img" imgstore.repl.role 2>/dev/null); echo "${r:-primary}"; }
on_a2() { IMGSTORE_SERVER=unix:$SOCK2 "$CLI" "$@"; }

expect_rc 0 "create rbd/$img on site a" on_a image create "rbd/$img" --size 16M
expect_rc 0 "replicated to site b" bash -c "'$CLI' repl enable rbd/$img --to b --rpo 1h && '$CLI' repl sync rbd/$img"

# a second imgstored of site a (its own instance name, port, socket, spool and audit log)
second_conf a "$A/run" "$NAME2" >"$A/$NAME2.conf"
"$BIN" --config "$A/$NAME2.conf" </dev/null >>"$W/daemon2.log" 2>&1 9>&- &
PID2=$!
disown "$PID2"
healthy2() { curl -sf --max-time 2 --unix-socket "$SOCK2" http://localhost/healthz >/dev/null; }
check "a second imgstored on site a" wait_until 100 0.2 healthy2

# a host's lease: the failover waits for it (--wait 60s; the host releases it once the checks
# below are done, so that none of them races the failover's end)
host=fcl-host-$$
on_a host register "$host" >/dev/null 2>&1
# TARGET: whether site a's daemon runs one failover of TARGET (an operation's target)
fo_running() { on_a --format json op ls 2>/dev/null | jq -e --arg t "$1" '[.[] | select(.kind == "failover" and .state == "running" and .target == $t)] | length == 1' >/dev/null; }
# WHAT OUT TARGET ARGS...: a host's lease on rbd/$img, then `repl failover ARGS --wait 60s` on
# site a's daemon in the background (its output in OUT, its pid in FO_PID), checked running
# (the operation of TARGET) while it waits for the lease
leased_failover() {
  local what=$1 out=$2 target=$3
  shift 3
  lease=$(on_a --format json host lease acquire "rbd/$img" --host "$host" --ttl 5m 2>/dev/null | jq -r '.id // ""')
  check "a host holds a lease on rbd/$img ($lease)" test -n "$lease"
  on_a repl failover "$@" --wait 60s >"$out" 2>&1 &
  FO_PID=$!
  check "$what runs on site a's daemon (it waits for the lease)" wait_until 50 0.1 fo_running "$target"
}
# WHAT OUT: the host releases its lease, the failover goes on and succeeds
released_failover() {
  local fo_rc
  expect_rc 0 "the host releases its lease: $1 goes on" on_a host lease release "$lease"
  wait "$FO_PID"
  fo_rc=$?
  FO_PID=""
  check "$1 succeeded ($(tail -1 "$2" | cut -c1-160))" test "$fo_rc" = 0
}
leased_failover "the failover" "$W/fo.out" "rbd/$img" "rbd/$img" --to b

expect_rc 1 "the same failover asked of the second daemon of site a is refused" \
  on_a2 repl failover "rbd/$img" --to b
check "  in one line naming the lock: $(grep -m1 '^imgstore:' "$T_ERR" | cut -c1-200)" \
  bash -c "[ \$(grep -c '^imgstore:' '$T_ERR') = 1 ] && grep -q \"another imgstored of site 'a' runs a failover, failback or resync of image 'rbd/$img' (it holds the RADOS lock 'handover:image:rbd/$img'\" '$T_ERR'"
check "  and changed nothing: still primary on a, secondary on b" test "$(role_of a)/$(role_of b)" = primary/secondary
expect_rc 1 "asked twice of the first daemon, it is refused too" on_a repl failover "rbd/$img" --to b
check "  naming the running operation" grep -q "a failover of 'rbd/$img' still runs here (operation op-" "$T_ERR"
expect_rc 1 "a failover of site a's images asked of the first daemon meanwhile does not run it twice" \
  on_a repl failover --from a --to b --wait 1s
check "  saying why, for that image: $(grep -m1 "rbd/$img" "$T_OUT" "$T_ERR" | cut -d: -f2- | cut -c1-160)" \
  bash -c "grep -h 'rbd/$img' '$T_OUT' '$T_ERR' | grep -q -e 'already runs a failover, failback or resync of image' -e 'still runs here'"
check "  and changed nothing: still primary on a, secondary on b" test "$(role_of a)/$(role_of b)" = primary/secondary

released_failover "the first failover" "$W/fo.out"
check "  site b is the primary, site a the secondary" test "$(role_of b)/$(role_of a)" = primary/secondary

# the lock was let go: after a failback (asked of site b), site a's second daemon runs the next
# failover of the image
expect_rc 0 "failback to site a, asked of site b" on_b repl failback "rbd/$img"
check "  site a is the primary again" test "$(role_of a)/$(role_of b)" = primary/secondary
expect_rc 0 "a failover to b asked of site a's second daemon now runs" on_a2 repl failover "rbd/$img" --to b
check "  site b is the primary" test "$(role_of b)/$(role_of a)" = primary/secondary

# a failover of the site's images: one at a time among the site's daemons too (the site's
# claim), not only image by image. Both images primary on a again, one leased.
expect_rc 0 "failback to site a again, asked of site b" on_b repl failback "rbd/$img"
img2=${img}-2
expect_rc 0 "a second image replicated to site b" bash -c "'$CLI' image create rbd/$img2 --size 16M && '$CLI' repl enable rbd/$img2 --to b --rpo 1h && '$CLI' repl sync rbd/$img2"
role2_of() { local r; r=$(rbd_on "$1" image-meta get "rbd/$img2" imgstore.repl.role 2>/dev/null); echo "${r:-primary}"; }
leased_failover "the failover of site a's images" "$W/sfo.out" "rbd/* of site a" --from a --to b
expect_rc 1 "the same failover of the site asked of the second daemon is refused" \
  on_a2 repl failover --from a --to b
check "  in one line naming the site's lock: $(grep -m1 '^imgstore:' "$T_ERR" | cut -c1-200)" \
  bash -c "[ \$(grep -c '^imgstore:' '$T_ERR') = 1 ] && grep -q \"another imgstored of site 'a' runs a failover, failback or resync of site 'a''s images in pool 'rbd' (it holds the RADOS lock 'handover:site:rbd/a'\" '$T_ERR'"
check "  and ran no image (its output names none)" bash -c "! grep -q 'image rbd/' '$T_OUT' '$T_ERR'"
check "  the leased image is still primary on a (the first daemon waits for its lease)" test "$(role_of a)/$(role_of b)" = primary/secondary
released_failover "the first daemon's failover of the site" "$W/sfo.out"
check "  site b is the primary of both images" test "$(role_of b)/$(role2_of b)/$(role_of a)/$(role2_of a)" = primary/primary/secondary/secondary

finish

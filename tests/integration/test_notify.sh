#!/usr/bin/env bash
# imgstored under systemd's service protocol (Type=notify), with a notification socket of the
# test's own standing in for systemd's (NOTIFY_SOCKET) and a 2 s watchdog (WATCHDOG_USEC):
#   - a daemon whose site does not answer says why in STATUS= and never READY=1;
#   - a daemon of site a says READY=1 with its listeners in STATUS=, feeds the watchdog at
#     least twice a period, says RELOADING=1 then READY=1 on SIGHUP (and opens its audit log
#     again, as logrotate needs), STOPPING=1 on SIGTERM, and exits 0.
# The daemon is a second one of site a, on ports and paths of its own.
set -uo pipefail
IMGSTORED=${IMS_BINARY_DIR:?}/daemon/imgstored
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"

W=$(mktemp -d /tmp/imgstore-notify.XXXXXX)
listener="" daemon=""
cleanup() {
  [ -n "$daemon" ] && kill -KILL "$daemon" 2>/dev/null
  [ -n "$listener" ] && kill "$listener" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

# the stand-in for systemd: every datagram on $W/notify, one line each, in $W/got
python3 - "$W/notify" "$W/got" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as out:
    end = time.time() + 300
    while time.time() < end:
        s.settimeout(1)
        try:
            msg = s.recv(4096).decode(errors="replace")
        except socket.timeout:
            continue
        out.write("%.3f %s\n" % (time.time(), msg.replace("\n", " | ")))
PY
listener=$!
for _ in $(seq 1 50); do [ -S "$W/notify" ] && break; sleep 0.1; done
check "the notification socket is up" test -S "$W/notify"
# CONF NAME: a copy of site a's imgstored.conf with a port, socket ($W/notify-NAME.sock), spool
# and audit log ($W/audit-notify-NAME.log) of its own
make_conf() { second_conf a "$W" "notify-$2" >"$1"; }
# PATTERN SECS: wait until a received line matches
got() { local end=$((SECONDS + $2)); while [ $SECONDS -lt $end ]; do grep -q -- "$1" "$W/got" 2>/dev/null && return 0; sleep 0.2; done; return 1; }
start() { NOTIFY_SOCKET=$W/notify WATCHDOG_USEC=2000000 setsid "$IMGSTORED" --config "$1" </dev/null >>"$W/$2.log" 2>&1 & daemon=$!; }

# ---- a site that does not answer: its monitor address has nobody behind it
sed -e "s|^mon host = .*|mon host = 127.0.0.1:$(free_port)|" -e "s|^mon_host = .*|mon_host = 127.0.0.1:$(free_port)|" \
  "$(grep '^ceph_conf' "$IMGSTORE_SANDBOX/site-a/imgstored.conf" | head -1 | sed 's/^ceph_conf = //')" >"$W/dead.conf"
make_conf "$W/down.conf" down
sed -i -e "0,/^ceph_conf = .*/s||ceph_conf = $W/dead.conf|" -e 's/^mon_timeout = .*//' "$W/down.conf"
sed -i "/^\[site\]/a mon_timeout = 2s" "$W/down.conf"
start "$W/down.conf" down
check "a daemon whose site does not answer says why (STATUS=not ready: ...)" got "STATUS=not ready: " 40
check "  and is not READY" bash -c "! grep -q 'READY=1' '$W/got'"
check "  and feeds the watchdog while it waits" got "WATCHDOG=1" 5
kill -TERM "$daemon"; wait "$daemon"; rc=$?; daemon=""
check "  SIGTERM ends it (exit $rc)" test $rc = 0
grep -h "" "$W/got" | sed 's/^/# /' | head -5
: >"$W/got"

# ---- a daemon of site a
make_conf "$W/up.conf" up
start "$W/up.conf" up
check "READY=1 once the site answers and the listeners are up" got "READY=1" 60
check "  with a status naming the site and its listeners" got "STATUS=serving site 'a' on 127.0.0.1:[0-9]* and $W/notify-up.sock" 1
check "  and the Unix socket answers then" curl -sf --max-time 5 --unix-socket "$W/notify-up.sock" http://localhost/readyz
sleep 3
n=$(grep -c "WATCHDOG=1" "$W/got")
check "the watchdog (2 s) is fed at least twice a period ($n in about 3 s)" test "$n" -ge 3
# logrotate's way: the audit log moved away, then SIGHUP; the next call is audited in a new file
CLI=${IMS_BINARY_DIR}/cli/imgstore
# (a call that changes something is audited, refused or not: removing an image that is not there)
audited() { IMGSTORE_SERVER=unix:$W/notify-up.sock "$CLI" image rm "rbd/notify-none-$$" >/dev/null 2>&1; true; }
audited
check "a call is audited" grep -q "notify-none-$$" "$W/audit-notify-up.log"
mv "$W/audit-notify-up.log" "$W/audit-notify-up.log.1"
kill -HUP "$daemon"
check "SIGHUP: RELOADING=1" got "RELOADING=1" 10
check "  the audit log is opened again under its name" bash -c "for _ in \$(seq 1 50); do [ -f '$W/audit-notify-up.log' ] && exit 0; sleep 0.1; done; exit 1"
n1=$(wc -l <"$W/audit-notify-up.log.1")
audited
check "  the next call goes to the new file, none to the old one" \
  bash -c "grep -q 'notify-none-$$' '$W/audit-notify-up.log' && [ \$(wc -l <'$W/audit-notify-up.log.1') = $n1 ]"
check "  then READY=1 again" bash -c "for _ in \$(seq 1 50); do [ \$(grep -c 'READY=1' '$W/got') -ge 2 ] && exit 0; sleep 0.2; done; exit 1"
kill -TERM "$daemon"
check "SIGTERM: STOPPING=1" got "STOPPING=1" 10
wait "$daemon"; rc=$?; daemon=""
check "  and it exits 0 (exit $rc)" test $rc = 0
grep -v WATCHDOG "$W/got" | sed 's/^/# /'

finish

#!/usr/bin/env bash
# The daemon running a failover blocklisted by its own site half-way (`ceph osd blocklist add`
# of every client site a's imgstored has had there): a planned failover of an image to site b,
# asked of site a's daemon, waits for a host's lease (--wait); meanwhile site a blocklists the
# daemon's clients. The daemon replaces its clients without a restart; the failover, whose
# claim (a RADOS lock held by the blocklisted client) is gone, stops before its next step in
# one line saying the client was blocklisted (or the failover's lock lost), and leaves the
# image as it was: primary on a, secondary on b, the host's lease kept. Once the daemon has
# connected a new client (its next probe), the same command runs to its end (the failover's
# claim the dead client held is taken back under the daemon's own cookie).
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
workdir W
T_OUT=$W/out T_ERR=$W/err

img=fbl$$
LOG_A=$(site_log a)
FO_PID="" blocked=()
ceph_batch() { timeout 300 ceph -c "$1" --connect-timeout 10 >/dev/null 2>&1; }
cleanup() {
  [ -n "$FO_PID" ] && kill "$FO_PID" 2>/dev/null
  [ ${#blocked[@]} = 0 ] || printf 'osd blocklist rm %s\n' "${blocked[@]}" | ceph_batch "$CEPH_CONF_A"
  forget_images "$img"
  rm -rf "$W"
}
trap cleanup EXIT

role_of() { local r; r=$(rbd_on "$1" image-meta get "rbd/$img" imgstore.repl.role 2>/dev/null); echo "${r:-primary}"; }
addrs_of() { grep -o "site '$2': connected as [^ ]* (client\.[0-9]* at [^)]*)" "$1" | sed 's/.* at \(.*\))$/\1/' | sort -u; }
http_code() { curl -s --max-time 10 -o /dev/null -w '%{http_code}' --cacert "$IMGSTORE_CA_FILE" "$1"; }
readyz_a() { [ "$(http_code "$IMGSTORE_SERVER_A/readyz")" = 200 ]; }

expect_rc 0 "create rbd/$img on site a" on_a image create "rbd/$img" --size 16M
rbd_on a bench --io-type write --io-size 64K --io-total 1M --io-pattern rand "rbd/$img" >/dev/null 2>&1
expect_rc 0 "replicated to site b" bash -c "'$CLI' repl enable rbd/$img --to b --rpo 1h && '$CLI' repl sync rbd/$img"
pa=$(daemon_pid a)
rec0=$(metric "$IMGSTORE_SERVER_A" 'imgstore_site_reconnects_total{site="a"}') rec1=""

host=fbl-host-$$
on_a host register "$host" >/dev/null 2>&1
lease=$(on_a --format json host lease acquire "rbd/$img" --host "$host" --ttl 5m 2>/dev/null | jq -r '.id // ""')
check "a host holds a lease on the image ($lease)" test -n "$lease"
on_a repl failover "rbd/$img" --to b --wait 15s >"$W/fo.out" 2>&1 &
FO_PID=$!
fo_running() { on_a --format json op ls 2>/dev/null | jq -e --arg t "rbd/$img" '[.[] | select(.kind == "failover" and .state == "running" and .target == $t)] | length == 1' >/dev/null; }
check_or_stop "the failover runs on site a's daemon (it waits for the lease)" wait_until 50 0.1 fo_running

mapfile -t blocked < <(addrs_of "$LOG_A" a)
check "daemon a's clients of site a are known from its log (${#blocked[@]})" test "${#blocked[@]}" -ge 1
printf 'osd blocklist add %s 3600\n' "${blocked[@]}" | ceph_batch "$CEPH_CONF_A"
all_listed() {
  local ls x
  ls=$(timeout 30 ceph -c "$CEPH_CONF_A" osd blocklist ls 2>/dev/null | awk '{ print $1 }')
  for x in "${blocked[@]}"; do grep -qxF -- "$x" <<<"$ls" || return 1; done
}
check "  all blocklisted on site a" all_listed

wait "$FO_PID"
fo_rc=$?
FO_PID=""
said=$(grep -m1 '^imgstore:' "$W/fo.out")
check "the failover failed (exit $fo_rc): ${said:0:220}" test "$fo_rc" != 0
check "  in one line" test "$(grep -c '^imgstore:' "$W/fo.out")" = 1
check "  saying the client was blocklisted, or the failover's lock lost with it" \
  grep -q -e 'this client was blocklisted by the cluster' -e 'lost its RADOS lock' "$W/fo.out"
check "  and changed nothing: primary on a, secondary on b" test "$(role_of a)/$(role_of b)" = primary/secondary
reconnected() { rec1=$(metric "$IMGSTORE_SERVER_A" 'imgstore_site_reconnects_total{site="a"}'); [ "${rec1:-0}" -gt "${rec0:-0}" ]; }
check "daemon a connected a new client of site a at its next probe" wait_until 60 0.5 reconnected
check "  without a restart (same pid)" test "$(daemon_pid a)" = "$pa"
check "  ready" wait_until 30 1 readyz_a
lease_kept() { on_a --format json host lease ls "rbd/$img" 2>/dev/null | jq -e --arg l "$lease" '[.[] | select(.id == $l)] | length == 1' >/dev/null; }
check "the host's lease is kept" lease_kept

expect_rc 0 "the same failover asked again runs to its end" on_a repl failover "rbd/$img" --to b --wait 1s
check "  site b is the primary, site a the secondary" test "$(role_of b)/$(role_of a)" = primary/secondary
expect_rc 0 "failback to site a, asked of site b" on_b repl failback "rbd/$img"
check "  site a is the primary again" test "$(role_of a)/$(role_of b)" = primary/secondary

finish

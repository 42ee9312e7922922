#!/usr/bin/env bash
# The daemon running a failover blocklisted by its own site half-way (`ceph osd blocklist add`
# of every client site a's imgstored has had there): a planned failover of an image to site b,
# asked of site a's daemon, waits for a host's lease (--wait 30s); meanwhile site a blocklists
# the daemon's client. The daemon replaces its clients without a restart (its next probe); the
# failover rides through: the lease, unreadable a moment, is waited for as held (its host keeps
# its 30 s), and the failover's claim (a RADOS lock the blocklisted client held) is taken again
# on the new client, as it is still the daemon's own. It ends with site b the primary, no mark
# or record of it left, a failback after it, and hosts free to take leases again.
# (A failover that fails on a blocklisted client instead undoes its marks again and again until
# the new client does: handover.c ims_handover__undo_step().)
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
on_a host register "$host-2" >/dev/null 2>&1
lease=$(on_a --format json host lease acquire "rbd/$img" --host "$host" --ttl 5m 2>/dev/null | jq -r '.id // ""')
check "a host holds a lease on the image ($lease)" test -n "$lease"
t_fo=$SECONDS
on_a repl failover "rbd/$img" --to b --wait 30s >"$W/fo.out" 2>&1 &
FO_PID=$!
fo_running() { on_a --format json op ls 2>/dev/null | jq -e --arg t "rbd/$img" '[.[] | select(.kind == "failover" and .state == "running" and .target == $t)] | length == 1' >/dev/null; }
check_or_stop "the failover runs on site a's daemon (it waits for the lease)" wait_until 50 0.1 fo_running

# its client of site a now: the last one its log names (the older ones are gone already;
# blocklisting them too only makes the batch take longer)
mapfile -t blocked < <(grep -o "site 'a': connected as [^ ]* (client\.[0-9]* at [^)]*) for the main" "$LOG_A" | tail -1 | sed 's/.* at \(.*\)) for the main$/\1/')
check "daemon a's client of site a is known from its log (${blocked[*]})" test "${#blocked[@]}" -ge 1
printf 'osd blocklist add %s 3600\n' "${blocked[@]}" | ceph_batch "$CEPH_CONF_A"
all_listed() {
  local ls x
  ls=$(timeout 30 ceph -c "$CEPH_CONF_A" osd blocklist ls 2>/dev/null | awk '{ print $1 }')
  for x in "${blocked[@]}"; do grep -qxF -- "$x" <<<"$ls" || return 1; done
}
check "  blocklisted on site a" all_listed

wait "$FO_PID"
fo_rc=$?
FO_PID=""
fo_secs=$((SECONDS - t_fo))
said=$(tail -1 "$W/fo.out")
check "the failover rode through the blocklisting (exit $fo_rc): ${said:0:200}" test "$fo_rc" = 0
check "  site b is the primary, site a the secondary" test "$(role_of b)/$(role_of a)" = primary/secondary
reconnected() { rec1=$(metric "$IMGSTORE_SERVER_A" 'imgstore_site_reconnects_total{site="a"}'); [ "${rec1:-0}" -gt "${rec0:-0}" ]; }
check "  daemon a connected a new client of site a at its next probe" wait_until 60 0.5 reconnected
check "  without a restart (same pid)" test "$(daemon_pid a)" = "$pa"
check "  its claim on the failover taken again on the new client (log)" \
  grep -q "took the RADOS lock 'handover:image:rbd/$img' again on a new client" "$LOG_A"
state_of() { rbd_on "$1" image-meta get "rbd/$img" imgstore.repl.state 2>/dev/null; }
check "  no failover mark left on either copy (site a '$(state_of a)', site b '$(state_of b)')" test -z "$(state_of a)$(state_of b)"
# (the gauge is counted every 10 s)
unfinished_none() { in_progress=$(metric "$IMGSTORE_SERVER_A" 'imgstore_failovers_in_progress{site="a"}'); [ "${in_progress:-0}" = 0 ]; }
in_progress=""
check "  none recorded as unfinished on site a (imgstore_failovers_in_progress, counted every 10 s)" wait_until 50 0.5 unfinished_none
fo_left() { on_a --format json op ls 2>/dev/null | jq -e --arg t "rbd/$img" '[.[] | select(.kind == "failover" and .target == $t and .state == "running")] | length == 0' >/dev/null; }
check "  its operation is not left running" fo_left
# (a lower bound, not a speed: an unreadable lease once ended the wait, the lease broken at once)
check "  the host's lease waited its 30 s (unreadable a moment: waited for as held; ${fo_secs} s)" test "$fo_secs" -ge 30
check "  then broken" grep -q "1 lease(s) broken" "$W/fo.out"
check "daemon a is ready" wait_until 30 1 readyz_a
expect_rc 0 "failback to site a, asked of site b" on_b repl failback "rbd/$img"
check "  site a is the primary again" test "$(role_of a)/$(role_of b)" = primary/secondary
lease2=$(on_a --format json host lease acquire "rbd/$img" --host "$host-2" --ttl 1m 2>/dev/null | jq -r '.id // ""')
check "  a host may take a lease there again: ${lease2:-refused}" test -n "$lease2"
[ -z "$lease2" ] || on_a host lease release "$lease2" >/dev/null 2>&1

finish

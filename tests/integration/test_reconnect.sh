#!/usr/bin/env bash
# A daemon whose clients the cluster blocklisted recovers without a restart (ims_site_probe()
# replaces the client), on the peer site and on its own; /readyz tells the truth about its own
# site while /healthz stays ok; imgstore_site_up and imgstore_site_reconnects_total say what
# happened. The daemons' client addresses come from their logs ("connected as ... at ADDR"),
# so that only their clients are blocklisted, not the other tests'.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
T_OUT=/tmp/rc-out.$$ T_ERR=/tmp/rc-err.$$

img=rc$$
LOG_A=$(site_log a)
LOG_B=$(site_log b)
RBD_BIN=$(type -P rbd)
rbd() { timeout 120 "$RBD_BIN" "$@"; }
ceph_on() { local conf=$1; shift; timeout 30 ceph -c "$conf" --connect-timeout 10 "$@"; }
# CONF: one ceph process runs the commands of its standard input, one a line (the daemons'
# logs name every address they had since the sandbox started: dozens, a second each apart)
ceph_batch() { timeout 300 ceph -c "$1" --connect-timeout 10 >/dev/null 2>&1; }
blocked_a=() blocked_b=()
cleanup() {
  thaw_site a 2>/dev/null
  [ ${#blocked_a[@]} = 0 ] || printf 'osd blocklist rm %s\n' "${blocked_a[@]}" | ceph_batch "$CEPH_CONF_A"
  [ ${#blocked_b[@]} = 0 ] || printf 'osd blocklist rm %s\n' "${blocked_b[@]}" | ceph_batch "$CEPH_CONF_B"
  rm -f /tmp/rc-out.$$ /tmp/rc-err.$$
  forget_replica "$img"
}
trap cleanup EXIT

# the addresses daemon LOG's clients of SITE have had since it started
addrs_of() { grep -o "site '$2': connected as [^ ]* (client\.[0-9]* at [^)]*)" "$1" | sed 's/.* at \(.*\))$/\1/' | sort -u; }
http_code() { curl -s --max-time 10 -o /dev/null -w '%{http_code}' --cacert "$IMGSTORE_CA_FILE" "$1"; }
status() { on_a --format json repl status "rbd/$img" 2>/dev/null | jq -r ".[0].$1 // \"\""; }
write_a() { rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 64K --io-total "$1" --io-pattern rand "rbd/$img" >/dev/null 2>&1; }
sum_at() { rbd -c "$1" export --no-progress "rbd/$img@$2" - 2>/dev/null | sha256sum | cut -d' ' -f1; }
pid_b() { daemon_pid b; }
pid_a() { daemon_pid a; }
# SEALED SECS: wait until a cycle newer than SEALED was sealed without an error
wait_new_seal() {
  local old=$1 end=$((SECONDS + $2)) s
  while [ $SECONDS -lt $end ]; do
    s=$(status last_sealed_snapshot)
    if [ -n "$s" ] && [ "$s" != "$old" ] && [ -z "$(status error)" ]; then echo "$s"; return 0; fi
    sleep 2
  done
  return 1
}
# CONF ADDR...: these clients blocklisted for an hour on the cluster of CONF
blocklist() {
  local conf=$1 x listed; shift
  printf 'osd blocklist add %s 3600\n' "$@" | ceph_batch "$conf"
  listed=$(ceph_on "$conf" osd blocklist ls 2>/dev/null | awk '{ print $1 }')
  for x in "$@"; do grep -qxF -- "$x" <<<"$listed" || not_ok "blocklist $x"; done
}
# OLD WHAT: after a write on site a, a cycle newer than OLD is sealed (check WHAT) with the
# same content on both sites; its name in $sealed
expect_new_seal() {
  write_a 4M
  sealed=$(wait_new_seal "$1" 120)
  [ -n "$sealed" ] || daemon_logs
  check "$2 ($sealed)" test -n "$sealed"
  check "  both copies equal at it" test -n "$sealed" -a "$(sum_at "$CEPH_CONF_A" "$sealed")" = "$(sum_at "$CEPH_CONF_B" "$sealed")"
}
# CODE: site a's /readyz answers CODE (the last answer in $code)
readyz_a_is() { code=$(http_code "$IMGSTORE_SERVER_A/readyz"); [ "$code" = "$1" ]; }

expect_rc 0 "create rbd/$img on site a" on_a image create "rbd/$img" --size 64M
write_a 16M
expect_rc 0 "enable replication to site b (RPO 5s)" on_a repl enable "rbd/$img" --to b --rpo 5s
expect_rc 0 "first sync" on_a repl sync "rbd/$img"
sealed0=$(status last_sealed_snapshot)
check_or_stop "a snapshot is sealed ($sealed0)" test -n "$sealed0"

# ---- every client of both daemons on site b blocklisted for an hour
rec_a0=$(metric "$IMGSTORE_SERVER_A" 'imgstore_site_reconnects_total{site="b"}')
rec_b0=$(metric "$IMGSTORE_SERVER_B" 'imgstore_site_reconnects_total{site="b"}')
lines_a0=$(grep -c "site 'b': this daemon's client was blocklisted" "$LOG_A")
pb=$(pid_b) pa=$(pid_a)
mapfile -t blocked_b < <({ addrs_of "$LOG_A" b; addrs_of "$LOG_B" b; } | sort -u)
check "both daemons' clients of site b are known from their logs (${#blocked_b[@]})" test "${#blocked_b[@]}" -ge 3
blocklist "$CEPH_CONF_B" "${blocked_b[@]}"
expect_new_seal "$sealed0" "replication a->b sealed a new cycle without a restart"
sealed1=$sealed
check "  daemon a was not restarted" test "$(pid_a)" = "$pa"
check "  daemon b was not restarted" test "$(pid_b)" = "$pb"
rec_a1=$(metric "$IMGSTORE_SERVER_A" 'imgstore_site_reconnects_total{site="b"}')
check "daemon a counted its reconnect to site b ($rec_a0 -> $rec_a1)" test "${rec_a1:-0}" -gt "${rec_a0:-0}"
rec_b1=
b_reconnected() { rec_b1=$(metric "$IMGSTORE_SERVER_B" 'imgstore_site_reconnects_total{site="b"}'); [ "${rec_b1:-0}" -gt "${rec_b0:-0}" ]; }
wait_for 15 "daemon b to count a reconnect to its own site" b_reconnected # at its next probe
check "daemon b counted its reconnect to its own site ($rec_b0 -> $rec_b1)" test "${rec_b1:-0}" -gt "${rec_b0:-0}"
lines_a1=$(grep -c "site 'b': this daemon's client was blocklisted" "$LOG_A")
check "  daemon a logged it once ($((lines_a1 - lines_a0)) line)" test $((lines_a1 - lines_a0)) = 1
check "daemon b is ready" test "$(http_code "$IMGSTORE_SERVER_B/readyz")" = 200
expect_rc 0 "daemon b serves calls on its site" env IMGSTORE_SERVER="$IMGSTORE_SERVER_B" "$CLI" image info "rbd/$img"

# ---- daemon a's own site: its clients of site a blocklisted
mapfile -t blocked_a < <(addrs_of "$LOG_A" a)
check "daemon a's clients of site a are known (${#blocked_a[@]})" test "${#blocked_a[@]}" -ge 1
blocklist "$CEPH_CONF_A" "${blocked_a[@]}"
expect_new_seal "$sealed1" "replication from a blocklisted own site resumed"
expect_rc 0 "daemon a serves calls on its site" on_a image info "rbd/$img"
check "  and was not restarted" test "$(pid_a)" = "$pa"
check "daemon a is ready" test "$(http_code "$IMGSTORE_SERVER_A/readyz")" = 200

# ---- /readyz and imgstore_site_up with site a not answering
freeze_site a
code=
wait_for 30 "daemon a's /readyz to answer 503" readyz_a_is 503
check "daemon a is not ready while its site does not answer (/readyz $code)" test "$code" = 503
curl -s --max-time 10 --cacert "$IMGSTORE_CA_FILE" "$IMGSTORE_SERVER_A/readyz" | sed 's/^/# readyz: /'
check "  but alive (/healthz 200)" test "$(http_code "$IMGSTORE_SERVER_A/healthz")" = 200
check "  imgstore_site_up{site=\"a\"} is 0 on daemon a" test "$(metric "$IMGSTORE_SERVER_A" 'imgstore_site_up{site="a"}')" = 0
up=
b_sees_a() { up=$(metric "$IMGSTORE_SERVER_B" 'imgstore_site_up{site="a"}'); [ "$up" = "$1" ]; }
wait_for 30 "daemon b's imgstore_site_up{site=\"a\"} to be 0" b_sees_a 0
check "  and on daemon b, whose peer it is" test "$up" = 0
check "daemon b stays ready: a dead peer is what failover is for" test "$(http_code "$IMGSTORE_SERVER_B/readyz")" = 200
check_or_stop "site a serves I/O again after the thaw" thaw_site a
code=
wait_for 60 "daemon a's /readyz to answer 200" readyz_a_is 200
check "daemon a is ready again after the thaw" test "$code" = 200
check "  imgstore_site_up{site=\"a\"} is 1 again" test "$(metric "$IMGSTORE_SERVER_A" 'imgstore_site_up{site="a"}')" = 1

finish

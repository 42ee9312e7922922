#!/usr/bin/env bash
# Clients of streamed exports waiting for bytes not made yet hold none of imgstored's request
# threads: such a DownloadChunk is called again on a thread of its own (as slow calls are), at
# most half of [server] slow_calls wait at once (imgstore_download_waits_limit; site a restarted
# with slow_calls = 8), the calls past that are answered at once with no bytes and the client
# asks again (tests/integration/download_waiters.py: a reader keeping one export alive, waiters
# asking for its last MiB).
#   - the waiting calls reach the limit and never pass it, the others were answered at once
#     (imgstore_download_nowaits_total);
#   - meanwhile the reader of the export keeps reading, a hypervisor's lease is taken and
#     renewed, and GetImage answers;
#   - the CLI's own streamed export (vmdk: the daemon makes its bytes slower than the CLI asks)
#     is answered at once when no waiting thread is free, backs off, and comes out whole;
#   - with [server] stream_exports = 2 streaming, a third export goes through the spool and
#     comes out whole.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
SRC=${IMS_SOURCE_DIR:?}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
workdir tmp
p=dlwait$$
WAITERS_PID=""
cleanup() {
  touch "$tmp/stop"
  [ -n "$WAITERS_PID" ] && wait_until 100 0.1 pid_gone "$WAITERS_PID"
  [ -n "$WAITERS_PID" ] && kill -KILL "$WAITERS_PID" 2>/dev/null
  on_a host lease release "${lease:-none}" >/dev/null 2>&1
  forget_images "$p-big" "$p-vm"
  config_restore a
  rm -rf "$tmp"
}
trap cleanup EXIT
config_keep a
sed -i "/^\[server\]/a slow_calls = 8\nstream_exports = 2" "$(site_conf a)"
daemon_stop a
check "site a's imgstored restarts with slow_calls = 8, stream_exports = 2" daemon_start a
A=$(server_of a)
m() { metric "$A" "$1"; }

# 128 MiB, data only in its first 24 MiB: the export is held far before the last MiB
random_file "$tmp/big.raw" 128M 24
rbd_on a import --no-progress "$tmp/big.raw" "rbd/$p-big" >/dev/null 2>&1
random_file "$tmp/vm.raw" 24M 24
rbd_on a import --no-progress "$tmp/vm.raw" "rbd/$p-vm" >/dev/null 2>&1
host=dlhost$$
on_a host register "$host" --address 127.0.0.2 >/dev/null 2>&1

limit=$(m imgstore_download_waits_limit)
check "the limit of waiting downloads is half of [server] slow_calls (${limit:-none} of 8)" \
  test "${limit:-x}" = 4
before=$(m imgstore_download_nowaits_total)
check "  and the count of downloads answered at once is there (${before:-none})" test -n "$before"
n=$((limit + 3))

# the reader keeps the export alive; n waiters ask for its last MiB (at most 40 s in all)
WAIT_AT=$((127 << 20)) python3 "$SRC/tests/integration/download_waiters.py" "$IMGSTORE_SOCKET_A" \
  "$IMGSTORE_TOKEN_FILE" "rbd/$p-big" "$n" "$tmp/stop" 40 >"$tmp/waiters.out" 2>&1 &
WAITERS_PID=$!
reading() { grep -q '^READING' "$tmp/waiters.out"; }
check "a streamed export with a reader keeping it alive" wait_until 100 0.2 reading
most=0
at_limit() {
  local w; w=$(m imgstore_download_waits)
  [ "${w:-0}" -gt "$most" ] && most=$w
  [ "${w:-0}" = "$limit" ]
}
check "$n clients waiting for bytes not made: $limit of them wait" wait_until 100 0.1 at_limit
read_now() { sed -n 's/^READ //p' "$tmp/waiters.out" | tail -1; }
r0=$(read_now)
read_on() { at_limit; [ "$(read_now)" -ge $((${r0:-0} + (4 << 20))) ]; }
check "  meanwhile the export's reader reads on (4 MiB past ${r0:-?})" wait_until 100 0.1 read_on
lease=$(on_a --format json host lease acquire "rbd/$p-big" --host "$host" --ttl 1m 2>/dev/null | jq -r '.id // ""')
check "  meanwhile a host takes a lease ($lease)" test -n "$lease"
expect_rc 0 "  and renews it" on_a host lease renew "$lease" --ttl 2m
expect_rc 0 "  and GetImage answers" on_a image info "rbd/$p-big"
# the CLI's own streamed export while the waiting threads are taken: answered at once, it
# backs off and asks again
mid=$(m imgstore_download_nowaits_total)
expect_rc 0 "  a vmdk export through the CLI (streamed) meanwhile" \
  on_a image export "rbd/$p-vm" "$tmp/vm.vmdk" --format vmdk
check "    the same disk as the image (qemu-img compare)" \
  qemu-img compare -q -f raw -F vmdk "$tmp/vm.raw" "$tmp/vm.vmdk"
# a second streamed export, left by its client after 1 MiB: two stream now, a third is spooled
out=$(python3 "$SRC/tests/integration/download_client.py" "$IMGSTORE_SOCKET_A" \
  "$IMGSTORE_TOKEN_FILE" "rbd/$p-vm" raw "$tmp/left.raw" $((1 << 20)))
check "  a second streamed export, its client gone after 1 MiB" grep -q '^STOPPED' <<<"$out"
spooled() { grep -c "exports are streaming (\[server\] stream_exports): the export of 'rbd/$p-vm' goes through the spool" "$(site_log a)"; }
n0=$(spooled)
expect_rc 0 "  a third export, past stream_exports = 2" on_a image export "rbd/$p-vm" "$tmp/third.raw"
check "    went through the spool (the daemon says so)" test "$(spooled)" -gt "$n0"
check "    byte-identical to the image" cmp -s "$tmp/vm.raw" "$tmp/third.raw"
for _ in 1 2 3 4 5 6 7 8 9 10; do at_limit; sleep 0.1; done
check "the waiting downloads never passed the limit (at most $most)" test "$most" -le "$limit"
after=$(m imgstore_download_nowaits_total)
check "the calls past the limit were answered at once (${before:-?} -> ${mid:-?} -> ${after:-?})" \
  test "${after:-0}" -gt "${before:-0}"
touch "$tmp/stop"
check "the clients stop" wait_until 150 0.1 pid_gone "$WAITERS_PID"
wait "$WAITERS_PID"
rc=$?
grep -v '^READ ' "$tmp/waiters.out"
check "  no call of theirs failed" test "$rc" = 0
answered=$(awk '$1 == "WAITER" { a += $4 } END { print a + 0 }' "$tmp/waiters.out")
check "  the waiters were all answered ($answered answers, every one with no bytes)" \
  awk '$1 == "WAITER" { if ($4 < 1 || $6 != $4) bad = 1; n++ } END { exit bad || n != '"$n"' }' "$tmp/waiters.out"
gone() { [ "$(m imgstore_download_waits)" = 0 ]; }
check "no download waits once they stopped" wait_until 100 0.1 gone

finish

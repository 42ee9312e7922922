#!/usr/bin/env bash
# The streamed export: `image export` over TLS downloads while the export runs, the daemon
# writing into a ring in memory rather than its spool (site a's imgstored with [server]
# upload_stall_timeout = 3s).
#   - raw, vmdk and qcow2 exports streamed over TLS, byte-identical (raw: cmp; vmdk, qcow2:
#     qemu-img check and compare against the raw disk), nothing put in the spool (qcow2: its
#     tables planned from the allocation map, before the data); vmdk's grains deflated several
#     at once on threads;
#   - a client older than this (no 'stream' in its request) still gets the spooled export;
#   - a client that asks at once for the first bytes (tests/integration/download_client.py)
#     waits for them and gets them; one that pauses 2 s half-way (the export waits for it:
#     back-pressure) gets the image whole;
#   - the CLI fetches a streamed export on several connections at once (the daemon counts
#     the ranges it sent: in_any_order); a client answered out of order, 7 MiB past a gap
#     (DL_OUT_OF_ORDER=1), with and without a pause, gets the image whole, no answer passing
#     the window it asked;
#   - a 64 MiB qcow2 streamed, the same disk; Ctrl-C during a parallel streamed download
#     (its threads running): nothing published, no .partial left;
#   - the daemon's peak RSS over these exports stays under 128 MiB;
#   - a client that gives up half-way: the export fails after the stall time saying so, and
#     nothing is left in the spool.
# The original configuration and daemon come back whatever happens.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
SRC=${IMS_SOURCE_DIR:?}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
workdir tmp
p=xstream$$
SPOOL=$IMGSTORE_SANDBOX/site-a/spool
restore() {
  forget_images "$p-src" "$p-big" "$p-tail"
  config_restore a
  rm -rf "$tmp"
}
trap restore EXIT

config_keep a
sed -i "/^\[server\]/a upload_stall_timeout = 3s" "$(site_conf a)"
daemon_stop a
check "site a's imgstored restarts with a 3 s stall timeout" daemon_start a

# data, zeros, data at the end: 40 MiB of disk
random_file "$tmp/disk.raw" 40M 6 4@20 2@38
rbd_on a import --no-progress "$tmp/disk.raw" "rbd/$p-src" >/dev/null 2>&1
has_image() { rbd_on a info "rbd/$1" >/dev/null 2>&1; }
check "a 40 MiB image to export" has_image "$p-src"
ls "$SPOOL" | sort >"$tmp/spool.before"
spool_same() { ls "$SPOOL" | sort | cmp -s "$tmp/spool.before" -; }

for fmt in raw vmdk qcow2; do
  expect_rc 0 "a $fmt export streamed to the client (TLS)" \
    on_a image export "rbd/$p-src" "$tmp/got.$fmt" --format "$fmt"
  if [ "$fmt" = raw ]; then
    check "  byte-identical to the image" cmp -s "$tmp/disk.raw" "$tmp/got.raw"
    # 12 MiB of data: the zeros came as counts (skip_zeros) and are holes
    check "  sparse: $(du -k "$tmp/got.raw" | cut -f1) KiB on disk" test "$(du -k "$tmp/got.raw" | cut -f1)" -lt 20000
  else
    check "  a valid $fmt" qemu-img check -q -f "$fmt" "$tmp/got.$fmt"
    check "  the same disk as the image (qemu-img compare)" \
      qemu-img compare -q -f raw -F "$fmt" "$tmp/disk.raw" "$tmp/got.$fmt"
  fi
  check "  nothing went through the spool" spool_same
  rm -f "$tmp/got.$fmt"
done
# zeros to the end: the last answers are counts of zeros, the export ends with them
random_file "$tmp/tail.raw" 40M 3
rbd_on a import --no-progress "$tmp/tail.raw" "rbd/$p-tail" >/dev/null 2>&1
expect_rc 0 "a raw export ending in 37 MiB of zeros, streamed (TLS)" \
  on_a image export "rbd/$p-tail" "$tmp/got.raw"
check "  byte-identical to the image" cmp -s "$tmp/tail.raw" "$tmp/got.raw"
rm -f "$tmp/got.raw"
# a client older than the streamed export asks without 'stream': spooled, as before
out=$(DL_NO_STREAM=1 python3 "$SRC/tests/integration/download_client.py" "$IMGSTORE_SOCKET_A" \
  "$IMGSTORE_TOKEN_FILE" "rbd/$p-src" raw "$tmp/old.raw" $((1 << 40)))
check "an older client (no 'stream') gets the export through the spool" grep -q "^EOF $((40 << 20))$" <<<"$out"
check "  byte-identical to the image" cmp -s "$tmp/disk.raw" "$tmp/old.raw"
rm -f "$tmp/old.raw"
ls "$SPOOL" | sort >"$tmp/spool.before"

# 64 MiB of data: more than the daemon keeps of the stream in memory (16 MiB and 4 MiB behind)
random_file "$tmp/big.raw" 64M 64
rbd_on a import --no-progress "$tmp/big.raw" "rbd/$p-big" >/dev/null 2>&1
dl() { python3 "$SRC/tests/integration/download_client.py" "$IMGSTORE_SOCKET_A" \
  "$IMGSTORE_TOKEN_FILE" "rbd/$p-big" raw "$tmp/dl.raw" "$@"; }
out=$(dl $((1 << 40)) $((24 << 20)):2)
check "a client pausing 2 s at 24 MiB reads the 64 MiB image to its end" grep -q "^EOF $((64 << 20))$" <<<"$out"
check "  byte-identical to the image" cmp -s "$tmp/big.raw" "$tmp/dl.raw"
read -r _ first_ms first_bytes < <(grep '^FIRST ' <<<"$out")
check "  its first chunk, asked at once, came with data (${first_bytes:-?} bytes after ${first_ms:-?} ms)" \
  test "${first_bytes:-0}" -gt 0
op=$(sed -n 's/^OP //p' <<<"$out")
state() { "$CLI" --format json op get "$op" | jq -r .state; }
is_state() { [ "$(state)" = "$1" ]; }
check "  the export succeeded" wait_until 20 0.5 is_state succeeded
check "  its result says it was streamed" bash -c "'$CLI' --format json op get '$op' | jq -r .result | grep -q '^streamed to the client: a disk of 64 MiB as raw$'"
rm -f "$tmp/dl.raw"
# chunks answered out of order: windows 1 to 7 of each 8 MiB before window 0
out=$(DL_OUT_OF_ORDER=1 dl $((1 << 40)) $((24 << 20)):2)
check "a client fetching out of order, pausing 2 s, reads the 64 MiB image to its end" grep -q "^EOF $((64 << 20))$" <<<"$out"
check "  the daemon says it takes chunks in any order" grep -q "^ANYORDER 1$" <<<"$out"
check "  byte-identical to the image" cmp -s "$tmp/big.raw" "$tmp/dl.raw"
rm -f "$tmp/dl.raw"
out=$(DL_OUT_OF_ORDER=1 python3 "$SRC/tests/integration/download_client.py" "$IMGSTORE_SOCKET_A" \
  "$IMGSTORE_TOKEN_FILE" "rbd/$p-src" raw "$tmp/dl.raw" $((1 << 40)))
check "a client fetching out of order reads the 40 MiB image with its zeros as counts" grep -q "^EOF $((40 << 20))$" <<<"$out"
check "  byte-identical to the image" cmp -s "$tmp/disk.raw" "$tmp/dl.raw"
rm -f "$tmp/dl.raw"
# 64 MiB of data as qcow2: 1024 clusters planned from the allocation map, streamed
expect_rc 0 "a 64 MiB qcow2 export streamed (TLS)" \
  on_a image export "rbd/$p-big" "$tmp/big.qcow2" --format qcow2
check "  a valid qcow2" qemu-img check -q -f qcow2 "$tmp/big.qcow2"
check "  the same disk as the image (qemu-img compare)" \
  qemu-img compare -q -f raw -F qcow2 "$tmp/big.raw" "$tmp/big.qcow2"
check "  nothing went through the spool" spool_same
rm -f "$tmp/big.qcow2"
# Ctrl-C while a streamed export downloads: nothing published, the .partial goes (the CLI
# cancels the export)
IMGSTORE_SERVER=$IMGSTORE_SERVER_A "$CLI" image export "rbd/$p-big" "$tmp/int.qcow2" \
  --format qcow2 >"$tmp/int.out" 2>&1 &
pid=$!
# the CLI's threads: one per connection fetching chunks, four besides the main one
threads() { ls "/proc/$pid/task" 2>/dev/null | wc -l; }
parallel_started() { [ "$(threads)" -ge 5 ]; }
check "the CLI downloads on several connections at once" wait_until 1000 0.01 parallel_started
kill -INT "$pid" 2>/dev/null
wait "$pid"
rc=$?
check "an interrupted streamed download exits with status 1 (rc $rc)" test "$rc" -eq 1
check "  saying it was cancelled" grep -q "cancelled" "$tmp/int.out"
check "  nothing published" test ! -e "$tmp/int.qcow2"
check "  no .partial file left" test ! -e "$tmp/int.qcow2.partial"
hwm=$(awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$(daemon_pid a)/status")
check "the daemon's peak RSS over the exports is under 128 MiB ($hwm MiB)" test "$hwm" -lt 128

# the client reads 8 MiB and goes away: the export fills the ring, then fails
out=$(dl $((8 << 20)))
check "a client stops reading a streamed export at 8 MiB" grep -q "^STOPPED $((8 << 20))$" <<<"$out"
op=$(sed -n 's/^OP //p' <<<"$out")
check "  the export fails once the client read nothing for 3 s" wait_until 40 0.5 is_state failed
check "  saying so" bash -c "'$CLI' --format json op get '$op' | jq -r .error | grep -q 'the client read none of the export for 3 s'"
check "  nothing is left in the spool" spool_same
check "  the operation says how far it got" bash -c "'$CLI' --format json op get '$op' | jq -e '(.bytes_done | tonumber) < (64 * 1048576)' >/dev/null"
expect_rc 0 "the image is still there, untouched" "$CLI" image info "rbd/$p-big"

finish

#!/usr/bin/env bash
# The streamed import: `image import` over TLS starts the import at once and the daemon reads
# the upload as it arrives (site a's imgstored with [server] upload_stall_timeout = 3s).
#   - a qcow2 and a vmdk import byte-identical to `qemu-img convert -O raw`;
#   - a 64 MiB vmdk, more than the daemon keeps of an upload in memory: its second grain table
#     lies far behind the reader when it is needed and is read from the spool file;
#   - chunks out of order (tests/integration/upload_client.py swapped), and one past the
#     upload's window refused;
#   - the daemon's peak RSS over these imports stays under 128 MiB;
#   - a client that gives up half-way (tests/integration/upload_client.py): the import fails
#     after the stall time saying so, no image under the name, no temporary, no spool file;
#   - a corrupt qcow2 header: the import fails at once, the CLI says why, the rest of the
#     upload is refused; nothing is left behind;
#   - a vmdk whose second grain table points a grain past the end of the file: the import
#     fails half-way through the upload, read from the spool file behind the ring, saying so;
#     nothing is left behind.
# The original configuration and daemon come back whatever happens.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
SRC=${IMS_SOURCE_DIR:?}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
workdir tmp
p=stream$$
SPOOL=$IMGSTORE_SANDBOX/site-a/spool
restore() {
  forget_images "$p-qcow2" "$p-vmdk" "$p-killed" "$p-bad" "$p-big" "$p-swapped" "$p-badgt"
  config_restore a
  rm -rf "$tmp"
}
trap restore EXIT

config_keep a
sed -i "/^\[server\]/a upload_stall_timeout = 3s" "$(site_conf a)"
daemon_stop a
check "site a's imgstored restarts with a 3 s upload stall timeout" daemon_start a

# data, zeros, data at the end: 40 MiB of disk
random_file "$tmp/disk.raw" 40M 6 4@20 2@38
qemu-img convert -O qcow2 "$tmp/disk.raw" "$tmp/disk.qcow2"
qemu-img convert -O vmdk "$tmp/disk.raw" "$tmp/disk.vmdk"
# (the imports of tests running beside this one are theirs: tmp_images_for counts this one's)
no_tmp() { [ -z "$(tmp_images_for a "$p-*")" ]; }
# other tests leave exports in the spool: no upload of this test's may stay there
ls "$SPOOL" | sort >"$tmp/spool.before"
spool_empty() { ! ls "$SPOOL" | sort | comm -13 "$tmp/spool.before" - | grep -q '^up-'; }

for fmt in qcow2 vmdk; do
  expect_rc 0 "a $fmt imported while it uploads (TLS)" on_a image import "$tmp/disk.$fmt" "rbd/$p-$fmt"
  qemu-img convert -O raw "$tmp/disk.$fmt" "$tmp/want.raw"
  rbd_on a export --no-progress "rbd/$p-$fmt" "$tmp/got.raw" >/dev/null 2>&1
  check "  byte-identical to qemu-img convert -O raw" cmp -s "$tmp/want.raw" "$tmp/got.raw"
  rm -f "$tmp/want.raw" "$tmp/got.raw"
  check "  the daemon ran the import (audit: ImportImage ok)" \
    grep -q "ImportImage target=rbd/$p-$fmt result=ok" "$IMGSTORE_SANDBOX/site-a/log/audit.log"
done
# 64 MiB of data: the file is larger than the upload's ring in the daemon (16 MiB window, one
# chunk, 4 MiB behind the reader)
random_file "$tmp/big.raw" 64M 64
qemu-img convert -O vmdk "$tmp/big.raw" "$tmp/big.vmdk"
expect_rc 0 "a 64 MiB vmdk imported while it uploads (TLS), its tables read again behind the ring" \
  on_a image import "$tmp/big.vmdk" "rbd/$p-big"
rbd_on a export --no-progress "rbd/$p-big" "$tmp/got.raw" >/dev/null 2>&1
check "  byte-identical to the raw disk" cmp -s "$tmp/big.raw" "$tmp/got.raw"
rm -f "$tmp/got.raw"

# chunks in swapped pairs, as several connections deliver them (the 64 MiB vmdk: larger than
# the window)
out=$(python3 "$SRC/tests/integration/upload_client.py" "$IMGSTORE_SOCKET_A" "$IMGSTORE_TOKEN_FILE" \
  "$tmp/big.vmdk" "rbd/$p-swapped" $((1 << 40)) swapped)
check "a chunk past the upload's window is refused" grep -q '^WINDOW_REFUSED$' <<<"$out"
op=$(tail -1 <<<"$out")
op=${op#* }
succeeded() { [ "$("$CLI" --format json op get "$op" | jq -r .state)" = succeeded ]; }
check "chunks out of order: the import succeeds" wait_until 60 0.5 succeeded
rbd_on a export --no-progress "rbd/$p-swapped" "$tmp/got.raw" >/dev/null 2>&1
check "  byte-identical to the raw disk" cmp -s "$tmp/big.raw" "$tmp/got.raw"
rm -f "$tmp/got.raw"
check "no upload left in the spool after the imports" spool_empty
hwm=$(awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$(daemon_pid a)/status")
check "the daemon's peak RSS over the imports is under 128 MiB ($hwm MiB)" test "$hwm" -lt 128

# the client gives up after 8 MiB of the 40 MiB qcow2's bytes
out=$(python3 "$SRC/tests/integration/upload_client.py" "$IMGSTORE_SOCKET_A" "$IMGSTORE_TOKEN_FILE" \
  "$tmp/disk.qcow2" "rbd/$p-killed" $((8 << 20)))
check "a client starts a streamed import and stops half-way" test -n "$out"
op=${out#* }
failed() { [ "$("$CLI" --format json op get "$op" | jq -r .state)" = failed ]; }
check "  the import fails once no bytes arrived for 3 s" wait_until 40 0.5 failed
check "  saying the upload stalled" bash -c "'$CLI' --format json op get '$op' | jq -r .error | grep -q 'the upload stalled for 3 s'"
expect_rc 1 "  no image under the name" "$CLI" image info "rbd/$p-killed"
check "  no temporary image left" no_tmp
check "  the spool file is removed" spool_empty

# a corrupt header: cluster_bits 63
cp "$tmp/disk.qcow2" "$tmp/bad.qcow2"
printf '\x3f' | dd of="$tmp/bad.qcow2" bs=1 seek=23 conv=notrunc status=none
t0=$(date +%s)
expect_rc 1 "a qcow2 with a corrupt header is refused" on_a image import "$tmp/bad.qcow2" "rbd/$p-bad"
t1=$(date +%s)
check "  at once, not after the stall time" test $((t1 - t0)) -lt 3
check "  the CLI says what is wrong" grep -q "cluster_bits 63" "$T_ERR"
expect_rc 1 "  no image under the name" "$CLI" image info "rbd/$p-bad"
check "  no temporary image left" no_tmp
check "  the spool file is removed" spool_empty
# the rest of the upload of a failed import is refused (not_found): the client stops
out=$(python3 "$SRC/tests/integration/upload_client.py" "$IMGSTORE_SOCKET_A" "$IMGSTORE_TOKEN_FILE" \
  "$tmp/bad.qcow2" "rbd/$p-bad" $((40 << 20)) 2>&1)
check "  a client that keeps sending gets 'no upload' (HTTP 404)" bash -c "grep -q 'UploadChunk: HTTP 404' <<<'$out'"
nothing_left() { no_tmp && ! rbd_on a ls rbd | grep -q "^$p-bad\$"; }
check "  and nothing is left behind" nothing_left
check "  nor in the spool" spool_empty

# a grain far past the end of the file, in the second grain table (guest offsets 32 MiB on):
# the reader meets it half-way, when the table lies behind the ring
python3 - "$tmp/big.vmdk" "$tmp/badgt.vmdk" <<'PY'
import shutil, struct, sys
shutil.copy(sys.argv[1], sys.argv[2])
with open(sys.argv[2], "r+b") as f:
    gd = struct.unpack("<Q", f.read(64)[56:64])[0]
    f.seek(gd * 512 + 4)
    gt1 = struct.unpack("<I", f.read(4))[0]
    f.seek(gt1 * 512)
    f.write(struct.pack("<I", 0x7FFFFFF0))
PY
expect_rc 1 "a vmdk with a grain past the end of the file, met half-way, is refused" \
  on_a image import "$tmp/badgt.vmdk" "rbd/$p-badgt"
check "  the CLI says what is wrong" grep -q "lies past the end of the file" "$T_ERR"
expect_rc 1 "  no image under the name" "$CLI" image info "rbd/$p-badgt"
check "  no temporary image left" no_tmp
check "  nor anything in the spool" spool_empty

finish

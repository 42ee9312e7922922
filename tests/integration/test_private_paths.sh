#!/usr/bin/env bash
# Import and export over the Unix socket when imgstored sees another filesystem than the CLI,
# as under its systemd unit (PrivateTmp, ProtectHome): the daemon runs in a mount namespace of
# its own where its import_dirs and export_dirs are other (tmpfs) directories under the same
# names, and its import dir holds a decoy file under the name the CLI imports.
#   - import: the daemon does not import its decoy; the CLI uploads its own file, and the
#     image holds the CLI's bytes (sha256 of `rbd export`);
#   - export: the file lands where the CLI looks (downloaded), not in the daemon's private
#     directory, with the image's bytes;
#   - a daemon that sees the same files (no private view) still imports and exports by path.
set -uo pipefail
IMGSTORED=${IMS_BINARY_DIR:?}/daemon/imgstored
CLI=${IMS_BINARY_DIR}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"

W=$(mktemp -d /tmp/imgstore-private.XXXXXX)
daemon="" img=priv$$
cleanup() {
  [ -n "$daemon" ] && kill -KILL "$daemon" 2>/dev/null
  for i in 1 2 3; do rbd -c "$CEPH_CONF_A" rm "rbd/$img-$i" >/dev/null 2>&1; done
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/import" "$W/export"

second_conf a "$W" private-2 "s|^import_dirs = .*|import_dirs = $W/import|" \
  "s|^export_dirs = .*|export_dirs = $W/export|" >"$W/d.conf"

# PRIVATE(0|1): start the daemon, in a mount namespace with private import and export dirs
start() {
  if [ "$1" = 1 ]; then
    setsid unshare --mount --propagation private bash -c "
      mount -t tmpfs tmpfs '$W/import' && mount -t tmpfs tmpfs '$W/export' &&
      head -c 4M /dev/zero | tr '\\0' 'D' >'$W/import/disk.raw' &&
      exec '$IMGSTORED' --config '$W/d.conf'" </dev/null >>"$W/d.log" 2>&1 &
  else
    setsid "$IMGSTORED" --config "$W/d.conf" </dev/null >>"$W/d.log" 2>&1 &
  fi
  daemon=$!
  local up=0
  for _ in $(seq 1 120); do curl -sf --max-time 2 --unix-socket "$W/private-2.sock" http://localhost/readyz >/dev/null && { up=1; break; }; sleep 0.5; done
  [ $up = 1 ]
}
stop() { kill -TERM "$daemon"; wait "$daemon"; local rc=$?; daemon=""; return $rc; }
sum_image() { rbd -c "$CEPH_CONF_A" export "$1" - 2>/dev/null | sha256sum | cut -d' ' -f1; }
sum_file() { sha256sum "$1" | cut -d' ' -f1; }
cli() { "$CLI" --server "$W/private-2.sock" "$@"; }

check "the daemon in a mount namespace of its own serves" start 1
check "  and does not share the CLI's import dir (it has no decoy here)" test ! -e "$W/import/disk.raw"

# ---- import: the CLI's own bytes, not the daemon's decoy
head -c 6M /dev/urandom >"$W/import/disk.raw"
cli image import "$W/import/disk.raw" "rbd/$img-1" >"$W/out" 2>"$W/err"; rc=$?
check "import by a path the daemon sees differently succeeds (exit $rc: $(head -c 200 "$W/err"))" test $rc = 0
check "  the image holds the CLI's file, not the daemon's decoy" test "$(sum_image "rbd/$img-1")" = "$(sum_file "$W/import/disk.raw")"
check "  the daemon refused the path, then took the upload (audit)" bash -c \
  "grep -A2 'ImportImage target=rbd/$img-1 .*result=permission_denied.*the client uploads the file instead' '$W/audit-private-2.log' | grep -q 'BeginUpload.*result=ok' && grep 'ImportImage target=rbd/$img-1 ' '$W/audit-private-2.log' | grep -q 'result=ok'"

# ---- export: the file lands where the CLI looks
cli image export "rbd/$img-1" "$W/export/out.raw" >"$W/out" 2>"$W/err"; rc=$?
check "export to a path the daemon sees differently succeeds (exit $rc: $(head -c 200 "$W/err"))" test $rc = 0
check "  the file is where the CLI looks, with the image's bytes" test "$(sum_file "$W/export/out.raw" 2>/dev/null)" = "$(sum_file "$W/import/disk.raw")"
check "  (downloaded: the daemon refused to write into its own directory of that name)" bash -c \
  "grep 'ExportImage target=rbd/$img-1' '$W/audit-private-2.log' | grep -q 'result=permission_denied.*the client downloads the export instead'"
check "the daemon stopped (exit 0)" stop

# ---- the same daemon, same files: by path, as before
check "the daemon sharing the CLI's filesystem serves" start 0
cli image import "$W/import/disk.raw" "rbd/$img-2" >"$W/out" 2>"$W/err"; rc=$?
check "import by path (exit $rc)" test $rc = 0
check "  by path: no upload, no refusal" bash -c \
  "grep 'ImportImage target=rbd/$img-2 ' '$W/audit-private-2.log' | grep -qv 'result=permission_denied' && ! grep 'ImportImage target=rbd/$img-2 ' '$W/audit-private-2.log' | grep -q 'permission_denied' && ! grep -q 'BeginUpload.*$img-2' '$W/audit-private-2.log'"
check "  same bytes" test "$(sum_image "rbd/$img-2")" = "$(sum_file "$W/import/disk.raw")"
cli image export "rbd/$img-2" "$W/export/out2.raw" >"$W/out" 2>"$W/err"; rc=$?
check "export by path (exit $rc)" test $rc = 0
check "  written by the daemon (no refusal), same bytes" bash -c \
  "! grep 'ExportImage target=rbd/$img-2' '$W/audit-private-2.log' | grep -q permission_denied && test \"\$(sha256sum <'$W/export/out2.raw')\" = \"\$(sha256sum <'$W/import/disk.raw')\""
check "the daemon stopped (exit 0)" stop

if [ $fails -ne 0 ]; then sed 's/^/# /' "$W/d.log" | tail -30; sed 's/^/# audit: /' "$W/audit-private-2.log" | tail -20; fi
finish

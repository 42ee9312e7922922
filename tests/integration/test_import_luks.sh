#!/usr/bin/env bash
# Import of a LUKS-encrypted qcow2 (qemu-img's encrypt.format=luks) with `image import
# --passphrase-file` (docs/SECURITY.md "Encrypted qcow2 imports"):
#   - over the Unix socket (the daemon reads the file by path, or the CLI sends its bytes) and
#     over TLS (the upload streamed while the daemon imports it), plain and with
#     --encryption luks2: the image reads back byte-identical to `qemu-img convert --object
#     secret,... -O raw`;
#   - refused with a one-line error, nothing created: no passphrase, a wrong one, one for an
#     image that is not encrypted, an unsupported cipher, a key slot over the PBKDF2
#     iteration ceiling, a corrupt LUKS header, a passphrase file that cannot be read;
#   - the passphrase is in no log, audit line or operation record of the daemon.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
workdir W
p=luks$$
SECRET="imgstore-luks-passphrase-$$"
cleanup() {
  forget_images "$p-unix" "$p-up" "$p-tls" "$p-enc" "$p-bad"
  rm -rf "$W" "$IMGSTORE_IMPORT_DIR/$p".* "$IMGSTORE_EXPORT_DIR/$p".*
}
trap cleanup EXIT
on_unix() { IMGSTORE_SERVER=unix:$IMGSTORE_SOCKET_A "$CLI" "$@"; }

printf '%s' "$SECRET" >"$W/pass"
printf 'not it' >"$W/wrong"
# 12 MiB of disk: data, zeros, data
random_file "$W/disk.raw" 12M 2 1@7
# qemu-img counts PBKDF2 iterations by the CPU time it measures, and fails on about half the
# tries ("Unable to get accurate CPU usage"): tests/lib/qemu-luks tries again
made=0
"$(dirname "$0")/../lib/qemu-luks" qemu-img convert -f raw -O qcow2 \
  --object "secret,id=s0,file=$W/pass" \
  -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 \
  "$W/disk.raw" "$W/enc.qcow2" || made=1
check "qemu-img made a LUKS-encrypted qcow2" test "$made" = 0
qemu-img convert --object "secret,id=s0,file=$W/pass" --image-opts \
  "driver=qcow2,file.filename=$W/enc.qcow2,encrypt.key-secret=s0" -O raw "$W/want.raw"
check "  qemu-img decrypts it to the disk" cmp -s "$W/disk.raw" "$W/want.raw"
qemu-img convert -f raw -O qcow2 "$W/disk.raw" "$W/plain.qcow2"

got_back() { # IMAGE: its bytes equal qemu-img's decryption
  rm -f "$IMGSTORE_EXPORT_DIR/$p.out"
  on_a image export "rbd/$1" "$IMGSTORE_EXPORT_DIR/$p.out" >/dev/null 2>&1 &&
    cmp -s "$W/want.raw" "$IMGSTORE_EXPORT_DIR/$p.out"
}
encryption_of() { on_a --format json image info "rbd/$1" 2>/dev/null | jq -r '.encryption // ""'; }

# ---- the Unix socket: the daemon reads the file where it lies
cp "$W/enc.qcow2" "$IMGSTORE_IMPORT_DIR/$p.qcow2"
expect_rc 0 "import over the Unix socket, by path, with --passphrase-file" \
  on_unix image import "$IMGSTORE_IMPORT_DIR/$p.qcow2" "rbd/$p-unix" --passphrase-file "$W/pass"
check "  byte-identical to qemu-img convert with the secret" got_back "$p-unix"
check "  stored unencrypted (no --encryption)" test "$(encryption_of "$p-unix")" = ""
expect_rc 0 "import over the Unix socket, the bytes sent (--upload), with --passphrase-file" \
  on_unix image import "$W/enc.qcow2" "rbd/$p-up" --upload --passphrase-file "$W/pass"
check "  byte-identical to qemu-img convert with the secret" got_back "$p-up"

# ---- TLS: the bytes uploaded, imported while they arrive
expect_rc 0 "import over TLS (streamed upload) with --passphrase-file" \
  on_a image import "$W/enc.qcow2" "rbd/$p-tls" --passphrase-file "$W/pass"
check "  byte-identical to qemu-img convert with the secret" got_back "$p-tls"
expect_rc 0 "import over TLS with --passphrase-file --encryption luks2" \
  on_a image import "$W/enc.qcow2" "rbd/$p-enc" --passphrase-file "$W/pass" --encryption luks2
check "  encrypted at rest with imgstore's keys (luks2)" test "$(encryption_of "$p-enc")" = luks2
check "  and reads back byte-identical" got_back "$p-enc"

# ---- refused, nothing created
# WHAT FILE MESSAGE [ARGS...]: the import fails with MESSAGE, one error line (the others on
# standard error are progress); no image, no temporary
# tests running beside this one import too: a temporary image of theirs may exist for a moment,
# one this import left never goes away (and none may be left from before it)
tmp_images() { rbd -c "$CEPH_CONF_A" ls rbd | grep '^\.imgstore-tmp-' | sort; }
no_new_tmp() { [ -z "$(comm -13 "$W/tmp.before" <(tmp_images))" ]; }
refused() {
  local what=$1 file=$2 msg=$3 n
  shift 3
  tmp_images >"$W/tmp.before"
  expect_rc 1 "$what: refused" on_a image import "$file" "rbd/$p-bad" "$@"
  n=$(grep -c '^imgstore: ' "$T_ERR")
  check "  says '$msg' on one line (got $n: $(grep '^imgstore: ' "$T_ERR" | head -c 300))" \
    bash -c "[ '$n' = 1 ] && grep '^imgstore: ' '$T_ERR' | grep -qF -- \"\$1\"" _ "$msg"
  check "  nothing created" bash -c "! rbd -c '$CEPH_CONF_A' ls rbd | grep -q '^$p-bad\$'"
  check "  no temporary image left" wait_until 50 0.2 no_new_tmp
}
refused "no passphrase" "$W/enc.qcow2" "is LUKS-encrypted; give --passphrase-file"
refused "a wrong passphrase" "$W/enc.qcow2" "no key slot opens with this passphrase" \
  --passphrase-file "$W/wrong"
refused "a passphrase for a qcow2 that is not encrypted" "$W/plain.qcow2" \
  "a passphrase was given but the image (qcow2) is not encrypted" --passphrase-file "$W/pass"
refused "a passphrase file that cannot be read" "$W/enc.qcow2" \
  "cannot open the passphrase file '$W/nope'" --passphrase-file "$W/nope"

# the LUKS header patched (FIELD-OFFSET HEX-BYTES): python finds it through the qcow2 header
# extension 0x0537be77
patched() {
  python3 - "$W/enc.qcow2" "$W/bad.qcow2" "$1" "$2" <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
off = struct.unpack(">I", b[100:104])[0]
while struct.unpack(">I", b[off:off + 4])[0] != 0x0537be77:
    off += 8 + ((struct.unpack(">I", b[off + 4:off + 8])[0] + 7) & ~7)
luks = struct.unpack(">Q", b[off + 8:off + 16])[0]
at = luks + int(sys.argv[3])
data = bytes.fromhex(sys.argv[4])
b[at:at + len(data)] = data
open(sys.argv[2], "wb").write(b)
PY
}
patched 8 "74776f6669736800"     # the cipher name: "twofish"
refused "an unsupported cipher (twofish)" "$W/bad.qcow2" "LUKS: cipher 'twofish' is not supported" \
  --passphrase-file "$W/pass"
patched 212 "7fffffff"             # key slot 0's iterations
refused "a key slot over the iteration ceiling" "$W/bad.qcow2" \
  "LUKS: key slot 0 asks 2147483647 PBKDF2 iterations (1..10000000 are accepted)" \
  --passphrase-file "$W/pass"
patched 0 "00000000"               # the magic
refused "a corrupt LUKS header" "$W/bad.qcow2" "LUKS: bad magic" --passphrase-file "$W/pass"

# ---- the passphrase is nowhere the daemon writes
B64=$(printf '%s' "$SECRET" | base64 -w0)
check "the passphrase is in no log or audit line of site a (as is or in base64)" \
  bash -c "! grep -rqaF -e '$SECRET' -e '${B64%%=*}' '$IMGSTORE_SANDBOX/site-a/log'"
check "nor in an operation record" \
  bash -c "on_a() { IMGSTORE_SERVER=\$IMGSTORE_SERVER_A '$CLI' \"\$@\"; }; out=\$(on_a --format json op ls 2>&1) && [ -n \"\$out\" ] && ! grep -qF -- '$SECRET' <<<\"\$out\""
finish

#!/usr/bin/env bash
# Encryption at rest (docs/SECURITY.md, store/crypt.h), through the daemons and the CLI:
#   - image import/create --encryption luks2: no plaintext pattern in any RADOS object of the
#     image (each rbd_data object fetched with `rados get`), a LUKS header at its start; export
#     (raw and qcow2) gives the plaintext back; info shows luks2 and the usable size;
#   - a daemon with another KEK, or with none, refuses to open it with a clear one-line error,
#     and one whose kek_file others may read refuses to start;
#   - replication ships ciphertext (no pattern on site b), and after a failover site b reads
#     the image back; attach-info gives libvirt an <encryption> element (virt-xml-validate);
#   - image rm --shred destroys the key here and on the replica: the copy left on site a
#     cannot be read; --shred of a plain image is refused and changes nothing; a peer that does
#     not answer (site c's monitor address nobody runs) refuses it before any key is destroyed
#     (the replica's on site a, the first peer, intact).
set -uo pipefail
IMGSTORED=${IMS_BINARY_DIR:?}/daemon/imgstored
CLI=${IMS_BINARY_DIR}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"

W=$(mktemp -d /tmp/imgstore-crypt.XXXXXX)
T_OUT=$W/.out T_ERR=$W/.err
img=crypt$$ made=crypt$$-new plain=crypt$$-plain
src=$IMGSTORE_IMPORT_DIR/crypt$$.raw
daemon="" restore_b=""
cleanup() {
  [ -n "$daemon" ] && kill -KILL "$daemon" 2>/dev/null
  [ -n "$restore_b" ] && config_restore b
  forget_images "$img" "$made" "$plain"
  rm -rf "$W" "$src" "$IMGSTORE_EXPORT_DIR"/crypt$$.*
}
trap cleanup EXIT
PATTERN=IMGSTORE-PLAINTEXT-PATTERN-$$

# a 12 MiB disk: the pattern over the first MiB and at 5 MiB, zeros between
python3 - "$src" "$PATTERN" <<'PY'
import sys
b = bytearray(12 << 20)
pat = sys.argv[2].encode()
for base in (0, 5 << 20):
    for i in range(0, (1 << 20) - len(pat), len(pat)):
        b[base + i:base + i + len(pat)] = pat
open(sys.argv[1], "wb").write(b)
PY

# SITE IMAGE: every rbd_data object of the image fetched; prints how many hold the pattern
# and how many there are, "HITS OBJECTS"
scan_objects() {
  local conf prefix o hits=0 n=0
  conf=$(conf_of "$1")
  prefix=$(rbd -c "$conf" info "rbd/$2" | awk '/block_name_prefix/ {print $2}')
  [ -n "$prefix" ] || { echo "none 0"; return; }
  for o in $(rados -c "$conf" -p rbd ls | grep "^$prefix\."); do
    rados -c "$conf" -p rbd get "$o" "$W/obj" || { echo "error 0"; return; }
    grep -q -a -- "$PATTERN" "$W/obj" && hits=$((hits + 1))
    n=$((n + 1))
  done
  echo "$hits $n"
}

# ---- import and create, encrypted
expect_rc 0 "import --encryption luks2 on site a" on_a image import "$src" "rbd/$img" --format raw --encryption luks2
on_a --format json image info "rbd/$img" >"$W/info.json" 2>/dev/null
check "  info: encryption luks2, size 12 MiB (the LUKS header not counted)" \
  quiet jq -e '.encryption == "luks2" and (.size | tonumber) == 12582912' "$W/info.json"
read -r hits n < <(scan_objects a "$img")
check "  no plaintext pattern in any of its $n RADOS objects on site a (found in $hits)" \
  test "$hits" = 0 -a "$n" -ge 5
first=$(rbd_on a info "rbd/$img" | awk '/block_name_prefix/ {print $2}').0000000000000000
rados -c "$(conf_of a)" -p rbd get "$first" "$W/obj0"
check "  its first object starts with a LUKS header" test "$(head -c 4 "$W/obj0")" = LUKS
# the header as a hypervisor's librbd reads it: the 16 MiB before the data, ciphertext aside.
# IMAGE: the LUKS2 metadata of its header, as JSON (cryptsetup luksDump)
luks_of() {
  rbd_on a export --no-progress "rbd/$1" - 2>/dev/null | head -c 16M >"$W/header.$1"
  cryptsetup luksDump --dump-json-metadata "$W/header.$1" 2>/dev/null
}
# (the data key is random: no Argon2id, whose 2 s and 1 GiB every open of the image would pay)
slot_ok='[.keyslots[]] | length == 1 and all(.kdf.type == "pbkdf2" and .kdf.iterations == 1000 and .key_size == 64)'
layout_ok='.segments["0"] | .encryption == "aes-xts-plain64" and .sector_size == 4096 and .offset == "16777216"'
luks_of "$img" >"$W/luks.json"
check "  its one key slot derives the key with PBKDF2, 1000 iterations, not Argon2id" quiet jq -e "$slot_ok" "$W/luks.json"
check "  aes-xts-plain64, a 512-bit key, 4096-byte sectors, the data at 16 MiB (librbd's layout)" \
  quiet jq -e "$layout_ok" "$W/luks.json"
check "  the wrapped key is in its metadata (v1:KEKID:...)" \
  bash -c "rbd -c '$(conf_of a)' image-meta get 'rbd/$img' imgstore.crypt.key | grep -q '^v1:[0-9a-f]\{16\}:[0-9a-f]\{120\}$'"
expect_rc 0 "export (raw) on site a" on_a image export "rbd/$img" "$IMGSTORE_EXPORT_DIR/crypt$$.raw"
check "  gives the plaintext back" cmp -s "$src" "$IMGSTORE_EXPORT_DIR/crypt$$.raw"
expect_rc 0 "a snapshot of it" on_a snap create "rbd/$img@s1"
expect_rc 0 "export of the snapshot" on_a image export "rbd/$img@s1" "$IMGSTORE_EXPORT_DIR/crypt$$.s1.raw"
check "  gives the plaintext back" cmp -s "$src" "$IMGSTORE_EXPORT_DIR/crypt$$.s1.raw"
expect_rc 0 "export (qcow2) on site a" on_a image export "rbd/$img" "$IMGSTORE_EXPORT_DIR/crypt$$.qcow2" --format qcow2
qemu-img convert -O raw "$IMGSTORE_EXPORT_DIR/crypt$$.qcow2" "$W/back.raw" 2>/dev/null
check "  the qcow2 holds the plaintext" cmp -s "$src" "$W/back.raw"
expect_rc 0 "create --encryption luks2" on_a image create "rbd/$made" --size 8M --encryption luks2
on_a --format json image info "rbd/$made" >"$W/made.json" 2>/dev/null
check "  encrypted, 8 MiB usable" quiet jq -e '.encryption == "luks2" and (.size | tonumber) == 8388608' "$W/made.json"
luks_of "$made" >"$W/luks-made.json"
check "  the same header: one PBKDF2 key slot, librbd's layout" \
  quiet jq -e "($slot_ok) and ($layout_ok)" "$W/luks-made.json"
expect_rc 0 "resize of the encrypted image to 12 MiB" on_a image resize "rbd/$made" --size 12M
on_a --format json image info "rbd/$made" >"$W/made.json" 2>/dev/null
check "  12 MiB usable, the LUKS header on top (28 MiB in RBD)" \
  bash -c "jq -e '(.size | tonumber) == 12582912' '$W/made.json' >/dev/null && rbd -c '$(conf_of a)' info 'rbd/$made' | grep -q 'size 28 MiB'"
expect_rc 2 "--encryption luks1 is a usage error" on_a image create "rbd/$plain" --size 8M --encryption luks1
check "  that created nothing" bash -c "! rbd -c '$(conf_of a)' info 'rbd/$plain' >/dev/null 2>&1"
expect_rc 1 "--encryption luks2 with journaling (--features 125) is refused" \
  on_a image create "rbd/$plain" --size 8M --features 125 --encryption luks2
check "  in one line saying why" \
  bash -c "[ \$(grep -c '^imgstore: ' '$T_ERR') = 1 ] && grep -q 'librbd cannot use encryption with journaling' '$T_ERR'"
check "  that created nothing" bash -c "! rbd -c '$(conf_of a)' info 'rbd/$plain' >/dev/null 2>&1"
rbd_on a snap create "rbd/$made@s1" >/dev/null 2>&1
expect_rc 1 "a clone of an encrypted image is refused" on_a image clone "rbd/$made@s1" "rbd/$plain"
check "  saying why" grep -q "is encrypted: clones of encrypted images are not supported" "$T_ERR"

# ---- a second daemon of site a with another KEK, none, or one others may read
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$W/other.kek")
conf() { # KEK_LINE: the config of a daemon of site a on paths of its own
  second_conf a "$W" crypt-2 "s|^export_dirs = .*|export_dirs = $W|" "/^kek_file = /d" \
    "s|^\[server\]|[server]\n$1|" >"$W/d.conf"
}
start() {
  setsid "$IMGSTORED" --config "$W/d.conf" </dev/null >"$W/d.log" 2>&1 &
  daemon=$!
  local _
  for _ in $(seq 1 120); do curl -sf --max-time 2 --unix-socket "$W/crypt-2.sock" http://localhost/readyz >/dev/null && return 0; sleep 0.25; done
  return 1
}
stop() { kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; daemon=""; }
mine() { "$CLI" --server "$W/crypt-2.sock" "$@"; }

conf "kek_file = $W/other.kek"
check "a daemon with another KEK starts" start
expect_rc 1 "  and refuses to export the image" mine image export "rbd/$img" "$W/x.raw"
check "  saying the key is another KEK's" \
  grep -q "cannot open encrypted image 'rbd/$img': the data key is wrapped by KEK [0-9a-f]\{16\}, and this daemon's kek_file holds KEK" "$T_ERR"
check "  and writes no file" test ! -e "$W/x.raw"
stop
conf "# no kek_file"
check "a daemon without a KEK starts" start
expect_rc 1 "  and refuses to export the image" mine image export "rbd/$img" "$W/x.raw"
check "  saying it has no key" grep -q "is encrypted and this daemon has no key (\[server\] kek_file is unset)" "$T_ERR"
expect_rc 1 "  and to create an encrypted one" mine image create "rbd/$plain" --size 8M --encryption luks2
check "  which it did not create" bash -c "! rbd -c '$(conf_of a)' info 'rbd/$plain' >/dev/null 2>&1"
stop
chmod 644 "$W/other.kek"
conf "kek_file = $W/other.kek"
timeout 30 "$IMGSTORED" --config "$W/d.conf" </dev/null >"$W/d.log" 2>&1; rc=$?
check "a kek_file group or others may read: the daemon refuses to start (exit $rc)" test $rc != 0 -a $rc != 124
check "  saying so" grep -q "kek_file '$W/other.kek' may be read by group or others (mode 644); chmod 600 it" "$W/d.log"

# ---- replication ships ciphertext; site b reads it after a failover
expect_rc 0 "replication to site b" on_a repl enable "rbd/$img" --to b --rpo 30s
expect_rc 0 "  first sync" on_a repl sync "rbd/$img"
read -r hits n < <(scan_objects b "$img")
check "  no plaintext pattern in any of the $n RADOS objects on site b (found in $hits)" \
  test "$hits" = 0 -a "$n" -ge 5
expect_rc 0 "failover to site b" on_a repl failover "rbd/$img" --to b
expect_rc 0 "  export on site b" on_b image export "rbd/$img" "$IMGSTORE_EXPORT_DIR/crypt$$.b.raw"
check "  gives the plaintext back" cmp -s "$src" "$IMGSTORE_EXPORT_DIR/crypt$$.b.raw"
IMGSTORE_TOKEN_FILE=$IMGSTORE_HOST_TOKEN_FILE on_b image attach-info "rbd/$img" --format libvirt >"$W/disk.xml" 2>"$W/err"
check "attach-info names the LUKS2 passphrase secret in libvirt's <encryption>" \
  grep -q "<encryption format='luks2' engine='librbd'>" "$W/disk.xml"
check "  and tells the host which secret it needs" grep -q "is encrypted (luks2): the host needs the private libvirt secret" "$W/err"
{
  echo "<domain type='kvm'><name>crypt</name><memory>1048576</memory><os><type>hvm</type></os><devices>"
  cat "$W/disk.xml"
  echo "</devices></domain>"
} >"$W/domain.xml"
check "  valid for libvirt (virt-xml-validate)" quiet virt-xml-validate "$W/domain.xml" domain
IMGSTORE_TOKEN_FILE=$IMGSTORE_HOST_TOKEN_FILE on_b --format json image attach-info "rbd/$img" >"$W/ai.json" 2>/dev/null
IMGSTORE_TOKEN_FILE=$IMGSTORE_HOST_TOKEN_FILE on_a --format json image attach-info "rbd/$img" >"$W/ai-a.json" 2>/dev/null
check "  JSON: the passphrase, and the same secret UUID for the copy on site a" \
  quiet jq -e --slurpfile a "$W/ai-a.json" '(.luks_passphrase | length) == 64 and .luks_secret_uuid == $a[0].luks_secret_uuid' "$W/ai.json"
# what the hypervisor's QEMU does with it: librbd's LUKS2 under QEMU's rbd driver
jq -j .luks_passphrase "$W/ai.json" >"$W/pass" 2>/dev/null
qemu_src="json:{\"driver\":\"raw\",\"file\":{\"driver\":\"rbd\",\"pool\":\"rbd\",\"image\":\"$img\",\"conf\":\"$(conf_of b)\",\"user\":\"admin\",\"encrypt\":{\"format\":\"luks2\",\"key-secret\":\"sec0\"}}}"
check "  QEMU opens it on site b with that passphrase (qemu-img, rbd driver, encrypt.format=luks2)" \
  quiet qemu-img convert -f raw --object "secret,id=sec0,file=$W/pass,format=raw" "$qemu_src" -O raw "$W/qemu.raw"
check "    and reads the plaintext" cmp -s "$src" "$W/qemu.raw"

# ---- crypto-shredding
expect_rc 0 "create a plain image" on_a image create "rbd/$plain" --size 8M
expect_rc 1 "image rm --shred of a plain image is refused" on_a image rm "rbd/$plain" --shred
check "  saying it has no key" grep -q "is not encrypted: it has no key to shred (use --purge)" "$T_ERR"
check "  and the image stays" quiet on_a image info "rbd/$plain"
# site b's daemon restarted with its second peer (c) pointed at a monitor nobody runs: every
# peer is asked before any key is destroyed, so the replica's key on site a (the first peer)
# must stay; then its configuration back (config_restore, also on the way out)
key_a() { rbd -c "$(conf_of a)" image-meta get "rbd/$img" imgstore.crypt.key 2>/dev/null; }
check "the replica on site a holds its wrapped key" bash -c '[ -n "$1" ] && [ "$1" != shredded ]' _ "$(key_a)"
sed -e "s|^mon host = .*|mon host = v2:127.0.0.1:$(free_port)|" "$(conf_of c)" >"$W/dead-c.conf"
check "  a ceph.conf for site c whose monitor nobody runs" grep -q "^mon host = v2:127.0.0.1:" "$W/dead-c.conf"
config_keep b
restore_b=1
awk -v dead="$W/dead-c.conf" '/^\[/ { sect = $0 } sect == "[peer c]" && /^ceph_conf = / { $0 = "ceph_conf = " dead } { print }' \
  "$(site_conf b).orig" >"$(site_conf b)"
check "  site b's daemon: peers a (up) then c (that one)" \
  bash -c "grep -q '^ceph_conf = $W/dead-c.conf$' '$(site_conf b)' && [ \$(grep -n '^\[peer a\]' '$(site_conf b)' | cut -d: -f1) -lt \$(grep -n '^\[peer c\]' '$(site_conf b)' | cut -d: -f1) ]"
daemon_stop b
check "  restarted with it" daemon_start b
t0=$SECONDS
expect_rc 1 "  image rm --shred on site b is refused" on_b image rm "rbd/$img" --shred
echo "# refused after $((SECONDS - t0)) s (the peer's mon_timeout is 5 s)"
sed "s/^/# /" "$T_ERR"
check "  in one line naming site c" \
  bash -c "[ \$(wc -l <'$T_ERR') = 1 ] && grep -q \"cannot shred the replica on site 'c'\" '$T_ERR'"
check "  before any key changed: the replica's key on site a is intact" \
  bash -c '[ -n "$1" ] && [ "$1" != shredded ]' _ "$(key_a)"
check "  and this image's own key too" \
  bash -c '[ -n "$1" ] && [ "$1" != shredded ]' _ "$(rbd_on b image-meta get "rbd/$img" imgstore.crypt.key 2>/dev/null)"
expect_rc 0 "  the image on site b still opens: export" on_b image export "rbd/$img" "$IMGSTORE_EXPORT_DIR/crypt$$.b2.raw"
check "  gives the plaintext back" cmp -s "$src" "$IMGSTORE_EXPORT_DIR/crypt$$.b2.raw"
config_restore b
restore_b=""
check "site b's daemon back on its own configuration" daemon_up b

expect_rc 0 "image rm --shred on site b, the primary (every peer answers)" on_b image rm "rbd/$img" --shred
check "  the image is gone from site b" bash -c "! rbd -c '$(conf_of b)' info 'rbd/$img' >/dev/null 2>&1"
check "  the replica's key on site a is destroyed" \
  test "$(rbd_on a image-meta get "rbd/$img" imgstore.crypt.key 2>/dev/null)" = shredded
expect_rc 1 "  the replica left on site a cannot be exported" on_a image export "rbd/$img" "$IMGSTORE_EXPORT_DIR/crypt$$.a.raw"
check "  saying it was crypto-shredded" grep -q "was crypto-shredded: its key is destroyed" "$T_ERR"
read -r hits n < <(scan_objects a "$img")
check "  and its $n RADOS objects hold no plaintext (found in $hits)" test "$hits" = 0 -a "$n" -ge 5
finish

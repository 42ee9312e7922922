#!/usr/bin/env bash
# Encrypted images on the tier (docs/SECURITY.md, docs/TIERING.md), through the sandbox's
# daemons and its radosgw (target 'rgw'):
#   - tier push of an encrypted image ships its ciphertext: no plaintext pattern and not its
#     data key in any S3 object of the bucket (each listed and fetched with s3cmd), and no chunk
#     named after a plaintext block (which a decrypted push would have stored);
#   - the restore, on site a and on site b (the same KEK), opens with the key: export gives the
#     plaintext back; a daemon with another KEK refuses the restore with a one-line error;
#   - image rm --shred of a tiered image destroys the key in its manifests too, and says so: a
#     restore is then refused ("crypto-shredded"), for an image kept after its push and for a
#     cold one (pushed away, its catalog entry dropped);
#   - image rm --shred of a replicated image while the S3 target answers 503 (a fault proxy):
#     refused in one line naming the target before anything changed (the replica's key on site
#     b intact), the image untouched and still opening; the same command works once S3
#     answers again, the replica's key destroyed too.
set -uo pipefail
IMGSTORED=${IMS_BINARY_DIR:?}/daemon/imgstored
CLI=${IMS_BINARY_DIR}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"

W=$(mktemp -d /tmp/imgstore-tiercrypt.XXXXXX)
T_OUT=$W/.out T_ERR=$W/.err
img=tcrypt$$ cold=tcrypt$$-cold copy=tcrypt$$-copy
src=$IMGSTORE_IMPORT_DIR/tcrypt$$.raw
daemon="" proxy=""
cleanup() {
  [ -n "$daemon" ] && kill -KILL "$daemon" 2>/dev/null
  [ -n "$proxy" ] && kill -KILL "$proxy" 2>/dev/null
  [ -s "$W/s3cfg" ] && s3 del "s3://imgstore-cold/manifests/rbd/$img" "s3://imgstore-cold/manifests/rbd/$cold" >/dev/null 2>&1
  forget_images "$img" "$cold" "$copy"
  rm -rf "$W" "$src" "$IMGSTORE_EXPORT_DIR"/tcrypt$$.*
}
trap cleanup EXIT
PATTERN=IMGSTORE-TIER-PLAINTEXT-$$

# a 12 MiB disk: the pattern over [4 MiB, 8 MiB), a whole chunk of the push's grid, and at 9 MiB
python3 - "$src" "$PATTERN" "$W/block.sha" <<'PY'
import hashlib, sys
b = bytearray(12 << 20)
pat = sys.argv[2].encode()
for i in range(4 << 20, 8 << 20, len(pat)):
    n = min(len(pat), (8 << 20) - i)
    b[i:i + n] = pat[:n]
for i in range(9 << 20, (10 << 20) - len(pat), len(pat)):
    b[i:i + len(pat)] = pat
open(sys.argv[1], "wb").write(b)
open(sys.argv[3], "w").write(hashlib.sha256(b[4 << 20:8 << 20]).hexdigest())
PY

# s3cmd on the sandbox's radosgw, as the daemons' S3 user
read -r ak sk <"$IMGSTORE_SANDBOX/site-a/rgw/s3-user"
port=$(cat "$IMGSTORE_SANDBOX/site-a/rgw/port")
cat >"$W/s3cfg" <<EOF
[default]
access_key = $ak
secret_key = $sk
host_base = 127.0.0.1:$port
host_bucket = 127.0.0.1:$port
bucket_location = default
use_https = False
EOF
s3() { timeout 120 s3cmd -c "$W/s3cfg" "$@"; }

# NEEDLE...: every object of the bucket fetched; prints "OBJECTS HITS" (objects holding a needle)
scan_bucket() {
  local key n=0 hits=0 needle
  s3 ls -r s3://imgstore-cold/ >"$W/ls" || { echo "error 0"; return; }
  for key in $(awk '{print $4}' "$W/ls"); do
    s3 get --force "$key" "$W/obj" >/dev/null 2>&1 || { echo "error 0"; return; }
    n=$((n + 1))
    for needle in "$@"; do
      if grep -q -a -- "$needle" "$W/obj"; then hits=$((hits + 1)); break; fi
    done
  done
  echo "$n $hits"
}

# ---- push: ciphertext only
expect_rc 0 "import --encryption luks2" on_a image import "$src" "rbd/$img" --format raw --encryption luks2
IMGSTORE_TOKEN_FILE=$IMGSTORE_HOST_TOKEN_FILE on_a --format json image attach-info "rbd/$img" >"$W/ai.json" 2>/dev/null
pass=$(jq -r '.luks_passphrase // ""' "$W/ai.json")
check "its data key (the LUKS passphrase) is known to the test" test ${#pass} = 64
expect_rc 0 "tier push of the encrypted image" on_a tier push "rbd/$img" --to rgw
expect_rc 1 "  the image is gone from RBD" on_a image info "rbd/$img"
read -r n hits < <(scan_bucket "$PATTERN" "$pass")
check "  no plaintext pattern and not its data key in any of the bucket's $n objects (found in $hits)" \
  test "$hits" = 0 -a "$n" -ge 3
check "  no chunk named after a plaintext block (a decrypted push would have stored it)" \
  bash -c "! grep -q 'chunks/$(cat "$W/block.sha")' '$W/ls'"

# ---- restore: here, on site b, and refused under another KEK
expect_rc 0 "restore on site a" on_a tier restore "rbd/$img"
on_a --format json image info "rbd/$img" >"$W/info.json" 2>/dev/null
check "  encrypted (luks2), 12 MiB usable" quiet jq -e '.encryption == "luks2" and (.size | tonumber) == 12582912' "$W/info.json"
expect_rc 0 "  export" on_a image export "rbd/$img" "$IMGSTORE_EXPORT_DIR/tcrypt$$.a.raw"
check "  gives the plaintext back" cmp -s "$src" "$IMGSTORE_EXPORT_DIR/tcrypt$$.a.raw"
expect_rc 0 "push it again, keeping it" on_a tier push "rbd/$img" --to rgw --after keep
expect_rc 0 "restore on site b (same KEK)" on_b tier restore "rbd/$img" --to "rbd/$copy"
expect_rc 0 "  export on site b" on_b image export "rbd/$copy" "$IMGSTORE_EXPORT_DIR/tcrypt$$.b.raw"
check "  gives the plaintext back" cmp -s "$src" "$IMGSTORE_EXPORT_DIR/tcrypt$$.b.raw"

(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$W/other.kek")
second_conf a "$W" tiercrypt-2 "s|^kek_file = .*|kek_file = $W/other.kek|" >"$W/d.conf"
setsid "$IMGSTORED" --config "$W/d.conf" </dev/null >"$W/d.log" 2>&1 &
daemon=$!
check "a daemon of site a with another KEK starts" \
  wait_until 120 0.25 curl -sf --max-time 2 --unix-socket "$W/tiercrypt-2.sock" http://localhost/readyz -o /dev/null
expect_rc 1 "  and refuses the restore" "$CLI" --server "$W/tiercrypt-2.sock" tier restore "rbd/$img" --to "rbd/$cold"
check "  in one line (after the queued operation's) naming the cold image and the KEKs" \
  bash -c "[ \$(grep -vc ': queued$' '$T_ERR') = 1 ] && grep -q \"cannot open cold image 'rbd/$img': the data key is wrapped by KEK [0-9a-f]\{16\}, and this daemon's kek_file holds KEK\" '$T_ERR'"
check "  and made no image" bash -c "! rbd -c '$(conf_of a)' info 'rbd/$cold' >/dev/null 2>&1"
kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; daemon=""

# ---- image rm --shred with the S3 target answering 503 to everything (through
# tests/integration/tier_fault_proxy.py, a daemon of site a pointed at it): refused in one line
# naming the target, the image here untouched and still opening; run again once S3 answers
key_b() { rbd -c "$(conf_of b)" image-meta get "rbd/$img" imgstore.crypt.key 2>/dev/null; }
expect_rc 0 "replicate the tiered image to site b" on_a repl enable "rbd/$img" --to b --rpo 1h
expect_rc 0 "  sync" on_a repl sync "rbd/$img"
check "  its replica on site b holds its wrapped key" bash -c '[ -n "$1" ] && [ "$1" != shredded ]' _ "$(key_b)"
python3 "$(dirname "${BASH_SOURCE[0]}")/tier_fault_proxy.py" --upstream "http://127.0.0.1:$port" \
  --port-file "$W/proxy.port" </dev/null >"$W/proxy.log" 2>&1 &
proxy=$!
check "a fault proxy before radosgw" wait_until 100 0.1 test -s "$W/proxy.port"
pport=$(cat "$W/proxy.port")
fault() { curl -sf --max-time 10 "http://127.0.0.1:$pport/__fault__/$1" >/dev/null; }
second_conf a "$W" tiercrypt-3 "s|^endpoint = http://127.0.0.1:$port\$|endpoint = http://127.0.0.1:$pport\nretries = 1|" >"$W/p.conf"
check "  its configuration points the target rgw at the proxy" grep -q "^endpoint = http://127.0.0.1:$pport$" "$W/p.conf"
setsid "$IMGSTORED" --config "$W/p.conf" </dev/null >"$W/p.log" 2>&1 &
daemon=$!
check "a daemon of site a through the proxy starts" \
  wait_until 120 0.25 curl -sf --max-time 2 --unix-socket "$W/tiercrypt-3.sock" http://localhost/readyz -o /dev/null
check "  the proxy answers 503 to every S3 request from now on" fault "always?action=503"
t0=$SECONDS
expect_rc 1 "  image rm --shred of the tiered image is refused" \
  "$CLI" --server "$W/tiercrypt-3.sock" image rm "rbd/$img" --shred
echo "# refused after $((SECONDS - t0)) s (retries = 1 here; 5 by default)"
check "  in one line naming the target" \
  bash -c "[ \$(wc -l <'$T_ERR') = 1 ] && grep -q \"cannot shred the cold copies on target 'rgw'\" '$T_ERR'"
cat "$T_ERR"
check "  before anything changed: the replica's key on site b is intact" \
  bash -c '[ -n "$1" ] && [ "$1" != shredded ]' _ "$(key_b)"
expect_rc 0 "  the image is still there" on_a image info "rbd/$img"
expect_rc 0 "  and opens with its key: export" on_a image export "rbd/$img" "$IMGSTORE_EXPORT_DIR/tcrypt$$.p.raw"
check "  gives the plaintext back" cmp -s "$src" "$IMGSTORE_EXPORT_DIR/tcrypt$$.p.raw"
check "S3 answers again" fault "always?action="
kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; daemon=""
kill -TERM "$proxy" 2>/dev/null; wait "$proxy" 2>/dev/null; proxy=""

# ---- crypto-shredding reaches the tier (the same command, run again)
expect_rc 0 "image rm --shred of the tiered image (kept after its push)" on_a image rm "rbd/$img" --shred
check "  says the cold copy is unreadable too" grep -q "shredded 'rbd/$img'.* 1 cold copy on the tier unreadable too" "$T_OUT"
check "  the replica's key on site b is destroyed too" test "$(key_b)" = shredded
expect_rc 1 "  a restore is refused" on_a tier restore "rbd/$img"
check "  saying it was crypto-shredded" \
  grep -q "cold image 'rbd/$img' was crypto-shredded: its key is destroyed" "$T_ERR"
check "  and made no image" bash -c "! rbd -c '$(conf_of a)' info 'rbd/$img' >/dev/null 2>&1"

expect_rc 0 "import another encrypted image" on_a image import "$src" "rbd/$cold" --format raw --encryption luks2
expect_rc 0 "  push it away (cold)" on_a tier push "rbd/$cold" --to rgw
expect_rc 0 "image rm --shred of the cold image" on_a --format json image rm "rbd/$cold" --shred
check "  one cold copy shredded" quiet jq -e '.cold_copies_shredded == 1' "$T_OUT"
on_a --format json image ls rbd >"$W/ls.json" 2>/dev/null
check "  its catalog entry is gone" \
  quiet jq -e --arg n "$cold" 'all(.[]; .name != $n)' "$W/ls.json"
expect_rc 1 "  a restore is refused" on_a tier restore "rbd/$cold"
check "  saying it was crypto-shredded" grep -q "was crypto-shredded" "$T_ERR"
read -r n hits < <(scan_bucket "$PATTERN" "$pass")
check "  still no plaintext in the bucket's $n objects (found in $hits)" test "$hits" = 0 -a "$n" -ge 3
finish

#!/usr/bin/env bash
# KEK rotation (docs/SECURITY.md): a daemon of site a with a new kek_file and the old KEK as
# kek_previous_file, then `imgstore key rewrap`:
#   - a key wrapped by neither KEK fails the call with a one-line error naming the image;
#   - the rewrap moves every data key of the site (an image, one in the trash) and of the
#     tier's encrypted cold image onto the new KEK, reports counts, and the audit log has it;
#   - a second run rewraps nothing (idempotent); a key put back as a killed run leaves it is
#     rewrapped by the next run (resumable);
#   - with the old KEK file removed, the image exports and the cold image restores;
#   - the same rotation backwards, its first run killed for real (kill -9) while it waits on
#     S3 (a fault proxy holds the request) and the second run ending it, leaves the sandbox's
#     images as they were (its daemon reads them again).
set -uo pipefail
IMGSTORED=${IMS_BINARY_DIR:?}/daemon/imgstored
CLI=${IMS_BINARY_DIR}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"

W=$(mktemp -d /tmp/imgstore-rewrap.XXXXXX)
T_OUT=$W/.out T_ERR=$W/.err
img=rewrap$$ trashed=rewrap$$-trash bad=rewrap$$-bad cold=rewrap$$-cold back=rewrap$$-back
src=$IMGSTORE_IMPORT_DIR/rewrap$$.raw
OLD=$(sed -n 's/^kek_file = //p' "$(site_conf a)")
daemon="" proxy="" S3_ENDPOINT=""
RGW_PORT=$(cat "$IMGSTORE_SANDBOX/site-a/rgw/port")
stop() { [ -n "$daemon" ] && { kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; }; daemon=""; }
mine() { "$CLI" --server "$W/rewrap-2.sock" "$@"; }
# KEK_FILE [PREVIOUS_FILE]: a daemon of site a on paths of its own with these KEKs
start() {
  stop
  second_conf a "$W" rewrap-2 "s|^export_dirs = .*|export_dirs = $W|" \
    "s|^kek_file = .*|kek_file = $1${2:+\nkek_previous_file = $2}|" \
    "s|^endpoint = http://127.0.0.1:$RGW_PORT\$|endpoint = ${S3_ENDPOINT:-http://127.0.0.1:$RGW_PORT}|" >"$W/d.conf"
  setsid "$IMGSTORED" --config "$W/d.conf" </dev/null >>"$W/d.log" 2>&1 &
  daemon=$!
  wait_until 120 0.25 curl -sf --max-time 2 --unix-socket "$W/rewrap-2.sock" http://localhost/readyz -o /dev/null
}
cleanup() {
  # whatever happened: every key of site a back on the sandbox's KEK
  if [ -s "$W/new.kek" ] && start "$OLD" "$W/new.kek"; then mine key rewrap >/dev/null 2>&1; fi
  stop
  [ -n "$proxy" ] && kill -KILL "$proxy" 2>/dev/null
  timeout 120 s3cmd -c "$W/s3cfg" del "s3://imgstore-cold/manifests/rbd/$cold" >/dev/null 2>&1
  on_a image rm --purge "rbd/$bad" >/dev/null 2>&1
  forget_images "$img" "$cold" "$back" "$trashed"
  rm -rf "$W" "$src"
}
trap cleanup EXIT
printf '[default]\naccess_key = %s\nsecret_key = %s\nhost_base = 127.0.0.1:%s\nhost_bucket = 127.0.0.1:%s\nbucket_location = default\nuse_https = False\n' \
  $(cat "$IMGSTORE_SANDBOX/site-a/rgw/s3-user") "$(cat "$IMGSTORE_SANDBOX/site-a/rgw/port")" \
  "$(cat "$IMGSTORE_SANDBOX/site-a/rgw/port")" >"$W/s3cfg"

random_file "$src" 8M 3@2
key_of() { rbd_on a image-meta get "rbd/$1" imgstore.crypt.key 2>/dev/null; }

# ---- under the sandbox's KEK: an image, one in the trash, a cold one, one of another KEK
expect_rc 0 "import an encrypted image" on_a image import "$src" "rbd/$img" --format raw --encryption luks2
expect_rc 0 "another, moved to the trash" on_a image import "$src" "rbd/$trashed" --format raw --encryption luks2
trash_id=$(rbd_on a info "rbd/$trashed" | awk '/^\tid:/ {print $2}')
expect_rc 0 "  (image rm)" on_a image rm "rbd/$trashed"
expect_rc 0 "another, pushed to the tier (cold)" on_a image import "$src" "rbd/$cold" --format raw --encryption luks2
expect_rc 0 "  (tier push)" on_a tier push "rbd/$cold" --to rgw
expect_rc 0 "one whose key no KEK here wrapped" on_a image create "rbd/$bad" --size 4M --encryption luks2
w=$(key_of "$bad")
rbd_on a image-meta set "rbd/$bad" imgstore.crypt.key "v1:ffffffffffffffff:${w#v1:*:}" >/dev/null
old_key=$(key_of "$img")

# ---- the rotation
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$W/new.kek")
check "a daemon with the new kek_file and the old as kek_previous_file starts" start "$W/new.kek" "$OLD"
check "  and says it holds both" grep -q "and the previous KEK [0-9a-f]\{16\} until" "$W/d.log"
check "  it opens an image of the old KEK" quiet mine image export "rbd/$img" "$W/x.raw" 2>/dev/null
expect_rc 1 "key rewrap with a key of neither KEK" mine key rewrap
check "  fails in one line naming the image and the KEKs" \
  bash -c "[ \$(grep -c . '$T_ERR') = 1 ] && grep -q \"image 'rbd/$bad': the data key is wrapped by KEK ffffffffffffffff, and this daemon holds KEK [0-9a-f]\{16\} (kek_file) and KEK [0-9a-f]\{16\} (kek_previous_file)\" '$T_ERR'"
check "  having rewrapped the others all the same (the image, the trashed one, the cold one)" \
  grep -q "could not be rewrapped (\([3-9]\|[1-9][0-9]\+\) were, " "$T_ERR"
expect_rc 0 "  (that image removed)" mine image rm --purge "rbd/$bad"

expect_rc 0 "key rewrap" mine --format json key rewrap
cp "$T_OUT" "$W/r1.json"
kek=$(jq -r '.kek_id // ""' "$W/r1.json")
check "  counts: the images (>= 2) and the cold one (>= 1) on the new KEK, none failed" \
  quiet jq -e '((.images_rewrapped // 0) | tonumber) + ((.images_current // 0) | tonumber) >= 2 and ((.cold_rewrapped // 0) | tonumber) + ((.cold_current // 0) | tonumber) >= 1 and ((.images_failed // 0) | tonumber) == 0 and .previous_kek_id != ""' "$W/r1.json"
check "  the image's key is now the new KEK's ($kek)" bash -c "key=\$(rbd -c '$(conf_of a)' image-meta get 'rbd/$img' imgstore.crypt.key) && [[ \$key == v1:$kek:* ]]"
rados -c "$(conf_of a)" -p rbd getomapval "rbd_header.$trash_id" metadata_imgstore.crypt.key "$W/tk" >/dev/null 2>&1
check "  and the trashed image's" grep -q "^v1:$kek:" "$W/tk"
check "  the audit log records it" grep -q "method=ImageService/RewrapKeys target=kek:$kek result=ok" "$W/audit-rewrap-2.log"
expect_rc 0 "key rewrap again" mine --format json key rewrap
check "  rewraps nothing (idempotent)" \
  quiet jq -e '((.images_rewrapped // 0) | tonumber) == 0 and ((.cold_rewrapped // 0) | tonumber) == 0 and (.images_current | tonumber) >= 2' "$T_OUT"
rbd_on a image-meta set "rbd/$img" imgstore.crypt.key "$old_key" >/dev/null
expect_rc 0 "key rewrap after one key is left on the old KEK (a run killed half-way)" mine --format json key rewrap
check "  rewraps that one" quiet jq -e '(.images_rewrapped | tonumber) == 1' "$T_OUT"

# ---- the old KEK file gone
check "the daemon restarted with the new kek_file alone" start "$W/new.kek"
expect_rc 0 "  exports the image" mine image export "rbd/$img" "$W/a.raw"
check "  with its plaintext" cmp -s "$src" "$W/a.raw"
expect_rc 0 "  restores the cold image" mine tier restore "rbd/$cold" --to "rbd/$back"
expect_rc 0 "  which exports" mine image export "rbd/$back" "$W/b.raw"
check "  with its plaintext" cmp -s "$src" "$W/b.raw"
expect_rc 1 "the sandbox's daemon (old KEK) cannot open the image now" on_a image export "rbd/$img" "$IMGSTORE_EXPORT_DIR/rewrap$$.raw"

# ---- and back, for the tests after this one: the first run killed for real (kill -9) while
# it waits on S3 (a fault proxy holds its first tier request 20 s), after the images' keys and
# before the cold image's manifest; the next run ends the job
python3 "$(dirname "${BASH_SOURCE[0]}")/tier_fault_proxy.py" --upstream "http://127.0.0.1:$RGW_PORT" \
  --port-file "$W/proxy.port" </dev/null >"$W/proxy.log" 2>&1 &
proxy=$!
check "a fault proxy before radosgw" wait_until 100 0.1 test -s "$W/proxy.port"
pport=$(cat "$W/proxy.port")
s3_requests() { curl -sf --max-time 5 "http://127.0.0.1:$pport/__fault__/stats" | sed -n 's/^requests=\([0-9]*\).*/\1/p'; }
S3_ENDPOINT=http://127.0.0.1:$pport
check "a daemon with the old kek_file and the new as previous, its S3 through the proxy" start "$OLD" "$W/new.kek"
S3_ENDPOINT=""
check "  its configuration points the target at the proxy" grep -q "^endpoint = http://127.0.0.1:$pport$" "$W/d.conf"
n0=$(s3_requests)
check "  the proxy will hold the next S3 request 20 s" curl -sf --max-time 5 "http://127.0.0.1:$pport/__fault__/plan?actions=slow:20" -o /dev/null
mine --format json key rewrap >"$W/killed.out" 2>"$W/killed.err" &
run=$!
s3_asked() { [ "$(s3_requests)" -gt "${n0:-0}" ]; }
check "  key rewrap back, until its first S3 request" wait_until 300 0.1 s3_asked
kill -KILL "$daemon"
wait "$daemon" 2>/dev/null
daemon=""
wait "$run"
rc=$?
check "  killed (kill -9): the CLI fails (exit $rc)" test "$rc" -ne 0
sed "s/^/# /" "$W/killed.err"
check "  the image's key is back on the old KEK already" bash -c "[[ \$(rbd -c '$(conf_of a)' image-meta get 'rbd/$img' imgstore.crypt.key) == v1:$(jq -r .previous_kek_id "$W/r1.json"):* ]]"
kill -TERM "$proxy" 2>/dev/null; wait "$proxy" 2>/dev/null; proxy=""
check "the daemon restarted (S3 straight to radosgw)" start "$OLD" "$W/new.kek"
expect_rc 0 "  key rewrap back, again" mine --format json key rewrap
check "  ends the job: the images already current, the cold one (left by the killed run) rewrapped, none failed" \
  quiet jq -e '(.images_current | tonumber) >= 2 and (.cold_rewrapped | tonumber) == 1 and ((.images_failed // 0) | tonumber) == 0' "$T_OUT"
stop
expect_rc 0 "the sandbox's daemon exports the image again" on_a image export "rbd/$img" "$IMGSTORE_EXPORT_DIR/rewrap$$.raw"
check "  with its plaintext" cmp -s "$src" "$IMGSTORE_EXPORT_DIR/rewrap$$.raw"
rm -f "$IMGSTORE_EXPORT_DIR/rewrap$$.raw" "$W/new.kek"
finish

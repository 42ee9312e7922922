#!/usr/bin/env bash
# Cold tiering benchmark, in one run on one fresh sandbox site with its radosgw:
#   push:    imgstore (bench/ims-tier: the tier library, as an imgstored Operation runs it)
#            vs  rbd export - | s3cmd put - s3://BUCKET/OBJ
#   restore: imgstore  vs  s3cmd get s3://BUCKET/OBJ - | rbd import - POOL/IMAGE
# The image: SIZE, every byte written: the first half random (incompressible), the second half
# text (`seq` output, which zstd compresses about 4x). imgstore's peak RSS during the push and
# the restore; both restored images are checked byte for byte against the original.
#
#   bench/tier.sh [--size 2G] [--store bluestore|memstore] [--dir DIR]
# BlueStore by default: the image, its copies and the bucket outgrow a memstore OSD.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=2G STORE=bluestore DIR=/tmp/imgstore-bench-tier BUILD=${BUILD:-build}
. tests/lib/bench.sh
options "[--size 2G] [--store memstore|bluestore] [--dir DIR]" size=SIZE store=STORE dir=DIR -- "$@"
TIER=$PWD/$BUILD/bench/ims-tier
[ -x "$TIER" ] && [ -x "$BUILD/daemon/imgstored" ] || { echo "build first: make build" >&2; exit 1; }
command -v s3cmd >/dev/null || { echo "s3cmd is missing (apt-get install s3cmd)" >&2; exit 1; }
SB=$DIR/sandbox
fresh_sandbox "$SB"
scripts/sandbox up "$SB" --sites 1 --rgw --store "$STORE" --imgstored "$PWD/$BUILD/daemon/imgstored" >/dev/null
cleanup() {
  scripts/sandbox down "$SB" >/dev/null 2>&1 || true
  rm -f "$DIR/image.raw"
  return 0
}
trap cleanup EXIT
# the daemon is not part of the benchmark: only its configuration (the S3 target) is used
scripts/sandbox stop-daemon "$SB" a >/dev/null
. "$SB/env"
A=$CEPH_CONF_A
CONF=$SB/site-a/imgstored.conf
ra() { rbd -c "$A" "$@"; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }

# s3cmd on the sandbox's S3 user: path style, plain http, its own bucket
S3_ENDPOINT=127.0.0.1:$(cat "$SB/site-a/rgw/port")
read -r S3_ACCESS_KEY S3_SECRET_KEY <"$SB/site-a/rgw/s3-user"
cat >"$DIR/s3cfg" <<EOF
[default]
access_key = $S3_ACCESS_KEY
secret_key = $S3_SECRET_KEY
host_base = $S3_ENDPOINT
host_bucket = $S3_ENDPOINT
use_https = False
signature_v2 = False
bucket_location = default
EOF
chmod 600 "$DIR/s3cfg"
s3() { s3cmd -c "$DIR/s3cfg" --no-progress "$@"; }
s3 mb s3://bench-s3cmd >/dev/null

# the image
bytes=$(numfmt --from=iec "$SIZE")
half=$((bytes / 2))
{
  (openssl enc -aes-128-ctr -nosalt -pass pass:imgstore-bench </dev/zero 2>/dev/null || true) | head -c "$half"
  (seq 1 100000000000 || true) | head -c $((bytes - half))
} >"$DIR/image.raw"
ra import --no-progress "$DIR/image.raw" rbd/src >/dev/null
rm -f "$DIR/image.raw"
want=$(ra export --no-progress rbd/src - | sha256sum)
sync

declare -A T
# push: imgstore keeps the image (after=keep), as the pipe does
t0=$(now); /usr/bin/time -f '%M' -o "$DIR/rss-push" "$TIER" "$CONF" rgw push rbd/src >"$DIR/push.json"; T[push_ims]=$(secs "$t0" "$(now)")
t0=$(now); ra export --no-progress rbd/src - | s3 put - s3://bench-s3cmd/src.raw >/dev/null; T[push_s3]=$(secs "$t0" "$(now)")
# restore
t0=$(now); /usr/bin/time -f '%M' -o "$DIR/rss-restore" "$TIER" "$CONF" rgw restore rbd/src rbd/back-ims >/dev/null; T[restore_ims]=$(secs "$t0" "$(now)")
t0=$(now); s3 get s3://bench-s3cmd/src.raw - | ra import --no-progress - rbd/back-s3 >/dev/null; T[restore_s3]=$(secs "$t0" "$(now)")

for img in back-ims back-s3; do
  got=$(ra export --no-progress "rbd/$img" - | sha256sum)
  [ "$got" = "$want" ] || { echo "bench: rbd/$img differs from rbd/src" >&2; exit 1; }
done

sealed=$(jq -r '.bytes_sealed' "$DIR/push.json")
row() { printf '| %s | %.2f | %.2f | %.2fx |\n' "$1" "${T[${2}_ims]}" "${T[${2}_s3]}" \
  "$(echo "${T[${2}_s3]} / ${T[${2}_ims]}" | bc -l)"; }
echo "| $SIZE image ($STORE, half random, half text) | imgstore s | rbd + s3cmd s | pipe / imgstore |"
echo "|---|---|---|---|"
row "push" push
row "restore" restore
echo
echo "uploaded: imgstore $((sealed / 1048576)) MiB (zstd + AES-GCM), s3cmd $((bytes / 1048576)) MiB"
echo "imgstore peak RSS: push $(($(cat "$DIR/rss-push") / 1024)) MiB, restore $(($(cat "$DIR/rss-restore") / 1024)) MiB"
echo "both restored images are byte-identical to the original"

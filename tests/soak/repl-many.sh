#!/usr/bin/env bash
# Soak: N images (default 50) replicated from site a to site b with a 10 s RPO by one
# imgstored, under a light change rate, for MINUTES (default 5); at the end every image must
# be within its RPO and its newest sealed snapshot equal on both sites.
#
#   tests/soak/repl-many.sh [--images 50] [--minutes 5] [--dir DIR]     (make soak)
set -uo pipefail
cd "$(dirname "$0")/../.."
N=50 MINUTES=5 DIR=/tmp/imgstore-soak BUILD=${BUILD:-build}
. tests/lib/bench.sh
options "[--images N] [--minutes M] [--dir DIR]" images=N minutes=MINUTES dir=DIR -- "$@"
CLI=$PWD/$BUILD/cli/imgstore
scripts/sandbox up "$DIR" --sites 2 --imgstored "$PWD/$BUILD/daemon/imgstored" >/dev/null || exit 1
trap 'scripts/sandbox down "$DIR" >/dev/null 2>&1' EXIT
. "$DIR/env"

for i in $(seq 1 "$N"); do
  "$CLI" image create "rbd/soak-$i" --size 64M >/dev/null || { echo "soak: create failed"; exit 1; }
  "$CLI" repl enable "rbd/soak-$i" --to b --rpo 10s >/dev/null || { echo "soak: enable failed"; exit 1; }
done
echo "soak: $N images enabled with a 10s RPO; writing lightly for $MINUTES minutes"
end=$(( $(date +%s) + MINUTES * 60 ))
worst=0
while [ "$(date +%s)" -lt "$end" ]; do
  # a light change rate: one image in five gets 256 KiB of random writes each round
  for i in $(seq 1 5 "$N"); do
    j=$(( (RANDOM % N) + 1 ))
    rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 64K --io-total 256K --io-pattern rand \
      "rbd/soak-$j" >/dev/null 2>&1
  done
  lag=$("$CLI" --format json repl status | jq '[.[] | .lag_seconds] | max')
  echo "soak: $(date +%T) worst lag ${lag}s"
  worst=$(awk "BEGIN { print ($lag > $worst) ? $lag : $worst }")
  sleep 5
done
sleep 12 # the writes of the last round get their cycle
fails=0
status=$("$CLI" --format json repl status)
over=$(echo "$status" | jq '[.[] | select(.lag_seconds < 0 or .lag_seconds > .rpo_seconds)] | length')
errs=$(echo "$status" | jq '[.[] | select(.error != "")] | length')
[ "$over" = 0 ] || { echo "soak: $over images over their RPO at the end"; fails=1; }
[ "$errs" = 0 ] || { echo "soak: $errs images in error"; echo "$status" | jq -c '.[] | select(.error != "")' | head -3; fails=1; }
for i in 1 $((N / 2)) "$N"; do
  s=$(echo "$status" | jq -r --arg img "rbd/soak-$i" '.[] | select(.image == $img) | .last_sealed_snapshot')
  a=$(rbd -c "$CEPH_CONF_A" export --no-progress "rbd/soak-$i@$s" - 2>/dev/null | sha256sum)
  b=$(rbd -c "$CEPH_CONF_B" export --no-progress "rbd/soak-$i@$s" - 2>/dev/null | sha256sum)
  [ "$a" = "$b" ] || { echo "soak: soak-$i@$s differs between the sites"; fails=1; }
done
echo "soak: worst lag seen ${worst}s; at the end $over over RPO, $errs in error"
[ $fails = 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $fails

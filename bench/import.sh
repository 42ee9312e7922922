#!/usr/bin/env bash
# Import benchmark: a qcow2 of SIZE (default 2 GiB, half data and half zeros) imported into
# RBD by imgstore, by `qemu-img convert -O raw FILE rbd:...`, and (from the raw file) by
# `rbd import`, in one run on one sandbox cluster. Prints a Markdown table.
#
#   bench/import.sh [--size 2G] [--runs 3] [--store memstore|bluestore] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=2G RUNS=3 STORE=bluestore DIR=/tmp/imgstore-bench-import BUILD=${BUILD:-build}
. tests/lib/bench.sh
options "[--size 2G] [--runs N] [--store memstore|bluestore] [--dir DIR]" size=SIZE runs=RUNS store=STORE dir=DIR -- "$@"
IMPORT=$BUILD/bench/ims-import
[ -x "$IMPORT" ] || { echo "build first: make build" >&2; exit 1; }

scripts/sandbox up "$DIR/sandbox" --sites 1 --store "$STORE" >/dev/null
trap 'scripts/sandbox down "$DIR/sandbox" >/dev/null 2>&1 || true' EXIT
. "$DIR/sandbox/env"
CONF=$CEPH_CONF_A

# The source: SIZE bytes, alternating 8 MiB of random data and 8 MiB of zeros.
bytes=$(numfmt --from=iec "$SIZE")
mib=$((bytes >> 20))
if [ ! -f "$DIR/src-$SIZE.qcow2" ]; then
  rm -f "$DIR/src.raw"
  truncate -s "$bytes" "$DIR/src.raw"
  for ((m = 0; m < mib; m += 16)); do
    dd if=/dev/urandom of="$DIR/src.raw" bs=1M count=8 seek=$m conv=notrunc status=none
  done
  qemu-img convert -O qcow2 "$DIR/src.raw" "$DIR/src-$SIZE.qcow2"
  mv "$DIR/src.raw" "$DIR/src-$SIZE.raw"
fi
SRC=$DIR/src-$SIZE.qcow2
RAW=$DIR/src-$SIZE.raw

now() { date +%s.%N; }
rm_img() { rbd -c "$CONF" rm --no-progress "rbd/$1" >/dev/null 2>&1 || true; }

declare -A total=()
for ((i = 1; i <= RUNS; i++)); do
  for tool in imgstore qemu-img rbd-import; do
    sync
    echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
    img=bench-$tool-$i
    rm_img "$img"
    t0=$(now)
    case $tool in
      imgstore) "$IMPORT" "$CONF" "rbd/$img" "$SRC" >/dev/null ;;
      qemu-img) qemu-img convert -O raw "$SRC" "rbd:rbd/$img:conf=$CONF" ;;
      rbd-import) rbd -c "$CONF" import --no-progress "$RAW" "rbd/$img" >/dev/null ;;
    esac
    t1=$(now)
    dt=$(echo "$t1 - $t0" | bc -l)
    total[$tool]=$(echo "${total[$tool]:-0} + $dt" | bc -l)
    printf 'run %d %-10s %6.2f s\n' "$i" "$tool" "$dt" >&2
    rm_img "$img"
  done
done

avg() { echo "${total[$1]} / $RUNS" | bc -l; }
a_ims=$(avg imgstore) a_qemu=$(avg qemu-img) a_rbd=$(avg rbd-import)
echo
echo "| tool | mean seconds ($RUNS runs, $SIZE qcow2, half zeros, $STORE) | imgstore speed-up |"
echo "|---|---|---|"
printf '| imgstore import | %.2f | 1.00 |\n' "$a_ims"
printf '| qemu-img convert -O raw ... rbd: | %.2f | %.2f |\n' "$a_qemu" "$(echo "$a_qemu / $a_ims" | bc -l)"
printf '| rbd import (raw file) | %.2f | %.2f |\n' "$a_rbd" "$(echo "$a_rbd / $a_ims" | bc -l)"

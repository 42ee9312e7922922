#!/usr/bin/env bash
# Import benchmark: a disk of SIZE (default 2 GiB, half data and half zeros) as a qcow2, a vmdk,
# a vdi and a vhdx (qemu-img convert of the same raw, dynamic), imported into RBD on one sandbox site by
#   - `qemu-img convert -O raw FILE rbd:...` (the reference of the ratios),
#   - imgstore's store library alone (bench/ims-import: what the daemon runs),
#   - the CLI through imgstored's Unix socket, the daemon reading the file by path (the file
#     in [server] import_dirs), and sending its bytes (--upload),
#   - the CLI over TLS, the way a hypervisor host on another machine imports (the bytes sent),
# and `rbd import` of the raw file; and the write limit of the machine: `rbd bench` writing as
# many bytes as the disk holds data (16 writes of 4 MiB at once, nothing read or decoded), which
# no importer can beat: its ratio to qemu-img is the best ratio this machine allows. With --before BUILD_DIR (a build of another commit, e.g.
# main), that build's imgstored and CLI run too, interleaved with this build's in each run
# (the daemon swapped in the same sandbox), so that a loaded machine weighs on both alike.
# Prints a Markdown table: median seconds of RUNS runs with their range, the speed-up against
# qemu-img (the median of each run's ratio, and their range), and for the CLI's rows the CPU
# time imgstored spent on the import (from /proc/PID/stat around it).
#
#   bench/import.sh [--size 2G] [--runs 3] [--store memstore|bluestore] [--dir DIR]
#                   [--before BUILD_DIR] [--formats "qcow2 vmdk vdi vhdx"]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=2G RUNS=3 STORE=bluestore DIR=/tmp/imgstore-bench-import BUILD=${BUILD:-build} BEFORE=""
FORMATS="qcow2 vmdk vdi vhdx"
. tests/lib/bench.sh
options "[--size 2G] [--runs N] [--store memstore|bluestore] [--dir DIR] [--before BUILD_DIR] [--formats \"qcow2 vmdk\"]" \
  size=SIZE runs=RUNS store=STORE dir=DIR before=BEFORE formats=FORMATS -- "$@"
AFTER=$(cd "$BUILD" && pwd)
IMPORT=$AFTER/bench/ims-import
for b in "$AFTER" ${BEFORE:+"$BEFORE"}; do
  [ -x "$b/daemon/imgstored" ] && [ -x "$b/cli/imgstore" ] || { echo "build first: no imgstored or CLI in $b" >&2; exit 1; }
done
[ -x "$IMPORT" ] || { echo "build first: make build" >&2; exit 1; }
[ -z "$BEFORE" ] || BEFORE=$(cd "$BEFORE" && pwd)

fresh_sandbox "$DIR/sandbox"
scripts/sandbox up "$DIR/sandbox" --sites 1 --store "$STORE" --imgstored "$AFTER/daemon/imgstored" >/dev/null
trap 'scripts/sandbox down "$DIR/sandbox" >/dev/null 2>&1 || true' EXIT
. "$DIR/sandbox/env"
CONF=$CEPH_CONF_A

# The source: SIZE bytes, alternating 8 MiB of random data and 8 MiB of zeros.
bytes=$(numfmt --from=iec "$SIZE")
mib=$((bytes >> 20))
missing=0
for f in $FORMATS; do [ -f "$DIR/src-$SIZE.$f" ] || missing=1; done
if ((missing)); then
  rm -f "$DIR/src.raw"
  truncate -s "$bytes" "$DIR/src.raw"
  for ((m = 0; m < mib; m += 16)); do
    dd if=/dev/urandom of="$DIR/src.raw" bs=1M count=8 seek=$m conv=notrunc status=none
  done
  for f in $FORMATS; do qemu-img convert -O "$f" "$DIR/src.raw" "$DIR/src-$SIZE.$f"; done
  mv "$DIR/src.raw" "$DIR/src-$SIZE.raw"
fi
RAW=$DIR/src-$SIZE.raw
DATA_MIB=$(((mib + 15) / 16 * 8)) # 8 MiB of data in every 16 MiB
# by path: the daemon reads files under its import_dirs
for f in $FORMATS; do cp "$DIR/src-$SIZE.$f" "$IMGSTORE_IMPORT_DIR/src.$f"; done

now() { date +%s.%N; }
rm_img() { rbd -c "$CONF" rm --no-progress "rbd/$1" >/dev/null 2>&1 || true; }
# the sandbox's imgstored from build $1 (start-daemon runs the binary named in imgstored.path)
use_daemon() {
  [ "$(cat "$DIR/sandbox/imgstored.path")" = "$1/daemon/imgstored" ] && return 0
  scripts/sandbox stop-daemon "$DIR/sandbox" a >/dev/null
  echo "$1/daemon/imgstored" >"$DIR/sandbox/imgstored.path"
  scripts/sandbox start-daemon "$DIR/sandbox" a >/dev/null
}

TIMES=$DIR/times
: >"$TIMES"
# the CPU time (user + system, clock ticks) the sandbox's imgstored has used so far
daemon_ticks() {
  local pid; pid=$(cat "$DIR/sandbox/site-a/run/imgstored.pid" 2>/dev/null) || { echo 0; return; }
  awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0
}
TICK=$(getconf CLK_TCK)
one() { # LABEL FORMAT IMAGE CMD...: time CMD (and the daemon's CPU time), record it
  local label=$1 fmt=$2 img=$3 t0 t1 dt c0 c1 cpu; shift 3
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  rm_img "$img"
  c0=$(daemon_ticks)
  t0=$(now)
  "$@" >/dev/null 2>>"$DIR/stderr.log"
  t1=$(now)
  c1=$(daemon_ticks)
  dt=$(echo "$t1 - $t0" | bc -l)
  cpu=-
  [[ $label != CLI* ]] || cpu=$(echo "($c1 - $c0) / $TICK" | bc -l)
  printf '%s\t%s\t%.3f\t%s\n' "$label" "$fmt" "$dt" "$cpu" >>"$TIMES"
  printf 'run %d %-5s %-28s %6.2f s\n' "$i" "$fmt" "$label" "$dt" >&2
  rm_img "$img"
}
cli_runs() { # BUILD TAG FORMAT
  local b=$1 tag=$2 fmt=$3 cli=$1/cli/imgstore
  use_daemon "$b"
  one "CLI, Unix socket, by path$tag" "$fmt" bench-unix \
    "$cli" --server "$IMGSTORE_SOCKET_A" image import "$IMGSTORE_IMPORT_DIR/src.$fmt" rbd/bench-unix
  one "CLI, Unix socket, upload$tag" "$fmt" bench-unixup \
    "$cli" --server "$IMGSTORE_SOCKET_A" image import --upload "$DIR/src-$SIZE.$fmt" rbd/bench-unixup
  one "CLI over TLS$tag" "$fmt" bench-tls \
    "$cli" --server "$IMGSTORE_SERVER_A" image import "$DIR/src-$SIZE.$fmt" rbd/bench-tls
}

for ((i = 1; i <= RUNS; i++)); do
  for fmt in $FORMATS; do
    src=$DIR/src-$SIZE.$fmt
    one "qemu-img convert -O raw" "$fmt" bench-qemu qemu-img convert -O raw "$src" "rbd:rbd/bench-qemu:conf=$CONF"
    one "write limit (rbd bench, the data's bytes)" "$fmt" bench-limit bash -c "
      rbd -c '$CONF' create --size $SIZE rbd/bench-limit &&
      rbd -c '$CONF' bench --io-type write --io-size 4M --io-threads 16 --io-total ${DATA_MIB}M --io-pattern seq rbd/bench-limit"
    one "store library (ims-import)" "$fmt" bench-lib "$IMPORT" "$CONF" rbd/bench-lib "$src"
    # before and after in turns, starting with the other one each run
    if [ -n "$BEFORE" ] && ((i % 2)); then cli_runs "$BEFORE" " (before)" "$fmt"; fi
    cli_runs "$AFTER" "${BEFORE:+ (after)}" "$fmt"
    if [ -n "$BEFORE" ] && ! ((i % 2)); then cli_runs "$BEFORE" " (before)" "$fmt"; fi
  done
  one "rbd import (raw file)" raw bench-rbd rbd -c "$CONF" import --no-progress "$RAW" rbd/bench-rbd
done
use_daemon "$AFTER"

echo
sizes=""
for f in $FORMATS; do sizes="$sizes${sizes:+, }$f $(du -h --apparent-size "$DIR/src-$SIZE.$f" | cut -f1)"; done
echo "$SIZE disk (half zeros) as $sizes; $STORE, $RUNS runs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
python3 - "$TIMES" <<'EOF'
import statistics, sys
rows, cpus, order = {}, {}, []
for line in open(sys.argv[1]):
    label, fmt, t, cpu = line.rstrip("\n").split("\t")
    if (label, fmt) not in rows:
        order.append((label, fmt))
    rows.setdefault((label, fmt), []).append(float(t))
    if cpu != "-":
        cpus.setdefault((label, fmt), []).append(float(cpu))
print("| tool | format | median s (min to max) | speed-up vs qemu-img (min to max) | daemon CPU s (min to max) |")
print("|---|---|---|---|---|")
for label, fmt in order:
    ts = rows[(label, fmt)]
    med = statistics.median(ts)
    ref = rows.get(("qemu-img convert -O raw", fmt))
    if ref and len(ref) == len(ts):
        # each run's ratio: qemu-img and the tool ran minutes apart in the same run
        r = [a / b for a, b in zip(ref, ts)]
        sp = "%.2fx (%.2f to %.2f)" % (statistics.median(r), min(r), max(r))
    else:
        sp = "-"
    c = cpus.get((label, fmt))
    cs = "%.2f (%.2f to %.2f)" % (statistics.median(c), min(c), max(c)) if c else "-"
    print("| %s | %s | %.2f (%.2f to %.2f) | %s | %s |" % (label, fmt, med, min(ts), max(ts), sp, cs))
EOF

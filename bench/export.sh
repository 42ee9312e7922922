#!/usr/bin/env bash
# Export benchmark: an image of SIZE (default 1 GiB, half data and half zeros) on one sandbox
# site, exported to a file by
#   - `rbd export` (raw; the reference of the raw rows' ratios),
#   - `qemu-img convert -f raw rbd:... -O qcow2` and `-O vmdk -o subformat=streamOptimized`
#     (the references of the qcow2 and vmdk rows),
#   - the CLI over TLS, the way a client on another machine exports (the bytes downloaded):
#     streamed while the export runs (raw, vmdk and qcow2; a daemon older than this branch
#     spools qcow2).
# And the read limit of the machine: `rbd bench` reading the image (16 reads of 4 MiB at once,
# nothing written or sent), which no export can beat: its ratio to `rbd export` is the best
# ratio this machine allows.
# With --before BUILD_DIR (a build of another commit, e.g. main), that build's imgstored and CLI
# run too, interleaved with this build's in each run (the daemon swapped in the same sandbox).
# Prints a Markdown table: median seconds of RUNS runs with their range, the speed-up against
# the reference of the format (the median of each run's ratio, and their range), and for the
# CLI's rows the CPU time imgstored spent on the export (from /proc/PID/stat around it).
#
#   bench/export.sh [--size 1G] [--runs 3] [--store memstore|bluestore] [--dir DIR]
#                   [--before BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=1G RUNS=3 STORE=bluestore DIR=/tmp/imgstore-bench-export BUILD=${BUILD:-build} BEFORE=""
. tests/lib/bench.sh
options "[--size 1G] [--runs N] [--store memstore|bluestore] [--dir DIR] [--before BUILD_DIR]" \
  size=SIZE runs=RUNS store=STORE dir=DIR before=BEFORE -- "$@"
AFTER=$(cd "$BUILD" && pwd)
for b in "$AFTER" ${BEFORE:+"$BEFORE"}; do
  [ -x "$b/daemon/imgstored" ] && [ -x "$b/cli/imgstore" ] || { echo "build first: no imgstored or CLI in $b" >&2; exit 1; }
done
[ -z "$BEFORE" ] || BEFORE=$(cd "$BEFORE" && pwd)

fresh_sandbox "$DIR/sandbox"
scripts/sandbox up "$DIR/sandbox" --sites 1 --store "$STORE" --imgstored "$AFTER/daemon/imgstored" >/dev/null
trap 'scripts/sandbox down "$DIR/sandbox" >/dev/null 2>&1 || true; rm -rf "$DIR/out"' EXIT
. "$DIR/sandbox/env"
CONF=$CEPH_CONF_A

# The image: SIZE bytes, alternating 8 MiB of random data and 8 MiB of zeros (never written).
bytes=$(numfmt --from=iec "$SIZE")
mib=$((bytes >> 20))
rm -f "$DIR/src.raw"
truncate -s "$bytes" "$DIR/src.raw"
for ((m = 0; m < mib; m += 16)); do
  dd if=/dev/urandom of="$DIR/src.raw" bs=1M count=8 seek=$m conv=notrunc status=none
done
rbd -c "$CONF" import --no-progress "$DIR/src.raw" rbd/bench-src >/dev/null
rm -f "$DIR/src.raw"
SRC="rbd:rbd/bench-src:conf=$CONF"

now() { date +%s.%N; }
use_daemon() {
  [ "$(cat "$DIR/sandbox/imgstored.path")" = "$1/daemon/imgstored" ] && return 0
  scripts/sandbox stop-daemon "$DIR/sandbox" a >/dev/null
  echo "$1/daemon/imgstored" >"$DIR/sandbox/imgstored.path"
  scripts/sandbox start-daemon "$DIR/sandbox" a >/dev/null
}
OUTF=$DIR/out
TIMES=$DIR/times
: >"$TIMES"
# the CPU time (user + system, clock ticks) the sandbox's imgstored has used so far
daemon_ticks() {
  local pid; pid=$(cat "$DIR/sandbox/site-a/run/imgstored.pid" 2>/dev/null) || { echo 0; return; }
  awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0
}
TICK=$(getconf CLK_TCK)
one() { # LABEL FORMAT CMD...: time CMD (which writes $OUTF) and the daemon's CPU, record them
  local label=$1 fmt=$2 t0 t1 dt c0 c1 cpu; shift 2
  rm -f "$OUTF" "$OUTF.partial"
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  c0=$(daemon_ticks)
  t0=$(now)
  "$@" >/dev/null 2>>"$DIR/stderr.log"
  t1=$(now)
  c1=$(daemon_ticks)
  [ -s "$OUTF" ] || { echo "bench: $label ($fmt) wrote nothing" >&2; exit 1; }
  dt=$(echo "$t1 - $t0" | bc -l)
  cpu=-
  [[ $label != CLI* ]] || cpu=$(echo "($c1 - $c0) / $TICK" | bc -l)
  printf '%s\t%s\t%.3f\t%s\n' "$label" "$fmt" "$dt" "$cpu" >>"$TIMES"
  printf 'run %d %-5s %-34s %6.2f s\n' "$i" "$fmt" "$label" "$dt" >&2
  rm -f "$OUTF"
}
cli_runs() { # BUILD TAG FORMAT
  use_daemon "$1"
  one "CLI over TLS$2" "$3" "$1/cli/imgstore" --server "$IMGSTORE_SERVER_A" image export \
    rbd/bench-src "$OUTF" --format "$3"
}

for ((i = 1; i <= RUNS; i++)); do
  one "rbd export" raw rbd -c "$CONF" export --no-progress rbd/bench-src "$OUTF"
  one "read limit (rbd bench, nothing written)" raw bash -c "
    rbd -c '$CONF' bench --io-type read --io-size 4M --io-threads 16 --io-total $SIZE --io-pattern seq rbd/bench-src >'$OUTF'"
  one "qemu-img convert" qcow2 qemu-img convert -f raw "$SRC" -O qcow2 "$OUTF"
  one "qemu-img convert" vmdk qemu-img convert -f raw "$SRC" -O vmdk -o subformat=streamOptimized "$OUTF"
  for fmt in raw vmdk qcow2; do
    if [ -n "$BEFORE" ] && ((i % 2)); then cli_runs "$BEFORE" " (before)" "$fmt"; fi
    cli_runs "$AFTER" "${BEFORE:+ (after)}" "$fmt"
    if [ -n "$BEFORE" ] && ! ((i % 2)); then cli_runs "$BEFORE" " (before)" "$fmt"; fi
  done
done
use_daemon "$AFTER"

echo
echo "$SIZE image (half zeros, the zeros never written); $STORE, $RUNS runs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
python3 - "$TIMES" <<'PY'
import statistics, sys
rows, cpus, order = {}, {}, []
for line in open(sys.argv[1]):
    label, fmt, t, cpu = line.rstrip("\n").split("\t")
    if (label, fmt) not in rows:
        order.append((label, fmt))
    rows.setdefault((label, fmt), []).append(float(t))
    if cpu != "-":
        cpus.setdefault((label, fmt), []).append(float(cpu))
print("| tool | format | median s (min to max) | speed-up vs the reference (min to max) | daemon CPU s (min to max) |")
print("|---|---|---|---|---|")
for label, fmt in order:
    ts = rows[(label, fmt)]
    med = statistics.median(ts)
    ref = rows.get(("rbd export" if fmt == "raw" else "qemu-img convert", fmt))
    if ref and len(ref) == len(ts):
        r = [a / b for a, b in zip(ref, ts)]
        sp = "%.2fx (%.2f to %.2f)" % (statistics.median(r), min(r), max(r))
    else:
        sp = "-"
    c = cpus.get((label, fmt))
    cs = "%.2f (%.2f to %.2f)" % (statistics.median(c), min(c), max(c)) if c else "-"
    print("| %s | %s | %.2f (%.2f to %.2f) | %s | %s |" % (label, fmt, med, min(ts), max(ts), sp, cs))
PY

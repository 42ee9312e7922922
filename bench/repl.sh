#!/usr/bin/env bash
# Replication benchmark, in one run on the same two sandbox sites, for each case:
#   imgstore (one replicator cycle, bench/ims-repl: what imgstored's scheduler runs),
#   rbd snap create + rbd export-diff | rbd import-diff (the snapshot is part of the job, as it
#   is in imgstore's cycle and in `rbd mirror image snapshot`),
#   rbd-mirror in snapshot mode (pool mirroring in image mode on both sites, peer bootstrap,
#   an rbd-mirror daemon on site b, `rbd mirror image snapshot`, timed until site b reports
#   the snapshot synced).
# Cases: initial sync of an image with SIZE written; a delta of DELTA in 64 KiB random writes;
# a full overwrite of SIZE; imgstore's peak RSS during the initial sync; and the copy limit of
# the machine (rbd bench reading SIZE on site a while it writes SIZE on site b).
#
#   bench/repl.sh [--size 1G] [--delta 128M] [--store bluestore|memstore] [--dir DIR]
# BlueStore by default: three images with snapshots outgrow a memstore OSD, which then blocks.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=1G DELTA=128M STORE=bluestore DIR=/tmp/imgstore-bench-repl BUILD=${BUILD:-build}
. tests/lib/bench.sh
options "[--size 1G] [--delta 128M] [--store memstore|bluestore] [--dir DIR]" size=SIZE delta=DELTA store=STORE dir=DIR -- "$@"
REPL=$PWD/$BUILD/bench/ims-repl
[ -x "$REPL" ] || { echo "build first: make build" >&2; exit 1; }
SB=$DIR/sandbox
# a fresh pair of sites every run: mirroring setup and image names start clean
fresh_sandbox "$SB"
scripts/sandbox up "$SB" --sites 2 --store "$STORE" --no-daemons >/dev/null
MIRROR_PID=""
cleanup() {
  # under set -e a failing last command of an && list would end the trap before the sandbox
  # is down: rbd-mirror's exit status after SIGTERM is not a failure
  if [ -n "$MIRROR_PID" ]; then kill "$MIRROR_PID" 2>/dev/null || true; wait "$MIRROR_PID" 2>/dev/null || true; fi
  scripts/sandbox down "$SB" >/dev/null 2>&1 || true
  return 0
}
trap cleanup EXIT
. "$SB/env"
A=$CEPH_CONF_A B=$CEPH_CONF_B
ra() { rbd -c "$A" "$@" 2>/dev/null; }
rb() { rbd -c "$B" "$@" 2>/dev/null; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }

# rbd-mirror: image-mode mirroring on both sites, site b pulls from site a.
mirror_start "$A" "$B" "$DIR" /dev/null

write_seq() { ra bench --io-type write --io-size 4M --io-total "$2" --io-pattern seq "rbd/$1" >/dev/null; }
write_rand() { ra bench --io-type write --io-size 64K --io-total "$2" --io-pattern rand "rbd/$1" >/dev/null; }

# wait_mirror IMAGE SINCE: until site b reports a mirror snapshot taken at or after SINCE (unix
# seconds) as synced: replay idle and the local snapshot time equal to the remote one
wait_mirror() {
  local img=$1 since=$2 i d
  for i in $(seq 1 12000); do
    d=$(rb mirror image status --format json "rbd/$img" | jq -r '.description // ""' || true)
    case $d in
      replaying,*)
        if echo "${d#replaying, }" | jq -e --argjson since "$since" '.replay_state == "idle"
            and .remote_snapshot_timestamp >= $since
            and .local_snapshot_timestamp == .remote_snapshot_timestamp' >/dev/null 2>&1; then
          return 0
        fi ;;
    esac
    sleep 0.05
  done
  echo "rbd-mirror did not sync $img" >&2
  return 1
}

declare -A T
for img in ims ed rm; do ra create --size "$SIZE" "rbd/$img"; done
rb create --size "$SIZE" rbd/ed

# 1. initial sync of SIZE written
for img in ims ed rm; do write_seq "$img" "$SIZE"; done
sync
t0=$(now); IMS_DEBUG=1 /usr/bin/time -f '%M' -o "$DIR/rss" "$REPL" "$A" "$B" rbd/ims >/dev/null 2>"$DIR/init.log"; T[init_ims]=$(secs "$t0" "$(now)")
t0=$(now); ra snap create rbd/ed@s1; ra export-diff rbd/ed@s1 - | rb import-diff - rbd/ed; T[init_ed]=$(secs "$t0" "$(now)")
since=$(date +%s); t0=$(now); ra mirror image enable rbd/rm snapshot >/dev/null; wait_mirror rm "$since"; T[init_rm]=$(secs "$t0" "$(now)")
RSS_KB=$(cat "$DIR/rss")

# 2. a delta of DELTA in 64 KiB random writes
for img in ims ed rm; do write_rand "$img" "$DELTA"; done
t0=$(now); IMS_DEBUG=1 "$REPL" "$A" "$B" rbd/ims >/dev/null 2>"$DIR/delta.log"; T[delta_ims]=$(secs "$t0" "$(now)")
t0=$(now); ra snap create rbd/ed@s2; ra export-diff --from-snap s1 rbd/ed@s2 - | rb import-diff - rbd/ed; T[delta_ed]=$(secs "$t0" "$(now)")
sleep 1.1; since=$(date +%s); t0=$(now); ra mirror image snapshot rbd/rm >/dev/null; wait_mirror rm "$since"; T[delta_rm]=$(secs "$t0" "$(now)")

# 3. a full overwrite of SIZE
for img in ims ed rm; do write_seq "$img" "$SIZE"; done
t0=$(now); "$REPL" "$A" "$B" rbd/ims >/dev/null; T[over_ims]=$(secs "$t0" "$(now)")
t0=$(now); ra snap create rbd/ed@s3; ra export-diff --from-snap s2 rbd/ed@s3 - | rb import-diff - rbd/ed; T[over_ed]=$(secs "$t0" "$(now)")
sleep 1.1; since=$(date +%s); t0=$(now); ra mirror image snapshot rbd/rm >/dev/null; wait_mirror rm "$since"; T[over_rm]=$(secs "$t0" "$(now)")

# the copies are right
for img in ims ed; do
  snap=$([ $img = ims ] && rb snap ls --format json rbd/ims | jq -r 'last | .name' || echo s3)
  a=$(ra export --no-progress "rbd/$img@$snap" - | sha256sum) b=$(rb export --no-progress "rbd/$img@$snap" - | sha256sum)
  [ "$a" = "$b" ] || { echo "bench: $img differs between the sites" >&2; exit 1; }
done

# 4. the copy limit of this machine: SIZE read on site a (rbd bench, 16 reads of 4 MiB at once)
# while SIZE is written on site b (the same), both timed together
rb create --size "$SIZE" rbd/limit
t0=$(now)
ra bench --io-type read --io-size 4M --io-threads 16 --io-total "$SIZE" --io-pattern seq rbd/ims >/dev/null &
READER=$!
rb bench --io-type write --io-size 4M --io-threads 16 --io-total "$SIZE" --io-pattern seq rbd/limit >/dev/null
wait "$READER"
T[limit]=$(secs "$t0" "$(now)")

row() { printf '| %s | %.2f | %.2f | %.2f | %.2fx | %.2fx |\n' "$1" "${T[${2}_ims]}" "${T[${2}_ed]}" "${T[${2}_rm]}" \
  "$(echo "${T[${2}_ed]} / ${T[${2}_ims]}" | bc -l)" "$(echo "${T[${2}_rm]} / ${T[${2}_ims]}" | bc -l)"; }
echo "| case ($STORE, $SIZE image) | imgstore s | export-diff pipe s | rbd-mirror s | vs pipe | vs rbd-mirror |"
echo "|---|---|---|---|---|---|"
row "initial sync, $SIZE written" init
row "delta of $DELTA in 64 KiB random writes" delta
row "full overwrite of $SIZE" over
echo
printf 'copy limit (%s read on site a while %s is written on site b, rbd bench 16 x 4 MiB): %.2f s; imgstore'"'"'s initial sync at %.0f%% of it, the pipe at %.0f%%\n' \
  "$SIZE" "$SIZE" "${T[limit]}" "$(echo "100 * ${T[limit]} / ${T[init_ims]}" | bc -l)" "$(echo "100 * ${T[limit]} / ${T[init_ed]}" | bc -l)"
echo "imgstore peak RSS during the initial sync: $((RSS_KB / 1024)) MiB"
for c in init delta; do
  echo "imgstore's $c cycle, phase by phase: $(grep -o 'cycle of .*' "$DIR/$c.log" | sed 's/^[^:]*: //')"
done
exit 0

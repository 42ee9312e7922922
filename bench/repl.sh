#!/usr/bin/env bash
# Replication benchmark, in one run on the same two sandbox sites, for each case:
#   imgstore (one replicator cycle, bench/ims-repl: what imgstored's scheduler runs),
#   rbd snap create + rbd export-diff | rbd import-diff (the snapshot is part of the job, as it
#   is in imgstore's cycle and in `rbd mirror image snapshot`),
#   rbd-mirror in snapshot mode (pool mirroring in image mode on both sites, peer bootstrap,
#   an rbd-mirror daemon on site b, `rbd mirror image snapshot`, timed until site b reports
#   the snapshot synced).
# Cases: initial sync of an image with SIZE written; a delta of DELTA in 64 KiB random writes;
# a full overwrite of SIZE; imgstore's peak RSS during the initial sync; imgstore's fixed cost
# of a cycle (its snapshot, seal and retention phases); and the copy limit of the machine
# (rbd bench reading SIZE on site a while it writes SIZE on site b) and its delta limit (the
# same with DELTA in random 64 KiB reads and writes), measured first.
#
#   bench/repl.sh [--size 1G] [--delta 128M] [--store bluestore|memstore] [--dir DIR]
#                 [--tools "imgstore pipe rbd-mirror"] [--one-at-a-time 0|1] [--mon-interval S]
#
# --tools: the tools to run, by spaces or commas (all three by default). --one-at-a-time 1: the copy limit and each
# tool's three cases on a fresh pair of sites of their own, one after the other (the tools
# otherwise hold their images on both sites at once: 2 x SIZE each with the overwrite's old
# snapshot, and BlueStore does not give the space of removed images back to the sandbox's
# sparse files: an 8 GiB run needs about 32 GB of disk this way, 100 GB the other).
# --mon-interval S: the sites' monitors propose every S seconds (paxos_propose_interval; Ceph
# ships 1 s): snapshot ids, which every tool's snapshot waits for, come that much sooner.
# BlueStore by default: three images with snapshots outgrow a memstore OSD, which then blocks.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=1G DELTA=128M STORE=bluestore DIR=/tmp/imgstore-bench-repl BUILD=${BUILD:-build}
TOOLS="imgstore pipe rbd-mirror" ONE=0 MONINT=""
. tests/lib/bench.sh
options "[--size 1G] [--delta 128M] [--store memstore|bluestore] [--dir DIR] [--tools \"imgstore pipe rbd-mirror\"] [--one-at-a-time 0|1] [--mon-interval S]" \
  size=SIZE delta=DELTA store=STORE dir=DIR tools=TOOLS one-at-a-time=ONE mon-interval=MONINT -- "$@"
REPL=$PWD/$BUILD/bench/ims-repl
[ -x "$REPL" ] || { echo "build first: make build" >&2; exit 1; }
[[ "$ONE" =~ ^[01]$ ]] || { echo "bench: --one-at-a-time takes 0 or 1" >&2; exit 2; }
[ -z "$MONINT" ] || [[ "$MONINT" =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "bench: --mon-interval takes seconds, e.g. 0.05" >&2; exit 2; }
# the tools by their short names: ims, ed (export-diff), rm (rbd-mirror)
RUN=()
for t in ${TOOLS//,/ }; do
  case $t in
    imgstore) RUN+=(ims) ;; pipe) RUN+=(ed) ;; rbd-mirror) RUN+=(rm) ;;
    *) echo "bench: no tool '$t' (imgstore, pipe, rbd-mirror)" >&2; exit 2 ;;
  esac
done
[ ${#RUN[@]} -gt 0 ] || { echo "bench: --tools names none" >&2; exit 2; }
runs() { local t; for t in "${RUN[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }

# the disk the sites' BlueStore files will take at their fullest (what is written, with the
# overwrite's old snapshot kept, on both sites; 10% more for BlueStore's own), against what the
# file system of DIR has free
BYTES=$(numfmt --from=iec "$SIZE")
if [ "$ONE" = 1 ]; then NEED=$((BYTES * 2 * 2)); else NEED=$((BYTES * 2 * 2 * ${#RUN[@]})); fi
NEED=$((NEED + NEED / 10))
mkdir -p "$DIR"
FREE=$(($(df --output=avail -B1 "$DIR" | tail -1)))
if [ "$FREE" -lt "$NEED" ]; then
  echo "bench: $SIZE images need about $((NEED >> 30)) GiB of disk under $DIR and $((FREE >> 30)) GiB are free$([ "$ONE" = 1 ] || echo "; --one-at-a-time 1 needs the least")" >&2
  exit 1
fi

SB=$DIR/sandbox
MIRROR_PID=""
# sites_up: a fresh pair of sites (mirroring setup and image names start clean), their
# monitors' interval, and rbd-mirror on site b when it is among the tools
sites_up() {
  fresh_sandbox "$SB"
  scripts/sandbox up "$SB" --sites 2 --store "$STORE" --no-daemons >/dev/null
  . "$SB/env"
  A=$CEPH_CONF_A B=$CEPH_CONF_B
  local c
  if [ -n "$MONINT" ]; then
    for c in "$A" "$B"; do ceph -c "$c" config set mon paxos_propose_interval "$MONINT" >/dev/null; done
  fi
  # rbd-mirror: image-mode mirroring on both sites, site b pulls from site a
  if runs rm; then mirror_start "$A" "$B" "$DIR" /dev/null; fi
}
sites_down() {
  # under set -e a failing last command of an && list would end the trap before the sandbox
  # is down: rbd-mirror's exit status after SIGTERM is not a failure
  if [ -n "$MIRROR_PID" ]; then kill "$MIRROR_PID" 2>/dev/null || true; wait "$MIRROR_PID" 2>/dev/null || true; fi
  MIRROR_PID=""
  scripts/sandbox down "$SB" >/dev/null 2>&1 || true
  rm -rf "$SB"
  return 0
}
trap sites_down EXIT
ra() { rbd -c "$A" "$@" 2>/dev/null; }
rb() { rbd -c "$B" "$@" 2>/dev/null; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }

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

# 0. the copy limit of this machine: SIZE read on site a (rbd bench, 16 reads of 4 MiB at once)
# while SIZE is written on site b (the same), both timed together
sites_up
ra create --size "$SIZE" rbd/lsrc
write_seq lsrc "$SIZE"
rb create --size "$SIZE" rbd/limit
sync
t0=$(now)
ra bench --io-type read --io-size 4M --io-threads 16 --io-total "$SIZE" --io-pattern seq rbd/lsrc >/dev/null &
READER=$!
rb bench --io-type write --io-size 4M --io-threads 16 --io-total "$SIZE" --io-pattern seq rbd/limit >/dev/null
wait "$READER"
T[limit]=$(secs "$t0" "$(now)")
# and the delta limit: DELTA read on site a in random 64 KiB reads while DELTA is written on
# site b in random 64 KiB writes (64 of each at once: a delta's pieces are small, and the
# copy keeps 64 of them in flight), into images that hold data, as a delta's copy does; the
# longer of the two by rbd bench's own count (ops / ops per second), without the tools' start,
# which would be most of it for a small delta
ra bench --io-type read --io-size 64K --io-threads 64 --io-total "$DELTA" --io-pattern rand rbd/lsrc >"$DIR/dlimit.r" &
READER=$!
rb bench --io-type write --io-size 64K --io-threads 64 --io-total "$DELTA" --io-pattern rand rbd/limit >"$DIR/dlimit.w"
wait "$READER"
T[dlimit]=$(awk '/^elapsed:/ { t = $4 / $6; if (t > m) m = t } END { printf "%.3f", m }' "$DIR/dlimit.r" "$DIR/dlimit.w")
ra rm --no-progress rbd/lsrc >/dev/null; rb rm --no-progress rbd/limit >/dev/null

# timed_case CASE WRITE AMOUNT FROM TO GROUP...: a case after the initial sync: AMOUNT written
# by WRITE (write_seq, write_rand) to the image of every tool of GROUP, then each tool timed
# into T[CASE_tool]: imgstore's cycle (its log DIR/CASE.log), the pipe's snapshot TO and its
# export-diff from FROM, rbd-mirror's next mirror snapshot until site b has it
timed_case() {
  local c=$1 write=$2 amount=$3 from=$4 to=$5 img since t0
  shift 5
  for img in "$@"; do "$write" "$img" "$amount"; done
  for img in "$@"; do
    case $img in
      ims) t0=$(now); IMS_DEBUG=1 "$REPL" "$A" "$B" rbd/ims >/dev/null 2>"$DIR/$c.log"; T[${c}_ims]=$(secs "$t0" "$(now)") ;;
      ed) t0=$(now); ra snap create "rbd/ed@$to"; ra export-diff --from-snap "$from" "rbd/ed@$to" - | rb import-diff - rbd/ed; T[${c}_ed]=$(secs "$t0" "$(now)") ;;
      rm) sleep 1.1; since=$(date +%s); t0=$(now); ra mirror image snapshot rbd/rm >/dev/null; wait_mirror rm "$since"; T[${c}_rm]=$(secs "$t0" "$(now)") ;;
    esac
  done
}

# cases GROUP...: the three cases for the tools of GROUP, each case's writes done for all of
# them before any is timed
cases() {
  local img since snap a b
  for img in "$@"; do ra create --size "$SIZE" "rbd/$img"; done
  if runs ed; then case " $* " in *" ed "*) rb create --size "$SIZE" rbd/ed ;; esac; fi

  # 1. initial sync of SIZE written
  for img in "$@"; do write_seq "$img" "$SIZE"; done
  sync
  for img in "$@"; do
    case $img in
      ims) t0=$(now); IMS_DEBUG=1 /usr/bin/time -f '%M' -o "$DIR/rss" "$REPL" "$A" "$B" rbd/ims >/dev/null 2>"$DIR/init.log"; T[init_ims]=$(secs "$t0" "$(now)")
        RSS_KB=$(cat "$DIR/rss") ;;
      ed) t0=$(now); ra snap create rbd/ed@s1; ra export-diff rbd/ed@s1 - | rb import-diff - rbd/ed; T[init_ed]=$(secs "$t0" "$(now)") ;;
      rm) since=$(date +%s); t0=$(now); ra mirror image enable rbd/rm snapshot >/dev/null; wait_mirror rm "$since"; T[init_rm]=$(secs "$t0" "$(now)") ;;
    esac
  done

  # 2. a delta of DELTA in 64 KiB random writes
  timed_case delta write_rand "$DELTA" s1 s2 "$@"

  # 3. a full overwrite of SIZE
  timed_case over write_seq "$SIZE" s2 s3 "$@"

  # the copies are right
  for img in "$@"; do
    case $img in ims) snap=$(rb snap ls --format json rbd/ims | jq -r 'last | .name') ;; ed) snap=s3 ;; *) continue ;; esac
    a=$(ra export --no-progress "rbd/$img@$snap" - | sha256sum) b=$(rb export --no-progress "rbd/$img@$snap" - | sha256sum)
    [ "$a" = "$b" ] || { echo "bench: $img differs between the sites" >&2; exit 1; }
  done
}

RSS_KB=0
if [ "$ONE" = 1 ]; then
  # each tool on fresh sites: BlueStore does not give back the disk of removed images to
  # the sandbox's sparse files, so an 8 GiB run of the tools one after the other on the same
  # sites fills 80 GB
  for t in "${RUN[@]}"; do
    sites_down
    sites_up
    cases "$t"
  done
else
  cases "${RUN[@]}"
fi

fig() { if [ -n "${T[$1]:-}" ]; then printf '%.2f' "${T[$1]}"; else printf -- '-'; fi; }
ratio() { if [ -n "${T[$1]:-}" ] && [ -n "${T[$2]:-}" ]; then printf '%.2fx' "$(echo "${T[$1]} / ${T[$2]}" | bc -l)"; else printf -- '-'; fi; }
row() { echo "| $1 | $(fig "${2}_ims") | $(fig "${2}_ed") | $(fig "${2}_rm") | $(ratio "${2}_ed" "${2}_ims") | $(ratio "${2}_rm" "${2}_ims") |"; }
echo "| case ($STORE, $SIZE image) | imgstore s | export-diff pipe s | rbd-mirror s | vs pipe | vs rbd-mirror |"
echo "|---|---|---|---|---|---|"
row "initial sync, $SIZE written" init
row "delta of $DELTA in 64 KiB random writes" delta
row "full overwrite of $SIZE" over
echo
# the initial sync against the copy limit, as a rate and a share (a table: bench/all.sh
# takes the median of every row over the runs)
pct() { if [ -n "${T[$1]:-}" ]; then printf '%.0f%%' "$(echo "100 * ${T[limit]} / ${T[$1]}" | bc -l)"; else printf -- '-'; fi; }
mibs() { if [ -n "${T[$1]:-}" ]; then printf '%.0f' "$(echo "$BYTES / 1048576 / ${T[$1]}" | bc -l)"; else printf -- '-'; fi; }
echo "| initial sync of $SIZE against the copy limit | s | MiB/s | share of the limit |"
echo "|---|---|---|---|"
echo "| copy limit (rbd bench: read on a while writing on b, 16 x 4 MiB) | $(fig limit) | $(mibs limit) | 100% |"
echo "| imgstore | $(fig init_ims) | $(mibs init_ims) | $(pct init_ims) |"
echo "| snap + export-diff pipe | $(fig init_ed) | $(mibs init_ed) | $(pct init_ed) |"
echo "| rbd-mirror | $(fig init_rm) | $(mibs init_rm) | $(pct init_rm) |"
echo
# the delta against the delta limit: the whole cycle and, for imgstore, its copy phase alone
# (rows named apart from the copy limit's: bench/all.sh takes the median of rows by their name)
# phases_of CASE: the phases of imgstore's cycle of CASE, as its log says them ("open 0.03 ...")
phases_of() { grep -o 'cycle of .*' "$DIR/$1.log" 2>/dev/null | tail -1 | sed 's/^[^:]*: //; s/ s$//' || true; }
copy_of() { phases_of "$1" | grep -o 'copy [0-9.]*' | cut -d' ' -f2 || true; }
if runs ims; then T[delta_copy]=$(copy_of delta); fi
dpct() { if [ -n "${T[$1]:-}" ]; then printf '%.0f%%' "$(echo "100 * ${T[dlimit]} / ${T[$1]}" | bc -l)"; else printf -- '-'; fi; }
echo "| delta of $DELTA against the delta limit | s | share of the limit |"
echo "|---|---|---|"
echo "| delta limit (rbd bench: random 64 KiB reads on a while writing on b, 64 at once; without the tools' start) | $(fig dlimit) | 100% |"
echo "| delta: imgstore, the cycle | $(fig delta_ims) | $(dpct delta_ims) |"
echo "| delta: imgstore, its copy phase | $(fig delta_copy) | $(dpct delta_copy) |"
echo "| delta: snap + export-diff pipe | $(fig delta_ed) | $(dpct delta_ed) |"
echo "| delta: rbd-mirror | $(fig delta_rm) | $(dpct delta_rm) |"
echo
if runs ims; then
  echo "imgstore peak RSS during the initial sync: $((RSS_KB / 1024)) MiB"
  echo
  # the fixed cost of a cycle: what its path spends outside the copy (the snapshot on the
  # primary, the seal on the secondary, retention), from the phases ims-repl logs
  echo "| imgstore cycle, s | open + mark + check | snap | plan | copy | seal | retention | fixed cost (all but plan and copy) |"
  echo "|---|---|---|---|---|---|---|---|"
  for c in init delta over; do
    line=$(phases_of "$c")
    [ -n "$line" ] || continue
    echo "$line" | awk -v c="$c" '{
      for (i = 1; i + 1 <= NF; i += 2) { v[$i] += $(i + 1); all += $(i + 1) }
      pre = v["open"] + v["mark"] + v["check"]
      printf "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", c, pre, v["snap"], v["plan"],
        v["copy"], v["seal"], v["retention"], all - v["plan"] - v["copy"] }'
  done
fi
[ -n "$MONINT" ] && echo "monitors' paxos_propose_interval: $MONINT s (Ceph ships 1 s)"
exit 0

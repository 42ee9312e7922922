#!/usr/bin/env bash
# Whole-site forced failover benchmark (recovery time), in one run on the same two sandbox sites:
#   imgstore: IMAGES images created on site a with the CLI, replicated to site b
#     (`imgstore repl enable --to b --rpo 60s`, `imgstore repl sync`); site a frozen; timed:
#     `imgstore repl failover --from a --to b --force` asked of site b's daemon, from the call
#     until it returns;
#   rbd-mirror in snapshot mode, set up as bench/repl.sh does (pool mirroring in image mode on
#     both sites, peer bootstrap, an rbd-mirror daemon on site b, `rbd mirror image enable IMG
#     snapshot`, waited until synced): IMAGES other images of the same size and writes; with the
#     same site a frozen, timed: `rbd mirror pool promote --force rbd` on site b, the one command
#     that promotes every image of a pool (the rbd tool runs rbd_concurrent_management_ops, 10,
#     promotions at a time).
# After each: every image is checked primary on site b, and a few take a write there.
# --fault freeze (the default): site a is frozen with `scripts/sandbox freeze-site` (SIGSTOP of
# its Ceph daemons; its imgstored keeps running), and the timing starts once site b's daemon
# reports imgstore_site_up{site="a"} 0. --fault partly: site a answers partly instead: a CRUSH
# rule leaves about a quarter of its pool's PGs without an OSD (tests/lib/sandbox.sh,
# partly_split_up), and the timing starts once site b's daemon reports
# imgstore_site_partly{site="a"} 1 (and two more probe rounds, 16 s); imgstore's failover then also
# asks site a, which fences and demotes the copies that answer, and returns once every image is
# the primary (Operation.decided): the table gives that, and the operation's end (`op wait`).
# imgstore runs first, rbd-mirror second, in the same fault. RUNS times, on a fresh pair of sites
# each time; prints a Markdown table.
#
#   bench/failover.sh [--images 100] [--runs 3] [--size 64M] [--write 4M] [--store memstore|bluestore] [--fault freeze|partly] [--dir DIR]
# memstore by default: 2 x IMAGES small images fit in RAM, and sites start in half the time.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=100 RUNS=3 SIZE=64M WRITE=4M STORE=memstore DIR="" BUILD=${BUILD:-build} JOBS=4 FAULT=freeze
. tests/lib/bench.sh
# conf_of, ceph_site, partly_split_up (its check_or_stop, without tap.sh: a failure ends the run)
. tests/lib/sandbox.sh
check_or_stop() { local what=$1; shift; "$@" || { echo "bench: $what: failed" >&2; exit 1; }; }
options "[--images 100] [--runs 3] [--size 64M] [--write 4M] [--store memstore|bluestore] [--fault freeze|partly] [--dir DIR]" images=IMAGES runs=RUNS size=SIZE write=WRITE store=STORE fault=FAULT dir=DIR -- "$@"
[[ "$IMAGES" =~ ^[1-9][0-9]*$ && "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "--images and --runs take a positive number" >&2; exit 2; }
[[ "$FAULT" = freeze || "$FAULT" = partly ]] || { echo "--fault is freeze or partly" >&2; exit 2; }
[ -x "$BUILD/daemon/imgstored" ] && [ -x "$BUILD/cli/imgstore" ] || { echo "build first: make build" >&2; exit 1; }
command -v rbd-mirror >/dev/null || { echo "rbd-mirror is missing (scripts/install-deps)" >&2; exit 1; }
[ -n "$DIR" ] || DIR=$(mktemp -d /tmp/bench-failover.XXXX)
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
SB=$DIR/sandbox
# the binaries of this run, copied once: a rebuild during a run does not change what is measured
mkdir -p "$DIR/bin"
cp "$BUILD/daemon/imgstored" "$BUILD/cli/imgstore" "$DIR/bin/"
CLI=$DIR/bin/imgstore
"$CLI" --version >/dev/null || { echo "bench: $BUILD/cli/imgstore does not run (a build in progress?)" >&2; exit 1; }

MIRROR_PID="" FROZEN=0 R=$DIR
stop_mirror() {
  [ -n "$MIRROR_PID" ] || return 0
  local i
  kill "$MIRROR_PID" 2>/dev/null || true
  # it may take a while to let go of a frozen peer: 10 s, then KILL
  for i in $(seq 1 50); do kill -0 "$MIRROR_PID" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$MIRROR_PID" 2>/dev/null || true
  wait "$MIRROR_PID" 2>/dev/null || true
  MIRROR_PID=""
}
teardown() {
  # under set -e a failing last command of an && list would end the trap before the sandbox
  # is down: every step here ignores its status
  stop_mirror
  if [ "$FROZEN" = 1 ]; then scripts/sandbox thaw-site "$SB" a >>"$R/teardown.log" 2>&1 || true; FROZEN=0; fi
  scripts/sandbox down "$SB" >>"$R/teardown.log" 2>&1 || true
  return 0
}
cleanup() {
  teardown
  rm -rf "$DIR/bin"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
say() { echo "bench: $*" >&2; }
die() { say "$*"; say "logs: $R"; exit 1; }
# wait_until SECS CMD...: run CMD every second until it succeeds; at most SECS rounds and SECS s
wait_until() {
  local secs=$1 end=$((SECONDS + $1)) i
  shift
  for ((i = 0; i < secs; i++)); do
    "$@" && return 0
    [ $SECONDS -lt $end ] || return 1
    sleep 1
  done
  return 1
}
# each FUNC NAME...: FUNC NAME for every NAME, JOBS at once; fails if one of them failed
each() {
  local f=$1 n fails=0 p
  shift
  local -a pids=()
  for n in "$@"; do
    "$f" "$n" &
    pids+=($!)
    if [ ${#pids[@]} -ge $JOBS ]; then
      wait "${pids[0]}" || fails=$((fails + 1))
      pids=("${pids[@]:1}")
    fi
  done
  for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
  [ $fails -eq 0 ]
}

declare -a IMS=() RM=()
for ((k = 1; k <= IMAGES; k++)); do IMS+=("$(printf 'ims-%03d' $k)"); RM+=("$(printf 'rm-%03d' $k)"); done
declare -a T_IMS=() E_IMS=() T_RM=() P_IMS=() P_RM=() NOTES=()
BAD=0

# ---- one run: fresh sites, setup, freeze, the two failovers, checks, teardown
run_once() {
  local run=$1 t0 t1 rc n since
  R=$DIR/run-$run
  rm -rf "$R"
  mkdir -p "$R"
  fresh_sandbox "$SB"
  scripts/sandbox up "$SB" --sites 2 --store "$STORE" --imgstored "$DIR/bin/imgstored" >"$R/sandbox-up.log" 2>&1 ||
    die "scripts/sandbox up failed (see $R/sandbox-up.log)"
  . "$SB/env"
  A=$CEPH_CONF_A B=$CEPH_CONF_B
  ra() { rbd -c "$A" "$@" 2>>"$R/setup.log"; }
  rb() { rbd -c "$B" "$@" 2>>"$R/setup.log"; }
  ims() { "$CLI" "$@" 2>>"$R/setup.log"; } # site a's daemon (IMGSTORE_SERVER from the env file)

  # rbd-mirror: image-mode mirroring on both sites, site b pulls from site a
  mirror_start "$A" "$B" "$R" "$R/setup.log"

  # IMAGES images for each, SIZE with WRITE written in 1 MiB random writes
  say "run $run: creating $IMAGES imgstore images and $IMAGES rbd-mirror images ($SIZE, $WRITE written)"
  setup_ims() {
    ims image create "rbd/$1" --size "$SIZE" >/dev/null &&
      ra bench --io-type write --io-size 1M --io-total "$WRITE" --io-pattern rand "rbd/$1" >/dev/null &&
      ims repl enable "rbd/$1" --to b --rpo 60s >/dev/null &&
      ims repl sync "rbd/$1" >/dev/null
  }
  setup_rm() {
    ra create --size "$SIZE" "rbd/$1" &&
      ra bench --io-type write --io-size 1M --io-total "$WRITE" --io-pattern rand "rbd/$1" >/dev/null &&
      ra mirror image enable "rbd/$1" snapshot >/dev/null
  }
  t0=$(now)
  each setup_ims "${IMS[@]}" || die "run $run: creating or replicating the imgstore images failed (see $R/setup.log)"
  since=$(date +%s)
  each setup_rm "${RM[@]}" || die "run $run: creating or mirroring the rbd-mirror images failed (see $R/setup.log)"

  # every imgstore image sealed on site b, as site a's daemon reports it
  ims_sealed() {
    n=$(ims --format json repl status | jq '[.[] | select((.image | startswith("rbd/ims-")) and .target == "b"
      and .state == "idle" and (.last_sealed_snapshot // "") != "")] | length') && [ "$n" = "$IMAGES" ]
  }
  wait_until 120 ims_sealed || die "run $run: only ${n:-0} of $IMAGES imgstore images sealed on site b"
  # every rbd-mirror image synced: site b replaying, idle, its snapshot the remote's newest
  rm_synced() {
    n=$(rb mirror pool status --verbose --format json rbd | jq --argjson since "$since" '[.images[]?
      | select((.name | startswith("rm-")) and (.description // "" | startswith("replaying, ")))
      | (.description | ltrimstr("replaying, ") | try fromjson catch {})
      | select(.replay_state == "idle" and .remote_snapshot_timestamp >= $since
        and .local_snapshot_timestamp == .remote_snapshot_timestamp)] | length') && [ "$n" = "$IMAGES" ]
  }
  wait_until $((300 + 6 * IMAGES)) rm_synced || die "run $run: rbd-mirror synced only ${n:-0} of $IMAGES images"
  say "run $run: all replicated in $(printf '%.0f' "$(secs "$t0" "$(now)")") s"

  # site a stops answering (or answers partly); site b's daemon notices within its probe interval
  local frozen_at=$SECONDS
  if [ "$FAULT" = partly ]; then
    partly_split_up a bench 3 >>"$R/sandbox-up.log" 2>&1 # ROOT, VOID, SPLIT, NONE, OSD, HOST
    ceph_site a osd pool set rbd crush_rule "$SPLIT" >>"$R/sandbox-up.log" 2>&1 ||
      die "run $run: cannot set the split rule on site a's pool rbd"
    a_faulty_on_b() {
      curl -s --max-time 5 --cacert "$IMGSTORE_CA_FILE" "$IMGSTORE_SERVER_B/metrics" |
        grep -q '^imgstore_site_partly{site="a"} 1$'
    }
  else
    scripts/sandbox freeze-site "$SB" a >>"$R/sandbox-up.log" 2>&1
    FROZEN=1
    a_faulty_on_b() {
      curl -s --max-time 5 --cacert "$IMGSTORE_CA_FILE" "$IMGSTORE_SERVER_B/metrics" |
        grep -q '^imgstore_site_up{site="a"} 0$'
    }
  fi
  wait_until 60 a_faulty_on_b || die "run $run: site b's daemon does not report site a $FAULT 60 s after the fault"
  # and two more probe rounds (the sandbox's daemons probe every 5 s; a round waits 2.5 s more
  # at most): a copy in a PG silent in two probes in a row is passed by
  local noticed=$SECONDS
  while [ $((SECONDS - frozen_at)) -lt 10 ] || [ $((SECONDS - noticed)) -lt 16 ]; do sleep 1; done
  [ "$FAULT" != partly ] || echo "site a: $(IMGSTORE_SERVER=$IMGSTORE_SERVER_B "$CLI" site status a --output json 2>/dev/null |
    jq -c '{health, pgs, pgs_unanswered}')" >>"$R/checks.log"

  # imgstore: one forced failover of every image whose primary was site a, asked of site b
  rc=0
  t0=$(now)
  IMGSTORE_SERVER=$IMGSTORE_SERVER_B timeout 900 "$CLI" repl failover --from a --to b --force \
    >"$R/failover.out" 2>"$R/failover.err" || rc=$?
  t1=$(now)
  T_IMS[$run]=$(secs "$t0" "$t1")
  # checks: every copy on site b primary when the command returned
  n=0
  for img in "${IMS[@]}"; do
    [ "$(rbd -c "$B" image-meta get "rbd/$img" imgstore.repl.role 2>/dev/null || true)" = secondary ] || n=$((n + 1))
  done
  P_IMS[$run]="$n/$IMAGES"
  # it returned once every image was the primary, the old copies still at work: their end
  local op
  op=$(sed -nE 's/^imgstore: operation ([^ ]+) goes on in the daemon: .*/\1/p' "$R/failover.err" | head -1)
  E_IMS[$run]=${T_IMS[$run]}
  if [ -n "$op" ]; then
    cp "$R/failover.out" "$R/failover-decided.out"
    IMGSTORE_SERVER=$IMGSTORE_SERVER_B timeout 900 "$CLI" op wait "$op" >"$R/failover.out" 2>>"$R/failover.err" || rc=$?
    E_IMS[$run]=$(secs "$t0" "$(now)")
  fi
  local said ok_lines
  ok_lines=$(grep -c '^  image rbd/ims-[0-9]* ok ' "$R/failover.out" || true)
  said=$(grep -o 'in [0-9.]*s (slowest [0-9.]*s)' "$R/failover.out" | head -1 || true)
  [ "$rc" = 0 ] || say "run $run: imgstore repl failover exited $rc: $(head -c 300 "$R/failover.err")"
  [ "$n" = "$IMAGES" ] && [ "$ok_lines" = "$IMAGES" ] && [ "$rc" = 0 ] || BAD=1
  for img in "${IMS[0]}" "${IMS[$((IMAGES / 2))]}" "${IMS[$((IMAGES - 1))]}"; do
    timeout 60 rbd -c "$B" bench --io-type write --io-size 64K --io-total 64K "rbd/$img" >/dev/null 2>>"$R/checks.log" ||
      { say "run $run: rbd/$img is not writable on site b after imgstore's failover"; P_IMS[$run]+=" (not writable)"; BAD=1; }
  done
  say "run $run: imgstore $(printf '%.2f' "${T_IMS[$run]}") s (its operation's end $(printf '%.2f' "${E_IMS[$run]}") s), $ok_lines ok lines, ${P_IMS[$run]} primary on site b (the daemon: ${said:-?})"

  # rbd-mirror: what its operator runs for a lost site, `rbd mirror pool promote --force` (the
  # rbd tool promotes the pool's non-primary images, rbd_concurrent_management_ops at a time)
  local okp=0
  t0=$(now)
  if timeout 1800 rbd -c "$B" mirror pool promote --force rbd >"$R/promote.log" 2>&1; then
    okp=$IMAGES
  fi
  t1=$(now)
  T_RM[$run]=$(secs "$t0" "$t1")
  n=0
  for img in "${RM[@]}"; do
    [ "$(rbd -c "$B" info --format json "rbd/$img" 2>/dev/null | jq -r '.mirroring.primary // false' || true)" = true ] && n=$((n + 1))
  done
  P_RM[$run]="$n/$IMAGES"
  [ "$n" = "$IMAGES" ] && [ "$okp" = "$IMAGES" ] || BAD=1
  for img in "${RM[0]}" "${RM[$((IMAGES / 2))]}" "${RM[$((IMAGES - 1))]}"; do
    timeout 60 rbd -c "$B" bench --io-type write --io-size 64K --io-total 64K "rbd/$img" >/dev/null 2>>"$R/checks.log" ||
      { say "run $run: rbd/$img is not writable on site b after its promotion"; P_RM[$run]+=" (not writable)"; BAD=1; }
  done
  say "run $run: rbd-mirror $(printf '%.2f' "${T_RM[$run]}") s, rbd mirror pool promote $([ $okp = "$IMAGES" ] && echo succeeded || echo failed), ${P_RM[$run]} primary on site b"
  NOTES[$run]="run $run: imgstore's operation reported ${said:-nothing}; rbd mirror pool promote --force: $(tail -1 "$R/promote.log")"
  teardown
}

for ((run = 1; run <= RUNS; run++)); do run_once "$run"; done
rm -rf "$SB"

# median and range of a list of numbers
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }'; }
echo
fault_said=frozen
[ "$FAULT" = partly ] && fault_said="answering partly"
echo "| $IMAGES images ($SIZE, $WRITE written, $STORE), site a $fault_said | imgstore repl failover --force s | promoted | its operation's end s | rbd mirror pool promote --force s | promoted | rbd-mirror / imgstore |"
echo "|---|---|---|---|---|---|---|"
for ((run = 1; run <= RUNS; run++)); do
  printf '| run %d | %.2f | %s | %.2f | %.2f | %s | %.1fx |\n' "$run" "${T_IMS[$run]}" "${P_IMS[$run]}" "${E_IMS[$run]}" "${T_RM[$run]}" "${P_RM[$run]}" \
    "$(echo "${T_RM[$run]} / ${T_IMS[$run]}" | bc -l)"
done
m_ims=$(median "${T_IMS[@]}") m_rm=$(median "${T_RM[@]}") m_end=$(median "${E_IMS[@]}")
printf '| median of %d | %.2f | | %.2f | %.2f | | %.1fx |\n' "$RUNS" "$m_ims" "$m_end" "$m_rm" "$(echo "$m_rm / $m_ims" | bc -l)"
printf '| range | %s | | %s | %s | | |\n' "$(range "${T_IMS[@]}")" "$(range "${E_IMS[@]}")" "$(range "${T_RM[@]}")"
echo
for ((run = 1; run <= RUNS; run++)); do echo "${NOTES[$run]}"; done
echo "logs: $DIR"
if [ "$BAD" = 1 ]; then
  echo "bench: not every image was promoted and writable on site b (see the table and $DIR/run-*)" >&2
  exit 1
fi
exit 0

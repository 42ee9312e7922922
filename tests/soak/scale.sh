#!/usr/bin/env bash
# Scale: N images replicated from site a to site b with one RPO by one or two imgstored of site
# a, under a light change rate, for MINUTES; with two daemons, one may be killed (kill -9) after
# KILL_AFTER minutes and the other must take its images over.
#
#   tests/soak/scale.sh [--images 500] [--minutes 30] [--rpo 60] [--daemons 1|2]
#                       [--kill-after MIN] [--lock-seconds 60] [--changes K] [--dir DIR]
#                       [--same-host 0|1] [--object-size SIZE] [--join-late 0|1]
#                       [--blocklist-after S] (make scale)
#
# The change rate: every round (about 10 s) K images drawn at random (default N/50, at least 2)
# each get 256 KiB of 64 KiB random writes (`rbd bench`), so about K x 25.6 KiB/s and 6K images
# changed a minute. Every round samples each daemon's /metrics (the lag of every pair; an
# image's lag is the smallest any live daemon reports), its CPU seconds (utime + stime of
# /proc/PID/stat) and RSS; the samples go to DIR/scale-samples.csv, the summary to
# DIR/scale-summary.txt.
#
# --object-size (rbd's units, e.g. 256K): the images are made by `rbd create --object-size`
# instead of `imgstore image create` (4 MiB objects). The sandbox's memstore OSDs (8 GiB each,
# in RAM) copy a whole object when a write follows a snapshot: with 4 MiB objects, 500 images
# and this change rate fill them in about 20 minutes; 256 KiB objects copy 16 times less.
#
# The second daemon is site a's imgstored with a config of its own (port, socket, spool, log,
# pid file DIR/site-a/run/imgstored-2.pid) and `instance = scale-2`: the replication lock's
# cookie is the daemon's instance name (default: the host name) and site, and a daemon breaks a
# lock held under its own cookie as its own previous run's, so two daemons of a site under one
# name would break each other's locks (--same-host 1 leaves the name unset and shows it).
# Which daemon ran each pair's cycles: imgstore_replication_syncs_total of each daemon (it
# counts the cycles that daemon sealed). The takeover: the time from the kill until the survivor
# has sealed a cycle of every image the killed daemon ran (imgstore_replication_runs_here),
# against 2 x lock-seconds.
# --lock-seconds sets `lock_expiry` in both daemons' configs (site a's first daemon is
# restarted with it). The daemons share the pairs: each image's home is one of them (see
# docs/REPLICATION.md); --join-late 1 starts the second daemon only once every image is sealed
# (by the first), which must then let go of the second's share of them.
#
# --blocklist-after S (with --daemons 2): S seconds after both daemons run (after the second
# joins, with --join-late 1), site a's cluster blocklists daemon 1's clients of site a (their
# addresses from its log) for an hour, as a cluster does with a client it fences. Daemon 1 must
# get a new client without a restart (its probe), come back among the site's daemons, and every
# image must be sealed again within its RPO; with --kill-after, the kill comes after that, and
# daemon 1 (the one blocklisted) takes daemon 2's images over.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
N=500 MINUTES=30 RPO=60 DAEMONS=1 KILL_AFTER=0 LOCK=60 K=0 SAME_HOST=0 OBJECT_SIZE="" JOIN_LATE=0
BL_AFTER=0
DIR=/tmp/imgstore-scale BUILD=${BUILD:-build}
. tests/lib/bench.sh
options "[--images N] [--minutes M] [--rpo S] [--daemons 1|2] [--kill-after MIN] [--lock-seconds S] [--changes K] [--dir DIR] [--same-host 0|1] [--object-size SIZE] [--join-late 0|1] [--blocklist-after S]" \
  images=N minutes=MINUTES rpo=RPO daemons=DAEMONS kill-after=KILL_AFTER lock-seconds=LOCK \
  changes=K dir=DIR same-host=SAME_HOST object-size=OBJECT_SIZE join-late=JOIN_LATE \
  blocklist-after=BL_AFTER -- "$@"
[ "$LOCK" -ge 3 ] 2>/dev/null || { echo "scale: --lock-seconds is 3 or more" >&2; exit 2; }
[ "$DAEMONS" = 1 ] || [ "$DAEMONS" = 2 ] || { echo "scale: --daemons 1 or 2" >&2; exit 2; }
[ "$KILL_AFTER" = 0 ] || [ "$DAEMONS" = 2 ] || { echo "scale: --kill-after needs --daemons 2" >&2; exit 2; }
[ "$JOIN_LATE" = 0 ] || [ "$DAEMONS" = 2 ] || { echo "scale: --join-late needs --daemons 2" >&2; exit 2; }
[ "$BL_AFTER" -ge 0 ] 2>/dev/null || { echo "scale: --blocklist-after is seconds (0: none)" >&2; exit 2; }
[ "$BL_AFTER" = 0 ] || [ "$DAEMONS" = 2 ] || { echo "scale: --blocklist-after needs --daemons 2" >&2; exit 2; }
[ "$K" -gt 0 ] || K=$((N / 50 > 2 ? N / 50 : 2))
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
CLI=$BUILD/cli/imgstore
BIN=$BUILD/daemon/imgstored
TICK=$(getconf CLK_TCK)
say() { echo "scale: $(date -u +%T) $*"; }

PID2="" SOCK2=""
cleanup() {
  # the second daemon by its pid, if it still runs with its own config; then the sandbox
  if [ -n "$PID2" ] && tr '\0' ' ' 2>/dev/null <"/proc/$PID2/cmdline" | grep -qF imgstored-2.conf; then
    kill -TERM "$PID2" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$PID2" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID2" 2>/dev/null
  fi
  for x in "${BLOCKED[@]}"; do timeout 30 ceph -c "$CEPH_CONF_A" osd blocklist rm "$x" >/dev/null 2>&1; done
  scripts/sandbox down "$DIR" >/dev/null 2>&1
}
fresh_sandbox "$DIR"
trap cleanup EXIT
scripts/sandbox up "$DIR" --sites 2 --imgstored "$BIN" >/dev/null || { not_ok "sandbox up"; finish; }
. "$DIR/env"
A=$DIR/site-a
if [ "$LOCK" != 60 ]; then # [defaults] is the last section of the sandbox's config
  echo "lock_expiry = ${LOCK}s" >>"$A/imgstored.conf"
  { scripts/sandbox stop-daemon "$DIR" a && scripts/sandbox start-daemon "$DIR" a; } >/dev/null ||
    { not_ok "site a's imgstored restarted with lock_expiry = ${LOCK}s"; finish; }
fi
PID1=$(cat "$A/run/imgstored.pid")
SOCK1=$A/run/imgstored.sock
export IMGSTORE_SERVER=unix:$SOCK1

start_second() { # site a's second imgstored: its own port, socket, spool, log and pid file
  local port
  port=$(free_port)
  SOCK2=$A/run/imgstored-2.sock
  mkdir -p "$A/spool-2"
  sed -e "s|^listen = .*|listen = 127.0.0.1:$port|" -e "s|^unix_socket = .*|unix_socket = $SOCK2|" \
    -e "s|^spool_dir = .*|spool_dir = $A/spool-2|" -e "s|^audit_log = .*|audit_log = $A/log/audit-2.log|" \
    "$A/imgstored.conf" >"$A/imgstored-2.conf"
  if [ "$SAME_HOST" != 1 ]; then
    sed -i "s|^\[server\]\$|[server]\ninstance = scale-2|" "$A/imgstored-2.conf"
  fi
  "$BIN" --config "$A/imgstored-2.conf" </dev/null >>"$A/log/imgstored-2.log" 2>&1 9>&- &
  PID2=$!
  disown "$PID2" # no "Killed" line from bash when the run kills it
  echo "$PID2" >"$A/run/imgstored-2.pid"
  for _ in $(seq 120); do
    curl -sf --max-time 2 --unix-socket "$SOCK2" http://localhost/healthz >/dev/null && return 0
    sleep 0.5
  done
  return 1
}
BLOCKED=()
if [ "$DAEMONS" = 2 ] && [ "$JOIN_LATE" = 0 ]; then
  start_second || { not_ok "a second imgstored on site a (see $A/log/imgstored-2.log)"; finish; }
  say "two imgstored on site a: pids $PID1 and $PID2"
fi

# N images of 16 MiB, created and enabled 8 at a time
t0=$(date +%s)
export CLI RPO OBJECT_SIZE
seq 1 "$N" | xargs -P 8 -I{} sh -c '{ if [ -n "$OBJECT_SIZE" ]; then
    rbd -c "$CEPH_CONF_A" create --size 16M --object-size "$OBJECT_SIZE" rbd/scale-{}; else
    "$CLI" image create rbd/scale-{} --size 16M >/dev/null; fi; } &&
  "$CLI" repl enable rbd/scale-{} --to b --rpo "${RPO}s" >/dev/null || echo "scale: scale-{} failed" >&2'
rc=$?
setup_s=$(( $(date +%s) - t0 ))
check "$N images created and enabled with a ${RPO}s RPO in ${setup_s}s" test "$rc" = 0
[ "$rc" = 0 ] || finish

# sample: per daemon, its metrics, CPU seconds and RSS; the lag of each image is the smallest
# a live daemon reports (the one that sealed last knows first)
alive() { [ -n "$1" ] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF 'imgstored --config'; }
cpu_s() { awk -v t="$TICK" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / t }' "/proc/$1/stat"; }
rss_mib() { awk '/^VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$1/status"; }
metrics() { curl -sf --max-time 10 --unix-socket "$1" http://localhost/metrics; }
M=$DIR/scale-metrics
mkdir -p "$M"
sample() { # sets LAGGED (images with a sealed snapshot), WORST, OVER, CPU1/2, RSS1/2
  local i pid sock
  rm -f "$M"/m.*
  for i in 1 2; do
    pid=$([ $i = 1 ] && echo "$PID1" || echo "$PID2"); sock=$([ $i = 1 ] && echo "$SOCK1" || echo "$SOCK2")
    if alive "$pid"; then
      metrics "$sock" >"$M/m.$i"
      printf -v "CPU$i" '%s' "$(cpu_s "$pid")"; printf -v "RSS$i" '%s' "$(rss_mib "$pid")"
    else
      printf -v "CPU$i" '%s' -; printf -v "RSS$i" '%s' -
    fi
  done
  read -r LAGGED WORST OVER < <(cat "$M"/m.* 2>/dev/null | awk -v rpo="$RPO" '
    /^imgstore_replication_lag_seconds\{/ { split($1, a, "\""); v = $2 + 0
      if (!(a[2] in lag) || v < lag[a[2]]) lag[a[2]] = v }
    END { n = 0; w = 0; o = 0
      for (i in lag) { n++; if (lag[i] > w) w = lag[i]; if (lag[i] > rpo) o++ }
      printf "%d %.1f %d\n", n, w, o }')
}
# daemon 2's images (it ran them before the kill) that daemon 1 has not sealed since the kill:
# its count of sealed cycles of each (imgstore_replication_syncs_total) against the count just
# before the kill. (Not the lag: a cycle daemon 2 began before the kill and daemon 1 resumed
# seals daemon 2's snapshot, older than the kill.)
taken_over_left() {
  awk 'FILENAME == ARGV[1] { v[$1] = 1; next }
    /^imgstore_replication_syncs_total\{/ { split($1, a, "\"")
      if (FILENAME == ARGV[2]) b[a[2]] = $2 + 0; else if ((a[2] in v) && $2 + 0 > b[a[2]]) delete v[a[2]] }
    END { print length(v) }' "$M/victims" "$M/before-kill.1" "$M/m.1"
}
failures_of() { awk '/^imgstore_replication_failures_total\{/ { s += $2 } END { print s + 0 }' "$1"; }
syncs_of() { # FILE: "image syncs" of the pairs this daemon sealed at least once
  awk '/^imgstore_replication_syncs_total\{/ { split($1, a, "\""); if ($2 > 0) print a[2], $2 }' "$1"
}

# The blocklist of daemon 1's clients of site a, then every second (the change rate paused) up to
# 3 x the lock expiry plus the RPO: bl_back, the seconds until daemon 1 has a new client and both
# daemons see two of the site's daemons again; bl_sealed, until every image has a seal newer than
# the blocklist (in either daemon's view). The lags seen meanwhile count in the run's worst.
max_of() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b) ? a : b }'; }
# a sample's lag into the run's worst (the steady part's, and the whole run's)
fold_sample() {
  if [ "$steady" != 0 ]; then
    worst=$(max_of "$WORST" "$worst")
    [ "$OVER" -gt "$over_max" ] && over_max=$OVER
  fi
  [ "$OVER" -gt "$over_all" ] && over_all=$OVER
  worst_all=$(max_of "$WORST" "$worst_all")
}
metric_in() { awk -v m="$2" '$1 == m { v = $2 } END { print v + 0 }' "$1"; }
blocklist_first() {
  local rec0 x t0 now rec1 d1 d2 fresh
  mapfile -t BLOCKED < <(grep -o "site 'a': connected as [^ ]* (client\.[0-9]* at [^)]*)" \
    "$A/log/imgstored.log" | sed 's/.* at \(.*\))$/\1/' | sort -u)
  metrics "$SOCK1" >"$M/before-bl.1"
  rec0=$(metric_in "$M/before-bl.1" 'imgstore_site_reconnects_total{site="a"}')
  for x in "${BLOCKED[@]}"; do
    timeout 30 ceph -c "$CEPH_CONF_A" osd blocklist add "$x" 3600 >/dev/null 2>&1 ||
      not_ok "site a blocklists $x"
  done
  t0=$(date +%s); blocked=1
  say "blocklisted daemon 1's clients of site a: ${BLOCKED[*]}"
  for _ in $(seq $((3 * LOCK + RPO))); do
    sleep 1
    now=$(date +%s)
    sample
    fold_sample
    if [ -z "$bl_back" ] && [ -s "$M/m.1" ] && [ -s "$M/m.2" ]; then
      rec1=$(metric_in "$M/m.1" 'imgstore_site_reconnects_total{site="a"}')
      d1=$(metric_in "$M/m.1" imgstore_replication_daemons)
      d2=$(metric_in "$M/m.2" imgstore_replication_daemons)
      [ "$rec1" -gt "$rec0" ] && [ "$d1" = 2 ] && [ "$d2" = 2 ] && bl_back=$((now - t0))
    fi
    if [ -z "$bl_sealed" ]; then # images with a seal newer than the blocklist, lags of both views
      fresh=$(cat "$M"/m.* | awk -v since="$((now - t0))" '/^imgstore_replication_lag_seconds\{/ {
        split($1, a, "\""); if ($2 + 0 < since) f[a[2]] = 1 } END { print length(f) }')
      [ "$fresh" -ge "$N" ] && bl_sealed=$((now - t0))
    fi
    [ -n "$bl_back" ] && [ -n "$bl_sealed" ] && break
  done
  alive "$PID1" && [ "$(cat "$A/run/imgstored.pid")" = "$PID1" ] && bl_pid_kept=1
  say "after the blocklist: daemon 1 back among the site's daemons in ${bl_back:-(never)}s, every image sealed again in ${bl_sealed:-(never)}s"
}

CSV=$DIR/scale-samples.csv
echo "utc,elapsed_s,sealed_images,worst_lag_s,over_rpo,cpu1_s,rss1_mib,cpu2_s,rss2_mib,note" >"$CSV"
say "$N images, RPO ${RPO}s, $DAEMONS daemon(s); $K images x 256 KiB every ~10 s for $MINUTES minutes"
start=$(date +%s)
end=$((start + MINUTES * 60))
kill_at=$([ "$KILL_AFTER" != 0 ] && echo $((start + KILL_AFTER * 60)) || echo 0)
bl_at=$([ "$BL_AFTER" != 0 ] && [ "$JOIN_LATE" = 0 ] && echo $((start + BL_AFTER)) || echo 0)
blocked=0 bl_back="" bl_sealed="" bl_pid_kept=0
sealed_all=0 steady=0 worst=0 over_max=0 over_all=0 worst_all=0 cpu1_start="" cpu2_start="" rss1_max=0 rss2_max=0
killed=0 takeover="" victims="" tk_worst=0 tk_over=0
rounds=0
while [ "$(date +%s)" -lt "$end" ] && [ $rounds -lt $((MINUTES * 12 + 10)) ]; do
  rounds=$((rounds + 1))
  round_start=$(date +%s)
  for _ in $(seq 1 "$K"); do
    j=$(( (RANDOM * 32768 + RANDOM) % N + 1 ))
    timeout 60 rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 64K --io-total 256K \
      --io-pattern rand "rbd/scale-$j" >/dev/null 2>&1
  done
  note=""
  if [ "$bl_at" != 0 ] && [ $blocked = 0 ] && [ "$(date +%s)" -ge "$bl_at" ]; then
    blocklist_first
    note="blocklisted daemon 1's ${#BLOCKED[@]} clients of site a"
    [ -n "$bl_back" ] && note="$note; back among the site's daemons ${bl_back}s after"
    [ -n "$bl_sealed" ] && note="$note; every image sealed again ${bl_sealed}s after"
  fi
  if [ "$kill_at" != 0 ] && [ $killed = 0 ] && [ -n "$PID2" ] && [ "$(date +%s)" -ge "$kill_at" ]; then
    metrics "$SOCK2" >"$M/victim" && awk '/^imgstore_replication_runs_here\{/ && $2 == 1 {
      split($1, a, "\""); print a[2] }' "$M/victim" >"$M/victims"
    metrics "$SOCK1" >"$M/before-kill.1"
    # each image's home, as each daemon sees it: exactly one of them runs it
    homes=$(cat "$M/before-kill.1" "$M/victim" | awk '/^imgstore_replication_runs_here\{/ {
      split($1, a, "\""); n[a[2]] += $2 } END { k = 0; for (i in n) k += (n[i] == 1); print k + 0 }')
    # daemon 1's `repl status` names daemon 2 (its instance name) for the images daemon 2 runs
    runs2=$(awk '/^imgstore_replication_runs_here\{/ { s += $2 } END { print s + 0 }' "$M/victim")
    by2=$(IMGSTORE_SERVER=unix:$SOCK1 "$CLI" --format json repl status 2>/dev/null |
      jq '[.[] | select((.replicated_by // "") | startswith("scale-2/"))] | length')
    victims=$(wc -l <"$M/victims")
    kill -KILL "$PID2"; killed_at=$(date +%s); killed=1
    note="killed daemon 2 (pid $PID2), which ran $victims images"
    say "$note"
    # the takeover, to the second: the survivor's view every second, up to 3 x the lock expiry
    # (the change rate pauses meanwhile); its lags are the takeover's worst
    for _ in $(seq $((3 * LOCK))); do
      sample
      [ -s "$M/m.1" ] || { sleep 1; continue; }
      tk_worst=$(max_of "$WORST" "$tk_worst")
      [ "$OVER" -gt "$tk_over" ] && tk_over=$OVER
      now=$(date +%s)
      left=$(taken_over_left)
      [ "$left" = 0 ] && { takeover=$((now - killed_at)); break; }
      sleep 1
    done
    if [ -n "$takeover" ]; then
      note="$note; every image of daemon 2 sealed by daemon 1 ${takeover}s after the kill"
      say "every image of daemon 2 sealed by daemon 1 ${takeover}s after the kill"
    fi
  fi
  sample
  now=$(date +%s)
  [ "$sealed_all" = 0 ] && [ "$LAGGED" -ge "$N" ] && { sealed_all=$now; say "every image sealed once, $((now - start))s into the run"; }
  if [ "$sealed_all" != 0 ] && [ "$DAEMONS" = 2 ] && [ -z "$PID2" ]; then # --join-late 1
    start_second || { not_ok "a second imgstored on site a (see $A/log/imgstored-2.log)"; finish; }
    joined_at=$(date +%s)
    if [ "$kill_at" != 0 ]; then # KILL_AFTER of sharing first, and time for the takeover after
      kill_at=$((joined_at + KILL_AFTER * 60))
      [ $((kill_at + 3 * LOCK + 10)) -gt "$end" ] && end=$((kill_at + 3 * LOCK + 10))
    fi
    [ "$BL_AFTER" != 0 ] && bl_at=$((joined_at + BL_AFTER))
    say "a second imgstored on site a joins: pid $PID2, $((joined_at - start))s into the run"
  fi
  # the steady part: from the first sample with every image sealed and none over its RPO (the
  # first copies go first, oldest sealed first: the images sealed early wait behind them)
  [ "$steady" = 0 ] && [ "$sealed_all" != 0 ] && [ "$OVER" = 0 ] && { steady=$now; say "every image within its RPO, $((now - start))s into the run"; }
  [ -z "$cpu1_start" ] && [ "$steady" != 0 ] && { cpu1_start=$CPU1; cpu2_start=$CPU2; cpu_t0=$now; }
  [ "$cpu2_start" = - ] && alive "$PID2" && { cpu2_start=$(cpu_s "$PID2"); cpu_t2=$now; } # joined late
  fold_sample
  [ "$RSS1" != - ] && [ "$RSS1" -gt "$rss1_max" ] && rss1_max=$RSS1
  [ "$RSS2" != - ] && [ "$RSS2" -gt "$rss2_max" ] && rss2_max=$RSS2
  [ "$CPU2" != - ] && CPU2_LAST=$CPU2 T2_LAST=$now
  if [ $killed = 1 ] && [ -z "$takeover" ]; then
    if [ "$(taken_over_left)" = 0 ]; then
      takeover=$((now - killed_at))
      note="${note:+$note; }every image of daemon 2 sealed by daemon 1 ${takeover}s after the kill"
      say "every image of daemon 2 sealed by daemon 1 ${takeover}s after the kill"
    fi
  fi
  echo "$(date -u +%T),$((now - start)),$LAGGED,$WORST,$OVER,$CPU1,$RSS1,$CPU2,$RSS2,$note" >>"$CSV"
  say "sealed $LAGGED/$N worst lag ${WORST}s over RPO $OVER cpu $CPU1/$CPU2 s rss $RSS1/$RSS2 MiB"
  sleep $(( 10 - ($(date +%s) - round_start) > 0 ? 10 - ($(date +%s) - round_start) : 0 ))
done

# the end: every image within its RPO, none in error, sampled copies equal on both sites. Each
# live daemon's `repl status` is its own view (a daemon knows the seals of the pairs it ran): an
# image is within its RPO when one daemon says so, in error when every daemon says so.
status=$(for s in "$SOCK1" "$SOCK2"; do
  [ -S "$s" ] && { [ "$s" = "$SOCK1" ] || { [ $killed = 0 ] && alive "$PID2"; }; } &&
    IMGSTORE_SERVER=unix:$s "$CLI" --format json repl status
done | jq -s 'add | group_by(.image)')
within() { echo "$status" | jq '[.[] | select(any(.[]; .error == "" and .lag_seconds >= 0 and .lag_seconds <= .rpo_seconds))] | length'; }
over=$((N - $(within)))
errs=$(echo "$status" | jq '[.[] | select(all(.[]; .error != ""))] | length')
shown=$(echo "$status" | jq '[.[][] | select(.error != "")] | length')
minutes_run=$(awk -v s="$start" -v e="$(date +%s)" 'BEGIN { printf "%.1f", (e - s) / 60 }')
check "every image sealed at least once ($(( sealed_all ? sealed_all - start : -1 ))s into the run)" test "$sealed_all" != 0
check "every image within its RPO at once ($(( steady ? steady - start : -1 ))s into the run)" test "$steady" != 0
check "at the end no image over its RPO ($over)" test "$over" = 0
check "at the end no image in error on every daemon ($errs; $shown pairs in error in one daemon's view)" test "$errs" = 0
[ "$errs" = 0 ] || echo "$status" | jq -c '.[] | select(all(.[]; .error != "")) | .[0]' | head -3
# a pair the other daemon keeps is no error in this one's view: it shows that one's seals
check "at the end no pair in error in any live daemon's view ($shown)" test "$shown" = 0
check "worst lag in the steady part ${worst}s within the RPO of ${RPO}s" awk -v w="$worst" -v r="$RPO" 'BEGIN { exit !(w <= r) }'
for i in $(printf '%s\n' 1 $((N / 3)) $((2 * N / 3)) "$N" | sort -nu); do
  s=$(echo "$status" | jq -r --arg img "rbd/scale-$i" '.[][] | select(.image == $img and .error == "") | .last_sealed_snapshot' | sort | tail -1)
  a=$(rbd -c "$CEPH_CONF_A" export --no-progress "rbd/scale-$i@$s" - 2>/dev/null | sha256sum)
  b=$(rbd -c "$CEPH_CONF_B" export --no-progress "rbd/scale-$i@$s" - 2>/dev/null | sha256sum)
  check "scale-$i@$s equal on both sites" test -n "$s" -a "$a" = "$b"
done
cpu_min() { # START END SECONDS: CPU seconds a minute of the steady run
  [ -n "$1" ] && [ "$1" != - ] && [ "$2" != - ] || { echo -; return; }
  awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { printf "%.2f", (b - a) / (t / 60) }'
}
sample
t_cpu=$(( $(date +%s) - ${cpu_t0:-$(date +%s)} ))
[ "$t_cpu" -gt 0 ] || t_cpu=1
cpu1=$(cpu_min "$cpu1_start" "$CPU1" "$t_cpu")
t2=$(( ${T2_LAST:-0} - ${cpu_t2:-${cpu_t0:-0}} ))
[ "$t2" -gt 0 ] || t2=1
cpu2=$(cpu_min "$cpu2_start" "${CPU2_LAST:--}" "$t2")
if [ "$DAEMONS" = 2 ]; then
  syncs_of "$M/m.1" >"$M/s1"
  if [ -s "$M/victim" ]; then syncs_of "$M/victim" >"$M/s2"; else syncs_of "$M/m.2" >"$M/s2"; fi
  n1=$(wc -l <"$M/s1") n2=$(wc -l <"$M/s2")
  c1=$(awk '{ s += $2 } END { print s + 0 }' "$M/s1") c2=$(awk '{ s += $2 } END { print s + 0 }' "$M/s2")
  both=$(awk '{ print $1 }' "$M/s1" "$M/s2" | sort | uniq -d | wc -l)
  check "both daemons sealed cycles: daemon 1 $c1 cycles of $n1 images, daemon 2 $c2 of $n2 ($both images by both)" \
    test "$c1" -gt 0 -a "$c2" -gt 0
  # each image's home is one of the two (ceil(N / 2) at most each): daemon 2 ran about half
  check "daemon 2 ran its share: $n2 of $N images (at least a third)" test $((3 * n2)) -ge "$N"
  [ $killed = 1 ] && check "before the kill each image ran on exactly one daemon: ${homes:-0} of $N" test "${homes:-0}" = "$N"
  [ $killed = 1 ] && [ "$SAME_HOST" != 1 ] &&
    check "daemon 1's repl status named daemon 2 for the ${runs2:-0} images it ran: ${by2:-none}" \
      test "${runs2:-0}" -gt 0 -a "${by2:-x}" = "${runs2:-0}"
  f1=$(failures_of "$M/m.1")
  f2=$(if [ -s "$M/victim" ]; then failures_of "$M/victim"; else failures_of "$M/m.2"; fi)
  busy=$(cat "$A"/log/imgstored*.log | grep -c 'against other writers')
  broken=$(cat "$A"/log/imgstored*.log | grep -c 'broke the replication lock')
fi
if [ $blocked = 1 ]; then
  check "daemon 1, blocklisted by its own site, kept running (pid $PID1) and is back among the site's daemons with a new client in ${bl_back:-(never)}s" \
    test "$bl_pid_kept" = 1 -a -n "$bl_back"
  check "every image sealed again after the blocklist in ${bl_sealed:-(never)}s, within its RPO of ${RPO}s" \
    test -n "$bl_sealed" -a "${bl_sealed:-999999}" -le "$RPO"
elif [ "$BL_AFTER" != 0 ]; then
  not_ok "the blocklist was never made (the run ended before it)"
fi
# what the daemons said: every "over its RPO" line of site a's daemons (a pair's home tells it)
rpo_said=$(cat "$A"/log/imgstored*.log | grep -c 'behind, over its RPO')
if [ $killed = 1 ]; then
  # a victim's lag at the kill is within its RPO (the steady part), then the takeover adds up to
  # 2 x the lock expiry
  check "during the takeover the worst lag ${tk_worst}s, within the RPO plus 2 x ${LOCK}s; $tk_over images over the RPO at most" \
    awk -v w="$tk_worst" -v b="$((RPO + 2 * LOCK))" 'BEGIN { exit !(w <= b) }'
fi
# a takeover that fits in half the RPO (the lag at the kill is up to about half): nothing goes
# over it, and no daemon may say otherwise (a view of another daemon's pairs is no alarm)
if [ $((4 * LOCK)) -le "$RPO" ]; then
  check "no daemon said an image went over its RPO ($rpo_said lines)" test "$rpo_said" = 0
  [ "$rpo_said" = 0 ] || cat "$A"/log/imgstored*.log | grep 'behind, over its RPO' | head -3
fi
if [ $killed = 1 ]; then
  check "daemon 2's $victims images taken over in ${takeover:-(never)}s, within 2 x ${LOCK}s" \
    test -n "$takeover" -a "${takeover:-999999}" -le $((2 * LOCK))
fi
{
  echo "command: tests/soak/scale.sh --images $N --minutes $MINUTES --rpo $RPO --daemons $DAEMONS --kill-after $KILL_AFTER --lock-seconds $LOCK --changes $K${OBJECT_SIZE:+ --object-size $OBJECT_SIZE}$([ "$JOIN_LATE" = 1 ] && echo " --join-late 1")$([ "$BL_AFTER" != 0 ] && echo " --blocklist-after $BL_AFTER")"
  echo "date: $(date -u +%FT%TZ); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
  echo "change rate: $K images x 256 KiB (64 KiB random writes) a round of ~10 s ($rounds rounds)"
  echo "setup: ${setup_s}s to create and enable $N images; every image sealed $(( sealed_all ? sealed_all - start : -1 ))s into the run, every image within its RPO $(( steady ? steady - start : -1 ))s into it (the steady part from there)"
  echo "minutes: $minutes_run; worst lag in the steady part: ${worst}s (over the whole run ${worst_all}s); most images over RPO in a sample of the steady part: $over_max (over the whole run $over_all); at the end $over over, $errs in error ($shown in one view)"
  echo "cpu: daemon 1 $cpu1 s/min, daemon 2 $cpu2 s/min (steady part, $t_cpu s); max RSS daemon 1 ${rss1_max} MiB, daemon 2 ${rss2_max} MiB"
  [ "$DAEMONS" = 2 ] && echo "work: daemon 1 sealed $c1 cycles of $n1 images, daemon 2 $c2 cycles of $n2 images; failed cycles $f1 and $f2 ($busy log lines 'cannot hold ... against other writers', $broken locks broken as a previous run's)"
  [ "$DAEMONS" = 1 ] && echo "failed cycles: $(failures_of "$M/m.1")"
  [ $blocked = 1 ] && echo "blocklist of daemon 1's clients of site a: back among the site's daemons in ${bl_back:-never}s, every image sealed again in ${bl_sealed:-never}s"
  [ $killed = 1 ] && echo "takeover: ${takeover:-never}s for daemon 2's $victims images (2 x lock = $((2 * LOCK))s); worst lag during it ${tk_worst}s, at most $tk_over images over the RPO in a sample of it"
  echo "lines 'over its RPO' in site a's daemons' logs: $rpo_said"
} | tee "$DIR/scale-summary.txt"
finish

# tests/lib/sandbox.sh: the sandbox's sites and daemons, for the shell tests that run through
# tests/with-sandbox (its env: CEPH_CONF_A, IMGSTORE_SERVER_A, IMGSTORE_SANDBOX...) and for
# tests/chaos/chaos.sh. Source it after tap.sh, with CLI set to the imgstore command:
#
#     . "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
#
#   on_a, on_b, on_c CMD...       the CLI ($CLI) against site a's, b's, c's imgstored; each
#                                 call bounded to IMS_CALL_LIMIT s when set (then stacks)
#   conf_of SITE                  the ceph.conf of site SITE (a, b or c)
#   server_of SITE                the address of site SITE's imgstored
#   site_conf SITE, site_log SITE the imgstored.conf, the imgstored.log of site SITE
#   freeze_site SITE, thaw_site SITE  SIGSTOP, SIGCONT of the site's Ceph daemons
#   role_of SITE IMAGE            the replication role of SITE's copy of rbd/IMAGE (its metadata;
#                                 primary when it has none)
#   metric SERVER NAME            the value of the sample NAME (with its labels) in SERVER's /metrics
#   rbd_on SITE ARGS...           rbd against site SITE, bounded to $RBD_TIMEOUT seconds (120)
#   ceph_site SITE ARGS...        the ceph tool against site SITE, bounded to 60 seconds
#   tmp_images_for SITE GLOB      the temporary images on SITE of imports into rbd/GLOB (a
#                                 test's own, "$p-*"), not those of tests running beside it
#   wait_until TRIES PAUSE CMD... CMD until it succeeds, PAUSE seconds apart; fails after TRIES
#   wait_for SECS WHAT CMD...     CMD until it succeeds, a second apart, for SECS seconds of wall
#                                 clock at most (a slow CMD does not stretch it past its own
#                                 last try); when it gives up it says what it waited for and
#                                 prints the daemons' last log lines (daemon_logs)
#   daemon_logs [N]               the last N (12) lines of every site's imgstored.log, as comments
#   check_or_stop WHAT CMD...     check WHAT CMD...; when it fails the script stops there (finish):
#                                 for a check the rest of the script depends on, so that a site
#                                 that does not come back fails the test in seconds, not through
#                                 every later call's timeout
#   daemon_pid SITE               the pid of site SITE's imgstored, from its pid file
#   daemon_up SITE                whether site SITE's imgstored runs
#   daemon_start SITE [VAR=VALUE...]  start it (quiet), with these in its environment
#   daemon_stop SITE [--kill]     stop it (quiet); --kill: SIGKILL
#   daemon_kill SITE              kill -9 by its pid, and wait until it is gone (5 s at most)
#   pid_gone PID                  whether process PID is gone (wait_until 50 0.2 pid_gone "$p")
#   writer_start SITE IMAGE LOG   a writer (rbd bench, 4K) on the image in the background, its
#                                 pid in WRITER_PID, its output in LOG; returns once it holds
#                                 the image's exclusive lock (10 s at most)
#   snap_equal IMAGE SNAP         whether IMAGE@SNAP has the same content on sites a and b
#   lock_held SITE IMAGE          whether a client holds the image's exclusive lock
#   second_conf SITE DIR NAME [SED-EXPR...]  print a copy of site SITE's imgstored.conf for
#                                 a second daemon of that site on paths of its own: a free
#                                 port, DIR/NAME.sock, DIR/spool-NAME, DIR/audit-NAME.log,
#                                 [server] instance = NAME (under the sandbox's host name it
#                                 would break the replication locks of the site's daemon as its
#                                 own previous run's), then the SED-EXPRs
#   config_keep SITE              keep a copy of site SITE's imgstored.conf, to change it
#   config_restore SITE           put the copy back; the daemon restarted if it had changed
#   forget_images IMAGE...        on sites a and b: replication disabled, snapshots purged,
#                                 the image removed, from the trash too; quiet, for cleanups
#   forget_replica IMAGE          for an image of site a replicated to b, through site a's
#                                 daemon: its replication disabled, it removed with its
#                                 snapshots; site b's copy removed; quiet, for cleanups
#   forget_group GROUP IMAGE...   the same for a group and its member images: the group's
#                                 replication disabled, its members taken out, it removed
#   partly_split_up SITE TAG [DIVISOR]  CRUSH pieces on site SITE that leave some PGs of a pool
#                                 without an OSD (test_site_partly.sh says how): a root
#                                 ROOT=ims-TAG-root-PID holding SITE's host HOST (osd.0's,
#                                 linked) and a host VOID=ims-TAG-void-PID with a placeholder
#                                 OSD (its id in OSD) that exists but never starts, weighing
#                                 osd.0's weight / DIVISOR (1); rules SPLIT=ims-TAG-split-PID
#                                 (ROOT by host: the PGs placed on VOID have no OSD) and
#                                 NONE=ims-TAG-none-PID (VOID alone: none has). A check_or_stop:
#                                 the script stops when they cannot be made
#   partly_split_down SITE        their removal, quiet, for a cleanup (nothing if never made);
#                                 the pools that use the rules set back or removed first
SANDBOX_CMD=${SANDBOX_CMD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/sandbox}
RBD_TIMEOUT=${RBD_TIMEOUT:-120}

# With IMS_CALL_LIMIT=SECONDS set, each call of the CLI is bounded by it: one that does not end
# (an operation the daemon never finishes) fails with 124 and prints, as comments, where each
# daemon's threads wait (sandbox stacks), instead of holding the test until ctest kills it
# with its cleanup undone.
cli_on() {
  local server=$1 rc
  shift
  if [ -z "${IMS_CALL_LIMIT:-}" ]; then
    IMGSTORE_SERVER=$server "$CLI" "$@"
    return
  fi
  IMGSTORE_SERVER=$server timeout -k 5 "$IMS_CALL_LIMIT" "$CLI" "$@"
  rc=$?
  if [ $rc = 124 ] || [ $rc = 137 ]; then
    echo "# imgstore $* did not end within ${IMS_CALL_LIMIT} s; the daemons' threads:"
    "$SANDBOX_CMD" stacks "$IMGSTORE_SANDBOX" 2>&1 | sed 's/^/# /'
  fi >&2
  return $rc
}
on_a() { cli_on "$IMGSTORE_SERVER_A" "$@"; }
on_b() { cli_on "$IMGSTORE_SERVER_B" "$@"; }
on_c() { cli_on "$IMGSTORE_SERVER_C" "$@"; }
conf_of() { local v=CEPH_CONF_${1^^}; echo "${!v}"; }
server_of() { local v=IMGSTORE_SERVER_${1^^}; echo "${!v}"; }
site_conf() { echo "$IMGSTORE_SANDBOX/site-$1/imgstored.conf"; }
site_log() { echo "$IMGSTORE_SANDBOX/site-$1/log/imgstored.log"; }
freeze_site() { "$SANDBOX_CMD" freeze-site "$IMGSTORE_SANDBOX" "$1" >/dev/null; }
thaw_site() { "$SANDBOX_CMD" thaw-site "$IMGSTORE_SANDBOX" "$1" >/dev/null; }
role_of() { local r; r=$(rbd_on "$1" image-meta get "rbd/$2" imgstore.repl.role 2>/dev/null); echo "${r:-primary}"; }
metric() { curl -sf --max-time 10 --cacert "$IMGSTORE_CA_FILE" "$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }
rbd_on() { local s=$1; shift; timeout "$RBD_TIMEOUT" rbd -c "$(conf_of "$s")" "$@"; }
ceph_site() { local s=$1; shift; timeout 60 ceph -c "$(conf_of "$s")" "$@"; }
# tmp_images_for SITE GLOB: the temporary images on SITE (pool rbd) of imports into rbd/GLOB
# (rbd/$p-* for a test's own), by the owner object each import writes before its temporary
# exists, or the temporary's imgstore.import.target. Other tests' imports running beside this
# one are not listed; a temporary still there whose target cannot be read is. When the pool
# cannot be listed it prints a placeholder line and fails.
tmp_images_for() {
  local site=$1 glob=$2 t target all
  # a pool that cannot be listed is no proof of nothing left: fail (and list a placeholder)
  all=$(rbd_on "$site" ls rbd 2>/dev/null) || { echo "(rbd ls of site $site failed)"; return 1; }
  for t in $(grep '^\.imgstore-tmp-' <<<"$all"); do
    target=$(timeout "$RBD_TIMEOUT" rados -c "$(conf_of "$site")" -p rbd get "imgstore.tmp-owner.${t#.imgstore-tmp-}" - 2>/dev/null) ||
      target=$(rbd_on "$site" image-meta get "rbd/$t" imgstore.import.target 2>/dev/null) ||
      target=""
    if [ -z "$target" ]; then
      rbd_on "$site" info "rbd/$t" >/dev/null 2>&1 && echo "$t"
    else
      # shellcheck disable=SC2053
      [[ $target == rbd/$glob ]] && echo "$t"
    fi
  done
  return 0
}

wait_until() {
  local tries=$1 pause=$2 i; shift 2
  for ((i = 0; i < tries; i++)); do
    "$@" && return 0
    sleep "$pause"
  done
  return 1
}

wait_for() {
  local secs=$1 what=$2 end
  shift 2
  end=$((SECONDS + secs))
  while :; do
    "$@" && return 0
    [ $SECONDS -lt "$end" ] || break
    sleep 1
  done
  echo "# gave up after $secs s waiting for $what"
  daemon_logs
  return 1
}
daemon_logs() {
  local f s
  for f in "$IMGSTORE_SANDBOX"/site-*/log/imgstored.log; do
    [ -f "$f" ] || continue
    s=${f%/log/imgstored.log}
    echo "# site ${s##*/site-}'s imgstored, last lines:"
    tail -n "${1:-12}" "$f" | cut -c1-300 | sed 's/^/#   /'
  done
}
check_or_stop() {
  check "$@" && return 0
  echo "# stopping here: the checks after this one depend on it"
  finish
}

daemon_pid() { cat "$IMGSTORE_SANDBOX/site-$1/run/imgstored.pid" 2>/dev/null; }
daemon_up() { local p; p=$(daemon_pid "$1") && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
daemon_start() { local s=$1; shift; env "$@" "$SANDBOX_CMD" start-daemon "$IMGSTORE_SANDBOX" "$s" >/dev/null 2>&1; }
daemon_stop() { "$SANDBOX_CMD" stop-daemon "$IMGSTORE_SANDBOX" "$@" >/dev/null 2>&1; }
pid_gone() { ! kill -0 "$1" 2>/dev/null; }
daemon_kill() {
  local pid; pid=$(daemon_pid "$1")
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  wait_until 50 0.1 pid_gone "$pid"
}

snap_equal() {
  local a b
  a=$(rbd -c "$CEPH_CONF_A" export --no-progress "rbd/$1@$2" - 2>/dev/null | sha256sum)
  b=$(rbd -c "$CEPH_CONF_B" export --no-progress "rbd/$1@$2" - 2>/dev/null | sha256sum)
  [ -n "$a" ] && [ "$a" = "$b" ]
}
lock_held() { rbd -c "$(conf_of "$1")" lock ls "rbd/$2" 2>/dev/null | grep -q auto; }
writer_start() {
  rbd -c "$(conf_of "$1")" bench --io-type write --io-size 4K --io-threads 1 --io-total 10G \
    --io-pattern rand "rbd/$2" >"$3" 2>&1 &
  WRITER_PID=$!
  wait_until 50 0.2 lock_held "$1" "$2"
}

second_conf() {
  local site=$1 dir=$2 name=$3 e
  shift 3
  local more=()
  for e in "$@"; do more+=(-e "$e"); done
  sed -e "s|^listen = .*|listen = 127.0.0.1:$(free_port)|" \
      -e "s|^unix_socket = .*|unix_socket = $dir/$name.sock|" \
      -e "s|^spool_dir = .*|spool_dir = $dir/spool-$name|" \
      -e "s|^audit_log = .*|audit_log = $dir/audit-$name.log|" \
      -e "s|^\[server\]\$|[server]\ninstance = $name|" \
      "${more[@]}" "$(site_conf "$site")"
}
config_keep() { cp "$IMGSTORE_SANDBOX/site-$1/imgstored.conf" "$IMGSTORE_SANDBOX/site-$1/imgstored.conf.orig"; }
config_restore() {
  local conf=$IMGSTORE_SANDBOX/site-$1/imgstored.conf
  [ -f "$conf.orig" ] || return 0
  if ! cmp -s "$conf" "$conf.orig"; then
    mv "$conf.orig" "$conf"
    daemon_stop "$1"
    daemon_start "$1"
  fi
  rm -f "$conf.orig"
}

forget_images() {
  local i s id name
  for i in "$@"; do
    for s in a b; do on_$s repl disable "rbd/$i" >/dev/null 2>&1; done
    for s in a b; do
      RBD_TIMEOUT=60 rbd_on $s snap purge "rbd/$i" >/dev/null 2>&1
      RBD_TIMEOUT=60 rbd_on $s rm --no-progress "rbd/$i" >/dev/null 2>&1
    done
  done
  # and those an image rm or a tier push moved to the trash (memstore keeps their bytes too)
  for s in a b; do
    while read -r id name; do
      for i in "$@"; do
        [ "$name" != "$i" ] || RBD_TIMEOUT=60 rbd_on $s trash rm --force --no-progress "rbd/$id" >/dev/null 2>&1
      done
    done < <(RBD_TIMEOUT=60 rbd_on $s trash ls rbd 2>/dev/null)
  done
}

forget_replica() {
  on_a repl disable "rbd/$1" --to b >/dev/null 2>&1
  on_a image rm --purge "rbd/$1" >/dev/null 2>&1
  rbd_on b snap purge "rbd/$1" >/dev/null 2>&1
  rbd_on b rm --no-progress "rbd/$1" >/dev/null 2>&1
}

forget_group() {
  local g=$1 d s; shift
  for s in a b; do on_$s group repl disable "rbd/$g" >/dev/null 2>&1; done
  for s in a b; do
    for d in "$@"; do RBD_TIMEOUT=60 rbd_on $s group image rm "rbd/$g" "rbd/$d" >/dev/null 2>&1; done
    RBD_TIMEOUT=60 rbd_on $s group rm "rbd/$g" >/dev/null 2>&1
  done
  forget_images "$@"
}

partly_split_up() {
  local site=$1 tag=$2 div=${3:-1} weight
  ROOT=ims-$tag-root-$$ VOID=ims-$tag-void-$$ SPLIT=ims-$tag-split-$$ NONE=ims-$tag-none-$$
  OSD="" HOST=""
  HOST=$(ceph_site "$site" osd tree -f json | jq -r '.nodes[] | select(.type == "host" and (.children | index(0))) | .name')
  OSD=$(ceph_site "$site" osd create)
  weight=$(ceph_site "$site" osd tree -f json | jq -r --argjson d "$div" '.nodes[] | select(.id == 0) | .crush_weight / $d')
  check_or_stop "a placeholder OSD (osd.$OSD: never started, weight $weight) in a host of its own, under a root with site $site's host '$HOST'" bash -c "
    c() { timeout 60 ceph -c '$(conf_of "$site")' \"\$@\" >/dev/null 2>&1; }
    [ -n '$HOST' ] && [ -n '$OSD' ] && [ -n '$weight' ] &&
    c osd crush add-bucket $ROOT root && c osd crush add-bucket $VOID host &&
    c osd crush move $VOID root=$ROOT && c osd crush link $HOST root=$ROOT &&
    c osd crush add osd.$OSD $weight host=$VOID &&
    c osd crush rule create-replicated $SPLIT $ROOT host &&
    c osd crush rule create-replicated $NONE $VOID osd"
}
partly_split_down() {
  local site=$1
  [ -n "${ROOT:-}" ] || return 0
  ceph_site "$site" osd crush rule rm "$SPLIT" >/dev/null 2>&1
  ceph_site "$site" osd crush rule rm "$NONE" >/dev/null 2>&1
  [ -n "$HOST" ] && ceph_site "$site" osd crush unlink "$HOST" "$ROOT" >/dev/null 2>&1
  [ -n "$OSD" ] && ceph_site "$site" osd purge "$OSD" --yes-i-really-mean-it >/dev/null 2>&1
  ceph_site "$site" osd crush rm "$VOID" >/dev/null 2>&1
  ceph_site "$site" osd crush rm "$ROOT" >/dev/null 2>&1
  return 0
}

#!/usr/bin/env bash
# A site that serves some PGs of its pool and not the others, for real: the probe of imgstored
# stats one object in every PG, says "partly" with the PGs that do not answer, and "up" again
# once they do; none answering is "down".
#
# How some PGs stop answering without touching the OSD (the site's other pools, which the
# sandbox's daemons and the other tests use, keep serving; tests/lib/sandbox.sh's
# partly_split_up makes the pieces): a pool of the test's own on site c gets a CRUSH rule whose
# root holds two hosts, the site's real one (linked, so it stays under the default root too)
# and an empty-handed one with a placeholder OSD that exists in the OSD map but never runs
# (`ceph osd create`: down, in). Every PG that CRUSH places on the
# placeholder has no OSD up, so nothing serves it and a client's request to it waits (the
# objecter holds it until a map gives the PG an OSD): about half the PGs. The pool's rule set
# back to replicated_rule brings them back within a second. A rule that takes the placeholder's
# host alone leaves every PG without an OSD: the site is down for that pool.
#
# The daemon is a second imgstored of site c (an instance name, ports and paths of its own, its
# pid in $W/imgstored.pid) whose [site] pool is the test's pool, probing every second.
# Holds the imgstored lock: thaw-site (test_thaw, the chaos rounds) checks every PG of every pool
# of a site, this pool's too.
set -uo pipefail
IMGSTORED=${IMS_BINARY_DIR:?}/daemon/imgstored
CLI=${IMS_BINARY_DIR}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"

S=c
POOL=ims-partly-$$
PGS=16
W=$(mktemp -d /tmp/imgstore-partly.XXXXXX)
ceph_c() { ceph_site "$S" "$@"; }
daemon=""
cleanup() {
  [ -n "$daemon" ] && kill -KILL "$daemon" 2>/dev/null
  ceph_c osd pool rm "$POOL" "$POOL" --yes-i-really-really-mean-it >/dev/null 2>&1
  partly_split_down $S
  rm -rf "$W"
}
trap cleanup EXIT

# ---- the pool and the CRUSH pieces (nothing uses them yet)
check_or_stop "a pool of $PGS PGs on site $S" bash -c "
  timeout 60 ceph -c '$(conf_of $S)' osd pool create $POOL $PGS $PGS >/dev/null 2>&1 &&
  timeout 60 rbd -c '$(conf_of $S)' pool init $POOL"
partly_split_up $S partly # ROOT, VOID, SPLIT, NONE, OSD, HOST
POOL_ID=$(ceph_c osd pool ls detail -f json | jq -r --arg p "$POOL" '.[] | select(.pool_name == $p) | .pool_id')

# ---- a second imgstored of site c, its site's pool the test's
sock=$W/d.sock
awk -v pool="$POOL" -v port="$(free_port)" -v sock="$sock" -v w="$W" '
  /^\[/ { peer = ($0 ~ /^\[peer /) }
  peer { next }
  /^listen = / { print "listen = 127.0.0.1:" port; next }
  /^unix_socket = / { print "unix_socket = " sock; next }
  /^spool_dir = / { print "spool_dir = " w "/spool"; next }
  /^audit_log = / { print "audit_log = " w "/audit.log"; next }
  /^(pool|probe_interval) = / { next }
  { print }
  /^\[site\]$/ { print "pool = " pool }
  /^\[server\]$/ { print "instance = partly-" pool }
  /^\[defaults\]$/ { print "probe_interval = 1s"; defaults = 1 }
  END { if (!defaults) { print "[defaults]"; print "probe_interval = 1s" } }
' "$(site_conf $S)" >"$W/imgstored.conf"
# (an instance name of its own: under the host name it would break the replication locks of
# the sandbox's daemon of site c as its own previous run's)
setsid "$IMGSTORED" --config "$W/imgstored.conf" </dev/null >>"$W/imgstored.log" 2>&1 &
daemon=$!
echo "$daemon" >"$W/imgstored.pid"

on_d() { IMGSTORE_SERVER=unix:$sock "$CLI" "$@"; }
field() { on_d site status $S --output json 2>/dev/null | jq -r ".$1"; }
m() { curl -s --max-time 5 --unix-socket "$sock" http://localhost/metrics | awk -v k="$1{site=\"$S\"}" '$1 == k { print $2 }'; }
health_is() { [ "$(field health)" = "$1" ]; }
# the PGs of the pool with no OSD up, as the daemon names them ("12.1, 12.5")
unmapped() {
  local i out=""
  for ((i = 0; i < PGS; i++)); do
    ceph_c pg map "$POOL_ID.$(printf %x $i)" | grep -q 'up \[\]' && out="$out, $POOL_ID.$(printf %x $i)"
  done
  echo "${out#, }"
}

check_or_stop "the daemon answers, its site up: every PG answered" wait_for 60 "site $S up" health_is up
check "  site status: $PGS PGs, none unanswered" bash -c "[ '$(field pgs)' = $PGS ] && [ '$(field pgs_unanswered)' = 0 ]"
check "  imgstore_site_up 1, imgstore_site_pgs $PGS, imgstore_site_pgs_unanswered 0" \
  bash -c "[ '$(m imgstore_site_up)' = 1 ] && [ '$(m imgstore_site_pgs)' = $PGS ] && [ '$(m imgstore_site_pgs_unanswered)' = 0 ]"

# ---- some PGs lose their OSD
t0=$SECONDS
ceph_c osd pool set "$POOL" crush_rule "$SPLIT" >/dev/null 2>&1
expect=$(unmapped)
n=$(echo "$expect" | tr ',' '\n' | grep -c .)
check_or_stop "the split rule leaves some PGs with no OSD ($n of $PGS: $expect)" bash -c "[ $n -gt 0 ] && [ $n -lt $PGS ]"
check_or_stop "the daemon says site $S answers partly" wait_for 30 "site $S partly" health_is partly
echo "# partly after $((SECONDS - t0)) s"
check "  the PGs that do not answer are named: $(field unanswered_pgs)" test "$(field unanswered_pgs)" = "$expect"
check "  and counted ($(field pgs_unanswered) of $(field pgs))" bash -c "[ '$(field pgs_unanswered)' = $n ] && [ '$(field pgs)' = $PGS ]"
check "  the error says it: $(field error)" bash -c "on_d() { IMGSTORE_SERVER=unix:$sock '$CLI' \"\$@\"; }; on_d site status $S --output json | jq -r .error | grep -q '^$n of $PGS PGs of pool .$POOL. did not answer a read in 2.5 s ($expect)'"
check "  imgstore_site_up 0, imgstore_site_pgs_unanswered $n" bash -c "[ '$(m imgstore_site_up)' = 0 ] && [ '$(m imgstore_site_pgs_unanswered)' = $n ]"
ready=$(curl -s --max-time 5 --unix-socket "$sock" http://localhost/readyz)
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket "$sock" http://localhost/readyz)
check "  /readyz: still ready (what the other PGs hold is served), saying which PGs do not answer: $code $ready" \
  bash -c "[ '$code' = 200 ] && echo \"$ready\" | grep -q \"^ok, but site '$S' answers partly: $n of $PGS PGs of pool '$POOL' did not answer\""
check "  site status (table) names them" bash -c "IMGSTORE_SERVER=unix:$sock '$CLI' site status $S | grep -q 'unanswered.pgs.*$expect'"
check "  site ls shows it" bash -c "IMGSTORE_SERVER=unix:$sock '$CLI' site ls | grep -q '^$S .* partly '"
check "  the log says it once" bash -c "[ \$(grep -c \"site '$S' answers partly: $n of $PGS PGs of pool '$POOL'\" '$W/imgstored.log') = 1 ]"

# ---- the PGs get their OSD back
t0=$SECONDS
ceph_c osd pool set "$POOL" crush_rule replicated_rule >/dev/null 2>&1
check_or_stop "back to replicated_rule: site $S up again" wait_for 30 "site $S up" health_is up
echo "# up after $((SECONDS - t0)) s"
check "  none unanswered, imgstore_site_up 1" bash -c "[ '$(field pgs_unanswered)' = 0 ] && [ '$(field unanswered_pgs)' = '' ] && [ '$(m imgstore_site_up)' = 1 ]"
check "  the log says so" grep -q "site '$S' answers again in every PG" "$W/imgstored.log"
check "  /readyz: ok" bash -c "[ \"\$(curl -s --max-time 5 --unix-socket '$sock' http://localhost/readyz)\" = ok ]"

# ---- every PG loses its OSD
t0=$SECONDS
ceph_c osd pool set "$POOL" crush_rule "$NONE" >/dev/null 2>&1
check "no PG with an OSD: site $S down" wait_for 30 "site $S down" health_is down
echo "# down after $((SECONDS - t0)) s"
check "  imgstore_site_pgs_unanswered $PGS, /readyz 503" bash -c "[ '$(m imgstore_site_pgs_unanswered)' = $PGS ] &&
  [ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket '$sock' http://localhost/readyz)\" = 503 ]"
ceph_c osd pool set "$POOL" crush_rule replicated_rule >/dev/null 2>&1
check "  and up again" wait_for 40 "site $S up" health_is up

kill -TERM "$daemon"
wait "$daemon"
rc=$?
daemon=""
check "the daemon stops (exit $rc)" test "$rc" = 0
grep -E "answers|does not answer" "$W/imgstored.log" | cut -c1-240 | sed 's/^/# /'
finish

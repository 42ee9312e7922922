#!/usr/bin/env bash
# A site frozen (SIGSTOP of its Ceph daemons) for longer than its PGs' read lease, then thawed:
# `sandbox thaw-site` returns only once the site serves again, every PG of it (a PG left
# "laggy" by the pause parks every op for good; in CI one did, after split_brain's freeze, and
# the daemons' probe object lands in a PG that was laggy every time it was seen here), and the
# daemons see the site back by themselves, without a restart.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
T_OUT=/tmp/th-out.$$ T_ERR=/tmp/th-err.$$

FREEZE_S=${THAW_FREEZE_S:-20}
frozen=0
cleanup() {
  [ $frozen = 0 ] || thaw_site c 2>/dev/null
  rm -f "$T_OUT" "$T_ERR" "/tmp/th-osdmap.$$"
}
trap cleanup EXIT

# SITE: whether every PG of pool rbd answers a read of its object in names[] within 5 s ("no
# such object" is an answer); the PGs that did not answer in $silent
every_pg_reads() {
  local conf i out
  conf=$(conf_of "$1")
  silent=""
  for ((i = 0; i < ${#names[@]}; i++)); do
    out=$(timeout 10 rados -c "$conf" -p rbd --rados-osd-op-timeout 5 stat "${names[$i]}" 2>&1) ||
      [[ $out == *"(2) No such file"* ]] || silent="$silent ${pgs[$i]}"
  done
  [ -z "$silent" ]
}
# an object name for each PG of site c's pool rbd, from its OSD map (osdmaptool), with names of
# its own: this checks the sandbox's wait rather than repeats it
map=/tmp/th-osdmap.$$
timeout 30 ceph -c "$CEPH_CONF_C" osd getmap -o "$map" >/dev/null 2>&1
pool=$(timeout 30 ceph -c "$CEPH_CONF_C" osd pool ls detail --format json | jq -r '.[] | select(.pool_name == "rbd") | "\(.pool_id) \(.pg_num)"')
pgn=${pool#* } pool=${pool% *}
pg_of() { osdmaptool "$map" --test-map-object "$1" --pool "$pool" 2>/dev/null | awk '$1 == "object" { print $4 }'; }
declare -A seen=()
names=() pgs=()
for ((i = 1; ${#names[@]} < pgn && i <= 16 * pgn; i++)); do
  pg=$(pg_of "thaw.probe.$i")
  [ -n "$pg" ] && [ -z "${seen[$pg]:-}" ] || continue
  seen[$pg]=1 names+=("thaw.probe.$i") pgs+=("$pg")
done
probe_pg=$(pg_of imgstore.probe)
rm -f "$map"
check "object names for the PGs of site c's pool rbd (${#names[@]} of $pgn; the daemons' probe object in $probe_pg)" \
  test "${#names[@]}" = "$pgn" -a -n "$probe_pg"
check_or_stop "every one answers a read before the freeze" every_pg_reads c

up_c() { [ "$(metric "$IMGSTORE_SERVER_A" 'imgstore_site_up{site="c"}')" = "$1" ]; }
check "daemon a sees site c up" up_c 1
freeze_site c && frozen=1
check "site c frozen" test $frozen = 1
wait_for 30 "daemon a's imgstore_site_up{site=\"c\"} to be 0" up_c 0
check "  daemon a sees it down" up_c 0
sleep "$FREEZE_S" # past the PGs' read lease

t0=$SECONDS
check_or_stop "sandbox thaw-site c returns once the site serves" thaw_site c
frozen=0
echo "# thaw-site took $((SECONDS - t0)) s"
check "every PG of site c's pool rbd answers a read right after it${silent:+ (not:$silent)}" every_pg_reads c
wait_for 20 "daemon a's imgstore_site_up{site=\"c\"} to be 1" up_c 1
check "daemon a sees site c up again, without a restart" up_c 1
img=th$$
check "an image is made on site c" rbd_on c create --size 8M "rbd/$img"
check "  written" quiet rbd_on c bench --io-type write --io-size 64K --io-total 4M "rbd/$img"
check "  and removed" rbd_on c rm --no-progress "rbd/$img"

finish

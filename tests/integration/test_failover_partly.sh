#!/usr/bin/env bash
# A forced failover away from a site that answers partly, for real: images of a pool of the
# test's own, primary on site c and replicated to site b by second daemons of both sites
# configured for that pool; then some PGs of that pool on site c lose their OSD (the CRUSH
# pieces of test_site_partly.sh, tests/lib/sandbox.sh's partly_split_up: a placeholder OSD that
# never runs, here with a third of the real OSD's weight, so about a quarter of the PGs are
# silent) and `repl failover --from c --to b --force` is asked of site b's daemon, which sees
# site c "partly".
#
#   - the failover finishes; the copies run at once (the whole as long as the slowest copy), a
#     copy whose header lies in a PG site b's probes found silent passed by without asking it;
#   - every copy on site b is the primary and takes writes;
#   - the copies on site c whose objects (rbd_id, rbd_header, object maps) all lie in answering
#     PGs are fenced and demoted at once: secondaries of site b, held against other writers by
#     site b's daemon (their exclusive lock; a plain rbd write fails with EROFS);
#   - the copies whose header lies in a silent PG are named as not reached, in the summary and
#     their line; once the PGs answer again (rule undone) the reverse replication of site b
#     makes them secondaries, held (the deferred fence), and what was written on site b after the
#     failover reaches site c: no copy is primary on both sides, nothing acknowledged is lost;
#   - the contrast: with no PG of the pool answering (a rule that takes the placeholder alone),
#     site b's daemon sees site c down and a forced failover passes it by at once (< osd_timeout).
#
# Which image lands where is Ceph's hash: the test computes the silent PGs (the rule set for a
# moment while the pool is still empty) and the PG of every object of every image
# (osdmaptool), and makes images until it has at least two of each kind.
# Holds the imgstored lock: it changes the CRUSH map of site c (as test_site_partly.sh).
set -uo pipefail
IMGSTORED=${IMS_BINARY_DIR:?}/daemon/imgstored
CLI=${IMS_BINARY_DIR}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"

P=ims-pfo-$$
PGS=32
OSD_TIMEOUT=5 # the sandbox's [peer] osd_timeout
W=$(mktemp -d /tmp/imgstore-pfo.XXXXXX)
T_OUT=$W/out T_ERR=$W/err
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  ceph_site c osd pool set "$P" crush_rule replicated_rule >/dev/null 2>&1
  for s in b c; do ceph_site $s osd pool rm "$P" "$P" --yes-i-really-really-mean-it >/dev/null 2>&1; done
  partly_split_down c
  rm -rf "$W"
}
trap cleanup EXIT

# ---- the CRUSH pieces on site c, the pool on sites b and c
partly_split_up c pfo 3 # ROOT, VOID, SPLIT, NONE, OSD, HOST; the placeholder a third of osd.0's weight
pg_of() { osdmaptool "$W/map" --test-map-object "$1" --pool "$POOL_ID" 2>/dev/null | awk '/^ object/ { print $4 }'; }
silent_pg() { grep -qx "$1" "$W/silent"; }
# The pool on site c, and the PGs the split rule leaves without an OSD (CRUSH is a function of
# the map: the same ones each time the rule is set), read while the pool is empty. Every open
# of an image reads the pool's rbd_info (its configuration): in a silent PG no copy there could
# be reached, so the pool is made again (another id, other PGs) until rbd_info's answers; and
# until its imgstore.operations does (site c's daemon records there the refused failover below).
make_pool() {
  timeout 60 ceph -c "$(conf_of c)" osd pool create "$P" $PGS $PGS >/dev/null 2>&1 &&
    timeout 60 rbd -c "$(conf_of c)" pool init "$P" || return 1
  POOL_ID=$(ceph_site c osd pool ls detail -f json | jq -r --arg p "$P" '.[] | select(.pool_name == $p) | .pool_id')
  ceph_site c osd pool set "$P" crush_rule "$SPLIT" >/dev/null 2>&1
  ceph_site c osd getmap -o "$W/map" >/dev/null 2>&1
  ceph_site c osd pool set "$P" crush_rule replicated_rule >/dev/null 2>&1
  osdmaptool "$W/map" --test-map-pgs-dump --pool "$POOL_ID" 2>/dev/null |
    awk -v id="$POOL_ID" '$1 ~ "^" id "\\." && $2 == "[]" { print $1 }' | sort >"$W/silent"
  nsilent=$(wc -l <"$W/silent")
  # about a quarter silent (the weights); too few or too many would leave one kind of image rare
  [ "$nsilent" -ge 5 ] && [ "$nsilent" -le 14 ] && ! silent_pg "$(pg_of rbd_info)" &&
    ! silent_pg "$(pg_of imgstore.operations)" && return 0
  ceph_site c osd pool rm "$P" "$P" --yes-i-really-really-mean-it >/dev/null 2>&1
  return 1
}
check_or_stop "pool $P on site b" bash -c "
  timeout 60 ceph -c '$(conf_of b)' osd pool create $P 8 8 >/dev/null 2>&1 && timeout 60 rbd -c '$(conf_of b)' pool init $P"
nsilent=0
check_or_stop "pool $P on site c ($PGS PGs, 5 to 14 silent under the split rule, its rbd_info not)" wait_until 8 0 make_pool
echo "# the split rule leaves $nsilent PGs of $PGS without an OSD: $(tr '\n' ' ' <"$W/silent")"

# ---- second daemons of sites c and b for that pool (their [peer] pools too), probing every second
start_second() { # SITE NAME
  second_conf "$1" "$W" "$2" "s|^\[site\]\$|[site]\npool = $P|" "s|^\[peer \(.*\)\]\$|[peer \1]\npool = $P|" \
    "s|^\[defaults\]\$|[defaults]\nprobe_interval = 1s|" >"$W/$2.conf"
  setsid "$IMGSTORED" --config "$W/$2.conf" </dev/null >>"$W/$2.log" 2>&1 &
  pids+=($!)
  echo $! >"$W/$2.pid"
}
start_second c pfo-c-$$
start_second b pfo-b-$$
on_c2() { IMGSTORE_SERVER=unix:$W/pfo-c-$$.sock "$CLI" "$@"; }
on_b2() { IMGSTORE_SERVER=unix:$W/pfo-b-$$.sock "$CLI" "$@"; }
health_of_c() { on_b2 site status c --output json 2>/dev/null | jq -r .health; }
c_is() { [ "$(health_of_c)" = "$1" ]; }
both_up() { c_is up && on_c2 site status c --output json >/dev/null 2>&1; }
check_or_stop "both daemons answer; site b's sees site c up in pool $P" wait_for 60 "site c up" both_up

# held against other writers: a lock on it (site b's daemon's writer guard)
held_on_c() { timeout 20 rbd -c "$(conf_of c)" lock ls "$P/$1" 2>/dev/null | grep -q .; }
role_on() { local r; r=$(timeout 20 rbd -c "$(conf_of "$1")" image-meta get "$P/$2" imgstore.repl.role 2>/dev/null); echo "${r:-primary}"; }
repl_snaps() { timeout 20 rbd -c "$(conf_of "$1")" snap ls --format json "$P/$2" 2>/dev/null | jq -r '[.[] | select(.name | startswith("imgstore-repl-")) | .name] | join(" ")'; }
synced() { [ -n "$(repl_snaps b "$1")" ]; }
make_image() { # NAME: on site c, replicated to site b, sealed there once
  on_c2 image create "$P/$1" --size 8M >/dev/null 2>&1 &&
    on_c2 repl enable "$P/$1" --to b --rpo 1h >/dev/null 2>&1 &&
    on_c2 repl sync "$P/$1" >/dev/null 2>&1 &&
    wait_until 60 0.5 synced "$1"
}
# every object of image $1 on site c: rbd_id, rbd_header, object maps (of the head and snapshots)
objects_of() {
  local id
  id=$(timeout 20 rbd -c "$(conf_of c)" info "$P/$1" --format json 2>/dev/null | jq -r .id)
  echo "rbd_id.$1"
  timeout 60 rados -c "$(conf_of c)" -p "$P" ls 2>/dev/null | grep -E "^rbd_(header|object_map|data)\.$id(\.|$)"
}
# "answering" (every object in an answering PG), "silent" (rbd_id or rbd_header in a silent
# PG: not even readable), or "mixed"
kind_of() {
  local o any=0 head=0
  for o in $(objects_of "$1"); do
    silent_pg "$(pg_of "$o")" || continue
    any=1
    case $o in rbd_id.* | rbd_header.*) head=1 ;; esac
  done
  if [ $head = 1 ]; then echo silent; elif [ $any = 1 ]; then echo mixed; else echo answering; fi
}

# one whose rbd_id and header answer and an object map does not: its old copy is reached, and
# slow to make a secondary (librbd waits on the silent map)
map_silent() {
  local o map=0
  for o in $(objects_of "$1"); do
    silent_pg "$(pg_of "$o")" || continue
    case $o in rbd_id.* | rbd_header.*) return 1 ;; rbd_object_map.*) map=1 ;; esac
  done
  [ $map = 1 ]
}

# ---- images until both kinds are there (at least 6, 2 of each; 30 at most: a quarter of the
# images have all their 4 objects answering, half their header or rbd_id silent), and S, one
# whose object map alone is silent, failed over alone first
imgs=() A=() B=() M=() S=""
for ((k = 1; k <= 30; k++)); do
  n=pfo$$-$k
  if ! make_image "$n"; then
    not_ok "image $P/$n made on site c and replicated to b"
    break
  fi
  if [ -z "$S" ] && map_silent "$n"; then
    S=$n
    continue
  fi
  imgs+=("$n")
  case $(kind_of "$n") in
    answering) A+=("$n") ;;
    silent) B+=("$n") ;;
    *) M+=("$n") ;;
  esac
  [ ${#imgs[@]} -ge 6 ] && [ ${#A[@]} -ge 2 ] && [ ${#B[@]} -ge 2 ] && [ ${#M[@]} -ge 1 ] &&
    [ -n "$S" ] && break
done
echo "# answering PGs only: ${A[*]}; header in a silent PG: ${B[*]}; mixed: ${M[*]}; an object map alone: $S"
check_or_stop "${#imgs[@]} images replicated c -> b: ${#A[@]} in answering PGs only, ${#B[@]} with their header in a silent PG" \
  bash -c "[ ${#A[@]} -ge 2 ] && [ ${#B[@]} -ge 2 ]"
check_or_stop "  and one more whose object map alone lies in a silent PG: ${S:-none}" test -n "$S"
roles_are() { # ROLE-ON-B ROLE-ON-C IMAGE...
  local rb=$1 rc=$2 i
  shift 2
  for i in "$@"; do [ "$(role_on b "$i")" = "$rb" ] && [ "$(role_on c "$i")" = "$rc" ] || return 1; done
}
check "  every one primary on c, secondary on b" roles_are secondary primary "${imgs[@]}" "$S"
# a group of one image whose rbd_id or header lies in a silent PG (the group's own objects land
# where they land): a forced failover passes the group by as a whole, as it does such an image
G=pfog$$ GI=""
for ((k = 1; k <= 10; k++)); do
  on_c2 image create "$P/pfo$$-g$k" --size 8M >/dev/null 2>&1 || break
  [ "$(kind_of "pfo$$-g$k")" = silent ] && { GI=pfo$$-g$k; break; }
done
check_or_stop "an image for the group with its header or rbd_id in a silent PG: ${GI:-none}" test -n "$GI"
check_or_stop "  group $P/$G of it on site c, replicated to site b" bash -c "
  IMGSTORE_SERVER=unix:$W/pfo-c-$$.sock '$CLI' group create '$P/$G' >/dev/null &&
  IMGSTORE_SERVER=unix:$W/pfo-c-$$.sock '$CLI' group add '$P/$G' '$P/$GI' >/dev/null &&
  IMGSTORE_SERVER=unix:$W/pfo-c-$$.sock '$CLI' group repl enable '$P/$G' --to b --rpo 1h >/dev/null &&
  IMGSTORE_SERVER=unix:$W/pfo-c-$$.sock '$CLI' group repl sync '$P/$G' >/dev/null"
check "  its image primary on c, secondary on b" roles_are secondary primary "$GI"
on_b_primary() { local i; for i in "$@"; do [ "$(role_on b "$i")" = primary ] || return 1; done; }

# ---- some PGs lose their OSD: site c answers partly
ceph_site c osd pool set "$P" crush_rule "$SPLIT" >/dev/null 2>&1
check_or_stop "site b's daemon sees site c partly" wait_for 30 "site c partly" c_is partly
# ... with every PG the rule leaves without an OSD silent, and only those (not one caught peering)
silent_as_computed() { [ "$(on_b2 site status c --output json 2>/dev/null | jq -r .pgs_unanswered)" = "$nsilent" ]; }
check_or_stop "  its probes find the $nsilent PGs without an OSD silent" wait_for 30 "$nsilent PGs silent" silent_as_computed
# a forced failover passes by a copy in a PG silent in two probes in a row (one caught peering
# is not): a probe round takes at most probe_interval (1 s) and the probe's wait (2.5 s)
sleep 4
check_or_stop "  ... and still after another probe round" silent_as_computed
# an operator asking the wrong side: refused in one line, before anything is touched
expect_rc 1 "the forced failover asked of site c's own daemon is refused" \
  timeout 30 env IMGSTORE_SERVER=unix:$W/pfo-c-$$.sock "$CLI" repl failover --from c --to b --force --pool "$P"
check "  in one line saying whom to ask: $(grep -m1 '^imgstore:' "$T_ERR")" \
  bash -c "[ \$(grep -c '^imgstore:' '$T_ERR') = 1 ] && grep -qx \"imgstore: a forced failover runs on the site that becomes the primary: ask site 'b''s daemon (this is site 'c')\" '$T_ERR'"
check "  nothing changed: every copy still primary on c (those it can read) and secondary on b" \
  roles_are secondary primary "${A[@]}"

# ---- one image failed over alone: it is the primary at once, its old copy (reached: its header
# answers) slow to make a secondary (its object map is silent); the command does not wait for
# that, and the same or the site's failover asked meanwhile would race it: refused
t0=$SECONDS
expect_rc 0 "repl failover $P/$S --to b --force (its object map silent on c), asked of site b" \
  timeout 150 env IMGSTORE_SERVER=unix:$W/pfo-b-$$.sock "$CLI" repl failover "$P/$S" --to b --force
took=$((SECONDS - t0))
sed 's/^/# /' "$T_OUT" "$T_ERR" | cut -c1-400
sop=$(sed -nE 's/^imgstore: operation ([^ ]+) goes on in the daemon: .*/\1/p' "$T_ERR" | head -1)
check "  it returned in ${took}s, once $S was the primary, its operation going on (${sop:-none})" test -n "$sop"
check "  ... saying so: '$(cut -c1-160 "$T_OUT")'" \
  grep -qx "failover $P/$S: '$P/$S' is the primary on site 'b'; the operation goes on: site 'c' answers partly, and its old copy there is still being made a secondary" "$T_OUT"
check "  $S is the primary on site b" on_b_primary "$S"
if [ -n "$sop" ]; then
  # (its old copy's silent object map costs at least one osd_timeout, 5 s: longer than the
  # CLI's 3 s and these two calls)
  busy="imgstore: a failover of '$P/$S' still runs here (operation $sop): its old copy is still being made a secondary; \`imgstore op wait $sop\` waits for its end"
  expect_rc 1 "  the failover of site c's images in the pool asked meanwhile is refused" \
    timeout 30 env IMGSTORE_SERVER=unix:$W/pfo-b-$$.sock "$CLI" repl failover --from c --to b --force --pool "$P"
  check "  ... in one line naming the image's operation: $(grep -m1 '^imgstore:' "$T_ERR" | cut -c1-160)" grep -qxF "$busy" "$T_ERR"
  expect_rc 1 "  so is the same failover asked again" \
    timeout 30 env IMGSTORE_SERVER=unix:$W/pfo-b-$$.sock "$CLI" repl failover "$P/$S" --to b --force
  check "  ... naming it" grep -qxF "$busy" "$T_ERR"
  expect_rc 0 "  imgstore op wait $sop: the rest ends" \
    timeout 150 env IMGSTORE_SERVER=unix:$W/pfo-b-$$.sock "$CLI" op wait "$sop"
  sed 's/^/# /' "$T_OUT" "$T_ERR" | cut -c1-400
  check "  ... site c answered for its old copy" grep -q "site 'c' answered" "$T_OUT"
fi
# (made a secondary, or only fenced when a step timed out on its silent object map: the
# replication back sorts it out once the PGs answer, below)
check "  its old copy on site c is held against other writers" held_on_c "$S"

t0=$SECONDS
expect_rc 0 "repl failover --from c --to b --force --pool $P, asked of site b" \
  timeout 150 env IMGSTORE_SERVER=unix:$W/pfo-b-$$.sock "$CLI" repl failover --from c --to b --force --pool "$P"
took=$((SECONDS - t0))
sed 's/^/# /' "$T_OUT" "$T_ERR" | cut -c1-400
# The command returns once every image is the primary on site b and the rest (old copies on
# site c still being made secondaries, slow when their objects lie in silent PGs) has gone on
# for a few seconds (Operation.decided): then it says so and how to follow the operation.
early=0
if grep -q ' goes on in the daemon: ' "$T_ERR"; then
  early=1
  op=$(sed -nE 's/^imgstore: operation ([^ ]+) goes on in the daemon: .*/\1/p' "$T_ERR" | head -1)
  decided_line=$(cat "$T_OUT")
  check "  it returned early (${took}s): every copy on site b was the primary then" on_b_primary "${imgs[@]}"
  check "  ... saying so: '$(cut -c1-160 <<<"$decided_line")...'" \
    grep -qE "^failover $P/\* of site c: $((${#imgs[@]} + 1)) image\(s\) and group\(s\) of site 'c' in pool '$P' are the primary on site 'b' \([0-9.]+s\); the operation goes on: site 'c''s old cop(y|ies) of [0-9]+ of them (is|are) still being made secondar(y|ies) \(.*\); [0-9]+ cop(y|ies) there (was|were) not reached, (its|their) writers not fenced yet \(.*\)$" "$T_OUT"
  # asked again meanwhile (a retry of a script): refused in one line, it would race the first
  expect_rc 1 "  the same failover asked again while it goes on is refused" \
    timeout 30 env IMGSTORE_SERVER=unix:$W/pfo-b-$$.sock "$CLI" repl failover --from c --to b --force --pool "$P"
  check "  ... in one line naming the operation: $(grep -m1 '^imgstore:' "$T_ERR" | cut -c1-160)" \
    grep -qx "imgstore: a failover of site 'c''s images in pool '$P' still runs here (operation $op): its old copies are still being made secondaries; \`imgstore op wait $op\` waits for its end" "$T_ERR"
  expect_rc 0 "  imgstore op wait $op: the rest ends" \
    timeout 150 env IMGSTORE_SERVER=unix:$W/pfo-b-$$.sock "$CLI" op wait "$op"
  sed 's/^/# /' "$T_OUT" "$T_ERR" | cut -c1-400
fi
# the copies run at once: the whole takes as long as the slowest copy, not the sum; a copy whose
# rbd_id or header lies in a PG site b's probes found silent is not asked (an open would cost one
# osd_timeout, then fail); one whose objects are split between answering and silent PGs may hit
# several in turn after its promotion (its object maps: 10-35 s measured)
total=$(sed -nE "s/.* failed over to site 'b' in ([0-9.]+)s \(slowest ([0-9.]+)s\).*/\1 \2/p" "$T_OUT" | head -1)
check "  it took ${took}s (${total% *}s, the slowest copy ${total#* }s): the copies at once, not one after another" \
  awk -v t="$total" 'BEGIN { split(t, a, " "); exit !(t != "" && a[1] <= a[2] + 3) }'
slow_b=""
for i in "${B[@]}"; do
  s=$(grep -E "^  image $P/$i ok " "$T_OUT" | sed -nE 's/.* ok ([0-9.]+)s: .*/\1/p')
  awk -v s="$s" -v t=$OSD_TIMEOUT 'BEGIN { exit !(s != "" && s < t) }' || slow_b="$slow_b $i:${s:-?}s"
done
check "  each copy whose header is silent was passed by without waiting for it (< osd_timeout ${OSD_TIMEOUT}s)${slow_b:+, not:$slow_b}" test -z "$slow_b"
# so every copy was the primary within about a second; when the slowest copy (a split one, its
# old copy slow to make a secondary) ended well after that and the grace the CLI gives the rest,
# the command returned before it
if [ $early = 1 ]; then
  decided_s=$(sed -nE "s/.* are the primary on site 'b' \(([0-9.]+)s\).*/\1/p" <<<"$decided_line")
  check "  every copy was the primary on site b after ${decided_s:-?}s (< osd_timeout ${OSD_TIMEOUT}s)" \
    awk -v s="$decided_s" -v t=$OSD_TIMEOUT 'BEGIN { exit !(s != "" && s < t) }'
fi
if awk -v t="$total" -v s="$OSD_TIMEOUT" 'BEGIN { split(t, a, " "); exit !(a[2] > s + 6) }'; then
  check "  the slowest copy took ${total#* }s, more than $((OSD_TIMEOUT + 6))s: the command returned before it, once every copy was the primary" test $early = 1
fi
check "  one ok line per image (${#imgs[@]})" test "$(grep -cE "^  image $P/pfo$$-[0-9]+ ok " "$T_OUT")" = ${#imgs[@]}
check "  the summary says site c answers partly and how many copies there were not reached ($((${#B[@]} + 1)) or more)" \
  grep -qE "site 'c' answers partly: ([0-9]+) of $((${#imgs[@]} + 1)) cop(y|ies) there (was|were) not reached" "$T_OUT"
unreached=$(sed -nE "s/.*site 'c' answers partly: ([0-9]+) of .*/\1/p" "$T_OUT" | head -1)
check "  ... ${unreached:-?} of them: at least the ${#B[@]} whose header is silent and the group, at most those and the ${#M[@]} mixed" \
  bash -c "[ -n '$unreached' ] && [ '$unreached' -ge $((${#B[@]} + 1)) ] && [ '$unreached' -le $((${#B[@]} + ${#M[@]} + 1)) ]"
# the group: one line, passed by at once (its image's rbd_id or header, or its own objects, lie
# in a silent PG), its image the primary on site b
gline=$(grep -E "^  group $P/$G ok " "$T_OUT")
gs=$(sed -nE 's/.* ok ([0-9.]+)s: .*/\1/p' <<<"$gline")
check "  group $P/$G passed by without waiting for it (${gs:-?}s < osd_timeout ${OSD_TIMEOUT}s)" \
  awk -v s="$gs" -v t=$OSD_TIMEOUT 'BEGIN { exit !(s != "" && s < t) }'
check "  ... its line says which object lies in a silent PG: '$(cut -c1-200 <<<"$gline")'" \
  grep -qE "site 'c' did not answer for this copy \((its image '$P/$GI': )?(its|the pool's) rbd_(id|header|directory|group_directory|group_header)[^ ]* lies in PG [0-9]+\.[0-9a-f]+, silent at the last probes\), though it answers partly" <<<"$gline"
check "  ... its image is the primary on site b" on_b_primary "$GI"
line_of() { grep -E "^  image $P/$1 " "$T_OUT"; }
ALL=("${imgs[@]}" "$S") # and the one failed over alone before
check "every copy on site b is the primary" on_b_primary "${ALL[@]}"
write_b() { # IMAGE: 1 MiB written on site b's copy, acknowledged; the head's digest kept
  timeout 60 rbd -c "$(conf_of b)" bench --io-type write --io-size 64K --io-total 1M \
    --io-pattern rand "$P/$1" >/dev/null 2>&1 &&
    timeout 60 rbd -c "$(conf_of b)" export --no-progress "$P/$1" - 2>/dev/null | sha256sum >"$W/sum-$1"
}
ok_writes=1
for i in "${ALL[@]}"; do write_b "$i" || { ok_writes=0; echo "# write on b's $P/$i failed"; }; done
check "every copy on site b takes writes (1 MiB each, acknowledged)" test $ok_writes = 1
# the writer guard of replicator.h: the daemon that replicates into a secondary holds its
# exclusive lock; a write of another client fails (EROFS) at once
refused_on_c() {
  timeout 20 rbd -c "$(conf_of c)" bench --io-type write --io-size 4K --io-total 4K "$P/$1" >"$W/w.log" 2>&1
  local rc=$?
  echo "# rbd bench on c's $1: exit $rc, $(grep -m1 -iE 'error|read-only|EROFS' "$W/w.log" | cut -c1-120)"
  [ $rc != 0 ] && [ $rc != 124 ]
}
for i in "${A[@]}"; do
  check "  $i (answering PGs): its line says site c answered and it is a secondary there" \
    bash -c "grep -E \"^  image $P/$i ok \" '$T_OUT' | grep -q \"site 'c' answered: \""
  check "  $i on site c: a secondary, fenced at once" test "$(role_on c "$i")" = secondary
  check "  $i on site c: held against other writers (its lock held by site b's daemon)" held_on_c "$i"
  check "  a plain rbd write to it on site c is refused" refused_on_c "$i"
done
# a split copy reached (its line says site c answered; made a secondary or, if a step timed
# out, only fenced) is held too
not_held=""
for i in "${M[@]}"; do
  grep -E "^  image $P/$i ok " "$T_OUT" | grep -q "site 'c' answered" || continue
  held_on_c "$i" || not_held="$not_held $i"
done
check "  every copy of the ${#M[@]} split ones that site c answered for is held there too${not_held:+ (not:$not_held)}" test -z "$not_held"
for i in "${B[@]}"; do
  check "  $i (header in a silent PG): its line says it was not reached and is fenced when its PGs answer" \
    bash -c "grep -E \"^  image $P/$i ok \" '$T_OUT' | grep -qE \"site 'c' did not answer for this copy \\(its rbd_(id|header)\\.[^ ]+ lies in PG [0-9]+\\.[0-9a-f]+, silent at the last probes\\), though it answers partly: its writers are not fenced yet\""
done

# ---- the PGs answer again: the copies not reached are fenced (made secondaries) then
ceph_site c osd pool set "$P" crush_rule replicated_rule >/dev/null 2>&1
check_or_stop "rule undone: site b's daemon sees site c up" wait_for 30 "site c up" c_is up
all_secondary() {
  local i
  for i in "${ALL[@]}"; do [ "$(role_on c "$i")" = secondary ] || return 1; done
}
t0=$SECONDS
check "every copy on site c is a secondary of site b within 60 s (the not reached ones fenced now)" \
  wait_for 60 "every copy on c a secondary" all_secondary
echo "# after $((SECONDS - t0)) s"
for i in "${ALL[@]}"; do echo "#   $i: b $(role_on b "$i"), c $(role_on c "$i")"; done
group_back() { [ "$(role_on c "$GI")" = secondary ]; }
on_b2 group repl sync "$P/$G" >/dev/null 2>&1
check "the group's image on site c is a secondary of site b once its PGs answer" \
  wait_for 60 "the group's image on c a secondary" group_back
check "no copy is primary on both sites: primaries on b, secondaries on c" roles_are primary secondary "${ALL[@]}"
# what site b acknowledged after the failover reaches site c with the next cycle
on_c_has() { # IMAGE: site c's newest sealed snapshot is site b's head after its writes
  local snaps
  snaps=$(repl_snaps c "$1")
  [ -n "$snaps" ] && timeout 60 rbd -c "$(conf_of c)" export --no-progress "$P/$1@${snaps##* }" - 2>/dev/null |
    sha256sum | cmp -s - "$W/sum-$1"
}
for i in "${ALL[@]}"; do on_b2 repl sync "$P/$i" >/dev/null 2>&1; done
all_have() {
  local i
  for i in "${ALL[@]}"; do on_c_has "$i" || return 1; done
}
held_all() { local i; for i in "${ALL[@]}"; do held_on_c "$i" || return 1; done; }
check "every copy on site c is held against other writers" wait_for 30 "every copy on c held" held_all
check "  a plain rbd write to one not reached during the failover (${B[0]}) is refused" refused_on_c "${B[0]}"
check "what site b acknowledged after the failover is on site c after a cycle (every image)" \
  wait_for 60 "the writes on c" all_have

# ---- the contrast: no PG answers; the site is passed by at once
X=()
for k in 1 2 3; do
  make_image "pfo$$-x$k" && X+=("pfo$$-x$k")
done
check_or_stop "3 more images replicated c -> b" test ${#X[@]} = 3
ceph_site c osd pool set "$P" crush_rule "$NONE" 2>&1 | sed 's/^/# /' 
ceph_site c pg map "$POOL_ID.0" | sed 's/^/# /'
check "no PG with an OSD: site b's daemon sees site c down" wait_for 30 "site c down" c_is down
echo "# site status c on b: $(on_b2 site status c --output json 2>/dev/null | jq -c '{health, pgs, pgs_unanswered, error}')"
t0=$SECONDS
expect_rc 0 "repl failover --from c --to b --force --pool $P, site c down" \
  timeout 150 env IMGSTORE_SERVER=unix:$W/pfo-b-$$.sock "$CLI" repl failover --from c --to b --force --pool "$P"
took=$((SECONDS - t0))
sed 's/^/# /' "$T_OUT" "$T_ERR" | cut -c1-300
check "  it took ${took}s: site c passed by at once (< osd_timeout ${OSD_TIMEOUT}s)" test "$took" -lt $OSD_TIMEOUT
check "  three ok lines, the summary saying site c did not answer" bash -c "
  [ \$(grep -cE '^  image $P/pfo$$-x[0-9] ok ' '$T_OUT') = 3 ] &&
  grep -q \"site 'c' did not answer: its writers are fenced when it returns\" '$T_OUT'"
check "  the three are primaries on site b" on_b_primary "${X[@]}"
ceph_site c osd pool set "$P" crush_rule replicated_rule >/dev/null 2>&1

for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
pids=()
grep -hE "forced failover|answers partly|answers again" "$W"/pfo-b-$$.log | cut -c1-260 | sed 's/^/# /' | tail -n 20
finish

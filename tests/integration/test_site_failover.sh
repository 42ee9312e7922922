#!/usr/bin/env bash
# A lost site, failed over as a whole: site a frozen (its Ceph daemons stopped), then
# `repl failover --from a --to b --force` asked of site b. Every image and the consistency
# group are promoted in one call (the group at its cut, its members never one by one), the
# dead site is not waited for, the CLI prints one line per image and group and the total time;
# the reverse pairs to the dead site do not run cycles while it is down; when it returns, its
# stale copies become secondaries of site b (the fence deferred until then).
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
SANDBOX=${IMS_SOURCE_DIR:?}/scripts/sandbox
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
out=/tmp/sfo-out.$$ err=/tmp/sfo-err.$$
T_OUT=$out T_ERR=$err

N=6
p=sfo$$ g=sfo$$-g d1=sfo$$-d1 d2=sfo$$-d2
imgs=()
for i in $(seq 1 $N); do imgs+=("$p-$i"); done
FROZEN=""
cleanup() {
  [ -n "$FROZEN" ] && "$SANDBOX" thaw-site "$IMGSTORE_SANDBOX" a >/dev/null 2>&1
  forget_group "$g" $d1 $d2
  forget_images "${imgs[@]}"
  rm -f $out $err
}
trap cleanup EXIT

role_of() { local r; r=$(rbd_on "$1" image-meta get "rbd/$2" imgstore.repl.role 2>/dev/null); echo "${r:-primary}"; }
metric() { curl -sf --max-time 10 --cacert "$IMGSTORE_CA_FILE" "$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }
last_repl_snap() { rbd_on "$1" snap ls --format json "rbd/$2" 2>/dev/null | jq -r '[.[] | select(.name | startswith("imgstore-repl-"))] | last | .name // ""'; }

for i in "${imgs[@]}" $d1 $d2; do
  on_a image create "rbd/$i" --size 16M >/dev/null 2>&1 || not_ok "create rbd/$i"
  rbd_on a bench --io-type write --io-size 64K --io-total 1M --io-pattern rand "rbd/$i" >/dev/null 2>&1
done
for i in "${imgs[@]}"; do
  on_a repl enable "rbd/$i" --to b --rpo 1h >/dev/null 2>&1 || not_ok "enable rbd/$i"
  on_a repl sync "rbd/$i" >/dev/null 2>&1 || not_ok "sync rbd/$i"
done
expect_rc 0 "group create and add" bash -c "IMGSTORE_SERVER=$IMGSTORE_SERVER_A '$CLI' group create rbd/$g && IMGSTORE_SERVER=$IMGSTORE_SERVER_A '$CLI' group add rbd/$g rbd/$d1 rbd/$d2"
expect_rc 0 "group repl enable and sync" bash -c "IMGSTORE_SERVER=$IMGSTORE_SERVER_A '$CLI' group repl enable rbd/$g --to b --rpo 1h && IMGSTORE_SERVER=$IMGSTORE_SERVER_A '$CLI' group repl sync rbd/$g"
sealed=()
for i in "${imgs[@]}"; do sealed+=("$(last_repl_snap b "$i")"); done
check "every image has a sealed snapshot on site b" bash -c "for s in ${sealed[*]}; do [ -n \"\$s\" ] || exit 1; done; [ ${#sealed[@]} = $N ]"

# site ls on site a: its own site and site b answer, and b gets the pairs of every image and the group
sites=$(on_a --format json site ls 2>/dev/null)
echo "# site ls on a: $(jq -c '[.[] | {name, local, health, pairs}]' <<<"$sites")"
check "site ls: site a local and up, site b up" \
  jq -e '([.[] | select(.name == "a" and .local == true and .health == "up")] | length == 1) and ([.[] | select(.name == "b" and .health == "up")] | length == 1)' <<<"$sites"
check "  with the pairs replicated to b ($N images and the group at least)" \
  jq -e --argjson n $((N + 1)) '.[] | select(.name == "b") | (.pairs // 0) >= $n' <<<"$sites"

# site a is lost; site b's daemon sees it down before it is asked
"$SANDBOX" freeze-site "$IMGSTORE_SANDBOX" a >/dev/null
FROZEN=a
up=
a_down() { up=$(metric "$IMGSTORE_SERVER_B" 'imgstore_site_up{site="a"}'); [ "$up" = 0 ]; }
wait_until 30 1 a_down
check "site b's daemon sees site a down (imgstore_site_up 0)" test "$up" = 0
st=$(on_b --format json site status a 2>/dev/null)
echo "# site status a on b: $(jq -c '{health, error, last_answer_seconds}' <<<"$st")"
check "  site status a on site b says down, and why" jq -e '.health == "down" and (.error | length > 0)' <<<"$st"
expect_rc 1 "  site status of a site nobody knows" on_b site status nowhere
t0=$SECONDS
expect_rc 0 "repl failover --from a --to b --force, asked of site b" on_b repl failover --from a --to b --force
took=$((SECONDS - t0))
cat $out
check "  it took ${took}s: the dead site was not waited for per image (< 5 s monitor timeout each)" test "$took" -lt 30
check "  the summary says how long it took" grep -qE "failed over to site 'b' in [0-9.]+s" $out
check "  and that site a did not answer" grep -q "site 'a' did not answer" $out
check "  one ok line per image ($N)" test "$(grep -cE "^  image rbd/$p-[0-9]+ ok " $out)" = $N
check "  one ok line for the group, none for its members" bash -c "grep -qE '^  group rbd/$g ok ' $out && ! grep -qE '^  image rbd/($d1|$d2) ' $out"
all_primary=1
for k in "${!imgs[@]}"; do
  i=${imgs[$k]}
  [ "$(role_of b "$i")" = primary ] || { all_primary=0; echo "# rbd/$i is $(role_of b "$i") on site b"; }
done
check "every image is the primary on site b" test $all_primary = 1
check "the group's members are primary on site b" test "$(role_of b $d1),$(role_of b $d2)" = "primary,primary"
write_b() { rbd_on b bench --io-type write --io-size 64K --io-total 256K "rbd/$1" >/dev/null 2>&1; }
check "an image takes writes on site b" write_b "${imgs[0]}"
st=$(on_b --format json repl status "rbd/${imgs[1]}" 2>/dev/null | jq -r '.[0].error // ""')
for _ in $(seq 1 10); do
  case $st in *"does not answer"*) break ;; esac
  sleep 1
  st=$(on_b --format json repl status "rbd/${imgs[1]}" 2>/dev/null | jq -r '.[0].error // ""')
done
check "the reverse pair to site a waits for it instead of running cycles ($st)" grep -q "does not answer" <<<"$st"

# site a returns: its stale copies (nothing written there since) become secondaries of site b
"$SANDBOX" thaw-site "$IMGSTORE_SANDBOX" a >/dev/null
FROZEN=""
role=
a_rejoined() { role=$(role_of a "${imgs[0]}"); [ "$role" = secondary ]; }
wait_until 120 1 a_rejoined
check "after the thaw, site a's copy rejoined as a secondary (fenced then)" test "$role" = secondary
# the group's too: its disks were not written after its cut, so the replication back makes it a
# secondary by itself (a written one waits for `group repl resync`: test_group_failover.sh)
g_rejoined() { [ "$(role_of a $d1),$(role_of a $d2)" = "secondary,secondary" ]; }
check "  and so did the group's two disks, by themselves" wait_until 120 1 g_rejoined

finish

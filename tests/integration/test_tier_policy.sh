#!/usr/bin/env bash
# Tiering policies end to end, against the sandbox: in a pool of its own, an idle image, a
# clone of a golden image, the golden image (has clones), an image a host holds a live lease
# on, and an image marked replicated. The dry run (`tier policy set --dry-run`, and `tier
# policy run --dry-run` once saved) lists exactly the idle image and the clone, and says why
# the others stay; then site a's daemon, restarted with a short [defaults] tier_scan_interval,
# pushes exactly those two, and the idle one restores byte for byte.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
CONF=$(site_conf a)
out=/tmp/tierpol-out.$$ err=/tmp/tierpol-err.$$
T_OUT=$out T_ERR=$err
rbd_a() { timeout 120 rbd -c "$CEPH_CONF_A" "$@"; }

P=tierpol$$
tmp=$(mktemp -d /tmp/imgstore-tierpol.XXXXXX)
lease=""
config_keep a
cleanup() {
  config_restore a
  "$CLI" tier policy rm "$P" >/dev/null 2>&1
  [ -n "$lease" ] && "$CLI" host lease release "$lease" >/dev/null 2>&1
  timeout 60 ceph -c "$CEPH_CONF_A" osd pool rm "$P" "$P" --yes-i-really-really-mean-it >/dev/null 2>&1
  rm -rf "$tmp" $out $err
}
trap cleanup EXIT

timeout 60 ceph -c "$CEPH_CONF_A" osd pool create "$P" 8 >/dev/null 2>&1 && rbd_a pool init "$P" ||
  { echo "Bail out! cannot create pool $P"; exit 1; }

random_file "$tmp/idle.raw" 16M 3@2
expect_rc 0 "import the idle image" "$CLI" image import "$tmp/idle.raw" "$P/idle"
expect_rc 0 "create golden" "$CLI" image create "$P/golden" --size 8M
expect_rc 0 "snapshot golden" "$CLI" snap create "$P/golden@base"
expect_rc 0 "clone golden" "$CLI" image clone "$P/golden@base" "$P/child"
expect_rc 0 "create leased" "$CLI" image create "$P/leased" --size 8M
expect_rc 0 "create repl" "$CLI" image create "$P/repl" --size 8M
rbd_a image-meta set "$P/repl" imgstore.repl.role primary >/dev/null
expect_rc 0 "register a host" "$CLI" host register "h$$"
expect_rc 0 "lease 'leased' for 10 minutes" "$CLI" --format json host lease acquire "$P/leased" --host "h$$" --ttl 10m
lease=$(jq -r '.id' $out)

# RBD keeps creation time as the first access and modify times: wait past a 1 s idle time
sleep 3

reason_of() { jq -r --arg i "$1" '.[] | select(.image == $i) | .reason' $out; }
starts() { [[ "$1" == "$2"* ]]; }
matches() { [[ "$1" == $2 ]]; }
in_rbd() { rbd_a info "$P/$1" >/dev/null 2>&1; }
pushed_set() { jq -r '[.[] | select(.push) | .image] | sort | join(",")' $out; }

expect_rc 0 "dry run of an unsaved policy" "$CLI" --format json tier policy set "$P" --cold-after 1s --to rgw --dry-run
check "it lists every image" test "$(jq -r '[.[].image] | sort | join(",")' $out)" = "child,golden,idle,leased,repl"
check "it would push exactly idle and child (got '$(pushed_set)')" test "$(pushed_set)" = "child,idle"
check "golden stays: has clones ('$(reason_of golden)')" test "$(reason_of golden)" = "has clones"
check "leased stays: the live lease ($(reason_of leased))" starts "$(reason_of leased)" "leased by host 'h$$' until "
check "repl stays: replicated ($(reason_of repl))" starts "$(reason_of repl)" "replicated (primary)"
check "idle: idle for some seconds ($(reason_of idle))" matches "$(reason_of idle)" 'idle for * (cold after 1s)'
check "the last access is known" jq -e >/dev/null '.[] | select(.image == "idle") | .last_access_unix > 1600000000' $out
expect_rc 1 "the dry run saved nothing" "$CLI" tier policy show "$P"
check "says there is none" grep -q "has no tiering policy" $err

expect_rc 0 "a long idle time: nothing to push" "$CLI" --format json tier policy set "$P" --cold-after 1h --dry-run
check "nothing pushed" test "$(pushed_set)" = ""
check "idle: used recently ($(reason_of idle))" matches "$(reason_of idle)" 'used * ago (cold after 1h)'

expect_rc 2 "--cold-after is required" "$CLI" tier policy set "$P"
expect_rc 2 "a bad --after" "$CLI" tier policy set "$P" --cold-after 1d --after shred
expect_rc 1 "an unknown target" "$CLI" tier policy set "$P" --cold-after 1d --to nowhere
expect_rc 2 "policy run needs --dry-run" "$CLI" tier policy run "$P"

expect_rc 0 "save the policy" "$CLI" tier policy set "$P" --cold-after 1s --to rgw
expect_rc 0 "show it" "$CLI" --format json tier policy show "$P"
check "as saved" jq -e >/dev/null '.[0].pool == "'"$P"'" and .[0].cold_after_seconds == 1 and .[0].target == "rgw" and .[0].after == "trash"' $out
expect_rc 0 "list the policies" "$CLI" --format json tier policy show
check "it is listed" jq -e >/dev/null 'any(.[]; .pool == "'"$P"'")' $out
expect_rc 0 "dry run of the saved policy" "$CLI" --format json tier policy run "$P" --dry-run
check "same verdict (got '$(pushed_set)')" test "$(pushed_set)" = "child,idle"

# the scan: site a's daemon with a 2 s interval
rbd_a export --no-progress "$P/idle" "$tmp/idle.before" >/dev/null
printf 'tier_scan_interval = 2s\n' >>"$CONF"
daemon_stop a
daemon_start a || not_ok "site a's daemon restarted"
gone() { ! in_rbd "$1"; }
for _ in $(seq 1 90); do
  gone idle && gone child && break
  sleep 1
done
check "the scan pushed idle" gone idle
check "the scan pushed child" gone child
check "golden is still in RBD" in_rbd golden
check "leased is still in RBD" in_rbd leased
check "repl is still in RBD" in_rbd repl
expect_rc 0 "tier ls" "$CLI" --format json tier ls --target rgw
check "idle and child are cold on rgw" jq -e >/dev/null '(map(.name) | index("'"$P"'/idle")) and (map(.name) | index("'"$P"'/child"))' $out
check "and nothing else of the pool" test "$(jq -r '[.[] | select(.name | startswith("'"$P"'/")) | .name] | length' $out)" = 2
expect_rc 0 "op ls" "$CLI" --format json op ls --all
check "the pushes are tier-push operations that succeeded" \
  jq -e >/dev/null '[.[] | select(.kind == "tier-push" and .target == "'"$P"'/idle" and .state == "succeeded")] | length == 1' $out
sleep 5
check "no second push of the same image" bash -c "'$CLI' --format json op ls --all | jq -e >/dev/null '[.[] | select(.kind == \"tier-push\" and (.target | startswith(\"$P/\")))] | length == 2' >/dev/null"

expect_rc 0 "remove the policy" "$CLI" tier policy rm "$P"
expect_rc 1 "it is gone" "$CLI" tier policy show "$P"
expect_rc 1 "removing it again" "$CLI" tier policy rm "$P"
sleep 3 # a scan that read the policy before its removal ends
expect_rc 0 "restore idle" "$CLI" tier restore "$P/idle"
rbd_a export --no-progress "$P/idle" "$tmp/idle.after" >/dev/null
check "restored byte for byte" cmp "$tmp/idle.before" "$tmp/idle.after"

finish

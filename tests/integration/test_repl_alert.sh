#!/usr/bin/env bash
# The RPO alert webhook: site a's imgstored runs with [defaults] alert_webhook pointing at a
# receiver that answers 500 to the first 2 POSTs. Site b stops answering: one rpo_violation
# arrives after the retries (1 s, then 2 s); it answers again: one rpo_recovered. The
# original configuration and daemon come back whatever happens.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
SRC=${IMS_SOURCE_DIR:?}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
CONF=$(site_conf a)

work=$(mktemp -d)
rpid=""
img=alert$$
restore() {
  thaw_site b 2>/dev/null
  forget_replica "$img"
  config_restore a
  [ -n "$rpid" ] && kill "$rpid" 2>/dev/null
  rm -rf "$work"
}
trap restore EXIT

python3 "$SRC/tests/integration/webhook_receiver.py" "$work/port" "$work/posts" 2 &
rpid=$!
wait_until 50 0.1 test -s "$work/port"
check "the receiver listens" test -s "$work/port"
port=$(cat "$work/port")

config_keep a
sed -i "/^\[defaults\]/a alert_webhook = http://127.0.0.1:$port/hook" "$CONF"
daemon_stop a
check "site a's imgstored restarts with the webhook" daemon_start a

"$CLI" image create "rbd/$img" --size 16M >/dev/null
check "enable with a 3s RPO" bash -c "'$CLI' repl enable 'rbd/$img' --to b --rpo 3s >/dev/null"
sealed=""
sealed_one() { sealed=$("$CLI" --format json repl status "rbd/$img" | jq -r '.[0].last_sealed_snapshot // ""'); [ -n "$sealed" ]; }
wait_until 60 0.5 sealed_one
check "a first snapshot is sealed" test -n "$sealed"

posts() { jq -c --arg img "rbd/$img" --arg ev "$1" 'select(.body.image == $img and .body.event == $ev)' "$work/posts" 2>/dev/null; }
delivered() { posts "$1" | jq -c 'select(.status == 200)'; }
was_delivered() { [ -n "$(delivered "$1")" ]; }

freeze_site b
wait_until 40 1 was_delivered rpo_violation
check "an rpo_violation was delivered while site b was down" test -n "$(delivered rpo_violation)"
check "after two refused attempts" test "$(posts rpo_violation | jq -s 'map(.status) == [500, 500, 200]')" = true
check "retried after 1 s, then 2 s" test "$(posts rpo_violation | jq -s '(.[1].at - .[0].at) >= 0.9 and (.[2].at - .[1].at) >= 1.9')" = true
v=$(delivered rpo_violation | head -1)
check "the payload says what, where and when ($(echo "$v" | jq -c .body))" test "$(echo "$v" | jq --arg img "rbd/$img" \
  '.body.image == $img and .body.target == "b" and .body.site == "a" and .body.rpo_seconds == 3 and .body.lag_seconds > 3 and (.body.time | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T.*Z$")) and .content_type == "application/json"')" = true
check "the daemon still answers while the webhook retried" bash -c "'$CLI' repl status 'rbd/$img' >/dev/null"

thaw_site b
wait_until 120 1 was_delivered rpo_recovered
check "an rpo_recovered was delivered when site b came back" test -n "$(delivered rpo_recovered)"
r=$(delivered rpo_recovered | head -1)
check "its lag is within the RPO" test "$(echo "$r" | jq '.body.lag_seconds <= 3 and .body.target == "b"')" = true
sleep 3
check "one alert per transition" test "$(posts rpo_violation | jq -s 'map(select(.status == 200)) | length'):$(posts rpo_recovered | jq -s 'length')" = "1:1"
check "the log says it was sent" grep -q "alert webhook: sent rpo_violation of 'rbd/$img' to site 'b' (attempt 3)" "$(site_log a)"

finish

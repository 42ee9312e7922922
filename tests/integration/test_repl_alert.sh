#!/usr/bin/env bash
# The RPO alert webhook: site a's imgstored runs with [defaults] alert_webhook pointing at a
# receiver that answers 500 to the first 2 POSTs. Site b stops answering: one rpo_violation
# arrives after the retries (1 s, then 2 s); it answers again: one rpo_recovered. The
# original configuration and daemon come back whatever happens.
# Then a forced failover to site b and a failback: the pair keeps its RPO of 3 s (the way back
# was set with the daemon's default RPO, 60 s, which the failback kept: a partition shorter
# than that raised no alert, the chaos campaign's round 12); and a partition of site b (every
# packet to its address dropped) raises an rpo_violation within a bounded time, an
# rpo_recovered after the heal.
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
  "$SANDBOX_CMD" heal-site "$IMGSTORE_SANDBOX" b >/dev/null 2>&1
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

# ---- a forced failover and a failback keep the RPO; a partition raises the alert
rpo_on() { IMGSTORE_SERVER=$(server_of "$1") "$CLI" --format json repl status "rbd/$img" 2>/dev/null | jq -r '.[0].rpo_seconds // ""'; }
# the newest delivered EVENT sent at or after $since
since_then() { delivered "$1" | jq -c --arg t "$since" 'select(.body.time >= $t)' | tail -1; }
fresh() { [ -n "$(since_then "$1")" ]; }
primary_on() { [ "$(role_of "$1" "$img")" = primary ] && [ "$(role_of "$2" "$img")" = secondary ]; }
check_or_stop "a forced failover to site b" bash -c "'$CLI' --server '$IMGSTORE_SERVER_B' repl failover 'rbd/$img' --to b --force >/dev/null"
check "  site b replicates back to site a with the pair's RPO of 3 s, not the default (got $(rpo_on b))" test "$(rpo_on b)" = 3
wait_until 60 1 primary_on b a
check_or_stop "a failback to site a" bash -c "'$CLI' --server '$IMGSTORE_SERVER_B' repl failback 'rbd/$img' >/dev/null"
wait_until 60 1 primary_on a b
check "  site a replicates to site b with an RPO of 3 s again (got $(rpo_on a))" test "$(rpo_on a)" = 3
in_rpo() { IMGSTORE_SERVER=$IMGSTORE_SERVER_A "$CLI" --format json repl status "rbd/$img" 2>/dev/null |
  jq -e '.[0].last_sealed_snapshot != "" and .[0].lag_seconds >= 0 and .[0].lag_seconds <= 3' >/dev/null; }
wait_until 60 1 in_rpo
check_or_stop "  and it is within its RPO before the partition" in_rpo

since=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
check_or_stop "site b partitioned" bash -c "'$SANDBOX_CMD' partition-site '$IMGSTORE_SANDBOX' b >/dev/null"
rbd_on a bench --io-type write --io-size 64K --io-total 256K --io-pattern rand "rbd/$img" >/dev/null 2>&1
t0=$SECONDS
wait_until 45 1 fresh rpo_violation
check "an rpo_violation was delivered during the partition (within $((SECONDS - t0)) s)" fresh rpo_violation
v=$(since_then rpo_violation)
check "  its lag is over the RPO of 3 s ($(echo "$v" | jq -c '.body.lag_seconds'))" test "$(echo "$v" | jq '.body.rpo_seconds == 3 and .body.lag_seconds > 3')" = true
check "  the metric says so" test "$(metric "$IMGSTORE_SERVER_A" "imgstore_rpo_violation{image=\"rbd/$img\",target=\"b\"}")" = 1
check "site b healed" bash -c "'$SANDBOX_CMD' heal-site '$IMGSTORE_SANDBOX' b >/dev/null"
wait_until 120 1 fresh rpo_recovered
check "an rpo_recovered was delivered after the heal" fresh rpo_recovered
check "  the metric says so" test "$(metric "$IMGSTORE_SERVER_A" "imgstore_rpo_violation{image=\"rbd/$img\",target=\"b\"}")" = 0

finish

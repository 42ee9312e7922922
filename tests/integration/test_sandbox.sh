#!/usr/bin/env bash
# The sandbox itself, against the clusters of the ctest fixture (env sourced by with-sandbox):
# two independent healthy sites, a working S3 user, an idempotent `up`, and recovery from a
# crashed daemon in a throwaway sandbox of its own.
set -uo pipefail
SRC=${IMS_SOURCE_DIR:?}
SANDBOX=$SRC/scripts/sandbox
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"

healthy() { # HEALTH_OK, or a warning only about redundancy
  local h
  h=$(timeout 20 ceph -c "$1" health 2>&1)
  [[ "$h" == HEALTH_OK* ]] || [[ "$h" == *"no redundancy"* ]]
}

check "env names site a" test -f "${CEPH_CONF_A:-/nonexistent}"
check "env names site b" test -f "${CEPH_CONF_B:-/nonexistent}"
check "site a healthy" healthy "$CEPH_CONF_A"
check "site b healthy" healthy "$CEPH_CONF_B"

fsid_a=$(timeout 20 ceph -c "$CEPH_CONF_A" fsid)
fsid_b=$(timeout 20 ceph -c "$CEPH_CONF_B" fsid)
check "two distinct clusters ($fsid_a, $fsid_b)" test -n "$fsid_a" -a "$fsid_a" != "$fsid_b"

img=sandbox-test-$$
timeout 60 rbd -c "$CEPH_CONF_A" create --size 16M "rbd/$img"
check "an image made on site a is there" timeout 20 rbd -c "$CEPH_CONF_A" info "rbd/$img"
check "and not on site b" bash -c "! timeout 20 rbd -c '$CEPH_CONF_B' info 'rbd/$img' 2>/dev/null"
timeout 60 rbd -c "$CEPH_CONF_A" rm "rbd/$img" >/dev/null 2>&1

# The S3 user answers a signed request (ListBuckets) with 200. curl 7.88 does not send
# x-amz-content-sha256 by itself, and radosgw refuses a SigV4 request without it.
empty_sha=$(printf '' | sha256sum | cut -d' ' -f1)
code=$(curl -s -o /dev/null -w '%{http_code}' -H "x-amz-content-sha256: $empty_sha" --aws-sigv4 "aws:amz:${S3_REGION}:s3" \
  --user "${S3_ACCESS_KEY}:${S3_SECRET_KEY}" "${S3_ENDPOINT}/")
check "signed S3 request accepted (HTTP $code)" test "$code" = 200
code=$(curl -s -o /dev/null -w '%{http_code}' -H "x-amz-content-sha256: $empty_sha" \
  --aws-sigv4 "aws:amz:${S3_REGION}:s3" --user "${S3_ACCESS_KEY}:wrong-secret" "${S3_ENDPOINT}/")
check "a wrong S3 secret refused (HTTP $code)" test "$code" = 403

# `up` again on running sites changes nothing.
pid_before=$(cat "$IMGSTORE_SANDBOX/site-a/run/mon.a.pid")
t0=$(date +%s)
check "second up succeeds" "$SANDBOX" up "$IMGSTORE_SANDBOX" --sites 3 --rgw
check "second up is quick" test $(( $(date +%s) - t0 )) -lt 10
check "second up left the monitor alone" test "$(cat "$IMGSTORE_SANDBOX/site-a/run/mon.a.pid")" = "$pid_before"

# Bad usage is refused at once.
out=$("$SANDBOX" up "$IMGSTORE_SANDBOX" --sites 9 2>&1); rc=$?
check "--sites 9 refused" test $rc -ne 0 -a -n "$(echo "$out" | grep -F -- "--sites takes 1 to 8")"

# A throwaway sandbox: a crashed daemon, then up, then down.
tmp=$(mktemp -d /tmp/imgstore-sandbox-test.XXXXXX)
cleanup() { "$SANDBOX" down "$tmp" >/dev/null 2>&1; rm -rf "$tmp"; }
trap cleanup EXIT
if "$SANDBOX" up "$tmp" --sites 1 --no-daemons; then
  ok "throwaway sandbox up"
  kill -9 "$(cat "$tmp/site-a/run/mon.a.pid")"
  sleep 1
  "$SANDBOX" status "$tmp" >/dev/null 2>&1
  check "status reports the dead monitor" test $? -ne 0
  check "up after a crash rebuilds the site" "$SANDBOX" up "$tmp" --sites 1 --no-daemons
  check "and it is healthy" healthy "$tmp/site-a/ceph.conf"
  check "down stops it" "$SANDBOX" down "$tmp"
  left=$(ps -eo args | grep -F -- "$tmp/site-a/ceph.conf" | grep -v grep || true)
  check "no process left behind" test -z "$left"
  check "down keeps the data" test -f "$tmp/site-a/ceph.conf"
  check "down twice is fine" "$SANDBOX" down "$tmp"
else
  not_ok "throwaway sandbox up"
fi

finish

#!/usr/bin/env bash
# Output built from names that clients choose: an image named with a double quote and a
# backslash, replicated, leaves /metrics a valid Prometheus exposition (label values escaped);
# `group rm` and `group snap --rm` print valid JSON for such names.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
T_OUT=/tmp/on-out.$$ T_ERR=/tmp/on-err.$$

img="on$$\"x\\y" g="ong$$\"q" member=ongi$$
cleanup() {
  "$CLI" repl disable "rbd/$img" >/dev/null 2>&1
  "$CLI" group rm --force "rbd/$g" >/dev/null 2>&1
  for conf in "$CEPH_CONF_A" "$CEPH_CONF_B"; do
    rbd -c "$conf" snap purge "rbd/$img" >/dev/null 2>&1
    rbd -c "$conf" rm --no-progress "rbd/$img" >/dev/null 2>&1
  done
  rbd -c "$CEPH_CONF_A" rm --no-progress "rbd/$member" >/dev/null 2>&1
  rm -f /tmp/on-out.$$ /tmp/on-err.$$ /tmp/on-metrics.$$
}
trap cleanup EXIT

expect_rc 0 "create rbd/$img" "$CLI" image create "rbd/$img" --size 8M
expect_rc 0 "replicate it to site b" "$CLI" repl enable "rbd/$img" --to b --rpo 1h
curl -sf --cacert "$IMGSTORE_CA_FILE" "$IMGSTORE_SERVER_A/metrics" >/tmp/on-metrics.$$
check "the scrape has the pair, its name escaped" \
  grep -qxF "imgstore_replication_rpo_seconds{image=\"rbd/on$$\\\"x\\\\y\",target=\"b\"} 3600" /tmp/on-metrics.$$
# every sample line as the text format has it: NAME{LABEL="VALUE",...} VALUE, with only \\ \" \n
# escapes in values
check "every line of the scrape is valid exposition text" python3 - /tmp/on-metrics.$$ <<'EOF'
import re, sys
sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*'
                    r'(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*\})?'
                    r' [-+0-9.eEInfa]+$')
bad = [l for l in open(sys.argv[1]).read().splitlines() if l and not l.startswith('#') and not sample.match(l)]
for l in bad:
    print("bad line:", l, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF

expect_rc 0 "create group rbd/$g" "$CLI" group create "rbd/$g"
expect_rc 0 "with an image" bash -c "'$CLI' image create 'rbd/$member' --size 8M && '$CLI' group add 'rbd/$g' 'rbd/$member'"
expect_rc 0 "group snap" "$CLI" group snap "rbd/$g@s\"1"
expect_rc 0 "group snap --rm, JSON" "$CLI" --format json group snap "rbd/$g@s\"1" --rm
check "  is valid JSON naming it" test "$(jq -r .removed /tmp/on-out.$$ 2>/dev/null)" = "rbd/$g@s\"1"
expect_rc 0 "group rm, JSON" "$CLI" --format json group rm "rbd/$g" --force
check "  is valid JSON naming it" test "$(jq -r .removed /tmp/on-out.$$ 2>/dev/null)" = "rbd/$g"

finish

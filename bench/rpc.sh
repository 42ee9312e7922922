#!/usr/bin/env bash
# RPC benchmark: ImageService/GetImage calls per second and latency percentiles with 1, 8 and
# 64 concurrent clients, over TLS and over the Unix socket, beside the same lookup made
# in-process through the store library (no transport). One sandbox site, one imgstored.
#
#   bench/rpc.sh [--seconds 10] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=10 DIR=/tmp/imgstore-bench-rpc BUILD=${BUILD:-build}
. tests/lib/bench.sh
options "[--seconds N] [--dir DIR]" seconds=SECS dir=DIR -- "$@"
B=$BUILD/bench/ims-rpc-bench
[ -x "$B" ] || { echo "build first: make build" >&2; exit 1; }
scripts/sandbox up "$DIR/sandbox" --sites 1 --imgstored "$PWD/$BUILD/daemon/imgstored" >/dev/null
trap 'scripts/sandbox down "$DIR/sandbox" >/dev/null 2>&1 || true' EXIT
. "$DIR/sandbox/env"
"$BUILD/cli/imgstore" image rm --purge rbd/bench-rpc >/dev/null 2>&1 || true
"$BUILD/cli/imgstore" image create rbd/bench-rpc --size 10G >/dev/null
"$BUILD/cli/imgstore" snap create rbd/bench-rpc@s1 >/dev/null

echo "| path | clients | calls/s | p50 ms | p90 ms | p99 ms |"
echo "|---|---|---|---|---|---|"
for n in 1 8 64; do
  for path in tls unix direct; do
    case $path in
      tls) out=$("$B" "$IMGSTORE_SERVER_A" "$IMGSTORE_TOKEN_FILE" "$IMGSTORE_CA_FILE" rbd/bench-rpc "$n" "$SECS") ;;
      unix) out=$("$B" "$IMGSTORE_SOCKET_A" "$IMGSTORE_TOKEN_FILE" "" rbd/bench-rpc "$n" "$SECS") ;;
      direct) out=$("$B" --direct "$CEPH_CONF_A" rbd/bench-rpc "$n" "$SECS") ;;
    esac
    echo "$out" | jq -r --arg p "$path" '"| \($p) | \(.clients) | \(.calls_per_second) | \(.p50_ms) | \(.p90_ms) | \(.p99_ms) |"'
  done
done

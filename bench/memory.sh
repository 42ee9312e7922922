#!/usr/bin/env bash
# Memory benchmark: the peak RSS of site a's imgstored (VmHWM) while it replicates an image of
# SIZE (default 8 GiB, every byte written) to site b, pushes a snapshot of it to the sandbox's
# S3 target and restores that, one after the other through the CLI, with `concurrency` and
# `inflight_bytes` as shipped. Beside it, for scale, the peak RSS of the tools an operator
# would use instead for the same three jobs: `rbd export-diff | rbd import-diff`,
# `rbd export | s3cmd put`, `s3cmd get | rbd import` (each the larger of its two processes).
#
#   bench/memory.sh [--size 8G] [--dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=8G DIR=/tmp/imgstore-bench-memory BUILD=${BUILD:-build}
. tests/lib/bench.sh
options "[--size 8G] [--dir DIR]" size=SIZE dir=DIR -- "$@"
CLI=$PWD/$BUILD/cli/imgstore
[ -x "$CLI" ] && [ -x "$BUILD/daemon/imgstored" ] || { echo "build first: make build" >&2; exit 1; }
command -v s3cmd >/dev/null || { echo "s3cmd is missing (apt-get install s3cmd)" >&2; exit 1; }
SB=$DIR/sandbox
fresh_sandbox "$SB"
scripts/sandbox up "$SB" --sites 2 --rgw --store bluestore --imgstored "$PWD/$BUILD/daemon/imgstored" >/dev/null
trap 'scripts/sandbox down "$SB" >/dev/null 2>&1 || true' EXIT
. "$SB/env"
A=$CEPH_CONF_A B=$CEPH_CONF_B
PID=$(cat "$SB/site-a/run/imgstored.pid")
hwm() { awk '/^VmHWM/ { print int($2 / 1024) }' "/proc/$PID/status"; }
rss() { awk '/^VmRSS/ { print int($2 / 1024) }' "/proc/$PID/status"; }
# the larger peak RSS (MiB) of the two sides of a pipe, each run under GNU time
pipe_rss() { echo $(($(sort -n "$DIR/l" "$DIR/r" | tail -1) / 1024)); }
now() { date +%s.%N; }
secs() { printf '%.1f' "$(echo "$2 - $1" | bc -l)"; }

echo "bench: writing $SIZE to rbd/mem on site a" >&2
"$CLI" image create rbd/mem --size "$SIZE" >/dev/null
rbd -c "$A" bench --io-type write --io-size 4M --io-threads 16 --io-total "$SIZE" --io-pattern seq rbd/mem >/dev/null
rbd -c "$A" create --size "$SIZE" rbd/pipe
rbd -c "$A" bench --io-type write --io-size 4M --io-threads 16 --io-total "$SIZE" --io-pattern seq rbd/pipe >/dev/null
idle=$(rss)

t0=$(now)
"$CLI" repl enable rbd/mem --to b --rpo 1h >/dev/null
"$CLI" repl sync rbd/mem >/dev/null
t_sync=$(secs "$t0" "$(now)") h_sync=$(hwm)
rbd -c "$A" snap create rbd/pipe@s1 >/dev/null
rbd -c "$B" create --size "$SIZE" rbd/pipe
/usr/bin/time -f %M -o "$DIR/l" rbd -c "$A" export-diff --no-progress rbd/pipe@s1 - |
  /usr/bin/time -f %M -o "$DIR/r" rbd -c "$B" import-diff --no-progress - rbd/pipe
p_sync=$(pipe_rss)

snap=$(rbd -c "$A" snap ls --format json rbd/mem | jq -r '[.[] | select(.name | startswith("imgstore-repl-"))] | last | .name')
t0=$(now)
"$CLI" tier push "rbd/mem@$snap" --to rgw >/dev/null
t_push=$(secs "$t0" "$(now)") h_push=$(hwm)

read -r S3_ACCESS_KEY S3_SECRET_KEY <"$SB/site-a/rgw/s3-user"
printf '[default]\naccess_key = %s\nsecret_key = %s\nhost_base = 127.0.0.1:%s\nhost_bucket = 127.0.0.1:%s\nuse_https = False\nsignature_v2 = False\n' \
  "$S3_ACCESS_KEY" "$S3_SECRET_KEY" "$(cat "$SB/site-a/rgw/port")" "$(cat "$SB/site-a/rgw/port")" >"$DIR/s3cfg"
chmod 600 "$DIR/s3cfg"
s3() { s3cmd -c "$DIR/s3cfg" --no-progress "$@"; }
s3 mb s3://bench-memory >/dev/null
/usr/bin/time -f %M -o "$DIR/l" rbd -c "$A" export --no-progress rbd/pipe@s1 - |
  /usr/bin/time -f %M -o "$DIR/r" s3cmd -c "$DIR/s3cfg" --no-progress put - s3://bench-memory/pipe.raw >/dev/null
p_push=$(pipe_rss)

t0=$(now)
"$CLI" tier restore "rbd/mem@$snap" --to rbd/mem-back >/dev/null
t_restore=$(secs "$t0" "$(now)") h_restore=$(hwm)
/usr/bin/time -f %M -o "$DIR/l" s3cmd -c "$DIR/s3cfg" --no-progress get s3://bench-memory/pipe.raw - |
  /usr/bin/time -f %M -o "$DIR/r" rbd -c "$A" import --no-progress - rbd/pipe-back >/dev/null
p_restore=$(pipe_rss)

want=$(rbd -c "$A" export --no-progress "rbd/mem@$snap" - | sha256sum)
got=$(rbd -c "$A" export --no-progress rbd/mem-back - | sha256sum)
[ "$want" = "$got" ] || { echo "bench: the restored image differs from rbd/mem@$snap" >&2; exit 1; }
echo "| $SIZE image, one after the other | imgstored peak RSS MiB (VmHWM after the step) | step s | the pipe's peak RSS MiB |"
echo "|---|---|---|---|"
echo "| idle, connected to both sites | $idle | | |"
echo "| replicate to site b (initial sync) | $h_sync | $t_sync | $p_sync (export-diff \| import-diff) |"
echo "| push the sealed snapshot to S3 | $h_push | $t_push | $p_push (export \| s3cmd put) |"
echo "| restore it to another image | $h_restore | $t_restore | $p_restore (s3cmd get \| import) |"
echo
echo "the restored image is byte-identical to the snapshot pushed"

#!/usr/bin/env bash
# Forced failover with the primary's cluster stopped (site a frozen), writes on the new primary
# (site b), the old primary back with its own late writes: split-brain is reported with what
# resync will do, `repl resync` keeps a's diverged head as a recovery snapshot, ships about the
# delta (far below the image size), and the sides converge.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
SANDBOX=${IMS_SOURCE_DIR:?}/scripts/sandbox
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
T_OUT=/tmp/sb-out.$$ T_ERR=/tmp/sb-err.$$

img=sb$$
SIZE_MB=256
cleanup() {
  "$SANDBOX" thaw-site "$IMGSTORE_SANDBOX" a >/dev/null 2>&1
  rm -f /tmp/sb-out.$$ /tmp/sb-err.$$
  forget_images "$img"
}
trap cleanup EXIT

# every rbd call is bounded: a site that does not answer fails the check, not the whole run
RBD_BIN=$(type -P rbd)
rbd() { timeout 120 "$RBD_BIN" "$@"; }
role_of() { local r; r=$(rbd -c "$(conf_of "$1")" image-meta get "rbd/$img" imgstore.repl.role 2>/dev/null); echo "${r:-primary}"; }
sum_at() { rbd -c "$(conf_of "$1")" export --no-progress "rbd/$img${2:+@$2}" - 2>/dev/null | sha256sum | cut -d' ' -f1; }
write_on() { rbd -c "$(conf_of "$1")" bench --io-type write --io-size 64K --io-total "$2" --io-pattern rand "rbd/$img" >/dev/null 2>&1; }
b_status() { on_b --format json repl status "rbd/$img" 2>/dev/null | jq -r ".[0].$1 // \"\""; }

expect_rc 0 "create rbd/$img (${SIZE_MB}M) on site a" on_a image create "rbd/$img" --size "${SIZE_MB}M"
rbd -c "$CEPH_CONF_A" bench --io-type write --io-size 4M --io-total "${SIZE_MB}M" --io-pattern seq "rbd/$img" >/dev/null 2>&1
expect_rc 0 "enable replication to site b" on_a repl enable "rbd/$img" --to b --rpo 10s
expect_rc 0 "sync" on_a repl sync "rbd/$img"
# a delta that may reach site b's head without being sealed: a forced failover rolls it back
write_on a 4M

# site a's cluster stops answering
"$SANDBOX" freeze-site "$IMGSTORE_SANDBOX" a >/dev/null
sealed=$(rbd -c "$CEPH_CONF_B" snap ls --format json "rbd/$img" | jq -r 'last | .name')
check "site b holds a sealed snapshot ($sealed)" test -n "$sealed"
expect_rc 0 "forced failover to site b while site a is down" on_b repl failover "rbd/$img" --to b --force
cat /tmp/sb-out.$$
check "  it says site a did not answer and was not fenced" grep -q "site 'a' did not answer" /tmp/sb-out.$$
check "  site b is the primary" test "$(role_of b)" = primary
check "  at its last sealed snapshot" test "$(sum_at b)" = "$(sum_at b "$sealed")"
expect_rc 1 "a second forced failover is refused (already primary)" on_b repl failover "rbd/$img" --to b --force

# the new primary takes writes
write_on b 8M
b_head=$(sum_at b)

# site a comes back, with its own late writes
check_or_stop "site a serves I/O again after the thaw" "$SANDBOX" thaw-site "$IMGSTORE_SANDBOX" a
# (racy by nature: site b may find the split-brain, from the write before the freeze, and fence
# site a's writers first)
write_on a 4M || echo "# site a's late write did not go through (site b may have fenced it already)"
a_diverged=$(sum_at a)

state=""
split_brain() { state=$(b_status state); [ "$state" = split-brain ]; }
wait_for 120 "site b's status of rbd/$img to say split-brain" split_brain
[ "$state" = split-brain ] || echo "# site b's status of rbd/$img: ${state:-no state}: $(b_status error)"
check_or_stop "site b's status reports split-brain" test "$state" = split-brain
plan=$(b_status error)
echo "# $plan"
check "  and says what resync will do" bash -c "grep -q 'resync keeps its head as snapshot imgstore-recovery-' <<<\"\$1\"" _ "$plan"
check "site a's copy is untouched meanwhile" test "$(sum_at a)" = "$a_diverged"
# its writers were fenced when the split-brain was found, and the stale copy is held: a new
# writer on site a is refused, so it diverges no further
refused() { ! "$@"; }
check "  and a new writer on site a is refused" refused write_on a 1M
check "  which left it as it was" test "$(sum_at a)" = "$a_diverged"
stale=""
a_stale() { stale=$(on_a --format json repl status "rbd/$img" 2>/dev/null | jq -r '.[0].error // ""'); [[ $stale == *stale* ]]; }
wait_for 90 "site a's daemon to call its copy of rbd/$img stale" a_stale
check "site a's daemon knows its copy is stale ($(head -c 100 <<<"$stale"))" grep -q stale <<<"$stale"
check "  and site b's copy was not overwritten by it" test "$(sum_at b)" = "$b_head"

expect_rc 0 "repl resync on site b" on_b repl resync "rbd/$img"
cat /tmp/sb-out.$$
recovery=$(rbd -c "$CEPH_CONF_A" snap ls --format json "rbd/$img" | jq -r '.[] | select(.name | startswith("imgstore-recovery-")) | .name' | head -1)
check "site a kept its diverged head as $recovery" test -n "$recovery"
check "  byte for byte" test "$(sum_at a "$recovery")" = "$a_diverged"
check "site a is a secondary now" test "$(role_of a)" = secondary
shipped=$(b_status last_sync_bytes)
echo "# resync shipped $shipped bytes of a ${SIZE_MB} MiB image"
check "resync shipped about the delta ($shipped bytes), far below the image size" \
  test "$shipped" -gt 0 -a "$shipped" -lt $((SIZE_MB * 1048576 / 8))
check "the sides converged" test "$(sum_at a)" = "$(sum_at b)"
check "  to site b's data" test "$(sum_at b)" = "$b_head"
check "site b's status is no longer split-brain" test "$(b_status state)" != split-brain
gone=0
a_forgot() { on_a --format json repl status "rbd/$img" 2>/dev/null | jq -e 'length == 0' >/dev/null; }
wait_for 60 "site a's daemon to stop replicating rbd/$img" a_forgot && gone=1
check "site a's daemon stopped replicating its old copy" test $gone = 1

finish

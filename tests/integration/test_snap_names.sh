#!/usr/bin/env bash
# Snapshot names that imgstore owns ("imgstore-": replication snapshots, group anchors and cuts,
# recovery snapshots) cannot be created, removed or rolled back to through the API, by a host
# or an admin, on an image or a group; a host cannot snapshot a secondary. Every refusal
# changes nothing.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"
T_OUT=/tmp/sn-out.$$ T_ERR=/tmp/sn-err.$$

img=sn$$ rep=snr$$ g=sng$$
cleanup() {
  "$CLI" group rm --force "rbd/$g" >/dev/null 2>&1
  forget_images "$img" "$rep"
  rm -f /tmp/sn-out.$$ /tmp/sn-err.$$
}
trap cleanup EXIT

host_on() { # SITE CMD...: the CLI with the host token against SITE's daemon
  local s=$1; shift
  IMGSTORE_SERVER=$(server_of "$s") IMGSTORE_TOKEN_FILE=$IMGSTORE_HOST_TOKEN_FILE "$CLI" "$@"
}
snaps() { rbd -c "$1" snap ls --format json "rbd/$2" 2>/dev/null | jq -r '[.[].name] | join(",")'; }

expect_rc 0 "create rbd/$img" on_a image create "rbd/$img" --size 16M

# creating: a host and an admin alike, every prefix imgstore owns
expect_rc 1 "a host cannot create 'imgstore-repl-9999999999999'" host_on a snap create "rbd/$img@imgstore-repl-9999999999999"
check "  says the name is imgstore's own" grep -q "names starting with 'imgstore-' are imgstore's own" /tmp/sn-err.$$
expect_rc 1 "an admin cannot create 'imgstore-repl-1'" on_a snap create "rbd/$img@imgstore-repl-1"
expect_rc 1 "nor 'imgstore-recovery-1'" on_a snap create "rbd/$img@imgstore-recovery-1"
expect_rc 1 "nor 'imgstore-anchor-1'" on_a snap create "rbd/$img@imgstore-anchor-1"
check "no snapshot was made" test "$(snaps "$CEPH_CONF_A" "$img")" = ""
expect_rc 0 "a host snapshots its primary under its own name" host_on a snap create "rbd/$img@host-1"

# removing and rolling back to one of imgstore's snapshots (made here as replication would)
rbd -c "$CEPH_CONF_A" snap create "rbd/$img@imgstore-repl-0000000000001" >/dev/null 2>&1
expect_rc 1 "snap rm of a replication snapshot is refused" on_a snap rm "rbd/$img@imgstore-repl-0000000000001"
check "  says the name is imgstore's own" grep -q "cannot remove snapshot 'imgstore-repl-0000000000001'" /tmp/sn-err.$$
expect_rc 1 "snap rollback to it is refused" on_a snap rollback "rbd/$img@imgstore-repl-0000000000001"
check "both snapshots are still there" test "$(snaps "$CEPH_CONF_A" "$img")" = "host-1,imgstore-repl-0000000000001"
check "no rollback operation ran" bash -c "! '$CLI' --format json op ls --all | jq -e '.[] | select(.kind == \"rollback\" and (.target | startswith(\"rbd/$img@\")))' >/dev/null"

# group snapshots: the cut and anchor names are imgstore's too
expect_rc 0 "group create" on_a group create "rbd/$g"
expect_rc 0 "group add" on_a group add "rbd/$g" "rbd/$img"
expect_rc 1 "group snap 'imgstore-anchor-5' is refused" on_a group snap "rbd/$g@imgstore-anchor-5"
check "  no group snapshot was made" bash -c "! rbd -c '$CEPH_CONF_A' group snap ls 'rbd/$g' | grep -q imgstore-anchor-5"
expect_rc 0 "group rm --force" on_a group rm --force "rbd/$g"

# a secondary: replication alone changes it; a host snapshots the primary
expect_rc 0 "create rbd/$rep" on_a image create "rbd/$rep" --size 16M
expect_rc 0 "replicate it to site b" on_a repl enable "rbd/$rep" --to b --rpo 1h
expect_rc 0 "first sync" on_a repl sync "rbd/$rep"
before=$(snaps "$CEPH_CONF_B" "$rep")
expect_rc 1 "a host cannot snapshot the secondary on site b" host_on b snap create "rbd/$rep@host-on-b"
check "  says it is a secondary" grep -q "is a secondary" /tmp/sn-err.$$
check "  its snapshots are unchanged ($before)" test "$(snaps "$CEPH_CONF_B" "$rep")" = "$before"
expect_rc 0 "the host snapshots the primary on site a" host_on a snap create "rbd/$rep@host-on-a"

finish

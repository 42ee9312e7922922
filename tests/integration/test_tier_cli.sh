#!/usr/bin/env bash
# Cold tiering end to end through the CLI and the sandbox's daemons, which tier to the S3
# target 'rgw' (the sandbox radosgw, configured by `scripts/sandbox up --rgw`): push, the
# cold entry in `image ls`, `tier ls`, restore byte for byte, scrub, gc, and refusals (a
# leased image among them).
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
workdir tmp
p=tiercli$$

random_file "$tmp/vm.raw" 40M 6 3@30
expect_rc 0 "import" "$CLI" image import "$tmp/vm.raw" "rbd/$p-vm"
expect_rc 0 "tag" "$CLI" image tag "rbd/$p-vm" os=debian

expect_rc 0 "push" "$CLI" --format json tier push "rbd/$p-vm" --to rgw
check "push is a succeeded tier-push operation" \
  jq -e '.state == "succeeded" and .kind == "tier-push"' "$T_OUT" >/dev/null
expect_rc 1 "the image is gone from RBD" "$CLI" image info "rbd/$p-vm"
check "image ls shows the cold entry" bash -c "'$CLI' --format json image ls rbd | jq -e '.[] | select(.name == \"$p-vm\")' >/dev/null"
check "image ls says cold" bash -c "'$CLI' image ls rbd | grep '$p-vm' | grep -q 'cold:rgw'"
check "tier ls lists it" bash -c "'$CLI' --format json tier ls | jq -e '.[] | select(.name == \"rbd/$p-vm\" and .target == \"rgw\" and .size == 41943040)' >/dev/null"

expect_rc 0 "restore" "$CLI" tier restore "rbd/$p-vm"
check "the tag came back" bash -c "'$CLI' --format json image info rbd/$p-vm | jq -e '.tags.os == \"debian\"' >/dev/null"
expect_rc 0 "export the restored image" "$CLI" --server "$IMGSTORE_SOCKET_A" image export "rbd/$p-vm" "$tmp/back.raw"
check "restored byte for byte" cmp "$tmp/vm.raw" "$tmp/back.raw"
expect_rc 1 "restore onto an existing image" "$CLI" tier restore "rbd/$p-vm"
check "says it exists" grep -q 'already exists' "$T_ERR"
expect_rc 0 "restore under another name" "$CLI" tier restore "rbd/$p-vm" --to "rbd/$p-copy"

expect_rc 0 "push a snapshot, keeping the image" "$CLI" snap create "rbd/$p-vm@s1"
expect_rc 0 "push @s1" "$CLI" tier push "rbd/$p-vm@s1" --to rgw
expect_rc 0 "the image stays" "$CLI" image info "rbd/$p-vm"
expect_rc 0 "shallow scrub" "$CLI" tier scrub
expect_rc 0 "deep scrub" "$CLI" tier scrub --deep
expect_rc 0 "gc" "$CLI" tier gc --grace 1h

# an image a host leases (not open by anyone) is not pushed away: the daemon's leases count
random_file "$tmp/small.raw" 8M 4
expect_rc 0 "import an image to lease" "$CLI" image import "$tmp/small.raw" "rbd/$p-leased"
"$CLI" host register "$p-hv" >/dev/null 2>&1
lease=$("$CLI" --format json host lease acquire "rbd/$p-leased" --host "$p-hv" --ttl 5m 2>/dev/null | jq -r '.id // ""')
check "lease acquired" test -n "$lease"
expect_rc 1 "push of a leased image" "$CLI" tier push "rbd/$p-leased" --to rgw
check "names the host" grep -q "leased by host '$p-hv'" "$T_ERR"
expect_rc 0 "the leased image stays" "$CLI" image info "rbd/$p-leased"
check "and is not cold" bash -c "! '$CLI' --format json tier ls | jq -e '.[] | select(.name == \"rbd/$p-leased\")' >/dev/null"
expect_rc 0 "keeping it, a leased image is pushed" "$CLI" tier push "rbd/$p-leased" --to rgw --after keep
[ -n "$lease" ] && "$CLI" host lease release "$lease" >/dev/null 2>&1

# the push snapshot of an interrupted push (its daemon killed) goes with the next push of the image
expect_rc 0 "import an image" "$CLI" image import "$tmp/small.raw" "rbd/$p-left"
check "a push snapshot is left on it, as a killed push leaves it" \
  timeout 60 rbd -c "$CEPH_CONF_A" snap create "rbd/$p-left@imgstore-tier-1-0123456789abcdef"
expect_rc 0 "push it, keeping it" "$CLI" tier push "rbd/$p-left" --to rgw --after keep
check "no push snapshot is left on it" \
  bash -c "s=\$(timeout 60 rbd -c '$CEPH_CONF_A' snap ls 'rbd/$p-left') && ! grep -q imgstore-tier- <<<\"\$s\""

expect_rc 1 "an unknown target" "$CLI" tier push "rbd/$p-vm" --to nowhere
check "names it" grep -q "no S3 target 'nowhere'" "$T_ERR"
expect_rc 1 "an unknown cold image" "$CLI" tier restore "rbd/$p-none"
check "says so" grep -q "no cold image" "$T_ERR"
expect_rc 2 "a bad --after" "$CLI" tier push "rbd/$p-vm" --to rgw --after shred

"$CLI" image rm --purge "rbd/$p-copy" >/dev/null 2>&1
"$CLI" image rm --purge "rbd/$p-leased" >/dev/null 2>&1
"$CLI" image rm --purge "rbd/$p-left" >/dev/null 2>&1
"$CLI" snap rm "rbd/$p-vm@s1" >/dev/null 2>&1
"$CLI" image rm --purge "rbd/$p-vm" >/dev/null 2>&1
finish

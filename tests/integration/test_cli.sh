#!/usr/bin/env bash
# The imgstore CLI against the sandbox's daemons: every image and snapshot verb, JSON output
# parsed with jq, imports and exports over TLS (upload/download) and over the Unix socket
# (paths), usage and error exit statuses.
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
workdir tmp
p=cli$$

# a golden image: data, zeros and a tail
random_file "$tmp/golden.raw" 48M 8 2@40
qemu-img convert -O qcow2 "$tmp/golden.raw" "$tmp/golden.qcow2"

# import over TLS (upload), JSON of the finished operation
expect_rc 0 "import over TLS" "$CLI" --format json image import "$tmp/golden.qcow2" "rbd/$p-golden"
check "import result is JSON of a succeeded operation" \
  jq -e '.state == "succeeded" and .kind == "import" and .bytes_total == 50331648' "$T_OUT" >/dev/null
# import over the Unix socket: the daemon reads a path in its [server] import_dirs ...
cp "$tmp/golden.qcow2" "${IMGSTORE_IMPORT_DIR:?}/$p-golden.qcow2"
expect_rc 0 "import over the Unix socket, by path" "$CLI" --server "$IMGSTORE_SOCKET_A" image import "$IMGSTORE_IMPORT_DIR/$p-golden.qcow2" "rbd/$p-golden2"
rm -f "$IMGSTORE_IMPORT_DIR/$p-golden.qcow2"
# ... and the CLI uploads a file outside of them
expect_rc 0 "import over the Unix socket, outside import_dirs: uploaded" "$CLI" --server "$IMGSTORE_SOCKET_A" image import "$tmp/golden.qcow2" "rbd/$p-golden3"
audit=$IMGSTORE_SANDBOX/site-a/log/audit.log
check "  the daemon refused the path, then got the upload" bash -c "grep 'ImportImage target=rbd/$p-golden3 ' '$audit' | grep -q 'result=permission_denied' && grep 'ImportImage target=rbd/$p-golden3 ' '$audit' | grep -q 'result=ok'"
# the same content hash either way
h1=$("$CLI" --format json image info "rbd/$p-golden" | jq -r .content_sha256)
h2=$("$CLI" --format json image info "rbd/$p-golden2" | jq -r .content_sha256)
h3=$("$CLI" --format json image info "rbd/$p-golden3" | jq -r .content_sha256)
check "same content hash by upload and by path ($h1)" test -n "$h1" -a "$h1" = "$h2" -a "$h1" = "$h3"
# declared format that disagrees with the bytes
expect_rc 1 "import with a wrong --format" "$CLI" image import "$tmp/golden.qcow2" "rbd/$p-wrong" --format vmdk
check "the error names both formats" grep -q 'vmdk' "$T_ERR"
expect_rc 1 "import into a taken name" "$CLI" image import "$tmp/golden.qcow2" "rbd/$p-golden"
check "says it exists" grep -q 'already exists' "$T_ERR"
# a Hyper-V VHDX found from its bytes, a fixed VHD declared: the same disk as the qcow2's
qemu-img convert -O vhdx "$tmp/golden.raw" "$tmp/golden.vhdx"
qemu-img convert -O vpc -o subformat=fixed,force_size=on "$tmp/golden.raw" "$tmp/golden.vhd"
expect_rc 0 "import of a vhdx, its format found from its bytes" "$CLI" image import "$tmp/golden.vhdx" "rbd/$p-vhdx"
expect_rc 0 "import of a fixed VHD with --format vpc" "$CLI" image import "$tmp/golden.vhd" "rbd/$p-vhd" --format vpc
h4=$("$CLI" --format json image info "rbd/$p-vhdx" | jq -r .content_sha256)
h5=$("$CLI" --format json image info "rbd/$p-vhd" | jq -r .content_sha256)
check "  the same content hash as the qcow2's" test "$h4" = "$h1" -a "$h5" = "$h1"
check "  the catalog says vhdx" bash -c "'$CLI' --format json image info 'rbd/$p-vhdx' | jq -e '.source == \"vhdx\"' >/dev/null"

# snapshots and clones
expect_rc 0 "snap create" "$CLI" snap create "rbd/$p-golden@base"
expect_rc 0 "clone vm1" "$CLI" image clone "rbd/$p-golden@base" "rbd/$p-vm1"
expect_rc 0 "clone vm2" "$CLI" image clone "rbd/$p-golden@base" "rbd/$p-vm2"
check "snap ls lists base" bash -c "'$CLI' --format json snap ls 'rbd/$p-golden' | jq -e '[.[] | .name] == [\"base\"]' >/dev/null"
check "clone has its parent" bash -c "'$CLI' --format json image info 'rbd/$p-vm1' | jq -e '.parent == \"rbd/$p-golden@base\"' >/dev/null"
expect_rc 1 "snap rm with clones" "$CLI" snap rm "rbd/$p-golden@base"
check "names the clones" grep -q 'clone' "$T_ERR"

# ls, tags, resize, rename
expect_rc 0 "tag" "$CLI" image tag "rbd/$p-vm1" os=debian-12 owner=ops
check "ls json shows tags" bash -c "'$CLI' --format json image ls rbd | jq -e '.[] | select(.name == \"$p-vm1\") | .tags.os == \"debian-12\"' >/dev/null"
check "ls table shows the clone" bash -c "'$CLI' image ls rbd | grep -q '$p-vm2'"
expect_rc 0 "resize grow" "$CLI" image resize "rbd/$p-vm2" --size 64M
expect_rc 1 "resize shrink refused" "$CLI" image resize "rbd/$p-vm2" --size 16M
expect_rc 0 "resize shrink allowed" "$CLI" image resize "rbd/$p-vm2" --size 56M --allow-shrink
check "size is 56 MiB" bash -c "'$CLI' --format json image info 'rbd/$p-vm2' | jq -e '.size == 58720256' >/dev/null"

# attach-info for a hypervisor host
expect_rc 1 "attach-info without a host: refused" "$CLI" image attach-info "rbd/$p-vm1" --format libvirt
check "  saying how to name one" grep -q "attach-info needs a host" "$T_ERR"
expect_rc 0 "attach-info libvirt" "$CLI" image attach-info "rbd/$p-vm1" --format libvirt --client-id hv1 --secret-uuid 11111111-2222-3333-4444-555555555555
check "libvirt disk names the volume" grep -q "name='rbd/$p-vm1'" "$T_OUT"
site_addr=$(cat "$IMGSTORE_SANDBOX/site-a/addr" 2>/dev/null || echo 127.0.0.1)
check "and a monitor ($site_addr)" grep -qF "<host name='$site_addr' port=" "$T_OUT"
check "and the secret" grep -q "uuid='11111111-2222-3333-4444-555555555555'" "$T_OUT"
expect_rc 0 "attach-info --host: that host's [host] section" "$CLI" image attach-info "rbd/$p-vm1" --host sandbox-host --format libvirt
check "  its cephx user and secret" bash -c "grep -q \"<auth username='sandbox-host'>\" '$T_OUT' && grep -q \"uuid='$IMGSTORE_HOST_SECRET_UUID'\" '$T_OUT'"

# export: over TLS (download) and over the socket (path); both equal the golden content
expect_rc 0 "export over TLS as raw" "$CLI" image export "rbd/$p-golden@base" "$tmp/out-tls.raw"
check "download equals the source" cmp -s "$tmp/out-tls.raw" "$tmp/golden.raw"
expect_rc 0 "export over the socket as qcow2, outside export_dirs: downloaded" "$CLI" --server "$IMGSTORE_SOCKET_A" image export "rbd/$p-golden" "$tmp/out-sock.qcow2" --format qcow2
check "qcow2 export compares equal" qemu-img compare -q -f qcow2 -F raw "$tmp/out-sock.qcow2" "$tmp/golden.raw"
expect_rc 0 "export over the socket into export_dirs: the daemon writes it" "$CLI" --server "$IMGSTORE_SOCKET_A" image export "rbd/$p-golden" "${IMGSTORE_EXPORT_DIR:?}/$p-out.raw"
check "raw export equals the source" cmp -s "$IMGSTORE_EXPORT_DIR/$p-out.raw" "$tmp/golden.raw"
rm -f "$IMGSTORE_EXPORT_DIR/$p-out.raw"
expect_rc 1 "export over an existing file" "$CLI" image export "rbd/$p-golden" "$tmp/out-tls.raw"
expect_rc 0 "export over TLS as vmdk" "$CLI" image export "rbd/$p-golden" "$tmp/out.vmdk" --format vmdk
check "vmdk export passes qemu-img check" qemu-img check -q -f vmdk "$tmp/out.vmdk"
check "vmdk export is streamOptimized" bash -c "qemu-img info -f vmdk '$tmp/out.vmdk' | grep -q 'create type: streamOptimized'"
check "vmdk export compares equal" qemu-img compare -q -f vmdk -F raw "$tmp/out.vmdk" "$tmp/golden.raw"

# rollback and flatten as operations
expect_rc 0 "flatten" "$CLI" image flatten "rbd/$p-vm1"
expect_rc 0 "rollback" "$CLI" snap rollback "rbd/$p-golden@base"
check "op ls shows the flatten" bash -c "'$CLI' --format json op ls --all | jq -e '[.[] | select(.kind == \"flatten\" and .state == \"succeeded\")] | length >= 1' >/dev/null"

# errors and usage
expect_rc 1 "unknown image" "$CLI" image info "rbd/$p-nope"
check "one-line message" bash -c "[ \$(wc -l < '$T_ERR') -eq 1 ] && grep -q \"no image 'rbd/$p-nope'\" '$T_ERR'"
expect_rc 2 "missing --size" "$CLI" image create "rbd/$p-x"
expect_rc 2 "bad spec" "$CLI" image info "no-pool-here"
expect_rc 2 "unknown verb" "$CLI" image frobnicate
expect_rc 0 "verb help" "$CLI" image import --help
expect_rc 1 "tiering to an unknown target" "$CLI" tier push "rbd/$p-vm1" --to no-such-target
check "names the target" grep -q "no S3 target 'no-such-target'" "$T_ERR"
expect_rc 1 "a server that is down" "$CLI" --server https://127.0.0.1:9 image ls
expect_rc 1 "a bad token" env IMGSTORE_TOKEN_FILE="$IMGSTORE_READER_TOKEN_FILE" "$CLI" image rm "rbd/$p-vm2"
check "the role is refused" grep -q 'may not call ImageService/DeleteImage' "$T_ERR"

# cleanup
for img in vm1 vm2 golden golden2 golden3 vhdx vhd; do "$CLI" image rm --purge "rbd/$p-$img" >/dev/null 2>&1; done
check "purged" bash -c "! '$CLI' image ls rbd | grep -q '$p-'"

finish

#!/usr/bin/env bash
# SIGHUP reloads the configuration, and attach-info takes a hypervisor's identity from it:
#   - a host without a [host NAME] section is refused attach-info (never the daemon's own
#     cephx user); after its section is added and SIGHUP, it gets XML naming its own cephx
#     user and libvirt secret, and that XML is valid for libvirt (virt-xml-validate);
#   - a file with a bad line changes nothing: the error is logged, the old sections stay;
#   - a change that needs a restart ([server] listen) is named in the log and not applied;
#   - log_level applies at once; a new token line works after SIGHUP.
# The daemon is a second one of site a, on ports and paths of its own.
set -uo pipefail
IMGSTORED=${IMS_BINARY_DIR:?}/daemon/imgstored
CLI=${IMS_BINARY_DIR}/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/sandbox.sh"

W=$(mktemp -d /tmp/imgstore-reload.XXXXXX)
daemon=""
cleanup() {
  [ -n "$daemon" ] && kill -KILL "$daemon" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

second_conf a "$W" reload-2 "s|^token_file = .*|token_file = $W/tokens|" >"$W/d.conf"
# a token file of its own, to change
(umask 077; cp "$(sed -n 's/^token_file = //p' "$IMGSTORE_SANDBOX/site-a/imgstored.conf")" "$W/tokens")
check "the sandbox's config names sandbox-host only" bash -c "grep -q '^\[host sandbox-host\]' '$W/d.conf' && ! grep -q '^\[host sandbox-host2\]' '$W/d.conf'"
# LINE...: the daemon's log has a line matching, within 10 s
logged() { local end=$((SECONDS + 10)); while [ $SECONDS -lt $end ]; do grep -q -- "$1" "$W/d.log" && return 0; sleep 0.2; done; return 1; }
# hup PATTERN: SIGHUP, then the pattern in what the daemon logged after it
hup() { local from; from=$(wc -l <"$W/d.log"); kill -HUP "$daemon"
  local end=$((SECONDS + 10)); while [ $SECONDS -lt $end ]; do tail -n +"$((from + 1))" "$W/d.log" | grep -q -- "$1" && return 0; sleep 0.2; done; return 1; }

setsid "$IMGSTORED" --config "$W/d.conf" </dev/null >>"$W/d.log" 2>&1 &
daemon=$!
up=0
for _ in $(seq 1 120); do curl -sf --max-time 2 --unix-socket "$W/reload-2.sock" http://localhost/readyz >/dev/null && { up=1; break; }; sleep 0.5; done
check "the daemon serves" test $up = 1

img=reload$$
"$CLI" --server "$W/reload-2.sock" image create "rbd/$img" --size 16M >/dev/null 2>&1
check "an image to attach" quiet "$CLI" --server "$W/reload-2.sock" image info "rbd/$img"
host2() { IMGSTORE_TOKEN_FILE=$IMGSTORE_HOST2_TOKEN_FILE "$CLI" --server "$W/reload-2.sock" image attach-info "rbd/$img" "$@"; }

# ---- a host with no [host] section: a clear refusal
host2 --format libvirt >"$W/out" 2>"$W/err"; rc=$?
check "sandbox-host2 without a [host] section is refused (exit $rc)" test $rc != 0
check "  saying which section to add" grep -q "no cephx user and libvirt secret are known for host 'sandbox-host2': add a \[host sandbox-host2\] section" "$W/err"
check "  on one line" test "$(wc -l <"$W/err")" = 1
check "  and no XML" test ! -s "$W/out"

# ---- its section added: SIGHUP applies it
uuid=$(uuidgen)
printf '\n[host sandbox-host2]\ncephx_user = hv2\nlibvirt_secret = %s\n' "$uuid" >>"$W/d.conf"
check "SIGHUP: the configuration is reloaded" hup "configuration '$W/d.conf' reloaded (1 change)"
check "  the new [host] section is applied" grep -q "configuration: \[host sandbox-host2\] added or removed: applied" "$W/d.log"
host2 --format libvirt >"$W/disk.xml" 2>"$W/err"; rc=$?
check "sandbox-host2 now gets its XML (exit $rc: $(head -c 200 "$W/err"))" test $rc = 0
check "  naming its own cephx user" grep -q "<auth username='hv2'>" "$W/disk.xml"
check "  and its libvirt secret" grep -q "<secret type='ceph' uuid='$uuid'/>" "$W/disk.xml"
check "  not the daemon's user" bash -c "! grep -q \"username='admin'\" '$W/disk.xml'"
# libvirt's schema: the <disk> inside a minimal domain
{
  echo "<domain type='kvm'><name>reload-test</name><memory unit='MiB'>128</memory>"
  echo "<os><type arch='x86_64'>hvm</type></os><devices>"
  cat "$W/disk.xml"
  echo "</devices></domain>"
} >"$W/domain.xml"
check "  and valid against libvirt's domain schema (virt-xml-validate)" quiet virt-xml-validate "$W/domain.xml" domain
# the placeholder the old default printed is what libvirt refuses: the check can fail
sed "s/uuid='$uuid'/uuid='SECRET-UUID'/" "$W/domain.xml" >"$W/bad.xml"
check "  (virt-xml-validate refuses a placeholder secret)" bash -c "! virt-xml-validate '$W/bad.xml' domain >/dev/null 2>&1"
IMGSTORE_TOKEN_FILE=$IMGSTORE_HOST_TOKEN_FILE "$CLI" --server "$W/reload-2.sock" --format json image attach-info "rbd/$img" >"$W/h1.json" 2>"$W/err"
check "sandbox-host still gets its own (JSON: host, client_id, secret_uuid)" \
  quiet jq -e --arg u "$IMGSTORE_HOST_SECRET_UUID" '.host == "sandbox-host" and .client_id == "sandbox-host" and .secret_uuid == $u' "$W/h1.json"

# ---- a bad file changes nothing
cp "$W/d.conf" "$W/good.conf"
printf '\n[host sandbox-host3]\ncephx_user = hv3\nlibvirt_secret = not-a-uuid\n' >>"$W/d.conf"
sed -i "s/^libvirt_secret = $uuid/libvirt_secret = $(uuidgen)/" "$W/d.conf"
check "SIGHUP with a bad line: not reloaded, the line named" hup "not reloaded: $W/d.conf:[0-9]*: bad value 'not-a-uuid' for 'libvirt_secret'"
check "  the old configuration stays" logged "configuration '$W/d.conf' not reloaded: it has bad lines (above); the old one stays"
host2 --format libvirt >"$W/disk2.xml" 2>"$W/err"
check "  sandbox-host2 keeps its old secret" grep -q "uuid='$uuid'" "$W/disk2.xml"
check "  the daemon still serves" quiet curl -sf --max-time 5 --unix-socket "$W/reload-2.sock" http://localhost/readyz

# ---- what needs a restart is named, not applied; log_level applies
cp "$W/good.conf" "$W/d.conf"
sed -i -e "s|^listen = .*|listen = 127.0.0.1:$(free_port)|" -e "s/^log_level = .*/log_level = debug/" "$W/d.conf"
check "SIGHUP with a new listen address: reloaded" hup "configuration '$W/d.conf' reloaded (2 changes)"
check "  listen named as waiting for a restart" grep -q "configuration: \[server\] listen changed: takes effect at the next restart" "$W/d.log"
check "  log_level applied" grep -q "configuration: log_level is now debug" "$W/d.log"
check "  the old socket still serves" quiet curl -sf --max-time 5 --unix-socket "$W/reload-2.sock" http://localhost/readyz

# ---- a token added to the token file works after SIGHUP; the file's path needs a restart
tok=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
echo "$tok" >"$W/reader.token"
cp "$W/tokens" "$W/tokens2"
echo "reader $tok reload-reader" >>"$W/tokens2"
sed -i "s|^token_file = .*|token_file = $W/tokens2|" "$W/d.conf"
check "SIGHUP with another token_file path: named as waiting for a restart" hup "\[server\] token_file changed: takes effect at the next restart"
IMGSTORE_TOKEN_FILE=$W/reader.token "$CLI" --server "$W/reload-2.sock" image info "rbd/$img" >/dev/null 2>&1; rc=$?
check "  the other file's token is not accepted (exit $rc)" test $rc != 0
cp "$W/tokens2" "$W/tokens.tmp" && mv "$W/tokens.tmp" "$W/tokens"
check "SIGHUP after the token file changed: tokens reloaded" hup "tokens reloaded"
IMGSTORE_TOKEN_FILE=$W/reader.token "$CLI" --server "$W/reload-2.sock" image info "rbd/$img" >/dev/null 2>&1; rc=$?
check "  the new token is accepted (exit $rc)" test $rc = 0

"$CLI" --server "$W/reload-2.sock" image rm --purge "rbd/$img" >/dev/null 2>&1
kill -TERM "$daemon"; wait "$daemon"; rc=$?; daemon=""
check "SIGTERM ends it (exit $rc)" test $rc = 0
if [ $fails -ne 0 ]; then sed 's/^/# /' "$W/d.log" | tail -40; fi
finish

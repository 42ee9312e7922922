#!/usr/bin/env bash
# The Ansible roles run for real (ansible/site.yml, connection local) against the sandbox's
# sites a and b, with every file in a temporary root instead of /etc and /var:
#   - imgstore_cephx makes the cephx users on both clusters with `profile rbd pool=rbd` and
#     nothing more (a user made beforehand with other caps gets exactly these);
#   - imgstored writes each site's config, ceph.conf and keyrings, TLS material, tokens and S3
#     files with their modes, and the daemons it configures (started here, from the build) serve:
#     an admin over the Unix socket creates an image and replicates it to site b (the peer
#     user's caps), a hypervisor with the client.env and host token the role wrote registers
#     itself over TLS and gets its attach-info, and site a sees site b answer;
#   - imgstore_hypervisor defines a libvirt secret per site (libvirt's embedded secret driver,
#     in the temporary root) holding the host's cephx key there, and both sites' daemons get
#     its token and a [host] section with their site's secret;
#   - a second run changes nothing (changed=0 on every host);
#   - a third run with a second hypervisor changes the config but not its part that needs a
#     restart (the digest of it stays), and after SIGHUP the new host gets its attach-info.
# No package is installed and no service managed (imgstore_install_package=false,
# imgstore_manage_service=false).
set -uo pipefail
SRC=${IMS_SOURCE_DIR:?}
IMGSTORED=${IMGSTORED_BIN:-${IMS_BINARY_DIR:?}/daemon/imgstored}
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
: "${IMGSTORE_SANDBOX:?run with the sandbox env (tests/with-sandbox)}" "${CEPH_CONF_A:?}" "${CEPH_CONF_B:?}"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
t0=$SECONDS

R=$(mktemp -d /tmp/imgstore-ansible.XXXXXX)
chmod 755 "$R"
# hv-a1 attaches disks of both sites (the default); hv-a2, which the third run adds, of a only
USERS_A="imgstore-a imgstore-b imgstore-host-hv-a1"
USERS_A_ALL="$USERS_A imgstore-host-hv-a2"
USERS_B="imgstore-a imgstore-b imgstore-host-hv-a1"
pid_a="" pid_b=""
cleanup() {
  local p
  for p in $pid_a $pid_b; do kill -TERM "$p" 2>/dev/null; done
  for p in $pid_a $pid_b; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  for c in "$CEPH_CONF_A" "$CEPH_CONF_B"; do
    for i in "rbd/ansible-$$" "rbd/ansible-$$-b"; do
      rbd -c "$c" snap purge "$i" >/dev/null 2>&1
      rbd -c "$c" rm "$i" >/dev/null 2>&1
    done
  done
  for u in $USERS_A_ALL; do ceph -c "$CEPH_CONF_A" auth rm "client.$u" >/dev/null 2>&1; done
  for u in $USERS_B; do ceph -c "$CEPH_CONF_B" auth rm "client.$u" >/dev/null 2>&1; done
  rm -rf "$R"
}
trap cleanup EXIT
for u in $USERS_A_ALL; do ceph -c "$CEPH_CONF_A" auth rm "client.$u" >/dev/null 2>&1; done
for u in $USERS_B; do ceph -c "$CEPH_CONF_B" auth rm "client.$u" >/dev/null 2>&1; done

token() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }
PORT_A=$(free_port) PORT_B=$(free_port)
ADMIN_TOKEN=$(token) HV_TOKEN=$(token) HV2_TOKEN=$(token)
TIER_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077; echo "$ADMIN_TOKEN" >"$R/admin.token")

# a user that exists already with other caps: the role sets them to profile rbd
ceph -c "$CEPH_CONF_A" auth get-or-create client.imgstore-b mon 'allow r' osd 'allow rwx' >/dev/null

site_host() { # NAME LETTER PORT: an imgstored host of site LETTER, its files under $R/NAME
  cat <<YML
        $1:
          imgstore_site: $2
          imgstore_etc_dir: $R/$1/etc/imgstore
          imgstored_state_dir: $R/$1/var/lib/imgstore
          imgstored_log_dir: $R/$1/var/log/imgstore
          imgstored_unix_socket: $R/$1/run/imgstore/imgstored.sock
          imgstored_listen: 127.0.0.1:$3
          imgstored_ceph_client_options:
            admin socket: "$R/$1/run/imgstore/\$cluster-\$name.\$pid.\$cctid.asok"
YML
}
hv_host() { # NAME TOKEN [SITES]: a hypervisor of home site a, its files under $R/NAME
  cat <<YML
        $1:
          imgstore_site: a
          imgstore_etc_dir: $R/$1/etc/imgstore
          imgstore_host_token: "$2"
          imgstore_libvirt_uri: "secret:///embed?root=$R/$1/libvirt"
YML
  [ -z "${3:-}" ] || echo "          imgstore_host_sites: $3"
}
inventory() {
{
  cat <<YML
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: /usr/bin/python3
    imgstore_install_package: false
    imgstore_manage_service: false
    imgstore_user: root
    imgstore_group: root
    imgstored_bin: $IMGSTORED
    imgstore_sites:
      a: {pools: [rbd], api_url: "https://127.0.0.1:$PORT_A"}
      b: {pools: [rbd], api_url: "https://127.0.0.1:$PORT_B"}
    imgstore_tls_ca: "{{ lookup('ansible.builtin.file', '$IMGSTORE_SANDBOX/tls/cert.pem') }}"
    imgstored_tls_cert: "{{ lookup('ansible.builtin.file', '$IMGSTORE_SANDBOX/tls/cert.pem') }}"
    imgstored_tls_key: "{{ lookup('ansible.builtin.file', '$IMGSTORE_SANDBOX/tls/key.pem') }}"
    imgstored_tokens:
      - {role: admin, name: ansible-admin, token: "$ADMIN_TOKEN"}
    imgstored_s3_targets:
      - name: rgw
        endpoint: "${S3_ENDPOINT:-http://127.0.0.1:1}"
        bucket: imgstore-cold
        region: "${S3_REGION:-default}"
        access_key: "${S3_ACCESS_KEY:-none}"
        secret_key: "${S3_SECRET_KEY:-none}"
        tier_key: "$TIER_KEY"
        timeout: 30s
    imgstored_peer_options: {mon_timeout: 5s, osd_timeout: 5s}
    imgstored_defaults: {probe_interval: 1s, log_level: info}
  children:
    imgstore_ceph_admin:
      hosts:
        admin-a: {imgstore_site: a, imgstore_cephx_ceph_conf: "$CEPH_CONF_A"}
        admin-b: {imgstore_site: b, imgstore_cephx_ceph_conf: "$CEPH_CONF_B"}
    imgstored:
      hosts:
YML
  site_host imgstored-a a "$PORT_A"
  site_host imgstored-b b "$PORT_B"
  echo "    imgstore_hypervisors:"
  echo "      hosts:"
  hv_host hv-a1 "$HV_TOKEN"
  [ -z "${HV2:-}" ] || hv_host hv-a2 "$HV2_TOKEN" "[a]"
} >"$R/hosts.yml"
}
inventory

play() { # LOG [ARG...]: run the playbook, output in LOG
  ANSIBLE_CONFIG=$SRC/ansible/ansible.cfg ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 \
    ANSIBLE_LOCAL_TEMP="$R/ansible-tmp" ANSIBLE_REMOTE_TEMP="$R/ansible-tmp" \
    ansible-playbook -i "$R/hosts.yml" "$SRC/ansible/site.yml" "${@:2}" >"$1" 2>&1
}
t1=$SECONDS
play "$R/run1.log"; rc=$?
check "the first run succeeds (exit $rc, $((SECONDS - t1)) s)" test $rc = 0
[ $rc = 0 ] || sed -n "/PLAY RECAP/q;p" "$R/run1.log" | tail -30 | sed "s/^/# /"
recap() { sed -n '/PLAY RECAP/,$p' "$1" | sed 's/^/# /'; }
recap "$R/run1.log"
check "  and changes something" grep -Eq 'changed=[1-9]' "$R/run1.log"
check "  no secret in its output" bash -c "! grep -qF -e '$ADMIN_TOKEN' -e '$HV_TOKEN' -e '$TIER_KEY' '$R/run1.log'"

# ---- cephx: exactly profile rbd on the pool, on both clusters
want='{"mgr": "profile rbd pool=rbd", "mon": "profile rbd", "osd": "profile rbd pool=rbd"}'
caps() { ceph -c "$1" auth get "client.$2" -f json 2>/dev/null |
  python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)[0]["caps"], sort_keys=True))'; }
for u in $USERS_A; do
  got=$(caps "$CEPH_CONF_A" "$u")
  check "site a: client.$u has exactly $want (got: $got)" test "$got" = "$want"
done
for u in $USERS_B; do
  got=$(caps "$CEPH_CONF_B" "$u")
  check "site b: client.$u has exactly $want (got: $got)" test "$got" = "$want"
done

# ---- files and their modes
A=$R/imgstored-a/etc/imgstore HV=$R/hv-a1/etc/imgstore
mode() { stat -c %a "$1" 2>/dev/null; }
for f in imgstored.conf:640 tokens:600 ceph/a.keyring:640 ceph/b.keyring:640 ceph/a.conf:640 ceph/b.conf:640 \
  tls/key.pem:640 tls/cert.pem:644 s3/rgw.credentials:600 s3/rgw.key:600; do
  check "imgstored-a: ${f%:*} has mode ${f#*:}" test "$(mode "$A/${f%:*}")" = "${f#*:}"
done
for f in host.token:600 client.env:640 client.a.env:640 client.b.env:640 ca.pem:644; do
  check "hv-a1: ${f%:*} has mode ${f#*:}" test "$(mode "$HV/${f%:*}")" = "${f#*:}"
done
check "imgstored-a: its keyring on site b is client.imgstore-a's key there" \
  grep -qF "key = $(ceph -c "$CEPH_CONF_B" auth print-key client.imgstore-a)" "$A/ceph/b.keyring"
check "imgstored-a: [peer b] uses client_id imgstore-a" \
  bash -c "sed -n '/^\[peer b\]/,/^\[/p' '$A/imgstored.conf' | grep -qx 'client_id = imgstore-a'"
B=$R/imgstored-b/etc/imgstore
check "imgstored-a: its own instance name (the inventory's), not the machine's host name" \
  grep -qx 'instance = imgstored-a' "$A/imgstored.conf"
check "imgstored-a: the config passes --check-config" quiet "$IMGSTORED" --config "$A/imgstored.conf" --check-config
check "imgstored-b: the config passes --check-config" quiet "$IMGSTORED" --config "$B/imgstored.conf" --check-config

# ---- the libvirt secrets: one per site, each holding the host's key on that site's cluster
secrets=$(virsh --quiet --connect "secret:///embed?root=$R/hv-a1/libvirt" secret-list 2>&1)
echo "$secrets" | sed 's/^/# /'
uuid_a=$(awk '$2 == "ceph" && $3 == "client.imgstore-host-hv-a1" && $4 == "a" { print $1 }' <<<"$secrets")
uuid_b=$(awk '$2 == "ceph" && $3 == "client.imgstore-host-hv-a1" && $4 == "b" { print $1 }' <<<"$secrets")
for site in a b; do
  u=uuid_$site; u=${!u}; conf=CEPH_CONF_${site^^}
  check "hv-a1: a libvirt secret of usage 'ceph client.imgstore-host-hv-a1 $site' ($u)" test -n "$u"
  check "  private, holding the host's key on site $site" bash -c \
    "grep -q \"private='yes'\" '$R/hv-a1/libvirt/etc/secrets/$u.xml' &&
     [ \"\$(cat '$R/hv-a1/libvirt/etc/secrets/$u.base64')\" = \"\$(ceph -c '${!conf}' auth print-key client.imgstore-host-hv-a1)\" ]"
  D=$R/imgstored-$site/etc/imgstore
  check "imgstored-$site: the token file names the hypervisor: host TOKEN hv-a1" grep -qx "host $HV_TOKEN hv-a1" "$D/tokens"
  check "imgstored-$site: [host hv-a1] with its cephx user and its secret for site $site" \
    bash -c "sed -n '/^\[host hv-a1\]/,/^\[/p' '$D/imgstored.conf' | tr '\n' ' ' | grep -q 'cephx_user = imgstore-host-hv-a1 libvirt_secret = $u'"
done
check "hv-a1: client.b.env names site b's daemon" grep -qx "IMGSTORE_SERVER=https://127.0.0.1:$PORT_B" "$HV/client.b.env"

# ---- the daemons it configured serve
start() { # NAME: start that host's imgstored from the build, with the config the role wrote
  setsid "$IMGSTORED" --config "$R/$1/etc/imgstore/imgstored.conf" </dev/null >>"$R/$1.log" 2>&1 &
  echo $!
}
pid_a=$(start imgstored-a)
pid_b=$(start imgstored-b)
SOCK_A=$R/imgstored-a/run/imgstore/imgstored.sock
ready() { curl -sf --max-time 3 --unix-socket "$1" http://localhost/readyz >/dev/null; }
t1=$SECONDS
for _ in $(seq 1 60); do ready "$SOCK_A" && break; sleep 0.5; done
check "site a's imgstored is ready ($((SECONDS - t1)) s)" ready "$SOCK_A"
check "site b's imgstored is ready" bash -c "for _ in \$(seq 1 60); do curl -sf --max-time 3 --unix-socket '$R/imgstored-b/run/imgstore/imgstored.sock' http://localhost/readyz >/dev/null && exit 0; sleep 0.5; done; exit 1"
[ "$fails" = 0 ] || { tail -20 "$R/imgstored-a.log" | sed 's/^/# /'; }
asok=$(ls "$R"/imgstored-a/run/imgstore/*.asok 2>/dev/null | head -1)
check "the daemon's Ceph clients have admin sockets where the ceph.conf's [client] says ($asok)" \
  quiet ceph --admin-daemon "$asok" version
admin() { "$CLI" --server "unix:$SOCK_A" --token-file "$R/admin.token" "$@"; }
img=rbd/ansible-$$
check "an admin creates an image through it (the daemon's cephx user writes the pool)" quiet admin image create "$img" --size 4M
check "  and sees it" bash -c "'$CLI' --server 'unix:$SOCK_A' --token-file '$R/admin.token' image ls rbd | grep -q 'ansible-$$'"
# the CLI as the hypervisor: only what its env file sets (not the sandbox's IMGSTORE_* variables)
hv_env() { env -u IMGSTORE_SERVER -u IMGSTORE_TOKEN_FILE -u IMGSTORE_CA_FILE -u IMGSTORE_CERT_FILE -u IMGSTORE_KEY_FILE \
  bash -c 'set -e; set -a; . "$0"; set +a; exec "$@"' "$HV/$1" "$CLI" "${@:2}"; }
hv() { hv_env client.env "$@"; }
check "hv-a1, with the client.env and host token the role wrote, registers itself over TLS" quiet hv host register hv-a1
out=$(hv host register hv-other 2>&1); rc=$?
refused() { [ "$1" != 0 ] && case $2 in *"may not register for host 'hv-other'"*) true ;; *) false ;; esac; }
check "  and may not register another host (exit $rc: $out)" refused "$rc" "$out"
peer_up() { admin site ls --format json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
sites = d if isinstance(d, list) else next(v for v in d.values() if isinstance(v, list))
sys.exit(0 if any(s.get("name") == "b" and s.get("health") == "up" for s in sites) else 1)'; }
check "site a's daemon reaches site b with its peer keyring (site b up)" \
  bash -c "$(declare -f admin peer_up); CLI='$CLI' SOCK_A='$SOCK_A' R='$R'; for _ in \$(seq 1 30); do peer_up && exit 0; sleep 1; done; exit 1"
# replication with the peer user: daemon a writes the copy on site b as client.imgstore-a
check "the image replicates to site b (repl enable)" quiet admin repl enable "$img" --to b --rpo 1h
check "  a sync seals it there, through the peer keyring and its profile rbd caps" quiet admin repl sync "$img" --to b
check "  and the copy equals the primary (repl verify)" quiet admin repl verify "$img" --to b
check "  the copy is on site b" quiet rbd -c "$CEPH_CONF_B" info "$img"
admin repl disable "$img" --to b >/dev/null 2>&1
attach() { hv image attach-info "$img" --format libvirt >"$R/disk.xml" 2>"$R/attach.err"; }
check "hv-a1 gets attach-info for the image ($(head -c 200 "$R/attach.err" 2>/dev/null))" attach
check "  naming its own cephx user" grep -q "<auth username='imgstore-host-hv-a1'>" "$R/disk.xml"
check "  and the libvirt secret the role defined for site a" grep -q "<secret type='ceph' uuid='$uuid_a'/>" "$R/disk.xml"
{
  echo "<domain type='kvm'><name>ansible-test</name><memory unit='MiB'>128</memory>"
  echo "<os><type arch='x86_64'>hvm</type></os><devices>"
  cat "$R/disk.xml"
  echo "</devices></domain>"
} >"$R/domain.xml"
check "  valid for libvirt (virt-xml-validate)" quiet virt-xml-validate "$R/domain.xml" domain
# site b's daemon, with client.b.env: the same host, its secret for site b
"$CLI" --server "unix:$R/imgstored-b/run/imgstore/imgstored.sock" --token-file "$R/admin.token" \
  image create "$img-b" --size 4M >/dev/null 2>&1
hv_env client.b.env image attach-info "$img-b" --format libvirt >"$R/disk-b.xml" 2>"$R/attach.err"; rc=$?
check "hv-a1 gets attach-info from site b's daemon with client.b.env (exit $rc $(head -c 200 "$R/attach.err"))" test $rc = 0
check "  naming its cephx user and its secret for site b" \
  bash -c "grep -q \"<auth username='imgstore-host-hv-a1'>\" '$R/disk-b.xml' && grep -q \"<secret type='ceph' uuid='$uuid_b'/>\" '$R/disk-b.xml'"

# ---- a second run changes nothing
t1=$SECONDS
play "$R/run2.log"; rc=$?
check "the second run succeeds (exit $rc, $((SECONDS - t1)) s)" test $rc = 0
recap "$R/run2.log"
nhosts=$(grep -Ec '^[a-z0-9-]+ +: ok=' "$R/run2.log")
check "  on all 5 hosts ($nhosts in the recap)" test "$nhosts" = 5
check "  and changes nothing (changed=0 on every host)" bash -c "! grep -E '^[a-z0-9-]+ +: ok=' '$R/run2.log' | grep -vq 'changed=0 '"
grep -E '^(changed|TASK)' "$R/run2.log" | grep -B1 '^changed' | sed 's/^/# /'
check "the daemons still run" kill -0 "$pid_a" "$pid_b"

# ---- a hypervisor added: the config changes, not what needs a restart; SIGHUP applies it
HV2=1 inventory
digest=$(cat "$A/imgstored.conf.restart-sha256")
t1=$SECONDS
play "$R/run3.log" --limit admin-a,admin-b,imgstored-a,hv-a2; rc=$?
check "a third run with hypervisor hv-a2 added succeeds (exit $rc, $((SECONDS - t1)) s)" test $rc = 0
[ $rc = 0 ] || sed -n "/PLAY RECAP/q;p" "$R/run3.log" | tail -30 | sed "s/^/# /"
changed_tasks() { awk '/^TASK \[/ { t = $0; sub(/^TASK \[/, "", t); sub(/\] \**$/, "", t) } /^changed: \[/ { h = $2; gsub(/[][]/, "", h); print h ": " t }' "$1"; }
changed_tasks "$R/run3.log" | sed 's/^/# changed: /'
check "  imgstored-a's config changes (a reload)" grep -qx "imgstored-a: imgstored : Write imgstored.conf" <(changed_tasks "$R/run3.log")
check "  its token file too" grep -qx "imgstored-a: imgstored : Write the token file" <(changed_tasks "$R/run3.log")
check "  not the digest of what needs a restart" test "$(cat "$A/imgstored.conf.restart-sha256")" = "$digest"
check "  so nothing of the daemon's notifies a restart" bash -c "! grep -q 'RUNNING HANDLER \[imgstored : Restart imgstored\]' '$R/run3.log'"
check "  the config has [host hv-a2]" grep -qx '\[host hv-a2\]' "$A/imgstored.conf"
check "  hv-a2 (imgstore_host_sites: [a]) has no user on site b" bash -c "! ceph -c '$CEPH_CONF_B' auth get client.imgstore-host-hv-a2 >/dev/null 2>&1"
check "  and no client.b.env" test ! -e "$R/hv-a2/etc/imgstore/client.b.env"
kill -HUP "$pid_a"
HV=$R/hv-a2/etc/imgstore
check "after SIGHUP, hv-a2 (its own client.env and token) gets attach-info naming its cephx user" bash -c \
  "$(declare -f hv_env hv attach); CLI='$CLI' HV='$HV' R='$R' img='$img';
   for _ in \$(seq 1 20); do attach && grep -q \"<auth username='imgstore-host-hv-a2'>\" '$R/disk.xml' && exit 0; sleep 0.5; done; exit 1"
admin image rm "$img" >/dev/null 2>&1

echo "# $((SECONDS - t0)) s"
finish

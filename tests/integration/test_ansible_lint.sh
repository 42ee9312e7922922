#!/usr/bin/env bash
# ansible/ passes ansible-lint (offline, the production profile, no rule skipped: ansible/.ansible-lint)
# and `ansible-playbook --syntax-check` of site.yml with the example inventory; and the lint
# configuration bites: a copy of the roles with a task that breaks rules of that profile fails.
set -uo pipefail
SRC=${IMS_SOURCE_DIR:?}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
workdir
export ANSIBLE_NOCOLOR=1 NO_COLOR=1 ANSIBLE_LOCAL_TEMP=$W/tmp

command -v ansible-lint >/dev/null || { echo "not ok - ansible-lint is missing: run scripts/install-deps"; exit 1; }
# offline: no schema refresh, no collection install, no version check (.ansible-lint says so too)
lint() { (cd "$1" && ansible-lint --offline --nocolor -p 2>&1); }

out=$(lint "$SRC/ansible"); rc=$?
check "ansible-lint passes (exit $rc)" test $rc = 0
echo "$out" | sed 's/^/# /'
check "  with the production profile" grep -q "production" "$SRC/ansible/.ansible-lint"
check "  skipping no rule (skip_list and warn_list empty)" python3 -c '
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
sys.exit(0 if not c.get("skip_list") and not c.get("warn_list") and c.get("use_default_rules", True) else 1)' "$SRC/ansible/.ansible-lint"

out=$(cd "$SRC/ansible" && ANSIBLE_CONFIG=$SRC/ansible/ansible.cfg \
  ansible-playbook -i inventory/example/hosts.yml site.yml --syntax-check 2>&1); rc=$?
check "ansible-playbook --syntax-check site.yml with the example inventory (exit $rc)" test $rc = 0
echo "$out" | sed 's/^/# /'
out=$(cd "$SRC/ansible" && ANSIBLE_CONFIG=$SRC/ansible/ansible.cfg \
  ansible-inventory -i inventory/example/hosts.yml --graph 2>&1); rc=$?
check "the example inventory has two sites with a Ceph admin host, daemons and hypervisors each" \
  bash -c "[ $rc = 0 ] && grep -q '@site_a' <<<'$out' && grep -q '@site_b' <<<'$out' && grep -q '@imgstore_ceph_admin' <<<'$out'"

# the inventory's checks stop a bad inventory before anything is changed (connection local;
# the first tasks of the first play are the checks, so no Ceph is needed)
bad_run() { # EXTRA_YAML_FOR_ALL_VARS HOSTS_YAML: run site.yml on such an inventory
  cat >"$W/bad.yml" <<YML
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: /usr/bin/python3
    imgstore_sites: {a: {pools: [rbd], api_url: "https://127.0.0.1:1"}}
$1
  children:
    imgstore_ceph_admin: {hosts: {admin-a: {imgstore_site: a}}}
    imgstore_hypervisors:
      hosts:
$2
YML
  (cd "$SRC/ansible" && ANSIBLE_CONFIG=$SRC/ansible/ansible.cfg ansible-playbook -i "$W/bad.yml" site.yml 2>&1)
}
out=$(bad_run "" "        hv1: {imgstore_site: a, imgstore_host_name: hv}
        hv2: {imgstore_site: a, imgstore_host_name: hv}"); rc=$?
check "two hypervisors with one name are refused (exit $rc)" \
  bash -c "[ $rc != 0 ] && grep -q 'two hypervisors share a name' <<<\"\$1\" && ! grep -q 'Read the cephx users' <<<\"\$1\"" _ "$out"
out=$(bad_run "" "        hv1: {imgstore_site: c}"); rc=$?
check "a host of a site that imgstore_sites does not name is refused in the first play (exit $rc)" \
  bash -c "[ $rc != 0 ] && grep -q 'fatal: \[admin-a\].*it does not on hv1' <<<\"\$1\"" _ "$out"
out=$(bad_run "    imgstore_cephx_ceph_conf: $W/none.conf" "        hv1: {imgstore_site: a}"); rc=$?
check "a ceph CLI that cannot reach the cluster is refused, with its error (exit $rc)" \
  bash -c "[ $rc != 0 ] && grep -q 'could not read cephx users with ceph --conf $W/none.conf --name client.admin: Error initializing cluster client' <<<\"\$1\"" _ "$out"
out=$(bad_run "    imgstore_package_source: pip" "        hv1: {imgstore_site: a}"); rc=$?
check "an unknown package source is refused (exit $rc)" bash -c "[ $rc != 0 ] && grep -q 'imgstore_package_source' <<<\"\$1\"" _ "$out"

# a task breaking rules of the profile: no name, a bare module name, a command without
# changed_when, a file without a mode
cp -a "$SRC/ansible" "$W/ansible"
cat >>"$W/ansible/roles/imgstored/tasks/main.yml" <<'YML'

- command: ceph auth ls
- name: Write a file
  ansible.builtin.copy:
    content: x
    dest: /tmp/x
YML
out=$(lint "$W/ansible"); rc=$?
check "a task that breaks the rules fails the lint (exit $rc)" test $rc != 0
for rule in 'name\[missing\]' 'fqcn\[action-core\]' no-changed-when risky-file-permissions; do
  check "  by $rule" grep -q "$rule" <<<"$out"
done

finish

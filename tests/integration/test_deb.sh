#!/usr/bin/env bash
# The Debian packages (debian/, built as `make deb` does: scripts/make-deb on a copy of this
# checkout): dpkg-buildpackage builds them and lintian finds no error; each package holds what
# it should (the unit naming /usr/sbin/imgstored); then they are installed on this machine for
# real (dpkg -i): the programs run, the service user and its directories exist, the example
# config passes --check-config, a program builds against libimgstore-dev; and purged cleanly.
# Whatever the installation added that was not there before (the packages, the user imgstore,
# its directories, the unit's enablement) is removed again on exit, however the test ends.
# Not root, or imgstore's packages already installed here: the installation part is skipped.
set -uo pipefail
SRC=${IMS_SOURCE_DIR:?}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
PKGS=(libimgstore0 libimgstore-dev imgstore imgstored)
W=$(mktemp -d /tmp/imgstore-deb.XXXXXX)
OUT=$W/out
installed_by_us=0
declare -A existed=()
WANTS=/etc/systemd/system/multi-user.target.wants/imgstored.service
LEFT=(/etc/imgstore /var/lib/imgstore /var/log/imgstore "$WANTS")

is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }
# dpkg, waiting (up to 2 minutes) while another dpkg or apt holds its lock
dpkg_wait() {
  local i
  for ((i = 0; i < 60; i++)); do
    dpkg "$@" >>"$W/dpkg.log" 2>&1 && return 0
    grep -q 'lock' <(tail -3 "$W/dpkg.log") || return 1
    sleep 2
  done
  return 1
}
cleanup() {
  local p
  if [ "$installed_by_us" = 1 ]; then
    for p in "${PKGS[@]}"; do
      if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -qv 'not-installed'; then
        dpkg_wait --purge "$p" || echo "# cleanup: dpkg --purge $p failed (see $W/dpkg.log)"
      fi
    done
    for p in "${LEFT[@]}"; do
      [ "${existed[$p]}" = 1 ] || rm -rf "$p"
    done
    if [ "${existed[user]}" = 0 ] && getent passwd imgstore >/dev/null; then userdel imgstore; fi
    if [ "${existed[group]}" = 0 ] && getent group imgstore >/dev/null; then groupdel imgstore; fi
  fi
  rm -rf "$W"
}
trap cleanup EXIT
trap "exit 1" INT TERM HUP

# --- build: one dpkg-buildpackage, lintian --fail-on error (scripts/make-deb runs both)
start=$(date +%s)
if bash "$SRC/scripts/make-deb" "$OUT" 2 >"$W/build.log" 2>&1; then
  ok "dpkg-buildpackage built the packages and lintian found no error ($(($(date +%s) - start)) s)"
else
  not_ok "scripts/make-deb failed; its last lines:"
  tail -30 "$W/build.log" | sed 's/^/#   /'
fi
check "lintian reported no error" bash -c "! grep -q '^E: ' '$W/build.log'"
grep -E '^[EW]: ' "$W/build.log" | sed 's/^/# lintian: /'
version=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
project_version=$(sed -n 's/^project(imgstore VERSION \([^ )]*\).*/\1/p' "$SRC/CMakeLists.txt")
check "debian/changelog's version ($version) is the project's (CMakeLists.txt: $project_version)" \
  test "${version%-*}" = "$project_version"
deb() { echo "$OUT/${1}_${version}_$arch.deb"; }
for p in "${PKGS[@]}"; do
  check "package $p was built" test -f "$(deb "$p")"
done
check "the source package was built" test -f "$OUT/imgstore_$version.dsc"
# every file git knows (but .gitignore, which dpkg-source leaves out) is in the source package
tar -tf "$OUT/imgstore_$version.tar.xz" 2>/dev/null | grep -v '/$' | sed 's|^[^/]*/||' | sort >"$W/in-source"
(cd "$SRC" && git ls-files -co --exclude-standard | while read -r f; do [ -e "$f" ] && echo "$f"; done) |
  grep -vx '.gitignore' | sort >"$W/in-git"
check "the source package holds every file of the checkout" diff "$W/in-git" "$W/in-source"

# --- contents
has() { # PACKAGE PATH...: the package holds every PATH
  local p=$1 f; shift
  dpkg-deb -c "$(deb "$p")" 2>/dev/null | awk '{print substr($6, 2)}' >"$W/contents" || return 1
  for f in "$@"; do grep -qx "$f" "$W/contents" || { echo "# $p lacks $f"; return 1; }; done
}
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
check "imgstore holds /usr/bin/imgstore, the operator's guide, imgstore(1) and the bash completion" \
  has imgstore /usr/bin/imgstore /usr/share/doc/imgstore/OPERATIONS.md /usr/share/doc/imgstore/CONFIG.md \
  /usr/share/man/man1/imgstore.1.gz /usr/share/bash-completion/completions/imgstore
check "imgstored holds the daemon, its unit, sysusers.d, tmpfiles.d, logrotate, the example config, the alert rules, the dashboard and its man pages" \
  has imgstored /usr/sbin/imgstored /lib/systemd/system/imgstored.service /usr/lib/sysusers.d/imgstore.conf \
  /usr/lib/tmpfiles.d/imgstore.conf /etc/logrotate.d/imgstored /usr/share/doc/imgstored/examples/imgstored.conf.example \
  /usr/share/imgstore/prometheus/imgstore-alerts.yml /usr/share/imgstore/grafana/imgstore-dashboard.json \
  /usr/share/man/man8/imgstored.8.gz /usr/share/man/man5/imgstored.conf.5.gz
check "libimgstore0 holds the shared library" has libimgstore0 "/usr/lib/$multiarch/libimgstore.so.0"
check "libimgstore-dev holds the headers, the .pc file and the link" \
  has libimgstore-dev /usr/include/imgstore/proto/client.h /usr/include/imgstore/imgstore/v1/image.pb-c.h \
  "/usr/lib/$multiarch/pkgconfig/imgstore.pc" "/usr/lib/$multiarch/libimgstore.so"
check "no package holds another's files (the CLI is not in the daemon's, nor headers in the library's)" \
  bash -c "! dpkg-deb -c '$(deb imgstored)' | grep -q 'usr/bin/imgstore\$' &&
           ! dpkg-deb -c '$(deb libimgstore0)' | grep -q 'usr/include'"
mkdir -p "$W/x" && dpkg-deb -x "$(deb imgstored)" "$W/x" 2>/dev/null
unit=$W/x/lib/systemd/system/imgstored.service
check "the unit's ExecStart names /usr/sbin/imgstored" grep -q '^ExecStart=/usr/sbin/imgstored ' "$unit"
check "the unit waits for a configuration (ConditionPathExists) and keeps its hardening" \
  bash -c "grep -qx 'ConditionPathExists=/etc/imgstore/imgstored.conf' '$unit' &&
           grep -qx 'ProtectSystem=strict' '$unit' && grep -qx 'User=imgstore' '$unit'"
check "the postinst creates the user before its directories" \
  bash -c "dpkg-deb -I '$(deb imgstored)' postinst | grep -n -e systemd-sysusers -e systemd-tmpfiles |
           cut -d: -f2 | tr '\n' ' ' | grep -q 'systemd-sysusers.*systemd-tmpfiles'"
check "imgstore depends on libimgstore0" bash -c "dpkg-deb -f '$(deb imgstore)' Depends | grep -q 'libimgstore0 (>= $version)'"

# --- installed on this machine, and purged
skip=""
[ "$(id -u)" -eq 0 ] || skip="not root"
for p in "${PKGS[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -qv 'not-installed'; then
    skip="$p is already installed on this machine"
  fi
done
if [ "$fails" -gt 0 ]; then skip="the build failed"; fi
if [ -n "$skip" ]; then
  echo "# installation not tried: $skip"
else
  for p in "${LEFT[@]}"; do existed[$p]=$([ -e "$p" ] || [ -L "$p" ] && echo 1 || echo 0); done
  existed[user]=$(getent passwd imgstore >/dev/null && echo 1 || echo 0)
  existed[group]=$(getent group imgstore >/dev/null && echo 1 || echo 0)
  installed_by_us=1
  debs=()
  for p in "${PKGS[@]}"; do debs+=("$(deb "$p")"); done
  if dpkg_wait -i "${debs[@]}"; then ok "dpkg -i installed the four packages"
  else not_ok "dpkg -i failed:"; tail -20 "$W/dpkg.log" | sed 's/^/#   /'; fi
  check "dpkg says they are installed" bash -c "$(declare -f is_installed); for p in ${PKGS[*]}; do is_installed \$p || exit 1; done"
  check "imgstore --version runs from /usr/bin" bash -c "/usr/bin/imgstore --version | grep -qx 'imgstore $version'"
  check "imgstored --version runs from /usr/sbin" bash -c "/usr/sbin/imgstored --version | grep -qx 'imgstored $version'"
  check "the service user imgstore exists, with no shell" \
    bash -c "getent passwd imgstore | cut -d: -f7 | grep -q nologin"
  check "its directories exist (tmpfiles.d): /etc/imgstore root:imgstore 0750, /var/log/imgstore imgstore's" \
    bash -c "[ \"\$(stat -c '%U:%G %a' /etc/imgstore)\" = 'root:imgstore 750' ] &&
             [ \"\$(stat -c '%U' /var/lib/imgstore /var/log/imgstore | sort -u)\" = imgstore ]"
  check "the unit is enabled (started at boot once configured)" test -L "$WANTS"
  check "the example config passes imgstored --check-config" \
    bash -c "/usr/sbin/imgstored --config /usr/share/doc/imgstored/examples/imgstored.conf.example --check-config | grep -q ': ok\$'"
  cat >"$W/prog.c" <<'EOF'
#include <stdio.h>
#include "proto/client.h"
#include "imgstore/v1/image.pb-c.h"
int main(void)
{
	Imgstore__V1__Tag tag = IMGSTORE__V1__TAG__INIT;
	printf("%s %s\n", ims_rpc_code_name(IMS_RPC_NOT_FOUND), tag.base.descriptor->name);
	return 0;
}
EOF
  check "a program builds against libimgstore-dev (pkg-config imgstore) and runs" \
    bash -c "cc -o '$W/prog' '$W/prog.c' \$(pkg-config --cflags --libs imgstore) 2>&1 | sed 's/^/#   /';
             '$W/prog' | grep -qx 'not_found imgstore.v1.Tag'"
  if dpkg_wait --purge "${PKGS[@]}"; then ok "dpkg --purge removed them"
  else not_ok "dpkg --purge failed:"; tail -20 "$W/dpkg.log" | sed 's/^/#   /'; fi
  gone=(/usr/sbin/imgstored /usr/bin/imgstore /lib/systemd/system/imgstored.service)
  for p in "${LEFT[@]}"; do [ "${existed[$p]}" = 1 ] || gone+=("$p"); done
  check "nothing of them is left: programs, unit, enablement, logs, empty directories" \
    bash -c "$(declare -f is_installed); for p in ${PKGS[*]}; do is_installed \$p && exit 1; done;
             for f in ${gone[*]}; do [ -e \$f ] || [ -L \$f ] && { echo \"# \$f is left\"; exit 1; }; done; exit 0"
fi
echo "# $(($(date +%s) - start)) s in all"
finish

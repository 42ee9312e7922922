#!/usr/bin/env bash
# What `make install` puts down (cmake --install of this build, below a DESTDIR): imgstore's
# own files only, the unit naming the installed binary, the service user, its directories and
# the audit log's rotation, the alert rules and the dashboard, the manual pages and the bash
# completion; the unit passes `systemd-analyze verify`.
set -uo pipefail
BUILD=${IMS_BINARY_DIR:?}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
workdir

D=$W/destdir
check "cmake --install below a DESTDIR" bash -c "DESTDIR='$D' cmake --install '$BUILD' >'$W/install.log' 2>&1"
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt")
root=$D$prefix
unit=$root/lib/systemd/system/imgstored.service
check "the CLI and the daemon are installed" test -x "$root/bin/imgstore" -a -x "$root/sbin/imgstored"
check "the unit is installed" test -f "$unit"
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
check "its ExecStart ($exec_start) is the installed daemon" test "$exec_start" = "$prefix/sbin/imgstored" -a -x "$D$exec_start"
check "it is Type=notify with a watchdog" bash -c "grep -qx 'Type=notify' '$unit' && grep -q '^WatchdogSec=' '$unit'"
check "the service user (sysusers.d)" grep -q '^u imgstore ' "$root/lib/sysusers.d/imgstore.conf"
check "its directories (tmpfiles.d)" grep -q '^d /var/log/imgstore ' "$root/lib/tmpfiles.d/imgstore.conf"
logrotate_file=$(find "$D" -path '*/logrotate.d/imgstored' | head -1)
check "the audit log's rotation, which tells the daemon to open it again" \
  bash -c "[ -n '$logrotate_file' ] && grep -q 'kill --signal=HUP' '$logrotate_file'"
check "the alert rules and the dashboard (share/imgstore)" \
  test -f "$root/share/imgstore/prometheus/imgstore-alerts.yml" -a -f "$root/share/imgstore/grafana/imgstore-dashboard.json"
check "the manual pages imgstore(1), imgstored(8), imgstored.conf(5)" \
  test -s "$root/share/man/man1/imgstore.1" -a -s "$root/share/man/man8/imgstored.8" -a -s "$root/share/man/man5/imgstored.conf.5"
check "the bash completion of imgstore" grep -q 'complete -F _imgstore imgstore' "$root/share/bash-completion/completions/imgstore"
check "nothing but imgstore's files (no Ceph, no test tools)" \
  bash -c "! find '$D' -type f | grep -Ev '/(imgstore|imgstored|libimgstore[^/]*|imgstore\.(pc|conf|1)|imgstored\.(service|8|conf\.5)|[^/]*\.h)$|/share/imgstore/(prometheus|grafana)/imgstore-[a-z]+\.(yml|json)$' | grep ."
# systemd-analyze checks the unit as installed (its binary at the path it names)
sed "s|^ExecStart=$prefix|ExecStart=$root|" "$unit" >"$W/imgstored.service"
check "systemd-analyze verify finds nothing wrong in the unit" bash -c "systemd-analyze verify '$W/imgstored.service' 2>&1 | tee '$W/verify.log' | grep . && exit 1 || exit 0"
sed 's/^/# /' "$W/verify.log"

finish

# tests/lib/tap.sh: what imgstore's shell tests share. Source it after `set -uo pipefail`:
#
#     . "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
#
#   ok WHAT, not_ok WHAT      print "ok - WHAT" or "not ok - WHAT", counted in $passes, $fails
#   check WHAT CMD...         ok when CMD exits 0, else not ok (and returns 1: check ... || ...)
#   quiet CMD...              CMD with its standard output dropped (check WHAT quiet CMD...)
#   expect_rc RC WHAT CMD...  ok when CMD exits RC; its output is left in $T_OUT, its errors in
#                             $T_ERR (files; set them to names of your own before the first call)
#   random_file PATH SIZE [MIB@AT...]  a sparse file of SIZE (truncate's units) with MIB MiB of
#                             random bytes at MiB AT for each MIB@AT (@AT: 0)
#   free_port                 a TCP port on 127.0.0.1 that nothing listens on now
#   workdir [VAR]             a fresh directory /tmp/imgstore-SCRIPT.XXXXXX in $VAR (W), removed on
#                             exit; $T_OUT and $T_ERR move into it (sets the EXIT trap)
#   finish                    print the counts and exit: 0 only when at least one check passed
#                             and none failed (a script that asserted nothing fails)
#
# tests/unit/test_shell_lib.sh checks that every shell test uses this and ends with finish.
fails=0 passes=0
T_OUT=${T_OUT:-/tmp/imgstore-test-out.$$}
T_ERR=${T_ERR:-/tmp/imgstore-test-err.$$}

ok() { echo "ok - $*"; passes=$((passes + 1)); }
not_ok() { echo "not ok - $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; return 1; fi; }
quiet() { "$@" >/dev/null; }
expect_rc() {
  local rc=$1 what=$2; shift 2
  "$@" >"$T_OUT" 2>"$T_ERR"; local got=$?
  if [ "$got" = "$rc" ]; then ok "$what (exit $rc)"; else not_ok "$what: exit $got, wanted $rc: $(head -c 400 "$T_ERR")"; fi
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
random_file() {
  local path=$1 size=$2 r; shift 2
  truncate -s "$size" "$path" || return
  for r in "$@"; do
    dd if=/dev/urandom of="$path" bs=1M count="${r%@*}" seek="$([[ $r == *@* ]] && echo "${r#*@}" || echo 0)" \
      conv=notrunc status=none || return
  done
}
workdir() {
  local d name
  name=$(basename "$0" .sh)
  d=$(mktemp -d "/tmp/imgstore-${name#test_}.XXXXXX") || { echo "not ok - mktemp"; exit 1; }
  printf -v "${1:-W}" '%s' "$d"
  T_OUT=$d/.tap-out T_ERR=$d/.tap-err
  trap 'rm -rf "'"$d"'"' EXIT
}
finish() {
  echo "# $passes passed, $fails failed"
  rm -f "/tmp/imgstore-test-out.$$" "/tmp/imgstore-test-err.$$"
  if [ "$passes" -eq 0 ]; then
    echo "not ok - the script asserted nothing"
    exit 1
  fi
  [ "$fails" -eq 0 ] && exit 0
  exit 1
}

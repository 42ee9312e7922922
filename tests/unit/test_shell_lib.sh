#!/usr/bin/env bash
# tests/lib/tap.sh and its use: every shell test sources it, defines none of its functions
# again and ends with `finish`; finish fails a script that asserted nothing or failed a check.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$ROOT/tests/lib/tap.sh"

n=0
for f in "$ROOT"/tests/integration/*.sh "$ROOT"/tests/unit/*.sh; do
  name=${f#"$ROOT"/}
  n=$((n + 1))
  if grep -qE '^(ok|not_ok|check|quiet|expect_rc|finish)\(\)' "$f"; then
    not_ok "$name defines a function of tests/lib/tap.sh again"
  elif ! grep -qF '. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"' "$f"; then
    not_ok "$name does not source tests/lib/tap.sh"
  elif [ "$(grep -v '^[[:space:]]*$' "$f" | tail -1)" != finish ]; then
    not_ok "$name does not end with finish"
  else
    ok "$name uses tests/lib/tap.sh and ends with finish"
  fi
done
check "there are shell tests ($n)" test "$n" -ge 20

workdir
# BODY: a script with the library, its exit status and output
run() { printf 'set -uo pipefail\n. "%s/tests/lib/tap.sh"\n%s\nfinish\n' "$ROOT" "$1" >"$W/t.sh"; bash "$W/t.sh" >"$W/out" 2>&1; }
run ':'; rc=$?
check "finish fails a script that asserted nothing (exit $rc)" test $rc = 1
check "  and says so" grep -q 'not ok - the script asserted nothing' "$W/out"
run 'check "true" true'; rc=$?
check "finish passes a script whose checks passed (exit $rc)" test $rc = 0
run 'check "true" true; check "false" false'; rc=$?
check "finish fails a script with a failed check (exit $rc)" test $rc = 1
check "  and counts both" grep -q '^# 1 passed, 1 failed$' "$W/out"
run 'check "false" false; echo "rc=$?" >"'"$W"'/rc"; check "true" true'
check "check returns 1 after a failed check, so check_or_stop can stop" grep -qx 'rc=1' "$W/rc"
printf 'set -uo pipefail\n. "%s/tests/lib/tap.sh"\n. "%s/tests/lib/sandbox.sh" 2>/dev/null\ncheck_or_stop "false" false\nok "after the stop"\nfinish\n' "$ROOT" "$ROOT" >"$W/s.sh"
bash "$W/s.sh" >"$W/out" 2>&1; rc=$?
check "check_or_stop ends the script at a failed check (exit $rc)" bash -c "test $rc = 1 && grep -q '# stopping here' '$W/out' && ! grep -q 'after the stop' '$W/out'"
run 'T_OUT='"$W"'/o T_ERR='"$W"'/e; expect_rc 3 "exit 3" bash -c "echo out; echo err >&2; exit 3"; grep -q out "$T_OUT" && grep -q err "$T_ERR" && ok files'; rc=$?
check "expect_rc keeps the output and errors in \$T_OUT, \$T_ERR (exit $rc)" test $rc = 0
run 'expect_rc 0 "wanted 0" bash -c "echo why >&2; exit 2"'; rc=$?
check "expect_rc: another exit status is not ok, with the errors (exit $rc)" bash -c "test $rc = 1 && grep -q 'not ok - wanted 0: exit 2, wanted 0: why' '$W/out'"
run 'workdir D; echo "$D" >"'"$W"'/dir"; test -d "$D" && [ "$T_OUT" = "$D/.tap-out" ] && ok dir'; rc=$?
check "workdir makes a directory that holds \$T_OUT (exit $rc)" test $rc = 0
check "  and removes it at exit" test ! -e "$(cat "$W/dir")"
random_file "$W/r" 4M 1@2
check "random_file makes a file of its size" test "$(stat -c %s "$W/r")" = 4194304
check "  random at the MiB given, zeros before" bash -c "cmp -s -n 1048576 '$W/r' /dev/zero && ! cmp -s -i 2097152:0 -n 1048576 '$W/r' /dev/zero"
finish

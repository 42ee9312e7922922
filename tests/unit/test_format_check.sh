#!/usr/bin/env bash
# Every C file of the project is formatted by the checked-in .clang-format (`make format` fixes
# them); a file that is not is named with the first lines clang-format would change.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
cd "$ROOT" || exit 1
if [ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.c' '*.h')
else
  mapfile -t files < <(find common store replicator tier proto daemon cli tests -name '*.[ch]' | sort)
fi
check "clang-format is there ($(clang-format --version 2>/dev/null | head -1))" command -v clang-format
check "there are C files to check (${#files[@]})" test "${#files[@]}" -ge 100
bad=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    bad=$((bad + 1))
    not_ok "$f is not formatted (make format): $(clang-format --dry-run "$f" 2>&1 | grep -m1 -A1 'warning:' | tr '\n' ' ' | head -c 200)"
  fi
done
check "every C file is formatted by .clang-format ($bad not)" test "$bad" = 0
finish

#!/usr/bin/env bash
# Every example configuration in docs/*.md goes through `imgstored --check-config` (issue 13).
#
# Which blocks: every fenced block of docs/*.md whose info string is `ini` and that holds one of
# imgstored's sections ([site], [peer NAME], [server], [s3 NAME], [defaults], [host NAME]). A block with
# [site] is a whole file and is checked as it is. A block without it is a fragment (one section
# to add to a file): it is checked inside the smallest file that completes it, a [site] section
# after it and, when it names no listener, a [server] unix_socket (after the block, so the
# fragment's own lines keep their places). An `ini` block with none of imgstored's sections (a
# systemd drop-in, say) is skipped. A block fenced otherwise (``` or ```text) that holds one of
# imgstored's section headers fails: fence it ```ini so that it is checked.
#
# Paths: --check-config (daemon/main.c) only calls ims_config_load() (common/config.c) and
# prints "FILE: ok". The loader checks syntax, known keys, values, ranges and the whole-file
# rules, and that path keys are absolute, but opens and stats none of the files they name:
# ceph_conf and keyring are read when the daemon connects, the TLS and token files when its
# listeners start, the S3 credentials and key files at each call. So the examples are checked
# verbatim, with their paths as written (which do not exist here), and nothing is filtered: the
# test asks for exit status 0 and "ok", the full check. Should --check-config ever look at the
# files, this test has to put existing temporary files in place of the paths first.
#
# Each block is written to DIR/docs/NAME.md with blank lines in place of the rest of the doc
# and checked from DIR, so a message reads "docs/NAME.md:LINE: ..." with the doc's own line.
#
# Environment: IMS_SOURCE_DIR, IMS_BINARY_DIR; IMGSTORED_BIN (default BUILD/daemon/imgstored).
set -uo pipefail
SRC=${IMS_SOURCE_DIR:?}
BUILD=${IMS_BINARY_DIR:?}
IMGSTORED=${IMGSTORED_BIN:-$BUILD/daemon/imgstored}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
whole=0

if [ ! -x "$IMGSTORED" ]; then
  echo "not ok - no imgstored at $IMGSTORED: build it first"
  exit 1
fi
workdir

section_re='^[[:space:]]*\[(site|server|defaults|peer [^]]*|s3 [^]]*|host [^]]*)\]'
n=0
for doc in "$SRC"/docs/*.md; do
  rel=docs/${doc##*/}
  # One line per fenced block: its first and last line, its info string ("-" for none).
  blocks=$(awk '
    /^[[:space:]]*```/ {
      if (!open) {
        open = 1; info = $0
        sub(/^[[:space:]]*```[[:space:]]*/, "", info); sub(/[[:space:]].*/, "", info)
        first = NR + 1
        next
      }
      rest = $0; sub(/^[[:space:]]*```/, "", rest)
      if (rest ~ /^[[:space:]]*$/) { open = 0; print first, NR - 1, (info == "" ? "-" : info) }
    }' "$doc")
  while read -r first last info; do
    [ -n "$first" ] || continue
    body=$(sed -n "${first},${last}p" "$doc")
    grep -qE "$section_re" <<<"$body" || continue
    where="$rel:$first-$last"
    if [ "$info" != ini ]; then
      not_ok "$where: a block with imgstored sections fenced as '$info': fence it as \`\`\`ini so that it is checked"
      continue
    fi
    n=$((n + 1))
    dir=$W/$n
    mkdir -p "$dir/docs"
    conf=$dir/$rel
    awk -v a="$first" -v b="$last" 'NR > b { exit } { print (NR >= a ? $0 : "") }' "$doc" >"$conf"
    what="whole file"
    if ! grep -qE '^[[:space:]]*\[site\]' <<<"$body"; then
      what="fragment, completed"
      if grep -qE '^[[:space:]]*\[server\]' <<<"$body"; then
        if ! grep -qE '^[[:space:]]*(listen|unix_socket)[[:space:]]*=' <<<"$body"; then
          if ! grep -E "$section_re" <<<"$body" | tail -1 | grep -qE '^[[:space:]]*\[server\]'; then
            not_ok "$where: a fragment whose [server] names no listener and is not its last section: the test cannot complete it"
            continue
          fi
          printf 'unix_socket = /run/imgstore/imgstored.sock\n' >>"$conf"
        fi
      else
        printf '[server]\nunix_socket = /run/imgstore/imgstored.sock\n' >>"$conf"
      fi
      printf '[site]\nname = docs-check\nceph_conf = /etc/ceph/ceph.conf\n' >>"$conf"
    fi
    out=$(cd "$dir" && "$IMGSTORED" --check-config --config "$rel" 2>&1)
    rc=$?
    if [ "$rc" -eq 0 ] && [ "$out" = "$rel: ok" ]; then
      ok "$where ($what): $out"
      [ "$what" = "whole file" ] && whole=$((whole + 1))
    else
      not_ok "$where ($what): imgstored --check-config exited $rc:"
      sed 's/^/    /' <<<"$out"
      echo "    the file checked:"
      awk -v a="$first" 'NR >= a { printf "    %5d  %s\n", NR, $0 }' "$conf"
    fi
  done <<<"$blocks"
done

# The extraction itself: docs/OPERATIONS.md has a whole example file at least.
if [ "$whole" -ge 1 ]; then
  ok "$whole whole example file(s) found and checked, $n block(s) in all"
else
  not_ok "no whole example file (an \`\`\`ini block with [site]) found in docs/*.md: is the extraction broken?"
fi
finish

#!/usr/bin/env bash
# The manual pages the build writes (man/): imgstore(1), imgstored(8), imgstored.conf(5).
# Each goes through groff and man with every warning on and must give none; imgstored(8)
# documents exactly the options of `imgstored --help`; imgstore(1) has every verb of the CLI
# and every example of its --help; imgstored.conf(5) every key of docs/CONFIG.md.
set -uo pipefail
MAN=${IMS_BINARY_DIR:?}/man
CLI=$IMS_BINARY_DIR/cli/imgstore
DAEMON=${IMGSTORED_BIN:?}
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
workdir

# the text of a page as man shows it, without bold, italics or hyphenation marks
render() { MANWIDTH=200 man -l "$1" 2>/dev/null | col -b; }

for page in imgstore.1 imgstored.8 imgstored.conf.5; do
  f=$MAN/$page
  check "$page was written" test -s "$f"
  # groff: -ww every warning, -z no output; -t for tables, as man would
  groff -man -t -ww -z "$f" >"$W/groff.log" 2>&1
  check "groff -man -ww: no warning in $page" test ! -s "$W/groff.log"
  sed 's/^/#   /' "$W/groff.log" | head -20
  if command -v man >/dev/null; then
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$f" >/dev/null 2>"$W/man.log"
    check "man --warnings: no warning in $page" test ! -s "$W/man.log"
    sed 's/^/#   /' "$W/man.log" | head -20
  fi
  if command -v mandoc >/dev/null; then
    mandoc -T lint -W warning "$f" >"$W/mandoc.log" 2>&1
    check "mandoc -T lint: no warning in $page" test ! -s "$W/mandoc.log"
    sed 's/^/#   /' "$W/mandoc.log" | head -20
  fi
  check "$page: plain ASCII (no input groff would have to guess at)" bash -c "! LC_ALL=C grep -qP '[^\\x00-\\x7f]' '$f'"
done

# imgstored(8): its OPTIONS are those of imgstored --help, no more, no fewer
"$DAEMON" --help >"$W/help" 2>&1
grep -o -- '--[a-z][a-z-]*' "$W/help" | sort -u >"$W/help-opts"
render "$MAN/imgstored.8" | sed -n '/^OPTIONS/,/^[A-Z]/p' | grep -o -- '--[a-z][a-z-]*' | sort -u >"$W/man-opts"
check "imgstored(8) documents the options of imgstored --help ($(tr '\n' ' ' <"$W/help-opts"))" \
  bash -c "comm -23 '$W/help-opts' '$W/man-opts' | grep . && exit 1 || exit 0"
check "and none that imgstored does not have" \
  bash -c "comm -13 '$W/help-opts' '$W/man-opts' | grep -vx -- '--help\\|--version' | grep . && exit 1 || exit 0"
# ... and what it says SIGHUP does
check "imgstored(8): SIGHUP reopens the audit log and reloads the tokens" \
  bash -c "render() { MANWIDTH=200 man -l \"\$1\" 2>/dev/null | col -b; }; render '$MAN/imgstored.8' | grep -q 'Reopen the audit log, reload the tokens and the parts of the configuration that can change'"

# imgstore(1): every verb of every noun, with each example of its --help
render "$MAN/imgstore.1" >"$W/imgstore.txt"
missing=0 verbs=0 examples=0
for noun in $("$CLI" --help | sed -n '/^Nouns:/,/^$/p' | awk 'NR > 1 && NF { print $1 }'); do
  while read -r verb; do
    verbs=$((verbs + 1))
    grep -q "^ *imgstore $noun $verb\\( \\|$\\)" "$W/imgstore.txt" || { echo "# imgstore(1) lacks 'imgstore $noun $verb'"; missing=$((missing + 1)); }
    # shellcheck disable=SC2086
    while read -r line; do
      examples=$((examples + 1))
      grep -qF -- "$line" "$W/imgstore.txt" || { echo "# imgstore(1) lacks the example '$line'"; missing=$((missing + 1)); }
    done < <("$CLI" $noun $verb --help | sed -n '/^Examples:/,/^$/p' | sed -n 's/^  \(imgstore .*\)/\1/p')
  done < <("$CLI" "$noun" --help | sed -n '/^Verbs:/,/^$/p' | sed -n 's/^  \([a-z][a-z-]*\( [a-z][a-z-]*\)\?\)\( .*\)\?$/\1/p' \
           | awk '{ if ($2 ~ /^[a-z]/) print $1" "$2; else print $1 }')
done
check "imgstore(1) has each of the $verbs verbs and $examples examples" test "$missing" -eq 0 -a "$verbs" -gt 40 -a "$examples" -gt 0

# imgstored.conf(5): every key of the reference
render "$MAN/imgstored.conf.5" >"$W/conf.txt"
missing=0 keys=0
for key in $(sed -n 's/^| `\([a-z_]*\)` |.*/\1/p' "${IMS_SOURCE_DIR:?}/docs/CONFIG.md"); do
  keys=$((keys + 1))
  grep -q "^ *$key\\b" "$W/conf.txt" || { echo "# imgstored.conf(5) lacks $key"; missing=$((missing + 1)); }
done
check "imgstored.conf(5) has each of the $keys keys of docs/CONFIG.md" test "$missing" -eq 0 -a "$keys" -gt 30

finish

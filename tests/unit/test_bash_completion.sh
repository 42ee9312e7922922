#!/usr/bin/env bash
# The bash completion the build writes (man/imgstore.bash): it parses, and completes nouns,
# verbs (two-word ones too), each verb's options and the global ones, the values of options
# that take one of a few words, and file names where the synopsis says FILE. Also: every verb
# of `imgstore NOUN --help` is offered, with every option its --help lists.
set -uo pipefail
COMP=${IMS_BINARY_DIR:?}/man/imgstore.bash
CLI=$IMS_BINARY_DIR/cli/imgstore
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
workdir

if bash -n "$COMP"; then ok "bash -n: it parses"; else not_ok "bash -n: it parses"; fi
# shellcheck disable=SC1090
. "$COMP"
if complete -p imgstore | grep -q -- '-F _imgstore imgstore'; then ok "complete -F _imgstore imgstore"; else not_ok "complete -F _imgstore imgstore"; fi

# comp WORD... : what _imgstore offers for the last word (words as readline splits them)
comp() {
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _imgstore 2>/dev/null
  printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}
# expect "WANTED" WORD...: the offer is exactly WANTED (sorted, space-separated)
expect() {
  local want got
  want=$(tr ' ' '\n' <<<"$1" | sort | tr '\n' ' ' | sed 's/ $//')
  shift
  got=$(comp "$@")
  if [ "$got" = "$want" ]; then ok "[$*] -> $want"; else not_ok "[$*] -> '$got', wanted '$want'"; fi
}

cd "$W" && touch disk.qcow2 disk.raw notes.txt && mkdir dir
expect "image snap op host repl site tier group audit key" imgstore ''
expect "image" imgstore im
expect "image snap op host repl site tier group audit key" imgstore --format json ''
expect "table json" imgstore --format ''
expect "json" imgstore --format = j
expect "table json" imgstore -o ''
expect "--server" imgstore --se
expect "create import export clone ls info resize rename rm flatten tag untag attach-info" imgstore image ''
expect "register lease" imgstore host ''
expect "acquire renew release ls" imgstore host lease ''
expect "enable disable sync status failover verify resync" imgstore group repl ''
expect "set show rm run" imgstore tier policy ''
expect "add ls rm" imgstore snap schedule ''
expect "--help --host" imgstore host lease acquire rbd/vm1 --h
expect "disk.qcow2 disk.raw" imgstore image import disk
expect "" imgstore image import disk.qcow2 ''
expect "auto raw qcow2 vmdk vdi vhdx vpc" imgstore image import disk.qcow2 rbd/vm1 --format ''
expect "qcow2" imgstore image import --upload disk.qcow2 rbd/vm1 --format q
# after a flag, still the positionals; after an option's value too
expect "dir disk.qcow2 disk.raw notes.txt" imgstore image import --upload ''
expect "dir disk.qcow2 disk.raw notes.txt" imgstore image import --format raw ''
expect "" imgstore image import --format raw disk.raw ''
# export: the file is the second positional
expect "" imgstore image export ''
expect "dir disk.qcow2 disk.raw" imgstore image export rbd/vm1 d
expect "raw qcow2 vmdk" imgstore image export rbd/vm1 out.raw --format ''
expect "async sync" imgstore repl enable rbd/vm1 --to b --mode ''
expect "trash purge keep" imgstore tier push rbd/vm1 --after ''
# a verb's own --format wins: the global one is not offered twice
expect "--format" imgstore image attach-info rbd/vm1 --fo
expect "--no-wait" imgstore --timeout 5s repl sync rbd/vm1 --n
expect "disk.qcow2 disk.raw" imgstore --token-file disk

# every verb and every option that --help shows is offered
missing=0
for noun in $("$CLI" --help | sed -n '/^Nouns:/,/^$/p' | awk 'NR > 1 && NF { print $1 }'); do
  while read -r verb; do
    first=${verb%% *}
    offer=$(comp imgstore "$noun" '')
    [[ " $offer " == *" $first "* ]] || { echo "# 'imgstore $noun' does not offer '$first'"; missing=$((missing + 1)); }
    if [ "$first" != "$verb" ]; then
      offer=$(comp imgstore "$noun" "$first" '')
      [[ " $offer " == *" ${verb#* } "* ]] || { echo "# 'imgstore $noun $first' does not offer '${verb#* }'"; missing=$((missing + 1)); }
    fi
    # shellcheck disable=SC2086
    offer=$(comp imgstore "$noun" $verb --)
    # shellcheck disable=SC2086
    for opt in $("$CLI" $noun $verb --help | sed -n '/^Options:/,/^$/p' | grep -o -- '^  --[a-z][a-z-]*'); do
      [[ " $offer " == *" $opt "* ]] || { echo "# 'imgstore $noun $verb --' does not offer $opt"; missing=$((missing + 1)); }
    done
  done < <("$CLI" "$noun" --help | sed -n '/^Verbs:/,/^$/p' | sed -n 's/^  \([a-z][a-z-]*\( [a-z][a-z-]*\)\?\)\( .*\)\?$/\1/p')
done
if [ "$missing" -eq 0 ]; then ok "every verb and option of --help is offered"; else not_ok "$missing verbs or options not offered"; fi

finish

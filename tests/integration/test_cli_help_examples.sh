#!/usr/bin/env bash
# Every example that `imgstore NOUN VERB --help` shows runs, against the sandbox's site a with
# its peer b, its S3 target and its hypervisor host, and exits 0.
#
# The examples are read from the real --help of every verb (nouns from `imgstore --help`,
# verbs from `imgstore NOUN --help`: the lines under "Examples:" that start with "imgstore"),
# and run one after the other in the order found: an example may use what an earlier one
# made (cli/examples.c says so). Each runs in an empty directory, as a list of words (no
# shell), after this substitution, and nothing else:
#
#   the program `imgstore`             -> this build's CLI
#   dc1, dc2 (site names)              -> a, b
#   https://imgstore.dc1:7443, ...dc2  -> $IMGSTORE_SERVER_A, $IMGSTORE_SERVER_B
#   cold (the S3 target)               -> rgw
#   hv1 (a hypervisor host)            -> sandbox-host (the sandbox's config has its [host])
#   /var/log/imgstore/audit.log        -> site a's audit log in the sandbox
#   op-HEX (an operation id)           -> the newest operation of site a
#   lease-HEX (a lease id)             -> the lease an example took on an image of this run
#   POOL/NAME (an image or a group)    -> POOL/NAME-xPID: a run never meets what another left
#
# The files `image import` examples read are made first (a small qcow2 image for FILE.qcow2,
# LUKS-encrypted with the passphrase in PATH for --passphrase-file PATH, raw otherwise). Afterwards everything the run made is removed from both sites (S3 keeps
# the pushed objects: tiering has no removal).
set -uo pipefail
CLI=${IMS_BINARY_DIR:?}/cli/imgstore
: "${IMGSTORE_SERVER_A:?}" "${IMGSTORE_SERVER_B:?}" "${CEPH_CONF_A:?}" "${CEPH_CONF_B:?}"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
set -f # the words of an example are never globbed

sfx=-x$$
W=$(mktemp -d /tmp/imgstore-examples.XXXXXX)
policy_before=$("$CLI" --format json tier policy show rbd 2>/dev/null | jq -c '.[0] // empty')

cleanup() {
  local srv site conf g img to id pass
  cd /
  for srv in "$IMGSTORE_SERVER_A" "$IMGSTORE_SERVER_B"; do
    "$CLI" --server "$srv" --format json repl status 2>/dev/null |
      jq -r --arg s "$sfx" '.[] | select(.image | endswith($s)) | "\(.group) \(.image) \(.target)"' |
      while read -r g img to; do
        if [ "$g" = true ]; then
          "$CLI" --server "$srv" group repl disable "$img" --to "$to" >/dev/null 2>&1
        else
          "$CLI" --server "$srv" repl disable "$img" --to "$to" >/dev/null 2>&1
        fi
      done
  done
  for site in A B; do
    srv=IMGSTORE_SERVER_$site conf=CEPH_CONF_$site
    "$CLI" --server "${!srv}" --format json group ls rbd 2>/dev/null |
      jq -r --arg s "$sfx" '.[] | select(.name | endswith($s)) | "rbd/\(.name)"' |
      while read -r g; do "$CLI" --server "${!srv}" group rm "$g" --force >/dev/null 2>&1; done
    for pass in 1 2; do
      "$CLI" --server "${!srv}" --format json image ls rbd 2>/dev/null |
        jq -r --arg s "$sfx" '.[] | select(.name | endswith($s)) | "rbd/\(.name)"' |
        while read -r img; do "$CLI" --server "${!srv}" image rm --purge "$img" >/dev/null 2>&1; done
      # what `image rm` and `tier push` put in the RBD trash (a clone there keeps its parent)
      rbd -c "${!conf}" trash ls rbd 2>/dev/null | awk -v s="$sfx" 'substr($2, length($2) - length(s) + 1) == s { print $1 }' |
        while read -r id; do rbd -c "${!conf}" trash rm --force "rbd/$id" >/dev/null 2>&1; done
    done
  done
  if [ -n "$policy_before" ]; then
    "$CLI" tier policy set rbd --cold-after "$(jq -r .cold_after_seconds <<<"$policy_before")s" \
      --to "$(jq -r .target <<<"$policy_before")" --after "$(jq -r .after <<<"$policy_before")" >/dev/null
  else
    "$CLI" tier policy rm rbd >/dev/null 2>&1
  fi
  rm -rf "$W"
}
trap cleanup EXIT

# ---- the examples, from --help ----
examples=()
nouns=$("$CLI" --help | sed -n '/^Nouns:/,/^$/p' | awk 'NR > 1 && NF { print $1 }')
for noun in $nouns; do
  while read -r verb; do
    # shellcheck disable=SC2086
    while IFS= read -r line; do
      examples+=("$line")
    done < <("$CLI" $noun $verb --help | sed -n '/^Examples:/,/^$/p' | sed -n 's/^  \(imgstore .*\)$/\1/p')
  done < <("$CLI" "$noun" --help | sed -n '/^Verbs:/,/^$/p' | sed -n 's/^  \([a-z][a-z-]*\( [a-z][a-z-]*\)\?\)\( .*\)\?$/\1/p')
done
found=${#examples[@]}
echo "# $found examples in the --help of the verbs of: $(echo $nouns)"

# ---- the files they read ----
cd "$W" || exit 1
for line in "${examples[@]}"; do
  # shellcheck disable=SC2086
  set -- $line
  [ "$2 $3" = "image import" ] || continue
  f=$4
  pass=$(sed -n 's/.*--passphrase-file \([^ ]*\).*/\1/p' <<<"$line")
  if [ -n "$pass" ]; then
    # a LUKS-encrypted qcow2 and its passphrase file (qemu-img's PBKDF2 timing fails on about
    # half the tries: tests/lib/qemu-luks tries again)
    printf 'example passphrase' >"$pass"
    "$(dirname "$0")/../lib/qemu-luks" qemu-img create -q -f qcow2 \
      --object "secret,id=s0,file=$pass" \
      -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 "$f" 64M
    qemu-io --object "secret,id=s0,file=$pass" --image-opts \
      "driver=qcow2,file.filename=$f,encrypt.key-secret=s0" -c 'write -P 0x5a 0 4M' >/dev/null
  elif [[ $f == *.qcow2 ]]; then
    qemu-img create -q -f qcow2 "$f" 64M && qemu-io -f qcow2 -c 'write -P 0x5a 0 4M' "$f" >/dev/null
  else
    random_file "$f" 64M 4
  fi
done

# ---- the substitution ----
lease_id() {
  "$CLI" --format json host lease ls rbd | jq -r --arg s "$sfx" \
    '[.[] | select(.image.image | endswith($s))] | .[0].id // empty'
}
subst() {
  local w name base
  words=()
  for w in "$@"; do
    case $w in
    imgstore) [ ${#words[@]} -eq 0 ] && w=$CLI ;;
    dc1) w=a ;;
    dc2) w=b ;;
    https://imgstore.dc1:7443) w=$IMGSTORE_SERVER_A ;;
    https://imgstore.dc2:7443) w=$IMGSTORE_SERVER_B ;;
    cold) w=rgw ;;
    hv1) w=sandbox-host ;;
    /var/log/imgstore/audit.log) w=$IMGSTORE_SANDBOX/site-a/log/audit.log ;;
    op-*) w=$("$CLI" --format json op ls --all --limit 1 | jq -r '.[0].id') ;;
    lease-*) w=$(lease_id) ;;
    rbd/*)
      name=${w#rbd/} base=${w#rbd/}
      base=${base%%@*}
      w=rbd/$base$sfx${name#"$base"}
      ;;
    esac
    words+=("$w")
  done
}

# ---- run them ----
ran=0 start=$SECONDS
for line in "${examples[@]}"; do
  # shellcheck disable=SC2086
  subst $line
  t0=$SECONDS
  "${words[@]}" >"$W/.out" 2>"$W/.err"
  rc=$?
  ran=$((ran + 1))
  if [ "$rc" -eq 0 ]; then
    ok "$line ($((SECONDS - t0))s)"
  else
    not_ok "$line: exit $rc"
    echo "#   ran: ${words[*]}"
    sed 's/^/#   /' "$W/.err" | tail -5
  fi
done
echo "# ran $ran examples in $((SECONDS - start))s"
if [ "$ran" -eq "$found" ] && [ "$found" -gt 0 ]; then
  ok "every example found ran ($ran of $found)"
else
  not_ok "ran $ran examples of the $found found"
fi

finish

#!/usr/bin/env bash
# Encrypted images: what making one and opening one costs, imgstore beside librbd's own format.
#   bash bench/crypt.sh SANDBOX_DIR [RUNS]
# On site a of a running sandbox (its imgstored serving), RUNS times (default 3), in one run:
#   - make: `imgstore image create --size 64M --encryption luks2` (imgstored writes the LUKS2
#     header, a PBKDF2 key slot: docs/SECURITY.md) beside what an operator does without it,
#     `rbd create` + `rbd encryption format IMAGE luks2 PASSFILE` (librbd's format: Argon2id);
#   - open as a hypervisor does: `qemu-img info` through QEMU's rbd driver with
#     encrypt.format=luks2 and the image's passphrase (imgstore's from attach-info), wall time
#     and the process's peak RSS (/usr/bin/time %M).
# Prints each run, then per figure the median and range and the ratio (librbd / imgstore).
set -euo pipefail
SB=${1:?sandbox dir}
RUNS=${2:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
CLI=${CLI:-$HERE/build/cli/imgstore}
. "$SB/env"
conf=$CEPH_CONF_A
W=$(mktemp -d /tmp/imgstore-bench-crypt.XXXXXX)
p=bcrypt$$
made_ims=() made_rbd=()
cleanup() {
  local i
  for i in "${made_ims[@]}"; do
    IMGSTORE_SERVER=$IMGSTORE_SERVER_A timeout 60 "$CLI" image rm --purge "rbd/$i" >/dev/null 2>&1 || true
  done
  for i in "${made_rbd[@]}"; do timeout 60 rbd -c "$conf" rm --no-progress "rbd/$i" >/dev/null 2>&1 || true; done
  rm -rf "$W"
}
trap cleanup EXIT
now() { date +%s.%N; }
# IMAGE PASSFILE: qemu-img info through librbd with the passphrase; prints "SECONDS PEAK_KIB"
qemu_open() {
  local src="json:{\"driver\":\"raw\",\"file\":{\"driver\":\"rbd\",\"pool\":\"rbd\",\"image\":\"$1\",\"conf\":\"$conf\",\"user\":\"admin\",\"encrypt\":{\"format\":\"luks2\",\"key-secret\":\"sec0\"}}}"
  /usr/bin/time -f "%e %M" -o "$W/time" qemu-img info --object "secret,id=sec0,file=$2,format=raw" "$src" >"$W/info" 2>&1 ||
    { echo "bench/crypt.sh: qemu-img cannot open rbd/$1: $(tail -1 "$W/info")" >&2; exit 1; }
  grep -q "virtual size: 64 MiB" "$W/info" || { echo "bench/crypt.sh: rbd/$1 is not 64 MiB to QEMU" >&2; exit 1; }
  cat "$W/time"
}
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$W/rbd.pass"
declare -a mk_i mk_r op_i op_r mem_i mem_r
for run in $(seq 1 "$RUNS"); do
  a=$p-i$run b=$p-r$run
  made_ims+=("$a") made_rbd+=("$b")
  t0=$(now)
  IMGSTORE_SERVER=$IMGSTORE_SERVER_A "$CLI" image create "rbd/$a" --size 64M --encryption luks2 >/dev/null
  t1=$(now)
  # librbd's format puts its 16 MiB header inside the image: 80 MiB leave 64 usable
  rbd -c "$conf" create --size 80M "rbd/$b"
  rbd -c "$conf" encryption format "rbd/$b" luks2 "$W/rbd.pass" >/dev/null 2>&1
  t2=$(now)
  IMGSTORE_TOKEN_FILE=$IMGSTORE_HOST_TOKEN_FILE IMGSTORE_SERVER=$IMGSTORE_SERVER_A "$CLI" --format json \
    image attach-info "rbd/$a" 2>/dev/null | jq -j .luks_passphrase >"$W/ims.pass"
  [ "$(wc -c <"$W/ims.pass")" = 64 ] || { echo "bench/crypt.sh: no passphrase from attach-info" >&2; exit 1; }
  read -r oi mi < <(qemu_open "$a" "$W/ims.pass")
  read -r orr mr < <(qemu_open "$b" "$W/rbd.pass")
  mk_i+=("$(echo "$t1 - $t0" | bc -l)") mk_r+=("$(echo "$t2 - $t1" | bc -l)")
  op_i+=("$oi") op_r+=("$orr") mem_i+=("$mi") mem_r+=("$mr")
  printf 'run %d: make imgstore %.2f s, rbd %.2f s; open (qemu-img) imgstore %.2f s %d MiB, rbd %.2f s %d MiB\n' \
    "$run" "${mk_i[-1]}" "${mk_r[-1]}" "$oi" $((mi / 1024)) "$orr" $((mr / 1024))
done
# NAME UNIT VALUES_IMGSTORE... -- VALUES_RBD...: median (range) of each, ratio of the medians
stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {printf "%s %s %s\n", v[int((NR+1)/2)], v[1], v[NR]}'; }
report() {
  local name=$1 unit=$2 im il ih rm rl rh
  shift 2
  local -a xs=() ys=()
  while [ "$1" != -- ]; do xs+=("$1"); shift; done
  shift
  ys=("$@")
  read -r im il ih < <(stats "${xs[@]}")
  read -r rm rl rh < <(stats "${ys[@]}")
  printf '%-28s imgstore %8.2f %s (%.2f-%.2f)   rbd/librbd %8.2f %s (%.2f-%.2f)   librbd/imgstore %.1fx\n' \
    "$name" "$im" "$unit" "$il" "$ih" "$rm" "$unit" "$rl" "$rh" "$(echo "$rm / ($im + (0 == $im) * 0.01)" | bc -l)"
}
echo "median of $RUNS runs (range):"
report "make a 64 MiB encrypted" s "${mk_i[@]}" -- "${mk_r[@]}"
report "open it (qemu-img info)" s "${op_i[@]}" -- "${op_r[@]}"
mem_i_mib=() mem_r_mib=()
for i in "${mem_i[@]}"; do mem_i_mib+=("$((i / 1024))"); done
for i in "${mem_r[@]}"; do mem_r_mib+=("$((i / 1024))"); done
report "open it: peak RSS" MiB "${mem_i_mib[@]}" -- "${mem_r_mib[@]}"

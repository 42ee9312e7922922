#!/usr/bin/env bash
# run-long.sh BUILD_DIR SECONDS [RUNS]: run every fuzzer for SECONDS (or until RUNS executions,
# whichever comes first; RUNS 0: no bound), one after the other, keeping the corpus it grows in
# BUILD_DIR/tests/fuzz/work-NAME and any crash in artifacts-NAME/. Exits 1 if any fuzzer found
# a crash. `make fuzz FUZZ_SECONDS=3600 FUZZ_RUNS=10000000` calls it.
set -euo pipefail
build=${1:?BUILD_DIR}
secs=${2:-600}
runs=${3:-0}
dir=$build/tests/fuzz
bash "$(dirname "$0")/make-corpus.sh" "$dir/corpus" >/dev/null
rc=0
for name in qcow2 luks vmdk vdi vhdx vpc rpc_dispatch rpc_json manifest snap_text crypt_key; do
  max_len=262144
  [ "$name" = vhdx ] && max_len=1048576 # squeezed, see fuzz_vhdx.c
  bin=$dir/fuzz_$name
  [ -x "$bin" ] || { echo "run-long: $bin is not built" >&2; exit 1; }
  mkdir -p "$dir/work-$name" "$dir/artifacts-$name"
  seeds=()
  [ -d "$dir/corpus/$name" ] && seeds=("$dir/corpus/$name")
  # seeds kept in the source tree (manifests: json-c is not instrumented, the fuzzer needs them)
  [ -d "$(dirname "$0")/seeds/$name" ] && seeds+=("$(dirname "$0")/seeds/$name")
  echo "== fuzz_$name for ${secs}s"
  if ! "$bin" -max_total_time="$secs" -runs="$((runs > 0 ? runs : -1))" -timeout=10 -rss_limit_mb=2048 -max_len=$max_len \
      -print_final_stats=1 -artifact_prefix="$dir/artifacts-$name/" "$dir/work-$name" "${seeds[@]}"; then
    echo "run-long: fuzz_$name found a crash: see $dir/artifacts-$name/" >&2
    rc=1
  fi
done
exit $rc

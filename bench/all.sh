#!/usr/bin/env bash
# Every benchmark of bench/, RUNS times each (default 3), one after the other, each run on its
# own fresh sandbox, with the tables of the runs and, for the scripts that time one run at a
# time (repl, tier), the median and range of every figure over the runs. `make bench`.
#
#   bench/all.sh [--runs 3] [--only repl,repl-8g,repl-fastmon,import,export,tier,failover,failover-partly,rpc,memory]
#                [--out DIR] [--quick 0|1]
#
# repl-8g is bench/repl.sh on an 8 GiB image, imgstore and the pipe only, each on sites of its
# own (about 38 GB of disk at its fullest); repl-fastmon is bench/repl.sh at 1 GiB with the
# sites' monitors proposing every 50 ms (the fixed cost of a cycle without Ceph's 1 s wait).
#
# --quick 1 runs each benchmark once on small sizes (a 64 MiB image, 5 images for the
# failover, 1 s per RPC case): it checks that the scripts still run end to end, and its figures
# mean nothing. The results go to DIR (default /var/tmp/imgstore-bench/DATE): NAME-RUN.out
# (the whole output of one run), NAME-RUN.err, and summary.md. Exit status: the number of
# benchmarks that failed (0 when all ran).
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=3 ONLY=repl,repl-8g,repl-fastmon,import,export,tier,failover,failover-partly,rpc,memory OUT="" QUICK=0 BUILD=${BUILD:-build}
. tests/lib/bench.sh
options "[--runs 3] [--only repl,repl-8g,repl-fastmon,import,export,tier,failover,failover-partly,rpc,memory] [--out DIR] [--quick 0|1]" \
  runs=RUNS only=ONLY out=OUT quick=QUICK -- "$@"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "bench: --runs takes a positive number" >&2; exit 2; }
[[ "$QUICK" =~ ^[01]$ ]] || { echo "bench: --quick takes 0 or 1" >&2; exit 2; }
for b in ${ONLY//,/ }; do
  case $b in repl | repl-8g | repl-fastmon | import | export | tier | failover | failover-partly | rpc | memory) ;;
    *) echo "bench: no benchmark '$b' (repl, repl-8g, repl-fastmon, import, export, tier, failover, failover-partly, rpc, memory)" >&2; exit 2 ;;
  esac
done
BUILD=$(realpath -m --relative-to=. "$BUILD") # the scripts name their tools $PWD/$BUILD/...
OUT=${OUT:-/var/tmp/imgstore-bench/$(date +%Y%m%d-%H%M%S)}
for t in ims-repl ims-import ims-tier ims-rpc-bench; do
  [ -x "$BUILD/bench/$t" ] || { echo "bench: $BUILD/bench/$t is missing: make build first" >&2; exit 2; }
done
mkdir -p "$OUT" || exit 2
WORK=$OUT/work
[ "$QUICK" = 1 ] && RUNS=1

# The arguments of one benchmark: its defaults (the sizes of docs/BENCHMARKS.md), or small ones.
args_of() {
  local q=$QUICK
  case $1 in
    repl) [ $q = 1 ] && echo "--size 64M --delta 16M" || echo "--size 1G --delta 128M" ;;
    repl-8g) [ $q = 1 ] && echo "--size 128M --delta 16M --tools imgstore,pipe --one-at-a-time 1" ||
      echo "--size 8G --delta 128M --tools imgstore,pipe --one-at-a-time 1" ;;
    repl-fastmon) [ $q = 1 ] && echo "--size 64M --delta 16M --tools imgstore,pipe --mon-interval 0.05" ||
      echo "--size 1G --delta 128M --tools imgstore,pipe --mon-interval 0.05" ;;
    import) [ $q = 1 ] && echo "--size 64M --runs 1" || echo "--size 2G --runs $RUNS" ;;
    export) [ $q = 1 ] && echo "--size 64M --runs 1" || echo "--size 1G --runs $RUNS" ;;
    tier) [ $q = 1 ] && echo "--size 64M" || echo "--size 2G" ;;
    failover) [ $q = 1 ] && echo "--images 5 --runs 1" || echo "--images 100 --runs $RUNS" ;;
    failover-partly) [ $q = 1 ] && echo "--images 5 --runs 1 --fault partly" ||
      echo "--images 100 --runs $RUNS --fault partly" ;;
    rpc) [ $q = 1 ] && echo "--seconds 1" || echo "--seconds 8" ;;
    memory) [ $q = 1 ] && echo "--size 256M" || echo "--size 8G" ;;
  esac
}
# The script of a benchmark: repl-8g and repl-fastmon are repl.sh with other arguments,
# failover-partly failover.sh.
script_of() { case $1 in repl-*) echo repl ;; failover-*) echo failover ;; *) echo "$1" ;; esac; }
# The scripts that run their runs themselves (one call); the others are called RUNS times.
runs_of() { case $1 in import | export | failover | failover-* | memory) echo 1 ;; *) echo "$RUNS" ;; esac; }

# The median and range over the runs of every numeric cell of the tables in FILES, row by row
# (a row is named by its first cell; a trailing x or % is kept).
summarize() {
  awk -F'|' '
    function num(s) { gsub(/^ +| +$/, "", s); return s }
    !/^\|/ { intable = 0; next }
    /^\|-/ { next }
    {
      key = num($2)
      if (!(key in seen)) { seen[key] = 1; order[++n] = key; cols[key] = NF - 2 }
      if (!intable) { intable = 1; heads[key] = $0; next } # the first row of a table
      for (i = 3; i < NF; i++) {
        v = num($i); unit = v ~ /x$/ ? "x" : (v ~ /%$/ ? "%" : "")
        sub(/[x%]$/, "", v)
        if (v ~ /^-?[0-9]+(\.[0-9]+)?$/) { c = ++cnt[key, i]; val[key, i, c] = v + 0; u[key, i] = unit }
      }
    }
    END {
      for (k = 1; k <= n; k++) {
        key = order[k]
        if (key in heads) {
          sep = "|"; for (i = 0; i < cols[key]; i++) sep = sep "---|"
          print heads[key]; print sep; continue
        }
        line = "| " key " |"
        for (i = 3; i < cols[key] + 2; i++) {
          m = cnt[key, i]
          if (!m) { line = line " |"; continue }
          for (a = 1; a <= m; a++) w[a] = val[key, i, a]
          for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (w[b] < w[a]) { t = w[a]; w[a] = w[b]; w[b] = t }
          med = m % 2 ? w[(m + 1) / 2] : (w[m / 2] + w[m / 2 + 1]) / 2
          line = line sprintf(" %.2f%s (%.2f-%.2f) |", med, u[key, i], w[1], w[m])
        }
        print line
      }
    }' "$@"
}

failed=0
{
  echo "# imgstore benchmarks, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "$(nproc) cores, load before the run: $(cut -d' ' -f1-3 /proc/loadavg); runs: $RUNS$([ "$QUICK" = 1 ] && echo ', quick (small sizes: the figures mean nothing)')"
} >"$OUT/summary.md"
for b in ${ONLY//,/ }; do
  n=$(runs_of "$b")
  outs=()
  for ((run = 1; run <= n; run++)); do
    echo "bench: $b run $run of $n: bench/$(script_of "$b").sh $(args_of "$b") --dir $WORK/$b"
    # shellcheck disable=SC2046 # the arguments are words on purpose
    if BUILD=$BUILD bash "bench/$(script_of "$b").sh" $(args_of "$b") --dir "$WORK/$b" >"$OUT/$b-$run.out" 2>"$OUT/$b-$run.err"; then
      outs+=("$OUT/$b-$run.out")
    else
      echo "bench: $b run $run failed; the end of its errors:" >&2
      tail -5 "$OUT/$b-$run.err" >&2
      failed=$((failed + 1))
    fi
  done
  {
    echo
    echo "## $b: bench/$(script_of "$b").sh $(args_of "$b")"
    for f in "${outs[@]}"; do
      echo
      echo "### $(basename "$f" .out)"
      echo
      cat "$f"
    done
    if [ "${#outs[@]}" -gt 1 ] && [ "$(runs_of "$b")" -gt 1 ]; then
      echo
      echo "### median (range) of ${#outs[@]} runs"
      echo
      summarize "${outs[@]}"
    fi
  } >>"$OUT/summary.md"
done
rm -rf "$WORK"
echo "bench: $([ $failed = 0 ] && echo "every benchmark ran" || echo "$failed runs failed"); results in $OUT/summary.md"
exit $failed

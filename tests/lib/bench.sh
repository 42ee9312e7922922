# tests/lib/bench.sh: what the benchmarks (bench/*.sh) and the soak tests (tests/soak/*.sh)
# share. Source it from the top of the source tree (they cd there first):
#
#     . tests/lib/bench.sh
#
#   options USAGE NAME=VAR... -- "$@"   the command line: `--NAME VALUE` sets $VAR; anything
#                                       else prints `usage: $0 USAGE` and exits 2
#   fresh_sandbox DIR                   no sandbox left in DIR (down, removed) and its parent
#                                       there, for a `scripts/sandbox up DIR` of this run
#   mirror_start CONF_A CONF_B DIR ERRLOG  rbd-mirror in snapshot mode from site a (CONF_A) to
#                                       site b: image-mode pool mirroring on both, the peer
#                                       bootstrap (DIR/token), an rbd-mirror daemon on site b
#                                       (DIR/rbd-mirror.log), its pid in MIRROR_PID; rbd's
#                                       errors appended to ERRLOG

options() {
  local usage=$1 opt; shift
  local -A var=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do var[--${1%%=*}]=${1#*=}; shift; done
  shift
  while [ $# -gt 0 ]; do
    opt=$1
    if [[ $opt != --?* ]] || [ -z "${var[$opt]:-}" ] || [ $# -lt 2 ]; then
      echo "usage: $0 $usage" >&2
      exit 2
    fi
    printf -v "${var[$opt]}" '%s' "$2"
    shift 2
  done
}

mirror_start() {
  local a=$1 b=$2 dir=$3 errlog=$4
  rbd -c "$a" mirror pool enable rbd image 2>>"$errlog"
  rbd -c "$b" mirror pool enable rbd image 2>>"$errlog"
  rbd -c "$a" mirror pool peer bootstrap create --site-name site-a rbd >"$dir/token" 2>>"$errlog"
  rbd -c "$b" mirror pool peer bootstrap import --site-name site-b --direction rx-only rbd "$dir/token" 2>>"$errlog"
  CEPH_CONF=$b rbd-mirror -f --id admin --log-file "$dir/rbd-mirror.log" </dev/null >/dev/null 2>&1 &
  MIRROR_PID=$!
}

fresh_sandbox() {
  scripts/sandbox down "$1" >/dev/null 2>&1 || true
  rm -rf "$1"
  mkdir -p "$(dirname "$1")"
}

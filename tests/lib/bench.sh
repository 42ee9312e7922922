# tests/lib/bench.sh: what the benchmarks (bench/*.sh) and the soak tests (tests/soak/*.sh)
# share. Source it from the top of the source tree (they cd there first):
#
#     . tests/lib/bench.sh
#
#   options USAGE NAME=VAR... -- "$@"   the command line: `--NAME VALUE` sets $VAR; anything
#                                       else prints `usage: $0 USAGE` and exits 2
#   fresh_sandbox DIR                   no sandbox left in DIR (down, removed) and its parent
#                                       there, for a `scripts/sandbox up DIR` of this run

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

fresh_sandbox() {
  scripts/sandbox down "$1" >/dev/null 2>&1 || true
  rm -rf "$1"
  mkdir -p "$(dirname "$1")"
}

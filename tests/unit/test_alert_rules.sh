#!/usr/bin/env bash
# The monitoring files shipped in dist/ (issue 13): the Prometheus alert rules pass
# `promtool check rules`, fire as tests/unit/alerts_test.yml says (`promtool test rules`: each
# alert on the series that should fire it, none on healthy ones), and the Grafana dashboard is
# valid JSON whose every query names only metrics imgstored exports.
#
# The metrics imgstored exports are taken from its source, not from a list kept here: every
# "# TYPE NAME KIND" line the daemon and its libraries print on GET /metrics (a histogram also
# gives NAME_bucket, NAME_sum and NAME_count). A metric that is renamed or dropped in the code
# then fails this test until the rules and the dashboard follow.
#
# Environment: IMS_SOURCE_DIR.
set -uo pipefail
SRC=${IMS_SOURCE_DIR:?}
RULES=$SRC/dist/prometheus/imgstore-alerts.yml
RULES_TEST=$SRC/tests/unit/alerts_test.yml
DASH=$SRC/dist/grafana/imgstore-dashboard.json
. "$(dirname "${BASH_SOURCE[0]}")/../lib/tap.sh"
for tool in promtool jq python3; do
  command -v $tool >/dev/null || { echo "not ok - '$tool' is missing: run scripts/install-deps"; exit 1; }
done
workdir

# ---- the metrics imgstored exports, from the code that renders /metrics
grep -rhoE '# TYPE imgstore_[a-z0-9_]+ (counter|gauge|histogram|summary|untyped)' \
  "$SRC"/daemon "$SRC"/replicator "$SRC"/tier "$SRC"/store "$SRC"/common "$SRC"/proto \
  --include='*.c' --include='*.h' |
  while read -r _ _ name kind; do
    echo "$name"
    [ "$kind" = histogram ] && printf '%s_bucket\n%s_sum\n%s_count\n' "$name" "$name" "$name"
  done | sort -u >"$W/exported"
if [ "$(wc -l <"$W/exported")" -ge 10 ] && grep -qx imgstore_site_up "$W/exported"; then
  ok "$(wc -l <"$W/exported") metric names exported by imgstored, from its '# TYPE' lines"
else
  not_ok "could not find the metrics imgstored exports in its source (got: $(tr '\n' ' ' <"$W/exported"))"
fi

# The metric names a PromQL expression reads, one a line: strings, label matchers, ranges,
# grouping clauses, numbers and Grafana's $variables taken out; then every identifier not
# followed by '(' (a function or an aggregation) that is not a keyword.
metrics_of() {
  sed -E -e 's/"([^"\\]|\\.)*"//g' -e 's/\$\{[^}]*\}|\$[A-Za-z_]+//g' -e 's/\{[^}]*\}//g' \
         -e 's/\[[^]]*\]//g' \
         -e 's/\b(by|without|on|ignoring|group_left|group_right)[[:space:]]*\([^)]*\)//g' \
         -e 's/(^|[^A-Za-z0-9_:])[0-9][0-9A-Za-z.]*/\1/g' <<<"$1" |
    grep -oE '[A-Za-z_:][A-Za-z0-9_:]*[[:space:]]*\(?' |
    grep -vE '\($' | sed -E 's/[[:space:]]+$//' |
    grep -vxE '(and|or|unless|bool|offset|by|without|on|ignoring|group_left|group_right|inf|nan|Inf|NaN)' |
    sort -u
}
# WHAT EXPR: every metric EXPR reads is exported, and it reads one at least
check_expr() {
  local what=$1 expr=$2 m names="" bad=""
  names=$(metrics_of "$expr")
  for m in $names; do grep -qxF "$m" "$W/exported" || bad="$bad $m"; done
  if [ -z "$names" ]; then
    not_ok "$what: no metric found in '$expr'"
  elif [ -n "$bad" ]; then
    not_ok "$what: '$expr' reads metrics imgstored does not export:$bad"
  else
    ok "$what: $(tr '\n' ' ' <<<"$names")"
  fi
}
# the tokenizer itself, on an expression with everything it must take out
got=$(metrics_of 'histogram_quantile(0.99, sum by (le, method) (rate(imgstore_a_bucket{instance=~"$instance",x="a b(c)"}[5m]))) > 1e3 and on (instance) imgstore_b offset 5m unless bool imgstore_c{x="}"} or vector(0)' | tr '\n' ' ')
if [ "$got" = "imgstore_a_bucket imgstore_b imgstore_c " ]; then
  ok "the metric names of a PromQL expression are found"
else
  not_ok "the metric names of a PromQL expression: got '$got', wanted 'imgstore_a_bucket imgstore_b imgstore_c '"
fi

# ---- the alert rules
if out=$(promtool check rules "$RULES" 2>&1); then
  ok "promtool check rules: $(grep -o 'SUCCESS.*' <<<"$out")"
else
  not_ok "promtool check rules $RULES:"; sed 's/^/    /' <<<"$out"
fi
if out=$(promtool test rules "$RULES_TEST" 2>&1); then
  ok "promtool test rules tests/unit/alerts_test.yml: every alert fires where it should, and only there"
else
  not_ok "promtool test rules $RULES_TEST:"; sed 's/^/    /' <<<"$out"
fi
# every alert of the file is tested, firing and not firing
alerts=$(python3 -c 'import sys, yaml
for g in yaml.safe_load(open(sys.argv[1]))["groups"]:
    for r in g["rules"]:
        if "alert" in r: print(r["alert"] + "\t" + " ".join(r["expr"].split()))' "$RULES")
while IFS=$'\t' read -r name expr; do
  check_expr "alert $name" "$expr"
  # "FIRING SILENT": how many evaluations of the test file expect it to fire, and not to
  fires=$(python3 -c 'import sys, yaml
cases = [a for t in yaml.safe_load(open(sys.argv[1]))["tests"] for a in t.get("alert_rule_test", [])
         if a["alertname"] == sys.argv[2]]
print(sum(1 for a in cases if a.get("exp_alerts")), sum(1 for a in cases if not a.get("exp_alerts")))' \
    "$RULES_TEST" "$name")
  if [ "${fires% *}" -ge 1 ] && [ "${fires#* }" -ge 1 ]; then
    ok "alert $name is tested firing (${fires% *}) and silent (${fires#* })"
  else
    not_ok "alert $name: tests/unit/alerts_test.yml must test it firing and silent (firing ${fires% *}, silent ${fires#* })"
  fi
  grep -qx "#### $name" "$SRC/docs/MONITORING.md" 2>/dev/null && ok "alert $name is explained in docs/MONITORING.md" ||
    not_ok "alert $name has no '#### $name' section in docs/MONITORING.md"
done <<<"$alerts"
[ -n "$alerts" ] || not_ok "no alert found in $RULES"

# ---- the dashboard
if jq -e '.title and .uid and (.panels | length > 0)' "$DASH" >/dev/null 2>"$W/jq.err"; then
  ok "the dashboard is JSON with a title, a uid and $(jq '[.. | objects | select(has("gridPos"))] | length' "$DASH") panels"
else
  not_ok "$DASH is not a dashboard: $(cat "$W/jq.err")"
fi
ids=$(jq '[.. | objects | select(has("gridPos")) | .id]' "$DASH")
if jq -e 'length == (unique | length) and all(type == "number")' <<<"$ids" >/dev/null; then
  ok "every panel has a number id of its own"
else
  not_ok "panel ids missing or repeated: $ids"
fi
n=0
while IFS=$'\t' read -r title expr; do
  n=$((n + 1))
  check_expr "panel '$title'" "$expr"
done < <(jq -r '.. | objects | select(has("targets")) | .title as $t | .targets[] |
  [$t, (.expr // "")] | @tsv' "$DASH")
[ "$n" -ge 1 ] || not_ok "no panel query found in the dashboard"
# the template variables' queries: label_values(METRIC, LABEL) names a metric too
while IFS=$'\t' read -r name query; do
  metric=$(sed -nE 's/^label_values\(([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?, *[A-Za-z_]+\)$/\1/p' <<<"$query")
  if [ -n "$metric" ]; then
    check_expr "variable \$$name" "$metric"
  else
    not_ok "variable \$$name: a query other than label_values(METRIC, LABEL): '$query'"
  fi
done < <(jq -r '.templating.list[] | select(.type == "query") | [.name, (.query | if type == "object" then .query else . end)] | @tsv' "$DASH")

finish

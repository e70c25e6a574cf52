#!/usr/bin/env bash
# deploy/monitoring checks: promtool check config/rules, promtool test rules, the Grafana JSON
# parses, and every metric the dashboard and the alerts query exists on a live gateway or node.
#   tests/monitoring/test_monitoring.sh STRATA_BINARY WORKDIR [--pending m1,m2]
# Needs promtool (Debian package prometheus): installed here when missing and apt-get is usable.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MON="$HERE/../../deploy/monitoring"
STRATA="${1:?usage: $0 STRATA WORKDIR [--pending LIST]}"
WORK="${2:?usage: $0 STRATA WORKDIR [--pending LIST]}"
shift 2

if ! command -v promtool >/dev/null; then
  echo "promtool missing: installing the Debian package prometheus"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null
fi
cd "$MON"
promtool check config prometheus.yml
promtool check rules alerts.yml
promtool test rules alerts_test.yml
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["panels"]; print("grafana-dashboard.json:", len(d["panels"]), "panels")' grafana-dashboard.json
python3 "$HERE/metrics_exist.py" --strata "$STRATA" --workdir "$WORK" "$@"

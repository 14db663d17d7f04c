#!/usr/bin/env bash
# Load the repository's Grafana dashboards and Prometheus alert rules into the monitoring stack
# as ConfigMaps (k8s/monitoring-stack.yaml mounts them by name). Idempotent: run it after every
# change to monitoring/grafana/dashboards/ or the rule files. Needs kubectl on a cluster where
# k8s/monitoring-stack.yaml is applied.
set -euo pipefail
cd "$(dirname "$0")/.."

NAMESPACE="${MONITORING_NAMESPACE:-trading-monitoring}"
DASHBOARDS="monitoring/grafana/dashboards"
RULES_DIR="monitoring/prometheus"

shopt -s nullglob
dashboards=("$DASHBOARDS"/*.json)
# Alert rule files only (names with "rules" or "alerts"), not a local scrape configuration.
rules=()
for f in "$RULES_DIR"/*rules*.y*ml "$RULES_DIR"/*alerts*.y*ml; do
  case "$f" in
    *test*) ;;  # promtool unit tests stay out
    *) rules+=("$f") ;;
  esac
done
shopt -u nullglob

if [ ${#dashboards[@]} -eq 0 ]; then
  echo "monitoring-config: no dashboards in $DASHBOARDS" >&2
  exit 1
fi

from_files() {
  local name="$1"
  shift
  local args=()
  for f in "$@"; do
    args+=("--from-file=$f")
  done
  kubectl -n "$NAMESPACE" create configmap "$name" "${args[@]}" --dry-run=client -o yaml |
    kubectl apply -f -
}

from_files grafana-dashboards "${dashboards[@]}"
if [ ${#rules[@]} -gt 0 ]; then
  from_files prometheus-rules "${rules[@]}"
else
  echo "monitoring-config: no alert rule files in $RULES_DIR; Prometheus runs without rules" >&2
fi
# Pick up the new files (both read them only at start).
kubectl -n "$NAMESPACE" rollout restart deployment/grafana deployment/prometheus

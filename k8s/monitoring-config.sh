#!/usr/bin/env bash
# Load the repository's monitoring configuration into the monitoring stack as ConfigMaps
# (k8s/monitoring-stack.yaml mounts them by name), then restart Prometheus, Grafana, Logstash and
# Filebeat so they read it. One copy of each file: the manifest holds none of this configuration.
# Idempotent: run it after applying k8s/monitoring-stack.yaml and after every change to the files
# below. Needs kubectl pointed at the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

NAMESPACE="${MONITORING_NAMESPACE:-trading-monitoring}"

PROMETHEUS_CONFIG="monitoring/prometheus/prometheus-kubernetes.yml"
PROMETHEUS_RULES="monitoring/prometheus/alerts.yml"
GRAFANA_DATASOURCES="monitoring/grafana/provisioning/datasources/prometheus.yml"
GRAFANA_PROVIDERS="monitoring/grafana/provisioning/dashboards/trading.yml"
GRAFANA_DASHBOARDS="monitoring/grafana/dashboards"
LOGSTASH_PIPELINE="monitoring/logstash/pipeline/trading.conf"
FILEBEAT_CONFIG="monitoring/filebeat/filebeat.yml"

for f in "$PROMETHEUS_CONFIG" "$PROMETHEUS_RULES" "$GRAFANA_DATASOURCES" "$GRAFANA_PROVIDERS" \
  "$LOGSTASH_PIPELINE" "$FILEBEAT_CONFIG"; do
  if [ ! -f "$f" ]; then
    echo "monitoring-config: $f is missing" >&2
    exit 1
  fi
done
shopt -s nullglob
dashboards=("$GRAFANA_DASHBOARDS"/*.json)
shopt -u nullglob
if [ ${#dashboards[@]} -eq 0 ]; then
  echo "monitoring-config: no dashboards in $GRAFANA_DASHBOARDS" >&2
  exit 1
fi

# configmap NAME --from-file=KEY=PATH...: create or update (apply keeps it declarative).
configmap() {
  local name="$1"
  shift
  kubectl -n "$NAMESPACE" create configmap "$name" "$@" --dry-run=client -o yaml |
    kubectl apply -f -
}

configmap prometheus-config "--from-file=prometheus.yml=$PROMETHEUS_CONFIG"
configmap prometheus-rules "--from-file=alerts.yml=$PROMETHEUS_RULES"
configmap grafana-provisioning \
  "--from-file=datasources.yml=$GRAFANA_DATASOURCES" \
  "--from-file=dashboards.yml=$GRAFANA_PROVIDERS"
dashboard_args=()
for f in "${dashboards[@]}"; do
  dashboard_args+=("--from-file=$f")
done
configmap grafana-dashboards "${dashboard_args[@]}"
configmap logstash-pipeline "--from-file=logstash.conf=$LOGSTASH_PIPELINE"
configmap filebeat-config "--from-file=filebeat.yml=$FILEBEAT_CONFIG"

kubectl -n "$NAMESPACE" rollout restart deployment/prometheus deployment/grafana deployment/logstash
kubectl -n "$NAMESPACE" rollout restart daemonset/filebeat

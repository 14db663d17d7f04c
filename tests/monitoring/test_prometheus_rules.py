"""Prometheus configuration and alert rules, checked by promtool and against the code."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from .promql import PROMETHEUS_DIR, defined_metric_names, metric_names, promtool

RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "alerts_test.yml"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=PROMETHEUS_DIR)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_local_scrape_config_and_its_rules():
    result = run(promtool(), "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules():
    result = run(promtool(), "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 rules found" in result.stdout


def test_promtool_rule_unit_tests_pass():
    result = run(promtool(), "test", "rules", "tests/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_kubernetes_scrape_config():
    result = run(promtool(), "check", "config", "prometheus-kubernetes.yml")
    if "kubernetes_sd_configs not found" in result.stdout + result.stderr:
        pytest.skip("this promtool build has no Kubernetes discovery (Debian strips it)")
    assert "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_kubernetes_scrape_config_keeps_the_labels_the_rules_select_on():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-kubernetes.yml").read_text())
    [pods] = [job for job in config["scrape_configs"] if job["job_name"] == "trading-pods"]
    assert pods["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["trading"]}}]
    relabels = pods["relabel_configs"]
    targets = {r.get("target_label") for r in relabels}
    assert {"job", "system", "__address__", "__metrics_path__"} <= targets
    assert "service" not in targets  # would rename the services' own `service` label
    [job] = [r for r in relabels if r.get("target_label") == "job"]
    assert job["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
    [address] = [r for r in relabels if r.get("target_label") == "__address__"]
    pattern = re.compile(address["regex"])
    match = pattern.fullmatch("10.1.2.3:8080;9103")
    assert match is not None
    assert address["replacement"].replace("$1", match[1]).replace("$2", match[2]) == "10.1.2.3:9103"


def test_local_scrape_config_has_every_service_at_its_metrics_port():
    from trading.settings import SERVICE_METRICS_PORTS

    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]
    }
    assert targets == {name: f"localhost:{port}" for name, port in SERVICE_METRICS_PORTS.items()}
    for job in config["scrape_configs"]:
        labels = job["static_configs"][0]["labels"]
        assert labels["system"] == ("sim" if job["job_name"] == "ibsim" else "trading")


def test_every_alert_rule_has_a_unit_test_where_it_fires():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alert_rules()} == fired


def test_every_metric_the_rules_read_is_defined_in_the_code():
    defined = defined_metric_names()
    for rule in alert_rules():
        missing = metric_names(rule["expr"]) - defined
        assert not missing, f"{rule['alert']} reads undefined metrics {sorted(missing)}"


def test_every_alert_has_a_severity_summary_and_description():
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]

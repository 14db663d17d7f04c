"""Grafana provisioning and dashboards: well formed, on the provisioned datasource, reading only
metrics the code defines. (That each panel returns data: test_prometheus_stack.py.)"""

from __future__ import annotations

import json

import yaml

from .promql import GRAFANA_DIR, defined_metric_names, metric_names

DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))


def datasource() -> dict:
    config = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yml").read_text())
    [source] = config["datasources"]
    return source


def test_dashboards_are_provisioned_from_files_on_the_prometheus_datasource():
    source = datasource()
    assert (source["type"], source["uid"]) == ("prometheus", "prometheus")
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/trading.yml").read_text())
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARDS]
    assert sorted(uids) == ["trading-overview", "trading-system"]


def test_every_panel_queries_the_provisioned_datasource_and_fits_the_grid():
    uid = datasource()["uid"]
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, (path.name, panel["title"])
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == uid
            assert panel["targets"], (path.name, panel["title"])
            assert panel["description"], (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid
                assert target["expr"].strip()


def test_every_metric_a_panel_reads_is_defined_in_the_code():
    defined = defined_metric_names()
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                missing = metric_names(target["expr"]) - defined
                assert not missing, f"{path.name} / {panel['title']}: {sorted(missing)}"


def test_dashboards_cover_the_trading_and_system_views():
    boards = [json.loads(path.read_text()) for path in DASHBOARDS]
    titles = {board["uid"]: {panel["title"] for panel in board["panels"]} for board in boards}
    trading = {"z-score and bands", "Positions", "Day P&L", "Hedged log spread"}
    assert trading <= titles["trading-overview"]
    system = {"Tick rate", "Order pipeline p99", "Quote age", "IB connection", "Drops by reason"}
    assert system | {"Redis memory"} <= titles["trading-system"]

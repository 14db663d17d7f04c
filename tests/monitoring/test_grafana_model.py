"""Every dashboard survives Grafana's own dashboard model: grafana-foundation-sdk (the schema
Grafana generates its SDKs from, pinned to the deployed Grafana's minor version) reads each JSON
file and writes it back, and no key may be lost on the way. A misspelled or misplaced key
(`fieldconfig`, `unit` outside `defaults`, `legend` outside `options`) is dropped silently by the
model, and by Grafana: this is where it shows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from .promql import GRAFANA_DIR

DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
register_default_plugins()  # typed panel options, field configs and Prometheus queries


def key_paths(value: Any, path: str = "") -> set[str]:
    """Every key of a JSON value as a path: `panels[3].fieldConfig.defaults.unit`."""
    out: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            out.add(f"{path}.{key}" if path else key)
            out |= key_paths(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out |= key_paths(item, f"{path}[{index}]")
    return out


def round_trip(board: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_loses_no_key_through_grafanas_dashboard_model(path):
    board = json.loads(path.read_text())
    dropped = sorted(key_paths(board) - key_paths(round_trip(board)))
    assert not dropped, f"{path.name}: keys Grafana's dashboard model does not know: {dropped}"


def test_the_check_catches_misspelled_keys_at_every_level():
    board = json.loads(DASHBOARDS[0].read_text())
    index, panel = next((i, p) for i, p in enumerate(board["panels"]) if p["type"] == "timeseries")
    panel["fieldconfig"] = panel["fieldConfig"]  # the panel
    panel["options"]["legend"]["showLegendd"] = True  # the timeseries options
    panel["targets"][0]["exprr"] = "up"  # the Prometheus query
    dropped = key_paths(board) - key_paths(round_trip(board))
    assert {
        f"panels[{index}].fieldconfig",
        f"panels[{index}].options.legend.showLegendd",
        f"panels[{index}].targets[0].exprr",
    } <= dropped, dropped

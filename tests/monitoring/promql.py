"""Helpers for the configuration tests: metric names in PromQL and in the code that defines them."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
GRAFANA_DIR = MONITORING / "grafana"

_NAME = re.compile(r"\btrading_[a-z0-9_]+\b")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")
_CODE_FOLDERS = (
    "trading",
    "data-ingestion",
    "strategy",
    "risk-management",
    "visualization",
    "monitoring",
)


def metric_names(expr: str) -> set[str]:
    """Every trading_* metric a PromQL expression reads, without histogram/counter suffixes."""
    return {_base(name) for name in _NAME.findall(expr)}


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def defined_metric_names() -> set[str]:
    """trading_* names written as string literals in the code (Gauge("trading_..."), ...)."""
    return defined_metric_names_in(
        path for folder in _CODE_FOLDERS for path in (ROOT / folder).rglob("*.py")
    )


def defined_metric_names_in(paths: Iterable[Path]) -> set[str]:
    literal = re.compile(r"[\"'](trading_[a-z0-9_]+)[\"']")
    names: set[str] = set()
    for path in paths:
        names |= {_base(n) for n in literal.findall(path.read_text(encoding="utf-8"))}
    return names


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install prometheus; .ci/run installs it)")
    return path


def prometheus() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("prometheus not installed (apt-get install prometheus; .ci/run installs it)")
    return path

"""The package as `pip install .` sees it: its declared dependencies, and the layers that must
import without the I/O libraries."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_LIBRARIES = ("redis", "pydantic", "fastapi", "ib_async", "ib_insync", "uvicorn")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_pyproject_declares_every_runtime_dependency_at_its_pinned_version_or_later():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = dict(d.lower().split(">=") for d in declared)
    assert floors == _pins(ROOT / "requirements.txt")


@pytest.mark.parametrize(
    "module",
    [
        "trading.domain.risk",
        "trading.strategy.engine",
        "trading.strategy.inbox",
        "trading.execution.engine",
        "trading.bus.messages",
        "trading.bus.codec",
        "trading.bus.names",
    ],
)
def test_the_pure_layers_import_without_the_io_libraries(module):
    code = f"import sys, {module}; print(','.join(m for m in {IO_LIBRARIES!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert out == "", f"importing {module} loaded {out}"


def test_the_bus_client_is_loaded_on_first_use_only():
    code = (
        "import sys, trading.bus as b; before = 'redis' in sys.modules; b.Bus; "
        "print(before, 'redis' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    assert out == ["False", "True"]


@pytest.mark.parametrize(
    "module", ["trading.broker.marketdata", "trading.broker.chain", "trading.broker.health"]
)
def test_the_market_data_adapter_imports_without_redis(module):
    """The IB adapter never reaches the bus client: data-ingestion's Redis writes are the
    shell's (trading.services.ingestion)."""
    code = f"import sys, {module}; print('redis' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()
    assert out == "False", f"importing {module} loaded redis"

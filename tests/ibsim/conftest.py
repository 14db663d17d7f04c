"""Fixtures for the ibsim tests: gateways on free ports, both client libraries, log capture."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from types import ModuleType

import pytest

from trading.ibsim import SimConfig, SimulatedGateway

LIBRARIES = ("ib_async", "ib_insync")
TEST_SEED = 11


@pytest.fixture(scope="session")
def live_gateway() -> Iterator[SimulatedGateway]:
    """Real-time market (1x), a step every 50 ms of sim time, HTTP admin API on."""
    gateway = SimulatedGateway(
        SimConfig(seed=TEST_SEED, tick_interval_s=0.05), port=0, admin_port=0
    ).start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="session")
def frozen_gateway() -> Iterator[SimulatedGateway]:
    """A market that never moves: quotes stay at the 09:30 anchor, so fills have known prices."""
    gateway = SimulatedGateway(SimConfig(seed=TEST_SEED, speed=1e-9), port=0).start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="session")
def frozen_http_gateway() -> Iterator[SimulatedGateway]:
    """The frozen market with the HTTP admin API on."""
    gateway = SimulatedGateway(SimConfig(seed=TEST_SEED, speed=1e-9), port=0, admin_port=0).start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def frozen_http(frozen_http_gateway: SimulatedGateway) -> SimulatedGateway:
    frozen_http_gateway.reset()
    return frozen_http_gateway


@pytest.fixture
def live(live_gateway: SimulatedGateway) -> SimulatedGateway:
    live_gateway.reset()
    return live_gateway


@pytest.fixture
def frozen(frozen_gateway: SimulatedGateway) -> SimulatedGateway:
    frozen_gateway.reset()
    return frozen_gateway


@pytest.fixture(params=LIBRARIES)
def ibm(request: pytest.FixtureRequest) -> ModuleType:
    """The client library under test: ib_async 2.1 or ib_insync 0.9.86."""
    return importlib.import_module(request.param)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_malformed_messages() -> Iterator[list[logging.LogRecord]]:
    """Fail the test when a client decoder drops a message or the server logs an error."""
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
    bad = [
        f"{r.name}: {r.getMessage()[:300]}"
        for r in handler.records
        if "Error handling fields" in r.getMessage()
        or r.name.endswith("Decoder")
        or (r.name.startswith("trading.ibsim") and r.levelno >= logging.ERROR)
    ]
    assert not bad, "malformed messages:\n" + "\n".join(bad)

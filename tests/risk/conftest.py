"""The simulated gateway of the risk service tests."""

from __future__ import annotations

import pytest

from trading.ibsim import SimConfig, SimulatedGateway


@pytest.fixture
def gateway():
    gw = SimulatedGateway(SimConfig(seed=3, speed=1.0)).start()
    try:
        yield gw
    finally:
        gw.stop()

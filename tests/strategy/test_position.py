"""The pair lifecycle (`PairManager`) on hand-made bars: what an entry signal does with a hedge
beta that cannot size a pair."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from trading.bus import SignalAction
from trading.domain.risk import TradingState
from trading.settings import load_settings
from trading.strategy.engine import EngineConfig
from trading.strategy.legs import HeldCall
from trading.strategy.pair import BarContext
from trading.strategy.position import PairManager, PairStatus


def fitted_manager(phi: float = 0.9, bars: int = 400, **strategy) -> PairManager:
    """A manager whose OU fit and cointegration test have ``bars`` bars of a spread that mean-
    reverts (AR(1), ``phi``; 1.0 a random walk): y = x + spread, x a random walk (seeded). The
    edge gate reports only unless ``strategy`` turns it on (400 bars are three of its samples
    at the default spacing)."""
    values = {"cointegration_pvalue": 0.99, "entry_z": 2.0, "edge_gate": False} | strategy
    settings = load_settings(strategy=values).strategy
    manager = PairManager(settings, EngineConfig(moneyness=1.0))
    rng = np.random.default_rng(7)
    x, spread = math.log(90.0), 0.0
    for _ in range(bars):
        x += 0.001 * rng.standard_normal()
        spread = phi * spread + 0.001 * rng.standard_normal()
        manager.record_spread(spread, x, x + spread)
    return manager


QUOTES = {"underlying": (89.99, 90.01), "etf": (24.99, 25.01), "call": (1.48, 1.52)}


def cheap_bar(beta: float, distance: float = -0.005) -> BarContext:
    """z -3 (50 bp below the mean): a long-spread entry signal."""
    x = math.log(90.0)
    return BarContext(
        ts=1_790_000_000.0, z=-3.0, spread=distance, mean=0.0, std=0.0016, beta=beta, alpha=0.0,
        x=x, y=x + distance, spot=90.0, tltw_mid=25.0, tltw_total_return=25.0, index_level=90.0,
        call_mid=1.5, call=HeldCall(539_000_001, "20261120", 90.0),
        risk_state=TradingState.ACTIVE, warming_up=False,
        option_mids={539_000_001: 1.5}, as_of=date(2026, 10, 1), quotes=QUOTES,
    )  # fmt: skip


EDGE_EVERY_BAR = {
    "edge_gate": True,
    "edge_sample_seconds": 60,
    "edge_horizon_seconds": 1200,
    "edge_max_drift_bp_month": 1e6,
    "min_spread_bp": 0.0,
}
"""The edge tests on every one-minute bar, over a 20-bar horizon; no drift bound (2,000 bars of
a stationary spread can fit a slope of 10 bp per month of one-minute bars by chance) and no
minimum distance (the cost test is the subject)."""


def test_the_edge_gate_lets_an_entry_through_on_a_spread_that_reverts_and_pays_its_cost():
    manager = fitted_manager(phi=0.7, bars=2000, **EDGE_EVERY_BAR)

    signals, intents = manager.on_bar(cheap_bar(0.8))

    assert [s.action for s in signals] == [SignalAction.ENTER_LONG_SPREAD]
    edge = intents[0].why["edge"]
    assert edge["verdict"] == "edge" and edge["failures"] == []
    # 50 bp x (1 - 2^(-20 / half-life)) against the round trip measured on QUOTES.
    assert edge["expected_profit_bp"] >= 2 * edge["cost_bp"] > 0
    assert manager.edge_status()["last_entry"]["passed"] is True


def test_the_edge_gate_refuses_an_entry_on_a_slow_spread_and_names_the_tests_that_failed():
    # phi 0.995: a half-life of 138 bars, far outside the 20-bar horizon.
    manager = fitted_manager(phi=0.995, bars=2000, **EDGE_EVERY_BAR)

    signals, intents = manager.on_bar(cheap_bar(0.8, distance=-0.02))

    (signal,) = signals
    assert intents == () and signal.action is SignalAction.NONE
    assert "not entered: edge: half-life" in signal.reason and "adf: p-value" in signal.reason
    assert manager.status is PairStatus.FLAT and manager.machine.blocked
    status = manager.edge_status()
    assert status["verdict"] in ("no edge", "drifting") and status["last_entry"]["passed"] is False


def test_the_edge_gate_refuses_an_entry_whose_expected_reversion_does_not_pay_the_cost():
    manager = fitted_manager(phi=0.7, bars=2000, **EDGE_EVERY_BAR)

    # 5 bp below the mean: about 5 bp back against a round trip of about 16 bp.
    signals, intents = manager.on_bar(cheap_bar(0.8, distance=-0.0005))

    assert intents == ()
    assert "not entered: edge: profit: expected" in signals[0].reason


def test_with_the_edge_gate_off_the_same_entry_goes_out_and_the_check_is_still_reported():
    manager = fitted_manager(phi=0.7, bars=2000, **(EDGE_EVERY_BAR | {"edge_gate": False}))

    _, intents = manager.on_bar(cheap_bar(0.8, distance=-0.0005))

    assert len(intents) == 1
    assert intents[0].why["edge"]["gate"] is False
    assert manager.edge_status()["last_entry"]["passed"] is False


def test_a_positive_beta_enters_the_long_spread():
    # The control: the same bar with a usable hedge is an entry.
    manager = fitted_manager()

    signals, intents = manager.on_bar(cheap_bar(0.8))

    assert [s.action for s in signals] == [SignalAction.ENTER_LONG_SPREAD]
    assert len(intents) == 1 and manager.status is PairStatus.ENTERING


@pytest.mark.parametrize("beta", [-0.2, 0.0, math.nan])
def test_an_entry_signal_with_a_beta_not_above_zero_is_refused_flat_and_blocked(beta):
    manager = fitted_manager()

    signals, intents = manager.on_bar(cheap_bar(beta))

    (signal,) = signals
    assert signal.action is SignalAction.NONE and signal.state == "FLAT"
    assert f"not entered: hedge beta {beta!r} is not > 0" in signal.reason
    assert intents == ()
    assert manager.status is PairStatus.FLAT and manager.pair is None
    assert manager.signal_state == "FLAT" and manager.machine.blocked

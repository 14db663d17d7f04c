"""The pair lifecycle (`PairManager`) on hand-made bars: what an entry signal does with a hedge
beta that cannot size a pair."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from trading.bus import SignalAction
from trading.settings import load_settings
from trading.strategy.engine import EngineConfig
from trading.strategy.legs import HeldCall
from trading.strategy.position import BarContext, PairManager, PairStatus


def fitted_manager() -> PairManager:
    """A manager whose OU fit and cointegration test have 400 bars of a spread that mean-reverts
    (AR(1), phi 0.9): y = x + spread, x a random walk (seeded)."""
    settings = load_settings(strategy={"cointegration_pvalue": 0.99, "entry_z": 2.0}).strategy
    manager = PairManager(settings, EngineConfig(moneyness=1.0))
    rng = np.random.default_rng(7)
    x, spread = math.log(90.0), 0.0
    for _ in range(400):
        x += 0.001 * rng.standard_normal()
        spread = 0.9 * spread + 0.001 * rng.standard_normal()
        manager.record_spread(spread, x, x + spread)
    return manager


def cheap_bar(beta: float) -> BarContext:
    """z -3 (50 bp below the mean): a long-spread entry signal."""
    x = math.log(90.0)
    return BarContext(
        ts=1_790_000_000.0, z=-3.0, spread=-0.005, mean=0.0, std=0.0016, beta=beta, alpha=0.0,
        x=x, y=x - 0.005, spot=90.0, tltw_mid=25.0, tltw_total_return=25.0, index_level=90.0,
        call_mid=1.5, call=HeldCall(539_000_001, "20261120", 90.0), risk_state="NORMAL",
        option_mids={539_000_001: 1.5}, as_of=date(2026, 10, 1),
    )  # fmt: skip


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

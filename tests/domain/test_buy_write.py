"""Buy-write payoff, the chained index and total-return series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trading.domain.buy_write import (
    BuyWriteIndex,
    TotalReturnIndex,
    buy_write_index_vec,
    buy_write_value_at_expiry,
    total_return_vec,
)


def test_atm_minus_otm_buy_write_payoff_at_expiry():
    # S0 = 90: the 90 call sold at 1.60 against the 92 call sold at 0.80.
    spots = np.array([85.0, 90.0, 91.0, 92.0, 95.0, 100.0])
    difference = buy_write_value_at_expiry(spots, 90.0, 1.60) - buy_write_value_at_expiry(
        spots, 92.0, 0.80
    )
    np.testing.assert_allclose(difference, [0.80, 0.80, -0.20, -1.20, -1.20, -1.20], atol=1e-12)
    assert buy_write_value_at_expiry(85.0, 90.0, 1.60) == pytest.approx(86.60)


def test_roll_keeps_the_level_and_reinvests_the_premium():
    index = BuyWriteIndex.start(spot=90.0, call_price=1.60, strike=90.0, expiry="2024-06-21")
    assert index.level == pytest.approx(88.40)
    assert index.update(spot=92.0, call_price=2.50) == pytest.approx(89.50)
    # At expiry the old call is worth its intrinsic 2.00; the new 92 call sells for 1.70.
    level = index.roll(92.0, 2.00, 1.70, 92.0, "2024-07-19")
    assert level == pytest.approx(90.00)  # 92 - 2.00, no jump
    assert index.units == pytest.approx(90.00 / 90.30)
    assert index.strike == 92.0 and index.expiry == "2024-07-19"
    # Afterwards it moves with the new buy-write: 93 - 2.10 = 90.90 per share.
    assert index.update(93.0, 2.10) == pytest.approx(90.90 * 90.00 / 90.30)


def test_dividend_is_reinvested_on_the_ex_date():
    index = BuyWriteIndex.start(spot=90.0, call_price=1.60, strike=90.0, expiry="2024-06-21")
    # TLT drops by its 0.30 dividend; the level keeps the dividend.
    level = index.pay_dividend(0.30, spot=89.70, call_price=1.45)
    assert level == pytest.approx(89.70 - 1.45 + 0.30)


def test_vectorized_index_equals_the_incremental_one():
    rng = np.random.default_rng(5)
    bars = 300
    spot = 90.0 * np.exp(np.cumsum(rng.normal(0, 0.005, bars)))
    held = rng.uniform(0.5, 2.5, bars)
    new = np.full(bars, np.nan)
    new[[0, 100, 200]] = rng.uniform(0.5, 2.5, 3)
    dividend = np.zeros(bars)
    dividend[[50, 150, 200]] = 0.28
    levels = buy_write_index_vec(spot, held, new, dividend)
    index = BuyWriteIndex.start(spot[0], new[0], 90.0, "e0")
    expected = [index.level]
    for t in range(1, bars):
        if dividend[t]:
            index.pay_dividend(dividend[t], spot[t], held[t])
        if not math.isnan(new[t]):
            index.roll(spot[t], held[t], new[t], 90.0, f"e{t}")
        else:
            index.update(spot[t], held[t])
        expected.append(index.level)
    np.testing.assert_allclose(levels, expected, rtol=1e-12)


def test_index_state_round_trip_resumes_identically():
    index = BuyWriteIndex.start(spot=90.0, call_price=1.60, strike=90.0, expiry="2024-06-21")
    index.roll(92.0, 2.00, 1.70, 92.0, "2024-07-19")
    restored = BuyWriteIndex.from_state(index.to_state())
    assert restored.update(93.0, 2.1) == index.update(93.0, 2.1)


def test_bad_quotes_are_rejected_with_the_field_named():
    index = BuyWriteIndex.start(spot=90.0, call_price=1.60, strike=90.0, expiry="2024-06-21")
    with pytest.raises(ValueError, match="spot"):
        index.update(math.nan, 1.0)
    with pytest.raises(ValueError, match="call_price"):
        index.update(90.0, -0.1)
    with pytest.raises(ValueError, match="below spot"):
        index.update(90.0, 95.0)
    with pytest.raises(ValueError, match="held_call_price"):
        buy_write_index_vec([90.0, 91.0], [1.0, math.nan])


def test_total_return_adds_back_distributions():
    # TLTW goes ex 0.25 on bar 2: the price drops but the total return does not.
    prices = [25.00, 25.10, 24.85, 24.95]
    distributions = [0.0, 0.0, 0.25, 0.0]
    expected = [25.00, 25.10, 25.10, 25.10 * 24.95 / 24.85]
    np.testing.assert_allclose(total_return_vec(prices, distributions), expected, rtol=1e-12)
    incremental = TotalReturnIndex()
    levels = [incremental.update(p, d) for p, d in zip(prices, distributions, strict=True)]
    np.testing.assert_allclose(levels, expected, rtol=1e-12)
    restored = TotalReturnIndex.from_state(incremental.to_state())
    assert restored.update(25.0) == incremental.update(25.0)

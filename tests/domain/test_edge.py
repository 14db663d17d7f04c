"""The edge gate's tests and the round trip's cost: known answers and simulated processes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trading.domain.costs import IB_FIXED, CommissionSchedule, pair_round_trip_cost_usd
from trading.domain.edge import (
    EdgeLimits,
    EdgeVerdict,
    check_entry,
    measure_edge,
    sample_spread,
)

LIMITS = EdgeLimits(sample_bars=1, horizon_bars=20.0, bars_per_session=1.0)


def ar1(phi: float, n: int, sigma: float = 0.001, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(n)
    value = 0.0
    for i in range(n):
        value = phi * value + sigma * rng.standard_normal()
        out[i] = value
    return out


def test_a_round_trip_crosses_every_spread_once_and_pays_commissions_both_ways():
    # 1,000 TLTW at 24.00/24.01 against 5 buy-writes: TLT 90.00/90.01, the call 1.50/1.54.
    cost = pair_round_trip_cost_usd(1000, 5, (24.00, 24.01), (90.00, 90.01), (1.50, 1.54))
    crossing = 1000 * 0.01 + 5 * 100 * (0.01 + 0.04)  # 10 + 25
    commissions = 2 * (1000 * 0.005 + 500 * 0.005 + 5 * 0.65)  # 2 x (5 + 2.50 + 3.25)
    assert cost == pytest.approx(crossing + commissions)  # 56.50
    # The per-order minimum of IB's fixed schedule: 100 shares pay 1.00, not 0.50.
    small = pair_round_trip_cost_usd(100, 0, (24.00, 24.00), (90.0, 90.0), (1.5, 1.5))
    assert small == pytest.approx(2 * IB_FIXED.stock_minimum_usd)
    free = CommissionSchedule(0.0, 0.0, 0.0)
    assert pair_round_trip_cost_usd(
        1, 1, (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), free
    ) == pytest.approx(0.0)


def test_a_crossed_or_non_finite_quote_is_refused_naming_the_leg():
    with pytest.raises(ValueError, match="call quote"):
        pair_round_trip_cost_usd(1000, 5, (24.0, 24.01), (90.0, 90.01), (1.6, 1.5))
    with pytest.raises(ValueError, match="tltw quote"):
        pair_round_trip_cost_usd(1000, 5, (math.nan, 24.01), (90.0, 90.01), (1.5, 1.6))


def test_samples_end_at_the_newest_bar():
    values = np.arange(10.0)
    assert sample_spread(values, 3).tolist() == [0.0, 3.0, 6.0, 9.0]
    assert sample_spread(values, 4).tolist() == [1.0, 5.0, 9.0]


def test_a_reverting_spread_has_its_half_life_measured_and_is_an_edge():
    # phi = 0.5 a bar: a half-life of exactly one bar.
    diagnostics = measure_edge(ar1(0.5, 2000), LIMITS)
    assert diagnostics.verdict is EdgeVerdict.EDGE, diagnostics.failures
    assert diagnostics.half_life_bars == pytest.approx(1.0, rel=0.15)
    assert diagnostics.half_life_low_bars < 1.0 < diagnostics.half_life_high_bars
    assert diagnostics.adf_p_value < 0.01
    assert diagnostics.variance_ratio < 0.2  # q = 20 bars: 2 / (20 x (2 - 2 phi)) ~ 0.1
    assert abs(diagnostics.drift_bp_month) < 1.0
    assert diagnostics.reversion_fraction() == pytest.approx(
        1 - 2 ** (-20 / diagnostics.half_life_bars)
    )


def test_a_random_walk_is_no_edge_however_far_it_strays():
    walk = np.cumsum(np.random.default_rng(3).standard_normal(2000)) * 1e-3
    diagnostics = measure_edge(walk - walk.mean(), LIMITS)
    assert diagnostics.verdict is not EdgeVerdict.EDGE
    assert any(f.startswith("half-life") for f in diagnostics.failures)
    assert any(f.startswith("adf") for f in diagnostics.failures)
    assert diagnostics.variance_ratio == pytest.approx(1.0, abs=0.35)


def test_a_trend_of_25_bp_a_month_is_drifting():
    # 300 bp a year = 25 bp a month of 21 sessions; one bar a session here.
    bars = np.arange(400)
    spread = -0.0025 / 21 * bars + ar1(0.3, 400, sigma=0.0002)
    diagnostics = measure_edge(spread, LIMITS)
    assert diagnostics.drift_bp_month == pytest.approx(-25.0, abs=1.0)
    assert diagnostics.verdict is EdgeVerdict.DRIFTING
    below_mean = -0.004
    long_entry = check_entry(diagnostics, below_mean, True, 1.0, LIMITS)
    short_entry = check_entry(diagnostics, -below_mean, False, 1.0, LIMITS)
    assert not long_entry.passed and "drift: -25" in long_entry.reason
    # A short spread bets on a fall, with the drift: the drift does not refuse it.
    assert "drift" not in short_entry.reason


def test_half_life_interval_covers_the_true_one_about_as_often_as_its_confidence():
    phi = 0.8
    true = math.log(2) / -math.log(phi)  # 3.1 bars
    limits = EdgeLimits(sample_bars=1, horizon_bars=50.0, bars_per_session=1.0)
    covered = [
        (d := measure_edge(ar1(phi, 400, seed=s), limits)).half_life_low_bars
        <= true
        <= d.half_life_high_bars
        for s in range(120)
    ]
    assert 0.88 <= np.mean(covered) <= 0.99


def test_an_entry_must_expect_to_win_back_its_cost_by_the_margin():
    diagnostics = measure_edge(ar1(0.5, 2000), LIMITS)
    fraction = diagnostics.reversion_fraction()  # ~1: 20 half-lives
    limits = LIMITS  # margin 2
    distance = -0.0030  # 30 bp below the mean
    passed = check_entry(diagnostics, distance, True, 14.0, limits)
    assert passed.passed and passed.reason == ""
    assert passed.expected_profit_bp == pytest.approx(30.0 * fraction)
    refused = check_entry(diagnostics, distance, True, 16.0, limits)
    assert not refused.passed and refused.reason.startswith("edge: profit: expected 30.0 bp")
    assert not check_entry(None, distance, True, 1.0, limits).passed


def test_too_few_samples_is_no_edge_and_says_so():
    limits = EdgeLimits(sample_bars=130, horizon_bars=1950.0, bars_per_session=390.0)
    diagnostics = measure_edge(ar1(0.5, 390), limits)
    assert diagnostics.verdict is EdgeVerdict.NO_EDGE
    assert diagnostics.failures == ("samples: 3 < 20 (one every 130 bars)",)
    check = check_entry(diagnostics, -0.01, True, 1.0, limits)
    assert not check.passed and "samples: 3 < 20" in check.reason


def test_bad_inputs_raise_value_error_naming_the_field():
    with pytest.raises(ValueError, match="spreads must be finite"):
        measure_edge([0.0] * 30 + [math.nan], LIMITS)
    with pytest.raises(ValueError, match="sample_bars"):
        EdgeLimits(sample_bars=0, horizon_bars=1.0, bars_per_session=1.0)
    with pytest.raises(ValueError, match="confidence"):
        EdgeLimits(sample_bars=1, horizon_bars=1.0, bars_per_session=1.0, confidence=1.0)
    with pytest.raises(ValueError, match="horizon_bars"):
        EdgeLimits(sample_bars=1, horizon_bars=math.inf, bars_per_session=1.0)

"""Fractional Kelly: continuous, discrete and the spread-trade size with its caps."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.domain.kelly import (
    KellyLimits,
    kelly_continuous,
    kelly_discrete,
    kelly_from_trades,
    kelly_growth_rate,
    spread_kelly_size,
)
from trading.domain.mean_reversion import OrnsteinUhlenbeckFit


def ou(theta=0.1, mu=0.0, sigma=0.0005) -> OrnsteinUhlenbeckFit:
    return OrnsteinUhlenbeckFit(
        theta=theta,
        mu=mu,
        sigma=sigma,
        half_life=math.log(2) / theta,
        stationary_std=sigma / math.sqrt(2 * theta),
        dt=1.0,
        phi=math.exp(-theta),
    )


def test_continuous_kelly_known_answer_and_growth():
    assert kelly_continuous(0.08, 0.2) == pytest.approx(2.0)
    assert kelly_growth_rate(2.0, 0.08, 0.2) == pytest.approx(0.08)
    assert kelly_growth_rate(1.0, 0.08, 0.2) == pytest.approx(0.06)  # half Kelly


def test_discrete_kelly_known_answers():
    assert kelly_discrete(0.6, 1.0) == pytest.approx(0.20)
    assert kelly_discrete(0.55, 1.5) == pytest.approx(0.25)


def test_kelly_from_trade_history():
    trades = [150.0] * 11 + [-100.0] * 9  # p = 0.55, b = 1.5
    result = kelly_from_trades(trades, fraction=0.5)
    assert result.win_probability == pytest.approx(0.55)
    assert result.win_loss_ratio == pytest.approx(1.5)
    assert result.full_kelly == pytest.approx(0.25)
    assert result.fraction_of_equity == pytest.approx(0.125)
    assert kelly_from_trades([10.0] * 30).fraction_of_equity == 0.0  # no losses: undefined
    assert kelly_from_trades(trades[:5]).fraction_of_equity == 0.0  # too few trades


def test_spread_kelly_size_from_the_ou_moments():
    fit = ou(theta=0.1, mu=0.0, sigma=0.0005)
    horizon = fit.half_life
    size = spread_kelly_size(
        fit,
        spread_value=-0.002,
        horizon=horizon,
        equity_usd=100_000,
        hedge_beta=1.0,
        cointegration_p_value=0.01,
        limits=KellyLimits(fraction=0.5, max_gross_notional_usd=1e12, max_leverage=1e6),
    )
    expected = 0.002 * 0.5  # half of the gap closes in one half-life
    variance = 0.0005**2 / 0.2 * (1 - math.exp(-0.2 * horizon))
    assert size.expected_change == pytest.approx(expected)
    assert size.change_variance == pytest.approx(variance)
    assert size.full_kelly == pytest.approx(expected / variance)
    assert size.tltw_notional_usd == pytest.approx(0.5 * expected / variance * 100_000)
    assert size.tltw_notional_usd > 0  # spread below its mean: long the spread
    assert size.gross_notional_usd == pytest.approx(2 * size.tltw_notional_usd)


def test_spread_kelly_size_is_capped_by_leverage_and_gross_notional():
    fit = ou()
    limits = KellyLimits(fraction=0.5, max_gross_notional_usd=150_000, max_leverage=2.0)
    size = spread_kelly_size(fit, 0.003, fit.half_life, 100_000, 0.98, 0.01, limits)
    assert size.gross_notional_usd == pytest.approx(150_000)
    assert size.capped_by == "max_gross_notional_usd"
    assert size.tltw_notional_usd < 0  # spread above its mean: short the spread
    levered = spread_kelly_size(
        fit, 0.003, fit.half_life, 50_000, 0.98, 0.01, KellyLimits(max_gross_notional_usd=1e9)
    )
    assert levered.leverage == pytest.approx(2.0)
    assert levered.capped_by == "max_leverage"


def test_spread_kelly_size_is_zero_when_cointegration_fails_or_inputs_are_degenerate():
    fit = ou()
    assert spread_kelly_size(fit, 0.003, 5.0, 1e5, 1.0, 0.2).tltw_notional_usd == 0.0
    assert "cointegration" in spread_kelly_size(fit, 0.003, 5.0, 1e5, 1.0, 0.2).reason
    assert spread_kelly_size(None, 0.003, 5.0, 1e5, 1.0, 0.01).tltw_notional_usd == 0.0
    assert spread_kelly_size(fit, math.nan, 5.0, 1e5, 1.0, 0.01).tltw_notional_usd == 0.0
    assert spread_kelly_size(fit, 0.003, 0.0, 1e5, 1.0, 0.01).tltw_notional_usd == 0.0
    assert spread_kelly_size(fit, 0.003, 5.0, -1.0, 1.0, 0.01).tltw_notional_usd == 0.0
    assert spread_kelly_size(ou(sigma=0.0), 0.003, 5.0, 1e5, 1.0, 0.01).tltw_notional_usd == 0.0


@settings(max_examples=300, deadline=None)
@given(
    spread_value=st.floats(-0.05, 0.05),
    theta=st.floats(1e-4, 5.0),
    sigma=st.floats(1e-7, 0.05),
    horizon=st.floats(0.01, 1000),
    equity=st.floats(1.0, 1e8),
    beta=st.floats(-3.0, 3.0),
    max_gross=st.floats(0.0, 1e7, allow_subnormal=False),
    max_leverage=st.floats(0.0, 10.0, allow_subnormal=False),
    fraction=st.floats(0.01, 1.0),
)
def test_kelly_size_never_exceeds_a_cap(
    spread_value, theta, sigma, horizon, equity, beta, max_gross, max_leverage, fraction
):
    limits = KellyLimits(
        fraction=fraction, max_gross_notional_usd=max_gross, max_leverage=max_leverage
    )
    size = spread_kelly_size(
        ou(theta, 0.0, sigma), spread_value, horizon, equity, beta, 0.01, limits
    )
    assert size.gross_notional_usd <= max_gross * (1 + 1e-12)
    assert size.leverage <= max_leverage * (1 + 1e-12)
    assert abs(size.tltw_notional_usd) * (1 + abs(beta)) == pytest.approx(size.gross_notional_usd)
    assert size.applied_fraction_of_equity <= fraction * size.full_kelly * (1 + 1e-12)

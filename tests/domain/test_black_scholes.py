"""Black-Scholes prices, Greeks and implied volatility."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from trading.domain.black_scholes import (
    MAX_VOL_ANNUAL,
    ImpliedVolFailure,
    NoImpliedVolatility,
    Right,
    greeks,
    greeks_vec,
    implied_vol,
    implied_vol_vec,
    price,
)


def scipy_price(spot, strike, tau, rate, div_yield, vol, right):
    """Independent reference: the textbook formula with scipy's normal distribution."""
    d1 = (math.log(spot / strike) + (rate - div_yield + 0.5 * vol**2) * tau) / (
        vol * math.sqrt(tau)
    )
    d2 = d1 - vol * math.sqrt(tau)
    if right == Right.CALL:
        return spot * math.exp(-div_yield * tau) * norm.cdf(d1) - strike * math.exp(
            -rate * tau
        ) * norm.cdf(d2)
    return strike * math.exp(-rate * tau) * norm.cdf(-d2) - spot * math.exp(
        -div_yield * tau
    ) * norm.cdf(-d1)


def test_hull_example_call_and_put_prices():
    # Hull, Options, Futures and Other Derivatives, example 15.6: 4.76 and 0.81.
    assert price(42, 40, 0.5, 0.10, 0.0, 0.20, Right.CALL) == pytest.approx(4.7594, abs=1e-4)
    assert price(42, 40, 0.5, 0.10, 0.0, 0.20, Right.PUT) == pytest.approx(0.8086, abs=1e-4)


def test_prices_match_an_independent_scipy_implementation():
    for spot, strike, tau, rate, div_yield, vol in [
        (42, 40, 0.5, 0.10, 0.0, 0.20),
        (90, 92, 30 / 365, 0.045, 0.038, 0.16),
        (100, 60, 2.0, 0.01, 0.05, 0.9),
    ]:
        for right in Right:
            expected = scipy_price(spot, strike, tau, rate, div_yield, vol, right)
            assert price(spot, strike, tau, rate, div_yield, vol, right) == pytest.approx(
                expected, rel=1e-12, abs=1e-13
            )


def test_put_call_parity_with_dividend_yield():
    spot, strike, tau, rate, div_yield, vol = 90.0, 92.0, 0.2, 0.045, 0.038, 0.16
    call = price(spot, strike, tau, rate, div_yield, vol, Right.CALL)
    put = price(spot, strike, tau, rate, div_yield, vol, Right.PUT)
    forward_value = spot * math.exp(-div_yield * tau) - strike * math.exp(-rate * tau)
    assert call - put == pytest.approx(forward_value, abs=1e-12)


@pytest.mark.parametrize("right", list(Right))
@pytest.mark.parametrize(
    "spot,strike,tau,rate,div_yield,vol",
    [
        (42, 40, 0.5, 0.10, 0.0, 0.20),
        (90, 92, 0.08, 0.045, 0.038, 0.16),
        (90, 70, 1.5, 0.02, 0.04, 0.35),
    ],
)
def test_every_greek_equals_a_finite_difference_of_the_price(
    right, spot, strike, tau, rate, div_yield, vol
):
    g = greeks(spot, strike, tau, rate, div_yield, vol, right)

    def value(**bump):
        args = {"spot": spot, "strike": strike, "tau_years": tau, "rate": rate}
        args |= {"div_yield": div_yield, "vol_annual": vol}
        for key, delta in bump.items():
            args[key] += delta
        return price(right=right, **args)

    def derivative(name: str) -> float:
        # Central differences with one Richardson step: error O(h^4), so a step of 1e-3 keeps
        # both truncation (rho's third derivative is K tau^3 ~ 240) and rounding below 1e-8.
        def central(h: float) -> float:
            return (value(**{name: h}) - value(**{name: -h})) / (2 * h)

        return (4 * central(5e-4) - central(1e-3)) / 3

    assert g.price == pytest.approx(value(), abs=1e-14)
    assert g.delta == pytest.approx(derivative("spot"), abs=1e-6)
    # The second difference needs a wider step: rounding in the price is divided by h^2.
    wide = 1e-3
    assert g.gamma == pytest.approx(
        (value(spot=wide) - 2 * value() + value(spot=-wide)) / wide**2, abs=1e-6
    )
    assert g.vega == pytest.approx(derivative("vol_annual"), abs=1e-6)
    # theta is per year of calendar time passing: -dV/dtau.
    assert g.theta == pytest.approx(-derivative("tau_years"), abs=1e-6)
    assert g.rho == pytest.approx(derivative("rate"), abs=1e-6)


def test_vectorized_greeks_equal_the_scalar_greeks():
    rng = np.random.default_rng(7)
    size = 200
    spot = rng.uniform(70, 110, size)
    strike = rng.uniform(60, 130, size)
    tau = rng.uniform(0.01, 2.0, size)
    vol = rng.uniform(0.05, 1.0, size)
    is_call = rng.random(size) < 0.5
    vectorized = greeks_vec(spot, strike, tau, 0.04, 0.03, vol, is_call)
    for i in range(size):
        right = Right.CALL if is_call[i] else Right.PUT
        scalar = greeks(spot[i], strike[i], tau[i], 0.04, 0.03, vol[i], right)
        for name in ("price", "delta", "gamma", "vega", "theta", "rho"):
            assert vectorized[name][i] == pytest.approx(getattr(scalar, name), rel=1e-12, abs=1e-12)


def test_ib_unit_helpers_divide_vega_by_100_and_theta_by_365():
    g = greeks(90, 90, 30 / 365, 0.045, 0.038, 0.16, Right.CALL)
    assert g.vega_per_vol_point == pytest.approx(g.vega / 100)
    assert g.theta_per_day == pytest.approx(g.theta / 365)


def test_at_expiry_value_is_intrinsic_with_delta_zero_or_one():
    itm_call = greeks(95, 90, 0.0, 0.05, 0.0, 0.2, Right.CALL)
    assert (itm_call.price, itm_call.delta, itm_call.gamma, itm_call.vega) == (5.0, 1.0, 0.0, 0.0)
    otm_call = greeks(85, 90, 0.0, 0.05, 0.0, 0.2, Right.CALL)
    assert (otm_call.price, otm_call.delta) == (0.0, 0.0)
    itm_put = greeks(85, 90, 0.0, 0.05, 0.0, 0.2, Right.PUT)
    assert (itm_put.price, itm_put.delta) == (5.0, -1.0)
    vectorized = greeks_vec([95, 85, 85], 90, 0.0, 0.05, 0.0, 0.2, [True, True, False])
    np.testing.assert_array_equal(vectorized["price"], [5.0, 0.0, 5.0])
    np.testing.assert_array_equal(vectorized["delta"], [1.0, 0.0, -1.0])
    np.testing.assert_array_equal(vectorized["gamma"], [0.0, 0.0, 0.0])


def test_zero_vol_prices_the_discounted_forward_payoff():
    tau, rate, div_yield = 0.5, 0.05, 0.02
    g = greeks(100, 90, tau, rate, div_yield, 0.0, Right.CALL)
    assert g.price == pytest.approx(100 * math.exp(-div_yield * tau) - 90 * math.exp(-rate * tau))
    assert g.delta == pytest.approx(math.exp(-div_yield * tau))
    # Limit of the full formula as vol -> 0.
    assert g.price == pytest.approx(price(100, 90, tau, rate, div_yield, 1e-9, Right.CALL))
    assert g.theta == pytest.approx(greeks(100, 90, tau, rate, div_yield, 1e-9, Right.CALL).theta)
    vectorized = greeks_vec(100, 90, tau, rate, div_yield, 0.0, True)
    assert vectorized["price"] == pytest.approx(g.price)
    assert vectorized["theta"] == pytest.approx(g.theta)


@pytest.mark.parametrize(
    "field,args",
    [
        ("spot", (math.nan, 90, 0.1, 0.05, 0.0, 0.2)),
        ("spot", (-1.0, 90, 0.1, 0.05, 0.0, 0.2)),
        ("strike", (90, 0.0, 0.1, 0.05, 0.0, 0.2)),
        ("tau_years", (90, 90, -0.1, 0.05, 0.0, 0.2)),
        ("rate", (90, 90, 0.1, math.inf, 0.0, 0.2)),
        ("div_yield", (90, 90, 0.1, 0.05, math.nan, 0.2)),
        ("vol_annual", (90, 90, 0.1, 0.05, 0.0, -0.2)),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_field(field, args):
    with pytest.raises(ValueError, match=field):
        greeks(*args, Right.CALL)
    with pytest.raises(ValueError, match=field):
        greeks_vec(*args, True)


def test_bad_right_raises_value_error():
    with pytest.raises(ValueError, match="right"):
        price(90, 90, 0.1, 0.05, 0.0, 0.2, "X")


def test_vectorized_error_names_the_index_of_the_first_bad_value():
    with pytest.raises(ValueError, match="vol_annual.*index 2"):
        greeks_vec(90, 90, 0.1, 0.05, 0.0, [0.2, 0.3, math.nan], True)


def test_implied_vol_recovers_hull_vol():
    call = price(42, 40, 0.5, 0.10, 0.0, 0.20, Right.CALL)
    assert implied_vol(call, 42, 40, 0.5, 0.10, 0.0, Right.CALL) == pytest.approx(0.20, abs=1e-12)


@pytest.mark.parametrize(
    "strike,vol,right",
    [
        (300.0, 0.3, Right.CALL),  # price ~1e-40: far wing
        (30.0, 0.3, Right.PUT),
        (90.0, 0.005, Right.CALL),  # tiny vol at the money
        (91.0, 4.0, Right.CALL),  # huge vol
        (60.0, 0.25, Right.CALL),  # deep in the money: solved through the put's time value
    ],
)
def test_implied_vol_converges_at_the_wings(strike, vol, right):
    tau = 0.25
    value = price(90, strike, tau, 0.04, 0.03, vol, right)
    assert implied_vol(value, 90, strike, tau, 0.04, 0.03, right) == pytest.approx(vol, rel=1e-9)
    result = implied_vol_vec(value, 90, strike, tau, 0.04, 0.03, right == Right.CALL)
    assert bool(result.solved) and float(result.vol) == pytest.approx(vol, rel=1e-9)


@pytest.mark.parametrize(
    "option_price,tau,failure",
    [
        (math.nan, 0.25, ImpliedVolFailure.INVALID_PRICE),
        (-0.5, 0.25, ImpliedVolFailure.INVALID_PRICE),
        (1.0, 0.0, ImpliedVolFailure.EXPIRED),
        (9.0, 0.25, ImpliedVolFailure.BELOW_INTRINSIC),  # a 100 spot, 90 strike call
        (100.0, 0.25, ImpliedVolFailure.ABOVE_UPPER_BOUND),
    ],
)
def test_implied_vol_reports_no_solution_with_its_reason(option_price, tau, failure):
    with pytest.raises(NoImpliedVolatility) as raised:
        implied_vol(option_price, 100, 90, tau, 0.04, 0.0, Right.CALL)
    assert raised.value.reason is failure
    assert isinstance(raised.value, ValueError)
    result = implied_vol_vec([option_price, 12.0], 100, 90, tau, 0.04, 0.0, True)
    assert not result.solved[0] and math.isnan(result.vol[0])
    assert result.failure(0) is failure


def test_implied_vol_above_the_search_cap_is_reported_as_above_upper_bound():
    # Below the no-arbitrage bound, but needing more than MAX_VOL_ANNUAL.
    needed = price(100, 100, 0.25, 0.0, 0.0, MAX_VOL_ANNUAL * 1.5, Right.CALL)
    with pytest.raises(NoImpliedVolatility) as raised:
        implied_vol(needed, 100, 100, 0.25, 0.0, 0.0, Right.CALL)
    assert raised.value.reason is ImpliedVolFailure.ABOVE_UPPER_BOUND
    result = implied_vol_vec(needed, 100, 100, 0.25, 0.0, 0.0, True)
    assert result.failure(()) is ImpliedVolFailure.ABOVE_UPPER_BOUND


def test_implied_vol_chain_agrees_with_the_scalar_solver():
    rng = np.random.default_rng(3)
    size = 500
    strike = rng.uniform(60, 140, size)
    tau = rng.uniform(0.02, 1.0, size)
    vol = rng.uniform(0.05, 0.8, size)
    is_call = rng.random(size) < 0.5
    prices = greeks_vec(100.0, strike, tau, 0.04, 0.01, vol, is_call)["price"]
    result = implied_vol_vec(prices, 100.0, strike, tau, 0.04, 0.01, is_call)
    # Where the time value is a meaningful part of the price, the vol is known to 1e-9 and both
    # solvers agree; elsewhere it is known only as well as float resolution allows.
    forward = 100.0 * np.exp(0.03 * tau)
    intrinsic = np.where(is_call, np.maximum(forward - strike, 0), np.maximum(strike - forward, 0))
    meaningful = (prices * np.exp(0.04 * tau) - intrinsic) > 1e-6 * prices
    assert result.solved[meaningful].all()
    np.testing.assert_allclose(result.vol[meaningful], vol[meaningful], rtol=1e-9)
    for i in np.flatnonzero(meaningful)[:100]:
        right = Right.CALL if is_call[i] else Right.PUT
        scalar = implied_vol(prices[i], 100.0, strike[i], tau[i], 0.04, 0.01, right)
        assert scalar == pytest.approx(result.vol[i], rel=1e-10)
    # Every solved vol reprices the option to within float resolution of its price.
    solved = result.solved
    repriced = greeks_vec(
        100.0, strike[solved], tau[solved], 0.04, 0.01, result.vol[solved], is_call[solved]
    )["price"]
    np.testing.assert_allclose(repriced, prices[solved], rtol=1e-10, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    spot=st.floats(20, 200),
    moneyness=st.floats(0.5, 2.0),
    tau=st.floats(1 / 365, 3.0),
    rate=st.floats(-0.01, 0.1),
    div_yield=st.floats(0.0, 0.08),
    vol=st.floats(0.01, 2.0),
)
def test_call_delta_in_unit_interval_and_gamma_vega_non_negative(
    spot, moneyness, tau, rate, div_yield, vol
):
    g = greeks(spot, spot * moneyness, tau, rate, div_yield, vol, Right.CALL)
    assert 0.0 <= g.delta <= 1.0
    assert g.gamma >= 0.0
    assert g.vega >= 0.0
    put = greeks(spot, spot * moneyness, tau, rate, div_yield, vol, Right.PUT)
    assert -1.0 <= put.delta <= 0.0


@settings(max_examples=300, deadline=None)
@given(
    moneyness=st.floats(0.7, 1.4),
    tau=st.floats(7 / 365, 2.0),
    vol=st.floats(0.03, 1.5),
    is_call=st.booleans(),
)
def test_implied_vol_recovers_the_vol_that_priced_the_option(moneyness, tau, vol, is_call):
    right = Right.CALL if is_call else Right.PUT
    strike = 90.0 * moneyness
    value = price(90.0, strike, tau, 0.04, 0.03, vol, right)
    g = greeks(90.0, strike, tau, 0.04, 0.03, vol, right)
    # A vol is only determined where the price reacts to it above float resolution.
    if g.vega * vol < 1e-8 * max(value, 1e-300) or value < 1e-12:
        return
    recovered = implied_vol(value, 90.0, strike, tau, 0.04, 0.03, right)
    assert price(90.0, strike, tau, 0.04, 0.03, recovered, right) == pytest.approx(
        value, rel=1e-10, abs=1e-13
    )
    assert recovered == pytest.approx(vol, rel=1e-6)

"""A step's option quotes computed together (`QuoteBoard`, `MarketModel.chain_quotes`: numpy from
`CHAIN_MIN_OPTIONS` options on, and `price_greeks`: numpy from `NUMPY_MIN_PRICES` prices on)
against the one-option scalar path (`option_quote`, `bs.implied_vol`, `bs.greeks`) they stand in
for on the gateway's market data."""

from __future__ import annotations

import numpy as np
import pytest

import trading.ibsim.board as board_module
from trading.domain import black_scholes as bs
from trading.ibsim import MarketModel, SimConfig
from trading.ibsim.board import NUMPY_MIN_PRICES, QuoteBoard, price_greeks
from trading.ibsim.instruments import Instrument
from trading.ibsim.market import (
    CHAIN_MIN_OPTIONS,
    SECONDS_PER_YEAR,
    near_quote_rounding,
    option_bid_ask,
)
from trading.ibsim.marketdata import option_computations, tick_option

MODEL_FIELDS = (
    "theo",
    "implied_vol",
    "delta",
    "gamma",
    "vega_per_vol_point",
    "theta_per_day",
    "underlying",
    "pv_dividend",
)
RTOL = 1e-12
"""numpy's normal CDF (scipy's ndtr) and the scalar one (math.erfc) differ in the last bits."""
AT_PRICE_RTOL = 1e-11
"""Both implied-volatility solvers stop within 1e-12 of the root in ln(price); in the last
hours before an expiry gamma and theta at that volatility move ~10 times as much."""
ATOL = 1e-13
"""Dollars (or Greeks) per share: values that are differences of much larger terms (a far
option's theta or price) carry the terms' rounding, ~1e-14."""


@pytest.fixture(scope="module")
def model() -> MarketModel:
    return MarketModel(SimConfig(seed=5, history_days=30))


@pytest.fixture(scope="module")
def options(model: MarketModel) -> list[Instrument]:
    """Every third listed strike of every expiry, calls and puts (about 500 options)."""
    registry = model.registry
    today = model.calendar.dates[model.calendar.anchor_index]
    listed = []
    for expiry, weekly in registry.listed_expiries(today):
        strikes = registry.weekly_strikes if weekly else registry.monthly_strikes
        for strike in strikes[::3]:
            for right in ("C", "P"):
                option = registry.option(expiry, strike, right)
                assert option is not None
                listed.append(option)
    return listed


@pytest.fixture(scope="module")
def taus(model: MarketModel, options: list[Instrument]) -> list[float]:
    """A week of times, and the last hours of the first expiry to its close."""
    calendar = model.calendar
    week = [calendar.anchor_tau + 12_007.0 * k for k in range(10)]
    first_expiry = min(option.expiry_date for option in options)
    index = calendar.index_of(first_expiry)
    assert index is not None
    close = calendar.end_tau(index)
    return week + [close - 60.0 * minutes for minutes in (240, 60, 10, 1)] + [close - 1e-6]


def scalar_at_price(model: MarketModel, option: Instrument, price: float, tau: float):
    """The scalar path: the implied vol of ``price``, then the Greeks there (None: no vol)."""
    c = model.config
    spot = model.tlt_mid(tau)
    tau_years = max(model.option_expiry_epoch(option) - model.calendar.epoch(tau), 0.0)
    tau_years /= SECONDS_PER_YEAR
    try:
        vol = bs.implied_vol(
            price, spot, option.strike, tau_years, c.rate, c.div_yield, option.right
        )
    except ValueError:
        return None
    g = bs.greeks(spot, option.strike, tau_years, c.rate, c.div_yield, vol, option.right)
    return (vol, g.delta, g.gamma, g.vega_per_vol_point, g.theta_per_day)


def test_chain_quotes_match_option_quote_over_a_week_and_an_expiry(model, options, taus):
    for tau in taus:
        spot = model.tlt_mid(tau)
        together = model.chain_quotes(options, tau, spot)
        one_by_one = [model.option_quote(option, tau, spot) for option in options]
        assert [q.quote for q in together] == [q.quote for q in one_by_one]
        for name in MODEL_FIELDS:
            np.testing.assert_allclose(
                [getattr(q, name) for q in together],
                [getattr(q, name) for q in one_by_one],
                rtol=RTOL,
                atol=ATOL,
                err_msg=f"{name} at tau {tau}",
            )


def test_price_greeks_match_the_scalar_implied_vol_at_bid_and_ask(model, options, taus):
    unsolved = 0
    for tau in taus:
        spot = model.tlt_mid(tau)
        quotes = [model.option_quote(option, tau, spot) for option in options]
        for side in ("bid", "ask"):
            prices = [getattr(q.quote, side) for q in quotes]
            together = price_greeks(model, options, prices, tau, spot)
            expected = [
                scalar_at_price(model, o, p, tau) for o, p in zip(options, prices, strict=True)
            ]
            assert [g is None for g in together] == [e is None for e in expected], (side, tau)
            unsolved += sum(e is None for e in expected)
            found = [
                (g.implied_vol, g.delta, g.gamma, g.vega_per_vol_point, g.theta_per_day)
                for g in together
                if g is not None
            ]
            np.testing.assert_allclose(
                found,
                [e for e in expected if e is not None],
                rtol=AT_PRICE_RTOL,
                atol=ATOL,
                err_msg=f"{side} at tau {tau}",
            )
    assert unsolved > 0  # far strikes bid 0 and the expired options: IB's 'not computed'


def test_prices_on_a_cent_boundary_are_rounded_as_option_quote_rounds_them(model, options):
    """At theo 1.045 - 1e-11 the bid edge, (theo - 1.5 cents) x 100 + 1e-9, is a whole 103
    cents: for some expiries numpy's price and the scalar one fall on either side of it."""
    tau = model.calendar.anchor_tau
    registry, c = model.registry, model.config
    today = model.calendar.dates[model.calendar.anchor_index]
    rounded_apart = 0
    for expiry, _ in registry.listed_expiries(today):
        option = registry.option(expiry, 90.0, "C")
        assert option is not None
        epoch = model.calendar.epoch(tau)
        tau_years = (model.option_expiry_epoch(option) - epoch) / SECONDS_PER_YEAR

        def theo(spot: float, tau_years: float = tau_years) -> float:
            vol = model.implied_vol(90.0, spot, tau_years)
            return bs.price(spot, 90.0, tau_years, c.rate, c.div_yield, vol, "C")

        low, high = 60.0, 120.0
        for _ in range(200):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if theo(middle) < 1.045 - 1e-11 else (low, middle)
        spot = 0.5 * (low + high)
        vol = model.implied_vol(90.0, spot, tau_years)
        numpy_theo = bs.greeks_vec(spot, 90.0, tau_years, c.rate, c.div_yield, vol, True)["price"]
        rounded_apart += option_bid_ask(numpy_theo) != option_bid_ask(theo(spot))
        same_expiry = [o for o in options if o.expiry == option.expiry]
        chain = [option, *same_expiry[:CHAIN_MIN_OPTIONS]]  # numpy's path
        together = model.chain_quotes(chain, tau, spot)[0]
        assert together.quote == model.option_quote(option, tau, spot).quote, expiry
    assert rounded_apart > 0


def test_near_quote_rounding_flags_whole_dollars_and_cent_edges_only():
    # Width 2 cents + 1 a dollar: 1.0 is a whole dollar (the width's step); at 1.045 the bid
    # edge is 103 cents; 0.03 is quoted 0.02-0.04; 0.123 and 1.0451 are inside cents.
    theo = np.array([1.0, 1.045, 0.03, 0.123, 1.0451])
    assert near_quote_rounding(theo).tolist() == [True, True, True, False, False]


def greeks_values(greeks):
    if greeks is None:
        return None
    return (
        greeks.implied_vol,
        greeks.delta,
        greeks.gamma,
        greeks.vega_per_vol_point,
        greeks.theta_per_day,
    )


def counting(monkeypatch, name):
    """Count the calls of ``bs.<name>`` (the numpy path's marker)."""
    calls = [0]
    original = getattr(bs, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(bs, name, counted)
    return calls


def test_a_few_options_are_quoted_one_by_one_as_the_scalar_path_quotes_them(model, options):
    tau = model.calendar.anchor_tau + 7_200.0
    spot = model.tlt_mid(tau)
    few = options[100 : 100 + CHAIN_MIN_OPTIONS - 1]
    quotes = model.chain_quotes(few, tau, spot)
    assert quotes == [model.option_quote(option, tau, spot) for option in few]
    some = options[100 : 100 + NUMPY_MIN_PRICES - 1]
    bids = [model.option_quote(option, tau, spot).quote.bid for option in some]
    found = price_greeks(model, some, bids, tau, spot)
    for option, bid, greeks in zip(some, bids, found, strict=True):
        assert greeks_values(greeks) == scalar_at_price(model, option, bid, tau)


def test_chain_quotes_agree_on_both_sides_of_chain_min_options(model, options, taus, monkeypatch):
    """One option fewer than `CHAIN_MIN_OPTIONS` is quoted one by one, exactly as
    `option_quote`; `CHAIN_MIN_OPTIONS` with numpy: the same bids and asks, the model values
    within rounding."""
    numpy_passes = counting(monkeypatch, "greeks_vec")
    chain = options[::97][:CHAIN_MIN_OPTIONS]  # expiries and strikes across the listing
    assert len(chain) == CHAIN_MIN_OPTIONS
    assert {o.right for o in chain} == {"C", "P"}
    for tau in taus:
        spot = model.tlt_mid(tau)
        below = model.chain_quotes(chain[:-1], tau, spot)
        assert numpy_passes == [0]
        assert below == [model.option_quote(option, tau, spot) for option in chain[:-1]]
        at = model.chain_quotes(chain, tau, spot)
        assert numpy_passes == [1]
        numpy_passes[0] = 0
        assert [q.quote for q in at[:-1]] == [q.quote for q in below]
        assert at[-1].quote == model.option_quote(chain[-1], tau, spot).quote
        for name in MODEL_FIELDS:
            np.testing.assert_allclose(
                [getattr(q, name) for q in at[:-1]],
                [getattr(q, name) for q in below],
                rtol=RTOL,
                atol=ATOL,
                err_msg=f"{name} at tau {tau}",
            )


def test_price_greeks_agree_on_both_sides_of_numpy_min_prices(model, options, taus, monkeypatch):
    """One price fewer than `NUMPY_MIN_PRICES` is solved one by one, exactly as `bs.implied_vol`
    then `bs.greeks`; `NUMPY_MIN_PRICES` with numpy: the same prices solved, the same values
    within the solvers' tolerance."""
    numpy_passes = counting(monkeypatch, "implied_vol_vec")
    half = (NUMPY_MIN_PRICES + 1) // 2
    chain = options[::31][:half]  # expiries and strikes across the listing, calls and puts
    unsolved = 0
    for tau in taus:
        spot = model.tlt_mid(tau)
        quotes = [model.option_quote(option, tau, spot).quote for option in chain]
        sides = (chain + chain)[:NUMPY_MIN_PRICES]
        prices = ([q.bid for q in quotes] + [q.ask for q in quotes])[:NUMPY_MIN_PRICES]
        below = price_greeks(model, sides[:-1], prices[:-1], tau, spot)
        assert numpy_passes == [0]
        expected = [
            scalar_at_price(model, option, price, tau)
            for option, price in zip(sides, prices, strict=True)
        ]
        assert [greeks_values(g) for g in below] == expected[:-1]
        at = price_greeks(model, sides, prices, tau, spot)
        assert numpy_passes == [1]
        numpy_passes[0] = 0
        assert [g is None for g in at] == [e is None for e in expected], tau
        unsolved += sum(e is None for e in expected)
        np.testing.assert_allclose(
            [greeks_values(g) for g in at if g is not None],
            [e for e in expected if e is not None],
            rtol=AT_PRICE_RTOL,
            atol=ATOL,
            err_msg=f"at tau {tau}",
        )
    assert unsolved > 0


def test_a_board_quotes_its_options_together_once(model, options, monkeypatch):
    calls = {"chain_quotes": 0, "price_greeks": 0}

    def counted(name, original):
        def call(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return call

    monkeypatch.setattr(model, "chain_quotes", counted("chain_quotes", model.chain_quotes))
    monkeypatch.setattr(
        board_module, "price_greeks", counted("price_greeks", board_module.price_greeks)
    )
    expected = options[:40]
    board = QuoteBoard(model, model.snapshot(model.calendar.anchor_tau + 600.0), expected)
    for option in expected:
        board.option(option)
        board.quote_greeks(option)
    board.quote_greeks(options[50])  # not expected: quoted (and solved) on its own
    assert calls == {"chain_quotes": 2, "price_greeks": 2}


def test_option_computations_are_tick_option_of_the_scalar_tuples(model, options):
    tau = model.calendar.anchor_tau + 3_600.0
    board = QuoteBoard(model, model.snapshot(tau), options)
    cases = 0
    for option in options:
        quote = board.option(option)
        at_bid, at_ask = board.quote_greeks(option)
        model_values = (
            quote.implied_vol,
            quote.delta,
            quote.theo,
            quote.pv_dividend,
            quote.gamma,
            quote.vega_per_vol_point,
            quote.theta_per_day,
            quote.underlying,
        )
        expected = [tick_option(7, 13, model_values)]
        sides = ((10, quote.quote.bid, at_bid), (11, quote.quote.ask, at_ask))
        for tick_type, price, greeks in sides:
            if greeks is None:
                values = (-1.0, -2.0, price, -1.0, -2.0, -2.0, -2.0, quote.underlying)
                cases |= 1
            else:
                values = (
                    greeks.implied_vol,
                    greeks.delta,
                    price,
                    quote.pv_dividend,
                    greeks.gamma,
                    greeks.vega_per_vol_point,
                    greeks.theta_per_day,
                    quote.underlying,
                )
                cases |= 2
            expected.append(tick_option(7, tick_type, values))
        assert option_computations(7, (13, 10, 11), quote, at_bid, at_ask) == expected
    assert cases == 3  # both a price with an implied vol and one without

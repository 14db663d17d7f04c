"""The quotes of one market step: `QuoteBoard`, every instrument's quote at a snapshot of the
market model, with the step's option quotes computed together on the first request of one, and
the Greeks at each option's bid and ask (`price_greeks`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from trading.domain import black_scholes as bs
from trading.ibsim.instruments import Instrument
from trading.ibsim.market import (
    MarketModel,
    OptionQuote,
    Quote,
    Snapshot,
)

NUMPY_MIN_PRICES = 32
"""`price_greeks` solves this many prices and more with numpy, fewer one by one (`bs.implied_vol`
then `bs.greeks`). Measured (CPU time, least of 3 x 40 runs over 5 times of a day, the bids then
the asks of the calls nearest the money of the first three monthlies, n = 1-50 prices): one by
one costs 9.2 us a price, numpy 203 us + 2.4 us a price: the fitted lines cross at 30.6 prices.
From 29 to 32 either was ahead by a few us (30: 267 us one by one, 260 numpy; 32: 285 and 291),
from 33 on numpy every time (34: 304 and 291; 40: 362 and 302). A board's prices are its
options' bids and asks, an even count: numpy from 16 options on."""


@dataclass(frozen=True, slots=True)
class PriceGreeks:
    """Greeks of an option at the implied volatility of a price (its bid or ask), per share."""

    implied_vol: float
    delta: float
    gamma: float
    vega_per_vol_point: float
    theta_per_day: float


def price_greeks(
    model: MarketModel,
    options: Sequence[Instrument],
    prices: Sequence[float],
    tau: float,
    spot: float,
) -> list[PriceGreeks | None]:
    """Greeks of each option at the implied volatility of its price at ``tau`` (TLT at
    ``spot``); None where the price has none (at or below intrinsic, at or above the upper
    bound, expired). From `NUMPY_MIN_PRICES` prices on with numpy (`bs.implied_vol_vec` then
    `bs.greeks_vec`: within ~1e-11 of the scalar functions), fewer one by one."""
    if len(options) < NUMPY_MIN_PRICES:
        epoch = model.calendar.epoch(tau)
        return [
            _price_greeks(model, option, price, epoch, spot)
            for option, price in zip(options, prices, strict=True)
        ]
    c = model.config
    strikes, is_call, tau_years = model.option_terms(options, tau)
    solve = bs.implied_vol_vec(prices, spot, strikes, tau_years, c.rate, c.div_yield, is_call)
    solved = np.flatnonzero(solve.solved)
    vols = solve.vol[solved]
    g = bs.greeks_vec(
        spot, strikes[solved], tau_years[solved], c.rate, c.div_yield, vols, is_call[solved]
    )
    found: list[PriceGreeks | None] = [None] * len(options)
    columns = zip(
        solved.tolist(),
        vols.tolist(),
        g["delta"].tolist(),
        g["gamma"].tolist(),
        (g["vega"] / 100.0).tolist(),
        (g["theta"] / bs.DAYS_PER_YEAR).tolist(),
        strict=True,
    )
    for i, vol, delta, gamma, vega, theta in columns:
        found[i] = PriceGreeks(vol, delta, gamma, vega, theta)
    return found


def _price_greeks(
    model: MarketModel, option: Instrument, price: float, epoch: float, spot: float
) -> PriceGreeks | None:
    """`price_greeks` of one option at ``epoch`` (`bs.implied_vol` then `bs.greeks`)."""
    c = model.config
    tau_years = model.years_to_expiry(option, epoch)
    strike, right = option.strike, option.right
    try:
        vol = bs.implied_vol(price, spot, strike, tau_years, c.rate, c.div_yield, right)
    except ValueError:
        return None
    g = bs.greeks(spot, strike, tau_years, c.rate, c.div_yield, vol, right)
    return PriceGreeks(vol, g.delta, g.gamma, g.vega_per_vol_point, g.theta_per_day)


class QuoteBoard:
    """Every instrument's quote at one snapshot. Option quotes are computed on the first request
    of one, together (`MarketModel.chain_quotes`) for it and the board's ``options`` (those its
    users will ask for: the subscribed ones); the Greeks at the bid's and the ask's implied
    volatility likewise, for every option quoted so far."""

    def __init__(
        self, model: MarketModel, snapshot: Snapshot, options: Iterable[Instrument] = ()
    ) -> None:
        self.model = model
        self.snapshot = snapshot
        self._expected = tuple(options)
        self._options: dict[int, OptionQuote] = {}
        self._quoted: dict[int, Instrument] = {}
        self._quote_greeks: dict[int, tuple[PriceGreeks | None, PriceGreeks | None]] = {}

    def option(self, option: Instrument) -> OptionQuote:
        found = self._options.get(option.con_id)
        if found is None:
            wanted = {
                o.con_id: o for o in (*self._expected, option) if o.con_id not in self._options
            }
            options = list(wanted.values())
            quotes = self.model.chain_quotes(options, self.snapshot.tau, self.snapshot.tlt_mid)
            self._options.update(zip(wanted, quotes, strict=True))
            self._quoted.update(wanted)
            found = self._options[option.con_id]
        return found

    def quote_greeks(self, option: Instrument) -> tuple[PriceGreeks | None, PriceGreeks | None]:
        """Greeks at the implied volatility of the option's bid and of its ask (None where that
        price has none)."""
        found = self._quote_greeks.get(option.con_id)
        if found is None:
            self.option(option)
            options = [o for c, o in self._quoted.items() if c not in self._quote_greeks]
            quotes = [self._options[o.con_id].quote for o in options]
            prices = [q.bid for q in quotes] + [q.ask for q in quotes]
            snapshot = self.snapshot
            greeks = price_greeks(
                self.model, options + options, prices, snapshot.tau, snapshot.tlt_mid
            )
            count = len(options)
            for i, o in enumerate(options):
                self._quote_greeks[o.con_id] = (greeks[i], greeks[count + i])
            found = self._quote_greeks[option.con_id]
        return found

    def quote(self, instrument: Instrument) -> Quote:
        if instrument.is_option:
            return self.option(instrument).quote
        if instrument.con_id == self.model.registry.underlying.con_id:
            return self.snapshot.tlt
        return self.snapshot.tltw

    def mark(self, instrument: Instrument) -> float:
        """Mark price for portfolio values: the quote mid (per share)."""
        return self.quote(instrument).mid

"""The buy-write index (long TLT, short one call, chained through rolls) and total-return series.

Per-share convention: the synthetic leg is measured per TLT share, i.e. long 1 share and short
1 call on 1 share (a listed contract is 100 of these). Its value is ``spot - call_price``.

Chaining (the index holds ``units`` buy-write shares, starting at 1, so it starts at the value of
one buy-write share):

    level_t = units_t * (spot_t - call_t)
    roll at t:      units *= (spot_t - old_call_t) / (spot_t - new_call_t)
    dividend at t:  units *= (spot_t - call_t + dividend_t) / (spot_t - call_t)

A roll buys back the old call and sells the new one with the portfolio's own value, so the
level does not jump (the premium is reinvested in more buy-write shares). A dividend is taken
on its ex-date and reinvested the same way, which makes the index a total-return index. When a
dividend and a roll fall on the same bar the dividend is taken first, on the old position.
Transaction costs are not in the index (they are in the P&L of real fills).

Total return of a distributing ETF (TLTW pays monthly, TLT too):

    tr_t = tr_{t-1} * (price_t + distribution_t) / price_{t-1},  tr_0 = price_0

with ``distribution_t`` the amount per share going ex on bar t. Without it, an ex-date drop of
about 1% would dwarf a premium spread of tens of basis points.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "BuyWriteIndex",
    "TotalReturnIndex",
    "buy_write_index_vec",
    "buy_write_value_at_expiry",
    "total_return_vec",
]


def buy_write_value_at_expiry(
    spot_at_expiry: ArrayLike, strike: float | np.ndarray, premium: float | np.ndarray
) -> float | np.ndarray:
    """Value at expiry per share of long 1 share + short 1 call sold for ``premium``:
    S_T - max(S_T - K, 0) + premium (the premium kept as cash, no interest). Vectorized."""
    spot_at_expiry = np.asarray(spot_at_expiry, dtype=np.float64)
    value = spot_at_expiry - np.maximum(spot_at_expiry - strike, 0.0) + premium
    return value if value.ndim else float(value)


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return value


def _check_non_negative(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return value


def _check_buy_write(spot: float, call_price: float, call_name: str) -> float:
    spot = _check_positive("spot", spot)
    call_price = _check_non_negative(call_name, call_price)
    if call_price >= spot:
        # A call is worth less than the share; a quote saying otherwise is bad data.
        raise ValueError(f"{call_name} {call_price!r} must be below spot {spot!r}")
    return spot - call_price


class BuyWriteIndex:
    """Incremental buy-write index (see the module docstring). O(1) per update.

    State: ``units``, ``level`` (last value), ``strike`` and ``expiry`` (ISO date) of the call
    held; serialisable with :meth:`to_state` / :meth:`from_state`.
    """

    __slots__ = ("expiry", "level", "strike", "units")

    def __init__(
        self,
        units: float = 1.0,
        level: float = math.nan,
        strike: float = math.nan,
        expiry: str | None = None,
    ) -> None:
        self.units = _check_positive("units", units)
        self.level = float(level)
        self.strike = float(strike)
        self.expiry = expiry

    @classmethod
    def start(cls, spot: float, call_price: float, strike: float, expiry: str) -> BuyWriteIndex:
        """Open the index on its first call: one buy-write share, level = spot - call_price."""
        value = _check_buy_write(spot, call_price, "call_price")
        return cls(1.0, value, _check_positive("strike", strike), expiry)

    def update(self, spot: float, call_price: float) -> float:
        """Mark with the held call's price; returns the level."""
        self.level = self.units * _check_buy_write(spot, call_price, "call_price")
        return self.level

    def roll(
        self,
        spot: float,
        old_call_price: float,
        new_call_price: float,
        new_strike: float,
        new_expiry: str,
    ) -> float:
        """Buy back the held call, write the new one; the level is unchanged."""
        old_value = _check_buy_write(spot, old_call_price, "old_call_price")
        new_value = _check_buy_write(spot, new_call_price, "new_call_price")
        self.units *= old_value / new_value
        self.strike = _check_positive("new_strike", new_strike)
        self.expiry = new_expiry
        self.level = self.units * new_value
        return self.level

    def pay_dividend(self, dividend_per_share: float, spot: float, call_price: float) -> float:
        """Reinvest a dividend going ex on this bar (ex-dividend ``spot``); returns the level."""
        dividend = _check_non_negative("dividend_per_share", dividend_per_share)
        value = _check_buy_write(spot, call_price, "call_price")
        self.units *= (value + dividend) / value
        self.level = self.units * value
        return self.level

    def to_state(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "level": self.level,
            "strike": self.strike,
            "expiry": self.expiry,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BuyWriteIndex:
        return cls(
            units=state["units"],
            level=state["level"],
            strike=state["strike"],
            expiry=state["expiry"],
        )


def buy_write_index_vec(
    spot: ArrayLike,
    held_call_price: ArrayLike,
    new_call_price: ArrayLike | None = None,
    dividend: ArrayLike | None = None,
) -> np.ndarray:
    """Vectorized :class:`BuyWriteIndex` over bars.

    ``held_call_price[t]``: the price on bar t of the call held coming into bar t (before any
    roll on t). ``new_call_price[t]``: the price of the newly written call on a roll bar, NaN on
    other bars. ``dividend[t]``: per share going ex on bar t (0 otherwise). Bar 0 opens the
    index on ``new_call_price[0]`` if given, else ``held_call_price[0]``. Returns the levels.
    """
    spot = np.asarray(spot, dtype=np.float64)
    held = np.asarray(held_call_price, dtype=np.float64)
    size = spot.shape[0]
    new = (
        np.full(size, np.nan)
        if new_call_price is None
        else np.asarray(new_call_price, dtype=np.float64)
    )
    dividend = np.zeros(size) if dividend is None else np.asarray(dividend, dtype=np.float64)
    for name, array in (("held_call_price", held), ("new_call_price", new), ("dividend", dividend)):
        if array.shape != spot.shape:
            raise ValueError(f"{name} has shape {array.shape}, spot has {spot.shape}")
    if not (np.isfinite(spot).all() and (spot > 0).all()):
        raise ValueError("spot must be finite and > 0 on every bar")
    if not (np.isfinite(held).all() and (held >= 0).all() and (held < spot).all()):
        raise ValueError("held_call_price must be finite, >= 0 and below spot on every bar")
    if not (np.isfinite(dividend).all() and (dividend >= 0).all()):
        raise ValueError("dividend must be finite and >= 0 on every bar")
    rolled = np.isfinite(new)
    if ((new[rolled] < 0) | (new[rolled] >= spot[rolled])).any():
        raise ValueError("new_call_price must be >= 0 and below spot on roll bars")

    held_value = spot - held
    after_roll_value = np.where(rolled, spot - np.where(rolled, new, 0.0), held_value)
    # The dividend factor (v + d) / v times the roll factor v / v_new, v = spot - held call.
    growth = (held_value + dividend) / after_roll_value
    growth[0] = 1.0  # bar 0 opens on the position after its roll, one buy-write share
    units = np.cumprod(growth)
    levels: np.ndarray = units * after_roll_value
    return levels


def total_return_vec(price: ArrayLike, distribution: ArrayLike | None = None) -> np.ndarray:
    """Vectorized :class:`TotalReturnIndex`: tr_0 = price_0,
    tr_t = tr_{t-1} (price_t + distribution_t) / price_{t-1}."""
    price = np.asarray(price, dtype=np.float64)
    if not (np.isfinite(price).all() and (price > 0).all()):
        raise ValueError("price must be finite and > 0 on every bar")
    if distribution is None:
        return price.copy()
    distribution = np.asarray(distribution, dtype=np.float64)
    if distribution.shape != price.shape:
        raise ValueError(f"distribution has shape {distribution.shape}, price has {price.shape}")
    if not (np.isfinite(distribution).all() and (distribution >= 0).all()):
        raise ValueError("distribution must be finite and >= 0 on every bar")
    growth = np.empty_like(price)
    growth[0] = price[0]
    growth[1:] = (price[1:] + distribution[1:]) / price[:-1]
    levels: np.ndarray = np.cumprod(growth)
    return levels


class TotalReturnIndex:
    """Incremental total-return series of a distributing ETF (see the module docstring).

    State: ``level`` and ``last_price``; serialisable with :meth:`to_state` / :meth:`from_state`.
    """

    __slots__ = ("last_price", "level")

    def __init__(self, level: float = math.nan, last_price: float = math.nan) -> None:
        self.level = float(level)
        self.last_price = float(last_price)

    def update(self, price: float, distribution: float = 0.0) -> float:
        """Add a bar; ``distribution`` per share going ex on this bar. Returns the level."""
        price = _check_positive("price", price)
        distribution = _check_non_negative("distribution", distribution)
        if math.isnan(self.last_price):
            self.level = price
        else:
            self.level *= (price + distribution) / self.last_price
        self.last_price = price
        return self.level

    def to_state(self) -> dict[str, Any]:
        return {"level": self.level, "last_price": self.last_price}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TotalReturnIndex:
        return cls(level=state["level"], last_price=state["last_price"])

"""Research mode's input: one-minute bars as validated arrays, and ibsim's market as such bars.

`ResearchBars` holds the quotes, distributions and the index's calls one element per bar
close, all checked on construction (a NaN, a crossed quote, a delta outside [0, 1] raises
naming the field and the bar). `bars_from_sim` builds them from ibsim's seeded model with the
live leg's rules (`trading.domain.options.roll_decision`, `select_call` among the strikes the
backtest feed subscribes). The run over them is `trading.backtest.vectorized`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from datetime import date

import numpy as np
import pandas as pd

from trading.ibsim.history import bar_frame
from trading.settings import Settings

__all__ = ["ResearchBars", "bars_from_sim", "first_bad"]

_PRICE_FIELDS = ("tlt_bid", "tlt_ask", "tltw_bid", "tltw_ask", "tltw_nav")
_ROLL_FIELDS = ("roll_call_bid", "roll_call_ask", "roll_call_delta")


def first_bad(name: str, bad: np.ndarray, values: np.ndarray, rule: str) -> None:
    """ValueError "name[i] must be rule, got value" at the first bar i where ``bad`` holds."""
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{index}] must be {rule}, got {values[index]!r}")


@dataclass(frozen=True, slots=True)
class ResearchBars:
    """One-minute bars as arrays, one element per bar close, all of one length.

    ``ts``: bar close, epoch seconds, increasing. ``day``: the exchange (New York) date of each
    bar as an integer (any code, e.g. the date's ordinal; a change marks a new day), used for
    daily returns. Quotes per share: TLT, TLTW, TLTW's NAV. ``tltw_distribution`` and
    ``tlt_distribution``: per share going ex on the bar (0 elsewhere; the first bar's is
    ignored, as the total-return series starts there). The index's call: ``call_*`` is the call
    held coming into the bar (before any roll on it), ``roll_call_*`` the call written on a roll
    bar and NaN on every other bar; bar 0 must carry the first call in ``roll_call_*`` (the index
    opens on it) and the same values in ``call_*``. ``tltw_call_*``: the call of TLTW's own index
    after any roll (for the delta hedge's TLT shares per TLTW share and TLTW's delta); None means
    the index's own call (the replica preset). ``truth_premium``: TLTW's true premium to NAV (a
    fraction) when known, for the R-squared.

    Construction validates every array and raises ValueError naming the field, the bar index
    and the value (NaN, a crossed quote, a non-positive price, a delta outside [0, 1]).
    """

    ts: np.ndarray
    day: np.ndarray
    tlt_bid: np.ndarray
    tlt_ask: np.ndarray
    tltw_bid: np.ndarray
    tltw_ask: np.ndarray
    tltw_nav: np.ndarray
    tltw_distribution: np.ndarray
    tlt_distribution: np.ndarray
    call_bid: np.ndarray
    call_ask: np.ndarray
    call_delta: np.ndarray
    roll_call_bid: np.ndarray
    roll_call_ask: np.ndarray
    roll_call_delta: np.ndarray
    tltw_call_bid: np.ndarray | None = None
    tltw_call_ask: np.ndarray | None = None
    tltw_call_delta: np.ndarray | None = None
    truth_premium: np.ndarray | None = None

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            dtype = np.int64 if item.name == "day" else np.float64
            array = np.ascontiguousarray(value, dtype=dtype)
            array.flags.writeable = False
            object.__setattr__(self, item.name, array)
        size = self.ts.shape[0] if self.ts.ndim == 1 else -1
        if size < 2:
            raise ValueError(f"ts must be 1-d with at least 2 bars, got shape {self.ts.shape}")
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None and value.shape != (size,):
                raise ValueError(f"{item.name} has shape {value.shape}, ts has ({size},)")
        first_bad("ts", ~np.isfinite(self.ts), self.ts, "finite")
        steps = np.diff(self.ts)
        first_bad("ts", np.concatenate([[False], steps <= 0]), self.ts, "increasing")
        for name in (*_PRICE_FIELDS, "call_ask"):
            values = getattr(self, name)
            first_bad(name, ~(values > 0) | ~np.isfinite(values), values, "finite and > 0")
        for name in ("call_bid", "tltw_distribution", "tlt_distribution"):
            values = getattr(self, name)
            first_bad(name, ~(values >= 0) | ~np.isfinite(values), values, "finite and >= 0")
        for stem in ("tlt", "tltw", "call"):
            bid, ask = getattr(self, f"{stem}_bid"), getattr(self, f"{stem}_ask")
            first_bad(f"{stem}_bid", bid > ask, bid, f"<= {stem}_ask (not crossed)")
        delta = self.call_delta
        first_bad("call_delta", ~((delta >= 0) & (delta <= 1)), delta, "a call delta in [0, 1]")
        rolled = np.isfinite(self.roll_call_ask)
        if not rolled[0]:
            raise ValueError("roll_call_ask[0] must hold the index's first call, got NaN")
        for name in _ROLL_FIELDS:
            values = getattr(self, name)
            first_bad(name, np.isfinite(values) != rolled, values, "finite exactly on roll bars")
        bid, ask = self.roll_call_bid[rolled], self.roll_call_ask[rolled]
        where = np.flatnonzero(rolled)
        for name, bad, values in (
            ("roll_call_bid", ~(bid >= 0) | (bid > ask), bid),
            ("roll_call_ask", ~(ask > 0), ask),
            ("roll_call_delta", ~((self.roll_call_delta[rolled] >= 0)
                                  & (self.roll_call_delta[rolled] <= 1)),
             self.roll_call_delta[rolled]),
        ):  # fmt: skip
            if bad.any():
                index = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{name}[{int(where[index])}] must be a valid call quote, got {values[index]!r}"
                )
        tbid, task, tdelta = self.tltw_call_bid, self.tltw_call_ask, self.tltw_call_delta
        given = [tbid is not None, task is not None, tdelta is not None]
        if any(given) and not all(given):
            raise ValueError("tltw_call_bid, tltw_call_ask and tltw_call_delta go together")
        if tbid is not None and task is not None and tdelta is not None:
            first_bad("tltw_call_bid", ~(tbid >= 0) | ~np.isfinite(tbid), tbid, ">= 0")
            first_bad("tltw_call_ask", ~(task >= tbid) | ~np.isfinite(task), task, ">= bid")
            first_bad("tltw_call_delta", ~((tdelta >= 0) & (tdelta <= 1)), tdelta, "in [0, 1]")

    @property
    def size(self) -> int:
        return int(self.ts.shape[0])


# ---------------------------------------------------------------------------------------------
# ibsim's market as arrays


def bars_from_sim(
    model,
    start: date,
    end: date,
    settings: Settings,
    feed=None,
) -> ResearchBars:
    """ibsim's one-minute bars from ``start`` to ``end`` as `ResearchBars`, with the calls the
    live strategy's `trading.strategy.legs.RolledCall` would hold (moneyness, roll and selection
    settings of ``settings``), among the calls the backtest feed subscribes (``feed``, default
    `trading.backtest.sources.BACKTEST_FEED`: the first monthlies, whole-dollar strikes within
    ``low``..``high`` x the session's open), quoted by the model
    (`MarketModel.option_quotes`).

    The rules, through the quant core's functions: the first call is the first standard monthly
    whose roll date is after the first session, strike nearest spot x moneyness; on each bar on
    or after the held call's roll date (`roll_decision`), the call `select_call` picks (at least
    ``min_days_to_expiry`` days) among the subscribed strikes of its expiry. A roll whose target
    expiry or strike is not subscribed waits for a later bar, as the live leg's does. Moving
    rolls (``roll_strike_distance``) are checked on every bar. Bars of the last session are
    included; TLT pays no distribution in the model.
    """
    from trading.backtest.sources import BACKTEST_FEED

    feed = feed or BACKTEST_FEED
    frame = bar_frame(model, start, end, bar="1 min")
    if frame.empty:
        raise ValueError(f"no bars between {start} and {end}")
    closes = frame.index + pd.Timedelta(seconds=feed.bar_seconds)
    ts = np.array([c.timestamp() for c in closes.to_pydatetime()])
    days = np.array([t.date() for t in frame.index.to_pydatetime()])
    day_codes = np.array([d.toordinal() for d in days], dtype=np.int64)
    tlt_bid = frame["tlt_bid"].to_numpy(dtype=float)
    tlt_ask = frame["tlt_ask"].to_numpy(dtype=float)
    spot = 0.5 * (tlt_bid + tlt_ask)
    size = ts.shape[0]

    distribution = np.zeros(size)
    starts = np.flatnonzero(np.concatenate([[True], day_codes[1:] != day_codes[:-1]]))
    for first in starts.tolist():
        session = model.calendar.index_of(days[first])
        if session is not None and first > 0:
            distribution[first] = model.tltw_distribution(session)

    strategy = settings.strategy
    # The feed centres each session's strikes on the open of its first bar.
    opens = frame["tlt_open"].to_numpy(dtype=float)
    index_calls = _call_schedule(model, closes, days, starts, spot, opens, settings.moneyness,
                                 strategy, feed)  # fmt: skip
    tltw_calls = None
    if abs(settings.moneyness - 1.02) > 1e-12:
        tltw_calls = _call_schedule(model, closes, days, starts, spot, opens, 1.02, strategy, feed)
        tltw_calls = {
            "tltw_call_bid": np.where(np.isnan(tltw_calls[3]), tltw_calls[0], tltw_calls[3]),
            "tltw_call_ask": np.where(np.isnan(tltw_calls[4]), tltw_calls[1], tltw_calls[4]),
            "tltw_call_delta": np.where(np.isnan(tltw_calls[5]), tltw_calls[2], tltw_calls[5]),
        }
    return ResearchBars(
        ts=ts,
        day=day_codes,
        tlt_bid=tlt_bid,
        tlt_ask=tlt_ask,
        tltw_bid=frame["tltw_bid"].to_numpy(dtype=float),
        tltw_ask=frame["tltw_ask"].to_numpy(dtype=float),
        tltw_nav=frame["tltw_nav"].to_numpy(dtype=float),
        tltw_distribution=distribution,
        tlt_distribution=np.zeros(size),
        call_bid=index_calls[0],
        call_ask=index_calls[1],
        call_delta=index_calls[2],
        roll_call_bid=index_calls[3],
        roll_call_ask=index_calls[4],
        roll_call_delta=index_calls[5],
        truth_premium=frame["tltw_premium"].to_numpy(dtype=float),
        **(tltw_calls or {}),
    )


def _call_schedule(model, closes, days, starts, spot, opens, moneyness, strategy, feed):
    """(held bid, ask, delta; roll bid, ask, delta) per bar for one moneyness (see
    `bars_from_sim`). A loop over sessions, and over the bars of roll days only."""
    from trading.domain.market_hours import market_calendar
    from trading.domain.options import (
        HeldOption,
        OptionChain,
        RollRule,
        SelectionRule,
        is_standard_monthly,
        roll_date,
        roll_decision,
        select_call,
    )

    calendar = market_calendar()
    selection = SelectionRule(min_days_to_expiry=strategy.min_days_to_expiry, moneyness=moneyness)
    rule = RollRule(
        business_days_before_expiry=strategy.roll_business_days_before_expiry,
        max_spot_move_fraction=strategy.roll_strike_distance,
    )
    registry = model.registry
    size = spot.shape[0]
    ends = [*starts[1:].tolist(), size]

    def pick(day: date, spot_now: float, open_spot: float, initial: bool):
        monthlies = [e for e, weekly in registry.listed_expiries(day) if not weekly]
        subscribed_expiries = monthlies[: feed.expiries]
        strikes = tuple(
            float(k)
            for k in registry.monthly_strikes
            if open_spot * feed.low <= k <= open_spot * feed.high
        )
        if initial:
            expiry = next(
                (
                    e
                    for e in sorted(monthlies)
                    if is_standard_monthly(e)
                    and roll_date(e, rule.business_days_before_expiry, calendar) > day
                ),
                None,
            )
            chosen_rule = SelectionRule(min_days_to_expiry=0, moneyness=moneyness)
        else:
            chain = OptionChain(tuple(monthlies), tuple(float(k) for k in registry.monthly_strikes))
            try:
                expiry = select_call(chain, spot_now, day, selection).expiry
            except ValueError:
                return None
            chosen_rule = selection
        if expiry is None or expiry not in subscribed_expiries or not strikes:
            return None
        selected = select_call(OptionChain((expiry,), strikes), spot_now, day, chosen_rule)
        step = min((b - a for a, b in itertools.pairwise(strikes)), default=1.0)
        if not strikes[0] - step / 2 <= selected.target_strike <= strikes[-1] + step / 2:
            return None
        return expiry, selected.strike

    held_bid = np.full(size, np.nan)
    held_ask = np.full(size, np.nan)
    held_delta = np.full(size, np.nan)
    roll_bid = np.full(size, np.nan)
    roll_ask = np.full(size, np.nan)
    roll_delta = np.full(size, np.nan)
    segments: list[tuple[int, int, tuple[date, float]]] = []  # [from, to] bars inclusive
    held: tuple[date, float] | None = None
    since = 0
    for first, last in zip(starts.tolist(), ends, strict=True):
        day = days[first]
        open_spot = float(opens[first])
        for bar in range(first, last):
            if held is None:
                found = pick(day, float(spot[bar]), open_spot, initial=True)
                if found is None:
                    raise ValueError(f"no call to open the index on {day} (bar {bar})")
                held, since = found, bar
                continue
            decision = roll_decision(HeldOption(*held), float(spot[bar]), day, rule, calendar)
            if not decision.roll:
                if rule.max_spot_move_fraction is None:
                    break  # date rules only: nothing changes until the next session
                continue
            found = pick(day, float(spot[bar]), open_spot, initial=False)
            if found is None:
                if day > held[0]:
                    raise ValueError(f"call {held} expired on {held[0]} and cannot be rolled")
                continue
            if found != held:
                segments.append((since, bar, held))
                held, since = found, bar
    assert held is not None
    segments.append((since, size - 1, held))
    opened = True
    for begin, finish, (expiry, strike) in segments:
        quotes = model.option_quotes(closes[begin : finish + 1], expiry, strike, "C")
        bid = quotes["bid"].to_numpy(dtype=float)
        ask = quotes["ask"].to_numpy(dtype=float)
        delta = quotes["delta"].to_numpy(dtype=float)
        # Written on its first bar (a roll bar, or bar 0), held into every later bar.
        roll_bid[begin], roll_ask[begin], roll_delta[begin] = bid[0], ask[0], delta[0]
        if opened:
            held_bid[0], held_ask[0], held_delta[0] = bid[0], ask[0], delta[0]
            opened = False
        held_bid[begin + 1 : finish + 1] = bid[1:]
        held_ask[begin + 1 : finish + 1] = ask[1:]
        held_delta[begin + 1 : finish + 1] = delta[1:]
    return held_bid, held_ask, held_delta, roll_bid, roll_ask, roll_delta

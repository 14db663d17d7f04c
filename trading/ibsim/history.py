"""Historical bars from the market model: IB's request vocabulary, bar building, backtest frames.

Bars are built from the model's one-second grid (the grid the live ticks interpolate), so a
bar's open and close are the model's values at its edges and its high and low bound every live
tick inside it. Stocks: TRADES bars are the mid rounded to the cent with the model's prints as
volume, MIDPOINT the quote mid, BID and ASK the one-cent quote. Options: the theoretical value
(TRADES, MIDPOINT) or the quoted side (BID, ASK). Intraday bars are aligned to New York wall
clock multiples of the bar size inside each session (the first hourly bar is 09:30-10:00).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from trading.domain import black_scholes as bs
from trading.ibsim.config import ET
from trading.ibsim.instruments import Instrument
from trading.ibsim.market import SECONDS_PER_YEAR, MarketModel, option_bid_ask, stock_bid

DAY_SECONDS = -1
WEEK_SECONDS = -2
MONTH_SECONDS = -3
_BAR_UNITS = {"sec": 1, "secs": 1, "min": 60, "mins": 60, "hour": 3600, "hours": 3600}
_PERIOD_BARS = {"day": DAY_SECONDS, "week": WEEK_SECONDS, "month": MONTH_SECONDS}


class WhatToShow(StrEnum):
    TRADES = "TRADES"
    MIDPOINT = "MIDPOINT"
    BID = "BID"
    ASK = "ASK"
    ADJUSTED_LAST = "ADJUSTED_LAST"


class HistoryError(ValueError):
    """A request IB would answer with error 162; the message is IB's text after the prefix."""


@dataclass(frozen=True, slots=True)
class Bar:
    start_tau: float
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int


def parse_bar_size(text: str) -> int:
    """Bar length in seconds, or DAY_SECONDS / WEEK_SECONDS / MONTH_SECONDS."""
    match = re.fullmatch(r"\s*(\d+)\s+([a-z]+)\s*", text.lower())
    if match:
        count, unit = int(match.group(1)), match.group(2)
        if unit in _BAR_UNITS and count > 0:
            seconds = count * _BAR_UNITS[unit]
            if seconds <= 8 * 3600:
                return seconds
        if unit.rstrip("s") in _PERIOD_BARS and count == 1:
            return _PERIOD_BARS[unit.rstrip("s")]
    raise HistoryError(f"Invalid bar size {text!r}")


def parse_duration(text: str) -> tuple[int, str]:
    match = re.fullmatch(r"\s*(\d+)\s*([SDWMY])\s*", text.upper())
    if not match or int(match.group(1)) <= 0:
        raise HistoryError(f"Invalid duration {text!r}")
    return int(match.group(1)), match.group(2)


def parse_end(text: str) -> datetime | None:
    """IB endDateTime: '' is now; 'YYYYMMDD HH:MM:SS [zone]' (no zone: New York) or
    'YYYYMMDD-HH:MM:SS' (UTC)."""
    text = text.strip()
    if not text:
        return None
    try:
        if re.fullmatch(r"\d{8}-\d{2}:\d{2}:\d{2}", text):
            return datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
        parts = text.split()
        stamp = datetime.strptime(" ".join(parts[:2]), "%Y%m%d %H:%M:%S")
        return stamp.replace(tzinfo=ZoneInfo(parts[2]) if len(parts) > 2 else ET)
    except (ValueError, KeyError, ZoneInfoNotFoundError) as error:
        raise HistoryError(f"Invalid endDateTime {text!r}") from error


def window(model: MarketModel, end_tau: float, duration: str, live: bool = False) -> float:
    """Trading time where a request of ``duration`` ending at ``end_tau`` starts.

    In trading time a session's close is the next one's open, so an explicit end at a close
    (``live`` false) counts its ``D`` back from the session that closed there, as IB does: "1 D"
    ending 16:00 is that day's session. The sim's present at an open counts the opening one.
    """
    count, unit = parse_duration(duration)
    cal = model.calendar
    if unit == "S":
        start = end_tau - count
    elif unit == "D":
        session = cal.session_at(end_tau)
        if not live and session > 0 and end_tau <= cal.start_tau[session]:
            session -= 1
        start = float(cal.start_tau[max(session - count + 1, 0)])
    else:
        days = {"W": 7, "M": 30.4375, "Y": 365.25}[unit] * count
        start = cal.tau(cal.datetime(end_tau) - timedelta(days=days))
    return max(start, float(cal.start_tau[0]))


def seconds_series(model: MarketModel, instrument: Instrument, session: int) -> np.ndarray:
    """The instrument's model value at each second of a session (mid or theoretical value)."""
    if instrument.con_id == model.registry.underlying.con_id:
        return np.exp(model.tlt_log_path(session))
    if instrument.con_id == model.registry.etf.con_id:
        return model.tltw_price_seconds(session)
    return option_seconds(model, instrument, session)


def option_seconds(model: MarketModel, option: Instrument, session: int) -> np.ndarray:
    spots = np.exp(model.tlt_log_path(session))
    epochs = model.calendar.open_epoch[session] + np.arange(len(spots))
    expiry_epoch = model.expiry_epoch(option.expiry_date)
    tau_years = np.maximum(expiry_epoch - epochs, 0.0) / SECONDS_PER_YEAR
    vols = model.implied_vol(option.strike, spots, tau_years)
    c = model.config
    return bs.greeks_vec(
        spots, option.strike, tau_years, c.rate, c.div_yield, vols, option.right == "C"
    )["price"]


def _transform(instrument: Instrument, what: WhatToShow, values: np.ndarray) -> np.ndarray:
    """Mid or theo -> the series IB would show for ``what`` (monotone, so OHLC commute)."""
    if instrument.is_option:
        if what in (WhatToShow.BID, WhatToShow.ASK):
            return option_bid_ask(values)[0 if what == WhatToShow.BID else 1]
        return values if what == WhatToShow.MIDPOINT else np.round(values, 2)
    bid = stock_bid(values)
    if what == WhatToShow.BID:
        return bid
    if what == WhatToShow.ASK:
        # To the cent, as the frame's and the live quote's ask (92.65 + 0.01 is 92.66000000000001).
        return np.round(bid + 0.01, 2)
    if what == WhatToShow.MIDPOINT:
        return bid + 0.005
    return np.round(values, 2)


def _boundaries(model: MarketModel, session: int, bar_seconds: int) -> np.ndarray:
    """Bar edges (seconds from the open) inside a session, aligned to New York wall time."""
    cal = model.calendar
    length = cal.seconds[session]
    if bar_seconds < 0:
        return np.array([0, length])
    opened = datetime.fromtimestamp(float(cal.open_epoch[session]), ET)
    open_of_day = opened.hour * 3600 + opened.minute * 60 + opened.second
    first = math.ceil(open_of_day / bar_seconds) * bar_seconds - open_of_day
    inner = np.arange(first, length, bar_seconds)
    return np.unique(np.concatenate([[0], inner[inner > 0], [length]]))


def _series(
    model: MarketModel, instrument: Instrument, what: WhatToShow, session: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The per-second values IB would show for ``what`` and, for TRADES, per-second volume."""
    values = _transform(instrument, what, seconds_series(model, instrument, session))
    if instrument.is_option or what not in (WhatToShow.TRADES, WhatToShow.ADJUSTED_LAST):
        return values, None
    micro = model.microstructure(session)
    return values, micro[5] if instrument.con_id == model.registry.underlying.con_id else micro[7]


def _bar(values, volumes, left: float, right: float, start_tau: float) -> Bar:
    """The bar over seconds [left, right] of a session's series."""
    a, b = int(left), min(math.ceil(right), len(values) - 1)
    window_values = values[a : b + 1]
    close = float(values[min(int(right), len(values) - 1)])
    traded = volumes[a + 1 : b + 1] if volumes is not None else None
    return Bar(
        start_tau=start_tau + float(left),
        open=float(window_values[0]),
        high=float(window_values.max()),
        low=float(window_values.min()),
        close=close,
        volume=float(traded.sum()) if traded is not None else 0.0,
        wap=float(window_values.mean()),
        count=int(np.count_nonzero(traded)) if traded is not None else 0,
    )


def session_bars(
    model: MarketModel,
    instrument: Instrument,
    what: WhatToShow,
    bar_seconds: int,
    session: int,
    until_second: float | None = None,
) -> list[Bar]:
    """Bars of one session (daily: one bar), cut at ``until_second`` for the live session."""
    values, volumes = _series(model, instrument, what, session)
    edges = _boundaries(model, session, bar_seconds)
    if until_second is not None:
        # A session that opened this instant still has its one-price bar [0, 0].
        edges = np.append(edges[edges < until_second] if until_second else [0], until_second)
    start_tau = float(model.calendar.start_tau[session])
    return [
        _bar(values, volumes, left, right, start_tau) for left, right in itertools.pairwise(edges)
    ]


def current_bar(
    model: MarketModel, instrument: Instrument, what: str, bar_seconds: int, tau: float
) -> Bar:
    """The bar in progress at ``tau`` (for keepUpToDate updates; daily bars: the session)."""
    cal = model.calendar
    session = cal.session_at(tau)
    until = max(tau - cal.start_tau[session], 0.0)
    edges = _boundaries(model, session, bar_seconds if bar_seconds > 0 else -1)
    left = float(edges[edges <= until].max()) if until > 0 else 0.0
    if left == until and left > 0:
        left = float(edges[edges < until].max())
    values, volumes = _series(model, instrument, WhatToShow(what.upper()), session)
    return _bar(values, volumes, left, until, float(cal.start_tau[session]))


def iter_bars(
    model: MarketModel,
    instrument: Instrument,
    what: str,
    bar_size: str,
    start_tau: float,
    end_tau: float,
    live: bool = False,
) -> Iterator[list[Bar]]:
    """Bars overlapping ``[start_tau, end_tau)``, one list per session (daily bars: one bar;
    weekly and monthly bars: one list at the end). The last bar ends at ``end_tau``.

    ``live``: the end is the sim's present, so a session that has just opened has its
    (one-price) bar; an explicit end at an open means the close before it. Bars of completed
    sessions are cached on the model.
    """
    try:
        kind = WhatToShow(what.upper())
    except ValueError as error:
        raise HistoryError(f"No data of type {what} is available") from error
    bar_seconds = parse_bar_size(bar_size)
    cal = model.calendar
    first, last = cal.session_at(start_tau), cal.session_at(end_tau)
    if end_tau <= cal.start_tau[last] and not live:
        last -= 1
    daily: list[Bar] = []
    for session in range(first, last + 1):
        until = end_tau - cal.start_tau[session]
        partial = until if until < cal.seconds[session] else None
        key = (instrument.con_id, kind, bar_seconds if bar_seconds > 0 else -1, session)
        day: list[Bar] | None = model.bar_cache.get(key) if partial is None else None
        if day is None:
            day = session_bars(model, instrument, kind, bar_seconds, session, partial)
            if partial is None:
                model.bar_cache[key] = day
        if bar_seconds < 0:
            if day and day[0].start_tau >= start_tau:
                daily.extend(day)
            yield []  # a session done: the caller may let the event loop run
            continue
        # Bars that overlap the window: IB's '3600 S' of minutes starts with the minute in
        # which the window opens.
        yield [b for b in day if b.start_tau + bar_seconds > start_tau]
    if bar_seconds == DAY_SECONDS:
        yield daily
    elif bar_seconds < 0:
        yield _aggregate(model, daily, bar_seconds)


def bars(
    model: MarketModel,
    instrument: Instrument,
    what: str,
    bar_size: str,
    start_tau: float,
    end_tau: float,
    live: bool = False,
) -> list[Bar]:
    """All of :func:`iter_bars` in one list."""
    return [
        bar
        for chunk in iter_bars(model, instrument, what, bar_size, start_tau, end_tau, live)
        for bar in chunk
    ]


def _aggregate(model: MarketModel, daily: list[Bar], bar_seconds: int) -> list[Bar]:
    groups: dict[tuple[int, int], list[Bar]] = {}
    for bar in daily:
        day = model.calendar.dates[model.calendar.session_at(bar.start_tau)]
        key = day.isocalendar()[:2] if bar_seconds == WEEK_SECONDS else (day.year, day.month)
        groups.setdefault(key, []).append(bar)
    return [
        Bar(
            start_tau=group[0].start_tau,
            open=group[0].open,
            high=max(b.high for b in group),
            low=min(b.low for b in group),
            close=group[-1].close,
            volume=sum(b.volume for b in group),
            wap=sum(b.wap for b in group) / len(group),
            count=sum(b.count for b in group),
        )
        for group in groups.values()
    ]


def bar_label(model: MarketModel, bar: Bar, bar_seconds: int, format_date: int) -> str:
    """IB's bar date: YYYYMMDD for daily and longer bars, else zoned time or epoch seconds."""
    if bar_seconds < 0:
        return model.calendar.dates[model.calendar.session_at(bar.start_tau)].strftime("%Y%m%d")
    if format_date == 2:
        return str(int(model.calendar.epoch(bar.start_tau)))
    return model.calendar.datetime(bar.start_tau).strftime("%Y%m%d %H:%M:%S US/Eastern")


def bar_frame(
    model: MarketModel, start: date | datetime, end: date | datetime, bar: str = "1 min"
) -> pd.DataFrame:
    """Bars of the underlying (``tlt_*``) and the ETF (``tltw_*``) from ``start`` to ``end`` (a
    date end is inclusive).

    Returns a pandas DataFrame indexed by bar start (New York time) with columns
    tlt_open/high/low/close (mid), tlt_bid, tlt_ask (at the bar's close), tltw_open/high/
    low/close (market price), tltw_bid, tltw_ask, tltw_nav, tltw_premium (fraction, at the
    close), index_call_strike and index_call_expiry (TLTW's index short call). ``bar`` is
    an IB bar size ("1 min", "5 mins", "1 hour", "1 day"). For option quotes along the same
    path use :meth:`MarketModel.option_quotes`.
    """
    cal = model.calendar
    start_tau = cal.tau(start)
    end_tau = cal.tau(end + timedelta(days=1) if not isinstance(end, datetime) else end)
    bar_seconds = parse_bar_size(bar)
    sessions = []
    for session in range(cal.session_at(start_tau), cal.session_at(end_tau - 1e-9) + 1):
        edges = _boundaries(model, session, bar_seconds)
        taus = cal.start_tau[session] + edges[:-1]
        inside = (start_tau <= taus) & (taus < end_tau)
        if not inside.any():
            continue
        a, b = edges[:-1][inside].astype(int), edges[1:][inside].astype(int)
        tlt = np.exp(model.tlt_log_path(session))
        nav = model.tltw_nav_seconds(session)
        premium = model.premium_seconds(session)
        tltw = nav * (1.0 + premium)
        position = model.index_position(session)
        tlt_high, tlt_low = _window_extremes(tlt, a, b)
        tltw_high, tltw_low = _window_extremes(tltw, a, b)
        tlt_bid, tltw_bid = stock_bid(tlt[b]), stock_bid(tltw[b])
        # The asks by Python's round, as before: numpy's can differ from it in the last bit.
        sessions.append(
            pd.DataFrame(
                {
                    "time": [cal.datetime(tau) for tau in taus[inside].tolist()],
                    "tlt_open": tlt[a],
                    "tlt_high": tlt_high,
                    "tlt_low": tlt_low,
                    "tlt_close": tlt[b],
                    "tlt_bid": tlt_bid,
                    "tlt_ask": [round(bid + 0.01, 2) for bid in tlt_bid.tolist()],
                    "tltw_open": tltw[a],
                    "tltw_high": tltw_high,
                    "tltw_low": tltw_low,
                    "tltw_close": tltw[b],
                    "tltw_bid": tltw_bid,
                    "tltw_ask": [round(bid + 0.01, 2) for bid in tltw_bid.tolist()],
                    "tltw_nav": nav[b],
                    "tltw_premium": premium[b],
                    "index_call_strike": [position.strike] * len(a),
                    "index_call_expiry": [position.expiry] * len(a),
                }
            )
        )
    if not sessions:
        return pd.DataFrame()
    return pd.concat(sessions, ignore_index=True).set_index("time")


def _window_extremes(
    values: np.ndarray, left: np.ndarray, right: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The max and min of ``values[left[i] : right[i] + 1]`` for consecutive windows (each
    window's right edge the next one's left)."""
    through_last = values[: right[-1] + 1]
    high = np.maximum(np.maximum.reduceat(through_last, left), values[right])
    low = np.minimum(np.minimum.reduceat(through_last, left), values[right])
    return high, low

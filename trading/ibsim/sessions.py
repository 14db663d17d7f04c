"""Trading time: seconds of XNYS regular sessions, mapped to and from New York wall time."""

from __future__ import annotations

import bisect
import datetime as dt
import warnings
from datetime import date, datetime, timedelta
from functools import lru_cache

import exchange_calendars
import numpy as np

from trading.ibsim.config import ET

SECONDS_PER_DAY = 86_400.0


@lru_cache(maxsize=8)
def _xnys_schedule(first: date, last: date) -> tuple[tuple[date, ...], np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads Series.values, which pandas 3.1 deprecates.
        warnings.filterwarnings("ignore", message="Series.values returning")
        calendar = exchange_calendars.get_calendar("XNYS", start=first, end=last)
    schedule = calendar.schedule
    dates = tuple(ts.date() for ts in schedule.index)
    opens = schedule["open"].astype("int64").to_numpy() / 1e9
    closes = schedule["close"].astype("int64").to_numpy() / 1e9
    return dates, opens, closes


class TradingCalendar:
    """Sessions from ``sessions_before`` sessions before the anchor to ``years_after`` after.

    Trading time ``tau`` is seconds of regular trading hours since the anchor session's open
    (negative before it). Session ``i`` covers ``[start_tau[i], start_tau[i] + length[i])``; the
    instant a session ends is, in trading time, the next session's open.
    """

    def __init__(self, anchor: datetime, sessions_before: int, years_after: int = 6) -> None:
        anchor_day = anchor.astimezone(ET).date()
        # Holidays: ~252 sessions a year, so 1.5 calendar days per session leaves room.
        first = anchor_day - timedelta(days=int(sessions_before * 1.5) + 30)
        last = anchor_day + timedelta(days=366 * years_after)
        dates, opens, closes = _xnys_schedule(first, last)
        anchor_epoch = anchor.timestamp()
        # The anchor session: the one containing the anchor instant, else the next one.
        anchor_index = int(np.searchsorted(closes, anchor_epoch, side="right"))
        if anchor_index < sessions_before:
            raise ValueError(f"calendar too short before anchor {anchor!r}")
        lo = anchor_index - sessions_before
        self.dates: tuple[date, ...] = dates[lo:]
        self.open_epoch: np.ndarray = opens[lo:]
        self.close_epoch: np.ndarray = closes[lo:]
        self.length_s: np.ndarray = self.close_epoch - self.open_epoch
        self.seconds: list[int] = [round(float(x)) for x in self.length_s]
        self.anchor_index: int = sessions_before
        cumulative = np.concatenate([[0.0], np.cumsum(self.length_s)])
        self.start_tau: np.ndarray = cumulative[:-1] - cumulative[self.anchor_index]
        self._start_tau_list = self.start_tau.tolist()
        self._open_list = self.open_epoch.tolist()
        self._index_by_date = {d: i for i, d in enumerate(self.dates)}
        start_epoch = max(anchor_epoch, self.open_epoch[self.anchor_index])
        self.anchor_tau: float = float(start_epoch - self.open_epoch[self.anchor_index])

    def __len__(self) -> int:
        return len(self.dates)

    def session_at(self, tau: float) -> int:
        """Index of the session containing trading time ``tau`` (clamped to the window)."""
        index = bisect.bisect_right(self._start_tau_list, tau) - 1
        return min(max(index, 0), len(self.dates) - 1)

    def end_tau(self, index: int) -> float:
        return float(self.start_tau[index] + self.length_s[index])

    def epoch(self, tau: float) -> float:
        """UTC epoch seconds of trading time ``tau``."""
        index = self.session_at(tau)
        return self._open_list[index] + (tau - self._start_tau_list[index])

    def datetime(self, tau: float) -> datetime:
        """New York time of trading time ``tau``."""
        return datetime.fromtimestamp(self.epoch(tau), ET)

    def tau_closing(self, when: dt.datetime) -> float:  # dt.: the method datetime shadows it
        """`tau`, except that an instant from a session's close (16:00, included) to the next
        open is a microsecond before that close: the last price known then. In trading time
        the close is the next open, so `tau` prices it with the next morning's gap (a
        look-ahead for a bar ending at the close)."""
        tau = self.tau(when)
        index = self.session_at(tau)
        if index > 0 and tau == self.start_tau[index] and when.timestamp() < self.open_epoch[index]:
            return self.end_tau(index - 1) - 1e-6
        return tau

    def tau(self, when: dt.datetime | date) -> float:
        """Trading time of an instant; outside a session, the next open (a date: its open)."""
        if not isinstance(when, datetime):
            when = datetime(when.year, when.month, when.day, tzinfo=ET)
        if when.tzinfo is None:
            raise ValueError(f"when must be timezone-aware, got {when!r}")
        epoch = when.timestamp()
        index = int(np.searchsorted(self.close_epoch, epoch, side="left"))
        if index >= len(self.dates):
            return self.end_tau(len(self.dates) - 1)
        if epoch <= self.open_epoch[index]:
            return float(self.start_tau[index])
        return float(self.start_tau[index] + (epoch - self.open_epoch[index]))

    def index_of(self, day: date) -> int | None:
        return self._index_by_date.get(day)

    def session_on_or_before(self, day: date) -> int:
        """Index of the last session on or before ``day``."""
        return bisect.bisect_right(self.dates, day) - 1

    def trading_hours(self, from_index: int, days: int = 7) -> str:
        """IB's tradingHours string for ``days`` calendar days from a session's date."""
        first = self.dates[from_index]
        parts = []
        for offset in range(days):
            day = first + timedelta(days=offset)
            index = self.index_of(day)
            stamp = day.strftime("%Y%m%d")
            if index is None:
                parts.append(f"{stamp}:CLOSED")
                continue
            opened = datetime.fromtimestamp(self._open_list[index], ET).strftime("%H%M")
            closed = datetime.fromtimestamp(float(self.close_epoch[index]), ET).strftime("%H%M")
            parts.append(f"{stamp}:{opened}-{stamp}:{closed}")
        return ";".join(parts)

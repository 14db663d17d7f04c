"""When both legs can trade: US regular hours and exchange holidays from exchange_calendars.

The pair trades TLTW shares (NYSE Arca, regular session 09:30-16:00 ET) against a BAG of TLT
shares and one TLT call (regular options session 09:30-16:00 ET; TLT options stop at 16:00, not
16:15). Both follow the NYSE calendar (``exchange_calendars`` "XNYS", maintained upstream with
holidays and early closes), so both legs are tradable exactly inside an XNYS session: from the
open to the close, 13:00 ET on an early-close day. Extended hours are never used: the options
are closed then. Times are timezone-aware datetimes passed in by the caller; nothing here reads
the clock.

The sessions are read once into a dict of date -> (open, close) in UTC, because
``exchange_calendars``' own minute lookup costs about 200 us, too slow for a per-order check.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "EXCHANGE_TIMEZONE",
    "REGULAR_SESSION_SECONDS",
    "MarketCalendar",
    "Session",
    "SessionBars",
    "exchange_date",
    "market_calendar",
]

EXCHANGE_TIMEZONE = ZoneInfo("America/New_York")
_CALENDAR_NAME = "XNYS"
_FIRST_YEAR = 2005
_LAST_YEAR = 2040
REGULAR_SESSION_SECONDS = 23_400
"""09:30-16:00: the longest regular session (an early close is shorter)."""


@dataclass(frozen=True, slots=True)
class Session:
    """One trading session: its date and its open and close as UTC datetimes."""

    day: date
    open_utc: datetime
    close_utc: datetime

    @property
    def is_early_close(self) -> bool:
        """True when the session closes before 16:00 ET."""
        return self.close_utc.astimezone(EXCHANGE_TIMEZONE).hour < 16


def exchange_date(ts: float) -> date:
    """The New York (exchange) date of epoch second ``ts``."""
    if not math.isfinite(ts):
        raise ValueError(f"ts must be finite, got {ts!r}")
    return datetime.fromtimestamp(ts, UTC).astimezone(EXCHANGE_TIMEZONE).date()


def _require_aware(name: str, moment: datetime) -> datetime:
    if not isinstance(moment, datetime):
        raise ValueError(f"{name} must be a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")
    return moment


class MarketCalendar:
    """Sessions of both legs (see the module docstring) with O(1) lookups."""

    __slots__ = ("_closes", "_days", "_index_by_day", "_opens", "_sessions")

    def __init__(self, sessions: list[Session]) -> None:
        if not sessions:
            raise ValueError("sessions must not be empty")
        self._sessions = sessions
        self._days = [session.day for session in sessions]
        self._index_by_day = {session.day: index for index, session in enumerate(sessions)}
        self._opens = [session.open_utc.timestamp() for session in sessions]
        self._closes = [session.close_utc.timestamp() for session in sessions]

    @classmethod
    def from_exchange_calendars(
        cls, first_year: int = _FIRST_YEAR, last_year: int = _LAST_YEAR
    ) -> MarketCalendar:
        """Build from ``exchange_calendars`` XNYS for the given years (inclusive)."""
        import warnings

        import exchange_calendars  # imported here: it takes 0.4 s and most callers never need it

        with warnings.catch_warnings():
            # exchange_calendars 4.13 trips a pandas 3.1 deprecation inside its own code.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            calendar = exchange_calendars.get_calendar(
                _CALENDAR_NAME, start=f"{first_year}-01-01", end=f"{last_year}-12-31"
            )
        schedule = calendar.schedule
        sessions = [
            Session(
                day=day.date(),
                open_utc=opened.to_pydatetime().astimezone(UTC),
                close_utc=closed.to_pydatetime().astimezone(UTC),
            )
            for day, opened, closed in zip(
                schedule.index, schedule["open"], schedule["close"], strict=True
            )
        ]
        return cls(sessions)

    @property
    def first_day(self) -> date:
        return self._sessions[0].day

    @property
    def last_day(self) -> date:
        return self._sessions[-1].day

    def _check_covered(self, day: date) -> None:
        if not self.first_day <= day <= self.last_day:
            raise ValueError(
                f"date {day.isoformat()} is outside the calendar "
                f"{self.first_day.isoformat()}..{self.last_day.isoformat()}"
            )

    def is_session(self, day: date) -> bool:
        """True when ``day`` is a trading day (not a weekend or exchange holiday)."""
        self._check_covered(day)
        return day in self._index_by_day

    def session(self, day: date) -> Session | None:
        """The session on ``day``, or None on a weekend or holiday."""
        self._check_covered(day)
        index = self._index_by_day.get(day)
        return None if index is None else self._sessions[index]

    def is_open(self, moment: datetime) -> bool:
        """True when both legs are tradable at ``moment``: open <= moment < close."""
        moment = _require_aware("moment", moment)
        session = self.session(moment.astimezone(EXCHANGE_TIMEZONE).date())
        return session is not None and session.open_utc <= moment < session.close_utc

    def in_session(self, moment: datetime) -> bool:
        """True when ``moment`` belongs to a session: open <= moment <= close. The closing
        instant is the session's (its closing quotes, an order decided on them), unlike
        :meth:`is_open`, where it is already closed."""
        moment = _require_aware("moment", moment)
        session = self.session(moment.astimezone(EXCHANGE_TIMEZONE).date())
        return session is not None and session.open_utc <= moment <= session.close_utc

    def session_index_at(self, ts: float) -> int:
        """Index of the session epoch second ``ts`` belongs to: the one with open <= ts <= close,
        else (outside every session) the next one to open. Raises ValueError past the calendar."""
        if not math.isfinite(ts):
            raise ValueError(f"ts must be finite, got {ts!r}")
        # The first session whose close is at or after ts: ts is in it or before its open.
        index = bisect_left(self._closes, ts)
        if index >= len(self._sessions) or ts < self._opens[0] - 7 * 86_400:
            raise ValueError(
                f"epoch {ts} is outside the calendar {self.first_day}..{self.last_day}"
            )
        return index

    def session_at_index(self, index: int) -> Session:
        return self._sessions[index]

    def open_close(self, index: int) -> tuple[float, float]:
        """(open, close) of session ``index`` as epoch seconds."""
        return self._opens[index], self._closes[index]

    def seconds_to_close(self, moment: datetime) -> float | None:
        """Seconds from ``moment`` to today's close, or None when the market is closed."""
        moment = _require_aware("moment", moment)
        session = self.session(moment.astimezone(EXCHANGE_TIMEZONE).date())
        if session is None or not session.open_utc <= moment < session.close_utc:
            return None
        return (session.close_utc - moment).total_seconds()

    def previous_session(self, day: date) -> date:
        """The last trading day strictly before ``day``."""
        return self.add_sessions(day, -1)

    def next_session(self, day: date) -> date:
        """The first trading day strictly after ``day``."""
        return self.add_sessions(day, 1)

    def add_sessions(self, day: date, count: int) -> date:
        """The trading day ``count`` sessions after ``day`` (before it when negative).

        From a non-trading day, counting starts at the neighbouring session in the direction of
        travel, so ``add_sessions(saturday, -1)`` is the Friday before.
        """
        self._check_covered(day)
        index = self._index_by_day.get(day)
        if index is None:
            if count == 0:
                raise ValueError(f"date {day.isoformat()} is not a session (count 0)")
            # Sessions strictly after ``day`` start at bisect_right; strictly before end there.
            after = bisect_right(self._days, day)
            target = after + count - 1 if count > 0 else after + count
        else:
            target = index + count
        if not 0 <= target < len(self._sessions):
            raise ValueError(f"{count} sessions from {day.isoformat()} leaves the calendar")
        return self._sessions[target].day

    def sessions_between(self, start: date, end: date) -> int:
        """Number of trading days d with start < d <= end (negative when end < start)."""
        if end < start:
            return -self.sessions_between(end, start)
        self._check_covered(start)
        self._check_covered(end)
        return bisect_right(self._days, end) - bisect_right(self._days, start)


class SessionBars:
    """Bars of ``bar_seconds`` aligned to the exchange session.

    A bar of N seconds is counted from its session's open: [open + kN, open + (k+1)N), the
    last one cut at the close, and the closing instant belongs to the last bar (a quote
    stamped at the close is the session's). A bar of a whole session or more
    (N >= `REGULAR_SESSION_SECONDS`, e.g. 86,400) is the session: one bar from the open to the
    close, an early close (13:00 on a half day) included. A moment outside every session
    (overnight, a weekend, a holiday) belongs to the next session's first bar, so the last
    bar of a day closes on the day's own quotes when the first later message arrives.

    Bars are numbered ``session index x stride + k`` (stride: bars in the longest session),
    increasing with time; :meth:`bar_end` is a bar's close as epoch seconds. Lookups are O(1)
    within the session last asked about (a bisect otherwise).
    """

    __slots__ = ("_cache", "bar_seconds", "calendar", "stride")

    def __init__(self, calendar: MarketCalendar, bar_seconds: float) -> None:
        if not (math.isfinite(bar_seconds) and bar_seconds > 0):
            raise ValueError(f"bar_seconds must be finite and > 0, got {bar_seconds!r}")
        self.calendar = calendar
        self.bar_seconds = float(min(bar_seconds, REGULAR_SESSION_SECONDS))
        self.stride = math.ceil(REGULAR_SESSION_SECONDS / self.bar_seconds)
        self._cache = (math.inf, -math.inf, 0, 0.0, 0)  # (after, to, index, open, last bar)

    @property
    def is_daily(self) -> bool:
        return self.stride == 1

    @property
    def bars_per_session(self) -> int:
        """Bars in a full (09:30-16:00) session."""
        return self.stride

    def bar_of(self, ts: float) -> int:
        """The number of the bar epoch second ``ts`` belongs to (see the class docstring)."""
        after, end, index, opened, last = self._cache
        if not after < ts <= end:
            index = self.calendar.session_index_at(ts)
            opened, closed = self.calendar.open_close(index)
            after = self.calendar.open_close(index - 1)[1] if index > 0 else -math.inf
            last = math.ceil((closed - opened) / self.bar_seconds) - 1
            self._cache = (after, closed, index, opened, last)
        if ts <= opened:
            return index * self.stride
        return index * self.stride + min(int((ts - opened) // self.bar_seconds), last)

    def bar_end(self, bar: int) -> float:
        """The close of bar ``bar`` (epoch seconds): open + (k + 1) N, at most the close."""
        index, k = divmod(bar, self.stride)
        opened, closed = self.calendar.open_close(index)
        return min(opened + (k + 1) * self.bar_seconds, closed)

    def session_day(self, bar: int) -> date:
        """The date of the session bar ``bar`` belongs to."""
        return self.calendar.session_at_index(bar // self.stride).day


@lru_cache(maxsize=1)
def market_calendar() -> MarketCalendar:
    """The shared XNYS calendar, 2005-2040 (built once, about 0.5 s)."""
    return MarketCalendar.from_exchange_calendars()

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

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = [
    "EXCHANGE_TIMEZONE",
    "MarketCalendar",
    "Session",
    "market_calendar",
]

EXCHANGE_TIMEZONE = ZoneInfo("America/New_York")
_CALENDAR_NAME = "XNYS"
_FIRST_YEAR = 2005
_LAST_YEAR = 2040


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


def _require_aware(name: str, moment: datetime) -> datetime:
    if not isinstance(moment, datetime):
        raise ValueError(f"{name} must be a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment.isoformat()}")
    return moment


class MarketCalendar:
    """Sessions of both legs (see the module docstring) with O(1) lookups."""

    __slots__ = ("_days", "_index_by_day", "_sessions")

    def __init__(self, sessions: list[Session]) -> None:
        if not sessions:
            raise ValueError("sessions must not be empty")
        self._sessions = sessions
        self._days = [session.day for session in sessions]
        self._index_by_day = {session.day: index for index, session in enumerate(sessions)}

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


@lru_cache(maxsize=1)
def market_calendar() -> MarketCalendar:
    """The shared XNYS calendar, 2005-2040 (built once, about 0.5 s)."""
    return MarketCalendar.from_exchange_calendars()

"""Market hours of both legs from the XNYS calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from trading.domain.market_hours import EXCHANGE_TIMEZONE, market_calendar


def eastern(year, month, day, hour, minute=0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=EXCHANGE_TIMEZONE)


def test_regular_session_is_open_from_0930_to_1600_eastern():
    calendar = market_calendar()
    assert not calendar.is_open(eastern(2024, 6, 12, 9, 29))
    assert calendar.is_open(eastern(2024, 6, 12, 9, 30))
    assert calendar.is_open(eastern(2024, 6, 12, 15, 59))
    assert not calendar.is_open(eastern(2024, 6, 12, 16, 0))


def test_utc_and_eastern_moments_agree():
    calendar = market_calendar()
    # 13:45 UTC is 09:45 EDT in June (open) and 08:45 EST in January (closed).
    assert calendar.is_open(datetime(2024, 6, 12, 13, 45, tzinfo=UTC))
    assert not calendar.is_open(datetime(2024, 1, 10, 13, 45, tzinfo=UTC))


def test_exchange_holidays_and_weekends_are_closed():
    calendar = market_calendar()
    assert not calendar.is_open(eastern(2024, 3, 29, 11))  # Good Friday
    assert not calendar.is_open(eastern(2024, 12, 25, 11))  # Christmas
    assert not calendar.is_open(eastern(2025, 1, 9, 11))  # national day of mourning (Carter)
    assert not calendar.is_open(eastern(2024, 6, 15, 11))  # Saturday
    assert not calendar.is_session(date(2024, 7, 4))


def test_early_close_day_closes_at_1300_eastern():
    calendar = market_calendar()
    day_after_thanksgiving = date(2024, 11, 29)
    assert calendar.session(day_after_thanksgiving).is_early_close
    assert calendar.is_open(eastern(2024, 11, 29, 12, 59))
    assert not calendar.is_open(eastern(2024, 11, 29, 13, 0))
    assert calendar.seconds_to_close(eastern(2024, 11, 29, 12, 0)) == 3600.0
    assert calendar.seconds_to_close(eastern(2024, 11, 29, 14, 0)) is None


def test_adding_sessions_skips_weekends_and_holidays():
    calendar = market_calendar()
    # Thursday 2024-03-28, then Good Friday and the weekend, then Monday 2024-04-01.
    assert calendar.next_session(date(2024, 3, 28)) == date(2024, 4, 1)
    assert calendar.previous_session(date(2024, 4, 1)) == date(2024, 3, 28)
    assert calendar.add_sessions(date(2024, 3, 30), -1) == date(2024, 3, 28)
    assert calendar.add_sessions(date(2024, 3, 30), 1) == date(2024, 4, 1)
    assert calendar.add_sessions(date(2024, 4, 19), -2) == date(2024, 4, 17)
    assert calendar.sessions_between(date(2024, 3, 27), date(2024, 4, 2)) == 3


def test_naive_datetime_and_dates_outside_the_calendar_are_rejected():
    calendar = market_calendar()
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.is_open(datetime(2024, 6, 12, 11, 0))
    with pytest.raises(ValueError, match="outside the calendar"):
        calendar.is_session(date(1990, 1, 2))

"""Market hours of both legs from the XNYS calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from trading.domain.market_hours import (
    EXCHANGE_TIMEZONE,
    SessionBars,
    exchange_date,
    market_calendar,
)


def eastern(year, month, day, hour, minute=0, second=0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=EXCHANGE_TIMEZONE)


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


# session-aligned bars --------------------------------------------------------------------------


def epoch(year, month, day, hour, minute=0, second=0.0) -> float:
    return eastern(year, month, day, hour, minute).timestamp() + second


def end_of(bars: SessionBars, ts: float) -> datetime:
    return datetime.fromtimestamp(bars.bar_end(bars.bar_of(ts)), EXCHANGE_TIMEZONE)


def test_a_bar_is_counted_from_the_session_open_and_cut_at_the_close():
    bars = SessionBars(market_calendar(), 3600)
    assert end_of(bars, epoch(2024, 6, 12, 9, 30)) == eastern(2024, 6, 12, 10, 30)
    assert end_of(bars, epoch(2024, 6, 12, 10, 29, 59.9)) == eastern(2024, 6, 12, 10, 30)
    assert end_of(bars, epoch(2024, 6, 12, 10, 30)) == eastern(2024, 6, 12, 11, 30)
    # The seventh hour of a 6.5-hour session is the half hour to the close.
    assert end_of(bars, epoch(2024, 6, 12, 15, 45)) == eastern(2024, 6, 12, 16, 0)
    assert bars.bars_per_session == 7


def test_a_quote_stamped_at_the_close_belongs_to_its_session_and_later_ones_to_the_next():
    bars = SessionBars(market_calendar(), 60)
    at_close = bars.bar_of(epoch(2024, 6, 12, 16, 0))
    assert at_close == bars.bar_of(epoch(2024, 6, 12, 15, 59, 30))
    after = bars.bar_of(epoch(2024, 6, 12, 16, 0, 0.5))
    assert after > at_close
    assert after == bars.bar_of(epoch(2024, 6, 13, 9, 30, 30))  # the next session's first bar
    assert end_of(bars, epoch(2024, 6, 12, 20, 0)) == eastern(2024, 6, 13, 9, 31)


def test_a_daily_bar_closes_at_the_close_half_days_included():
    for seconds in (23_400, 86_400):
        bars = SessionBars(market_calendar(), seconds)
        assert bars.is_daily
        assert end_of(bars, epoch(2024, 6, 12, 9, 30)) == eastern(2024, 6, 12, 16, 0)
        assert end_of(bars, epoch(2024, 6, 12, 16, 0)) == eastern(2024, 6, 12, 16, 0)
        assert end_of(bars, epoch(2024, 11, 29, 12, 59)) == eastern(2024, 11, 29, 13, 0)
        assert end_of(bars, epoch(2024, 11, 29, 13, 0)) == eastern(2024, 11, 29, 13, 0)
        # The day after a Friday's close is Monday's bar (weekend and holiday skipped).
        friday, monday = epoch(2024, 11, 29, 14, 0), epoch(2024, 12, 2, 10, 0)
        assert bars.bar_of(friday) == bars.bar_of(monday)
        assert bars.bar_of(monday) == bars.bar_of(epoch(2024, 11, 29, 13, 0)) + 1


def test_bar_numbers_increase_with_time_whatever_the_order_of_the_lookups():
    bars = SessionBars(market_calendar(), 300)
    moments = [epoch(2024, 6, d, h, m) for d in (10, 11, 12) for h in (8, 9, 12, 16, 18)
               for m in (0, 31)]  # fmt: skip
    numbers = [bars.bar_of(t) for t in reversed(moments)][::-1]
    assert numbers == sorted(numbers)
    assert all(bars.bar_end(n) >= t for n, t in zip(numbers, moments, strict=True))


def test_the_closing_instant_is_in_the_session_but_not_open():
    calendar = market_calendar()
    close = eastern(2024, 6, 12, 16, 0)
    assert calendar.in_session(close) and not calendar.is_open(close)
    assert not calendar.in_session(eastern(2024, 6, 12, 16, 0, 1))
    assert calendar.in_session(eastern(2024, 6, 12, 9, 30))
    assert exchange_date(eastern(2024, 6, 12, 23, 59).timestamp()) == date(2024, 6, 12)


def test_a_bad_bar_length_or_moment_raises_value_error():
    with pytest.raises(ValueError, match="bar_seconds"):
        SessionBars(market_calendar(), 0)
    with pytest.raises(ValueError, match="ts"):
        SessionBars(market_calendar(), 60).bar_of(float("nan"))

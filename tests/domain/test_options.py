"""Option chain, the call to write, roll rule and early-assignment risk."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest

from trading.domain.market_hours import EXCHANGE_TIMEZONE
from trading.domain.options import (
    HeldOption,
    OptionChain,
    RollReason,
    RollRule,
    SelectionRule,
    early_assignment_risk,
    is_standard_monthly,
    monthly_expiry,
    roll_date,
    roll_decision,
    select_call,
    third_friday,
    time_to_expiry_years,
)

CHAIN = OptionChain(
    expiries=(
        date(2024, 6, 14),  # weekly
        date(2024, 6, 21),  # monthly
        date(2024, 6, 28),  # weekly
        date(2024, 7, 19),  # monthly
        date(2024, 8, 16),  # monthly
    ),
    strikes=(*(float(k) for k in range(85, 100)), 90.5),
)


def test_third_friday_and_holiday_moved_monthly_expiry():
    assert third_friday(2024, 6) == date(2024, 6, 21)
    assert third_friday(2024, 3) == date(2024, 3, 15)
    assert third_friday(2025, 4) == date(2025, 4, 18)  # Good Friday 2025
    assert monthly_expiry(2025, 4) == date(2025, 4, 17)
    assert is_standard_monthly(date(2025, 4, 17))
    assert is_standard_monthly(date(2024, 6, 21))
    assert not is_standard_monthly(date(2024, 6, 14))


def test_selection_takes_the_first_monthly_with_twenty_days_left():
    # On 2024-06-03 the June monthly has 18 days left: too few, so July.
    chosen = select_call(CHAIN, 91.2, date(2024, 6, 3))
    assert chosen.expiry == date(2024, 7, 19)
    assert chosen.strike == 91.0
    # On 2024-05-31 June has exactly 21 days left.
    assert select_call(CHAIN, 91.2, date(2024, 5, 31)).expiry == date(2024, 6, 21)


def test_selection_can_include_weeklies_and_other_minimum_days():
    rule = SelectionRule(min_days_to_expiry=5, monthly_only=False)
    assert select_call(CHAIN, 91.2, date(2024, 6, 3), rule).expiry == date(2024, 6, 14)


def test_strike_tie_resolves_upward():
    # 90.75 is exactly between 90.5 and 91.
    assert select_call(CHAIN, 90.75, date(2024, 6, 3)).strike == 91.0
    # 91.5 is exactly between 91 and 92.
    assert select_call(CHAIN, 91.5, date(2024, 6, 3)).strike == 92.0


def test_moneyness_102_reproduces_the_tltw_rule():
    rule = SelectionRule(moneyness=1.02)
    chosen = select_call(CHAIN, 90.0, date(2024, 6, 3), rule)
    assert chosen.target_strike == pytest.approx(91.8)
    assert chosen.strike == 92.0


def test_selection_rejects_bad_spot_and_missing_expiry():
    with pytest.raises(ValueError, match="spot"):
        select_call(CHAIN, math.nan, date(2024, 6, 3))
    with pytest.raises(ValueError, match="no monthly expiry"):
        select_call(CHAIN, 90.0, date(2024, 8, 1))
    with pytest.raises(ValueError, match="strikes"):
        OptionChain(expiries=(date(2024, 6, 21),), strikes=(90.0, -1.0))


def test_roll_date_is_the_wednesday_two_sessions_before_the_third_friday():
    assert roll_date(date(2024, 7, 19), 2) == date(2024, 7, 17)
    # Juneteenth (Wednesday 2024-06-19) is a holiday: two sessions before Friday the 21st are
    # Thursday the 20th, then Tuesday the 18th.
    assert roll_date(date(2024, 6, 21), 2) == date(2024, 6, 18)
    assert roll_date(date(2024, 7, 19), 0) == date(2024, 7, 19)


def test_roll_decision_on_roll_date_expiry_and_spot_move():
    held = HeldOption(expiry=date(2024, 7, 19), strike=91.0)
    assert not roll_decision(held, 91.0, date(2024, 7, 16)).roll
    on_roll_date = roll_decision(held, 91.0, date(2024, 7, 17))
    assert on_roll_date.roll and on_roll_date.reason is RollReason.ROLL_DATE
    at_expiry = roll_decision(held, 91.0, date(2024, 7, 19), RollRule(0))
    assert at_expiry.roll and at_expiry.reason is RollReason.EXPIRY
    assert not roll_decision(held, 91.0, date(2024, 7, 18), RollRule(0)).roll
    moved = RollRule(max_spot_move_fraction=0.03)
    assert not roll_decision(held, 93.5, date(2024, 7, 1), moved).roll  # 2.7%
    decision = roll_decision(held, 94.0, date(2024, 7, 1), moved)  # 3.3%
    assert decision.roll and decision.reason is RollReason.SPOT_MOVED


def test_early_assignment_flags_itm_call_with_time_value_below_dividend():
    # TLT at 95, short 90 call worth 5.20: time value 0.20 below a 0.30 dividend going ex on
    # Monday 2024-07-01; expected assignment on Friday 2024-06-28.
    risk = early_assignment_risk(
        5.20, 95.0, 90.0, date(2024, 7, 19), 0.30, date(2024, 7, 1), date(2024, 6, 26)
    )
    assert risk.likely
    assert risk.time_value == pytest.approx(0.20)
    assert risk.last_cum_dividend_day == date(2024, 6, 28)


def test_early_assignment_not_flagged_with_enough_time_value_otm_or_no_dividend():
    enough = early_assignment_risk(
        5.40, 95.0, 90.0, date(2024, 7, 19), 0.30, date(2024, 7, 1), date(2024, 6, 26)
    )
    assert not enough.likely
    out_of_the_money = early_assignment_risk(
        0.05, 88.0, 90.0, date(2024, 7, 19), 0.30, date(2024, 7, 1), date(2024, 6, 26)
    )
    assert not out_of_the_money.likely
    after_expiry = early_assignment_risk(
        5.05, 95.0, 90.0, date(2024, 7, 19), 0.30, date(2024, 8, 1), date(2024, 6, 26)
    )
    assert not after_expiry.likely
    with pytest.raises(ValueError, match="dividend_per_share"):
        early_assignment_risk(5.0, 95.0, 90.0, date(2024, 7, 19), math.nan, None, date(2024, 6, 1))


def test_time_to_expiry_runs_to_1600_eastern_in_years_of_365_days():
    expiry = date(2024, 7, 19)
    one_day_before = datetime(2024, 7, 18, 16, 0, tzinfo=EXCHANGE_TIMEZONE)
    assert time_to_expiry_years(one_day_before, expiry) == pytest.approx(1 / 365)
    after = datetime(2024, 7, 19, 21, 0, tzinfo=UTC)  # 17:00 EDT
    assert time_to_expiry_years(after, expiry) == 0.0
    with pytest.raises(ValueError, match="timezone-aware"):
        time_to_expiry_years(datetime(2024, 7, 18), expiry)

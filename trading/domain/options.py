"""The option chain, which call to write, when to roll it, and early-assignment risk.

Conventions: dates are exchange dates (America/New_York); "days to expiry" are calendar days;
business days are XNYS sessions (``trading.domain.market_hours``). A standard monthly expiry is
the third Friday of the month, or the Thursday before it when that Friday is an exchange holiday
(Good Friday). Strikes are per share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from trading.domain.black_scholes import DAYS_PER_YEAR
from trading.domain.common import is_finite_number
from trading.domain.market_hours import EXCHANGE_TIMEZONE, MarketCalendar, market_calendar

__all__ = [
    "EXPIRY_CLOSE_TIME",
    "EarlyAssignmentRisk",
    "HeldOption",
    "OptionChain",
    "RollDecision",
    "RollReason",
    "RollRule",
    "SelectedOption",
    "SelectionRule",
    "early_assignment_risk",
    "is_standard_monthly",
    "monthly_expiry",
    "roll_date",
    "roll_decision",
    "select_call",
    "third_friday",
    "time_to_expiry_years",
]

EXPIRY_CLOSE_TIME = time(16, 0)
"""TLT options stop trading at 16:00 ET on expiry day; tau runs to that moment."""

_FRIDAY = 4
_THURSDAY = 3
_SECONDS_PER_YEAR = DAYS_PER_YEAR * 86_400.0


def third_friday(year: int, month: int) -> date:
    """The third Friday of a month (the standard monthly expiry before holiday adjustment)."""
    first = date(year, month, 1)
    return first + timedelta(days=(_FRIDAY - first.weekday()) % 7 + 14)


def monthly_expiry(year: int, month: int, calendar: MarketCalendar | None = None) -> date:
    """The standard monthly expiry: the third Friday, or the session before it on a holiday."""
    friday = third_friday(year, month)
    calendar = calendar or market_calendar()
    return friday if calendar.is_session(friday) else calendar.previous_session(friday)


def is_standard_monthly(expiry: date) -> bool:
    """True for a third Friday, or the Thursday before a third Friday (holiday-moved expiry).

    The Thursday case is only listed as an expiry when the Friday is a holiday, so the calendar
    need not be consulted.
    """
    if expiry.weekday() == _FRIDAY:
        return expiry == third_friday(expiry.year, expiry.month)
    if expiry.weekday() == _THURSDAY:
        friday = expiry + timedelta(days=1)
        return friday == third_friday(friday.year, friday.month)
    return False


def time_to_expiry_years(moment: datetime, expiry: date) -> float:
    """Calendar time from ``moment`` to 16:00 ET on ``expiry``, in years of 365 days, >= 0."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"moment must be timezone-aware, got naive {moment.isoformat()}")
    expiry_moment = datetime.combine(expiry, EXPIRY_CLOSE_TIME, tzinfo=EXCHANGE_TIMEZONE)
    return max((expiry_moment - moment).total_seconds(), 0.0) / _SECONDS_PER_YEAR


@dataclass(frozen=True, slots=True)
class OptionChain:
    """Listed expiries and strikes of one underlying (IB's secDefOptParams shape: every strike
    is assumed listed for every expiry; ``select_call`` checks nothing per expiry).

    Both are stored sorted and de-duplicated; strikes must be finite and positive.
    """

    expiries: tuple[date, ...]
    strikes: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.expiries:
            raise ValueError("expiries must not be empty")
        if not self.strikes:
            raise ValueError("strikes must not be empty")
        for strike in self.strikes:
            if not (is_finite_number(strike) and strike > 0):
                raise ValueError(f"strikes must be finite and > 0, got {strike!r}")
        object.__setattr__(self, "expiries", tuple(sorted(set(self.expiries))))
        object.__setattr__(self, "strikes", tuple(sorted({float(s) for s in self.strikes})))


@dataclass(frozen=True, slots=True)
class SelectionRule:
    """Which call to write.

    ``min_days_to_expiry``: the target expiry is the first one with at least this many calendar
    days left. ``moneyness``: the strike nearest spot x moneyness (1.00 at the money; 1.02 is
    TLTW's index rule, 2% out of the money). ``monthly_only``: skip weeklies.
    """

    min_days_to_expiry: int = 20
    moneyness: float = 1.00
    monthly_only: bool = True

    def __post_init__(self) -> None:
        if self.min_days_to_expiry < 0:
            raise ValueError(f"min_days_to_expiry must be >= 0, got {self.min_days_to_expiry!r}")
        if not (math.isfinite(self.moneyness) and 0.5 <= self.moneyness <= 2.0):
            raise ValueError(f"moneyness must be within [0.5, 2.0], got {self.moneyness!r}")


@dataclass(frozen=True, slots=True)
class SelectedOption:
    """The call chosen to write."""

    expiry: date
    strike: float
    days_to_expiry: int
    target_strike: float


def select_call(
    chain: OptionChain, spot: float, as_of: date, rule: SelectionRule = SelectionRule()
) -> SelectedOption:
    """Pick the call to write: the target expiry, then the listed strike nearest spot x
    moneyness, a tie (spot exactly between two strikes) resolved to the higher strike.

    Raises ValueError when spot is not finite and positive or no expiry qualifies.
    """
    if not (math.isfinite(spot) and spot > 0):
        raise ValueError(f"spot must be finite and > 0, got {spot!r}")
    expiry = next(
        (
            candidate
            for candidate in chain.expiries
            if (candidate - as_of).days >= rule.min_days_to_expiry
            and (not rule.monthly_only or is_standard_monthly(candidate))
        ),
        None,
    )
    if expiry is None:
        kind = "monthly expiry" if rule.monthly_only else "expiry"
        raise ValueError(
            f"no {kind} with at least {rule.min_days_to_expiry} days after {as_of.isoformat()} "
            f"in chain expiries {[e.isoformat() for e in chain.expiries]}"
        )
    target = spot * rule.moneyness
    # Key (distance, -strike): the nearest strike, and on a tie the higher one. The distance is
    # rounded to 1e-9 so that 90.5 - 90 and 91 - 90.5 count as a tie despite float error.
    strike = min(chain.strikes, key=lambda k: (round(abs(k - target), 9), -k))
    return SelectedOption(
        expiry=expiry,
        strike=strike,
        days_to_expiry=(expiry - as_of).days,
        target_strike=target,
    )


class RollReason(StrEnum):
    NONE = "none"
    EXPIRY = "expiry"
    ROLL_DATE = "roll_date"
    SPOT_MOVED = "spot_moved"


@dataclass(frozen=True, slots=True)
class RollRule:
    """When to roll the written call.

    ``business_days_before_expiry``: roll on the session this many sessions before expiry (or
    any later day). The default 2 follows TLTW's index (Cboe BXTB), which appears to roll on the
    Wednesday two sessions before the third-Friday expiry: rolling on the same day keeps the
    synthetic leg in step with TLTW. 0 rolls on expiry day.
    ``max_spot_move_fraction``: also roll when |spot / strike - 1| exceeds this. None (the
    default) disables it: TLTW does not roll on moves, so a move-triggered roll adds tracking
    error between the legs; set it to cap the gamma of a call far from the money.
    """

    business_days_before_expiry: int = 2
    max_spot_move_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.business_days_before_expiry < 0:
            raise ValueError(
                "business_days_before_expiry must be >= 0, "
                f"got {self.business_days_before_expiry!r}"
            )
        move = self.max_spot_move_fraction
        if move is not None and not (math.isfinite(move) and move > 0):
            raise ValueError(f"max_spot_move_fraction must be finite and > 0, got {move!r}")


@dataclass(frozen=True, slots=True)
class HeldOption:
    """The call currently written."""

    expiry: date
    strike: float


@dataclass(frozen=True, slots=True)
class RollDecision:
    roll: bool
    reason: RollReason
    roll_date: date
    message: str = field(default="")


def roll_date(
    expiry: date, business_days_before_expiry: int, calendar: MarketCalendar | None = None
) -> date:
    """The session ``business_days_before_expiry`` sessions before ``expiry``."""
    calendar = calendar or market_calendar()
    if business_days_before_expiry == 0:
        return expiry
    return calendar.add_sessions(expiry, -business_days_before_expiry)


def roll_decision(
    held: HeldOption,
    spot: float,
    as_of: date,
    rule: RollRule = RollRule(),
    calendar: MarketCalendar | None = None,
) -> RollDecision:
    """Whether to roll ``held`` on ``as_of``: on or after expiry, on or after the roll date, or
    when spot has moved more than the rule allows from the strike."""
    if not (math.isfinite(spot) and spot > 0):
        raise ValueError(f"spot must be finite and > 0, got {spot!r}")
    scheduled = roll_date(held.expiry, rule.business_days_before_expiry, calendar)
    if as_of >= held.expiry:
        return RollDecision(
            True, RollReason.EXPIRY, scheduled, f"{as_of} is on or after expiry {held.expiry}"
        )
    if as_of >= scheduled:
        return RollDecision(
            True,
            RollReason.ROLL_DATE,
            scheduled,
            f"{as_of} is on or after the roll date {scheduled} "
            f"({rule.business_days_before_expiry} sessions before expiry {held.expiry})",
        )
    if rule.max_spot_move_fraction is not None:
        move = abs(spot / held.strike - 1.0)
        if move > rule.max_spot_move_fraction:
            return RollDecision(
                True,
                RollReason.SPOT_MOVED,
                scheduled,
                f"spot {spot} is {move:.2%} from strike {held.strike}, "
                f"beyond {rule.max_spot_move_fraction:.2%}",
            )
    return RollDecision(False, RollReason.NONE, scheduled)


@dataclass(frozen=True, slots=True)
class EarlyAssignmentRisk:
    """Whether a short call is likely to be assigned before the ex-date.

    ``time_value`` = call price - max(spot - strike, 0), per share. The holder of an in-the-money
    call gains by exercising on the last cum-dividend day (the session before the ex-date) when
    the dividend exceeds the time value given up.
    """

    likely: bool
    time_value: float
    dividend: float
    last_cum_dividend_day: date | None
    message: str


def early_assignment_risk(
    call_price: float,
    spot: float,
    strike: float,
    expiry: date,
    dividend_per_share: float,
    ex_dividend_date: date | None,
    as_of: date,
    calendar: MarketCalendar | None = None,
) -> EarlyAssignmentRisk:
    """Flag a short call likely to be assigned the day before the ex-date.

    Likely when: an ex-date is known, falls after ``as_of`` and on or before expiry, the call is
    in the money, and its time value is below the dividend.
    """
    for name, value in (("call_price", call_price), ("spot", spot), ("strike", strike)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    if not (math.isfinite(dividend_per_share) and dividend_per_share >= 0):
        raise ValueError(f"dividend_per_share must be finite and >= 0, got {dividend_per_share!r}")
    intrinsic = max(spot - strike, 0.0)
    time_value = call_price - intrinsic
    if ex_dividend_date is None or not as_of < ex_dividend_date <= expiry:
        return EarlyAssignmentRisk(
            False, time_value, dividend_per_share, None, "no ex-date before expiry"
        )
    calendar = calendar or market_calendar()
    last_cum = calendar.previous_session(ex_dividend_date)
    if intrinsic <= 0.0:
        return EarlyAssignmentRisk(
            False, time_value, dividend_per_share, last_cum, "call is not in the money"
        )
    likely = time_value < dividend_per_share
    relation = "below" if likely else "at or above"
    return EarlyAssignmentRisk(
        likely,
        time_value,
        dividend_per_share,
        last_cum,
        f"time value {time_value:.4f} is {relation} the dividend {dividend_per_share:.4f} "
        f"going ex on {ex_dividend_date}; assignment expected on {last_cum}"
        if likely
        else f"time value {time_value:.4f} is {relation} the dividend {dividend_per_share:.4f}",
    )

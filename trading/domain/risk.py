"""Pre-trade risk rules: pure checks that return a decision with every reason.

Each rule is a named function of an `OrderCheck` (the order, the book, the limits and every leg's
position before and after) returning its reasons. ``check_order(order, book, limits)`` runs
every rule (or the ones it is given: the live gate checks the price band per leg and the rest
on the combined order) and collects every failing one (not just the first), so an operator sees
the whole picture. Rules:

* HALTED: the trading state is HALTED; nothing is approved.
* REDUCE_ONLY: the state is REDUCING and the order does not shrink exposure.
* MARKET_CLOSED: the book's ``now`` is outside both legs' regular session (market_hours). The
  closing instant is the session's: an order decided on the closing quotes (a daily bar closes
  at the close) is a market-on-close order, not an after-hours one.
* STALE_DATA: a leg's quote is older than ``max_quote_age_seconds``, missing, non-finite,
  non-positive or crossed (bid > ask).
* POSITION_LIMIT: a leg's position after the order exceeds its limit (no limit configured for
  a leg means a limit of 0).
* ORDER_SIZE: the order's quantity or notional exceeds its limit.
* GROSS_NOTIONAL: the book's gross notional after the order exceeds the limit.
* PRICE_BAND: the limit price is further from the mid than ``price_band_fraction`` of the
  order's gross leg value per unit (see ``OrderRequest``), or missing.
* NET_DELTA, NET_VEGA: the book's net delta (TLT-share equivalents) or net vega (USD per vol
  point) after the order exceeds the limit.
* ORDER_RATE: ``max_orders_per_window`` orders were already sent in the last
  ``order_rate_window_seconds``.
* DAILY_LOSS: the day's P&L is at or below minus ``max_daily_loss_usd`` and the order does not
  shrink exposure.

Limits that a book may already exceed (after a fill, a move, or a limit lowered) reject only an
order that makes the breach worse: an order that reduces the position, the gross, or the Greeks
stays allowed, so the book can always be brought back inside.

"Shrinks exposure": on every leg, the position after is no larger in size than before and has
not changed sign.

Conventions: positions in shares or contracts (signed); prices per share; a leg's USD value is
position x mid x multiplier. Delta per share in TLT shares (1 for TLT; the option delta for a
call; the TLT delta of one TLTW share for TLTW); vega per share in USD per vol point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from trading.domain.common import Side, is_finite_number
from trading.domain.market_hours import MarketCalendar, market_calendar

__all__ = [
    "BookSnapshot",
    "InstrumentRisk",
    "OrderCheck",
    "OrderLeg",
    "OrderRequest",
    "RiskCode",
    "RiskDecision",
    "RiskLimits",
    "RiskReason",
    "Rule",
    "TradingState",
    "check_order",
    "daily_loss",
    "gross_notional",
    "halted",
    "market_hours",
    "net_greeks",
    "order_rate",
    "order_size",
    "position_limits",
    "price_band",
    "reduce_only",
    "stale_quotes",
]


class TradingState(StrEnum):
    """ACTIVE trades; REDUCING admits only orders that shrink exposure; HALTED admits nothing."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class RiskCode(StrEnum):
    POSITION_LIMIT = "POSITION_LIMIT"
    GROSS_NOTIONAL = "GROSS_NOTIONAL"
    ORDER_SIZE = "ORDER_SIZE"
    PRICE_BAND = "PRICE_BAND"
    NET_DELTA = "NET_DELTA"
    NET_VEGA = "NET_VEGA"
    ORDER_RATE = "ORDER_RATE"
    DAILY_LOSS = "DAILY_LOSS"
    STALE_DATA = "STALE_DATA"
    MARKET_CLOSED = "MARKET_CLOSED"
    HALTED = "HALTED"
    REDUCE_ONLY = "REDUCE_ONLY"
    EXCEEDS_HOLDINGS = "EXCEEDS_HOLDINGS"
    """A close (exit, stop) larger than what its pair holds, or on the wrong side."""
    SUPERSEDED = "SUPERSEDED"
    """A close that arrived while its pair's earlier order was still working: risk cancels
    that order's unfilled rest and closes what the pair then holds itself."""


@dataclass(frozen=True, slots=True)
class RiskReason:
    code: RiskCode
    message: str


@dataclass(frozen=True, slots=True)
class RiskDecision:
    approved: bool
    reasons: tuple[RiskReason, ...]

    @property
    def codes(self) -> frozenset[RiskCode]:
        return frozenset(reason.code for reason in self.reasons)


def _check_limit(name: str, value: float) -> None:
    if not (is_finite_number(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Every limit the rules check. ``max_position`` maps a leg key to the largest absolute
    position (shares or contracts); a leg not listed may hold nothing."""

    max_position: Mapping[str, float] = field(default_factory=dict)
    max_gross_notional_usd: float = 1_000_000.0
    max_order_quantity: float = 10_000.0
    max_order_notional_usd: float = 250_000.0
    price_band_fraction: float = 0.02
    max_net_delta_shares: float = 500.0
    max_net_vega_usd: float = 2_000.0
    max_orders_per_window: int = 10
    order_rate_window_seconds: float = 60.0
    max_daily_loss_usd: float = 10_000.0
    max_quote_age_seconds: float = 10.0

    def __post_init__(self) -> None:
        for key, limit in self.max_position.items():
            _check_limit(f"max_position[{key!r}]", limit)
        for name in (
            "max_gross_notional_usd",
            "max_order_quantity",
            "max_order_notional_usd",
            "price_band_fraction",
            "max_net_delta_shares",
            "max_net_vega_usd",
            "max_orders_per_window",
            "order_rate_window_seconds",
            "max_daily_loss_usd",
            "max_quote_age_seconds",
        ):
            _check_limit(name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class InstrumentRisk:
    """One leg as risk sees it: position, quote, multiplier and Greeks per share."""

    key: str
    position: float
    bid: float
    ask: float
    quote_time: datetime | None
    multiplier: float = 1.0
    delta: float = 1.0
    vega: float = 0.0

    @property
    def mid(self) -> float:
        return 0.5 * (self.bid + self.ask)

    def __post_init__(self) -> None:
        for name in ("position", "multiplier", "delta", "vega"):
            value = getattr(self, name)
            if not is_finite_number(value):
                raise ValueError(f"{self.key}: {name} must be finite, got {value!r}")
        if self.multiplier <= 0:
            raise ValueError(f"{self.key}: multiplier must be > 0, got {self.multiplier!r}")


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """The book at decision time: legs by key, today's P&L, recent order times, the trading
    state and ``now`` (the exchange time of the decision, passed by the caller)."""

    instruments: Mapping[str, InstrumentRisk]
    daily_pnl_usd: float
    recent_order_times: tuple[datetime, ...]
    trading_state: TradingState
    now: datetime

    def __post_init__(self) -> None:
        if not math.isfinite(self.daily_pnl_usd):
            raise ValueError(f"daily_pnl_usd must be finite, got {self.daily_pnl_usd!r}")
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError(f"now must be timezone-aware, got naive {self.now.isoformat()}")
        object.__setattr__(self, "trading_state", TradingState(self.trading_state))


@dataclass(frozen=True, slots=True)
class OrderLeg:
    """``ratio``: signed units of the leg per unit of the order when BUYing it (the buy-write
    BAG: TLT +100, call -1). A SELL reverses every leg."""

    key: str
    ratio: int

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("leg key must be a non-empty string")
        if not isinstance(self.ratio, int) or isinstance(self.ratio, bool) or self.ratio == 0:
            raise ValueError(f"leg {self.key}: ratio must be a non-zero int, got {self.ratio!r}")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order of ``quantity`` units of a single instrument (one leg, ratio 1) or a combo.

    ``limit_price`` is per unit, in IB's combo convention: sum of ratio x leg price per share
    (about 100 x TLT - call for the buy-write BAG). The price band is measured against the same
    sum at mids, as a fraction of sum |ratio| x mid (the gross leg value per unit), so that a
    combo whose net price is small is not given a band of almost nothing.
    """

    legs: tuple[OrderLeg, ...]
    side: Side
    quantity: float
    limit_price: float | None

    def __post_init__(self) -> None:
        if not self.legs:
            raise ValueError("an order needs at least one leg")
        keys = [leg.key for leg in self.legs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"order legs must be distinct, got {keys}")
        object.__setattr__(self, "side", Side(self.side))
        if not (math.isfinite(self.quantity) and self.quantity > 0):
            raise ValueError(f"quantity must be finite and > 0, got {self.quantity!r}")
        if self.limit_price is not None and not math.isfinite(self.limit_price):
            raise ValueError(f"limit_price must be finite or None, got {self.limit_price!r}")

    def leg_changes(self) -> dict[str, float]:
        """Signed change of each leg's position if the order fills completely."""
        sign = 1.0 if self.side is Side.BUY else -1.0
        return {leg.key: sign * leg.ratio * self.quantity for leg in self.legs}


def _stale_reason(
    instrument: InstrumentRisk | None, key: str, now: datetime, max_age: float
) -> str | None:
    if instrument is None:
        return f"{key}: no quote"
    bid, ask = instrument.bid, instrument.ask
    # A zero bid is a real quote for a far out-of-the-money call (the marks refuse it for
    # stocks): refusing it here froze every exit of a pair holding such a call.
    if not (math.isfinite(bid) and math.isfinite(ask)) or bid < 0 or ask <= 0:
        return f"{key}: bad quote bid {bid!r} ask {ask!r}"
    if bid > ask:
        return f"{key}: crossed quote bid {bid} > ask {ask}"
    if instrument.quote_time is None:
        return f"{key}: quote has no time"
    age = (now - instrument.quote_time).total_seconds()
    if age > max_age:
        return f"{key}: quote is {age:.1f} s old > {max_age} s"
    return None


def _net(
    instruments: Mapping[str, InstrumentRisk], positions: Mapping[str, float], attribute: str
) -> float:
    return math.fsum(
        positions[key] * instruments[key].multiplier * getattr(instruments[key], attribute)
        for key in positions
    )


@dataclass(frozen=True, slots=True)
class OrderCheck:
    """What every rule reads: the order, the book, the limits, and the positions of every leg
    before and after the order (computed once)."""

    order: OrderRequest
    book: BookSnapshot
    limits: RiskLimits
    calendar: MarketCalendar
    changes: dict[str, float]
    before: dict[str, float]
    after: dict[str, float]

    @classmethod
    def of(
        cls,
        order: OrderRequest,
        book: BookSnapshot,
        limits: RiskLimits,
        calendar: MarketCalendar | None = None,
    ) -> OrderCheck:
        changes = order.leg_changes()
        # Every leg of the book plus the order's legs, before and after.
        before = {key: instrument.position for key, instrument in book.instruments.items()}
        after = dict(before)
        for key, change in changes.items():
            after[key] = after.get(key, 0.0) + change
        return cls(order, book, limits, calendar or market_calendar(), changes, before, after)

    @property
    def shrinks(self) -> bool:
        """On every leg of the order, no larger in size than before and the same sign."""
        before, after = self.before, self.after
        return all(
            abs(after[key]) <= abs(before.get(key, 0.0)) and after[key] * before.get(key, 0.0) >= 0
            for key in self.changes
        )

    def gross_usd(self, positions: Mapping[str, float]) -> float:
        instruments = self.book.instruments
        return math.fsum(
            abs(quantity) * instruments[key].mid * instruments[key].multiplier
            for key, quantity in positions.items()
            if quantity
        )

    def net(self, positions: Mapping[str, float], attribute: str) -> float:
        return _net(self.book.instruments, positions, attribute)


Rule = Callable[[OrderCheck], list[RiskReason]]
"""One pre-trade rule: the reasons it refuses the order for (none: it passes)."""


def halted(check: OrderCheck) -> list[RiskReason]:
    """HALTED: nothing is approved."""
    if check.book.trading_state is TradingState.HALTED:
        return [RiskReason(RiskCode.HALTED, "trading is HALTED")]
    return []


def market_hours(check: OrderCheck) -> list[RiskReason]:
    """MARKET_CLOSED: outside the regular session (its closing instant included in it)."""
    now = check.book.now
    try:
        is_open = check.calendar.in_session(now)
    except ValueError as error:
        return [RiskReason(RiskCode.MARKET_CLOSED, f"cannot tell if the market is open: {error}")]
    if not is_open:
        return [RiskReason(RiskCode.MARKET_CLOSED, f"market closed at {now.isoformat()}")]
    return []


def stale_quotes(check: OrderCheck) -> list[RiskReason]:
    """STALE_DATA: a leg's quote is old, missing, non-finite, non-positive or crossed."""
    instruments, now = check.book.instruments, check.book.now
    max_age = check.limits.max_quote_age_seconds
    return [
        RiskReason(RiskCode.STALE_DATA, message)
        for key in check.changes
        if (message := _stale_reason(instruments.get(key), key, now, max_age))
    ]


def reduce_only(check: OrderCheck) -> list[RiskReason]:
    """REDUCE_ONLY: REDUCING admits only orders that shrink exposure."""
    if check.book.trading_state is TradingState.REDUCING and not check.shrinks:
        message = "trading is REDUCING and the order does not shrink exposure"
        return [RiskReason(RiskCode.REDUCE_ONLY, message)]
    return []


def position_limits(check: OrderCheck) -> list[RiskReason]:
    """POSITION_LIMIT: a leg's position after the order beyond its limit, and growing."""
    reasons = []
    for key, change in check.changes.items():
        limit = check.limits.max_position.get(key, 0.0)
        before, after = check.before.get(key, 0.0), check.after[key]
        if abs(after) > limit and abs(after) > abs(before):
            reasons.append(
                RiskReason(
                    RiskCode.POSITION_LIMIT,
                    f"{key}: position {before:g} {change:+g} = {after:g} exceeds limit {limit:g}",
                )
            )
    return reasons


def order_size(check: OrderCheck) -> list[RiskReason]:
    """ORDER_SIZE: the order's quantity or notional beyond its limit."""
    limits, order, instruments = check.limits, check.order, check.book.instruments
    reasons = []
    if order.quantity > limits.max_order_quantity:
        reasons.append(
            RiskReason(
                RiskCode.ORDER_SIZE,
                f"order quantity {order.quantity:g} exceeds limit {limits.max_order_quantity:g}",
            )
        )
    notional = math.fsum(
        abs(change) * instruments[key].mid * instruments[key].multiplier
        for key, change in check.changes.items()
    )
    if notional > limits.max_order_notional_usd:
        reasons.append(
            RiskReason(
                RiskCode.ORDER_SIZE,
                f"order notional {notional:,.2f} USD exceeds limit "
                f"{limits.max_order_notional_usd:,.2f}",
            )
        )
    return reasons


def gross_notional(check: OrderCheck) -> list[RiskReason]:
    """GROSS_NOTIONAL: the book's gross after the order beyond the limit, and growing."""
    keys = list(check.after)
    gross_before = check.gross_usd({key: check.before.get(key, 0.0) for key in keys})
    gross_after = check.gross_usd(check.after)
    limit = check.limits.max_gross_notional_usd
    if gross_after > limit and gross_after > gross_before:
        return [
            RiskReason(
                RiskCode.GROSS_NOTIONAL,
                f"gross notional {gross_before:,.2f} -> {gross_after:,.2f} USD exceeds limit "
                f"{limit:,.2f}",
            )
        ]
    return []


def price_band(check: OrderCheck) -> list[RiskReason]:
    """PRICE_BAND: no limit price, or one further from the mid than the band."""
    order, instruments = check.order, check.book.instruments
    if order.limit_price is None:
        return [RiskReason(RiskCode.PRICE_BAND, "no limit price: market orders are not allowed")]
    mid = math.fsum(leg.ratio * instruments[leg.key].mid for leg in order.legs)
    scale = math.fsum(abs(leg.ratio) * instruments[leg.key].mid for leg in order.legs)
    fraction = check.limits.price_band_fraction
    band = fraction * scale
    distance = abs(order.limit_price - mid)
    if distance > band:
        return [
            RiskReason(
                RiskCode.PRICE_BAND,
                f"limit {order.limit_price:g} is {distance:g} from mid {mid:g}, beyond the band "
                f"{band:g} ({fraction:.2%} of {scale:g})",
            )
        ]
    return []


def net_greeks(check: OrderCheck) -> list[RiskReason]:
    """NET_DELTA, NET_VEGA: the book's net Greek after the order beyond its limit, and growing."""
    limits, keys = check.limits, list(check.after)
    reasons = []
    for code, attribute, limit, unit in (
        (RiskCode.NET_DELTA, "delta", limits.max_net_delta_shares, "TLT shares"),
        (RiskCode.NET_VEGA, "vega", limits.max_net_vega_usd, "USD per vol point"),
    ):
        net_before = check.net({key: check.before.get(key, 0.0) for key in keys}, attribute)
        net_after = check.net(check.after, attribute)
        if abs(net_after) > limit and abs(net_after) > abs(net_before):
            reasons.append(
                RiskReason(
                    code,
                    f"net {attribute} {net_before:,.2f} -> {net_after:,.2f} {unit} exceeds "
                    f"limit {limit:,.2f}",
                )
            )
    return reasons


def order_rate(check: OrderCheck) -> list[RiskReason]:
    """ORDER_RATE: `max_orders_per_window` orders already sent in the window."""
    book, limits = check.book, check.limits
    window_start = book.now - timedelta(seconds=limits.order_rate_window_seconds)
    recent = sum(1 for moment in book.recent_order_times if window_start < moment <= book.now)
    if recent >= limits.max_orders_per_window:
        return [
            RiskReason(
                RiskCode.ORDER_RATE,
                f"{recent} orders in the last {limits.order_rate_window_seconds:g} s, limit "
                f"{limits.max_orders_per_window}",
            )
        ]
    return []


def daily_loss(check: OrderCheck) -> list[RiskReason]:
    """DAILY_LOSS: at or beyond the day's loss limit, only orders that shrink exposure."""
    pnl, limit = check.book.daily_pnl_usd, check.limits.max_daily_loss_usd
    if pnl <= -limit and not check.shrinks:
        return [
            RiskReason(
                RiskCode.DAILY_LOSS,
                f"daily P&L {pnl:,.2f} USD is at or beyond the loss limit {limit:,.2f} and the "
                "order does not shrink exposure",
            )
        ]
    return []


PRICED_RULES: tuple[Rule, ...] = (
    reduce_only,
    position_limits,
    order_size,
    gross_notional,
    price_band,
    net_greeks,
    order_rate,
    daily_loss,
)
"""Rules that value the legs: skipped when a leg's quote is not trustworthy (STALE_DATA)."""

RULES: tuple[Rule, ...] = (halted, market_hours, stale_quotes, *PRICED_RULES)
"""Every rule, in the order their reasons are reported."""


def check_order(
    order: OrderRequest,
    book: BookSnapshot,
    limits: RiskLimits,
    calendar: MarketCalendar | None = None,
    rules: tuple[Rule, ...] = RULES,
) -> RiskDecision:
    """Run `rules` (all by default) and collect every reason; approved only when none objects.

    Without a trustworthy mid for every leg (STALE_DATA), notional, band and Greeks cannot be
    checked: the rules that value the legs are skipped, whether or not `rules` reports the
    staleness itself."""
    check = OrderCheck.of(order, book, limits, calendar)
    stale = stale_quotes(check)
    reasons: list[RiskReason] = []
    for rule in rules:
        if rule is stale_quotes:
            reasons.extend(stale)
        elif not (stale and rule in PRICED_RULES):
            reasons.extend(rule(check))
    return RiskDecision(not reasons, tuple(reasons))

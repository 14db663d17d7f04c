"""Positions, average cost and P&L from fills, per leg and per pair.

Conventions:

* A leg is keyed by a string the caller chooses (symbol, or IB conId as text) and carries its
  ``multiplier`` (1 for shares, 100 for a TLT option). Prices are per share; a fill of q
  contracts at p is worth q x p x multiplier USD.
* Average cost is the weighted average price of the open quantity, per share, before
  commissions. A fill that reduces a position realizes (price - average) x closed quantity x
  multiplier (sign flipped for a short); a fill that crosses zero closes the old position and
  opens the remainder at the fill price.
* Commissions are costs in USD, subtracted from realized P&L when paid (IB's own avgCost folds
  them into the cost basis instead; the total P&L is the same once the position is closed).
* Unrealized P&L = quantity x (mark - average) x multiplier. Total = realized + unrealized.
* A combo (BAG) fill is booked as its legs: one fill per leg, as IB reports executions.
* Distributions: a position holding ``q`` shares at the close before an ex-date is credited
  (q > 0, long) or debited (q < 0, short: the lender is paid) ``q x amount x multiplier`` on
  the ex-date, when the price drops by it: accrued from the ex-date, settled on the pay date.
  The quantity held is the one after the last fill dated before the ex-date (a fill on the
  ex-date itself is not entitled; one without a date counts as held since before any date).
  The amount is a pure function of the fills' dates, the distributions and the day asked
  about, so booking the same fills and distributions again (a replay, a restart) can never
  credit twice. Total = realized + unrealized + distributions.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from trading.domain.common import Side, is_finite_number

__all__ = [
    "Book",
    "Distribution",
    "DistributionPnl",
    "Fill",
    "LegPnl",
    "PairPnl",
    "Position",
]


@dataclass(frozen=True, slots=True)
class Distribution:
    """A cash distribution of ``amount`` USD per share, going ex on ``ex_date`` and paid on
    ``pay_date`` (on or after the ex-date)."""

    ex_date: date
    amount: float
    pay_date: date

    def __post_init__(self) -> None:
        for name in ("ex_date", "pay_date"):
            if not isinstance(getattr(self, name), date):
                raise ValueError(f"{name} must be a date, got {getattr(self, name)!r}")
        if not (is_finite_number(self.amount) and self.amount >= 0):
            raise ValueError(f"amount must be finite and >= 0, got {self.amount!r}")
        if self.pay_date < self.ex_date:
            raise ValueError(
                f"pay_date {self.pay_date.isoformat()} is before ex_date {self.ex_date.isoformat()}"
            )


@dataclass(frozen=True, slots=True)
class DistributionPnl:
    """Distributions of one leg as of a day: accrued (gone ex, not yet paid) and settled."""

    accrued_usd: float = 0.0
    settled_usd: float = 0.0

    @property
    def total_usd(self) -> float:
        return self.accrued_usd + self.settled_usd


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one leg. ``quantity`` > 0 (shares or contracts); ``side`` gives sign."""

    key: str
    side: Side
    quantity: float
    price: float
    commission_usd: float = 0.0
    multiplier: float = 1.0

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("key must be a non-empty string")
        if self.side not in (Side.BUY, Side.SELL):
            raise ValueError(f"side must be BUY or SELL, got {self.side!r}")
        object.__setattr__(self, "side", Side(self.side))
        for name, minimum, strict in (
            ("quantity", 0.0, True),
            ("price", 0.0, False),
            ("commission_usd", 0.0, False),
            ("multiplier", 0.0, True),
        ):
            value = getattr(self, name)
            if not is_finite_number(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
            if value < minimum or (strict and value == minimum):
                relation = ">" if strict else ">="
                raise ValueError(f"{name} must be {relation} {minimum}, got {value!r}")

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side is Side.BUY else -self.quantity


@dataclass(frozen=True, slots=True)
class Position:
    """An open position: signed quantity, average price per share, multiplier, and the realized
    P&L and commissions booked on this leg so far."""

    key: str
    quantity: float
    average_price: float
    multiplier: float
    realized_pnl_usd: float
    commissions_usd: float


@dataclass(frozen=True, slots=True)
class LegPnl:
    key: str
    quantity: float
    average_price: float
    mark: float
    realized_pnl_usd: float
    unrealized_pnl_usd: float
    commissions_usd: float
    market_value_usd: float
    distributions: DistributionPnl = DistributionPnl()

    @property
    def total_pnl_usd(self) -> float:
        return self.realized_pnl_usd + self.unrealized_pnl_usd + self.distributions.total_usd


@dataclass(frozen=True, slots=True)
class PairPnl:
    """Sum over a set of legs (the pair: TLTW, TLT and the calls written)."""

    legs: tuple[LegPnl, ...]
    realized_pnl_usd: float
    unrealized_pnl_usd: float
    commissions_usd: float
    gross_market_value_usd: float
    net_market_value_usd: float
    distributions: DistributionPnl = DistributionPnl()

    @property
    def total_pnl_usd(self) -> float:
        return self.realized_pnl_usd + self.unrealized_pnl_usd + self.distributions.total_usd


# Quantities below this are treated as flat (fractional shares arrive as floats).
_FLAT = 1e-9


class _DatedChanges:
    """A leg's signed fill quantities by date (kept sorted; fills may be booked out of order,
    e.g. IB's executions after a reconnect), with prefix sums for `before`."""

    __slots__ = ("_changes", "_days", "_prefix")

    def __init__(self) -> None:
        self._days: list[date] = []
        self._changes: list[float] = []
        self._prefix: list[float] | None = None

    def add(self, day: date, change: float) -> None:
        index = bisect_right(self._days, day)
        self._days.insert(index, day)
        self._changes.insert(index, change)
        self._prefix = None

    def before(self, day: date) -> float:
        """Sum of the changes dated before ``day``."""
        if self._prefix is None:
            self._prefix = [0.0]
            for change in self._changes:
                self._prefix.append(self._prefix[-1] + change)
        total = self._prefix[bisect_left(self._days, day)]
        return 0.0 if abs(total) <= _FLAT else total

    def to_state(self) -> list[list[Any]]:
        return [[d.isoformat(), c] for d, c in zip(self._days, self._changes, strict=True)]

    @classmethod
    def from_state(cls, state: Iterable[Iterable[Any]]) -> _DatedChanges:
        out = cls()
        for day, change in state:
            out.add(date.fromisoformat(day), float(change))
        return out


class Book:
    """Positions and P&L from fills (see the module docstring). State: one small dict per leg
    (:meth:`to_state` / :meth:`from_state`)."""

    __slots__ = ("_dated", "_positions")

    def __init__(self) -> None:
        self._positions: dict[str, Position] = {}
        self._dated: dict[str, _DatedChanges] = {}

    def apply(self, fill: Fill, day: date | None = None) -> Position:
        """Book one fill dated ``day`` (the exchange date it executed on; None: before any
        date); returns the leg's position after it."""
        previous = self._positions.get(fill.key)
        if previous is not None and previous.multiplier != fill.multiplier:
            raise ValueError(
                f"fill multiplier {fill.multiplier!r} for {fill.key} differs from the "
                f"position's {previous.multiplier!r}"
            )
        quantity = previous.quantity if previous else 0.0
        average = previous.average_price if previous else 0.0
        realized = previous.realized_pnl_usd if previous else 0.0
        commissions = (previous.commissions_usd if previous else 0.0) + fill.commission_usd
        realized -= fill.commission_usd
        signed = fill.signed_quantity
        if quantity == 0.0 or (quantity > 0) == (signed > 0):
            new_quantity = quantity + signed
            average = (quantity * average + signed * fill.price) / new_quantity
        else:
            closed = min(abs(signed), abs(quantity))
            direction = 1.0 if quantity > 0 else -1.0
            realized += direction * closed * (fill.price - average) * fill.multiplier
            new_quantity = quantity + signed
            if abs(new_quantity) <= _FLAT:
                new_quantity, average = 0.0, 0.0
            elif (new_quantity > 0) != (quantity > 0):
                average = fill.price  # crossed zero: the remainder opens at the fill price
        position = Position(fill.key, new_quantity, average, fill.multiplier, realized, commissions)
        self._positions[fill.key] = position
        self._dated.setdefault(fill.key, _DatedChanges()).add(
            date.min if day is None else day, signed
        )
        return position

    def apply_all(self, fills: Iterable[Fill]) -> None:
        for fill in fills:
            self.apply(fill)

    def position(self, key: str) -> Position | None:
        return self._positions.get(key)

    def held_before(self, key: str, day: date) -> float:
        """The leg's quantity from the fills dated before ``day`` (0 when none)."""
        dated = self._dated.get(key)
        return 0.0 if dated is None else dated.before(day)

    def distribution_pnl(
        self, key: str, distributions: Iterable[Distribution], as_of: date
    ) -> DistributionPnl:
        """The leg's distributions gone ex on or before ``as_of`` (see the module docstring):
        held x amount x multiplier each, settled once ``as_of`` reaches the pay date."""
        position = self._positions.get(key)
        if position is None:
            return DistributionPnl()
        accrued: list[float] = []
        settled: list[float] = []
        for d in distributions:
            if d.ex_date > as_of:
                continue
            amount = self.held_before(key, d.ex_date) * d.amount * position.multiplier
            (settled if d.pay_date <= as_of else accrued).append(amount)
        return DistributionPnl(math.fsum(accrued), math.fsum(settled))

    @property
    def positions(self) -> Mapping[str, Position]:
        return dict(self._positions)

    def leg_pnl(self, key: str, mark: float) -> LegPnl:
        """P&L of one leg at ``mark`` (per share). Raises ValueError for an unknown leg or a
        non-finite mark while the leg is open."""
        position = self._positions.get(key)
        if position is None:
            raise ValueError(f"no position for {key!r}")
        mark = float(mark)
        if position.quantity != 0.0 and not (math.isfinite(mark) and mark >= 0.0):
            raise ValueError(f"mark for {key} must be finite and >= 0, got {mark!r}")
        if position.quantity == 0.0:
            unrealized = market_value = 0.0
        else:
            unrealized = position.quantity * (mark - position.average_price) * position.multiplier
            market_value = position.quantity * mark * position.multiplier
        return LegPnl(
            key=key,
            quantity=position.quantity,
            average_price=position.average_price,
            mark=mark,
            realized_pnl_usd=position.realized_pnl_usd,
            unrealized_pnl_usd=unrealized,
            commissions_usd=position.commissions_usd,
            market_value_usd=market_value,
        )

    def pair_pnl(
        self,
        marks: Mapping[str, float],
        keys: Iterable[str] | None = None,
        distributions: Mapping[str, Iterable[Distribution]] | None = None,
        as_of: date | None = None,
    ) -> PairPnl:
        """Sum of :meth:`leg_pnl` over ``keys`` (default: every leg booked). A flat leg needs no
        mark; an open one without a mark raises ValueError. ``distributions`` by leg key are
        booked as of ``as_of`` (required with them)."""
        if distributions and as_of is None:
            raise ValueError("as_of is required to book distributions")
        selected = list(self._positions) if keys is None else list(keys)
        legs = []
        for key in selected:
            position = self._positions.get(key)
            if position is None:
                continue
            if position.quantity != 0.0 and key not in marks:
                raise ValueError(f"no mark for open leg {key!r}")
            leg = self.leg_pnl(key, marks.get(key, 0.0))
            paid = (distributions or {}).get(key)
            if paid and as_of is not None:
                leg = replace(leg, distributions=self.distribution_pnl(key, paid, as_of))
            legs.append(leg)
        return PairPnl(
            legs=tuple(legs),
            realized_pnl_usd=math.fsum(leg.realized_pnl_usd for leg in legs),
            unrealized_pnl_usd=math.fsum(leg.unrealized_pnl_usd for leg in legs),
            commissions_usd=math.fsum(leg.commissions_usd for leg in legs),
            gross_market_value_usd=math.fsum(abs(leg.market_value_usd) for leg in legs),
            net_market_value_usd=math.fsum(leg.market_value_usd for leg in legs),
            distributions=DistributionPnl(
                math.fsum(leg.distributions.accrued_usd for leg in legs),
                math.fsum(leg.distributions.settled_usd for leg in legs),
            ),
        )

    def to_state(self) -> dict[str, Any]:
        return {
            key: {
                "quantity": p.quantity,
                "average_price": p.average_price,
                "multiplier": p.multiplier,
                "realized_pnl_usd": p.realized_pnl_usd,
                "commissions_usd": p.commissions_usd,
                "dated_changes": self._dated[key].to_state() if key in self._dated else [],
            }
            for key, p in self._positions.items()
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Mapping[str, Any]]) -> Book:
        book = cls()
        for key, values in state.items():
            book._positions[key] = Position(
                key,
                float(values["quantity"]),
                float(values["average_price"]),
                float(values["multiplier"]),
                float(values["realized_pnl_usd"]),
                float(values["commissions_usd"]),
            )
            book._dated[key] = _DatedChanges.from_state(values.get("dated_changes", []))
        return book

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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from trading.domain.common import Side, is_finite_number

__all__ = ["Book", "Fill", "LegPnl", "PairPnl", "Position"]


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

    @property
    def total_pnl_usd(self) -> float:
        return self.realized_pnl_usd + self.unrealized_pnl_usd


@dataclass(frozen=True, slots=True)
class PairPnl:
    """Sum over a set of legs (the pair: TLTW, TLT and the calls written)."""

    legs: tuple[LegPnl, ...]
    realized_pnl_usd: float
    unrealized_pnl_usd: float
    commissions_usd: float
    gross_market_value_usd: float
    net_market_value_usd: float

    @property
    def total_pnl_usd(self) -> float:
        return self.realized_pnl_usd + self.unrealized_pnl_usd


# Quantities below this are treated as flat (fractional shares arrive as floats).
_FLAT = 1e-9


class Book:
    """Positions and P&L from fills (see the module docstring). State: one small dict per leg
    (:meth:`to_state` / :meth:`from_state`)."""

    __slots__ = ("_positions",)

    def __init__(self) -> None:
        self._positions: dict[str, Position] = {}

    def apply(self, fill: Fill) -> Position:
        """Book one fill; returns the leg's position after it."""
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
        return position

    def apply_all(self, fills: Iterable[Fill]) -> None:
        for fill in fills:
            self.apply(fill)

    def position(self, key: str) -> Position | None:
        return self._positions.get(key)

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

    def pair_pnl(self, marks: Mapping[str, float], keys: Iterable[str] | None = None) -> PairPnl:
        """Sum of :meth:`leg_pnl` over ``keys`` (default: every leg booked). A flat leg needs no
        mark; an open one without a mark raises ValueError."""
        selected = list(self._positions) if keys is None else list(keys)
        legs = []
        for key in selected:
            position = self._positions.get(key)
            if position is None:
                continue
            if position.quantity != 0.0 and key not in marks:
                raise ValueError(f"no mark for open leg {key!r}")
            legs.append(self.leg_pnl(key, marks.get(key, 0.0)))
        return PairPnl(
            legs=tuple(legs),
            realized_pnl_usd=math.fsum(leg.realized_pnl_usd for leg in legs),
            unrealized_pnl_usd=math.fsum(leg.unrealized_pnl_usd for leg in legs),
            commissions_usd=math.fsum(leg.commissions_usd for leg in legs),
            gross_market_value_usd=math.fsum(abs(leg.market_value_usd) for leg in legs),
            net_market_value_usd=math.fsum(leg.market_value_usd for leg in legs),
        )

    def to_state(self) -> dict[str, Any]:
        return {
            key: {
                "quantity": p.quantity,
                "average_price": p.average_price,
                "multiplier": p.multiplier,
                "realized_pnl_usd": p.realized_pnl_usd,
                "commissions_usd": p.commissions_usd,
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
        return book

"""What the pair's lifecycle (`trading.strategy.position`) keeps and decides on, as values.

`BarContext` is one bar close as the engine hands it over; `OpenPair` is the pair entered (its
legs, and the hedge and prices at entry that its P&L is measured with); `WorkingIntent` is an
approved intent whose orders IB may still be working, with its legs' latest order events.
Each record (and the pending `OrderIntent`) serialises to a dict of JSON types with
``to_state`` / ``from_state`` (`intent_state` / `intent_from_state`) for the engine's restart.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

from trading.bus import IntentPurpose, M, OrderEvent, OrderIntent
from trading.domain.risk import TradingState
from trading.domain.signals import SpreadPosition
from trading.strategy.intents import PairLegs
from trading.strategy.legs import HeldCall

__all__ = [
    "DONE_ORDER_STATUSES",
    "BarContext",
    "OpenPair",
    "WorkingIntent",
    "intent_from_state",
    "intent_state",
]


@dataclass(frozen=True, slots=True)
class BarContext:
    """Everything one bar close knows, handed from the engine to the lifecycle."""

    ts: float
    z: float
    spread: float
    mean: float
    std: float
    beta: float
    alpha: float
    x: float  # log buy-write index
    y: float  # log TLTW total return
    spot: float
    tltw_mid: float
    tltw_total_return: float
    index_level: float
    call_mid: float
    call: HeldCall
    risk_state: TradingState
    warming_up: bool
    option_mids: dict[int, float]
    as_of: date
    """Exchange date (America/New_York) of the session the bar belongs to."""
    quotes: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    """(bid, ask) of the pair's "underlying", its "etf" and "call" (the index's call) at the
    bar's close."""


@dataclass(slots=True)
class OpenPair:
    """A pair entered (or being entered): its legs, and the hedge and prices at entry."""

    legs: PairLegs
    entry_intent_id: str
    entry_ts: float
    entry_z: float
    entry_spread: float
    entry_beta: float
    entry_alpha: float
    entry_tltw_mid: float
    entry_unit_mid: float
    last_call_mid: float = math.nan

    def spread_pnl_log(self, x: float, y: float) -> float:
        """Log-spread gain since entry measured with the entry hedge (positive = profit)."""
        sign = 1.0 if self.legs.direction is SpreadPosition.LONG_SPREAD else -1.0
        return sign * ((y - self.entry_beta * x - self.entry_alpha) - self.entry_spread)

    def to_state(self) -> dict[str, Any]:
        return {
            "legs": self.legs.to_state(),
            "entry_intent_id": self.entry_intent_id,
            "entry_ts": self.entry_ts,
            "entry_z": self.entry_z,
            "entry_spread": self.entry_spread,
            "entry_beta": self.entry_beta,
            "entry_alpha": self.entry_alpha,
            "entry_tltw_mid": self.entry_tltw_mid,
            "entry_unit_mid": self.entry_unit_mid,
            "last_call_mid": self.last_call_mid,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> OpenPair:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in state.items() if k in names}  # a field since dropped
        values["legs"] = PairLegs.from_state(state["legs"])
        return cls(**values)


DONE_ORDER_STATUSES = frozenset(
    {"Filled", "Cancelled", "ApiCancelled", "Inactive", "Rejected", "Lost"}
)
"""Order event statuses after which IB works the order no more."""


@dataclass(slots=True)
class WorkingIntent:
    """An approved intent whose orders IB may still be working: its legs' latest events."""

    intent_id: str
    purpose: IntentPurpose
    legs: int
    events: dict[str, OrderEvent] = dataclasses.field(default_factory=dict)
    """leg kind -> the latest order event of that leg."""

    @property
    def done(self) -> bool:
        return len(self.events) == self.legs and all(
            e.status in DONE_ORDER_STATUSES for e in self.events.values()
        )

    def filled(self, kind: str) -> int:
        event = self.events.get(kind)
        return 0 if event is None else round(event.filled)

    def statuses(self) -> str:
        return ", ".join(
            f"{k} {e.status} {e.filled:g}/{e.quantity:g}" for k, e in sorted(self.events.items())
        )

    def to_state(self) -> dict[str, Any]:
        from trading.bus import to_dict

        return {
            "intent_id": self.intent_id,
            "purpose": self.purpose.value,
            "legs": self.legs,
            "events": {k: to_dict(e) for k, e in self.events.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WorkingIntent:
        events = {k: _message_from_state(v, OrderEvent) for k, v in state["events"].items()}
        return cls(state["intent_id"], IntentPurpose(state["purpose"]), int(state["legs"]), events)


def intent_state(intent: OrderIntent) -> dict[str, Any]:
    from trading.bus import to_dict

    return to_dict(intent)


def intent_from_state(state: dict[str, Any]) -> OrderIntent:
    return _message_from_state(state, OrderIntent)


def _message_from_state(state: dict[str, Any], kind: type[M]) -> M:
    import orjson

    from trading.bus import decode

    return decode(orjson.dumps({**state, "kind": kind.KIND}), kind)

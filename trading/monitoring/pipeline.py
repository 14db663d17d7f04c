"""Latency through the order pipeline and legging, from the timestamps the messages carry (pure).

The four latencies (seconds, each writer's clock; a negative value means clock skew between
hosts and is returned as is for the caller to count rather than observe):

- tick_to_intent: `OrderIntent.ts` - `ts_recv` of the quote that triggered it. The strategy may
  name that tick in `why["tick_ts_recv"]`; otherwise the caller passes the receive time of the
  newest quote of the pair recorded before the intent.
- intent_to_decision: `RiskDecision.ts` - `OrderIntent.ts` (every decision, approved or not).
- decision_to_order: `OrderEvent.ts` of the first event of each leg in a SENT status -
  `RiskDecision.ts` of the approving decision (labelled by leg).
- tick_to_order: the same first order event - the intent's tick (labelled by leg).

Legging: an intent with two or more legs whose filled fractions (filled / quantity of each
leg's order) differ. Legs filling moments apart is normal; an intent counts as legged once the
difference has lasted `timeout_s`. It stops counting when the fractions agree again, or when a
later UNWIND or FLATTEN intent for the same pair shows that someone acted on it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

from trading.bus import IntentPurpose, OrderEvent, OrderIntent, RiskDecision

SENT_STATUSES = frozenset({"ApiPending", "PendingSubmit", "PreSubmitted", "Submitted", "Filled"})
"""IB order statuses that mean the order reached the broker (the "order sent" moment)."""

TICK_FIELD = "tick_ts_recv"
"""Key in `OrderIntent.why` for the receive time of the tick that triggered the intent."""

_RESOLVING_PURPOSES = frozenset({IntentPurpose.UNWIND, IntentPurpose.FLATTEN})
_FILL_TOLERANCE = 1e-9


class LatencyStage(StrEnum):
    TICK_TO_INTENT = "tick_to_intent"
    INTENT_TO_DECISION = "intent_to_decision"
    DECISION_TO_ORDER = "decision_to_order"
    TICK_TO_ORDER = "tick_to_order"


@dataclass(frozen=True, slots=True)
class LatencySample:
    stage: LatencyStage
    seconds: float
    intent_id: str
    leg: str = ""


def tick_time_of(intent: OrderIntent) -> float | None:
    """The intent's own record of its triggering tick, if it carries a finite number."""
    value = intent.why.get(TICK_FIELD)
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(value)
    return None


@dataclass(slots=True)
class _Tracked:
    intent_ts: float
    tick_ts: float | None
    decision_ts: float | None = None


class PipelineLatency:
    """Matches intents, decisions and order events by intent_id; remembers `capacity` intents."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._intents: OrderedDict[str, _Tracked] = OrderedDict()
        self._sent: OrderedDict[tuple[str, str], None] = OrderedDict()

    def on_intent(
        self, intent: OrderIntent, tick_ts_recv: float | None = None
    ) -> list[LatencySample]:
        tick = tick_time_of(intent)
        if tick is None:
            tick = tick_ts_recv
        self._intents[intent.intent_id] = _Tracked(intent.ts, tick)
        self._intents.move_to_end(intent.intent_id)
        while len(self._intents) > self.capacity:
            self._intents.popitem(last=False)
        if tick is None:
            return []
        return [LatencySample(LatencyStage.TICK_TO_INTENT, intent.ts - tick, intent.intent_id)]

    def on_decision(self, decision: RiskDecision) -> list[LatencySample]:
        tracked = self._intents.get(decision.intent_id)
        if tracked is None or tracked.decision_ts is not None:
            return []
        if decision.approved:
            tracked.decision_ts = decision.ts
        seconds = decision.ts - tracked.intent_ts
        return [LatencySample(LatencyStage.INTENT_TO_DECISION, seconds, decision.intent_id)]

    def on_order_event(self, event: OrderEvent) -> list[LatencySample]:
        if event.status not in SENT_STATUSES:
            return []
        key = (event.intent_id, event.leg)
        if key in self._sent:
            return []
        tracked = self._intents.get(event.intent_id)
        if tracked is None or tracked.decision_ts is None:
            return []
        self._sent[key] = None
        while len(self._sent) > 2 * self.capacity:
            self._sent.popitem(last=False)
        samples = [
            LatencySample(
                LatencyStage.DECISION_TO_ORDER,
                event.ts - tracked.decision_ts,
                event.intent_id,
                event.leg,
            )
        ]
        if tracked.tick_ts is not None:
            samples.append(
                LatencySample(
                    LatencyStage.TICK_TO_ORDER,
                    event.ts - tracked.tick_ts,
                    event.intent_id,
                    event.leg,
                )
            )
        return samples


@dataclass(frozen=True, slots=True)
class LeggedIntent:
    intent_id: str
    pair_id: str
    since_s: float
    """When the legs' filled fractions started to differ (the order event's ts)."""
    fill_fractions: tuple[tuple[str, float], ...]
    """(leg, filled / quantity) for each leg of the intent."""


@dataclass(slots=True)
class _Legs:
    pair_id: str
    ts: float
    quantities: dict[str, float]
    filled: dict[str, float]
    diverged_since: float | None = None


class LegTracker:
    """Follows the fills of every multi-leg intent; see the module docstring."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._intents: OrderedDict[str, _Legs] = OrderedDict()

    def on_intent(self, intent: OrderIntent) -> None:
        if intent.purpose in _RESOLVING_PURPOSES:
            for tracked in self._intents.values():
                if tracked.pair_id == intent.pair_id and tracked.diverged_since is not None:
                    tracked.diverged_since = None
                    tracked.quantities = {}  # acted on: never legged again
        if len(intent.legs) < 2:
            return
        quantities = {leg.kind.value: float(leg.quantity) for leg in intent.legs}
        filled = dict.fromkeys(quantities, 0.0)
        self._intents[intent.intent_id] = _Legs(intent.pair_id, intent.ts, quantities, filled)
        while len(self._intents) > self.capacity:
            self._intents.popitem(last=False)

    def on_order_event(self, event: OrderEvent) -> None:
        tracked = self._intents.get(event.intent_id)
        if tracked is None or event.leg not in tracked.quantities:
            return
        if event.quantity > 0:
            tracked.quantities[event.leg] = event.quantity
        tracked.filled[event.leg] = event.filled
        fractions = _fractions(tracked)
        diverged = max(fractions.values()) - min(fractions.values()) > _FILL_TOLERANCE
        if not diverged:
            tracked.diverged_since = None
            if min(fractions.values()) >= 1.0 - _FILL_TOLERANCE:
                del self._intents[event.intent_id]  # complete: nothing more to watch
        elif tracked.diverged_since is None:
            tracked.diverged_since = event.ts

    def legged(self, now_s: float, timeout_s: float) -> list[LeggedIntent]:
        """Intents whose legs have filled unequally for at least `timeout_s` at `now_s`."""
        out = []
        for intent_id, tracked in self._intents.items():
            since = tracked.diverged_since
            if since is None or not tracked.quantities or now_s - since < timeout_s:
                continue
            fractions = tuple(sorted(_fractions(tracked).items()))
            out.append(LeggedIntent(intent_id, tracked.pair_id, since, fractions))
        return out


def _fractions(tracked: _Legs) -> dict[str, float]:
    return {
        leg: (tracked.filled[leg] / quantity if quantity > 0 else 0.0)
        for leg, quantity in tracked.quantities.items()
    }

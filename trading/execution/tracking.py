"""Order tracking: each intent leg's IB order, its status and fills, the order rate, legging.

Pure: no I/O, no clock reads (every method takes `now`, epoch seconds).

    tracker = OrderTracker()
    tracker.register(intent, now)                     # before placeOrder: legs are PLACING
    tracker.assign_order_id(intent_id, leg_index, order_id)
    tracker.on_status(StatusUpdate(order_id, "Submitted", 0, 3, 0), now)
    tracker.on_execution(fill)                        # an execution of one of our orders
    tracker.adopt(intent_id, leg_index, status, ...)  # IB's answer to a reconciliation query
    tracker.open_legs(); tracker.orders_sent_since(now - 60)
    tracker.legging_breaches(now, timeout_s=30)      # one leg filled, the other not in time

Quantities are in the leg's own units: buy-write units (100 TLT + 1 call) for a BUY_WRITE leg,
shares for a STOCK leg. IB reports a combo's filled quantity in combo units, so `filled` of a
BAG order compares directly with the leg quantity.

What IB reports is the truth about an order: a leg's filled quantity is the larger of IB's
orderStatus `filled` and the sum of the executions of its order (matched by orderRef and the
order's id or permId, the BAG-level execution for a buy-write), both lower bounds of the same
fact that arrive in either order. A leg sent to IB that IB says it does not know (after a
reconnect, or when an acknowledgement never came) was never received: it is LOST, a done state.
A LOST leg that IB reports after all is adopted back (its status and fills are IB's).

Legging: an intent's legs are meant to fill in proportion. The fill fraction of a leg is
filled / quantity; the intent is legged when the fractions differ. The legging clock starts at
the later of the intent's first fill and the moment its last leg was acknowledged by IB (or
resolved as lost): a leg placed late (after a restart, say) gets the whole timeout, and a fill
from before a restart does not breach a leg sent just now. A breach is reported once the
clock has run for the timeout with the fractions still apart, or at once when every leg is done.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from trading.bus import (
    IntentLeg,
    IntentPurpose,
    LegKind,
    OrderEvent,
    OrderIntent,
    Side,
    SignalAction,
)
from trading.domain.orders import StatusUpdate

__all__ = [
    "DONE_LEG_STATES",
    "LegState",
    "LeggingBreach",
    "OrderTracker",
    "TrackedLeg",
    "leg_state_from_ib",
    "order_event",
]


class LegState(StrEnum):
    PLACING = "placing"  # recorded durably, placeOrder not yet acknowledged by IB
    WORKING = "working"  # IB has it (PreSubmitted/Submitted), possibly partly filled
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"  # IB refused it (Inactive, or an error before any fill)
    LOST = "lost"  # sent, but IB does not know it: never received (the connection died)


DONE_LEG_STATES = frozenset({LegState.FILLED, LegState.CANCELLED, LegState.REJECTED, LegState.LOST})

_IB_STATES = {
    "PendingSubmit": LegState.PLACING,
    "ApiPending": LegState.PLACING,
    "PreSubmitted": LegState.WORKING,
    "Submitted": LegState.WORKING,
    "PendingCancel": LegState.WORKING,
    "ApiUpdate": LegState.WORKING,
    "Filled": LegState.FILLED,
    "Cancelled": LegState.CANCELLED,
    "ApiCancelled": LegState.CANCELLED,
    "Inactive": LegState.REJECTED,
    "ValidationError": LegState.WORKING,  # ib_async: a warning on a live order; it still works
    "Rejected": LegState.REJECTED,
    "Lost": LegState.LOST,  # ours: IB never received the order
}


def leg_state_from_ib(status: str) -> LegState:
    """Map an IB order status (or our "Rejected") to a leg state; unknown raises ValueError."""
    try:
        return _IB_STATES[status]
    except KeyError:
        raise ValueError(f"order status {status!r} is not an IB order status") from None


@dataclass(slots=True)
class TrackedLeg:
    """One leg of an intent and the IB order that carries it (mutable, owned by the tracker)."""

    intent_id: str
    pair_id: str
    purpose: IntentPurpose
    leg_index: int
    leg: IntentLeg
    placed_at: float
    order_id: int = 0
    perm_id: int = 0
    state: LegState = LegState.PLACING
    ib_status: str = "PendingSubmit"
    filled: float = 0.0
    remaining: float = 0.0
    avg_fill_price: float = 0.0
    first_fill_at: float | None = None
    updated_at: float = 0.0
    message: str = ""
    cancel_requested: bool = False
    sent_at: float | None = None
    """When placeOrder was handed to the socket (None: not sent by this leg record)."""
    acknowledged_at: float | None = None
    """When IB first answered for the order (openOrder/orderStatus, an execution, or a
    reconciliation that found it); or when it was resolved as lost."""
    executions: dict[str, float] = field(default_factory=dict)
    """exec_id -> units of this leg's order's executions (BAG-level ones for a buy-write)."""

    @property
    def done(self) -> bool:
        return self.state in DONE_LEG_STATES

    @property
    def executed(self) -> float:
        """The sum of the executions seen for this leg's order."""
        return math.fsum(self.executions.values())

    @property
    def fill_fraction(self) -> float:
        return self.filled / self.leg.quantity

    @property
    def open_quantity(self) -> float:
        """Quantity that may still fill: the unfilled rest while the order lives, else 0."""
        return 0.0 if self.done else max(self.leg.quantity - self.filled, 0.0)

    def to_state(self) -> dict[str, Any]:
        return {
            "intent_id": self.intent_id,
            "pair_id": self.pair_id,
            "purpose": str(self.purpose),
            "leg_index": self.leg_index,
            "leg": _leg_to_dict(self.leg),
            "placed_at": self.placed_at,
            "order_id": self.order_id,
            "perm_id": self.perm_id,
            "state": str(self.state),
            "ib_status": self.ib_status,
            "filled": self.filled,
            "remaining": self.remaining,
            "avg_fill_price": self.avg_fill_price,
            "first_fill_at": self.first_fill_at,
            "updated_at": self.updated_at,
            "message": self.message,
            "cancel_requested": self.cancel_requested,
            "sent_at": self.sent_at,
            "acknowledged_at": self.acknowledged_at,
            "executions": dict(self.executions),
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> TrackedLeg:
        return cls(
            intent_id=d["intent_id"],
            pair_id=d["pair_id"],
            purpose=IntentPurpose(d["purpose"]),
            leg_index=int(d["leg_index"]),
            leg=_leg_from_dict(d["leg"]),
            placed_at=float(d["placed_at"]),
            order_id=int(d["order_id"]),
            perm_id=int(d["perm_id"]),
            state=LegState(d["state"]),
            ib_status=d["ib_status"],
            filled=float(d["filled"]),
            remaining=float(d["remaining"]),
            avg_fill_price=float(d["avg_fill_price"]),
            first_fill_at=d["first_fill_at"],
            updated_at=float(d["updated_at"]),
            message=d.get("message", ""),
            cancel_requested=bool(d.get("cancel_requested", False)),
            sent_at=d.get("sent_at"),
            acknowledged_at=d.get("acknowledged_at"),
            executions={str(k): float(v) for k, v in d.get("executions", {}).items()},
        )


def _leg_to_dict(leg: IntentLeg) -> dict[str, Any]:
    return {
        "kind": str(leg.kind),
        "symbol": leg.symbol,
        "side": str(leg.side),
        "quantity": leg.quantity,
        "limit_price": leg.limit_price,
        "con_id": leg.con_id,
        "option_con_id": leg.option_con_id,
        "option_expiry": leg.option_expiry,
        "option_strike": leg.option_strike,
    }


def _leg_from_dict(d: dict[str, Any]) -> IntentLeg:
    return IntentLeg(
        kind=LegKind(d["kind"]),
        symbol=d["symbol"],
        side=Side(d["side"]),
        quantity=int(d["quantity"]),
        limit_price=float(d["limit_price"]),
        con_id=int(d["con_id"]),
        option_con_id=d.get("option_con_id"),
        option_expiry=d.get("option_expiry"),
        option_strike=d.get("option_strike"),
    )


@dataclass(frozen=True, slots=True)
class LeggingBreach:
    """An intent whose legs did not fill in proportion within the timeout.

    `fractions[i]` is leg i's filled / quantity. `complete` says which way to repair it:
    True = bring the lagging legs up to the most-filled fraction (exits, stops: getting out
    matters more), False = unwind the leading legs down to the least-filled fraction (entries:
    do not hold an unhedged leg).
    """

    intent_id: str
    pair_id: str
    purpose: IntentPurpose
    fractions: tuple[float, ...]
    since: float
    """When the legging clock started (see the module docstring)."""
    complete: bool


@dataclass
class OrderTracker:
    """Every intent leg placed (by intent id and leg index) and its IB order (by order id)."""

    legs: dict[tuple[str, int], TrackedLeg] = field(default_factory=dict)
    by_order_id: dict[int, TrackedLeg] = field(default_factory=dict)
    sent_times: deque[float] = field(default_factory=deque)
    legging_handled: set[str] = field(default_factory=set)
    intents: dict[str, OrderIntent] = field(default_factory=dict)

    # placing --------------------------------------------------------------------------------

    def register(self, intent: OrderIntent, now: float) -> list[TrackedLeg]:
        """Record every leg of an approved intent as PLACING (idempotent per intent)."""
        self.intents[intent.intent_id] = intent
        out = []
        for i, leg in enumerate(intent.legs):
            key = (intent.intent_id, i)
            tracked = self.legs.get(key)
            if tracked is None:
                tracked = TrackedLeg(
                    intent.intent_id,
                    intent.pair_id,
                    intent.purpose,
                    i,
                    leg,
                    placed_at=now,
                    remaining=float(leg.quantity),
                    updated_at=now,
                )
                self.legs[key] = tracked
            out.append(tracked)
        return out

    def assign_order_id(self, intent_id: str, leg_index: int, order_id: int, now: float) -> None:
        """The IB order id the leg was sent with; counts one order towards the rate."""
        tracked = self.legs[(intent_id, leg_index)]
        if tracked.order_id and tracked.order_id != order_id:
            self.by_order_id.pop(tracked.order_id, None)
        tracked.order_id = order_id
        self.by_order_id[order_id] = tracked
        self.sent_times.append(now)

    def mark_sent(self, intent_id: str, leg_index: int, now: float) -> None:
        """The leg's placeOrder was handed to the socket."""
        self.legs[(intent_id, leg_index)].sent_at = now

    def forget_order_id(self, tracked: TrackedLeg) -> None:
        """A leg IB confirmed it never received before it was sent: send it afresh."""
        self.by_order_id.pop(tracked.order_id, None)
        tracked.order_id = 0
        tracked.sent_at = None

    def note_order_sent(self, now: float) -> None:
        """Count an order that is not an intent leg (a cancel is not counted)."""
        self.sent_times.append(now)

    def orders_sent_since(self, since: float) -> int:
        """Orders sent at or after `since` (older entries are dropped)."""
        while self.sent_times and self.sent_times[0] < since - 3600.0:
            self.sent_times.popleft()
        return sum(1 for t in self.sent_times if t >= since)

    # IB updates -----------------------------------------------------------------------------

    def on_status(self, update: StatusUpdate, now: float) -> TrackedLeg | None:
        """Apply an IB order status; returns the leg, or None for an order we did not place."""
        tracked = self.by_order_id.get(update.order_id)
        if tracked is None:
            return None
        return self.apply_status(tracked, update, now)

    def apply_status(self, tracked: TrackedLeg, update: StatusUpdate, now: float) -> TrackedLeg:
        """Apply an IB order status to a leg (found by order id, or by orderRef and contract
        when IB reports a completed order without its order id).

        A done state is final against a live one (a late "Submitted" after "Filled" does not
        reopen a leg), except LOST: a leg believed lost that IB reports is IB's after all.
        """
        filled, remaining = update.filled, update.remaining
        for name, value in (("filled", filled), ("remaining", remaining)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"order {tracked.order_id} {name} must be finite and >= 0, got {value!r}"
                )
        state = leg_state_from_ib(update.status)
        if update.perm_id:
            tracked.perm_id = update.perm_id
        if state is not LegState.PLACING and tracked.acknowledged_at is None:
            tracked.acknowledged_at = now
        if tracked.done and state not in DONE_LEG_STATES and tracked.state is not LegState.LOST:
            return tracked
        if state is LegState.PLACING and tracked.state is not LegState.PLACING:
            return tracked  # the client's own PendingSubmit echo, after IB answered
        tracked.ib_status = update.status
        tracked.state = state
        self._set_filled(tracked, filled, now)
        if filled >= tracked.filled:
            tracked.remaining = remaining
        if update.avg_fill_price > 0:
            tracked.avg_fill_price = update.avg_fill_price
        if update.message:
            tracked.message = update.message
        tracked.updated_at = now
        return tracked

    def on_execution(
        self, intent_id: str, order_id: int, perm_id: int, sec_type: str, con_id: int,
        exec_id: str, units: float, now: float,
    ) -> TrackedLeg | None:  # fmt: skip
        """An execution of one of our orders (matched by orderRef, the order's id or permId,
        and the contract: the BAG-level execution of a buy-write, the stock's own execution of
        a STOCK leg); returns the leg, None when it is not one we track (a BAG's per-leg
        executions are not counted: its BAG-level one is)."""
        for tracked in self.legs_of(intent_id):
            same_order = (order_id and order_id == tracked.order_id) or (
                perm_id and perm_id == tracked.perm_id
            )
            if tracked.leg.kind is LegKind.BUY_WRITE:
                matches = sec_type == "BAG"
            else:
                matches = sec_type == "STK" and con_id == tracked.leg.con_id
            if not (matches and same_order):
                continue
            if exec_id in tracked.executions:
                return tracked
            tracked.executions[exec_id] = units
            if perm_id and not tracked.perm_id:
                tracked.perm_id = perm_id
            if tracked.acknowledged_at is None:
                tracked.acknowledged_at = now
            self._set_filled(tracked, tracked.executed, now)
            if tracked.state in (LegState.PLACING, LegState.LOST):
                tracked.state = LegState.WORKING
                tracked.ib_status = "Submitted"
            if tracked.filled >= tracked.leg.quantity - 1e-9 and not tracked.done:
                tracked.state, tracked.ib_status = LegState.FILLED, "Filled"
            tracked.updated_at = now
            return tracked
        return None

    @staticmethod
    def _set_filled(tracked: TrackedLeg, filled: float, now: float) -> None:
        """Raise the leg's filled quantity to ``filled`` (never lowers it) and, with the
        executions known, to their sum."""
        best = max(filled, tracked.executed)
        if best > tracked.filled:
            if tracked.first_fill_at is None:
                tracked.first_fill_at = now
            tracked.filled = best
            tracked.remaining = max(tracked.leg.quantity - best, 0.0)

    def mark_lost(self, tracked: TrackedLeg, now: float, message: str) -> None:
        """IB does not know this sent leg: it never received it (done, filled as IB says)."""
        tracked.state = LegState.LOST
        tracked.ib_status = "Lost"
        tracked.message = message
        if tracked.acknowledged_at is None:
            tracked.acknowledged_at = now  # resolved: the legging clock may run
        tracked.updated_at = now

    def on_rejected(self, order_id: int, message: str, now: float) -> TrackedLeg | None:
        """IB refused the order (an error code before any fill)."""
        tracked = self.by_order_id.get(order_id)
        # ib_async reports a refused order as Cancelled first, then the error: a leg that was
        # never filled and not cancelled by us becomes REJECTED either way.
        if tracked is None or tracked.state in (LegState.FILLED, LegState.REJECTED, LegState.LOST):
            return tracked
        if tracked.state is LegState.CANCELLED and (tracked.filled > 0 or tracked.cancel_requested):
            return tracked
        tracked.state = LegState.REJECTED if tracked.filled == 0 else LegState.CANCELLED
        tracked.ib_status = "Rejected" if tracked.filled == 0 else "Cancelled"
        tracked.message = message
        tracked.updated_at = now
        return tracked

    # queries --------------------------------------------------------------------------------

    def leg(self, intent_id: str, leg_index: int) -> TrackedLeg | None:
        return self.legs.get((intent_id, leg_index))

    def legs_of(self, intent_id: str) -> list[TrackedLeg]:
        """The intent's tracked legs by leg index (looked up by key: the decision of every
        intent asks, and the tracker holds every leg of the last day)."""
        intent = self.intents.get(intent_id)
        if intent is not None:
            found = (self.legs.get((intent_id, i)) for i in range(len(intent.legs)))
            return [t for t in found if t is not None]
        return sorted(
            (t for (iid, _), t in self.legs.items() if iid == intent_id),
            key=lambda t: t.leg_index,
        )

    def open_legs(self) -> list[TrackedLeg]:
        return [t for t in self.legs.values() if not t.done]

    def open_quantity(self, kind: LegKind, con_id: int, side: Side) -> float:
        """Unfilled quantity of working orders on one instrument and side (worst-case exposure)."""
        return sum(
            t.open_quantity
            for t in self.legs.values()
            if t.leg.kind is kind and t.leg.con_id == con_id and t.leg.side is side
        )

    def legging_breaches(self, now: float, timeout_s: float) -> list[LeggingBreach]:
        """Intents legged for longer than `timeout_s` (see the module docstring for when the
        clock starts), or legged with every leg done; each reported until handled."""
        by_intent: dict[str, list[TrackedLeg]] = {}
        for (iid, _), t in self.legs.items():
            if iid not in self.legging_handled:
                by_intent.setdefault(iid, []).append(t)
        out = []
        for iid, legs in by_intent.items():
            if len(legs) < 2:
                continue
            legs.sort(key=lambda t: t.leg_index)
            fills = [t.first_fill_at for t in legs if t.first_fill_at is not None]
            if not fills:
                continue
            fractions = tuple(t.fill_fraction for t in legs)
            if max(fractions) - min(fractions) < 1e-12:
                continue
            all_done = all(t.done for t in legs)
            acks = [t.acknowledged_at for t in legs]
            if not all_done and any(a is None for a in acks):
                continue  # a leg IB has not answered for yet: it may not even be working
            since = max(min(fills), *(a for a in acks if a is not None))
            if now - since < timeout_s and not all_done:
                continue
            purpose = legs[0].purpose
            complete = purpose in (IntentPurpose.EXIT, IntentPurpose.STOP, IntentPurpose.FLATTEN)
            out.append(LeggingBreach(iid, legs[0].pair_id, purpose, fractions, since, complete))
        return out

    def unacknowledged(self, now: float, bound_s: float) -> list[TrackedLeg]:
        """Legs sent at least `bound_s` ago that IB has not answered for."""
        return [
            t
            for t in self.legs.values()
            if not t.done
            and t.sent_at is not None
            and t.acknowledged_at is None
            and now - t.sent_at >= bound_s
        ]

    def mark_legging_handled(self, intent_id: str) -> None:
        self.legging_handled.add(intent_id)

    def forget_done(self, older_than: float) -> None:
        """Drop intents whose legs are all done and last changed before `older_than`."""
        kept = {
            iid for (iid, _), t in self.legs.items() if not (t.done and t.updated_at < older_than)
        }
        done_intents = {iid for iid, _ in self.legs} - kept
        for key in [k for k in self.legs if k[0] in done_intents]:
            tracked = self.legs.pop(key)
            self.by_order_id.pop(tracked.order_id, None)
        for iid in done_intents:
            self.intents.pop(iid, None)
            self.legging_handled.discard(iid)


def reverse_side(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


def action_for(purpose: IntentPurpose) -> SignalAction:
    """The signal action recorded on intents the risk service makes itself."""
    return SignalAction.STOP if purpose is IntentPurpose.STOP else SignalAction.EXIT


def order_event(leg: TrackedLeg, now: float) -> OrderEvent:
    """The audit record of a leg's current state."""
    status = leg.ib_status if leg.state is not LegState.REJECTED else "Rejected"
    return OrderEvent(
        ts=now,
        intent_id=leg.intent_id,
        order_id=leg.order_id,
        perm_id=leg.perm_id,
        leg=str(leg.leg.kind),
        symbol=leg.leg.symbol,
        side=leg.leg.side,
        quantity=float(leg.leg.quantity),
        order_type="LMT",
        limit_price=leg.leg.limit_price,
        status=status,
        filled=leg.filled,
        remaining=leg.remaining,
        avg_fill_price=leg.avg_fill_price,
        message=leg.message,
    )

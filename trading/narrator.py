"""What the system is doing, in plain words, for the terminal of `make run`.

The runner polls Redis (the streams the services write; it never asks them) and says each step
of a trade once: what the strategy asks for and why, a risk rejection and its reasons, when
every leg of an intent is filled (with the average prices) and what the round trip then holds,
and when its fills are flat again, its realized P&L from those fills. As seen in the demo:

    strategy asks to enter SHORT_SPREAD (z +3.82): buy 6 buy-writes (limit 9,002.24), sell
        1,774 TLTW (limit 24.12)
    entered SHORT_SPREAD (z +3.82): bought 6 buy-writes (600 TLT at 90.010, sold 6 TLT
        2026-11-20 91 C at 0.750), sold 1,774 TLTW at 24.140; holding TLT +600, ...
    exited SHORT_SPREAD by EXIT (z +0.43): sold 6 buy-writes (...), bought 1,774 TLTW at 24.037
    round trip closed: realized P&L +125.86 USD from its fills, commissions included

Everything here is read-only and best effort: a Redis that does not answer is retried on the
next poll, and a message that does not decode is skipped (the services own their streams).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from trading import bus as b
from trading.dashboard.contracts import contract_name

ENTRIES = {
    b.SignalAction.ENTER_LONG_SPREAD: "LONG_SPREAD",
    b.SignalAction.ENTER_SHORT_SPREAD: "SHORT_SPREAD",
}

RawReplies = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]
"""XREAD's reply on a client without decode_responses: (stream, [(entry id, fields)])."""


def _usd(value: float) -> str:
    return f"{value:+,.2f} USD"


def _qty(value: float) -> str:
    return f"{value:,.0f}"


def fills_cash_usd(fills: list[b.Fill]) -> float:
    """Cash of the leg executions (sells in, buys out; options times their multiplier) less
    every commission (the combo-level execution's too: it moves no cash, its legs do). For a
    round trip that ends flat, this is its realized P&L."""
    cash = math.fsum(
        (-1.0 if f.side == b.Side.BUY else 1.0) * f.quantity * f.price * f.multiplier
        for f in fills
        if f.sec_type != "BAG"
    )
    return cash - math.fsum(f.commission for f in fills)


def _average(fills: list[b.Fill]) -> float:
    quantity = math.fsum(f.quantity for f in fills)
    return math.fsum(f.quantity * f.price for f in fills) / quantity if quantity else math.nan


@dataclass
class _Trade:
    """One intent and what has happened to it."""

    intent: b.OrderIntent
    fills: list[b.Fill] = field(default_factory=list)
    told_filled: bool = False

    def filled(self) -> bool:
        """Every leg's quantity executed (a buy-write: its shares and its calls)."""
        for leg in self.intent.legs:
            if leg.kind == b.LegKind.STOCK:
                got = math.fsum(
                    f.quantity for f in self.fills if f.sec_type == "STK" and f.con_id == leg.con_id
                )
                if got + 1e-9 < leg.quantity:
                    return False
            else:
                calls = math.fsum(f.quantity for f in self.fills if f.sec_type == "OPT")
                shares = math.fsum(
                    f.quantity for f in self.fills if f.sec_type == "STK" and f.con_id == leg.con_id
                )
                if calls + 1e-9 < leg.quantity or shares + 1e-9 < 100 * leg.quantity:
                    return False
        return True

    def legs_in_words(self) -> str:
        out = []
        for leg in self.intent.legs:
            verb = "bought" if leg.side == b.Side.BUY else "sold"
            if leg.kind == b.LegKind.STOCK:
                mine = [f for f in self.fills if f.sec_type == "STK" and f.con_id == leg.con_id]
                out.append(f"{verb} {_qty(leg.quantity)} {leg.symbol} at {_average(mine):.3f}")
                continue
            shares = [f for f in self.fills if f.sec_type == "STK" and f.con_id == leg.con_id]
            calls = [f for f in self.fills if f.sec_type == "OPT"]
            call = contract_name(calls[0].symbol, "OPT", calls[0].local_symbol) if calls else "?"
            call_verb = "sold" if leg.side == b.Side.BUY else "bought back"
            out.append(
                f"{verb} {_qty(leg.quantity)} buy-writes ({_qty(100 * leg.quantity)} "
                f"{leg.symbol} at {_average(shares):.3f}, {call_verb} {_qty(leg.quantity)} "
                f"{call} at {_average(calls):.3f})"
            )
        return ", ".join(out)


class Narrator:
    """Polls Redis and tells `say` (one line at a time) what happened since the last poll."""

    def __init__(self, client: redis.Redis, say: Callable[[str], None]) -> None:
        self.redis = client
        self.say = say
        self._last: dict[str, str] = {
            b.Streams.INTENTS: "0-0",
            b.Streams.DECISIONS: "0-0",
            b.Streams.FILLS: "0-0",
        }
        self._trades: dict[str, _Trade] = {}
        self._open: _Trade | None = None
        """The entry whose position is held (told when its legs filled, until flat again)."""
        self._round_trip: list[b.Fill] = []

    def poll(self) -> None:
        """Read what is new and say it; a Redis that does not answer is tried next time."""
        try:
            streams: dict[Any, Any] = dict(self._last)  # redis-py's KeyT/StreamIdT
            replies = cast(RawReplies, self.redis.xread(streams, count=500))
        except redis.RedisError:
            return
        for stream, entries in replies or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            for entry_id, fields in entries:
                self._last[name] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                raw = fields.get(b"m")
                if raw is None:
                    continue
                try:
                    self._on(name, raw)
                except b.MessageError:
                    continue

    def _on(self, stream: str, raw: bytes) -> None:
        if stream == b.Streams.INTENTS:
            intent = b.decode(raw, b.OrderIntent)
            self._trades[intent.intent_id] = _Trade(intent)
            self.say(f"strategy asks to {self._intent_words(intent)}")
        elif stream == b.Streams.DECISIONS:
            decision = b.decode(raw, b.RiskDecision)
            if not decision.approved:
                reasons = "; ".join(r.message or r.code for r in decision.reasons)
                self.say(f"risk rejected {decision.intent_id}: {reasons}")
        elif stream == b.Streams.FILLS:
            self._on_fill(b.decode(raw, b.Fill))

    def _intent_words(self, intent: b.OrderIntent) -> str:
        legs = []
        for leg in intent.legs:
            verb = "buy" if leg.side == b.Side.BUY else "sell"
            what = f"{leg.symbol}" if leg.kind == b.LegKind.STOCK else "buy-writes"
            legs.append(f"{verb} {_qty(leg.quantity)} {what} (limit {leg.limit_price:,.2f})")
        action = intent.action
        if action in ENTRIES:
            what = f"enter {ENTRIES[action]}"
        elif intent.purpose in (b.IntentPurpose.EXIT, b.IntentPurpose.STOP):
            what = {b.SignalAction.STOP: "stop out", b.SignalAction.TIME_STOP: "time stop"}.get(
                action, "exit"
            )
        else:
            what = intent.purpose.value  # flatten, roll, unwind
        return f"{what}{self._z(intent)}: {', '.join(legs)}"

    def _on_fill(self, fill: b.Fill) -> None:
        trade = self._trades.get(fill.intent_id)
        if trade is None or trade.told_filled:
            return
        trade.fills.append(fill)
        if not trade.filled():
            return
        trade.told_filled = True
        intent = trade.intent
        self._round_trip += trade.fills
        if intent.action in ENTRIES:
            self._open = trade
            self.say(
                f"entered {ENTRIES[intent.action]}{self._z(intent)}: {trade.legs_in_words()}; "
                f"holding {self._holding()}"
            )
            return
        held = f" {ENTRIES[self._open.intent.action]}" if self._open else ""
        self.say(f"exited{held} by {intent.action.value}{self._z(intent)}: {trade.legs_in_words()}")
        if self._flat():
            self.say(
                f"round trip closed: realized P&L {_usd(fills_cash_usd(self._round_trip))} "
                "from its fills, commissions included (the book's day is on the dashboard)"
            )
            self._round_trip = []
            self._open = None

    @staticmethod
    def _z(intent: b.OrderIntent) -> str:
        z = intent.why.get("z")
        return f" (z {z:+.2f})" if isinstance(z, int | float) and math.isfinite(z) else ""

    def _net(self) -> dict[int, tuple[str, float]]:
        """What the round trip's fills hold: conId -> (the contract's name, quantity)."""
        held: dict[int, tuple[str, float]] = {}
        for f in self._round_trip:
            if f.sec_type == "BAG":
                continue
            signed = f.quantity if f.side == b.Side.BUY else -f.quantity
            name = contract_name(f.symbol, f.sec_type, f.local_symbol)
            held[f.con_id] = (name, held.get(f.con_id, (name, 0.0))[1] + signed)
        return held

    def _holding(self) -> str:
        held = sorted(v for v in self._net().values() if abs(v[1]) > 1e-9)
        return ", ".join(f"{name} {quantity:+,.0f}" for name, quantity in held) or "nothing"

    def _flat(self) -> bool:
        """Flat by the round trip's own fills (the book may lag them by a moment)."""
        return all(abs(quantity) < 1e-9 for _, quantity in self._net().values())

"""The live strategy's conflating inbox: which ticks reach the engine, and in what order. No I/O.

The service (`trading.services.strategy`) puts every tick from the subscription in here and,
when it wakes, takes the batch and feeds it to the engine. Ticks of one instrument in one bar
replace each other, so a burst the engine cannot keep up with is conflated, not queued; a tick
of the next bar does not replace the last one of its bar, so every bar still closes on its own
prices (the live spread would otherwise differ from a replay of the same ticks whenever the
service fell behind across a bar boundary).

The subscription starts before the history is read, so it overlaps the warm-up: the inbox also
remembers the newest tick applied per instrument, and a tick no newer than it is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trading.bus import (
    DataHealth,
    Dividends,
    EtfNav,
    Message,
    OptionChain,
    OptionQuote,
    Quote,
    RiskStatus,
)

Key = tuple[Any, ...]
Stamp = tuple[float, float]


def inbox_key(msg: Message, bar_of: Callable[[float], int]) -> Key:
    """Ticks of one instrument in one bar (``bar_of``: the engine's session-aligned bars)
    replace each other in the inbox; everything else is kept. ``inbox_key(...)[:2]`` names the
    instrument of a tick."""
    if isinstance(msg, Quote | EtfNav):
        return (msg.KIND, msg.symbol, bar_of(msg.ts_exchange))
    if isinstance(msg, OptionQuote):
        return (msg.KIND, msg.con_id, bar_of(msg.ts_exchange))
    if isinstance(msg, DataHealth | Dividends):
        return (msg.KIND, msg.symbol)
    if isinstance(msg, RiskStatus | OptionChain):
        return (msg.KIND,)
    return (msg.KIND, id(msg))


class Inbox:
    """Messages waiting for the engine, keyed by `inbox_key`, each with when it arrived."""

    def __init__(self, bar_of: Callable[[float], int]) -> None:
        self.bar_of = bar_of
        self.waiting: dict[Key, tuple[Message, float]] = {}
        self.newest_bar: int | None = None
        """The latest bar of any tick seen by `opens_bar`."""
        self.latest_tick: dict[Key, tuple[Stamp, Message]] = {}
        """(ts_exchange, ts_recv) and the newest tick applied per instrument. Two ticks can
        share both times (a NAV tick read without a new quote keeps the ticker's stamps), so
        an equal stamp is a duplicate only if the tick is the same."""

    def put(self, msg: Message, arrived: float) -> bool:
        """Add one message; True when it replaced (conflated) one still waiting."""
        key = inbox_key(msg, self.bar_of)
        conflated = key in self.waiting
        self.waiting[key] = (msg, arrived)
        return conflated

    def opens_bar(self, msg: Message) -> bool:
        """True for the first tick of a bar later than every tick before it: the tick that
        closes the bar before it, which the engine should see at once rather than after the
        rest of a burst has been read (`newest_bar` moves to its bar)."""
        if not isinstance(msg, Quote | OptionQuote | EtfNav):
            return False
        bar = self.bar_of(msg.ts_exchange)
        if self.newest_bar is not None and bar <= self.newest_bar:
            return False
        self.newest_bar = bar
        return True

    def take(self) -> list[tuple[Message, float]]:
        """Everything waiting, in exchange-time order (arrival order among equal times and
        messages without one); the inbox is left empty."""
        batch, self.waiting = self.waiting, {}
        return sorted(batch.values(), key=lambda item: getattr(item[0], "ts_exchange", 0.0))

    def applied(self, msg: Message) -> None:
        """Note a message the engine was given: a tick newer than (or as new as) the newest
        of its instrument becomes the newest."""
        if not isinstance(msg, Quote | OptionQuote | EtfNav):
            return
        key = inbox_key(msg, self.bar_of)[:2]
        stamp = (msg.ts_exchange, msg.ts_recv)
        latest = self.latest_tick.get(key)
        if latest is None or stamp >= latest[0]:
            self.latest_tick[key] = (stamp, msg)

    def already_applied(self, msg: Message) -> bool:
        """A tick no newer than the newest one applied for its instrument."""
        if not isinstance(msg, Quote | OptionQuote | EtfNav):
            return False
        latest = self.latest_tick.get(inbox_key(msg, self.bar_of)[:2])
        if latest is None:
            return False
        stamp = (msg.ts_exchange, msg.ts_recv)
        return stamp < latest[0] or (stamp == latest[0] and msg == latest[1])

"""The recorded tape: what the live stack saw, read back from Redis as bus messages to replay.

data-ingestion records every instrument's quotes (``Streams.history``: the backfilled bars, then
the live ticks, at most one per ``ingestion.history_interval_s`` of receive time, so set it to 0
for a complete tape), TLTW's NAV ticks (``Streams.nav_history``) and the distribution
announcements (``Streams.dividends_history``). `read_tape` turns them into the message sequence
the live strategy service consumed, in two phases, because that is how the service starts:

* ``warm_up``: everything stamped before the first bar the live strategy closed live (the end of
  its first published spread point, ``first_live_bar_end_ts``). The service replayed these from
  the history streams (quotes and NAV) with trading off (``StrategyEngine.warming_up``).
  Distributions are not replayed: their latest values are appended at the end, as the service
  seeds them from the latest-value keys after its warm-up.
* ``live``: the rest, in exchange-time order (a stable sort: within one timestamp the quotes'
  order does not matter, since a bar closes on the first message of a later bar with the
  prices as they stood before it). The last bar stays open: the live strategy closes a bar on
  the first message past it, and the tape's end is not one (`backtest_recorded`).

The option chain is not a stream: the latest ``Keys.CHAIN`` opens the tape. A replay picks the
initial call and the rolls among the subscribed calls of that chain; a run in which ingestion
re-centred the strikes is replayed on the final window (the spread points' ``call_con_id``
shows any difference). Data-health changes are not recorded (they carry wall times only): the
tape is a faithful replay only while the live data stayed healthy.

API::

    tape = await read_tape(bus, pair=settings.pair_spec())  # or read_tape_url(redis_url)
    run = backtest_recorded(settings, tape)               # trading.backtest.run
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from trading.bus import (
    Bus,
    Dividends,
    EtfNav,
    Keys,
    Message,
    OptionChain,
    OptionQuote,
    Quote,
    SpreadPoint,
    StreamEntry,
    Streams,
)
from trading.domain.pair import PairSpec

DEFAULT_PAIR = PairSpec()


@dataclass(frozen=True, slots=True)
class RecordedTape:
    """The live strategy's input in the order it consumed it (see the module docstring)."""

    warm_up: tuple[Message, ...]
    live: tuple[Message, ...]
    first_live_bar_end_ts: float | None
    """End (epoch seconds) of the first bar the live strategy closed after its warm-up; None
    when it published no spread point (then every message is in ``live``)."""

    @property
    def messages(self) -> tuple[Message, ...]:
        return self.warm_up + self.live


def message_time(msg: Message) -> float:
    """The exchange time a message is ordered by (``ts`` for those that have no other)."""
    ts = getattr(msg, "ts_exchange", None)
    return float(ts if ts is not None else getattr(msg, "ts", 0.0))


async def _read_all(bus: Bus, stream: str, until_id: str) -> list[Message]:
    entries: list[StreamEntry[Message]] = await bus.read_all(stream, until_id)
    return [e.message for e in entries]


async def _history_streams(bus: Bus, stocks: tuple[str, str]) -> list[str]:
    """The pair's two stocks, then every other instrument's history stream (the options, by
    conId)."""
    pattern = Streams.history("*")
    found = sorted({key.decode() async for key in bus.redis.scan_iter(match=pattern)})
    first = [Streams.history(symbol) for symbol in stocks]
    return [s for s in first if s in found] + [s for s in found if s not in first]


async def first_live_bar_end(bus: Bus) -> float | None:
    """The ts of the oldest spread point the live strategy published (None when none)."""
    oldest = await bus.read_after(Streams.SPREAD, "0", count=1, expect=SpreadPoint)
    return oldest[0].message.ts if oldest else None


async def read_tape(
    bus: Bus, live_from_ts: float | None = None, pair: PairSpec = DEFAULT_PAIR
) -> RecordedTape:
    """Read the recorded tape of ``pair`` (see the module docstring).

    ``live_from_ts``: the end of the first bar closed live; by default the oldest entry of the
    spread stream (capped at 50,000 bars: pass it explicitly for a longer recording).

    The streams are read up to one moment (`Bus.stream_cut`), so a tape read while the stack
    runs is a snapshot: read one after the other to their ends, TLT's stream would stop before
    the NAV stream read a moment later, and the replay would close its last bar on TLT prices
    older than those the live strategy closed it on (seen in the parity test)."""
    cut = await bus.stream_cut()
    quotes: list[Message] = []
    for stream in await _history_streams(bus, pair.stocks):
        quotes += [
            m for m in await _read_all(bus, stream, cut) if isinstance(m, Quote | OptionQuote)
        ]
    nav_stream = Streams.nav_history(pair.etf)
    navs = [m for m in await _read_all(bus, nav_stream, cut) if isinstance(m, EtfNav)]
    dividends = [
        m
        for symbol in pair.stocks
        for m in await _read_all(bus, Streams.dividends_history(symbol), cut)
        if isinstance(m, Dividends)
    ]
    chain = await bus.get_latest(Keys.CHAIN, OptionChain)
    if live_from_ts is None:
        live_from_ts = await first_live_bar_end(bus)
    head: list[Message] = [] if chain is None else [chain]
    if live_from_ts is None:
        live = sorted([*quotes, *navs, *dividends], key=message_time)
        return RecordedTape(tuple(head), tuple(live), None)
    before = sorted((m for m in quotes + navs if message_time(m) < live_from_ts), key=message_time)
    seeded = [
        d
        for symbol in pair.stocks
        for d in _latest_before([x for x in dividends if x.symbol == symbol], live_from_ts)
    ]
    after = sorted(
        (m for m in quotes + navs + dividends if message_time(m) >= live_from_ts),
        key=message_time,
    )
    return RecordedTape(tuple(head + before + seeded), tuple(after), live_from_ts)


def _latest_before(messages: list, ts: float) -> list:
    earlier = [m for m in messages if message_time(m) < ts]
    return sorted(earlier, key=message_time)[-1:]  # stable: the last recorded of a tie


def read_tape_url(
    redis_url: str, live_from_ts: float | None = None, pair: PairSpec = DEFAULT_PAIR
) -> RecordedTape:
    """`read_tape` from a Redis URL, for scripts and tests (opens and closes its own bus)."""

    async def run() -> RecordedTape:
        bus = await Bus.connect(redis_url, "recorded-tape", attempts=5)
        try:
            return await read_tape(bus, live_from_ts, pair)
        finally:
            await bus.close()

    return asyncio.run(run())

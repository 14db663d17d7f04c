"""One read of the system's state from Redis into a frozen `Snapshot`.

Ages are computed later against `Snapshot.now_s` (the monitor's wall clock, epoch seconds), the
clock that wrote the messages' `ts`/`ts_recv`. Stream entry ages use Redis's own clock
(`redis_time_s`), because a stream id is the Redis server's millisecond time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from redis.exceptions import ResponseError

from trading.bus import (
    RETRYABLE,
    Bus,
    DataHealth,
    EtfNav,
    Heartbeat,
    Keys,
    M,
    MessageError,
    OptionQuote,
    OrderEvent,
    PnL,
    Position,
    Quote,
    RiskStatus,
    SpreadPoint,
    Streams,
)
from trading.bus.client import RawEntries

MONITORED_STREAMS: tuple[str, ...] = (
    Streams.INTENTS,
    Streams.DECISIONS,
    Streams.ORDER_EVENTS,
    Streams.FILLS,
    Streams.COMMANDS,
    Streams.ALERTS,
    Streams.SIGNALS,
    Streams.SPREAD,
)
"""Streams whose length, last-entry age and consumer groups are exported."""

DEAD_LETTER_SOURCES: tuple[str, ...] = (Streams.INTENTS, Streams.COMMANDS, Streams.ALERTS)
"""Streams read through consumer groups, whose malformed entries land in a dead-letter stream."""

LAG_COUNT_CAP = 10_000
"""Consumer lag is counted by reading ids past the group's cursor, at most this many."""


@dataclass(frozen=True, slots=True)
class RedisInfo:
    """Redis INFO basics."""

    version: str
    connected_clients: int
    used_memory_bytes: int
    commands_processed: int
    ops_per_second: float
    uptime_s: float
    rejected_connections: int
    evicted_keys: int


@dataclass(frozen=True, slots=True)
class StreamStats:
    """A stream's length and the age of its newest entry (None when empty or absent)."""

    stream: str
    length: int
    last_entry_age_s: float | None


@dataclass(frozen=True, slots=True)
class GroupStats:
    """A consumer group: entries delivered but not acknowledged (`pending`), entries not yet
    delivered (`lag`, capped at LAG_COUNT_CAP) and the ages of the oldest of each."""

    stream: str
    group: str
    consumers: int
    pending: int
    lag: int
    oldest_pending_age_s: float | None
    oldest_undelivered_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The system's state at `now_s`. With `redis_up` false every other field is empty."""

    now_s: float
    redis_up: bool
    redis: RedisInfo | None = None
    heartbeats: dict[str, Heartbeat] = field(default_factory=dict)
    quotes: dict[str, Quote] = field(default_factory=dict)
    options: dict[str, OptionQuote] = field(default_factory=dict)
    navs: dict[str, EtfNav] = field(default_factory=dict)
    health: dict[str, DataHealth] = field(default_factory=dict)
    spread: SpreadPoint | None = None
    risk: RiskStatus | None = None
    positions: dict[str, Position] = field(default_factory=dict)
    pnl: PnL | None = None
    open_orders: dict[str, OrderEvent] = field(default_factory=dict)
    streams: tuple[StreamStats, ...] = ()
    groups: tuple[GroupStats, ...] = ()
    malformed: tuple[str, ...] = ()
    """Keys whose value failed validation (left out of the snapshot, counted as bad messages)."""


def is_option_name(name: str) -> bool:
    """Data-ingestion names an option's health by its conId, a stock's by its symbol."""
    return name.isdigit()


def stream_id_ms(entry_id: bytes | str) -> int:
    """The millisecond part of a stream id "1700000000000-3"."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, _ = text.partition("-")
    if not ms.isdigit():
        raise ValueError(f"stream id must look like <ms>-<seq>, got {text!r}")
    return int(ms)


async def _redis_time_s(bus: Bus) -> float:
    seconds, micros = await bus.redis.time()
    return seconds + micros / 1e6


async def _redis_info(bus: Bus) -> RedisInfo:
    info = await bus.redis.info()
    return RedisInfo(
        version=str(info.get("redis_version", "")),
        connected_clients=int(info.get("connected_clients", 0)),
        used_memory_bytes=int(info.get("used_memory", 0)),
        commands_processed=int(info.get("total_commands_processed", 0)),
        ops_per_second=float(info.get("instantaneous_ops_per_sec", 0)),
        uptime_s=float(info.get("uptime_in_seconds", 0)),
        rejected_connections=int(info.get("rejected_connections", 0)),
        evicted_keys=int(info.get("evicted_keys", 0)),
    )


async def _stream_stats(bus: Bus, stream: str, redis_now_s: float) -> StreamStats:
    length = int(await bus.redis.xlen(stream))
    age = None
    if length:
        newest = cast(RawEntries, await bus.redis.xrevrange(stream, count=1))
        if newest:
            age = max(0.0, redis_now_s - stream_id_ms(newest[0][0]) / 1000.0)
    return StreamStats(stream, length, age)


async def _group_stats(bus: Bus, stream: str, redis_now_s: float) -> list[GroupStats]:
    try:
        groups = await bus.redis.xinfo_groups(stream)
    except ResponseError:  # no such stream yet
        return []
    out = []
    for info in groups:
        name = info["name"].decode() if isinstance(info["name"], bytes) else str(info["name"])
        last = info["last-delivered-id"]
        last = last.decode() if isinstance(last, bytes) else str(last)
        # Redis 6.2 has no "lag" in XINFO GROUPS: count the entries past the group's cursor.
        undelivered = cast(
            RawEntries, await bus.redis.xrange(stream, min=f"({last}", count=LAG_COUNT_CAP)
        )
        pending = await bus.redis.xpending(stream, name)
        oldest = None
        if pending["pending"] and pending["min"] is not None:
            oldest = max(0.0, redis_now_s - stream_id_ms(pending["min"]) / 1000.0)
        waiting = None
        if undelivered:
            waiting = max(0.0, redis_now_s - stream_id_ms(undelivered[0][0]) / 1000.0)
        out.append(
            GroupStats(
                stream=stream,
                group=name,
                consumers=int(info["consumers"]),
                pending=int(info["pending"]),
                lag=len(undelivered),
                oldest_pending_age_s=oldest,
                oldest_undelivered_age_s=waiting,
            )
        )
    return out


async def read_snapshot(
    bus: Bus, symbols: Iterable[str], now_s: float, timeout_s: float = 5.0
) -> Snapshot:
    """Read everything the monitor watches. Redis unreachable (or slower than `timeout_s`)
    gives `Snapshot(now_s, redis_up=False)` instead of waiting for it to come back."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read(bus, tuple(symbols), now_s)
    except (TimeoutError, *RETRYABLE):
        return Snapshot(now_s, redis_up=False)


async def _latest(bus: Bus, key: str, expect: type[M], malformed: list[str]) -> M | None:
    try:
        return await bus.get_latest(key, expect)
    except MessageError:
        malformed.append(key)
        return None


async def _heartbeats(bus: Bus, malformed: list[str]) -> dict[str, Heartbeat]:
    """Like `Bus.heartbeats`, but one malformed heartbeat does not hide the others."""
    keys = [k.decode() async for k in bus.redis.scan_iter(match=f"{Keys.HEARTBEAT_PREFIX}*")]
    out = {}
    for key in sorted(keys):
        beat = await _latest(bus, key, Heartbeat, malformed)
        if beat is not None:
            out[beat.service] = beat
    return out


async def _read(bus: Bus, symbols: tuple[str, ...], now_s: float) -> Snapshot:
    malformed: list[str] = []
    await bus.redis.ping()  # fail fast: the bus helpers below would retry forever
    redis_now_s = await _redis_time_s(bus)
    info = await _redis_info(bus)
    health = await bus.hget_all(Keys.HEALTH, DataHealth)
    watched = sorted(set(symbols) | {name for name in health if not is_option_name(name)})
    quotes: dict[str, Quote] = {}
    navs: dict[str, EtfNav] = {}
    for symbol in watched:
        quote = await _latest(bus, Keys.quote(symbol), Quote, malformed)
        if quote is not None:
            quotes[symbol] = quote
        nav = await _latest(bus, Keys.nav(symbol), EtfNav, malformed)
        if nav is not None:
            navs[symbol] = nav
    streams = list(MONITORED_STREAMS)
    streams += [Streams.history(symbol) for symbol in watched]
    streams += [Streams.dead_letters(stream) for stream in DEAD_LETTER_SOURCES]
    stream_stats = [await _stream_stats(bus, stream, redis_now_s) for stream in streams]
    group_stats: list[GroupStats] = []
    for stream in MONITORED_STREAMS:
        group_stats += await _group_stats(bus, stream, redis_now_s)
    return Snapshot(
        now_s=now_s,
        redis_up=True,
        redis=info,
        heartbeats=await _heartbeats(bus, malformed),
        quotes=quotes,
        options=await bus.hget_all(Keys.OPTION_INDEX, OptionQuote),
        navs=navs,
        health=health,
        spread=await _latest(bus, Keys.SPREAD_LATEST, SpreadPoint, malformed),
        risk=await _latest(bus, Keys.RISK_STATUS, RiskStatus, malformed),
        positions=await bus.hget_all(Keys.POSITIONS, Position),
        pnl=await _latest(bus, Keys.PNL, PnL, malformed),
        open_orders=await bus.hget_all(Keys.OPEN_ORDERS, OrderEvent),
        streams=tuple(stream_stats),
        groups=tuple(group_stats),
        malformed=tuple(malformed),
    )

"""The bus's I/O: one Redis connection pool, typed reads and writes, and the retries that let a
service ride out a Redis restart."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from trading.bus.codec import check_json_value, decode, encode
from trading.bus.messages import MT, Heartbeat, M, Message, MessageError
from trading.bus.names import STREAM_MAXLEN, Keys, Streams
from trading.bus.resp import Pipe, Subscription, raise_errors

log = logging.getLogger("trading.bus")

# --------------------------------------------------------------------------------------------
# I/O

RETRYABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def backoff_delays(base_s: float = 0.05, cap_s: float = 10.0) -> Iterator[float]:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2^n))."""
    n = 0
    while True:
        yield random.uniform(0, min(cap_s, base_s * (2**n)))
        n = min(n + 1, 30)


async def retrying(
    op: Callable[[], Awaitable[Any]], what: str, cap_s: float = 10.0, attempts: int | None = None
) -> Any:
    """Run `op` until it succeeds, backing off on connection errors (forever unless `attempts`)."""
    for i, delay in enumerate(backoff_delays(cap_s=cap_s)):
        try:
            return await op()
        except RETRYABLE as exc:
            if attempts is not None and i + 1 >= attempts:
                raise
            log.warning("redis unavailable during %s: %s; retrying in %.2fs", what, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class StreamEntry(Generic[MT]):
    stream: str
    entry_id: str
    message: MT


class Bus:
    """Async helpers over one Redis connection pool. Every call survives a Redis restart.

    `publish`/`set_latest`/`append` retry with jittered exponential backoff until Redis is back,
    so a restart of Redis delays a service but loses no intent or fill that was being written.
    """

    def __init__(
        self, client: aioredis.Redis, url: str, service: str, max_backoff_s: float = 10.0
    ) -> None:
        self.redis = client
        """redis-py: every read, and the writes that are not on a hot path."""
        self.url = url
        self.service = service
        self.max_backoff_s = max_backoff_s
        self._pipes: dict[str, Pipe] = {}
        """The hot paths' lean connections (trading.bus.resp), opened at their first call and
        again after a loss: "writes" (`execute`, `hset_state_reading`, `Sender`), and "reads"
        (the consumer groups' blocking reads, one at a time: a BLOCK holds its connection)."""
        self._opening = asyncio.Lock()
        self._reading = asyncio.Lock()

    @classmethod
    async def connect(
        cls, url: str, service: str, max_backoff_s: float = 10.0, attempts: int | None = None
    ) -> Bus:
        client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=5,
            socket_keepalive=True,
            health_check_interval=15,
            decode_responses=False,
        )
        bus = cls(client, url, service, max_backoff_s)
        await retrying(client.ping, "connect", cap_s=max_backoff_s, attempts=attempts)
        return bus

    async def close(self) -> None:
        for pipe in self._pipes.values():
            pipe.close()
        await self.redis.aclose()

    @property
    def writes(self) -> Pipe | None:
        """The open connection of the hot writes (None before the first)."""
        return self._pipes.get("writes")

    async def _call(
        self, commands: list[tuple], transaction: bool = False, on: str = "writes"
    ) -> list[Any]:
        """Send ``commands`` on the lean connection ``on`` in one write (as one MULTI/EXEC
        with ``transaction``: the replies are then EXEC's) and return their replies; an error
        reply raises ``ResponseError``. A lost connection raises ``ConnectionError`` (retried
        by the callers) and is opened again at the next call."""
        pipe = self._pipes.get(on)
        if pipe is None or not pipe.healthy:
            async with self._opening:
                pipe = self._pipes.get(on)
                if pipe is None or not pipe.healthy:
                    pipe = self._pipes[on] = await Pipe.open(self.url, f"{self.service}:{on}")
        if transaction:
            replies = raise_errors(await pipe.call([("MULTI",), *commands, ("EXEC",)]))
            return cast(list[Any], replies[-1])
        return raise_errors(await pipe.call(commands))

    async def _retry(self, op: Callable[[], Awaitable[Any]], what: str) -> Any:
        return await retrying(op, what, cap_s=self.max_backoff_s)

    # latest values ----------------------------------------------------------------------------

    async def set_latest(self, key: str, msg: Message, ttl_s: float | None = None) -> None:
        data = encode(msg)
        px = int(ttl_s * 1000) if ttl_s else None
        await self._retry(lambda: self.redis.set(key, data, px=px), f"set {key}")

    async def get_latest(self, key: str, expect: type[M] | None = None) -> M | None:
        raw = await self._retry(lambda: self.redis.get(key), f"get {key}")
        return None if raw is None else decode(raw, expect)

    async def hset_latest(self, key: str, member: str, msg: Message) -> None:
        data = encode(msg)
        await self._retry(lambda: self.redis.hset(key, member, data), f"hset {key}")

    async def hget_all(self, key: str, expect: type[M] | None = None) -> dict[str, M]:
        raw = await self._retry(lambda: self.redis.hgetall(key), f"hgetall {key}")
        out = {}
        for member, value in raw.items():
            try:
                out[member.decode()] = decode(value, expect)
            except MessageError as exc:
                log.error("bad entry %s[%s] skipped: %s", key, member, exc)
        return out

    async def hdel(self, key: str, *members: str) -> None:
        if members:
            await self._retry(lambda: self.redis.hdel(key, *members), f"hdel {key}")

    async def set_state(self, key: str, state: dict[str, Any]) -> None:
        """Store a service's JSON state (NaN and infinities refused)."""
        data = state_json(key, state)
        await self._retry(lambda: self.redis.set(key, data), f"set {key}")

    async def get_state(self, key: str) -> dict[str, Any] | None:
        raw = await self._retry(lambda: self.redis.get(key), f"get {key}")
        return None if raw is None else orjson.loads(raw)

    async def get_list(self, key: str) -> list[bytes]:
        """Every item of the list at ``key`` (none if there is no list)."""
        return cast(
            list[bytes], await self._retry(lambda: self.redis.lrange(key, 0, -1), f"lrange {key}")
        )

    async def hset_state(self, key: str, member: str, state: dict[str, Any]) -> None:
        data = state_json(key, state)
        await self._retry(lambda: self.redis.hset(key, member, data), f"hset {key}")

    async def hset_state_reading(
        self, key: str, member: str, state: dict[str, Any], read_key: str, read: list[str]
    ) -> dict[str, bytes]:
        """HSET a JSON state and HMGET `read` from the hash `read_key` in one MULTI/EXEC: the
        values are those every reader saw at the moment the state was written (absent ones
        left out)."""
        data = state_json(key, state)

        values = (
            await self._retry(
                lambda: self._call([("HSET", key, member, data), ("HMGET", read_key, *read)], True),
                f"hset {key} reading {read_key}",
            )
        )[1]
        return {m: v for m, v in zip(read, values, strict=True) if v is not None}

    async def hget_state(self, key: str, member: str) -> dict[str, Any] | None:
        raw = await self._retry(lambda: self.redis.hget(key, member), f"hget {key}")
        return None if raw is None else orjson.loads(raw)

    async def hget_all_states(self, key: str) -> dict[str, dict[str, Any]]:
        """Every member of a hash of JSON states (a member that is not JSON is skipped)."""
        raw = await self._retry(lambda: self.redis.hgetall(key), f"hgetall {key}")
        out = {}
        for member, value in raw.items():
            try:
                out[member.decode()] = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                log.error("bad state %s[%s] skipped: %s", key, member, exc)
        return out

    # pub/sub ----------------------------------------------------------------------------------

    async def publish(self, channel: str, msg: Message) -> None:
        data = encode(msg)
        await self._retry(lambda: self.redis.publish(channel, data), f"publish {channel}")

    async def subscribe(
        self, *channels: str, subscribed: asyncio.Event | None = None
    ) -> AsyncIterator[tuple[str, Message]]:
        """Yield (channel, message) forever; resubscribes after Redis restarts.

        A malformed message is logged and skipped (it never reaches the caller). Messages
        published while the connection was down are lost by design: read the latest keys.
        ``subscribed`` is set once the SUBSCRIBE has been written to its connection (a reader
        that must not miss what is published after it reads a stream's history subscribes
        first, then reads, then drops what it already has).
        """
        delays: Iterator[float] = iter(())
        names: dict[bytes, str] = {c.encode(): c for c in channels}
        while True:
            subscription: Subscription | None = None
            try:
                subscription = await Subscription.subscribe(
                    self.url, f"{self.service}:subscriber", channels
                )
                if subscribed is not None:
                    subscribed.set()
                delays = iter(())
                while True:
                    for raw_channel, data in await subscription.take():
                        channel = names.get(raw_channel) or raw_channel.decode()
                        try:
                            msg: Message = decode(data)
                        except MessageError as exc:
                            log.error("malformed message on %s skipped: %s", channel, exc)
                            continue
                        yield channel, msg
            except RETRYABLE as exc:
                delay = next(delays, None)
                if delay is None:
                    delays = iter(backoff_delays(cap_s=self.max_backoff_s))
                    delay = next(delays)
                log.warning("subscription to %s lost: %s; retrying in %.2fs", channels, exc, delay)
                await asyncio.sleep(delay)
            finally:
                if subscription is not None:
                    subscription.close()

    # batches ----------------------------------------------------------------------------------

    async def execute(self, batch: Batch, transaction: bool = False) -> None:
        """Send a batch of writes in one round trip (a pipeline, not a transaction), retrying
        the whole batch after a Redis restart: SET/HSET are idempotent; a retried PUBLISH or
        XADD may repeat, which readers of ticks and history tolerate. With `transaction` the
        batch runs as one MULTI/EXEC: a reader never sees part of it (a consistent snapshot,
        such as the book's positions with the P&L computed from them)."""
        if not batch.commands:
            return

        await self._retry(
            lambda: self._call(batch.commands, transaction), f"batch of {len(batch.commands)}"
        )

    # streams ----------------------------------------------------------------------------------

    async def append(self, stream: str, msg: Message, maxlen: int | None = None) -> str:
        """XADD with an approximate cap; returns the entry id."""
        data = encode(msg)
        cap = maxlen if maxlen is not None else STREAM_MAXLEN.get(stream, 100_000)
        entry_id = await self._retry(
            lambda: self.redis.xadd(stream, {b"m": data}, maxlen=cap, approximate=True),
            f"xadd {stream}",
        )
        return entry_id.decode()

    async def read_range(
        self, stream: str, count: int, expect: type[M] | None = None, newest_first: bool = True
    ) -> list[StreamEntry[M]]:
        """The newest `count` entries of a stream (oldest first unless newest_first)."""
        raw = await self._retry(
            lambda: self.redis.xrevrange(stream, count=count), f"xrevrange {stream}"
        )
        entries = self._decode_entries(stream, raw, expect)
        return entries if newest_first else entries[::-1]

    async def read_after(
        self,
        stream: str,
        after_id: str = "0",
        count: int = 10_000,
        expect: type[M] | None = None,
        until_id: str = "+",
    ) -> list[StreamEntry[M]]:
        """Entries after `after_id` (up to `until_id`, inclusive) in order, no consumer group:
        for warm-up and replays."""
        raw = await self._retry(
            lambda: self.redis.xrange(stream, min=_after(after_id), max=until_id, count=count),
            f"xrange {stream}",
        )
        return self._decode_entries(stream, raw, expect)

    async def read_all(
        self,
        stream: str,
        until_id: str = "+",
        expect: type[M] | None = None,
        batch: int = 10_000,
    ) -> list[StreamEntry[M]]:
        """Every entry of a stream up to `until_id` (inclusive; a `stream_cut` for a snapshot of
        several streams), in order, read `batch` at a time."""
        out: list[StreamEntry[M]] = []
        after = "0"
        while True:
            entries = await self.read_after(stream, after, batch, expect, until_id)
            out += entries
            if len(entries) < batch:
                return out
            after = entries[-1].entry_id

    async def read_after_many(
        self, reads: Sequence[tuple[str, str, type[Message] | None]], count: int = 10_000
    ) -> list[list[StreamEntry]]:
        """`read_after` of several streams (stream, after_id, expected type) in one round trip
        on the lean connection: a poller's entries of every stream at one moment."""
        commands = [
            ("XRANGE", stream, _after(after), "+", "COUNT", count) for stream, after, _ in reads
        ]
        replies = await self._retry(
            lambda: self._call(commands), f"xrange {', '.join(r[0] for r in reads)}"
        )
        return [
            self._decode_entries(stream, [(eid, _fields(flat)) for eid, flat in reply], kind)
            for (stream, _, kind), reply in zip(reads, replies, strict=True)
        ]

    async def stream_cut(self) -> str:
        """A stream id that cuts every stream at one moment: every entry appended before this
        call is at or before it, every entry appended after it returns is past it. Stream ids
        are the server's milliseconds, so the cut is the server's millisecond at the call,
        returned once the server's clock has left it. Reading several streams `until_id=` it
        gives one consistent snapshot of streams that are still being written."""

        async def now_ms() -> int:
            seconds, micros = await self._retry(self.redis.time, "time")
            return int(seconds) * 1000 + int(micros) // 1000

        cut = await now_ms()
        while await now_ms() <= cut:
            await asyncio.sleep(0.0005)
        return str(cut)

    def _decode_entries(self, stream: str, raw: list, expect: type[M] | None) -> list:
        out = []
        for entry_id, fields in raw:
            try:
                out.append(StreamEntry(stream, entry_id.decode(), decode(fields[b"m"], expect)))
            except (MessageError, KeyError) as exc:
                log.error("malformed entry %s %s skipped: %s", stream, entry_id, exc)
        return out

    async def ensure_group(self, stream: str, group: str, start_id: str = "0") -> None:
        async def create() -> None:
            try:
                await self.redis.xgroup_create(stream, group, id=start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self._retry(create, f"xgroup create {stream}")

    async def read_group(
        self,
        stream: str,
        group: str,
        consumer: str,
        count: int = 100,
        block_ms: int = 1000,
        pending_first: bool = True,
        expect: type[M] | None = None,
    ) -> list[StreamEntry[M]]:
        """Read from a consumer group: first this consumer's unacknowledged entries (after a
        restart), then new ones. Call `ack` only after acting on an entry.

        A malformed entry is acknowledged and recorded in the dead-letter stream `<stream>:dead`
        so it cannot block the group; nothing is dropped without a trace.
        """
        return await self.read_groups(
            {stream: expect}, group, consumer, count, block_ms, pending_first
        )

    async def read_groups(
        self,
        streams: dict[str, type[Message] | None],
        group: str,
        consumer: str,
        count: int = 100,
        block_ms: int = 1000,
        pending_first: bool = True,
    ) -> list[StreamEntry]:
        """`read_group` over several streams in one XREADGROUP (``streams``: name -> expected
        message type), the entries in the order of ``streams``. One blocking read wakes on
        whichever stream gets an entry first: two blocking reads in turn would each sit out
        their timeout while the other stream's entry waits (and Redis ends a BLOCK only at its
        next cron tick, ~100 ms at the default hz)."""
        start = "0" if pending_first else ">"

        command: list[Any] = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count]
        if start != "0":
            command += ["BLOCK", block_ms]
        command += ["STREAMS", *streams, *[start] * len(streams)]

        async def read() -> list[Any]:
            async with self._reading:
                reply = (await self._call([tuple(command)], on="reads"))[0]
            # RESP2: [[stream, [[id, [field, value, ...] or nil], ...]], ...], or nil.
            return [
                [name, [(eid, _fields(flat)) for eid, flat in entries]]
                for name, entries in reply or []
            ]

        try:
            raw = await self._retry(read, f"xreadgroup {', '.join(streams)}")
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            for stream in streams:
                await self.ensure_group(stream, group)
            raw = await self._retry(read, f"xreadgroup {', '.join(streams)}")
        by_stream: dict[str, list[StreamEntry]] = {stream: [] for stream in streams}
        for name, entries in raw or []:
            stream = name.decode() if isinstance(name, bytes) else name
            expect = streams.get(stream)
            for entry_id, fields in entries:
                eid = entry_id.decode()
                if not fields:  # pending entry deleted by the stream cap
                    await self.ack(stream, group, eid)
                    continue
                try:
                    by_stream[stream].append(StreamEntry(stream, eid, decode(fields[b"m"], expect)))
                except (MessageError, KeyError) as exc:
                    log.error("malformed entry %s %s moved to dead letters: %s", stream, eid, exc)
                    raw_fields = {k: v for k, v in fields.items()}
                    raw_fields[b"error"] = str(exc).encode()
                    dead = Streams.dead_letters(stream)
                    await self._retry(
                        functools.partial(self.redis.xadd, dead, raw_fields, maxlen=10_000),
                        "dead letter",
                    )
                    await self.ack(stream, group, eid)
        out = [entry for stream in streams for entry in by_stream[stream]]
        if pending_first and not out and not raw_has_entries(raw):
            return await self.read_groups(
                streams, group, consumer, count, block_ms, pending_first=False
            )
        return out

    async def ack(self, stream: str, group: str, *entry_ids: str) -> None:
        if entry_ids:
            await self._retry(lambda: self.redis.xack(stream, group, *entry_ids), f"xack {stream}")

    async def pending_count(self, stream: str, group: str) -> int:
        try:
            info = await self._retry(
                lambda: self.redis.xpending(stream, group), f"xpending {stream}"
            )
        except ResponseError:
            return 0
        return int(info["pending"])

    # heartbeats -------------------------------------------------------------------------------

    async def beat(self, hb: Heartbeat, ttl_s: float) -> None:
        await self.set_latest(Keys.heartbeat(hb.service), hb, ttl_s=ttl_s)

    async def heartbeats(self) -> dict[str, Heartbeat]:
        """Every live heartbeat; a service whose key expired is absent (silent)."""

        async def scan() -> list[bytes]:
            return [k async for k in self.redis.scan_iter(match=f"{Keys.HEARTBEAT_PREFIX}*")]

        keys = await self._retry(scan, "scan heartbeats")
        out = {}
        for key in keys:
            hb = await self.get_latest(key.decode(), Heartbeat)
            if hb is not None:
                out[hb.service] = hb
        return out


def state_json(key: str, state: dict[str, Any]) -> bytes:
    """A service's JSON state as stored under ``key``; MessageError on NaN, infinities or a
    value that is not JSON."""
    check_json_value("state", key, state)
    return orjson.dumps(state)


class Batch:
    """Writes queued for `Bus.execute`: the hot path of market data (thousands per second).

    Each method takes the bytes of `encode(msg)`, so a message published, stored and appended
    is validated and serialised once. Names come from `Keys`/`Channels`/`Streams` as elsewhere.
    """

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[tuple] = []

    def __len__(self) -> int:
        return len(self.commands)

    def set_latest(self, key: str, data: bytes) -> None:
        self.commands.append(("SET", key, data))

    def hset_latest(self, key: str, member: str, data: bytes) -> None:
        self.commands.append(("HSET", key, member, data))

    def set_many(self, values: dict[str, bytes]) -> None:
        """Latest values of many keys in one command (MSET)."""
        if values:
            self.commands.append(("MSET", *(x for item in values.items() for x in item)))

    def hset_many(self, key: str, members: dict[str, bytes]) -> None:
        """Many members of one hash in one command (HSET key m1 v1 m2 v2 ...)."""
        if members:
            self.commands.append(("HSET", key, *(x for item in members.items() for x in item)))

    def hset_state(self, key: str, member: str, state: dict[str, Any]) -> None:
        """A JSON state as one member of a hash (`Bus.hset_state`'s write)."""
        self.commands.append(("HSET", key, member, state_json(key, state)))

    def hdel(self, key: str, *members: str) -> None:
        if members:
            self.commands.append(("HDEL", key, *members))

    def publish(self, channel: str, data: bytes) -> None:
        self.commands.append(("PUBLISH", channel, data))

    def replace_list(self, key: str, values: list[bytes]) -> None:
        """The list at ``key`` becomes ``values`` (DEL, then RPUSH if any)."""
        self.commands.append(("DEL", key))
        if values:
            self.commands.append(("RPUSH", key, *values))

    def extend_list(self, key: str, values: list[bytes], keep: int) -> None:
        """Append ``values`` to the list at ``key`` and keep its last ``keep`` items."""
        if values:
            self.commands.append(("RPUSH", key, *values))
        self.commands.append(("LTRIM", key, -keep, -1) if keep else ("DEL", key))

    def append(self, stream: str, data: bytes, maxlen: int | None = None) -> None:
        """XADD with an approximate cap (the stream's STREAM_MAXLEN unless given)."""
        cap = maxlen if maxlen is not None else STREAM_MAXLEN.get(stream, 100_000)
        self.commands.append(("XADD", stream, "MAXLEN", "~", cap, "*", "m", data))


class Sender:
    """Batches written to Redis the moment they are made, from synchronous code (a socket
    callback that must not wait for the event loop), and confirmed in order by a task.

    ``send`` writes the batch on the bus's pipelined connection at once when it can: the
    connection is open and every batch still unconfirmed went out on it too. Otherwise (not
    yet open, lost, or earlier batches waiting to be sent again) the batch waits for
    ``confirmed``, which sends it with the bus's retries. So batches reach Redis in the order
    they were made, across a lost connection too: a batch written on the lost connection is
    sent again (a repeated PUBLISH or XADD, which readers of ticks and history tolerate).
    ``confirmed`` yields each batch's ``note`` once Redis has answered it.

    Once a batch sent with retries is answered, the connection is open again: every batch
    that waited behind it goes out on it at once, in order (`_send_waiting`). Sent one round
    trip each instead, a producer faster than a round trip (the firehose) never caught up:
    every later batch waited behind the first that had found the connection not yet open.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.queue: deque[tuple[Batch, Pipe | None, asyncio.Future[list[Any]] | None, Any]] = (
            deque()
        )
        self.wake = asyncio.Event()

    def send(self, batch: Batch, note: Any = None) -> None:
        pipe = self.bus.writes
        future = None
        if (
            batch.commands
            and pipe is not None
            and pipe.healthy
            and (not self.queue or self.queue[-1][1] is pipe)
        ):
            future = pipe.send(batch.commands)
            # A batch whose sender stops before awaiting it (the service is stopping) must not
            # log "exception never retrieved" for a connection closed under it.
            future.add_done_callback(_retrieve)
        self.queue.append((batch, pipe if future is not None else None, future, note))
        self.wake.set()

    async def confirmed(self) -> AsyncIterator[Any]:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch, _pipe, future, note = self.queue[0]
                try:
                    if future is None:
                        raise RedisConnectionError("not sent yet")
                    raise_errors(await future)
                    self.queue.popleft()
                except RETRYABLE:
                    await self.bus.execute(batch)
                    self.queue.popleft()
                    self._send_waiting()
                yield note

    def _send_waiting(self) -> None:
        """Write every queued batch not yet sent on the open connection, in order, up to the
        first that went out on a lost one (it is sent again, with retries, before any after
        it)."""
        pipe = self.bus.writes
        if pipe is None or not pipe.healthy:
            return
        queue: deque[tuple[Batch, Pipe | None, asyncio.Future[list[Any]] | None, Any]] = deque()
        for i, (batch, sent_on, future, note) in enumerate(self.queue):
            if future is None:
                future = pipe.send(batch.commands)
                future.add_done_callback(_retrieve)
                sent_on = pipe
            elif sent_on is not pipe:
                queue.extend(itertools.islice(self.queue, i, None))
                break
            queue.append((batch, sent_on, future, note))
        self.queue = queue


def _after(entry_id: str) -> str:
    """XRANGE's start for the entries after ``entry_id`` ("0": from the first)."""
    return "-" if entry_id == "0" else f"({entry_id}"


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _fields(flat: list[bytes] | None) -> dict[bytes, bytes] | None:
    """A stream entry's [field, value, ...] as a dict (None: an entry the stream's cap deleted
    while it was pending)."""
    return None if flat is None else dict(zip(flat[::2], flat[1::2], strict=True))


RawEntries = list[tuple[bytes, dict[bytes, bytes]]]
"""An XRANGE/XREVRANGE reply on a bus connection: bytes (no decode_responses), and no deleted
entry (XRANGE never returns one); redis-py's type allows str and None ids and fields for every
client and every stream command, so the readers of raw replies cast to this."""


def raw_has_entries(raw: list | None) -> bool:
    return any(entries for _stream, entries in raw or [])


PUBSUB_BUFFER_LIMIT = "pubsub 256mb 64mb 60"
"""client-output-buffer-limit for pub/sub clients. Redis's default (32mb hard, 8mb for 60 s)
disconnects a slow subscriber in a burst of option ticks; 256mb/64mb rides out a burst while
still cutting off a subscriber that is truly stuck."""


async def configure_server(client: aioredis.Redis) -> None:
    """Apply the pub/sub buffer limit to a Redis we may configure (managed Redis may refuse)."""
    try:
        await client.config_set("client-output-buffer-limit", PUBSUB_BUFFER_LIMIT)
    except ResponseError as exc:
        log.warning("could not set client-output-buffer-limit (%s); set it in redis.conf", exc)

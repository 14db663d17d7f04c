"""Lean Redis connections for the bus's hot paths: pipelined batches and pub/sub.

redis-py's asyncio client spends tens of microseconds of Python per command (a command object,
a connection checkout, an awaited parse per reply): one market step's batch of 34 commands
takes 1,089 us p50 through its pipeline, and 363 us packed by hiredis, written once and read
by a hiredis Reader fed from an asyncio Protocol (bench/bench_bus.py). Each published tick
costs its subscribers the same way. These two classes speak RESP2 directly on one socket each:

* ``Pipe``: commands are written as they are asked for and their replies are matched in
  order (Redis answers a connection's commands in the order it received them). Any number of
  callers may share one; a caller that is cancelled leaves its replies to be read and dropped.
* ``Subscription``: SUBSCRIBE, then every message read off the socket is queued at once; a
  reader takes them from the queue without a wake-up per message. Past ``HIGH_WATER`` queued
  messages the socket is no longer read, so a slow reader leaves the backlog in Redis, whose
  pub/sub output-buffer limit (trading.redis_server) disconnects it as it would redis-py.

A lost connection fails every waiting call with redis-py's ``ConnectionError``, so the bus's
retries (``trading.bus.client.retrying``) treat both clients alike. Error replies are
redis-py's ``ResponseError``. The URL is the bus's: ``redis://``, ``rediss://`` (TLS) and
``unix://``, with user, password and database as redis-py reads them.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, Self, cast

import hiredis
from redis.connection import parse_url
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

Command = Sequence[Any]
"""A command and its arguments: str, bytes, int or float (as hiredis.pack_command takes)."""

CONNECT_TIMEOUT_S = 5.0
KEEPALIVE = {"TCP_KEEPIDLE": 15, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
"""A peer that stopped answering (a half-open connection) is declared lost after about 30 s:
no call waits on it forever, and no slow command is mistaken for a dead server."""
HIGH_WATER = 10_000
"""Queued pub/sub messages at which a subscription stops reading its socket (until taken)."""


def pack(commands: Sequence[Command]) -> bytes:
    return b"".join([hiredis.pack_command(tuple(c)) for c in commands])


def raise_errors(replies: list[Any]) -> list[Any]:
    """The replies, or the first error among them (and inside a transaction's EXEC array).

    A LOADING reply (a restarted server still reading its dataset: it answers every command
    so until it is done) is raised as redis-py raises it, a ``BusyLoadingError``: a
    ConnectionError, which the bus retries. Raised as a plain ResponseError, it ended the
    strategy's and risk's loops after a Redis restart in the fault suite."""
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise _as_raised(reply)
        if isinstance(reply, list):
            for item in reply:
                if isinstance(item, ResponseError):
                    raise _as_raised(item)
    return replies


def _as_raised(error: ResponseError) -> Exception:
    return BusyLoadingError(str(error)) if str(error).startswith("LOADING") else error


class Pipe(asyncio.Protocol):
    """Pipelined commands on one connection; replies in the order the commands were sent."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.paused = False
        """A subscription whose reader fell behind: its socket is not read, its parser's
        buffer not parsed, until its queue is taken."""
        self.waiting: deque[tuple[int, list[Any], asyncio.Future[list[Any]]]] = deque()

    @classmethod
    async def open(cls, url: str, name: str) -> Self:
        """Connect, authenticate and select the database of ``url`` (``name``: CLIENT SETNAME)."""
        options = parse_url(url)
        loop = asyncio.get_running_loop()
        if "path" in options:
            connecting = loop.create_unix_connection(cls, options["path"])
        else:
            connecting = loop.create_connection(
                cls, options.get("host", "localhost"), options.get("port", 6379),
                ssl=_tls(options),
            )  # fmt: skip
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):  # wait_for can swallow a cancel (3.11)
                _transport, protocol = await connecting
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis at {url}: {exc}") from exc
        setup: list[Command] = []
        if options.get("password") is not None:
            user = options.get("username")
            password = options["password"]
            setup.append(("AUTH", user, password) if user else ("AUTH", password))
        if options.get("db"):
            setup.append(("SELECT", options["db"]))
        setup.append(("CLIENT", "SETNAME", name))
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                raise_errors(await protocol.call(setup))
        except BaseException:
            protocol.close()
            raise
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in KEEPALIVE.items():
                if hasattr(socket, option):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)

    @property
    def healthy(self) -> bool:
        return self.lost is None

    async def call(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write and return their replies (error replies included,
        as ``ResponseError`` values: ``raise_errors`` raises the first)."""
        return await self.send(commands)

    def send(self, commands: Sequence[Command]) -> asyncio.Future[list[Any]]:
        """Write ``commands`` now (from synchronous code too) and return the future of their
        replies; raises ``ConnectionError`` if the connection is lost."""
        if self.lost is not None:
            raise self.lost
        assert self.transport is not None
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if not commands:
            future.set_result([])
            return future
        data = pack(commands)  # before the reply is expected: a command that cannot be sent
        self.waiting.append((len(commands), [], future))  # must not shift every later reply
        self.transport.write(data)
        return future

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        self.parse()

    def parse(self) -> None:
        """Hand every complete reply in the parser's buffer to ``reply`` (until paused)."""
        while not self.paused and (reply := self.reader.gets()) is not False:
            self.reply(reply)

    def reply(self, reply: Any) -> None:
        n, replies, future = self.waiting[0]
        replies.append(reply)
        if len(replies) == n:
            self.waiting.popleft()
            if not future.done():  # its caller was cancelled: the replies are dropped
                future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(
            f"connection to Redis lost: {exc}" if exc else "connection to Redis closed"
        )
        while self.waiting:
            _, _, future = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.lost is None:
            self.connection_lost(None)


def _tls(options: dict[str, Any]) -> ssl.SSLContext | None:
    """The TLS context of a ``rediss://`` URL (its ssl_ca_certs and ssl_cert_reqs honoured)."""
    connection_class = options.get("connection_class")
    if connection_class is None or "SSL" not in connection_class.__name__:
        return None
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Subscription(Pipe):
    """SUBSCRIBE on its own connection; messages queued as they are read."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: deque[tuple[bytes, bytes]] = deque()
        self.unconfirmed: set[bytes] = set()
        self.waiter: asyncio.Future[None] | None = None

    @classmethod
    async def subscribe(cls, url: str, name: str, channels: Sequence[str]) -> Self:
        """Connect and subscribe; returns once Redis has confirmed every channel (a message
        published after that reaches this subscription)."""
        sub = await cls.open(url, name)
        try:
            sub.unconfirmed = {c.encode() for c in channels}
            assert sub.transport is not None
            sub.transport.write(pack([("SUBSCRIBE", *channels)]))
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                while sub.unconfirmed:
                    if sub.lost is not None:
                        raise sub.lost
                    await sub._wait()
        except BaseException:
            sub.close()
            raise
        return sub

    def reply(self, reply: Any) -> None:
        if self.waiting:  # the handshake's
            super().reply(reply)
            return
        if isinstance(reply, list) and len(reply) == 3:
            kind = reply[0]
            if kind == b"message":
                self.messages.append((reply[1], reply[2]))
                if len(self.messages) >= HIGH_WATER and not self.paused and self.transport:
                    self.transport.pause_reading()
                    self.paused = True
            elif kind == b"subscribe":
                self.unconfirmed.discard(reply[1])
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def _wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    async def take(self) -> list[tuple[bytes, bytes]]:
        """Every queued message (channel, data), waiting for one if there is none; raises
        ``ConnectionError`` once the connection is lost and the queue is empty."""
        while not self.messages:
            if self.lost is not None:
                raise self.lost
            await self._wait()
        out = list(self.messages)
        self.messages.clear()
        if self.paused:
            self.paused = False
            self.parse()  # what was read before the pause (it may pause again)
            if not self.paused and self.transport is not None:
                self.transport.resume_reading()
        return out

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake()

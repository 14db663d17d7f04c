"""One IB API client connection that reconnects on its own, with jittered exponential backoff.

Used by every service that talks to the broker (data-ingestion, risk-management). The same code
runs over ib_async (default) and the archived ib_insync 0.9.86: only the calls both share are used
(`connectAsync(host, port, clientId, timeout, readonly, account)`, `disconnectedEvent`,
`errorEvent`, `isConnected`, `disconnect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from types import ModuleType
from typing import Any

from prometheus_client import Counter, Gauge

from trading.broker import reader
from trading.settings import IBSettings

LIBRARIES = frozenset({"ib_async", "ib_insync"})

RECONNECTS = Counter(
    "trading_ib_reconnects_total", "Reconnections to the IB API after a lost connection",
    ["service"],
)  # fmt: skip
CONNECT_FAILURES = Counter(
    "trading_ib_connect_failures_total", "Failed attempts to connect to the IB API", ["service"]
)
CONNECTED = Gauge("trading_ib_connected", "1 while the IB API connection is up", ["service"])

ErrorHandler = Callable[[int, int, str, Any], None]
"""cb(req_id, code, message, contract): the signature of `IB.errorEvent` in both libraries."""

# Failures that mean "the gateway is not there / not ready / dropped us": retry after a backoff.
# Anything else raised by the caller's on_connected is a bug and propagates (crash-only service).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)


class GatewayStatus(StrEnum):
    """Where a connection to the IB Gateway (or TWS, or ibsim) stands."""

    CONNECTING = "connecting"  # an attempt is under way
    CONNECTED = "connected"
    UNREACHABLE = "unreachable"  # the last attempt failed; the next one is at next_try_at
    DISCONNECTED = "disconnected"  # a session was lost; reconnecting at next_try_at
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class GatewayState:
    """What an operator needs to know about one connection: `attempt` counts the failed
    attempts in a row, `next_try_at` is the wall-clock epoch of the next one (None when none
    is due), `error` the last failure."""

    status: GatewayStatus
    host: str
    port: int
    client_id: int
    attempt: int = 0
    next_try_at: float | None = None
    error: str = ""
    down_since: float | None = None
    """Wall-clock epoch of the first failure since the connection was last up (None while up,
    or before the first attempt ends)."""

    def as_detail(self) -> dict[str, Any]:
        """The state as heartbeat detail (JSON values)."""
        return {
            "status": self.status.value,
            "host": self.host,
            "port": self.port,
            "client_id": self.client_id,
            "attempt": self.attempt,
            "next_try_at": self.next_try_at,
            "error": self.error,
            "down_since": self.down_since,
        }


GatewayListener = Callable[[GatewayState], None]


def ib_library(name: str = "ib_async") -> ModuleType:
    """The client library module: ib_async, or ib_insync when name == "ib_insync"."""
    if name not in LIBRARIES:
        raise ValueError(f"ib.library={name!r} is not one of {sorted(LIBRARIES)}")
    return importlib.import_module(name)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential backoff ("equal jitter").

    delay(n) = b/2 + U(0, b/2) with b = min(max_s, initial_s * 2**n), n = failures so far.
    So the delay is never below initial_s/2 (IB answers error 326 to a client id that comes back
    before the old session is gone) and never above max_s; the jitter spreads services that lost
    the gateway at the same moment.
    """

    initial_s: float = 1.0
    max_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.initial_s > 0:
            raise ValueError(f"backoff initial_s={self.initial_s!r} must be > 0")
        if not self.max_s >= self.initial_s:
            raise ValueError(f"backoff max_s={self.max_s!r} must be >= initial_s={self.initial_s}")

    def ceiling_s(self, failures: int) -> float:
        """b(n) = min(max_s, initial_s * 2**n)."""
        if failures < 0:
            raise ValueError(f"failures={failures!r} must be >= 0")
        return min(self.max_s, self.initial_s * 2.0 ** min(failures, 64))

    def delay_s(self, failures: int, uniform: float) -> float:
        """The delay for `failures` given a uniform draw in [0, 1)."""
        if not 0.0 <= uniform <= 1.0:
            raise ValueError(f"uniform={uniform!r} must be in [0, 1]")
        ceiling = self.ceiling_s(failures)
        return ceiling / 2.0 + uniform * ceiling / 2.0


class IBConnection:
    """One IB API client connection with reconnect: jittered exponential backoff, never faster
    than IB tolerates (error 326 comes from reconnecting too fast with the same client id).

    The `ib` instance lives as long as this object, so handlers added to its events (errors,
    tickers) survive reconnections; the library clears its session state (tickers, trades) when
    the socket drops, so `on_connected` must re-request everything it needs.

    Attributes: `ib` (the library's IB()), `connected` (bool), `reconnects` (count),
    `library` (the module), `state` (a `GatewayState`, also passed to `on_state` at every
    change: the service puts it in its heartbeat, where the dashboard shows it).
    """

    def __init__(
        self,
        ib_settings: IBSettings,
        client_id: int,
        name: str,
        *,
        readonly: bool = False,
        initial_backoff_s: float = 1.0,
        stable_after_s: float = 30.0,
        rng: random.Random | None = None,
        on_state: GatewayListener | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if client_id < 0:
            raise ValueError(f"client_id={client_id!r} must be >= 0")
        self.settings = ib_settings
        self.client_id = client_id
        self.name = name
        self.readonly = readonly
        self.library = ib_library(ib_settings.library)
        self.ib = self.library.IB()
        reader.install(self.ib.client)  # linear-time socket reads (an upstream fix: reader.py)
        self.backoff = Backoff(initial_backoff_s, max(ib_settings.max_backoff_s, initial_backoff_s))
        # A connection that stayed up this long resets the backoff; a flapping one keeps growing.
        self.stable_after_s = stable_after_s
        self.connected = False
        self.reconnects = 0
        self.failures = 0
        self._rng = rng or random.Random()
        self._log = logging.getLogger(f"{name}.ib")
        self.on_state = on_state
        self._clock = clock
        self.state = GatewayState(
            GatewayStatus.CONNECTING, ib_settings.host, ib_settings.port, client_id
        )
        CONNECTED.labels(name).set(0)

    def _set_state(
        self, status: GatewayStatus, delay_s: float | None = None, error: str = ""
    ) -> None:
        now = self._clock()
        down_since = self.state.down_since
        if status is GatewayStatus.CONNECTED:
            down_since = None
        elif down_since is None and status in (
            GatewayStatus.UNREACHABLE,
            GatewayStatus.DISCONNECTED,
        ):
            down_since = now
        self.state = GatewayState(
            status, self.settings.host, self.settings.port, self.client_id,
            attempt=self.failures,
            next_try_at=None if delay_s is None else now + delay_s,
            error=error,
            down_since=down_since,
        )  # fmt: skip
        if self.on_state is not None:
            self.on_state(self.state)

    def add_error_handler(self, cb: ErrorHandler) -> None:
        """Call cb(req_id, code, message, contract) for every error/notice IB sends."""
        self.ib.errorEvent += cb

    def remove_error_handler(self, cb: ErrorHandler) -> None:
        self.ib.errorEvent -= cb

    async def connect_once(self) -> None:
        """One connection attempt (raises ConnectionError/OSError/TimeoutError on failure).

        The connection does not subscribe to account updates (reqAccountUpdates and
        reqAccountUpdatesMulti, which both libraries start on connect): nothing in the system
        reads account values or the portfolio (positions come from reqPositions, fills from
        executions), and the gateway pushes every account value and a portfolio line per
        position every three minutes and on every position change, each decoded, formatted
        into an INFO log line by the library and thrown away, on the loop that carries the
        ticks (data-ingestion) and the orders (risk). ib_async is asked not to start them;
        ib_insync cannot be, so they are cancelled once connected."""
        s = self.settings
        kwargs: dict[str, Any] = {}
        asks_first = self.library.__name__ == "ib_async"  # else: cancel once connected
        if asks_first:
            fetch = self.library.StartupFetch
            kwargs["fetchFields"] = (
                fetch.POSITIONS | fetch.ORDERS_OPEN | fetch.ORDERS_COMPLETE | fetch.EXECUTIONS
            )
        else:
            self.ib.MaxSyncedSubAccounts = 0  # no reqAccountUpdatesMulti per account
        await self.ib.connectAsync(
            s.host,
            s.port,
            clientId=self.client_id,
            timeout=s.connect_timeout_s,
            readonly=self.readonly,
            account=s.account,
            **kwargs,
        )
        if not self.ib.isConnected():
            raise ConnectionError(f"{self.name}: socket closed while connecting")
        if not asks_first:
            for account in self.ib.client.getAccounts():
                self.ib.client.reqAccountUpdates(False, account)

    def next_delay_s(self) -> float:
        return self.backoff.delay_s(self.failures, self._rng.random())

    async def run(
        self,
        on_connected: Callable[[Any], Awaitable[None]],
        stop: asyncio.Event | None = None,
    ) -> None:
        """Connect (retrying), await on_connected(ib) after each (re)connect, wait for a
        disconnect, back off, reconnect; until `stop` is set (then disconnect and return)."""
        stop = stop or asyncio.Event()
        ever_connected = False
        try:
            while not stop.is_set():
                self._set_state(GatewayStatus.CONNECTING, error=self.state.error)
                try:
                    await self.connect_once()
                except CONNECTION_ERRORS as exc:
                    await self._sleep_or_stop(self._connect_failed(exc), stop)
                    continue
                if ever_connected:
                    self.reconnects += 1
                    RECONNECTS.labels(self.name).inc()
                ever_connected = True
                up_at = time.monotonic()
                await self._serve_session(on_connected, stop)
                if time.monotonic() - up_at >= self.stable_after_s:
                    self.failures = 0
                if not stop.is_set():
                    delay = self.next_delay_s()
                    self.failures += 1
                    self._set_state(GatewayStatus.DISCONNECTED, delay, "connection lost")
                    self._log.warning(
                        "IB connection lost; reconnecting in %.2fs",
                        delay,
                        extra={"event.action": "ib_disconnected", "event.duration": delay},
                    )
                    await self._sleep_or_stop(delay, stop)
        finally:
            self._set_connected(False)
            self.ib.disconnect()
            self._set_state(GatewayStatus.STOPPED)

    async def _serve_session(
        self, on_connected: Callable[[Any], Awaitable[None]], stop: asyncio.Event
    ) -> None:
        """Run on_connected, then wait until the socket drops or stop is set."""
        lost = asyncio.Event()

        def on_lost() -> None:
            lost.set()

        self.ib.disconnectedEvent += on_lost
        try:
            if not self.ib.isConnected():
                return
            self._set_connected(True)
            self._set_state(GatewayStatus.CONNECTED)
            self._log.info(
                "connected to IB %s:%s as client %s",
                self.settings.host,
                self.settings.port,
                self.client_id,
                extra={"event.action": "ib_connected", "ib.client_id": self.client_id},
            )
            # on_connected may await requests that only a live socket can answer: race it
            # against the disconnect so a drop mid-setup reconnects instead of hanging.
            setup = asyncio.ensure_future(on_connected(self.ib))
            lost_wait = asyncio.ensure_future(lost.wait())
            stop_wait = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({setup, lost_wait, stop_wait}, return_when="FIRST_COMPLETED")
                if setup.done():
                    exc = setup.exception()
                    if exc is not None and not isinstance(exc, CONNECTION_ERRORS):
                        raise exc
                    if exc is not None:
                        self._log.warning(
                            "IB session setup failed: %s",
                            exc,
                            extra={"event.action": "ib_setup_failed"},
                        )
                        self.ib.disconnect()
                        return
                    await asyncio.wait({lost_wait, stop_wait}, return_when="FIRST_COMPLETED")
            finally:
                for task in (setup, lost_wait, stop_wait):
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await task
        finally:
            self.ib.disconnectedEvent -= on_lost
            self._set_connected(False)

    def _connect_failed(self, exc: BaseException) -> float:
        """Count and report a failed attempt; the delay before the next one."""
        self.failures += 1
        delay_s = self.next_delay_s()
        CONNECT_FAILURES.labels(self.name).inc()
        error = f"{type(exc).__name__}: {exc}"
        self._set_state(GatewayStatus.UNREACHABLE, delay_s, error)
        self._log.warning(
            "IB connect to %s:%s failed (%s); attempt %d, next in %.1fs",
            self.settings.host,
            self.settings.port,
            error,
            self.failures,
            delay_s,
            extra={"event.action": "ib_connect_failed", "event.duration": delay_s},
        )
        return delay_s

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        CONNECTED.labels(self.name).set(1 if value else 0)

    @staticmethod
    async def _sleep_or_stop(delay_s: float, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await stop.wait()

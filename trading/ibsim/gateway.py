"""`SimulatedGateway`: the simulated IB Gateway (`trading.ibsim.server.GatewayCore`) in a
background thread with its own asyncio loop, with its admin API and fault injection."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from trading.ibsim.admin import AdminServer, Faults
from trading.ibsim.config import SimConfig
from trading.ibsim.market import Truth
from trading.ibsim.server import GatewayCore

log = logging.getLogger("trading.ibsim")


class SimulatedGateway:
    """The simulated IB Gateway in a background thread with its own asyncio loop.

    ``gw = SimulatedGateway(SimConfig(seed=1), port=0, admin_port=0)``; ``gw.start()`` returns
    once both ports listen (``gw.port``, ``gw.admin_port``); ``gw.stop()`` is idempotent; the
    object is also a context manager. ``gw.faults`` injects failures, ``gw.truth()`` reads the ETF's
    true NAV and premium, ``gw.reset()`` clears the account and restarts the market.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        admin_port: int | None = None,
    ) -> None:
        self.config = config or SimConfig()
        self.host = host
        self._requested_port = port
        self._requested_admin_port = admin_port
        self.port = 0
        self.admin_port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._core: GatewayCore | None = None
        self._admin: AdminServer | None = None
        self._stopped = False

    def start(self) -> SimulatedGateway:

        if self._thread is not None:
            raise RuntimeError("SimulatedGateway.start() was already called")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._core = GatewayCore(self.config)
                self.faults = Faults(self._core, loop)
                self.port = loop.run_until_complete(
                    self._core.start(self.host, self._requested_port)
                )
                if self._requested_admin_port is not None:
                    self._admin = AdminServer(self.faults, self._core)
                    self.admin_port = loop.run_until_complete(
                        self._admin.start(self.host, self._requested_admin_port)
                    )
            except BaseException as error:  # reported to the caller of start()
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, name="ibsim", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    async def _shutdown(self) -> None:
        if self._admin is not None:
            await self._admin.stop()
        if self._core is not None:
            await self._core.stop()

    def _running(self) -> GatewayCore:
        if self._loop is None or self._core is None:
            raise RuntimeError("SimulatedGateway is not running")
        return self._core

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` on the gateway loop and return its result."""
        self._running()
        return self.faults.call(function, *args)

    def truth(self) -> Truth:
        return self.call(self._running().truth)

    def reset(self) -> None:
        self.call(self._running().reset)

    def stop(self) -> None:
        if self._stopped or self._loop is None:
            self._stopped = True
            return
        self._stopped = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> SimulatedGateway:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

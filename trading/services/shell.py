"""The shell every service runs in: settings, logging, metrics, Redis, heartbeat, clean stop.

A service is `async def main(ctx: ServiceContext) -> None`, a loop that reads, calls pure
functions from `trading/`, and writes. `run_service(name, main)` is its `__main__`:

    if __name__ == "__main__":
        run_service("strategy", main)

SIGTERM and SIGINT cancel the loop (again if a library lost the cancel: `stop_tasks`); the
service then closes its connections and exits 0.
A configuration error exits 2 with the message naming the variable to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from trading import seams
from trading.aio import stop_tasks
from trading.bus import Bus
from trading.observability import heartbeat_loop, setup_logging, start_metrics
from trading.redis_server import EmbeddedRedis, redis_url_or_embedded
from trading.settings import Settings, SettingsError, load_settings


@dataclass
class ServiceContext:
    name: str
    settings: Settings
    bus: Bus
    log: logging.Logger
    status: dict[str, Any] = field(default_factory=lambda: {"state": "starting"})
    """What the heartbeat reports: set status["state"] to "ok"/"degraded" and add details."""

    def heartbeat_status(self) -> tuple[str, dict[str, Any]]:
        detail = {k: v for k, v in self.status.items() if k != "state"}
        return str(self.status.get("state", "ok")), detail


ServiceMain = Callable[[ServiceContext], Awaitable[None]]


async def serve(
    name: str, main: ServiceMain, settings: Settings, redis_url: str, metrics_port: int | None
) -> None:
    """Run `main` with a connected bus and a heartbeat until it returns or is cancelled."""
    log = logging.getLogger(name)
    start_metrics(name, settings.metrics_port(name) if metrics_port is None else metrics_port)
    bus = await Bus.connect(redis_url, name, max_backoff_s=settings.redis.max_backoff_s)
    ctx = ServiceContext(name, settings, bus, log)
    beat = asyncio.create_task(
        heartbeat_loop(bus, name, settings.heartbeat_interval_s, ctx.heartbeat_status)
    )
    log.info("service started", extra={"event.action": "service_started"})
    try:
        await main(ctx)
    finally:
        await stop_tasks([beat])
        await bus.close()
        log.info("service stopped", extra={"event.action": "service_stopped"})


def run_service(name: str, main: ServiceMain) -> None:
    """Process entry point: load settings, log, serve until SIGTERM/SIGINT."""
    try:
        settings = load_settings()
        seams.check_environment()
    except (SettingsError, ValueError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging(name, settings.log.level, settings.log.json_format)
    url = settings.redis.url.get_secret_value() if settings.redis.url else None
    embedded: EmbeddedRedis | None = None
    if url is None:
        logging.getLogger(name).warning(
            "TRADING_REDIS__URL is unset: starting a private embedded Redis; other services "
            "will not see this one's data (use `make run` for the whole stack)"
        )
    url, embedded = redis_url_or_embedded(url, settings.redis.data_dir if url is None else None)

    async def runner() -> None:
        task = asyncio.create_task(serve(name, main, settings, url, None))
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task] = []  # held: the loop keeps only a weak reference

        def stop() -> None:
            if not stopping:
                stopping.append(loop.create_task(stop_tasks([task], grace_s=5.0)))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(runner())
    finally:
        if embedded is not None:
            embedded.stop()

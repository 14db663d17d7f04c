"""A real Prometheus scrapes the running monitoring service (and data-ingestion against ibsim):
every Grafana panel's query returns data, and the stale-data alert fires when ibsim stops
market data, both in the alert stream and in Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import data_ingestion
import monitoring_dashboard
import pytest
from prometheus_client import start_http_server

from tests.support import async_eventually
from trading.aio import stop_tasks
from trading.bus import Alert, Bus, Streams
from trading.redis_server import free_port
from trading.services.shell import serve
from trading.settings import load_settings

from .promql import GRAFANA_DIR, ROOT, defined_metric_names_in, metric_names, prometheus
from .stack import Prometheus, beat_and_trade, running_prometheus, seed_state

pytestmark = pytest.mark.slow

BEATING = ("data-ingestion", "strategy", "risk-management", "visualization")
RATE_INTERVAL = "15s"


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL with Grafana's variables filled in)."""
    out = []
    for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                out.append((path.name, panel["title"], expr))
    return out


def own_metric_names() -> set[str]:
    """Metrics the monitoring service itself serves: its exporter's and the service shell's."""
    files = [*sorted((ROOT / "trading" / "monitoring").glob("*.py"))]
    files.append(ROOT / "trading" / "observability.py")
    return defined_metric_names_in(files)


@contextlib.contextmanager
def metrics_endpoint():
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.asynccontextmanager
async def running(*coroutines: Awaitable) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield
    finally:
        await stop_tasks(tasks)


async def repeat(action: Callable[[int], Awaitable[None]], interval_s: float) -> None:
    step = 0
    while True:
        await action(step)
        step += 1
        await asyncio.sleep(interval_s)


async def queries_without_data(prom: Prometheus, exprs: list[str]) -> list[str]:
    empty = []
    for expr in exprs:
        if not await asyncio.to_thread(prom.query, expr):
            empty.append(expr)
    return empty


async def wait_for_data(prom: Prometheus, exprs: list[str], timeout_s: float) -> list[str]:
    """The expressions still without data after `timeout_s` (empty when all have data)."""
    pending = list(exprs)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        pending = await queries_without_data(prom, pending)
        if pending:
            await asyncio.sleep(0.5)
    return pending


async def test_prometheus_scrapes_the_monitor_and_every_own_panel_returns_data(redis_url, bus):
    binary = prometheus()
    settings = load_settings(
        redis={"url": redis_url},
        monitoring={
            "interval_s": 0.2,
            "market_hours_only": False,
            "expected_services": list(BEATING),
            "startup_grace_s": 0.0,
        },
        heartbeat_interval_s=0.5,
    )
    own = own_metric_names()
    queries = [q for q in panel_queries() if metric_names(q[2]) <= own]
    assert len(queries) >= 40  # most panels read the monitor's exporter
    await seed_state(bus, time.time())
    with metrics_endpoint() as target, running_prometheus(binary, {"monitoring": target}) as prom:
        async with running(
            serve("monitoring", monitoring_dashboard.main, settings, redis_url, metrics_port=0),
            repeat(lambda step: beat_and_trade(bus, BEATING, step), 0.25),
        ):
            await async_eventually(
                lambda: asyncio.to_thread(prom.targets_up), timeout_s=20, what="target up"
            )
            empty = await wait_for_data(prom, [q[2] for q in queries], timeout_s=30)
    described = [f"{f} / {title}: {expr}" for f, title, expr in queries if expr in empty]
    assert not described, "panels without data:\n" + "\n".join(described) + prom.log_tail()


async def test_stopping_market_data_in_ibsim_raises_data_stale_in_the_stream_and_prometheus(
    redis_url, bus
):
    from trading.ibsim.config import SimConfig
    from trading.ibsim.gateway import SimulatedGateway

    binary = prometheus()
    gateway = SimulatedGateway(SimConfig(seed=1, speed=1.0)).start()
    try:
        settings = load_settings(
            redis={"url": redis_url},
            ib={"port": gateway.port, "connect_timeout_s": 5},
            # ibsim at speed 1 can leave TLT a second without a tick: 3 s of silence is a stop.
            ingestion={"silence_s": 3.0},
            monitoring={
                "interval_s": 0.2,
                "market_hours_only": False,
                "quote_stale_after_s": 4.0,
                "expected_services": ["data-ingestion"],
                "startup_grace_s": 5.0,
            },
            heartbeat_interval_s=0.5,
        )
        with (
            metrics_endpoint() as target,
            running_prometheus(binary, {"monitoring": target}) as prom,
        ):
            async with running(
                serve("data-ingestion", data_ingestion.main, settings, redis_url, metrics_port=0),
                serve("monitoring", monitoring_dashboard.main, settings, redis_url, metrics_port=0),
            ):
                await async_eventually(
                    lambda: asyncio.to_thread(prom.targets_up), timeout_s=20, what="target up"
                )
                fresh = 'trading_monitor_quote_age_seconds{symbol="TLT"} < 1.5'
                await async_eventually(
                    lambda: asyncio.to_thread(prom.query, fresh), timeout_s=20, what=fresh
                )
                ingestion = [
                    q[2] for q in panel_queries() if metric_names(q[2]) & INGESTION_PANEL_METRICS
                ]
                no_data = await wait_for_data(prom, ingestion, timeout_s=15)

                stopped_at = time.time()
                gateway.faults.stop_market_data()

                alerts = await async_eventually(
                    lambda: stale_alerts(bus, stopped_at, {"TLT", "TLTW", "options"}),
                    timeout_s=15,
                    what="data_stale of TLT, TLTW and the options in st:alerts",
                )
                await async_eventually(
                    lambda: firing(prom, "TradingDataStale"), timeout_s=20, what="rule firing"
                )
    finally:
        gateway.stop()
    assert {a.labels["symbol"] for a in alerts} == {"TLT", "TLTW", "options"}
    assert all(a.source == "monitoring" and a.severity == "warning" for a in alerts)
    assert not no_data, f"data-ingestion panels without data: {no_data}"


INGESTION_PANEL_METRICS = {
    "trading_ingestion_ticks",
    "trading_ingestion_staleness_seconds",
    "trading_ingestion_receive_to_publish_seconds",
    "trading_ib_connected",
    "trading_ingestion_subscriptions",
}
"""data-ingestion metrics whose panels must show data while it runs against ibsim (drops and
reconnects stay empty on a healthy feed)."""


async def stale_alerts(bus: Bus, since: float, expected: set[str]) -> list[Alert]:
    """data_stale alerts fired since `since`, or [] until they cover the `expected` symbols."""
    entries = await bus.read_range(Streams.ALERTS, 1000, newest_first=False)
    alerts = [
        e.message
        for e in entries
        if e.message.code == "data_stale"
        and e.message.labels.get("state") == "firing"
        and e.message.ts >= since
    ]
    return alerts if expected <= {a.labels["symbol"] for a in alerts} else []


async def firing(prom: Prometheus, name: str) -> bool:
    return (await asyncio.to_thread(prom.alert_states)).get(name) == "firing"

"""The monitor against a real Redis: metrics, alerts in the stream, latency from the streams."""

from __future__ import annotations

import asyncio
import time

import monitoring_dashboard
import pytest
from prometheus_client import REGISTRY

from tests.support import async_eventually
from trading.aio import stop_tasks
from trading.bus import (
    Alert,
    Bus,
    Channels,
    DataStatus,
    Groups,
    Keys,
    LegKind,
    Streams,
)
from trading.monitoring.monitor import Monitor
from trading.redis_server import EmbeddedRedis
from trading.services.shell import serve
from trading.settings import load_settings

from .samples import decision, health, heartbeat, intent, order_event, pnl, quote, risk_status


def settings_for(url: str, **monitoring):
    return load_settings(
        redis={"url": url},
        monitoring={
            "interval_s": 0.05,
            "expected_services": [],
            "startup_grace_s": 0.0,
            **monitoring,
        },
        risk={"legging_timeout_s": 0.2},
        heartbeat_interval_s=0.2,
    )


def always_open(_now: float) -> bool:
    return True


async def alerts_in_stream(bus: Bus) -> list[Alert]:
    return [
        entry.message for entry in await bus.read_range(Streams.ALERTS, 1000, newest_first=False)
    ]


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def seed_fresh_market(bus: Bus, now: float) -> None:
    for symbol in ("TLT", "TLTW"):
        await bus.set_latest(Keys.quote(symbol), quote(symbol, now))


async def test_stale_quote_raises_a_data_stale_alert_into_the_stream_and_resolves(bus, redis_url):
    now = time.time()
    await bus.set_latest(Keys.quote("TLT"), quote("TLT", now - 45.0))
    await bus.set_latest(Keys.quote("TLTW"), quote("TLTW", now))
    monitor = Monitor(bus, settings_for(redis_url), market_open=always_open)
    await monitor.prime()

    raised = await monitor.cycle()

    [alert] = await alerts_in_stream(bus)
    assert alert == raised[0]
    assert (alert.code, alert.labels) == ("data_stale", {"symbol": "TLT", "state": "firing"})
    assert alert.source == "monitoring"
    age = sample("trading_monitor_quote_age_seconds", symbol="TLT")
    assert 45.0 <= age < 50.0
    await bus.set_latest(Keys.quote("TLT"), quote("TLT", time.time()))
    await monitor.cycle()
    states = [(a.code, a.labels["state"]) for a in await alerts_in_stream(bus)]
    assert states == [("data_stale", "firing"), ("data_stale", "resolved")]


async def test_state_in_redis_is_exported_as_metrics(bus, redis_url):
    now = time.time()
    await seed_fresh_market(bus, now)
    await bus.hset_latest(Keys.HEALTH, "TLTW", health("TLTW", DataStatus.OK, ts=now))
    await bus.beat(heartbeat("strategy", now), ttl_s=30)
    await bus.set_latest(Keys.RISK_STATUS, risk_status("HALTED", {"net_vega": 0.9}, ts=now))
    await bus.set_latest(Keys.PNL, pnl(-3_000.0, ts=now))
    await bus.ensure_group(Streams.INTENTS, Groups.RISK)
    for i in range(3):
        await bus.append(Streams.INTENTS, intent(f"i{i}", now))
    await bus.read_group(Streams.INTENTS, Groups.RISK, "risk-1", count=2)  # 2 pending, 1 waiting
    monitor = Monitor(bus, settings_for(redis_url), market_open=always_open)

    alerts = await monitor.cycle()

    assert sample("trading_redis_up") == 1.0
    assert sample("trading_redis_connected_clients") >= 1
    assert sample("trading_monitor_service_up", service="strategy") == 1.0
    assert sample("trading_risk_halted") == 1.0
    assert sample("trading_risk_limit_usage_ratio", limit="net_vega") == 0.9
    assert sample("trading_pnl_usd", component="total") == -3_000.0
    assert sample("trading_monitor_data_health", symbol="TLTW", status="ok") == 1.0
    assert sample("trading_monitor_stream_length", stream=Streams.INTENTS) == 3
    group = {"stream": Streams.INTENTS, "group": Groups.RISK}
    assert sample("trading_monitor_consumer_pending", **group) == 2
    assert sample("trading_monitor_consumer_lag", **group) == 1
    assert sample("trading_monitor_consumer_consumers", **group) == 1
    assert {a.code for a in alerts} == {"risk_halted", "limit_near", "pnl_drawdown"}


async def test_pipeline_latency_is_measured_from_the_streams(bus, redis_url):
    monitor = Monitor(bus, settings_for(redis_url), market_open=always_open)
    await monitor.prime()
    labels = {"stage": "tick_to_intent", "leg": ""}
    count_before = sample("trading_pipeline_latency_seconds_count", **labels) or 0.0
    sum_before = sample("trading_pipeline_latency_seconds_sum", **labels) or 0.0
    tick = quote("TLTW", time.time())
    await bus.append(Streams.history("TLTW"), tick)
    await asyncio.sleep(0.01)  # the intent must be later than the tick's stream id (ms)
    t0 = time.time()
    await bus.append(Streams.INTENTS, intent("i1", t0))
    await bus.append(Streams.DECISIONS, decision("i1", t0 + 0.002))
    await bus.append(
        Streams.ORDER_EVENTS, order_event("i1", LegKind.STOCK, t0 + 0.005, "Submitted", 500)
    )

    await monitor.cycle()

    assert sample("trading_pipeline_latency_seconds_count", **labels) == count_before + 1
    observed = sample("trading_pipeline_latency_seconds_sum", **labels) - sum_before
    assert observed == pytest.approx(t0 - tick.ts_recv, abs=1e-6)
    decision_labels = {"stage": "decision_to_order", "leg": "stock"}
    assert sample("trading_pipeline_latency_seconds_count", **decision_labels) >= 1


async def test_a_leg_filled_alone_raises_legging(bus, redis_url):
    monitor = Monitor(bus, settings_for(redis_url), market_open=always_open)
    await monitor.prime()
    now = time.time()
    await seed_fresh_market(bus, now)
    await bus.append(Streams.INTENTS, intent("leg-1", now))
    await bus.append(
        Streams.ORDER_EVENTS,
        order_event("leg-1", LegKind.BUY_WRITE, now, "Filled", 2, filled=2),
    )

    async def legging_alert():
        await monitor.cycle()
        return [a for a in await alerts_in_stream(bus) if a.code == "legging"]

    [alert] = await async_eventually(legging_alert, timeout_s=5.0)
    assert alert.labels == {"intent_id": "leg-1", "pair_id": "pair-1", "state": "firing"}
    assert sample("trading_monitor_legged_intents") == 1.0


async def test_malformed_stream_entries_are_counted_and_passed_over(bus, redis_url):
    monitor = Monitor(bus, settings_for(redis_url), market_open=always_open)
    await monitor.prime()
    before = (
        sample(
            "trading_bad_messages_total",
            service="monitoring",
            source=Streams.INTENTS,
            reason="malformed",
        )
        or 0
    )
    await bus.redis.xadd(Streams.INTENTS, {b"m": b"{not json"})
    await monitor.cycle()
    await monitor.cycle()  # the cursor moved past it: counted once
    after = sample(
        "trading_bad_messages_total",
        service="monitoring",
        source=Streams.INTENTS,
        reason="malformed",
    )
    assert after == before + 1


async def test_redis_down_is_exported_and_the_alert_is_delivered_once_redis_is_back():
    server = EmbeddedRedis().start()
    bus = await Bus.connect(server.url, "test", attempts=20)
    try:
        monitor = Monitor(bus, settings_for(server.url), market_open=always_open)
        await seed_fresh_market(bus, time.time())
        await monitor.cycle()
        port = server.port
        server.stop()

        raised = await monitor.cycle()

        assert sample("trading_redis_up") == 0.0
        assert [a.code for a in raised] == ["redis_down"]
        assert len(monitor.outbox) == 1
        server = EmbeddedRedis(port=port).start()
        await seed_fresh_market(bus, time.time())

        async def delivered():
            await monitor.cycle()
            return [(a.code, a.labels["state"]) for a in await alerts_in_stream(bus)]

        states = await async_eventually(delivered, timeout_s=10.0)
        assert states == [("redis_down", "firing"), ("redis_down", "resolved")]
        assert sample("trading_redis_up") == 1.0
    finally:
        await bus.close()
        server.stop()


async def test_service_beats_and_publishes_alerts(redis_url, bus):
    settings = settings_for(redis_url, expected_services=["strategy"])
    received: list[Alert] = []

    async def listen():
        async for _channel, message in bus.subscribe(Channels.ALERTS):
            received.append(message)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.05)  # let the subscription start before the first alert
    task = asyncio.create_task(
        serve("monitoring", monitoring_dashboard.main, settings, redis_url, metrics_port=0)
    )
    try:

        async def silent_alert():
            return [a for a in await alerts_in_stream(bus) if a.code == "service_silent"]

        [alert] = await async_eventually(silent_alert, timeout_s=10.0)
        assert alert.labels == {"service": "strategy", "state": "firing"}

        async def reported():
            beat = (await bus.heartbeats()).get("monitoring")
            return beat is not None and beat.status == "ok" and beat.detail.get("redis_up")

        await async_eventually(reported, timeout_s=10.0)
        await async_eventually(lambda: _true(received), timeout_s=5.0)
        assert received[0].code == "service_silent"
    finally:
        await stop_tasks([task, listener])


async def _true(items: list) -> bool:
    return bool(items)

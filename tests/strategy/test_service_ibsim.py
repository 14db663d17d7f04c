"""The strategy service on the real pipeline: ibsim -> ib_async -> data-ingestion -> Redis ->
strategy. The test plays the risk gate's part only: it approves intents on the decision stream
and fills them on the order event stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta

import data_ingestion
import numpy as np
import pytest

from tests.strategy.scenario import filled_events
from tests.support import async_eventually
from trading.aio import stop_tasks
from trading.bus import (
    Bus,
    Heartbeat,
    IntentPurpose,
    Keys,
    LegKind,
    OptionChain,
    OrderIntent,
    Quote,
    RiskDecision,
    Side,
    SignalAction,
    SpreadPoint,
    Streams,
)
from trading.domain.spread import rolling_zscore_vec
from trading.ibsim import SimConfig, SimulatedGateway
from trading.services.shell import serve
from trading.services.strategy import run as run_strategy
from trading.settings import Settings, load_settings

Z_WINDOW = 120
SPEED = 1800.0  # 30 one-minute bars per wall second


def pipeline_settings(redis_url: str, port: int) -> Settings:
    return load_settings(
        redis={"url": redis_url},
        ib={"port": port},
        strategy={
            "preset": "replica",
            "z_window": Z_WINDOW,
            "entry_z": 6.0,
            "exit_z": 0.5,
            "stop_z": 50.0,
            "time_stop_half_lives": 1000.0,
            "cointegration_pvalue": 0.99,
            "refit_bars": 390,  # one refit a session (30 bars a wall second): see _ready_to_enter
            "edge_gate": False,  # a short z window: the pipeline is the subject, not the edge
        },
        risk={"stale_after_s": 3.0},
        heartbeat_interval_s=0.2,
    )


@contextlib.asynccontextmanager
async def running(*coroutines):
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        yield tasks
    finally:
        # A cancellation that lands inside a redis-py call can be lost (the task goes on, stuck
        # "cancelling"): cancel again until every task has ended, as the dashboard does.
        await stop_tasks(tasks)


async def approve_every_intent(bus: Bus) -> None:
    """Risk's part: approve each intent on the decision stream and fill it (order events)."""
    after = "0"
    while True:
        for entry in await bus.read_after(Streams.INTENTS, after, 100, OrderIntent):
            after = entry.entry_id
            decision = RiskDecision(entry.message.intent_id, time.time(), True, ())
            await bus.append(Streams.DECISIONS, decision)
            for event in filled_events(entry.message):
                await bus.append(Streams.ORDER_EVENTS, event)
        await asyncio.sleep(0.02)


async def intents(bus: Bus) -> list[OrderIntent]:
    return [e.message for e in await bus.read_after(Streams.INTENTS, "0", 1000, OrderIntent)]


async def spread_points(bus: Bus) -> list[SpreadPoint]:
    entries = await bus.read_after(Streams.SPREAD, "0", 100_000, SpreadPoint)
    return [e.message for e in entries]


@pytest.fixture
def gateway():
    gw = SimulatedGateway(SimConfig(seed=3, speed=SPEED), port=0, admin_port=None)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


async def test_premium_blowout_on_ibsim_enters_then_exits_across_a_restart(redis_url, bus, gateway):
    settings = pipeline_settings(redis_url, gateway.port)
    ingestion = serve("data-ingestion", data_ingestion.main, settings, redis_url, 0)
    async with running(ingestion, approve_every_intent(bus)):
        await async_eventually(lambda: bus.get_latest(Keys.CHAIN, OptionChain), 60, what="chain")
        first = serve("strategy", run_strategy, settings, redis_url, 0)
        async with running(first):
            await async_eventually(
                lambda: _count_at_least(spread_points(bus), Z_WINDOW // 2), 20, what="points"
            )
            assert await intents(bus) == []
            # An entry the strategy refuses (no Ornstein-Uhlenbeck fit of the window for the
            # Kelly size; no call quote yet at an open) blocks until the z-score is back inside
            # the band, and a 1800x session is 13 wall seconds: on a loaded machine the set-up
            # can end anywhere. Shock with a fit in hand and two hours of the session left.
            await async_eventually(
                lambda: _ready_to_enter(gateway, bus), 60, what="a fit, mid-session"
            )
            # shock_premium sets the premium *to* a level: the jump the z-score sees is that
            # level less the premium now (seed 3's wanders between -18 and +43 bp over these
            # sessions). Shock by a jump: 120 bp, or 8 of the window's deviations if more.
            point = (await spread_points(bus))[-1]
            truth = gateway.truth()
            jump_bp = max(120.0, 8.0 * point.std * 1e4)
            gateway.faults.shock_premium(truth.tltw_premium * 1e4 + jump_bp)
            shocked_at = truth.time
            # The entry is due within 30 of the strategy's one-minute bars after the shock (the
            # session has two hours left); the wall-clock bound is only a backstop.
            entry = await async_eventually(
                lambda: _entry_within(bus, shocked_at, timedelta(minutes=30)),
                180,
                what="entry",
            )
            # The edge tests are measured and published in the heartbeat the dashboard reads,
            # with the entry's own check (reported, not refusing: the gate is off here).
            beat = await async_eventually(lambda: _edge_checked(bus), 10, what="edge status")
            assert beat.detail["edge"]["gate"] is False
            assert beat.detail["edge"]["verdict"] in ("edge", "no edge", "drifting")
            assert entry.why["edge"]["cost_bp"] > 0

        # Restart while the pair is open: the state in Redis carries it on.
        assert entry.purpose is IntentPurpose.ENTRY
        assert entry.action is SignalAction.ENTER_SHORT_SPREAD
        sides = {leg.kind: leg.side for leg in entry.legs}
        assert sides == {LegKind.STOCK: Side.SELL, LegKind.BUY_WRITE: Side.BUY}
        second = serve("strategy", run_strategy, settings, redis_url, 0)
        async with running(second):
            done = await async_eventually(
                lambda: _count_at_least(intents(bus), 2), 40, what="exit after restart"
            )

    assert [i.purpose for i in done] == [IntentPurpose.ENTRY, IntentPurpose.EXIT]
    exit_ = done[1]
    assert {leg.kind: leg.side for leg in exit_.legs} == {
        LegKind.STOCK: Side.BUY,
        LegKind.BUY_WRITE: Side.SELL,
    }
    assert [(leg.quantity, leg.option_con_id) for leg in exit_.legs] == [
        (leg.quantity, leg.option_con_id) for leg in entry.legs
    ]
    points = await spread_points(bus)
    spreads = np.array([p.spread for p in points])
    live = np.array([p.z for p in points])
    vectorized = rolling_zscore_vec(spreads, Z_WINDOW, 1, settings.strategy.z_std_floor)
    np.testing.assert_allclose(live[Z_WINDOW:], vectorized[Z_WINDOW:], rtol=0, atol=1e-9)


async def test_stale_data_stops_spread_points_and_fresh_data_resumes_them(redis_url, bus, gateway):
    settings = pipeline_settings(redis_url, gateway.port)
    ingestion = serve("data-ingestion", data_ingestion.main, settings, redis_url, 0)
    async with running(ingestion):
        await async_eventually(lambda: bus.get_latest(Keys.CHAIN, OptionChain), 60, what="chain")
        async with running(serve("strategy", run_strategy, settings, redis_url, 0)):
            await async_eventually(lambda: _count_at_least(spread_points(bus), 10), 20)

            gateway.faults.stop_market_data()
            await async_eventually(lambda: _heartbeat_state(bus, "degraded"), 15, what="stale")
            frozen = len(await spread_points(bus))
            await asyncio.sleep(1.0)  # a second of silence must add no point
            assert len(await spread_points(bus)) == frozen

            gateway.faults.resume_market_data()
            await async_eventually(lambda: _count_at_least(spread_points(bus), frozen + 5), 20)
            await async_eventually(lambda: _heartbeat_state(bus, "ok"), 15, what="fresh")


async def _count_at_least(items, n: int):
    values = await items
    return values if len(values) >= n else None


async def _ready_to_enter(gateway: SimulatedGateway, bus: Bus, hours: float = 2.0) -> bool:
    beat = await bus.get_latest(Keys.heartbeat("strategy"), Heartbeat)
    ou = {} if beat is None else beat.detail.get("ou", {})
    # A fit that the shock's bar will still use: the next refit's window holds the shock, and
    # a fit of a window that jumps 20 deviations at its end finds no mean reversion (AR(1)
    # phi above 1: no Kelly size, no entry). The status in the heartbeat is refreshed once a
    # wall second, 30 bars at 1800x: 60 bars to the refit leave the shock half of them.
    if ou.get("half_life_bars") is None or ou.get("refit_in_bars", 0) < 60:
        return False
    now = gateway.truth().time
    # The z window (one-minute bars) all inside today's session: a window over the overnight
    # gap has a wide spread deviation, against which the shock may not reach the entry z.
    opened = now.replace(hour=9, minute=30, second=0, microsecond=0) + timedelta(minutes=Z_WINDOW)
    last = now.replace(hour=16, minute=0, second=0, microsecond=0) - timedelta(hours=hours)
    return now.weekday() < 5 and opened <= now <= last


class _NoEntry(Exception):
    """Not an AssertionError: `async_eventually` lets it through at once."""


def _entry_within(bus: Bus, since: datetime, within: timedelta):
    """The first intent, once the strategy has emitted one; _NoEntry once the strategy's own
    bars have passed ``within`` after ``since`` without one. Strategy time, not the gateway's:
    everything here runs in one process at 1800x, and on a loaded machine the strategy's bars
    trail the gateway's clock by more than a wall second (30 simulated minutes)."""

    async def check():
        first = await _first(intents(bus))
        points = await spread_points(bus)
        if first is None and points:
            reached = datetime.fromtimestamp(points[-1].ts, since.tzinfo)
            if reached - since > within:
                beat = await bus.get_latest(Keys.heartbeat("strategy"), Heartbeat)
                detail = beat.detail if beat is not None else None
                shocked = [round(p.z, 1) for p in points if p.ts >= since.timestamp()]
                raise _NoEntry(
                    f"no entry from {since} to the strategy's bar of {reached}; z since the "
                    f"shock: {shocked}; strategy: {detail}"
                )
        return first

    return check()


async def _first(items):
    values = await items
    return values[0] if values else None


async def _edge_checked(bus: Bus) -> Heartbeat | None:
    beat = await bus.get_latest(Keys.heartbeat("strategy"), Heartbeat)
    edge = beat.detail.get("edge", {}) if beat is not None else {}
    return beat if "last_entry" in edge else None


async def _heartbeat_state(bus: Bus, state: str) -> bool:
    beat = await bus.get_latest(Keys.heartbeat("strategy"), Heartbeat)
    return beat is not None and beat.status == state


@pytest.mark.parametrize("library", ["ib_async", "ib_insync"])
async def test_either_client_library_stamps_quotes_on_the_gateways_clock_and_gets_spread_points(
    redis_url, bus, gateway, library
):
    """ibsim's market runs weeks before this machine's clock. ib_insync drops tick 45 (the
    exchange time ib_async stamps with), so its quotes are stamped by the gateway's clock
    (reqCurrentTime, refreshed): the strategy then finds the calls of the market's own expiry
    and publishes spread points, as with ib_async."""
    settings = pipeline_settings(redis_url, gateway.port)
    settings = settings.model_copy(
        update={"ib": settings.ib.model_copy(update={"library": library})}
    )
    ingestion = serve("data-ingestion", data_ingestion.main, settings, redis_url, 0)
    async with running(ingestion):
        chain = await async_eventually(
            lambda: bus.get_latest(Keys.CHAIN, OptionChain), 60, what="chain"
        )
        async with running(serve("strategy", run_strategy, settings, redis_url, 0)):
            points = await async_eventually(
                lambda: _count_at_least(spread_points(bus), 10), 30, what="spread points"
            )
            tlt = await bus.get_latest(Keys.quote("TLT"), Quote)
            market = gateway.truth().time.timestamp()
    assert {p.call_expiry for p in points} <= {o.expiry for o in chain.subscribed}
    # Stamped with the market's time, which is days before the time this machine received the
    # quote (the bound is a few wall seconds at 1800x: a loaded machine lags that much).
    assert abs(tlt.ts_exchange - market) < 3 * 3600
    assert tlt.ts_recv - tlt.ts_exchange > 86_400
    assert market - 3 * 3600 < points[-1].ts <= market + 60

"""IBConnection: backoff arithmetic, library choice, retrying against a port nobody listens on."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.support import async_eventually
from trading.broker.connection import (
    Backoff,
    GatewayState,
    GatewayStatus,
    IBConnection,
    ib_library,
)
from trading.redis_server import free_port
from trading.settings import load_settings


def test_backoff_doubles_up_to_the_ceiling():
    backoff = Backoff(initial_s=1.0, max_s=60.0)
    assert [backoff.ceiling_s(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_backoff_delay_lies_between_half_and_full_ceiling():
    backoff = Backoff(initial_s=0.5, max_s=10.0)
    assert backoff.delay_s(0, 0.0) == 0.25
    assert backoff.delay_s(0, 1.0) == 0.5
    assert backoff.delay_s(3, 0.5) == pytest.approx(4.0 * 0.75)
    assert backoff.delay_s(100, 0.999) <= 10.0


def test_backoff_never_goes_below_half_the_initial_delay_whatever_the_draw():
    backoff = Backoff(initial_s=2.0, max_s=30.0)
    rng = random.Random(7)
    delays = [backoff.delay_s(n, rng.random()) for n in range(50) for _ in range(20)]
    assert min(delays) >= 1.0
    assert max(delays) <= 30.0


def test_backoff_refuses_nonsense():
    with pytest.raises(ValueError, match="initial_s"):
        Backoff(initial_s=0.0)
    with pytest.raises(ValueError, match="max_s"):
        Backoff(initial_s=5.0, max_s=1.0)
    with pytest.raises(ValueError, match="uniform"):
        Backoff().delay_s(0, float("nan"))


def test_ib_library_returns_the_module_named():
    assert ib_library("ib_async").__name__ == "ib_async"
    assert ib_library("ib_insync").__name__ == "ib_insync"
    with pytest.raises(ValueError, match="ib.library"):
        ib_library("ibapi")


@pytest.mark.parametrize("library", ["ib_async", "ib_insync"])
async def test_connection_retries_with_backoff_until_stopped_when_no_gateway_listens(library):
    settings = load_settings(ib={"port": free_port(), "library": library, "connect_timeout_s": 1})
    conn = IBConnection(settings.ib, 99, f"test-{library}", initial_backoff_s=0.02)
    stop = asyncio.Event()
    called = []

    async def on_connected(ib):
        called.append(ib)

    task = asyncio.create_task(conn.run(on_connected, stop))

    async def failed_thrice():
        return conn.failures >= 3

    await async_eventually(failed_thrice, timeout_s=5, what="three failed attempts")
    stop.set()
    await asyncio.wait_for(task, 5)
    assert conn.failures >= 3
    assert not conn.connected
    assert called == []


async def test_a_connection_without_gateway_says_where_it_stands_and_stops_at_once_mid_backoff():
    """Unreachable at host:port, attempt n, next try at t: every change goes to on_state. A
    stop during a long backoff ends the wait at once, not when the backoff ends."""
    port = free_port()
    settings = load_settings(ib={"port": port, "connect_timeout_s": 1, "max_backoff_s": 600})
    states: list[GatewayState] = []
    conn = IBConnection(
        settings.ib, 99, "test-state", initial_backoff_s=120.0, rng=random.Random(3)
    )
    conn.on_state = states.append
    stop = asyncio.Event()
    task = asyncio.create_task(conn.run(lambda ib: asyncio.sleep(0), stop))

    async def unreachable():
        return conn.state.status is GatewayStatus.UNREACHABLE

    await async_eventually(unreachable, timeout_s=5, what="the first attempt failed")
    state = conn.state
    assert (state.host, state.port, state.client_id, state.attempt) == ("127.0.0.1", port, 99, 1)
    # Backoff(120 s) after one failure: b = 240 s, the delay is drawn in [120, 240] s.
    assert 119.0 <= state.next_try_at - time.time() <= 240.0
    assert "ConnectionRefusedError" in state.error and state.down_since <= time.time()
    assert [s.status for s in states] == [GatewayStatus.CONNECTING, GatewayStatus.UNREACHABLE]
    assert state.as_detail()["status"] == "unreachable" and state.as_detail()["port"] == port

    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 1.0
    assert states[-1].status is GatewayStatus.STOPPED


@pytest.mark.parametrize("library", ["ib_async", "ib_insync"])
async def test_a_connection_takes_positions_but_no_account_updates_from_the_gateway(library):
    """Nothing reads account values or the portfolio; the gateway's own record of the session
    shows what was subscribed once the connection is up (ib_async never asks; ib_insync asks
    and cancels)."""
    from trading.ibsim import SimConfig, SimulatedGateway

    with SimulatedGateway(SimConfig(seed=5, speed=1e-9), port=0) as gateway:
        settings = load_settings(
            ib={"port": gateway.port, "library": library, "connect_timeout_s": 5}
        )
        conn = IBConnection(settings.ib, 7, f"test-{library}")
        stop = asyncio.Event()
        up = asyncio.Event()

        async def on_connected(ib):
            up.set()

        task = asyncio.create_task(conn.run(on_connected, stop))
        try:
            await asyncio.wait_for(up.wait(), 10)

            def subscriptions(core):
                return [
                    (s.client_id, s.positions, s.account_updates, set(s.multi_updates))
                    for s in core.sessions
                ]

            async def settled():
                # ib_insync's cancel is sent after its subscription's download ended.
                seen = gateway.call(subscriptions, gateway._running())
                return seen if seen and not seen[0][2] else None

            seen = await async_eventually(settled, timeout_s=5, what="the session's state")
            assert seen == [(7, True, False, set())]
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

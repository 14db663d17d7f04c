"""The live push: pub/sub marks panels dirty, pushes are conflated, series carry new points."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson

from tests.visualization.seed import BAR_S, T0, publish_point, seed, spread_point
from trading import bus as b
from trading.aio import stop_tasks
from trading.bus import Channels, Keys, Streams
from trading.dashboard.live import sse_event
from trading.dashboard.models import PanelName


def parse(event: bytes) -> tuple[str, dict | None]:
    if event.startswith(b":"):
        return "keepalive", None
    name, data = event.decode().strip().split("\n")
    return name.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))


async def next_events(stream, until, timeout_s: float = 10.0) -> list[tuple[str, dict | None]]:
    """Read events until `until(events)` holds."""
    events = []
    deadline = time.monotonic() + timeout_s
    while not until(events):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"events so far: {[e[0] for e in events]}"
        events.append(parse(await asyncio.wait_for(anext(stream), remaining)))
    return events


def test_sse_event_is_one_named_event_with_json_data():
    assert sse_event("risk", {"state": "HALTED"}) == b'event: risk\ndata: {"state":"HALTED"}\n\n'


async def test_a_burst_of_points_is_pushed_conflated_and_complete(app, bus):
    await seed(bus, points=50)
    stream = app.state.feed.events()
    hello = await next_events(stream, lambda e: len(e) >= 1)
    assert hello[0] == ("hello", {"panels": [p.value for p in PanelName]})
    burst = [spread_point(i) for i in range(50, 70)]
    for point in burst:  # 20 bars in well under one push interval
        await publish_point(bus, point)
    wanted = {p.ts for p in burst}

    def got_all(events) -> bool:
        pushed = {ts for name, d in events if name == "spread" for ts in d["series"]["ts"]}
        return wanted <= pushed

    events = await next_events(stream, got_all)
    spread_events = [d for name, d in events if name == "spread"]
    pushed = [ts for d in spread_events for ts in d["series"]["ts"]]
    assert pushed == sorted(wanted)  # every new point once, none of the 50 already loaded
    assert len(spread_events) <= 3  # conflated: not one event per point
    assert spread_events[-1]["latest"]["ts"] == T0 + 69 * BAR_S
    await stream.aclose()


async def test_book_and_risk_changes_are_pushed(app, bus):
    stream = app.state.feed.events()
    await next_events(stream, lambda e: len(e) >= 1)
    risk = b.RiskStatus(time.time(), "HALTED", "daily loss limit", {"daily_loss": 1.02})
    await bus.set_latest(Keys.RISK_STATUS, risk)
    await bus.publish(Channels.BOOK, risk)
    events = await next_events(stream, lambda e: any(n == "risk" for n, _ in e))
    pushed = next(d for n, d in events if n == "risk")
    assert pushed["state"] == "HALTED"
    assert pushed["limits"] == [{"name": "daily_loss", "used": 1.02, "breached": True}]
    await stream.aclose()


async def test_a_page_that_falls_behind_gets_a_reset(app):
    feed = app.state.feed
    stream = feed.events()
    await next_events(stream, lambda e: len(e) >= 1)
    for i in range(feed.queue_size + 5):
        feed.broadcast(sse_event("alerts", {"n": i}))
    events = await next_events(stream, lambda e: len(e) >= 1)
    assert events == [("reset", {})]
    await stream.aclose()
    assert not feed.clients


async def test_stop_tasks_ends_a_task_that_swallowed_its_first_cancel():
    async def stubborn() -> None:
        # What redis-py sometimes does while opening a pub/sub connection: swallow the cancel.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
        await asyncio.sleep(60)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await stop_tasks([task], grace_s=0.1)
    assert task.cancelled()


async def test_prices_push_keeps_a_cursor_per_series_on_different_clocks(app, bus):
    # Quote history runs ahead of the bars (a bar is stamped at its start, published at its end).
    await seed(bus, points=10)
    stream = app.state.feed.events()
    await next_events(stream, lambda e: len(e) >= 1)
    ahead = b.Quote("TLT", 1, 91.0, 91.02, 1.0, 1.0, None, T0 + 60 * BAR_S, time.time())
    await bus.append(Streams.history("TLT"), ahead)
    await bus.publish(Channels.QUOTES, ahead)
    await next_events(
        stream, lambda e: any(n == "prices" and d["series"]["TLT"]["ts"] for n, d in e)
    )
    late_bar = spread_point(12)  # older than the newest quote, newer than the last bar
    await publish_point(bus, late_bar)

    def index_pushed(events) -> bool:
        return any(
            n == "prices" and d["series"]["buy_write_index"]["ts"] == [late_bar.ts]
            for n, d in events
        )

    await next_events(stream, index_pushed)
    await stream.aclose()

"""Live push to the browser: Server-Sent Events fed by the bus's pub/sub channels, conflated.

A message on a channel only marks the panels it affects as dirty. Every `interval_s` (0.25 s:
at most four updates a second per panel, however fast ticks arrive) the feed rebuilds each dirty
panel once, through the query layer, and hands the same encoded event to every connected page.
Series panels carry only the points newer than the last push; the page appends them (and drops
any point not newer than the last it holds, so a push overlapping the page's first load is
harmless). Heartbeats have no channel, and a writer may publish before it appends: a slow sweep
marks the health and series panels dirty every `sweep_s` too.

Event stream format (text/event-stream):

    event: hello      data: {"panels": [...]}      on connect: the page then loads every panel
    event: <panel>    data: <the panel's JSON>     clock, spread, prices, hedge, option, book, ...
    event: reset      data: {}                     the page fell behind: reload every panel
    : keepalive                                    every 15 s, for proxies

A page that cannot keep up (its queue is full) gets a reset instead of an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import BaseModel

from trading.bus import Channels
from trading.dashboard.models import PanelName
from trading.dashboard.queries import DashboardQueries, DataUnavailable
from trading.observability import ERRORS

log = logging.getLogger(__name__)

CHANNEL_PANELS: dict[str, tuple[PanelName, ...]] = {
    Channels.SPREAD: (PanelName.SPREAD, PanelName.HEDGE, PanelName.OPTION, PanelName.PRICES),
    Channels.SIGNALS: (PanelName.SPREAD,),
    Channels.QUOTES: (PanelName.PRICES, PanelName.CLOCK),
    Channels.NAV: (PanelName.PRICES,),
    Channels.OPTIONS: (PanelName.OPTION,),
    Channels.BOOK: (PanelName.BOOK, PanelName.RISK),
    Channels.HEALTH: (PanelName.HEALTH,),
    Channels.ALERTS: (PanelName.ALERTS,),
}
SWEPT_PANELS = (
    PanelName.HEALTH, PanelName.SPREAD, PanelName.PRICES, PanelName.HEDGE, PanelName.CLOCK,
)  # fmt: skip
SERIES_PANELS = frozenset({PanelName.SPREAD, PanelName.PRICES, PanelName.HEDGE})
KEEPALIVE = b": keepalive\n\n"


def sse_event(event: str, data: Any) -> bytes:
    """One Server-Sent Event; `data` is a pydantic model or anything orjson encodes."""
    body = data.model_dump_json().encode() if isinstance(data, BaseModel) else orjson.dumps(data)
    return b"event: " + event.encode() + b"\ndata: " + body + b"\n\n"


def newest_times(panel: BaseModel) -> dict[str, float]:
    """The newest timestamp of each series in a panel: the cursors of the next push.

    A panel with one series (spread, hedge) reports it as "series"; prices by its keys.
    """
    series = getattr(panel, "series", None)
    if series is None:
        return {}
    named = series if isinstance(series, dict) else {"series": series}
    return {name: columns.ts[-1] for name, columns in named.items() if columns.ts}


class LiveFeed:
    """Subscribes once, conflates, and fans out to every connected page."""

    def __init__(
        self,
        queries: DashboardQueries,
        interval_s: float = 0.25,
        sweep_s: float = 2.0,
        keepalive_s: float = 15.0,
        queue_size: int = 128,
    ) -> None:
        self.queries = queries
        self.interval_s = interval_s
        self.sweep_s = sweep_s
        self.keepalive_s = keepalive_s
        self.queue_size = queue_size
        self.dirty: set[PanelName] = set()
        self.cursors: dict[PanelName, dict[str, float]] = {}
        self.clients: set[asyncio.Queue[bytes | None]] = set()
        self.pushed = 0
        self._closed = False

    def start(self) -> list[asyncio.Task]:
        """Start listening and pushing; stop with `stop_tasks`."""
        return [
            asyncio.create_task(self._listen(), name="dashboard-listen"),
            asyncio.create_task(self._push_loop(), name="dashboard-push"),
        ]

    async def _listen(self) -> None:
        async for channel, _message in self.queries.bus.subscribe(*CHANNEL_PANELS):
            self.dirty.update(CHANNEL_PANELS.get(channel, ()))

    async def _push_loop(self) -> None:
        next_sweep = 0.0
        while True:
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            if now >= next_sweep:
                self.dirty.update(SWEPT_PANELS)
                next_sweep = now + self.sweep_s
            if not self.clients or not self.dirty:
                continue
            try:
                await self.push_dirty()
            except DataUnavailable as exc:
                ERRORS.labels("visualization", "push").inc()
                log.warning("live push skipped: %s", exc, extra={"event.action": "push_failed"})

    async def push_dirty(self) -> None:
        """Rebuild each dirty panel once and queue it for every page."""
        panels, self.dirty = self.dirty, set()
        for name in sorted(panels):
            try:
                panel = await self.queries.panel(name, since=self.cursors.get(name))
            except DataUnavailable:
                self.dirty.add(name)  # retry on the next tick
                raise
            if name in SERIES_PANELS:
                self.cursors.setdefault(name, {}).update(newest_times(panel))
            self.broadcast(sse_event(name, panel))

    def broadcast(self, event: bytes) -> None:
        for queue in list(self.clients):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                while not queue.empty():  # the page is behind: replace its backlog by a reset
                    queue.get_nowait()
                queue.put_nowait(sse_event("reset", {}))
        self.pushed += 1

    def close(self) -> None:
        """End every page's stream (shutdown): each gets an end marker."""
        self._closed = True
        for queue in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def events(self) -> AsyncIterator[bytes]:
        """One page's event stream: hello, then pushes, with keepalives, until closed."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(self.queue_size)
        if not self.clients:
            # The only page: series pushes start from now (the page loads what came before).
            for name in SERIES_PANELS:
                with contextlib.suppress(DataUnavailable):
                    self.cursors[name] = newest_times(await self.queries.panel(name))
        self.clients.add(queue)
        try:
            yield sse_event("hello", {"panels": [p.value for p in PanelName]})
            while not self._closed:
                try:
                    async with asyncio.timeout(self.keepalive_s):
                        event = await queue.get()
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                if event is None:
                    return
                yield event
        finally:
            self.clients.discard(queue)

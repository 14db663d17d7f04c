"""HTTP plumbing of the dashboard app: request timing, pre-serialised JSON, the live-page gauge,
and a uvicorn server that lets the process clean up after SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator

import uvicorn
from fastapi.responses import Response
from prometheus_client import Gauge
from pydantic import BaseModel

from trading.observability import histogram

REQUEST_SECONDS = histogram(
    "trading_dashboard_request_seconds", "Dashboard HTTP request latency", ("route",)
)
LIVE_PAGES = Gauge("trading_dashboard_live_pages", "Pages connected to the live event stream")


class RequestTimer:
    """ASGI middleware timing each request by its route template (not its raw path)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            REQUEST_SECONDS.labels(getattr(route, "path", "unmatched")).observe(
                time.perf_counter() - start
            )


def json_response(panel: BaseModel) -> Response:
    """The panel serialised once by pydantic (in Rust). Returning a Response skips FastAPI's
    re-validation of an already-validated model: half the time of a large series panel."""
    return Response(panel.model_dump_json(), media_type="application/json")


async def counted(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    LIVE_PAGES.inc()
    try:
        async for event in events:
            yield event
    finally:
        LIVE_PAGES.dec()


class GracefulServer(uvicorn.Server):
    """uvicorn, minus its re-raising of SIGTERM/SIGINT after a graceful shutdown: that re-raise
    kills the process before `main` stops the embedded Redis. A signal ends the serve loop and
    the process exits 0, as every other service does."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

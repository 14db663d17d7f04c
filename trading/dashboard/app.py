"""The dashboard: a FastAPI app reading only Redis (never IB), pushing live updates to the page.

`create_app(settings, bus_or_url)` builds it; the visualization service
(`trading/services/visualization.py`, started by visualization/visualization.py) serves it on
TRADING_HTTP__HOST:TRADING_HTTP__PORT. The page's template and static files are in this package
(templates/, static/). The pair shown is the settings' (`Settings.pair_spec`: TRADING_PAIR__*,
TRADING_STRATEGY__PAIR_ID): the page's titles, the API's title and the prices panel name its
two stocks from it (`PricesPanel.pair`), never from a spelled symbol.

Routes (every JSON route is in the OpenAPI document at /openapi.json, browsable at /docs):
    GET  /                         the dashboard page (charts drawn by the vendored uPlot)
    GET  /api/<panel>              one panel's JSON: clock, spread, prices, hedge, option, book,
                                   risk, health, alerts (see trading/dashboard/models.py)
    GET  /api/stream               Server-Sent Events: conflated live panel updates (not in the
                                   OpenAPI document: it never ends)
    GET  /plots/<plot>.png         matplotlib PNGs: spread, prices, hedge, risk
    GET  /healthz                  age of the newest data (200 while Redis answers, 503 if not)
    GET  /api/control              whether the operator controls are on
    POST /api/control/<command>    halt, reduce, resume, flatten, kill: appends an operator
                                   command for risk-management; needs `Authorization: Bearer
                                   <TRADING_HTTP__TOKEN>`; 403 when no token is configured
                                   (controls off), 401 on a missing or wrong token

Prometheus metrics (request latency per route, live pages, pushes) are served on the metrics
port, `settings.metrics_port("visualization")` (9104 unless TRADING_METRICS__PORT), like every
other service; the app itself has no /metrics route.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from trading.aio import stop_tasks
from trading.bus import Bus
from trading.dashboard import models as m
from trading.dashboard.controls import ControlsOff, Unauthorized, check_token, controls_enabled
from trading.dashboard.live import LiveFeed
from trading.dashboard.queries import (
    DEFAULT_POINTS,
    SERIES_CAPACITY,
    DashboardQueries,
    DataUnavailable,
)
from trading.dashboard.web import RequestTimer, counted, json_response
from trading.observability import heartbeat_loop
from trading.settings import Settings

SERVICE = "visualization"
HERE = Path(__file__).resolve().parent

BEARER = HTTPBearer(auto_error=False, description="TRADING_HTTP__TOKEN")


def get_queries(request: Request) -> DashboardQueries:
    return request.app.state.queries


def require_operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> None:
    """The operator controls' gate: 403 when no token is configured, 401 on a wrong one."""
    try:
        token = request.app.state.settings.http.token
        check_token(token, credentials.credentials if credentials else None)
    except ControlsOff as exc:
        raise HTTPException(403, str(exc)) from None
    except Unauthorized as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


Queries = Annotated[DashboardQueries, Depends(get_queries)]
Operator = Annotated[None, Depends(require_operator)]
Points = Annotated[int, Query(ge=1, le=SERIES_CAPACITY, description="Newest points")]
Since = Annotated[float | None, Query(description="Only series points after this epoch time (s)")]
Pixels = Annotated[int, Query(ge=200, le=4000)]


def create_app(
    settings: Settings,
    bus_or_url: Bus | str,
    *,
    heartbeat: bool = True,
    push_interval_s: float = 0.25,
    query_timeout_s: float = 2.0,
) -> FastAPI:
    """The app. Given a URL the lifespan opens (and closes) its own Bus; given a Bus, uses it.
    The pair shown is ``settings.pair_spec()`` (a ValueError names a bad pair setting)."""
    pair = settings.pair_spec()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = not isinstance(bus_or_url, Bus)
        bus = (
            await Bus.connect(bus_or_url, SERVICE, settings.redis.max_backoff_s)
            if isinstance(bus_or_url, str)
            else bus_or_url
        )
        queries = DashboardQueries(bus, settings, pair=pair, timeout_s=query_timeout_s)
        feed = LiveFeed(queries, interval_s=push_interval_s)
        app.state.queries, app.state.feed = queries, feed
        tasks = feed.start()
        if heartbeat:
            status = lambda: ("ok", {"live_pages": len(feed.clients)})  # noqa: E731
            tasks.append(
                asyncio.create_task(
                    heartbeat_loop(bus, SERVICE, settings.heartbeat_interval_s, status)
                )
            )
        try:
            yield
        finally:
            feed.close()
            await stop_tasks(tasks)
            if owned:
                await bus.close()

    app = FastAPI(
        title=f"{pair.underlying}/{pair.etf} pairs trading dashboard",
        description="Read-only views of the trading system's Redis state, and operator controls.",
        version="1.0.0",
        lifespan=lifespan,
        responses={503: {"model": m.Problem, "description": "Redis did not answer"}},
    )
    app.state.settings = settings
    app.add_middleware(RequestTimer)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")

    @app.exception_handler(DataUnavailable)
    async def redis_down(request: Request, exc: DataUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page(request: Request) -> HTMLResponse:
        enabled = controls_enabled(settings.http.token)
        context = {"controls_enabled": enabled, "commands": list(m.ControlCommand), "pair": pair}
        return templates.TemplateResponse(request, "index.html", context)

    @app.get("/api/clock", tags=["panels"], response_model=m.MarketClock)
    async def clock(q: Queries) -> Response:
        return json_response(await q.clock())

    @app.get("/api/spread", tags=["panels"], response_model=m.SpreadPanel)
    async def spread(q: Queries, limit: Points = DEFAULT_POINTS, since: Since = None) -> Response:
        return json_response(await q.spread(limit, since))

    @app.get("/api/prices", tags=["panels"], response_model=m.PricesPanel)
    async def prices(q: Queries, limit: Points = DEFAULT_POINTS, since: Since = None) -> Response:
        return json_response(await q.prices(limit, since))

    @app.get("/api/hedge", tags=["panels"], response_model=m.HedgePanel)
    async def hedge(q: Queries, limit: Points = DEFAULT_POINTS, since: Since = None) -> Response:
        return json_response(await q.hedge(limit, since))

    @app.get("/api/option", tags=["panels"], response_model=m.OptionPanel)
    async def option(q: Queries) -> Response:
        return json_response(await q.option())

    @app.get("/api/book", tags=["panels"], response_model=m.BookPanel)
    async def book(q: Queries, fills: Annotated[int, Query(ge=1, le=1000)] = 20) -> Response:
        return json_response(await q.book(fills))

    @app.get("/api/risk", tags=["panels"], response_model=m.RiskPanel)
    async def risk(q: Queries) -> Response:
        return json_response(await q.risk())

    @app.get("/api/health", tags=["panels"], response_model=m.HealthPanel)
    async def health(q: Queries) -> Response:
        return json_response(await q.health())

    @app.get("/api/alerts", tags=["panels"], response_model=m.AlertsPanel)
    async def alerts(q: Queries, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Response:
        return json_response(await q.alerts(limit))

    @app.get("/healthz", tags=["health"], response_model=m.Healthz)
    async def healthz(q: Queries) -> Response:
        return json_response(await q.healthz())

    @app.get(
        "/plots/{name}.png",
        tags=["plots"],
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "A PNG image"}},
    )
    async def plot(
        q: Queries,
        name: Annotated[m.PlotName, PathParam()],
        limit: Points = DEFAULT_POINTS,
        width: Pixels = 1000,
        height: Pixels = 500,
    ) -> Response:
        return Response(await q.plot(name, limit, width, height), media_type="image/png")

    @app.get("/api/stream", include_in_schema=False)
    async def stream(request: Request) -> StreamingResponse:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        events = counted(request.app.state.feed.events())
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)

    @app.get("/api/control", tags=["controls"])
    async def controls() -> m.ControlsState:
        return m.ControlsState(
            enabled=controls_enabled(settings.http.token), commands=list(m.ControlCommand)
        )

    @app.post(
        "/api/control/{command}",
        tags=["controls"],
        status_code=202,
        responses={
            401: {"model": m.Problem, "description": "Missing or wrong bearer token"},
            403: {"model": m.Problem, "description": "Controls off: no token configured"},
        },
    )
    async def control(
        q: Queries, _: Operator, command: m.ControlCommand, body: m.ControlRequest | None = None
    ) -> m.ControlAccepted:
        return await q.send_command(command, body or m.ControlRequest())

    return app

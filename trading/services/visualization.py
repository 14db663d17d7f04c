"""The visualization service's process: the dashboard app (`trading.dashboard.app`) under uvicorn.

Unlike the other services it does not run in `shell.run_service`: uvicorn owns the event loop,
and the app's lifespan opens the bus and runs the heartbeat. `run()` loads the settings (a
configuration error exits 2 naming the variable), sets up JSON logging, starts Redis embedded
when TRADING_REDIS__URL is unset, serves Prometheus metrics on `settings.metrics_port(
"visualization")`, and serves the app until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import sys

import uvicorn

from trading.dashboard.app import SERVICE, create_app
from trading.dashboard.web import GracefulServer
from trading.observability import setup_logging, start_metrics
from trading.redis_server import redis_url_or_embedded
from trading.settings import SettingsError, load_settings


def run() -> None:
    """Process entry point: settings, logging, metrics, Redis (embedded if unset), uvicorn."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"{SERVICE}: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging(SERVICE, settings.log.level, settings.log.json_format)
    url = settings.redis.url.get_secret_value() if settings.redis.url else None
    url, embedded = redis_url_or_embedded(url, settings.redis.data_dir if url is None else None)
    start_metrics(SERVICE, settings.metrics_port(SERVICE))
    app = create_app(settings, url)
    config = uvicorn.Config(
        app,
        host=settings.http.host,
        port=settings.http.port,
        log_config=None,  # keep our JSON logging
        access_log=False,
        timeout_graceful_shutdown=3,  # live event streams never end by themselves
    )
    try:
        GracefulServer(config).run()
    finally:
        if embedded is not None:
            embedded.stop()

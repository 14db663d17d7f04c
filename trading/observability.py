"""JSON logs with ECS field names, Prometheus metrics helpers, and heartbeats.

Log lines are JSON objects that Filebeat/Logstash index as they are:
`@timestamp` (ISO 8601 UTC), `log.level`, `log.logger`, `message`, `service.name`, `ecs.version`,
`process.pid`, `error.*` for exceptions, plus event fields passed with `extra=` using ECS-style
dotted names (`event.action`, `order.ref`, `order.id`, `instrument.symbol`, ...):

    log.info("order placed", extra={"event.action": "order_placed", "order.ref": intent_id})
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from pythonjsonlogger.json import JsonFormatter

from trading.bus import Bus, Heartbeat

ECS_VERSION = "8.11.0"

# LogRecord attributes that are not event fields.
_RESERVED = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class EcsJsonFormatter(JsonFormatter):
    """python-json-logger formatter emitting ECS names; event fields pass through unchanged."""

    def __init__(self, service: str):
        super().__init__(json_ensure_ascii=False)
        self.service = service

    def add_fields(self, log_record: dict, record: logging.LogRecord, message_dict: dict) -> None:
        log_record["@timestamp"] = (
            datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        ).replace("+00:00", "Z")
        log_record["log.level"] = record.levelname.lower()
        log_record["log.logger"] = record.name
        log_record["message"] = record.getMessage()
        log_record["service.name"] = self.service
        log_record["ecs.version"] = ECS_VERSION
        log_record["process.pid"] = record.process
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                log_record[key] = value
        if record.exc_info:
            exc_type, exc, tb = record.exc_info
            log_record["error.type"] = exc_type.__name__ if exc_type else ""
            log_record["error.message"] = str(exc)
            log_record["error.stack_trace"] = "".join(traceback.format_exception(exc_type, exc, tb))
        for key, value in message_dict.items():
            log_record.setdefault(key, value)


class _PlainFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s")


def setup_logging(service: str, level: str = "INFO", json_format: bool = True) -> None:
    """Route every logger to stderr, as JSON (ECS) or plain text. Idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EcsJsonFormatter(service) if json_format else _PlainFormatter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # ib_async logs every wire message at DEBUG and some routine things at INFO.
    for noisy in ("ib_async.client", "ib_insync.client", "ib_async.wrapper", "ib_insync.wrapper"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.INFO))


# Metrics --------------------------------------------------------------------------------------

LATENCY_BUCKETS_S = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Histogram buckets for in-process latencies: 50 µs to 10 s."""

SERVICE_UP = Gauge("trading_service_up", "1 while the service loop runs", ["service"])
SERVICE_INFO = Gauge(
    "trading_service_start_time_seconds", "Unix time the service started", ["service"]
)
HEARTBEAT_TS = Gauge(
    "trading_heartbeat_timestamp_seconds", "Unix time of the last heartbeat written", ["service"]
)
BAD_MESSAGES = Counter(
    "trading_bad_messages_total", "Messages dropped because they failed validation",
    ["service", "source", "reason"],
)  # fmt: skip
ERRORS = Counter("trading_errors_total", "Errors handled by a service loop", ["service", "kind"])


def start_metrics(service: str, port: int) -> None:
    """Serve /metrics for this service on `port` (0 = do not serve: tests)."""
    if port:
        start_http_server(port)
    SERVICE_INFO.labels(service).set(time.time())
    SERVICE_UP.labels(service).set(1)


def histogram(name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
    return Histogram(name, doc, list(labels), buckets=LATENCY_BUCKETS_S)


# Heartbeats -----------------------------------------------------------------------------------


async def heartbeat_loop(
    bus: Bus,
    service: str,
    interval_s: float,
    status: Callable[[], tuple[str, dict[str, Any]]] = lambda: ("ok", {}),
) -> None:
    """Write `hb:<service>` every interval with a TTL of three intervals, forever.

    `status()` returns the service's own view ("ok"/"degraded", details) so a liveness probe
    and the dashboard see more than "the process is up".
    """
    log = logging.getLogger(service)
    while True:
        try:
            state, detail = status()
            now = time.time()
            await bus.beat(Heartbeat(service, now, state, detail), ttl_s=3 * interval_s)
            HEARTBEAT_TS.labels(service).set(now)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("heartbeat failed", extra={"event.action": "heartbeat_failed"})
        await asyncio.sleep(interval_s)


def hostname() -> str:
    return os.environ.get("HOSTNAME") or os.uname().nodename

"""One monitoring cycle: read Redis, refresh /metrics, follow the order streams, raise alerts.

`Monitor.prime()` once, then `Monitor.cycle()` every `settings.monitoring.interval_s`. A cycle
never waits for Redis: when it is unreachable the cycle exports `trading_redis_up 0`, raises
redis_down, and keeps the alerts in an outbox until Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Counter_
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from trading.bus import (
    RETRYABLE,
    Alert,
    Bus,
    Channels,
    Message,
    MessageError,
    OrderEvent,
    OrderIntent,
    Quote,
    RiskDecision,
    StreamEntry,
    Streams,
    decode,
)
from trading.bus.client import RawEntries
from trading.monitoring.alerts import EVERY_CODE, AlertCode, AlertRules, AlertTracker, evaluate
from trading.monitoring.metrics import MonitorView, SnapshotCollector, snapshot_families
from trading.monitoring.pipeline import LatencySample, LegTracker, PipelineLatency, tick_time_of
from trading.monitoring.snapshot import Snapshot, read_snapshot
from trading.observability import BAD_MESSAGES, LATENCY_BUCKETS_S
from trading.settings import Settings

log = logging.getLogger(__name__)

PIPELINE_BUCKETS_S = (*LATENCY_BUCKETS_S, 30.0, 60.0, 120.0)
"""50 µs to 2 min: tick-to-intent includes the strategy's bar wait (bar_seconds)."""

PIPELINE_LATENCY = Histogram(
    "trading_pipeline_latency_seconds",
    "Order pipeline latency from message timestamps, by stage "
    "(tick_to_intent, intent_to_decision, decision_to_order, tick_to_order) and order leg",
    ["stage", "leg"],
    buckets=PIPELINE_BUCKETS_S,
)
NEGATIVE_LATENCY = Counter(
    "trading_pipeline_negative_latency",
    "Latency samples dropped because they were negative (clock skew between hosts)",
    ["stage"],
)
ALERTS_SEEN = Counter(
    "trading_alerts",
    "Alerts appended to the alert stream by any service",
    ["source", "code", "severity"],
)
ALERTS_RAISED = Counter(
    "trading_monitor_alerts_raised", "Alerts this monitor raised", ["code", "state"]
)
CYCLE_SECONDS = Histogram(
    "trading_monitor_cycle_seconds", "Duration of one monitoring cycle", buckets=PIPELINE_BUCKETS_S
)
LAST_CYCLE = Gauge("trading_monitor_last_cycle_timestamp_seconds", "End time of the last cycle")
ACTIVE_ALERTS = Gauge("trading_monitor_active_alerts", "Conditions currently firing", ["code"])

COLLECTOR = SnapshotCollector()
REGISTRY.register(COLLECTOR)

PRIME_ENTRIES = 1_000
"""Entries of the order streams read at start so a restarted monitor still matches them."""
READ_BATCH = 1_000
OUTBOX_SIZE = 1_000

_FOLLOWED = (Streams.INTENTS, Streams.DECISIONS, Streams.ORDER_EVENTS, Streams.ALERTS)


def _market_open_now(now_s: float) -> bool:
    from trading.domain.market_hours import market_calendar

    return market_calendar().is_open(datetime.fromtimestamp(now_s, UTC))


class Monitor:
    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        source: str = "monitoring",
        clock: Callable[[], float] = time.time,
        market_open: Callable[[float], bool] = _market_open_now,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.rules = AlertRules.from_settings(settings)
        self.tracker = AlertTracker(source, settings.monitoring.alert_repeat_s)
        self.latency = PipelineLatency()
        self.legs = LegTracker()
        self.clock = clock
        self.market_open = market_open
        self.started_s = clock()
        self.symbols = tuple(settings.monitoring.symbols or settings.pair_spec().stocks)
        self.cursors: dict[str, str] = {}
        self.heartbeat_last_seen_s: dict[str, float] = {}
        self.outbox: deque[Alert] = deque(maxlen=OUTBOX_SIZE)
        self.last_snapshot: Snapshot | None = None

    @property
    def timeout_s(self) -> float:
        return max(2.0, 5 * self.settings.monitoring.interval_s)

    async def prime(self) -> None:
        """Load the newest order-stream entries into the trackers (no samples) and start each
        followed stream at its tail, so a restart neither replays nor forgets."""
        for stream in _FOLLOWED:
            entries: list[StreamEntry[Message]] = await self.bus.read_range(
                stream, PRIME_ENTRIES, newest_first=False
            )
            for entry in entries if stream != Streams.ALERTS else ():
                await self._follow(entry, observe=False)
            self.cursors[stream] = entries[-1].entry_id if entries else "0"

    async def cycle(self) -> list[Alert]:
        """One pass; returns the alerts raised (already appended, or queued if Redis is down)."""
        started = time.perf_counter()
        now = self.clock()
        snapshot = await read_snapshot(self.bus, self.symbols, now, self.timeout_s)
        if snapshot.redis_up:
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._read_streams()
            except (TimeoutError, *RETRYABLE) as exc:
                log.warning("reading the order streams failed: %s", exc)
        for key in snapshot.malformed:
            BAD_MESSAGES.labels("monitoring", key, "malformed").inc()
        for service, beat in snapshot.heartbeats.items():
            self.heartbeat_last_seen_s[service] = beat.ts
        market_open = self.market_open(now)
        legged = self.legs.legged(now, self.rules.legging_timeout_s)
        view = MonitorView(
            expected_services=self.rules.expected_services,
            heartbeat_last_seen_s=dict(self.heartbeat_last_seen_s),
            market_open=market_open,
            daily_loss_limit_usd=self.rules.daily_loss_limit_usd,
            legged_intents=len(legged),
        )
        COLLECTOR.update(snapshot_families(snapshot, view))
        conditions = evaluate(
            snapshot,
            self.rules,
            market_open=market_open,
            monitor_age_s=now - self.started_s,
            seen_services=self.heartbeat_last_seen_s,
            watched_symbols=self.symbols,
            legged=legged,
        )
        evaluated = EVERY_CODE if snapshot.redis_up else frozenset({AlertCode.REDIS_DOWN})
        alerts = self.tracker.update(conditions, now, evaluated)
        for alert in alerts:
            ALERTS_RAISED.labels(alert.code, alert.labels["state"]).inc()
            level = logging.INFO if alert.labels["state"] == "resolved" else logging.WARNING
            log.log(
                level,
                alert.message,
                extra={"event.action": f"alert_{alert.labels['state']}", "alert.code": alert.code},
            )
        active = Counter_(condition.code for condition in self.tracker.active)
        for code in AlertCode:  # every code, 0 included, so "nothing firing" is a value
            ACTIVE_ALERTS.labels(code.value).set(active.get(code, 0))
        self.outbox.extend(alerts)
        if snapshot.redis_up:
            await self._flush()
        self.last_snapshot = snapshot
        CYCLE_SECONDS.observe(time.perf_counter() - started)
        LAST_CYCLE.set(self.clock())
        return alerts

    async def _flush(self) -> None:
        try:
            while self.outbox:
                alert = self.outbox[0]
                async with asyncio.timeout(self.timeout_s):
                    await self.bus.append(Streams.ALERTS, alert)
                self.outbox.popleft()  # in the stream: never appended twice
                # The live push is best effort: a page that missed it reads the stream.
                async with asyncio.timeout(self.timeout_s):
                    await self.bus.publish(Channels.ALERTS, alert)
        except (TimeoutError, *RETRYABLE) as exc:
            log.warning("alerts kept for later, Redis refused them: %s", exc)

    async def _read_streams(self) -> None:
        for stream in _FOLLOWED:
            while True:
                after = self.cursors.get(stream, "0")
                low = "-" if after == "0" else f"({after}"
                raw = cast(
                    RawEntries, await self.bus.redis.xrange(stream, min=low, count=READ_BATCH)
                )
                for raw_id, fields in raw:
                    entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                    self.cursors[stream] = entry_id
                    try:
                        message: Message = decode(fields[b"m"])
                    except (MessageError, KeyError):
                        BAD_MESSAGES.labels("monitoring", stream, "malformed").inc()
                        continue
                    await self._follow(StreamEntry(stream, entry_id, message), observe=True)
                if len(raw) < READ_BATCH:
                    break

    async def _follow(self, entry: StreamEntry[Message], observe: bool) -> None:
        message = entry.message
        samples: list[LatencySample] = []
        if isinstance(message, OrderIntent):
            tick = tick_time_of(message)
            if tick is None and observe:
                tick = await self._tick_before(message)
            samples = self.latency.on_intent(message, tick)
            self.legs.on_intent(message)
        elif isinstance(message, RiskDecision):
            samples = self.latency.on_decision(message)
        elif isinstance(message, OrderEvent):
            samples = self.latency.on_order_event(message)
            self.legs.on_order_event(message)
        elif isinstance(message, Alert) and observe:
            ALERTS_SEEN.labels(message.source, message.code, message.severity.value).inc()
        if not observe:
            return
        for sample in samples:
            if sample.seconds < 0:
                NEGATIVE_LATENCY.labels(sample.stage.value).inc()
            else:
                PIPELINE_LATENCY.labels(sample.stage.value, sample.leg).observe(sample.seconds)

    async def _tick_before(self, intent: OrderIntent) -> float | None:
        """Receive time of the newest quote of the intent's symbols recorded before it."""
        newest: float | None = None
        ceiling = str(int(intent.ts * 1000))
        for symbol in sorted({leg.symbol for leg in intent.legs}):
            raw = cast(
                RawEntries,
                await self.bus.redis.xrevrange(Streams.history(symbol), max=ceiling, count=1),
            )
            if not raw:
                continue
            try:
                quote: Message = decode(raw[0][1][b"m"])
            except (ValueError, KeyError):
                continue
            if isinstance(quote, Quote) and quote.ts_recv <= intent.ts:
                newest = quote.ts_recv if newest is None else max(newest, quote.ts_recv)
        return newest

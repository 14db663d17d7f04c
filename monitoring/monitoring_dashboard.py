"""The monitoring service: exports the system's state in Redis as Prometheus metrics and appends
alerts (stale data, a silent service, HALTED, limits near, legging, consumer lag, Redis down) to
the alert stream. The logic lives in trading.monitoring; this is the loop around it.

    python monitoring/monitoring_dashboard.py      # /metrics on :9105 (TRADING_METRICS__PORT)
"""

from __future__ import annotations

import asyncio

from trading.monitoring.monitor import Monitor
from trading.observability import ERRORS
from trading.services.shell import ServiceContext, run_service

SERVICE = "monitoring"


async def main(ctx: ServiceContext) -> None:
    monitor = Monitor(ctx.bus, ctx.settings, source=SERVICE)
    await monitor.prime()
    interval_s = ctx.settings.monitoring.interval_s
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await monitor.cycle()
        except asyncio.CancelledError:
            raise
        except Exception:
            ctx.log.exception("monitoring cycle failed", extra={"event.action": "cycle_failed"})
            ERRORS.labels(SERVICE, "cycle").inc()
            ctx.status["state"] = "degraded"
        else:
            snapshot = monitor.last_snapshot
            redis_up = snapshot is not None and snapshot.redis_up
            ctx.status.update(
                state="ok" if redis_up else "degraded",
                redis_up=redis_up,
                active_alerts=len(monitor.tracker.active),
            )
        await asyncio.sleep(max(0.0, interval_s - (loop.time() - started)))


if __name__ == "__main__":
    run_service(SERVICE, main)

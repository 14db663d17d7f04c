"""Risk benchmark: intent-to-order-sent latency of the live risk service, and the gate alone.

Runs the real service runtime against ibsim and an embedded Redis with marks written from
ibsim's truth, appends order intents one at a time and measures:

* in-service: from the intent decoded off the stream to its order handed to the IB socket
  (gate decision + "placing" record in Redis + placeOrder): the issue's target, p99 < 1 ms;
* end to end: from XADD of the intent (wall clock) to the same point (adds the stream hop);
* the pure gate decision alone (RiskGate.decide on a two-leg intent).

Run: `.venv/bin/python bench/bench_risk.py [n_intents]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
import urllib.request
from datetime import datetime

import bench_ingestion
from common import load_average

from trading import seams
from trading.bus import (
    Bus,
    Channels,
    IntentLeg,
    IntentPurpose,
    Keys,
    LegKind,
    OrderIntent,
    Quote,
    Side,
    SignalAction,
    Streams,
)
from trading.redis_server import EmbeddedRedis
from trading.services.risk import RiskRuntime
from trading.services.shell import ServiceContext, serve
from trading.settings import load_settings

TLTW_ID = 545186218
TARGET_P99_S = 0.001


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def truth(admin_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/truth", timeout=5) as response:
        return json.loads(response.read())


async def write_marks(bus: Bus, admin_port: int) -> None:
    market = truth(admin_port)
    price = round(market["tltw_price"], 2)
    ts = datetime.fromisoformat(market["time"]).timestamp()
    quote = Quote("TLTW", TLTW_ID, price - 0.01, price + 0.01, 100.0, 100.0, None, ts, time.time())
    await bus.set_latest(Keys.quote("TLTW"), quote)
    await bus.publish(Channels.QUOTES, quote)


def tltw_intent(i: int, price: float) -> OrderIntent:
    leg = IntentLeg(LegKind.STOCK, "TLTW", Side.BUY, 1, round(price, 2), TLTW_ID)
    return OrderIntent(
        f"bench-{i}",
        "bench",
        time.time(),
        IntentPurpose.ENTRY,
        SignalAction.ENTER_LONG_SPREAD,
        (leg,),
    )


async def service_latency(
    n: int,
) -> tuple[list[float], list[float], int, dict[str, list[float]]]:
    """The in-service and end-to-end samples, how many orders were still working when
    the next intent came (each intent waits for the one before it to fill, so the gate sees
    the book a session has, not hundreds of working orders: a decision's cost grows with
    them), and the in-service time split at risk's seams: the decision, the "placing" record's
    round trip, the orders handed to the socket."""
    process, port, admin_port = bench_ingestion.start_gateway(seed=1, tick_interval_s=0.02)
    redis = EmbeddedRedis().start()
    try:
        settings = load_settings(
            redis={"url": redis.url},
            ib={"port": port, "connect_timeout_s": 5},
            risk={"max_orders_per_minute": 1_000_000, "max_tltw_shares": 1_000_000},
        )
        bus = await Bus.connect(redis.url, "bench", attempts=20)
        await write_marks(bus, admin_port)
        in_service: list[float] = []
        marks: dict[str, float] = {}
        phases: dict[str, list[float]] = {"decide": [], "placing record": [], "placeOrder": []}
        end_to_end: list[float] = []
        placed = asyncio.Event()
        runtimes: list[RiskRuntime] = []

        async def main(ctx: ServiceContext) -> None:
            runtime = RiskRuntime(ctx)
            runtimes.append(runtime)
            original = runtime.handle_intent

            async def approved() -> None:  # the gate has decided
                marks["approved"] = time.perf_counter()

            async def recorded() -> None:  # the "placing" record is in Redis
                marks["recorded"] = time.perf_counter()

            async def order_sent() -> None:  # every leg handed to the IB socket
                now = time.perf_counter()
                t0 = marks["t0"]
                in_service.append(now - t0)
                phases["decide"].append(marks["approved"] - t0)
                phases["placing record"].append(marks["recorded"] - marks["approved"])
                phases["placeOrder"].append(now - marks["recorded"])
                end_to_end.append(time.time() - marks["intent_ts"])
                placed.set()

            async def timed_intent(intent: OrderIntent, t0: float) -> bool:
                marks["t0"], marks["intent_ts"] = t0, intent.ts
                return await original(intent, t0)

            runtime.handle_intent = timed_intent  # type: ignore[method-assign]
            seams.arm("risk.approved", approved)
            seams.arm("risk.placing_recorded", recorded)
            seams.arm("risk.order_sent", order_sent)
            try:
                await runtime.run()
            finally:
                for name in ("risk.approved", "risk.placing_recorded", "risk.order_sent"):
                    seams.disarm(name)

        task = asyncio.create_task(serve("risk-management", main, settings, redis.url, 0))
        while not (runtimes and runtimes[0].ready.is_set()):
            await asyncio.sleep(0.05)
        tracker = runtimes[0].engine.tracker
        working = 0
        for i in range(n):
            if i % 20 == 0:
                await write_marks(bus, admin_port)
            quote = await bus.get_latest(Keys.quote("TLTW"), Quote)
            placed.clear()
            # Marketable (ibsim's ask is within a few cents of the truth the marks come from).
            await bus.append(Streams.INTENTS, tltw_intent(i, quote.ask + 0.05))
            await asyncio.wait_for(placed.wait(), 5)
            deadline = time.monotonic() + 2.0
            while tracker.open_legs() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            working = max(working, len(tracker.open_legs()))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await bus.close()
        return in_service, end_to_end, working, phases
    finally:
        redis.stop()
        bench_ingestion.stop_gateway(process)


def gate_latency(n: int = 5_000) -> list[float]:
    sys.path.insert(0, ".")
    from tests.risk.helpers import NOW, buy_write_leg, intent, tltw_leg
    from tests.risk.test_gate import marks, view
    from trading.execution.gate import RiskGate
    from trading.settings import RiskSettings

    gate = RiskGate(RiskSettings())
    the_view = view(m=marks())
    entry = intent(buy_write_leg(Side.BUY, 1, 8998.40), tltw_leg(Side.SELL, 375, 24.0))
    gate.decide(entry, the_view, NOW)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        gate.decide(entry, the_view, NOW)
        out.append(time.perf_counter() - start)
    return out


def report(name: str, samples: list[float], target: float | None = None) -> None:
    p50, p99 = statistics.median(samples), pct(samples, 0.99)
    verdict = "" if target is None else ("  OK" if p99 < target else "  MISSED")
    print(
        f"{name:<44} n={len(samples):>5}  p50 {p50 * 1e3:7.3f} ms  p99 {p99 * 1e3:7.3f} ms"
        f"  max {max(samples) * 1e3:7.3f} ms"
        + (f"  (target p99 < {target * 1e3:g} ms){verdict}" if target else "")
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    report("gate decision (2-leg intent, pure)", gate_latency())
    in_service, end_to_end, working, phases = asyncio.run(service_latency(n))
    report("intent read -> order sent (in service)", in_service, TARGET_P99_S)
    for name, samples in phases.items():
        report(f"  of which {name}", samples)
    report("intent XADD -> order sent (with stream hop)", end_to_end)
    print(f"ibsim in its own process; most orders working at an intent: {working}")
    print(load_average())


if __name__ == "__main__":
    main()

"""Benchmark of the strategy: engine decisions per second and tick-to-intent latency.

Run: python bench/bench_strategy.py

1. Engine (no I/O): four sessions of one-minute bars from ibsim's market model (TLT, TLTW, NAV
   and 21 calls per bar, about 56,000 messages) fed through `StrategyEngine.on_message`:
   messages per second, bar closes ("decisions": estimators + signal + sizing) per second, and
   the time of one bar close (p50/p99), with low bands so that intents are produced.
2. Service (real Redis, pub/sub): the same messages published as fast as Redis takes them to a
   running strategy service; messages applied per second, ticks conflated, and the latency from
   the arrival of the tick that closes a bar to the bar's outputs (and intents) written to Redis.
Target (issue 6): at least 2,500 decisions per second; beyond that, conflate rather than lag.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from common import load_average  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402

from tests.strategy.scenario import scenario_settings, shock_messages  # noqa: E402
from trading.bus import (  # noqa: E402
    Bus,
    Channels,
    DataHealth,
    EtfNav,
    Keys,
    OptionChain,
    OptionQuote,
    Quote,
    RiskDecision,
    Streams,
    encode,
)
from trading.redis_server import EmbeddedRedis  # noqa: E402
from trading.services.shell import serve  # noqa: E402
from trading.strategy import StrategyEngine  # noqa: E402

TARGET_DECISIONS_PER_S = 2_500
BUSY = {"entry_z": 1.5, "exit_z": 0.3, "stop_z": 50.0}  # many intents, for latency samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_engine(messages) -> None:
    engine = StrategyEngine.from_settings(scenario_settings(**BUSY))
    bar_times: list[float] = []
    intent_times: list[float] = []
    started = time.perf_counter()
    for msg in messages:
        before = time.perf_counter()
        result = engine.on_message(msg)
        if result.bar_end_ts is not None:
            took = time.perf_counter() - before
            bar_times.append(took)
            for intent in result.intents:
                intent_times.append(took)
                engine.on_decision(RiskDecision(intent.intent_id, intent.ts, True, ()))
    elapsed = time.perf_counter() - started
    decisions = len(bar_times) / sum(bar_times)
    print("engine (no I/O)")
    print(
        f"  messages/s            {len(messages) / elapsed:>12,.0f}   ({len(messages):,} messages)"
    )
    print(
        f"  decisions/s           {decisions:>12,.0f}   target >= {TARGET_DECISIONS_PER_S:,}"
        f"   {'PASS' if decisions >= TARGET_DECISIONS_PER_S else 'FAIL'}"
    )
    print(
        f"  bar close             p50 {percentile(bar_times, 0.5) * 1e6:8.1f} us"
        f"   p99 {percentile(bar_times, 0.99) * 1e6:8.1f} us   ({len(bar_times)} bars)"
    )
    if intent_times:
        print(
            f"  tick-to-intent        p50 {percentile(intent_times, 0.5) * 1e6:8.1f} us"
            f"   max {max(intent_times) * 1e6:8.1f} us   ({len(intent_times)} intents)"
        )


def histogram_buckets(name: str) -> dict[float, float]:
    """Cumulative bucket counts of a Prometheus histogram, by upper bound."""
    return {
        float(sample.labels["le"]): sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == f"{name}_bucket"
    }


def quantiles(now: dict[float, float], before: dict[float, float]) -> tuple[int, float, float]:
    """(count, p50 bound, p99 bound) of the observations between two bucket snapshots."""
    buckets = sorted((bound, value - before.get(bound, 0.0)) for bound, value in now.items())
    count = int(buckets[-1][1]) if buckets else 0

    def quantile(q: float) -> float:
        return next((b for b, c in buckets if c >= q * count and count), float("nan"))

    return count, quantile(0.5), quantile(0.99)


def counter(name: str) -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == name:
                total += sample.value
    return total


async def bench_service(messages, bars_per_second: float | None) -> None:
    """Publish bar by bar at ``bars_per_second`` (None: as fast as Redis takes them)."""
    from trading.services.strategy import run

    ticks = [m for m in messages if isinstance(m, Quote | OptionQuote | EtfNav | DataHealth)]
    channel = {Quote: Channels.QUOTES, OptionQuote: Channels.OPTIONS, EtfNav: Channels.NAV}
    redis = EmbeddedRedis().start()
    try:
        settings = scenario_settings(**BUSY)
        bus = await Bus.connect(redis.url, "bench")
        chain = next(m for m in messages if isinstance(m, OptionChain))
        await bus.set_latest(Keys.CHAIN, chain)  # the chain lives in a key, polled each second
        task = asyncio.create_task(serve("strategy", run, settings, redis.url, 0))
        await asyncio.sleep(1.0)
        approver = asyncio.create_task(approve(bus))
        applied_before = counter("trading_strategy_messages_total")
        conflated_before = counter("trading_strategy_conflated_total")
        names = {
            "tick-to-bar-published": "trading_strategy_tick_to_bar_published_seconds",
            "tick-to-intent": "trading_strategy_tick_to_intent_seconds",
        }
        buckets_before = {label: histogram_buckets(name) for label, name in names.items()}
        started = time.perf_counter()
        # Live data must look fresh to the wall-clock staleness check: ts_recv is restamped.
        pipe = bus.redis.pipeline(transaction=False)
        for msg in messages:
            if type(msg) in channel:
                now = time.time()
                msg = type(msg)(**{**_fields(msg), "ts_recv": now})
                pipe.publish(channel[type(msg)], encode(msg))
            elif isinstance(msg, OptionChain):
                pipe.set(Keys.CHAIN, encode(msg))
            else:
                continue
            if isinstance(msg, Quote) and msg.symbol == "TLT":  # the first message of a bar
                await pipe.execute()
                if bars_per_second:
                    await asyncio.sleep(1.0 / bars_per_second)
        await pipe.execute()
        published = time.perf_counter() - started
        await asyncio.sleep(2.0)
        applied = counter("trading_strategy_messages_total") - applied_before
        conflated = counter("trading_strategy_conflated_total") - conflated_before
        intents = await bus.read_after(Streams.INTENTS, "0", 10_000)
        pace = f"{bars_per_second:.0f} bars/s" if bars_per_second else "unpaced burst"
        print(f"service (real Redis pub/sub, {pace})")
        print(
            f"  published             {len(ticks):>12,} ticks in {published:.2f} s "
            f"({len(ticks) / published:,.0f}/s)"
        )
        print(f"  applied               {applied:>12,.0f}   conflated {conflated:,.0f}")
        for label, name in names.items():
            count, p50, p99 = quantiles(histogram_buckets(name), buckets_before[label])
            print(
                f"  {label:<21} p50 <= {p50 * 1e3:6.2f} ms   p99 <= {p99 * 1e3:6.2f} ms   "
                f"({count} samples)"
            )
        print(f"  intents appended      {len(intents):>12}")
        for t in (task, approver):
            t.cancel()
        await asyncio.wait([task, approver], timeout=10)
        await bus.close()
    finally:
        redis.stop()


def _fields(msg) -> dict:
    return {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}


async def approve(bus: Bus) -> None:
    from trading.bus import OrderIntent

    after = "0"
    while True:
        for entry in await bus.read_after(Streams.INTENTS, after, 100, OrderIntent):
            after = entry.entry_id
            await bus.append(
                Streams.DECISIONS, RiskDecision(entry.message.intent_id, time.time(), True, ())
            )
        await asyncio.sleep(0.01)


def main() -> None:
    print(load_average())
    messages = list(shock_messages())
    bench_engine(messages)
    asyncio.run(bench_service(messages, 100.0))
    asyncio.run(bench_service(messages, None))


if __name__ == "__main__":
    main()

"""Ingestion benchmark: ticks/s sustained from ibsim (firehose mode) into Redis, and the
receive-to-publish latency (socket read of a tick -> the Redis round trip that published it).

ibsim runs in its own process (so it does not share our GIL), Redis is a real redis-server, the
client is the real ib_async (or ib_insync: `--library ib_insync`). Targets (issue 5): at least
20,000 ticks/s; p99 latency under 1 ms.

Two runs: "firehose" (ibsim steps as fast as the client reads: throughput, and the latency of a
saturated feed, which is queueing) and "live" (ibsim at real time, a tick batch every 250 ms
on 16 lines: the latency of the feed at its working load).

    .venv/bin/python bench/bench_ingestion.py [--seconds 10] [--library ib_async]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "data-ingestion"))

import data_ingestion  # noqa: E402
from common import load_average  # noqa: E402

from trading.bus import Bus  # noqa: E402
from trading.redis_server import EmbeddedRedis  # noqa: E402
from trading.services.shell import ServiceContext  # noqa: E402
from trading.settings import load_settings  # noqa: E402

GATEWAY = """
import json, sys
from trading.ibsim.config import SimConfig
from trading.ibsim.gateway import SimulatedGateway
gw = SimulatedGateway(SimConfig(**json.loads(sys.argv[1])), admin_port=0).start()
print(gw.port, gw.admin_port, flush=True)
sys.stdin.read()
gw.stop()
"""


def start_gateway(**config: object) -> tuple[subprocess.Popen, int, int]:
    """ibsim in its own process (as IB Gateway is), with `SimConfig(**config)`: the process,
    its API port and its admin port. Closing the process's stdin stops it."""
    process = subprocess.Popen(
        [sys.executable, "-c", GATEWAY, json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = process.stdout.readline() if process.stdout else ""
    ports = line.split()
    if len(ports) != 2 or not all(p.isdigit() for p in ports):
        process.kill()
        raise RuntimeError(f"ibsim did not start: {line!r}")
    return process, int(ports[0]), int(ports[1])


def stop_gateway(process: subprocess.Popen) -> None:
    if process.stdin:
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def run(firehose: bool, library: str, seconds: float, warmup_s: float) -> dict:
    """One measurement against its own ibsim process and Redis, both stopped after it."""
    process, port, _ = start_gateway(seed=1, firehose=firehose)
    redis = EmbeddedRedis().start()
    try:
        return asyncio.run(measure(port, redis.url, library, seconds, warmup_s))
    finally:
        redis.stop()
        stop_gateway(process)


async def measure(port: int, redis_url: str, library: str, seconds: float, warmup_s: float):
    settings = load_settings(
        redis={"url": redis_url},
        ib={"port": port, "library": library},
        # Backfill is not what is measured: a tiny duration keeps its requests out of the way.
        ingestion={"silence_s": 5.0, "backfill_duration": "60 S"},
    )
    bus = await Bus.connect(redis_url, "data-ingestion")
    ctx = ServiceContext("data-ingestion", settings, bus, logging.getLogger("data-ingestion"))
    connection, feed = data_ingestion.build(ctx)
    task = asyncio.create_task(data_ingestion.run(connection, feed))
    try:
        deadline = time.monotonic() + 10
        while len(feed.md.lines) < 16 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(warmup_s)
        feed.latencies = []
        stats = connection.ib.client.connectionStats()
        ticks0, published0, messages0 = feed.ticks_received, feed.quotes_published, stats.numMsgRecv
        history0 = await _history_length(bus, feed)
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
        stats = connection.ib.client.connectionStats()
        result = {
            "lines": len(feed.md.lines),
            "ib_messages_per_s": (stats.numMsgRecv - messages0) / elapsed,
            "ticks_per_s": (feed.ticks_received - ticks0) / elapsed,
            "quotes_published_per_s": (feed.quotes_published - published0) / elapsed,
            "history_entries_per_s": (await _history_length(bus, feed) - history0) / elapsed,
            "latencies": np.array(feed.latencies),
        }
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await bus.close()
    return result


async def _history_length(bus: Bus, feed) -> int:
    from trading.bus import Streams

    return sum([await bus.redis.xlen(Streams.history(ln.name)) for ln in feed.md.lines.values()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--library", default="ib_async", choices=["ib_async", "ib_insync"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for firehose in (True, False):
        r = run(firehose, args.library, args.seconds, args.warmup)
        print(f"--- {'firehose' if firehose else 'live (real-time ibsim)'}")
        report(r, args.library)


def report(r: dict, library: str) -> None:
    lat_us = r["latencies"] * 1e6
    print(f"library                  {library}  ({r['lines']} market data lines)")
    print(f"IB messages received/s   {r['ib_messages_per_s']:>10,.0f}")
    print(f"ticks processed/s        {r['ticks_per_s']:>10,.0f}   (target >= 20,000)")
    print(f"quotes published/s       {r['quotes_published_per_s']:>10,.0f}")
    print(f"history entries/s        {r['history_entries_per_s']:>10,.0f}   (conflated)")
    if len(lat_us):
        p50, p90, p99 = np.percentile(lat_us, [50, 90, 99])
        print(
            f"receive->publish latency p50 {p50:,.0f} us  p90 {p90:,.0f} us  "
            f"p99 {p99:,.0f} us  max {lat_us.max():,.0f} us   (target p99 < 1,000 us)"
        )
    print(load_average())


if __name__ == "__main__":
    main()

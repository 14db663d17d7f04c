"""Dashboard latency: JSON panels and PNG plots, p50/p99, against a real Redis.

    .venv/bin/python bench/bench_visualization.py [--points 20000] [--requests 300]

Requests go through the whole FastAPI app in-process (httpx's ASGI transport: routing,
validation, the query layer, Redis round trips on loopback, JSON serialisation), one at a time,
after a warm-up that fills the in-memory series. Target: every JSON panel under 5 ms at p50.
Prints one line per endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from common import load_average  # noqa: E402

from tests.visualization.seed import seed, spread_point  # noqa: E402
from trading.bus import Bus, Streams  # noqa: E402
from trading.dashboard.app import create_app  # noqa: E402
from trading.redis_server import EmbeddedRedis  # noqa: E402
from trading.settings import load_settings  # noqa: E402

JSON_PATHS = (
    "/api/spread",
    "/api/spread?since={since}",
    "/api/prices",
    "/api/hedge",
    "/api/option",
    "/api/book",
    "/api/risk",
    "/api/health",
    "/api/alerts",
    "/healthz",
)
PNG_PATHS = ("/plots/spread.png", "/plots/prices.png", "/plots/hedge.png", "/plots/risk.png")


async def measure(client: httpx.AsyncClient, path: str, count: int) -> np.ndarray:
    for _ in range(min(20, count)):
        (await client.get(path)).raise_for_status()
    times = np.empty(count)
    for i in range(count):
        start = time.perf_counter()
        response = await client.get(path)
        times[i] = time.perf_counter() - start
        response.raise_for_status()
    return times * 1000.0


async def main(points: int, requests: int) -> None:
    with EmbeddedRedis() as redis:
        bus = await Bus.connect(redis.url, "bench")
        await seed(bus, points=240)
        for i in range(240, points):
            await bus.append(Streams.SPREAD, spread_point(i), maxlen=points + 1000)
        app = create_app(load_settings(redis={"url": redis.url}), bus, heartbeat=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                since = spread_point(points - 5).ts
                print(f"spread stream: {points} points; JSON series limit 2000 (default)")
                print(f"{'endpoint':32} {'p50 ms':>8} {'p99 ms':>8} {'bytes':>9}")
                for template in JSON_PATHS:
                    path = template.format(since=since)
                    ms = await measure(client, path, requests)
                    size = len((await client.get(path)).content)
                    print(f"{path[:32]:32} {np.percentile(ms, 50):8.2f} "
                          f"{np.percentile(ms, 99):8.2f} {size:9d}")  # fmt: skip
                for path in PNG_PATHS:
                    ms = await measure(client, path, max(10, requests // 10))
                    size = len((await client.get(path)).content)
                    print(f"{path:32} {np.percentile(ms, 50):8.2f} "
                          f"{np.percentile(ms, 99):8.2f} {size:9d}")  # fmt: skip
        await bus.close()
    print(load_average())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.points, args.requests))

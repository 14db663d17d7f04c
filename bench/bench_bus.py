"""Bus benchmark: encode+decode per message, one-hop pub/sub latency on the embedded Redis, and
the write of one market step's batch (ingestion's: MSET, HSET, 16 PUBLISH, 16 XADD) through
redis-py's pipeline and through the bus's lean connection (trading/bus/resp.py).

Target (issue 2): encode+decode under 5 µs per tick message.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from common import load_average

from trading import bus as b
from trading.redis_server import EmbeddedRedis

T = 1_764_000_000.0
QUOTE = b.Quote("TLT", 15547841, 90.01, 90.02, 500.0, 700.0, 90.015, T, T)
OPTION = b.OptionQuote(
    "TLT", 700000001, "TLT   261218C00090000", "20261218", 90.0, "C", 1.52, 1.56, 10.0, 12.0,
    0.14, 0.52, 0.09, 0.11, -0.031, 90.0, 1.54, T, T,
)  # fmt: skip


def per_message_us(msg: b.Message, n: int = 200_000) -> float:
    kind = type(msg)
    start = time.perf_counter()
    for _ in range(n):
        b.decode(b.encode(msg), kind)
    return (time.perf_counter() - start) / n * 1e6


async def pubsub_latency(url: str, n: int = 5_000) -> list[float]:
    pub = await b.Bus.connect(url, "bench-pub")
    sub = await b.Bus.connect(url, "bench-sub")
    latencies: list[float] = []
    done = asyncio.Event()

    async def listen() -> None:
        async for _channel, msg in sub.subscribe(b.Channels.QUOTES):
            latencies.append(time.time() - msg.ts_recv)
            if len(latencies) >= n:
                done.set()
                return

    task = asyncio.create_task(listen())
    while (await pub.redis.pubsub_numsub(b.Channels.QUOTES))[0][1] == 0:
        await asyncio.sleep(0.01)
    for _ in range(n):
        await pub.publish(
            b.Channels.QUOTES, b.Quote("TLT", 1, 90.0, 90.01, 1.0, 1.0, None, T, time.time())
        )
        await asyncio.sleep(0)  # one message in flight at a time: latency, not throughput
    await asyncio.wait_for(done.wait(), 30)
    task.cancel()
    await pub.close()
    await sub.close()
    return latencies


def step_batch() -> b.Batch:
    data = b.encode(OPTION)
    batch = b.Batch()
    batch.set_many({f"bench:latest:{i}": data for i in range(16)})
    batch.hset_many("bench:index", {str(i): data for i in range(15)})
    for _ in range(16):
        batch.publish("bench:options", data)
    for i in range(16):
        batch.append(f"bench:history:{i}", data, 1000)
    return batch


async def batch_write_us(url: str, n: int = 1_000) -> tuple[list[float], list[float]]:
    """One step's batch written and answered: redis-py's pipeline, then `Bus.execute`."""
    bus = await b.Bus.connect(url, "bench-batch")
    redis_py: list[float] = []
    lean: list[float] = []
    try:
        for i in range(n + 100):
            batch = step_batch()
            start = time.perf_counter()
            pipe = bus.redis.pipeline(transaction=False)
            for command in batch.commands:
                pipe.execute_command(*command)
            await pipe.execute(raise_on_error=True)
            if i >= 100:
                redis_py.append((time.perf_counter() - start) * 1e6)
        for i in range(n + 100):
            batch = step_batch()
            start = time.perf_counter()
            await bus.execute(batch)
            if i >= 100:
                lean.append((time.perf_counter() - start) * 1e6)
    finally:
        await bus.close()
    return redis_py, lean


def main() -> None:
    for msg in (QUOTE, OPTION):
        us = per_message_us(msg)
        verdict = "OK" if us < 5 else "MISSES"
        print(
            f"encode+decode {type(msg).KIND:>13}: {us:6.2f} µs/message (target < 5 µs: {verdict})"
        )
    with EmbeddedRedis() as server:
        lat = asyncio.run(pubsub_latency(server.url))
        redis_py, lean = asyncio.run(batch_write_us(server.url))
    n_commands = len(step_batch().commands)
    for name, us in (("redis-py pipeline", redis_py), ("bus lean connection", lean)):
        ordered = sorted(us)
        p99 = ordered[int(0.99 * len(ordered)) - 1]
        print(
            f"a step's batch ({n_commands} commands), {name:>19}: p50 "
            f"{statistics.median(ordered):.0f} µs, p99 {p99:.0f} µs"
        )
    lat_us = sorted(x * 1e6 for x in lat)
    p50 = statistics.median(lat_us)
    p99 = lat_us[int(0.99 * len(lat_us)) - 1]
    print(f"pub/sub one hop on embedded Redis: p50 {p50:.0f} µs, p99 {p99:.0f} µs over {len(lat)}")
    print(load_average())


if __name__ == "__main__":
    main()

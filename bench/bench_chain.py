"""The whole chain, from the gateway's send of the tick that closes a bar to the gateway's receipt
of the order it caused, with every process real on loopback, beside the floor measured in the
same run.

    ibsim -tick-> data-ingestion -pub/sub-> strategy -intent stream-> risk -placeOrder-> ibsim

The stack is started as `make run` and the fault suite start theirs (trading.runner.Runner with the
fault suite's settings, tests/faults/stack.py), without the dashboard and monitoring: ibsim,
Redis, data-ingestion, strategy and risk-management, each its own process. The sim clock runs
at 600x with a quote update every 60 sim seconds, so ibsim sends a batch of ticks ten times a
wall second (the cadence of the real feed) and every batch closes a one-minute bar: every tick
runs the whole strategy. Entries are driven on purpose: TLTW's premium is shocked (ibsim's
`shock_premium` fault) to +150 bp and then -150 bp, each time the last shock has left the
shortened z window, so the strategy enters, exits and enters again.

Clocks (one machine, one wall clock): ibsim stamps each market step's send (`GET /sends`) and
each order's receipt (`GET /broker`, received_wall); data-ingestion stamps each tick's receipt
(ts_recv); this process stamps when it sees the closing tick on pub/sub and the intent in its
stream (an observer's view: those two middle stamps carry its own wake-up delay, the end-to-end
figure does not). For each strategy intent (entry or exit, ts = the end of its bar): the closing
tick is the first tick published with an exchange time at or after the bar's end, and its step
is the last one ibsim sent before data-ingestion received it. Hops:

    wire     gateway send -> data-ingestion's receipt (TCP, ib_async's reader and decoder)
    ingest   receipt -> the tick on pub/sub (translation, the Redis publish)
    strategy tick on pub/sub -> intent in its stream (inbox, bar close, state + intent write)
    risk     intent in its stream -> placeOrder received by the gateway (gate, "placing"
             record, placeOrder; the order's first leg)

Phases: "real time" (10 steps a wall second), then "burst" (the sim clock at 10x: 100 steps a
wall second, each closing a bar), then "firehose" (bench_ingestion's: ibsim as fast as the
client reads; ticks/s into Redis), then the floor: three redis-py publish/subscribe hops between
three processes (this one -> relay -> relay -> this one) with the intent's payload size.

The last line is the tracked summary:
    chain p50_us=<n> p99_us=<n> floor_p50_us=<n> ratio_p50=<x> ingest_ticks_s=<n>

Targets (issue 19): chain p50 <= 1 ms, p99 <= 3 ms, p50 within 2.5x the floor; firehose >=
30,000 ticks/s. p99.9 is printed with its sample count: below 1,000 samples it is the maximum.

    .venv/bin/python bench/bench_chain.py [--seconds 90] [--burst-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_ingestion  # noqa: E402
from common import load_average  # noqa: E402

from tests.faults.stack import ENTRY_BP, stack_env, wait_for  # noqa: E402
from trading.bus import Channels, IntentPurpose, Keys, Streams  # noqa: E402
from trading.redis_server import EmbeddedRedis, free_port  # noqa: E402
from trading.runner import SERVICES, Runner  # noqa: E402
from trading.settings import load_settings  # noqa: E402

SPEED = 600.0
"""Sim seconds per wall second in the real-time phase: a step (a quote update of every line)
every 60 sim seconds is ten a wall second, and each closes a one-minute bar."""
TICK_INTERVAL_S = 60.0
BURST = 10.0
Z_WINDOW = 30
"""Bars: short, so a shock leaves the window (and the next can trigger) within seconds."""
CHAIN_SERVICES = tuple(
    s for s in SERVICES if s[0] in ("data-ingestion", "strategy", "risk-management")
)
HOPS = ("wire", "ingest", "strategy", "risk")
FLOOR_HOPS = 3
TARGET_P50_US, TARGET_P99_US, TARGET_RATIO, TARGET_INGEST = 1_000, 3_000, 2.5, 30_000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (/proc/<pid>/stat, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pcts(values: list[float] | np.ndarray) -> tuple[float, float, float]:
    a = np.asarray(values, dtype=float)
    if not len(a):
        return (float("nan"),) * 3
    p50, p99, p999 = np.percentile(a, [50, 99, 99.9])
    return float(p50), float(p99), float(p999)


def row(name: str, us: list[float] | np.ndarray) -> str:
    p50, p99, p999 = pcts(us)
    n = len(us)
    return (
        f"  {name:<10} n={n:>5}  p50 {p50:>9,.0f} us  p99 {p99:>9,.0f} us  p99.9 {p999:>9,.0f} us"
    )


# -- the chain --------------------------------------------------------------------------------


@dataclass
class Observed:
    """What this process saw during a phase (wall times)."""

    raw_ticks: list[tuple[float, bytes]] = field(default_factory=list)
    """(seen on pub/sub, the message) in arrival order: decoded after the phase, so that this
    process spends as little as it can of the two cores while the chain runs."""
    ticks: list[tuple[float, float, float]] = field(default_factory=list)
    """(seen on pub/sub, ts_exchange, ts_recv) in arrival order."""

    def decode_ticks(self) -> None:
        for seen_at, raw in self.raw_ticks:
            data = orjson.loads(raw)
            ts_exchange, ts_recv = data.get("ts_exchange"), data.get("ts_recv")
            if ts_exchange is not None and ts_recv is not None:
                self.ticks.append((seen_at, float(ts_exchange), float(ts_recv)))

    intents: list[tuple[float, dict]] = field(default_factory=list)
    """(seen in the stream, the intent's fields)."""


async def observe(url: str, seen: Observed, stop: asyncio.Event) -> None:
    """Record ticks on pub/sub and intents in their stream until ``stop`` (each loop ends on
    its own within half a second). The ticks come through the bus's lean subscription (hiredis,
    every queued message taken at once): redis-py's pub/sub spent about 1 ms of CPU a market
    step here, on the two cores the chain runs on."""
    import redis.asyncio as aioredis

    from trading.bus.resp import Subscription

    sub = await Subscription.subscribe(
        url, "bench-observer", (Channels.QUOTES, Channels.OPTIONS, Channels.NAV)
    )
    reader = aioredis.Redis.from_url(url)

    async def ticks() -> None:
        while not stop.is_set():
            try:
                batch = await asyncio.wait_for(sub.take(), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            seen.raw_ticks += [(now, data) for _channel, data in batch]

    async def intents() -> None:
        try:
            last = (await reader.xinfo_stream(Streams.INTENTS))["last-generated-id"]
        except redis.ResponseError:
            last = "0-0"  # no intent yet
        while not stop.is_set():
            answer = await reader.xread({Streams.INTENTS: last}, block=500)
            now = time.time()
            for _stream, entries in answer or []:
                for entry_id, fields in entries:
                    last = entry_id
                    seen.intents.append((now, orjson.loads(fields[b"m"])))

    try:
        await asyncio.gather(ticks(), intents())
    finally:
        sub.close()
        await reader.aclose()


class ChainStack:
    """ibsim, Redis and the three services of the chain, as the fault suite starts them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.admin_port = free_port()
        env = stack_env(workdir, free_port(), self.admin_port)
        env["TRADING_STRATEGY__Z_WINDOW"] = str(Z_WINDOW)
        # The shock's first bar has a z of about 100 in a window this short: no stop-loss band
        # in the way of the entry it is there to cause.
        env["TRADING_STRATEGY__STOP_Z"] = "10000"
        # Two orders an intent, an intent a second or more: the order-rate limit is not measured.
        env["TRADING_RISK__MAX_ORDERS_PER_MINUTE"] = "100000"
        settings = load_settings(
            redis={"data_dir": str(workdir / "redis")},
            sim={
                "seed": 3,
                "speed": SPEED,
                "admin_port": self.admin_port,
                "premium_bp": 2.0,
                "tick_interval_s": TICK_INTERVAL_S,
            },
        )
        self.runner = Runner(
            settings, json_logs=True, services=CHAIN_SERVICES, env=env, log_dir=workdir / "logs"
        )
        self.url = ""

    def start(self) -> ChainStack:
        self.runner.start()
        self.url = self.runner.env["TRADING_REDIS__URL"]
        client = redis.Redis.from_url(self.url, socket_timeout=2)
        try:
            wait_for(lambda: client.xlen(Streams.SPREAD) > Z_WINDOW + 30, 180, "a z window of bars")
        finally:
            client.close()
        return self

    def stop(self) -> None:
        self.runner.stop()

    def pids(self) -> dict[str, int]:
        """Every process of the chain (and this one, the observer) by name."""
        pids = {c.name: c.proc.pid for c in self.runner.children}
        if self.runner.redis is not None and self.runner.redis._proc is not None:
            pids["redis"] = self.runner.redis._proc.pid
        pids["observer"] = os.getpid()
        return pids

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids().items()}

    def admin(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}{path}",
            data=json.dumps(body or {}).encode(),
            method=method,
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


@dataclass
class PhaseResult:
    name: str
    hops: dict[str, list[float]]
    total: list[float]
    intents: int
    unmatched: int
    steps_per_s: float
    payload: list[int]
    rejected: dict[str, int] = field(default_factory=dict)
    cpu_per_step_us: dict[str, float] = field(default_factory=dict)
    """CPU time each process spent per market step sent during the phase."""


async def run_phase(stack: ChainStack, name: str, speed: float, seconds: float) -> PhaseResult:
    stack.admin("POST", "/faults/set_speed", {"speed": speed})
    seen = Observed()
    stop = asyncio.Event()
    observer = asyncio.create_task(observe(stack.url, seen, stop))
    await asyncio.sleep(0.5)
    started = time.time()
    cpu_before = stack.cpu()
    gap = max(1.25 * Z_WINDOW * TICK_INTERVAL_S / speed, 1.0)
    sign = 1.0
    while time.time() - started < seconds:
        await asyncio.to_thread(
            stack.admin, "POST", "/faults/shock_premium", {"bp": sign * ENTRY_BP}
        )
        sign = -sign
        await asyncio.sleep(gap)
    await asyncio.sleep(1.0)  # the last shock's orders
    cpu_after = stack.cpu()
    stop.set()
    await asyncio.wait_for(observer, 10)
    seen.decode_ticks()
    sends = stack.admin("GET", "/sends", {"since": started - 1.0})["sends"]
    orders = stack.admin("GET", "/broker")["orders"]
    result = match(name, seen, sends, orders, started)
    steps = max(len(sends), 1)
    result.cpu_per_step_us = {
        proc: (cpu_after[proc] - cpu_before[proc]) / steps * 1e6 for proc in cpu_after
    }
    client = redis.Redis.from_url(stack.url)
    try:
        records = client.hgetall(Keys.INTENT_STATUS)
    finally:
        client.close()
    for _, intent in seen.intents:
        raw = records.get(intent["intent_id"].encode())
        record = json.loads(raw) if raw else {}
        if record.get("status") == "rejected":
            reasons = orjson.loads(record["decision"]).get("reasons") or [{}]
            code = reasons[0].get("code", "?")
            result.rejected[code] = result.rejected.get(code, 0) + 1
    return result


def match(name: str, seen: Observed, sends: list, orders: list, started: float) -> PhaseResult:
    send_walls = np.array([wall for _epoch, wall in sends])
    first_order: dict[str, float] = {}
    for order in orders:
        ref = order["order_ref"]
        if ref and order["received_wall"] >= started:
            first_order[ref] = min(first_order.get(ref, np.inf), order["received_wall"])
    tick_exchange = np.array([t[1] for t in seen.ticks])
    hops: dict[str, list[float]] = {h: [] for h in HOPS}
    total: list[float] = []
    payload: list[int] = []
    ours = [
        (t, i)
        for t, i in seen.intents
        if i["purpose"] in (IntentPurpose.ENTRY.value, IntentPurpose.EXIT.value)
    ]
    unmatched = 0
    for intent_seen, intent in ours:
        payload.append(len(orjson.dumps(intent)))
        order = first_order.get(intent["intent_id"])
        # The first tick published with an exchange time in a later bar closed this one.
        later = np.nonzero(tick_exchange >= intent["ts"])[0]
        if order is None or not len(later):
            unmatched += 1
            continue
        tick_seen_at, _, tick_recv = seen.ticks[later[0]]
        step = np.searchsorted(send_walls, tick_recv, side="right") - 1
        if step < 0:
            unmatched += 1
            continue
        sent = send_walls[step]
        stamps = (sent, tick_recv, tick_seen_at, intent_seen, order)
        for hop, a, b in zip(HOPS, stamps, stamps[1:], strict=False):
            hops[hop].append((b - a) * 1e6)
        total.append((order - sent) * 1e6)
    elapsed = (send_walls[-1] - send_walls[0]) if len(send_walls) > 1 else 0.0
    rate = (len(send_walls) - 1) / elapsed if elapsed else 0.0
    return PhaseResult(name, hops, total, len(ours), unmatched, rate, payload)


def report_phase(r: PhaseResult) -> None:
    print(
        f"--- chain, {r.name}: {r.steps_per_s:,.0f} market steps/s, {r.intents} strategy "
        f"intents ({r.unmatched} unmatched: no order or no closing tick seen; refused by "
        f"risk: {r.rejected or 'none'})"
    )
    for hop in HOPS:
        print(row(hop, r.hops[hop]))
    print(row("tick->order", r.total))
    cpu = ", ".join(f"{proc} {us:,.0f}" for proc, us in r.cpu_per_step_us.items())
    total = sum(r.cpu_per_step_us.values())
    print(f"  CPU per market step (us, all processes {total:,.0f}): {cpu}")


# -- the floor ----------------------------------------------------------------------------------

RELAY = """
import sys, redis
r = redis.Redis.from_url(sys.argv[1])
p = r.pubsub(ignore_subscribe_messages=True)
p.subscribe(sys.argv[2])
for m in p.listen():
    r.publish(sys.argv[3], m["data"])
"""


def floor(url: str, payload_bytes: int, n: int) -> list[float]:
    """Round trips of a payload through three publish/subscribe hops between three processes."""
    channels = [f"floor:{i}" for i in range(FLOOR_HOPS + 1)]
    relays = [
        subprocess.Popen([sys.executable, "-c", RELAY, url, channels[i], channels[i + 1]])
        for i in range(FLOOR_HOPS - 1)
    ]
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(channels[FLOOR_HOPS - 1])
        wait_for(
            lambda: all(c for _, c in client.pubsub_numsub(*channels[: FLOOR_HOPS - 1])),
            30,
            "the floor's relays",
            every_s=0.05,
        )
        # A relay forwards channel i to i+1; this process publishes channel 0 and hears the last.
        payload = b"x" * payload_bytes
        out = []
        for i in range(n + 100):
            start = time.perf_counter()
            client.publish(channels[0], payload)
            deadline = start + 5.0
            while pubsub.get_message(timeout=5.0) is None:  # None: a subscribe confirmation
                if time.perf_counter() > deadline:
                    raise TimeoutError("the floor's round trip did not come back")
            if i >= 100:
                out.append((time.perf_counter() - start) * 1e6)
        return out
    finally:
        pubsub.close()
        client.close()
        for relay in relays:
            relay.kill()
            relay.wait(10)


# -- main ---------------------------------------------------------------------------------------


def firehose(seconds: float) -> float:
    return bench_ingestion.run(True, "ib_async", seconds, 3.0)["ticks_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="real-time phase")
    parser.add_argument("--burst-seconds", type=float, default=20.0, help="10x phase")
    parser.add_argument("--firehose-seconds", type=float, default=8.0)
    parser.add_argument("--floor-n", type=int, default=3000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"start: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-chain-") as tmp:
        stack = ChainStack(Path(tmp))
        try:
            stack.start()
            print(f"stack up (ibsim {SPEED:g}x, z window {Z_WINDOW} bars): {load_average()}")
            live = asyncio.run(run_phase(stack, "real time", SPEED, args.seconds))
            burst = asyncio.run(
                run_phase(stack, f"{BURST:g}x burst", SPEED * BURST, args.burst_seconds)
            )
        finally:
            stack.stop()
    report_phase(live)
    report_phase(burst)
    print(f"after the chain: {load_average()}")
    ingest = firehose(args.firehose_seconds)
    print(f"--- ingestion firehose: {ingest:,.0f} ticks/s into Redis (target >= {TARGET_INGEST:,})")
    payload = int(np.median(live.payload + burst.payload)) if live.payload + burst.payload else 600
    server = EmbeddedRedis().start()
    try:
        floor_us = floor(server.url, payload, args.floor_n)
    finally:
        server.stop()
    print(f"--- floor: {FLOOR_HOPS} redis-py pub/sub hops between processes, {payload} B payload")
    print(row("3 hops", floor_us))
    p50, p99, _ = pcts(live.total)
    f50 = pcts(floor_us)[0]
    ratio = p50 / f50 if f50 else float("nan")
    print(
        f"targets: chain p50 {p50:,.0f} us (<= {TARGET_P50_US:,}), p99 {p99:,.0f} us "
        f"(<= {TARGET_P99_US:,}), ratio {ratio:.2f} (<= {TARGET_RATIO}), firehose "
        f"{ingest:,.0f} ticks/s (>= {TARGET_INGEST:,})"
    )
    print(f"end: {load_average()}")
    print(
        f"chain p50_us={p50:.0f} p99_us={p99:.0f} floor_p50_us={f50:.0f} ratio_p50={ratio:.2f} "
        f"ingest_ticks_s={ingest:.0f}"
    )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()

"""Benchmark ibsim: CPU per market step, ticks per second delivered to one real ib_async client,
and connect time.

Run: ``.venv/bin/python bench/bench_ibsim.py [--seconds 5] [--connects 20] [--steps 200]
[--runs 5] [--expiries 2] [--strikes-each-side 3] [--steps-only]``. Prints figures; targets
are >= 20,000 ticks/s to one client and a full ``IB.connect`` (with the start-up
synchronisation) under 50 ms.

CPU per market step: `GatewayCore.advance` in this process (no socket: the session's transport
drops the bytes), one session subscribed as data-ingestion subscribes (TLT and TLTW with their
generic ticks, the calls of ``--expiries`` monthlies, ``--strikes-each-side`` strikes around the
money), a step every 60 sim seconds as in the chain benchmark. Each step's CPU time is the least
over ``--runs`` identical runs (the machine's other work only ever adds to it).

Ticks are counted as the client sees them: every market-data message its decoder handles
(tickPrice, tickSize, tickString, tickGeneric, tickOptionComputation) for the subscriptions,
from ``Client._numMsgRecv`` over the measuring window, and separately the TickData entries
ib_async records on the tickers (price and size ticks only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import ib_async
from common import load_average

from trading.broker.marketdata import ETF_GENERIC_TICKS, STOCK_GENERIC_TICKS
from trading.ibsim import SimConfig, SimulatedGateway
from trading.ibsim.marketdata import Subscription
from trading.ibsim.server import GatewayCore
from trading.ibsim.session import Session
from trading.settings import IngestionSettings

STEP_SECONDS = 60.0


class _NullTransport(asyncio.Transport):
    """Takes a session's bytes and drops them."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def subscribed_core(expiries: int, strikes_each_side: int) -> GatewayCore:
    """A gateway core with one session holding data-ingestion's lines (first ticks sent)."""
    core = GatewayCore(SimConfig(seed=1, speed=600.0, tick_interval_s=STEP_SECONDS))
    session = Session(core)
    session.connection_made(_NullTransport())
    registry = core.model.registry
    spot = core.board.snapshot.tlt_mid
    lines = [(registry.underlying, STOCK_GENERIC_TICKS), (registry.etf, ETF_GENERIC_TICKS)]
    monthlies = [e for e, weekly in registry.listed_expiries(core.today()) if not weekly]
    for expiry in monthlies[:expiries]:
        nearest = sorted(registry.monthly_strikes, key=lambda k: abs(k - spot))
        for strike in sorted(nearest[: 2 * strikes_each_side + 1]):
            lines.append((registry.option(expiry, strike, "C"), ""))
    for req_id, (instrument, generic) in enumerate(lines, start=1):
        ticks = frozenset(int(tick) for tick in generic.split(",") if tick)
        subscription = Subscription(req_id, instrument, (), ticks, False)
        session.send(subscription.ticks(core.board, first=True))
        session.market_data[req_id] = subscription
    return core


def step_cpu(steps: int, runs: int, expiries: int, strikes_each_side: int) -> list[float]:
    """CPU seconds of each of ``steps`` market steps, the least over ``runs`` runs."""
    least = [math.inf] * steps
    for _ in range(runs):
        core = subscribed_core(expiries, strikes_each_side)
        anchor = core.model.calendar.anchor_tau
        for step in range(steps):
            started = time.process_time()
            core.advance(anchor + (step + 1) * STEP_SECONDS)
            least[step] = min(least[step], time.process_time() - started)
    return least


async def connect_times(port: int, count: int) -> list[float]:
    times = []
    for client_id in range(count):
        ib = ib_async.IB()
        started = time.perf_counter()
        await ib.connectAsync("127.0.0.1", port, clientId=100 + client_id, timeout=5)
        times.append(time.perf_counter() - started)
        ib.disconnect()
        await asyncio.sleep(0.01)
    return times


async def tick_rate(port: int, seconds: float) -> tuple[float, float]:
    ib = ib_async.IB()
    await ib.connectAsync("127.0.0.1", port, clientId=1, timeout=5)
    tlt = ib_async.Stock("TLT", "SMART", "USD")
    tltw = ib_async.Stock("TLTW", "SMART", "USD")
    call = ib_async.Option("TLT", "20261218", 90, "C", "SMART")
    await ib.qualifyContractsAsync(tlt, tltw, call)
    recorded = 0

    def on_tickers(tickers) -> None:
        nonlocal recorded
        recorded += sum(len(t.ticks) for t in tickers)

    ib.pendingTickersEvent += on_tickers
    for contract, generic in ((tlt, ""), (tltw, "576,577,578"), (call, "")):
        ib.reqMktData(contract, generic, False, False)
    await asyncio.sleep(0.5)  # warm up
    messages_before, recorded = ib.client._numMsgRecv, 0
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - started
    messages = ib.client._numMsgRecv - messages_before
    ib.disconnect()
    return messages / elapsed, recorded / elapsed


@contextlib.contextmanager
def gateway_process(arguments: list[str]) -> Iterator[int]:
    """``python -m trading.ibsim`` on a free port in a subprocess (its own GIL and core)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "trading.ibsim", "--port", str(port), *arguments]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the ibsim subprocess did not start")
            time.sleep(0.05)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connects", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--expiries", type=int, default=IngestionSettings().expiries)
    parser.add_argument(
        "--strikes-each-side", type=int, default=IngestionSettings().strikes_each_side
    )
    parser.add_argument("--steps-only", action="store_true", help="CPU per market step only")
    args = parser.parse_args()

    cpu = step_cpu(args.steps, args.runs, args.expiries, args.strikes_each_side)
    calls = args.expiries * (2 * args.strikes_each_side + 1)
    print(
        f"CPU per market step (GatewayCore.advance; TLT, TLTW and {calls} calls; "
        f"least of {args.runs} runs per step): median {statistics.median(cpu) * 1e3:.2f} ms, "
        f"mean {statistics.fmean(cpu) * 1e3:.2f} ms over {args.steps} steps; "
        f"{load_average()}"
    )
    if args.steps_only:
        return

    with SimulatedGateway(SimConfig(seed=1), port=0) as gateway:
        times = asyncio.run(connect_times(gateway.port, args.connects))
    print(
        f"connect (full IB.connectAsync sync, {len(times)} runs): "
        f"median {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms "
        f"(target < 50 ms)"
    )

    firehose = SimConfig(seed=1, firehose=True, tick_interval_s=1.0)
    with SimulatedGateway(firehose, port=0) as gateway:
        messages_per_s, recorded_per_s = asyncio.run(tick_rate(gateway.port, args.seconds))
    print(
        f"ticks to one ib_async client, gateway in-process (firehose, TLT + TLTW with NAV + "
        f"one call): {messages_per_s:,.0f} tick messages/s decoded, "
        f"{recorded_per_s:,.0f} TickData/s (target >= 20,000/s)"
    )
    with gateway_process(["--firehose", "--tick-interval", "1.0"]) as port:
        messages_per_s, recorded_per_s = asyncio.run(tick_rate(port, args.seconds))
    print(
        f"ticks to one ib_async client, gateway in its own process (python -m trading.ibsim "
        f"--firehose): {messages_per_s:,.0f} tick messages/s decoded, "
        f"{recorded_per_s:,.0f} TickData/s (target >= 20,000/s)"
    )


if __name__ == "__main__":
    main()

"""Benchmark ibsim: ticks per second delivered to one real ib_async client, and connect time.

Run: ``.venv/bin/python bench/bench_ibsim.py [--seconds 5] [--connects 20]``. Prints figures;
targets are >= 20,000 ticks/s to one client and a full ``IB.connect`` (with the start-up
synchronisation) under 50 ms.

Ticks are counted as the client sees them: every market-data message its decoder handles
(tickPrice, tickSize, tickString, tickGeneric, tickOptionComputation) for the subscriptions,
from ``Client._numMsgRecv`` over the measuring window, and separately the TickData entries
ib_async records on the tickers (price and size ticks only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import ib_async

from trading.ibsim import SimConfig, SimulatedGateway


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
    args = parser.parse_args()

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

"""The IB client's socket reader alone: ib_async's own handler against the linear-time one the
adapter installs (trading/broker/reader.py), on one read holding n tick messages.

ib_async copies the rest of its buffer after each message, so its cost per message grows with
the size of the read (quadratic in all); the adapter's stays flat. Loopback reads of a busy feed
hold hundreds to thousands of messages (the firehose); a real-time read holds tens.

    .venv/bin/python bench/bench_reader.py
"""

from __future__ import annotations

import logging
import time

import ib_async
from common import load_average

from trading.broker import reader
from trading.ibsim.marketdata import tick_option, tick_price

SIZES = (100, 1_000, 4_000, 16_000)
REPEATS = 5


def read_of(n: int) -> bytes:
    """n messages as ibsim sends them: a price tick, then an option computation, in turn."""
    greeks = (0.16, 0.5, 1.2, 0.0, 0.05, 0.1, -0.02, 90.0)
    return b"".join(
        tick_price(i % 40 + 1, 1, 90.0 + i * 0.01, 100.0)
        if i % 2
        else tick_option(i % 40 + 1, 13, greeks)
        for i in range(n)
    )


def client(linear: bool):
    ib_client = ib_async.IB().client
    ib_client._serverVersion = 176
    ib_client.decoder.serverVersion = 176
    ib_client._apiReady = True
    ib_client.connState = type(ib_client).CONNECTED
    if linear:
        reader.install(ib_client)
    return ib_client


def per_message_us(data: bytes, n: int, linear: bool) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        c = client(linear)
        start = time.perf_counter()
        c.conn.hasData.emit(data)
        best = min(best, time.perf_counter() - start)
        assert c._numMsgRecv == n and c._data == b""
    return best / n * 1e6


def main() -> None:
    logging.disable(logging.CRITICAL)  # unknown request ids: the decoder logs each tick
    print(f"{load_average()}; best of {REPEATS}")
    print(f"{'messages':>9} {'bytes':>10} {'ib_async us/msg':>16} {'adapter us/msg':>15} {'x':>6}")
    for n in SIZES:
        data = read_of(n)
        theirs = per_message_us(data, n, linear=False)
        ours = per_message_us(data, n, linear=True)
        print(f"{n:>9,} {len(data):>10,} {theirs:>16.2f} {ours:>15.2f} {theirs / ours:>6.2f}")


if __name__ == "__main__":
    main()

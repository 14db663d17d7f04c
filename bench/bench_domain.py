"""Benchmark of the quant core against the issue's targets. Run: python bench/bench_domain.py

Prints the best and the median of several repeats. Targets are judged on the best, as timeit's
documentation advises (slower repeats are other processes interfering, not the code); the
median and the machine's load average are printed beside it so a reader can see the contention.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
from common import load_average

from trading.domain.black_scholes import Right, greeks, greeks_vec, implied_vol, implied_vol_vec
from trading.domain.common import Side
from trading.domain.hedge import KalmanHedge, RollingOls
from trading.domain.market_hours import EXCHANGE_TIMEZONE, market_calendar
from trading.domain.risk import (
    BookSnapshot,
    InstrumentRisk,
    OrderLeg,
    OrderRequest,
    RiskLimits,
    TradingState,
    check_order,
)
from trading.domain.signals import SignalMachine
from trading.domain.spread import RollingZScore, SpreadTracker

CHAIN_SIZE = 10_000


def measure(function: Callable[[], object], number: int, repeats: int = 7) -> tuple[float, float]:
    """Seconds per call: (median, best) over ``repeats`` runs of ``number`` calls."""
    function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            function()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples), min(samples)


def report(name: str, median: float, best: float, unit: str, target: str, ok: bool) -> None:
    verdict = "ok" if ok else "MISSED"
    print(
        f"{name:<44} best {best:>9.3f} {unit:<11} median {median:>9.3f}  "
        f"target {target:<9} {verdict}"
    )


def chain(size: int):
    rng = np.random.default_rng(0)
    strike = rng.uniform(70, 110, size)
    tau = rng.uniform(2 / 365, 1.0, size)
    vol = rng.uniform(0.08, 0.6, size)
    is_call = rng.random(size) < 0.5
    return 90.0, strike, tau, 0.045, 0.038, vol, is_call


def main() -> None:
    print(load_average())
    spot, strike, tau, rate, div_yield, vol, is_call = chain(CHAIN_SIZE)

    median, best = measure(lambda: greeks_vec(spot, strike, tau, rate, div_yield, vol, is_call), 50)
    report(
        "price + Greeks, 10,000 options in one call",
        CHAIN_SIZE / (median * 1e3),
        CHAIN_SIZE / (best * 1e3),
        "options/ms",
        ">= 5,000",
        CHAIN_SIZE / (best * 1e3) >= 5_000,
    )

    prices = greeks_vec(spot, strike, tau, rate, div_yield, vol, is_call)["price"]
    result = implied_vol_vec(prices, spot, strike, tau, rate, div_yield, is_call)
    median, best = measure(
        lambda: implied_vol_vec(prices, spot, strike, tau, rate, div_yield, is_call), 20
    )
    report(
        "implied vol, chain of 10,000",
        median * 1e3,
        best * 1e3,
        "ms",
        "<= 5",
        best * 1e3 <= 5.0,
    )
    failures = {str(reason): count for reason, count in result.failures().items()}
    print(f"{'':<44} solved {int(result.solved.sum())} of {CHAIN_SIZE}; unsolved: {failures}")

    # Incremental updates: log prices near 4.5, one bar per call.
    rng = np.random.default_rng(1)
    bars = 200_000
    log_index = (4.5 + np.cumsum(rng.normal(0, 1e-4, bars))).tolist()
    log_tltw = [0.98 * x + 0.05 + rng.normal(0, 5e-5) for x in log_index]

    for name, hedge in (
        ("spread + z-score + Kalman update", KalmanHedge()),
        ("spread + z-score + rolling OLS update", RollingOls(7_800)),
    ):
        tracker = SpreadTracker(hedge, RollingZScore(15_600))
        position = iter(range(10**9))

        def step(tracker=tracker, position=position) -> None:
            i = next(position) % bars
            tracker.update(log_tltw[i], log_index[i])

        median, best = measure(step, 20_000)
        report(name, median * 1e6, best * 1e6, "us/update", "< 10", best * 1e6 < 10)

    machine = SignalMachine()
    start = datetime(2024, 6, 12, 14, 0, tzinfo=UTC)
    ticks = iter(range(10**9))

    def signal_step() -> None:
        i = next(ticks)
        machine.update(2.5 * math.sin(i / 50), 10.0, start + timedelta(seconds=i), 3600.0)

    median, best = measure(signal_step, 20_000)
    report("signal state machine update", median * 1e6, best * 1e6, "us/update", "-", True)

    median, best = measure(lambda: greeks(90.0, 91.0, 0.08, 0.045, 0.038, 0.16, Right.CALL), 20_000)
    report("scalar price + Greeks (one option)", median * 1e6, best * 1e6, "us", "-", True)
    median, best = measure(
        lambda: implied_vol(1.25, 90.0, 91.0, 0.08, 0.045, 0.038, Right.CALL), 20_000
    )
    report("scalar implied vol (one option)", median * 1e6, best * 1e6, "us", "-", True)

    calendar = market_calendar()
    now = datetime(2024, 6, 12, 11, 0, tzinfo=EXCHANGE_TIMEZONE)
    call = "TLT 20240719C91"
    snapshot = BookSnapshot(
        {
            "TLT": InstrumentRisk("TLT", 1_000, 90.00, 90.02, now, 1, 1.0, 0.0),
            call: InstrumentRisk(call, -10, 1.58, 1.62, now, 100, 0.48, 0.11),
            "TLTW": InstrumentRisk("TLTW", -3_000, 25.99, 26.01, now, 1, 0.25, 0.0),
        },
        0.0,
        tuple(now - timedelta(seconds=s) for s in range(3)),
        TradingState.ACTIVE,
        now,
    )
    limits = RiskLimits(max_position={"TLT": 2_000, call: 20, "TLTW": 10_000})
    order = OrderRequest((OrderLeg("TLT", 100), OrderLeg(call, -1)), Side.BUY, 2, 8_999.40)
    median, best = measure(lambda: check_order(order, snapshot, limits, calendar), 20_000)
    report("pre-trade risk check (BAG order)", median * 1e6, best * 1e6, "us", "-", True)


if __name__ == "__main__":
    main()

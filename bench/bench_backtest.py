"""Backtest speed: ibsim's one-minute tape through the live strategy and risk engines.

    .venv/bin/python bench/bench_backtest.py [--sessions 252] [--z-window 1560]

Prints three figures: generating the tape (bus messages from ibsim's model), replaying it
through `StrategyEngine` + `ExecutionEngine` + the fill model (ticks = market messages, bars =
one-minute bar closes), and both together. The tape is generated and replayed a month at a time
so a year fits in memory. --z-window sets the strategy's z and OLS windows (the default,
15,600, makes every refit run an Engle-Granger test over 15,600 bars: see the report).
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import numpy as np

from trading.backtest.replay import Replay
from trading.backtest.sources import SimSource
from trading.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=252)
    parser.add_argument("--z-window", type=int, default=1560)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    settings = load_settings(
        strategy={
            "preset": "replica",
            "z_window": args.z_window,
            "ols_window": args.z_window,
            "cointegration_pvalue": 0.99,
            "max_gross_notional_usd": 150_000.0,
        }
    )
    end = date(2026, 10, 30)
    start = np.busday_offset(end, -(args.sessions - 1), roll="backward").astype(date)
    source = SimSource(args.seed, start, end, premium_bp=50.0)
    model = source.model()
    replay = Replay(settings)
    generate_s = replay_s = 0.0
    messages = iter(source.messages(model))
    chunk: list = []
    done = False
    while not done:
        t0 = time.perf_counter()
        chunk.clear()
        for msg in messages:
            chunk.append(msg)
            if len(chunk) >= 200_000:
                break
        else:
            done = True
        t1 = time.perf_counter()
        replay.run(chunk)
        t2 = time.perf_counter()
        generate_s += t1 - t0
        replay_s += t2 - t1
    result = replay.result
    ticks, bars = result.messages, result.bars
    print(
        f"sessions {args.sessions}  bars {bars:,}  ticks {ticks:,}  intents {len(result.records)}"
    )
    print(f"generate tape  {generate_s:8.2f} s  {ticks / generate_s:12,.0f} ticks/s")
    print(
        f"replay (live)  {replay_s:8.2f} s  {ticks / replay_s:12,.0f} ticks/s  "
        f"{bars / replay_s:10,.0f} bars/s"
    )
    total = generate_s + replay_s
    print(f"end to end     {total:8.2f} s  {ticks / total:12,.0f} ticks/s")


if __name__ == "__main__":
    main()

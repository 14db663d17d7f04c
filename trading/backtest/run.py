"""Entry points: replay a source through the live engines and measure it.

run = backtest_sim(settings, SimSource(seed=1, start=date(...), end=date(...), premium_bp=50))
run.metrics.sharpe, run.metrics.r_squared_vs_truth, run.result.records
run = backtest_messages(settings, messages)            # any message stream (csv, ib)
records = seeded_intents(seed=1, start=..., end=..., settings=settings)   # parity checks
run = backtest_recorded(settings, read_tape_url(redis_url))   # what the live stack saw
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import pandas as pd

from trading.backtest.metrics import Metrics, compute_metrics
from trading.backtest.recorded import RecordedTape
from trading.backtest.replay import BacktestResult, IntentRecord, Replay
from trading.backtest.sources import SimSource, true_premium
from trading.bus import Message
from trading.settings import Settings

BARS_PER_SESSION = 390


@dataclass(frozen=True, slots=True)
class BacktestRun:
    result: BacktestResult
    metrics: Metrics
    premium: pd.Series | None = None
    """The ground truth (TLTW's premium to NAV by bar close) when the source knows it."""


def backtest_messages(
    settings: Settings,
    messages: Iterable[Message],
    *,
    total_bars: int | None = None,
    progress: bool = False,
    premium: pd.Series | None = None,
) -> BacktestRun:
    """Replay ``messages`` (time-ordered bus messages) and compute the metrics."""
    replay = Replay(settings)
    if progress:
        from tqdm import tqdm

        with tqdm(total=total_bars, unit="bar", file=sys.stderr, smoothing=0.1) as bar:
            replay.run(messages, on_bar=lambda _ts: bar.update(1))
            result = replay.finish(on_bar=lambda _ts: bar.update(1))
    else:
        replay.run(messages)
        result = replay.finish()
    return BacktestRun(result, compute_metrics(result, premium), premium)


def backtest_sim(settings: Settings, source: SimSource, *, progress: bool = False) -> BacktestRun:
    """Replay ibsim's seeded market; the metrics include the R-squared against the truth."""
    model = source.model()
    premium = true_premium(model, source.start, source.end)
    sessions = source.sessions(model)
    return backtest_messages(
        settings,
        source.messages(model),
        total_bars=sessions * BARS_PER_SESSION,
        progress=progress,
        premium=premium,
    )


def seeded_intents(
    seed: int,
    start: date,
    end: date,
    settings: Settings,
    premium_bp: float = 20.0,
    premium_half_life_days: float = 1.0,
) -> list[IntentRecord]:
    """Every intent of a seeded ibsim period, with risk's decision and the simulated fills, in
    order: what the live stack should produce on the same market (deterministic)."""
    source = SimSource(seed, start, end, premium_bp, premium_half_life_days)
    replay = Replay(settings)
    replay.run(source.messages())
    return replay.finish().records


def backtest_recorded(settings: Settings, tape: RecordedTape) -> BacktestRun:
    """Replay what the live stack saw (`trading.backtest.recorded`) as the live strategy
    consumed it: the warm-up part with trading off, as the service warms up from the history
    streams, then the live part. With the live settings, the trades are the live stack's."""
    replay = Replay(settings)
    replay.strategy.warming_up = True
    try:
        replay.run(tape.warm_up)
    finally:
        replay.strategy.warming_up = False
    replay.run(tape.live)
    result = replay.finish()
    return BacktestRun(result, compute_metrics(result, None), None)

"""Entry points: replay a source through the live engines and measure it.

run = backtest_sim(settings, SimSource(seed=1, start=date(...), end=date(...), premium_bp=50))
run.metrics.sharpe, run.metrics.r_squared_vs_truth, run.result.records
run = backtest_messages(settings, messages)            # any message stream (csv, ib)
records = seeded_intents(seed=1, start=..., end=..., settings=settings)   # parity checks
run = backtest_recorded(settings, read_tape_url(redis_url))   # what the live stack saw
"""

from __future__ import annotations

import math
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
from trading.domain.market_hours import REGULAR_SESSION_SECONDS
from trading.settings import HedgeMethod, Settings
from trading.strategy import RefusedMessage

BARS_PER_SESSION = 390


@dataclass(frozen=True, slots=True)
class BacktestRun:
    result: BacktestResult
    metrics: Metrics
    premium: pd.Series | None = None
    """The ground truth (TLTW's premium to NAV by bar close) when the source knows it."""
    warm_up_bars: int = 0
    """Bars the strategy warmed up on before the period (trading off; not in the metrics)."""


def window_bars(settings: Settings) -> int:
    """Bars the strategy's rolling windows need before its z-score means anything: the z
    window, and the OLS window when the hedge is a rolling OLS."""
    strategy = settings.strategy
    bars = strategy.z_window
    if strategy.hedge_method == HedgeMethod.OLS:
        bars = max(bars, strategy.ols_window)
    return bars


def warm_up_sessions(settings: Settings) -> int:
    """Whole sessions of bars that fill `window_bars` (what a sim backtest warms up on)."""
    per_session = REGULAR_SESSION_SECONDS // settings.strategy.bar_seconds
    return math.ceil(window_bars(settings) / per_session)


def warm_up(replay: Replay, messages: Iterable[Message]) -> int:
    """Feed ``messages`` to the replay's strategy with trading off (its estimators only, as
    the live service warms up from its history streams); returns the bars it saw. The bar
    still open at the end is closed and dropped: it is not part of the period."""
    strategy = replay.strategy
    strategy.warming_up = True
    bars, seen = 0, False
    try:
        for msg in messages:
            seen = True
            try:
                step = strategy.on_message(msg)
            except RefusedMessage as exc:
                step = exc.closed  # the bar it closed stands
            except ValueError:
                continue  # the period's replay counts bad messages; the warm-up skips them
            bars += step.bar_end_ts is not None
        if seen:  # no warm-up leaves the engine untouched
            bars += strategy.close_open_bar().bar_end_ts is not None
    finally:
        strategy.warming_up = False
    return bars


def no_signal_reason(settings: Settings, run: BacktestRun) -> str | None:
    """Why a run gave no signal, in words, when its bars could not fill the windows (None when
    they could, or when it traded)."""
    need = window_bars(settings)
    warm_up_bars = run.warm_up_bars
    seen = warm_up_bars + run.result.bars
    if run.result.intents or seen >= need:
        return None
    per_session = REGULAR_SESSION_SECONDS // settings.strategy.bar_seconds
    return (
        f"no signal was possible: the z-score needs {need:,} bars in its window "
        f"(TRADING_STRATEGY__Z_WINDOW{'/OLS_WINDOW' if need > settings.strategy.z_window else ''}"
        f", {need / per_session:.0f} sessions) and this run had {seen:,} "
        f"({seen / per_session:.1f} sessions{', warm-up included' if warm_up_bars else ''}): "
        "give it a longer range, more warm-up, or a shorter window"
    )


def backtest_messages(
    settings: Settings,
    messages: Iterable[Message],
    *,
    total_bars: int | None = None,
    progress: bool = False,
    premium: pd.Series | None = None,
    warm_up_messages: Iterable[Message] = (),
) -> BacktestRun:
    """Replay ``messages`` (time-ordered bus messages) and compute the metrics; the strategy
    first warms up on ``warm_up_messages`` (earlier bars, trading off)."""
    replay = Replay(settings)
    warm_up_bars = warm_up(replay, warm_up_messages)
    if progress:
        from tqdm import tqdm

        with tqdm(total=total_bars, unit="bar", file=sys.stderr, smoothing=0.1) as bar:
            replay.run(messages, on_bar=lambda _ts: bar.update(1))
            result = replay.finish(on_bar=lambda _ts: bar.update(1))
    else:
        replay.run(messages)
        result = replay.finish()
    return BacktestRun(result, compute_metrics(result, premium), premium, warm_up_bars)


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
        warm_up_messages=source.warm_up_messages(model),
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
    # The live strategy closes a bar on the first message past its end; the end of a tape
    # (read while the stack ran, or after it stopped) is no such message.
    result = replay.finish(close_open_bar=False)
    return BacktestRun(result, compute_metrics(result, None), None)

"""Prometheus metrics of the strategy service (declared here; the service updates them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from trading.observability import histogram

MESSAGES = Counter(
    "trading_strategy_messages_total", "Bus messages applied to the engine", ["kind"]
)
CONFLATED = Counter(
    "trading_strategy_conflated_total",
    "Ticks replaced by a newer tick of the same instrument before the engine saw them",
)
BARS = Counter("trading_strategy_bars_total", "Bars closed, by outcome", ["outcome"])
SIGNALS = Counter("trading_strategy_signals_total", "Signals emitted", ["action"])
INTENTS = Counter("trading_strategy_intents_total", "Order intents appended", ["purpose"])
DECISIONS = Counter(
    "trading_strategy_decisions_total", "Risk decisions on our intents", ["approved"]
)
DATA_STALE = Gauge("trading_strategy_data_stale", "1 while the data may not be traded on")
ZSCORE = Gauge("trading_strategy_zscore", "z-score of the spread at the last bar")
BETA = Gauge("trading_strategy_hedge_ratio", "Hedge ratio (log beta) at the last bar")
BAR_SECONDS = histogram(
    "trading_strategy_bar_close_seconds", "Engine time to close one bar (estimators, signal)"
)
TICK_TO_INTENT_SECONDS = histogram(
    "trading_strategy_tick_to_intent_seconds",
    "From receiving the tick that closed a bar to its intent appended to the stream",
)
TICK_TO_BAR_PUBLISHED_SECONDS = histogram(
    "trading_strategy_tick_to_bar_published_seconds",
    "From receiving the tick that closed a bar to the bar's outputs written to Redis",
)
STATE_SAVE_SECONDS = histogram(
    "trading_strategy_state_serialise_seconds", "Time to serialise the engine state (JSON)"
)

"""A seeded market-model scenario shared by the strategy tests: TLTW's premium blows out to
+80 bp at noon on 2026-10-28 and mean-reverts (half-life one trading day)."""

from __future__ import annotations

import functools
from datetime import date, datetime
from typing import Any

from trading.backtest.simfeed import premium_shock, sim_model, simulated_messages
from trading.bus import LegKind, Message, OrderEvent, OrderIntent, RiskDecision, RiskReason, Signal
from trading.ibsim.config import ET
from trading.settings import Settings, load_settings
from trading.strategy import StrategyEngine

SHOCK_TIME = datetime(2026, 10, 28, 12, 0, tzinfo=ET)
SHOCK_BP = 80.0
FIRST_DAY = date(2026, 10, 26)
LAST_DAY = date(2026, 10, 29)
Z_WINDOW = 390


@functools.cache
def shock_messages() -> tuple[Message, ...]:
    """Four sessions of one-minute bars (about 56,000 messages), generated once per process."""
    model = sim_model(seed=1, history_days=30)
    premium_shock(model, SHOCK_TIME, SHOCK_BP)
    return tuple(simulated_messages(model, FIRST_DAY, LAST_DAY))


def scenario_settings(**strategy: Any) -> Settings:
    """Short windows so a test warms up in a day; bands wide enough that only the shock trades
    (entry 6, stop 50); no time stop; the cointegration gate opened (one day of bars cannot
    show cointegration of a premium with a one-day half-life); the edge gate reporting only (a
    day of bars sampled every 130 minutes is three samples: its tests are in test_edge)."""
    values: dict[str, Any] = {
        "preset": "replica",
        "z_window": Z_WINDOW,
        "ols_window": Z_WINDOW,
        "entry_z": 6.0,
        "exit_z": 0.5,
        "stop_z": 50.0,
        "time_stop_half_lives": 1000.0,
        "cointegration_pvalue": 0.99,
        "refit_bars": 60,
        "edge_gate": False,
    }
    return load_settings(strategy=values | strategy)


def answered(engine: StrategyEngine, intent: OrderIntent, approve: bool = True) -> list[Signal]:
    """Risk's answer to an intent, as the strategy reads it: the decision and, approved, an
    order event per leg filled in full. Returns the signals it produced."""
    reasons = () if approve else (RiskReason("GROSS_NOTIONAL", "over the limit"),)
    signals = list(engine.on_decision(RiskDecision(intent.intent_id, intent.ts, approve, reasons)))
    if approve:
        for event in filled_events(intent):
            signals += engine.on_order_event(event)
    return signals


def filled_events(intent: OrderIntent, filled: dict[LegKind, float] | None = None) -> list:
    """Order events ending each leg of `intent`: Filled, or Cancelled with `filled[kind]`."""
    out = []
    for i, leg in enumerate(intent.legs):
        done = float(leg.quantity) if filled is None else filled.get(leg.kind, 0.0)
        status = "Filled" if done >= leg.quantity else "Cancelled"
        out.append(
            OrderEvent(
                intent.ts,
                intent.intent_id,
                100 + i,
                1000 + i,
                str(leg.kind),
                leg.symbol,
                leg.side,
                float(leg.quantity),
                "LMT",
                leg.limit_price,
                status,
                done,
                leg.quantity - done,
                leg.limit_price if done else 0.0,
                "",
            )
        )
    return out

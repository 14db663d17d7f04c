"""When risk closes the pair by itself (pair stop-loss), the replayed strategy goes flat.

Regression: the replay did not show the strategy risk's own intents (the live strategy reads
them from the intents stream), so after a pair stop-loss the strategy kept sending exits for a
pair that no longer existed and risk refused every one of them (tens of thousands per year).
"""

from __future__ import annotations

from datetime import date

from trading.backtest.run import backtest_sim
from trading.backtest.sources import SimSource
from trading.settings import load_settings

STRATEGY = {
    "preset": "replica",
    "z_window": 390,
    "stop_z": 10.0,
    "time_stop_half_lives": 1e3,
    "cointegration_pvalue": 0.99,
}


def test_a_pair_stop_loss_leaves_the_strategy_flat_with_no_refused_exits():
    settings = load_settings(strategy=STRATEGY, risk={"pair_stop_loss_usd": 30.0})
    run = backtest_sim(settings, SimSource(1, date(2026, 10, 26), date(2026, 10, 30), 50.0))

    records = run.result.records
    stops = [r for r in records if r.source == "risk" and r.intent.purpose.value == "stop"]
    assert stops, [(r.source, r.intent.purpose) for r in records]
    refused = [r for r in records if not r.decision.approved]
    assert refused == [], [r.decision.reasons for r in refused[:3]]
    assert any("risk closed the pair" in s.reason for s in run.result.signals)

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
    "edge_gate": False,  # one-day windows: risk's closes are the subject, not the edge
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


def test_a_held_call_quoted_at_a_zero_bid_does_not_block_the_exit():
    # Seed 1 from 2026-09-01: the pair enters, then its call goes far out of the money (bid 0,
    # ask 0.03); risk's gate refused that quote as "bad" and every exit for the rest of the run.
    strategy = STRATEGY | {"z_window": 1560, "max_gross_notional_usd": 150_000.0}
    run = backtest_sim(
        load_settings(strategy=strategy),
        SimSource(1, date(2026, 9, 1), date(2026, 9, 21), 50.0),
    )

    records = run.result.records
    assert any(r.intent.purpose.value == "exit" and r.decision.approved for r in records)
    bad = [r for r in records for c in r.decision.reasons if "bad quote" in c.message]
    assert bad == [], bad[0].decision.reasons
    assert run.metrics.round_trips >= 1

"""Pipeline latencies and legging from message timestamps (pure)."""

from __future__ import annotations

import pytest

from trading.bus import IntentPurpose, LegKind
from trading.monitoring.pipeline import (
    LatencySample,
    LatencyStage,
    LegTracker,
    PipelineLatency,
    tick_time_of,
)

from .samples import NOW, decision, intent, order_event


def near(seconds: float):
    """Equal up to the float resolution of an epoch timestamp (about 2e-7 s in 2027)."""
    return pytest.approx(seconds, abs=1e-6)


def test_latency_of_each_stage_matches_the_message_timestamps():
    pipeline = PipelineLatency()
    tick = NOW - 0.004
    samples = pipeline.on_intent(intent("i1", NOW), tick_ts_recv=tick)
    samples += pipeline.on_decision(decision("i1", NOW + 0.001))
    samples += pipeline.on_order_event(
        order_event("i1", LegKind.BUY_WRITE, NOW + 0.003, "Submitted", 2)
    )
    samples += pipeline.on_order_event(
        order_event("i1", LegKind.STOCK, NOW + 0.005, "PreSubmitted", 500)
    )

    by_stage = {(s.stage, s.leg): s.seconds for s in samples}
    assert by_stage[(LatencyStage.TICK_TO_INTENT, "")] == near(0.004)
    assert by_stage[(LatencyStage.INTENT_TO_DECISION, "")] == near(0.001)
    assert by_stage[(LatencyStage.DECISION_TO_ORDER, "buy_write")] == near(0.002)
    assert by_stage[(LatencyStage.DECISION_TO_ORDER, "stock")] == near(0.004)
    assert by_stage[(LatencyStage.TICK_TO_ORDER, "buy_write")] == near(0.007)
    assert by_stage[(LatencyStage.TICK_TO_ORDER, "stock")] == near(0.009)
    assert len(samples) == 6


def test_tick_named_by_the_intent_wins_over_the_looked_up_one():
    pipeline = PipelineLatency()
    message = intent("i1", NOW, why={"tick_ts_recv": NOW - 0.25})
    assert tick_time_of(message) == NOW - 0.25
    [sample] = pipeline.on_intent(message, tick_ts_recv=NOW - 9.0)
    assert sample == LatencySample(LatencyStage.TICK_TO_INTENT, near(0.25), "i1")


def test_only_the_first_sent_event_of_a_leg_counts_as_the_order_sent():
    pipeline = PipelineLatency()
    pipeline.on_intent(intent("i1", NOW))
    pipeline.on_decision(decision("i1", NOW + 0.010))
    first = pipeline.on_order_event(order_event("i1", LegKind.STOCK, NOW + 0.020, "Submitted", 500))
    again = pipeline.on_order_event(
        order_event("i1", LegKind.STOCK, NOW + 0.500, "Filled", 500, filled=500)
    )
    assert [s.seconds for s in first] == [near(0.010)]  # no tick known: no tick_to_order
    assert again == []


def test_rejected_intent_has_a_decision_latency_but_no_order_latency():
    pipeline = PipelineLatency()
    pipeline.on_intent(intent("i1", NOW))
    [sample] = pipeline.on_decision(decision("i1", NOW + 0.002, approved=False))
    events = pipeline.on_order_event(order_event("i1", LegKind.STOCK, NOW + 0.01, "Submitted", 500))
    assert sample.stage is LatencyStage.INTENT_TO_DECISION
    assert sample.seconds == near(0.002)
    assert events == []


def test_events_of_unknown_intents_and_unsent_statuses_give_no_samples():
    pipeline = PipelineLatency()
    assert pipeline.on_decision(decision("ghost", NOW)) == []
    pipeline.on_intent(intent("i1", NOW))
    pipeline.on_decision(decision("i1", NOW + 0.001))
    assert pipeline.on_order_event(order_event("i1", LegKind.STOCK, NOW, "Rejected", 500)) == []
    assert pipeline.on_order_event(order_event("i1", LegKind.STOCK, NOW, "Inactive", 500)) == []


def test_clock_skew_shows_as_a_negative_sample():
    pipeline = PipelineLatency()
    pipeline.on_intent(intent("i1", NOW))
    [sample] = pipeline.on_decision(decision("i1", NOW - 0.5))
    assert sample.seconds == near(-0.5)


def test_pipeline_forgets_the_oldest_intents_beyond_its_capacity():
    pipeline = PipelineLatency(capacity=2)
    for name in ("a", "b", "c"):
        pipeline.on_intent(intent(name, NOW))
    assert pipeline.on_decision(decision("a", NOW + 1)) == []
    assert len(pipeline.on_decision(decision("c", NOW + 1))) == 1
    with pytest.raises(ValueError, match="capacity"):
        PipelineLatency(capacity=0)


def test_leg_filled_alone_counts_as_legged_only_after_the_timeout():
    legs = LegTracker()
    legs.on_intent(intent("i1", NOW, units=2, shares=500))
    legs.on_order_event(order_event("i1", LegKind.BUY_WRITE, NOW + 1.0, "Filled", 2, filled=2))
    legs.on_order_event(order_event("i1", LegKind.STOCK, NOW + 1.5, "Submitted", 500))

    assert legs.legged(NOW + 30.0, timeout_s=30.0) == []  # 29 s since the divergence
    [legged] = legs.legged(NOW + 31.0, timeout_s=30.0)
    assert legged.intent_id == "i1"
    assert legged.pair_id == "pair-1"
    assert legged.since_s == NOW + 1.0
    assert legged.fill_fractions == (("buy_write", 1.0), ("stock", 0.0))


def test_legs_filling_in_proportion_are_not_legged():
    legs = LegTracker()
    legs.on_intent(intent("i1", NOW, units=2, shares=500))
    legs.on_order_event(order_event("i1", LegKind.BUY_WRITE, NOW + 1, "Submitted", 2, filled=1))
    legs.on_order_event(order_event("i1", LegKind.STOCK, NOW + 2, "Submitted", 500, filled=250))
    assert legs.legged(NOW + 100, timeout_s=30.0) == []
    legs.on_order_event(order_event("i1", LegKind.BUY_WRITE, NOW + 3, "Filled", 2, filled=2))
    assert len(legs.legged(NOW + 100, timeout_s=30.0)) == 1  # 100% against 50%
    legs.on_order_event(order_event("i1", LegKind.STOCK, NOW + 4, "Filled", 500, filled=500))
    assert legs.legged(NOW + 200, timeout_s=30.0) == []


def test_an_unwind_of_the_pair_ends_the_legging():
    legs = LegTracker()
    legs.on_intent(intent("i1", NOW))
    legs.on_order_event(order_event("i1", LegKind.STOCK, NOW + 1, "Filled", 500, filled=500))
    assert len(legs.legged(NOW + 60, timeout_s=30.0)) == 1
    legs.on_intent(intent("i2", NOW + 61, purpose=IntentPurpose.UNWIND))
    assert legs.legged(NOW + 120, timeout_s=30.0) == []


def test_an_unwind_of_another_pair_leaves_the_legging():
    legs = LegTracker()
    legs.on_intent(intent("i1", NOW))
    legs.on_order_event(order_event("i1", LegKind.STOCK, NOW + 1, "Filled", 500, filled=500))
    legs.on_intent(intent("i2", NOW + 61, pair_id="pair-2", purpose=IntentPurpose.UNWIND))
    assert [x.intent_id for x in legs.legged(NOW + 120, timeout_s=30.0)] == ["i1"]

"""Alert conditions from a snapshot, and the tracker that announces them once (pure)."""

from __future__ import annotations

import pytest

from trading.bus import DataStatus, Severity
from trading.monitoring.alerts import AlertCode, AlertRules, AlertTracker, Condition, evaluate
from trading.monitoring.pipeline import LeggedIntent
from trading.monitoring.snapshot import GroupStats, Snapshot
from trading.settings import load_settings

from .samples import NOW, health, heartbeat, pnl, quote, risk_status

RULES = AlertRules(
    quote_stale_after_s=30.0,
    expected_services=("data-ingestion", "strategy"),
    startup_grace_s=30.0,
    limit_warn_ratio=0.8,
    drawdown_warn_ratio=0.5,
    daily_loss_limit_usd=5_000.0,
    consumer_lag_warn_s=30.0,
)
ALIVE = {"data-ingestion": heartbeat("data-ingestion", NOW), "strategy": heartbeat("strategy", NOW)}
FRESH = {"TLT": quote("TLT", NOW - 1), "TLTW": quote("TLTW", NOW - 1)}


def codes(conditions: list[Condition]) -> list[tuple[str, dict[str, str]]]:
    return [
        (code, dict(labels))
        for code, labels in sorted((c.code.value, c.labels) for c in conditions)
    ]


def check(snapshot: Snapshot, market_open: bool = True, monitor_age_s: float = 60.0, **kw):
    return evaluate(
        snapshot,
        RULES,
        market_open=market_open,
        monitor_age_s=monitor_age_s,
        watched_symbols=("TLT", "TLTW"),
        **kw,
    )


def test_healthy_system_raises_nothing():
    snapshot = Snapshot(NOW, True, heartbeats=ALIVE, quotes=FRESH, risk=risk_status())
    assert check(snapshot) == []


def test_redis_down_is_the_only_condition_when_redis_is_unreachable():
    [condition] = check(Snapshot(NOW, redis_up=False))
    assert condition.code is AlertCode.REDIS_DOWN
    assert condition.severity is Severity.CRITICAL


def test_quote_older_than_the_threshold_in_market_hours_is_stale():
    quotes = {"TLT": quote("TLT", NOW - 31.0), "TLTW": quote("TLTW", NOW - 29.0)}
    snapshot = Snapshot(NOW, True, heartbeats=ALIVE, quotes=quotes)
    [condition] = check(snapshot)
    assert (condition.code, dict(condition.labels)) == (AlertCode.DATA_STALE, {"symbol": "TLT"})
    assert "31s" in condition.message


def test_old_quote_outside_market_hours_is_not_stale():
    quotes = {"TLT": quote("TLT", NOW - 3_600.0), "TLTW": quote("TLTW", NOW - 3_600.0)}
    assert check(Snapshot(NOW, True, heartbeats=ALIVE, quotes=quotes), market_open=False) == []


def test_ingestion_verdict_of_stale_counts_even_outside_market_hours():
    snapshot = Snapshot(
        NOW,
        True,
        heartbeats=ALIVE,
        quotes=FRESH,
        health={"TLTW": health("TLTW", DataStatus.STALE, "no tick for 30s")},
    )
    [condition] = check(snapshot, market_open=False)
    assert dict(condition.labels) == {"symbol": "TLTW"}
    assert "no tick for 30s" in condition.message


def test_missing_quote_is_stale_only_after_the_startup_grace():
    snapshot = Snapshot(NOW, True, heartbeats=ALIVE, quotes={"TLT": quote("TLT", NOW)})
    assert check(snapshot, monitor_age_s=5.0) == []
    assert codes(check(snapshot, monitor_age_s=31.0)) == [("data_stale", {"symbol": "TLTW"})]


def test_service_without_heartbeat_is_silent_after_grace_or_once_seen():
    snapshot = Snapshot(NOW, True, heartbeats={"strategy": ALIVE["strategy"]}, quotes=FRESH)
    assert check(snapshot, monitor_age_s=5.0) == []
    seen = check(snapshot, monitor_age_s=5.0, seen_services={"data-ingestion"})
    assert codes(seen) == [("service_silent", {"service": "data-ingestion"})]
    assert codes(check(snapshot, monitor_age_s=31.0)) == [
        ("service_silent", {"service": "data-ingestion"})
    ]


def test_degraded_heartbeat_is_a_warning():
    beats = dict(ALIVE, strategy=heartbeat("strategy", NOW, status="degraded"))
    [condition] = check(Snapshot(NOW, True, heartbeats=beats, quotes=FRESH))
    assert condition.code is AlertCode.SERVICE_DEGRADED
    assert condition.severity is Severity.WARNING


def test_halted_risk_and_limits_near_and_breached():
    risk = risk_status(
        "HALTED", usage={"gross_notional": 0.79, "net_delta": 0.8, "daily_loss": 1.0}
    )
    conditions = check(Snapshot(NOW, True, heartbeats=ALIVE, quotes=FRESH, risk=risk))
    assert codes(conditions) == [
        ("limit_breached", {"limit": "daily_loss"}),
        ("limit_near", {"limit": "net_delta"}),
        ("risk_halted", {}),
    ]


def test_drawdown_alert_at_half_the_daily_loss_limit():
    base = Snapshot(NOW, True, heartbeats=ALIVE, quotes=FRESH, pnl=pnl(-2_499.99))
    assert check(base) == []
    deeper = Snapshot(NOW, True, heartbeats=ALIVE, quotes=FRESH, pnl=pnl(-2_500.0))
    assert codes(check(deeper)) == [("pnl_drawdown", {})]


def test_consumer_group_with_old_pending_or_undelivered_entries_lags():
    groups = (
        GroupStats("st:intents", "risk", 1, 3, 0, 31.0, None),
        GroupStats("st:commands", "risk", 1, 0, 2, None, 45.0),
        GroupStats("st:alerts", "ops", 1, 1, 1, 5.0, 5.0),
    )
    snapshot = Snapshot(NOW, True, heartbeats=ALIVE, quotes=FRESH, groups=groups)
    assert codes(check(snapshot)) == [
        ("consumer_lag", {"group": "risk", "stream": "st:commands"}),
        ("consumer_lag", {"group": "risk", "stream": "st:intents"}),
    ]


def test_legged_intent_is_critical():
    legged = [LeggedIntent("i1", "pair-1", NOW - 40.0, (("buy_write", 1.0), ("stock", 0.0)))]
    [condition] = check(Snapshot(NOW, True, heartbeats=ALIVE, quotes=FRESH), legged=legged)
    assert condition.code is AlertCode.LEGGING
    assert condition.severity is Severity.CRITICAL
    assert dict(condition.labels) == {"intent_id": "i1", "pair_id": "pair-1"}


def test_rules_come_from_settings():
    settings = load_settings(
        monitoring={"quote_stale_after_s": 12.0, "expected_services": ["strategy"]},
        risk={"daily_loss_limit_usd": 1_000.0, "legging_timeout_s": 7.0},
    )
    rules = AlertRules.from_settings(settings)
    assert rules.quote_stale_after_s == 12.0
    assert rules.expected_services == ("strategy",)
    assert rules.daily_loss_limit_usd == 1_000.0
    assert rules.legging_timeout_s == 7.0


STALE = Condition(AlertCode.DATA_STALE, Severity.WARNING, (("symbol", "TLT"),), "TLT stale")
HALT = Condition(AlertCode.RISK_HALTED, Severity.CRITICAL, (), "halted")


def test_tracker_fires_once_repeats_after_the_interval_and_resolves():
    tracker = AlertTracker("monitoring", repeat_s=300.0)
    [fired] = tracker.update([STALE], NOW)
    assert (fired.code, fired.severity, fired.labels) == (
        "data_stale",
        Severity.WARNING,
        {"symbol": "TLT", "state": "firing"},
    )
    assert fired.source == "monitoring"
    assert tracker.update([STALE], NOW + 299.0) == []
    [repeat] = tracker.update([STALE], NOW + 300.0)
    assert repeat.labels["state"] == "firing"
    [resolved] = tracker.update([], NOW + 301.0)
    assert (resolved.severity, resolved.labels["state"]) == (Severity.INFO, "resolved")
    assert resolved.message == "resolved: TLT stale"
    assert tracker.update([], NOW + 302.0) == []


def test_tracker_reannounces_a_condition_whose_severity_changes():
    tracker = AlertTracker("monitoring", repeat_s=300.0)
    tracker.update([STALE], NOW)
    worse = Condition(STALE.code, Severity.CRITICAL, STALE.labels, "TLT very stale")
    [alert] = tracker.update([worse, STALE], NOW + 1.0)  # duplicates: the worse one wins
    assert alert.severity is Severity.CRITICAL


def test_tracker_keeps_unevaluated_conditions_while_redis_is_down():
    tracker = AlertTracker("monitoring", repeat_s=300.0)
    tracker.update([STALE, HALT], NOW)
    down = Condition(AlertCode.REDIS_DOWN, Severity.CRITICAL, (), "Redis is unreachable")
    alerts = tracker.update([down], NOW + 1.0, evaluated=frozenset({AlertCode.REDIS_DOWN}))
    assert [a.code for a in alerts] == ["redis_down"]
    assert {c.code for c in tracker.active} == {
        AlertCode.DATA_STALE,
        AlertCode.RISK_HALTED,
        AlertCode.REDIS_DOWN,
    }
    back = tracker.update([STALE, HALT], NOW + 2.0)
    assert [(a.code, a.labels["state"]) for a in back] == [("redis_down", "resolved")]


def test_tracker_refuses_a_non_positive_repeat_interval():
    with pytest.raises(ValueError, match="repeat_s"):
        AlertTracker("monitoring", repeat_s=0.0)


def test_stale_options_make_one_alert_for_the_chain():
    snapshot = Snapshot(
        NOW,
        True,
        heartbeats=ALIVE,
        quotes=FRESH,
        health={
            "539280348": health("539280348", DataStatus.STALE),
            "539280352": health("539280352", DataStatus.STALE),
            "539280356": health("539280356", DataStatus.OK),
        },
    )
    [condition] = check(snapshot)
    assert dict(condition.labels) == {"symbol": "options"}
    assert condition.message.startswith("2 option(s) stale")

"""A snapshot as Prometheus metrics (pure): values computed by hand, read back from the
exposition text the way Prometheus parses it."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trading.bus import DataStatus
from trading.monitoring.metrics import MonitorView, SnapshotCollector, snapshot_families
from trading.monitoring.snapshot import GroupStats, RedisInfo, Snapshot, StreamStats, stream_id_ms

from .samples import NOW, health, heartbeat, pnl, position, quote, risk_status, spread_point

INFO = RedisInfo("6.2.5", 7, 1_048_576, 12_345, 250.0, 3_600.0, 0, 0)


def scrape(snapshot: Snapshot, view: MonitorView | None = None) -> dict[tuple, float]:
    """{(name, sorted labels): value} as a scraper would read them."""
    registry = CollectorRegistry()
    collector = SnapshotCollector()
    registry.register(collector)
    collector.update(snapshot_families(snapshot, view or MonitorView()))
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_quote_age_mid_and_width_are_computed_from_the_quote():
    snapshot = Snapshot(
        NOW, True, redis=INFO, quotes={"TLTW": quote("TLTW", NOW - 2.5, bid=24.99, ask=25.01)}
    )
    metrics = scrape(snapshot)
    tltw = (("symbol", "TLTW"),)
    assert metrics[("trading_monitor_quote_age_seconds", tltw)] == pytest.approx(2.5)
    assert metrics[("trading_monitor_quote_timestamp_seconds", tltw)] == NOW - 2.5
    assert metrics[("trading_quote_mid_usd", tltw)] == pytest.approx(25.0)
    assert metrics[("trading_quote_spread_bp", tltw)] == pytest.approx(0.02 / 25.0 * 1e4)
    assert metrics[("trading_redis_up", ())] == 1.0
    assert metrics[("trading_redis_used_memory_bytes", ())] == 1_048_576
    assert metrics[("trading_redis_commands_processed_total", ())] == 12_345


def test_redis_down_exports_only_redis_up_zero_and_configuration():
    metrics = scrape(Snapshot(NOW, redis_up=False), MonitorView(daily_loss_limit_usd=5_000.0))
    assert metrics == {
        ("trading_redis_up", ()): 0.0,
        ("trading_monitor_market_open", ()): 0.0,
        ("trading_monitor_daily_loss_limit_usd", ()): 5_000.0,
    }


def test_silent_service_is_down_with_its_age_still_growing():
    view = MonitorView(
        expected_services=("strategy", "data-ingestion"),
        heartbeat_last_seen_s={"strategy": NOW - 40.0},
    )
    beats = {"data-ingestion": heartbeat("data-ingestion", NOW - 1.0, status="degraded")}
    metrics = scrape(Snapshot(NOW, True, heartbeats=beats), view)
    assert metrics[("trading_monitor_service_up", (("service", "strategy"),))] == 0.0
    assert metrics[("trading_monitor_service_up", (("service", "data-ingestion"),))] == 1.0
    age = "trading_monitor_heartbeat_age_seconds"
    assert metrics[(age, (("service", "strategy"),))] == pytest.approx(40.0)
    assert metrics[(age, (("service", "data-ingestion"),))] == pytest.approx(1.0)
    status = "trading_monitor_service_status"
    assert metrics[(status, (("service", "data-ingestion"), ("status", "degraded")))] == 1.0
    assert metrics[(status, (("service", "data-ingestion"), ("status", "ok")))] == 0.0


def test_risk_state_is_one_hot_with_limit_usage():
    risk = risk_status("HALTED", usage={"gross_notional": 0.42})
    metrics = scrape(Snapshot(NOW, True, risk=risk))
    assert metrics[("trading_risk_state", (("state", "HALTED"),))] == 1.0
    assert metrics[("trading_risk_state", (("state", "ACTIVE"),))] == 0.0
    assert metrics[("trading_risk_halted", ())] == 1.0
    usage = ("trading_risk_limit_usage_ratio", (("limit", "gross_notional"),))
    assert metrics[usage] == 0.42


def test_positions_pnl_and_spread():
    snapshot = Snapshot(
        NOW,
        True,
        positions={"1": position("TLTW", -400.0, 25.0)},
        pnl=pnl(-123.5),
        spread=spread_point(z=2.3, ts=NOW - 4.0, state="SHORT_SPREAD"),
    )
    metrics = scrape(snapshot)
    key = (
        ("con_id", "561000001"),
        ("local_symbol", "TLTW"),
        ("sec_type", "STK"),
        ("symbol", "TLTW"),
    )
    assert metrics[("trading_position_quantity", key)] == -400.0
    assert metrics[("trading_position_market_value_usd", key)] == -10_000.0
    assert metrics[("trading_pnl_usd", (("component", "total"),))] == -123.5
    assert metrics[("trading_pair_pnl_usd", (("pair", "pair-1"),))] == -123.5
    assert metrics[("trading_spread_zscore", ())] == 2.3
    assert metrics[("trading_spread_band_z", (("band", "entry"),))] == 2.0
    assert metrics[("trading_strategy_state", (("state", "SHORT_SPREAD"),))] == 1.0
    assert metrics[("trading_monitor_spread_age_seconds", ())] == pytest.approx(4.0)


def test_health_streams_and_consumer_groups():
    snapshot = Snapshot(
        NOW,
        True,
        health={"TLT": health("TLT", DataStatus.STALE)},
        streams=(StreamStats("st:intents", 12, 3.5), StreamStats("st:fills", 0, None)),
        groups=(GroupStats("st:intents", "risk", 1, 2, 5, 8.0, 1.5),),
    )
    metrics = scrape(snapshot)
    assert metrics[("trading_monitor_data_health", (("status", "stale"), ("symbol", "TLT")))] == 1
    assert metrics[("trading_monitor_data_health", (("status", "ok"), ("symbol", "TLT")))] == 0
    assert metrics[("trading_monitor_stream_length", (("stream", "st:intents"),))] == 12
    assert metrics[("trading_monitor_stream_length", (("stream", "st:fills"),))] == 0
    age = "trading_monitor_stream_last_entry_age_seconds"
    assert (age, (("stream", "st:fills"),)) not in metrics
    group = (("group", "risk"), ("stream", "st:intents"))
    assert metrics[("trading_monitor_consumer_pending", group)] == 2
    assert metrics[("trading_monitor_consumer_lag", group)] == 5
    assert metrics[("trading_monitor_consumer_oldest_pending_age_seconds", group)] == 8.0
    assert metrics[("trading_monitor_consumer_oldest_undelivered_age_seconds", group)] == 1.5


def test_a_label_set_gone_from_redis_is_gone_from_the_metrics():
    first = scrape(Snapshot(NOW, True, quotes={"TLT": quote("TLT", NOW)}))
    second = scrape(Snapshot(NOW, True, quotes={}))
    key = ("trading_monitor_quote_age_seconds", (("symbol", "TLT"),))
    assert key in first
    assert key not in second


def test_stream_id_ms_reads_the_millisecond_part():
    assert stream_id_ms(b"1700000000123-7") == 1_700_000_000_123
    with pytest.raises(ValueError, match="stream id"):
        stream_id_ms("garbage")

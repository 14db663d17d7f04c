"""A `Snapshot` as Prometheus metric families (pure), and the collector that serves them.

Every family is rebuilt from the latest snapshot at each scrape, so a label set that disappears
from Redis (an option rolled away, a position closed) disappears from /metrics too instead of
lingering as a stale gauge. Ages are in seconds against the snapshot's clock; money in USD.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trading.domain.risk import TradingState
from trading.domain.signals import SpreadPosition
from trading.monitoring.snapshot import Snapshot

DATA_STATUSES = ("ok", "stale", "delayed")
HEARTBEAT_STATUSES = ("ok", "degraded", "starting")
RISK_STATES = tuple(TradingState)
STRATEGY_STATES = tuple(SpreadPosition)
PNL_COMPONENTS = ("realized", "unrealized", "commissions", "total")


@dataclass(frozen=True, slots=True)
class MonitorView:
    """What the monitor knows beyond one snapshot."""

    expected_services: tuple[str, ...] = ()
    heartbeat_last_seen_s: dict[str, float] = field(default_factory=dict)
    """Last heartbeat time of every service ever seen, so a silent one's age keeps growing."""
    market_open: bool = False
    daily_loss_limit_usd: float = 0.0
    legged_intents: int = 0


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _one_hot(
    family: GaugeMetricFamily, prefix: list[str], values: Iterable[str], current: str
) -> None:
    """One series per value, 1 for the current one: `state{state="HALTED"} == 1` alerts."""
    known = list(values)
    if current not in known:
        known.append(current)
    for value in known:
        family.add_metric([*prefix, value], 1.0 if value == current else 0.0)


def snapshot_families(snapshot: Snapshot, view: MonitorView) -> list[Metric]:
    """Every metric the monitor derives from Redis. See the module docstring for units."""
    families: list[Metric] = []
    up = _gauge("trading_redis_up", "1 when the monitor reached Redis on its last cycle")
    up.add_metric([], 1.0 if snapshot.redis_up else 0.0)
    families.append(up)
    market = _gauge("trading_monitor_market_open", "1 inside US regular market hours")
    market.add_metric([], 1.0 if view.market_open else 0.0)
    families.append(market)
    limit = _gauge("trading_monitor_daily_loss_limit_usd", "Configured daily loss limit (USD)")
    limit.add_metric([], view.daily_loss_limit_usd)
    families.append(limit)
    families += _heartbeat_families(snapshot, view)
    if not snapshot.redis_up:
        return families
    families += _redis_families(snapshot)
    families += _market_data_families(snapshot)
    families += _strategy_families(snapshot)
    families += _book_families(snapshot, view)
    families += _stream_families(snapshot)
    return families


def _redis_families(snapshot: Snapshot) -> list[Metric]:
    info = snapshot.redis
    if info is None:
        return []
    out: list[Metric] = []
    for name, doc, value in (
        ("trading_redis_connected_clients", "Clients connected to Redis", info.connected_clients),
        ("trading_redis_used_memory_bytes", "Memory Redis uses", info.used_memory_bytes),
        ("trading_redis_ops_per_second", "Redis instantaneous ops/s", info.ops_per_second),
        ("trading_redis_uptime_seconds", "Seconds since Redis started", info.uptime_s),
    ):
        gauge = _gauge(name, doc)
        gauge.add_metric([], float(value))
        out.append(gauge)
    for name, doc, value in (
        ("trading_redis_commands_processed", "Commands Redis processed", info.commands_processed),
        ("trading_redis_rejected_connections", "Connections refused", info.rejected_connections),
        ("trading_redis_evicted_keys", "Keys evicted for memory", info.evicted_keys),
    ):
        counter = CounterMetricFamily(name, doc)
        counter.add_metric([], float(value))
        out.append(counter)
    return out


def _heartbeat_families(snapshot: Snapshot, view: MonitorView) -> list[Metric]:
    up = _gauge(
        "trading_monitor_service_up", "1 while the service's heartbeat key is alive", ["service"]
    )
    status = _gauge(
        "trading_monitor_service_status",
        "The status of each live service's heartbeat (one-hot)",
        ["service", "status"],
    )
    age = _gauge(
        "trading_monitor_heartbeat_age_seconds",
        "Seconds since the service's last heartbeat",
        ["service"],
    )
    if not snapshot.redis_up:
        return []  # unknown, not down: the Redis-down alert covers it
    services = sorted(set(view.expected_services) | set(snapshot.heartbeats))
    for service in services:
        beat = snapshot.heartbeats.get(service)
        up.add_metric([service], 1.0 if beat is not None else 0.0)
        if beat is not None:
            _one_hot(status, [service], HEARTBEAT_STATUSES, beat.status)
        last = beat.ts if beat is not None else view.heartbeat_last_seen_s.get(service)
        if last is not None:
            age.add_metric([service], max(0.0, snapshot.now_s - last))
    return [up, status, age]


def _market_data_families(snapshot: Snapshot) -> list[Metric]:
    now = snapshot.now_s
    age = _gauge(
        "trading_monitor_quote_age_seconds", "Seconds since the quote was received", ["symbol"]
    )
    stamp = _gauge(
        "trading_monitor_quote_timestamp_seconds",
        "Receive time of the latest quote (changes() counts ticks)",
        ["symbol"],
    )
    mid = _gauge("trading_quote_mid_usd", "Mid price of the latest quote", ["symbol"])
    width = _gauge("trading_quote_spread_bp", "Bid-ask spread over mid, basis points", ["symbol"])
    for symbol, quote in sorted(snapshot.quotes.items()):
        age.add_metric([symbol], max(0.0, now - quote.ts_recv))
        stamp.add_metric([symbol], quote.ts_recv)
        if quote.bid > 0 and quote.ask >= quote.bid:
            middle = 0.5 * (quote.bid + quote.ask)
            mid.add_metric([symbol], middle)
            width.add_metric([symbol], (quote.ask - quote.bid) / middle * 1e4)
    nav_age = _gauge("trading_monitor_nav_age_seconds", "Seconds since the NAV tick", ["symbol"])
    nav = _gauge("trading_etf_nav_usd", "Intraday indicative NAV per share", ["symbol"])
    premium = _gauge(
        "trading_etf_premium_bp", "ETF mid over its NAV minus one, basis points", ["symbol"]
    )
    for symbol, value in sorted(snapshot.navs.items()):
        nav_age.add_metric([symbol], max(0.0, now - value.ts_recv))
        nav.add_metric([symbol], value.nav)
        etf = snapshot.quotes.get(symbol)
        if etf is not None and value.nav > 0 and etf.bid > 0 and etf.ask >= etf.bid:
            premium.add_metric([symbol], (0.5 * (etf.bid + etf.ask) / value.nav - 1) * 1e4)
    options = _gauge("trading_monitor_option_quotes", "Option quotes held in Redis")
    options.add_metric([], float(len(snapshot.options)))
    option_age = _gauge(
        "trading_monitor_option_quote_age_seconds",
        "Age of the oldest and newest option quote",
        ["which"],
    )
    if snapshot.options:
        ages = [max(0.0, now - option.ts_recv) for option in snapshot.options.values()]
        option_age.add_metric(["oldest"], max(ages))
        option_age.add_metric(["newest"], min(ages))
    health = _gauge(
        "trading_monitor_data_health",
        "Data-ingestion's verdict on each instrument (one-hot)",
        ["symbol", "status"],
    )
    for symbol, verdict in sorted(snapshot.health.items()):
        _one_hot(health, [symbol], DATA_STATUSES, verdict.status.value)
    return [age, stamp, mid, width, nav_age, nav, premium, options, option_age, health]


def _strategy_families(snapshot: Snapshot) -> list[Metric]:
    point = snapshot.spread
    if point is None:
        return []
    out: list[Metric] = []
    for name, doc, value in (
        ("trading_spread_zscore", "z-score of the hedged log spread", point.z),
        ("trading_spread_value", "log(TLTW) - beta*log(index) - alpha", point.spread),
        ("trading_spread_mean", "Rolling mean of the spread", point.mean),
        ("trading_spread_std", "Rolling standard deviation of the spread", point.std),
        ("trading_spread_hedge_ratio", "beta of the hedge", point.beta),
        ("trading_buy_write_index_usd", "Buy-write index per share", point.index_value),
        ("trading_spread_tltw_usd", "TLTW price the signal used", point.tltw),
        (
            "trading_monitor_spread_age_seconds",
            "Seconds since the spread point",
            max(0.0, snapshot.now_s - point.ts),
        ),
    ):
        gauge = _gauge(name, doc)
        gauge.add_metric([], value)
        out.append(gauge)
    bands = _gauge("trading_spread_band_z", "Signal bands in z units", ["band"])
    for band, value in (("entry", point.entry_z), ("exit", point.exit_z), ("stop", point.stop_z)):
        bands.add_metric([band], value)
    state = _gauge("trading_strategy_state", "Position state of the pair (one-hot)", ["state"])
    _one_hot(state, [], STRATEGY_STATES, point.state)
    return [*out, bands, state]


def _book_families(snapshot: Snapshot, view: MonitorView) -> list[Metric]:
    out: list[Metric] = []
    risk = snapshot.risk
    if risk is not None:
        state = _gauge("trading_risk_state", "The risk gate's trading state (one-hot)", ["state"])
        _one_hot(state, [], RISK_STATES, risk.state)
        halted = _gauge("trading_risk_halted", "1 while the risk gate is HALTED")
        halted.add_metric([], 1.0 if risk.state == TradingState.HALTED else 0.0)
        usage = _gauge(
            "trading_risk_limit_usage_ratio", "Fraction of each risk limit in use", ["limit"]
        )
        for name, value in sorted(risk.limit_usage.items()):
            usage.add_metric([name], value)
        age = _gauge("trading_monitor_risk_status_age_seconds", "Seconds since the risk status")
        age.add_metric([], max(0.0, snapshot.now_s - risk.ts))
        out += [state, halted, usage, age]
    labels = ["symbol", "local_symbol", "sec_type", "con_id"]
    quantity = _gauge("trading_position_quantity", "Position (shares or contracts)", labels)
    market_value = _gauge(
        "trading_position_market_value_usd",
        "quantity x market price x multiplier",
        labels,
    )
    unrealized = _gauge("trading_position_unrealized_pnl_usd", "Unrealized P&L", labels)
    realized = _gauge("trading_position_realized_pnl_usd", "Realized P&L", labels)
    for position in sorted(snapshot.positions.values(), key=lambda p: p.con_id):
        key = [position.symbol, position.local_symbol, position.sec_type, str(position.con_id)]
        quantity.add_metric(key, position.quantity)
        if position.market_price is not None:
            market_value.add_metric(
                key, position.quantity * position.market_price * position.multiplier
            )
        unrealized.add_metric(key, position.unrealized_pnl)
        realized.add_metric(key, position.realized_pnl)
    out += [quantity, market_value, unrealized, realized]
    if snapshot.pnl is not None:
        pnl = _gauge("trading_pnl_usd", "The day's P&L net of commissions", ["component"])
        for component in PNL_COMPONENTS:
            pnl.add_metric([component], getattr(snapshot.pnl, component))
        pair = _gauge("trading_pair_pnl_usd", "P&L of each open pair", ["pair"])
        for pair_id, amount in sorted(snapshot.pnl.per_pair.items()):
            pair.add_metric([pair_id], amount)
        age = _gauge("trading_monitor_pnl_age_seconds", "Seconds since the P&L update")
        age.add_metric([], max(0.0, snapshot.now_s - snapshot.pnl.ts))
        out += [pnl, pair, age]
    orders = _gauge("trading_open_orders", "Orders working at the broker")
    orders.add_metric([], float(len(snapshot.open_orders)))
    oldest = _gauge(
        "trading_monitor_open_order_age_seconds", "Age of the oldest open order's last event"
    )
    if snapshot.open_orders:
        first = min(event.ts for event in snapshot.open_orders.values())
        oldest.add_metric([], max(0.0, snapshot.now_s - first))
    legged = _gauge(
        "trading_monitor_legged_intents",
        "Intents whose legs have filled unequally for longer than the legging timeout",
    )
    legged.add_metric([], float(view.legged_intents))
    return [*out, orders, oldest, legged]


def _stream_families(snapshot: Snapshot) -> list[Metric]:
    length = _gauge("trading_monitor_stream_length", "Entries in the stream", ["stream"])
    age = _gauge(
        "trading_monitor_stream_last_entry_age_seconds",
        "Seconds since the stream's newest entry (Redis clock)",
        ["stream"],
    )
    for stats in snapshot.streams:
        length.add_metric([stats.stream], float(stats.length))
        if stats.last_entry_age_s is not None:
            age.add_metric([stats.stream], stats.last_entry_age_s)
    labels = ["stream", "group"]
    pending = _gauge(
        "trading_monitor_consumer_pending", "Delivered, not yet acknowledged entries", labels
    )
    lag = _gauge("trading_monitor_consumer_lag", "Entries not yet delivered to the group", labels)
    consumers = _gauge("trading_monitor_consumer_consumers", "Consumers in the group", labels)
    oldest = _gauge(
        "trading_monitor_consumer_oldest_pending_age_seconds",
        "Age of the oldest unacknowledged entry",
        labels,
    )
    waiting = _gauge(
        "trading_monitor_consumer_oldest_undelivered_age_seconds",
        "Age of the oldest entry not yet delivered to the group",
        labels,
    )
    for group in snapshot.groups:
        key = [group.stream, group.group]
        pending.add_metric(key, float(group.pending))
        lag.add_metric(key, float(group.lag))
        consumers.add_metric(key, float(group.consumers))
        if group.oldest_pending_age_s is not None:
            oldest.add_metric(key, group.oldest_pending_age_s)
        if group.oldest_undelivered_age_s is not None:
            waiting.add_metric(key, group.oldest_undelivered_age_s)
    return [length, age, pending, lag, consumers, oldest, waiting]


class SnapshotCollector(Collector):
    """Serves the families of the latest snapshot (set by the monitor after each cycle)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: list[Metric] = []

    def update(self, families: list[Metric]) -> None:
        with self._lock:
            self._families = families

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = list(self._families)
        yield from families

    def describe(self) -> Iterator[Metric]:
        return iter(())  # dynamic: no names checked at registration

"""Alert conditions from a `Snapshot` (pure), and `AlertTracker` that announces them once.

A condition is identified by its code and labels. `AlertTracker.update` turns the set of active
conditions into `Alert` messages: one with labels["state"] = "firing" when a condition appears
(again when its severity changes, and every `repeat_s` while it lasts), one with "resolved"
(severity info) when it disappears. Only codes that were evaluated can resolve: while Redis is
down the monitor evaluates nothing but redis_down and the others stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from trading.bus import Alert, DataStatus, Severity
from trading.domain.risk import TradingState
from trading.monitoring.pipeline import LeggedIntent
from trading.monitoring.snapshot import Snapshot, is_option_name
from trading.settings import Settings


class AlertCode(StrEnum):
    REDIS_DOWN = "redis_down"
    DATA_STALE = "data_stale"
    SERVICE_SILENT = "service_silent"
    SERVICE_DEGRADED = "service_degraded"
    RISK_HALTED = "risk_halted"
    LIMIT_NEAR = "limit_near"
    LIMIT_BREACHED = "limit_breached"
    PNL_DRAWDOWN = "pnl_drawdown"
    LEGGING = "legging"
    CONSUMER_LAG = "consumer_lag"


EVERY_CODE = frozenset(AlertCode)
OPTIONS_LABEL = "options"
"""The `symbol` label of the one data_stale alert that covers every stale option."""
_SEVERITY_ORDER = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class AlertRules:
    """Thresholds; `from_settings` reads them from the monitoring and risk groups."""

    quote_stale_after_s: float = 30.0
    market_hours_only: bool = True
    expected_services: tuple[str, ...] = ()
    startup_grace_s: float = 30.0
    limit_warn_ratio: float = 0.8
    drawdown_warn_ratio: float = 0.5
    daily_loss_limit_usd: float = 5_000.0
    consumer_lag_warn_s: float = 30.0
    legging_timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertRules:
        m = settings.monitoring
        return cls(
            quote_stale_after_s=m.quote_stale_after_s,
            market_hours_only=m.market_hours_only,
            expected_services=tuple(m.expected_services),
            startup_grace_s=m.startup_grace_s,
            limit_warn_ratio=m.limit_warn_ratio,
            drawdown_warn_ratio=m.drawdown_warn_ratio,
            daily_loss_limit_usd=settings.risk.daily_loss_limit_usd,
            consumer_lag_warn_s=m.consumer_lag_warn_s,
            legging_timeout_s=settings.risk.legging_timeout_s,
        )


@dataclass(frozen=True, slots=True)
class Condition:
    code: AlertCode
    severity: Severity
    labels: tuple[tuple[str, str], ...]
    message: str

    @property
    def key(self) -> tuple[AlertCode, tuple[tuple[str, str], ...]]:
        return self.code, self.labels


def _condition(code: AlertCode, severity: Severity, message: str, **labels: str) -> Condition:
    return Condition(code, severity, tuple(sorted(labels.items())), message)


def evaluate(
    snapshot: Snapshot,
    rules: AlertRules,
    *,
    market_open: bool,
    monitor_age_s: float,
    seen_services: Iterable[str] = (),
    watched_symbols: Iterable[str] = (),
    legged: Sequence[LeggedIntent] = (),
) -> list[Condition]:
    """Every condition active in `snapshot`.

    A service is silent when its heartbeat key is gone and it was seen before or the monitor
    has run `startup_grace_s`. A stock's quote is stale when data-ingestion says so, or when it
    is older than `quote_stale_after_s` (or absent after the grace period) while the market is
    open (or always, with `market_hours_only` off). Options data-ingestion marks stale make one
    alert, symbol="options".
    """
    if not snapshot.redis_up:
        return [_condition(AlertCode.REDIS_DOWN, Severity.CRITICAL, "Redis is unreachable")]
    out: list[Condition] = []
    settled = monitor_age_s >= rules.startup_grace_s
    seen = set(seen_services)
    for service in rules.expected_services:
        if service not in snapshot.heartbeats and (settled or service in seen):
            message = f"{service} has written no heartbeat: the service is down or stuck"
            out.append(
                _condition(AlertCode.SERVICE_SILENT, Severity.CRITICAL, message, service=service)
            )
    for service, beat in sorted(snapshot.heartbeats.items()):
        if beat.status == "degraded":
            message = f"{service} reports degraded: {beat.detail}"
            out.append(
                _condition(AlertCode.SERVICE_DEGRADED, Severity.WARNING, message, service=service)
            )
    out += _stale_data(snapshot, rules, market_open, settled, watched_symbols)
    out += _book(snapshot, rules)
    for intent in legged:
        legs = ", ".join(f"{leg} {fraction:.0%}" for leg, fraction in intent.fill_fractions)
        message = (
            f"intent {intent.intent_id} of pair {intent.pair_id} is legged since "
            f"{snapshot.now_s - intent.since_s:.0f}s ago: filled {legs}"
        )
        out.append(
            _condition(
                AlertCode.LEGGING,
                Severity.CRITICAL,
                message,
                intent_id=intent.intent_id,
                pair_id=intent.pair_id,
            )
        )
    for group in snapshot.groups:
        age = max(group.oldest_pending_age_s or 0.0, group.oldest_undelivered_age_s or 0.0)
        if age >= rules.consumer_lag_warn_s:
            message = (
                f"group {group.group} on {group.stream} is behind: {group.pending} "
                f"unacknowledged and {group.lag} undelivered entries, the oldest {age:.0f}s old"
            )
            out.append(
                _condition(
                    AlertCode.CONSUMER_LAG,
                    Severity.WARNING,
                    message,
                    stream=group.stream,
                    group=group.group,
                )
            )
    return out


def _stale_data(
    snapshot: Snapshot,
    rules: AlertRules,
    market_open: bool,
    settled: bool,
    watched_symbols: Iterable[str],
) -> list[Condition]:
    age_counts = market_open or not rules.market_hours_only
    out = []
    stocks = {name for name in snapshot.health if not is_option_name(name)}
    for symbol in sorted(set(watched_symbols) | stocks | set(snapshot.quotes)):
        reasons = []
        verdict = snapshot.health.get(symbol)
        if verdict is not None and verdict.status is DataStatus.STALE:
            reasons.append(f"data-ingestion marks it stale ({verdict.reason})")
        quote = snapshot.quotes.get(symbol)
        if age_counts and quote is not None:
            age = snapshot.now_s - quote.ts_recv
            if age >= rules.quote_stale_after_s:
                reasons.append(f"last quote {age:.0f}s old")
        elif age_counts and quote is None and settled:
            reasons.append("no quote in Redis")
        if reasons:
            message = f"{symbol} data is stale: " + "; ".join(reasons)
            out.append(_condition(AlertCode.DATA_STALE, Severity.WARNING, message, symbol=symbol))
    stale_options = sorted(
        name
        for name, verdict in snapshot.health.items()
        if is_option_name(name) and verdict.status is DataStatus.STALE
    )
    if stale_options:  # one alert for the chain, not one per option
        message = (
            f"{len(stale_options)} option(s) stale per data-ingestion: "
            + ", ".join(stale_options[:5])
            + (", ..." if len(stale_options) > 5 else "")
        )
        out.append(
            _condition(AlertCode.DATA_STALE, Severity.WARNING, message, symbol=OPTIONS_LABEL)
        )
    return out


def _book(snapshot: Snapshot, rules: AlertRules) -> list[Condition]:
    out = []
    risk = snapshot.risk
    if risk is not None:
        if risk.state == TradingState.HALTED:
            message = f"risk gate HALTED: {risk.reason or 'no reason given'}"
            out.append(_condition(AlertCode.RISK_HALTED, Severity.CRITICAL, message))
        for limit, used in sorted(risk.limit_usage.items()):
            if used >= 1.0:
                message = f"risk limit {limit} breached: {used:.0%} used"
                out.append(
                    _condition(AlertCode.LIMIT_BREACHED, Severity.CRITICAL, message, limit=limit)
                )
            elif used >= rules.limit_warn_ratio:
                message = f"risk limit {limit} near: {used:.0%} used"
                out.append(_condition(AlertCode.LIMIT_NEAR, Severity.WARNING, message, limit=limit))
    pnl = snapshot.pnl
    floor = -rules.drawdown_warn_ratio * rules.daily_loss_limit_usd
    if pnl is not None and pnl.total <= floor:
        message = (
            f"day P&L {pnl.total:,.2f} USD is at or below {floor:,.2f} "
            f"({rules.drawdown_warn_ratio:.0%} of the {rules.daily_loss_limit_usd:,.0f} limit)"
        )
        out.append(_condition(AlertCode.PNL_DRAWDOWN, Severity.WARNING, message))
    return out


@dataclass(slots=True)
class _Active:
    condition: Condition
    last_sent_s: float


class AlertTracker:
    """Turns successive condition sets into firing/resolved alerts (see the module docstring)."""

    def __init__(self, source: str, repeat_s: float) -> None:
        if not repeat_s > 0:
            raise ValueError(f"repeat_s must be positive, got {repeat_s}")
        self.source = source
        self.repeat_s = repeat_s
        self._active: dict[tuple, _Active] = {}

    @property
    def active(self) -> list[Condition]:
        return [a.condition for a in self._active.values()]

    def update(
        self,
        conditions: Iterable[Condition],
        now_s: float,
        evaluated: frozenset[AlertCode] = EVERY_CODE,
    ) -> list[Alert]:
        current: dict[tuple, Condition] = {}
        for condition in conditions:
            old = current.get(condition.key)
            if old is None or _SEVERITY_ORDER[condition.severity] > _SEVERITY_ORDER[old.severity]:
                current[condition.key] = condition
        alerts = []
        for key, condition in current.items():
            active = self._active.get(key)
            if (
                active is None
                or active.condition.severity != condition.severity
                or now_s - active.last_sent_s >= self.repeat_s
            ):
                alerts.append(self._alert(condition, now_s, "firing", condition.severity))
                self._active[key] = _Active(condition, now_s)
            else:
                active.condition = condition
        for key in list(self._active):
            if key not in current and key[0] in evaluated:
                gone = self._active.pop(key).condition
                alerts.append(self._alert(gone, now_s, "resolved", Severity.INFO))
        return alerts

    def _alert(self, condition: Condition, now_s: float, state: str, severity: Severity) -> Alert:
        message = condition.message if state == "firing" else f"resolved: {condition.message}"
        labels: dict[str, str] = dict(condition.labels)
        labels["state"] = state
        return Alert(now_s, severity, self.source, condition.code.value, message, labels)

"""One typed settings object, read from TRADING_* environment variables ("__" separates groups).

Every service calls `load_settings()` once at start. The defaults are the safe ones: the paper
Gateway port, the simulated gateway on loopback, an embedded Redis. An unsafe configuration is
refused at start with a message that names the environment variable to fix.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trading.domain.common import HedgeMethod, Preset
from trading.domain.market_hours import REGULAR_SESSION_SECONDS
from trading.domain.pair import (
    DEFAULT_ETF,
    DEFAULT_ETF_CON_ID,
    DEFAULT_UNDERLYING,
    DEFAULT_UNDERLYING_CON_ID,
    PairSpec,
)

ENV_PREFIX = "TRADING_"
ENV_DELIMITER = "__"

LIVE_PORTS = frozenset({4001, 7496})
"""IB Gateway live (4001) and TWS live (7496). Paper: Gateway 4002, TWS 7497."""

Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class SettingsError(ValueError):
    """The configuration is unsafe or malformed; the message names each offending variable."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisSettings(_Group):
    url: SecretStr | None = None
    """redis://[:password@]host:port/db. Unset: an embedded redis-server on a free port."""
    data_dir: Path = Path("var/redis")
    """Where the embedded Redis of `make run` keeps its append-only file (restarts lose nothing)."""
    connect_timeout_s: Positive = 5.0
    """Seconds to wait for a TCP connection to Redis before retrying."""
    max_backoff_s: Positive = 10.0
    """Ceiling of the jittered exponential backoff between reconnection attempts."""


class IBSettings(_Group):
    host: str = "127.0.0.1"
    """Host of IB Gateway or TWS (or of the simulated gateway)."""
    port: Annotated[int, Field(gt=0, lt=65536)] = 4002
    """4002 = IB Gateway paper (the default); 4001 = Gateway live; 7497/7496 = TWS paper/live."""
    client_id: Annotated[int, Field(ge=0)] | None = None
    """IB API client id. Unset: each service uses its own (see SERVICE_CLIENT_IDS)."""
    allow_live: bool = False
    """Must be true to connect to a live port (4001/7496): real money."""
    account: str = ""
    """Account code; empty = the single account the login manages."""
    connect_timeout_s: Positive = 10.0
    """Seconds for the API handshake and start-up sync before a connection attempt fails."""
    max_backoff_s: Positive = 60.0
    """Reconnecting too fast is how bots hit error 326 (client id in use): back off, with jitter."""
    # An int range, not Literal[1, 2, 3, 4]: a Literal of ints refuses the text "3" that an
    # environment variable carries.
    market_data_type: Annotated[int, Field(ge=1, le=4)] = 1
    """1 live, 2 frozen, 3 delayed, 4 delayed-frozen. Falls back to 3 on error 10167/354."""
    library: Literal["ib_async", "ib_insync"] = "ib_async"
    """The client library: ib_async (maintained) or the archived ib_insync 0.9.86 (same API)."""


class HttpSettings(_Group):
    host: str = "127.0.0.1"
    """Address the dashboard binds to (0.0.0.0 in a container)."""
    port: Annotated[int, Field(gt=0, lt=65536)] = 8000
    """The dashboard's port."""
    token: SecretStr | None = None
    """Bearer token for the operator controls (halt, reduce, resume, flatten). Unset: off."""


class MetricsSettings(_Group):
    port: Annotated[int, Field(ge=0, lt=65536)] | None = None
    """Prometheus port of this service. Unset: the service's default (SERVICE_METRICS_PORTS)."""


class LogSettings(_Group):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest log level written."""
    json_format: bool = True
    """JSON lines with ECS field names (for Filebeat/Logstash); false = plain text."""


class IngestionSettings(_Group):
    strikes_each_side: PositiveInt = 3
    """Calls subscribed on each side of the at-the-money strike, per expiry."""
    expiries: PositiveInt = 2
    """Monthly expiries subscribed: the front one and the next."""
    max_market_data_lines: PositiveInt = 100
    """IB's default allowance of simultaneous market data lines."""
    silence_s: Positive = 30.0
    """An instrument with no tick for this long is marked stale."""
    max_implied_vol: Positive = 3.0
    """An implied vol above this (300%) is implausible and dropped."""
    history_maxlen: PositiveInt = 50_000
    """Capped length of each price history stream."""
    backfill_duration: str = "2 D"
    """How much intraday history to backfill on start (IB duration string)."""
    backfill_bar_size: str = "1 min"
    """Bar size of the backfill (IB bar size string)."""
    history_interval_s: Annotated[float, Field(ge=0)] = 0.25
    """At most one history-stream entry per instrument per this many seconds (conflation)."""
    recentre_hysteresis: Annotated[float, Field(ge=0, lt=1)] = 0.2
    """Re-centre the calls once another strike is nearer spot by this fraction of the gap."""
    backfill_timeout_s: Positive = 60.0
    """How long one historical-data request may take before it is retried."""
    backfill_retry_s: Positive = 10.0
    """Wait after a failed historical-data request (pacing violation, farm down)."""
    backfill_rate: float = 0.04
    """Continuous rate for the Greeks of backfilled option bars (IB has no historical Greeks)."""
    backfill_div_yield: float = 0.04
    """TLT's continuous dividend yield for the Greeks of backfilled option bars."""


class PairSettings(_Group):
    """The pair traded: its two stocks (the call's strike and roll rules are strategy settings;
    `Settings.pair_spec` joins them into one `trading.domain.pair.PairSpec`)."""

    underlying: str = DEFAULT_UNDERLYING
    """The stock whose rolled covered call (buy-write) is one leg."""
    etf: str = DEFAULT_ETF
    """The ETF running that buy-write itself: the other leg."""
    underlying_con_id: PositiveInt | None = DEFAULT_UNDERLYING_CON_ID
    """IB's contract id of the underlying (the strategy's intents carry it)."""
    etf_con_id: PositiveInt | None = DEFAULT_ETF_CON_ID
    """IB's contract id of the ETF (the strategy's intents carry it)."""


class StrategySettings(_Group):
    preset: Preset = Preset.ATM
    """atm: write the at-the-money call; replica: TLTW's own rule, the strike nearest 102%."""
    moneyness: Positive | None = None
    """Strike / spot of the call written. Unset: the preset's (atm 1.00, replica 1.02)."""
    min_days_to_expiry: Annotated[int, Field(ge=0)] = 20
    """The target expiry is the next monthly with at least this many calendar days left."""
    roll_business_days_before_expiry: Annotated[int, Field(ge=0)] = 2
    """Roll this many business days before expiry (TLTW's index: the Wednesday before)."""
    roll_strike_distance: Positive | None = None
    """Roll early when spot is more than this fraction away from the held strike (e.g. 0.03)."""
    hedge_method: HedgeMethod = HedgeMethod.DELTA
    """delta: from the option deltas; ols: rolling OLS of log prices; kalman: Kalman filter."""
    ols_window: PositiveInt = 7800
    """Rolling OLS window in bars. A day of one-minute bars (390) absorbs the premium."""
    kalman_delta: Positive = 1e-14
    """Kalman process noise (per bar). The filter's memory is about sqrt(obs_var / delta) bars:
    1e-14 with obs_var 1e-6 remembers ~10,000 one-minute bars (~25 sessions). The textbook 1e-4,
    or even 1e-9 (~32 bars), lets beta chase the very premium the strategy trades."""
    kalman_obs_var: Positive = 1e-6
    """Kalman observation noise variance of the log spread (per bar)."""
    z_window: PositiveInt = 15600
    """Rolling z-score window in bars (about 40 trading days of one-minute bars)."""
    bar_seconds: PositiveInt = 60
    """The strategy samples the spread once per bar of this many seconds."""
    entry_z: Positive = 2.0
    """Enter when |z| reaches this band."""
    exit_z: Annotated[float, Field(ge=0)] = 0.5
    """Exit when |z| falls back inside this band."""
    stop_z: Positive = 4.0
    """Stop out when |z| passes this band (no re-entry until z is back inside the entry band)."""
    min_spread_bp: Annotated[float, Field(ge=0)] = 20.0
    """An entry needs the spread at least this far from its mean, in basis points."""
    z_std_floor: Positive = 1e-4
    """Floor under the z-score denominator (log units), so a flat spread does not explode z."""
    time_stop_half_lives: Positive = 3.0
    """Close a position held longer than this many half-lives of the spread."""
    kelly_fraction: float = 0.5
    """Fraction of the Kelly optimum to bet, in (0, 1]: full Kelly on estimates overbets."""
    cointegration_pvalue: Annotated[float, Field(gt=0, lt=1)] = 0.99
    """Size zero unless the Engle-Granger test rejects no-cointegration at this p-value. 0.99 is
    in effect off: with the edge gate, 0.05 cut the premium's P&L on seeds 1-5 and kept the
    strategy out of nothing the edge gate let in (docs/backtest.md)."""
    capital_usd: Positive = 100_000.0
    """Capital the Kelly fraction applies to."""
    max_gross_notional_usd: Positive = 100_000.0
    """Cap on the gross notional (both legs) the sizing may ask for; at most
    TRADING_RISK__MAX_ORDER_NOTIONAL_USD, or every full-size entry would be rejected."""
    max_leverage: Positive = 1.0
    """Cap on gross notional / capital."""
    order_price_offset_bp: Annotated[float, Field(ge=0)] = 5.0
    """Limit price = mid +/- this offset (towards crossing) in basis points of the price."""
    refit_bars: PositiveInt = 390
    """Bars between refits of the spread's OU half-life, Engle-Granger p-value and edge tests;
    at most one session of bars (a daily run refits every bar)."""
    edge_gate: bool = True
    """Enter only when the edge tests pass (false: they are measured and reported, and refuse
    nothing; for research)."""
    edge_sample_seconds: PositiveInt = 2340
    """Trading seconds between the spread samples the edge tests use (2,340 = 39 minutes, ten
    a session; a minute's change of the spread is mostly quote noise); at most every bar."""
    edge_horizon_seconds: Positive = 234_000.0
    """The horizon of one trade in trading seconds (234,000 = 10 sessions): the half-life's
    upper bound must lie inside it, and the expected reversion is taken over it."""
    edge_confidence: Annotated[float, Field(gt=0, lt=1)] = 0.95
    """Two-sided confidence of the half-life interval."""
    edge_max_adf_pvalue: Annotated[float, Field(gt=0, lt=1)] = 0.10
    """The ADF test of the sampled spread must reject a unit root at this p-value."""
    edge_max_drift_bp_month: Annotated[float, Field(ge=0)] = 100.0
    """A spread whose fitted trend moves more than this per month (21 sessions) is drifting:
    no entry against the drift."""
    edge_cost_margin: Annotated[float, Field(ge=0)] = 2.0
    """An entry's expected reversion over the horizon must be this many times the round
    trip's measured cost (bid/ask of every leg and IB's commissions, both ways)."""
    pair_id: str = "TLTBW-TLTW"
    """Names the pair in intents, fills and P&L (and prefixes every intent id)."""


class RiskSettings(_Group):
    max_buy_write_units: PositiveInt = 20
    """Per-leg limit: buy-write units (100 TLT + 1 call each) held, long or short."""
    max_tltw_shares: PositiveInt = 10_000
    """Per-leg limit: TLTW shares held, long or short."""
    max_gross_notional_usd: Positive = 250_000.0
    """Gross notional of the whole book after an order."""
    max_order_notional_usd: Positive = 150_000.0
    """Notional of one order (one leg)."""
    price_band_bp: Positive = 50.0
    """An order's limit must lie within this many basis points of the current mid."""
    max_net_delta_shares: Positive = 1_500.0
    """Net delta of the book in TLT-share equivalents."""
    max_net_vega_usd: Positive = 5_000.0
    """Net vega of the book in dollars per vol point."""
    max_orders_per_minute: PositiveInt = 30
    """Orders sent to IB per rolling minute."""
    daily_loss_limit_usd: Positive = 5_000.0
    """Realized + unrealized loss in a day that sets HALTED and flattens."""
    pair_stop_loss_usd: Positive = 2_500.0
    """Loss on one open pair that flattens both of its legs."""
    stale_after_s: Positive = 10.0
    """Market data older than this (wall clock) blocks new exposure."""
    legging_timeout_s: Positive = 30.0
    """If one leg fills and the other does not within this time: complete or unwind, and alert."""
    ack_timeout_s: Positive = 5.0
    """An order IB has not acknowledged this long after it was sent is looked up at IB (open and
    completed orders, executions); one IB does not know is resolved as lost (never received)."""
    rejection_record_window_s: Positive = 60.0
    """Rejections of one pair for the same reasons within this window are written to the
    decision stream once (with a count); each intent still gets its decision in its record."""
    degraded_rejections_per_minute: PositiveInt = 10
    """A pair rejected this often in a minute makes risk-management report degraded and alert:
    it is being asked for something it keeps refusing."""
    check_market_hours: bool = True
    """Refuse orders outside regular US options hours (XNYS calendar, holidays included)."""
    close_short_call_sessions_before_expiry: Annotated[int, Field(ge=0)] = 1
    """Backstop: flatten a pair whose short call is this many sessions from expiry, unrolled."""


class MonitoringSettings(_Group):
    """The monitoring service: how often it reads Redis and when it raises alerts."""

    interval_s: Positive = 1.0
    """How often the monitor reads Redis, refreshes its metrics and evaluates its alerts."""
    symbols: tuple[str, ...] | None = None
    """Instruments whose quotes are watched for staleness (plus any in the data-health hash).
    Unset: the pair's two stocks (TRADING_PAIR__UNDERLYING, TRADING_PAIR__ETF)."""
    quote_stale_after_s: Positive = 30.0
    """A quote not updated for this long (by its receive time) in market hours is stale."""
    market_hours_only: bool = True
    """Quote-age staleness counts only inside US market hours (false against ibsim's clock)."""
    expected_services: tuple[str, ...] = (
        "data-ingestion",
        "strategy",
        "risk-management",
        "visualization",
    )
    """Services whose missing heartbeat raises service_silent."""
    startup_grace_s: Annotated[float, Field(ge=0)] = 30.0
    """A service never seen is not called silent until the monitor has run this long."""
    limit_warn_ratio: Annotated[float, Field(gt=0, le=1)] = 0.8
    """A risk limit used at or above this fraction raises limit_near (at 1.0: limit_breached)."""
    drawdown_warn_ratio: Annotated[float, Field(gt=0, le=1)] = 0.5
    """The day's P&L at or below -ratio x daily_loss_limit_usd raises pnl_drawdown."""
    consumer_lag_warn_s: Positive = 30.0
    """An entry pending in a consumer group for this long raises consumer_lag."""
    alert_repeat_s: Positive = 300.0
    """A condition still active is re-announced this often."""


class SimSettings(_Group):
    """The simulated gateway started by `make run` (never used against a real Gateway)."""

    enabled: bool = True
    """`make run` starts the simulated gateway; false = connect to TRADING_IB__HOST:PORT."""
    seed: int = 1
    """Seed of the simulated market: the same seed gives the same prices."""
    speed: Positive = 60.0
    """Simulated seconds per wall-clock second."""
    premium_bp: Annotated[float, Field(ge=0)] = 20.0
    """Scale of TLTW's premium to NAV in the simulation (0 = none: no edge to find)."""
    premium_half_life_days: Positive = 1.0
    """Half-life of the simulated premium's mean reversion, in trading days."""
    premium_drift_bp_year: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    """TLTW's NAV drifts against its index by this many bp a year, with no reversion (alone or
    with the premium; -300 = TLTW 3% a year behind, as on real prices)."""
    excursion_bp: Annotated[float, Field(allow_inf_nan=False)] = 60.0
    """The demo's story, planted by the simulator: TLTW's premium moves this many bp off its
    own path in 2 simulated minutes, stays there, and comes back in 10 (0 = none). The
    simulator prints the schedule when it starts and each excursion as it begins."""
    excursion_first_minutes: Annotated[float, Field(ge=0)] = 30.0
    """Simulated trading minutes from the start to the first planted excursion."""
    excursion_hold_minutes: Annotated[float, Field(ge=0)] = 20.0
    """Simulated minutes a planted excursion stays at its full size."""
    excursion_every_minutes: Positive = 150.0
    """Simulated trading minutes from one planted excursion's start to the next's."""
    start: datetime | None = datetime(2026, 11, 4, 9, 30)
    """The simulated market's first moment, New York time (unset: ibsim's, Monday 2 November
    2026). Wednesday 4 November: TLTW goes ex its monthly distribution (1% of NAV) at the first
    session of the month, a drop the strategy's spread of log prices does not adjust for, so a
    z window over Monday's open starts at a z of about -5 (README, "The simulated demo")."""
    admin_port: Annotated[int, Field(ge=0, lt=65536)] = 0
    """Port of the simulator's fault/truth HTTP API (0 = off)."""
    tick_interval_s: Positive | None = None
    """Simulated seconds between quote updates. Unset: speed x 0.1 (ten updates per wall
    second per instrument), at least 0.25."""

    @property
    def effective_tick_interval_s(self) -> float:
        if self.tick_interval_s is not None:
            return self.tick_interval_s
        return max(0.25, 0.1 * self.speed)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="ignore",
        frozen=True,
    )

    redis: RedisSettings = RedisSettings()
    ib: IBSettings = IBSettings()
    http: HttpSettings = HttpSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    ingestion: IngestionSettings = IngestionSettings()
    pair: PairSettings = PairSettings()
    strategy: StrategySettings = StrategySettings()
    risk: RiskSettings = RiskSettings()
    sim: SimSettings = SimSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    heartbeat_interval_s: Positive = 2.0
    """Each service writes a heartbeat this often; it expires after three intervals."""

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        problems = unsafe_settings(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def moneyness(self) -> float:
        """Strike / spot of the written call: the explicit setting, else the preset's."""
        if self.strategy.moneyness is not None:
            return self.strategy.moneyness
        return 1.02 if self.strategy.preset is Preset.REPLICA else 1.00

    def pair_spec(self) -> PairSpec:
        """The pair traded, as one value: the pair group's symbols and contract ids with the
        strategy's pair id, moneyness and roll rule (ValueError naming a bad field)."""
        p, st = self.pair, self.strategy
        return PairSpec(
            underlying=p.underlying,
            etf=p.etf,
            pair_id=st.pair_id,
            moneyness=self.moneyness,
            min_days_to_expiry=st.min_days_to_expiry,
            roll_business_days_before_expiry=st.roll_business_days_before_expiry,
            roll_strike_distance=st.roll_strike_distance,
            underlying_con_id=p.underlying_con_id,
            etf_con_id=p.etf_con_id,
        )

    def ib_client_id(self, service: str) -> int:
        return self.ib.client_id if self.ib.client_id is not None else SERVICE_CLIENT_IDS[service]

    def metrics_port(self, service: str) -> int:
        return (
            self.metrics.port if self.metrics.port is not None else SERVICE_METRICS_PORTS[service]
        )


SERVICE_CLIENT_IDS = {"data-ingestion": 11, "risk-management": 12, "backtest": 13, "admin": 14}
SERVICE_METRICS_PORTS = {
    "data-ingestion": 9101,
    "strategy": 9102,
    "risk-management": 9103,
    "visualization": 9104,
    "monitoring": 9105,
    "ibsim": 9106,
}


def env_name(*path: str) -> str:
    """The environment variable of a setting: env_name("ib", "port") == "TRADING_IB__PORT"."""
    return ENV_PREFIX + ENV_DELIMITER.join(p.upper() for p in path)


def unsafe_settings(s: Settings) -> list[str]:
    """Every reason the configuration is unsafe, each naming its environment variable."""
    problems = []
    if s.ib.port in LIVE_PORTS and not s.ib.allow_live:
        problems.append(
            f"{env_name('ib', 'port')}={s.ib.port} is a LIVE trading port; set "
            f"{env_name('ib', 'allow_live')}=true to trade real money (paper Gateway: 4002)"
        )
    try:
        s.pair_spec()
    except ValueError as exc:
        problems.append(f"the pair ({ENV_PREFIX}PAIR__*, {ENV_PREFIX}STRATEGY__*): {exc}")
    st = s.strategy
    if st.entry_z <= st.exit_z:
        problems.append(
            f"{env_name('strategy', 'entry_z')}={st.entry_z} must be above "
            f"{env_name('strategy', 'exit_z')}={st.exit_z} (the entry band is inside the exit band)"
        )
    if st.stop_z <= st.entry_z:
        problems.append(
            f"{env_name('strategy', 'stop_z')}={st.stop_z} must be above "
            f"{env_name('strategy', 'entry_z')}={st.entry_z}"
        )
    if not 0.0 < st.kelly_fraction <= 1.0:
        problems.append(
            f"{env_name('strategy', 'kelly_fraction')}={st.kelly_fraction} must be in (0, 1]"
        )
    if st.max_gross_notional_usd > s.risk.max_order_notional_usd:
        problems.append(
            f"{env_name('strategy', 'max_gross_notional_usd')}={st.max_gross_notional_usd} "
            f"exceeds {env_name('risk', 'max_order_notional_usd')}="
            f"{s.risk.max_order_notional_usd}: the risk gate would reject every full-size entry"
        )
    problems += _window_problems(st)
    if s.risk.max_order_notional_usd > s.risk.max_gross_notional_usd:
        problems.append(
            f"{env_name('risk', 'max_order_notional_usd')}={s.risk.max_order_notional_usd} "
            f"exceeds {env_name('risk', 'max_gross_notional_usd')}={s.risk.max_gross_notional_usd}"
        )
    return problems


MAX_WINDOW_SESSIONS = 1260
"""A window of more than five years of sessions is a setting meant for another bar size."""


def _window_problems(st: StrategySettings) -> list[str]:
    """Windows in bars checked against the bar length (a bar is at most a session of
    `REGULAR_SESSION_SECONDS` of trading time), each naming its variable."""
    bar = min(st.bar_seconds, REGULAR_SESSION_SECONDS)
    what = f"bars of {st.bar_seconds} s"
    problems = []
    for name in ("z_window", "ols_window"):
        sessions = getattr(st, name) * bar / REGULAR_SESSION_SECONDS
        if sessions > MAX_WINDOW_SESSIONS:
            problems.append(
                f"{env_name('strategy', name)}={getattr(st, name)} {what} spans {sessions:,.0f} "
                f"sessions (> {MAX_WINDOW_SESSIONS}): give it in bars of "
                f"{env_name('strategy', 'bar_seconds')}"
            )
    if st.refit_bars * bar > REGULAR_SESSION_SECONDS:
        problems.append(
            f"{env_name('strategy', 'refit_bars')}={st.refit_bars} {what} refits every "
            f"{st.refit_bars * bar / REGULAR_SESSION_SECONDS:g} sessions: at most one session "
            f"({max(REGULAR_SESSION_SECONDS // bar, 1)} bars)"
        )
    if st.edge_horizon_seconds < st.edge_sample_seconds:
        problems.append(
            f"{env_name('strategy', 'edge_horizon_seconds')}={st.edge_horizon_seconds} is "
            f"shorter than {env_name('strategy', 'edge_sample_seconds')}="
            f"{st.edge_sample_seconds}"
        )
    return problems


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (overrides win) or raise SettingsError naming each bad variable;
    pydantic validates the overrides (a section as a dict or its model, a field as any value)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


_SECRET_FIELDS = frozenset({"url", "token"})


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).isdigit()]
        name = env_name(*loc) if loc else "settings"
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        if loc and loc[-1] in _SECRET_FIELDS:
            lines.append(f"{name}: {msg}")
        elif loc and not isinstance(value, dict):
            lines.append(f"{name}={value!r}: {msg}")
        else:
            lines.append(msg if not loc else f"{name}: {msg}")
    return "invalid configuration: " + "; ".join(lines)


def settings_table() -> str:
    """Every setting as a Markdown table row: variable, default, meaning (for the README)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    groups = {name: field.annotation for name, field in Settings.model_fields.items()}
    for group, model in groups.items():
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name, field in model.model_fields.items():
                rows.append(_row(env_name(group, name), field, model, name))
        else:
            rows.append(_row(env_name(group), Settings.model_fields[group], Settings, group))
    return "\n".join(rows)


def _row(var: str, field: object, model: type, name: str) -> str:
    default = getattr(field, "default", None)
    shown = "(unset)" if default is None else str(getattr(default, "value", default))
    doc = _field_docs(model).get(name, "")
    return f"| `{var}` | `{shown}` | {doc} |"


def _field_docs(model: type) -> dict[str, str]:
    """The attribute docstrings (the string under each field) of a settings class."""
    import ast
    import inspect
    import itertools
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(model)))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for prev, node in itertools.pairwise(body):
        if (
            isinstance(prev, ast.AnnAssign)
            and isinstance(prev.target, ast.Name)
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs

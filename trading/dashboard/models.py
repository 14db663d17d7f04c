"""Response shapes of the dashboard's JSON API: one model per panel, all in the OpenAPI document.

Series are columnar (one list per field, all of equal length, oldest first) because that is what
the browser's chart library draws from and it is the smallest JSON. Timestamps are float epoch
seconds (UTC); `*_age_s` fields are seconds between a value's timestamp and the moment the panel
was built. Latest values are the bus messages themselves (trading.bus dataclasses), so the API
and Redis can never disagree on a field's name or meaning. Missing data is `null` or an empty
list, never an error.

One clock: series times are market (exchange) time, the simulated market's under ibsim. The
messages that carry this machine's time instead (P&L, fills, orders, alerts, heartbeats) are
put on the market clock by the page with `MarketClock` (`market_ts + (t - wall_ts) x rate`).
Contracts carry names (`contracts`, `name`): symbol, expiry, strike and right.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from trading.bus import (
    Alert,
    Command,
    DataStatus,
    Fill,
    Heartbeat,
    OptionQuote,
    OrderEvent,
    PnL,
    Position,
    Quote,
    RiskStatus,
    SignalAction,
    SpreadPoint,
)


class PanelName(StrEnum):
    """The dashboard's panels; each has a JSON endpoint `/api/<name>` and a live event."""

    CLOCK = "clock"
    SPREAD = "spread"
    PRICES = "prices"
    HEDGE = "hedge"
    OPTION = "option"
    BOOK = "book"
    RISK = "risk"
    HEALTH = "health"
    ALERTS = "alerts"


class PlotName(StrEnum):
    """Server-rendered PNG plots (`/plots/<name>.png`)."""

    SPREAD = "spread"
    PRICES = "prices"
    HEDGE = "hedge"
    RISK = "risk"


class ControlCommand(StrEnum):
    """Operator controls as they appear in the URL, mapped to the bus's Command vocabulary."""

    HALT = "halt"
    REDUCE = "reduce"
    RESUME = "resume"
    FLATTEN = "flatten"
    KILL = "kill"

    @property
    def bus_command(self) -> Command:
        return Command[self.name]


class MarketClock(BaseModel):
    """The page's one clock: the market's time, which under the simulator is the simulated
    market's (it runs `rate` times faster than the wall clock, and jumps over nights)."""

    simulated: bool = Field(description="True when the simulated gateway (ibsim) runs")
    source: str = Field(description="Whose clock: 'ibsim, 60x' or 'IB Gateway'")
    market_ts: float | None = Field(
        description="Market time now: the newest quote's exchange time, advanced at `rate` "
        "for the wall time since it was received (at most stale_after_s); null before any quote"
    )
    wall_ts: float = Field(description="This machine's time when the panel was built")
    rate: float = Field(description="Market seconds per wall second (ibsim's speed; 1 for IB)")
    timezone: str = Field(description="The exchange's time zone, for display")
    stale_after_s: float = Field(description="An update older than this is flagged stale")


class Bands(BaseModel):
    """The signal's z-score bands: enter beyond +-entry_z, exit inside +-exit_z, stop beyond
    +-stop_z. From the newest spread point (what the strategy used), else from the settings."""

    entry_z: float
    exit_z: float
    stop_z: float


class SpreadSeries(BaseModel):
    """The pair over time. spread = log(tltw) - beta*log(index_value) - alpha; z = (spread -
    mean)/std over the strategy's rolling window."""

    ts: list[float] = Field(default_factory=list)
    spread: list[float] = Field(default_factory=list)
    mean: list[float] = Field(default_factory=list)
    std: list[float] = Field(default_factory=list)
    z: list[float] = Field(default_factory=list)
    beta: list[float] = Field(default_factory=list)
    index_value: list[float] = Field(default_factory=list)
    tltw: list[float] = Field(default_factory=list)


class TradeMarker(BaseModel):
    """A signal that acted (anything but NONE), for markers on the z-score chart."""

    ts: float
    action: SignalAction
    state: str
    z: float
    spread: float
    reason: str


class SpreadPanel(BaseModel):
    latest: SpreadPoint | None
    bands: Bands
    series: SpreadSeries
    markers: list[TradeMarker]
    age_s: float | None = Field(description="Seconds since the newest spread point")


class PriceSeries(BaseModel):
    """One instrument's price over time: the quote mid (or last when one side is missing)."""

    ts: list[float] = Field(default_factory=list)
    price: list[float] = Field(default_factory=list)


class PairNames(BaseModel):
    """The pair the system trades (`trading.domain.pair.PairSpec`, from TRADING_PAIR__* and
    TRADING_STRATEGY__PAIR_ID): the page names its charts and tables from it."""

    underlying: str = Field(description="The stock whose rolled covered call is one leg")
    etf: str = Field(description="The ETF running that buy-write itself: the other leg")
    pair_id: str = Field(description="Names the pair in intents, fills and P&L")


class InstrumentPrice(BaseModel):
    symbol: str
    quote: Quote | None
    mid: float | None = Field(description="(bid + ask) / 2 when both sides are positive")
    spread_bp: float | None = Field(description="(ask - bid) / mid x 10,000")
    nav: float | None = Field(description="Intraday indicative NAV per share (ETFs)")
    premium_bp: float | None = Field(description="(mid - nav) / nav x 10,000")
    age_s: float | None = Field(description="Seconds since the quote was received")


class PricesPanel(BaseModel):
    pair: PairNames
    instruments: list[InstrumentPrice] = Field(description="The pair's underlying, then its ETF")
    buy_write_index: float | None = Field(description="Newest buy-write index value per share")
    series: dict[str, PriceSeries] = Field(
        description="Keyed by the pair's two symbols (`pair.underlying`, `pair.etf`: quote "
        "history) and buy_write_index (spread stream)"
    )


class HedgeSeries(BaseModel):
    ts: list[float] = Field(default_factory=list)
    beta: list[float] = Field(default_factory=list)


class HedgePanel(BaseModel):
    """The hedge ratio: beta in log(tltw) = alpha + beta*log(index)."""

    beta: float | None
    alpha: float | None
    method: str | None
    series: HedgeSeries


class OptionPanel(BaseModel):
    """The call being written. Greeks per share are IB's (vega per vol point, theta per calendar
    day); per-contract figures multiply by the 100-share multiplier."""

    con_id: int | None
    name: str | None = Field(description="The call: symbol, expiry, strike and right")
    strike: float | None
    expiry: str | None
    quote: OptionQuote | None
    mid: float | None
    delta_shares_per_contract: float | None = Field(description="delta x 100")
    gamma_shares_per_contract: float | None = Field(description="gamma x 100, per $1 of spot")
    vega_usd_per_point_per_contract: float | None = Field(description="vega_per_point x 100")
    theta_usd_per_day_per_contract: float | None = Field(description="theta_per_day x 100")
    age_s: float | None


class BookPanel(BaseModel):
    positions: list[Position]
    pnl: PnL | None
    open_orders: list[OrderEvent]
    fills: list[Fill] = Field(description="Newest first")
    contracts: dict[str, str] = Field(
        default_factory=dict,
        description="conId -> the contract's name (symbol, expiry, strike, right) for every "
        "position and fill",
    )
    orders: dict[str, str] = Field(
        default_factory=dict,
        description="Open order id -> what it trades, by name (a buy-write names its call)",
    )


class LimitUse(BaseModel):
    name: str
    used: float = Field(description="Fraction of the limit in use; 1.0 = at the limit")
    breached: bool = Field(description="used >= 1")


class RiskPanel(BaseModel):
    state: str | None = Field(description="ACTIVE / REDUCING / HALTED; null before risk reports")
    reason: str | None
    status: RiskStatus | None
    limits: list[LimitUse] = Field(description="Most used first")
    age_s: float | None


class InstrumentHealth(BaseModel):
    symbol: str = Field(
        description="As data-ingestion keys it: one of the pair's two stocks, or an option's conId"
    )
    name: str = Field(description="The contract: symbol, expiry, strike and right")
    status: DataStatus = Field(
        description="What the page shows: data-ingestion's status, but stale when no update "
        "came for stale_after_s (whatever data-ingestion last said)"
    )
    reported_status: DataStatus = Field(description="data-ingestion's own status")
    reason: str
    ts: float = Field(description="When data-ingestion last changed the status")
    updated_ts: float | None = Field(description="When its newest quote was received")
    age_s: float | None = Field(description="Seconds since its newest quote was received")


class ServiceHealth(BaseModel):
    service: str
    status: str = Field(description="The heartbeat's status, or 'silent' when it has expired")
    heartbeat: Heartbeat | None
    age_s: float | None
    late: bool = Field(default=False, description="No heartbeat for two intervals")
    problems: list[str] = Field(
        default_factory=list,
        description="Why the service cannot act (the heartbeat's detail.problems), when degraded",
    )


class BrokerConnection(BaseModel):
    """A service's connection to the IB Gateway, from its heartbeat
    (trading.broker.connection.GatewayState)."""

    service: str
    status: str = Field(description="connecting / connected / unreachable / disconnected")
    host: str
    port: int
    attempt: int = Field(description="Failed attempts in a row")
    next_try_in_s: float | None = Field(description="Seconds until the next attempt")
    error: str
    down_since: float | None
    age_s: float | None = Field(description="Age of the heartbeat that said so")


class HealthPanel(BaseModel):
    instruments: list[InstrumentHealth]
    services: list[ServiceHealth]
    gateway: list[BrokerConnection] = Field(
        default_factory=list, description="Each broker connection's state (data-ingestion's, ...)"
    )
    stale_after_s: float = Field(default=30.0, description="Data older than this is stale")


class AlertsPanel(BaseModel):
    alerts: list[Alert] = Field(description="Newest first")


class DataAge(BaseModel):
    source: str
    ts: float | None
    age_s: float | None


class Healthz(BaseModel):
    """The dashboard's health: reachable Redis and how old the newest data is."""

    status: str = Field(description="ok / stale (nothing newer than stale_after_s) / no_data")
    newest_data_ts: float | None
    newest_data_age_s: float | None
    stale_after_s: float
    sources: list[DataAge]


class ControlsState(BaseModel):
    enabled: bool = Field(description="False when no TRADING_HTTP__TOKEN is configured")
    commands: list[ControlCommand]


class ControlRequest(BaseModel):
    reason: str = Field(default="", max_length=500)
    issued_by: str = Field(default="dashboard", min_length=1, max_length=100)
    flatten: bool = Field(default=False, description="With kill: close every position too")


class ControlAccepted(BaseModel):
    command_id: str
    command: Command
    entry_id: str = Field(description="The entry's id in the operator command stream")


class Problem(BaseModel):
    detail: str

"""The bus's messages: typed, frozen dataclasses with a "kind" tag, and the vocabularies they
carry. Importable without redis: the engines, the backtest and the domain's callers use them
as values. The domain owns the enums it reasons with (`Side`, `SignalAction`); messages carry
those same types.

Timestamps are float epoch seconds (UTC): `ts_exchange` is IB's (or ibsim's) time where the
message has one, `ts_recv` the local time it was received.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from trading.domain.common import Side
from trading.domain.risk import TradingState
from trading.domain.signals import SignalAction

SCHEMA_VERSION = 1

# --------------------------------------------------------------------------------------------
# Vocabularies


class LegKind(StrEnum):
    BUY_WRITE = "buy_write"  # one unit = long 100 TLT + short 1 call, sent as one BAG combo
    STOCK = "stock"  # TLTW shares


class IntentPurpose(StrEnum):
    ENTRY = "entry"
    EXIT = "exit"
    STOP = "stop"
    FLATTEN = "flatten"
    ROLL = "roll"
    UNWIND = "unwind"  # legging: undo the leg that filled alone


class DataStatus(StrEnum):
    OK = "ok"
    STALE = "stale"
    DELAYED = "delayed"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Command(StrEnum):
    HALT = "HALT"  # no new orders; open orders stay
    REDUCE = "REDUCE"  # only orders that shrink exposure
    RESUME = "RESUME"  # back to ACTIVE
    FLATTEN = "FLATTEN"  # cancel open orders and close every position
    KILL = "KILL"  # cancel every open order and HALT; flatten too if `flatten` is set


class MessageError(ValueError):
    """A message could not be encoded or decoded; `field` names the offending field."""

    def __init__(self, kind: str, field_name: str, problem: str):
        self.kind = kind
        self.field = field_name
        super().__init__(f"{kind}.{field_name}: {problem}")


# --------------------------------------------------------------------------------------------
# Message schemas


@dataclass(frozen=True, slots=True)
class Message:
    """Base of all bus messages. Subclasses set KIND and declare typed fields."""

    KIND: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Quote(Message):
    """Top of book of a stock or ETF (TLT, TLTW). Prices per share in USD."""

    KIND: ClassVar[str] = "quote"
    symbol: str
    con_id: int
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    last: float | None
    ts_exchange: float
    ts_recv: float
    delayed: bool = False


@dataclass(frozen=True, slots=True)
class OptionQuote(Message):
    """An option's top of book with IB's model Greeks, per share (multiply by 100 per contract).

    vega_per_point: price change per 1 vol point (0.01 of vol), IB's convention.
    theta_per_day: price change per calendar day, IB's convention.
    """

    KIND: ClassVar[str] = "option_quote"
    symbol: str  # the underlying, "TLT"
    con_id: int
    local_symbol: str
    expiry: str  # YYYYMMDD
    strike: float
    right: str  # "C" or "P"
    bid: float
    ask: float
    bid_size: float
    ask_size: float
    implied_vol: float
    delta: float
    gamma: float
    vega_per_point: float
    theta_per_day: float
    underlying_price: float
    model_price: float
    ts_exchange: float
    ts_recv: float
    delayed: bool = False


@dataclass(frozen=True, slots=True)
class EtfNav(Message):
    """An ETF's intraday indicative NAV per share (IB's ETF NAV generic ticks)."""

    KIND: ClassVar[str] = "etf_nav"
    symbol: str
    nav: float
    ts_exchange: float
    ts_recv: float


@dataclass(frozen=True, slots=True)
class Dividends(Message):
    """An instrument's cash distributions as IB reports them (generic tick 456, tick type 59).

    next_ex_date is YYYYMMDD ("" when none is announced); amounts per share in USD. The strategy
    adds paid distributions back to build total-return prices; risk's book credits (debits) the
    shares held long (short) before the ex-date. next_pay_date is YYYYMMDD when the source knows
    it (an issuer's history, a tape; IB's tick does not carry it): "" = unknown.
    """

    KIND: ClassVar[str] = "dividends"
    symbol: str
    past_12m: float
    next_12m: float
    next_ex_date: str
    next_amount: float
    ts: float
    next_pay_date: str = ""


@dataclass(frozen=True, slots=True)
class DataHealth(Message):
    """Whether an instrument's data may be traded on, and why not."""

    KIND: ClassVar[str] = "data_health"
    symbol: str
    status: DataStatus
    reason: str
    ts: float


@dataclass(frozen=True, slots=True)
class ChainOption(Message):
    KIND: ClassVar[str] = "chain_option"
    con_id: int
    local_symbol: str
    expiry: str
    strike: float
    right: str


@dataclass(frozen=True, slots=True)
class OptionChain(Message):
    """The option chain data-ingestion selected and subscribed, around the money."""

    KIND: ClassVar[str] = "option_chain"
    underlying: str
    underlying_con_id: int
    expiries: tuple[str, ...]  # every listed expiry, YYYYMMDD
    strikes: tuple[float, ...]  # every listed strike
    subscribed: tuple[ChainOption, ...]
    spot: float
    ts: float


@dataclass(frozen=True, slots=True)
class SpreadPoint(Message):
    """One sample of the pair: the buy-write index, TLTW, the hedge and the z-score."""

    KIND: ClassVar[str] = "spread_point"
    ts: float
    index_value: float  # buy-write index per share, chained through rolls
    tltw: float  # TLTW total-return price used by the signal
    beta: float
    alpha: float
    spread: float  # log(tltw) - beta*log(index) - alpha
    mean: float
    std: float
    z: float
    entry_z: float
    exit_z: float
    stop_z: float
    hedge_method: str
    state: str  # FLAT / LONG_SPREAD / SHORT_SPREAD
    call_con_id: int
    call_strike: float
    call_expiry: str


@dataclass(frozen=True, slots=True)
class Signal(Message):
    KIND: ClassVar[str] = "signal"
    ts: float
    action: SignalAction
    state: str
    z: float
    spread: float
    reason: str


@dataclass(frozen=True, slots=True)
class IntentLeg(Message):
    """One leg of an order intent.

    BUY_WRITE: quantity in units of (100 TLT + 1 short call); BUY buys the TLT and sells the
    call, SELL sells the TLT and buys the call back. limit_price is per unit in IB's combo
    convention, the sum of ratio x leg price with the option price per share: 100 x S - C.
    STOCK: quantity in shares, limit_price per share.
    """

    KIND: ClassVar[str] = "intent_leg"
    kind: LegKind
    symbol: str
    side: Side
    quantity: int
    limit_price: float
    con_id: int  # the stock's conId (TLT for a buy-write, TLTW for stock)
    option_con_id: int | None = None
    option_expiry: str | None = None
    option_strike: float | None = None


@dataclass(frozen=True, slots=True)
class OrderIntent(Message):
    """What the strategy wants traded. `intent_id` becomes each IB order's orderRef."""

    KIND: ClassVar[str] = "order_intent"
    intent_id: str
    pair_id: str
    ts: float
    purpose: IntentPurpose
    action: SignalAction
    legs: tuple[IntentLeg, ...]
    why: dict[str, Any] = field(default_factory=dict)  # z, bands, beta, Kelly inputs


SETTLED_UNITS_BEFORE = "settled_buy_write_units_before"
SETTLED_UNITS_AFTER = "settled_buy_write_units_after"
SETTLED_TLTW_SHARES_AFTER = "settled_tltw_shares_after"
"""Keys of a settlement rebalance's `why`: the call contracts the pair held before IB's
settlement and after it, and the TLTW shares (unsigned) it keeps: the strategy's exit then
closes only what is left (absolute figures, so a retried rebalance is applied once)."""


@dataclass(frozen=True, slots=True)
class RiskReason(Message):
    KIND: ClassVar[str] = "risk_reason"
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class RiskDecision(Message):
    KIND: ClassVar[str] = "risk_decision"
    intent_id: str
    ts: float
    approved: bool
    reasons: tuple[RiskReason, ...]


@dataclass(frozen=True, slots=True)
class OrderEvent(Message):
    """One step of an order's life: the audit trail."""

    KIND: ClassVar[str] = "order_event"
    ts: float
    intent_id: str
    order_id: int
    perm_id: int
    leg: str  # LegKind value
    symbol: str
    side: Side
    quantity: float
    order_type: str
    limit_price: float | None
    status: str  # IB status (Submitted, Filled, Cancelled, Inactive, ...) or "Rejected"
    filled: float
    remaining: float
    avg_fill_price: float
    message: str = ""


@dataclass(frozen=True, slots=True)
class Fill(Message):
    """One execution, with its commission. Option prices per share; multiplier 100."""

    KIND: ClassVar[str] = "fill"
    ts: float
    exec_id: str
    order_id: int
    perm_id: int
    intent_id: str
    symbol: str
    local_symbol: str
    con_id: int
    sec_type: str  # STK / OPT / BAG
    side: Side
    quantity: float
    price: float
    multiplier: float
    commission: float


@dataclass(frozen=True, slots=True)
class Position(Message):
    KIND: ClassVar[str] = "position"
    symbol: str
    local_symbol: str
    con_id: int
    sec_type: str
    quantity: float
    avg_cost: float  # per share (options: per share, not per contract)
    multiplier: float
    market_price: float | None
    unrealized_pnl: float
    realized_pnl: float
    ts: float


@dataclass(frozen=True, slots=True)
class PnL(Message):
    """Profit and loss in USD, net of commissions: total = realized - commissions + unrealized
    + distributions. ``distributions``: cash distributions on the shares held over their
    ex-dates (credited long, debited short), of which ``distributions_accrued`` is gone ex but
    not yet paid."""

    KIND: ClassVar[str] = "pnl"
    ts: float
    realized: float
    unrealized: float
    commissions: float
    total: float
    per_pair: dict[str, float] = field(default_factory=dict)
    distributions: float = 0.0
    distributions_accrued: float = 0.0


@dataclass(frozen=True, slots=True)
class RiskStatus(Message):
    """The risk gate's trading state and how much of each limit is used (0..1+)."""

    KIND: ClassVar[str] = "risk_status"
    ts: float
    state: TradingState
    reason: str
    limit_usage: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    KIND: ClassVar[str] = "heartbeat"
    service: str
    ts: float
    status: str  # "ok", "degraded", "starting"
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert(Message):
    KIND: ClassVar[str] = "alert"
    ts: float
    severity: Severity
    source: str
    code: str
    message: str
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OperatorCommand(Message):
    KIND: ClassVar[str] = "operator_command"
    command_id: str
    ts: float
    command: Command
    issued_by: str
    reason: str = ""
    flatten: bool = False


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.KIND: cls
    for cls in (
        Quote,
        OptionQuote,
        EtfNav,
        Dividends,
        DataHealth,
        ChainOption,
        OptionChain,
        SpreadPoint,
        Signal,
        IntentLeg,
        OrderIntent,
        RiskReason,
        RiskDecision,
        OrderEvent,
        Fill,
        Position,
        PnL,
        RiskStatus,
        Heartbeat,
        Alert,
        OperatorCommand,
    )
}

M = TypeVar("M", bound=Message)
MT = TypeVar("MT", bound=Message)


def unfrozen_class(cls: type[Message]) -> type:
    """A subclass of the message class ``cls`` that takes plain attribute stores (a frozen
    dataclass's ``__setattr__`` is a Python call per field). Having no slots of its own, an
    instance of it can be given ``cls`` as its class once filled: the one way this package
    builds messages in hot loops (`slot_constructor`, the codec's decoders). CPython writes a
    slot directly only when neither ``__setattr__`` nor ``__delattr__`` is overridden, hence
    both are object's."""
    hooks = {"__setattr__": object.__setattr__, "__delattr__": object.__delattr__}
    return type(f"Unfrozen{cls.__name__}", (cls,), {"__slots__": (), **hooks})


def slot_constructor(cls: type[M]) -> Callable[..., M]:
    """A constructor of the message class ``cls`` for hot loops: the fields positionally in
    declaration order (plain defaults may be left off). The instance is the one ``cls(...)``
    would build, filled as an `unfrozen_class` instance and then given ``cls`` as its class:
    about a sixth of the frozen ``__init__``'s cost for a 20-field option quote (0.4 against
    2.6 us; through the slots' descriptors, as this once did, 1.4). Like ``__init__`` it checks
    nothing; a field with a default factory is refused (TypeError)."""
    fields = dataclasses.fields(cls)
    env: dict[str, Any] = {"_new": object.__new__, "cls": cls, "Unfrozen": unfrozen_class(cls)}
    params, body = [], ["    o = _new(Unfrozen)"]
    for i, f in enumerate(fields):
        if f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: a default factory is not supported")
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            env[f"default{i}"] = f.default
            params.append(f"{f.name}=default{i}")
        body.append(f"    o.{f.name} = {f.name}")
    body += ["    o.__class__ = cls", "    return o"]
    source = "\n".join([f"def construct({', '.join(params)}):", *body])
    exec(source, env)
    construct: Callable[..., M] = env["construct"]
    construct.__qualname__ = f"slot_constructor({cls.__name__})"
    return construct

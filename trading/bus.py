"""The Redis bus: every key, channel and stream name, the message schemas, and the I/O helpers.

This is the only module that spells a Redis name. Services exchange typed, frozen messages:

- latest values are keys (a restarted service reads them and carries on);
- live ticks are pub/sub (fire-and-forget; a subscriber that was down reads the latest keys);
- anything that must not be lost is a stream read through a consumer group, acknowledged after
  the reader has acted, and re-read from the pending list after a restart.

Encoding is JSON (orjson) with a "kind" tag. `encode` and `decode` reject NaN, infinities,
missing fields, unknown kinds and wrong types with a `MessageError` naming the field.
Timestamps are float epoch seconds (UTC): `ts_exchange` is IB's (or ibsim's) time where the
message has one, `ts_recv` the local time it was received.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import types
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# --------------------------------------------------------------------------------------------
# Vocabularies


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class LegKind(StrEnum):
    BUY_WRITE = "buy_write"  # one unit = long 100 TLT + short 1 call, sent as one BAG combo
    STOCK = "stock"  # TLTW shares


class SignalAction(StrEnum):
    NONE = "NONE"
    ENTER_LONG_SPREAD = "ENTER_LONG_SPREAD"  # buy TLTW, sell the buy-write
    ENTER_SHORT_SPREAD = "ENTER_SHORT_SPREAD"  # sell TLTW, buy the buy-write
    EXIT = "EXIT"
    STOP = "STOP"
    TIME_STOP = "TIME_STOP"


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
    state: str  # ACTIVE / REDUCING / HALTED
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

# --------------------------------------------------------------------------------------------
# Encoding. Each message type gets a compiled list of (field name, checker) once; a checker
# takes (kind, field, value) and returns the value in its canonical Python type or raises.

_MISSING = dataclasses.MISSING


def _check_float(kind: str, name: str, v: Any) -> float:
    if type(v) is float:
        if v - v != 0.0:  # NaN or +/-inf, cheaper than math.isfinite
            raise MessageError(kind, name, f"must be finite, got {v!r}")
        return v
    if type(v) is int:
        return float(v)
    raise MessageError(kind, name, f"must be a number, got {type(v).__name__} {v!r}")


def _check_int(kind: str, name: str, v: Any) -> int:
    if type(v) is int:
        return v
    raise MessageError(kind, name, f"must be an integer, got {type(v).__name__} {v!r}")


def _check_str(kind: str, name: str, v: Any) -> str:
    if type(v) is str:
        return v
    raise MessageError(kind, name, f"must be a string, got {type(v).__name__} {v!r}")


def _check_bool(kind: str, name: str, v: Any) -> bool:
    if type(v) is bool:
        return v
    raise MessageError(kind, name, f"must be true or false, got {type(v).__name__} {v!r}")


def _check_json_value(kind: str, name: str, v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        raise MessageError(kind, name, f"must be finite, got {v!r}")
    if isinstance(v, dict):
        for k, item in v.items():
            if not isinstance(k, str):
                raise MessageError(kind, f"{name}.{k}", "keys must be strings")
            _check_json_value(kind, f"{name}.{k}", item)
    elif isinstance(v, list | tuple):
        for i, item in enumerate(v):
            _check_json_value(kind, f"{name}[{i}]", item)
    elif v is not None and not isinstance(v, str | int | float | bool):
        raise MessageError(kind, name, f"is not JSON: {type(v).__name__}")
    return v


def _check_dict(kind: str, name: str, v: Any) -> dict:
    if not isinstance(v, dict):
        raise MessageError(kind, name, f"must be an object, got {type(v).__name__}")
    _check_json_value(kind, name, v)
    return v


def _enum_checker(enum: type[StrEnum]) -> Callable[[str, str, Any], Any]:
    values = {m.value: m for m in enum}

    def check(kind: str, name: str, v: Any) -> StrEnum:
        try:
            return values[v]
        except (KeyError, TypeError):
            raise MessageError(kind, name, f"must be one of {sorted(values)}, got {v!r}") from None

    return check


def _optional(inner: Callable[[str, str, Any], Any]) -> Callable[[str, str, Any], Any]:
    def check(kind: str, name: str, v: Any) -> Any:
        return None if v is None else inner(kind, name, v)

    return check


def _tuple_of(inner: Callable[[str, str, Any], Any]) -> Callable[[str, str, Any], Any]:
    def check(kind: str, name: str, v: Any) -> tuple:
        if not isinstance(v, list | tuple):
            raise MessageError(kind, name, f"must be a list, got {type(v).__name__}")
        return tuple(inner(kind, f"{name}[{i}]", item) for i, item in enumerate(v))

    return check


def _nested(cls: type[Message]) -> Callable[[str, str, Any], Any]:
    """Encoding: an instance becomes a validated dict. Decoding: a dict becomes an instance."""

    def check(kind: str, name: str, v: Any) -> Any:
        if isinstance(v, cls):
            return _to_dict(v, kind, f"{name}.")
        if not isinstance(v, dict):
            raise MessageError(kind, name, f"must be an object, got {type(v).__name__}")
        return _from_dict(cls, v, kind, f"{name}.")

    return check


def _checker_for(tp: Any) -> Callable[[str, str, Any], Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union {tp}")
        return _optional(_checker_for(args[0]))
    if origin is tuple:
        return _tuple_of(_checker_for(typing.get_args(tp)[0]))
    if origin is dict or tp is dict:
        return _check_dict
    if isinstance(tp, type) and issubclass(tp, StrEnum):
        return _enum_checker(tp)
    if isinstance(tp, type) and issubclass(tp, Message):
        return _nested(tp)
    simple = {float: _check_float, int: _check_int, str: _check_str, bool: _check_bool}
    if tp in simple:
        return simple[tp]
    raise TypeError(f"unsupported field type {tp}")


@dataclass(frozen=True, slots=True)
class _Spec:
    names: tuple[str, ...]
    checkers: tuple[Callable[[str, str, Any], Any], ...]
    required: frozenset[str]
    defaults: dict[str, Any]


_SPECS: dict[type, _Spec] = {}


def _spec(cls: type[Message]) -> _Spec:
    spec = _SPECS.get(cls)
    if spec is None:
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        defaults = {}
        for f in fields:
            if f.default is not _MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not _MISSING:
                defaults[f.name] = f.default_factory
        spec = _Spec(
            names=tuple(f.name for f in fields),
            checkers=tuple(_checker_for(hints[f.name]) for f in fields),
            required=frozenset(f.name for f in fields if f.name not in defaults),
            defaults=defaults,
        )
        _SPECS[cls] = spec
    return spec


def _to_dict(msg: Message, kind: str | None = None, prefix: str = "") -> dict[str, Any]:
    spec = _spec(type(msg))
    kind = kind or type(msg).KIND
    return {
        name: check(kind, prefix + name, getattr(msg, name))
        for name, check in zip(spec.names, spec.checkers, strict=True)
    }


def _from_dict(cls: type[M], data: dict[str, Any], kind: str | None = None, prefix: str = "") -> M:
    spec = _spec(cls)
    kind = kind or cls.KIND
    values = {}
    for name, check in zip(spec.names, spec.checkers, strict=True):
        if name in data:
            values[name] = check(kind, prefix + name, data[name])
        elif name in spec.required:
            raise MessageError(kind, prefix + name, "is missing")
        else:
            d = spec.defaults[name]
            values[name] = d() if callable(d) else d
    return cls(**values)


# Top-level encode/decode run per tick, so each message type gets a generated pair of functions
# with the checks of plain float/int/str/bool fields inlined (3x faster than the generic loop);
# other field types call their checker. The generic path above serves nested messages.

_INLINE = {
    float: ("if type({v}) is not float or {v} - {v} != 0.0: {v} = _check_float(K, {n!r}, {v})"),
    int: "if type({v}) is not int: _check_int(K, {n!r}, {v})",
    str: "if type({v}) is not str: _check_str(K, {n!r}, {v})",
    bool: "if type({v}) is not bool: _check_bool(K, {n!r}, {v})",
}


def _compile(cls: type[Message]) -> tuple[Callable, Callable]:
    spec = _spec(cls)
    hints = typing.get_type_hints(cls)
    env: dict[str, Any] = {
        "K": cls.KIND, "cls": cls, "MessageError": MessageError, "_check_float": _check_float,
        "_check_int": _check_int, "_check_str": _check_str, "_check_bool": _check_bool,
        "_defaults": spec.defaults,
    }  # fmt: skip
    enc = ["def encode(msg):"]
    dec = ["def decode(data):"]
    for i, name in enumerate(spec.names):
        v = f"v{i}"
        env[f"chk{i}"] = spec.checkers[i]
        inline = _INLINE.get(hints[name])
        check = inline.format(v=v, n=name) if inline else f"{v} = chk{i}(K, {name!r}, {v})"
        enc += [f"    {v} = msg.{name}", f"    {check}"]
        if name in spec.required:
            dec += [
                f"    try: {v} = data[{name!r}]",
                f"    except KeyError: raise MessageError(K, {name!r}, 'is missing') from None",
            ]
        else:
            d = spec.defaults[name]
            default = f"_defaults[{name!r}]()" if callable(d) else f"_defaults[{name!r}]"
            dec += [
                f"    {v} = data.get({name!r}, _MISSING_)",
                f"    if {v} is _MISSING_: {v} = {default}",
            ]
        dec += [f"    {check}"]
    env["_MISSING_"] = object()
    items = ", ".join(f"{n!r}: v{i}" for i, n in enumerate(spec.names))
    enc += [f"    return {{{items}, 'kind': K, 'v': {SCHEMA_VERSION}}}"]
    # Set the slots directly: a frozen dataclass's __init__ goes through object.__setattr__ per
    # field, which costs a microsecond on a 20-field option quote.
    dec += ["    o = _new(cls)"]
    for i, name in enumerate(spec.names):
        env[f"set{i}"] = cls.__dict__[name].__set__
        dec += [f"    set{i}(o, v{i})"]
    dec += ["    return o"]
    env["_new"] = object.__new__
    exec("\n".join(enc) + "\n" + "\n".join(dec), env)
    return env["encode"], env["decode"]


_CODECS: dict[type, tuple[Callable, Callable]] = {}


def _codec(cls: type[Message]) -> tuple[Callable, Callable]:
    codec = _CODECS.get(cls)
    if codec is None:
        codec = _CODECS[cls] = _compile(cls)
    return codec


def to_dict(msg: Message) -> dict[str, Any]:
    """The message as a validated plain dict (what the dashboard's JSON API returns)."""
    return _to_dict(msg)


def encode(msg: Message) -> bytes:
    """Validate and serialise a message to JSON bytes with its kind and schema version."""
    return orjson.dumps(_codec(type(msg))[0](msg))


def decode(raw: bytes | str, expect: type[M] | None = None) -> M:
    """Parse and validate JSON bytes into the message type named by its "kind"."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MessageError(expect.KIND if expect else "?", "(json)", f"malformed: {exc}") from None
    if type(data) is not dict:
        raise MessageError("?", "(json)", f"must be an object, got {type(data).__name__}")
    kind = data.get("kind")
    cls = MESSAGE_TYPES.get(kind) if type(kind) is str else None
    if cls is None:
        raise MessageError(str(kind), "kind", f"unknown message kind {kind!r}")
    if expect is not None and cls is not expect:
        raise MessageError(kind, "kind", f"expected {expect.KIND!r}")
    return _codec(cls)[1](data)


# --------------------------------------------------------------------------------------------
# Names: keys, channels, streams. Nothing outside this module writes a Redis name.


class Keys:
    """Latest-value keys (each holds one encoded message or a JSON state)."""

    @staticmethod
    def quote(symbol: str) -> str:
        return f"md:quote:{symbol}"

    @staticmethod
    def option(con_id: int) -> str:
        return f"md:option:{con_id}"

    OPTION_INDEX = "md:options"  # hash con_id -> encoded OptionQuote (every subscribed option)
    CHAIN = "md:chain"
    HEALTH = "md:health"  # hash symbol -> encoded DataHealth

    @staticmethod
    def nav(symbol: str) -> str:
        return f"md:nav:{symbol}"

    @staticmethod
    def dividends(symbol: str) -> str:
        return f"md:dividends:{symbol}"

    SPREAD_LATEST = "strategy:spread"
    STRATEGY_STATE = "strategy:state"  # JSON state of the incremental estimators and signal
    PENDING_INTENTS = "strategy:pending"  # hash intent_id -> encoded OrderIntent awaiting risk
    RISK_STATUS = "risk:status"
    RISK_STATE = "risk:state"  # JSON internal state of the risk gate
    POSITIONS = "book:positions"  # hash con_id -> encoded Position
    PNL = "book:pnl"
    OPEN_ORDERS = "book:open_orders"  # hash order_ref -> encoded OrderEvent
    INTENT_STATUS = "risk:intents"  # hash intent_id -> JSON {decision, order ids, status}
    HEARTBEAT_PREFIX = "hb:"

    @staticmethod
    def heartbeat(service: str) -> str:
        return f"hb:{service}"


class Channels:
    """Pub/sub channels: low-latency, fire-and-forget."""

    QUOTES = "ch:quotes"
    OPTIONS = "ch:options"
    NAV = "ch:nav"
    HEALTH = "ch:health"
    SPREAD = "ch:spread"
    SIGNALS = "ch:signals"
    BOOK = "ch:book"  # positions, P&L, order events, risk status as they change
    ALERTS = "ch:alerts"


class Streams:
    """Streams. Intents, order events, fills, commands and alerts must not be lost."""

    INTENTS = "st:intents"
    DECISIONS = "st:decisions"
    ORDER_EVENTS = "st:order_events"
    FILLS = "st:fills"
    COMMANDS = "st:commands"
    ALERTS = "st:alerts"
    SIGNALS = "st:signals"
    SPREAD = "st:spread"  # capped time series for plots

    @staticmethod
    def history(symbol: str) -> str:
        """Capped history of an instrument's quotes (or an option's, by con_id)."""
        return f"st:history:{symbol}"

    @staticmethod
    def nav_history(symbol: str) -> str:
        """Capped history of an ETF's NAV ticks (`EtfNav`), beside its quotes' history: with
        the quotes it is the tape a replay of what the live strategy saw needs."""
        return f"st:nav_history:{symbol}"

    @staticmethod
    def dividends_history(symbol: str) -> str:
        """Every distribution announcement (`Dividends`) data-ingestion published for symbol."""
        return f"st:dividends_history:{symbol}"

    @staticmethod
    def dead_letters(stream: str) -> str:
        """Where `Bus.read_group` moves a stream's malformed entries."""
        return f"{stream}:dead"


class Groups:
    RISK = "risk"  # risk-management reads INTENTS and COMMANDS
    MONITORING = "monitoring"


STREAM_MAXLEN = {
    Streams.INTENTS: 100_000,
    Streams.DECISIONS: 100_000,
    Streams.ORDER_EVENTS: 1_000_000,
    Streams.FILLS: 1_000_000,
    Streams.COMMANDS: 10_000,
    Streams.ALERTS: 100_000,
    Streams.SIGNALS: 100_000,
    Streams.SPREAD: 50_000,
}
"""Approximate caps (XADD MAXLEN ~). The audit streams are large; plots are short."""

# --------------------------------------------------------------------------------------------
# I/O

RETRYABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def backoff_delays(base_s: float = 0.05, cap_s: float = 10.0) -> Iterable[float]:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2^n))."""
    n = 0
    while True:
        yield random.uniform(0, min(cap_s, base_s * (2**n)))
        n = min(n + 1, 30)


async def retrying(
    op: Callable[[], Awaitable[Any]], what: str, cap_s: float = 10.0, attempts: int | None = None
) -> Any:
    """Run `op` until it succeeds, backing off on connection errors (forever unless `attempts`)."""
    for i, delay in enumerate(backoff_delays(cap_s=cap_s)):
        try:
            return await op()
        except RETRYABLE as exc:
            if attempts is not None and i + 1 >= attempts:
                raise
            log.warning("redis unavailable during %s: %s; retrying in %.2fs", what, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class StreamEntry(Generic[MT]):
    stream: str
    entry_id: str
    message: MT


class Bus:
    """Async helpers over one Redis connection pool. Every call survives a Redis restart.

    `publish`/`set_latest`/`append` retry with jittered exponential backoff until Redis is back,
    so a restart of Redis delays a service but loses no intent or fill that was being written.
    """

    def __init__(self, client: aioredis.Redis, service: str, max_backoff_s: float = 10.0):
        self.redis = client
        self.service = service
        self.max_backoff_s = max_backoff_s

    @classmethod
    async def connect(
        cls, url: str, service: str, max_backoff_s: float = 10.0, attempts: int | None = None
    ) -> Bus:
        client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=5,
            socket_keepalive=True,
            health_check_interval=15,
            decode_responses=False,
        )
        bus = cls(client, service, max_backoff_s)
        await retrying(client.ping, "connect", cap_s=max_backoff_s, attempts=attempts)
        return bus

    async def close(self) -> None:
        await self.redis.aclose()

    async def _retry(self, op: Callable[[], Awaitable[Any]], what: str) -> Any:
        return await retrying(op, what, cap_s=self.max_backoff_s)

    # latest values ----------------------------------------------------------------------------

    async def set_latest(self, key: str, msg: Message, ttl_s: float | None = None) -> None:
        data = encode(msg)
        px = int(ttl_s * 1000) if ttl_s else None
        await self._retry(lambda: self.redis.set(key, data, px=px), f"set {key}")

    async def get_latest(self, key: str, expect: type[M] | None = None) -> M | None:
        raw = await self._retry(lambda: self.redis.get(key), f"get {key}")
        return None if raw is None else decode(raw, expect)

    async def hset_latest(self, key: str, member: str, msg: Message) -> None:
        data = encode(msg)
        await self._retry(lambda: self.redis.hset(key, member, data), f"hset {key}")

    async def hget_all(self, key: str, expect: type[M] | None = None) -> dict[str, M]:
        raw = await self._retry(lambda: self.redis.hgetall(key), f"hgetall {key}")
        out = {}
        for member, value in raw.items():
            try:
                out[member.decode()] = decode(value, expect)
            except MessageError as exc:
                log.error("bad entry %s[%s] skipped: %s", key, member, exc)
        return out

    async def hdel(self, key: str, *members: str) -> None:
        if members:
            await self._retry(lambda: self.redis.hdel(key, *members), f"hdel {key}")

    async def set_state(self, key: str, state: dict[str, Any]) -> None:
        """Store a service's JSON state (NaN and infinities refused)."""
        _check_json_value("state", key, state)
        data = orjson.dumps(state)
        await self._retry(lambda: self.redis.set(key, data), f"set {key}")

    async def get_state(self, key: str) -> dict[str, Any] | None:
        raw = await self._retry(lambda: self.redis.get(key), f"get {key}")
        return None if raw is None else orjson.loads(raw)

    async def hset_state(self, key: str, member: str, state: dict[str, Any]) -> None:
        _check_json_value("state", key, state)
        data = orjson.dumps(state)
        await self._retry(lambda: self.redis.hset(key, member, data), f"hset {key}")

    async def hget_state(self, key: str, member: str) -> dict[str, Any] | None:
        raw = await self._retry(lambda: self.redis.hget(key, member), f"hget {key}")
        return None if raw is None else orjson.loads(raw)

    async def hget_all_states(self, key: str) -> dict[str, dict[str, Any]]:
        """Every member of a hash of JSON states (a member that is not JSON is skipped)."""
        raw = await self._retry(lambda: self.redis.hgetall(key), f"hgetall {key}")
        out = {}
        for member, value in raw.items():
            try:
                out[member.decode()] = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                log.error("bad state %s[%s] skipped: %s", key, member, exc)
        return out

    # pub/sub ----------------------------------------------------------------------------------

    async def publish(self, channel: str, msg: Message) -> None:
        data = encode(msg)
        await self._retry(lambda: self.redis.publish(channel, data), f"publish {channel}")

    async def subscribe(
        self, *channels: str, subscribed: asyncio.Event | None = None
    ) -> AsyncIterator[tuple[str, Message]]:
        """Yield (channel, message) forever; resubscribes after Redis restarts.

        A malformed message is logged and skipped (it never reaches the caller). Messages
        published while the connection was down are lost by design: read the latest keys.
        ``subscribed`` is set once the SUBSCRIBE has been written to its connection (a reader
        that must not miss what is published after it reads a stream's history subscribes
        first, then reads, then drops what it already has).
        """
        delays = iter(())
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                _raise_if_cancelling()
                if subscribed is not None:
                    subscribed.set()
                delays = iter(())
                async for item in pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    channel = item["channel"].decode()
                    try:
                        msg = decode(item["data"])
                    except MessageError as exc:
                        log.error("malformed message on %s skipped: %s", channel, exc)
                        continue
                    yield channel, msg
            except RETRYABLE as exc:
                delay = next(delays, None)
                if delay is None:
                    delays = iter(backoff_delays(cap_s=self.max_backoff_s))
                    delay = next(delays)
                log.warning("subscription to %s lost: %s; retrying in %.2fs", channels, exc, delay)
                await asyncio.sleep(delay)
            finally:
                with contextlib.suppress(Exception):  # closing a dead connection may fail any way
                    await pubsub.aclose()

    # batches ----------------------------------------------------------------------------------

    async def execute(self, batch: Batch, transaction: bool = False) -> None:
        """Send a batch of writes in one round trip (a pipeline, not a transaction), retrying
        the whole batch after a Redis restart: SET/HSET are idempotent; a retried PUBLISH or
        XADD may repeat, which readers of ticks and history tolerate. With `transaction` the
        batch runs as one MULTI/EXEC: a reader never sees part of it (a consistent snapshot,
        such as the book's positions with the P&L computed from them)."""
        if not batch.commands:
            return

        async def run() -> None:
            pipe = self.redis.pipeline(transaction=transaction)
            for command in batch.commands:
                pipe.execute_command(*command)
            await pipe.execute(raise_on_error=True)

        await self._retry(run, f"batch of {len(batch.commands)}")

    # streams ----------------------------------------------------------------------------------

    async def append(self, stream: str, msg: Message, maxlen: int | None = None) -> str:
        """XADD with an approximate cap; returns the entry id."""
        data = encode(msg)
        cap = maxlen if maxlen is not None else STREAM_MAXLEN.get(stream, 100_000)
        entry_id = await self._retry(
            lambda: self.redis.xadd(stream, {b"m": data}, maxlen=cap, approximate=True),
            f"xadd {stream}",
        )
        return entry_id.decode()

    async def read_range(
        self, stream: str, count: int, expect: type[M] | None = None, newest_first: bool = True
    ) -> list[StreamEntry[M]]:
        """The newest `count` entries of a stream (oldest first unless newest_first)."""
        raw = await self._retry(
            lambda: self.redis.xrevrange(stream, count=count), f"xrevrange {stream}"
        )
        entries = self._decode_entries(stream, raw, expect)
        return entries if newest_first else entries[::-1]

    async def read_after(
        self, stream: str, after_id: str = "0", count: int = 10_000, expect: type[M] | None = None
    ) -> list[StreamEntry[M]]:
        """Entries after `after_id` in order (no consumer group): for warm-up and replays."""
        low = "-" if after_id == "0" else f"({after_id}"
        raw = await self._retry(
            lambda: self.redis.xrange(stream, min=low, count=count), f"xrange {stream}"
        )
        return self._decode_entries(stream, raw, expect)

    def _decode_entries(self, stream: str, raw: list, expect: type[M] | None) -> list:
        out = []
        for entry_id, fields in raw:
            try:
                out.append(StreamEntry(stream, entry_id.decode(), decode(fields[b"m"], expect)))
            except (MessageError, KeyError) as exc:
                log.error("malformed entry %s %s skipped: %s", stream, entry_id, exc)
        return out

    async def ensure_group(self, stream: str, group: str, start_id: str = "0") -> None:
        async def create() -> None:
            try:
                await self.redis.xgroup_create(stream, group, id=start_id, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self._retry(create, f"xgroup create {stream}")

    async def read_group(
        self,
        stream: str,
        group: str,
        consumer: str,
        count: int = 100,
        block_ms: int = 1000,
        pending_first: bool = True,
        expect: type[M] | None = None,
    ) -> list[StreamEntry[M]]:
        """Read from a consumer group: first this consumer's unacknowledged entries (after a
        restart), then new ones. Call `ack` only after acting on an entry.

        A malformed entry is acknowledged and recorded in the dead-letter stream `<stream>:dead`
        so it cannot block the group; nothing is dropped without a trace.
        """
        return await self.read_groups(
            {stream: expect}, group, consumer, count, block_ms, pending_first
        )

    async def read_groups(
        self,
        streams: dict[str, type[Message] | None],
        group: str,
        consumer: str,
        count: int = 100,
        block_ms: int = 1000,
        pending_first: bool = True,
    ) -> list[StreamEntry]:
        """`read_group` over several streams in one XREADGROUP (``streams``: name -> expected
        message type), the entries in the order of ``streams``. One blocking read wakes on
        whichever stream gets an entry first: two blocking reads in turn would each sit out
        their timeout while the other stream's entry waits (and Redis ends a BLOCK only at its
        next cron tick, ~100 ms at the default hz)."""
        start = "0" if pending_first else ">"

        async def read() -> list:
            return await self.redis.xreadgroup(
                group,
                consumer,
                dict.fromkeys(streams, start),
                count=count,
                block=None if start == "0" else block_ms,
            )

        try:
            raw = await self._retry(read, f"xreadgroup {', '.join(streams)}")
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            for stream in streams:
                await self.ensure_group(stream, group)
            raw = await self._retry(read, f"xreadgroup {', '.join(streams)}")
        by_stream: dict[str, list[StreamEntry]] = {stream: [] for stream in streams}
        for name, entries in raw or []:
            stream = name.decode() if isinstance(name, bytes) else name
            expect = streams.get(stream)
            for entry_id, fields in entries:
                eid = entry_id.decode()
                if not fields:  # pending entry deleted by the stream cap
                    await self.ack(stream, group, eid)
                    continue
                try:
                    by_stream[stream].append(StreamEntry(stream, eid, decode(fields[b"m"], expect)))
                except (MessageError, KeyError) as exc:
                    log.error("malformed entry %s %s moved to dead letters: %s", stream, eid, exc)
                    raw_fields = {k: v for k, v in fields.items()}
                    raw_fields[b"error"] = str(exc).encode()
                    dead = Streams.dead_letters(stream)
                    await self._retry(
                        lambda rf=raw_fields, d=dead: self.redis.xadd(d, rf, maxlen=10_000),
                        "dead letter",
                    )
                    await self.ack(stream, group, eid)
        out = [entry for stream in streams for entry in by_stream[stream]]
        if pending_first and not out and not raw_has_entries(raw):
            return await self.read_groups(
                streams, group, consumer, count, block_ms, pending_first=False
            )
        return out

    async def ack(self, stream: str, group: str, *entry_ids: str) -> None:
        if entry_ids:
            await self._retry(lambda: self.redis.xack(stream, group, *entry_ids), f"xack {stream}")

    async def pending_count(self, stream: str, group: str) -> int:
        try:
            info = await self._retry(
                lambda: self.redis.xpending(stream, group), f"xpending {stream}"
            )
        except ResponseError:
            return 0
        return int(info["pending"])

    # heartbeats -------------------------------------------------------------------------------

    async def beat(self, hb: Heartbeat, ttl_s: float) -> None:
        await self.set_latest(Keys.heartbeat(hb.service), hb, ttl_s=ttl_s)

    async def heartbeats(self) -> dict[str, Heartbeat]:
        """Every live heartbeat; a service whose key expired is absent (silent)."""

        async def scan() -> list[bytes]:
            return [k async for k in self.redis.scan_iter(match=f"{Keys.HEARTBEAT_PREFIX}*")]

        keys = await self._retry(scan, "scan heartbeats")
        out = {}
        for key in keys:
            hb = await self.get_latest(key.decode(), Heartbeat)
            if hb is not None:
                out[hb.service] = hb
        return out


class Batch:
    """Writes queued for `Bus.execute`: the hot path of market data (thousands per second).

    Each method takes the bytes of `encode(msg)`, so a message published, stored and appended
    is validated and serialised once. Names come from `Keys`/`Channels`/`Streams` as elsewhere.
    """

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands: list[tuple] = []

    def __len__(self) -> int:
        return len(self.commands)

    def set_latest(self, key: str, data: bytes) -> None:
        self.commands.append(("SET", key, data))

    def hset_latest(self, key: str, member: str, data: bytes) -> None:
        self.commands.append(("HSET", key, member, data))

    def set_many(self, values: dict[str, bytes]) -> None:
        """Latest values of many keys in one command (MSET)."""
        if values:
            self.commands.append(("MSET", *(x for item in values.items() for x in item)))

    def hset_many(self, key: str, members: dict[str, bytes]) -> None:
        """Many members of one hash in one command (HSET key m1 v1 m2 v2 ...)."""
        if members:
            self.commands.append(("HSET", key, *(x for item in members.items() for x in item)))

    def hdel(self, key: str, *members: str) -> None:
        if members:
            self.commands.append(("HDEL", key, *members))

    def publish(self, channel: str, data: bytes) -> None:
        self.commands.append(("PUBLISH", channel, data))

    def append(self, stream: str, data: bytes, maxlen: int | None = None) -> None:
        """XADD with an approximate cap (the stream's STREAM_MAXLEN unless given)."""
        cap = maxlen if maxlen is not None else STREAM_MAXLEN.get(stream, 100_000)
        self.commands.append(("XADD", stream, "MAXLEN", "~", cap, "*", "m", data))


def _raise_if_cancelling() -> None:
    """redis-py (8.1) can swallow a cancellation that lands inside `PubSub.subscribe`; the task
    then stays "cancelling" and would wait for messages forever. Honour it here."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def raw_has_entries(raw: list | None) -> bool:
    return any(entries for _stream, entries in raw or [])


PUBSUB_BUFFER_LIMIT = "pubsub 256mb 64mb 60"
"""client-output-buffer-limit for pub/sub clients. Redis's default (32mb hard, 8mb for 60 s)
disconnects a slow subscriber in a burst of option ticks; 256mb/64mb rides out a burst while
still cutting off a subscriber that is truly stuck."""


async def configure_server(client: aioredis.Redis) -> None:
    """Apply the pub/sub buffer limit to a Redis we may configure (managed Redis may refuse)."""
    try:
        await client.config_set("client-output-buffer-limit", PUBSUB_BUFFER_LIMIT)
    except ResponseError as exc:
        log.warning("could not set client-output-buffer-limit (%s); set it in redis.conf", exc)

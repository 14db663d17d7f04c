"""The Redis bus, in four modules:

- `trading.bus.names`: every key, channel and stream name (nothing else spells a Redis name);
- `trading.bus.messages`: the typed, frozen messages and their vocabularies;
- `trading.bus.codec`: `encode`/`decode` (JSON with a kind tag; bad values raise `MessageError`);
- `trading.bus.client`: `Bus`, the async I/O over one Redis pool that survives a Redis restart.

Names, messages and the codec import without redis: the engines, the backtest and the tests of
pure code use them as values. The client's names (`Bus`, `Batch`, `StreamEntry`, ...) are
re-exported here too, but only loaded (with redis) when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trading.bus.codec import check_json_value, decode, encode, to_dict
from trading.bus.messages import (
    MESSAGE_TYPES,
    MT,
    SCHEMA_VERSION,
    SETTLED_TLTW_SHARES_AFTER,
    SETTLED_UNITS_AFTER,
    SETTLED_UNITS_BEFORE,
    Alert,
    ChainOption,
    Command,
    DataHealth,
    DataStatus,
    Dividends,
    EtfNav,
    Fill,
    Heartbeat,
    IntentLeg,
    IntentPurpose,
    LegKind,
    M,
    Message,
    MessageError,
    OperatorCommand,
    OptionChain,
    OptionQuote,
    OrderEvent,
    OrderIntent,
    PnL,
    Position,
    Quote,
    RiskDecision,
    RiskReason,
    RiskStatus,
    Severity,
    Side,
    Signal,
    SignalAction,
    SpreadPoint,
)
from trading.bus.names import STREAM_MAXLEN, Channels, Groups, Keys, Streams

if TYPE_CHECKING:
    from trading.bus.client import (
        PUBSUB_BUFFER_LIMIT,
        RETRYABLE,
        Batch,
        Bus,
        Sender,
        StreamEntry,
        backoff_delays,
        configure_server,
        raw_has_entries,
        retrying,
    )

_CLIENT = frozenset(
    {
        "PUBSUB_BUFFER_LIMIT",
        "RETRYABLE",
        "Batch",
        "Bus",
        "Sender",
        "StreamEntry",
        "backoff_delays",
        "configure_server",
        "raw_has_entries",
        "retrying",
    }
)


def __getattr__(name: str) -> Any:
    """The client's names, imported (with redis) on first use."""
    if name in _CLIENT:
        return getattr(importlib.import_module("trading.bus.client"), name)
    raise AttributeError(f"module 'trading.bus' has no attribute {name!r}")


__all__ = [
    "MESSAGE_TYPES",
    "MT",
    "PUBSUB_BUFFER_LIMIT",
    "RETRYABLE",
    "SCHEMA_VERSION",
    "SETTLED_TLTW_SHARES_AFTER",
    "SETTLED_UNITS_AFTER",
    "SETTLED_UNITS_BEFORE",
    "STREAM_MAXLEN",
    "Alert",
    "Batch",
    "Bus",
    "ChainOption",
    "Channels",
    "Command",
    "DataHealth",
    "DataStatus",
    "Dividends",
    "EtfNav",
    "Fill",
    "Groups",
    "Heartbeat",
    "IntentLeg",
    "IntentPurpose",
    "Keys",
    "LegKind",
    "M",
    "Message",
    "MessageError",
    "OperatorCommand",
    "OptionChain",
    "OptionQuote",
    "OrderEvent",
    "OrderIntent",
    "PnL",
    "Position",
    "Quote",
    "RiskDecision",
    "RiskReason",
    "RiskStatus",
    "Sender",
    "Severity",
    "Side",
    "Signal",
    "SignalAction",
    "SpreadPoint",
    "StreamEntry",
    "Streams",
    "backoff_delays",
    "check_json_value",
    "configure_server",
    "decode",
    "encode",
    "raw_has_entries",
    "retrying",
    "to_dict",
]

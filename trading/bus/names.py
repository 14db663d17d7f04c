"""Every Redis name: keys, channels, streams, consumer groups, stream caps.

Nothing outside this module spells a Redis name:

- latest values are keys (a restarted service reads them and carries on);
- live ticks are pub/sub (fire-and-forget; a subscriber that was down reads the latest keys);
- anything that must not be lost is a stream read through a consumer group, acknowledged after
  the reader has acted, and re-read from the pending list after a restart.
"""

from __future__ import annotations

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

    @staticmethod
    def strategy_window(name: str) -> str:
        """A list of an estimator window's values (float64 bytes), kept beside STRATEGY_STATE."""
        return f"strategy:window:{name}"

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
    HEALTH_HISTORY = "st:health"
    """Every change of `Keys.HEALTH` (`DataHealth`), written in the same transaction: its entry
    ids are the Redis time each flag became visible to a reader (audits, the fault suite)."""

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
    Streams.HEALTH_HISTORY: 100_000,
}
"""Approximate caps (XADD MAXLEN ~). The audit streams are large; plots are short."""

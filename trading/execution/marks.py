"""Marks: the latest validated prices, Greeks and data health the risk gate and the book use.

Pure. Fed with bus messages (`Quote`, `OptionQuote`, `DataHealth`, `SpreadPoint`, `Dividends`);
a quote that is crossed, non-positive or not finite raises ValueError naming the field and is not
stored, so the gate never prices an order off it (the previous good quote stays, and goes stale).

Conventions: prices per share in USD; option deltas per share (a call's delta in [0, 1]);
`vega_per_point` in USD per share per vol point (IB's convention). A buy-write unit is long
100 shares and short one call: its mark is 100 x S_mid - C_mid (IB's combo price) and its
delta is 100 x (1 - call delta) shares, its vega -100 x call vega per point in USD.
`ts_recv` is local wall time (for staleness), `ts_exchange` the exchange's time (market hours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from trading.bus import DataHealth, Dividends, OptionQuote, Quote, SpreadPoint
from trading.domain.market_hours import EXCHANGE_TIMEZONE

__all__ = ["BUY_WRITE_SHARES", "InstrumentMark", "Marks"]

BUY_WRITE_SHARES = 100


@dataclass(frozen=True, slots=True)
class InstrumentMark:
    con_id: int
    symbol: str
    bid: float
    ask: float
    ts_recv: float
    ts_exchange: float
    delta: float = 1.0  # per share; 1 for a stock
    vega_per_point: float = 0.0
    expiry: str = ""
    strike: float = 0.0

    @property
    def mid(self) -> float:
        return 0.5 * (self.bid + self.ask)


def _check_quote(kind: str, symbol: str, bid: float, ask: float, zero_bid: bool = False) -> None:
    """Finite positive prices, not crossed. ``zero_bid``: a far out-of-the-money option is
    legitimately bid at 0.00 (its ask must still be positive)."""
    for name, value in (("bid", bid), ("ask", ask)):
        floor_ok = zero_bid and name == "bid"
        if (
            not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
            or (value == 0 and not floor_ok)
        ):
            raise ValueError(f"{kind} {symbol}: {name} must be finite and > 0, got {value!r}")
    if bid > ask:
        raise ValueError(f"{kind} {symbol}: crossed quote, bid {bid!r} > ask {ask!r}")


@dataclass
class Marks:
    """Latest marks by conId, the data health by symbol, and the latest spread z-score."""

    by_con_id: dict[int, InstrumentMark] = field(default_factory=dict)
    con_id_by_symbol: dict[str, int] = field(default_factory=dict)
    health: dict[str, DataHealth] = field(default_factory=dict)
    spread: SpreadPoint | None = None
    dividends: dict[str, Dividends] = field(default_factory=dict)
    exchange_time: float = 0.0
    """The latest exchange timestamp seen: the clock for market-hours checks."""

    def exchange_date(self) -> date | None:
        """The exchange (New York) date of `exchange_time`; None before any exchange time."""
        if self.exchange_time <= 0:
            return None
        return datetime.fromtimestamp(self.exchange_time, UTC).astimezone(EXCHANGE_TIMEZONE).date()

    def update(self, msg: Quote | OptionQuote | DataHealth | SpreadPoint | Dividends) -> None:
        """Apply one bus message; raises ValueError (nothing stored) for a bad quote."""
        if isinstance(msg, Quote):
            _check_quote("quote", msg.symbol, msg.bid, msg.ask)
            self.by_con_id[msg.con_id] = InstrumentMark(
                msg.con_id, msg.symbol, msg.bid, msg.ask, msg.ts_recv, msg.ts_exchange
            )
            self.con_id_by_symbol[msg.symbol] = msg.con_id
            self.exchange_time = max(self.exchange_time, msg.ts_exchange)
        elif isinstance(msg, OptionQuote):
            _check_quote("option", msg.local_symbol, msg.bid, msg.ask, zero_bid=True)
            if not (math.isfinite(msg.delta) and -1.0 <= msg.delta <= 1.0):
                raise ValueError(
                    f"option {msg.local_symbol}: delta must be in [-1, 1], got {msg.delta!r}"
                )
            if not (math.isfinite(msg.vega_per_point) and msg.vega_per_point >= 0):
                raise ValueError(
                    f"option {msg.local_symbol}: vega_per_point must be >= 0, got "
                    f"{msg.vega_per_point!r}"
                )
            self.by_con_id[msg.con_id] = InstrumentMark(
                msg.con_id,
                msg.local_symbol,
                msg.bid,
                msg.ask,
                msg.ts_recv,
                msg.ts_exchange,
                delta=msg.delta,
                vega_per_point=msg.vega_per_point,
                expiry=msg.expiry,
                strike=msg.strike,
            )
            self.exchange_time = max(self.exchange_time, msg.ts_exchange)
        elif isinstance(msg, DataHealth):
            self.health[msg.symbol] = msg
        elif isinstance(msg, SpreadPoint):
            self.spread = msg
        elif isinstance(msg, Dividends):
            self.dividends[msg.symbol] = msg
        else:
            raise ValueError(f"marks: unexpected message kind {type(msg).__name__}")

    def get(self, con_id: int) -> InstrumentMark | None:
        return self.by_con_id.get(con_id)

    def mid(self, con_id: int) -> float | None:
        mark = self.by_con_id.get(con_id)
        return None if mark is None else mark.mid

    def buy_write_mid(self, stock_con_id: int, call_con_id: int) -> float | None:
        """Mid of one buy-write unit in IB's combo convention: 100 x S_mid - C_mid."""
        stock, call = self.by_con_id.get(stock_con_id), self.by_con_id.get(call_con_id)
        if stock is None or call is None:
            return None
        return BUY_WRITE_SHARES * stock.mid - call.mid

    def age_s(self, con_id: int, now: float) -> float | None:
        """Wall seconds since the instrument's last quote (None: never quoted)."""
        mark = self.by_con_id.get(con_id)
        return None if mark is None else now - mark.ts_recv

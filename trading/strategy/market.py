"""The strategy's view of the market: latest mids, the chain, distributions and data health.

Every update is O(1) and validates its input (a ValueError naming the field and value: the
service drops that one message, counts it and goes on). Nothing here reads a clock: freshness is
judged against the ``now_wall`` the caller passes, using the receive times (``ts_recv``) stamped
by data-ingestion; exchange times (``ts_exchange``) drive the bars.

Prices are mids: (bid + ask) / 2, per share (options per share too, IB's convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any, NamedTuple

from trading.bus import (
    ChainOption,
    DataHealth,
    DataStatus,
    Dividends,
    EtfNav,
    OptionChain,
    OptionQuote,
    Quote,
)
from trading.domain.pair import (
    DEFAULT_ETF,
    DEFAULT_ETF_CON_ID,
    DEFAULT_UNDERLYING,
    DEFAULT_UNDERLYING_CON_ID,
    PairSpec,
)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything the engine needs besides the strategy settings."""

    moneyness: float
    stale_after_s: float = 10.0
    pair_id: str = "TLTBW-TLTW"
    tlt_con_id: int = DEFAULT_UNDERLYING_CON_ID
    tltw_con_id: int = DEFAULT_ETF_CON_ID
    underlying: str = DEFAULT_UNDERLYING
    etf: str = DEFAULT_ETF

    @staticmethod
    def pair_values(pair: PairSpec) -> dict[str, Any]:
        """The fields this configuration takes from the pair traded (``from_settings`` passes
        `Settings.pair_spec`); ValueError when the pair lacks a contract id the intents need."""
        for name in ("underlying_con_id", "etf_con_id"):
            if getattr(pair, name) is None:
                raise ValueError(f"PairSpec.{name} is required by the strategy, got None")
        return {
            "moneyness": pair.moneyness,
            "pair_id": pair.pair_id,
            "tlt_con_id": pair.underlying_con_id,
            "tltw_con_id": pair.etf_con_id,
            "underlying": pair.underlying,
            "etf": pair.etf,
        }


class Mid(NamedTuple):
    """A checked top of book: mid = (bid + ask) / 2, with its exchange and receive times.

    Mid and OptionMid are named tuples, immutable like the frozen dataclasses they were and
    built in a third of the time: one is built per tick (19 in 20 are option ticks), and the
    frozen dataclass's field-by-field ``__init__`` was a quarter of a backtest replay."""

    bid: float
    ask: float
    mid: float
    ts_exchange: float
    ts_recv: float


class OptionMid(NamedTuple):
    """A checked option quote: bid, ask, mid and IB's model delta (per share, a call in
    [0, 1])."""

    con_id: int
    expiry: str
    strike: float
    mid: float
    delta: float
    ts_exchange: float
    ts_recv: float
    bid: float = 0.0
    ask: float = 0.0


@lru_cache(maxsize=4096)
def parse_yyyymmdd(field_name: str, text: str) -> date:
    """YYYYMMDD (IB's expiry and ex-date format) as a date, or ValueError naming the field.

    Cached: every option quote carries one of a handful of expiries, and re-parsing the same
    string was a third of the engine's time per option quote (errors are not cached)."""
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"{field_name} must be YYYYMMDD, got {text!r}")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise ValueError(f"{field_name} is not a calendar date: {text!r}") from None


def sound_quote(bid: float, ask: float, allow_zero_bid: bool = False) -> bool:
    """The rule `checked_mid` enforces, without the message: finite, positive (a zero bid if
    allowed) and not crossed."""
    return (bid > 0.0 or (allow_zero_bid and bid == 0.0)) and bid <= ask < math.inf and ask > 0.0


def checked_mid(kind: str, bid: float, ask: float, allow_zero_bid: bool = False) -> float:
    """(bid + ask) / 2 after checking the quote is finite, positive and not crossed."""
    if sound_quote(bid, ask, allow_zero_bid):
        return 0.5 * (bid + ask)
    if not math.isfinite(bid) or bid < 0 or (bid == 0 and not allow_zero_bid):
        raise ValueError(f"{kind}.bid must be finite and > 0, got {bid!r}")
    if not math.isfinite(ask) or ask <= 0:
        raise ValueError(f"{kind}.ask must be finite and > 0, got {ask!r}")
    if bid > ask:
        raise ValueError(f"{kind} is crossed: bid {bid!r} > ask {ask!r}")
    return 0.5 * (bid + ask)


class MarketState:
    """Latest checked prices of TLT, TLTW and the subscribed calls, plus chain and health.

    ``stock_symbols`` are the two stocks of the pair (TLT, TLTW); quotes of any other symbol
    are ignored (returns False).
    """

    __slots__ = (
        "chain",
        "distributions",
        "etf",
        "health",
        "nav",
        "options",
        "stocks",
        "underlying",
    )

    def __init__(self, underlying: str = DEFAULT_UNDERLYING, etf: str = DEFAULT_ETF) -> None:
        self.underlying = underlying
        self.etf = etf
        self.stocks: dict[str, Mid] = {}
        self.options: dict[int, OptionMid] = {}
        self.chain: OptionChain | None = None
        self.nav: float | None = None
        self.distributions: dict[str, dict[date, float]] = {}
        self.health: dict[str, DataHealth] = {}

    # updates ---------------------------------------------------------------------------------

    def on_quote(self, quote: Quote) -> bool:
        if quote.symbol not in (self.underlying, self.etf):
            return False
        mid = checked_mid(f"quote[{quote.symbol}]", quote.bid, quote.ask)
        self.stocks[quote.symbol] = Mid(quote.bid, quote.ask, mid, quote.ts_exchange, quote.ts_recv)
        return True

    def on_option(self, option: OptionQuote) -> bool:
        if option.symbol != self.underlying or option.right != "C":
            return False
        bid, ask, delta = option.bid, option.ask, option.delta
        # This runs for every tick of the chain (19 in 20 messages): the message naming the
        # contract is built only when a check fails.
        if not (sound_quote(bid, ask, allow_zero_bid=True) and 0.0 <= delta <= 1.0):
            kind = f"option[{option.con_id}]"
            checked_mid(kind, bid, ask, allow_zero_bid=True)
            raise ValueError(f"{kind}.delta must be in [0, 1] for a call, got {delta!r}")
        try:
            parse_yyyymmdd("option.expiry", option.expiry)  # cached: one parse per expiry
        except ValueError:
            parse_yyyymmdd(f"option[{option.con_id}].expiry", option.expiry)  # raises, named
        mid = 0.5 * (bid + ask)
        self.options[option.con_id] = OptionMid(
            option.con_id,
            option.expiry,
            option.strike,
            mid,
            option.delta,
            option.ts_exchange,
            option.ts_recv,
            bid,
            ask,
        )
        return True

    def on_chain(self, chain: OptionChain) -> bool:
        if chain.underlying != self.underlying:
            return False
        if not chain.expiries:
            raise ValueError("option_chain.expiries must not be empty")
        if not chain.strikes:
            raise ValueError("option_chain.strikes must not be empty")
        for expiry in chain.expiries:
            parse_yyyymmdd("option_chain.expiries", expiry)
        for strike in chain.strikes:
            if not (math.isfinite(strike) and strike > 0):
                raise ValueError(f"option_chain.strikes must be finite and > 0, got {strike!r}")
        self.chain = chain
        return True

    def on_nav(self, nav: EtfNav) -> bool:
        if nav.symbol != self.etf:
            return False
        if not (math.isfinite(nav.nav) and nav.nav > 0):
            raise ValueError(f"etf_nav.nav must be finite and > 0, got {nav.nav!r}")
        self.nav = nav.nav
        return True

    def on_dividends(self, dividends: Dividends) -> bool:
        """Remember the announced next distribution (an empty ex-date means none announced)."""
        if dividends.symbol not in (self.underlying, self.etf):
            return False
        if not dividends.next_ex_date:
            return True
        ex_date = parse_yyyymmdd("dividends.next_ex_date", dividends.next_ex_date)
        amount = dividends.next_amount
        if not (math.isfinite(amount) and amount >= 0):
            raise ValueError(f"dividends.next_amount must be finite and >= 0, got {amount!r}")
        # Kept per ex-date: IB may announce the next one before the bar of this one closes.
        known = self.distributions.setdefault(dividends.symbol, {})
        known[ex_date] = amount
        for old in sorted(known)[:-4]:
            del known[old]
        return True

    def distribution_between(self, symbol: str, after: date | None, through: date) -> float:
        """Sum per share of ``symbol``'s distributions going ex in (after, through]."""
        if after is None:
            return 0.0
        known = self.distributions.get(symbol, {})
        return sum(amount for ex_date, amount in known.items() if after < ex_date <= through)

    def on_health(self, health: DataHealth) -> None:
        self.health[health.symbol] = health

    # queries ---------------------------------------------------------------------------------

    def mid(self, symbol: str) -> float | None:
        quote = self.stocks.get(symbol)
        return None if quote is None else quote.mid

    def subscribed_strikes(self, expiry: str) -> tuple[float, ...]:
        """Sorted strikes of the subscribed calls of one expiry (YYYYMMDD)."""
        if self.chain is None:
            return ()
        return tuple(
            sorted(
                {o.strike for o in self.chain.subscribed if o.right == "C" and o.expiry == expiry}
            )
        )

    def find_call(self, expiry: str, strike: float) -> ChainOption | None:
        """The subscribed call of that expiry and strike, if data-ingestion subscribed it."""
        if self.chain is None:
            return None
        for option in self.chain.subscribed:
            if (
                option.right == "C"
                and option.expiry == expiry
                and abs(option.strike - strike) < 1e-6
            ):
                return option
        return None

    def problems(
        self, now_wall: float | None, stale_after_s: float, con_ids: tuple[int, ...] = ()
    ) -> list[str]:
        """Why the data may not be traded on now (empty when it may).

        Stale: a DataHealth that is not OK for TLT, TLTW or a call in ``con_ids`` (DELAYED counts:
        fifteen-minute-old prices are not a market), or, when ``now_wall`` is given, no quote of
        TLT or TLTW received for more than ``stale_after_s`` seconds.
        """
        out = []
        watched = (self.underlying, self.etf, *(str(c) for c in con_ids))
        for symbol in watched:
            health = self.health.get(symbol)
            if health is not None and health.status is not DataStatus.OK:
                out.append(f"{symbol} {health.status.value}: {health.reason}")
        for symbol in (self.underlying, self.etf):
            quote = self.stocks.get(symbol)
            if quote is None:
                out.append(f"no quote for {symbol}")
            elif now_wall is not None and now_wall - quote.ts_recv > stale_after_s:
                out.append(
                    f"{symbol} silent for {now_wall - quote.ts_recv:.1f}s (> {stale_after_s}s)"
                )
        return out

    def snapshot(self) -> dict[str, Any]:
        """Small summary for the heartbeat and logs."""
        return {
            "tlt_mid": self.mid(self.underlying),
            "tltw_mid": self.mid(self.etf),
            "options": len(self.options),
            "chain": self.chain is not None,
        }

"""Pure IB-to-bus translators with the data-quality gate: a ticker becomes a message or BadTick.

Input is the client library's `Ticker` (ib_async or ib_insync: only the attributes both share are
read) plus what the caller knows about the instrument; output is a validated bus message. Nothing
here does I/O or reads a clock: receive times are passed in.

Conventions (IB's): prices per share in USD; option Greeks per share, vega per vol point (0.01),
theta per calendar day; implied vol annualised as a fraction (0.16 = 16 %). IB's "not computed"
sentinels are -1 for implied vol / option price / underlying price and -2 for the Greeks; both
libraries map delta and gamma -2 to None but leave vega and theta at -2, so both are checked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np

from trading.bus import ChainOption, Dividends, EtfNav, OptionQuote, Quote
from trading.domain import black_scholes as bs
from trading.domain.market_hours import EXCHANGE_TIMEZONE
from trading.domain.options import EXPIRY_CLOSE_TIME
from trading.domain.pair import DEFAULT_UNDERLYING

NOT_COMPUTED_GREEK = -2.0
NOT_COMPUTED_VALUE = -1.0

NAV_LAST_TICK = 96
"""IB tick type "ETF NAV last" (generic tick 577); 92-99 are close, prior close, bid, ask, last,
frozen last, high, low. Both libraries keep them in `ticker.ticks`; only ib_async also sets
`ticker.etfNavLast`, so the tick list is what is read."""
NAV_TICK_TYPES = frozenset(range(92, 100))


class DropReason(StrEnum):
    """Why a tick was not published as good (a metric label: keep the vocabulary small)."""

    NAN_PRICE = "nan_price"  # a price is NaN/missing (bid or ask not yet seen, or sent as NaN)
    NON_POSITIVE_PRICE = "non_positive_price"  # <= 0, includes ib_async's -1 "empty" side
    NON_POSITIVE_SIZE = "non_positive_size"
    CROSSED = "crossed"  # bid > ask
    MISSING_GREEKS = "missing_greeks"  # no model computation, or a field None / NaN
    GREEKS_NOT_COMPUTED = "greeks_not_computed"  # IB's -2 (vega, theta) / -1 sentinels
    IMPLAUSIBLE_IV = "implausible_iv"  # implied vol <= 0 or above the configured ceiling
    IMPLAUSIBLE_GREEKS = "implausible_greeks"  # call delta outside [0, 1], gamma or vega < 0
    BAD_NAV = "bad_nav"
    BAD_DIVIDENDS = "bad_dividends"
    STALE = "stale"  # silent longer than the configured time


class BadTick(ValueError):
    """A tick that must not be published as good; `reason` is its DropReason."""

    def __init__(self, reason: DropReason, field: str, value: Any, instrument: str):
        self.reason = reason
        self.field = field
        self.value = value
        self.instrument = instrument
        super().__init__(f"{instrument}: {field}={value!r} rejected ({reason.value})")


def _price(value: Any, field: str, instrument: str) -> float:
    if value is None or not isinstance(value, int | float) or math.isnan(value):
        raise BadTick(DropReason.NAN_PRICE, field, value, instrument)
    if math.isinf(value) or value <= 0.0:
        raise BadTick(DropReason.NON_POSITIVE_PRICE, field, value, instrument)
    return float(value)


def _size(value: Any, field: str, instrument: str) -> float:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadTick(DropReason.NAN_PRICE, field, value, instrument)
    if value <= 0.0:
        raise BadTick(DropReason.NON_POSITIVE_SIZE, field, value, instrument)
    return float(value)


def _two_sided(
    ticker: Any, instrument: str, zero_bid: bool = False
) -> tuple[float, float, float, float]:
    """(bid, ask, bid_size, ask_size) of a valid, uncrossed top of book (locked is allowed).

    ``zero_bid``: an option far out of the money is bid at 0.00, often for no size; that is a
    real quote (worth ask/2 at mid), not a bad tick, and refusing it would leave a held call
    with no mark, so that nothing could close it."""
    ask = _price(ticker.ask, "ask", instrument)
    if zero_bid and ticker.bid == 0.0:
        bid, bid_size = 0.0, max(float(ticker.bidSize or 0.0), 0.0)
        if not math.isfinite(bid_size):
            raise BadTick(DropReason.NAN_PRICE, "bid_size", ticker.bidSize, instrument)
    else:
        bid = _price(ticker.bid, "bid", instrument)
        bid_size = _size(ticker.bidSize, "bid_size", instrument)
    if bid > ask:
        raise BadTick(DropReason.CROSSED, "bid", f"{bid} > ask {ask}", instrument)
    return bid, ask, bid_size, _size(ticker.askSize, "ask_size", instrument)


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def receive_time(ticker: Any, fallback: float) -> float:
    """Epoch seconds when the library read the ticker's last batch off the socket.

    ib_async stamps `ticker.timestamp` (time.time()); ib_insync only `ticker.time` (datetime);
    `fallback` (the caller's clock) is used when neither is set.
    """
    ts = getattr(ticker, "timestamp", None)
    if isinstance(ts, float) and ts > 0:
        return ts
    when = getattr(ticker, "time", None)
    if isinstance(when, datetime) and when.year > 1970:
        return when.timestamp()
    return fallback


def exchange_time(ticker: Any, ts_recv: float) -> float:
    """IB's time for the tick: tick type 45 (last timestamp, epoch seconds) where the library
    keeps it (ib_async's `lastTimestamp` / `delayedLastTimestamp`), else the receive time.
    ib_insync drops tick type 45, so with it this is always the receive time."""
    for name in ("lastTimestamp", "delayedLastTimestamp"):
        ts = _epoch(getattr(ticker, name, None))
        if ts is not None and ts > 0:
            return ts
    return ts_recv


class ExchangeClock:
    """The connection's exchange time: the newest last-timestamp tick (type 45) of any
    instrument, never going back.

    Tick 45 is an instrument's last *trade* time. TLT trades every second; an option may not
    have traded for hours, and TLTW for minutes. Stamping a quote with its own instrument's
    last trade would put a fresh option quote hours in the past (and a quote read in a later
    socket read than its step's tick 45, the previous second), so every quote of a batch is
    stamped with the newest trade time seen on the connection. Until a connection has shown a
    tick 45 (and for good with ib_insync, which drops it) the caller's `fallback` stands in:
    the gateway's own clock (`GatewayClock`), so quotes carry the gateway's time, not the
    time this machine read them (a simulator's market runs at another time). It starts again
    at each new connection (`reset`): a gateway's clock only goes back across a reconnect
    (another gateway, a simulator restarted at an earlier time)."""

    def __init__(self) -> None:
        self.now: float | None = None
        self.has_trade_times = False
        """True once the connection has shown a tick 45: the fallback is no longer used."""

    def reset(self) -> None:
        """Forget the clock (a new connection)."""
        self.now = None
        self.has_trade_times = False

    def update(self, tickers: Iterable[Any], fallback: float | None = None) -> float | None:
        """Advance to the newest tick 45 among ``tickers`` (to ``fallback`` while the connection
        has shown none); the clock after (None if unset)."""
        newest = None
        for ticker in tickers:
            for name in ("lastTimestamp", "delayedLastTimestamp"):
                ts = _epoch(getattr(ticker, name, None))
                if ts is not None and ts > 0 and (newest is None or ts > newest):
                    newest = ts
        if newest is not None:
            self.has_trade_times = True
        elif not self.has_trade_times:
            newest = fallback
        if newest is not None and (self.now is None or newest > self.now):
            self.now = newest
        return self.now


class GatewayClock:
    """The gateway's clock between samples of its current time (`reqCurrentTime`: whole epoch
    seconds), for stamping quotes whose ticks carry no exchange time.

        now(t) = s + rate x min(t - t_s, max_extrapolation_s), never going back

    where (t_s, s) is the newest sample (t_s: this machine's clock at the middle of the
    request's round trip) and `rate` is the gateway's seconds per local second: the lower
    median of the rates between consecutive samples (the last `window` pairs), 0 until there
    are `min_pairs` (the stamp is then the newest sample). A real gateway runs at 1.0; a
    simulator at its speed, jumping over nights and weekends: the median ignores the one pair
    that spans a jump, and the newest sample carries the jump itself. Extrapolation stops
    `max_extrapolation_s` after the newest sample, so a clock whose samples stopped (a
    dropped connection) stands still instead of running on.
    """

    def __init__(
        self, window: int = 9, min_pairs: int = 3, max_extrapolation_s: float = 5.0
    ) -> None:
        if not 1 <= min_pairs <= window:
            raise ValueError(f"min_pairs={min_pairs!r} must be in [1, window={window!r}]")
        if not (math.isfinite(max_extrapolation_s) and max_extrapolation_s >= 0):
            raise ValueError(f"max_extrapolation_s={max_extrapolation_s!r} must be >= 0")
        self.window = window
        self.min_pairs = min_pairs
        self.max_extrapolation_s = max_extrapolation_s
        self.reset()

    def reset(self) -> None:
        """Forget every sample (a new connection: maybe another gateway)."""
        self._sample: tuple[float, float] | None = None
        self._rates: list[float] = []
        self._last: float | None = None

    @property
    def rate(self) -> float:
        """Gateway seconds per local second (0 until `min_pairs` pairs of samples)."""
        if len(self._rates) < self.min_pairs:
            return 0.0
        return sorted(self._rates)[(len(self._rates) - 1) // 2]

    def observe(self, gateway_s: float, local_s: float) -> None:
        """A sample: the gateway said `gateway_s` (epoch s) at local time `local_s`."""
        if not (math.isfinite(gateway_s) and gateway_s > 0):
            raise ValueError(f"gateway_s={gateway_s!r} must be a positive epoch time")
        if not math.isfinite(local_s):
            raise ValueError(f"local_s={local_s!r} must be finite")
        if self._sample is not None:
            local_prev, gateway_prev = self._sample
            if local_s <= local_prev:
                return  # out of order (or the same moment): nothing to learn from it
            pair_rate = (gateway_s - gateway_prev) / (local_s - local_prev)
            if pair_rate >= 0:
                self._rates = [*self._rates, pair_rate][-self.window :]
        self._sample = (local_s, gateway_s)

    def now(self, local_s: float) -> float | None:
        """The gateway's time at local time `local_s` (None before the first sample)."""
        if self._sample is None:
            return None
        local_at, gateway_at = self._sample
        elapsed = min(max(local_s - local_at, 0.0), self.max_extrapolation_s)
        estimate = gateway_at + self.rate * elapsed
        if self._last is None or estimate > self._last:
            self._last = estimate
        return self._last


def _optional_last(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def quote_from_ticker(
    ticker: Any,
    symbol: str,
    con_id: int,
    ts_recv: float,
    delayed: bool = False,
    ts_exchange: float | None = None,
) -> Quote:
    """A stock/ETF top of book, or BadTick. `last` is kept only when finite and positive.
    ``ts_exchange`` (the connection's `ExchangeClock`) overrides the ticker's own stamp."""
    bid, ask, bid_size, ask_size = _two_sided(ticker, symbol)
    return Quote(
        symbol=symbol,
        con_id=con_id,
        bid=bid,
        ask=ask,
        bid_size=bid_size,
        ask_size=ask_size,
        last=_optional_last(ticker.last),
        ts_exchange=exchange_time(ticker, ts_recv) if ts_exchange is None else ts_exchange,
        ts_recv=ts_recv,
        delayed=delayed,
    )


def _greek(value: Any, field: str, instrument: str, sentinel: float) -> float:
    if value is None or not isinstance(value, int | float) or math.isnan(value):
        raise BadTick(DropReason.MISSING_GREEKS, field, value, instrument)
    if value == sentinel:
        raise BadTick(DropReason.GREEKS_NOT_COMPUTED, field, value, instrument)
    if math.isinf(value):
        raise BadTick(DropReason.MISSING_GREEKS, field, value, instrument)
    return float(value)


@dataclass(frozen=True, slots=True)
class ModelGreeks:
    """IB's model computation (tick type 13, or 83 delayed) after the sentinel checks."""

    implied_vol: float
    delta: float
    gamma: float
    vega_per_point: float
    theta_per_day: float
    model_price: float
    underlying_price: float


def model_greeks(
    computation: Any, right: str, instrument: str, max_implied_vol: float
) -> ModelGreeks:
    """Check IB's OptionComputation: every value present, none at a sentinel, plausible.

    Plausible: 0 < iv <= max_implied_vol; call delta in [0, 1] (put [-1, 0]); gamma >= 0;
    vega >= 0; option and underlying prices > 0. Theta may have either sign.
    """
    if computation is None:
        raise BadTick(DropReason.MISSING_GREEKS, "model_greeks", None, instrument)
    iv = _greek(computation.impliedVol, "implied_vol", instrument, NOT_COMPUTED_VALUE)
    if not 0.0 < iv <= max_implied_vol:
        raise BadTick(DropReason.IMPLAUSIBLE_IV, "implied_vol", iv, instrument)
    delta = _greek(computation.delta, "delta", instrument, NOT_COMPUTED_GREEK)
    gamma = _greek(computation.gamma, "gamma", instrument, NOT_COMPUTED_GREEK)
    vega = _greek(computation.vega, "vega", instrument, NOT_COMPUTED_GREEK)
    theta = _greek(computation.theta, "theta", instrument, NOT_COMPUTED_GREEK)
    model_price = _greek(computation.optPrice, "model_price", instrument, NOT_COMPUTED_VALUE)
    und = _greek(computation.undPrice, "underlying_price", instrument, NOT_COMPUTED_VALUE)
    low, high = (0.0, 1.0) if right == "C" else (-1.0, 0.0)
    if not low <= delta <= high:
        raise BadTick(DropReason.IMPLAUSIBLE_GREEKS, "delta", delta, instrument)
    if gamma < 0.0:
        raise BadTick(DropReason.IMPLAUSIBLE_GREEKS, "gamma", gamma, instrument)
    if vega < 0.0:
        raise BadTick(DropReason.IMPLAUSIBLE_GREEKS, "vega", vega, instrument)
    if model_price < 0.0:
        raise BadTick(DropReason.NON_POSITIVE_PRICE, "model_price", model_price, instrument)
    if und <= 0.0:
        raise BadTick(DropReason.NON_POSITIVE_PRICE, "underlying_price", und, instrument)
    return ModelGreeks(iv, delta, gamma, vega, theta, model_price, und)


def option_quote_from_ticker(
    ticker: Any,
    option: ChainOption,
    ts_recv: float,
    max_implied_vol: float,
    delayed: bool = False,
    underlying: str = DEFAULT_UNDERLYING,
    ts_exchange: float | None = None,
) -> OptionQuote:
    """An option's top of book with IB's model Greeks, or BadTick (``ts_exchange`` as in
    `quote_from_ticker`)."""
    name = option.local_symbol or str(option.con_id)
    bid, ask, bid_size, ask_size = _two_sided(ticker, name, zero_bid=True)
    greeks = model_greeks(ticker.modelGreeks, option.right, name, max_implied_vol)
    return OptionQuote(
        symbol=underlying,
        con_id=option.con_id,
        local_symbol=option.local_symbol,
        expiry=option.expiry,
        strike=option.strike,
        right=option.right,
        bid=bid,
        ask=ask,
        bid_size=bid_size,
        ask_size=ask_size,
        implied_vol=greeks.implied_vol,
        delta=greeks.delta,
        gamma=greeks.gamma,
        vega_per_point=greeks.vega_per_point,
        theta_per_day=greeks.theta_per_day,
        underlying_price=greeks.underlying_price,
        model_price=greeks.model_price,
        ts_exchange=exchange_time(ticker, ts_recv) if ts_exchange is None else ts_exchange,
        ts_recv=ts_recv,
        delayed=delayed,
    )


def nav_from_ticks(ticks: Any, symbol: str, ts_exchange: float, ts_recv: float) -> EtfNav | None:
    """The newest ETF NAV last (tick type 96) among this batch's ticks, None when there is none;
    BadTick when it is not a finite positive price."""
    value = None
    for tick in ticks or ():
        if tick.tickType == NAV_LAST_TICK:
            value = tick.price
    if value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0.0:
        raise BadTick(DropReason.BAD_NAV, "nav", value, symbol)
    return EtfNav(symbol=symbol, nav=float(value), ts_exchange=ts_exchange, ts_recv=ts_recv)


def dividends_from_ticker(ticker: Any, symbol: str, ts: float) -> Dividends | None:
    """IB's dividend tick (59, generic tick 456) as parsed by the client into
    ``ticker.dividends`` (past12Months, next12Months, nextDate, nextAmount); None when absent.
    BadTick when an amount is negative or not finite."""
    div = getattr(ticker, "dividends", None)
    if div is None:
        return None
    amounts = {}
    for name in ("past12Months", "next12Months", "nextAmount"):
        value = getattr(div, name, None)
        value = 0.0 if value is None else value
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0.0:
            raise BadTick(DropReason.BAD_DIVIDENDS, name, value, symbol)
        amounts[name] = float(value)
    next_date = getattr(div, "nextDate", None)
    return Dividends(
        symbol=symbol,
        past_12m=amounts["past12Months"],
        next_12m=amounts["next12Months"],
        next_ex_date=next_date.strftime("%Y%m%d") if next_date else "",
        next_amount=amounts["nextAmount"],
        ts=ts,
    )


def chain_option_from_contract(contract: Any) -> ChainOption:
    """A qualified IB option Contract as the bus's ChainOption (YYYYMMDD expiry, right C/P)."""
    expiry = str(contract.lastTradeDateOrContractMonth)[:8]
    right = {"CALL": "C", "PUT": "P"}.get(contract.right, contract.right)
    if not contract.conId or len(expiry) != 8 or not expiry.isdigit() or right not in ("C", "P"):
        raise ValueError(
            f"contract is not a qualified option: conId={contract.conId!r} "
            f"expiry={contract.lastTradeDateOrContractMonth!r} right={contract.right!r}"
        )
    strike = float(contract.strike)
    if not math.isfinite(strike) or strike <= 0:
        raise ValueError(f"contract strike={contract.strike!r} must be finite and > 0")
    return ChainOption(
        con_id=int(contract.conId),
        local_symbol=contract.localSymbol,
        expiry=expiry,
        strike=strike,
        right=right,
    )


# Historical bars (backfill) --------------------------------------------------------------------


def bar_end_time(bar_date: Any, bar_seconds: float) -> float:
    """Epoch seconds at the end of a bar: IB stamps a bar with its start; its close is the value
    at start + bar size. Accepts an aware datetime (intraday bars) or epoch seconds."""
    if isinstance(bar_date, datetime):
        if bar_date.tzinfo is None:
            raise ValueError(f"bar date={bar_date!r} must be timezone-aware")
        start = bar_date.timestamp()
    elif isinstance(bar_date, int | float) and math.isfinite(bar_date):
        start = float(bar_date)
    else:
        raise ValueError(f"bar date={bar_date!r} is neither a datetime nor epoch seconds")
    return start + bar_seconds


def quote_from_bar(
    symbol: str, con_id: int, close: float, ts_exchange: float, ts_recv: float
) -> Quote:
    """A backfilled quote from a MIDPOINT bar: bid = ask = the bar's closing mid, sizes 0 (a bar
    has no book). Raises BadTick for a close that is not a finite positive price."""
    mid = _price(close, "close", symbol)
    return Quote(
        symbol=symbol,
        con_id=con_id,
        bid=mid,
        ask=mid,
        bid_size=0.0,
        ask_size=0.0,
        last=None,
        ts_exchange=ts_exchange,
        ts_recv=ts_recv,
    )


def expiry_epoch(expiry: str) -> float:
    """Epoch seconds of 16:00 New York time on a YYYYMMDD expiry (when TLT options stop)."""
    day = datetime.strptime(expiry, "%Y%m%d").date()
    return datetime.combine(day, EXPIRY_CLOSE_TIME, tzinfo=EXCHANGE_TIMEZONE).timestamp()


def option_quotes_from_bars(
    option: ChainOption,
    option_mids: Sequence[float],
    underlying_mids: Sequence[float],
    end_times: Sequence[float],
    ts_recv: float,
    rate: float,
    div_yield: float,
    max_implied_vol: float,
    underlying: str = DEFAULT_UNDERLYING,
) -> tuple[list[OptionQuote], int]:
    """Backfilled option quotes from MIDPOINT bars of the option and of its underlying at the
    same bar ends: bid = ask = the option's mid, implied vol solved from it and Greeks from
    Black-Scholes-Merton (trading.domain.black_scholes) with the given continuous `rate` and
    `div_yield`, tau = calendar time to 16:00 ET on expiry in 365-day years. IB has no
    historical Greeks, so these are ours, not IB's. Returns (quotes, bars dropped) where a bar
    is dropped when its prices are not finite and positive or its vol does not solve or is
    implausible (> max_implied_vol)."""
    n = len(option_mids)
    if not len(underlying_mids) == len(end_times) == n:
        raise ValueError(
            f"bar arrays differ in length: option {n}, underlying {len(underlying_mids)}, "
            f"times {len(end_times)}"
        )
    if n == 0:
        return [], 0
    price = np.asarray(option_mids, dtype=np.float64)
    spot = np.asarray(underlying_mids, dtype=np.float64)
    ends = np.asarray(end_times, dtype=np.float64)
    usable = np.isfinite(price) & (price > 0) & np.isfinite(spot) & (spot > 0)
    tau = np.maximum(expiry_epoch(option.expiry) - ends, 0.0) / (bs.DAYS_PER_YEAR * 86_400.0)
    usable &= tau > 0
    safe_spot = np.where(usable, spot, 1.0)
    is_call = option.right == "C"
    solved = bs.implied_vol_vec(
        np.where(usable, price, 0.0), safe_spot, option.strike, np.where(usable, tau, 1.0),
        rate, div_yield, is_call,
    )  # fmt: skip
    vol = solved.vol
    usable &= solved.solved & (vol > 0) & (vol <= max_implied_vol)
    if not usable.any():
        return [], n
    g = bs.greeks_vec(
        safe_spot[usable], option.strike, tau[usable], rate, div_yield, vol[usable], is_call
    )
    quotes = []
    for j, i in enumerate(np.flatnonzero(usable)):
        mid = float(price[i])
        quotes.append(
            OptionQuote(
                symbol=underlying,
                con_id=option.con_id,
                local_symbol=option.local_symbol,
                expiry=option.expiry,
                strike=option.strike,
                right=option.right,
                bid=mid,
                ask=mid,
                bid_size=0.0,
                ask_size=0.0,
                implied_vol=float(vol[i]),
                delta=float(g["delta"][j]),
                gamma=float(g["gamma"][j]),
                vega_per_point=float(g["vega"][j]) / 100.0,
                theta_per_day=float(g["theta"][j]) / bs.DAYS_PER_YEAR,
                underlying_price=float(spot[i]),
                model_price=float(g["price"][j]),
                ts_exchange=float(ends[i]),
                ts_recv=ts_recv,
            )
        )
    return quotes, n - len(quotes)

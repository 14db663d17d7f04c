"""The backtest's ``ib`` source: IB historical bars (reqHistoricalData) as the bus messages
data-ingestion publishes, in time order.

What is requested (one-minute bars, regular hours, one session per request: ``1 D`` ending at
the session's close, IB's documented longest duration for 1-minute bars):

* TLT and TLTW: ``BID`` and ``ASK`` bars. A bar's close is the quote at the bar's end, so each
  minute gives a two-sided quote. (``BID_ASK`` bars are time averages of the bid and the ask,
  not a quote at an instant; ``TRADES``/``MIDPOINT`` have no spread to pay.)
* TLT calls: ``BID`` and ``ASK`` bars of the first ``expiries`` standard monthlies listed on
  each session, strikes from ``strike_low`` to ``strike_high`` x that session's opening mid.
  A call once requested stays requested while its expiry is one of the session's monthlies, so
  a call the strategy holds keeps its quotes after spot moves away (the risk gate refuses any
  order while something in the book is unquoted). Contracts come from reqContractDetails per
  expiry (``includeExpired``); IB keeps no bars of expired options for most accounts, so an
  expiry that qualifies to nothing (error 200), or a call whose bars come back as error 162 /
  366 or empty, is recorded as `MissingData` and skipped, never a crash.

How bars become messages (`tape_messages`), with the sim source's timing: each minute's
messages carry ``ts_exchange = ts_recv`` = the bar's end minus half a second.

* ``Quote``: bid = the BID bar's close, ask = the ASK bar's close, sizes 0 (a bar has no book).
* ``OptionQuote``: bid and ask likewise. IB has no historical Greeks: implied vol and Greeks
  come from the quote's mid and TLT's mid at the same minute through the live backfill's
  translator (`trading.broker.translate.option_quotes_from_bars`: Black-Scholes-Merton with
  ``ingestion.backfill_rate`` / ``backfill_div_yield``, tau to 16:00 New York on expiry in
  365-day years, vol refused above ``ingestion.max_implied_vol``).
* ``OptionChain``: one per session, one second before its first quote: the session's
  monthlies with quoted calls, their listed strikes, and the calls with bars that session.
* A minute missing a side, a crossed or non-positive quote, or an option whose vol does not
  solve is left out and counted in `TapeStats` (the tape has a hole there, as live would).

What IB does not give: TLTW's NAV (no historical NAV series) and distributions (no historical
dividend request). ``extra`` messages (``nav`` and ``dividend`` rows of the csv source's format,
`trading.backtest.csvfile`) are merged in by time; without them the replay has no NAV (the
delta hedge then counts TLTW's TLT shares from its price) and no distributions (TLTW's
total-return price misses its monthly payout on each ex-date).

Pacing: every request passes the broker's `PacingGate` (IB's rules for small bars: identical
request within 15 s, a burst in 2 s, 60 in 10 minutes). An error 162 pacing violation is
retried after ``pacing_backoff_s`` doubling per attempt, ``pacing_retries`` times.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from trading.broker.pacing import PacingGate, PacingRules
from trading.broker.translate import bar_end_time, option_quotes_from_bars
from trading.bus import ChainOption, Dividends, EtfNav, Message, OptionChain, OptionQuote, Quote
from trading.domain.market_hours import EXCHANGE_TIMEZONE, MarketCalendar, Session, market_calendar
from trading.domain.options import monthly_expiry
from trading.domain.pair import PairSpec

BAR_SIZE = "1 min"
BAR_SECONDS = 60.0
DURATION = "1 D"
SIDES = ("BID", "ASK")
DEFAULT_PAIR = PairSpec()
STAMP_BEFORE_BAR_END_S = 0.5
"""Messages are stamped half a second before the bar's end, as the sim source does: the
replayed strategy closes a bar when the next bar's first message arrives."""


class IBSourceError(ValueError):
    """The ib source cannot run (gateway unreachable, bad period, IB refusing every request)."""


@dataclass(frozen=True, slots=True)
class IBHistoryRequest:
    """What to fetch: sessions ``start``..``end`` (inclusive, New York dates), calls of the first
    ``expiries`` monthlies with strikes in [``strike_low``, ``strike_high``] x the opening mid."""

    start: date
    end: date
    expiries: int = 2
    strike_low: float = 0.97
    strike_high: float = 1.05
    timeout_s: float = 60.0
    pacing_retries: int = 4
    pacing_backoff_s: float = 30.0
    rules: PacingRules = field(default_factory=PacingRules)
    pair: PairSpec = DEFAULT_PAIR
    """The pair whose two stocks and underlying's calls are fetched."""

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise IBSourceError(f"end {self.end} is before start {self.start}")
        if not (isinstance(self.expiries, int) and 1 <= self.expiries <= 3):
            raise IBSourceError(f"expiries={self.expiries!r} must be 1, 2 or 3")
        low, high = self.strike_low, self.strike_high
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < 1 < high):
            raise IBSourceError(
                f"strike range {low!r}..{high!r} must satisfy 0 < low < 1 < high (x spot)"
            )
        for name in ("timeout_s", "pacing_backoff_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise IBSourceError(f"{name}={value!r} must be finite and > 0")
        if not (isinstance(self.pacing_retries, int) and self.pacing_retries >= 0):
            raise IBSourceError(f"pacing_retries={self.pacing_retries!r} must be an int >= 0")


@dataclass(frozen=True, slots=True)
class MissingData:
    """Bars IB did not give: ``code`` is IB's error code (None for an empty answer)."""

    instrument: str
    day: date | None
    what: str
    code: int | None
    message: str

    def __str__(self) -> str:
        when = self.day.isoformat() if self.day else "all sessions"
        code = f"error {self.code}" if self.code is not None else "no bars"
        return f"{self.instrument} {self.what} {when}: {code} {self.message}".rstrip()


BarKey = tuple[int, str, date]
"""(conId, BID or ASK, session date)."""


@dataclass(frozen=True, slots=True)
class HistoryTape:
    """The fetched bars: ``bars[(con_id, side, day)]`` is an (n, 2) array of (bar end epoch,
    close), ascending; ``session_options[day]`` the calls requested that session."""

    sessions: tuple[Session, ...]
    stock_con_ids: dict[str, int]
    options: dict[int, ChainOption]
    listed_strikes: dict[str, tuple[float, ...]]
    session_expiries: dict[date, tuple[str, ...]]
    session_options: dict[date, tuple[int, ...]]
    bars: dict[BarKey, np.ndarray]
    missing: tuple[MissingData, ...] = ()
    requests: int = 0
    pair: PairSpec = DEFAULT_PAIR
    """The pair fetched (its underlying prices the options' Greeks)."""


@dataclass(slots=True)
class TapeStats:
    """What `tape_messages` left out, by cause (none of it is traded on)."""

    one_sided_minutes: int = 0
    bad_quotes: int = 0
    option_minutes_without_underlying: int = 0
    option_vol_unsolved: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "one_sided_minutes": self.one_sided_minutes,
            "bad_quotes": self.bad_quotes,
            "option_minutes_without_underlying": self.option_minutes_without_underlying,
            "option_vol_unsolved": self.option_vol_unsolved,
        }


# Planning (pure) ----------------------------------------------------------------------------


def sessions_between(start: date, end: date, calendar: MarketCalendar) -> list[Session]:
    """The XNYS sessions from ``start`` to ``end`` inclusive (IBSourceError when none)."""
    try:
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        sessions = [s for s in (calendar.session(d) for d in days) if s is not None]
    except ValueError as exc:
        raise IBSourceError(f"period {start}..{end}: {exc}") from None
    if not sessions:
        raise IBSourceError(f"no trading session between {start} and {end}")
    return sessions


def front_monthlies(day: date, count: int, calendar: MarketCalendar) -> tuple[date, ...]:
    """The first ``count`` standard monthly expiries on or after ``day`` (holiday-adjusted)."""
    out: list[date] = []
    year, month = day.year, day.month
    while len(out) < count:
        expiry = monthly_expiry(year, month, calendar)
        if expiry >= day:
            out.append(expiry)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return tuple(out)


def plan_calls(
    opens: dict[date, float],
    expiries_by_day: dict[date, tuple[str, ...]],
    listed: dict[str, tuple[float, ...]],
    strike_low: float,
    strike_high: float,
) -> dict[date, tuple[tuple[str, float], ...]]:
    """The (expiry, strike) calls to request each session: listed strikes within
    [strike_low, strike_high] x the session's opening mid, plus every call of the same expiry
    already requested on an earlier session (sticky, so a held call keeps its quotes)."""
    wanted: dict[str, set[float]] = {}
    plan: dict[date, tuple[tuple[str, float], ...]] = {}
    for day in sorted(expiries_by_day):
        spot = opens.get(day)
        calls: list[tuple[str, float]] = []
        for expiry in expiries_by_day[day]:
            strikes = listed.get(expiry, ())
            chosen = wanted.setdefault(expiry, set())
            if spot is not None:
                chosen.update(k for k in strikes if strike_low * spot <= k <= strike_high * spot)
            calls.extend((expiry, k) for k in sorted(chosen))
        plan[day] = tuple(calls)
    return plan


# Bars to messages (pure) --------------------------------------------------------------------


def _closes(
    tape: HistoryTape, con_id: int, day: date
) -> tuple[dict[float, float], dict[float, float]]:
    """The bid and the ask closes of one instrument's session, by bar end."""
    bids, asks = (
        {float(t): float(c) for t, c in tape.bars.get((con_id, side, day), np.empty((0, 2)))}
        for side in SIDES
    )
    return bids, asks


def _stock_quotes(
    symbol: str, con_id: int, bids: dict[float, float], asks: dict[float, float], stats: TapeStats
) -> dict[float, Quote]:
    quotes: dict[float, Quote] = {}
    stats.one_sided_minutes += len(bids.keys() ^ asks.keys())
    for end in sorted(bids.keys() & asks.keys()):
        bid, ask = bids[end], asks[end]
        if not (math.isfinite(bid) and math.isfinite(ask) and 0 < bid <= ask):
            stats.bad_quotes += 1
            continue
        ts = end - STAMP_BEFORE_BAR_END_S
        quotes[end] = Quote(symbol, con_id, bid, ask, 0.0, 0.0, None, ts, ts)
    return quotes


def _option_quotes(
    option: ChainOption,
    bids: dict[float, float],
    asks: dict[float, float],
    spots: dict[float, float],
    rate: float,
    div_yield: float,
    max_implied_vol: float,
    stats: TapeStats,
) -> list[OptionQuote]:
    stats.one_sided_minutes += len(bids.keys() ^ asks.keys())
    ends: list[float] = []
    for end in sorted(bids.keys() & asks.keys()):
        bid, ask = bids[end], asks[end]
        # An option bid of 0 is a quote (far out of the money), as the live gate has it.
        if not (math.isfinite(bid) and math.isfinite(ask) and 0 <= bid <= ask and ask > 0):
            stats.bad_quotes += 1
        elif end not in spots:
            stats.option_minutes_without_underlying += 1
        else:
            ends.append(end)
    if not ends:
        return []
    mids = [(bids[e] + asks[e]) / 2 for e in ends]
    stamps = [e - STAMP_BEFORE_BAR_END_S for e in ends]
    quotes, unsolved = option_quotes_from_bars(
        option, mids, [spots[e] for e in ends], stamps, 0.0, rate, div_yield, max_implied_vol
    )
    stats.option_vol_unsolved += unsolved
    out = []
    for quote in quotes:
        end = quote.ts_exchange + STAMP_BEFORE_BAR_END_S
        out.append(replace(quote, bid=bids[end], ask=asks[end], ts_recv=quote.ts_exchange))
    return out


def _message_ts(message: Message) -> float:
    if isinstance(message, Quote | OptionQuote | EtfNav):
        return message.ts_exchange
    if isinstance(message, Dividends | OptionChain):
        return message.ts
    raise ValueError(f"message {type(message).__name__} has no timestamp the tape knows")


def tape_messages(
    tape: HistoryTape,
    rate: float,
    div_yield: float,
    max_implied_vol: float,
    extra: Iterable[Message] = (),
    stats: TapeStats | None = None,
) -> list[Message]:
    """The tape as time-ordered bus messages (see the module docstring); ``extra`` (NAV and
    distributions) merged in by time, before the quotes of the same instant."""
    stats = stats if stats is not None else TapeStats()
    keyed: list[tuple[float, int, int, Message]] = []
    sequence = 0

    def add(ts: float, rank: int, message: Message) -> None:
        nonlocal sequence
        keyed.append((ts, rank, sequence, message))
        sequence += 1

    for message in extra:
        add(_message_ts(message), 0, message)
    underlying_symbol = tape.pair.underlying
    tlt_id = tape.stock_con_ids[underlying_symbol]
    for session in tape.sessions:
        day = session.day
        stock_quotes = {
            symbol: _stock_quotes(symbol, con_id, *_closes(tape, con_id, day), stats)
            for symbol, con_id in tape.stock_con_ids.items()
        }
        underlying = stock_quotes.get(underlying_symbol, {})
        spots = {end: (q.bid + q.ask) / 2 for end, q in underlying.items()}
        for rank, symbol in enumerate(tape.pair.stocks, start=1):
            for quote in stock_quotes.get(symbol, {}).values():
                add(quote.ts_exchange, rank, quote)
        quoted: list[ChainOption] = []
        for con_id in tape.session_options.get(day, ()):
            option = tape.options[con_id]
            quotes = _option_quotes(
                option, *_closes(tape, con_id, day), spots, rate, div_yield, max_implied_vol, stats
            )
            if quotes:
                quoted.append(option)
            for option_quote in quotes:
                add(option_quote.ts_exchange, 3, option_quote)
        # Only expiries with quoted calls: the strategy picks its expiry from the chain, and one
        # IB had no bars of (expired) can never be held.
        expiries = tuple(
            e for e in tape.session_expiries.get(day, ()) if any(o.expiry == e for o in quoted)
        )
        strikes = sorted({k for e in expiries for k in tape.listed_strikes.get(e, ())})
        if quoted and underlying:
            first = min(underlying)
            open_quote = underlying[first]
            add(
                open_quote.ts_exchange - 1.0,
                0,
                OptionChain(
                    underlying=underlying_symbol,
                    underlying_con_id=tlt_id,
                    expiries=expiries,
                    strikes=tuple(strikes),
                    subscribed=tuple(sorted(quoted, key=lambda o: (o.expiry, o.strike))),
                    spot=(open_quote.bid + open_quote.ask) / 2,
                    ts=open_quote.ts_exchange - 1.0,
                ),
            )
    keyed.sort(key=lambda item: item[:3])
    return [message for *_, message in keyed]


def read_extra(path: Path, pair: PairSpec | None = None) -> list[Message]:
    """NAV and distribution rows (kinds ``nav``, ``dividend``) of ``pair`` (default: the csv
    format's, `trading.backtest.csvfile.DEFAULT_PAIR`) in a file in the csv source's format,
    validated by its reader; any other kind is refused (IBSourceError naming it)."""
    from trading.backtest.csvfile import read_messages
    from trading.domain.pair import DEFAULT_PAIR as CSV_PAIR

    messages = read_messages(path, CSV_PAIR if pair is None else pair)
    for message in messages:
        if not isinstance(message, EtfNav | Dividends):
            raise IBSourceError(
                f"{path}: only nav and dividend rows are merged into IB bars, found a "
                f"{message.KIND} row (quotes come from IB)"
            )
    return messages


# Fetching (I/O) -----------------------------------------------------------------------------


def _expiry_text(expiry: date) -> str:
    return expiry.strftime("%Y%m%d")


def _is_pacing_violation(code: int, message: str) -> bool:
    return code == 162 and "pacing violation" in message.lower()


def _is_warning(code: int) -> bool:
    return 2100 <= code <= 2199 or code in (10167,)


class HistoryFetcher:
    """Fetches a `HistoryTape` over a connected ``ib`` (ib_async or ib_insync ``IB``), one
    request at a time through ``gate``. ``on_request(done, planned)`` reports progress."""

    def __init__(
        self,
        ib: Any,
        request: IBHistoryRequest,
        gate: PacingGate | None = None,
        calendar: MarketCalendar | None = None,
        on_request: Callable[[int, int], None] | None = None,
    ) -> None:
        self.ib = ib
        self.request = request
        self.gate = gate or PacingGate(request.rules)
        self.calendar = calendar or market_calendar()
        self.on_request = on_request
        self.library = type(ib).__module__.split(".")[0]
        self.missing: list[MissingData] = []
        self.requests = 0
        self.planned = 0
        self.done = 0

    def _plan_more(self, count: int) -> None:
        self.planned += count
        if self.on_request is not None:
            self.on_request(self.done, self.planned)

    def _count_done(self) -> None:
        self.done += 1
        if self.on_request is not None:
            self.on_request(self.done, self.planned)

    async def fetch(self) -> HistoryTape:
        request = self.request
        sessions = sessions_between(request.start, request.end, self.calendar)
        gateway_now = await self.ib.reqCurrentTimeAsync()
        gateway_day = gateway_now.astimezone(EXCHANGE_TIMEZONE).date()
        if sessions[-1].close_utc > gateway_now:
            raise IBSourceError(
                f"end {request.end} is not a completed session: the gateway's time is "
                f"{gateway_now.astimezone(EXCHANGE_TIMEZONE):%Y-%m-%d %H:%M} New York"
            )
        stocks = await self._qualify_stocks()
        bars: dict[BarKey, np.ndarray] = {}
        self._plan_more(len(sessions) * len(stocks) * len(SIDES))
        for session in sessions:
            for symbol in request.pair.stocks:
                for side in SIDES:
                    found = await self._bars(stocks[symbol], symbol, session, side)
                    if found is not None:
                        bars[(stocks[symbol].conId, side, session.day)] = found
        tlt_id = stocks[request.pair.underlying].conId
        opens = {
            s.day: (bars[(tlt_id, "BID", s.day)][0, 1] + bars[(tlt_id, "ASK", s.day)][0, 1]) / 2
            for s in sessions
            if (tlt_id, "BID", s.day) in bars and (tlt_id, "ASK", s.day) in bars
        }
        expiries_by_day = {
            s.day: tuple(
                _expiry_text(e) for e in front_monthlies(s.day, request.expiries, self.calendar)
            )
            for s in sessions
        }
        contracts = await self._qualify_expiries(
            sorted({e for es in expiries_by_day.values() for e in es})
        )
        listed = {e: tuple(sorted(by_strike)) for e, by_strike in contracts.items()}
        expiries_by_day = {
            d: tuple(e for e in es if e in contracts) for d, es in expiries_by_day.items()
        }
        plan = plan_calls(opens, expiries_by_day, listed, request.strike_low, request.strike_high)
        self._plan_more(sum(len(calls) for calls in plan.values()) * len(SIDES))
        options: dict[int, ChainOption] = {}
        session_options: dict[date, tuple[int, ...]] = {}
        dead: set[int] = set()
        for session in sessions:
            requested: list[int] = []
            for expiry, strike in plan.get(session.day, ()):
                contract = contracts[expiry][strike]
                option = chain_option(contract)
                if option.con_id in dead:
                    self._count_done()
                    self._count_done()
                    continue
                options[option.con_id] = option
                got_any = False
                for side in SIDES:
                    found = await self._bars(contract, option.local_symbol, session, side)
                    if found is not None:
                        bars[(option.con_id, side, session.day)] = found
                        got_any = True
                if got_any:
                    requested.append(option.con_id)
                elif _date(option.expiry) < gateway_day:
                    # IB keeps no bars of an expired option: asking again each session only
                    # spends the pacing budget.
                    dead.add(option.con_id)
            session_options[session.day] = tuple(requested)
        return HistoryTape(
            sessions=tuple(sessions),
            stock_con_ids={s: stocks[s].conId for s in request.pair.stocks},
            options=options,
            listed_strikes=listed,
            session_expiries=expiries_by_day,
            session_options=session_options,
            bars=bars,
            missing=tuple(self.missing),
            requests=self.requests,
            pair=request.pair,
        )

    def _module(self) -> Any:
        import importlib

        return importlib.import_module(self.library)

    async def _qualify_stocks(self) -> dict[str, Any]:
        module = self._module()
        contracts = {s: module.Stock(s, "SMART", "USD") for s in self.request.pair.stocks}
        await self.ib.qualifyContractsAsync(*contracts.values())
        for symbol, contract in contracts.items():
            if not contract.conId:
                raise IBSourceError(f"IB did not qualify {symbol} (STK SMART USD)")
        return contracts

    async def _qualify_expiries(self, expiries: Sequence[str]) -> dict[str, dict[float, Any]]:
        """Every call of the underlying for each expiry by strike; an expiry IB lists no
        contracts for is recorded as missing (expired options are not served to most
        accounts)."""
        module = self._module()
        underlying = self.request.pair.underlying
        out: dict[str, dict[float, Any]] = {}
        for expiry in expiries:
            query = module.Option(underlying, expiry, 0.0, "C", "SMART", "100", "USD")
            query.includeExpired = True
            errors = self._collect_errors(query)
            try:
                details = await self.ib.reqContractDetailsAsync(query)
            finally:
                self.ib.errorEvent -= errors.handler
            found = {
                float(d.contract.strike): d.contract
                for d in details or []
                if d.contract.tradingClass in ("", underlying)
                and str(d.contract.lastTradeDateOrContractMonth).startswith(expiry)
            }
            if found:
                out[expiry] = found
            else:
                code, message = errors.first() or (None, "no contracts listed")
                self.missing.append(
                    MissingData(f"{underlying} {expiry} calls", None, "contracts", code, message)
                )
        return out

    def _collect_errors(self, contract: Any) -> _Errors:
        errors = _Errors(contract)
        self.ib.errorEvent += errors.handler
        return errors

    async def _bars(
        self, contract: Any, name: str, session: Session, side: str
    ) -> np.ndarray | None:
        """(bar end, close) of one session, or None (recorded in ``missing``); a pacing
        violation is retried after a doubling backoff."""
        request = self.request
        end = session.close_utc.astimezone(UTC)
        key = (contract.conId, end, DURATION, BAR_SIZE, side)
        for attempt in range(request.pacing_retries + 1):
            await self.gate.acquire(key)
            self.requests += 1
            errors = self._collect_errors(contract)
            try:
                found = await self.ib.reqHistoricalDataAsync(
                    contract, end, DURATION, BAR_SIZE, side, useRTH=True, formatDate=2,
                    keepUpToDate=False, timeout=request.timeout_s,
                )  # fmt: skip
            finally:
                self.ib.errorEvent -= errors.handler
            if not self.ib.isConnected():
                raise ConnectionError(f"the IB connection dropped while fetching {name} bars")
            error = errors.first()
            if error is not None and _is_pacing_violation(*error):
                if attempt < request.pacing_retries:
                    await asyncio.sleep(request.pacing_backoff_s * 2**attempt)
                    continue
                raise IBSourceError(
                    f"IB answered pacing violation {request.pacing_retries + 1} times for "
                    f"{name} {side} {session.day}: giving up"
                )
            self._count_done()
            rows = [
                (bar_end_time(_aware(b.date), BAR_SECONDS), float(b.close)) for b in found or []
            ]
            rows = [r for r in rows if r[0] <= end.timestamp() + 1e-6]
            if rows and error is None:
                return np.array(rows, dtype=np.float64)
            code, message = error if error is not None else (None, "empty answer")
            self.missing.append(MissingData(name, session.day, side, code, message))
            return None
        raise AssertionError("unreachable")


class _Errors:
    """IB errors for one contract while a request is pending (warnings ignored)."""

    def __init__(self, contract: Any) -> None:
        self.contract = contract
        self.seen: list[tuple[int, str]] = []

    def handler(self, req_id: int, code: int, message: str, contract: Any) -> None:
        if _is_warning(code):
            return
        # Requests go one at a time, so an error with our request's id space (>= 0) and no
        # contract attached (contract details) is ours; -1 notices are not about a request.
        if (contract is None and req_id >= 0) or (
            contract is not None and _same_contract(contract, self.contract)
        ):
            self.seen.append((code, message))

    def first(self) -> tuple[int, str] | None:
        return self.seen[0] if self.seen else None


def _same_contract(a: Any, b: Any) -> bool:
    if a.conId and b.conId:
        return a.conId == b.conId
    return (a.symbol, a.secType, a.lastTradeDateOrContractMonth) == (
        b.symbol,
        b.secType,
        b.lastTradeDateOrContractMonth,
    )


def chain_option(contract: Any) -> ChainOption:
    from trading.broker.translate import chain_option_from_contract

    return chain_option_from_contract(contract)


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _date(yyyymmdd: str) -> date:
    return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))


# Entry point ---------------------------------------------------------------------------------


def fetch_history(
    ib_settings: Any,
    client_id: int,
    request: IBHistoryRequest,
    progress: bool = False,
) -> HistoryTape:
    """Connect (read-only) with the broker layer's `IBConnection` to ``ib_settings`` host and
    port as ``client_id``, fetch the tape, disconnect. IBSourceError names the gateway when it
    cannot be reached or drops the connection."""
    from trading.broker.connection import CONNECTION_ERRORS, IBConnection

    where = f"{ib_settings.host}:{ib_settings.port}"

    async def run() -> HistoryTape:
        connection = IBConnection(ib_settings, client_id, "backtest", readonly=True)
        bar = None
        if progress:
            import sys

            from tqdm import tqdm

            bar = tqdm(total=0, unit="req", desc="IB bars", file=sys.stderr)

        def on_request(done: int, planned: int) -> None:
            if bar is not None:
                bar.total = planned
                bar.n = done
                bar.refresh()

        try:
            try:
                await connection.connect_once()
            except CONNECTION_ERRORS as exc:
                raise IBSourceError(
                    f"cannot reach the IB gateway at {where} as client {client_id} "
                    f"({type(exc).__name__}: {exc or 'no answer'}); check TRADING_IB__HOST/PORT "
                    "or --host/--port"
                ) from None
            fetcher = HistoryFetcher(connection.ib, request, on_request=on_request)
            try:
                return await fetcher.fetch()
            except CONNECTION_ERRORS as exc:
                raise IBSourceError(f"lost the IB gateway at {where}: {exc}") from None
        finally:
            if bar is not None:
                bar.close()
            connection.ib.disconnect()

    return asyncio.run(run())

"""The backtest's ``daily`` source: public daily data as the bus messages of one close a session.

What a user can download (no third-party data ships with this repository): daily closes of TLT
and TLTW, TLTW's NAV history and both funds' distributions from the issuer, and either their
own closing option quotes or a daily implied-vol series of TLT. One CSV file, a header, one
row per item (extra columns ignored, a blank cell is "not given"):

============ =================================================================================
date         the session, YYYY-MM-DD (an XNYS session: a weekend or holiday is refused)
kind         close | nav | distribution | iv | option
symbol       close, distribution: the pair's underlying or ETF; nav: its ETF; iv, option: its
             underlying
value        close: the closing price; nav: the ETF's NAV; distribution: USD per share going ex
             on ``date``; iv: the underlying's annual implied vol (a fraction, e.g. 0.16)
bid, ask     close (optional, both or neither): the closing quote; option: the call's closing
             bid and ask (required)
pay_date     distribution (optional): YYYY-MM-DD; blank: three sessions after the ex-date
expiry       option: YYYYMMDD
strike       option: USD
============ =================================================================================

The pair is a `trading.domain.pair.PairSpec` (`Settings.pair_spec`: TRADING_PAIR__*) that
knows both stocks' contract ids (the file has no con_id column); its two symbols are the only
ones accepted. The default pair (`trading.domain.pair.DEFAULT_PAIR`) is TLT against TLTW,
the symbols of every example in the docs, which read as they always have. Below, "TLT" is the
pair's underlying and "TLTW" its ETF.

Every session with a row needs both closes; its calls are its ``option`` rows, or, without
any, calls modelled from its ``iv`` row (a session with neither is refused). Bad input is
refused before anything replays, with a ValueError naming the row (1 = the first data row)
and the column: a missing column, a blank, non-numeric, NaN or infinite cell, a bad date, a
crossed or non-positive quote, a duplicate row.

How rows become messages, each session at its close (16:00 New York, 13:00 on a half day,
from the XNYS calendar): the chain one second before the close; TLT and TLTW quotes (the
closing bid/ask, else one cent wide around the close: close -/+ 0.005), TLTW's NAV and the
calls, all stamped at the close, so a daily bar (``strategy.bar_seconds`` >= 23,400) closes
on them and the risk gate takes its orders as the session's (market-on-close); each
distribution at the open of its ex-date's session, before that session's close.

Modelled calls (``iv`` rows): the first ``expiries`` standard monthlies (third Friday, the
Thursday before on a holiday) expiring after the session, strikes every whole dollar from
``strike_low`` to ``strike_high`` x TLT's close (TLT's listed grid near the money), priced
with Black-Scholes-Merton at the day's implied vol for every strike (no skew), ``rate`` and
``div_yield`` continuous, tau to 16:00 New York on expiry in 365-day years; bid/ask by ibsim's
rule (`trading.ibsim.market.option_bid_ask`: two cents wide plus a cent per dollar of value,
at most ten cents, around the model value, bid >= 0). Greeks of every call (modelled or quoted:
implied vol solved from the quoted mid) are Black-Scholes-Merton's.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from trading.backtest.csvfile import CsvError, cell_number, known_con_ids
from trading.bus import ChainOption, Dividends, EtfNav, Message, OptionChain, OptionQuote, Quote
from trading.domain import black_scholes as bs
from trading.domain.market_hours import EXCHANGE_TIMEZONE, MarketCalendar, market_calendar
from trading.domain.options import EXPIRY_CLOSE_TIME, monthly_expiry
from trading.domain.pair import DEFAULT_PAIR, PairSpec
from trading.ibsim.instruments import occ_symbol, option_con_id
from trading.ibsim.market import option_bid_ask

KINDS = ("close", "nav", "distribution", "iv", "option")
COLUMNS = ("date", "kind", "symbol", "value", "bid", "ask", "pay_date", "expiry", "strike")
HALF_TICK = 0.005
"""Without a closing quote, the close is quoted one cent wide: close -/+ half a cent."""
SECONDS_PER_YEAR = bs.DAYS_PER_YEAR * 86_400.0


@dataclass(frozen=True, slots=True)
class DailyModel:
    """How calls are modelled from an ``iv`` row, and which are listed (module docstring)."""

    rate: float = 0.04
    div_yield: float = 0.04
    expiries: int = 2
    strike_low: float = 0.85
    strike_high: float = 1.15

    def __post_init__(self) -> None:
        for name in ("rate", "div_yield"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        if not (isinstance(self.expiries, int) and self.expiries >= 1):
            raise ValueError(f"expiries must be an int >= 1, got {self.expiries!r}")
        if not (0 < self.strike_low < 1 < self.strike_high):
            raise ValueError(
                f"strike range must satisfy 0 < low < 1 < high, got "
                f"{self.strike_low!r}..{self.strike_high!r}"
            )


@dataclass
class _Session:
    day: date
    closes: dict[str, tuple[float, float]]
    nav: float | None = None
    iv: float | None = None
    calls: list[tuple[str, float, float, float]] | None = None  # expiry, strike, bid, ask


def _day(row: int, column: str, text: str | None) -> date:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        raise CsvError(row, column, f"must be YYYY-MM-DD, got {text!r}") from None


def _quote(row: int, cells: dict[str, str], bid_column: str = "bid") -> tuple[float, float]:
    bid = cell_number(row, bid_column, cells.get("bid"))
    ask = cell_number(row, "ask", cells.get("ask"), positive=True)
    if bid < 0:
        raise CsvError(row, "bid", f"must be >= 0, got {bid}")
    if bid > ask:
        raise CsvError(row, "bid", f"crossed quote: bid {bid} > ask {ask}")
    return bid, ask


def _distribution(
    n: int, cells: dict, day: date, symbol: str, pair: PairSpec
) -> tuple[float, date | None]:
    if symbol not in pair.stocks:
        raise CsvError(n, "symbol", f"distributions are {_either(pair)}, got {symbol!r}")
    amount = cell_number(n, "value", cells.get("value"), positive=True)
    paid = (cells.get("pay_date") or "").strip()
    pay_date = _day(n, "pay_date", paid) if paid else None
    if pay_date is not None and pay_date < day:
        raise CsvError(n, "pay_date", f"{pay_date} is before the ex-date {day}")
    return amount, pay_date


def _either(pair: PairSpec) -> str:
    return f"{pair.underlying} or {pair.etf}"


def _close_row(n: int, cells: dict, symbol: str, pair: PairSpec, session: _Session) -> None:
    if symbol not in pair.stocks:
        raise CsvError(n, "symbol", f"closes are {_either(pair)}, got {symbol!r}")
    close = cell_number(n, "value", cells.get("value"), positive=True)
    given = [(cells.get(c) or "").strip() for c in ("bid", "ask")]
    if any(given) and not all(given):
        raise CsvError(n, "bid" if not given[0] else "ask", "give both or neither")
    if all(given):
        session.closes[symbol] = _quote(n, cells)
    else:
        session.closes[symbol] = (close - HALF_TICK, close + HALF_TICK)


def _nav_row(n: int, cells: dict, symbol: str, pair: PairSpec, session: _Session) -> None:
    if symbol != pair.etf:
        raise CsvError(n, "symbol", f"nav rows are {pair.etf}, got {symbol!r}")
    session.nav = cell_number(n, "value", cells.get("value"), positive=True)


def _iv_row(n: int, cells: dict, symbol: str, pair: PairSpec, session: _Session) -> None:
    if symbol != pair.underlying:
        raise CsvError(n, "symbol", f"iv rows are {pair.underlying}, got {symbol!r}")
    session.iv = cell_number(n, "value", cells.get("value"), positive=True)


def _option_row(n: int, cells: dict, symbol: str, pair: PairSpec, session: _Session) -> None:
    day = session.day
    if symbol != pair.underlying:
        raise CsvError(n, "symbol", f"option rows are {pair.underlying} calls, got {symbol!r}")
    expiry = (cells.get("expiry") or "").strip()
    try:
        expiry_day = datetime.strptime(expiry, "%Y%m%d").date()
    except ValueError:
        raise CsvError(n, "expiry", f"must be YYYYMMDD, got {expiry!r}") from None
    if expiry_day <= day:
        raise CsvError(n, "expiry", f"{expiry} has expired by {day}")
    strike = cell_number(n, "strike", cells.get("strike"), positive=True)
    bid, ask = _quote(n, cells)
    if session.calls is None:
        session.calls = []
    session.calls.append((expiry, strike, bid, ask))


_ROWS = {"close": _close_row, "nav": _nav_row, "iv": _iv_row, "option": _option_row}
"""The session rows' readers by kind (a distribution row is the file's, not a session's)."""


def read_daily(
    lines: Iterable[str], calendar: MarketCalendar | None = None, pair: PairSpec = DEFAULT_PAIR
) -> tuple[list[_Session], dict[str, dict[date, tuple[float, date | None]]]]:
    """The sessions and the distributions (symbol -> ex-date -> (amount, pay date)) of a daily
    CSV of ``pair``, every row checked (see the module docstring)."""
    calendar = calendar or market_calendar()
    reader = csv.DictReader(lines)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    for column in ("date", "kind", "symbol", "value"):
        if column not in header:
            raise CsvError(0, column, f"missing from the header {header}")
    sessions: dict[date, _Session] = {}
    distributions: dict[str, dict[date, tuple[float, date | None]]] = {}
    seen: set[tuple] = set()
    for n, cells in enumerate(reader, start=1):
        day = _day(n, "date", cells.get("date"))
        if not calendar.is_session(day):
            raise CsvError(n, "date", f"{day.isoformat()} is not an XNYS session")
        kind = (cells.get("kind") or "").strip()
        symbol = (cells.get("symbol") or "").strip()
        if kind not in KINDS:
            raise CsvError(n, "kind", f"must be one of {KINDS}, got {kind!r}")
        key = (day, kind, symbol, (cells.get("expiry") or "").strip(), cells.get("strike"))
        if key in seen:
            raise CsvError(n, "date", f"duplicate {kind} row for {symbol} on {day}")
        seen.add(key)
        if kind == "distribution":
            distributions.setdefault(symbol, {})[day] = _distribution(n, cells, day, symbol, pair)
            continue
        _ROWS[kind](n, cells, symbol, pair, sessions.setdefault(day, _Session(day, {})))
    ordered = [sessions[d] for d in sorted(sessions)]
    for session in ordered:
        missing = [s for s in pair.stocks if s not in session.closes]
        if missing:
            raise ValueError(f"session {session.day}: no close row for {', '.join(missing)}")
        if session.calls is None and session.iv is None:
            raise ValueError(f"session {session.day}: neither option rows nor an iv row")
    return ordered, distributions


def daily_messages(
    path: Path,
    model: DailyModel = DailyModel(),
    calendar: MarketCalendar | None = None,
    pair: PairSpec = DEFAULT_PAIR,
) -> list[Message]:
    """Every session of the file as bus messages of ``pair`` in time order (module docstring);
    the whole file is checked before anything is returned. ValueError when the pair lacks a
    stock's contract id."""
    con_ids = known_con_ids(pair, "the daily source")
    calendar = calendar or market_calendar()
    with open(path, newline="") as handle:
        sessions, distributions = read_daily(handle, calendar, pair)
    out: list[tuple[float, int, Message]] = []
    for symbol, by_day in distributions.items():
        for ex_date, (amount, pay_date) in by_day.items():
            opened = calendar.session(ex_date)
            assert opened is not None  # checked in read_daily
            out.append(
                (
                    opened.open_utc.timestamp(),
                    0,
                    Dividends(
                        symbol, 0.0, 12 * amount, ex_date.strftime("%Y%m%d"), amount,
                        opened.open_utc.timestamp(),
                        pay_date.strftime("%Y%m%d") if pay_date else "",
                    ),
                )
            )  # fmt: skip
    for session in sessions:
        messages = _session_messages(session, model, calendar, pair, con_ids)
        out.extend((ts, 1, m) for ts, m in messages)
    out.sort(key=lambda item: (item[0], item[1]))
    return [m for _, _, m in out]


def _session_messages(
    session: _Session,
    model: DailyModel,
    calendar: MarketCalendar,
    pair: PairSpec,
    con_ids: dict[str, int],
) -> Iterator[tuple[float, Message]]:
    opened = calendar.session(session.day)
    assert opened is not None
    close = opened.close_utc.timestamp()
    under = pair.underlying
    spot_bid, spot_ask = session.closes[under]
    spot = 0.5 * (spot_bid + spot_ask)
    calls = session.calls if session.calls is not None else _modelled(session, spot, model)
    chain = tuple(
        ChainOption(option_con_id(_yyyymmdd(e), k, "C"), occ_symbol(under, e, "C", k), e, k, "C")
        for e, k, _, _ in calls
    )
    yield close - 1.0, OptionChain(
        under, con_ids[under], tuple(sorted({e for e, _, _, _ in calls})),
        tuple(sorted({k for _, k, _, _ in calls})), chain, spot, close - 1.0,
    )  # fmt: skip
    for symbol, (bid, ask) in session.closes.items():
        yield (
            close,
            Quote(symbol, con_ids[symbol], bid, ask, 100.0, 100.0, None, close, close),
        )
    if session.nav is not None:
        yield close, EtfNav(pair.etf, session.nav, close, close)
    for option, call in zip(chain, calls, strict=True):
        quote = _option_quote(option, under, call, spot, close, session.iv, model)
        if quote is not None:
            yield close, quote


def _yyyymmdd(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def _tau_years(expiry: str, now: float) -> float:
    end = datetime.combine(
        _yyyymmdd(expiry), EXPIRY_CLOSE_TIME, tzinfo=EXCHANGE_TIMEZONE
    ).timestamp()
    return max(end - now, 0.0) / SECONDS_PER_YEAR


def _modelled(
    session: _Session, spot: float, model: DailyModel
) -> list[tuple[str, float, float, float]]:
    """The listed calls of the session priced at its iv (module docstring)."""
    assert session.iv is not None
    expiries: list[date] = []
    year, month = session.day.year, session.day.month
    while len(expiries) < model.expiries:
        expiry = monthly_expiry(year, month)
        if expiry > session.day:
            expiries.append(expiry)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    low, high = math.ceil(spot * model.strike_low), math.floor(spot * model.strike_high)
    close = market_calendar().session(session.day)
    assert close is not None
    now = close.close_utc.timestamp()
    out = []
    for expiry in expiries:
        text = expiry.strftime("%Y%m%d")
        tau = _tau_years(text, now)
        for strike in range(max(low, 1), high + 1):
            value = bs.price(spot, strike, tau, model.rate, model.div_yield, session.iv, "C")
            bid, ask = option_bid_ask(value)
            out.append((text, float(strike), float(bid), float(ask)))
    return out


def _option_quote(
    option: ChainOption,
    underlying: str,
    call: tuple[str, float, float, float],
    spot: float,
    now: float,
    iv: float | None,
    model: DailyModel,
) -> OptionQuote | None:
    """A call's quote with Black-Scholes-Merton Greeks: at ``iv`` when modelled, else at the
    vol solved from its mid (None when it does not solve: the call is left out). ``call`` is
    (expiry, strike, bid, ask)."""
    expiry, strike, bid, ask = call
    tau = _tau_years(expiry, now)
    if tau <= 0:
        return None
    mid = 0.5 * (bid + ask)
    vol = iv
    if vol is None:
        try:
            vol = bs.implied_vol(mid, spot, strike, tau, model.rate, model.div_yield, "C")
        except ValueError:
            return None
    g = bs.greeks(spot, strike, tau, model.rate, model.div_yield, vol, "C")
    return OptionQuote(
        symbol=underlying,
        con_id=option.con_id,
        local_symbol=option.local_symbol,
        expiry=expiry,
        strike=strike,
        right="C",
        bid=bid,
        ask=ask,
        bid_size=10.0,
        ask_size=10.0,
        implied_vol=vol,
        delta=g.delta,
        gamma=g.gamma,
        vega_per_point=g.vega_per_vol_point,
        theta_per_day=g.theta_per_day,
        underlying_price=spot,
        model_price=g.price,
        ts_exchange=now,
        ts_recv=now,
    )


def write_daily(rows: Iterable[dict[str, object]], path: Path) -> int:
    """Write rows (dicts keyed by `COLUMNS`, missing keys blank) in this format; returns the
    number of rows (for tools that build a file from downloads, and for the tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in COLUMNS})
            count += 1
    return count

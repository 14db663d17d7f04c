"""The backtest's CSV format: one row per quote, in time order (a tick or bar-close tape).

Columns (header required; extra columns are ignored; a blank cell is "not given"):

=============== ==========================================================================
timestamp       ISO 8601 with a UTC offset (2026-09-01T09:31:00-04:00) or epoch seconds
kind            stock | option | nav | dividend
symbol          the pair's underlying or ETF (stock, dividend), its ETF (nav), its
                underlying (option rows: calls on it)
bid, ask        stock and option rows: the top of book (0 < bid <= ask; an option bid may
                be 0)
expiry          option rows: YYYYMMDD
strike          option rows: the strike (USD)
right           option rows: C
implied_vol     option rows: annual implied volatility (a fraction)
delta, gamma    option rows: per share (IB's convention)
vega_per_point  option rows: USD per share per vol point
theta_per_day   option rows: USD per share per calendar day
value           nav rows: the ETF's NAV per share; dividend rows: USD per share going ex at
                the timestamp's (New York) date
pay_date        dividend rows, optional: YYYYMMDD (blank: three sessions after the ex-date)
con_id          optional: IB conId (stocks default to the pair's ids, options to ibsim's; a
                stock row of a pair without its id must give it)
=============== ==========================================================================

The pair is a `trading.domain.pair.PairSpec` (`Settings.pair_spec`: TRADING_PAIR__*): its two
symbols are the only ones accepted. The default pair (`DEFAULT_PAIR`) is TLT against TLTW
with IB's contract ids of both, so every file written in this format for it, and every
example in the docs (symbols TLT and TLTW), reads as it always has.

Rules, each refused with a ValueError naming the row (1 = the first data row; the header is
row 0) and the column: a required column missing from the header; a required cell blank or not
a number, or NaN/infinite; a crossed or non-positive quote; timestamps going backwards; two rows
for the same instrument and kind at the same timestamp (duplicates).

The option chain of each session (New York date) is the set of calls quoted that day, published
before the session's first row, as data-ingestion does at the open.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from trading.bus import ChainOption, Dividends, EtfNav, Message, OptionChain, OptionQuote, Quote
from trading.domain.market_hours import EXCHANGE_TIMEZONE
from trading.domain.pair import DEFAULT_PAIR, PairSpec
from trading.ibsim.instruments import occ_symbol, option_con_id

KINDS = ("stock", "option", "nav", "dividend")
BASE_COLUMNS = ("timestamp", "kind", "symbol")
OPTION_COLUMNS = (
    "bid",
    "ask",
    "expiry",
    "strike",
    "right",
    "implied_vol",
    "delta",
    "gamma",
    "vega_per_point",
    "theta_per_day",
)
COLUMNS = (*BASE_COLUMNS, *OPTION_COLUMNS, "value", "con_id", "pay_date")
REQUIRED_BY_KIND = {
    "stock": ("bid", "ask"),
    "option": OPTION_COLUMNS,
    "nav": ("value",),
    "dividend": ("value",),
}


def stock_con_ids(pair: PairSpec) -> dict[str, int | None]:
    """The pair's two symbols -> IB contract id (None: the pair does not know it)."""
    return {pair.underlying: pair.underlying_con_id, pair.etf: pair.etf_con_id}


def known_con_ids(pair: PairSpec, needed_by: str) -> dict[str, int]:
    """`stock_con_ids` when the pair knows both (a source with no con_id column needs them),
    else ValueError naming the missing field."""
    for name in ("underlying_con_id", "etf_con_id"):
        if getattr(pair, name) is None:
            raise ValueError(f"PairSpec.{name} is required by {needed_by}, got None")
    return {symbol: con_id for symbol, con_id in stock_con_ids(pair).items() if con_id}


class CsvError(ValueError):
    """A row of the CSV cannot be used; the message names the row and the column."""

    def __init__(self, row: int, column: str, message: str) -> None:
        super().__init__(f"row {row}, column {column!r}: {message}")
        self.row = row
        self.column = column


@dataclass(frozen=True, slots=True)
class _Row:
    number: int
    ts: float
    day: date
    kind: str
    symbol: str
    cells: dict[str, str]


def cell_number(row: int, column: str, text: str | None, *, positive: bool = False) -> float:
    """A cell as a finite number (> 0 when ``positive``), else CsvError naming row and column."""
    if text is None or text.strip() == "":
        raise CsvError(row, column, "is blank")
    try:
        value = float(text)
    except ValueError:
        raise CsvError(row, column, f"is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise CsvError(row, column, f"must be finite, got {text!r}")
    if positive and value <= 0:
        raise CsvError(row, column, f"must be > 0, got {text!r}")
    return value


def _timestamp(row: int, text: str | None) -> float:
    if text is None or text.strip() == "":
        raise CsvError(row, "timestamp", "is blank")
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return _iso_timestamp(row, text)
    if not math.isfinite(value):
        raise CsvError(row, "timestamp", f"must be finite, got {text!r}")
    return value


def _iso_timestamp(row: int, text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CsvError(row, "timestamp", f"is neither ISO 8601 nor epoch: {text!r}") from None
    if moment.tzinfo is None:
        raise CsvError(row, "timestamp", f"needs a UTC offset: {text!r}")
    return moment.timestamp()


def _rows(lines: Iterable[str]) -> Iterator[_Row]:
    reader = csv.DictReader(lines)
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    for column in BASE_COLUMNS:
        if column not in header:
            raise CsvError(0, column, f"missing from the header {header}")
    needed = {c for kind_columns in REQUIRED_BY_KIND.values() for c in kind_columns}
    previous = -math.inf
    seen_at_ts: set[tuple] = set()
    for number, cells in enumerate(reader, start=1):
        ts = _timestamp(number, cells.get("timestamp"))
        kind = (cells.get("kind") or "").strip()
        if kind not in KINDS:
            raise CsvError(number, "kind", f"must be one of {KINDS}, got {kind!r}")
        for column in REQUIRED_BY_KIND[kind]:
            if column not in header and column in needed:
                raise CsvError(number, column, f"missing from the header (needed by {kind} rows)")
        symbol = (cells.get("symbol") or "").strip()
        if ts < previous:
            raise CsvError(number, "timestamp", f"goes backwards ({ts} after {previous}): sort")
        if ts > previous:
            seen_at_ts.clear()
        previous = ts
        key = (kind, symbol, cells.get("expiry"), cells.get("strike"), cells.get("right"))
        if key in seen_at_ts:
            raise CsvError(number, "timestamp", f"duplicate {kind} row for {symbol} at {ts}")
        seen_at_ts.add(key)
        day = datetime.fromtimestamp(ts, UTC).astimezone(EXCHANGE_TIMEZONE).date()
        yield _Row(number, ts, day, kind, symbol, cells)


def _message(row: _Row, pair: PairSpec) -> Message:
    n, c, ts = row.number, row.cells, row.ts
    stocks = stock_con_ids(pair)
    if row.kind == "stock":
        if row.symbol not in stocks:
            raise CsvError(n, "symbol", f"stock rows are {_either(pair)}, got {row.symbol!r}")
        bid = cell_number(n, "bid", c.get("bid"), positive=True)
        ask = cell_number(n, "ask", c.get("ask"), positive=True)
        if bid > ask:
            raise CsvError(n, "bid", f"crossed quote: bid {bid} > ask {ask}")
        con_id = _con_id(row, stocks[row.symbol])
        return Quote(row.symbol, con_id, bid, ask, 100.0, 100.0, None, ts, ts)
    if row.kind == "nav":
        if row.symbol != pair.etf:
            raise CsvError(n, "symbol", f"nav rows are {pair.etf}, got {row.symbol!r}")
        return EtfNav(pair.etf, cell_number(n, "value", c.get("value"), positive=True), ts, ts)
    if row.kind == "dividend":
        if row.symbol not in stocks:
            raise CsvError(n, "symbol", f"dividend rows are {_either(pair)}, got {row.symbol!r}")
        amount = cell_number(n, "value", c.get("value"), positive=True)
        paid = (c.get("pay_date") or "").strip()
        if paid and not (len(paid) == 8 and paid.isdigit()):
            raise CsvError(n, "pay_date", f"must be YYYYMMDD, got {paid!r}")
        if paid and paid < row.day.strftime("%Y%m%d"):
            raise CsvError(n, "pay_date", f"{paid} is before the ex-date {row.day}")
        ex_date = row.day.strftime("%Y%m%d")
        return Dividends(row.symbol, 0.0, 12 * amount, ex_date, amount, ts, paid)
    return _option(row, pair.underlying)


def _either(pair: PairSpec) -> str:
    return f"{pair.underlying} or {pair.etf}"


def _option(row: _Row, underlying: str) -> OptionQuote:
    n, c, ts = row.number, row.cells, row.ts
    if row.symbol != underlying:
        raise CsvError(n, "symbol", f"option rows are {underlying} calls, got {row.symbol!r}")
    expiry = (c.get("expiry") or "").strip()
    try:
        expiry_date = date(int(expiry[:4]), int(expiry[4:6]), int(expiry[6:8]))
    except ValueError:
        raise CsvError(n, "expiry", f"must be YYYYMMDD, got {expiry!r}") from None
    if len(expiry) != 8:
        raise CsvError(n, "expiry", f"must be YYYYMMDD, got {expiry!r}")
    right = (c.get("right") or "").strip()
    if right != "C":
        raise CsvError(n, "right", f"must be C, got {right!r}")
    strike = cell_number(n, "strike", c.get("strike"), positive=True)
    bid = cell_number(n, "bid", c.get("bid"))
    ask = cell_number(n, "ask", c.get("ask"), positive=True)
    if bid < 0:
        raise CsvError(n, "bid", f"must be >= 0, got {bid}")
    if bid > ask:
        raise CsvError(n, "bid", f"crossed quote: bid {bid} > ask {ask}")
    values = {name: cell_number(n, name, c.get(name)) for name in OPTION_COLUMNS[5:]}
    con_id = _con_id(row, option_con_id(expiry_date, strike, "C"))
    return OptionQuote(
        symbol=underlying,
        con_id=con_id,
        local_symbol=occ_symbol(underlying, expiry, "C", strike),
        expiry=expiry,
        strike=strike,
        right="C",
        bid=bid,
        ask=ask,
        bid_size=10.0,
        ask_size=10.0,
        implied_vol=values["implied_vol"],
        delta=values["delta"],
        gamma=values["gamma"],
        vega_per_point=values["vega_per_point"],
        theta_per_day=values["theta_per_day"],
        underlying_price=math.nan,
        model_price=math.nan,
        ts_exchange=ts,
        ts_recv=ts,
    )


def _con_id(row: _Row, default: int | None) -> int:
    text = (row.cells.get("con_id") or "").strip()
    if not text:
        if default is None:
            raise CsvError(
                row.number, "con_id", f"is blank and the pair has no id for {row.symbol}"
            )
        return default
    value = cell_number(row.number, "con_id", text, positive=True)
    if value != int(value):
        raise CsvError(row.number, "con_id", f"must be a whole number, got {text!r}")
    return int(value)


def read_messages(path: Path, pair: PairSpec = DEFAULT_PAIR) -> list[Message]:
    """Every row of the file as bus messages of ``pair``, with each session's chain first; the
    whole file is validated before anything is returned (a bad row never reaches a replay)."""
    with open(path, newline="") as handle:
        rows = list(_rows(handle))
    by_day: dict[date, list[tuple[_Row, Message]]] = {}
    for row in rows:
        by_day.setdefault(row.day, []).append((row, _message(row, pair)))
    out: list[Message] = []
    for day in sorted(by_day):
        entries = by_day[day]
        calls = sorted(
            {
                (m.expiry, m.strike, m.con_id, m.local_symbol)
                for _, m in entries
                if isinstance(m, OptionQuote)
            }
        )
        if calls:
            stock = [m for _, m in entries if isinstance(m, Quote) and m.symbol == pair.underlying]
            spot = (stock[0].bid + stock[0].ask) / 2 if stock else calls[len(calls) // 2][1]
            out.append(
                OptionChain(
                    underlying=pair.underlying,
                    underlying_con_id=_chain_con_id(pair, stock, entries[0][0]),
                    expiries=tuple(sorted({e for e, _, _, _ in calls})),
                    strikes=tuple(sorted({k for _, k, _, _ in calls})),
                    subscribed=tuple(
                        ChainOption(con_id=i, local_symbol=s, expiry=e, strike=k, right="C")
                        for e, k, i, s in calls
                    ),
                    spot=spot,
                    ts=entries[0][0].ts - 1.0,
                )
            )
        out.extend(m for _, m in entries)
    return out


def _chain_con_id(pair: PairSpec, stock: list[Quote], first: _Row) -> int:
    """The chain's underlying id: the pair's, else the day's first underlying quote's."""
    if pair.underlying_con_id is not None:
        return pair.underlying_con_id
    if stock:
        return stock[0].con_id
    raise CsvError(
        first.number,
        "con_id",
        f"the day's calls need a {pair.underlying} stock row (or the "
        "pair's underlying_con_id) for the chain's underlying id",
    )


def write_messages(messages: Iterable[Message], path: Path) -> int:
    """Write quotes, option quotes, NAVs and distributions in this format; returns the rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for m in messages:
            row = _row_of(m)
            if row is not None:
                writer.writerow(row)
                count += 1
    return count


def _row_of(m: Message) -> list[str] | None:
    blank = [""] * len(COLUMNS)
    if isinstance(m, Quote):
        row = blank.copy()
        row[:5] = [repr(m.ts_exchange), "stock", m.symbol, repr(m.bid), repr(m.ask)]
        return row
    if isinstance(m, OptionQuote):
        return [
            repr(m.ts_exchange), "option", m.symbol, repr(m.bid), repr(m.ask), m.expiry,
            repr(m.strike), m.right, repr(m.implied_vol), repr(m.delta), repr(m.gamma),
            repr(m.vega_per_point), repr(m.theta_per_day), "", str(m.con_id), "",
        ]  # fmt: skip
    if isinstance(m, EtfNav):
        row = blank.copy()
        row[:3] = [repr(m.ts_exchange), "nav", m.symbol]
        row[COLUMNS.index("value")] = repr(m.nav)
        return row
    if isinstance(m, Dividends):
        row = blank.copy()
        row[:3] = [repr(m.ts), "dividend", m.symbol]
        row[COLUMNS.index("value")] = repr(m.next_amount)
        row[COLUMNS.index("pay_date")] = m.next_pay_date
        return row
    return None

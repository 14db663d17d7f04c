"""Instrument registry: the pair's two stocks, the underlying's listed options, and matching of
partial requests.

The one place ibsim turns a `trading.domain.pair.PairSpec` into contracts: `InstrumentRegistry`
lists the pair's underlying and ETF under the pair's contract ids, and the underlying's options
under its symbol (OCC root, trading class) with its contract id as their underlying's. ``TLT``,
``TLTW`` and their ids below are the default pair's (what the socket-free backtests price).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from trading.domain.pair import (
    DEFAULT_ETF,
    DEFAULT_ETF_CON_ID,
    DEFAULT_UNDERLYING,
    DEFAULT_UNDERLYING_CON_ID,
    PairSpec,
)
from trading.ibsim.sessions import TradingCalendar

TLT_CON_ID = DEFAULT_UNDERLYING_CON_ID
"""The default pair's underlying's contract id."""
TLTW_CON_ID = DEFAULT_ETF_CON_ID
"""The default pair's ETF's contract id."""
BAG_CON_ID = 28812380
"""The conId IB puts on every BAG (combo) contract it echoes."""

_OPTION_CON_ID_BASE = 500_000_000
_EPOCH_DAY = date(2000, 1, 1)
STOCK_EXCHANGES = frozenset({"SMART", "NASDAQ", "ISLAND", "ARCA", "BATS", "IEX", "NYSE", "AMEX"})
OPTION_EXCHANGES = frozenset({"SMART", "CBOE", "AMEX", "ISE", "PHLX", "BOX", "NASDAQOM"})
MONTHLY_EXPIRIES_LISTED = 8
WEEKLY_HORIZON_DAYS = 35


class SecType(StrEnum):
    STOCK = "STK"
    OPTION = "OPT"
    COMBO = "BAG"


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable contract as IB describes it (strike 0 and right '' for stocks)."""

    con_id: int
    symbol: str
    sec_type: SecType
    long_name: str
    expiry: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: int = 1
    weekly: bool = False
    under_con_id: int = 0
    """An option's underlying's contract id (0 for a stock)."""

    @property
    def is_option(self) -> bool:
        return self.sec_type == SecType.OPTION

    @property
    def local_symbol(self) -> str:
        if not self.is_option:
            return self.symbol
        return occ_symbol(self.symbol, self.expiry, self.right, self.strike)

    @property
    def expiry_date(self) -> date:
        return date(int(self.expiry[:4]), int(self.expiry[4:6]), int(self.expiry[6:8]))

    @property
    def multiplier_text(self) -> str:
        return str(self.multiplier) if self.is_option else ""


_LONG_NAMES = {
    DEFAULT_UNDERLYING: "ISHARES 20+ YEAR TREASURY BO",
    DEFAULT_ETF: "ISHARES 20+ YEAR TREASURY BOND BUYWRITE STRATEGY ETF",
}
"""IB's long names of the default pair's stocks (another stock's long name is its symbol)."""


def stock(symbol: str, con_id: int) -> Instrument:
    """The stock ``symbol`` listed under ``con_id``."""
    return Instrument(con_id, symbol, SecType.STOCK, _LONG_NAMES.get(symbol, symbol))


TLT = stock(DEFAULT_UNDERLYING, TLT_CON_ID)
"""The default pair's underlying."""
TLTW = stock(DEFAULT_ETF, TLTW_CON_ID)
"""The default pair's ETF."""


def occ_symbol(root: str, expiry: str, right: str, strike: float) -> str:
    """OCC option symbol, e.g. ``TLT   261204C00095000`` (root padded to 6, strike x 1000)."""
    return f"{root:<6}{expiry[2:]}{right}{round(strike * 1000):08d}"


def option_con_id(expiry: date, strike: float, right: str) -> int:
    """Stable conId: base + days since 2000 x 4000 + half-dollar strike x 2 + (1 for a put)."""
    half_dollars = round(strike * 2)
    if abs(half_dollars - strike * 2) > 1e-9 or not 0 < half_dollars < 2000:
        raise ValueError(f"strike must be a positive multiple of 0.5 below 1000, got {strike!r}")
    days = (expiry - _EPOCH_DAY).days
    return _OPTION_CON_ID_BASE + days * 4000 + half_dollars * 2 + (1 if right == "P" else 0)


def decode_option_con_id(con_id: int) -> tuple[date, float, str] | None:
    offset = con_id - _OPTION_CON_ID_BASE
    if offset <= 0:
        return None
    days, rest = divmod(offset, 4000)
    half_dollars, put = divmod(rest, 2)
    if half_dollars == 0:
        return None
    return _EPOCH_DAY + timedelta(days=days), half_dollars / 2, "P" if put else "C"


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


@dataclass(frozen=True, slots=True)
class ContractRequest:
    """The 12-field contract block of a request (as parsed from the wire)."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    expiry: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""


class InstrumentRegistry:
    """Listed instruments as of a session, and request matching as IB does it.

    Option expiries are Fridays (the Thursday before when Friday is a holiday): the next
    ``MONTHLY_EXPIRIES_LISTED`` third-Friday monthlies, and weeklies over the next
    ``WEEKLY_HORIZON_DAYS`` days. Strikes are fixed around the reference price: monthlies
    every $1 from 60% to 140%, weeklies every $1 from 80% to 120% plus every $0.50 within 5%.
    The stocks are ``pair``'s underlying and ETF (``underlying``, ``etf``) under its contract
    ids, which must be set (`trading.ibsim.config.SimConfig` sets them).
    """

    def __init__(self, calendar: TradingCalendar, reference_price: float, pair: PairSpec) -> None:
        if pair.underlying_con_id is None or pair.etf_con_id is None:
            raise ValueError(f"InstrumentRegistry needs the pair's contract ids, got {pair!r}")
        self.calendar = calendar
        self.underlying = stock(pair.underlying, pair.underlying_con_id)
        self.etf = stock(pair.etf, pair.etf_con_id)
        self._stocks = {s.symbol: s for s in (self.underlying, self.etf)}
        self._stock_ids = {s.con_id: s for s in (self.underlying, self.etf)}
        self.monthly_strikes = _strikes(reference_price, 0.6, 1.4, 1.0)
        near = _strikes(reference_price, 0.95, 1.05, 0.5)
        self.weekly_strikes = sorted(set(_strikes(reference_price, 0.8, 1.2, 1.0)) | set(near))
        self._monthly_set = frozenset(self.monthly_strikes)
        self._weekly_set = frozenset(self.weekly_strikes)

    def expiry_session(self, friday: date) -> date:
        """The expiry date for a Friday: the Friday, or the last session before it."""
        index = self.calendar.session_on_or_before(friday)
        return self.calendar.dates[index] if index >= 0 else friday

    def monthly_expiry(self, year: int, month: int) -> date:
        return self.expiry_session(third_friday(year, month))

    def listed_expiries(self, today: date) -> list[tuple[date, bool]]:
        """(expiry, weekly) pairs listed on ``today``, soonest first."""
        monthlies: list[date] = []
        year, month = today.year, today.month
        while len(monthlies) < MONTHLY_EXPIRIES_LISTED:
            expiry = self.monthly_expiry(year, month)
            if expiry >= today:
                monthlies.append(expiry)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        monthly_set = set(monthlies)
        weeklies = []
        friday = today + timedelta(days=(4 - today.weekday()) % 7)
        while friday <= today + timedelta(days=WEEKLY_HORIZON_DAYS):
            expiry = self.expiry_session(friday)
            if expiry >= today and expiry not in monthly_set:
                weeklies.append(expiry)
            friday += timedelta(days=7)
        listed = [(d, False) for d in monthlies] + [(d, True) for d in weeklies]
        return sorted(listed)

    def is_monthly(self, expiry: date) -> bool:
        return expiry == self.monthly_expiry(expiry.year, expiry.month)

    def option(self, expiry: date, strike: float, right: str) -> Instrument | None:
        """The option if its strike is on the grid of its expiry kind, else None."""
        weekly = not self.is_monthly(expiry)
        grid = self._weekly_set if weekly else self._monthly_set
        if strike not in grid or right not in ("C", "P") or expiry.weekday() not in (3, 4):
            return None
        return Instrument(
            con_id=option_con_id(expiry, strike, right),
            symbol=self.underlying.symbol,
            sec_type=SecType.OPTION,
            long_name=self.underlying.long_name,
            expiry=expiry.strftime("%Y%m%d"),
            strike=strike,
            right=right,
            multiplier=100,
            weekly=weekly,
            under_con_id=self.underlying.con_id,
        )

    def by_con_id(self, con_id: int) -> Instrument | None:
        listed = self._stock_ids.get(con_id)
        if listed is not None:
            return listed
        decoded = decode_option_con_id(con_id)
        if decoded is None:
            return None
        expiry, strike, right = decoded
        if self.expiry_session(expiry) != expiry:
            return None
        return self.option(expiry, strike, right)

    def match(
        self, request: ContractRequest, today: date, include_expired: bool = False
    ) -> list[Instrument]:
        """Every instrument the request describes (fields left empty match anything)."""
        if request.con_id:
            found = self.by_con_id(request.con_id)
            return [found] if found is not None else []
        if request.currency not in ("", "USD"):
            return []
        symbol = request.symbol.upper()
        sec_type = request.sec_type.upper()
        local_symbol = request.local_symbol.strip()
        if not symbol and local_symbol:
            # A stock's local symbol is its symbol; an option's starts with its OCC root (6).
            symbol = local_symbol if local_symbol in self._stocks else local_symbol[:6].strip()
        if sec_type in ("", "STK") and symbol in self._stocks:
            listed = self._stocks[symbol]
            described = (
                request.exchange.upper() in STOCK_EXCHANGES | {""}
                and request.primary_exchange.upper() in ("", "NASDAQ", "ISLAND")
                and local_symbol in ("", listed.symbol)
                and not request.expiry
                and not request.right
            )
            return [listed] if described else []
        if sec_type not in ("", "OPT") or symbol != self.underlying.symbol:
            return []
        return self._match_options(request, today, include_expired)

    def _match_options(
        self, request: ContractRequest, today: date, include_expired: bool
    ) -> list[Instrument]:
        if request.exchange.upper() not in OPTION_EXCHANGES | {""}:
            return []
        if request.multiplier not in ("", "100"):
            return []
        if request.trading_class not in ("", self.underlying.symbol):
            return []
        right = {"": "", "C": "C", "CALL": "C", "P": "P", "PUT": "P"}.get(request.right.upper())
        if right is None:
            return []
        expiry_text = request.expiry.split(" ")[0].replace("-", "")
        if expiry_text and not (expiry_text.isdigit() and len(expiry_text) in (6, 8)):
            return []
        listed = self.listed_expiries(today)
        if include_expired:
            fridays = (today - timedelta(days=400 - i) for i in range(400))
            expired = {self.expiry_session(d) for d in fridays if d.weekday() == 4}
            listed = [(d, not self.is_monthly(d)) for d in sorted(expired) if d < today] + listed
        matches = []
        for expiry, weekly in listed:
            stamp = expiry.strftime("%Y%m%d")
            if expiry_text and not stamp.startswith(expiry_text):
                continue
            strikes = self.weekly_strikes if weekly else self.monthly_strikes
            if request.strike:
                strikes = [s for s in strikes if math.isclose(s, request.strike, abs_tol=1e-6)]
            for strike in strikes:
                for option_right in (right,) if right else ("C", "P"):
                    option = self.option(expiry, strike, option_right)
                    if option is None:
                        continue
                    if request.local_symbol and option.local_symbol != request.local_symbol:
                        continue
                    matches.append(option)
        return matches


def _strikes(reference: float, low: float, high: float, step: float) -> list[float]:
    first = math.ceil(reference * low / step)
    last = math.floor(reference * high / step)
    return [round(i * step, 2) for i in range(first, last + 1)]

"""The book: positions, average cost and P&L per instrument and per pair, fed with bus fills.

Pure. The accounting is the quant core's `trading.domain.pnl.Book` (average cost; commissions
subtracted from realized P&L when paid; total = realized + unrealized), one per pair, keyed by
conId as text. This module adds what the live service needs around it:

* attribution: a fill belongs to the pair of its intent (orderRef -> pair_id); a fill with
  no known intent (IB reports assignments and expiries with an empty orderRef) goes to the pair
  whose position it reduces, a stock delivery to the pair of the option settled with it, and
  anything else to the pair "unattributed" (orders placed outside this system);
* idempotence: each exec_id is booked once, so replaying the fill stream or IB's executions
  after a restart changes nothing;
* the BAG-level execution IB sends besides the legs moves no position (the leg executions do);
  its commission, if any, is counted in the pair's commissions;
* instrument metadata (symbol, local symbol, sec_type, multiplier) for the bus Position;
* reconciliation with the broker, the source of truth for positions: `differences(broker)`
  lists the instruments whose net quantity differs from IB's, and `adjustments(broker, ...)`
  the fills that bring the book to IB's quantities (see its docstring for the prices);
* distributions: `on_market` keeps every announced distribution (`Dividends`, one per symbol
  and ex-date, the latest announcement wins) and the exchange date of the market messages;
  each pair's shares of that symbol held before an ex-date are credited (long) or debited
  (short) quantity x amount from the ex-date (accrued) and settled on the pay date (the
  announced one, else `DEFAULT_PAY_LAG_SESSIONS` sessions after the ex-date). The amount is
  recomputed from the fills' dates each time (`trading.domain.pnl`), so a book rebuilt from
  the fill stream and the distribution history after a restart books each one exactly once.

`pair_pnl` returns realized (before commissions), unrealized, commissions, distributions
(and the part of them accrued, not yet paid) and total = realized - commissions + unrealized
+ distributions, in USD; marks are mids per share by conId.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from trading.bus import Dividends, Fill, PnL, Position, Side
from trading.domain import pnl as domain_pnl
from trading.domain.market_hours import EXCHANGE_TIMEZONE, exchange_date, market_calendar

__all__ = [
    "DEFAULT_PAY_LAG_SESSIONS",
    "RECONCILE_PREFIX",
    "UNATTRIBUTED",
    "Book",
    "BrokerPosition",
    "Holding",
    "reconcile_intent_id",
]

UNATTRIBUTED = "unattributed"
RECONCILE_PREFIX = "reconcile"
"""exec_id and intent_id prefix of the adjustment fills that align the book with IB."""
DEFAULT_PAY_LAG_SESSIONS = 3
"""A distribution announced without a pay date (IB's dividend tick has none) is settled this
many sessions after its ex-date: iShares pays TLT's and TLTW's monthly distributions about
three business days after the ex-date."""
_FLAT = 1e-9
PNL_FIELDS = ("realized", "unrealized", "commissions", "distributions", "distributions_accrued",
              "total")  # fmt: skip


def distribution_of(msg: Dividends) -> domain_pnl.Distribution | None:
    """The announced next distribution of ``msg`` (None when none is announced); ValueError
    naming the field when a date or the amount cannot be used."""
    if not msg.next_ex_date:
        return None
    ex_date = _yyyymmdd("dividends.next_ex_date", msg.next_ex_date)
    if msg.next_pay_date:
        pay_date = _yyyymmdd("dividends.next_pay_date", msg.next_pay_date)
    else:
        pay_date = market_calendar().add_sessions(ex_date, DEFAULT_PAY_LAG_SESSIONS)
    if not (isinstance(msg.next_amount, int | float) and math.isfinite(msg.next_amount)):
        raise ValueError(f"dividends.next_amount must be finite, got {msg.next_amount!r}")
    try:
        return domain_pnl.Distribution(ex_date, float(msg.next_amount), pay_date)
    except ValueError as exc:
        raise ValueError(f"dividends of {msg.symbol}: {exc}") from None


def _yyyymmdd(name: str, text: str) -> date:
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"{name} must be YYYYMMDD, got {text!r}")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise ValueError(f"{name} is not a calendar date: {text!r}") from None


@dataclass(frozen=True, slots=True)
class Holding:
    """One instrument held by one pair (a view of the domain position plus metadata)."""

    con_id: int
    symbol: str
    local_symbol: str
    sec_type: str  # STK / OPT
    multiplier: float
    quantity: float  # shares or contracts, signed
    avg_cost: float  # per share
    realized_usd: float  # before commissions
    commissions_usd: float


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """One position as IB reports it (reqPositions), average cost per share.

    IB's avgCost of an option is per contract (price x multiplier); divide it by the
    multiplier before building this.
    """

    con_id: int
    symbol: str
    local_symbol: str
    sec_type: str
    multiplier: float
    quantity: float
    avg_cost: float

    def __post_init__(self) -> None:
        for name in ("quantity", "avg_cost", "multiplier"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"position {self.con_id}: {name} must be finite, got {value!r}")
        if self.multiplier <= 0:
            raise ValueError(
                f"position {self.con_id}: multiplier must be > 0, got {self.multiplier!r}"
            )


@dataclass(frozen=True, slots=True)
class _Meta:
    symbol: str
    local_symbol: str
    sec_type: str
    multiplier: float


@dataclass
class Book:
    """Domain books by pair; P&L per leg and per pair given marks (mid per share by conId)."""

    books: dict[str, domain_pnl.Book] = field(default_factory=dict)
    meta: dict[int, _Meta] = field(default_factory=dict)
    pair_of_intent: dict[str, str] = field(default_factory=dict)
    seen_exec_ids: set[str] = field(default_factory=set)
    combo_commissions_usd: dict[str, float] = field(default_factory=dict)
    last_pair: str = UNATTRIBUTED
    """The pair the last booked fill went to."""
    distributions: dict[str, dict[date, domain_pnl.Distribution]] = field(default_factory=dict)
    """Announced distributions by symbol and ex-date."""
    as_of: date | None = None
    """The exchange date of the newest market message: distributions gone ex by then count."""
    _day_ends: float = -math.inf
    """Epoch second at which ``as_of`` ends (the next New York midnight)."""
    _settlement: tuple[float, str] | None = None

    def on_market(self, msg: Any) -> None:
        """A market message: a `Dividends` announcement is kept, any message's exchange time
        moves the book's date forward (never back)."""
        if isinstance(msg, Dividends):
            distribution = distribution_of(msg)
            if distribution is not None:
                self.distributions.setdefault(msg.symbol, {})[distribution.ex_date] = distribution
            return
        ts = getattr(msg, "ts_exchange", None)
        if ts is not None and ts >= self._day_ends and math.isfinite(ts):
            day = exchange_date(ts)
            if self.as_of is None or day > self.as_of:
                self.as_of = day
                midnight = datetime.combine(day + timedelta(days=1), datetime.min.time())
                self._day_ends = midnight.replace(tzinfo=EXCHANGE_TIMEZONE).timestamp()

    def attribute(self, intent_id: str, pair_id: str) -> None:
        """Fills of this intent belong to this pair."""
        self.pair_of_intent[intent_id] = pair_id

    def pair_of(self, intent_id: str) -> str:
        return self.pair_of_intent.get(intent_id, UNATTRIBUTED)

    def apply_fill(self, fill: Fill, pair_id: str | None = None) -> bool:
        """Book an execution once (by exec_id); returns False when already booked.

        Raises ValueError naming the field for a non-finite or non-positive value.
        """
        if fill.exec_id in self.seen_exec_ids:
            return False
        for name in ("ts", "quantity", "price", "commission", "multiplier"):
            value = getattr(fill, name)
            if not math.isfinite(value):
                raise ValueError(f"fill {fill.exec_id}: {name} must be finite, got {value!r}")
        if fill.quantity <= 0:
            raise ValueError(f"fill {fill.exec_id}: quantity must be > 0, got {fill.quantity!r}")
        pair = pair_id or self._pair_for(fill)
        self.last_pair = pair
        if fill.sec_type == "BAG":
            self.seen_exec_ids.add(fill.exec_id)
            self.combo_commissions_usd[pair] = (
                self.combo_commissions_usd.get(pair, 0.0) + fill.commission
            )
            self.books.setdefault(pair, domain_pnl.Book())
            return True
        domain_fill = domain_pnl.Fill(
            key=str(fill.con_id),
            side=fill.side,
            quantity=fill.quantity,
            price=fill.price,
            commission_usd=fill.commission,
            multiplier=fill.multiplier,
        )
        self.books.setdefault(pair, domain_pnl.Book()).apply(domain_fill, exchange_date(fill.ts))
        self.seen_exec_ids.add(fill.exec_id)
        self.meta.setdefault(
            fill.con_id, _Meta(fill.symbol, fill.local_symbol, fill.sec_type, fill.multiplier)
        )
        return True

    def _pair_for(self, fill: Fill) -> str:
        """The fill's pair: its intent's; for a fill without one (an assignment, an expiry,
        a manual trade) the pair whose position it reduces; a stock delivery at the same time
        as an option settlement goes to that option's pair."""
        if fill.intent_id in self.pair_of_intent:
            return self.pair_of_intent[fill.intent_id]
        sign = 1.0 if str(fill.side) == "BUY" else -1.0
        for pair, book in self.books.items():
            position = book.position(str(fill.con_id))
            if fill.sec_type == "OPT" and position is not None and position.quantity * sign < 0:
                self._settlement = (fill.ts, pair)
                return pair
        if self._settlement is not None and abs(self._settlement[0] - fill.ts) < 1.0:
            return self._settlement[1]
        return UNATTRIBUTED

    # queries --------------------------------------------------------------------------------

    def pairs(self) -> list[str]:
        return sorted(self.books)

    def _holdings(self, pair_id: str) -> list[Holding]:
        out = []
        for key, p in self.books.get(pair_id, domain_pnl.Book()).positions.items():
            con_id = int(key)
            m = self.meta[con_id]
            out.append(
                Holding(
                    con_id,
                    m.symbol,
                    m.local_symbol,
                    m.sec_type,
                    p.multiplier,
                    p.quantity,
                    p.average_price,
                    p.realized_pnl_usd + p.commissions_usd,
                    p.commissions_usd,
                )
            )
        return out

    def pair_holdings(self, pair_id: str) -> list[Holding]:
        """Open holdings of a pair (quantity non-zero)."""
        return [h for h in self._holdings(pair_id) if abs(h.quantity) > _FLAT]

    def open_pairs(self) -> list[str]:
        return [p for p in self.pairs() if self.pair_holdings(p)]

    def quantity(self, con_id: int, pair_id: str | None = None) -> float:
        """Net quantity of an instrument, in one pair or across all."""
        pairs = [pair_id] if pair_id is not None else list(self.books)
        total = 0.0
        for p in pairs:
            position = self.books[p].position(str(con_id)) if p in self.books else None
            if position is not None:
                total += position.quantity
        return total

    def net_quantities(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for book in self.books.values():
            for key, p in book.positions.items():
                out[int(key)] = out.get(int(key), 0.0) + p.quantity
        return out

    def _distributions_by_key(
        self, book: domain_pnl.Book
    ) -> dict[str, list[domain_pnl.Distribution]]:
        """The announced distributions of each share leg of ``book``, by its key (conId)."""
        out = {}
        for key in book.positions:
            meta = self.meta.get(int(key))
            if meta is not None and meta.sec_type == "STK" and meta.symbol in self.distributions:
                out[key] = list(self.distributions[meta.symbol].values())
        return out

    def pair_pnl(self, pair_id: str, marks: dict[int, float]) -> dict[str, float]:
        """realized (before commissions), unrealized, commissions, distributions (of which
        distributions_accrued not yet paid), total (USD) of one pair.

        An open leg without a mark is valued at its average cost (no unrealized P&L).
        """
        book = self.books.get(pair_id)
        if book is None:
            return dict.fromkeys(PNL_FIELDS, 0.0)
        priced = {key: marks.get(int(key), p.average_price) for key, p in book.positions.items()}
        paid = self._distributions_by_key(book) if self.as_of is not None else None
        result = book.pair_pnl(priced, distributions=paid, as_of=self.as_of)
        combo = self.combo_commissions_usd.get(pair_id, 0.0)
        commissions = result.commissions_usd + combo
        realized = result.realized_pnl_usd + result.commissions_usd
        unrealized = result.unrealized_pnl_usd
        distributions = result.distributions.total_usd
        return {
            "realized": realized,
            "unrealized": unrealized,
            "commissions": commissions,
            "distributions": distributions,
            "distributions_accrued": result.distributions.accrued_usd,
            "total": realized - commissions + unrealized + distributions,
        }

    def total_pnl(self, marks: dict[int, float]) -> dict[str, float]:
        out = dict.fromkeys(PNL_FIELDS, 0.0)
        for pair in self.books:
            for k, v in self.pair_pnl(pair, marks).items():
                out[k] += v
        return out

    def pnl(self, marks: dict[int, float], ts: float) -> PnL:
        """The bus PnL message: the book's totals and each pair's total."""
        total = self.total_pnl(marks)
        return PnL(
            ts=ts,
            realized=total["realized"],
            unrealized=total["unrealized"],
            commissions=total["commissions"],
            total=total["total"],
            per_pair={p: self.pair_pnl(p, marks)["total"] for p in self.pairs()},
            distributions=total["distributions"],
            distributions_accrued=total["distributions_accrued"],
        )

    def positions(self, marks: dict[int, float], ts: float) -> list[Position]:
        """Bus Position messages, one per instrument ever held (net across pairs)."""
        agg: dict[int, list[Holding]] = {}
        for pair in self.books:
            for h in self._holdings(pair):
                agg.setdefault(h.con_id, []).append(h)
        out = []
        for con_id, hs in agg.items():
            quantity = math.fsum(h.quantity for h in hs)
            cost = math.fsum(h.quantity * h.avg_cost for h in hs)
            avg = cost / quantity if abs(quantity) > _FLAT else 0.0
            realized = math.fsum(h.realized_usd for h in hs)
            mark = marks.get(con_id)
            m = self.meta[con_id]
            unrealized = (
                0.0
                if mark is None
                else math.fsum((mark - h.avg_cost) * h.quantity * h.multiplier for h in hs)
            )
            out.append(
                Position(
                    symbol=m.symbol,
                    local_symbol=m.local_symbol,
                    con_id=con_id,
                    sec_type=m.sec_type,
                    quantity=quantity,
                    avg_cost=avg,
                    multiplier=m.multiplier,
                    market_price=mark,
                    unrealized_pnl=unrealized,
                    realized_pnl=realized,
                    ts=ts,
                )
            )
        return out

    # reconciliation with the broker -----------------------------------------------------------

    def differences(self, broker: dict[int, BrokerPosition]) -> dict[int, tuple[float, float]]:
        """con_id -> (book quantity, IB quantity) for every instrument where they differ."""
        book = self.net_quantities()
        out = {}
        for con_id in sorted(set(book) | set(broker)):
            mine = book.get(con_id, 0.0)
            theirs = broker[con_id].quantity if con_id in broker else 0.0
            if abs(mine - theirs) > _FLAT:
                out[con_id] = (mine, theirs)
        return out

    def adjustments(
        self, broker: dict[int, BrokerPosition], ts: float, tag: str
    ) -> list[tuple[str, Fill]]:
        """(pair, fill) that bring every net quantity to IB's, commission 0.

        A quantity IB holds beyond the book is booked at IB's average cost (no P&L is
        invented); a holding IB no longer has is closed at the book's own average cost (the
        missed execution's price is unknown, so no P&L is invented either). A reduction is
        taken from the pairs holding the instrument, largest holding first; an addition goes
        to the one pair holding the instrument on the same side, else to "unattributed".
        exec_id and intent_id start with `RECONCILE_PREFIX` and carry `tag` (unique per
        reconciliation); the caller attributes each intent_id to its pair before booking.
        """
        out: list[tuple[str, Fill]] = []
        for con_id, (mine, theirs) in self.differences(broker).items():
            held = [
                (pair, position)
                for pair, book in self.books.items()
                if (position := book.position(str(con_id))) is not None
                and abs(position.quantity) > _FLAT
            ]
            meta = self.meta.get(con_id)
            if con_id in broker:
                b = broker[con_id]
                meta = _Meta(b.symbol, b.local_symbol or b.symbol, b.sec_type, b.multiplier)
            assert meta is not None  # an instrument in neither is never a difference
            change = theirs - mine
            # close what the book holds against the change, then open the rest at IB's cost
            for pair, position in sorted(held, key=lambda item: -abs(item[1].quantity)):
                if change * position.quantity >= 0 or abs(change) <= _FLAT:
                    continue
                closed = min(abs(change), abs(position.quantity))
                signed = closed if change > 0 else -closed
                out.append(
                    (pair, _adjustment(pair, con_id, meta, signed, position.average_price, ts, tag))
                )
                change -= signed
            if abs(change) > _FLAT:
                same_side = [pair for pair, p in held if p.quantity * change > 0]
                pair = same_side[0] if len(same_side) == 1 else UNATTRIBUTED
                cost = broker[con_id].avg_cost if con_id in broker else 0.0
                out.append((pair, _adjustment(pair, con_id, meta, change, cost, ts, tag)))
        return out

    def to_state(self) -> dict[str, Any]:
        """Only the attribution is persisted: holdings are rebuilt by replaying the fill stream."""
        return {"pair_of_intent": dict(self.pair_of_intent)}


def reconcile_intent_id(tag: str, pair: str) -> str:
    """The intent id of a reconciliation's adjustments to one pair."""
    return f"{RECONCILE_PREFIX}:{tag}:{pair}"


def _adjustment(
    pair: str, con_id: int, meta: _Meta, signed: float, price: float, ts: float, tag: str
) -> Fill:
    side = "BUY" if signed > 0 else "SELL"
    return Fill(
        ts=ts,
        exec_id=f"{RECONCILE_PREFIX}:{tag}:{pair}:{con_id}:{side}",
        order_id=0,
        perm_id=0,
        intent_id=reconcile_intent_id(tag, pair),
        symbol=meta.symbol,
        local_symbol=meta.local_symbol,
        con_id=con_id,
        sec_type=meta.sec_type,
        side=Side(side),
        quantity=abs(signed),
        price=max(price, 0.0),
        multiplier=meta.multiplier,
        commission=0.0,
    )

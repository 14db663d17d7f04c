"""The book: positions, average cost and P&L per instrument and per pair, fed with fills.

Pure. Fills are attributed to a pair through their intent (orderRef -> pair_id); a fill whose
intent is unknown goes to the pair "unattributed" (orders placed outside this system).

Accounting (average cost, the convention IB's portfolio uses):
* a fill that opens or adds: avg_cost = (|q| avg_cost + qty price) / (|q| + qty);
* a fill that reduces: realized += (price - avg_cost) x closed x multiplier x sign(q), where
  sign(q) is +1 for a long position being sold, -1 for a short being bought back;
* a fill that crosses zero closes the old position then opens the rest at the fill price;
* unrealized = (mark - avg_cost) x q x multiplier, with the mark a mid per share;
* commissions (USD, every IB commission report, including a BAG-level one) are summed apart;
  total = realized + unrealized - commissions.
Option prices are per share and their multiplier 100; a BAG-level fill (sec_type "BAG") moves
no position: IB also reports each leg's execution, and those carry the positions.
Fills are idempotent by exec_id, so replaying the fill stream or IB's executions is harmless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trading.bus import Fill, Position, Side

__all__ = ["UNATTRIBUTED", "Book", "Holding"]

UNATTRIBUTED = "unattributed"
_EPS = 1e-9


@dataclass(slots=True)
class Holding:
    """One instrument held by one pair."""

    con_id: int
    symbol: str
    local_symbol: str
    sec_type: str  # STK / OPT
    multiplier: float
    quantity: float = 0.0  # shares or contracts, signed
    avg_cost: float = 0.0  # per share
    realized_usd: float = 0.0
    commissions_usd: float = 0.0

    def unrealized_usd(self, mark: float | None) -> float:
        if mark is None or abs(self.quantity) < _EPS:
            return 0.0
        return (mark - self.avg_cost) * self.quantity * self.multiplier

    def apply(self, side: Side, quantity: float, price: float) -> float:
        """Apply a trade; returns the realized P&L it produced (USD)."""
        signed = quantity if side is Side.BUY else -quantity
        q = self.quantity
        realized = 0.0
        if abs(q) < _EPS or (q > 0) == (signed > 0):
            new_q = q + signed
            self.avg_cost = (abs(q) * self.avg_cost + quantity * price) / abs(new_q)
            self.quantity = new_q
        else:
            closed = min(abs(q), quantity)
            realized = (price - self.avg_cost) * closed * self.multiplier * (1 if q > 0 else -1)
            rest = quantity - closed
            self.quantity = q + (closed if q < 0 else -closed)
            if rest > _EPS:
                self.quantity = rest if signed > 0 else -rest
                self.avg_cost = price
            elif abs(self.quantity) < _EPS:
                self.quantity = 0.0
                self.avg_cost = 0.0
        self.realized_usd += realized
        return realized


@dataclass
class Book:
    """Holdings by pair and conId; P&L per leg and per pair given marks (mid per share)."""

    holdings: dict[str, dict[int, Holding]] = field(default_factory=dict)
    pair_of_intent: dict[str, str] = field(default_factory=dict)
    seen_exec_ids: set[str] = field(default_factory=set)
    commissions_usd: float = 0.0

    def attribute(self, intent_id: str, pair_id: str) -> None:
        """Fills of this intent belong to this pair."""
        self.pair_of_intent[intent_id] = pair_id

    def apply_fill(self, fill: Fill, pair_id: str | None = None) -> bool:
        """Apply an execution once (by exec_id); returns False when already applied."""
        if fill.exec_id in self.seen_exec_ids:
            return False
        for name in ("quantity", "price", "commission", "multiplier"):
            value = getattr(fill, name)
            if not math.isfinite(value):
                raise ValueError(f"fill {fill.exec_id}: {name} must be finite, got {value!r}")
        if fill.quantity <= 0:
            raise ValueError(f"fill {fill.exec_id}: quantity must be > 0, got {fill.quantity!r}")
        self.seen_exec_ids.add(fill.exec_id)
        pair = pair_id or self.pair_of_intent.get(fill.intent_id, UNATTRIBUTED)
        self.commissions_usd += fill.commission
        if fill.sec_type == "BAG":
            self._pair(pair).setdefault(0, Holding(0, fill.symbol, "BAG", "BAG", 1.0))
            self._pair(pair)[0].commissions_usd += fill.commission
            return True
        holding = self._pair(pair).get(fill.con_id)
        if holding is None:
            holding = Holding(
                fill.con_id, fill.symbol, fill.local_symbol, fill.sec_type, fill.multiplier
            )
            self._pair(pair)[fill.con_id] = holding
        holding.apply(fill.side, fill.quantity, fill.price)
        holding.commissions_usd += fill.commission
        return True

    def _pair(self, pair_id: str) -> dict[int, Holding]:
        return self.holdings.setdefault(pair_id, {})

    # queries --------------------------------------------------------------------------------

    def pairs(self) -> list[str]:
        return sorted(self.holdings)

    def pair_holdings(self, pair_id: str) -> list[Holding]:
        """Open holdings of a pair (quantity non-zero), BAG commission buckets excluded."""
        return [
            h
            for h in self.holdings.get(pair_id, {}).values()
            if h.sec_type != "BAG" and abs(h.quantity) > _EPS
        ]

    def open_pairs(self) -> list[str]:
        return [p for p in self.pairs() if self.pair_holdings(p)]

    def quantity(self, con_id: int, pair_id: str | None = None) -> float:
        """Net quantity of an instrument, in one pair or across all."""
        pairs = [pair_id] if pair_id is not None else list(self.holdings)
        return sum(
            self.holdings[p][con_id].quantity
            for p in pairs
            if p in self.holdings and con_id in self.holdings[p]
        )

    def net_holdings(self) -> dict[int, Holding]:
        """Holdings summed across pairs by conId (avg cost weighted by quantity)."""
        out: dict[int, Holding] = {}
        for pair in self.holdings.values():
            for h in pair.values():
                if h.sec_type == "BAG":
                    continue
                agg = out.get(h.con_id)
                if agg is None:
                    agg = out[h.con_id] = Holding(
                        h.con_id, h.symbol, h.local_symbol, h.sec_type, h.multiplier
                    )
                cost = agg.avg_cost * agg.quantity + h.avg_cost * h.quantity
                agg.quantity += h.quantity
                agg.avg_cost = cost / agg.quantity if abs(agg.quantity) > _EPS else 0.0
                agg.realized_usd += h.realized_usd
                agg.commissions_usd += h.commissions_usd
        return out

    def pair_pnl(self, pair_id: str, marks: dict[int, float]) -> dict[str, float]:
        """realized, unrealized, commissions and total (USD) of one pair."""
        hs = self.holdings.get(pair_id, {})
        realized = sum(h.realized_usd for h in hs.values())
        unrealized = sum(h.unrealized_usd(marks.get(h.con_id)) for h in hs.values())
        commissions = sum(h.commissions_usd for h in hs.values())
        return {
            "realized": realized,
            "unrealized": unrealized,
            "commissions": commissions,
            "total": realized + unrealized - commissions,
        }

    def total_pnl(self, marks: dict[int, float]) -> dict[str, float]:
        out = {"realized": 0.0, "unrealized": 0.0, "commissions": 0.0, "total": 0.0}
        for pair in self.holdings:
            for k, v in self.pair_pnl(pair, marks).items():
                out[k] += v
        return out

    def positions(self, marks: dict[int, float], ts: float) -> list[Position]:
        """Bus Position messages, one per instrument held (net across pairs)."""
        out = []
        for h in self.net_holdings().values():
            if abs(h.quantity) < _EPS and abs(h.realized_usd) < _EPS:
                continue
            mark = marks.get(h.con_id)
            out.append(
                Position(
                    symbol=h.symbol,
                    local_symbol=h.local_symbol,
                    con_id=h.con_id,
                    sec_type=h.sec_type,
                    quantity=h.quantity,
                    avg_cost=h.avg_cost,
                    multiplier=h.multiplier,
                    market_price=mark,
                    unrealized_pnl=h.unrealized_usd(mark),
                    realized_pnl=h.realized_usd,
                    ts=ts,
                )
            )
        return out

    def to_state(self) -> dict[str, Any]:
        """Only the attribution is persisted: holdings are rebuilt by replaying the fill stream."""
        return {"pair_of_intent": dict(self.pair_of_intent)}

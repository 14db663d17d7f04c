"""Intents the risk service makes itself: flatten a pair, repair a legged intent.

Pure. Prices are marketable limits: mid moved `aggressiveness_bp` towards crossing (buy above
the mid, sell below), inside the gate's price band so the gate passes them. Quantities are whole
units: buy-write units of 100 shares + 1 call, TLTW shares.

Flattening a pair reads its holdings by conId: each short call with at least 100 shares per
contract of long stock becomes a SELL of that many buy-write units (a long call with short stock
a BUY); stock left over after the buy-writes (an assignment took the call, or the call expired)
and TLTW shares become STOCK legs. A call without its stock cannot be sent as a leg kind the
bus knows; it is reported in `unflattened` for an alert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trading.bus import IntentLeg, IntentPurpose, LegKind, OrderIntent, Side, SignalAction
from trading.domain.pair import DEFAULT_UNDERLYING
from trading.execution.book import Holding
from trading.execution.marks import BUY_WRITE_SHARES, Marks
from trading.execution.tracking import LeggingBreach, TrackedLeg, reverse_side

__all__ = ["FlattenPlan", "flatten_pair", "marketable_price", "repair_legging"]


def marketable_price(mid: float, side: Side, aggressiveness_bp: float) -> float:
    """mid x (1 +/- bp/10^4), rounded to the cent away from the mid (towards crossing)."""
    if not math.isfinite(mid) or mid <= 0:
        raise ValueError(f"mid must be finite and > 0, got {mid!r}")
    factor = aggressiveness_bp / 1e4
    if side is Side.BUY:
        return math.ceil(mid * (1 + factor) * 100 - 1e-6) / 100
    return max(math.floor(mid * (1 - factor) * 100 + 1e-6) / 100, 0.01)


@dataclass(frozen=True, slots=True)
class FlattenPlan:
    intent: OrderIntent | None
    unflattened: tuple[str, ...]  # holdings no leg could close, with the reason


def flatten_pair(
    pair_id: str,
    holdings: list[Holding],
    marks: Marks,
    intent_id: str,
    now: float,
    purpose: IntentPurpose = IntentPurpose.FLATTEN,
    aggressiveness_bp: float = 25.0,
    why: dict[str, Any] | None = None,
    underlying: str = DEFAULT_UNDERLYING,
) -> FlattenPlan:
    """An intent closing every holding of a pair (None when it holds nothing); each call is
    closed as a buy-write with ``underlying``, the pair's stock the calls are written on."""
    stocks = {h.con_id: h for h in holdings if h.sec_type == "STK"}
    calls = [h for h in holdings if h.sec_type == "OPT"]
    stock_left = {c: h.quantity for c, h in stocks.items()}
    tlt_id = next((c for c, h in stocks.items() if h.symbol == underlying), None)
    if tlt_id is None:
        tlt_id = marks.con_id_by_symbol.get(underlying)
    legs: list[IntentLeg] = []
    unflattened: list[str] = []
    for call in calls:
        units_short = -call.quantity  # short call = long buy-write units
        have = stock_left.get(tlt_id, 0.0) if tlt_id else 0.0
        if units_short > 0 and have > 0:
            units = int(min(units_short, have // BUY_WRITE_SHARES))
        elif units_short < 0 and have < 0:
            units = -int(min(-units_short, -have // BUY_WRITE_SHARES))
        else:
            units = 0
        if units == 0 or tlt_id is None:
            unflattened.append(f"{call.local_symbol} x {call.quantity:g}: no stock to pair with")
            continue
        side = Side.SELL if units > 0 else Side.BUY
        mid = marks.buy_write_mid(tlt_id, call.con_id)
        if mid is None:
            unflattened.append(f"{call.local_symbol}: no mark for the buy-write")
            continue
        legs.append(
            IntentLeg(
                kind=LegKind.BUY_WRITE,
                symbol=underlying,
                side=side,
                quantity=abs(units),
                limit_price=marketable_price(mid, side, aggressiveness_bp),
                con_id=tlt_id,
                option_con_id=call.con_id,
                option_strike=call_strike(call, marks),
                option_expiry=call_expiry(call, marks),
            )
        )
        stock_left[tlt_id] = stock_left[tlt_id] - units * BUY_WRITE_SHARES
        if abs(units) != abs(units_short):
            unflattened.append(
                f"{call.local_symbol}: {abs(units_short) - abs(units):g} contracts without stock"
            )
    for con_id, q in stock_left.items():
        shares = round(q)
        if shares == 0:
            continue
        side = Side.SELL if shares > 0 else Side.BUY
        mid = marks.mid(con_id)
        if mid is None:
            unflattened.append(f"{stocks[con_id].symbol}: no mark")
            continue
        legs.append(
            IntentLeg(
                kind=LegKind.STOCK,
                symbol=stocks[con_id].symbol,
                side=side,
                quantity=abs(shares),
                limit_price=marketable_price(mid, side, aggressiveness_bp),
                con_id=con_id,
            )
        )
    if not legs:
        return FlattenPlan(None, tuple(unflattened))
    action = SignalAction.STOP if purpose is IntentPurpose.STOP else SignalAction.EXIT
    intent = OrderIntent(
        intent_id=intent_id,
        pair_id=pair_id,
        ts=now,
        purpose=purpose,
        action=action,
        legs=tuple(legs),
        why=why or {},
    )
    return FlattenPlan(intent, tuple(unflattened))


def call_strike(call: Holding, marks: Marks) -> float | None:
    mark = marks.get(call.con_id)
    return mark.strike if mark and mark.strike else None


def call_expiry(call: Holding, marks: Marks) -> str | None:
    mark = marks.get(call.con_id)
    return mark.expiry if mark and mark.expiry else None


def repair_legging(
    breach: LeggingBreach,
    legs: list[TrackedLeg],
    marks: Marks,
    now: float,
    aggressiveness_bp: float = 25.0,
) -> OrderIntent | None:
    """The intent that balances a legged intent (its working orders must be cancelled first).

    complete: each lagging leg buys/sells up to the most-filled fraction, same side;
    unwind: each leading leg reverses its excess over the least-filled fraction.
    Quantities round down to whole units, so a repair never overshoots the target.
    """
    fractions = [t.fill_fraction for t in legs]
    target = max(fractions) if breach.complete else min(fractions)
    out: list[IntentLeg] = []
    for t in legs:
        want = target * t.leg.quantity
        gap = want - t.filled
        units = math.floor(abs(gap) + 1e-9)
        if units == 0:
            continue
        side = t.leg.side if gap > 0 else reverse_side(t.leg.side)
        if t.leg.kind is LegKind.BUY_WRITE:
            assert t.leg.option_con_id is not None
            mid = marks.buy_write_mid(t.leg.con_id, t.leg.option_con_id)
        else:
            mid = marks.mid(t.leg.con_id)
        if mid is None:
            raise ValueError(
                f"no mark for {t.leg.symbol} (con_id {t.leg.con_id}) to repair "
                f"intent {breach.intent_id}"
            )
        out.append(
            IntentLeg(
                kind=t.leg.kind,
                symbol=t.leg.symbol,
                side=side,
                quantity=units,
                limit_price=marketable_price(mid, side, aggressiveness_bp),
                con_id=t.leg.con_id,
                option_con_id=t.leg.option_con_id,
                option_expiry=t.leg.option_expiry,
                option_strike=t.leg.option_strike,
            )
        )
    if not out:
        return None
    suffix = "complete" if breach.complete else "unwind"
    purpose = breach.purpose if breach.complete else IntentPurpose.UNWIND
    if purpose not in (IntentPurpose.FLATTEN, IntentPurpose.UNWIND, IntentPurpose.STOP):
        purpose = IntentPurpose.UNWIND
    return OrderIntent(
        intent_id=f"{breach.intent_id}:{suffix}",
        pair_id=breach.pair_id,
        ts=now,
        purpose=purpose,
        action=SignalAction.EXIT,
        legs=tuple(out),
        why={"legging": breach.intent_id, "fractions": list(breach.fractions)},
    )

"""The calls a pair holds: when one must be closed, and the pair's rebalance after IB settles one.

Pure: no I/O, no clock reads (the engine, `trading.execution.engine`, passes the exchange date).

  expiry backstop: a pair holding a call, short (a bought buy-write) or long (a sold one:
          short TLT, long call), `close_short_call_sessions_before_expiry` sessions (or fewer)
          from its expiry is flattened: the strategy should have rolled it;
  early assignment: a short call the quant core flags as likely to be assigned before TLT's
          next ex-date (time value below the dividend, in the money) is closed with its pair;
  assignment, exercise or expiry anyway: IB reports the settlement as executions without an
          orderRef (the call closed at 0, the stock delivered at the strike when it was in the
          money); they are booked to the pair holding the call (the delivered shares with
          them), and the pair is brought back into balance: with u contracts held before and
          u' after, TLTW is cut to u'/u of its holding and TLT to -100 x (net contracts left)
          (a short call pairs with long stock), never past zero; a pair with no call left is
          flattened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from trading.bus import (
    SETTLED_TLTW_SHARES_AFTER,
    SETTLED_UNITS_AFTER,
    SETTLED_UNITS_BEFORE,
    IntentLeg,
    IntentPurpose,
    LegKind,
    OrderIntent,
    Side,
    SignalAction,
)
from trading.domain.market_hours import MarketCalendar
from trading.domain.options import early_assignment_risk
from trading.domain.pair import DEFAULT_UNDERLYING, PairSpec
from trading.execution.book import Holding
from trading.execution.intents import marketable_price
from trading.execution.marks import Marks

__all__ = [
    "SettlementRebalance",
    "call_close_reason",
    "settlement_intent",
    "settlement_rebalance",
]


DEFAULT_PAIR = PairSpec()


def _yyyymmdd(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def call_close_reason(
    pair: str,
    holding: Holding,
    expiry_text: str,
    strike: float,
    as_of: date,
    sessions_before_expiry: int,
    calendar: MarketCalendar,
    marks: Marks,
    underlying: str = DEFAULT_UNDERLYING,
) -> str:
    """Why the pair holding this call (``expiry_text`` YYYYMMDD, ``strike``) must be closed on
    ``as_of``: the expiry backstop (a short or a long call) or a likely early assignment (a
    short call only, against ``underlying``'s next dividend); "" when it may be held."""
    held = "short" if holding.quantity < 0 else "long"
    expiry = _yyyymmdd(expiry_text)
    sessions = sessions_before_expiry
    deadline = calendar.add_sessions(expiry, -sessions) if sessions else expiry
    if as_of >= deadline:
        return (
            f"{held} call {holding.local_symbol} expires {expiry} and was not rolled "
            f"by {deadline}: closing pair {pair}"
        )
    dividend = marks.dividends.get(underlying)
    tlt_id = marks.con_id_by_symbol.get(underlying)
    if (
        holding.quantity < 0
        and dividend is not None
        and dividend.next_ex_date
        and tlt_id is not None
    ):
        # Only the holder exercises early: a long call is ours to keep.
        call, spot = marks.mid(holding.con_id), marks.mid(tlt_id)
        if call is not None and spot is not None:
            risk = early_assignment_risk(
                call,
                spot,
                strike,
                expiry,
                dividend.next_amount,
                _yyyymmdd(dividend.next_ex_date),
                as_of,
                calendar,
            )
            if risk.likely:
                return f"early assignment likely on {holding.local_symbol}: {risk.message}"
    return ""


@dataclass(frozen=True, slots=True)
class SettlementRebalance:
    """The stock trades that bring a pair back into balance after IB settled some of its calls.

    ``legs``: marketable STOCK legs (reduce only); ``unmarked``: what could not be traded for
    want of a mark, for an alert; ``tltw_kept``: the TLTW shares the pair keeps (the strategy
    shrinks its record of the pair to them)."""

    legs: tuple[IntentLeg, ...]
    unmarked: tuple[str, ...]
    tltw_kept: float


def settlement_rebalance(
    pair: str,
    holdings: list[Holding],
    units_before: float,
    units_after: float,
    marks: Marks,
    aggressiveness_bp: float,
    pair_spec: PairSpec = DEFAULT_PAIR,
) -> SettlementRebalance:
    """TLTW cut to ``units_after / units_before`` of its holding, TLT to -100 x (net contracts
    left); a target on the other side of a holding closes it, no more."""
    tlt_target = -100.0 * sum(h.quantity for h in holdings if h.sec_type == "OPT")
    tltw_kept = 0.0
    legs = []
    unmarked = []
    for h in holdings:
        if h.sec_type != "STK":
            continue
        if h.symbol == pair_spec.underlying:
            target = tlt_target
        else:
            target = h.quantity * units_after / units_before
        # Reduce only: a target on the other side of the holding closes it, no more.
        if target * h.quantity <= 0:
            target = 0.0
        elif abs(target) > abs(h.quantity):
            target = h.quantity
        excess = round(h.quantity - target)
        if h.symbol == pair_spec.etf:
            tltw_kept = abs(h.quantity - excess)
        if excess == 0:
            continue
        mid = marks.mid(h.con_id)
        if mid is None:
            unmarked.append(
                f"pair {pair}: no mark for {h.symbol} to trade {-excess:+d} after the settlement"
            )
            continue
        side = Side.SELL if excess > 0 else Side.BUY
        legs.append(
            IntentLeg(
                LegKind.STOCK,
                h.symbol,
                side,
                abs(excess),
                marketable_price(mid, side, aggressiveness_bp),
                h.con_id,
            )
        )
    return SettlementRebalance(tuple(legs), tuple(unmarked), tltw_kept)


def settlement_intent(
    pair: str,
    intent_id: str,
    now: float,
    rebalance: SettlementRebalance,
    reason: str,
    units_before: float,
    units_after: float,
) -> OrderIntent:
    """Risk's UNWIND carrying ``rebalance``'s legs; its ``why`` tells the strategy the
    contracts before and after and the TLTW shares kept (`trading.bus` ``SETTLED_*``)."""
    return OrderIntent(
        intent_id,
        pair,
        now,
        IntentPurpose.UNWIND,
        SignalAction.EXIT,
        rebalance.legs,
        {
            "reason": reason,
            # The strategy shrinks its record of the pair to what is left.
            SETTLED_UNITS_BEFORE: units_before,
            SETTLED_UNITS_AFTER: units_after,
            SETTLED_TLTW_SHARES_AFTER: rebalance.tltw_kept,
        },
    )

"""The pair's rebalance after IB settles some of its calls (trading.execution.calls), by hand.

A short spread holds long buy-writes (long TLT, short calls) against short TLTW. With u
contracts before and u' after, TLTW is cut to u'/u of its holding and TLT to -100 x (net
contracts left), reduce only. Prices are marketable: 25 bp past the mid, to the cent.
"""

from __future__ import annotations

from tests.risk.helpers import CALL_ID, TLT_ID, TLTW_ID, quote
from trading.bus import (
    SETTLED_TLTW_SHARES_AFTER,
    SETTLED_UNITS_AFTER,
    SETTLED_UNITS_BEFORE,
    IntentLeg,
    IntentPurpose,
    LegKind,
    Side,
    SignalAction,
)
from trading.execution.book import Holding
from trading.execution.calls import settlement_intent, settlement_rebalance
from trading.execution.marks import Marks


def held(con_id: int, symbol: str, quantity: float) -> Holding:
    sec_type = "OPT" if con_id == CALL_ID else "STK"
    multiplier = 100.0 if sec_type == "OPT" else 1.0
    return Holding(con_id, symbol, symbol, sec_type, multiplier, quantity, 0.0, 0.0, 0.0)


def marks(tltw: bool = True) -> Marks:
    m = Marks()
    m.update(quote("TLT", TLT_ID, 89.99, 90.01))  # mid 90.00
    if tltw:
        m.update(quote("TLTW", TLTW_ID, 24.99, 25.01))  # mid 25.00
    return m


def test_one_of_three_calls_assigned_sells_the_extra_tlt_and_buys_back_a_third_of_the_tltw():
    # Before: +300 TLT, -3 calls, -900 TLTW. IB assigned one call, the shares not yet delivered.
    holdings = [held(TLT_ID, "TLT", 300), held(CALL_ID, "TLT", -2), held(TLTW_ID, "TLTW", -900)]

    plan = settlement_rebalance("p1", holdings, 3, 2, marks(), 25.0)

    # TLT to -100 x -2 = 200: sell 100 at floor(90.00 x 0.9975, cent) = 89.77.
    # TLTW to -900 x 2/3 = -600: buy 300 at ceil(25.00 x 1.0025, cent) = 25.07.
    assert plan.legs == (
        IntentLeg(LegKind.STOCK, "TLT", Side.SELL, 100, 89.77, TLT_ID),
        IntentLeg(LegKind.STOCK, "TLTW", Side.BUY, 300, 25.07, TLTW_ID),
    )
    assert plan.unmarked == ()
    assert plan.tltw_kept == 600


def test_the_rebalance_only_reduces_a_holding_never_grows_or_flips_it():
    # TLT short against a short call (target +100, the other side): closed, not flipped.
    flip = settlement_rebalance("p1", [held(TLT_ID, "TLT", -50), held(CALL_ID, "TLT", -1)], 2, 1,
                                marks(), 25.0)  # fmt: skip
    assert flip.legs == (IntentLeg(LegKind.STOCK, "TLT", Side.BUY, 50, 90.23, TLT_ID),)
    # 50 TLT against two short calls (target 200): kept, not bought up.
    grow = settlement_rebalance("p1", [held(TLT_ID, "TLT", 50), held(CALL_ID, "TLT", -2)], 3, 2,
                                marks(), 25.0)  # fmt: skip
    assert grow.legs == ()


def test_a_holding_without_a_mark_is_reported_not_traded():
    holdings = [held(TLT_ID, "TLT", 200), held(CALL_ID, "TLT", -2), held(TLTW_ID, "TLTW", -900)]

    plan = settlement_rebalance("p1", holdings, 3, 2, marks(tltw=False), 25.0)

    assert plan.legs == ()
    assert plan.unmarked == ("pair p1: no mark for TLTW to trade +300 after the settlement",)
    assert plan.tltw_kept == 600


def test_the_settlement_intent_tells_the_strategy_what_is_left():
    holdings = [held(TLT_ID, "TLT", 200), held(CALL_ID, "TLT", -2), held(TLTW_ID, "TLTW", -900)]
    plan = settlement_rebalance("p1", holdings, 3, 2, marks(), 25.0)

    intent = settlement_intent("p1", "rebalance-p1-1-0", 1.0, plan, "assigned", 3, 2)

    assert (intent.intent_id, intent.pair_id, intent.ts) == ("rebalance-p1-1-0", "p1", 1.0)
    assert intent.purpose is IntentPurpose.UNWIND and intent.action is SignalAction.EXIT
    assert intent.legs == plan.legs
    assert intent.why == {
        "reason": "assigned",
        SETTLED_UNITS_BEFORE: 3,
        SETTLED_UNITS_AFTER: 2,
        SETTLED_TLTW_SHARES_AFTER: 600,
    }

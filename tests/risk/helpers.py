"""Builders shared by the risk tests: intents, fills and marks with round numbers."""

from __future__ import annotations

from trading.bus import (
    Fill,
    IntentLeg,
    IntentPurpose,
    LegKind,
    OptionQuote,
    OrderIntent,
    Quote,
    Side,
    SignalAction,
    SpreadPoint,
)

TLT_ID = 15547841
TLTW_ID = 545186218
CALL_ID = 700000083
NOW = 1_793_631_600.0  # 2026-11-02 10:00 New York (EST), a Monday: the market is open
SUNDAY = 1_793_545_200.0  # 2026-11-01 10:00 New York: closed


def quote(symbol: str, con_id: int, bid: float, ask: float, ts: float = NOW) -> Quote:
    return Quote(symbol, con_id, bid, ask, 100.0, 100.0, None, ts, ts)


def option(bid: float, ask: float, delta: float = 0.5, vega: float = 0.10, ts: float = NOW):
    return OptionQuote(
        "TLT",
        CALL_ID,
        "TLT   261218C00090000",
        "20261218",
        90.0,
        "C",
        bid,
        ask,
        10.0,
        10.0,
        0.16,
        delta,
        0.05,
        vega,
        -0.02,
        90.0,
        0.5 * (bid + ask),
        ts,
        ts,
    )


def buy_write_leg(side: Side, units: int, limit: float) -> IntentLeg:
    return IntentLeg(
        LegKind.BUY_WRITE, "TLT", side, units, limit, TLT_ID, CALL_ID, "20261218", 90.0
    )


def tltw_leg(side: Side, shares: int, limit: float) -> IntentLeg:
    return IntentLeg(LegKind.STOCK, "TLTW", side, shares, limit, TLTW_ID)


def intent(
    *legs: IntentLeg,
    intent_id: str = "i-1",
    pair_id: str = "p-1",
    purpose: IntentPurpose = IntentPurpose.ENTRY,
) -> OrderIntent:
    action = (
        SignalAction.ENTER_SHORT_SPREAD if purpose is IntentPurpose.ENTRY else SignalAction.EXIT
    )
    return OrderIntent(intent_id, pair_id, NOW, purpose, action, tuple(legs))


def fill(
    exec_id: str,
    con_id: int,
    side: Side,
    qty: float,
    price: float,
    *,
    sec_type: str = "STK",
    commission: float = 0.0,
    intent_id: str = "i-1",
    symbol: str = "TLT",
) -> Fill:
    mult = 100.0 if sec_type == "OPT" else 1.0
    return Fill(
        NOW,
        exec_id,
        1,
        1,
        intent_id,
        symbol,
        symbol,
        con_id,
        sec_type,
        side,
        qty,
        price,
        mult,
        commission,
    )


def runaway_short_spread(ts: float = NOW) -> SpreadPoint:
    """A short spread whose z (4.5) is past the default stop band (4.0)."""
    return SpreadPoint(
        ts, 88.4, 24.0, 1.0, 0.0, 0.01, 0.0, 0.001, 4.5, 2.0, 0.5, 4.0, "delta", "SHORT_SPREAD",
        CALL_ID, 90.0, "20261218",
    )  # fmt: skip

"""The execution engine and its gate take the pair's symbols from a PairSpec: the same book
under other names (AAA for TLT, BBB for TLTW) gets the same decisions, measures and closing
intents, named after its own pair. Pure: no I/O."""

from __future__ import annotations

import dataclasses

import pytest

from tests.risk.helpers import (
    CALL_ID,
    NOW,
    TLT_ID,
    TLTW_ID,
    fill,
    intent,
    option,
    quote,
    runaway_short_spread,
)
from tests.risk.test_engine import BW_MID, submitted
from trading.bus import IntentLeg, IntentPurpose, LegKind, Side
from trading.domain.orders import StatusUpdate
from trading.domain.pair import PairSpec
from trading.execution.book import Book
from trading.execution.engine import ExecutionEngine
from trading.execution.gate import GateView, RiskGate
from trading.execution.marks import Marks
from trading.execution.state import TradingState
from trading.execution.tracking import OrderTracker
from trading.settings import RiskSettings

OTHER = PairSpec("AAA", "BBB", pair_id="AAABW-BBB")
NAMES = {"TLT": "AAA", "TLTW": "BBB"}


def named(symbol: str, pair: PairSpec) -> str:
    """TLT's or TLTW's role in ``pair``."""
    return pair.underlying if symbol == "TLT" else pair.etf


def marks(pair: PairSpec) -> Marks:
    m = Marks()
    m.update(quote(pair.underlying, TLT_ID, 89.99, 90.01))
    m.update(quote(pair.etf, TLTW_ID, 23.99, 24.01))
    m.update(dataclasses.replace(option(1.55, 1.65, delta=0.5, vega=0.10), symbol=pair.underlying))
    return m


def entry(pair: PairSpec, units: int, shares: int):
    return intent(
        IntentLeg(
            LegKind.BUY_WRITE,
            pair.underlying,
            Side.BUY,
            units,
            BW_MID,
            TLT_ID,
            CALL_ID,
            "20261218",
            90.0,
        ),
        IntentLeg(LegKind.STOCK, pair.etf, Side.SELL, shares, 24.0, TLTW_ID),
    )


def held_book(pair: PairSpec) -> Book:
    """One buy-write unit long (100 underlying, a short call) and 375 ETF shares short."""
    book = Book()
    book.apply_fill(fill("f1", TLT_ID, Side.BUY, 100, 90.00, symbol=pair.underlying), "p-1")
    book.apply_fill(fill("f2", CALL_ID, Side.SELL, 1, 1.60, sec_type="OPT", symbol="c"), "p-1")
    book.apply_fill(fill("f3", TLTW_ID, Side.SELL, 375, 24.00, symbol=pair.etf), "p-1")
    return book


def view(pair: PairSpec) -> GateView:
    return GateView(held_book(pair), OrderTracker(), marks(pair), TradingState.ACTIVE, 0.0)


@pytest.mark.parametrize(
    ("units", "shares", "codes"),
    [
        (1, 375, []),  # inside every limit
        (1, 2_000, ["POSITION_LIMIT"]),  # 2,375 ETF shares short > max_tltw_shares 2,000
        (3, 375, ["POSITION_LIMIT"]),  # 4 units = 400 underlying shares > max 3 units
    ],
)
def test_the_gate_decides_a_renamed_pair_as_it_decides_tlt_tltw(units, shares, codes):
    limits = RiskSettings(max_buy_write_units=3, max_tltw_shares=2_000, check_market_hours=False)
    default = RiskGate(limits).decide(entry(PairSpec(), units, shares), view(PairSpec()), NOW)
    other = RiskGate(limits, pair=OTHER).decide(entry(OTHER, units, shares), view(OTHER), NOW)
    assert sorted({r.code for r in default.reasons}) == codes
    assert [(r.code, r.message) for r in other.reasons] == [
        (r.code, r.message) for r in default.reasons
    ]


def test_the_gates_measures_know_the_renamed_underlying():
    # Net delta in underlying shares: +100 stock, -1 call x 100 x 0.5, and the short ETF's
    # delta through the index, -375 x beta 1 x 24.00 / (90.00 - C) x (1 - delta_C), with no
    # spread point and a status check's empty intent: no index call, C = 0 and delta_C 0.5.
    expected = 100.0 - 50.0 - 375 * 24.00 / 90.00 * 0.5
    assert expected == pytest.approx(0.0)  # the hedged book is flat in delta
    assert RiskGate(RiskSettings(), pair=OTHER).measures(view(OTHER))[
        "net_delta_shares"
    ] == pytest.approx(expected)
    assert RiskGate(RiskSettings()).measures(view(PairSpec()))["net_delta_shares"] == pytest.approx(
        expected
    )
    # The TLT/TLTW gate does not know AAA: it finds no underlying quote and no ETF delta.
    assert RiskGate(RiskSettings()).measures(view(OTHER))["net_delta_shares"] != pytest.approx(
        expected
    )


def entered_engine(pair: PairSpec, **limits) -> ExecutionEngine:
    e = ExecutionEngine(RiskSettings(**limits), pair=pair)
    e.on_market(quote(pair.underlying, TLT_ID, 89.99, 90.01))
    e.on_market(quote(pair.etf, TLTW_ID, 23.99, 24.01))
    e.on_market(dataclasses.replace(option(1.55, 1.65), symbol=pair.underlying))
    assert e.decide(entry(pair, 1, 375), NOW).approved
    e.order_sent("i-1", 0, 1, NOW)
    e.order_sent("i-1", 1, 2, NOW)
    e.on_fill(fill("f1", TLT_ID, Side.BUY, 100, 90.00, symbol=pair.underlying))
    e.on_fill(fill("f2", CALL_ID, Side.SELL, 1, 1.60, sec_type="OPT", symbol="call"))
    e.on_fill(fill("f3", TLTW_ID, Side.SELL, 375, 24.00, symbol=pair.etf))
    e.on_status(StatusUpdate(1, "Filled", 1, 0, BW_MID), NOW)
    e.on_status(StatusUpdate(2, "Filled", 375, 0, 24.0), NOW)
    return e


def test_the_engine_flattens_a_renamed_pair_with_its_own_symbols():
    e = entered_engine(OTHER, pair_stop_loss_usd=100.0)
    e.on_market(quote("BBB", TLTW_ID, 24.29, 24.31))  # -112.50 USD on the short 375
    (flatten,) = submitted(e.tick(NOW + 1))
    assert flatten.purpose is IntentPurpose.STOP
    legs = {leg.kind: leg for leg in flatten.legs}
    bw, stock = legs[LegKind.BUY_WRITE], legs[LegKind.STOCK]
    assert (bw.symbol, bw.side, bw.quantity, bw.con_id, bw.option_con_id) == (
        "AAA",
        Side.SELL,
        1,
        TLT_ID,
        CALL_ID,
    )
    assert (stock.symbol, stock.side, stock.quantity, stock.con_id) == (
        "BBB",
        Side.BUY,
        375,
        TLTW_ID,
    )


@pytest.mark.parametrize(("pair", "stops"), [(OTHER, 1), (PairSpec(), 0)])
def test_the_z_stop_reads_the_pairs_own_etf(pair, stops):
    # The book holds AAA/BBB; only the engine told that its ETF is BBB sees the short spread.
    e = entered_engine(OTHER)
    e.pair = pair  # the same book, the engine told one pair or the other
    e.on_market(runaway_short_spread())
    flattens = [i for i in submitted(e.tick(NOW)) if i.purpose is IntentPurpose.STOP]
    assert len(flattens) == stops

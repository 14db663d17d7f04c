"""The book: positions, average cost and P&L to the cent, by hand."""

from __future__ import annotations

import pytest

from tests.risk.helpers import CALL_ID, NOW, TLT_ID, TLTW_ID, fill, quote
from trading.bus import Dividends, Side
from trading.execution.book import RECONCILE_PREFIX, UNATTRIBUTED, Book, BrokerPosition


def entered_book() -> Book:
    """Short spread: buy one buy-write (100 TLT at 90.00, one call sold at 1.60), sell 375 TLTW."""
    book = Book()
    book.attribute("i-1", "p-1")
    book.apply_fill(fill("e1", TLT_ID, Side.BUY, 100, 90.00, commission=1.00))
    book.apply_fill(fill("e2", CALL_ID, Side.SELL, 1, 1.60, sec_type="OPT", commission=0.65))
    book.apply_fill(fill("e3", 0, Side.BUY, 1, 8840.0, sec_type="BAG"))
    book.apply_fill(fill("e4", TLTW_ID, Side.SELL, 375, 24.00, commission=1.875, symbol="TLTW"))
    return book


def test_book_pnl_of_an_entered_pair_is_right_to_the_cent():
    book = entered_book()
    marks = {TLT_ID: 90.50, CALL_ID: 1.80, TLTW_ID: 24.10}
    pnl = book.pair_pnl("p-1", marks)
    # TLT +0.50 x 100 = 50; call -(1.80 - 1.60) x 100 = -20; TLTW -(0.10) x 375 = -37.50
    assert pnl["unrealized"] == pytest.approx(-7.50, abs=1e-9)
    assert pnl["commissions"] == pytest.approx(3.525, abs=1e-9)
    assert pnl["total"] == pytest.approx(-11.025, abs=1e-9)
    assert book.quantity(TLT_ID) == 100
    assert book.quantity(CALL_ID) == -1
    assert book.quantity(TLTW_ID) == -375
    assert book.quantity(0) == 0  # a BAG-level execution moves no position


def test_book_realizes_on_reduce_and_reopens_across_zero():
    book = Book()
    book.apply_fill(fill("a", TLT_ID, Side.BUY, 100, 90.00))
    book.apply_fill(fill("b", TLT_ID, Side.BUY, 100, 92.00))  # avg 91.00
    book.apply_fill(fill("c", TLT_ID, Side.SELL, 50, 93.00))  # +2 x 50 = 100
    (holding,) = book.pair_holdings(UNATTRIBUTED)
    assert holding.avg_cost == pytest.approx(91.00)
    assert holding.realized_usd == pytest.approx(100.0)
    book.apply_fill(fill("d", TLT_ID, Side.SELL, 200, 90.00))  # 150 closed at -1: -150; -50 @ 90
    (holding,) = book.pair_holdings(UNATTRIBUTED)
    assert holding.realized_usd == pytest.approx(-50.0)
    assert (holding.quantity, holding.avg_cost) == (-50, pytest.approx(90.00))
    book.apply_fill(fill("e", TLT_ID, Side.BUY, 50, 89.00))  # the short closes at +1 x 50
    assert book.pair_holdings(UNATTRIBUTED) == []
    assert book.pair_pnl(UNATTRIBUTED, {})["realized"] == pytest.approx(0.0)


def test_book_attributes_fills_to_the_pair_of_their_intent():
    book = entered_book()
    book.apply_fill(fill("z", TLTW_ID, Side.BUY, 10, 24.0, symbol="TLTW", intent_id="other"))
    assert book.quantity(TLTW_ID, "p-1") == -375
    assert book.quantity(TLTW_ID, UNATTRIBUTED) == 10
    assert book.quantity(TLTW_ID) == -365
    assert book.open_pairs() == ["p-1", UNATTRIBUTED]


def test_book_ignores_a_replayed_execution():
    book = entered_book()
    assert not book.apply_fill(fill("e1", TLT_ID, Side.BUY, 100, 90.00, commission=1.00))
    assert book.quantity(TLT_ID) == 100
    assert book.pair_pnl("p-1", {})["commissions"] == pytest.approx(3.525)


def test_book_refuses_a_fill_with_non_positive_quantity():
    with pytest.raises(ValueError, match="quantity"):
        Book().apply_fill(fill("x", TLT_ID, Side.BUY, 0, 90.0))


def test_book_option_realized_pnl_uses_the_multiplier():
    book = Book()
    book.apply_fill(fill("s", CALL_ID, Side.SELL, 2, 1.60, sec_type="OPT", commission=1.30))
    book.apply_fill(fill("b", CALL_ID, Side.BUY, 2, 1.10, sec_type="OPT", commission=1.30))
    pnl = book.pair_pnl(UNATTRIBUTED, {})
    assert pnl["realized"] == pytest.approx(100.0)  # (1.60 - 1.10) x 2 x 100
    assert pnl["total"] == pytest.approx(97.40)


def test_book_positions_message_nets_pairs_and_prices_at_the_mark():
    book = entered_book()
    positions = {p.con_id: p for p in book.positions({TLT_ID: 90.5, CALL_ID: 1.8}, 1.0)}
    assert positions[CALL_ID].quantity == -1 and positions[CALL_ID].multiplier == 100
    assert positions[CALL_ID].unrealized_pnl == pytest.approx(-20.0)
    assert positions[TLT_ID].unrealized_pnl == pytest.approx(50.0)
    assert positions[TLTW_ID].market_price is None


def ib_position(con_id: int, quantity: float, avg_cost: float, sec_type: str = "STK"):
    symbol = "TLTW" if con_id == TLTW_ID else "TLT"
    local = "TLT   261218C00090000" if sec_type == "OPT" else symbol
    multiplier = 100.0 if sec_type == "OPT" else 1.0
    return BrokerPosition(con_id, symbol, local, sec_type, multiplier, quantity, avg_cost)


def test_book_agreeing_with_ib_has_no_differences_and_no_adjustments():
    book = entered_book()
    broker = {
        TLT_ID: ib_position(TLT_ID, 100, 90.01),
        CALL_ID: ib_position(CALL_ID, -1, 1.5935, "OPT"),
        TLTW_ID: ib_position(TLTW_ID, -375, 23.995),
    }
    assert book.differences(broker) == {}
    assert book.adjustments(broker, 5.0, "t") == []


def test_book_rebuilt_from_ib_positions_alone_holds_what_ib_holds_at_ibs_cost():
    # the fill history is lost (a new Redis, a day whose executions IB no longer reports)
    book = Book()
    broker = {
        TLT_ID: ib_position(TLT_ID, 100, 90.01),
        CALL_ID: ib_position(CALL_ID, -1, 1.5935, "OPT"),
        TLTW_ID: ib_position(TLTW_ID, -375, 23.995),
    }
    assert book.differences(broker) == {
        TLT_ID: (0.0, 100),
        CALL_ID: (0.0, -1),
        TLTW_ID: (0.0, -375),
    }
    adjustments = book.adjustments(broker, 5.0, "t")
    for pair, adjustment in adjustments:
        book.attribute(adjustment.intent_id, pair)
        assert book.apply_fill(adjustment)
    assert {(p, f.con_id, f.side, f.quantity, f.price) for p, f in adjustments} == {
        (UNATTRIBUTED, TLT_ID, Side.BUY, 100, 90.01),
        (UNATTRIBUTED, CALL_ID, Side.SELL, 1, 1.5935),
        (UNATTRIBUTED, TLTW_ID, Side.SELL, 375, 23.995),
    }
    assert all(f.commission == 0 and f.exec_id.startswith(RECONCILE_PREFIX) for _, f in adjustments)
    assert book.differences(broker) == {}
    held = {h.con_id: (h.local_symbol, h.multiplier) for h in book.pair_holdings(UNATTRIBUTED)}
    assert held[CALL_ID] == ("TLT   261218C00090000", 100.0)
    # booked at IB's cost: no P&L is invented; at marks 90.50 / 1.80 / 24.10:
    # TLT +0.49 x 100 = 49; call -(1.80 - 1.5935) x 100 = -20.65; TLTW -0.105 x 375 = -39.375
    pnl = book.pair_pnl(UNATTRIBUTED, {TLT_ID: 90.50, CALL_ID: 1.80, TLTW_ID: 24.10})
    assert pnl["realized"] == pytest.approx(0.0, abs=1e-9)
    assert pnl["unrealized"] == pytest.approx(49.0 - 20.65 - 39.375, abs=1e-9)


def test_book_missing_an_exit_fill_closes_at_its_own_cost_in_the_pair_that_held_it():
    book = entered_book()  # p-1: TLT +100 @ 90.00, call -1 @ 1.60, TLTW -375 @ 24.00
    broker = {TLT_ID: ib_position(TLT_ID, 100, 90.01)}  # the call and TLTW were closed at IB
    adjustments = book.adjustments(broker, 5.0, "t")
    assert {(p, f.con_id, f.side, f.quantity, f.price) for p, f in adjustments} == {
        ("p-1", CALL_ID, Side.BUY, 1, 1.60),
        ("p-1", TLTW_ID, Side.BUY, 375, 24.00),
    }
    for pair, adjustment in adjustments:
        book.attribute(adjustment.intent_id, pair)
        book.apply_fill(adjustment)
    assert book.differences(broker) == {}
    assert book.pair_pnl("p-1", {})["realized"] == pytest.approx(0.0, abs=1e-9)


def test_book_adjustment_across_zero_closes_the_pair_then_opens_the_rest_at_ibs_cost():
    book = entered_book()
    broker = {
        TLT_ID: ib_position(TLT_ID, -50, 91.00),  # IB is short 50 where the book is long 100
        CALL_ID: ib_position(CALL_ID, -1, 1.5935, "OPT"),
        TLTW_ID: ib_position(TLTW_ID, -375, 23.995),
    }
    adjustments = book.adjustments(broker, 5.0, "t")
    assert [(p, f.side, f.quantity, f.price) for p, f in adjustments] == [
        ("p-1", Side.SELL, 100, 90.00),
        (UNATTRIBUTED, Side.SELL, 50, 91.00),
    ]
    assert len({f.exec_id for _, f in adjustments}) == 2


def test_broker_position_refuses_a_non_finite_quantity():
    with pytest.raises(ValueError, match="quantity"):
        ib_position(TLT_ID, float("nan"), 90.0)


# distributions -----------------------------------------------------------------------------

DAY = 86_400.0


def dividends(symbol: str, ex_date: str, amount: float, pay_date: str = "") -> Dividends:
    return Dividends(symbol, 0.0, 12 * amount, ex_date, amount, NOW - 10 * DAY, pay_date)


def test_the_book_debits_a_short_tltw_and_credits_a_long_tlt_on_their_ex_dates():
    book = entered_book()  # NOW is 2026-11-02: long 100 TLT, short 375 TLTW, since that day
    book.on_market(dividends("TLTW", "20261103", 0.30, "20261106"))
    book.on_market(dividends("TLT", "20261103", 0.28))  # no pay date: three sessions later
    marks = {TLT_ID: 90.00, CALL_ID: 1.60, TLTW_ID: 24.00}
    before = book.pair_pnl("p-1", marks)
    book.on_market(quote("TLT", TLT_ID, 89.99, 90.01, ts=NOW + DAY))  # the ex-date
    on_ex = book.pair_pnl("p-1", marks)
    book.on_market(quote("TLT", TLT_ID, 89.99, 90.01, ts=NOW + 5 * DAY))
    paid = book.pair_pnl("p-1", marks)
    assert before["distributions"] == 0.0
    # -375 x 0.30 + 100 x 0.28 = -112.50 + 28.00
    assert on_ex["distributions"] == pytest.approx(-84.50)
    assert on_ex["distributions_accrued"] == pytest.approx(-84.50)
    assert on_ex["total"] - before["total"] == pytest.approx(-84.50)
    assert paid["distributions"] == pytest.approx(-84.50)
    assert paid["distributions_accrued"] == pytest.approx(0.0)  # both paid by 2026-11-07


def test_an_announcement_seen_again_or_revised_is_booked_once():
    book = entered_book()
    for amount in (0.29, 0.30, 0.30):  # re-announced every few seconds; revised once
        book.on_market(dividends("TLTW", "20261103", amount, "20261106"))
    book.on_market(quote("TLTW", TLTW_ID, 23.69, 23.71, ts=NOW + DAY))
    assert book.total_pnl({})["distributions"] == pytest.approx(-375 * 0.30)


def test_a_bad_announcement_raises_value_error_naming_the_field():
    book = Book()
    with pytest.raises(ValueError, match="next_ex_date"):
        book.on_market(dividends("TLTW", "2026-11-03", 0.30))
    with pytest.raises(ValueError, match="next_pay_date"):
        book.on_market(dividends("TLTW", "20261103", 0.30, "20261399"))
    with pytest.raises(ValueError, match="amount"):
        book.on_market(dividends("TLTW", "20261103", float("nan")))
    assert book.distributions == {}

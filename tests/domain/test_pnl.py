"""Positions, average cost and P&L from fills."""

from __future__ import annotations

import json
import math
from datetime import date

import pytest

from trading.domain.common import Side
from trading.domain.pnl import Book, Distribution, Fill

CALL = "TLT 20240719C91"


def test_average_cost_and_realized_pnl_on_partial_close():
    book = Book()
    book.apply(Fill("TLTW", Side.BUY, 100, 26.00, commission_usd=1.00))
    position = book.apply(Fill("TLTW", Side.BUY, 300, 26.40, commission_usd=1.50))
    assert position.quantity == 400
    assert position.average_price == pytest.approx((100 * 26.00 + 300 * 26.40) / 400)  # 26.30
    position = book.apply(Fill("TLTW", Side.SELL, 150, 26.50, commission_usd=1.00))
    assert position.quantity == 250
    assert position.average_price == pytest.approx(26.30)
    # 150 x (26.50 - 26.30) = 30.00, less 3.50 of commissions.
    assert position.realized_pnl_usd == pytest.approx(26.50)
    assert position.commissions_usd == pytest.approx(3.50)
    leg = book.leg_pnl("TLTW", 26.10)
    assert leg.unrealized_pnl_usd == pytest.approx(250 * (26.10 - 26.30))
    assert leg.total_pnl_usd == pytest.approx(26.50 - 50.0)


def test_short_option_pnl_uses_the_multiplier():
    book = Book()
    book.apply(Fill(CALL, Side.SELL, 2, 1.60, commission_usd=1.30, multiplier=100))
    leg = book.leg_pnl(CALL, 1.20)
    assert leg.unrealized_pnl_usd == pytest.approx(-2 * (1.20 - 1.60) * 100)  # +80
    assert leg.market_value_usd == pytest.approx(-240.0)
    closed = book.apply(Fill(CALL, Side.BUY, 2, 1.10, commission_usd=1.30, multiplier=100))
    assert closed.quantity == 0 and closed.average_price == 0.0
    assert closed.realized_pnl_usd == pytest.approx(2 * 0.50 * 100 - 2.60)


def test_crossing_zero_opens_the_remainder_at_the_fill_price():
    book = Book()
    book.apply(Fill("TLT", Side.BUY, 100, 90.0))
    position = book.apply(Fill("TLT", Side.SELL, 150, 91.0))
    assert position.quantity == -50
    assert position.average_price == 91.0
    assert position.realized_pnl_usd == pytest.approx(100.0)


def test_pair_pnl_sums_the_legs_of_a_buy_write_against_tltw():
    book = Book()
    # One buy-write (100 TLT + 1 short call) against 340 TLTW short, booked leg by leg.
    book.apply_all(
        [
            Fill("TLT", Side.BUY, 100, 90.00, commission_usd=0.50),
            Fill(CALL, Side.SELL, 1, 1.60, commission_usd=0.65, multiplier=100),
            Fill("TLTW", Side.SELL, 340, 26.00, commission_usd=1.70),
        ]
    )
    pair = book.pair_pnl({"TLT": 90.50, CALL: 1.90, "TLTW": 26.10})
    # TLT +50, call -30, TLTW -34; commissions -2.85 realized.
    assert pair.unrealized_pnl_usd == pytest.approx(50.0 - 30.0 - 34.0)
    assert pair.realized_pnl_usd == pytest.approx(-2.85)
    assert pair.total_pnl_usd == pytest.approx(-16.85)
    assert pair.gross_market_value_usd == pytest.approx(9_050 + 190 + 8_874)
    only_buy_write = book.pair_pnl({"TLT": 90.50, CALL: 1.90}, keys=["TLT", CALL])
    assert only_buy_write.unrealized_pnl_usd == pytest.approx(20.0)


def test_book_state_round_trip_through_json():
    book = Book()
    book.apply(Fill("TLTW", Side.BUY, 100, 26.00, commission_usd=1.0))
    restored = Book.from_state(json.loads(json.dumps(book.to_state())))
    assert restored.apply(Fill("TLTW", Side.SELL, 40, 26.2)) == book.apply(
        Fill("TLTW", Side.SELL, 40, 26.2)
    )


def test_bad_fills_and_marks_raise_value_error():
    with pytest.raises(ValueError, match="quantity"):
        Fill("TLT", Side.BUY, 0, 90.0)
    with pytest.raises(ValueError, match="price"):
        Fill("TLT", Side.BUY, 10, math.nan)
    with pytest.raises(ValueError, match="side"):
        Fill("TLT", "HOLD", 10, 90.0)
    book = Book()
    book.apply(Fill("TLT", Side.BUY, 10, 90.0))
    with pytest.raises(ValueError, match="mark"):
        book.leg_pnl("TLT", math.nan)
    with pytest.raises(ValueError, match="no mark"):
        book.pair_pnl({})
    with pytest.raises(ValueError, match="multiplier"):
        book.apply(Fill("TLT", Side.BUY, 1, 90.0, multiplier=100))


def test_numpy_scalars_are_accepted_as_numbers():
    import numpy as np

    book = Book()
    position = book.apply(Fill("TLTW", Side.BUY, np.int64(100), np.float64(26.0)))
    assert position.quantity == 100 and position.average_price == 26.0


# distributions -------------------------------------------------------------------------------

EX_DATE = date(2026, 10, 1)
PAID = date(2026, 10, 6)


def test_a_short_of_1000_tltw_over_a_0_30_ex_date_pays_300_usd():
    book = Book()
    book.apply(Fill("TLTW", Side.SELL, 1000, 24.00), date(2026, 9, 30))
    tltw = {"TLTW": [Distribution(EX_DATE, 0.30, PAID)]}
    # The price drops by the distribution on the ex-date: the short gains it and pays it.
    pnl = book.pair_pnl({"TLTW": 23.70}, distributions=tltw, as_of=EX_DATE)
    assert pnl.distributions.total_usd == pytest.approx(-300.0)
    assert pnl.unrealized_pnl_usd == pytest.approx(300.0)
    assert pnl.total_pnl_usd == pytest.approx(0.0, abs=1e-9)


def test_100_tlt_long_over_a_0_28_ex_date_earns_28_usd_price_change_aside():
    book = Book()
    book.apply(Fill("TLT", Side.BUY, 100, 90.00), date(2026, 9, 30))
    tlt = {"TLT": [Distribution(EX_DATE, 0.28, PAID)]}
    pnl = book.pair_pnl({"TLT": 90.00}, distributions=tlt, as_of=EX_DATE)
    assert pnl.distributions.total_usd == pytest.approx(28.0)
    assert pnl.total_pnl_usd == pytest.approx(28.0)


def test_a_distribution_is_accrued_from_its_ex_date_and_settled_on_its_pay_date():
    book = Book()
    book.apply(Fill("TLT", Side.BUY, 100, 90.00), date(2026, 9, 30))
    paid = [Distribution(EX_DATE, 0.28, PAID)]
    before = book.distribution_pnl("TLT", paid, date(2026, 9, 30))
    accrued = book.distribution_pnl("TLT", paid, date(2026, 10, 5))
    settled = book.distribution_pnl("TLT", paid, PAID)
    assert (before.accrued_usd, before.settled_usd) == (0.0, 0.0)
    assert (accrued.accrued_usd, accrued.settled_usd) == (pytest.approx(28.0), 0.0)
    assert (settled.accrued_usd, settled.settled_usd) == (0.0, pytest.approx(28.0))


def test_only_shares_held_before_the_ex_date_are_entitled():
    book = Book()
    book.apply(Fill("TLTW", Side.BUY, 500, 24.0), date(2026, 9, 29))
    book.apply(Fill("TLTW", Side.BUY, 300, 24.0), EX_DATE)  # bought on the ex-date: not entitled
    book.apply(Fill("TLTW", Side.SELL, 800, 23.8), EX_DATE)  # sold on the ex-date: entitled
    paid = [Distribution(EX_DATE, 0.30, PAID)]
    assert book.held_before("TLTW", EX_DATE) == 500
    assert book.distribution_pnl("TLTW", paid, PAID).total_usd == pytest.approx(150.0)
    # A position opened after the ex-date and one closed before it get nothing.
    later = Book()
    later.apply(Fill("TLTW", Side.SELL, 500, 24.0), date(2026, 10, 2))
    closed = Book()
    closed.apply(Fill("TLTW", Side.BUY, 500, 24.0), date(2026, 9, 28))
    closed.apply(Fill("TLTW", Side.SELL, 500, 24.0), date(2026, 9, 29))
    assert later.distribution_pnl("TLTW", paid, PAID).total_usd == 0.0
    assert closed.distribution_pnl("TLTW", paid, PAID).total_usd == 0.0


def test_distributions_are_a_function_of_the_fills_so_a_replay_books_them_once():
    fills = [
        (Fill("TLTW", Side.SELL, 1000, 24.0), date(2026, 9, 3)),
        (Fill("TLTW", Side.BUY, 400, 23.9), date(2026, 10, 2)),
        (Fill("TLTW", Side.SELL, 100, 24.1), date(2026, 10, 20)),
    ]
    paid = [
        Distribution(date(2026, 9, 1), 0.29, date(2026, 9, 4)),  # before the position
        Distribution(EX_DATE, 0.30, PAID),  # -1000 held
        Distribution(date(2026, 11, 2), 0.31, date(2026, 11, 5)),  # -700 held
    ]
    once, again = Book(), Book()
    for fill, day in fills:
        once.apply(fill, day)
    # The same fills booked out of order (IB's executions after a reconnect), the book
    # restored from its state: the same answer, each distribution counted once.
    for fill, day in reversed(fills):
        again.apply(fill, day)
    expected = -1000 * 0.30 - 700 * 0.31
    as_of = date(2026, 11, 5)
    assert once.distribution_pnl("TLTW", paid, as_of).total_usd == pytest.approx(expected)
    assert again.distribution_pnl("TLTW", paid, as_of).total_usd == pytest.approx(expected)
    restored = Book.from_state(json.loads(json.dumps(once.to_state())))
    assert restored.distribution_pnl("TLTW", paid, as_of).total_usd == pytest.approx(expected)


def test_a_bad_distribution_raises_value_error_naming_the_field():
    with pytest.raises(ValueError, match="amount"):
        Distribution(EX_DATE, math.nan, PAID)
    with pytest.raises(ValueError, match="amount"):
        Distribution(EX_DATE, -0.1, PAID)
    with pytest.raises(ValueError, match="pay_date"):
        Distribution(EX_DATE, 0.3, date(2026, 9, 30))
    with pytest.raises(ValueError, match="as_of"):
        Book().pair_pnl({}, distributions={"TLT": [Distribution(EX_DATE, 0.3, PAID)]})

"""Positions, average cost and P&L from fills."""

from __future__ import annotations

import json
import math

import pytest

from trading.domain.common import Side
from trading.domain.pnl import Book, Fill

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

"""The risk gate: each limit refuses with its own reason; a clean intent passes."""

from __future__ import annotations

import dataclasses

import pytest

from tests.risk.helpers import (
    CALL_ID,
    NOW,
    SUNDAY,
    TLT_ID,
    TLTW_ID,
    buy_write_leg,
    fill,
    intent,
    option,
    quote,
    tltw_leg,
)
from trading.bus import DataHealth, DataStatus, IntentPurpose, Side, encode
from trading.execution.book import Book
from trading.execution.gate import GateView, RiskGate, data_names, flagged_at_send
from trading.execution.marks import Marks
from trading.execution.state import TradingState
from trading.execution.tracking import OrderTracker
from trading.settings import RiskSettings

BW_MID = 100 * 90.00 - 1.60  # 8998.40


def marks(ts: float = NOW) -> Marks:
    m = Marks()
    m.update(quote("TLT", TLT_ID, 89.99, 90.01, ts))
    m.update(quote("TLTW", TLTW_ID, 23.99, 24.01, ts))
    m.update(option(1.55, 1.65, delta=0.5, vega=0.10, ts=ts))
    return m


def view(
    book: Book | None = None,
    m: Marks | None = None,
    state: TradingState = TradingState.ACTIVE,
    daily_pnl: float = 0.0,
    tracker: OrderTracker | None = None,
) -> GateView:
    return GateView(book or Book(), tracker or OrderTracker(), m or marks(), state, daily_pnl)


def entry(units: int = 1, shares: int = 375, bw_limit: float = BW_MID, tltw_limit: float = 24.0):
    return intent(buy_write_leg(Side.BUY, units, bw_limit), tltw_leg(Side.SELL, shares, tltw_limit))


def codes(limits: RiskSettings, the_intent, the_view, now: float = NOW) -> list[str]:
    return [r.code for r in RiskGate(limits).decide(the_intent, the_view, now).reasons]


def test_gate_approves_a_hedged_entry_inside_every_limit():
    decision = RiskGate(RiskSettings()).decide(entry(), view(), NOW)
    assert decision.approved, decision.reasons
    assert decision.reasons == ()


def test_gate_rejects_buy_write_units_over_the_position_limit():
    limits = RiskSettings(max_buy_write_units=2)
    # 300 TLT shares > 200 and 3 short calls > 2: both legs of the BAG are over
    assert codes(limits, entry(units=3, shares=1000), view()) == ["POSITION_LIMIT"] * 2


def test_gate_counts_working_orders_towards_the_position_limit():
    limits = RiskSettings(max_buy_write_units=2)
    tracker = OrderTracker()
    tracker.register(entry(units=2, shares=750), NOW)
    assert codes(limits, entry(units=1), view(tracker=tracker)) == ["POSITION_LIMIT"] * 2


def test_gate_rejects_tltw_shares_over_the_position_limit():
    limits = RiskSettings(max_tltw_shares=300)
    assert codes(limits, entry(), view()) == ["POSITION_LIMIT"]


def test_gate_rejects_an_order_over_the_order_size_limit():
    limits = RiskSettings(max_order_notional_usd=5_000)
    # 1 x 8998.40 + 375 x 24.00 = 17,998.40 USD
    assert codes(limits, entry(), view()) == ["ORDER_SIZE"]


def test_gate_rejects_gross_notional_over_the_limit():
    book = Book()
    book.apply_fill(fill("x", TLTW_ID, Side.BUY, 1000, 24.0, symbol="TLTW"))
    limits = RiskSettings(max_gross_notional_usd=30_000, max_order_notional_usd=20_000)
    # after: 1000 x 24 + 100 x 90 + 1 x 1.60 x 100 = 33,160 > 30,000
    assert "GROSS_NOTIONAL" in codes(limits, intent(buy_write_leg(Side.BUY, 1, BW_MID)), view(book))


def test_gate_rejects_a_limit_outside_the_price_band():
    # 9100 vs the combo mid 8998.40 is 112.9 bp away; the band is 50 bp
    assert codes(RiskSettings(), entry(bw_limit=9100.0), view()) == ["PRICE_BAND"]


def test_gate_rejects_net_delta_over_the_limit():
    # one buy-write alone: 100 shares - 100 x 0.5 = 50 TLT shares of delta
    limits = RiskSettings(max_net_delta_shares=40)
    assert codes(limits, intent(buy_write_leg(Side.BUY, 1, BW_MID)), view()) == ["NET_DELTA"]


def test_gate_rejects_net_vega_over_the_limit():
    # short one call: -1 x 100 x 0.10 = -10 USD per vol point
    limits = RiskSettings(max_net_vega_usd=5)
    assert codes(limits, entry(), view()) == ["NET_VEGA"]


def test_gate_rejects_orders_over_the_rate_limit():
    tracker = OrderTracker()
    tracker.note_order_sent(NOW - 30)
    limits = RiskSettings(max_orders_per_minute=2)
    assert codes(limits, entry(), view(tracker=tracker)) == ["ORDER_RATE"]


def test_gate_rejects_an_entry_after_the_daily_loss_limit():
    assert codes(RiskSettings(), entry(), view(daily_pnl=-5_000.0)) == ["DAILY_LOSS"]


def test_gate_rejects_stale_quotes():
    got = codes(RiskSettings(stale_after_s=10), entry(), view(), now=NOW + 60)
    assert got == ["STALE_DATA"] * 3


def test_gate_rejects_data_flagged_stale_by_ingestion():
    m = marks()
    m.update(DataHealth("TLTW", DataStatus.STALE, "no tick for 31 s", NOW))
    assert codes(RiskSettings(), entry(), view(m=m)) == ["STALE_DATA"]


def test_gate_rejects_when_the_market_is_closed():
    m = marks(ts=SUNDAY)
    assert codes(RiskSettings(), entry(), view(m=m), now=SUNDAY) == ["MARKET_CLOSED"]


def test_gate_halted_refuses_entries_but_admits_its_own_flatten():
    book = Book()
    book.attribute("i-0", "p-1")
    book.apply_fill(fill("a", TLTW_ID, Side.SELL, 375, 24.0, symbol="TLTW", intent_id="i-0"))
    halted = view(book, state=TradingState.HALTED)
    assert codes(RiskSettings(), entry(), halted) == ["HALTED"]
    flatten = intent(tltw_leg(Side.BUY, 375, 24.0), intent_id="f-1", purpose=IntentPurpose.FLATTEN)
    assert codes(RiskSettings(), flatten, halted) == []


def test_gate_reducing_admits_only_orders_that_shrink_exposure():
    book = Book()
    book.apply_fill(fill("a", TLTW_ID, Side.SELL, 375, 24.0, symbol="TLTW"))
    reducing = view(book, state=TradingState.REDUCING)
    assert codes(RiskSettings(), entry(), reducing) == ["REDUCE_ONLY"]
    exit_ = intent(tltw_leg(Side.BUY, 375, 24.0), intent_id="x", purpose=IntentPurpose.EXIT)
    assert codes(RiskSettings(), exit_, reducing) == []
    overshoot = intent(tltw_leg(Side.BUY, 500, 24.0), intent_id="y", purpose=IntentPurpose.EXIT)
    assert codes(RiskSettings(), overshoot, reducing) == ["REDUCE_ONLY"]


def test_gate_lists_every_reason_at_once():
    limits = RiskSettings(max_buy_write_units=1, max_tltw_shares=100)
    got = codes(limits, entry(units=2, shares=750, tltw_limit=25.0), view(daily_pnl=-6_000))
    assert sorted(got) == ["DAILY_LOSS"] + ["POSITION_LIMIT"] * 3 + ["PRICE_BAND"]


def test_marks_refuse_a_crossed_quote_and_keep_the_last_good_one():
    m = marks()
    with pytest.raises(ValueError, match="crossed"):
        m.update(quote("TLT", TLT_ID, 90.05, 90.00))
    with pytest.raises(ValueError, match="bid"):
        m.update(quote("TLT", TLT_ID, float("nan"), 90.00))
    assert m.mid(TLT_ID) == pytest.approx(90.00)
    assert m.buy_write_mid(TLT_ID, CALL_ID) == pytest.approx(BW_MID)


def test_marks_accept_an_option_bid_at_zero_but_not_a_zero_ask():
    m = marks()
    m.update(option(0.0, 0.05))
    assert m.get(CALL_ID).bid == 0.0
    with pytest.raises(ValueError, match="ask must be finite and > 0"):
        m.update(option(0.0, 0.0))
    with pytest.raises(ValueError, match="bid must be finite and > 0"):
        m.update(quote("TLT", TLT_ID, 0.0, 90.01))


def test_a_closed_position_whose_quote_went_silent_does_not_block_new_entries():
    """A call traded earlier and now flat is no longer quoted: it must not read as stale data."""
    old_call = 700_000_999
    book = Book()
    for exec_id, side in (("e1", Side.SELL), ("e2", Side.BUY)):
        book.apply_fill(
            fill(exec_id, old_call, side, 1, 1.0, sec_type="OPT", symbol="TLT"), "p-old"
        )
    assert book.net_quantities().get(old_call, 0.0) == 0.0
    m = marks()
    last_quote = dataclasses.replace(option(0.0, 0.05, ts=NOW - 3600), con_id=old_call)
    m.update(last_quote)  # its last quote, an hour old
    decision = RiskGate(RiskSettings()).decide(entry(), view(book=book, m=m), NOW)
    assert decision.approved, decision.reasons


def test_the_send_time_check_reads_every_legs_data_health_the_calls_included():
    entry = intent(buy_write_leg(Side.BUY, 1, 9000.0), tltw_leg(Side.SELL, 375, 24.0))
    names = data_names(entry)
    assert names == sorted(["TLT", "TLTW", str(CALL_ID)])

    def raw(symbol: str, status: DataStatus) -> bytes:
        return encode(DataHealth(symbol, status, "why", NOW))

    assert flagged_at_send(names, {}) == []  # nothing said against any: not flagged
    assert flagged_at_send(names, {"TLT": raw("TLT", DataStatus.OK)}) == []
    reasons = flagged_at_send(
        names,
        {
            "TLTW": raw("TLTW", DataStatus.STALE),
            str(CALL_ID): raw(str(CALL_ID), DataStatus.DELAYED),
            "TLT": b"not json",
        },
    )
    assert [r.code for r in reasons] == ["STALE_DATA"] * 3
    assert [r.message.split(":")[0] for r in reasons] == [str(CALL_ID), "TLTW", "TLT"]
    assert reasons[1].message == "TLTW: data stale: why (at the moment of sending)"
    assert "unreadable" in reasons[2].message

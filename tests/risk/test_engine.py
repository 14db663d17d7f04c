"""The execution engine without I/O: stops, daily loss, kill switch, legging, commands."""

from __future__ import annotations

import pytest

from tests.risk.helpers import (
    CALL_ID,
    NOW,
    TLT_ID,
    TLTW_ID,
    buy_write_leg,
    fill,
    intent,
    option,
    quote,
    runaway_short_spread,
    tltw_leg,
)
from trading.bus import (
    Command,
    Dividends,
    IntentPurpose,
    LegKind,
    OperatorCommand,
    Side,
)
from trading.domain.orders import StatusUpdate
from trading.domain.risk import TradingState
from trading.execution.book import BrokerPosition
from trading.execution.engine import Cancel, CancelAll, ExecutionEngine, Raise, Submit
from trading.settings import RiskSettings

BW_MID = 100 * 90.00 - 1.60


def engine(**limits) -> ExecutionEngine:
    e = ExecutionEngine(RiskSettings(**limits))
    set_marks(e, tlt=90.00, call=1.60, tltw=24.00)
    return e


def set_marks(e: ExecutionEngine, tlt: float, call: float, tltw: float, ts: float = NOW) -> None:
    e.on_market(quote("TLT", TLT_ID, tlt - 0.01, tlt + 0.01, ts))
    e.on_market(quote("TLTW", TLTW_ID, tltw - 0.01, tltw + 0.01, ts))
    e.on_market(option(call - 0.05, call + 0.05, ts=ts))


def enter(e: ExecutionEngine, units: int = 1, shares: int = 375) -> None:
    """Approve and fill a short-spread entry at the marks (buy the buy-write, sell TLTW)."""
    entry = intent(buy_write_leg(Side.BUY, units, BW_MID), tltw_leg(Side.SELL, shares, 24.0))
    assert e.decide(entry, NOW).approved
    e.order_sent("i-1", 0, 1, NOW)
    e.order_sent("i-1", 1, 2, NOW)
    e.on_fill(fill("f1", TLT_ID, Side.BUY, 100 * units, 90.00))
    e.on_fill(fill("f2", CALL_ID, Side.SELL, units, 1.60, sec_type="OPT"))
    e.on_fill(fill("f3", TLTW_ID, Side.SELL, shares, 24.00, symbol="TLTW"))
    e.on_status(StatusUpdate(1, "Filled", units, 0, BW_MID), NOW)
    e.on_status(StatusUpdate(2, "Filled", shares, 0, 24.0), NOW)


def submitted(actions) -> list:
    return [a.intent for a in actions if isinstance(a, Submit)]


def test_pair_stop_loss_flattens_both_legs():
    e = engine(pair_stop_loss_usd=100.0)
    enter(e)
    assert submitted(e.tick(NOW)) == []
    # TLTW +0.30 against the short 375 = -112.50 USD, beyond the 100 USD stop
    set_marks(e, tlt=90.00, call=1.60, tltw=24.30)
    (flatten,) = submitted(e.tick(NOW + 1))
    assert flatten.purpose is IntentPurpose.STOP and flatten.pair_id == "p-1"
    legs = {leg.kind: leg for leg in flatten.legs}
    bw, stock = legs[LegKind.BUY_WRITE], legs[LegKind.STOCK]
    assert (bw.side, bw.quantity, bw.option_con_id) == (Side.SELL, 1, CALL_ID)
    assert (stock.side, stock.quantity, stock.con_id) == (Side.BUY, 375, TLTW_ID)
    assert e.decide(flatten, NOW + 1).approved
    # no second flatten while the first is working
    assert submitted(e.tick(NOW + 2)) == []


def test_z_stop_flattens_a_short_spread_when_z_runs_away():
    e = engine()
    enter(e)
    e.on_market(runaway_short_spread())
    (flatten,) = submitted(e.tick(NOW))
    assert flatten.purpose is IntentPurpose.STOP


def test_daily_loss_limit_halts_cancels_and_flattens():
    e = engine(daily_loss_limit_usd=100.0, pair_stop_loss_usd=1_000.0)
    e.tick(NOW)  # the day starts flat
    enter(e)
    set_marks(e, tlt=89.00, call=1.10, tltw=24.00)  # TLT -100, call +50: -50
    assert e.tick(NOW + 1) == [] and e.state is TradingState.ACTIVE
    set_marks(e, tlt=88.50, call=0.90, tltw=24.10)  # -150 + 70 - 37.50 = -117.50
    actions = e.tick(NOW + 2)
    assert e.state is TradingState.HALTED
    assert any(isinstance(a, CancelAll) for a in actions)
    (flatten,) = submitted(actions)
    assert flatten.purpose is IntentPurpose.FLATTEN
    assert e.decide(flatten, NOW + 2).approved  # HALTED still admits getting out
    entry = intent(buy_write_leg(Side.BUY, 1, 8849.10), intent_id="i-2")
    assert [r.code for r in e.decide(entry, NOW + 2).reasons][:1] == ["HALTED"]
    resume = OperatorCommand("c-9", NOW, Command.RESUME, "ops")
    (alert,) = e.on_command(resume, NOW + 3)
    assert isinstance(alert, Raise) and alert.alert.code == "command_refused"
    assert e.state is TradingState.HALTED


def test_kill_switch_cancels_everything_and_flattens_when_asked():
    e = engine()
    enter(e)
    resting = intent(tltw_leg(Side.SELL, 100, 24.0), intent_id="i-3")
    assert e.decide(resting, NOW).approved
    e.order_sent("i-3", 0, 7, NOW)
    actions = e.on_command(OperatorCommand("k-1", NOW, Command.KILL, "ops", flatten=True), NOW)
    assert e.state is TradingState.HALTED
    assert any(isinstance(a, CancelAll) for a in actions)
    # the pair's resting order could still fill: the flatten waits until IB has cancelled it
    assert submitted(actions) == [] and submitted(e.tick(NOW)) == []
    e.on_status(StatusUpdate(7, "Cancelled", 0, 100, 0), NOW + 1)
    (flatten,) = submitted(e.tick(NOW + 1))
    assert {leg.kind for leg in flatten.legs} == {LegKind.BUY_WRITE, LegKind.STOCK}
    # a repeated command (same id, e.g. re-read after a restart) does nothing
    assert e.on_command(OperatorCommand("k-1", NOW, Command.KILL, "ops"), NOW) == []


def test_operator_commands_move_the_trading_state():
    e = engine()
    e.on_command(OperatorCommand("c-1", NOW, Command.REDUCE, "ops"), NOW)
    assert e.state is TradingState.REDUCING
    e.on_command(OperatorCommand("c-2", NOW, Command.HALT, "ops"), NOW)
    assert e.state is TradingState.HALTED
    e.on_command(OperatorCommand("c-3", NOW, Command.RESUME, "ops"), NOW)
    assert e.state is TradingState.ACTIVE


def test_legging_timeout_cancels_the_lagging_leg_and_unwinds_the_filled_one():
    e = engine(legging_timeout_s=30.0)
    entry = intent(buy_write_leg(Side.BUY, 2, BW_MID), tltw_leg(Side.SELL, 750, 24.0))
    assert e.decide(entry, NOW).approved
    e.order_sent("i-1", 0, 1, NOW)
    e.order_sent("i-1", 1, 2, NOW)
    e.on_status(StatusUpdate(1, "Filled", 2, 0, BW_MID), NOW + 1)
    e.on_status(StatusUpdate(2, "Submitted", 0, 750, 0), NOW + 1)
    assert submitted(e.tick(NOW + 20)) == []
    actions = e.tick(NOW + 32)
    assert Cancel((2,)) in actions
    assert any(isinstance(a, Raise) and a.alert.code == "legging" for a in actions)
    (unwind,) = submitted(actions)
    assert unwind.purpose is IntentPurpose.UNWIND and unwind.intent_id == "i-1:unwind"
    (leg,) = unwind.legs
    assert (leg.kind, leg.side, leg.quantity) == (LegKind.BUY_WRITE, Side.SELL, 2)
    assert leg.limit_price == pytest.approx(8975.90)  # 8998.40 x (1 - 25 bp) = 8975.904, down
    assert submitted(e.tick(NOW + 40)) == []  # handled once


def test_legging_with_partial_fills_unwinds_only_the_excess():
    e = engine(legging_timeout_s=30.0)
    entry = intent(buy_write_leg(Side.BUY, 4, BW_MID), tltw_leg(Side.SELL, 1500, 24.0))
    e.decide(entry, NOW)
    e.order_sent("i-1", 0, 1, NOW)
    e.order_sent("i-1", 1, 2, NOW)
    e.on_status(StatusUpdate(1, "Submitted", 3, 1, BW_MID), NOW)  # 75 %
    e.on_status(StatusUpdate(2, "Submitted", 375, 1125, 24.0), NOW)  # 25 %
    (unwind,) = submitted(e.tick(NOW + 31))
    (leg,) = unwind.legs
    assert (leg.kind, leg.side, leg.quantity) == (LegKind.BUY_WRITE, Side.SELL, 2)


def test_an_exit_that_legs_is_completed_not_unwound():
    e = engine(legging_timeout_s=30.0)
    enter(e)
    exit_ = intent(
        buy_write_leg(Side.SELL, 1, BW_MID),
        tltw_leg(Side.BUY, 375, 24.0),
        intent_id="x-1",
        purpose=IntentPurpose.EXIT,
    )
    assert e.decide(exit_, NOW).approved
    e.order_sent("x-1", 0, 5, NOW)
    e.order_sent("x-1", 1, 6, NOW)
    e.on_status(StatusUpdate(5, "Submitted", 0, 1, 0), NOW)
    e.on_status(StatusUpdate(6, "Filled", 375, 0, 24.0), NOW)
    (complete,) = submitted(e.tick(NOW + 31))
    (leg,) = complete.legs
    assert (leg.kind, leg.side, leg.quantity) == (LegKind.BUY_WRITE, Side.SELL, 1)
    assert complete.intent_id == "x-1:complete"


def test_a_rejected_order_is_final_and_reported_as_rejected():
    e = engine()
    entry = intent(tltw_leg(Side.SELL, 100, 24.0))
    e.decide(entry, NOW)
    e.order_sent("i-1", 0, 9, NOW)
    e.on_status(StatusUpdate(9, "Cancelled", 0, 100, 0), NOW)  # ib_async's view of a refused order
    event = e.on_reject(9, 201, "Order rejected - reason: test", NOW)
    assert event.status == "Rejected" and "201" in event.message
    assert e.tracker.open_legs() == []
    assert e.decide(entry, NOW).approved  # the same intent id is decided once, not re-placed
    assert e.tracker.leg("i-1", 0).order_id == 9


def test_engine_refuses_a_crossed_quote():
    e = engine()
    with pytest.raises(ValueError, match="crossed"):
        e.on_market(quote("TLTW", TLTW_ID, 24.10, 24.00))
    assert e.marks.mid(TLTW_ID) == pytest.approx(24.00)


def settle(e: ExecutionEngine, units: int, ts: float, assigned: bool = True) -> None:
    """IB's report of an assignment: the call bought back at 0, the shares sold at the strike."""
    e.on_fill(fill("s1", CALL_ID, Side.BUY, units, 0.0, sec_type="OPT", intent_id=""))
    if assigned:
        e.on_fill(fill("s2", TLT_ID, Side.SELL, 100 * units, 90.0, intent_id=""))


def test_a_full_assignment_books_the_delivered_shares_and_closes_the_orphan_tltw():
    e = engine()
    enter(e)
    settle(e, 1, NOW)
    assert e.book.quantity(CALL_ID, "p-1") == 0 and e.book.quantity(TLT_ID, "p-1") == 0
    # TLT bought at 90.00 and delivered at the 90 strike: no stock P&L; the 1.60 premium is kept
    assert e.book.pair_pnl("p-1", e.mark_prices())["realized"] == pytest.approx(160.0)
    assert submitted(e.tick(NOW + 0.5)) == []  # the stock delivery may still be on its way
    actions = e.tick(NOW + 2)
    assert any(isinstance(a, Raise) and a.alert.code == "assignment" for a in actions)
    (flatten,) = submitted(actions)
    (leg,) = flatten.legs
    assert (leg.symbol, leg.side, leg.quantity) == ("TLTW", Side.BUY, 375)


def test_a_partial_assignment_cuts_tltw_in_proportion():
    e = engine()
    enter(e, units=2, shares=750)
    settle(e, 1, NOW)
    (rebalance,) = submitted(e.tick(NOW + 2))
    assert rebalance.purpose is IntentPurpose.UNWIND
    (leg,) = rebalance.legs
    assert (leg.symbol, leg.side, leg.quantity) == ("TLTW", Side.BUY, 375)
    assert e.decide(rebalance, NOW + 2).approved


def test_an_unrolled_short_call_is_closed_the_session_before_expiry():
    e = engine()
    enter(e)
    wednesday, thursday = 1_797_433_200.0, 1_797_519_600.0  # 16 and 17 Dec 2026, 10:00 ET
    set_marks(e, tlt=90.0, call=1.60, tltw=24.0, ts=wednesday)
    assert submitted(e.tick(wednesday)) == []
    set_marks(e, tlt=90.0, call=1.60, tltw=24.0, ts=thursday)
    (flatten,) = submitted(e.tick(thursday))
    assert {leg.kind for leg in flatten.legs} == {LegKind.BUY_WRITE, LegKind.STOCK}
    assert "expires 2026-12-18" in flatten.why["reason"]


def test_a_call_flagged_for_early_assignment_is_closed_before_the_ex_date():
    e = engine()
    enter(e)
    set_marks(e, tlt=95.0, call=5.10, tltw=24.0)  # time value 0.10 below a 0.30 dividend
    assert submitted(e.tick(NOW)) == []  # no dividend known: nothing to fear
    e.on_market(Dividends("TLT", 3.6, 3.6, "20261201", 0.30, NOW))
    (flatten,) = submitted(e.tick(NOW + 1))
    assert "early assignment likely" in flatten.why["reason"]


def test_an_exit_while_the_entry_works_cancels_its_rest_then_closes_what_the_pair_holds():
    """The strategy's exit is never blocked by its working entry (it would ask again every
    bar), nor sent as it is (it would sell buy-writes the entry never bought): risk refuses it
    SUPERSEDED, cancels the entry's rest and, once IB has finished the entry, flattens what the
    pair then holds."""
    e = engine(legging_timeout_s=30.0)
    entry = intent(buy_write_leg(Side.BUY, 2, BW_MID), tltw_leg(Side.SELL, 750, 24.0))
    assert e.decide(entry, NOW).approved
    e.order_sent("i-1", 0, 1, NOW)
    e.order_sent("i-1", 1, 2, NOW)
    e.on_status(StatusUpdate(1, "Submitted", 0, 2, 0), NOW)
    e.on_fill(fill("f3", TLTW_ID, Side.SELL, 750, 24.00, symbol="TLTW"))
    e.on_status(
        StatusUpdate(2, "Filled", 750, 0, 24.0), NOW
    )  # TLTW filled, the buy-write still working
    exit_ = intent(
        buy_write_leg(Side.SELL, 2, BW_MID), tltw_leg(Side.BUY, 750, 24.0),
        intent_id="x-1", purpose=IntentPurpose.EXIT,
    )  # fmt: skip

    decision = e.decide(exit_, NOW + 5)

    assert not decision.approved
    assert [r.code for r in decision.reasons] == ["SUPERSEDED"]
    actions = e.tick(NOW + 5)
    assert Cancel((1,)) in actions and submitted(actions) == []
    again = intent(*exit_.legs, intent_id="x-2", purpose=IntentPurpose.STOP)
    assert [r.code for r in e.decide(again, NOW + 6).reasons] == ["SUPERSEDED"]
    assert not [a for a in e.tick(NOW + 6) if isinstance(a, Cancel | Submit)]  # one cancel
    # one buy-write unit fills before the cancel lands
    e.on_fill(fill("f1", TLT_ID, Side.BUY, 100, 90.00))
    e.on_fill(fill("f2", CALL_ID, Side.SELL, 1, 1.60, sec_type="OPT"))
    e.on_status(StatusUpdate(1, "Cancelled", 1, 1, BW_MID), NOW + 7)
    (close,) = submitted(e.tick(NOW + 7))
    assert close.purpose is IntentPurpose.FLATTEN and close.pair_id == "p-1"
    legs = {leg.kind: (leg.side, leg.quantity) for leg in close.legs}
    assert legs == {LegKind.BUY_WRITE: (Side.SELL, 1), LegKind.STOCK: (Side.BUY, 750)}
    assert "x-1" in close.why["reason"]
    assert submitted(e.tick(NOW + 8)) == []  # sent once


def test_a_flatten_waits_for_the_pairs_cancelled_orders_and_alerts_if_ib_is_silent():
    e = engine()
    enter(e)
    resting = intent(tltw_leg(Side.SELL, 100, 24.1), intent_id="i-3")
    assert e.decide(resting, NOW).approved
    e.order_sent("i-3", 0, 7, NOW)
    set_marks(e, tlt=90.00, call=1.60, tltw=31.00)  # the short TLTW runs away: the stop fires
    actions = e.tick(NOW + 1)
    assert Cancel((7,)) in actions and submitted(actions) == []
    assert [a.alert.code for a in actions if isinstance(a, Raise)] == ["stop"]
    assert not [a for a in e.tick(NOW + 5) if isinstance(a, Raise)]
    (waiting,) = [a.alert for a in e.tick(NOW + 12) if isinstance(a, Raise)]
    assert waiting.code == "close_waiting" and "i-3" in waiting.message
    assert not [a for a in e.tick(NOW + 20) if isinstance(a, Raise)]  # alerted once
    e.on_status(
        StatusUpdate(7, "Filled", 100, 0, 24.1), NOW + 21
    )  # it filled before the cancel landed
    e.on_fill(fill("f9", TLTW_ID, Side.SELL, 100, 24.1, symbol="TLTW", intent_id="i-3"))
    (flatten,) = submitted(e.tick(NOW + 21))
    stock = next(leg for leg in flatten.legs if leg.kind is LegKind.STOCK)
    assert (stock.side, stock.quantity) == (Side.BUY, 475)  # what the pair holds now


def test_an_exit_may_only_reduce_what_the_pair_holds():
    e = engine()
    enter(e, units=1, shares=375)
    too_big = intent(
        buy_write_leg(Side.SELL, 2, BW_MID), tltw_leg(Side.BUY, 375, 24.0),
        intent_id="x-1", purpose=IntentPurpose.EXIT,
    )  # fmt: skip
    wrong_way = intent(
        buy_write_leg(Side.BUY, 1, BW_MID), tltw_leg(Side.BUY, 375, 24.0),
        intent_id="x-2", purpose=IntentPurpose.STOP,
    )  # fmt: skip
    right = intent(
        buy_write_leg(Side.SELL, 1, BW_MID), tltw_leg(Side.BUY, 375, 24.0),
        intent_id="x-3", purpose=IntentPurpose.EXIT,
    )  # fmt: skip

    assert [r.code for r in e.decide(too_big, NOW).reasons] == ["EXCEEDS_HOLDINGS"]
    assert [r.code for r in e.decide(wrong_way, NOW).reasons] == ["EXCEEDS_HOLDINGS"]
    assert e.decide(right, NOW).approved


def test_engine_aligns_its_book_to_ibs_positions_and_keeps_the_attribution_across_a_replay():
    e = engine()
    enter(e)  # p-1: TLT +100, call -1, TLTW -375
    # IB says the TLTW short was bought back (the execution never reached the book)
    broker = {
        TLT_ID: BrokerPosition(TLT_ID, "TLT", "TLT", "STK", 1.0, 100, 90.0),
        CALL_ID: BrokerPosition(CALL_ID, "TLT", "TLT   261218C00090000", "OPT", 100.0, -1, 1.6),
    }
    fills, actions = e.reconcile_positions(broker, NOW, "t1")
    (adjustment,) = fills
    assert (adjustment.con_id, adjustment.side, adjustment.quantity) == (TLTW_ID, Side.BUY, 375)
    assert adjustment.price == 24.00  # the book's own cost: no P&L invented
    assert e.book.quantity(TLTW_ID, "p-1") == 0
    ((alert,),) = [[a.alert for a in actions if isinstance(a, Raise)]]
    assert alert.code == "position_break" and "TLTW book -375 IB 0" in alert.message
    assert e.reconcile_positions(broker, NOW, "t2") == ([], [])
    # a restarted engine restores the attribution, then replays the fills: the same book
    replayed = engine()
    replayed.restore(e.to_state())
    for f in [*recorded_fills(), adjustment]:
        replayed.on_fill(f)
    assert replayed.book.quantity(TLTW_ID, "p-1") == 0
    assert replayed.book.differences(broker) == {}


def recorded_fills():
    return [
        fill("f1", TLT_ID, Side.BUY, 100, 90.00),
        fill("f2", CALL_ID, Side.SELL, 1, 1.60, sec_type="OPT"),
        fill("f3", TLTW_ID, Side.SELL, 375, 24.00, symbol="TLTW"),
    ]


def enter_long_spread(e: ExecutionEngine, units: int = 1, shares: int = 375) -> None:
    """Approve and fill a long-spread entry: sell the buy-write (short TLT, long call), buy
    TLTW, at the marks (TLT 90.00, call 1.60, TLTW 24.00)."""
    entry = intent(buy_write_leg(Side.SELL, units, BW_MID), tltw_leg(Side.BUY, shares, 24.0))
    assert e.decide(entry, NOW).approved
    e.order_sent("i-1", 0, 1, NOW)
    e.order_sent("i-1", 1, 2, NOW)
    e.on_fill(fill("f1", TLT_ID, Side.SELL, 100 * units, 90.00))
    e.on_fill(fill("f2", CALL_ID, Side.BUY, units, 1.60, sec_type="OPT"))
    e.on_fill(fill("f3", TLTW_ID, Side.BUY, shares, 24.00, symbol="TLTW"))
    e.on_status(StatusUpdate(1, "Filled", units, 0, BW_MID), NOW)
    e.on_status(StatusUpdate(2, "Filled", shares, 0, 24.0), NOW)


def settle_long(e: ExecutionEngine, contracts: int, exercised: bool) -> None:
    """IB's report of a long call's exercise (sold at 0, the shares bought at the 90 strike)
    or of its worthless expiry (sold at 0, nothing delivered)."""
    e.on_fill(fill("s1", CALL_ID, Side.SELL, contracts, 0.0, sec_type="OPT", intent_id=""))
    if exercised:
        e.on_fill(fill("s2", TLT_ID, Side.BUY, 100 * contracts, 90.0, intent_id=""))


def stock_legs(intent) -> list[tuple[str, Side, int, float]]:
    return sorted((leg.symbol, leg.side, leg.quantity, leg.limit_price) for leg in intent.legs)


def test_an_exercised_long_call_books_the_bought_shares_and_flattens_the_orphan_tltw():
    e = engine()
    enter_long_spread(e)  # TLT -100 at 90.00, call +1 at 1.60, TLTW +375 at 24.00
    settle_long(e, 1, exercised=True)
    assert e.book.quantity(CALL_ID, "p-1") == 0 and e.book.quantity(TLT_ID, "p-1") == 0
    # TLT sold at 90.00 and bought back at the 90 strike: 0; the call paid 1.60 x 100 is lost.
    assert e.book.pair_pnl("p-1", e.mark_prices())["realized"] == pytest.approx(-160.0)
    assert submitted(e.tick(NOW + 0.5)) == []  # the stock delivery may still be on its way

    actions = e.tick(NOW + 2)

    (alert,) = [a.alert for a in actions if isinstance(a, Raise) and a.alert.code == "assignment"]
    assert "1 -> 0 buy-write units" in alert.message
    (flatten,) = submitted(actions)
    assert flatten.purpose is IntentPurpose.FLATTEN
    # TLTW sold 25 bp through its 24.00 mid: 24 x 0.9975 = 23.94.
    assert stock_legs(flatten) == [("TLTW", Side.SELL, 375, 23.94)]
    assert e.decide(flatten, NOW + 2).approved


def test_a_long_call_expiring_worthless_closes_the_short_tlt_and_the_tltw():
    e = engine()
    enter_long_spread(e)
    settle_long(e, 1, exercised=False)
    assert e.book.quantity(CALL_ID, "p-1") == 0 and e.book.quantity(TLT_ID, "p-1") == -100
    assert e.book.pair_pnl("p-1", e.mark_prices())["realized"] == pytest.approx(-160.0)

    (flatten,) = submitted(e.tick(NOW + 2))

    # TLT bought back at 90 x 1.0025 = 90.225 -> 90.23 (a buy rounds up); TLTW sold at 23.94.
    assert stock_legs(flatten) == [("TLT", Side.BUY, 100, 90.23), ("TLTW", Side.SELL, 375, 23.94)]


def test_a_short_call_expiring_worthless_closes_the_long_tlt_and_the_tltw():
    e = engine()
    enter(e)  # TLT +100, call -1, TLTW -375
    settle(e, 1, NOW, assigned=False)
    assert e.book.pair_pnl("p-1", e.mark_prices())["realized"] == pytest.approx(160.0)

    (flatten,) = submitted(e.tick(NOW + 2))

    # TLT sold at 90 x 0.9975 = 89.775 -> 89.77; TLTW bought at 24 x 1.0025 = 24.06.
    assert stock_legs(flatten) == [("TLT", Side.SELL, 100, 89.77), ("TLTW", Side.BUY, 375, 24.06)]


def test_a_partial_long_call_exercise_cuts_tltw_in_proportion_and_keeps_the_hedged_tlt():
    e = engine()
    enter_long_spread(e, units=2, shares=750)  # TLT -200, call +2, TLTW +750
    settle_long(e, 1, exercised=True)  # TLT -100, call +1: one unit left, balanced

    (rebalance,) = submitted(e.tick(NOW + 2))

    assert rebalance.purpose is IntentPurpose.UNWIND
    assert stock_legs(rebalance) == [("TLTW", Side.SELL, 375, 23.94)]
    assert rebalance.why["settled_buy_write_units_before"] == 2
    assert rebalance.why["settled_buy_write_units_after"] == 1
    assert e.decide(rebalance, NOW + 2).approved


def test_a_partial_long_call_expiry_buys_back_the_unhedged_tlt():
    e = engine()
    enter_long_spread(e, units=2, shares=750)
    settle_long(e, 1, exercised=False)  # TLT -200 against one call: 100 shares unhedged

    (rebalance,) = submitted(e.tick(NOW + 2))

    assert stock_legs(rebalance) == [("TLT", Side.BUY, 100, 90.23), ("TLTW", Side.SELL, 375, 23.94)]


def test_an_option_fill_without_an_intent_that_opens_is_not_a_settlement():
    e = engine()
    enter(e)  # the pair is short one call
    e.on_fill(fill("m1", CALL_ID, Side.SELL, 1, 1.60, sec_type="OPT", intent_id=""))

    actions = e.tick(NOW + 2)

    assert not [a for a in actions if isinstance(a, Raise) and a.alert.code == "assignment"]
    assert e.settlements == {}


def test_an_unrolled_long_call_is_closed_the_session_before_expiry():
    e = engine()
    enter_long_spread(e)
    wednesday, thursday = 1_797_433_200.0, 1_797_519_600.0  # 16 and 17 Dec 2026, 10:00 ET
    set_marks(e, tlt=90.0, call=1.60, tltw=24.0, ts=wednesday)
    assert submitted(e.tick(wednesday)) == []
    set_marks(e, tlt=90.0, call=1.60, tltw=24.0, ts=thursday)

    (flatten,) = submitted(e.tick(thursday))

    sides = {leg.kind: (leg.side, leg.quantity) for leg in flatten.legs}
    assert sides == {LegKind.BUY_WRITE: (Side.BUY, 1), LegKind.STOCK: (Side.SELL, 375)}
    assert "long call" in flatten.why["reason"] and "expires 2026-12-18" in flatten.why["reason"]


def test_a_long_call_deep_in_the_money_before_the_ex_date_is_kept():
    # The early-assignment rule is the writer's risk: the holder of the call decides.
    e = engine()
    enter_long_spread(e)
    set_marks(e, tlt=95.0, call=5.10, tltw=24.0)  # time value 0.10 below a 0.30 dividend
    e.on_market(Dividends("TLT", 3.6, 3.6, "20261201", 0.30, NOW))

    assert submitted(e.tick(NOW + 1)) == []


def test_a_settlement_flatten_refused_after_the_close_is_sent_again_until_approved():
    # IB reports expiries after the close: the gate refuses the flatten MARKET_CLOSED; it must
    # be sent again (every 60 s, alerted once) until the market opens, not forgotten with the
    # pair left holding its TLT and TLTW.
    e = engine()
    enter(e)
    evening, morning = NOW + 9 * 3600, NOW + 24 * 3600  # Monday 19:00, Tuesday 10:00 ET
    set_marks(e, tlt=90.0, call=1.60, tltw=24.0, ts=evening)
    settle(e, 1, NOW, assigned=False)  # the short call expired: TLT +100, TLTW -375 left

    first = e.tick(evening)
    (flatten,) = submitted(first)
    assert [a.alert.code for a in first if isinstance(a, Raise)] == ["assignment", "flatten"]
    refused = e.decide(flatten, evening)
    assert [r.code for r in refused.reasons] == ["MARKET_CLOSED"]

    noted = e.tick(evening + 1)
    assert submitted(noted) == []
    assert [a.alert.code for a in noted if isinstance(a, Raise)] == ["settlement_refused"]
    assert submitted(e.tick(evening + 59)) == []  # not before 60 s
    again = e.tick(evening + 60)
    (retry,) = submitted(again)
    assert [a for a in again if isinstance(a, Raise)] == []  # retries are not alerted again
    assert retry.legs == flatten.legs
    assert not e.decide(retry, evening + 60).approved
    assert [a for a in e.tick(evening + 61) if isinstance(a, Raise)] == []

    set_marks(e, tlt=90.0, call=1.60, tltw=24.0, ts=morning)
    (opening,) = submitted(e.tick(morning))
    assert e.decide(opening, morning).approved
    assert submitted(e.tick(morning + 120)) == []  # approved: nothing more is sent


def test_a_partial_rebalance_states_the_contracts_and_tltw_shares_the_pair_keeps():
    e = engine()
    enter(e, units=2, shares=750)
    settle(e, 1, NOW)

    (rebalance,) = submitted(e.tick(NOW + 2))

    why = rebalance.why
    assert (why["settled_buy_write_units_before"], why["settled_buy_write_units_after"]) == (2, 1)
    assert why["settled_tltw_shares_after"] == 375


def test_a_refused_close_is_sent_again_with_a_pause_that_doubles_and_alerted_once():
    """Risk's own close refused by the gate (a stale mark) was sent again on every tick, four
    times a second, each with its alert (found by the fault suite)."""
    e = engine(pair_stop_loss_usd=100.0)
    enter(e)
    set_marks(e, tlt=90.00, call=1.60, tltw=24.30)  # the stop-loss fires
    (stop,) = submitted(e.tick(NOW))
    stale = NOW + 60  # the marks are a minute old by the time it is gated
    assert {r.code for r in e.decide(stop, stale).reasons} == {"STALE_DATA"}
    actions = e.tick(stale + 1)
    assert submitted(actions) == []
    (alert,) = [a.alert for a in actions if isinstance(a, Raise)]
    assert alert.code == "close_refused" and alert.severity.value == "critical"
    assert submitted(e.tick(stale + 4)) == []
    again = e.tick(stale + 5)
    (retry,) = submitted(again)
    assert not [a for a in again if isinstance(a, Raise)]  # alerted at the first refusal only
    assert not e.decide(retry, stale + 5).approved
    assert submitted(e.tick(stale + 14)) == []
    assert len(submitted(e.tick(stale + 15))) == 1  # 10 s after the second refusal

"""Order tracking without I/O: IB's answers make a leg's state, its fills and its legging clock."""

from __future__ import annotations

import pytest

from tests.risk.helpers import NOW, TLT_ID, TLTW_ID, buy_write_leg, intent, tltw_leg
from trading.bus import Side
from trading.domain.orders import StatusUpdate
from trading.execution.decisions import RejectionLog
from trading.execution.tracking import LegState, OrderTracker, TrackedLeg


def tracked_entry(units: int = 2, shares: int = 750) -> OrderTracker:
    """An entry whose BAG (order 1, perm 101) and TLTW order (2, perm 102) were sent at NOW."""
    tracker = OrderTracker()
    tracker.register(
        intent(buy_write_leg(Side.BUY, units, 8998.4), tltw_leg(Side.SELL, shares, 24.0)), NOW
    )
    for index, order_id in ((0, 1), (1, 2)):
        tracker.assign_order_id("i-1", index, order_id, NOW)
        tracker.mark_sent("i-1", index, NOW)
    return tracker


def test_a_legs_fill_is_the_sum_of_its_orders_executions():
    tracker = tracked_entry()
    for exec_id, shares in (("e1", 200.0), ("e2", 300.0)):
        tracker.on_execution("i-1", 2, 102, "STK", TLTW_ID, exec_id, shares, NOW + 1)
    tracker.on_execution("i-1", 2, 102, "STK", TLTW_ID, "e2", 300.0, NOW + 1)  # replayed
    leg = tracker.leg("i-1", 1)
    assert (leg.filled, leg.state) == (500.0, LegState.WORKING)
    assert leg.acknowledged_at == NOW + 1  # an execution is IB's answer too
    # an orderStatus that lags behind the executions does not lower the fill
    tracker.on_status(StatusUpdate(2, "Submitted", 200.0, 550.0, 24.0), NOW + 2)
    assert leg.filled == 500.0
    tracker.on_execution("i-1", 2, 102, "STK", TLTW_ID, "e3", 250.0, NOW + 3)
    assert (leg.filled, leg.state) == (750.0, LegState.FILLED)


def test_only_the_bag_level_execution_counts_for_a_buy_write():
    tracker = tracked_entry()
    # a BAG reports each leg's execution and one of the combo: only the combo's is in units
    assert tracker.on_execution("i-1", 1, 101, "STK", TLT_ID, "x1", 200.0, NOW) is None
    assert tracker.on_execution("i-1", 1, 101, "OPT", 999, "x2", 2.0, NOW) is None
    leg = tracker.on_execution("i-1", 1, 101, "BAG", 0, "x3", 2.0, NOW)
    assert leg is tracker.leg("i-1", 0) and (leg.filled, leg.state) == (2.0, LegState.FILLED)
    # an execution of another order under the same orderRef is not this leg's
    assert tracker.on_execution("i-1", 9, 909, "STK", TLTW_ID, "x4", 100.0, NOW) is None


def test_a_completed_order_without_its_order_id_is_applied_by_leg():
    tracker = tracked_entry()
    leg = tracker.leg("i-1", 1)
    tracker.apply_status(leg, StatusUpdate(2, "Filled", 750.0, 0.0, 24.01, perm_id=102), NOW + 5)
    assert (leg.state, leg.filled, leg.perm_id) == (LegState.FILLED, 750.0, 102)


def test_a_lost_leg_is_done_and_comes_back_if_ib_reports_it():
    tracker = tracked_entry()
    leg = tracker.leg("i-1", 1)
    tracker.mark_lost(leg, NOW + 10, "unknown to IB after the reconnect")
    assert leg.done and leg.state is LegState.LOST and leg.acknowledged_at == NOW + 10
    assert tracker.open_legs() == [tracker.leg("i-1", 0)]
    tracker.on_rejected(2, "IB error 10147: not found", NOW + 11)  # our cancel of it
    assert leg.state is LegState.LOST
    tracker.on_status(
        StatusUpdate(2, "Submitted", 0.0, 750.0, 0.0), NOW + 12
    )  # IB had it after all
    assert leg.state is LegState.WORKING


def test_the_legging_clock_starts_when_every_leg_is_acknowledged():
    tracker = tracked_entry()
    tracker.on_status(StatusUpdate(1, "Filled", 2.0, 0.0, 8998.0), NOW + 1)  # the BAG fills at once
    assert tracker.legging_breaches(NOW + 100, timeout_s=30.0) == []  # TLTW: no answer yet
    tracker.on_status(StatusUpdate(2, "Submitted", 0.0, 750.0, 0.0), NOW + 90)  # acknowledged late
    assert tracker.legging_breaches(NOW + 119, timeout_s=30.0) == []
    (breach,) = tracker.legging_breaches(NOW + 120, timeout_s=30.0)
    assert breach.since == NOW + 90 and breach.fractions == (1.0, 0.0) and not breach.complete


def test_a_leg_filled_in_proportion_is_never_legged():
    tracker = tracked_entry()
    tracker.on_status(StatusUpdate(1, "Filled", 2.0, 0.0, 8998.0), NOW + 1)
    tracker.on_status(StatusUpdate(2, "Filled", 750.0, 0.0, 24.0), NOW + 40)
    assert tracker.legging_breaches(NOW + 1000, timeout_s=30.0) == []


def test_a_lost_leg_beside_a_filled_one_is_legged_at_once():
    tracker = tracked_entry()
    tracker.on_status(StatusUpdate(1, "Filled", 2.0, 0.0, 8998.0), NOW + 1)
    tracker.mark_lost(tracker.leg("i-1", 1), NOW + 2, "never received")
    (breach,) = tracker.legging_breaches(NOW + 2, timeout_s=30.0)
    assert breach.fractions == (1.0, 0.0)


def test_unacknowledged_legs_are_the_ones_sent_long_enough_ago_without_an_answer():
    tracker = tracked_entry()
    tracker.on_status(StatusUpdate(1, "Submitted", 0.0, 2.0, 0.0), NOW + 1)
    assert tracker.unacknowledged(NOW + 4, bound_s=5.0) == []
    assert tracker.unacknowledged(NOW + 5, bound_s=5.0) == [tracker.leg("i-1", 1)]
    tracker.on_status(
        StatusUpdate(2, "PendingSubmit", 0.0, 750.0, 0.0), NOW + 6
    )  # the client's own echo
    assert tracker.unacknowledged(NOW + 6, bound_s=5.0) == [tracker.leg("i-1", 1)]


def test_a_leg_survives_its_state_record():
    tracker = tracked_entry()
    tracker.on_execution("i-1", 2, 102, "STK", TLTW_ID, "e1", 100.0, NOW + 1)
    leg = tracker.leg("i-1", 1)
    again = TrackedLeg.from_state(leg.to_state())
    assert again == leg


@pytest.mark.parametrize("bad", [float("nan"), -1.0])
def test_a_status_with_a_bad_quantity_is_refused(bad):
    tracker = tracked_entry()
    with pytest.raises(ValueError, match="filled"):
        tracker.on_status(StatusUpdate(2, "Submitted", bad, 0.0, 0.0), NOW)


def test_repeated_rejections_are_written_once_per_window_with_the_count_held_back():
    log = RejectionLog(window_s=60.0)
    assert log.admit("p-1", ("STALE_DATA",), NOW) == (True, 0)
    assert [log.admit("p-1", ("STALE_DATA",), NOW + i) for i in range(1, 4)] == [(False, 0)] * 3
    assert log.admit("p-1", ("PRICE_BAND",), NOW + 5) == (True, 0)  # another reason: written
    assert log.admit("p-2", ("STALE_DATA",), NOW + 5) == (True, 0)  # another pair: written
    assert log.admit("p-1", ("STALE_DATA",), NOW + 60) == (True, 3)
    assert log.rate("p-1", NOW + 60) == 5  # NOW fell out of the minute: +1, +2, +3, +5, +60
    assert log.busiest(NOW + 60) == ("p-1", 5)
    assert log.rate("p-1", NOW + 120) == 0


def test_an_intent_is_forgotten_once_every_leg_has_been_done_long_enough():
    """Risk forgets an intent a day after its last leg was done (`forget_done`): one leg done,
    the other working, is kept; both done but one too recently, kept; both done long ago,
    forgotten with its order ids; another intent's legs untouched."""
    tracker = tracked_entry()
    tracker.register(intent(tltw_leg(Side.BUY, 100, 24.0), intent_id="i-2"), NOW)
    tracker.assign_order_id("i-2", 0, 3, NOW)
    tracker.on_status(StatusUpdate(1, "Filled", 2.0, 0.0, 8998.4), NOW + 1)
    tracker.forget_done(NOW + 100)
    assert [t.leg_index for t in tracker.legs_of("i-1")] == [0, 1]  # the TLTW leg works
    tracker.on_status(StatusUpdate(2, "Filled", 750.0, 0.0, 24.0), NOW + 50)
    tracker.forget_done(NOW + 40)  # the TLTW leg was done after the cut
    assert len(tracker.legs_of("i-1")) == 2
    tracker.forget_done(NOW + 100)
    assert tracker.legs_of("i-1") == [] and "i-1" not in tracker.intents
    assert 1 not in tracker.by_order_id and 2 not in tracker.by_order_id
    assert [t.intent_id for t in tracker.legs_of("i-2")] == ["i-2"]
    assert 3 in tracker.by_order_id


def test_an_intents_legs_are_found_by_key_as_by_a_scan():
    tracker = tracked_entry()
    by_key = tracker.legs_of("i-1")
    del tracker.intents["i-1"]  # legs restored without their intent: found by a scan
    assert tracker.legs_of("i-1") == by_key and [t.leg_index for t in by_key] == [0, 1]

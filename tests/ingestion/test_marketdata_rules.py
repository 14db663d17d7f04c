"""Pure rules of the market data feed: expiries, strike windows, re-centring, the line budget,
the IB error policy, health, bad-data episodes and history conflation."""

from __future__ import annotations

from datetime import date

import pytest

from trading.broker.chain import (
    fit_to_budget,
    held_options,
    nearest_strike,
    plan_option_lines,
    rank_strikes,
    select_expiries,
    should_recentre,
    strike_window,
)
from trading.broker.health import EpisodeLog, HealthBoard
from trading.broker.marketdata import ErrorAction, error_action, farm_name
from trading.broker.translate import DropReason
from trading.bus import DataStatus, Position
from trading.services.ingestion import HistoryConflator

STRIKES = [float(k) for k in range(80, 101)]


def test_front_and_next_monthly_expiries_skip_weeklies_and_expired_ones():
    listed = ["20261030", "20261106", "20261113", "20261120", "20261127", "20261218", "20270115"]
    # 2026-11-20 and 2026-12-18 are third Fridays; 2026-10-30 has expired by Nov 2.
    assert select_expiries(listed, date(2026, 11, 2), 2) == ("20261120", "20261218")
    assert select_expiries(listed, date(2026, 11, 20), 1) == ("20261120",)
    assert select_expiries(listed, date(2026, 11, 21), 3) == ("20261218", "20270115")
    with pytest.raises(ValueError, match="expiry"):
        select_expiries(["2026-11-20"], date(2026, 11, 2), 1)


def test_holiday_moved_thursday_monthly_counts_as_the_monthly():
    # April 2025: Good Friday is 2025-04-18, the third Friday; the monthly is Thursday 04-17.
    assert select_expiries(["20250417", "20250425"], date(2025, 4, 1), 2) == ("20250417",)


def test_strike_window_takes_the_nearest_strike_and_n_each_side():
    assert strike_window(STRIKES, 90.2, 3) == (87.0, 88.0, 89.0, 90.0, 91.0, 92.0, 93.0)
    assert strike_window(STRIKES, 90.5, 1) == (90.0, 91.0, 92.0)  # tie goes up
    assert strike_window(STRIKES, 80.3, 2) == (80.0, 81.0, 82.0)  # clipped at the chain's end
    assert nearest_strike(STRIKES, 1000.0) == 100.0
    with pytest.raises(ValueError, match="spot"):
        nearest_strike(STRIKES, float("nan"))


def test_recentre_only_when_tlt_has_moved_past_the_midpoint_by_the_hysteresis():
    assert should_recentre(None, 90.0, STRIKES)
    assert not should_recentre(90.0, 90.4, STRIKES)
    assert not should_recentre(90.0, 90.55, STRIKES, hysteresis=0.2)  # advantage 0.1 < 0.2
    assert should_recentre(90.0, 90.65, STRIKES, hysteresis=0.2)  # advantage 0.3 > 0.2
    assert should_recentre(90.0, 87.2, STRIKES)


def test_line_budget_drops_the_strikes_farthest_from_spot_first():
    windows = {"20261120": (88.0, 89.0, 90.0, 91.0, 92.0), "20261218": (88.0, 89.0, 90.0, 91.0)}
    trimmed = fit_to_budget(windows, 90.1, 5)
    assert trimmed == {"20261120": (89.0, 90.0, 91.0), "20261218": (90.0, 91.0)}
    assert sum(len(v) for v in trimmed.values()) == 5
    assert fit_to_budget(windows, 90.1, 100) == windows


def test_strike_ranking_is_nearest_spot_first_and_front_expiry_first_on_ties():
    windows = {"20261218": (89.0, 90.0, 91.0), "20261120": (89.0, 90.0, 91.0)}
    assert rank_strikes(windows, 90.2) == [
        ("20261120", 90.0), ("20261218", 90.0), ("20261120", 91.0), ("20261218", 91.0),
        ("20261120", 89.0), ("20261218", 89.0),
    ]  # fmt: skip


def position(con_id: int, quantity: float, sec_type: str = "OPT") -> Position:
    return Position("TLT", "TLT   261120C00090000", con_id, sec_type, quantity, 1.2, 100.0,
                    None, 0.0, 0.0, 1.0)  # fmt: skip


def test_held_options_are_option_positions_with_a_non_zero_quantity():
    book = [position(1, -1.0), position(2, 0.0), position(3, 2.0), position(15547841, 100, "STK")]
    assert held_options(book) == {1, 3}
    assert held_options([]) == frozenset()


def test_held_contracts_outside_the_window_take_lines_before_window_strikes():
    window = [10, 11, 12, 13, 14]  # most wanted first
    # Room for all: the window whole, plus the held call outside it.
    assert plan_option_lines(window, [99], 6) == ((10, 11, 12, 13, 14), (99,), ())
    # Tight budget: the held call keeps its line, the least wanted window strike goes.
    assert plan_option_lines(window, [99], 5) == ((10, 11, 12, 13), (99,), ())
    # A held call inside the window stays a window line even when it is the least wanted.
    assert plan_option_lines(window, [14, 99], 4) == ((10, 11, 14), (99,), ())
    # More held contracts than lines: the first ones (in the order given) get lines.
    assert plan_option_lines(window, [98, 99, 97], 2) == ((), (98, 99), (97,))
    assert plan_option_lines(window, [98], 0) == ((), (), (98,))
    # No position: the plain window budget.
    assert plan_option_lines(window, [], 3) == ((10, 11, 12), (), ())
    with pytest.raises(ValueError, match="lines"):
        plan_option_lines(window, [], -1)


def test_line_plan_never_exceeds_the_budget_and_always_quotes_held_first():
    window = list(range(100, 120))
    for lines in range(0, 30):
        for held in ([], [100], [150, 151], [119, 150], list(range(140, 160))):
            kept, held_only, unquoted = plan_option_lines(window, held, lines)
            quoted = set(kept) | set(held_only)
            assert len(kept) + len(held_only) <= lines
            assert set(held) == (set(held) & quoted) | set(unquoted)
            assert len(set(held) & quoted) == min(len(held), lines)
            assert not set(held_only) & set(window)


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (2104, ErrorAction.DATA_FARM_OK),
        (2106, ErrorAction.HISTORY_FARM_OK),
        (2158, ErrorAction.NOTICE),
        (2103, ErrorAction.DATA_FARM_DOWN),
        (2105, ErrorAction.HISTORY_FARM_DOWN),
        (1100, ErrorAction.CONNECTIVITY_LOST),
        (1101, ErrorAction.RESTORED_DATA_LOST),
        (1102, ErrorAction.RESTORED_DATA_KEPT),
        (10167, ErrorAction.DELAYED_FALLBACK),
        (354, ErrorAction.DELAYED_FALLBACK),
        (162, ErrorAction.HISTORY_ERROR),
        (2119, ErrorAction.NOTICE),
        (321, ErrorAction.ERROR),
    ],
)
def test_error_policy_table(code, action):
    assert error_action(code) is action


def test_farm_name_is_read_from_ibs_notice():
    assert farm_name("Market data farm connection is broken:usfarm") == "usfarm"
    assert farm_name("no farm here") == ""


def test_health_goes_stale_after_silence_and_back_to_ok_on_a_good_tick():
    board = HealthBoard(silence_s=5.0)
    board.track("TLT", now=100.0)
    assert [(h.symbol, h.status) for h in board.evaluate(101.0)] == [("TLT", DataStatus.OK)]
    assert board.evaluate(104.0) == []  # unchanged: nothing to publish
    [stale] = board.evaluate(105.5)
    assert stale.status is DataStatus.STALE and "5s" in stale.reason
    board.good_tick("TLT", 106.0)
    [ok] = board.evaluate(106.0)
    assert ok.status is DataStatus.OK


def test_feed_wide_stale_flag_beats_fresh_ticks_and_delayed_shows_when_clear():
    board = HealthBoard(silence_s=5.0)
    board.track("TLT", 0.0)
    board.track("TLTW", 0.0)
    board.evaluate(0.0)
    board.set_feed_stale("connectivity", "IB connectivity lost (IB 1100)")
    changes = board.evaluate(1.0)
    assert {(h.symbol, h.status) for h in changes} == {
        ("TLT", DataStatus.STALE),
        ("TLTW", DataStatus.STALE),
    }
    board.good_tick("TLT", 1.5)
    assert board.evaluate(1.5) == []
    board.clear_feed_stale("connectivity")
    board.delayed = True
    assert {h.status for h in board.evaluate(2.0)} == {DataStatus.DELAYED}


def test_a_refused_quote_flags_its_instrument_at_once_until_a_good_one():
    board = HealthBoard(silence_s=30.0)
    board.track("TLT", 0.0)
    board.track("TLTW", 0.0)
    board.evaluate(0.0)
    assert board.bad_tick("TLTW", "nan_price") is True
    assert board.bad_tick("TLTW", "crossed") is False  # already flagged: nothing new to publish
    [flagged] = board.evaluate(0.1)  # 0.1 s, not silence_s = 30 s, after the last good tick
    assert (flagged.symbol, flagged.status) == ("TLTW", DataStatus.STALE)
    assert flagged.reason == "IB's latest quote refused (nan_price)"
    board.good_tick("TLTW", 0.2)
    [ok] = board.evaluate(0.2)
    assert (ok.symbol, ok.status) == ("TLTW", DataStatus.OK)
    board.set_feed_stale("connection", "IB connection lost")
    board.bad_tick("TLT", "crossed")
    assert {h.reason for h in board.evaluate(0.3)} == {"IB connection lost"}  # feed first


def test_bad_data_episode_is_logged_once_and_closed_with_its_count():
    episodes = EpisodeLog()
    assert episodes.bad("TLT", DropReason.CROSSED)
    assert not episodes.bad("TLT", DropReason.CROSSED)
    assert not episodes.bad("TLT", DropReason.CROSSED)
    assert episodes.bad("TLT", DropReason.NAN_PRICE)
    assert episodes.good("TLT") == {DropReason.CROSSED: 3, DropReason.NAN_PRICE: 1}
    assert episodes.good("TLT") == {}
    assert episodes.bad("TLT", DropReason.CROSSED)  # a new episode


def test_history_conflation_keeps_one_entry_per_interval_per_instrument():
    conflator = HistoryConflator(0.25)
    times = [0.0, 0.1, 0.2, 0.25, 0.3, 0.6, 0.61]
    assert [conflator.due("TLT", t) for t in times] == [True, False, False, True, False, True,
                                                        False]  # fmt: skip
    assert conflator.due("TLTW", 0.1)

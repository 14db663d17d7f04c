"""The dashboard's pure helpers: the session axis (closed market out of the charts) and
contract names (symbol, expiry, strike, right)."""

from __future__ import annotations

import pytest

from trading.dashboard.contracts import contract_name, option_name, parse_occ
from trading.dashboard.sessions import SessionAxis, session_axis

MON_1500 = 1_764_014_400.0  # Monday 2025-11-24 15:00 New York
TUE_0930 = MON_1500 + 18.5 * 3600  # the next session's open
FRI_1600 = MON_1500 + 4 * 86400 + 3600  # Friday 16:00
NEXT_MON_0930 = FRI_1600 + 65.5 * 3600


def test_a_night_keeps_half_an_hour_and_a_weekend_half_an_hour_too():
    """18.5 h loses 18 whole hours (30 min kept); 65.5 h loses 65 (30 min kept)."""
    axis = session_axis([MON_1500 - 60, MON_1500, TUE_0930, TUE_0930 + 60])
    assert axis.x == (MON_1500 - 60, MON_1500, TUE_0930 - 18 * 3600, TUE_0930 + 60 - 18 * 3600)
    assert [(b.ts, b.offset_s) for b in axis.breaks] == [(TUE_0930, 18 * 3600.0)]
    weekend = session_axis([FRI_1600, NEXT_MON_0930])
    assert weekend.x[1] - weekend.x[0] == 1800.0


def test_gaps_up_to_half_an_hour_are_kept_and_a_longer_outage_breaks_the_line_unshortened():
    axis = session_axis([0.0, 1800.0, 3600.0 + 1800.0 + 1.0])
    assert axis.x == (0.0, 1800.0, 5401.0)  # the 3601 s gap breaks, keeps 1 h + 1 s (< 1 h more)
    assert len(axis.breaks) == 1 and axis.breaks[0].offset_s == 0.0


def test_chart_x_maps_back_to_the_time_it_stands_for():
    ts = [MON_1500 - 120, MON_1500, TUE_0930, TUE_0930 + 600, FRI_1600, NEXT_MON_0930]
    axis = session_axis(ts)
    assert [axis.time_at(x) for x in axis.x] == ts
    assert [axis.x_of(t) for t in ts] == list(axis.x)
    assert axis.x == tuple(sorted(axis.x))
    assert SessionAxis((), ()).time_at(5.0) == 5.0
    # Inside the night's collapsed half hour there is no time to label.
    night = axis.breaks[0]
    assert axis.time_at((night.x_before + night.x) / 2) is None
    with pytest.raises(ValueError, match=r"ts\[1\]"):
        session_axis([0.0, float("nan")])


def test_contracts_are_named_by_symbol_expiry_strike_and_right():
    assert option_name("TLT", "20261218", 90.0, "C") == "TLT 2026-12-18 90 C"
    assert option_name("TLT", "20261218", 90.5, "P") == "TLT 2026-12-18 90.5 P"
    assert parse_occ("TLT   261218C00090000") == ("TLT", "20261218", 90.0, "C")
    assert parse_occ("TLTW") is None
    assert contract_name("TLT", "OPT", "TLT   261218C00091500") == "TLT 2026-12-18 91.5 C"
    assert contract_name("TLT", "BAG") == "TLT buy-write"
    assert contract_name("TLTW", "STK", "TLTW") == "TLTW"
    with pytest.raises(ValueError, match="expiry"):
        option_name("TLT", "2026-12", 90.0, "C")
    with pytest.raises(ValueError, match="right"):
        option_name("TLT", "20261218", 90.0, "X")

"""Invariant 7 (no entry on flagged data) judged on the Redis times of the flags.

The times are those of the `make faults` run in which `nan_ticks` failed I7 (data-ingestion's
and risk-management's logs, UTC 13:44 on 2026-12-07): TLTW flagged stale at 09.031, ok again at
12.038 (evaluated 12.037, its first good tick at 11.960), the entry (z 20.1, on the shocked
TLTW quote now visible) placed at 12.065 and 12.067: 27 ms after the data was ok, on the fresh
quote. A sampler of md:health every 50 ms had kept the flag open until its next sample and
counted the entry.
"""

from __future__ import annotations

from tests.faults.invariants import Window, flagged_intervals
from trading.bus import DataHealth, DataStatus

T0 = 1_796_651_040.0  # 13:44:00 UTC of the failing run


def health(symbol: str, status: DataStatus, at: float) -> tuple[float, DataHealth]:
    return T0 + at, DataHealth(symbol, status, "" if status is DataStatus.OK else "x", T0 + at)


def test_an_entry_sent_after_the_flag_was_cleared_is_not_on_flagged_data():
    history = [
        health("TLT", DataStatus.OK, -60.0),
        health("TLTW", DataStatus.OK, -60.0),
        health("539280368", DataStatus.STALE, 1.0),  # an option's flag is not the pair's
        health("TLTW", DataStatus.STALE, 9.031),
        health("TLTW", DataStatus.OK, 12.038),
    ]
    intervals = flagged_intervals(history, until=T0 + 30)
    assert intervals == [(T0 + 9.031, T0 + 12.038)]
    window = Window(T0 + 5.0, intervals)
    orders_at = (T0 + 12.066, T0 + 12.068)  # received at IB just after they were sent
    assert not any(a <= t < z for t in orders_at for a, z in window.flagged)
    # one received a millisecond before the flag was cleared was on flagged data
    assert any(a <= T0 + 12.037 < z for a, z in window.flagged)


def test_the_pair_is_flagged_while_either_stock_is_not_ok_and_an_open_flag_ends_at_until():
    history = [
        health("TLT", DataStatus.OK, 0.0),
        health("TLTW", DataStatus.OK, 0.0),
        health("TLT", DataStatus.DELAYED, 1.0),
        health("TLTW", DataStatus.STALE, 2.0),
        health("TLT", DataStatus.OK, 3.0),  # TLTW still stale: the pair stays flagged
        health("TLTW", DataStatus.OK, 4.0),
        health("TLTW", DataStatus.STALE, 5.0),
    ]
    assert flagged_intervals(history, until=T0 + 7.5) == [
        (T0 + 1.0, T0 + 4.0),
        (T0 + 5.0, T0 + 7.5),
    ]

"""The comparison driver (one tape, many replays, chunked) gives what a single backtest gives."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from trading.backtest.compare import LAST_SESSION, OPEN_GATE, run_seed, summary
from trading.backtest.run import backtest_sim
from trading.backtest.sources import SimSource
from trading.settings import load_settings

CONFIG = {"preset": "replica", "z_window": 390, "stop_z": 10.0, "time_stop_half_lives": 1e3}


def test_chunked_multi_replay_matches_a_single_backtest_of_the_same_sessions():
    sessions = 4
    rows = run_seed(
        1, sessions, 50.0, {"a": CONFIG, "b": CONFIG | {"entry_z": 1.5}}, chunk_messages=7_000
    )
    start = np.busday_offset(LAST_SESSION, -(sessions - 1), roll="backward").astype(date)
    single = backtest_sim(
        load_settings(strategy=OPEN_GATE | CONFIG), SimSource(1, start, LAST_SESSION, 50.0)
    ).metrics

    a = rows[0]
    assert (a.config, a.seed, a.sessions) == ("a", 1, sessions)
    assert a.pnl_usd == pytest.approx(single.pnl_usd, abs=1e-6)
    assert a.round_trips == single.round_trips
    assert a.intents == single.intents
    assert a.r2_levels == pytest.approx(single.r_squared_vs_truth)
    assert 0.0 <= a.r2_daily_changes <= 1.0
    assert a.costs_usd == pytest.approx(single.commissions_usd + single.half_spread_cost_usd)
    assert rows[1].config == "b"
    assert "a" in summary(rows) and "b" in summary(rows)


def test_a_single_session_is_refused():
    with pytest.raises(ValueError, match="sessions"):
        run_seed(1, 1, 50.0, {"a": CONFIG})

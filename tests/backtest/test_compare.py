"""The comparison driver (one tape, many replays, chunked) gives what a single backtest gives."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from trading.backtest.compare import LAST_SESSION, OPEN_GATE, run_seed, summary
from trading.backtest.run import backtest_sim
from trading.backtest.sources import SimSource
from trading.cli import main as cli
from trading.settings import load_settings

CONFIG = {"preset": "replica", "z_window": 390, "stop_z": 10.0, "time_stop_half_lives": 1e3,
          "edge_gate": False}  # fmt: skip


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


def test_html_report_sets_the_presets_side_by_side_with_each_seeds_pnl(tmp_path, capsys):
    import json

    html_path, json_path = tmp_path / "compare.html", tmp_path / "rows.json"
    code = cli(["backtest", "compare", "--seeds", "1", "2", "--sessions", "2", "--suite", "presets",
          "--premium-drift-bp-year", "-300", "--json", str(json_path),
          "--html", str(html_path)])  # fmt: skip

    assert code == 0
    rows = json.loads(json_path.read_text(), parse_constant=_refuse)  # strict JSON
    assert all(r["premium_drift_bp_year"] == -300.0 for r in rows)
    page = html_path.read_text()
    assert {r["config"] for r in rows} == {"replica delta", "atm delta"}
    for config in ("replica delta", "atm delta"):
        group = [r for r in rows if r["config"] == config]
        line = next(tr for tr in page.split("<tr>") if tr.startswith(f"<td>{config}</td>"))
        assert f"<td>{np.mean([r['pnl_usd'] for r in group]):,.0f}</td>" in line
        assert ", ".join(f"{r['seed']}: {r['pnl_usd']:,.0f}" for r in group) in line
    assert page.count("data:image/png;base64,") == 1
    assert f"report: {html_path}" in capsys.readouterr().out


def _refuse(constant: str) -> None:
    raise ValueError(f"not strict JSON: {constant}")

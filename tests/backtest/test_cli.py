"""`python -m trading backtest`: metrics printed, an HTML report with charts, metrics as JSON."""

from __future__ import annotations

import json

import pytest

from trading.cli import main


def test_sim_backtest_writes_a_self_contained_html_report_and_json(tmp_path, capsys):
    out, metrics = tmp_path / "report.html", tmp_path / "metrics.json"

    code = main(
        ["backtest", "sim", "--seed", "2", "--start", "2026-09-08", "--end", "2026-09-10",
         "--premium-bp", "50", "--preset", "replica", "--set", "strategy.z_window=390",
         "--set", "strategy.cointegration_pvalue=0.99",
         "--set", "strategy.max_gross_notional_usd=150000",
         "--set", "strategy.edge_gate=false",  # a one-day window: the edge is reported only
         "--out", str(out), "--json", str(metrics), "--no-progress"]
    )  # fmt: skip

    assert code == 0
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 2  # equity/drawdown, spread/z with trades
    assert "Edge" in page and "Distributions" in page
    values = json.loads(metrics.read_text(), parse_constant=_refuse)  # strict JSON: no NaN
    for name in ("total_return", "sharpe", "sortino", "max_drawdown", "round_trips", "hit_rate",
                 "turnover", "commissions_usd", "r_squared_vs_truth", "distributions_usd",
                 "rejections", "edge"):  # fmt: skip
        assert name in values
    assert values["intents"] >= 1 and values["commissions_usd"] > 0
    edge = ("half_life_bars", "half_life_low_bars", "half_life_high_bars", "variance_ratio",
            "drift_bp_month", "spread_std_bp", "cost_bp", "expected_edge_bp",
            "verdict")  # fmt: skip
    assert all(name in values["edge"] for name in edge)
    assert values["edge"]["verdict"] in ("edge", "no edge", "drifting")
    assert "sharpe" in capsys.readouterr().out


def _refuse(constant: str) -> None:
    raise ValueError(f"not strict JSON: {constant}")


def test_bad_setting_override_is_refused_with_its_name(capsys):
    code = main(["backtest", "sim", "--start", "2026-09-08", "--end", "2026-09-08",
                 "--set", "strategy.z_window=-3", "--no-progress"])  # fmt: skip

    assert code == 2
    assert "TRADING_STRATEGY__Z_WINDOW" in capsys.readouterr().err


def test_malformed_override_is_refused():
    with pytest.raises(SystemExit):
        main(["backtest", "nowhere"])


def test_research_mode_runs_from_the_backtest_command_with_the_same_answer_as_its_api(capsys):
    from datetime import date

    from trading.backtest.research_bars import bars_from_sim
    from trading.backtest.sources import SimSource
    from trading.backtest.vectorized import ResearchConfig, research_backtest
    from trading.settings import load_settings

    code = main(["backtest", "research", "--seed", "2", "--start", "2026-09-08",
                 "--end", "2026-09-18", "--premium-bp", "50", "--preset", "replica",
                 "--set", "strategy.z_window=390"])  # fmt: skip

    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    settings = load_settings(strategy={"preset": "replica", "z_window": 390})
    start, end = date(2026, 9, 8), date(2026, 9, 18)
    model = SimSource(2, start, end, premium_bp=50.0).model()
    expected = research_backtest(
        bars_from_sim(model, start, end, settings), ResearchConfig.from_settings(settings)
    ).metrics.as_dict()
    assert printed["round_trips"] == expected["round_trips"] > 0
    assert printed["total_return"] == pytest.approx(expected["total_return"], rel=1e-12)

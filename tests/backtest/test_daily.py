"""The daily source on a multi-year tape the test generates (no third-party data): daily bars
close at each session's close, no order is refused as stale or after the close, and every
distribution of TLT and TLTW held over its ex-date is booked."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from trading.backtest.daily import DailyModel, daily_messages, read_daily, write_daily
from trading.backtest.run import BacktestRun, backtest_messages
from trading.bus import Dividends, OptionChain, OptionQuote, Quote
from trading.cli import main
from trading.domain import black_scholes as bs
from trading.domain.market_hours import EXCHANGE_TIMEZONE, market_calendar
from trading.ibsim import MarketModel, SimConfig
from trading.ibsim.config import DEFAULT_START
from trading.ibsim.history import bar_frame
from trading.ibsim.market import option_bid_ask
from trading.settings import load_settings

FIRST, LAST = date(2024, 11, 1), date(2026, 10, 30)  # two years of sessions
TLT_DISTRIBUTION = 0.28
DAILY = {
    "bar_seconds": 86_400,
    "z_window": 40,
    "ols_window": 20,
    "refit_bars": 1,
    "cointegration_pvalue": 0.99,
}
"""Daily bars with windows in sessions; the edge gate at its defaults (on daily bars it samples
every bar over a ten-session horizon)."""


def generated_rows(seed: int = 2, premium_bp: float = 50.0) -> list[dict[str, object]]:
    """Two years of daily rows from ibsim's market model: TLT's close (paying a made-up 0.28 a
    share on each month's first session, its price dropping by it), TLTW's closing quote, NAV
    and distributions (the model's), and a flat 16% implied vol."""
    model = MarketModel(
        SimConfig(seed=seed, start=DEFAULT_START, history_days=520, premium_bp=premium_bp)
    )
    frame = bar_frame(model, FIRST, LAST, bar="1 day")
    rows: list[dict[str, object]] = []
    factor, previous = 1.0, None
    for stamp, bar in frame.iterrows():
        day = stamp.date()
        if previous is not None and day.month != previous.month:
            factor *= 1.0 - TLT_DISTRIBUTION / (bar["tlt_open"] * factor)
            paid = day + timedelta(days=3)
            rows.append({"date": day, "kind": "distribution", "symbol": "TLT",
                         "value": TLT_DISTRIBUTION, "pay_date": paid})  # fmt: skip
        tltw = model.tltw_distribution(model.calendar.index_of(day))
        if tltw > 0:  # no pay date: the book's default, three sessions later
            rows.append({"date": day, "kind": "distribution", "symbol": "TLTW", "value": tltw})
        rows += [
            {"date": day, "kind": "close", "symbol": "TLT", "value": bar["tlt_close"] * factor},
            {"date": day, "kind": "close", "symbol": "TLTW", "value": bar["tltw_close"],
             "bid": bar["tltw_bid"], "ask": bar["tltw_ask"]},
            {"date": day, "kind": "nav", "symbol": "TLTW", "value": bar["tltw_nav"]},
            {"date": day, "kind": "iv", "symbol": "TLT", "value": 0.16},
        ]  # fmt: skip
        previous = day
    return rows


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("daily") / "daily.csv"
    write_daily(generated_rows(), path)
    return path


@pytest.fixture(scope="module")
def daily_run(tape: Path) -> BacktestRun:
    return backtest_messages(load_settings(strategy=DAILY), daily_messages(tape))


@pytest.fixture(scope="module")
def premium_free(tmp_path_factory: pytest.TempPathFactory) -> list:
    path = tmp_path_factory.mktemp("daily") / "premium-free.csv"
    write_daily(generated_rows(premium_bp=0.0), path)
    return daily_messages(path)


def test_without_a_premium_the_edge_gate_keeps_a_daily_strategy_out_of_the_noise(premium_free):
    ungated = backtest_messages(load_settings(strategy=DAILY | {"edge_gate": False}), premium_free)
    gated = backtest_messages(load_settings(strategy=DAILY), premium_free)

    assert ungated.metrics.round_trips >= 3, ungated.metrics  # the z-score trades the noise
    assert gated.metrics.round_trips == 0
    refused = [s.reason for s in gated.result.signals if "not entered: edge" in s.reason]
    assert len(refused) >= ungated.metrics.round_trips  # each says which test failed
    assert all(("half-life" in r or "adf" in r or "drift" in r) for r in refused)


def _close(day: date) -> float:
    session = market_calendar().session(day)
    assert session is not None
    return session.close_utc.timestamp()


def _held_before(fills, symbol: str, day: date) -> float:
    """Net shares of ``symbol`` from the fills dated before ``day`` (New York)."""
    return sum(
        (f.quantity if str(f.side) == "BUY" else -f.quantity)
        for f in fills
        if f.symbol == symbol
        and f.sec_type == "STK"
        and datetime.fromtimestamp(f.ts, UTC).astimezone(EXCHANGE_TIMEZONE).date() < day
    )


def test_a_daily_backtest_trades_with_no_order_refused_stale_or_after_the_close(daily_run):
    metrics = daily_run.metrics
    assert metrics.round_trips >= 3, metrics
    assert "STALE_DATA" not in metrics.rejections, metrics.rejections
    assert "MARKET_CLOSED" not in metrics.rejections, metrics.rejections
    # Every order was decided at a session's close and filled there (market-on-close).
    closes = {_close(d) for d in _sessions()}
    assert {f.ts for f in daily_run.result.fills} <= closes


def test_every_daily_bar_closes_at_its_sessions_close_half_days_and_the_last_one_included(
    daily_run,
):
    closed = {p.ts for p in daily_run.result.spread_points}
    sessions = _sessions()
    after_warm_up = [d for d in sessions if _close(d) >= min(closed)]
    assert closed == {_close(d) for d in after_warm_up}
    half_days = [d for d in after_warm_up if market_calendar().session(d).is_early_close]
    assert date(2025, 11, 28) in half_days and date(2025, 12, 24) in half_days
    assert _close(date(2025, 11, 28)) in closed  # 13:00 New York
    assert max(closed) == _close(LAST)  # the run closed its last bar


def test_every_distribution_held_over_its_ex_date_is_booked(daily_run, tape):
    _, announced = read_daily(tape.read_text().splitlines())
    result = daily_run.result
    fills = result.fills
    expected = 0.0
    booked_any = {"TLT": False, "TLTW": False}
    for symbol, by_day in announced.items():
        assert {d.ex_date for d in result.distributions[symbol]} == set(by_day)
        for ex_date, (amount, _) in by_day.items():
            held = _held_before(fills, symbol, ex_date)
            expected += held * amount
            booked_any[symbol] |= held != 0
    assert booked_any == {"TLT": True, "TLTW": True}, "no position held over an ex-date"
    assert result.distributions_usd == pytest.approx(expected, abs=1e-6)
    assert daily_run.metrics.distributions_usd == pytest.approx(expected, abs=1e-6)


def test_the_daily_cli_writes_strict_json_with_the_distributions(tape, tmp_path):
    out = tmp_path / "daily.json"
    code = main(["backtest", "daily", str(tape), "--out", str(tmp_path / "daily.html"),
                 "--json", str(out), "--no-progress"]
                + [f"--set=strategy.{k}={v}" for k, v in DAILY.items()])  # fmt: skip
    values = json.loads(out.read_text(), parse_constant=_refuse)
    assert code == 0
    assert values["distributions_usd"] != 0.0
    assert "STALE_DATA" not in values["rejections"]


def test_the_daily_cli_refuses_minute_bars_naming_the_setting(tape, capsys):
    assert main(["backtest", "daily", str(tape), "--no-progress"]) == 2
    assert "strategy.bar_seconds=86400" in capsys.readouterr().err


def test_modelled_calls_are_black_scholes_on_the_listed_grid_with_the_stated_bid_ask(tmp_path):
    path = tmp_path / "one.csv"
    write_daily(
        [
            {"date": date(2026, 9, 15), "kind": "close", "symbol": "TLT", "value": 90.0},
            {"date": date(2026, 9, 15), "kind": "close", "symbol": "TLTW", "value": 24.0},
            {"date": date(2026, 9, 15), "kind": "iv", "symbol": "TLT", "value": 0.16},
            {"date": date(2026, 9, 16), "kind": "distribution", "symbol": "TLTW",
             "value": 0.24, "pay_date": date(2026, 9, 19)},
        ],
        path,
    )  # fmt: skip
    messages = daily_messages(path, DailyModel(rate=0.04, div_yield=0.04))
    (chain,) = [m for m in messages if isinstance(m, OptionChain)]
    calls = [m for m in messages if isinstance(m, OptionQuote)]
    quotes = {m.symbol: m for m in messages if isinstance(m, Quote)}
    (dividend,) = [m for m in messages if isinstance(m, Dividends)]
    close = _close(date(2026, 9, 15))
    assert chain.expiries == ("20260918", "20261016")  # the next two standard monthlies
    assert chain.strikes == tuple(float(k) for k in range(77, 104))  # 76.5..103.5: whole $
    assert (quotes["TLT"].bid, quotes["TLT"].ask) == (89.995, 90.005)  # one cent around
    assert quotes["TLT"].ts_exchange == close
    call = next(c for c in calls if c.expiry == "20261016" and c.strike == 92.0)
    expiry = datetime(2026, 10, 16, 16, 0, tzinfo=EXCHANGE_TIMEZONE).timestamp()
    tau = (expiry - close) / (365 * 86_400)
    value = bs.price(90.0, 92.0, tau, 0.04, 0.04, 0.16, "C")
    bid, ask = option_bid_ask(value)
    assert (call.bid, call.ask) == (float(bid), float(ask))
    assert call.model_price == pytest.approx(value)
    assert call.delta == pytest.approx(bs.greeks(90.0, 92.0, tau, 0.04, 0.04, 0.16, "C").delta)
    assert call.ts_exchange == close
    assert (dividend.next_ex_date, dividend.next_pay_date) == ("20260916", "20260919")


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"date": "2026-09-19", "kind": "close", "symbol": "TLT", "value": 90}, "not an XNYS"),
        ({"date": "2026-09-15", "kind": "close", "symbol": "TLT", "value": math.nan}, "finite"),
        (
            {
                "date": "2026-09-15",
                "kind": "close",
                "symbol": "TLT",
                "value": 90,
                "bid": 90.1,
                "ask": 90.0,
            },
            "crossed",
        ),
        (
            {"date": "2026-09-15", "kind": "close", "symbol": "TLT", "value": 90, "bid": 89.9},
            "give both or neither",
        ),
        ({"date": "2026-09-15", "kind": "iv", "symbol": "TLTW", "value": 0.16}, "iv rows"),
        ({"date": "2026-09-15", "kind": "quote", "symbol": "TLT", "value": 1}, "kind"),
    ],
)
def test_a_bad_row_is_refused_naming_its_row_and_column(tmp_path, row, match):
    path = tmp_path / "bad.csv"
    write_daily([{"date": "2026-09-14", "kind": "iv", "symbol": "TLT", "value": 0.16}, row], path)
    with pytest.raises(ValueError, match=match) as refused:
        daily_messages(path)
    assert "row 2" in str(refused.value)


def test_a_session_without_both_closes_or_without_calls_is_refused(tmp_path):
    path = tmp_path / "short.csv"
    tlt = {"date": "2026-09-15", "kind": "close", "symbol": "TLT", "value": 90.0}
    write_daily([tlt, {"date": "2026-09-15", "kind": "iv", "symbol": "TLT", "value": 0.16}], path)
    with pytest.raises(ValueError, match="2026-09-15: no close row for TLTW"):
        daily_messages(path)
    tltw = {"date": "2026-09-15", "kind": "close", "symbol": "TLTW", "value": 24.0}
    write_daily([tlt, tltw], path)
    with pytest.raises(ValueError, match="neither option rows nor an iv row"):
        daily_messages(path)


def _sessions() -> list[date]:
    calendar = market_calendar()
    out, day = [], FIRST
    while day <= LAST:
        if calendar.is_session(day):
            out.append(day)
        day += timedelta(days=1)
    return out


def _refuse(constant: str) -> None:
    raise ValueError(f"not strict JSON: {constant}")

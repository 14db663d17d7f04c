"""The backtest's ib source against ibsim: real ib_async client, bars equal to the model's."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from trading.backtest.ibsource import (
    IBHistoryRequest,
    IBSourceError,
    fetch_history,
    plan_calls,
    read_extra,
    tape_messages,
)
from trading.broker.pacing import PacingRules
from trading.broker.translate import expiry_epoch
from trading.bus import Dividends, OptionChain, OptionQuote, Quote
from trading.cli import main
from trading.ibsim import SimConfig, SimulatedGateway
from trading.ibsim.config import ET
from trading.ibsim.history import bar_frame
from trading.ibsim.market import MarketModel
from trading.settings import IBSettings

SEED = 7
RATE = DIV_YIELD = 0.04
# Pacing relaxed for speed where a test is not about pacing (the limiter has its own tests);
# the CLI test runs with IB's rules.
QUICK = PacingRules(identical_window_s=0.2, burst_limit=100, burst_window_s=0.1, window_limit=1000)


@pytest.fixture(scope="module")
def gateway() -> Iterator[SimulatedGateway]:
    """A frozen market at 2026-11-02 09:30 New York: history is every session before it."""
    gateway = SimulatedGateway(SimConfig(seed=SEED, speed=1e-9), port=0, admin_port=0).start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def model(gateway: SimulatedGateway) -> MarketModel:
    return MarketModel(gateway.config)  # deterministic per config: the gateway's market


def _settings(gateway: SimulatedGateway) -> IBSettings:
    return IBSettings(host="127.0.0.1", port=gateway.port, connect_timeout_s=5.0)


def _closes(day: date) -> pd.DatetimeIndex:
    first = datetime(day.year, day.month, day.day, 9, 31, tzinfo=ET)
    return pd.DatetimeIndex([first + timedelta(minutes=i) for i in range(390)])


def test_ib_source_quotes_equal_ibsim_model_bars_and_expired_calls_are_reported(gateway, model):
    # 2026-10-15/16: the October monthly (2026-10-16) has expired by the gateway's date, so IB
    # keeps no bars of its calls; November's are served.
    request = IBHistoryRequest(date(2026, 10, 15), date(2026, 10, 16), 2, 0.99, 1.02, rules=QUICK)

    tape = fetch_history(_settings(gateway), 31, request)
    messages = tape_messages(tape, RATE, DIV_YIELD, 3.0)

    frame = bar_frame(model, date(2026, 10, 15), date(2026, 10, 16), bar="1 min")
    assert len(frame) == 780
    closes = np.array([(t + timedelta(minutes=1)).timestamp() - 0.5 for t in frame.index])
    for symbol in ("TLT", "TLTW"):
        quotes = [m for m in messages if isinstance(m, Quote) and m.symbol == symbol]
        assert [q.ts_exchange for q in quotes] == pytest.approx(closes.tolist(), abs=1e-6)
        assert [q.bid for q in quotes] == frame[f"{symbol.lower()}_bid"].tolist()
        assert [q.ask for q in quotes] == frame[f"{symbol.lower()}_ask"].tolist()
    stamps = [
        m.ts if isinstance(m, OptionChain) else m.ts_exchange for m in messages
    ]  # time-ordered
    assert stamps == sorted(stamps)

    options = [m for m in messages if isinstance(m, OptionQuote)]
    assert {m.expiry for m in options} == {"20261120"}
    expired = [m for m in tape.missing if "261016C" in m.instrument]
    assert expired and all(m.code == 162 for m in expired)
    # Asked once per side: an expired call is not asked again on the next session.
    asked = [(m.instrument, m.what) for m in expired]
    assert len(asked) == len(set(asked)) and {w for _, w in asked} == {"BID", "ASK"}

    chains = [m for m in messages if isinstance(m, OptionChain)]
    assert [c.expiries for c in chains] == [("20261120",), ("20261120",)]
    day = date(2026, 10, 16)
    index = _closes(day)
    for option in chains[1].subscribed:
        truth = model.option_quotes(index, date(2026, 11, 20), option.strike, "C")
        got = [m for m in options if m.con_id == option.con_id and m.ts_exchange > chains[1].ts]
        assert len(got) == 390
        assert [q.bid for q in got] == pytest.approx(truth["bid"].to_numpy().tolist())
        assert [q.ask for q in got] == pytest.approx(truth["ask"].to_numpy().tolist())
    # Greeks from the quote's mid: the implied vol reprices the mid (Black-Scholes-Merton by
    # hand with scipy), and delta is N(d1) e^{-qT}.
    for quote in got[::97]:
        spot, strike, vol = quote.underlying_price, quote.strike, quote.implied_vol
        tau = (expiry_epoch(quote.expiry) - quote.ts_exchange) / (365.0 * 86400.0)
        d1 = (math.log(spot / strike) + (RATE - DIV_YIELD + vol**2 / 2) * tau) / (
            vol * math.sqrt(tau)
        )
        d2 = d1 - vol * math.sqrt(tau)
        price = spot * math.exp(-DIV_YIELD * tau) * norm.cdf(d1) - strike * math.exp(
            -RATE * tau
        ) * norm.cdf(d2)
        assert price == pytest.approx((quote.bid + quote.ask) / 2, abs=1e-6)
        assert quote.delta == pytest.approx(math.exp(-DIV_YIELD * tau) * norm.cdf(d1), abs=1e-6)


def test_ib_source_recovers_from_a_pacing_violation(gateway, model):
    request = IBHistoryRequest(
        date(2026, 10, 29), date(2026, 10, 29), 1, 0.995, 1.005, pacing_backoff_s=0.05, rules=QUICK
    )
    gateway.faults.pacing_violation_next_historical()

    tape = fetch_history(_settings(gateway), 32, request)

    planned = 4 + 2 * sum(len(calls) for calls in tape.session_options.values())
    assert tape.requests == planned + 1  # the refused one, asked again
    assert tape.missing == ()
    frame = bar_frame(model, date(2026, 10, 29), date(2026, 10, 29), bar="1 min")
    tlt = [m for m in tape_messages(tape, RATE, DIV_YIELD, 3.0) if isinstance(m, Quote)]
    assert [q.bid for q in tlt if q.symbol == "TLT"] == frame["tlt_bid"].tolist()


def test_plan_keeps_a_requested_call_while_its_expiry_is_listed():
    listed = {"20261120": (88.0, 89.0, 90.0, 91.0, 92.0), "20261218": (88.0, 90.0, 92.0)}
    days = {
        date(2026, 11, 2): ("20261120", "20261218"),
        date(2026, 11, 3): ("20261120", "20261218"),
        date(2026, 11, 4): ("20261218",),
    }
    opens = {date(2026, 11, 2): 89.5, date(2026, 11, 3): 91.5, date(2026, 11, 4): 88.0}

    plan = plan_calls(opens, days, listed, 0.99, 1.01)

    # 0.99-1.01 x 89.5 = 88.6..90.4; x 91.5 = 90.6..92.4; x 88.0 = 87.1..88.9.
    assert plan[date(2026, 11, 2)] == (("20261120", 89.0), ("20261120", 90.0), ("20261218", 90.0))
    assert plan[date(2026, 11, 3)] == (
        ("20261120", 89.0), ("20261120", 90.0), ("20261120", 91.0), ("20261120", 92.0),
        ("20261218", 90.0), ("20261218", 92.0),
    )  # fmt: skip
    assert plan[date(2026, 11, 4)] == (("20261218", 88.0), ("20261218", 90.0), ("20261218", 92.0))


def test_extra_csv_adds_distributions_and_refuses_quotes(tmp_path):
    good = tmp_path / "extra.csv"
    good.write_text("timestamp,kind,symbol,value\n2026-10-01T09:00:00-04:00,dividend,TLTW,0.24\n")
    bad = tmp_path / "quotes.csv"
    bad.write_text("timestamp,kind,symbol,bid,ask\n2026-10-01T09:31:00-04:00,stock,TLT,90,90.01\n")

    [dividend] = read_extra(good)

    assert isinstance(dividend, Dividends) and dividend.next_ex_date == "20261001"
    assert dividend.next_amount == 0.24
    with pytest.raises(IBSourceError, match="found a quote row"):
        read_extra(bad)


def test_cli_ib_backtest_writes_a_report(gateway, tmp_path, capsys):
    out, metrics = tmp_path / "ib.html", tmp_path / "ib.json"

    code = main(
        ["backtest", "ib", "--start", "2026-10-29", "--end", "2026-10-29",
         "--port", str(gateway.port), "--client-id", "33", "--expiries", "1",
         "--strike-range", "0.995", "1.005", "--set", "strategy.z_window=120",
         "--out", str(out), "--json", str(metrics), "--no-progress"]
    )  # fmt: skip

    assert code == 0, capsys.readouterr().err
    page = out.read_text()
    assert "Backtest: ib 2026-10-29" in page and "data:image/png;base64," in page
    values = json.loads(metrics.read_text())
    assert values["start"].startswith("2026-10-29") and "sharpe" in values
    assert values["bars"] >= 389  # a session of one-minute bars replayed (the last may not close)


def test_cli_ib_unreachable_gateway_exits_2_naming_it(capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: the connection is refused

        code = main(
            ["backtest", "ib", "--start", "2026-10-29", "--end", "2026-10-29",
             "--port", str(port), "--no-progress"]
        )  # fmt: skip

    assert code == 2
    assert f"cannot reach the IB gateway at 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("start", "end", "named"),
    [
        ("2026-10-30", "2026-10-29", "is before start"),
        ("2026-10-30", "2026-11-02", "is not a completed session"),
        ("2026-10-31", "2026-11-01", "no trading session"),
        ("2026/10/29", "2026-10-30", "YYYY-MM-DD"),
    ],
)
def test_cli_ib_bad_date_range_exits_2_naming_it(gateway, start, end, named, capsys):
    code = main(
        ["backtest", "ib", "--start", start, "--end", end, "--port", str(gateway.port),
         "--client-id", "34", "--no-progress"]
    )  # fmt: skip

    assert code == 2
    assert named in capsys.readouterr().err

"""The backtest's file formats and sim feed take the pair (a `PairSpec`) instead of spelling TLT
and TLTW: another pair's tape carries its names end to end and trades like the default pair's
on the same market; a file of one pair is refused under another naming the row and column; the
docs' example (TLT/TLTW) still reads under the default pair."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from tests.support import OTHER_PAIR, pair_settings
from trading.backtest.csvfile import CsvError, read_messages, write_messages
from trading.backtest.daily import daily_messages, read_daily, write_daily
from trading.backtest.replay import Replay
from trading.backtest.simfeed import simulated_messages
from trading.backtest.sources import SimSource
from trading.bus import Dividends, EtfNav, OptionChain, OptionQuote, Quote
from trading.domain.pair import DEFAULT_PAIR, PairSpec
from trading.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
OTHER = OTHER_PAIR
STRATEGY = {"preset": "replica", "z_window": 390, "cointegration_pvalue": 0.99,
            "max_gross_notional_usd": 150_000, "edge_gate": False}  # fmt: skip
"""test_csv's round-trip settings: a short sim period that trades."""
HEADER = "timestamp,kind,symbol,bid,ask,expiry,strike,right,implied_vol,delta,gamma,"
HEADER += "vega_per_point,theta_per_day,value,con_id\n"


def settings_for(pair: PairSpec):
    """The settings of ``pair`` as TRADING_PAIR__* and TRADING_STRATEGY__PAIR_ID give it."""
    overrides = pair_settings(pair)
    overrides["strategy"] |= STRATEGY
    return load_settings(**overrides)


def names(message) -> set[str]:
    """Every name a market message carries: its symbol, an option's local symbol, a chain's
    underlying and its calls' local symbols."""
    if isinstance(message, OptionChain):
        return {message.underlying, *(c.local_symbol.split()[0] for c in message.subscribed)}
    if isinstance(message, OptionQuote):
        return {message.symbol, message.local_symbol.split()[0]}
    return {message.symbol}


def test_another_pairs_sim_tape_carries_its_names_through_csv_and_trades_as_the_default(
    tmp_path,
):
    period = (date(2026, 9, 1), date(2026, 9, 4))
    other = list(SimSource(4, *period, premium_bp=50.0, pair=OTHER).messages())
    default = list(SimSource(4, *period, premium_bp=50.0).messages())
    assert len(other) == len(default) > 1000
    assert set().union(*map(names, other)) == {"IEF", "IEFW"}
    assert {(m.symbol, m.con_id) for m in other if isinstance(m, Quote)} == {
        ("IEF", 8_000_001), ("IEFW", 8_000_002)
    }  # fmt: skip
    assert {m.symbol for m in other if isinstance(m, EtfNav | Dividends)} == {"IEFW"}
    assert {m.underlying_con_id for m in other if isinstance(m, OptionChain)} == {8_000_001}
    # The default pair's feed is what it always was: TLT and TLTW with IB's contract ids.
    assert {(m.symbol, m.con_id) for m in default if isinstance(m, Quote)} == {
        ("TLT", 15547841), ("TLTW", 545186218)
    }  # fmt: skip

    path = tmp_path / "ief.csv"
    write_messages(other, path)
    assert "TLT" not in path.read_text()
    read_back = read_messages(path, OTHER)
    assert set().union(*map(names, read_back)) == {"IEF", "IEFW"}

    settings = settings_for(OTHER)
    direct = Replay(settings).run(other)
    replayed = Replay(settings).run(read_back)
    assert direct.records
    assert [r.intent for r in replayed.records] == [r.intent for r in direct.records]
    assert replayed.equity == direct.equity
    legs = {leg.symbol for r in direct.records for leg in r.intent.legs}
    assert legs == {"IEF", "IEFW"}
    assert {r.intent.pair_id for r in direct.records} == {"IEFBW-IEFW"}

    # The same market under the default names trades the same: the names are only names.
    baseline = Replay(settings_for(PairSpec(**_default_names()))).run(default)
    assert len(baseline.records) == len(direct.records)
    assert baseline.equity == direct.equity


def _default_names() -> dict:
    return {
        "underlying": DEFAULT_PAIR.underlying,
        "etf": DEFAULT_PAIR.etf,
        "pair_id": "TLTBW-TLTW",
        "underlying_con_id": DEFAULT_PAIR.underlying_con_id,
        "etf_con_id": DEFAULT_PAIR.etf_con_id,
    }


def rows_of(underlying: str, etf: str) -> list[str]:
    return [
        f"2026-09-01T09:31:00-04:00,stock,{underlying},90.00,90.01,,,,,,,,,,\n",
        f"2026-09-01T09:31:00-04:00,stock,{etf},24.40,24.41,,,,,,,,,,\n",
        f"2026-09-01T09:31:00-04:00,nav,{etf},,,,,,,,,,,24.38,\n",
        f"2026-09-01T09:31:00-04:00,option,{underlying},1.20,1.26,20261016,92,C,0.16,0.35,0.08,"
        "0.1,-0.02,,\n",
    ]


def test_a_csv_of_one_pair_is_refused_under_another_naming_row_and_column(tmp_path):
    ief, tlt = tmp_path / "ief.csv", tmp_path / "tlt.csv"
    ief.write_text(HEADER + "".join(rows_of("IEF", "IEFW")))
    tlt.write_text(HEADER + "".join(rows_of("TLT", "TLTW")))

    chain, *rest = read_messages(ief, OTHER)
    assert isinstance(chain, OptionChain) and chain.underlying == "IEF"
    assert chain.subscribed[0].local_symbol == "IEF   261016C00092000"
    assert [m.symbol for m in rest] == ["IEF", "IEFW", "IEFW", "IEF"]
    with pytest.raises(CsvError, match=r"row 1, column 'symbol': stock rows are TLT or TLTW, "):
        read_messages(ief)
    with pytest.raises(CsvError, match=r"row 1, column 'symbol': stock rows are IEF or IEFW, "):
        read_messages(tlt, OTHER)
    nav_only = tmp_path / "nav.csv"
    nav_only.write_text(HEADER + rows_of("IEF", "IEFW")[2].replace("IEFW", "IEF"))
    with pytest.raises(CsvError, match=r"row 1, column 'symbol': nav rows are IEFW, got 'IEF'"):
        read_messages(nav_only, OTHER)


def test_a_pair_without_contract_ids_needs_them_in_the_file(tmp_path):
    unknown = PairSpec(underlying="IEF", etf="IEFW")
    blank = tmp_path / "blank.csv"
    blank.write_text(HEADER + "".join(rows_of("IEF", "IEFW")))
    with pytest.raises(CsvError, match=r"row 1, column 'con_id': is blank and the pair has no id"):
        read_messages(blank, unknown)
    given = tmp_path / "given.csv"
    lines = rows_of("IEF", "IEFW")
    lines[0] = lines[0].removesuffix("\n") + "777\n"  # the last column: con_id
    lines[1] = lines[1].removesuffix("\n") + "778\n"
    given.write_text(HEADER + "".join(lines))
    chain, underlying, etf, *_ = read_messages(given, unknown)
    assert (underlying.con_id, etf.con_id) == (777, 778)
    assert isinstance(chain, OptionChain) and chain.underlying_con_id == 777
    with pytest.raises(ValueError, match=r"PairSpec.underlying_con_id is required by the daily"):
        daily_messages(given, pair=unknown)
    with pytest.raises(ValueError, match=r"PairSpec.underlying_con_id is required by the sim"):
        next(simulated_messages(SimSource(4, date(2026, 9, 1), date(2026, 9, 1)).model(),
                                date(2026, 9, 1), date(2026, 9, 1), pair=unknown))  # fmt: skip


def daily_rows(underlying: str, etf: str) -> list[dict[str, object]]:
    return [
        {"date": "2026-09-15", "kind": "close", "symbol": underlying, "value": 90.0},
        {"date": "2026-09-15", "kind": "close", "symbol": etf, "value": 24.0, "bid": 23.99,
         "ask": 24.01},
        {"date": "2026-09-15", "kind": "nav", "symbol": etf, "value": 23.98},
        {"date": "2026-09-15", "kind": "option", "symbol": underlying, "bid": 1.48, "ask": 1.52,
         "expiry": "20261016", "strike": 92},
        {"date": "2026-09-16", "kind": "distribution", "symbol": etf, "value": 0.24},
    ]  # fmt: skip


def test_a_daily_file_of_another_pair_gives_that_pairs_messages(tmp_path):
    path = tmp_path / "ief-daily.csv"
    write_daily(daily_rows("IEF", "IEFW"), path)
    messages = daily_messages(path, pair=OTHER)
    assert set().union(*map(names, messages)) == {"IEF", "IEFW"}
    quotes = {m.symbol: m for m in messages if isinstance(m, Quote)}
    assert (quotes["IEF"].con_id, quotes["IEFW"].con_id) == (8_000_001, 8_000_002)
    assert (quotes["IEFW"].bid, quotes["IEFW"].ask) == (23.99, 24.01)
    [chain] = [m for m in messages if isinstance(m, OptionChain)]
    assert (chain.underlying, chain.underlying_con_id) == ("IEF", 8_000_001)
    [dividend] = [m for m in messages if isinstance(m, Dividends)]
    assert (dividend.symbol, dividend.next_amount) == ("IEFW", 0.24)
    with pytest.raises(CsvError, match=r"row 1, column 'symbol': closes are TLT or TLTW, got"):
        daily_messages(path)
    tlt = tmp_path / "tlt-daily.csv"
    write_daily(daily_rows("TLT", "TLTW"), tlt)
    with pytest.raises(CsvError, match=r"row 1, column 'symbol': closes are IEF or IEFW, got"):
        daily_messages(tlt, pair=OTHER)


def test_the_docs_daily_example_reads_under_the_default_pair(tmp_path):
    """docs/backtest.md's example file, as printed there (symbols TLT and TLTW)."""
    docs = (ROOT / "docs" / "backtest.md").read_text()
    block = re.search(r"```text\n(date,kind,symbol,.*?)```", docs, re.S)
    assert block is not None, "the example moved: update this test"
    sessions, distributions = read_daily(block.group(1).splitlines())
    assert [s.day for s in sessions] == [date(2026, 9, 15)]
    assert sessions[0].closes == {
        "TLT": pytest.approx((89.995, 90.005)), "TLTW": (23.99, 24.01)
    }  # fmt: skip
    assert (sessions[0].nav, sessions[0].iv) == (23.98, 0.16)
    assert distributions == {"TLTW": {date(2026, 9, 16): (0.24, date(2026, 9, 19))}}

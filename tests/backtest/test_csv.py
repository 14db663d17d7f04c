"""The CSV source: a bad file is refused naming the row and column; a good one replays like the
sim tape it was written from."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from trading.backtest.csvfile import CsvError, read_messages, write_messages
from trading.backtest.replay import Replay
from trading.backtest.sources import SimSource
from trading.bus import Dividends, OptionChain, OptionQuote, Quote
from trading.settings import load_settings

HEADER = (
    "timestamp,kind,symbol,bid,ask,expiry,strike,right,implied_vol,delta,gamma,"
    "vega_per_point,theta_per_day,value,con_id\n"
)
GOOD = [
    "2026-09-01T09:31:00-04:00,stock,TLT,90.00,90.01,,,,,,,,,,\n",
    "2026-09-01T09:31:00-04:00,stock,TLTW,24.40,24.41,,,,,,,,,,\n",
    "2026-09-01T09:31:00-04:00,nav,TLTW,,,,,,,,,,,24.38,\n",
    "2026-09-01T09:31:00-04:00,option,TLT,1.20,1.26,20261016,92,C,0.16,0.35,0.08,0.1,-0.02,,\n",
    "2026-09-01T09:32:00-04:00,stock,TLT,90.02,90.03,,,,,,,,,,\n",
]


def write(tmp_path: Path, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "tape.csv"
    path.write_text(header + "".join(lines))
    return path


def test_good_rows_become_quotes_with_the_days_chain_first(tmp_path):
    messages = read_messages(write(tmp_path, GOOD))

    assert isinstance(messages[0], OptionChain)
    assert messages[0].expiries == ("20261016",) and messages[0].strikes == (92.0,)
    assert [type(m).__name__ for m in messages[1:]] == [
        "Quote", "Quote", "EtfNav", "OptionQuote", "Quote"
    ]  # fmt: skip
    option = messages[4]
    assert isinstance(option, OptionQuote) and option.con_id == messages[0].subscribed[0].con_id
    assert isinstance(messages[1], Quote) and messages[1].ts_exchange == 1788269460.0


def test_missing_column_is_named(tmp_path):
    header = HEADER.replace("delta,", "")
    lines = [line.replace(",0.35,", ",") for line in GOOD]

    with pytest.raises(CsvError, match=r"row 4, column 'delta': missing from the header"):
        read_messages(write(tmp_path, lines, header))


def test_missing_base_column_is_named_at_the_header(tmp_path):
    with pytest.raises(CsvError, match=r"row 0, column 'kind'"):
        read_messages(write(tmp_path, GOOD, HEADER.replace("kind,", "")))


def test_nan_cell_is_refused_with_its_row_and_column(tmp_path):
    lines = GOOD.copy()
    lines[1] = lines[1].replace("24.41", "nan")

    with pytest.raises(CsvError, match=r"row 2, column 'ask': must be finite"):
        read_messages(write(tmp_path, lines))


def test_unsorted_timestamps_are_refused_with_the_row(tmp_path):
    lines = [GOOD[4], *GOOD[:4]]

    with pytest.raises(CsvError, match=r"row 2, column 'timestamp': goes backwards"):
        read_messages(write(tmp_path, lines))


def test_duplicate_row_for_one_instrument_and_time_is_refused(tmp_path):
    lines = [*GOOD[:2], GOOD[0], *GOOD[2:]]

    with pytest.raises(CsvError, match=r"row 3, column 'timestamp': duplicate stock row for TLT"):
        read_messages(write(tmp_path, lines))


def test_crossed_quote_is_refused(tmp_path):
    lines = GOOD.copy()
    lines[0] = lines[0].replace("90.00,90.01", "90.02,90.01")

    with pytest.raises(CsvError, match=r"row 1, column 'bid': crossed quote"):
        read_messages(write(tmp_path, lines))


def test_sim_tape_written_as_csv_replays_to_the_same_intents_and_equity(tmp_path):
    source = SimSource(4, date(2026, 9, 1), date(2026, 9, 4), premium_bp=50.0)
    messages = list(source.messages())
    path = tmp_path / "sim.csv"
    write_messages(messages, path)
    settings = load_settings(
        strategy={"preset": "replica", "z_window": 390, "cointegration_pvalue": 0.99,
                  "max_gross_notional_usd": 150_000, "edge_gate": False}
    )  # fmt: skip

    direct = Replay(settings).run(messages)
    replayed = Replay(settings).run(read_messages(path))

    assert direct.bars > 1000 and direct.records
    assert [r.intent for r in replayed.records] == [r.intent for r in direct.records]
    assert replayed.equity == direct.equity


def test_a_dividend_row_carries_its_pay_date_through_a_write_and_a_read(tmp_path):
    rows = [*GOOD[:2], "2026-09-01T09:31:00-04:00,dividend,TLTW,,,,,,,,,,,0.24,,20260904\n"]
    messages = read_messages(write(tmp_path, rows, HEADER.replace("con_id", "con_id,pay_date")))
    (dividend,) = [m for m in messages if isinstance(m, Dividends)]
    assert (dividend.next_ex_date, dividend.next_amount) == ("20260901", 0.24)
    assert dividend.next_pay_date == "20260904"
    again = tmp_path / "again.csv"
    write_messages(messages, again)
    assert [m for m in read_messages(again) if isinstance(m, Dividends)] == [dividend]
    bad = [*GOOD[:2], "2026-09-01T09:31:00-04:00,dividend,TLTW,,,,,,,,,,,0.24,,20260831\n"]
    with pytest.raises(CsvError, match=r"row 3, column 'pay_date': 20260831 is before"):
        read_messages(write(tmp_path, bad, HEADER.replace("con_id", "con_id,pay_date")))
